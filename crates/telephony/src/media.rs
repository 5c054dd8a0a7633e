//! Twilio Media Streams websocket messages (`docs/providers/twilio.md#media-messages-from-twilio`), both directions.
//!
//! Inbound (Twilio → engine): [`InboundParser::parse`] turns one JSON text frame into an
//! [`InboundMessage`]. A `media` frame borrows its strings from the frame text (no copy unless the
//! JSON escapes a character), and [`decode_payload_into`] decodes its base64 payload into a buffer
//! the caller keeps between frames, so steady-state parsing allocates nothing.
//!
//! Outbound (engine → Twilio): [`OutboundWriter`] renders `media`, `mark` and `clear` into one
//! reusable `String`.
//!
//! Tolerance rules, because Twilio adds fields and compatible vendors differ: numeric fields are
//! accepted as strings (how Twilio sends them) or as JSON numbers; unknown fields are ignored; an
//! unknown `event` becomes [`InboundMessage::Unknown`] rather than an error.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_json::value::RawValue;

/// Default upper bound for one inbound text frame, in bytes. A Twilio `media` frame of 20 ms is
/// about 400 bytes and a `start` with many parameters a few KiB, so 64 KiB leaves ample room while
/// stopping a peer from making us parse megabytes.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Base64 engine for payloads: standard alphabet, padding optional on decode (Twilio pads; some
/// compatible vendors do not).
const PAYLOAD_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a media-stream message could not be used.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The frame is larger than the configured limit; it was not parsed.
    #[error("message is {len_bytes} bytes, over the {limit_bytes}-byte limit")]
    TooLarge {
        /// Size of the rejected frame in bytes.
        len_bytes: usize,
        /// The configured limit in bytes.
        limit_bytes: usize,
    },
    /// Not JSON, or a known field has the wrong type (e.g. a non-numeric `sequenceNumber`).
    #[error("malformed message JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A field the message kind requires is absent (e.g. `media.payload`).
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A field is present but its value is unusable.
    #[error("invalid field `{field}`: {reason}")]
    InvalidField {
        /// Dotted path of the field, e.g. `dtmf.digit`.
        field: &'static str,
        /// Why the value was rejected.
        reason: &'static str,
    },
    /// The `media.payload` is not valid base64.
    #[error("invalid base64 payload: {0}")]
    Base64(#[from] base64::DecodeError),
}

