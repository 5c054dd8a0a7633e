//! Fuzz targets for everything this crate parses from provider servers: SSE streams and the
//! OpenAI / Anthropic events in them, Deepgram live and Flux messages, HTTP error bodies and TTS
//! audio headers. Base URLs are tenant settings, so the "server" may be anyone's.
//!
//! They live inside the crate because the parsers are crate-private. Bounded runs happen under
//! `cargo test`; `scripts/fuzz.sh` runs each target for millions of inputs (see
//! `docs/security/fuzzing.md`).

use bolero::check;
use bolero::generator::TypeGenerator;
use bytes::Bytes;
use serde_json::{Value, json};
use switchboard_fuzzkit::{Edit, Json, Text, apply_edits, text_from_bytes};

use crate::error::ProviderError;
use crate::llm::{Decoder, LlmEvent, http_error};
use crate::sse::{SseError, SseEvent, SseParser};
use crate::stt::SttEvent;
use crate::stt::deepgram::parse_live;
use crate::stt::protocol::Parsed;
use crate::tts::strip_audio_header;
use crate::ws::error_text_from_body;

/// Inputs per target under `cargo test` (`BOLERO_RANDOM_ITERATIONS` overrides it).
const CI_ITERATIONS: usize = 20_000;

// ----- SSE -----------------------------------------------------------------------------------

/// One line of an event stream, and how it ends.
#[derive(Debug, Clone, TypeGenerator)]
enum Line {
    Data(Text),
    Event(Text),
    Comment(Text),
    /// `id:` / `retry:` / unknown fields.
    Other(Text, Text),
    Blank,
    /// Anything, e.g. invalid UTF-8 (only line ends are taken out).
    Raw(Vec<u8>),
}

#[derive(Debug, Clone, TypeGenerator)]
struct Stream {
    #[generator(Vec::produce().with().len(0usize..24))]
    lines: Vec<(Line, u8)>,
    /// Where the bytes are split into reads.
    cuts: Vec<u16>,
}

const LINE_ENDS: &[&[u8]] = &[b"\n", b"\r\n", b"\r", b""];

impl Stream {
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (line, end) in &self.lines {
            match line {
                Line::Data(t) => out.extend(format!("data: {}", t.string()).bytes()),
                Line::Event(t) => out.extend(format!("event:{}", t.string()).bytes()),
                Line::Comment(t) => out.extend(format!(":{}", t.string()).bytes()),
                Line::Other(k, v) => out.extend(format!("{}: {}", k.string(), v.string()).bytes()),
                Line::Blank => {}
                Line::Raw(b) => out.extend(b.iter().filter(|b| **b != b'\n' && **b != b'\r')),
            }
            out.extend_from_slice(LINE_ENDS[usize::from(*end) % LINE_ENDS.len()]);
        }
        out
    }
}

/// Events of `chunks` fed in order, then `finish`.
fn sse_events(chunks: &[&[u8]]) -> Vec<(String, String)> {
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    let mut on_event = |e: SseEvent<'_>| events.push((e.event.to_owned(), e.data.to_owned()));
    for chunk in chunks {
        parser
            .feed(chunk, &mut on_event)
            .expect("fuzz inputs are far below the bound");
    }
    parser
        .finish(&mut on_event)
        .expect("fuzz inputs are far below the bound");
    events
}

/// A reference SSE reader (whole input at once, per the HTML spec's rules as the parser
/// documents them), to check the incremental parser against.
fn reference_events(input: &[u8]) -> Vec<(String, String)> {
    let mut lines: Vec<&[u8]> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'\n' => {
                lines.push(&input[start..i]);
                start = i + 1;
            }
            b'\r' => {
                lines.push(&input[start..i]);
                if input.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < input.len() {
        lines.push(&input[start..]);
    }
    let mut events = Vec::new();
    let (mut event, mut data, mut has_data) = (String::new(), String::new(), false);
    let mut dispatch = |event: &mut String, data: &mut String, has_data: &mut bool| {
        if *has_data {
            let d = data.strip_suffix('\n').unwrap_or(data).to_owned();
            events.push((event.clone(), d));
        }
        event.clear();
        data.clear();
        *has_data = false;
    };
    for line in lines {
        if line.is_empty() {
            dispatch(&mut event, &mut data, &mut has_data);
            continue;
        }
        if line[0] == b':' {
            continue;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                data.push_str(&String::from_utf8_lossy(value));
                data.push('\n');
                has_data = true;
            }
            b"event" => event = String::from_utf8_lossy(value).into_owned(),
            _ => {}
        }
    }
    dispatch(&mut event, &mut data, &mut has_data);
    events
}

