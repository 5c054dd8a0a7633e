//! The live call: a registry of calls on this instance, the runtime task that drives the
//! sans-IO core for each call, the mapping from an assistant record to what a call runs with,
//! the tools a call's LLM can use, and the closing of call records no process carries any more.

pub mod call_data;
pub mod call_data_spill;
pub mod custom_tool;
pub mod disclosure;
pub mod knowledge_tool;
pub mod media_rounds;
pub mod recording;
pub mod recovery;
pub mod registry;
pub mod resolve;
pub mod runtime;
pub mod sms_recipient;
pub mod spool_thread;
mod stt_quiet;
pub mod tool_tasks;
pub mod tools;
pub mod trace_recovery;
pub mod trace_spool;
pub mod transfer;
pub mod warm_transfer;

pub use registry::{CallCommand, CallRegistry, LiveCall};
pub use runtime::{CallOutcome, CallSetup, run_call};