/// A string that borrows from the JSON text when it can and owns only when the JSON escaped a
/// character. (serde's own `Option<Cow<str>>` always allocates; this wrapper does not.)
#[derive(Debug)]
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// An unsigned number sent either as a JSON string (`"2"`, Twilio's way) or a JSON number.
#[derive(Debug, Clone, Copy)]
struct Num(u64);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Num;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an unsigned integer or a string holding one")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num, E> {
                Ok(Num(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Num, E> {
                u64::try_from(v)
                    .map(Num)
                    .map_err(|_| E::custom("negative number"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Num, E> {
                if v >= 0.0 && v.fract() == 0.0 && v <= u64::MAX as f64 {
                    Ok(Num(v as u64))
                } else {
                    Err(E::custom("not an unsigned integer"))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Num, E> {
                v.trim()
                    .parse::<u64>()
                    .map(Num)
                    .map_err(|_| E::custom("string is not an unsigned integer"))
            }
        }
        d.deserialize_any(V)
    }
}

fn cow(t: Option<Text<'_>>) -> Option<Cow<'_, str>> {
    t.map(|t| t.0)
}

/// Top level of every inbound frame. Sub-objects stay raw until the event kind is known, so an
/// unknown event with unexpected shapes is still reported as [`InboundMessage::Unknown`].
#[derive(Deserialize)]
struct RawEnvelope<'a> {
    #[serde(borrow, default)]
    event: Option<Text<'a>>,
    #[serde(rename = "sequenceNumber", default)]
    sequence_number: Option<Num>,
    #[serde(rename = "streamSid", borrow, default)]
    stream_sid: Option<Text<'a>>,
    #[serde(borrow, default)]
    protocol: Option<Text<'a>>,
    #[serde(borrow, default)]
    version: Option<Text<'a>>,
    #[serde(borrow, default)]
    start: Option<&'a RawValue>,
    #[serde(borrow, default)]
    media: Option<&'a RawValue>,
    #[serde(borrow, default)]
    dtmf: Option<&'a RawValue>,
    #[serde(borrow, default)]
    mark: Option<&'a RawValue>,
    #[serde(borrow, default)]
    stop: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawMedia<'a> {
    #[serde(borrow, default)]
    track: Option<Text<'a>>,
    #[serde(default)]
    chunk: Option<Num>,
    #[serde(default)]
    timestamp: Option<Num>,
    #[serde(borrow, default)]
    payload: Option<Text<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawStart {
    #[serde(default)]
    account_sid: Option<String>,
    #[serde(default)]
    stream_sid: Option<String>,
    #[serde(default)]
    call_sid: Option<String>,
    #[serde(default)]
    tracks: Option<Vec<String>>,
    #[serde(default)]
    custom_parameters: Option<HashMap<String, String>>,
    #[serde(default)]
    media_format: Option<RawMediaFormat>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMediaFormat {
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    sample_rate: Option<Num>,
    #[serde(default)]
    channels: Option<Num>,
}

#[derive(Deserialize)]
struct RawDtmf<'a> {
    #[serde(borrow, default)]
    track: Option<Text<'a>>,
    #[serde(borrow, default)]
    digit: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct RawMark<'a> {
    #[serde(borrow, default)]
    name: Option<Text<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawStop<'a> {
    #[serde(borrow, default)]
    account_sid: Option<Text<'a>>,
    #[serde(borrow, default)]
    call_sid: Option<Text<'a>>,
}

/// One message Twilio sends on a media stream. Borrowed variants live as long as the frame text.
#[derive(Debug, Clone, PartialEq)]
pub enum InboundMessage<'a> {
    /// First frame of every stream; carries no stream id.
    Connected(Connected<'a>),
    /// Exactly once, right after `connected`: who is calling and the stream's id.
    Start(Start),
    /// 20 ms (usually) of caller audio.
    Media(MediaFrame<'a>),
    /// A keypad digit the caller pressed.
    Dtmf(Dtmf<'a>),
    /// Echo of a mark we sent: the audio before it has played or was cleared.
    Mark(MarkEcho<'a>),
    /// Last frame: the stream stopped or the call ended.
    Stop(Stop<'a>),
    /// An event this crate does not know. Callers should count it and carry on.
    Unknown(UnknownEvent<'a>),
}

impl InboundMessage<'_> {
    /// The message's `sequenceNumber`, when it has one (`connected` does not).
    pub fn sequence_number(&self) -> Option<u64> {
        match self {
            InboundMessage::Connected(_) => None,
            InboundMessage::Start(m) => m.sequence_number,
            InboundMessage::Media(m) => m.sequence_number,
            InboundMessage::Dtmf(m) => m.sequence_number,
            InboundMessage::Mark(m) => m.sequence_number,
            InboundMessage::Stop(m) => m.sequence_number,
            InboundMessage::Unknown(m) => m.sequence_number,
        }
    }

    /// The top-level `streamSid`, when present.
    pub fn stream_sid(&self) -> Option<&str> {
        match self {
            InboundMessage::Connected(_) => None,
            InboundMessage::Start(m) => Some(&m.stream_sid),
            InboundMessage::Media(m) => m.stream_sid.as_deref(),
            InboundMessage::Dtmf(m) => m.stream_sid.as_deref(),
            InboundMessage::Mark(m) => m.stream_sid.as_deref(),
            InboundMessage::Stop(m) => m.stream_sid.as_deref(),
            InboundMessage::Unknown(m) => m.stream_sid.as_deref(),
        }
    }

    /// The `event` name as it appears on the wire (for logs and counters).
    pub fn event_name(&self) -> &str {
        match self {
            InboundMessage::Connected(_) => "connected",
            InboundMessage::Start(_) => "start",
            InboundMessage::Media(_) => "media",
            InboundMessage::Dtmf(_) => "dtmf",
            InboundMessage::Mark(_) => "mark",
            InboundMessage::Stop(_) => "stop",
            InboundMessage::Unknown(m) => &m.event,
        }
    }
}

/// The `connected` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected<'a> {
    /// `"Call"` on Twilio.
    pub protocol: Option<Cow<'a, str>>,
    /// Protocol version, `"1.0.0"` on Twilio.
    pub version: Option<Cow<'a, str>>,
}

/// Audio format announced in `start.mediaFormat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFormat {
    /// MIME-like encoding name; Twilio always sends `audio/x-mulaw`.
    pub encoding: String,
    /// Sample rate in Hz; Twilio always sends 8000.
    pub sample_rate_hz: u32,
    /// Channel count; Twilio always sends 1.
    pub channels: u16,
}

impl Default for MediaFormat {
    /// What Twilio documents as the only format: µ-law, 8 kHz, mono.
    fn default() -> Self {
        MediaFormat {
            encoding: "audio/x-mulaw".to_owned(),
            sample_rate_hz: 8000,
            channels: 1,
        }
    }
}

impl MediaFormat {
    /// True when this is the 8 kHz mono µ-law the engine expects end to end.
    pub fn is_twilio_mulaw(&self) -> bool {
        self.encoding.eq_ignore_ascii_case("audio/x-mulaw")
            && self.sample_rate_hz == 8000
            && self.channels == 1
    }
}

/// The `start` frame. Owned: it arrives once per call, and its values outlive the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// Top-level `sequenceNumber` (`1` on Twilio).
    pub sequence_number: Option<u64>,
    /// `MZ…` id that every outbound message must carry.
    pub stream_sid: String,
    /// `AC…` account the call belongs to.
    pub account_sid: String,
    /// `CA…` call id.
    pub call_sid: String,
    /// Streamed tracks (`["inbound"]` for `<Connect><Stream>`); empty when absent.
    pub tracks: Vec<String>,
    /// The TwiML `<Parameter>`s; empty when absent.
    pub custom_parameters: HashMap<String, String>,
    /// Announced audio format; Twilio's µ-law 8 kHz mono when absent.
    pub media_format: MediaFormat,
}

/// Which side of the call a `media` frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaTrack {
    /// The caller's audio (the only track on `<Connect><Stream>`).
    Inbound,
    /// What the caller hears (unidirectional streams only).
    Outbound,
    /// A value this crate does not know.
    Other,
}

impl MediaTrack {
    fn from_wire(s: Option<&str>) -> MediaTrack {
        match s {
            None | Some("inbound") | Some("inbound_track") => MediaTrack::Inbound,
            Some("outbound") | Some("outbound_track") => MediaTrack::Outbound,
            Some(_) => MediaTrack::Other,
        }
    }
}

/// One `media` frame. Strings borrow from the frame text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFrame<'a> {
    /// Top-level `sequenceNumber`.
    pub sequence_number: Option<u64>,
    /// Top-level `streamSid`.
    pub stream_sid: Option<Cow<'a, str>>,
    /// `media.track`; [`MediaTrack::Inbound`] when absent.
    pub track: MediaTrack,
    /// `media.chunk`, the per-stream chunk counter starting at 1.
    pub chunk: Option<u64>,
    /// `media.timestamp`: presentation time in ms since the stream started.
    pub timestamp_ms: Option<u64>,
    /// `media.payload`: base64 of raw µ-law bytes. Decode with [`decode_payload_into`].
    pub payload: Cow<'a, str>,
}

impl MediaFrame<'_> {
    /// Decodes this frame's payload into `out` (cleared first); returns the byte count.
    pub fn decode_into(&self, out: &mut Vec<u8>) -> Result<usize, MediaError> {
        decode_payload_into(&self.payload, out)
    }
}

/// A `dtmf` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dtmf<'a> {
    /// Top-level `sequenceNumber`.
    pub sequence_number: Option<u64>,
    /// Top-level `streamSid`.
    pub stream_sid: Option<Cow<'a, str>>,
    /// `dtmf.track` (`inbound_track` on Twilio).
    pub track: Option<Cow<'a, str>>,
    /// The key: `0`–`9`, `*`, `#` (and `A`–`D` where a network passes them).
    pub digit: char,
}

/// A `mark` echo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkEcho<'a> {
    /// Top-level `sequenceNumber`.
    pub sequence_number: Option<u64>,
    /// Top-level `streamSid`.
    pub stream_sid: Option<Cow<'a, str>>,
    /// `mark.name` exactly as we sent it.
    pub name: Cow<'a, str>,
}

/// A `stop` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop<'a> {
    /// Top-level `sequenceNumber`.
    pub sequence_number: Option<u64>,
    /// Top-level `streamSid`.
    pub stream_sid: Option<Cow<'a, str>>,
    /// `stop.accountSid`.
    pub account_sid: Option<Cow<'a, str>>,
    /// `stop.callSid`.
    pub call_sid: Option<Cow<'a, str>>,
}

