//! Where a call is ([`CallStatus`]) and why it ended ([`EndedReason`]): closed sets, so that
//! every writer spells them the same way and every reader can match on them. Both are stored
//! and serialised as the strings the API has always shown (`in-progress`, `caller_hangup`, …).

use serde::{Serialize, Serializer};
use std::fmt;

/// A call's status: Twilio's call statuses, which the engine also writes for the calls it ends.
/// Stored as Twilio spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CallStatus {
    /// `queued`: an outbound call Twilio accepted and has not dialled yet. The default of a new
    /// record, because nothing has happened on the line yet.
    #[default]
    Queued,
    /// `initiated`: Twilio started dialling (status callbacks only).
    Initiated,
    /// `ringing`: the callee's phone rings.
    Ringing,
    /// `in-progress`: answered; the call is live.
    InProgress,
    /// `completed`: ended normally.
    Completed,
    /// `busy`: the callee was busy.
    Busy,
    /// `no-answer`: nobody answered.
    NoAnswer,
    /// `failed`: the call could not be connected, or the engine could not carry it.
    Failed,
    /// `canceled`: hung up before it was answered.
    Canceled,
    /// A status this version does not know, read from the database (never written by it): shown
    /// as `unknown` rather than failing the whole read.
    Unknown,
}

impl CallStatus {
    /// Every status this version writes, in lifecycle order (for error messages and filters).
    pub const KNOWN: [CallStatus; 9] = [
        CallStatus::Queued,
        CallStatus::Initiated,
        CallStatus::Ringing,
        CallStatus::InProgress,
        CallStatus::Completed,
        CallStatus::Busy,
        CallStatus::NoAnswer,
        CallStatus::Failed,
        CallStatus::Canceled,
    ];

    /// The stored and wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Queued => "queued",
            CallStatus::Initiated => "initiated",
            CallStatus::Ringing => "ringing",
            CallStatus::InProgress => "in-progress",
            CallStatus::Completed => "completed",
            CallStatus::Busy => "busy",
            CallStatus::NoAnswer => "no-answer",
            CallStatus::Failed => "failed",
            CallStatus::Canceled => "canceled",
            CallStatus::Unknown => "unknown",
        }
    }

    /// The status spelled `s`, `None` when it is not one of [`CallStatus::KNOWN`] (API input
    /// is refused rather than guessed).
    pub fn parse(s: &str) -> Option<CallStatus> {
        CallStatus::KNOWN.into_iter().find(|k| k.as_str() == s)
    }

    /// The status read from a stored string; an unknown one is [`CallStatus::Unknown`].
    pub fn from_stored(s: &str) -> CallStatus {
        CallStatus::parse(s).unwrap_or(CallStatus::Unknown)
    }

    /// Whether the call is over: `completed`, `busy`, `no-answer`, `failed` or `canceled`.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            CallStatus::Completed
                | CallStatus::Busy
                | CallStatus::NoAnswer
                | CallStatus::Failed
                | CallStatus::Canceled
        )
    }

    /// Whether the call has not been answered yet (`queued`, `initiated`, `ringing`).
    pub fn is_before_answer(self) -> bool {
        matches!(
            self,
            CallStatus::Queued | CallStatus::Initiated | CallStatus::Ringing
        )
    }
}

