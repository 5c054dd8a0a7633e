//! Fuzz targets for the Twilio Media Streams messages: every websocket text frame a caller's
//! stream sends goes through [`InboundParser::parse`] before anything else looks at it.
//!
//! Bounded runs happen under `cargo test`; `scripts/fuzz.sh` runs each target for millions of
//! inputs (see `docs/security/fuzzing.md`).

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use bolero::check;
use bolero::generator::TypeGenerator;
use serde_json::{Value, json};
use switchboard_fuzzkit::{Edit, Text, apply_edits};
use switchboard_telephony::media::{
    DEFAULT_MAX_MESSAGE_BYTES, InboundMessage, InboundParser, MediaError, MediaFormat, MediaTrack,
    OutboundMessage, OutboundWriter, decode_payload_into, parse_inbound, parse_outbound,
};

/// Inputs per target under `cargo test` (`BOLERO_RANDOM_ITERATIONS` overrides it).
const CI_ITERATIONS: usize = 20_000;

/// Valid frames of every kind, as Twilio sends them: the seeds [`Edit`]s damage.
const SEEDS: &[&str] = &[
    r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#,
    r#"{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC0123","streamSid":"MZ0123","callSid":"CA0123","tracks":["inbound"],"customParameters":{"stream_token":"abc.def","call_id":"7"},"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}},"streamSid":"MZ0123"}"#,
    r#"{"event":"media","sequenceNumber":"3","media":{"track":"inbound","chunk":"1","timestamp":"5","payload":"//7+/f38+/r5+A=="},"streamSid":"MZ0123"}"#,
    r##"{"event":"dtmf","streamSid":"MZ0123","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"#"}}"##,
    r#"{"event":"mark","sequenceNumber":"4","streamSid":"MZ0123","mark":{"name":"utt-7-end"}}"#,
    r#"{"event":"stop","sequenceNumber":"9","streamSid":"MZ0123","stop":{"accountSid":"AC0123","callSid":"CA0123"}}"#,
    r#"{"event":"clear","streamSid":"MZ0123"}"#,
];

/// Field names and values of the protocol, for [`Edit::Token`].
const DICTIONARY: &[&str] = &[
    "\"event\"",
    "\"media\"",
    "\"start\"",
    "\"dtmf\"",
    "\"mark\"",
    "\"stop\"",
    "\"connected\"",
    "\"payload\"",
    "\"sequenceNumber\"",
    "\"streamSid\"",
    "\"callSid\"",
    "\"accountSid\"",
    "\"customParameters\"",
    "\"mediaFormat\"",
    "\"sampleRate\"",
    "\"channels\"",
    "\"digit\"",
    "\"name\"",
    "\"track\"",
    "\"chunk\"",
    "\"timestamp\"",
    "\"AAAA\"",
    "\"A\"",
    "\"====\"",
    "\"-1\"",
    "\" 7 \"",
];

/// Checks every property a parsed frame must have, whatever the input was.
fn check_frame(text: &str, buf: &mut Vec<u8>) {
    let result = InboundParser::default().parse(text);
    // The size limit is decided before parsing and only by the length.
    let tight = InboundParser::new(text.len().saturating_sub(1)).parse(text);
    assert!(
        matches!(tight, Err(MediaError::TooLarge { len_bytes, .. }) if len_bytes == text.len())
            || text.is_empty()
    );
    assert_eq!(
        InboundParser::new(text.len()).parse(text).is_ok(),
        result.is_ok()
    );
    let Ok(message) = result else {
        // Errors render (they end up in logs) without panicking.
        let _ = result.map_err(|e| e.to_string());
        return;
    };
    let _ = (
        message.event_name(),
        message.sequence_number(),
        message.stream_sid(),
    );
    match &message {
        InboundMessage::Media(frame) => {
            // A stale buffer from the previous frame must never leak into this one.
            buf.extend_from_slice(b"stale");
            match frame.decode_into(buf) {
                Ok(n) => {
                    assert_eq!(n, buf.len());
                    // base64 never decodes to more bytes than it has characters (3 per 4).
                    assert!(n <= frame.payload.len() / 4 * 3 + 2, "{n} bytes");
                    assert!(n <= text.len());
                }
                Err(_) => assert!(buf.is_empty(), "a failed decode leaves the buffer empty"),
            }
        }
        InboundMessage::Dtmf(d) => {
            assert!(d.digit.is_ascii_alphanumeric() || "*#".contains(d.digit))
        }
        InboundMessage::Unknown(u) => assert!(
            !["connected", "start", "media", "dtmf", "mark", "stop"].contains(&&*u.event),
            "a known event must not come back as Unknown"
        ),
        _ => {}
    }
    // The engine's own parser for what it sends must not panic on any frame either.
    let _ = parse_outbound(text, DEFAULT_MAX_MESSAGE_BYTES);
}