/// Splits `bytes` at `cuts` (positions modulo the length, sorted).
fn split<'a>(bytes: &'a [u8], cuts: &[u16]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|c| usize::from(*c) % (bytes.len() + 1))
        .collect();
    at.sort_unstable();
    let mut chunks = Vec::new();
    let mut prev = 0;
    for p in at {
        chunks.push(&bytes[prev..p]);
        prev = p;
    }
    chunks.push(&bytes[prev..]);
    chunks
}

fn check_sse(bytes: &[u8], cuts: &[u16]) {
    let whole = sse_events(&[bytes]);
    assert_eq!(
        whole,
        reference_events(bytes),
        "incremental parser vs reference"
    );
    assert_eq!(
        sse_events(&split(bytes, cuts)),
        whole,
        "the same bytes in other reads give the same events"
    );
    for (event, data) in &whole {
        assert!(!event.contains(['\n', '\r']) && !data.contains('\r'));
    }
}

/// Any byte stream, read in any chunks, gives the events a whole-input reference reader gives.
#[test]
fn fuzz_sse_arbitrary_bytes() {
    check!()
        .with_type::<(Vec<u8>, Vec<u16>)>()
        .with_iterations(CI_ITERATIONS)
        .for_each(|(bytes, cuts)| check_sse(bytes, cuts));
}

/// Event streams built from lines (all line ends, comments, unknown fields, invalid UTF-8),
/// read in any chunks, give the reference reader's events.
#[test]
fn fuzz_sse_structured_streams() {
    check!()
        .with_type::<Stream>()
        .with_iterations(CI_ITERATIONS)
        .for_each(|s| check_sse(&s.bytes(), &s.cuts));
}

/// A parser with a small bound (so fuzz inputs reach it) either gives exactly the events of an
/// unbounded read or stops with `EventTooLarge` after delivering a prefix of them; it holds
/// no more than a few times its bound between reads, nothing after refusing, and never refuses
/// an input that fits in a third of its bound.
#[test]
fn fuzz_sse_bounded_memory() {
    check!()
        .with_type::<(Stream, u16)>()
        .with_iterations(CI_ITERATIONS)
        .for_each(|(s, bound)| {
            let bytes = s.bytes();
            let bound = usize::from(*bound % 512) + 1;
            let mut parser = SseParser::with_max_event_bytes(bound);
            let mut events = Vec::new();
            let mut on_event =
                |e: SseEvent<'_>| events.push((e.event.to_owned(), e.data.to_owned()));
            let mut result = Ok(());
            for chunk in split(&bytes, &s.cuts) {
                result = parser.feed(chunk, &mut on_event);
                if result.is_err() {
                    break;
                }
                assert!(
                    parser.buffered_bytes() <= 5 * bound,
                    "{}",
                    parser.buffered_bytes()
                );
            }
            if result.is_ok() {
                result = parser.finish(&mut on_event);
            }
            let reference = reference_events(&bytes);
            match result {
                Ok(()) => assert_eq!(events, reference),
                Err(e) => {
                    assert_eq!(e, SseError::EventTooLarge { limit_bytes: bound });
                    assert_eq!(parser.buffered_bytes(), 0);
                    assert!(reference.starts_with(&events));
                    assert!(bytes.len() * 3 >= bound, "refused a small input");
                }
            }
        });
}

// ----- LLM stream decoders -------------------------------------------------------------------