impl fmt::Display for CallStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for CallStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Why a call ended, as the call record and the end-of-call report give it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EndedReason {
    /// `caller_hangup`: Twilio reported the caller hung up (stream `stop`).
    CallerHangup,
    /// `caller_hangup_socket_closed`: the media socket closed without a `stop`.
    CallerHangupSocketClosed,
    /// `assistant_hangup`: the assistant ended the call (tool, or asked to).
    AssistantHangup,
    /// `idle_timeout`: the caller stayed silent past the assistant's idle limit.
    IdleTimeout,
    /// `max_call_length`: the assistant's `max_call_length` was reached.
    MaxCallLength,
    /// `provider_error`: an STT, LLM or TTS provider failed (details in the log).
    ProviderError,
    /// `stt_failed`: the speech-to-text provider failed mid-call for good (reconnects spent);
    /// the caller heard an apology.
    SttFailed,
    /// `tts_failed`: the text-to-speech provider failed mid-call; Twilio spoke the apology.
    TtsFailed,
    /// `llm_failed`: the LLM (and its fallbacks) failed on consecutive replies; the caller
    /// heard a spoken goodbye.
    LlmFailed,
    /// `provider_slot_unavailable`: no provider slot (`stt_limit` / `tts_limit`) freed up in
    /// time for the call to start.
    ProviderSlotUnavailable,
    /// `transferred`: the call was transferred to a human.
    Transferred,
    /// `transfer_failed`: a transfer was asked for and Twilio refused it.
    TransferFailed,
    /// `transferred_warm`: the call was warm-transferred: the agent was briefed, took the
    /// call, and caller and agent were joined in a conference.
    TransferredWarm,
    /// `media_socket_error`: the media socket failed mid-call (oversized or invalid frame,
    /// broken connection).
    MediaSocketError,
    /// `stream_token_expired`: the call's media stream arrived after its token expired.
    StreamTokenExpired,
    /// `stream_never_started`: the voice webhook handed out a media stream that never arrived
    /// within `twilio.stream_start_timeout_s`.
    StreamNeverStarted,
    /// `assistant_not_found`: the call's assistant was deleted before its stream started.
    AssistantNotFound,
    /// `assistant_invalid`: the stored assistant cannot run on this engine (does not parse,
    /// names an unsupported provider).
    AssistantInvalid,
    /// `assistant_inactive`: the number's assistant is switched off.
    AssistantInactive,
    /// `key_not_bound`: keys exist for a provider of the assistant, but none may be sent to the
    /// host it points at (an assistant's key goes only where it was set for, the organisation's
    /// and the environment's only to the provider's public host); the call was refused before
    /// any connection.
    KeyNotBound,
    /// `unknown_number`: the called number routes to no assistant.
    UnknownNumber,
    /// `country_not_allowed`: the caller's country (Twilio's `FromCountry`) is not in the
    /// number's `allowed_country_codes`; the call was rejected unanswered.
    CountryNotAllowed,
    /// `bypass_transfer`: the caller is in `bypass_numbers` and was dialled straight through.
    BypassTransfer,
    /// `bypass_no_transfer_number`: a bypass caller, but no transfer number to dial.
    BypassNoTransferNumber,
    /// `engine_error`: the engine itself failed (e.g. its database stayed unreachable), not
    /// anything about the call or the assistant.
    EngineError,
    /// `engine_restart`: the process carrying the call stopped without ending it (crash,
    /// `kill -9`); closed when an engine started again.
    EngineRestart,
    /// Twilio's own end of a call, named by its terminal status (`completed`, `busy`,
    /// `no-answer`, `failed`, `canceled`): from a status callback when the engine had not
    /// recorded a reason of its own.
    Telephony(CallStatus),
    /// A reason this version does not write, read from a row an older version wrote (they
    /// carried free-form details); shown verbatim.
    Other(String),
}

impl EndedReason {
    /// Every reason this version writes itself (without [`EndedReason::Telephony`]).
    const ENGINE: [EndedReason; 26] = [
        EndedReason::CallerHangup,
        EndedReason::CallerHangupSocketClosed,
        EndedReason::AssistantHangup,
        EndedReason::IdleTimeout,
        EndedReason::MaxCallLength,
        EndedReason::ProviderError,
        EndedReason::SttFailed,
        EndedReason::TtsFailed,
        EndedReason::LlmFailed,
        EndedReason::ProviderSlotUnavailable,
        EndedReason::Transferred,
        EndedReason::TransferFailed,
        EndedReason::TransferredWarm,
        EndedReason::MediaSocketError,
        EndedReason::StreamTokenExpired,
        EndedReason::StreamNeverStarted,
        EndedReason::AssistantNotFound,
        EndedReason::AssistantInvalid,
        EndedReason::AssistantInactive,
        EndedReason::KeyNotBound,
        EndedReason::UnknownNumber,
        EndedReason::CountryNotAllowed,
        EndedReason::BypassTransfer,
        EndedReason::BypassNoTransferNumber,
        EndedReason::EngineError,
        EndedReason::EngineRestart,
    ];