/// Arbitrary bytes (as text, the way a websocket text frame arrives) never panic the parser.
#[test]
fn fuzz_media_arbitrary_frames() {
    let mut buf = Vec::new();
    check!()
        .with_iterations(CI_ITERATIONS)
        .for_each(|bytes: &[u8]| {
            check_frame(&String::from_utf8_lossy(bytes), &mut buf);
        });
}

/// Damaged valid frames (the likely shape of a buggy or hostile peer) never panic the parser.
#[test]
fn fuzz_media_damaged_frames() {
    let mut buf = Vec::new();
    check!()
        .with_type::<(u8, Vec<Edit>)>()
        .with_iterations(CI_ITERATIONS)
        .for_each(|(seed, edits)| {
            let seed = SEEDS[usize::from(*seed) % SEEDS.len()];
            let bytes = apply_edits(seed.as_bytes(), edits, DICTIONARY);
            check_frame(&String::from_utf8_lossy(&bytes), &mut buf);
        });
}

/// A number field as Twilio sends it (a string) or as compatible vendors do (a JSON number).
#[derive(Debug, Clone, TypeGenerator)]
struct WireNum {
    value: u64,
    as_string: bool,
    /// Pad the string with spaces (accepted: the parser trims).
    padded: bool,
}

impl WireNum {
    fn json(&self) -> Value {
        match (self.as_string, self.padded) {
            (false, _) => json!(self.value),
            (true, false) => json!(self.value.to_string()),
            (true, true) => json!(format!(" {} ", self.value)),
        }
    }
}

fn opt_num(n: &Option<WireNum>) -> Value {
    n.as_ref().map_or(Value::Null, WireNum::json)
}

/// A valid inbound frame built from arbitrary field values.
#[derive(Debug, Clone, TypeGenerator)]
enum Frame {
    Connected {
        protocol: Option<Text>,
        version: Option<Text>,
    },
    Start {
        sequence: Option<WireNum>,
        stream_sid: Text,
        account_sid: Text,
        call_sid: Text,
        #[generator(Vec::produce().with().len(0usize..4))]
        tracks: Vec<Text>,
        #[generator(Vec::produce().with().len(0usize..8))]
        parameters: Vec<(Text, Text)>,
        encoding: Option<Text>,
        sample_rate_hz: Option<u32>,
        channels: Option<u16>,
    },
    Media {
        sequence: Option<WireNum>,
        stream_sid: Option<Text>,
        track: u8,
        chunk: Option<WireNum>,
        timestamp: Option<WireNum>,
        #[generator(Vec::produce().with().len(0usize..400))]
        audio: Vec<u8>,
        padded: bool,
    },
    Dtmf {
        sequence: Option<WireNum>,
        stream_sid: Option<Text>,
        track: Option<Text>,
        digit: u8,
    },
    Mark {
        sequence: Option<WireNum>,
        stream_sid: Option<Text>,
        name: Text,
    },
    Stop {
        sequence: Option<WireNum>,
        stream_sid: Option<Text>,
        account_sid: Option<Text>,
        call_sid: Option<Text>,
    },
    Other {
        event: Text,
        sequence: Option<WireNum>,
        stream_sid: Option<Text>,
    },
}

const TRACKS: &[(&str, MediaTrack)] = &[
    ("inbound", MediaTrack::Inbound),
    ("inbound_track", MediaTrack::Inbound),
    ("outbound", MediaTrack::Outbound),
    ("outbound_track", MediaTrack::Outbound),
    ("both_tracks", MediaTrack::Other),
];
const DIGITS: &str = "0123456789*#ABCDabcd";

fn opt_text(t: &Option<Text>) -> Option<String> {
    t.as_ref().map(Text::string)
}

