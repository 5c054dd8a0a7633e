//! A fake of Deepgram's websocket API on 127.0.0.1: live STT (`/v1/listen`), Flux
//! (`/v2/listen`) and Aura TTS (`/v1/speak`), written from `docs/providers/deepgram-stt.md`, `deepgram-flux.md`, `deepgram-aura.md`.
//!
//! The STT side transcribes REAL audio without an ASR: a simple energy detector on 20 ms µ-law
//! frames finds speech segments; what was "said" comes from a script (a queue of expected
//! utterance texts). Timestamps follow the bytes received (8000 bytes = 1 s). The fake records
//! every connection (query, auth, frames, messages) and when it sent each message, so tests can
//! assert on the protocol and the load harness can subtract provider time from turn latency.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use switchboard_testkit::deepgram::{DeepgramFake, DeepgramFakeConfig};
//! let fake = DeepgramFake::start(DeepgramFakeConfig {
//!     default_script: vec!["I need to reschedule".into()],
//!     ..DeepgramFakeConfig::default()
//! })
//! .await?;
//! let base = fake.base_url(); // put into stt_settings.provider_config.base_url
//! # let _ = base; Ok(()) }
//! ```

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};

use crate::fault::{Fault, FaultKind, FaultState};
use crate::latency::LatencyProfile;
use crate::tcp_server::TcpFakeServer;

mod aura;
mod listen;
pub mod manage;
pub mod mulaw;

/// What the fake does. `Default` is a well-behaved Deepgram with key `test-deepgram-key`.
#[derive(Debug, Clone)]
pub struct DeepgramFakeConfig {
    /// The key expected in `Authorization: Token <key>`.
    pub api_key: String,
    /// Delays (final after speech end, TTS first byte and pacing).
    pub latency: LatencyProfile,
    /// Utterance texts for connections without a script of their own (a fresh copy each).
    pub default_script: Vec<String>,
    /// Scripts by connection order (the n-th STT connection without a known `tag` takes the
    /// n-th entry).
    pub connection_scripts: Vec<Vec<String>>,
    /// Scripts by the `tag` query parameter: one queue per tag shared by all connections with
    /// that tag, so a reconnecting call continues where it was.
    pub tag_scripts: HashMap<String, Vec<String>>,
    /// Time-aligned scripts by `tag` (tried before `tag_scripts`): the words of each utterance
    /// are spread evenly over its `[start_ms, end_ms]` of stream time, and a speech segment
    /// "recognises" exactly the words spoken during it. A pause inside a sentence or a cough
    /// then splits or empties segments the way a real recogniser would, instead of using up
    /// whole script lines. Live `/v1/listen` only; Flux takes the utterances whole, in order.
    pub timed_scripts: HashMap<String, Vec<TimedUtterance>>,
    /// Text used once a script has run out.
    pub fallback_text: String,
    /// Mean absolute linear amplitude above which a 20 ms frame counts as speech.
    pub energy_threshold: f32,
    /// Speech frames in a row (ms) needed before a segment starts (filters clicks).
    pub min_speech_ms: u64,
    /// Smallest silence (ms) that ends a segment, whatever `endpointing` says (the energy
    /// detector needs some hangover; real Deepgram is model-based).
    pub min_segment_gap_ms: u64,
    /// Interim results every this much speech audio (ms).
    pub interim_every_ms: u64,
    /// Silence (ms) after which an empty final is sent (Deepgram does send empty results).
    pub empty_result_every_ms: u64,
    /// Close with 1011 `NET-0001` after this long (ms, wall clock) with neither audio nor
    /// `KeepAlive`.
    pub idle_timeout_ms: u64,
    /// Flux: silence (ms) after speech that ends a turn (`EndOfTurn`).
    pub flux_eot_silence_ms: u64,
    /// Flux: silence (ms) after speech that triggers `EagerEndOfTurn` (when eager mode is on).
    pub flux_eager_silence_ms: u64,
    /// Failure knob: drop the TCP connection (no close frame) this long (ms) after the
    /// handshake, for the first `drop_connections` STT connections.
    pub drop_after_ms: Option<u64>,
    /// How many STT connections (in order) `drop_after_ms` applies to.
    pub drop_connections: usize,
    /// Failure knob: refuse handshakes with this HTTP status (from connection index
    /// `reject_from_connection` on).
    pub reject_status: Option<u16>,
    /// First connection index (0-based, all paths) that `reject_status` applies to.
    pub reject_from_connection: usize,
    /// Aura: synthetic speech per character (ms) at speed 1.0.
    pub aura_ms_per_char: u64,
    /// Aura: audio per binary frame (ms).
    pub aura_chunk_ms: u64,
}