    /// The stored and wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            EndedReason::CallerHangup => "caller_hangup",
            EndedReason::CallerHangupSocketClosed => "caller_hangup_socket_closed",
            EndedReason::AssistantHangup => "assistant_hangup",
            EndedReason::IdleTimeout => "idle_timeout",
            EndedReason::MaxCallLength => "max_call_length",
            EndedReason::ProviderError => "provider_error",
            EndedReason::SttFailed => "stt_failed",
            EndedReason::TtsFailed => "tts_failed",
            EndedReason::LlmFailed => "llm_failed",
            EndedReason::ProviderSlotUnavailable => "provider_slot_unavailable",
            EndedReason::Transferred => "transferred",
            EndedReason::TransferFailed => "transfer_failed",
            EndedReason::TransferredWarm => "transferred_warm",
            EndedReason::MediaSocketError => "media_socket_error",
            EndedReason::StreamTokenExpired => "stream_token_expired",
            EndedReason::StreamNeverStarted => "stream_never_started",
            EndedReason::AssistantNotFound => "assistant_not_found",
            EndedReason::AssistantInvalid => "assistant_invalid",
            EndedReason::AssistantInactive => "assistant_inactive",
            EndedReason::KeyNotBound => "key_not_bound",
            EndedReason::UnknownNumber => "unknown_number",
            EndedReason::CountryNotAllowed => "country_not_allowed",
            EndedReason::BypassTransfer => "bypass_transfer",
            EndedReason::BypassNoTransferNumber => "bypass_no_transfer_number",
            EndedReason::EngineError => "engine_error",
            EndedReason::EngineRestart => "engine_restart",
            EndedReason::Telephony(status) => status.as_str(),
            EndedReason::Other(s) => s,
        }
    }

    /// The reason read from a stored string: a known spelling gives its variant, a terminal
    /// Twilio status gives [`EndedReason::Telephony`], anything else [`EndedReason::Other`].
    pub fn from_stored(s: &str) -> EndedReason {
        if let Some(known) = EndedReason::ENGINE.iter().find(|r| r.as_str() == s) {
            return known.clone();
        }
        match CallStatus::parse(s) {
            Some(status) if status.is_terminal() => EndedReason::Telephony(status),
            _ => EndedReason::Other(s.to_owned()),
        }
    }

    /// Whether the success rate counts this reason as an error (see [`crate::is_error_reason`]).
    pub fn is_error(&self) -> bool {
        crate::is_error_reason(self.as_str())
    }
}

impl fmt::Display for EndedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EndedReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_unknown_ones_are_named_so() {
        for s in CallStatus::KNOWN {
            assert_eq!(CallStatus::parse(s.as_str()), Some(s));
            assert_eq!(CallStatus::from_stored(s.as_str()), s);
            assert_eq!(serde_json::to_value(s).ok(), Some(s.as_str().into()));
        }
        assert_eq!(CallStatus::parse("in_progress"), None);
        assert_eq!(CallStatus::from_stored("answered"), CallStatus::Unknown);
        assert_eq!(
            CallStatus::parse("unknown"),
            None,
            "never accepted as input"
        );
        let terminal: Vec<_> = CallStatus::KNOWN
            .into_iter()
            .filter(|s| s.is_terminal())
            .map(CallStatus::as_str)
            .collect();
        assert_eq!(
            terminal,
            ["completed", "busy", "no-answer", "failed", "canceled"]
        );
        assert!(CallStatus::Ringing.is_before_answer());
        assert!(!CallStatus::InProgress.is_before_answer());
    }

    #[test]
    fn reasons_round_trip_and_keep_older_spellings() {
        for r in EndedReason::ENGINE {
            assert_eq!(EndedReason::from_stored(r.as_str()), r);
        }
        assert_eq!(
            EndedReason::from_stored("no-answer"),
            EndedReason::Telephony(CallStatus::NoAnswer)
        );
        assert_eq!(
            EndedReason::from_stored("in-progress"),
            EndedReason::Other("in-progress".to_owned())
        );
        let old = "provider_error: stt: connection refused";
        assert_eq!(EndedReason::from_stored(old).as_str(), old);
        assert_eq!(
            serde_json::to_value(EndedReason::EngineRestart).ok(),
            Some("engine_restart".into())
        );
        assert!(EndedReason::EngineError.is_error());
        assert!(EndedReason::TransferFailed.is_error());
        assert!(!EndedReason::EngineRestart.is_error());
        assert!(!EndedReason::CallerHangup.is_error());
    }
}