/// Feeds SSE bytes through a decoder the way `drive_sse` does (stops at the first completion
/// or error, calls `on_eof` at the end). Returns the events and the error, if any.
fn decode(
    dec: &mut impl Decoder,
    chunks: &[&[u8]],
) -> (Vec<LlmEvent>, Option<ProviderError>, bool) {
    let mut parser = SseParser::new();
    let mut out = Vec::new();
    let mut failure = None;
    let mut finished = false;
    let mut on_event = |ev: SseEvent<'_>| {
        if finished || failure.is_some() {
            return;
        }
        match dec.on_event(ev, &mut out) {
            Ok(done) => finished = done,
            Err(e) => failure = Some(e),
        }
    };
    // As `drive_sse` does: a refused stream is a protocol error.
    let mut parsed = Ok(());
    for chunk in chunks {
        parsed = parser.feed(chunk, &mut on_event);
        if parsed.is_err() {
            break;
        }
    }
    if parsed.is_ok() {
        parsed = parser.finish(&mut on_event);
    }
    if let Err(e) = parsed
        && !finished
        && failure.is_none()
    {
        failure = Some(ProviderError::Protocol {
            provider: "fuzz",
            message: e.to_string(),
        });
    }
    if !finished && failure.is_none() {
        match dec.on_eof(&mut out) {
            Ok(done) => finished = done,
            Err(e) => failure = Some(e),
        }
    }
    (out, failure, finished)
}

/// What must hold for any stream: a completed reply ends with exactly one `Done`, nothing
/// follows it, and a failed one has none; errors are typed protocol or stream errors.
fn check_llm_output(out: &[LlmEvent], failure: &Option<ProviderError>, finished: bool) {
    let dones = out
        .iter()
        .filter(|e| matches!(e, LlmEvent::Done { .. }))
        .count();
    if finished {
        assert_eq!(dones, 1, "{out:?}");
        assert!(matches!(out.last(), Some(LlmEvent::Done { .. })));
    } else {
        assert_eq!(dones, 0);
    }
    assert!(
        out.iter()
            .all(|e| matches!(e, LlmEvent::Text(t) if !t.is_empty())
                || matches!(e, LlmEvent::ToolCall(_) | LlmEvent::Done { .. }))
    );
    if let Some(e) = failure {
        assert!(
            matches!(
                e,
                ProviderError::Protocol { .. } | ProviderError::Stream { .. }
            ),
            "{e:?}"
        );
        let _ = e.to_string();
    }
}

/// One SSE event of a generated stream: its text, the reply text it carries, and whether it
/// ends the reply (`[DONE]`, `message_stop`).
struct Wire {
    sse: String,
    text: Option<String>,
    ends: bool,
}

impl Wire {
    fn data(v: Value) -> Self {
        Self::raw(format!("data: {v}\n\n"))
    }

    fn event(name: &str, v: Value) -> Self {
        Self::raw(format!("event: {name}\ndata: {v}\n\n"))
    }

    fn raw(sse: String) -> Self {
        Self {
            sse,
            text: None,
            ends: false,
        }
    }

    fn text(mut self, text: String) -> Self {
        self.text = Some(text);
        self
    }

    fn ends(mut self) -> Self {
        self.ends = true;
        self
    }
}

/// Puts the `bad` event (if any) among `good` ones, then returns the bytes of the stream and
/// the reply text sent before the first event that ends the reply.
fn assemble(mut wires: Vec<Wire>, bad: Option<(u8, Wire)>) -> (Vec<u8>, String) {
    if let Some((at, wire)) = bad {
        let at = usize::from(at) % (wires.len() + 1);
        wires.insert(at, wire);
    }
    let bytes = wires.iter().flat_map(|w| w.sse.bytes()).collect();
    let sent = wires
        .iter()
        .take_while(|w| !w.ends)
        .filter_map(|w| w.text.clone())
        .collect();
    (bytes, sent)
}