impl Default for DeepgramFakeConfig {
    fn default() -> Self {
        Self {
            api_key: "test-deepgram-key".into(),
            latency: LatencyProfile::instant(),
            default_script: Vec::new(),
            connection_scripts: Vec::new(),
            tag_scripts: HashMap::new(),
            timed_scripts: HashMap::new(),
            fallback_text: "[unintelligible]".into(),
            energy_threshold: 400.0,
            min_speech_ms: 60,
            min_segment_gap_ms: 200,
            interim_every_ms: 250,
            empty_result_every_ms: 3000,
            idle_timeout_ms: 10_000,
            flux_eot_silence_ms: 500,
            flux_eager_silence_ms: 200,
            drop_after_ms: None,
            drop_connections: 0,
            reject_status: None,
            reject_from_connection: 0,
            aura_ms_per_char: 60,
            aura_chunk_ms: 100,
        }
    }
}

/// One message the fake sent, with when.
#[derive(Debug, Clone)]
pub struct SentMessage {
    /// Wall-clock time it was written to the socket.
    pub at: Instant,
    /// `Results`, `UtteranceEnd`, `SpeechStarted`, `Metadata`, `TurnInfo:EndOfTurn`, `audio`,
    /// `Flushed`, `Cleared`, `close:1011:NET-0001` …
    pub kind: String,
    /// Transcript (STT) or empty.
    pub transcript: String,
    /// `is_final` of a `Results`.
    pub is_final: bool,
    /// `speech_final` of a `Results`.
    pub speech_final: bool,
    /// `from_finalize` of a `Results`.
    pub from_finalize: bool,
    /// Stream time (s) the message refers to (end of the covered audio; 0 for TTS).
    pub audio_s: f64,
}

/// When the fake STT decided an utterance/turn was over and when it told the client: the
/// difference is the provider latency the load harness subtracts.
#[derive(Debug, Clone)]
pub struct FinalTiming {
    /// Connection index.
    pub connection: usize,
    /// Final transcript.
    pub transcript: String,
    /// Wall-clock time the endpointing silence had elapsed in the received audio.
    pub speech_end_detected_at: Instant,
    /// Wall-clock time the final (or `EndOfTurn`) was sent.
    pub sent_at: Instant,
    /// Stream time (s) of the end of the speech.
    pub speech_end_s: f64,
}

/// Everything one connection did, for assertions.
#[derive(Debug, Clone, Default)]
pub struct ConnectionRecord {
    /// 0-based connection index (all paths).
    pub index: usize,
    /// Request path, e.g. `/v1/listen`.
    pub path: String,
    /// Query parameters in order (repeated keys kept).
    pub query: Vec<(String, String)>,
    /// The `Authorization` header as received.
    pub authorization: Option<String>,
    /// HTTP status of a refused handshake (`None` when accepted).
    pub rejected_status: Option<u16>,
    /// Audio bytes received.
    pub audio_bytes: u64,
    /// Binary frames received (non-empty).
    pub binary_frames: u64,
    /// Bytes in the largest binary frame received.
    pub largest_binary_frame: u64,
    /// Zero-length binary frames received (a client bug: Deepgram treats them as end of stream).
    pub empty_frames: u64,
    /// Every text message received, verbatim.
    pub text_messages: Vec<String>,
    /// `KeepAlive` messages received.
    pub keepalives: u64,
    /// `Finalize` (live) or `ForceEndTurn` (Flux) messages received.
    pub finalizes: u64,
    /// `CloseStream` (or Aura `Close`) messages received.
    pub close_streams: u64,
    /// Every message the fake sent, in order.
    pub sent: Vec<SentMessage>,
    /// Close code the fake sent (`None` if it never sent one).
    pub close_code: Option<u16>,
    /// Whether the fake dropped the TCP connection on purpose (failure knob).
    pub dropped_by_fake: bool,
    /// Whether the connection has ended.
    pub ended: bool,
}