/// A frame whose `event` this crate does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownEvent<'a> {
    /// The `event` value.
    pub event: Cow<'a, str>,
    /// Top-level `sequenceNumber`, if any.
    pub sequence_number: Option<u64>,
    /// Top-level `streamSid`, if any.
    pub stream_sid: Option<Cow<'a, str>>,
}

/// Parses inbound frames with a size limit. Cheap to copy; keep one per connection or share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboundParser {
    max_message_bytes: usize,
}

impl Default for InboundParser {
    /// A parser with [`DEFAULT_MAX_MESSAGE_BYTES`].
    fn default() -> Self {
        InboundParser::new(DEFAULT_MAX_MESSAGE_BYTES)
    }
}

impl InboundParser {
    /// A parser that rejects frames longer than `max_message_bytes` before parsing them.
    pub const fn new(max_message_bytes: usize) -> Self {
        InboundParser { max_message_bytes }
    }

    /// The configured limit in bytes.
    pub const fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// Parses one text frame. Allocation-free for `media`, `mark`, `dtmf`, `stop` unless the JSON
    /// escapes characters inside a string; `start` allocates (once per call).
    pub fn parse<'a>(&self, text: &'a str) -> Result<InboundMessage<'a>, MediaError> {
        if text.len() > self.max_message_bytes {
            return Err(MediaError::TooLarge {
                len_bytes: text.len(),
                limit_bytes: self.max_message_bytes,
            });
        }
        let env: RawEnvelope<'a> = serde_json::from_str(text)?;
        let event = env.event.ok_or(MediaError::MissingField("event"))?.0;
        let sequence_number = env.sequence_number.map(|n| n.0);
        let stream_sid = cow(env.stream_sid);
        let msg = match &*event {
            "media" => {
                let raw = env.media.ok_or(MediaError::MissingField("media"))?;
                let m: RawMedia<'a> = serde_json::from_str(raw.get())?;
                let payload = m
                    .payload
                    .ok_or(MediaError::MissingField("media.payload"))?
                    .0;
                InboundMessage::Media(MediaFrame {
                    sequence_number,
                    stream_sid,
                    track: MediaTrack::from_wire(m.track.as_ref().map(|t| &*t.0)),
                    chunk: m.chunk.map(|n| n.0),
                    timestamp_ms: m.timestamp.map(|n| n.0),
                    payload,
                })
            }
            "mark" => {
                let raw = env.mark.ok_or(MediaError::MissingField("mark"))?;
                let m: RawMark<'a> = serde_json::from_str(raw.get())?;
                let name = m.name.ok_or(MediaError::MissingField("mark.name"))?.0;
                InboundMessage::Mark(MarkEcho {
                    sequence_number,
                    stream_sid,
                    name,
                })
            }
            "dtmf" => {
                let raw = env.dtmf.ok_or(MediaError::MissingField("dtmf"))?;
                let d: RawDtmf<'a> = serde_json::from_str(raw.get())?;
                let digit_text = d.digit.ok_or(MediaError::MissingField("dtmf.digit"))?.0;
                let mut chars = digit_text.chars();
                let digit = match (chars.next(), chars.next()) {
                    (Some(c), None) if is_dtmf_digit(c) => c,
                    _ => {
                        return Err(MediaError::InvalidField {
                            field: "dtmf.digit",
                            reason: "not one of 0-9, *, #, A-D",
                        });
                    }
                };
                InboundMessage::Dtmf(Dtmf {
                    sequence_number,
                    stream_sid,
                    track: cow(d.track),
                    digit,
                })
            }
            "stop" => {
                let (account_sid, call_sid) = match env.stop {
                    Some(raw) => {
                        let s: RawStop<'a> = serde_json::from_str(raw.get())?;
                        (cow(s.account_sid), cow(s.call_sid))
                    }
                    None => (None, None),
                };
                InboundMessage::Stop(Stop {
                    sequence_number,
                    stream_sid,
                    account_sid,
                    call_sid,
                })
            }
            "start" => {
                let raw = env.start.ok_or(MediaError::MissingField("start"))?;
                let s: RawStart = serde_json::from_str(raw.get())?;
                let top_sid = stream_sid.map(Cow::into_owned);
                let stream_sid = s
                    .stream_sid
                    .or(top_sid)
                    .ok_or(MediaError::MissingField("start.streamSid"))?;
                let media_format = match s.media_format {
                    None => MediaFormat::default(),
                    Some(f) => {
                        let d = MediaFormat::default();
                        MediaFormat {
                            encoding: f.encoding.unwrap_or(d.encoding),
                            sample_rate_hz: match f.sample_rate {
                                None => d.sample_rate_hz,
                                Some(Num(v)) => {
                                    u32::try_from(v).map_err(|_| MediaError::InvalidField {
                                        field: "start.mediaFormat.sampleRate",
                                        reason: "out of range",
                                    })?
                                }
                            },
                            channels: match f.channels {
                                None => d.channels,
                                Some(Num(v)) => {
                                    u16::try_from(v).map_err(|_| MediaError::InvalidField {
                                        field: "start.mediaFormat.channels",
                                        reason: "out of range",
                                    })?
                                }
                            },
                        }
                    }
                };
                InboundMessage::Start(Start {
                    sequence_number,
                    stream_sid,
                    account_sid: s
                        .account_sid
                        .ok_or(MediaError::MissingField("start.accountSid"))?,
                    call_sid: s
                        .call_sid
                        .ok_or(MediaError::MissingField("start.callSid"))?,
                    tracks: s.tracks.unwrap_or_default(),
                    custom_parameters: s.custom_parameters.unwrap_or_default(),
                    media_format,
                })
            }
            "connected" => InboundMessage::Connected(Connected {
                protocol: cow(env.protocol),
                version: cow(env.version),
            }),
            _ => InboundMessage::Unknown(UnknownEvent {
                event,
                sequence_number,
                stream_sid,
            }),
        };
        Ok(msg)
    }
}

