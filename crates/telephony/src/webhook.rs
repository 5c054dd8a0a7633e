//! Typed forms of what Twilio posts to us (`docs/providers/twilio.md#voice-webhook`, `#stream-status-callback`, `#call-status-callback`): the voice
//! webhook, the call status callback and the stream status callback. Unknown fields are ignored
//! (Twilio adds parameters over time); optional numeric fields accept an empty string as absent.
//!
//! Signature checking needs the raw pairs: [`parse_form_pairs`] returns them in body order for
//! [`crate::signature::validate`].

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

/// Why a webhook form could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The body is not a valid form, or a required field is missing / mistyped.
    #[error("invalid webhook form: {0}")]
    Form(#[from] serde_urlencoded::de::Error),
}

/// Every `name=value` pair of a form body, decoded, in body order (repeated names kept).
pub fn parse_form_pairs(body: &[u8]) -> Result<Vec<(String, String)>, WebhookError> {
    Ok(serde_urlencoded::from_bytes(body)?)
}

fn parse_form<T: DeserializeOwned>(body: &[u8]) -> Result<T, WebhookError> {
    Ok(serde_urlencoded::from_bytes(body)?)
}

/// Twilio call status (`CallStatus`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum CallStatus {
    /// `queued`
    Queued,
    /// `initiated` (status callbacks only)
    Initiated,
    /// `ringing`
    Ringing,
    /// `in-progress`
    InProgress,
    /// `completed`
    Completed,
    /// `busy`
    Busy,
    /// `failed`
    Failed,
    /// `no-answer`
    NoAnswer,
    /// `canceled`
    Canceled,
    /// Anything else, verbatim.
    Other(String),
}

impl CallStatus {
    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            CallStatus::Queued => "queued",
            CallStatus::Initiated => "initiated",
            CallStatus::Ringing => "ringing",
            CallStatus::InProgress => "in-progress",
            CallStatus::Completed => "completed",
            CallStatus::Busy => "busy",
            CallStatus::Failed => "failed",
            CallStatus::NoAnswer => "no-answer",
            CallStatus::Canceled => "canceled",
            CallStatus::Other(s) => s,
        }
    }

    /// True for statuses after which the call is over.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            CallStatus::Completed
                | CallStatus::Busy
                | CallStatus::Failed
                | CallStatus::NoAnswer
                | CallStatus::Canceled
        )
    }
}

impl From<String> for CallStatus {
    fn from(s: String) -> Self {
        match s.as_str() {
            "queued" => CallStatus::Queued,
            "initiated" => CallStatus::Initiated,
            "ringing" => CallStatus::Ringing,
            "in-progress" => CallStatus::InProgress,
            "completed" => CallStatus::Completed,
            "busy" => CallStatus::Busy,
            "failed" => CallStatus::Failed,
            "no-answer" => CallStatus::NoAnswer,
            "canceled" => CallStatus::Canceled,
            _ => CallStatus::Other(s),
        }
    }
}

impl From<CallStatus> for String {
    fn from(s: CallStatus) -> String {
        s.as_str().to_owned()
    }
}

impl fmt::Display for CallStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Call direction (`Direction`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Direction {
    /// `inbound`: someone called our number.
    Inbound,
    /// `outbound-api`: created through the REST API.
    OutboundApi,
    /// `outbound-dial`: created by a `<Dial>`.
    OutboundDial,
    /// Anything else (e.g. `trunking-originating`), verbatim.
    Other(String),
}

impl Direction {
    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Direction::Inbound => "inbound",
            Direction::OutboundApi => "outbound-api",
            Direction::OutboundDial => "outbound-dial",
            Direction::Other(s) => s,
        }
    }
}

impl From<String> for Direction {
    fn from(s: String) -> Self {
        match s.as_str() {
            "inbound" => Direction::Inbound,
            "outbound-api" => Direction::OutboundApi,
            "outbound-dial" => Direction::OutboundDial,
            _ => Direction::Other(s),
        }
    }
}

impl From<Direction> for String {
    fn from(d: Direction) -> String {
        d.as_str().to_owned()
    }
}

fn opt_nonempty<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v: Option<String> = Option::deserialize(d)?;
    Ok(v.filter(|s| !s.is_empty()))
}

fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v: Option<String> = Option::deserialize(d)?;
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => s.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// The voice webhook (§1.1): Twilio asks what to do with a call.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VoiceWebhook {
    /// `CA…`.
    pub call_sid: String,
    /// `AC…`; picks the auth token the signature must match.
    pub account_sid: String,
    /// Caller (E.164, `client:…`, SIP URI, or `anonymous`).
    pub from: String,
    /// Called number: selects the assistant.
    pub to: String,
    /// Usually `ringing` on the first webhook.
    #[serde(default)]
    pub call_status: Option<CallStatus>,
    /// `inbound`, `outbound-api`, …
    #[serde(default)]
    pub direction: Option<Direction>,
    /// `2010-04-01`.
    #[serde(default, deserialize_with = "opt_nonempty")]
    pub api_version: Option<String>,
    /// Forwarding number when the carrier passes it.
    #[serde(default, deserialize_with = "opt_nonempty")]
    pub forwarded_from: Option<String>,
    /// Caller name lookup result, when enabled.
    #[serde(default, deserialize_with = "opt_nonempty")]
    pub caller_name: Option<String>,
    /// Parent call for child legs.
    #[serde(default, deserialize_with = "opt_nonempty")]
    pub parent_call_sid: Option<String>,
    /// Best-effort caller geo data.
    #[serde(default, deserialize_with = "opt_nonempty")]
    pub from_country: Option<String>,
    /// Best-effort caller geo data.
    #[serde(default, deserialize_with = "opt_nonempty")]
    pub from_city: Option<String>,
    /// Best-effort caller geo data.
    #[serde(default, deserialize_with = "opt_nonempty")]
    pub from_state: Option<String>,
    /// Best-effort called-number geo data.
    #[serde(default, deserialize_with = "opt_nonempty")]
    pub to_country: Option<String>,
    /// SHAKEN/STIR result, when enabled.
    #[serde(default, deserialize_with = "opt_nonempty")]
    pub stir_verstat: Option<String>,
}

impl VoiceWebhook {
    /// Reads the form body (`application/x-www-form-urlencoded`).
    pub fn from_form(body: &[u8]) -> Result<VoiceWebhook, WebhookError> {
        parse_form(body)
    }
}

/// The call status callback (§1.9): progress and the final outcome of a call.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CallStatusCallback {
    /// `CA…`.
    pub call_sid: String,
    /// `AC…`.
    pub account_sid: String,
    /// Status at the time of the event.
    pub call_status: CallStatus,
    /// Call length in seconds (terminal event only).
    #[serde(default, deserialize_with = "opt_u64")]
    pub call_duration: Option<u64>,
    /// Billed minutes (terminal event only).
    #[serde(default, deserialize_with = "opt_u64")]
    pub duration: Option<u64>,
    /// Final SIP response code (terminal event only), e.g. 487 or 404.
    #[serde(default, deserialize_with = "opt_u64")]
    pub sip_response_code: Option<u64>,
    /// Event order starting at 0; events may arrive out of order.
    #[serde(default, deserialize_with = "opt_u64")]
    pub sequence_number: Option<u64>,
    /// Event time, RFC 2822.
    #[serde(default, deserialize_with = "opt_nonempty")]
    pub timestamp: Option<String>,
    /// `call-progress-events`.
    #[serde(default, deserialize_with = "opt_nonempty")]
    pub callback_source: Option<String>,
    /// Answering-machine detection result, when enabled.
    #[serde(default, deserialize_with = "opt_nonempty")]
    pub answered_by: Option<String>,
    /// Recording, when the call was recorded by Twilio.
    #[serde(default, deserialize_with = "opt_nonempty")]
    pub recording_url: Option<String>,
    /// Caller.
    #[serde(default, deserialize_with = "opt_nonempty")]
    pub from: Option<String>,
    /// Called party.
    #[serde(default, deserialize_with = "opt_nonempty")]
    pub to: Option<String>,
    /// Call direction.
    #[serde(default)]
    pub direction: Option<Direction>,
}

impl CallStatusCallback {
    /// Reads the form body.
    pub fn from_form(body: &[u8]) -> Result<CallStatusCallback, WebhookError> {
        parse_form(body)
    }
}

/// An incoming message (Twilio's messaging webhook, `POST` to the number's SMS URL): the
/// fields of <https://www.twilio.com/docs/messaging/guides/webhook-request> the engine uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SmsWebhook {
    /// `SM…` / `MM…`: the message.
    pub message_sid: String,
    /// `AC…`: the account that owns the receiving number.
    pub account_sid: String,
    /// Sender (E.164).
    pub from: String,
    /// Our number that received it (E.164): selects the organisation and assistant.
    pub to: String,
    /// Text of the message (up to 1600 characters; may be empty for a media-only MMS).
    #[serde(default)]
    pub body: String,
    /// Number of media attachments (MMS).
    #[serde(default, deserialize_with = "opt_u64")]
    pub num_media: Option<u64>,
    /// Messaging Service the number belongs to, when it does.
    #[serde(default, deserialize_with = "opt_nonempty")]
    pub messaging_service_sid: Option<String>,
}

impl SmsWebhook {
    /// Reads the form body.
    pub fn from_form(body: &[u8]) -> Result<SmsWebhook, WebhookError> {
        parse_form(body)
    }
}