impl ConnectionRecord {
    /// First value of query parameter `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All values of a repeated query parameter.
    pub fn params(&self, key: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Sent messages of one kind.
    pub fn sent_of(&self, kind: &str) -> Vec<&SentMessage> {
        self.sent.iter().filter(|m| m.kind == kind).collect()
    }
}

#[derive(Default)]
struct State {
    connections: Vec<ConnectionRecord>,
    tag_queues: HashMap<String, VecDeque<String>>,
    stt_connections: usize,
    finals: Vec<FinalTiming>,
    /// Plain REST requests (`GET /v1/projects`, `GET /v1/models`), see [`manage`].
    plain: Vec<crate::plain_http::PlainRecord>,
}

/// State shared between the accept loop and the connection tasks.
pub(crate) struct Shared {
    config: DeepgramFakeConfig,
    state: Mutex<State>,
    /// Injected fault of the STT endpoints (live and Flux); units are finals / `EndOfTurn`s.
    pub(crate) stt_fault: FaultState,
    /// Injected fault of Aura; units are `Flushed` answers.
    pub(crate) tts_fault: FaultState,
}

impl Shared {
    fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut guard = match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// Update the record of connection `index`.
    pub(crate) fn record(&self, index: usize, f: impl FnOnce(&mut ConnectionRecord)) {
        self.with_state(|s| {
            if let Some(c) = s.connections.get_mut(index) {
                f(c);
            }
        });
    }

    pub(crate) fn push_final(&self, timing: FinalTiming) {
        self.with_state(|s| s.finals.push(timing));
    }

    /// The script queue for a new STT connection.
    fn take_script(&self, tag: Option<&str>) -> Script {
        let cfg = &self.config;
        if let Some(timed) = tag.and_then(|t| cfg.timed_scripts.get(t)) {
            return Script::timed(timed);
        }
        if let Some(tag) = tag.filter(|t| cfg.tag_scripts.contains_key(*t)) {
            return Script::Tagged(tag.to_owned());
        }
        let n = self.with_state(|s| {
            let n = s.stt_connections;
            s.stt_connections += 1;
            n
        });
        let lines = cfg.connection_scripts.get(n).unwrap_or(&cfg.default_script);
        Script::Own(lines.iter().cloned().collect())
    }

    /// Next utterance text of `script`, or the fallback text.
    pub(crate) fn next_text(&self, script: &mut Script) -> String {
        let next = match script {
            Script::Own(q) => q.pop_front(),
            Script::Timed { lines, .. } => lines.pop_front(),
            Script::Tagged(tag) => self.with_state(|s| {
                let queue = s.tag_queues.entry(tag.clone()).or_insert_with(|| {
                    self.config
                        .tag_scripts
                        .get(tag)
                        .map(|v| v.iter().cloned().collect())
                        .unwrap_or_default()
                });
                queue.pop_front()
            }),
        };
        next.unwrap_or_else(|| self.config.fallback_text.clone())
    }

    pub(crate) fn config(&self) -> &DeepgramFakeConfig {
        &self.config
    }
}

/// One utterance of a time-aligned script: what was said between two points of stream time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedUtterance {
    /// Start, ms from the first audio byte of the connection.
    pub start_ms: u64,
    /// End, ms from the first audio byte.
    pub end_ms: u64,
    /// The words said (empty for noise).
    pub text: String,
}

/// How far (s) outside a segment a word's estimated time may fall and still belong to it.
const WORD_TOLERANCE_S: f64 = 0.15;

/// Where a connection's utterance texts come from.
pub(crate) enum Script {
    Own(VecDeque<String>),
    Tagged(String),
    /// Words with their estimated stream time (s); `next` is the first not yet finalised.
    Timed {
        words: Vec<(f64, String)>,
        next: usize,
        lines: VecDeque<String>,
    },
}

impl Script {
    fn timed(utterances: &[TimedUtterance]) -> Script {
        let mut words = Vec::new();
        for u in utterances {
            // A word takes time in proportion to its letters; punctuation after it is a pause
            // (a synthesiser or a person stops at a full stop). Each word is placed at the
            // middle of its own share of the utterance, before the pause that follows it.
            let list: Vec<&str> = u.text.split_whitespace().collect();
            let weight = |w: &str| -> (f64, f64) {
                let letters = w.chars().filter(|c| c.is_alphanumeric()).count().max(1) as f64 + 1.0;
                let pause = match w.chars().last() {
                    Some('.' | '?' | '!') => 6.0,
                    Some(',' | ';' | ':') => 3.0,
                    _ => 0.0,
                };
                (letters, pause)
            };
            let total: f64 = list
                .iter()
                .map(|w| weight(w).0 + weight(w).1)
                .sum::<f64>()
                .max(1.0);
            let span = u.end_ms.saturating_sub(u.start_ms) as f64 / 1000.0;
            let mut before = 0.0;
            for w in &list {
                let (letters, pause) = weight(w);
                let at = u.start_ms as f64 / 1000.0 + (before + letters / 2.0) / total * span;
                words.push((at, (*w).to_owned()));
                before += letters + pause;
            }
        }
        words.sort_by(|a, b| a.0.total_cmp(&b.0));
        Script::Timed {
            words,
            next: 0,
            lines: utterances
                .iter()
                .filter(|u| !u.text.trim().is_empty())
                .map(|u| u.text.clone())
                .collect(),
        }
    }