fn is_dtmf_digit(c: char) -> bool {
    c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D' | 'a'..='d')
}

/// Parses one inbound frame with [`DEFAULT_MAX_MESSAGE_BYTES`].
pub fn parse_inbound(text: &str) -> Result<InboundMessage<'_>, MediaError> {
    InboundParser::default().parse(text)
}

/// Decodes a base64 µ-law payload into `out`, which is cleared first and reused: once its capacity
/// covers a frame (160 bytes for 20 ms), decoding allocates nothing. Returns the byte count.
pub fn decode_payload_into(payload: &str, out: &mut Vec<u8>) -> Result<usize, MediaError> {
    out.clear();
    if let Err(e) = PAYLOAD_B64.decode_vec(payload.as_bytes(), out) {
        out.clear();
        return Err(MediaError::Base64(e));
    }
    Ok(out.len())
}

/// A message the engine sends to Twilio, parsed back (used by tests and fakes that check what the
/// engine wrote).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundMessage<'a> {
    /// Audio to play: base64 payload as on the wire.
    Media {
        /// `streamSid` from `start`.
        stream_sid: Option<Cow<'a, str>>,
        /// `media.payload`: base64 of raw µ-law.
        payload: Cow<'a, str>,
    },
    /// Ask to be told when playback reaches this point.
    Mark {
        /// `streamSid` from `start`.
        stream_sid: Option<Cow<'a, str>>,
        /// `mark.name`.
        name: Cow<'a, str>,
    },
    /// Drop all buffered audio (barge-in).
    Clear {
        /// `streamSid` from `start`.
        stream_sid: Option<Cow<'a, str>>,
    },
    /// Any other `event`.
    Unknown {
        /// The `event` value.
        event: Cow<'a, str>,
    },
}

