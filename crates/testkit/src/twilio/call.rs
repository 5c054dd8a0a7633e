//! `FakeCall`: one phone call as Twilio would run it against the engine (`docs/providers/twilio.md`
//! §1.1–§1.10, checklist §1.12): signed voice webhook, TwiML, signed media-stream websocket,
//! real-time caller audio, a real-time playback clock for the bot's audio with mark echoes and
//! `clear`, `stop`, then the status callbacks. It records a timeline for the load harness.
//!
//! Cost per call: one task (plus a short one for the stream-started callback), the shared HTTP
//! client, the shared script audio; one `String` per outbound frame (the websocket message owns
//! it); nothing per bot frame unless the full timeline or the audio is kept.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Deserializer, Serialize};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use super::script::{CallScript, DtmfPress, ULAW_BYTES_PER_MS, ULAW_SILENCE, Utterance};
use super::twiml::{ParsedTwiml, parse_twiml};

/// Caller frame length: 20 ms of 8 kHz µ-law.
pub const FRAME_BYTES: usize = 160;
/// Caller frame period.
pub const FRAME_MS: u64 = 20;
/// A bot frame arriving less than this after the buffer ran dry is not an underrun (timer noise).
pub const UNDERRUN_EPSILON_MS: f64 = 1.0;

/// A fresh Twilio-style SID: `prefix` + 32 lowercase hex digits.
pub fn new_sid(prefix: &str) -> String {
    format!("{prefix}{:032x}", rand::random::<u128>())
}

/// How the far side ended a call while its stream ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteEnd {
    /// Hung up over REST (`Status=completed`) or by the far side.
    Completed,
    /// Redirected over REST (`Twiml` / `Url`): Twilio stops the stream.
    Redirected,
}

/// A handle through which the fake REST API ends a running [`FakeCall`]'s stream, as Twilio does
/// when a call is hung up or redirected. Cloning shares the handle.
#[derive(Debug, Clone)]
pub struct CallControl {
    tx: Arc<watch::Sender<Option<RemoteEnd>>>,
}

impl Default for CallControl {
    fn default() -> Self {
        CallControl::new()
    }
}

impl CallControl {
    /// A handle with no end signalled yet.
    pub fn new() -> CallControl {
        CallControl {
            tx: Arc::new(watch::channel(None).0),
        }
    }

    /// Ends the call's stream (the first end wins).
    pub fn end(&self, how: RemoteEnd) {
        self.tx.send_if_modified(|v| {
            if v.is_none() {
                *v = Some(how);
                true
            } else {
                false
            }
        });
    }

    fn subscribe(&self) -> watch::Receiver<Option<RemoteEnd>> {
        self.tx.subscribe()
    }
}

/// Everything a fake call needs besides its script.
#[derive(Clone)]
pub struct FakeCallConfig {
    /// The voice webhook URL as Twilio knows it (the engine's public URL + path). Signatures are
    /// computed over this URL.
    pub webhook_url: String,
    /// Where to actually connect, as `host:port` (e.g. the engine's 127.0.0.1 port). When set,
    /// every URL the fake requests keeps its path but goes to this authority, `https`→`http` and
    /// `wss`→`ws`; signatures still cover the public URL. When unset, URLs are used as given
    /// except `wss`→`ws` for the media stream.
    pub connect_to: Option<String>,
    /// The account's auth token (signing key). Never logged.
    pub auth_token: String,
    /// `AccountSid`.
    pub account_sid: String,
    /// `From` (the caller).
    pub from: String,
    /// `To` (our number).
    pub to: String,
    /// `CallSid`; a fresh one when `None`.
    pub call_sid: Option<String>,
    /// `Direction` (`inbound`, or `outbound-api` for REST-created calls).
    pub direction: String,
    /// Call status callback (the number's or the REST call's `StatusCallback`): gets `completed`
    /// with `CallDuration` after the call.
    pub status_callback_url: Option<String>,
    /// Extra webhook form fields (added to the realistic superset).
    pub extra_params: Vec<(String, String)>,
    /// Shared HTTP client (one per process keeps 1000 calls cheap).
    pub http: reqwest::Client,
    /// Handle for REST-driven hang-up / redirect.
    pub control: Option<CallControl>,
    /// Keep a record of every bot chunk and mark (off for large load runs).
    pub record_timeline: bool,
    /// Keep the bot audio as played (off for large load runs).
    pub keep_audio: bool,
    /// Hard cap on the stream's length.
    pub max_duration: Duration,
    /// Timeout of each HTTP request and of the websocket connect.
    pub request_timeout: Duration,
    /// Largest engine message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Tells the bot's speech from a background sound mixed under every frame (given a chunk's
    /// µ-law bytes: does it carry speech?). When set, only speech forms playback segments,
    /// underruns and on-time counts, so turn latency, interruption reaction and backchannel
    /// gaps are measured as without the sound; every chunk still fills the buffer, plays and
    /// delays marks. `None`: all bot audio is speech.
    pub speech_detector: Option<fn(&[u8]) -> bool>,
}

impl std::fmt::Debug for FakeCallConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeCallConfig")
            .field("webhook_url", &self.webhook_url)
            .field("connect_to", &self.connect_to)
            .field("auth_token", &"<redacted>")
            .field("account_sid", &self.account_sid)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("call_sid", &self.call_sid)
            .field("direction", &self.direction)
            .field("status_callback_url", &self.status_callback_url)
            .field("record_timeline", &self.record_timeline)
            .field("keep_audio", &self.keep_audio)
            .field("speech_detector", &self.speech_detector.is_some())
            .finish_non_exhaustive()
    }
}

