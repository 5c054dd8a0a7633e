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
    /// When the media stream started.
    pub started_at: SystemTime,
    /// Commands to the call's task.
    pub control: mpsc::Sender<CallCommand>,
}

/// Live calls by Twilio call SID.
pub type CallRegistry = DashMap<String, LiveCall>;
