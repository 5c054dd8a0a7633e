//! The registry of live calls on this instance: what the API and shutdown see of them.

use std::time::SystemTime;

use dashmap::DashMap;
use tokio::sync::mpsc;

/// A request to a live call from outside its task (API, tools, another instance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallCommand {
    /// Finish the current sentence, say `message` (or `end_call_message`), hang up.
    HangUp {
        /// What to say first.
        message: Option<String>,
    },
    /// Say `message`, then transfer the call to `to`.
    Transfer {
        /// Phone number (E.164) or SIP URI.
        to: String,
        /// What to say first.
        message: Option<String>,
    },
    /// Warm-transfer the call to `to` on behalf of the `transfer_call` tool call
    /// `tool_call_id` (see `call/warm_transfer.rs`).
    WarmTransfer {
        /// The tool call the transfer's outcome answers.
        tool_call_id: String,
        /// The agent's number (E.164).
        to: String,
        /// Said to the caller before the hold audio.
        message: Option<String>,
        /// Said to the caller when the agent does not take the call.
        unavailable_message: Option<String>,
    },
    /// What became of the agent's leg of warm transfer `transfer` (from Twilio's callbacks on
    /// `/twilio/warm-transfer/…`, or the runtime when the leg could not be placed).
    WarmTransferUpdate {
        /// The transfer (the core's id).
        transfer: u64,
        /// Accepted, declined, busy, …
        outcome: switchboard_core::call::WarmTransferOutcome,
    },
    /// Send `digits` into the call as DTMF tones (the `dtmf_solver` tool), after what is
    /// queued to say.
    SendDtmf {
        /// `0-9 * # A-D`, `,` for a 500 ms pause; checked by the tool.
        digits: String,
    },
}

/// One live call, as the registry lists it.
#[derive(Debug, Clone)]
pub struct LiveCall {
    /// Our call record id.
    pub call_id: i64,
    /// Organisation owning the call.
    pub organization_id: i64,
    /// The assistant answering.
    pub assistant_id: i64,
    /// Who called (inbound: the caller; outbound: the assistant's number), for the live feed.
    pub from: String,
    /// Who was called (inbound: the assistant's number; outbound: the number dialled).
    pub to: String,
    /// When the media stream started.
    pub started_at: SystemTime,
    /// Commands to the call's task. Boxed: the queue allocates its slots 32 at a time when
    /// the call starts, and rare commands should not cost every live call 32 unboxed ones.
    pub control: mpsc::Sender<Box<CallCommand>>,
}

impl LiveCall {
    /// How the live-calls feed shows this call (`call_sid`: the registry's key).
    pub fn info(&self, call_sid: &str) -> crate::live_feed::LiveCallInfo {
        let started_ms = self
            .started_at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        crate::live_feed::LiveCallInfo {
            call_id: self.call_id,
            call_sid: call_sid.to_owned(),
            assistant_id: self.assistant_id,
            from: self.from.clone(),
            to: self.to.clone(),
            started_at: switchboard_store::ms_to_rfc3339(started_ms),
        }
    }
}

/// Live calls by Twilio call SID.
pub type CallRegistry = DashMap<String, LiveCall>;