/// Parses a message the engine sends (`media`, `mark`, `clear`), with the same size limit and
/// tolerance rules as inbound parsing.
pub fn parse_outbound(
    text: &str,
    max_message_bytes: usize,
) -> Result<OutboundMessage<'_>, MediaError> {
    if text.len() > max_message_bytes {
        return Err(MediaError::TooLarge {
            len_bytes: text.len(),
            limit_bytes: max_message_bytes,
        });
    }
    let env: RawEnvelope<'_> = serde_json::from_str(text)?;
    let event = env.event.ok_or(MediaError::MissingField("event"))?.0;
    let stream_sid = cow(env.stream_sid);
    Ok(match &*event {
        "media" => {
            let raw = env.media.ok_or(MediaError::MissingField("media"))?;
            let m: RawMedia<'_> = serde_json::from_str(raw.get())?;
            OutboundMessage::Media {
                stream_sid,
                payload: m
                    .payload
                    .ok_or(MediaError::MissingField("media.payload"))?
                    .0,
            }
        }
        "mark" => {
            let raw = env.mark.ok_or(MediaError::MissingField("mark"))?;
            let m: RawMark<'_> = serde_json::from_str(raw.get())?;
            OutboundMessage::Mark {
                stream_sid,
                name: m.name.ok_or(MediaError::MissingField("mark.name"))?.0,
            }
        }
        "clear" => OutboundMessage::Clear { stream_sid },
        _ => OutboundMessage::Unknown { event },
    })
}