/// Serialises a frame the way Twilio does (with `serde_json`, so escaping is right), parses it
/// back and checks every field came through unchanged.
fn round_trip(frame: &Frame) {
    let mut out = Vec::new();
    match frame {
        Frame::Connected { protocol, version } => {
            let text =
                json!({"event": "connected", "protocol": opt_text(protocol), "version": opt_text(version)})
                    .to_string();
            let Ok(InboundMessage::Connected(c)) = parse_inbound(&text) else {
                panic!("connected frame refused: {text}")
            };
            assert_eq!(c.protocol.as_deref(), opt_text(protocol).as_deref());
            assert_eq!(c.version.as_deref(), opt_text(version).as_deref());
        }
        Frame::Start {
            sequence,
            stream_sid,
            account_sid,
            call_sid,
            tracks,
            parameters,
            encoding,
            sample_rate_hz,
            channels,
        } => {
            let parameters: HashMap<String, String> = parameters
                .iter()
                .map(|(k, v)| (k.string(), v.string()))
                .collect();
            let tracks: Vec<String> = tracks.iter().map(Text::string).collect();
            let text = json!({
                "event": "start",
                "sequenceNumber": opt_num(sequence),
                "start": {
                    "accountSid": account_sid.string(),
                    "streamSid": stream_sid.string(),
                    "callSid": call_sid.string(),
                    "tracks": tracks,
                    "customParameters": parameters,
                    "mediaFormat": {
                        "encoding": opt_text(encoding),
                        "sampleRate": sample_rate_hz,
                        "channels": channels,
                    },
                },
                "streamSid": stream_sid.string(),
            })
            .to_string();
            let result = parse_inbound(&text);
            if text.len() > DEFAULT_MAX_MESSAGE_BYTES {
                assert!(matches!(result, Err(MediaError::TooLarge { .. })));
                return;
            }
            let Ok(InboundMessage::Start(s)) = result else {
                panic!("start frame refused: {result:?} {text}")
            };
            let default = MediaFormat::default();
            assert_eq!(s.sequence_number, sequence.as_ref().map(|n| n.value));
            assert_eq!(s.stream_sid, stream_sid.string());
            assert_eq!(s.account_sid, account_sid.string());
            assert_eq!(s.call_sid, call_sid.string());
            assert_eq!(s.tracks, tracks);
            assert_eq!(s.custom_parameters, parameters);
            assert_eq!(
                s.media_format,
                MediaFormat {
                    encoding: opt_text(encoding).unwrap_or(default.encoding),
                    sample_rate_hz: sample_rate_hz.unwrap_or(default.sample_rate_hz),
                    channels: channels.unwrap_or(default.channels),
                }
            );
        }
        Frame::Media {
            sequence,
            stream_sid,
            track,
            chunk,
            timestamp,
            audio,
            padded,
        } => {
            let (track_name, track) = TRACKS[usize::from(*track) % TRACKS.len()];
            let payload = if *padded {
                STANDARD.encode(audio)
            } else {
                STANDARD_NO_PAD.encode(audio)
            };
            let text = json!({
                "event": "media",
                "sequenceNumber": opt_num(sequence),
                "media": {
                    "track": track_name,
                    "chunk": opt_num(chunk),
                    "timestamp": opt_num(timestamp),
                    "payload": payload,
                },
                "streamSid": opt_text(stream_sid),
            })
            .to_string();
            let Ok(InboundMessage::Media(m)) = parse_inbound(&text) else {
                panic!("media frame refused: {text}")
            };
            assert_eq!(m.sequence_number, sequence.as_ref().map(|n| n.value));
            assert_eq!(m.chunk, chunk.as_ref().map(|n| n.value));
            assert_eq!(m.timestamp_ms, timestamp.as_ref().map(|n| n.value));
            assert_eq!(m.track, track);
            assert_eq!(m.stream_sid.as_deref(), opt_text(stream_sid).as_deref());
            assert_eq!(m.decode_into(&mut out).ok(), Some(audio.len()));
            assert_eq!(&out, audio);
        }
        Frame::Dtmf {
            sequence,
            stream_sid,
            track,
            digit,
        } => {
            let digit = DIGITS
                .chars()
                .nth(usize::from(*digit) % DIGITS.len())
                .unwrap_or('0');
            let text = json!({
                "event": "dtmf",
                "sequenceNumber": opt_num(sequence),
                "streamSid": opt_text(stream_sid),
                "dtmf": {"track": opt_text(track), "digit": digit.to_string()},
            })
            .to_string();
            let Ok(InboundMessage::Dtmf(d)) = parse_inbound(&text) else {
                panic!("dtmf frame refused: {text}")
            };
            assert_eq!(d.digit, digit);
            assert_eq!(d.sequence_number, sequence.as_ref().map(|n| n.value));
            assert_eq!(d.track.as_deref(), opt_text(track).as_deref());
            assert_eq!(d.stream_sid.as_deref(), opt_text(stream_sid).as_deref());
        }
        Frame::Mark {
            sequence,
            stream_sid,
            name,
        } => {
            let text = json!({
                "event": "mark",
                "sequenceNumber": opt_num(sequence),
                "streamSid": opt_text(stream_sid),
                "mark": {"name": name.string()},
            })
            .to_string();
            let Ok(InboundMessage::Mark(m)) = parse_inbound(&text) else {
                panic!("mark frame refused: {text}")
            };
            assert_eq!(m.name, name.string());
            assert_eq!(m.sequence_number, sequence.as_ref().map(|n| n.value));
            assert_eq!(m.stream_sid.as_deref(), opt_text(stream_sid).as_deref());
        }
        Frame::Stop {
            sequence,
            stream_sid,
            account_sid,
            call_sid,
        } => {
            let text = json!({
                "event": "stop",
                "sequenceNumber": opt_num(sequence),
                "streamSid": opt_text(stream_sid),
                "stop": {"accountSid": opt_text(account_sid), "callSid": opt_text(call_sid)},
            })
            .to_string();
            let Ok(InboundMessage::Stop(s)) = parse_inbound(&text) else {
                panic!("stop frame refused: {text}")
            };
            assert_eq!(s.sequence_number, sequence.as_ref().map(|n| n.value));
            assert_eq!(s.stream_sid.as_deref(), opt_text(stream_sid).as_deref());
            assert_eq!(s.account_sid.as_deref(), opt_text(account_sid).as_deref());
            assert_eq!(s.call_sid.as_deref(), opt_text(call_sid).as_deref());
        }
        Frame::Other {
            event,
            sequence,
            stream_sid,
        } => {
            let event = event.string();
            let text = json!({
                "event": event,
                "sequenceNumber": opt_num(sequence),
                "streamSid": opt_text(stream_sid),
            })
            .to_string();
            match parse_inbound(&text) {
                Ok(InboundMessage::Unknown(u)) => {
                    assert_eq!(u.event, event);
                    assert_eq!(u.sequence_number, sequence.as_ref().map(|n| n.value));
                    assert_eq!(u.stream_sid.as_deref(), opt_text(stream_sid).as_deref());
                }
                // A generated name can spell a known event, which then lacks its body.
                Ok(InboundMessage::Connected(_) | InboundMessage::Stop(_)) => {
                    assert!(event == "connected" || event == "stop");
                }
                Err(MediaError::MissingField(_)) => {
                    assert!(["start", "media", "dtmf", "mark"].contains(&event.as_str()));
                }
                other => panic!("unexpected {other:?} for {text}"),
            }
        }
    }
}