impl FakeCallConfig {
    /// Defaults: fresh account SID, `+15550100001` calling `+15550100002`, inbound, timeline and
    /// audio kept, 10 min cap, 10 s request timeout, 1 MiB message limit.
    pub fn new(webhook_url: &str, auth_token: &str, http: reqwest::Client) -> FakeCallConfig {
        FakeCallConfig {
            webhook_url: webhook_url.to_owned(),
            connect_to: None,
            auth_token: auth_token.to_owned(),
            account_sid: new_sid("AC"),
            from: "+15550100001".to_owned(),
            to: "+15550100002".to_owned(),
            call_sid: None,
            direction: "inbound".to_owned(),
            status_callback_url: None,
            extra_params: Vec::new(),
            http,
            control: None,
            record_timeline: true,
            keep_audio: true,
            max_duration: Duration::from_secs(600),
            request_timeout: Duration::from_secs(10),
            max_message_bytes: 1 << 20,
            speech_detector: None,
        }
    }
}

/// How the call went overall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// The media stream ran and ended (by script, engine, REST or cap).
    Completed,
    /// The TwiML had no `<Connect><Stream>` (a sorry message, a `<Dial>`…).
    NoStream,
    /// The webhook, TwiML or websocket failed; see `errors`.
    Failed,
}

/// Who ended the media stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndedBy {
    /// The script's hang-up time.
    Script,
    /// The engine closed the websocket.
    Engine,
    /// The engine hung up over REST.
    RestHangUp,
    /// The engine redirected the call over REST.
    RestRedirect,
    /// [`FakeCallConfig::max_duration`] elapsed.
    MaxDuration,
    /// A websocket error.
    Error,
}

/// One error seen during the call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallError {
    /// Short machine-readable kind (`webhook_status`, `twiml`, `stream_url`, `ws_connect`,
    /// `stream_sid`, `base64`, `riff_header`, `json`, `unknown_event`, `binary_frame`,
    /// `oversize`, `ws_read`, `status_callback`, …).
    pub kind: &'static str,
    /// Details.
    pub message: String,
    /// When, ms from stream start (`None` before the stream).
    pub at_ms: Option<f64>,
}

/// One bot `media` message and when it played.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChunkRecord {
    /// Arrival, ms from stream start.
    pub received_ms: f64,
    /// Playback start, ms.
    pub start_ms: f64,
    /// Planned playback end, ms.
    pub end_ms: f64,
    /// Audio bytes (= samples).
    pub bytes: usize,
    /// How late it arrived after the buffer ran dry, within a reply (`None` for a reply's first
    /// chunk).
    pub late_ms: Option<f64>,
    /// Set when a `clear` cut this chunk's playback, ms.
    pub cleared_at_ms: Option<f64>,
}

/// A contiguous run of bot audio (a reply, or the part of one before a `clear`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlaybackSegment {
    /// First chunk's arrival, ms from stream start (turn latency ends here).
    pub first_received_ms: f64,
    /// Playback start, ms.
    pub start_ms: f64,
    /// Playback end (or the `clear` time), ms.
    pub end_ms: f64,
    /// Bytes received for this segment.
    pub bytes: usize,
    /// Chunks received.
    pub chunks: u64,
    /// Underruns inside it.
    pub underruns: u64,
    /// Whether a `clear` cut it.
    pub cleared: bool,
}

/// A gap inside a reply: the buffer ran dry before the next chunk arrived.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Underrun {
    /// When the late chunk arrived, ms from stream start.
    pub at_ms: f64,
    /// How long the caller heard nothing, ms.
    pub late_ms: f64,
}

/// A mark the engine sent and its echo.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MarkRecord {
    /// `mark.name`.
    pub name: String,
    /// Arrival, ms from stream start.
    pub received_ms: f64,
    /// When the audio before it finishes playing, ms.
    pub due_ms: f64,
    /// When it was echoed, ms.
    pub echoed_ms: Option<f64>,
    /// The echo's `sequenceNumber`.
    pub echo_seq: Option<u64>,
    /// Echoed because of a `clear` rather than playback.
    pub on_clear: bool,
}

/// Bot audio as the caller heard it: contiguous bytes starting at `start_ms`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlayedAudio {
    /// Playback start, ms from stream start.
    pub start_ms: f64,
    /// Raw µ-law (not serialised: use [`CallReport::heard_audio`]).
    #[serde(skip)]
    pub ulaw: Vec<u8>,
    /// Byte count.
    pub bytes: usize,
}