/// The reply text a decoder passed on must be the text sent before the reply ended, or a
/// prefix of it when the stream broke with an error.
fn check_reply_text(out: &[LlmEvent], failure: &Option<ProviderError>, sent: &str) {
    let text: String = out
        .iter()
        .filter_map(|e| match e {
            LlmEvent::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    if failure.is_none() {
        assert_eq!(
            text, sent,
            "without an error, the reply is all the text sent"
        );
    } else {
        assert!(
            sent.starts_with(&text),
            "the reply is a prefix of what was sent"
        );
    }
}

/// One ordinary `chat.completion.chunk` (or `[DONE]`) of an OpenAI-compatible stream.
#[derive(Debug, Clone, TypeGenerator)]
enum OpenAiEvent {
    Text(Text),
    OtherChoice(Text),
    Tool {
        index: u8,
        id: Option<Text>,
        name: Option<Text>,
        arguments: Option<Text>,
        json_arguments: Option<Json>,
    },
    Finish(u8),
    Usage(u32, u32, Option<u32>),
    Done,
}

/// Events that end or confuse an OpenAI stream: an error (wrapped or as `event: error`), a
/// chunk of arbitrary JSON, a non-JSON data line.
#[derive(Debug, Clone, TypeGenerator)]
enum OpenAiBad {
    Error(Text, Text, Text, bool),
    Raw(Json),
    Garbage(Text),
}

const FINISH_REASONS: &[&str] = &[
    "stop",
    "length",
    "tool_calls",
    "content_filter",
    "function_call",
    "",
    "weird",
];

impl OpenAiEvent {
    fn wire(&self) -> Wire {
        match self {
            OpenAiEvent::Text(t) => {
                Wire::data(json!({"choices": [{"index": 0, "delta": {"content": t.string()}}]}))
                    .text(t.string())
            }
            OpenAiEvent::OtherChoice(t) => {
                Wire::data(json!({"choices": [{"index": 1, "delta": {"content": t.string()}}]}))
            }
            OpenAiEvent::Tool {
                index,
                id,
                name,
                arguments,
                json_arguments,
            } => {
                let arguments = match (arguments, json_arguments) {
                    (_, Some(j)) => Some(j.to_value(&["city", "n"], &["Paris"]).to_string()),
                    (a, None) => a.as_ref().map(Text::string),
                };
                Wire::data(json!({"choices": [{"index": 0, "delta": {"tool_calls": [{
                    "index": index % 3,
                    "id": id.as_ref().map(Text::string),
                    "function": {"name": name.as_ref().map(Text::string), "arguments": arguments},
                }]}}]}))
            }
            OpenAiEvent::Finish(r) => Wire::data(json!({"choices": [{"index": 0, "delta": {},
                "finish_reason": FINISH_REASONS[usize::from(*r) % FINISH_REASONS.len()]}]})),
            OpenAiEvent::Usage(p, c, cached) => {
                Wire::data(json!({"choices": [], "usage": {"prompt_tokens": p,
                    "completion_tokens": c, "prompt_tokens_details": {"cached_tokens": cached}}}))
            }
            OpenAiEvent::Done => Wire::raw("data: [DONE]\n\n".to_owned()).ends(),
        }
    }
}

impl OpenAiBad {
    fn wire(&self) -> Wire {
        match self {
            OpenAiBad::Error(kind, code, message, wrapped) => {
                let e = json!({"type": kind.string(), "code": code.string(),
                    "message": message.string()});
                if *wrapped {
                    Wire::data(json!({ "error": e }))
                } else {
                    Wire::event("error", e)
                }
            }
            OpenAiBad::Raw(j) => Wire::data(j.to_value(
                &["choices", "delta", "content", "index", "error", "usage"],
                &[],
            )),
            OpenAiBad::Garbage(t) => {
                let wire = Wire::raw(format!("data: {}\n\n", t.string()));
                // Garbage may spell the terminator too.
                if t.string().trim() == "[DONE]" {
                    wire.ends()
                } else {
                    wire
                }
            }
        }
    }
}

/// Up to 12 ordinary events with at most one bad one among them, read in the given cuts.
#[derive(Debug, Clone, TypeGenerator)]
struct OpenAiStream {
    #[generator(Vec::produce().with().len(0usize..12))]
    events: Vec<OpenAiEvent>,
    bad: Option<(u8, OpenAiBad)>,
    cuts: Vec<u16>,
}

/// OpenAI-compatible streams of generated chunks, read in any chunks: no panic; a completed
/// reply ends with one `Done`; the text passed on is exactly the text deltas of choice 0 sent
/// before `[DONE]` (a prefix of it when the stream broke).
#[test]
fn fuzz_llm_openai_stream() {
    check!()
        .with_type::<OpenAiStream>()
        .with_iterations(CI_ITERATIONS)
        .for_each(|stream| {
            let (bytes, sent) = assemble(
                stream.events.iter().map(OpenAiEvent::wire).collect(),
                stream.bad.as_ref().map(|(at, b)| (*at, b.wire())),
            );
            let mut dec = crate::openai::Decoder::new("openai");
            let (out, failure, finished) = decode(&mut dec, &split(&bytes, &stream.cuts));
            check_llm_output(&out, &failure, finished);
            // Arbitrary JSON may carry text of its own.
            if !matches!(stream.bad, Some((_, OpenAiBad::Raw(_)))) {
                check_reply_text(&out, &failure, &sent);
            }
        });
}

/// One ordinary event of an Anthropic Messages stream.
#[derive(Debug, Clone, TypeGenerator)]
enum AnthropicEvent {
    MessageStart(Option<u32>),
    TextStart(u8, Text),
    ToolStart(u8, Text, Text),
    TextDelta(u8, Text),
    JsonDelta(u8, Text),
    JsonValue(u8, Json),
    Stop(u8),
    MessageDelta(u8, Option<u32>),
    MessageStop,
    Ping,
}

/// Events that end or confuse an Anthropic stream: an error event, arbitrary JSON.
#[derive(Debug, Clone, TypeGenerator)]
enum AnthropicBad {
    Error(Text, Text),
    Raw(Json),
}

impl AnthropicEvent {
    fn wire(&self) -> Wire {
        let index = |i: &u8| i % 3;
        match self {
            AnthropicEvent::MessageStart(tokens) => Wire::event(
                "message_start",
                json!({"type": "message_start", "message": {"usage": {"input_tokens": tokens}}}),
            ),
            AnthropicEvent::TextStart(i, t) => Wire::event(
                "content_block_start",
                json!({"type": "content_block_start", "index": index(i),
                    "content_block": {"type": "text", "text": t.string()}}),
            )
            .text(t.string()),
            AnthropicEvent::ToolStart(i, id, name) => Wire::event(
                "content_block_start",
                json!({"type": "content_block_start", "index": index(i),
                    "content_block": {"type": "tool_use", "id": id.string(), "name": name.string()}}),
            ),
            AnthropicEvent::TextDelta(i, t) => Wire::event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index(i),
                    "delta": {"type": "text_delta", "text": t.string()}}),
            )
            .text(t.string()),
            AnthropicEvent::JsonDelta(i, t) => Wire::event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index(i),
                    "delta": {"type": "input_json_delta", "partial_json": t.string()}}),
            ),
            AnthropicEvent::JsonValue(i, j) => Wire::event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index(i),
                    "delta": {"type": "input_json_delta",
                        "partial_json": j.to_value(&["city"], &["Paris"]).to_string()}}),
            ),
            AnthropicEvent::Stop(i) => Wire::event(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": index(i)}),
            ),
            AnthropicEvent::MessageDelta(r, tokens) => Wire::event(
                "message_delta",
                json!({"type": "message_delta",
                    "delta": {"stop_reason": FINISH_REASONS[usize::from(*r) % FINISH_REASONS.len()]},
                    "usage": {"output_tokens": tokens}}),
            ),
            AnthropicEvent::MessageStop => {
                Wire::event("message_stop", json!({"type": "message_stop"})).ends()
            }
            AnthropicEvent::Ping => Wire::event("ping", json!({"type": "ping"})),
        }
    }
}

