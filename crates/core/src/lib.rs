//! Sans-IO call core: no sockets, no clocks, no tasks.
//!
//! The runtime feeds timestamped events in and carries out the actions that come out; every
//! decision (turn-taking, interruption, pacing, history) is made here, deterministically, so it
//! can be tested exhaustively with virtual time.

pub mod audio;
pub mod call;
pub mod dialog;
pub mod replay;
pub mod speech;
pub mod turn;