/// Everything a fake call observed. All `*_ms` times are ms from the stream start (the moment
/// `start` was sent; caller audio timestamps count from there too).
#[derive(Debug, Clone, Serialize)]
pub struct CallReport {
    /// Script name.
    pub script: String,
    /// `CallSid`.
    pub call_sid: String,
    /// `StreamSid` (when a stream opened).
    pub stream_sid: Option<String>,
    /// Overall outcome.
    pub outcome: CallOutcome,
    /// Who ended the stream.
    pub ended_by: Option<EndedBy>,
    /// HTTP status of the voice webhook.
    pub webhook_status: Option<u16>,
    /// Voice webhook round trip, ms.
    pub webhook_ms: Option<f64>,
    /// Websocket connect time, ms.
    pub ws_connect_ms: Option<f64>,
    /// The TwiML as read.
    pub twiml: Option<ParsedTwiml>,
    /// `customParameters` sent in `start`.
    pub custom_parameters: Vec<(String, String)>,
    /// Stream length, ms.
    pub duration_ms: f64,
    /// Caller `media` frames sent.
    pub caller_frames_sent: u64,
    /// Worst lag of a caller frame behind its schedule, ms (harness health: large values mean
    /// the load generator itself is overloaded).
    pub caller_send_lag_max_ms: f64,
    /// Caller frames sent more than one frame period late.
    pub caller_frames_late: u64,
    /// Key presses sent.
    pub dtmf_sent: Vec<DtmfPress>,
    /// The script's utterances (for latency accounting).
    pub utterances: Vec<Utterance>,
    /// Bot audio runs.
    pub segments: Vec<PlaybackSegment>,
    /// Bot chunks (only with `record_timeline`).
    pub chunks: Vec<ChunkRecord>,
    /// Bot chunks inside a reply that arrived before the buffer ran dry (lateness 0).
    pub bot_frames_on_time: u64,
    /// Gaps inside replies (the non-zero frame lateness values).
    pub underruns: Vec<Underrun>,
    /// Bot audio bytes received.
    pub bot_bytes_received: u64,
    /// Bot audio bytes actually played (received minus cleared).
    pub bot_bytes_played: u64,
    /// Marks (only with `record_timeline`).
    pub marks: Vec<MarkRecord>,
    /// Marks received.
    pub marks_received: u64,
    /// Marks echoed (played or cleared).
    pub marks_echoed: u64,
    /// Marks echoed because of a `clear`.
    pub marks_echoed_on_clear: u64,
    /// `clear` arrival times, ms.
    pub clears_ms: Vec<f64>,
    /// HTTP status of the call status callback, when one was sent.
    pub status_callback_status: Option<u16>,
    /// Errors.
    pub errors: Vec<CallError>,
    /// Bot audio as played (only with `keep_audio`).
    pub bot_audio: Vec<PlayedAudio>,
}

impl CallReport {
    fn new(script: &CallScript, call_sid: String) -> CallReport {
        CallReport {
            script: script.name.clone(),
            call_sid,
            stream_sid: None,
            outcome: CallOutcome::Failed,
            ended_by: None,
            webhook_status: None,
            webhook_ms: None,
            ws_connect_ms: None,
            twiml: None,
            custom_parameters: Vec::new(),
            duration_ms: 0.0,
            caller_frames_sent: 0,
            caller_send_lag_max_ms: 0.0,
            caller_frames_late: 0,
            dtmf_sent: Vec::new(),
            utterances: script.utterances.clone(),
            segments: Vec::new(),
            chunks: Vec::new(),
            bot_frames_on_time: 0,
            underruns: Vec::new(),
            bot_bytes_received: 0,
            bot_bytes_played: 0,
            marks: Vec::new(),
            marks_received: 0,
            marks_echoed: 0,
            marks_echoed_on_clear: 0,
            clears_ms: Vec::new(),
            status_callback_status: None,
            errors: Vec::new(),
            bot_audio: Vec::new(),
        }
    }

    /// All bot audio the caller heard, concatenated in play order (needs `keep_audio`).
    pub fn heard_audio(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bot_audio.iter().map(|a| a.ulaw.len()).sum());
        for a in &self.bot_audio {
            out.extend_from_slice(&a.ulaw);
        }
        out
    }

    /// Mark names in the order they were echoed (needs `record_timeline`).
    pub fn mark_echo_order(&self) -> Vec<&str> {
        let mut echoed: Vec<&MarkRecord> =
            self.marks.iter().filter(|m| m.echo_seq.is_some()).collect();
        echoed.sort_by_key(|m| m.echo_seq);
        echoed.iter().map(|m| m.name.as_str()).collect()
    }

    fn error(&mut self, kind: &'static str, message: impl Into<String>, at_ms: Option<f64>) {
        self.errors.push(CallError {
            kind,
            message: message.into(),
            at_ms,
        });
    }
}

/// One replayed call. Build with [`FakeCall::new`], then `run().await`.
#[derive(Debug)]
pub struct FakeCall {
    config: FakeCallConfig,
    script: Arc<CallScript>,
}

/// Rewrites `url` for the actual connection (see [`FakeCallConfig::connect_to`]).
pub fn local_url(url: &str, connect_to: Option<&str>) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let local_scheme = match (scheme, connect_to.is_some()) {
        ("wss", _) => "ws",
        ("https", true) => "http",
        (s, _) => s,
    };
    match connect_to {
        Some(authority) => {
            let path_at = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            format!("{local_scheme}://{authority}{}", &rest[path_at..])
        }
        None => format!("{local_scheme}://{rest}"),
    }
}

/// RFC 2822 date in UTC, as Twilio's `Timestamp` (e.g. `Sun, 25 Mar 2018 09:53:19 +0000`).
pub fn rfc2822_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (proleptic Gregorian), after H. Hinnant's published algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let wd = WD
        .get(days.rem_euclid(7) as usize)
        .copied()
        .unwrap_or("Thu");
    let mon = MON.get((month - 1) as usize).copied().unwrap_or("Jan");
    format!(
        "{wd}, {day:02} {mon} {year} {:02}:{:02}:{:02} +0000",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// A string that borrows from the frame text unless JSON escaped something in it.
struct Text<'a>(std::borrow::Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(std::borrow::Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// What the engine may send (§1.4), read independently of the engine's own types.
#[derive(Deserialize)]
struct EngineMsg<'a> {
    #[serde(borrow, default)]
    event: Option<Text<'a>>,
    #[serde(rename = "streamSid", borrow, default)]
    stream_sid: Option<Text<'a>>,
    #[serde(borrow, default)]
    media: Option<EngineMedia<'a>>,
    #[serde(borrow, default)]
    mark: Option<EngineMark<'a>>,
}

#[derive(Deserialize)]
struct EngineMedia<'a> {
    #[serde(borrow, default)]
    payload: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct EngineMark<'a> {
    #[serde(borrow, default)]
    name: Option<Text<'a>>,
}

struct PendingMark {
    name: String,
    due: Instant,
    record: Option<usize>,
}