/// parse(serialise(fields)) gives back the fields, for every kind of frame and any values
/// (escapes, non-ASCII, numbers as strings or numbers, padded or unpadded base64).
#[test]
fn fuzz_media_inbound_round_trip() {
    check!()
        .with_type::<Frame>()
        .with_iterations(CI_ITERATIONS)
        .for_each(round_trip);
}

/// What [`OutboundWriter`] renders parses back to what it was given, for any stream SID, mark
/// name and audio: the writer's hand-rolled JSON escaping is checked against `serde_json`.
#[test]
fn fuzz_media_outbound_round_trip() {
    let mut writer = OutboundWriter::new();
    let mut out = Vec::new();
    check!()
        .with_type::<(Text, Text, Vec<u8>)>()
        .with_iterations(CI_ITERATIONS)
        .for_each(|(sid, name, audio)| {
            let (sid, name) = (sid.string(), name.string());
            let text = writer.media(&sid, audio).to_owned();
            match parse_outbound(&text, usize::MAX) {
                Ok(OutboundMessage::Media {
                    stream_sid,
                    payload,
                }) => {
                    assert_eq!(stream_sid.as_deref(), Some(sid.as_str()));
                    assert_eq!(
                        decode_payload_into(&payload, &mut out).ok(),
                        Some(audio.len())
                    );
                    assert_eq!(&out, audio);
                }
                other => panic!("{other:?} from {text}"),
            }
            // The same text is a valid inbound `media` frame too (Twilio's and ours share it).
            let Ok(InboundMessage::Media(m)) = parse_inbound(&text) else {
                panic!("writer output is not an inbound media frame: {text}")
            };
            assert_eq!(m.decode_into(&mut out).ok(), Some(audio.len()));

            let text = writer.mark(&sid, &name).to_owned();
            let value: Value = serde_json::from_str(&text).expect("mark is JSON");
            assert_eq!(value["mark"]["name"], name.as_str());
            assert_eq!(
                parse_outbound(&text, usize::MAX).ok(),
                Some(OutboundMessage::Mark {
                    stream_sid: Some(sid.as_str().into()),
                    name: name.as_str().into(),
                })
            );

            let text = writer.clear(&sid).to_owned();
            assert_eq!(
                parse_outbound(&text, usize::MAX).ok(),
                Some(OutboundMessage::Clear {
                    stream_sid: Some(sid.as_str().into()),
                })
            );
        });
}