impl AnthropicBad {
    fn wire(&self) -> Wire {
        match self {
            AnthropicBad::Error(kind, message) => Wire::event(
                "error",
                json!({"type": "error", "error": {"type": kind.string(), "message": message.string()}}),
            ),
            AnthropicBad::Raw(j) => Wire::event(
                "x",
                j.to_value(
                    &["type", "index", "delta", "content_block", "message"],
                    &["message_start", "content_block_delta", "text_delta"],
                ),
            ),
        }
    }
}

/// Up to 12 ordinary events with at most one bad one among them, read in the given cuts.
#[derive(Debug, Clone, TypeGenerator)]
struct AnthropicStream {
    #[generator(Vec::produce().with().len(0usize..12))]
    events: Vec<AnthropicEvent>,
    bad: Option<(u8, AnthropicBad)>,
    cuts: Vec<u16>,
}

/// Anthropic streams of generated events, read in any chunks: no panic; a completed reply ends
/// with one `Done`; the text passed on is all the text sent before `message_stop` (a prefix of
/// it when the stream broke).
#[test]
fn fuzz_llm_anthropic_stream() {
    check!()
        .with_type::<AnthropicStream>()
        .with_iterations(CI_ITERATIONS)
        .for_each(|stream| {
            let (bytes, sent) = assemble(
                stream.events.iter().map(AnthropicEvent::wire).collect(),
                stream.bad.as_ref().map(|(at, b)| (*at, b.wire())),
            );
            let mut dec = crate::anthropic::Decoder::new();
            let (out, failure, finished) = decode(&mut dec, &split(&bytes, &stream.cuts));
            check_llm_output(&out, &failure, finished);
            if !matches!(stream.bad, Some((_, AnthropicBad::Raw(_)))) {
                check_reply_text(&out, &failure, &sent);
            }
        });
}