/// Renders engine → Twilio messages into one reusable buffer. Each call returns the JSON text of
/// one message, valid until the next call; once the buffer has grown to a frame's size, rendering
/// allocates nothing.
#[derive(Debug, Default, Clone)]
pub struct OutboundWriter {
    buf: String,
}

impl OutboundWriter {
    /// A writer with an empty buffer (it grows on first use).
    pub fn new() -> Self {
        OutboundWriter::default()
    }

    /// A writer whose buffer already fits a `media` message carrying `frame_bytes` of audio.
    pub fn with_frame_capacity(frame_bytes: usize) -> Self {
        OutboundWriter {
            buf: String::with_capacity(128 + frame_bytes.div_ceil(3) * 4),
        }
    }

    /// `{"event":"media","streamSid":…,"media":{"payload":<base64 of ulaw>}}`. `ulaw` must be raw
    /// 8 kHz µ-law with no container header.
    pub fn media(&mut self, stream_sid: &str, ulaw: &[u8]) -> &str {
        self.buf.clear();
        self.buf.push_str(r#"{"event":"media","streamSid":"#);
        push_json_str(&mut self.buf, stream_sid);
        self.buf.push_str(r#","media":{"payload":""#);
        general_purpose::STANDARD.encode_string(ulaw, &mut self.buf);
        self.buf.push_str(r#""}}"#);
        &self.buf
    }

    /// `{"event":"mark","streamSid":…,"mark":{"name":…}}`.
    pub fn mark(&mut self, stream_sid: &str, name: &str) -> &str {
        self.buf.clear();
        self.buf.push_str(r#"{"event":"mark","streamSid":"#);
        push_json_str(&mut self.buf, stream_sid);
        self.buf.push_str(r#","mark":{"name":"#);
        push_json_str(&mut self.buf, name);
        self.buf.push_str("}}");
        &self.buf
    }

    /// `{"event":"clear","streamSid":…}`.
    pub fn clear(&mut self, stream_sid: &str) -> &str {
        self.buf.clear();
        self.buf.push_str(r#"{"event":"clear","streamSid":"#);
        push_json_str(&mut self.buf, stream_sid);
        self.buf.push('}');
        &self.buf
    }
}

/// Appends `s` as a JSON string literal (with quotes), escaping what JSON requires.
pub fn push_json_str(buf: &mut String, s: &str) {
    buf.push('"');
    let needs_escape = s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\');
    if !needs_escape {
        buf.push_str(s);
    } else {
        for c in s.chars() {
            match c {
                '"' => buf.push_str("\\\""),
                '\\' => buf.push_str("\\\\"),
                '\n' => buf.push_str("\\n"),
                '\r' => buf.push_str("\\r"),
                '\t' => buf.push_str("\\t"),
                c if (c as u32) < 0x20 => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    let v = c as u32;
                    buf.push_str("\\u00");
                    buf.push(char::from(HEX[(v >> 4) as usize & 0xF]));
                    buf.push(char::from(HEX[v as usize & 0xF]));
                }
                c => buf.push(c),
            }
        }
    }
    buf.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "MZ00000000000000000000000000000001";

    #[test]
    fn connected_parses() {
        let m =
            parse_inbound(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#).unwrap();
        assert_eq!(
            m,
            InboundMessage::Connected(Connected {
                protocol: Some("Call".into()),
                version: Some("1.0.0".into())
            })
        );
        assert_eq!(m.sequence_number(), None);
        assert_eq!(m.stream_sid(), None);
    }

    #[test]
    fn start_parses_with_string_numbers_and_parameters() {
        let text = r#"{"event":"start","sequenceNumber":"1","start":{
            "accountSid":"AC1","streamSid":"MZ1","callSid":"CA1","tracks":["inbound"],
            "customParameters":{"tenant":"acme","agent_id":"42"},
            "mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},
            "somethingNew":{"x":[1,2]}},"streamSid":"MZ1"}"#;
        let InboundMessage::Start(s) = parse_inbound(text).unwrap() else {
            panic!("not start")
        };
        assert_eq!(s.sequence_number, Some(1));
        assert_eq!(s.stream_sid, "MZ1");
        assert_eq!(s.call_sid, "CA1");
        assert_eq!(s.account_sid, "AC1");
        assert_eq!(s.tracks, vec!["inbound".to_owned()]);
        assert_eq!(
            s.custom_parameters.get("agent_id").map(String::as_str),
            Some("42")
        );
        assert!(s.media_format.is_twilio_mulaw());
    }

    #[test]
    fn start_defaults_custom_parameters_and_format() {
        let text = r#"{"event":"start","sequenceNumber":1,"start":{
            "accountSid":"AC1","streamSid":"MZ1","callSid":"CA1",
            "mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":"8000","channels":"1"}}}"#;
        let InboundMessage::Start(s) = parse_inbound(text).unwrap() else {
            panic!("not start")
        };
        assert!(s.custom_parameters.is_empty());
        assert!(s.tracks.is_empty());
        assert_eq!(s.media_format, MediaFormat::default());
    }

    #[test]
    fn start_missing_call_sid_is_typed_error() {
        let text = r#"{"event":"start","start":{"accountSid":"AC1","streamSid":"MZ1"}}"#;
        assert!(matches!(
            parse_inbound(text),
            Err(MediaError::MissingField("start.callSid"))
        ));
        let text = r#"{"event":"start"}"#;
        assert!(matches!(
            parse_inbound(text),
            Err(MediaError::MissingField("start"))
        ));
    }

    #[test]
    fn media_borrows_and_decodes() {
        let payload = general_purpose::STANDARD.encode([0xFFu8; 160]);
        let text = format!(
            r#"{{"event":"media","sequenceNumber":"2","media":{{"track":"inbound","chunk":"1","timestamp":"5","payload":"{payload}"}},"streamSid":"{SID}"}}"#
        );
        let m = parse_inbound(&text).unwrap();
        let InboundMessage::Media(f) = &m else {
            panic!("not media")
        };
        assert_eq!(f.sequence_number, Some(2));
        assert_eq!(f.chunk, Some(1));
        assert_eq!(f.timestamp_ms, Some(5));
        assert_eq!(f.track, MediaTrack::Inbound);
        assert!(matches!(f.payload, Cow::Borrowed(_)), "payload must borrow");
        assert!(matches!(f.stream_sid, Some(Cow::Borrowed(_))));
        let mut buf = Vec::new();
        assert_eq!(f.decode_into(&mut buf).unwrap(), 160);
        assert!(buf.iter().all(|&b| b == 0xFF));
        // Reuse: same capacity, no growth.
        let cap = buf.capacity();
        f.decode_into(&mut buf).unwrap();
        assert_eq!(buf.capacity(), cap);
    }

    #[test]
    fn media_numbers_as_json_numbers_and_escaped_payload() {
        let text = r#"{"event":"media","sequenceNumber":3,"media":{"chunk":2,"timestamp":25,"payload":"AAE\/"}}"#;
        let InboundMessage::Media(f) = parse_inbound(text).unwrap() else {
            panic!("not media")
        };
        assert_eq!(
            (f.sequence_number, f.chunk, f.timestamp_ms),
            (Some(3), Some(2), Some(25))
        );
        assert_eq!(f.payload, "AAE/");
        let mut buf = Vec::new();
        f.decode_into(&mut buf).unwrap();
        assert_eq!(buf, vec![0x00, 0x01, 0x3F]);
    }

    #[test]
    fn media_errors() {
        let mut buf = vec![1, 2, 3];
        assert!(matches!(
            decode_payload_into("not*base64", &mut buf),
            Err(MediaError::Base64(_))
        ));
        assert!(buf.is_empty());
        assert!(matches!(
            parse_inbound(r#"{"event":"media","media":{"chunk":"1"}}"#),
            Err(MediaError::MissingField("media.payload"))
        ));
        assert!(matches!(
            parse_inbound(r#"{"event":"media"}"#),
            Err(MediaError::MissingField("media"))
        ));
        assert!(matches!(
            parse_inbound(r#"{"event":"media","sequenceNumber":"two","media":{"payload":""}}"#),
            Err(MediaError::Json(_))
        ));
        assert!(matches!(
            parse_inbound(r#"{"event":"media","#),
            Err(MediaError::Json(_))
        ));
        assert!(matches!(parse_inbound("[1,2]"), Err(MediaError::Json(_))));
        assert!(matches!(
            parse_inbound(r#"{"sequenceNumber":"1"}"#),
            Err(MediaError::MissingField("event"))
        ));
    }

    #[test]
    fn oversize_rejected_before_parsing() {
        let p = InboundParser::new(100);
        let text = format!(
            r#"{{"event":"media","media":{{"payload":"{}"}}}}"#,
            "A".repeat(200)
        );
        match p.parse(&text) {
            Err(MediaError::TooLarge {
                len_bytes,
                limit_bytes: 100,
            }) => assert_eq!(len_bytes, text.len()),
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert_eq!(p.max_message_bytes(), 100);
    }

    #[test]
    fn dtmf_mark_stop_unknown() {
        let d = parse_inbound(
            r##"{"event":"dtmf","streamSid":"MZ1","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"#"}}"##,
        )
        .unwrap();
        assert_eq!(
            d,
            InboundMessage::Dtmf(Dtmf {
                sequence_number: Some(5),
                stream_sid: Some("MZ1".into()),
                track: Some("inbound_track".into()),
                digit: '#'
            })
        );
        assert!(matches!(
            parse_inbound(r#"{"event":"dtmf","dtmf":{"digit":"12"}}"#),
            Err(MediaError::InvalidField {
                field: "dtmf.digit",
                ..
            })
        ));
        let m = parse_inbound(
            r#"{"event":"mark","sequenceNumber":"4","streamSid":"MZ1","mark":{"name":"utt-7-end"}}"#,
        )
        .unwrap();
        let InboundMessage::Mark(mk) = &m else {
            panic!("not mark")
        };
        assert_eq!(mk.name, "utt-7-end");
        assert_eq!(m.sequence_number(), Some(4));
        assert_eq!(m.event_name(), "mark");
        let s = parse_inbound(
            r#"{"event":"stop","sequenceNumber":"9","streamSid":"MZ1","stop":{"accountSid":"AC1","callSid":"CA1","reason":"x"}}"#,
        )
        .unwrap();
        assert_eq!(
            s,
            InboundMessage::Stop(Stop {
                sequence_number: Some(9),
                stream_sid: Some("MZ1".into()),
                account_sid: Some("AC1".into()),
                call_sid: Some("CA1".into())
            })
        );
        let u = parse_inbound(
            r#"{"event":"transcription","sequenceNumber":"6","streamSid":"MZ1","media":"odd shape"}"#,
        )
        .unwrap();
        assert_eq!(u.event_name(), "transcription");
        assert_eq!(u.stream_sid(), Some("MZ1"));
        assert!(matches!(u, InboundMessage::Unknown(_)));
    }

    #[test]
    fn writer_round_trips() {
        let mut w = OutboundWriter::with_frame_capacity(160);
        let audio: Vec<u8> = (0..=255u8).cycle().take(160).collect();
        let text = w.media(SID, &audio).to_owned();
        match parse_outbound(&text, DEFAULT_MAX_MESSAGE_BYTES).unwrap() {
            OutboundMessage::Media {
                stream_sid,
                payload,
            } => {
                assert_eq!(stream_sid.as_deref(), Some(SID));
                let mut out = Vec::new();
                decode_payload_into(&payload, &mut out).unwrap();
                assert_eq!(out, audio);
            }
            other => panic!("{other:?}"),
        }
        let cap = w.buf.capacity();
        w.media(SID, &audio);
        assert_eq!(w.buf.capacity(), cap, "writer must reuse its buffer");

        let text = w.mark(SID, "gen-1 \"q\" \\ \n\u{1}").to_owned();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["mark"]["name"], "gen-1 \"q\" \\ \n\u{1}");
        assert_eq!(v["event"], "mark");
        assert_eq!(v["streamSid"], SID);

        let text = w.clear(SID).to_owned();
        assert_eq!(
            parse_outbound(&text, 1000).unwrap(),
            OutboundMessage::Clear {
                stream_sid: Some(SID.into())
            }
        );
        assert!(matches!(
            parse_outbound(&text, 5),
            Err(MediaError::TooLarge { .. })
        ));
    }
}