/// The playback side of the fake: Twilio's outbound buffer on a real-time clock.
struct Playback {
    t0: Instant,
    /// When everything buffered has played.
    end: Instant,
    pending: VecDeque<PendingMark>,
    /// When the last speech buffered has played (= `end` when every chunk is speech).
    speech_end: Instant,
    /// A `clear` came after the last speech chunk.
    cleared_since_chunk: bool,
    /// Some speech chunk came.
    any_chunk: bool,
    decode_buf: Vec<u8>,
}

enum Event {
    Tick,
    MarkDue,
    Ws(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    Remote(RemoteEnd),
    Cap,
}

async fn remote_end(rx: &mut Option<watch::Receiver<Option<RemoteEnd>>>) -> RemoteEnd {
    if let Some(rx) = rx {
        loop {
            if let Some(how) = *rx.borrow_and_update() {
                return how;
            }
            if rx.changed().await.is_err() {
                break;
            }
        }
    }
    std::future::pending().await
}

fn ms_between(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64() * 1000.0
}

impl FakeCall {
    /// A call that will replay `script` with `config`.
    pub fn new(config: FakeCallConfig, script: Arc<CallScript>) -> FakeCall {
        FakeCall { config, script }
    }

    fn webhook_params(&self, call_sid: &str) -> Vec<(String, String)> {
        let c = &self.config;
        let status = if c.direction == "inbound" {
            "ringing"
        } else {
            "in-progress"
        };
        let mut p: Vec<(String, String)> = [
            ("AccountSid", c.account_sid.as_str()),
            ("ApiVersion", "2010-04-01"),
            ("CallSid", call_sid),
            ("CallStatus", status),
            ("Called", c.to.as_str()),
            ("CalledCity", ""),
            ("CalledCountry", "US"),
            ("CalledState", "CA"),
            ("CalledZip", ""),
            ("Caller", c.from.as_str()),
            ("CallerCity", "SAN FRANCISCO"),
            ("CallerCountry", "US"),
            ("CallerState", "CA"),
            ("CallerZip", "94105"),
            ("Direction", c.direction.as_str()),
            ("From", c.from.as_str()),
            ("FromCity", "SAN FRANCISCO"),
            ("FromCountry", "US"),
            ("FromState", "CA"),
            ("FromZip", "94105"),
            ("To", c.to.as_str()),
            ("ToCity", ""),
            ("ToCountry", "US"),
            ("ToState", "CA"),
            ("ToZip", ""),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        p.extend(c.extra_params.iter().cloned());
        p
    }

    /// POSTs a signed form to `public_url` (sent to its local rewrite); returns the status and
    /// body, or an error text.
    async fn post_signed(
        &self,
        public_url: &str,
        params: &[(String, String)],
    ) -> Result<(u16, String, String), String> {
        let sig =
            switchboard_telephony::signature::sign(public_url, params, &self.config.auth_token);
        let body = serde_urlencoded::to_string(params).map_err(|e| e.to_string())?;
        let target = local_url(public_url, self.config.connect_to.as_deref());
        let resp = self
            .config
            .http
            .post(target)
            .header("X-Twilio-Signature", sig)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("User-Agent", "TwilioProxy/1.1")
            .timeout(self.config.request_timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let text = resp.text().await.map_err(|e| e.without_url().to_string())?;
        Ok((status, ct, text))
    }

    /// Runs the call to its end. Never panics on what the engine does; problems land in
    /// [`CallReport::errors`].
    pub async fn run(self) -> CallReport {
        let call_sid = self
            .config
            .call_sid
            .clone()
            .unwrap_or_else(|| new_sid("CA"));
        let mut report = CallReport::new(&self.script, call_sid.clone());
        let call_started = Instant::now();
        let params = self.webhook_params(&call_sid);

        // 1. Voice webhook.
        let t = Instant::now();
        let twiml_text = match self.post_signed(&self.config.webhook_url, &params).await {
            Ok((status, ct, text)) => {
                report.webhook_status = Some(status);
                report.webhook_ms = Some(ms_between(t, Instant::now()));
                if status != 200 {
                    let snippet: String = text.chars().take(200).collect();
                    report.error("webhook_status", format!("HTTP {status}: {snippet}"), None);
                    return report;
                }
                if !(ct.starts_with("text/xml") || ct.starts_with("application/xml")) {
                    report.error("twiml_content_type", format!("content-type {ct:?}"), None);
                }
                text
            }
            Err(e) => {
                report.error("webhook_request", e, None);
                return report;
            }
        };
        let twiml = match parse_twiml(&twiml_text) {
            Ok(t) => t,
            Err(e) => {
                report.error("twiml", e.to_string(), None);
                return report;
            }
        };
        report.twiml = Some(twiml.clone());
        let Some(stream) = twiml.stream else {
            report.outcome = CallOutcome::NoStream;
            self.send_status_callback(&mut report, &params, call_started)
                .await;
            return report;
        };

        // 2. Stream URL rules (§1.2).
        match url::Url::parse(&stream.url) {
            Ok(u) if u.scheme() != "wss" => {
                report.error(
                    "stream_url",
                    format!("scheme {} is not wss", u.scheme()),
                    None,
                );
                return report;
            }
            Ok(u) if u.query().is_some() => {
                report.error("stream_url", "stream url carries a query string", None);
                return report;
            }
            Ok(_) => {}
            Err(e) => {
                report.error("stream_url", format!("{e}: {}", stream.url), None);
                return report;
            }
        }
        report.custom_parameters = stream.parameters.clone();

        // 3. Websocket, signed over the wss URL.
        let ws_target = local_url(&stream.url, self.config.connect_to.as_deref());
        let mut request = match ws_target.as_str().into_client_request() {
            Ok(r) => r,
            Err(e) => {
                report.error("ws_connect", e.to_string(), None);
                return report;
            }
        };
        let sig = switchboard_telephony::signature::sign::<&str, &str>(
            &stream.url,
            &[],
            &self.config.auth_token,
        );
        match HeaderValue::from_str(&sig) {
            Ok(v) => {
                request.headers_mut().insert("X-Twilio-Signature", v);
            }
            Err(e) => {
                report.error("ws_connect", e.to_string(), None);
                return report;
            }
        }
        let t = Instant::now();
        let ws = match tokio::time::timeout(
            self.config.request_timeout,
            tokio_tungstenite::connect_async_with_config(
                request,
                Some(
                    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                        .read_buffer_size(crate::SMALL_WS_READ_BUFFER),
                ),
                true,
            ),
        )
        .await
        {
            Ok(Ok((ws, _))) => ws,
            Ok(Err(e)) => {
                report.error("ws_connect", e.to_string(), None);
                return report;
            }
            Err(_) => {
                report.error("ws_connect", "timed out", None);
                return report;
            }
        };
        report.ws_connect_ms = Some(ms_between(t, Instant::now()));
        let stream_sid = new_sid("MZ");
        report.stream_sid = Some(stream_sid.clone());

        if let Some(cb) = &stream.status_callback {
            self.spawn_stream_callback(
                cb.clone(),
                &call_sid,
                &stream_sid,
                stream.name.as_deref(),
                "stream-started",
            );
        }

        // 4. The stream itself.
        self.stream(ws, &stream_sid, &call_sid, &stream.parameters, &mut report)
            .await;
        report.outcome = CallOutcome::Completed;

        if let Some(cb) = &stream.status_callback {
            let p = self.stream_callback_params(
                &call_sid,
                &stream_sid,
                stream.name.as_deref(),
                "stream-stopped",
            );
            if let Err(e) = self.post_signed(cb, &p).await {
                report.error("stream_status_callback", e, None);
            }
        }
        self.send_status_callback(&mut report, &params, call_started)
            .await;
        report
    }

    fn stream_callback_params(
        &self,
        call_sid: &str,
        stream_sid: &str,
        name: Option<&str>,
        event: &str,
    ) -> Vec<(String, String)> {
        vec![
            ("AccountSid".to_owned(), self.config.account_sid.clone()),
            ("CallSid".to_owned(), call_sid.to_owned()),
            ("StreamSid".to_owned(), stream_sid.to_owned()),
            (
                "StreamName".to_owned(),
                name.unwrap_or(stream_sid).to_owned(),
            ),
            ("StreamEvent".to_owned(), event.to_owned()),
            ("Timestamp".to_owned(), rfc2822_now()),
        ]
    }

    fn spawn_stream_callback(
        &self,
        url: String,
        call_sid: &str,
        stream_sid: &str,
        name: Option<&str>,
        event: &str,
    ) {
        let params = self.stream_callback_params(call_sid, stream_sid, name, event);
        let sig = switchboard_telephony::signature::sign(&url, &params, &self.config.auth_token);
        let target = local_url(&url, self.config.connect_to.as_deref());
        let http = self.config.http.clone();
        let timeout = self.config.request_timeout;
        tokio::spawn(async move {
            let Ok(body) = serde_urlencoded::to_string(&params) else {
                return;
            };
            let _ = http
                .post(target)
                .header("X-Twilio-Signature", sig)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .timeout(timeout)
                .body(body)
                .send()
                .await;
        });
    }

    async fn send_status_callback(
        &self,
        report: &mut CallReport,
        voice_params: &[(String, String)],
        call_started: Instant,
    ) {
        let Some(url) = &self.config.status_callback_url else {
            return;
        };
        let secs = call_started.elapsed().as_secs_f64().ceil() as u64;
        let mut p: Vec<(String, String)> = voice_params
            .iter()
            .filter(|(k, _)| k != "CallStatus")
            .cloned()
            .collect();
        for (k, v) in [
            ("CallStatus", "completed".to_owned()),
            ("CallDuration", secs.to_string()),
            ("Duration", secs.div_ceil(60).max(1).to_string()),
            ("SipResponseCode", "200".to_owned()),
            ("CallbackSource", "call-progress-events".to_owned()),
            ("SequenceNumber", "0".to_owned()),
            ("Timestamp", rfc2822_now()),
        ] {
            p.push((k.to_owned(), v));
        }
        match self.post_signed(url, &p).await {
            Ok((status, _, text)) => {
                report.status_callback_status = Some(status);
                if !(200..300).contains(&status) {
                    let snippet: String = text.chars().take(200).collect();
                    report.error("status_callback", format!("HTTP {status}: {snippet}"), None);
                }
            }
            Err(e) => report.error("status_callback", e, None),
        }
    }

    async fn stream<S>(
        &self,
        mut ws: S,
        stream_sid: &str,
        call_sid: &str,
        parameters: &[(String, String)],
        report: &mut CallReport,
    ) where
        S: futures::Sink<Message, Error = tokio_tungstenite::tungstenite::Error>
            + futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
            + Unpin,
    {
        let cfg = &self.config;
        let script = &self.script;
        let mut seq: u64 = 1;

        // connected, then start (sequenceNumber 1).
        let connected = r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#;
        if let Err(e) = ws.send(Message::Text(connected.into())).await {
            report.error("ws_write", e.to_string(), None);
            report.ended_by = Some(EndedBy::Error);
            return;
        }
        let custom: serde_json::Map<String, serde_json::Value> = parameters
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let start = serde_json::json!({
            "event": "start",
            "sequenceNumber": "1",
            "start": {
                "accountSid": cfg.account_sid,
                "streamSid": stream_sid,
                "callSid": call_sid,
                "tracks": ["inbound"],
                "customParameters": custom,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
            "streamSid": stream_sid,
        });
        if let Err(e) = ws.send(Message::Text(start.to_string().into())).await {
            report.error("ws_write", e.to_string(), None);
            report.ended_by = Some(EndedBy::Error);
            return;
        }
        let t0 = Instant::now();
        seq += 1;

        let end_ms = script.end_ms();
        let cap_at = t0 + cfg.max_duration;
        let period = Duration::from_millis(FRAME_MS);
        let mut tick = tokio::time::interval_at(t0 + period, period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let mut frame_index: u64 = 0;
        let mut dtmf_next = 0usize;
        let mut dtmf: Vec<DtmfPress> = script.dtmf.clone();
        dtmf.sort_by_key(|d| d.at_ms);
        let mut b64 = String::with_capacity(FRAME_BYTES.div_ceil(3) * 4);
        let silence = [ULAW_SILENCE; FRAME_BYTES];
        let mut remote = cfg.control.as_ref().map(CallControl::subscribe);
        let mut pb = Playback {
            t0,
            end: t0,
            speech_end: t0,
            pending: VecDeque::new(),
            cleared_since_chunk: false,
            any_chunk: false,
            decode_buf: Vec::with_capacity(4096),
        };

        // One timer for the cap, polled in place (not re-registered every iteration).
        let cap = tokio::time::sleep_until(cap_at);
        tokio::pin!(cap);
        // One timer for the next mark echo, re-armed only when the earliest pending mark changes.
        let mark_timer = tokio::time::sleep_until(cap_at);
        tokio::pin!(mark_timer);
        let mut mark_armed_for: Option<Instant> = None;
        let ended_by = loop {
            let mark_due = pb.pending.front().map(|m| m.due);
            if mark_due != mark_armed_for {
                if let Some(due) = mark_due {
                    mark_timer.as_mut().reset(due);
                }
                mark_armed_for = mark_due;
            }
            let event = tokio::select! {
                biased;
                _ = tick.tick() => Event::Tick,
                _ = &mut mark_timer, if mark_due.is_some() => Event::MarkDue,
                m = ws.next() => Event::Ws(m),
                how = remote_end(&mut remote) => Event::Remote(how),
                _ = &mut cap => Event::Cap,
            };
            match event {
                Event::Tick => {
                    let media_ms = frame_index * FRAME_MS;
                    if media_ms >= end_ms {
                        break EndedBy::Script;
                    }
                    let scheduled = t0 + period * (frame_index as u32 + 1);
                    let lag = ms_between(scheduled, Instant::now());
                    if lag > report.caller_send_lag_max_ms {
                        report.caller_send_lag_max_ms = lag;
                    }
                    if lag > FRAME_MS as f64 {
                        report.caller_frames_late += 1;
                    }
                    // Key presses due by this frame's time go first.
                    while let Some(d) = dtmf.get(dtmf_next).filter(|d| d.at_ms <= media_ms) {
                        let msg = format!(
                            r#"{{"event":"dtmf","streamSid":"{stream_sid}","sequenceNumber":"{seq}","dtmf":{{"track":"inbound_track","digit":{}}}}}"#,
                            serde_json::Value::String(d.digit.to_string())
                        );
                        seq += 1;
                        report.dtmf_sent.push(*d);
                        dtmf_next += 1;
                        if let Err(e) = ws.send(Message::Text(msg.into())).await {
                            report.error(
                                "ws_write",
                                e.to_string(),
                                Some(ms_between(t0, Instant::now())),
                            );
                            break;
                        }
                    }
                    let from = (media_ms * ULAW_BYTES_PER_MS) as usize;
                    let frame: &[u8] = match script.audio.get(from..from + FRAME_BYTES) {
                        Some(f) => f,
                        None => match script.audio.get(from..) {
                            Some(part) if !part.is_empty() => part,
                            _ => &silence,
                        },
                    };
                    b64.clear();
                    STANDARD.encode_string(frame, &mut b64);
                    let mut msg = String::with_capacity(b64.len() + 160);
                    msg.push_str(r#"{"event":"media","sequenceNumber":""#);
                    push_u64(&mut msg, seq);
                    msg.push_str(r#"","media":{"track":"inbound","chunk":""#);
                    push_u64(&mut msg, frame_index + 1);
                    msg.push_str(r#"","timestamp":""#);
                    push_u64(&mut msg, media_ms);
                    msg.push_str(r#"","payload":""#);
                    msg.push_str(&b64);
                    msg.push_str(r#""},"streamSid":""#);
                    msg.push_str(stream_sid);
                    msg.push_str(r#""}"#);
                    seq += 1;
                    frame_index += 1;
                    report.caller_frames_sent += 1;
                    if let Err(e) = ws.send(Message::Text(msg.into())).await {
                        report.error(
                            "ws_write",
                            e.to_string(),
                            Some(ms_between(t0, Instant::now())),
                        );
                        break EndedBy::Error;
                    }
                }
                Event::MarkDue => {
                    let now = Instant::now();
                    while pb.pending.front().is_some_and(|m| m.due <= now) {
                        if let Some(m) = pb.pending.pop_front()
                            && let Err(e) =
                                echo_mark(&mut ws, stream_sid, &mut seq, m, false, &pb, report)
                                    .await
                        {
                            report.error("ws_write", e, Some(ms_between(t0, now)));
                        }
                    }
                }
                Event::Ws(None) => break EndedBy::Engine,
                Event::Ws(Some(Err(e))) => {
                    report.error(
                        "ws_read",
                        e.to_string(),
                        Some(ms_between(t0, Instant::now())),
                    );
                    break EndedBy::Error;
                }
                Event::Ws(Some(Ok(msg))) => match msg {
                    Message::Text(text) => {
                        if let Err(e) = self
                            .on_engine_text(
                                &mut ws,
                                text.as_str(),
                                stream_sid,
                                &mut seq,
                                &mut pb,
                                report,
                            )
                            .await
                        {
                            report.error("ws_write", e, Some(ms_between(t0, Instant::now())));
                        }
                    }
                    Message::Binary(_) => report.error(
                        "binary_frame",
                        "engine sent a binary frame; Twilio expects JSON text",
                        Some(ms_between(t0, Instant::now())),
                    ),
                    Message::Close(_) => break EndedBy::Engine,
                    _ => {}
                },
                Event::Remote(RemoteEnd::Completed) => break EndedBy::RestHangUp,
                Event::Remote(RemoteEnd::Redirected) => break EndedBy::RestRedirect,
                Event::Cap => break EndedBy::MaxDuration,
            }
        };
        report.ended_by = Some(ended_by);
        let stopped = Instant::now();
        report.duration_ms = ms_between(t0, stopped);

        // Whatever had not played by now was never heard.
        truncate_playback(&mut pb, report, stopped, false);

        if ended_by != EndedBy::Engine && ended_by != EndedBy::Error {
            let stop = format!(
                r#"{{"event":"stop","sequenceNumber":"{seq}","streamSid":"{stream_sid}","stop":{{"accountSid":"{}","callSid":"{call_sid}"}}}}"#,
                cfg.account_sid
            );
            if let Err(e) = ws.send(Message::Text(stop.into())).await {
                report.error("ws_write", e.to_string(), Some(report.duration_ms));
            }
            let _ = ws.send(Message::Close(None)).await;
            // Drain until the engine acknowledges the close (bounded).
            let deadline = Instant::now() + Duration::from_secs(2);
            while let Ok(Some(Ok(m))) = tokio::time::timeout_at(deadline, ws.next()).await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        }
        let _ = ws.close().await;
    }

    async fn on_engine_text<S>(
        &self,
        ws: &mut S,
        text: &str,
        stream_sid: &str,
        seq: &mut u64,
        pb: &mut Playback,
        report: &mut CallReport,
    ) -> Result<(), String>
    where
        S: futures::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
    {
        let now = Instant::now();
        let now_ms = ms_between(pb.t0, now);
        if text.len() > self.config.max_message_bytes {
            report.error("oversize", format!("{} bytes", text.len()), Some(now_ms));
            return Ok(());
        }
        let msg: EngineMsg<'_> = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => {
                report.error("json", e.to_string(), Some(now_ms));
                return Ok(());
            }
        };
        let Some(event) = msg.event else {
            report.error("json", "message without event", Some(now_ms));
            return Ok(());
        };
        match msg.stream_sid.as_ref().map(|s| &*s.0) {
            Some(s) if s == stream_sid => {}
            other => {
                report.error(
                    "stream_sid",
                    format!("{:?} is not {stream_sid}", other),
                    Some(now_ms),
                );
                return Ok(());
            }
        }
        match &*event.0 {
            "media" => {
                let Some(payload) = msg.media.and_then(|m| m.payload) else {
                    report.error("json", "media without payload", Some(now_ms));
                    return Ok(());
                };
                pb.decode_buf.clear();
                if let Err(e) = STANDARD.decode_vec(payload.0.as_bytes(), &mut pb.decode_buf) {
                    report.error("base64", e.to_string(), Some(now_ms));
                    return Ok(());
                }
                if pb.decode_buf.starts_with(b"RIFF") || pb.decode_buf.starts_with(b".snd") {
                    report.error(
                        "riff_header",
                        "audio carries a file header (played as noise)",
                        Some(now_ms),
                    );
                }
                let n = pb.decode_buf.len();
                if n == 0 {
                    return Ok(());
                }
                self.on_audio(pb, report, now, n);
            }
            "mark" => {
                let Some(name) = msg.mark.and_then(|m| m.name) else {
                    report.error("json", "mark without name", Some(now_ms));
                    return Ok(());
                };
                report.marks_received += 1;
                let due = pb.end.max(now);
                let record = if self.config.record_timeline {
                    report.marks.push(MarkRecord {
                        name: name.0.clone().into_owned(),
                        received_ms: now_ms,
                        due_ms: ms_between(pb.t0, due),
                        echoed_ms: None,
                        echo_seq: None,
                        on_clear: false,
                    });
                    Some(report.marks.len() - 1)
                } else {
                    None
                };
                let pending = PendingMark {
                    name: name.0.into_owned(),
                    due,
                    record,
                };
                if due <= now && pb.pending.is_empty() {
                    echo_mark(ws, stream_sid, seq, pending, false, pb, report).await?;
                } else {
                    pb.pending.push_back(pending);
                }
            }
            "clear" => {
                report.clears_ms.push(now_ms);
                truncate_playback(pb, report, now, true);
                pb.cleared_since_chunk = true;
                while let Some(m) = pb.pending.pop_front() {
                    echo_mark(ws, stream_sid, seq, m, true, pb, report).await?;
                }
            }
            other => report.error("unknown_event", format!("event {other:?}"), Some(now_ms)),
        }
        Ok(())
    }

    fn on_audio(&self, pb: &mut Playback, report: &mut CallReport, now: Instant, n: usize) {
        let now_ms = ms_between(pb.t0, now);
        let start = pb.end.max(now);
        let end = start + Duration::from_micros(n as u64 * 125);
        let start_ms = ms_between(pb.t0, start);
        let end_ms = ms_between(pb.t0, end);
        let speech = self
            .config
            .speech_detector
            .is_none_or(|is_speech| is_speech(&pb.decode_buf));
        let late = if speech {
            self.on_speech(pb, report, n, now_ms, (start_ms, end_ms))
        } else {
            None
        };
        if self.config.record_timeline {
            report.chunks.push(ChunkRecord {
                received_ms: now_ms,
                start_ms,
                end_ms,
                bytes: n,
                late_ms: late,
                cleared_at_ms: None,
            });
        }
        if self.config.keep_audio {
            match report.bot_audio.last_mut() {
                Some(last)
                    if (last.start_ms + last.ulaw.len() as f64 / 8.0 - start_ms).abs() < 0.01 =>
                {
                    last.ulaw.extend_from_slice(&pb.decode_buf);
                    last.bytes = last.ulaw.len();
                }
                _ => report.bot_audio.push(PlayedAudio {
                    start_ms,
                    ulaw: pb.decode_buf.clone(),
                    bytes: n,
                }),
            }
        }
        report.bot_bytes_received += n as u64;
        report.bot_bytes_played += n as u64;
        pb.end = end;
        if speech {
            pb.speech_end = end;
            pb.any_chunk = true;
            pb.cleared_since_chunk = false;
        }
    }

    /// Accounts a chunk of `n` bytes of speech playing over `[start_ms, end_ms)`: extends the current
    /// segment or starts one, and records an underrun when speech paused for no reason the
    /// caller gave. Returns the chunk's lateness (`None` for a segment's first chunk).
    fn on_speech(
        &self,
        pb: &mut Playback,
        report: &mut CallReport,
        n: usize,
        now_ms: f64,
        (start_ms, end_ms): (f64, f64),
    ) -> Option<f64> {
        let prev_end_ms = ms_between(pb.t0, pb.speech_end);
        // Without a speech detector: how long the buffer ran dry before this chunk. With one,
        // also the sound-only audio played since the last speech.
        let dry_ms = start_ms - prev_end_ms;
        // A new reply starts with the first chunk, after a clear, or after a gap in which the
        // caller spoke (the bot was waiting for a turn); any other gap is an underrun.
        let new_segment = !pb.any_chunk
            || pb.cleared_since_chunk
            || (dry_ms > 0.0
                && report
                    .utterances
                    .iter()
                    .any(|u| (u.start_ms as f64) < start_ms && (u.end_ms as f64) > prev_end_ms));
        let late = if new_segment {
            report.segments.push(PlaybackSegment {
                first_received_ms: now_ms,
                start_ms,
                end_ms,
                bytes: 0,
                chunks: 0,
                underruns: 0,
                cleared: false,
            });
            None
        } else if dry_ms > UNDERRUN_EPSILON_MS {
            report.underruns.push(Underrun {
                at_ms: now_ms,
                late_ms: dry_ms,
            });
            if let Some(s) = report.segments.last_mut() {
                s.underruns += 1;
            }
            Some(dry_ms)
        } else {
            report.bot_frames_on_time += 1;
            Some(0.0)
        };
        if let Some(s) = report.segments.last_mut() {
            s.end_ms = end_ms;
            s.bytes += n;
            s.chunks += 1;
        }
        late
    }
}

/// Drops whatever is buffered beyond `at` (a `clear`, or the end of the call).
fn truncate_playback(pb: &mut Playback, report: &mut CallReport, at: Instant, is_clear: bool) {
    if pb.end <= at {
        return;
    }
    let at_ms = ms_between(pb.t0, at);
    let end_ms = ms_between(pb.t0, pb.end);
    let dropped = ((end_ms - at_ms) * ULAW_BYTES_PER_MS as f64).round() as u64;
    report.bot_bytes_played = report.bot_bytes_played.saturating_sub(dropped);
    // The segment playing at `at` (with a speech detector, speech may have ended before).
    if let Some(s) = report.segments.last_mut().filter(|s| s.end_ms > at_ms) {
        s.end_ms = at_ms;
        s.cleared |= is_clear;
    }
    for c in report.chunks.iter_mut().rev() {
        if c.end_ms <= at_ms {
            break;
        }
        c.cleared_at_ms = Some(at_ms);
    }
    while let Some(last) = report.bot_audio.last_mut() {
        if last.start_ms >= at_ms {
            report.bot_audio.pop();
            continue;
        }
        let keep = (((at_ms - last.start_ms) * ULAW_BYTES_PER_MS as f64).round() as usize)
            .min(last.ulaw.len());
        last.ulaw.truncate(keep);
        last.bytes = keep;
        break;
    }
    pb.end = at;
    pb.speech_end = pb.speech_end.min(at);
}

async fn echo_mark<S>(
    ws: &mut S,
    stream_sid: &str,
    seq: &mut u64,
    mark: PendingMark,
    on_clear: bool,
    pb: &Playback,
    report: &mut CallReport,
) -> Result<(), String>
where
    S: futures::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    let name = serde_json::Value::String(mark.name).to_string();
    let msg = format!(
        r#"{{"event":"mark","sequenceNumber":"{seq}","streamSid":"{stream_sid}","mark":{{"name":{name}}}}}"#
    );
    let this_seq = *seq;
    *seq += 1;
    report.marks_echoed += 1;
    if on_clear {
        report.marks_echoed_on_clear += 1;
    }
    if let Some(r) = mark.record.and_then(|i| report.marks.get_mut(i)) {
        r.echoed_ms = Some(ms_between(pb.t0, Instant::now()));
        r.echo_seq = Some(this_seq);
        r.on_clear = on_clear;
    }
    ws.send(Message::Text(msg.into()))
        .await
        .map_err(|e| e.to_string())
}

fn push_u64(s: &mut String, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        s.push(char::from(d));
    }
}