/// The stream status callback (§1.8), sent to `<Stream statusCallback>`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamStatusCallback {
    /// `AC…`.
    pub account_sid: String,
    /// `CA…`.
    pub call_sid: String,
    /// `MZ…`.
    pub stream_sid: String,
    /// `name` attribute, or the stream SID.
    #[serde(default, deserialize_with = "opt_nonempty")]
    pub stream_name: Option<String>,
    /// `stream-started`, `stream-stopped` or `stream-error`.
    pub stream_event: String,
    /// Error text with `stream-error`.
    #[serde(default, deserialize_with = "opt_nonempty")]
    pub stream_error: Option<String>,
    /// Event time.
    #[serde(default, deserialize_with = "opt_nonempty")]
    pub timestamp: Option<String>,
}

impl StreamStatusCallback {
    /// Reads the form body.
    pub fn from_form(body: &[u8]) -> Result<StreamStatusCallback, WebhookError> {
        parse_form(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voice_webhook_superset() {
        let body = b"Called=%2B15557654321&ToState=CA&CallerCountry=US&Direction=inbound&CallerState=&ToZip=&StirVerstat=TN-Validation-Passed-A&CallSid=CA0123&To=%2B15557654321&CallerZip=&ToCountry=US&CallToken=%7B%22x%22%3A1%7D&ApiVersion=2010-04-01&CalledZip=&CallStatus=ringing&From=%2B15551234567&AccountSid=AC9&CalledCountry=US&CallerCity=&Caller=%2B15551234567&FromCountry=US&ToCity=&FromCity=&CalledState=CA&FromZip=&FromState=&SomethingNew=1";
        let w = VoiceWebhook::from_form(body).unwrap();
        assert_eq!(w.call_sid, "CA0123");
        assert_eq!(w.account_sid, "AC9");
        assert_eq!(w.from, "+15551234567");
        assert_eq!(w.to, "+15557654321");
        assert_eq!(w.call_status, Some(CallStatus::Ringing));
        assert_eq!(w.direction, Some(Direction::Inbound));
        assert_eq!(w.api_version.as_deref(), Some("2010-04-01"));
        assert_eq!(w.from_city, None, "empty geo fields are absent");
        assert_eq!(w.stir_verstat.as_deref(), Some("TN-Validation-Passed-A"));
        let pairs = parse_form_pairs(body).unwrap();
        assert_eq!(pairs.len(), 27);
        assert!(pairs.contains(&("From".to_owned(), "+15551234567".to_owned())));
    }

    #[test]
    fn voice_webhook_missing_required() {
        assert!(VoiceWebhook::from_form(b"CallSid=CA1&From=x&To=y").is_err());
    }

    #[test]
    fn status_callbacks() {
        let body = b"CallSid=CA1&AccountSid=AC1&CallStatus=no-answer&CallDuration=&SipResponseCode=487&SequenceNumber=2&Timestamp=Sun%2C+25+Mar+2018+09%3A53%3A19+%2B0000&CallbackSource=call-progress-events&Direction=outbound-api&Foo=bar";
        let s = CallStatusCallback::from_form(body).unwrap();
        assert_eq!(s.call_status, CallStatus::NoAnswer);
        assert!(s.call_status.is_terminal());
        assert_eq!(s.call_duration, None);
        assert_eq!(s.sip_response_code, Some(487));
        assert_eq!(s.sequence_number, Some(2));
        assert_eq!(
            s.timestamp.as_deref(),
            Some("Sun, 25 Mar 2018 09:53:19 +0000")
        );
        assert_eq!(s.direction, Some(Direction::OutboundApi));
        let s = CallStatusCallback::from_form(
            b"CallSid=CA1&AccountSid=AC1&CallStatus=completed&CallDuration=42",
        )
        .unwrap();
        assert_eq!(s.call_duration, Some(42));
        assert_eq!(s.call_status.to_string(), "completed");
        assert!(
            CallStatusCallback::from_form(
                b"CallSid=CA1&AccountSid=AC1&CallStatus=completed&CallDuration=x"
            )
            .is_err()
        );
        let s = CallStatusCallback::from_form(
            b"CallSid=CA1&AccountSid=AC1&CallStatus=answered-by-robot",
        )
        .unwrap();
        assert_eq!(s.call_status, CallStatus::Other("answered-by-robot".into()));

        let st = StreamStatusCallback::from_form(
            b"AccountSid=AC1&CallSid=CA1&StreamSid=MZ1&StreamName=MZ1&StreamEvent=stream-error&StreamError=boom&Timestamp=t",
        )
        .unwrap();
        assert_eq!(st.stream_event, "stream-error");
        assert_eq!(st.stream_error.as_deref(), Some("boom"));
    }
}