/// Arbitrary bytes as an OpenAI or Anthropic stream: no panic, outputs well formed.
#[test]
fn fuzz_llm_arbitrary_streams() {
    check!()
        .with_type::<(Vec<u8>, Vec<u16>)>()
        .with_iterations(CI_ITERATIONS)
        .for_each(|(bytes, cuts)| {
            let chunks = split(bytes, cuts);
            let (out, failure, finished) =
                decode(&mut crate::openai::Decoder::new("openai"), &chunks);
            check_llm_output(&out, &failure, finished);
            let (out, failure, finished) = decode(&mut crate::anthropic::Decoder::new(), &chunks);
            check_llm_output(&out, &failure, finished);
        });
}

// ----- HTTP error bodies ---------------------------------------------------------------------

/// Any error body (JSON or not), status and `x-should-retry`: no panic, the message is bounded
/// (300 characters), `x-should-retry` decides retryability when present, and the error text
/// of a websocket handshake body is bounded too (300 bytes).
#[test]
fn fuzz_http_error_bodies() {
    check!()
        .with_type::<(Vec<u8>, Option<Json>, u16, Option<bool>)>()
        .with_iterations(CI_ITERATIONS)
        .for_each(|(raw, json_body, status, should_retry)| {
            let body = match json_body {
                Some(j) => j
                    .to_value(
                        &["error", "code", "type", "message", "detail", "err_msg"],
                        &["insufficient_quota", "rate_limit_error"],
                    )
                    .to_string()
                    .into_bytes(),
                None => raw.clone(),
            };
            match http_error("openai", *status, *should_retry, &body) {
                ProviderError::Http {
                    status: s,
                    message,
                    retryable,
                    ..
                } => {
                    assert_eq!(s, *status);
                    assert!(message.chars().count() <= 300);
                    if let Some(r) = should_retry {
                        assert_eq!(retryable, *r);
                    }
                }
                other => panic!("{other:?}"),
            }
            assert!(error_text_from_body(&body).len() <= 300);
        });
}

// ----- TTS audio -----------------------------------------------------------------------------

/// Any audio chunk: stripping a WAV or `.snd` header yields a suffix of the chunk (nothing
/// invented, nothing reordered), and a chunk without such a header is left alone.
#[test]
fn fuzz_tts_audio_header() {
    check!()
        .with_type::<(u8, Vec<Edit>, Vec<u8>)>()
        .with_iterations(CI_ITERATIONS)
        .for_each(|(kind, edits, raw)| {
            let mut wav = b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00".to_vec();
            wav.extend([1, 0, 1, 0, 0x40, 0x1f, 0, 0, 0x40, 0x1f, 0, 0, 1, 0, 8, 0]);
            wav.extend(b"data\x04\x00\x00\x00\xff\x7f\xff\x7f");
            let snd = b".snd\x00\x00\x00\x18\xff\xff\xff\xff\x00\x00\x00\x01\x00\x00\x1f\x40\x00\x00\x00\x01\xff\x7f";
            let audio = match kind % 3 {
                0 => apply_edits(&wav, edits, &["RIFF", "WAVE", "data", "\u{ff}\u{ff}\u{ff}\u{ff}"]),
                1 => apply_edits(snd, edits, &[".snd", "\u{ff}\u{ff}\u{ff}\u{ff}"]),
                _ => raw.clone(),
            };
            let out = strip_audio_header(Bytes::from(audio.clone()));
            assert!(audio.ends_with(&out), "a suffix of the input");
            if !audio.starts_with(b"RIFF") && !audio.starts_with(b".snd") {
                assert_eq!(&out[..], &audio[..]);
            }
        });
}