    /// Whether segment texts come from word times rather than whole lines.
    pub(crate) fn is_timed(&self) -> bool {
        matches!(self, Script::Timed { .. })
    }

    /// The words not yet finalised that were said up to `until_s` (stream time); with
    /// `consume` they are finalised. Empty when none (noise, or a non-timed script).
    pub(crate) fn words_until(&mut self, until_s: f64, consume: bool) -> String {
        let Script::Timed { words, next, .. } = self else {
            return String::new();
        };
        let start = *next;
        let mut end = start;
        while end < words.len() && words[end].0 <= until_s + WORD_TOLERANCE_S {
            end += 1;
        }
        let text = words[start..end]
            .iter()
            .map(|(_, w)| w.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        if consume {
            *next = end;
        }
        text
    }
}

/// A running fake Deepgram server.
pub struct DeepgramFake {
    server: TcpFakeServer,
    shared: Arc<Shared>,
}

impl DeepgramFake {
    /// Bind 127.0.0.1:0 and serve until [`DeepgramFake::shutdown`] or drop.
    pub async fn start(config: DeepgramFakeConfig) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            config,
            state: Mutex::new(State::default()),
            stt_fault: FaultState::default(),
            tts_fault: FaultState::default(),
        });
        let for_conns = shared.clone();
        let server =
            TcpFakeServer::start(move |stream| handle_connection(stream, for_conns.clone()))
                .await?;
        Ok(Self { server, shared })
    }

    /// `http://127.0.0.1:<port>`: what goes into `provider_config.base_url`.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Records of every connection so far (accepted or refused), in order.
    pub fn received(&self) -> Vec<ConnectionRecord> {
        self.shared.with_state(|s| s.connections.clone())
    }

    /// The plain REST requests answered so far (`GET /v1/projects`, `GET /v1/models`).
    pub fn plain_received(&self) -> Vec<crate::plain_http::PlainRecord> {
        self.shared.with_state(|s| s.plain.clone())
    }

    /// When each final / end of turn was detected and sent.
    pub fn final_timings(&self) -> Vec<FinalTiming> {
        self.shared.with_state(|s| s.finals.clone())
    }

    /// Stop accepting and end every open connection.
    pub fn shutdown(&self) {
        self.server.shutdown();
    }

    /// Injects `fault` into the STT endpoints (`/v1/listen`, `/v2/listen`), or clears it with
    /// `None`; units are finals (live) and `EndOfTurn`s (Flux), see [`crate::fault`].
    pub fn set_stt_fault(&self, fault: Option<Fault>) {
        self.shared.stt_fault.set(fault);
    }

    /// Injects `fault` into Aura (`/v1/speak`), or clears it; units are `Flushed` answers.
    pub fn set_tts_fault(&self, fault: Option<Fault>) {
        self.shared.tts_fault.set(fault);
    }

    /// Connections or handshakes struck by the STT fault so far.
    pub fn stt_fault_strikes(&self) -> u32 {
        self.shared.stt_fault.strikes()
    }

    /// Connections or handshakes struck by the Aura fault so far.
    pub fn tts_fault_strikes(&self) -> u32 {
        self.shared.tts_fault.strikes()
    }
}

/// Deepgram's error code and message for an HTTP status, as its handshake refusals carry them.
pub(crate) fn deepgram_error(status: u16) -> (&'static str, &'static str) {
    match status {
        429 => (
            "TOO_MANY_REQUESTS",
            "Too many requests. Please try again later.",
        ),
        503 => (
            "SERVICE_UNAVAILABLE",
            "The service is temporarily unavailable.",
        ),
        s if s >= 500 => (
            "INTERNAL_SERVER_ERROR",
            "The server encountered an internal error.",
        ),
        _ => ("BAD_REQUEST", "The request was rejected."),
    }
}