// ----- Deepgram ------------------------------------------------------------------------------

/// A word as Deepgram sends it.
#[derive(Debug, Clone, TypeGenerator)]
struct DgWordSpec {
    word: Text,
    /// Tenths of a second.
    start: Option<u16>,
    end: Option<u16>,
    confidence: f32,
    punctuated: Option<Text>,
    speaker: Option<u32>,
}

impl DgWordSpec {
    fn json(&self) -> Value {
        let s = |t: Option<u16>| t.map(|t| f64::from(t) / 10.0);
        json!({"word": self.word.string(), "start": s(self.start), "end": s(self.end),
            "confidence": if self.confidence.is_finite() { self.confidence } else { 0.0 },
            "punctuated_word": self.punctuated.as_ref().map(Text::string), "speaker": self.speaker})
    }
}

/// A Deepgram live (`/v1/listen`) or Flux (`/v2/listen`) message.
#[derive(Debug, Clone, TypeGenerator)]
enum DgMessage {
    Results {
        transcript: Text,
        is_final: bool,
        speech_final: bool,
        from_finalize: bool,
        start: u16,
        #[generator(Vec::produce().with().len(0usize..6))]
        words: Vec<DgWordSpec>,
    },
    UtteranceEnd(u16),
    SpeechStarted(u16),
    Metadata,
    Error(Text, Text),
    TurnInfo {
        event: u8,
        transcript: Text,
        #[generator(Vec::produce().with().len(0usize..6))]
        words: Vec<DgWordSpec>,
        window_start: u16,
        window_end: u16,
    },
    Raw(Json),
    Damaged(u8, Vec<Edit>),
}

const FLUX_EVENTS: &[&str] = &[
    "StartOfTurn",
    "Update",
    "EagerEndOfTurn",
    "TurnResumed",
    "EndOfTurn",
    "Other",
];

const DG_SEEDS: &[&str] = &[
    r#"{"type":"Results","start":1.0,"duration":0.5,"is_final":true,"speech_final":true,"channel":{"alternatives":[{"transcript":"yes please","confidence":0.9,"words":[{"word":"yes","start":1.0,"end":1.2,"confidence":0.95}]}]}}"#,
    r#"{"type":"TurnInfo","event":"EndOfTurn","transcript":"book a table","end_of_turn_confidence":0.9,"audio_window_start":1.0,"audio_window_end":2.0,"words":[{"word":"book","confidence":0.9}]}"#,
];

impl DgMessage {
    fn text(&self) -> String {
        let words = |w: &[DgWordSpec]| w.iter().map(DgWordSpec::json).collect::<Vec<_>>();
        match self {
            DgMessage::Results {
                transcript,
                is_final,
                speech_final,
                from_finalize,
                start,
                words: w,
            } => json!({"type": "Results", "start": f64::from(*start) / 10.0, "duration": 0.5,
                "is_final": is_final, "speech_final": speech_final, "from_finalize": from_finalize,
                "channel": {"alternatives": [{"transcript": transcript.string(), "confidence": 0.5,
                    "words": words(w)}]}})
            .to_string(),
            DgMessage::UtteranceEnd(t) => {
                json!({"type": "UtteranceEnd", "last_word_end": f64::from(*t) / 10.0}).to_string()
            }
            DgMessage::SpeechStarted(t) => {
                json!({"type": "SpeechStarted", "timestamp": f64::from(*t) / 10.0}).to_string()
            }
            DgMessage::Metadata => json!({"type": "Metadata", "request_id": "r"}).to_string(),
            DgMessage::Error(v, d) => {
                json!({"type": "Error", "variant": v.string(), "description": d.string()})
                    .to_string()
            }
            DgMessage::TurnInfo {
                event,
                transcript,
                words: w,
                window_start,
                window_end,
            } => json!({"type": "TurnInfo",
                "event": FLUX_EVENTS[usize::from(*event) % FLUX_EVENTS.len()],
                "transcript": transcript.string(), "words": words(w),
                "end_of_turn_confidence": 0.7,
                "audio_window_start": f64::from(*window_start) / 10.0,
                "audio_window_end": f64::from(*window_end) / 10.0})
            .to_string(),
            DgMessage::Raw(j) => j
                .to_value(
                    &[
                        "type",
                        "channel",
                        "alternatives",
                        "transcript",
                        "words",
                        "event",
                    ],
                    &["Results", "TurnInfo", "EndOfTurn", "Update", "Metadata"],
                )
                .to_string(),
            DgMessage::Damaged(seed, edits) => text_from_bytes(&apply_edits(
                DG_SEEDS[usize::from(*seed) % DG_SEEDS.len()].as_bytes(),
                edits,
                &["\"Results\"", "\"TurnInfo\"", "\"words\"", "null", "1e308"],
            )),
        }
    }
}

/// Deepgram messages of every kind (and damaged or arbitrary ones) through both parsers: no
/// panic; a live transcript keeps the text and every word, with call-relative times (a word
/// without times takes the transcript's start); Flux turn events keep the transcript.
#[test]
fn fuzz_stt_deepgram_messages() {
    const OFFSET_S: f64 = 12.5;
    check!()
        .with_type::<DgMessage>()
        .with_iterations(CI_ITERATIONS)
        .for_each(|m| {
            let text = m.text();
            let mut live = Vec::new();
            let parsed = parse_live(&text, OFFSET_S, &mut live);
            let mut flux = Vec::new();
            // Flux has no Metadata summary: nothing it parses ends the stream like one.
            assert_ne!(
                crate::stt::deepgram_flux::parse(&text, OFFSET_S, &mut flux),
                Parsed::EndOfStream
            );
            match m {
                DgMessage::Results {
                    transcript,
                    is_final,
                    words,
                    start,
                    speech_final,
                    from_finalize,
                } => {
                    let t = transcript.string();
                    if t.trim().is_empty() && !speech_final && !from_finalize {
                        assert!(live.is_empty());
                    } else {
                        let [
                            SttEvent::Transcript {
                                text,
                                is_final: f,
                                start_s,
                                words: w,
                                ..
                            },
                        ] = live.as_slice()
                        else {
                            panic!("one transcript expected: {live:?}")
                        };
                        assert_eq!(text, &t);
                        assert_eq!(f, is_final);
                        assert_eq!(*start_s, OFFSET_S + f64::from(*start) / 10.0);
                        assert_eq!(w.len(), words.len());
                        for (got, sent) in w.iter().zip(words) {
                            assert_eq!(got.word, sent.word.string());
                            let start = sent.start.map_or(f64::from(*start), f64::from);
                            assert_eq!(got.start_s, OFFSET_S + start / 10.0);
                        }
                    }
                }
                DgMessage::Metadata => assert_eq!(parsed, Parsed::EndOfStream),
                DgMessage::TurnInfo {
                    event, transcript, ..
                } => {
                    let t = transcript.string();
                    match FLUX_EVENTS[usize::from(*event) % FLUX_EVENTS.len()] {
                        "EndOfTurn" => assert!(matches!(
                            flux.as_slice(),
                            [SttEvent::EndOfTurn { transcript, .. }] if *transcript == t
                        )),
                        "EagerEndOfTurn" => assert!(matches!(
                            flux.as_slice(),
                            [SttEvent::EagerEndOfTurn { transcript, .. }] if *transcript == t
                        )),
                        "StartOfTurn" => assert_eq!(flux, [SttEvent::StartOfTurn]),
                        "TurnResumed" => assert_eq!(flux, [SttEvent::TurnResumed]),
                        "Other" => assert!(flux.is_empty()),
                        _ => {}
                    }
                }
                _ => {}
            }
        });
}