fn request_id() -> String {
    let a: u64 = rand::random();
    let b: u64 = rand::random();
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

struct Accepted {
    index: usize,
    path: String,
    query: Vec<(String, String)>,
    request_id: String,
}

#[allow(clippy::result_large_err)] // the handshake callback's error type is tungstenite's
async fn handle_connection(mut stream: TcpStream, shared: Arc<Shared>) {
    if let Some(request) = crate::plain_http::take_plain(&mut stream).await {
        return manage::serve(request, &mut stream, &shared).await;
    }
    let decided: Arc<Mutex<Option<Accepted>>> = Arc::new(Mutex::new(None));
    let decided_cb = decided.clone();
    let shared_cb = shared.clone();
    let callback = move |request: &Request,
                         mut response: Response|
          -> Result<Response, ErrorResponse> {
        let path = request.uri().path().to_owned();
        let query: Vec<(String, String)> = request
            .uri()
            .query()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        let authorization = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let rid = request_id();
        let cfg = shared_cb.config();
        let index = shared_cb.with_state(|s| {
            s.connections.push(ConnectionRecord {
                index: s.connections.len(),
                path: path.clone(),
                query: query.clone(),
                authorization: authorization.clone(),
                ..ConnectionRecord::default()
            });
            s.connections.len() - 1
        });
        let expected = format!("Token {}", cfg.api_key);
        let param = |k: &str| {
            query
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let fault = if path == "/v1/speak" {
            &shared_cb.tts_fault
        } else {
            &shared_cb.stt_fault
        };
        let refusal: Option<(u16, String)> = if authorization.as_deref() != Some(expected.as_str())
        {
            Some((401, "Invalid credentials.".into()))
        } else if let Some(status) = cfg
            .reject_status
            .filter(|_| index >= cfg.reject_from_connection)
        {
            Some((status, "Rejected by the fake (failure knob).".into()))
        } else if let Some(FaultKind::HttpStatus(status)) =
            fault.strike_if(|k| matches!(k, FaultKind::HttpStatus(_)))
        {
            Some((status, deepgram_error(status).1.into()))
        } else if !matches!(path.as_str(), "/v1/listen" | "/v2/listen" | "/v1/speak") {
            Some((404, format!("Unknown path {path}")))
        } else if path != "/v1/speak"
            && (param("encoding") != Some("mulaw") || param("sample_rate") != Some("8000"))
        {
            Some((
                400,
                "Twilio audio needs encoding=mulaw&sample_rate=8000".into(),
            ))
        } else if path == "/v1/speak"
            && param("encoding").is_some_and(|e| e != "mulaw" && e != "linear16" && e != "alaw")
        {
            Some((400, "Unsupported encoding for streaming TTS".into()))
        } else if param("model").is_none_or(str::is_empty) {
            Some((400, "model is required".into()))
        } else if path == "/v1/speak" && !param("model").is_some_and(aura::is_voice_model) {
            // What Deepgram answers for a voice that is no Aura model (`rachel`, `turbo`).
            Some((400, "No such model/version combination found".into()))
        } else {
            None
        };
        if let Some((status, message)) = refusal {
            shared_cb.record(index, |c| {
                c.rejected_status = Some(status);
                c.ended = true;
            });
            let code = match status {
                401 => "INVALID_AUTH",
                s if s >= 429 => deepgram_error(s).0,
                _ => "REJECTED",
            };
            let mut error = ErrorResponse::new(Some(format!(
                "{{\"err_code\":\"{code}\",\"err_msg\":\"{message}\",\"request_id\":\"{rid}\"}}"
            )));
            *error.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            if let Ok(v) = HeaderValue::from_str(&rid) {
                error.headers_mut().insert("dg-request-id", v);
            }
            if let Ok(v) = HeaderValue::from_str(&message) {
                error.headers_mut().insert("dg-error", v);
            }
            return Err(error);
        }
        if let Ok(v) = HeaderValue::from_str(&rid) {
            response.headers_mut().insert("dg-request-id", v);
        }
        if let Ok(mut slot) = decided_cb.lock() {
            *slot = Some(Accepted {
                index,
                path,
                query,
                request_id: rid,
            });
        }
        Ok(response)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        callback,
        Some(
            tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                .read_buffer_size(crate::SMALL_WS_READ_BUFFER),
        ),
    )
    .await
    else {
        return;
    };
    let accepted = match decided.lock() {
        Ok(mut slot) => slot.take(),
        Err(_) => None,
    };
    let Some(accepted) = accepted else { return };
    let index = accepted.index;
    match accepted.path.as_str() {
        "/v1/speak" => aura::serve(ws, &shared, index, &accepted.query, &accepted.request_id).await,
        path => {
            let tag = accepted
                .query
                .iter()
                .find(|(k, _)| k == "tag")
                .map(|(_, v)| v.clone());
            let script = shared.take_script(tag.as_deref());
            let flux = path == "/v2/listen";
            listen::serve(
                ws,
                &shared,
                index,
                &accepted.query,
                &accepted.request_id,
                script,
                flux,
            )
            .await;
        }
    }
    shared.record(index, |c| c.ended = true);
}
