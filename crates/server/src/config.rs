//! Layered server configuration.
//!
//! Layers, lowest to highest priority: the embedded `config/default.toml` < an optional
//! `--config` TOML file < `SWITCHBOARD_*` environment variables (`__` separates a section from
//! its key, e.g. `SWITCHBOARD_SERVER__MAX_BODY_BYTES`; plus the short aliases `SWITCHBOARD_ADDR`,
//! `SWITCHBOARD_PUBLIC_URL` and `DATABASE_URL`) < explicit overrides (command-line flags).
//! The defaults are compiled into the binary so `switchboard serve` works from any directory.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;
use switchboard_netguard::{AllowList, OutboundPolicy, TrustError, TrustRoots};

/// The documented default configuration, embedded at build time so the binary needs no file.
pub const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "SWITCHBOARD";

/// Short environment aliases the issue and README name, mapped to their configuration key.
/// They sit in the environment layer: a `--config` file loses to them, flags win over them.
const ENV_ALIASES: &[(&str, &str)] = &[
    ("SWITCHBOARD_ADDR", "server.addr"),
    ("SWITCHBOARD_PUBLIC_URL", "server.public_url"),
    ("DATABASE_URL", "database.url"),
    ("TWILIO_ACCOUNT_SID", "twilio.account_sid"),
    ("TWILIO_AUTH_TOKEN", "twilio.auth_token"),
    ("TWILIO_API_BASE", "twilio.api_base"),
    (
        "SWITCHBOARD_STREAM_TOKEN_SECRET",
        "twilio.stream_token_secret",
    ),
    ("SWITCHBOARD_WEBHOOK_SECRET", "webhooks.secret"),
    ("SWITCHBOARD_SECRET_KEY", "secrets.key"),
    ("SWITCHBOARD_SECRET_KEY_OLD", "secrets.old_keys"),
    ("REDIS_URL", "redis.url"),
];

/// The key whose environment variable is a comma-separated list.
const OUTBOUND_ALLOW_HOSTS: &str = "outbound.allow_hosts";

/// Why the configuration could not be loaded; the message names the key or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A layer could not be read or a value has the wrong type or shape.
    #[error("configuration error: {0}")]
    Config(#[from] config::ConfigError),
    /// Values parse but contradict each other or are out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// `[tls] extra_ca_file` cannot be read or holds no usable CA certificate.
    #[error("invalid configuration: tls.extra_ca_file: {0}")]
    Tls(#[from] TrustError),
}

/// Every setting the server reads at start. Build one with [`Settings::load`] (all layers) or
/// [`Settings::defaults`] (embedded defaults only, handy in tests) and adjust fields directly.
#[derive(Clone, Debug, Deserialize)]
pub struct Settings {
    /// HTTP listener and request handling.
    pub server: ServerSettings,
    /// Where records are persisted.
    pub database: DatabaseSettings,
    /// Log filter and format.
    pub logging: LoggingSettings,
    /// Twilio credentials of the `default` organisation, REST base, stream tokens.
    pub twilio: TwilioSettings,
    /// Provider keys and slot limits.
    pub providers: ProviderSettings,
    /// Webhooks out.
    pub webhooks: WebhookSettings,
    /// Redis shared by several instances.
    pub redis: RedisSettings,
    /// Where call recordings are written.
    pub recordings: RecordingsSettings,
    /// Who may read `GET /metrics`, and on which listener.
    pub metrics: MetricsSettings,
    /// Housekeeping of call records.
    pub calls: CallsSettings,
    /// Where URLs a tenant sets may reach.
    pub outbound: OutboundSettings,
    /// Which CAs outbound TLS trusts besides the public roots.
    #[serde(default)]
    pub tls: TlsSettings,
    /// The key that encrypts stored secrets.
    pub secrets: SecretsSettings,
    /// Knowledge-base uploads and processing.
    pub knowledge: KnowledgeSettings,
    /// How tool calls sound on a call (filler, round cap).
    pub tools: ToolSettings,
    /// Limits of assistants' background sounds (uploads, `sound_url` fetches, the cache).
    pub background_sound: BackgroundSoundSettings,
}

/// `[background_sound]`: the limits of `tts_settings.background_sound`, for every assistant of
/// this server (see `crate::background_sound`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackgroundSoundSettings {
    /// Largest sound file accepted, uploaded (413 past it) or fetched from `sound_url`, bytes.
    pub max_bytes: usize,
    /// Longest a `sound_url` download may take, whole, ms.
    pub fetch_timeout_ms: u64,
    /// Memory the decoded sounds shared by every call may hold, bytes of 8 kHz 16-bit PCM
    /// (16 000 bytes per second of sound); the oldest loaded are dropped past it.
    pub cache_max_bytes: usize,
    /// How long a sound that failed to load is not tried again, seconds: calls in that time go
    /// on without it at once, and the failure is logged once. 0 = try again on every call.
    pub failure_retry_s: u64,
    /// Longest sound accepted, seconds (a longer one would only cost memory: it loops anyway);
    /// an upload past it gets 422, a `sound_url` past it is not played.
    pub max_duration_s: u64,
}

/// Longest `background_sound.failure_retry_s` accepted, seconds: a failure is remembered for a
/// bounded time so a fixed `sound_url` is picked up without a restart.
pub const MAX_SOUND_FAILURE_RETRY_S: u64 = 3600;

/// `[tools]`: what the caller hears around tool calls, for every assistant of this server.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolSettings {
    /// ms a reply's tools may run before the bot says `filler_message`; 0 = never.
    pub filler_delay_ms: u32,
    /// The short filler said while slow tools run (not part of the LLM history).
    pub filler_message: String,
    /// Tool rounds one reply may run before `round_cap_message` is said instead (at least 1).
    pub max_rounds: u32,
    /// The apology said when a reply wants more tool rounds than `max_rounds`.
    pub round_cap_message: String,
    /// What a caller hears while a warm transfer waits for the agent.
    #[serde(default)]
    pub warm_transfer_hold: HoldAudio,
}

/// `tools.warm_transfer_hold`: the caller's side of a warm transfer's wait.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HoldAudio {
    /// A soft 425 Hz tone, 300 ms every 3 s: the caller knows the line is alive.
    #[default]
    Tone,
    /// Nothing from the engine: silence, or the assistant's background sound where it has one.
    Silence,
}

impl ToolSettings {
    /// Applies these settings to a call's core settings.
    pub fn apply(&self, settings: &mut switchboard_core::call::CallSettings) {
        settings.tool_filler_delay_ms = (self.filler_delay_ms > 0).then_some(self.filler_delay_ms);
        settings
            .tool_filler_message
            .clone_from(&self.filler_message);
        settings.max_tool_rounds = self.max_rounds;
        settings
            .tool_round_cap_message
            .clone_from(&self.round_cap_message);
        settings.warm_transfer_hold_tone = self.warm_transfer_hold == HoldAudio::Tone;
    }
}

/// `[knowledge]`: documents uploaded to assistants' knowledge bases (`rag_settings`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeSettings {
    /// Largest document accepted by `POST /api/v1/assistants/{id}/documents/upload`, bytes.
    pub max_upload_bytes: usize,
    /// Documents processed at the same time by this instance (extraction, embeddings).
    pub processing_concurrency: usize,
    /// Most bytes of assistants' search indexes (vectors and keyword postings) this instance
    /// keeps in memory; the least recently searched assistants are dropped first. An
    /// assistant whose index alone is larger is loaded for each search instead.
    #[serde(default = "default_knowledge_cache_max_bytes")]
    pub cache_max_bytes: usize,
}

fn default_knowledge_cache_max_bytes() -> usize {
    switchboard_knowledge::DEFAULT_CACHE_MAX_BYTES
}

/// `[secrets]`: the key stored secrets are encrypted with (see `switchboard_store::crypto`).
/// Debug shows neither key.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsSettings {
    /// Used when no key is given: the file holding the key, created with a random key on first
    /// start.
    pub key_file: String,
    /// The current key, 32 bytes as 64 hex digits or base64 (`SWITCHBOARD_SECRET_KEY`).
    #[serde(default)]
    pub key: Option<String>,
    /// Older keys that still decrypt, comma-separated (`SWITCHBOARD_SECRET_KEY_OLD`).
    #[serde(default)]
    pub old_keys: Option<String>,
}

impl fmt::Debug for SecretsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretsSettings")
            .field("key_file", &self.key_file)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("old_keys", &self.old_keys.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// `[metrics]`: access to the Prometheus counters. They are process-wide and carry no
/// organisation data, but they still reveal traffic, so they are not public by default.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Bearer token `GET /metrics` requires (`Authorization: Bearer <token>`); empty = none.
    #[serde(default)]
    pub token: String,
    /// A second listener serving only `/metrics` (e.g. on an internal interface); unset = none.
    #[serde(default)]
    pub addr: Option<SocketAddr>,
    /// Serve `/metrics` on the main listener without a token (when no token is set).
    pub public: bool,
    /// Label the ended-calls counter and the turn-latency histogram with `organization_id`.
    /// Off by default: one series per organisation grows with the tenants and lets whoever
    /// reads `/metrics` see each tenant's traffic.
    #[serde(default)]
    pub per_organization: bool,
}

impl fmt::Debug for MetricsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsSettings")
            .field("token", &(!self.token.is_empty()).then_some("<redacted>"))
            .field("addr", &self.addr)
            .field("public", &self.public)
            .field("per_organization", &self.per_organization)
            .finish()
    }
}

/// `[calls]`: closing call records no process is carrying any more.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallsSettings {
    /// Age, in seconds, after which an open call record is taken as abandoned at start (its
    /// process died without ending it) and closed as `engine_restart`. Must exceed the longest
    /// call any assistant allows (`max_call_length`) plus a margin.
    pub stale_after_s: u64,
    /// Viewers of the live-calls feed (`GET /api/v1/calls/live`) one organisation may have at
    /// once; one more is refused with 429.
    pub live_viewers_per_org: usize,
    /// Events the live-calls feed holds per organisation for its slowest viewer; a viewer
    /// further behind loses the oldest ones (it is sent a `lagged` event with the count).
    pub live_buffer_events: usize,
}

/// `[outbound]`: the policy every URL a tenant sets (webhooks, custom tools, provider base
/// URLs) is held to: only public addresses, plus what is allowlisted here.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundSettings {
    /// Host names, IP addresses and CIDRs tenant URLs may reach although they are loopback,
    /// private, link-local…; empty = none. The environment variable takes a comma-separated
    /// list (`SWITCHBOARD_OUTBOUND__ALLOW_HOSTS=127.0.0.1,::1`).
    pub allow_hosts: AllowList,
}

/// `[tls]`: certificate authorities every outbound connection (LLM, TTS and STT providers,
/// webhooks, tools, Twilio REST) trusts on top of the public roots, for providers behind a
/// private CA. Trust can only be added: there is no switch that skips verification.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// A PEM file of extra CA certificates (`SWITCHBOARD_TLS__EXTRA_CA_FILE`); unset = none.
    #[serde(default)]
    pub extra_ca_file: Option<String>,
    /// The public roots plus `extra_ca_file`, read by [`Settings::load`].
    #[serde(skip)]
    pub roots: TrustRoots,
}

impl TlsSettings {
    /// Reads `extra_ca_file` (if set) into `roots`.
    pub fn load_roots(&mut self) -> Result<(), TrustError> {
        self.roots = match self.extra_ca_file.as_deref().map(str::trim) {
            Some(path) if !path.is_empty() => TrustRoots::with_pem_file(Path::new(path))?,
            _ => TrustRoots::default(),
        };
        Ok(())
    }
}

/// `[recordings]`: the folder under which each assistant's `recording_settings.recordings_dir`
/// lives (the spool of every recording, and the store itself with `storage = "local"`), and
/// where finished recordings are kept.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingsSettings {
    /// Base folder of recordings (created on the first recording).
    pub base_dir: String,
    /// Where finished recordings are kept.
    #[serde(default)]
    pub storage: RecordingStorageKind,
    /// The bucket, with `storage = "s3"`.
    #[serde(default)]
    pub s3: S3Settings,
    /// Keep a flight-recorder trace of every recorded call (each event and decision, replayed
    /// by `switchboard replay` and the console's what-if). Off, recorded calls keep their audio
    /// and transcript but no trace, for less CPU and memory per call (docs/PERFORMANCE.md).
    #[serde(default = "flight_recorder_default")]
    pub flight_recorder: bool,
    /// Days a recording is kept after it was stored; then its file and row are deleted
    /// (`crate::retention`). 0 keeps recordings until someone deletes them.
    #[serde(default)]
    pub retention_days: u32,
    /// Days a call trace (flight recorder) is kept after it was stored, then deleted the same
    /// way. 0 keeps traces forever.
    #[serde(default = "trace_retention_days_default")]
    pub trace_retention_days: u32,
}

fn trace_retention_days_default() -> u32 {
    30
}

fn flight_recorder_default() -> bool {
    true
}

/// `recordings.storage`: where finished recordings are kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordingStorageKind {
    /// Under `recordings.base_dir` on this machine.
    #[default]
    Local,
    /// In an S3-compatible bucket (`[recordings.s3]`).
    S3,
}

/// `[recordings.s3]`: an S3-compatible bucket for recordings. Debug redacts the secret key.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Settings {
    /// Bucket name (required with `storage = "s3"`).
    pub bucket: String,
    /// Region; empty = `AWS_REGION` or `us-east-1`.
    pub region: String,
    /// Endpoint of an S3-compatible server (MinIO, …); empty = AWS.
    pub endpoint: String,
    /// Allow a plain `http://` endpoint (a local S3-compatible server only).
    pub allow_http: bool,
    /// Key prefix inside the bucket (e.g. `switchboard/`).
    pub prefix: String,
    /// Access key id; unset = `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// Secret access key (`SWITCHBOARD_RECORDINGS__S3__SECRET_ACCESS_KEY`); unset =
    /// `AWS_SECRET_ACCESS_KEY`. Never logged.
    pub secret_access_key: Option<String>,
    /// Seconds a presigned play URL lasts: `GET …/recording/{id}/play` of a recording in the
    /// bucket answers 307 to a URL signed for that long (at most
    /// [`MAX_PRESIGNED_PLAY_TTL_S`]) instead of proxying the bytes. 0 (the default) = proxy.
    pub presigned_play_ttl_s: u64,
}

/// Longest `recordings.s3.presigned_play_ttl_s` accepted, seconds: a signed URL works for
/// whoever holds it until it expires, so it stays short-lived.
pub const MAX_PRESIGNED_PLAY_TTL_S: u64 = 3600;

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("allow_http", &self.allow_http)
            .field("prefix", &self.prefix)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("presigned_play_ttl_s", &self.presigned_play_ttl_s)
            .finish()
    }
}

/// `[twilio]`: how we talk to Twilio and authenticate what it sends. Debug redacts secrets.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioSettings {
    /// Account SID of organisation `default` (when it has no credentials of its own).
    #[serde(default)]
    pub account_sid: Option<String>,
    /// Auth token of organisation `default`: checks X-Twilio-Signature, authenticates REST.
    #[serde(default)]
    pub auth_token: Option<String>,
    /// Twilio REST base URL (`https://api.twilio.com/2010-04-01`; tests: the fake).
    pub api_base: String,
    /// Lifetime, in seconds, of the stream token our TwiML hands the media stream.
    pub stream_token_ttl_s: u64,
    /// HMAC key of stream tokens; empty = random per process.
    #[serde(default)]
    pub stream_token_secret: String,
    /// Largest media-stream websocket message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Seconds a media stream our TwiML handed out may take to start before its call is closed
    /// as `stream_never_started`.
    pub stream_start_timeout_s: u64,
    /// Seconds a warm transfer waits for the agent to take the call (ringing, briefing and
    /// their answer included) before it counts as no answer.
    pub warm_transfer_timeout_s: u64,
    /// ms between reads of a call's media socket when nothing else wakes the call (0 or 20:
    /// every message wakes it as it comes). Whole 20 ms frames, at most 100; each message
    /// waits up to this long (`call::media_rounds`).
    pub media_read_round_ms: u32,
    /// Seconds between an instance's reads of every organisation's Twilio credentials (so it
    /// vouches for any organisation's status callbacks while the database is away) and its
    /// look for saved status callbacks no process holds (`twilio::status_deferred`).
    pub callbacks_refresh_s: u64,
}

impl fmt::Debug for TwilioSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioSettings")
            .field("account_sid", &self.account_sid)
            .field(
                "auth_token",
                &self.auth_token.as_ref().map(|_| "<redacted>"),
            )
            .field("api_base", &self.api_base)
            .field("stream_token_ttl_s", &self.stream_token_ttl_s)
            .field("stream_token_secret", &"<redacted>")
            .field("max_message_bytes", &self.max_message_bytes)
            .field("stream_start_timeout_s", &self.stream_start_timeout_s)
            .field("warm_transfer_timeout_s", &self.warm_transfer_timeout_s)
            .field("media_read_round_ms", &self.media_read_round_ms)
            .field("callbacks_refresh_s", &self.callbacks_refresh_s)
            .finish()
    }
}

/// `[providers]`: where provider keys come from and how long a call waits for a slot.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    /// Fall back to `OPENAI_API_KEY`, `DEEPGRAM_API_KEY`, … from the environment, for the
    /// organisations of `env_key_orgs` and towards the providers' public hosts only.
    pub keys_from_env: bool,
    /// Names of the organisations that may use the environment's provider keys.
    #[serde(deserialize_with = "list_or_comma_separated")]
    pub env_key_orgs: Vec<String>,
    /// How long, in ms, a call start waits for a free provider slot.
    pub slot_wait_ms: u64,
    /// ms without a transcription message from the STT while caller audio flows before its
    /// socket counts as stalled and is reconnected (Deepgram sends results, empty ones for
    /// silence, every few seconds).
    pub stt_stall_timeout_ms: u64,
    /// ms of caller audio sent to the STT in one websocket message (whole 20 ms frames; 20 =
    /// every Twilio frame as it comes). Larger pieces mean fewer wake-ups and writes per
    /// call-second and up to this much less 20 ms of added STT latency. Provider docs
    /// recommend 20-100 ms pieces; at most 100.
    pub stt_audio_batch_ms: u32,
    /// ms of caller audio sent in one message once the caller has been quiet for a second
    /// (whole 20 ms frames, `stt_audio_batch_ms` to 250, Deepgram's largest recommended piece).
    /// Speech ends the wait at once (`SttSession::set_quiet`), so it costs the STT no latency
    /// on words; it takes most of the STT writes of a call in which the caller mostly listens.
    pub stt_quiet_batch_ms: u32,
    /// ms the TTS may take to send audio after text (and between audio chunks or to finish a
    /// flushed reply) before the reply fails and its socket is replaced.
    pub tts_audio_timeout_ms: u64,
    /// ms from an LLM request to its first token before the turn fails over to the next
    /// provider (or fails).
    pub llm_first_token_timeout_ms: u64,
    /// Longest silence, in ms, between two chunks of an LLM reply that has started.
    pub llm_stream_idle_timeout_ms: u64,
    /// The environment's provider keys, captured once when the settings are loaded (from the
    /// same environment layer as the rest, so tests inject them instead of touching the process
    /// environment).
    #[serde(skip)]
    pub environment_keys: EnvKeys,
}

impl ProviderSettings {
    /// Whether organisation `name` may use the environment's provider keys.
    pub fn env_keys_allowed_for(&self, name: &str) -> bool {
        self.keys_from_env && self.env_key_orgs.iter().any(|org| org == name)
    }
}

/// Provider keys found in the environment: `<PROVIDER>_API_KEY` and `<PROVIDER>_KEY` for every
/// provider of the registry (`OPENAI_API_KEY`, `DEEPGRAM_API_KEY`, …). Debug shows
/// the names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EnvKeys(std::collections::BTreeMap<String, String>);

impl EnvKeys {
    /// The provider keys among `vars` (names compared in upper case; empty values skipped).
    pub fn from_vars<'a>(vars: impl IntoIterator<Item = (&'a String, &'a String)>) -> EnvKeys {
        use switchboard_providers::registry::{ProviderKind, providers};
        let providers: Vec<String> = [ProviderKind::Llm, ProviderKind::Stt, ProviderKind::Tts]
            .into_iter()
            .flat_map(providers)
            .map(|p| p.name.to_ascii_uppercase())
            .collect();
        let wanted = |name: &str| {
            providers
                .iter()
                .any(|p| name == format!("{p}_API_KEY") || name == format!("{p}_KEY"))
        };
        EnvKeys(
            vars.into_iter()
                .filter(|(name, value)| !value.is_empty() && wanted(&name.to_ascii_uppercase()))
                .map(|(name, value)| (name.to_ascii_uppercase(), value.clone()))
                .collect(),
        )
    }

    /// The key in variable `name` (e.g. `DEEPGRAM_API_KEY`), if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(&name.to_ascii_uppercase()).map(String::as_str)
    }
}

impl fmt::Debug for EnvKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("EnvKeys")
            .field(&self.0.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A list from TOML (`["a", "b"]`) or from one environment variable (`"a,b"`; an empty string
/// is an empty list). Items are trimmed; empty items are dropped.
fn list_or_comma_separated<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        List(Vec<String>),
        Text(String),
    }
    let items = match Form::deserialize(deserializer)? {
        Form::List(items) => items,
        Form::Text(text) => text.split(',').map(str::to_owned).collect(),
    };
    Ok(items
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect())
}

/// `[webhooks]`: signing and retrying deliveries to the assistant's `webhook_url`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// HMAC-SHA256 key of `X-Switchboard-Signature`; empty = random per process.
    #[serde(default)]
    pub secret: String,
    /// Attempts per delivery, the first included.
    pub max_attempts: u32,
    /// Wait before the first retry, in ms (×4 per further retry).
    pub initial_backoff_ms: u64,
    /// Timeout of one attempt, in ms.
    pub timeout_ms: u64,
    /// Store the first 2,000 characters of each reply in the webhook log. Off by default: a
    /// reply is the receiver's data, not ours to keep or show.
    pub log_response_body: bool,
}

impl fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("secret", &"<redacted>")
            .field("max_attempts", &self.max_attempts)
            .field("initial_backoff_ms", &self.initial_backoff_ms)
            .field("timeout_ms", &self.timeout_ms)
            .field("log_response_body", &self.log_response_body)
            .finish()
    }
}

/// `[redis]`: the Redis several instances share; empty = a single instance.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://host:port`; empty disables Redis.
    #[serde(default)]
    pub url: String,
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &redact_url(&self.url))
            .finish()
    }
}

/// `server.drain_voice_answer`: how a draining instance turns away a new call's voice webhook.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DrainVoiceAnswer {
    /// TwiML that apologises and hangs up: right for a single instance, where nobody else can
    /// take the call.
    #[default]
    Hangup,
    /// HTTP 503 with `Retry-After`: right behind a load balancer that retries a 503 on another
    /// instance (HAProxy `retry-on 503` with `option redispatch`), so the caller never notices
    /// the restart.
    Unavailable,
}

/// `[server]`: the HTTP listener and request handling limits.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Socket address to listen on; port 0 picks a free port (tests).
    pub addr: SocketAddr,
    /// Public base URL Twilio reaches us at (no trailing slash); empty means "derive from addr".
    #[serde(default)]
    pub public_url: String,
    /// Largest accepted request body, in bytes; larger bodies get 413.
    pub max_body_bytes: usize,
    /// Seconds to wait for in-flight requests and live calls on shutdown before exiting anyway.
    pub drain_timeout_s: u64,
    /// Seconds the listeners keep accepting after the stop signal, while `/healthz` already
    /// answers 503: long enough for the balancer's health checks (or Kubernetes' endpoint
    /// update) to take this instance out, so no request meets a closed port. Requests in that
    /// time are answered as draining (see `drain_voice_answer`). 0 closes them at once.
    #[serde(default)]
    pub drain_grace_s: u64,
    /// What the voice webhook answers a new call while this instance drains.
    #[serde(default)]
    pub drain_voice_answer: DrainVoiceAnswer,
    /// Sustained requests per second allowed per API key; 0 disables rate limiting.
    pub rate_limit_per_s: u32,
    /// Burst size (requests) of the per-key token bucket.
    pub rate_limit_burst: u32,
    /// Time, in ms, a client has to send a complete request head (request line and headers),
    /// counted from the accept or, on a keep-alive connection, from the first byte of the
    /// next request. Past it the connection is closed.
    pub header_read_timeout_ms: u64,
    /// Time, in ms, a request body has to arrive in full, counted from the end of its head.
    /// Past it the request is answered 408 and the connection closed.
    pub body_read_timeout_ms: u64,
    /// Seconds a keep-alive connection may wait for its next request before it is closed.
    /// Upgraded websockets (media streams) are not subject to it.
    pub idle_timeout_s: u64,
    /// Connections open at once from one client address (an IPv6 client: its /64); the next
    /// one is closed at accept. Trusted proxies are exempt.
    pub max_connections_per_ip: usize,
    /// Connections open at once in total (websockets included); the next one is closed at
    /// accept.
    pub max_connections: usize,
    /// Failed API-key checks allowed per client address within `auth_fail_window_s`; further
    /// attempts get 429 without the key being checked. 0 turns the throttle off.
    pub auth_fail_limit: u32,
    /// Length, in seconds, of the failed-authentication window.
    pub auth_fail_window_s: u64,
    /// Reverse proxies (IP addresses or CIDR ranges) whose `X-Forwarded-For` is believed for
    /// the client address; empty = the TCP peer is always the client.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// This instance's stable name, recorded on the calls it carries so that, restarted after
    /// a crash, it closes the calls it left open at once; empty = a random id per process
    /// (such calls are then closed only once older than `calls.stale_after_s`).
    #[serde(default)]
    pub instance_id: String,
}

impl ServerSettings {
    /// `trusted_proxies` parsed: a bare address is a single-host network.
    pub fn trusted_proxy_nets(&self) -> Result<Vec<ipnet::IpNet>, SettingsError> {
        self.trusted_proxies
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        SettingsError::Invalid(format!(
                            "server.trusted_proxies: {entry:?} is not an IP address or CIDR range"
                        ))
                    })
            })
            .collect()
    }

    /// The public base URL without a trailing slash: the configured one, or `http://<addr>`
    /// when none is set (good enough for local runs; Twilio needs a real one).
    pub fn public_base_url(&self, bound: SocketAddr) -> String {
        let configured = self.public_url.trim().trim_end_matches('/');
        if configured.is_empty() {
            format!("http://{bound}")
        } else {
            configured.to_owned()
        }
    }
}

/// `[database]`: the connection URL, and where live calls' rows wait while the database is
/// away. Debug output redacts any password in the URL.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://PATH` or `postgres://user:password@host/db`.
    pub url: String,
    /// Folder of the call-data writer's spill files (`call::call_data_spill`); empty holds the
    /// rows in memory only (at most `call::call_data::MAX_HELD_ROWS`).
    pub call_data_spill_dir: String,
    /// Largest spill file (MiB); rows beyond it are dropped and counted.
    pub call_data_spill_max_mb: u64,
    /// Most pooled connections this instance opens; 0 takes the store's default (10 for
    /// PostgreSQL, 8 for a SQLite file). At most [`MAX_POOL_CONNECTIONS`].
    pub max_connections: u32,
    /// How long a query waits for a pooled connection (ms, connecting one included) before
    /// it fails as the database being away.
    pub acquire_timeout_ms: u64,
}

/// Most pooled database connections one instance may be told to open: PostgreSQL's own default
/// limit is 100 for the whole server, and several instances share it.
pub const MAX_POOL_CONNECTIONS: u32 = 1000;

impl DatabaseSettings {
    /// The call-data writer's options these settings give.
    pub fn call_data_options(&self) -> crate::call::call_data::CallDataOptions {
        let dir = self.call_data_spill_dir.trim();
        crate::call::call_data::CallDataOptions {
            spill_dir: (!dir.is_empty()).then(|| PathBuf::from(dir)),
            spill_max_bytes: self.call_data_spill_max_mb.saturating_mul(1 << 20),
            ..Default::default()
        }
    }

    /// The connection pool's tuning these settings give.
    pub fn store_options(&self) -> switchboard_store::StoreOptions {
        switchboard_store::StoreOptions {
            max_connections: (self.max_connections > 0).then_some(self.max_connections),
            acquire_timeout: Some(Duration::from_millis(self.acquire_timeout_ms)),
        }
    }
}

impl fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &redact_url(&self.url))
            .field("call_data_spill_dir", &self.call_data_spill_dir)
            .field("call_data_spill_max_mb", &self.call_data_spill_max_mb)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout_ms", &self.acquire_timeout_ms)
            .finish()
    }
}

/// Replaces the password of a URL (`scheme://user:password@host`) with `***` so a database URL
/// can be logged; URLs without credentials come back unchanged.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // set_password only fails for URLs that cannot have credentials, which this one has.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => raw.to_owned(),
        Err(_) => "<unparsable url>".to_owned(),
    }
}

/// `[logging]`: which lines to keep and how to print them.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingSettings {
    /// EnvFilter directives; `RUST_LOG` replaces this when set.
    pub filter: String,
    /// Line format on stderr.
    pub format: LogFormat,
    /// OpenTelemetry collector to export spans to over OTLP/HTTP (`http://host:4318`, or the
    /// full `…/v1/traces` URL); empty = no export. Needs the `otel` cargo feature.
    #[serde(default)]
    pub otlp_endpoint: String,
    /// `service.name` of the exported spans.
    pub service_name: String,
}

/// Log line format.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Where the environment layer comes from: the process environment, or a given map (tests).
#[derive(Clone, Debug, Default)]
pub enum EnvSource {
    /// Read `std::env` at load time.
    #[default]
    Process,
    /// Use exactly these variables (and no others).
    Map(HashMap<String, String>),
}

impl EnvSource {
    fn vars(&self) -> HashMap<String, String> {
        match self {
            EnvSource::Process => std::env::vars().collect(),
            EnvSource::Map(map) => map.clone(),
        }
    }
}

impl Settings {
    /// The embedded defaults alone.
    pub fn defaults() -> Result<Settings, SettingsError> {
        Settings::load(None, &EnvSource::Map(HashMap::new()), &[])
    }

    /// Loads every layer: defaults < `file` < environment < `overrides` (pairs of dotted key and
    /// value, e.g. `("server.addr", "0.0.0.0:80")`, usually from command-line flags).
    pub fn load(
        file: Option<&Path>,
        env: &EnvSource,
        overrides: &[(&str, String)],
    ) -> Result<Settings, SettingsError> {
        let vars = env.vars();
        let prefixed: config::Map<String, String> = vars
            .iter()
            .filter(|(key, _)| key.starts_with(&format!("{ENV_PREFIX}_")))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();

        let mut builder =
            Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
        if let Some(path) = file {
            builder = builder.add_source(File::from(path).format(FileFormat::Toml).required(true));
        }
        builder = builder.add_source(
            Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .separator("__")
                .ignore_empty(true)
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("server.trusted_proxies")
                .with_list_parse_key(OUTBOUND_ALLOW_HOSTS)
                .source(Some(prefixed)),
        );
        for (var, key) in ENV_ALIASES {
            if let Some(value) = vars.get(*var).filter(|value| !value.is_empty()) {
                builder = builder.set_override(*key, value.as_str())?;
            }
        }
        for (key, value) in overrides {
            builder = builder.set_override(*key, value.as_str())?;
        }
        let mut settings: Settings = builder.build()?.try_deserialize()?;
        settings.providers.environment_keys = EnvKeys::from_vars(&vars);
        settings.check()?;
        settings.tls.load_roots()?;
        Ok(settings)
    }

    /// The outbound policy every tenant URL and provider connection is held to: `[outbound]
    /// allow_hosts`, TLS verified against `[tls]`'s roots.
    pub fn outbound_policy(&self) -> OutboundPolicy {
        OutboundPolicy::new(self.outbound.allow_hosts.clone()).with_trust(self.tls.roots.clone())
    }

    fn check(&self) -> Result<(), SettingsError> {
        if self.knowledge.max_upload_bytes == 0 || self.knowledge.processing_concurrency == 0 {
            return Err(SettingsError::Invalid(
                "knowledge.max_upload_bytes and knowledge.processing_concurrency must be at least 1"
                    .into(),
            ));
        }
        let sound = &self.background_sound;
        for (key, value) in [
            ("background_sound.max_bytes", sound.max_bytes as u64),
            ("background_sound.fetch_timeout_ms", sound.fetch_timeout_ms),
            (
                "background_sound.cache_max_bytes",
                sound.cache_max_bytes as u64,
            ),
            ("background_sound.max_duration_s", sound.max_duration_s),
        ] {
            if value == 0 {
                return Err(SettingsError::Invalid(format!("{key} must be at least 1")));
            }
        }
        if self.recordings.s3.presigned_play_ttl_s > MAX_PRESIGNED_PLAY_TTL_S {
            return Err(SettingsError::Invalid(format!(
                "recordings.s3.presigned_play_ttl_s must be at most {MAX_PRESIGNED_PLAY_TTL_S}"
            )));
        }
        if sound.failure_retry_s > MAX_SOUND_FAILURE_RETRY_S {
            return Err(SettingsError::Invalid(format!(
                "background_sound.failure_retry_s must be at most {MAX_SOUND_FAILURE_RETRY_S}"
            )));
        }
        if self.server.max_body_bytes == 0 {
            return Err(SettingsError::Invalid(
                "server.max_body_bytes must be at least 1".into(),
            ));
        }
        if self.server.rate_limit_per_s > 0 && self.server.rate_limit_burst == 0 {
            return Err(SettingsError::Invalid(
                "server.rate_limit_burst must be at least 1 when rate limiting is on".into(),
            ));
        }
        let server = &self.server;
        for (key, value) in [
            (
                "server.header_read_timeout_ms",
                server.header_read_timeout_ms,
            ),
            ("server.body_read_timeout_ms", server.body_read_timeout_ms),
            ("server.idle_timeout_s", server.idle_timeout_s),
            (
                "server.max_connections_per_ip",
                server.max_connections_per_ip as u64,
            ),
            ("server.max_connections", server.max_connections as u64),
        ] {
            if value == 0 {
                return Err(SettingsError::Invalid(format!("{key} must be at least 1")));
            }
        }
        if server.auth_fail_limit > 0 && server.auth_fail_window_s == 0 {
            return Err(SettingsError::Invalid(
                "server.auth_fail_window_s must be at least 1 when auth_fail_limit is on".into(),
            ));
        }
        server.trusted_proxy_nets()?;
        let public = self.server.public_url.trim();
        if !public.is_empty() {
            let parsed = url::Url::parse(public).map_err(|err| {
                SettingsError::Invalid(format!("server.public_url is not a URL: {err}"))
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(SettingsError::Invalid(
                    "server.public_url must start with http:// or https://".into(),
                ));
            }
        }
        if self.twilio.stream_start_timeout_s == 0 {
            return Err(SettingsError::Invalid(
                "twilio.stream_start_timeout_s must be at least 1".into(),
            ));
        }
        if self.tools.max_rounds == 0 {
            return Err(SettingsError::Invalid(
                "tools.max_rounds must be at least 1".into(),
            ));
        }
        if self.tools.filler_message.trim().is_empty()
            || self.tools.round_cap_message.trim().is_empty()
        {
            return Err(SettingsError::Invalid(
                "tools.filler_message and tools.round_cap_message must not be empty".into(),
            ));
        }
        if self.twilio.warm_transfer_timeout_s == 0 {
            return Err(SettingsError::Invalid(
                "twilio.warm_transfer_timeout_s must be at least 1".into(),
            ));
        }
        if self.twilio.callbacks_refresh_s == 0 {
            return Err(SettingsError::Invalid(
                "twilio.callbacks_refresh_s must be at least 1".into(),
            ));
        }
        if self.calls.stale_after_s == 0 {
            return Err(SettingsError::Invalid(
                "calls.stale_after_s must be at least 1".into(),
            ));
        }
        if self.calls.live_buffer_events == 0 {
            return Err(SettingsError::Invalid(
                "calls.live_buffer_events must be at least 1".into(),
            ));
        }
        if self.recordings.storage == RecordingStorageKind::S3
            && self.recordings.s3.bucket.trim().is_empty()
        {
            return Err(SettingsError::Invalid(
                "recordings.s3.bucket is required when recordings.storage = \"s3\"".into(),
            ));
        }
        if self.database.url.trim().is_empty() {
            return Err(SettingsError::Invalid("database.url is empty".into()));
        }
        if self.database.max_connections > MAX_POOL_CONNECTIONS {
            return Err(SettingsError::Invalid(format!(
                "database.max_connections must be 0 (the default) to {MAX_POOL_CONNECTIONS}, not {}",
                self.database.max_connections
            )));
        }
        if self.database.acquire_timeout_ms < 100 {
            return Err(SettingsError::Invalid(format!(
                "database.acquire_timeout_ms must be at least 100, not {}",
                self.database.acquire_timeout_ms
            )));
        }
        let round = self.twilio.media_read_round_ms;
        if round > 100 || !round.is_multiple_of(20) {
            return Err(SettingsError::Invalid(format!(
                "twilio.media_read_round_ms must be 0 to 100 in whole 20 ms frames, not {round}"
            )));
        }
        let p = &self.providers;
        if !(20..=100).contains(&p.stt_audio_batch_ms) {
            return Err(SettingsError::Invalid(format!(
                "providers.stt_audio_batch_ms must be 20 to 100, not {}",
                p.stt_audio_batch_ms
            )));
        }
        let quiet = p.stt_quiet_batch_ms;
        if !(p.stt_audio_batch_ms..=250).contains(&quiet) || !quiet.is_multiple_of(20) {
            return Err(SettingsError::Invalid(format!(
                "providers.stt_quiet_batch_ms must be stt_audio_batch_ms ({}) to 250 in whole 20 ms frames, not {}",
                p.stt_audio_batch_ms, p.stt_quiet_batch_ms
            )));
        }
        for (key, ms) in [
            ("providers.stt_stall_timeout_ms", p.stt_stall_timeout_ms),
            ("providers.tts_audio_timeout_ms", p.tts_audio_timeout_ms),
            (
                "providers.llm_first_token_timeout_ms",
                p.llm_first_token_timeout_ms,
            ),
            (
                "providers.llm_stream_idle_timeout_ms",
                p.llm_stream_idle_timeout_ms,
            ),
        ] {
            if ms == 0 {
                return Err(SettingsError::Invalid(format!("{key} must be at least 1")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> EnvSource {
        EnvSource::Map(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn embedded_defaults_parse() {
        let mut settings = Settings::defaults().expect("defaults parse");
        assert_eq!(settings.server.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.database.url, "sqlite://./data/switchboard.db");
        assert_eq!(settings.server.max_body_bytes, 1_048_576);
        assert_eq!(settings.logging.format, LogFormat::Text);
        assert!(settings.server.public_url.is_empty());
        assert!(settings.server.instance_id.is_empty());
        assert!(
            settings.recordings.flight_recorder,
            "traces are kept by default"
        );
        assert_eq!(settings.calls.stale_after_s, 3_900);
        assert_eq!(settings.twilio.stream_start_timeout_s, 30);
        assert_eq!(
            (
                settings.recordings.retention_days,
                settings.recordings.trace_retention_days
            ),
            (0, 30),
            "recordings kept until deleted, traces 30 days"
        );
        let call_data = settings.database.call_data_options();
        assert_eq!(
            call_data.spill_dir.as_deref(),
            Some(Path::new("./data/call-data-spill"))
        );
        assert_eq!(call_data.spill_max_bytes, 1 << 30);
        settings.database.call_data_spill_dir = " ".into();
        assert!(
            settings.database.call_data_options().spill_dir.is_none(),
            "empty: memory only"
        );
        let pool = settings.database.store_options();
        assert_eq!(pool.max_connections, None, "0: the store's default");
        assert_eq!(pool.acquire_timeout, Some(Duration::from_secs(10)));
    }

    #[test]
    fn the_pool_size_and_acquire_timeout_are_bounded_and_reach_the_store() {
        let mut settings = Settings::defaults().expect("defaults parse");
        settings.database.max_connections = 40;
        settings.database.acquire_timeout_ms = 2_500;
        settings.check().expect("valid");
        let pool = settings.database.store_options();
        assert_eq!(pool.max_connections, Some(40));
        assert_eq!(pool.acquire_timeout, Some(Duration::from_millis(2_500)));
        settings.database.max_connections = MAX_POOL_CONNECTIONS + 1;
        let err = settings.check().expect_err("too many").to_string();
        assert!(err.contains("database.max_connections"), "{err}");
        settings.database.max_connections = 0;
        settings.database.acquire_timeout_ms = 0;
        let err = settings.check().expect_err("no wait").to_string();
        assert!(err.contains("database.acquire_timeout_ms"), "{err}");
    }

    #[test]
    fn tool_settings_default_to_the_cores_and_apply_to_a_call() {
        use switchboard_core::call::CallSettings;
        let tools = Settings::defaults().expect("defaults parse").tools;
        let core = CallSettings::default();
        let mut applied = CallSettings::default();
        tools.apply(&mut applied);
        assert_eq!(applied.tool_filler_delay_ms, core.tool_filler_delay_ms);
        assert_eq!(applied.tool_filler_message, core.tool_filler_message);
        assert_eq!(applied.max_tool_rounds, core.max_tool_rounds);
        assert_eq!(applied.tool_round_cap_message, core.tool_round_cap_message);
        assert!(applied.warm_transfer_hold_tone && core.warm_transfer_hold_tone);

        let mut settings = Settings::load(
            None,
            &env(&[
                ("SWITCHBOARD_TOOLS__FILLER_DELAY_MS", "0"),
                ("SWITCHBOARD_TOOLS__MAX_ROUNDS", "2"),
                ("SWITCHBOARD_TOOLS__WARM_TRANSFER_HOLD", "silence"),
            ]),
            &[],
        )
        .expect("loads");
        settings.tools.apply(&mut applied);
        assert_eq!(applied.tool_filler_delay_ms, None, "0 = never a filler");
        assert_eq!(applied.max_tool_rounds, 2);
        assert!(!applied.warm_transfer_hold_tone, "silence: no hold tone");
        settings.tools.max_rounds = 0;
        assert!(settings.check().is_err(), "at least one round");
    }

    #[test]
    fn media_read_rounds_are_whole_frames_up_to_100_ms() {
        let mut s = Settings::defaults().expect("defaults parse");
        assert_eq!(s.twilio.media_read_round_ms, 40);
        for ok in [0, 20, 60, 100] {
            s.twilio.media_read_round_ms = ok;
            assert!(s.check().is_ok(), "{ok}");
        }
        for bad in [30, 120] {
            s.twilio.media_read_round_ms = bad;
            let e = s.check().expect_err("refused").to_string();
            assert!(e.contains("twilio.media_read_round_ms"), "{e}");
        }
    }

    #[test]
    fn the_quiet_stt_batch_is_whole_frames_from_the_speech_batch_to_250_ms() {
        let mut s = Settings::defaults().expect("defaults parse");
        assert_eq!(s.providers.stt_quiet_batch_ms, 200);
        for ok in [40, 100, 240] {
            s.providers.stt_quiet_batch_ms = ok;
            assert!(s.check().is_ok(), "{ok}");
        }
        for bad in [20, 50, 260] {
            s.providers.stt_quiet_batch_ms = bad;
            let e = s.check().expect_err("refused").to_string();
            assert!(e.contains("providers.stt_quiet_batch_ms"), "{e}");
        }
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("local.toml");
        std::fs::write(
            &file,
            "[server]\naddr = \"127.0.0.1:9001\"\nmax_body_bytes = 10\ndrain_timeout_s = 7\n",
        )
        .expect("write");
        // File beats defaults.
        let s = Settings::load(Some(&file), &env(&[]), &[]).expect("load");
        assert_eq!(s.server.addr.port(), 9001);
        assert_eq!(s.server.drain_timeout_s, 7);
        // Env beats file (nested and alias forms).
        let s = Settings::load(
            Some(&file),
            &env(&[
                ("SWITCHBOARD_SERVER__MAX_BODY_BYTES", "20"),
                ("SWITCHBOARD_ADDR", "127.0.0.1:9002"),
                ("SWITCHBOARD_PUBLIC_URL", "https://calls.example.com/"),
                ("DATABASE_URL", "sqlite://other.db"),
                ("SWITCHBOARD_BOOTSTRAP_KEY", "ignored-here"),
            ]),
            &[],
        )
        .expect("load");
        assert_eq!(s.server.max_body_bytes, 20);
        assert_eq!(s.server.addr.port(), 9002);
        assert_eq!(s.database.url, "sqlite://other.db");
        assert_eq!(
            s.server.public_base_url(s.server.addr),
            "https://calls.example.com"
        );
        // Flags beat env.
        let s = Settings::load(
            Some(&file),
            &env(&[("SWITCHBOARD_ADDR", "127.0.0.1:9002")]),
            &[("server.addr", "127.0.0.1:9003".to_owned())],
        )
        .expect("load");
        assert_eq!(s.server.addr.port(), 9003);
    }

    #[test]
    fn typo_in_a_section_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "[server]\nadress = \"x\"\n").expect("write");
        let err = Settings::load(Some(&file), &env(&[]), &[]).expect_err("typo rejected");
        assert!(err.to_string().contains("adress"), "{err}");
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(Settings::load(None, &env(&[("SWITCHBOARD_ADDR", "nope")]), &[]).is_err());
        assert!(
            Settings::load(
                None,
                &env(&[("SWITCHBOARD_PUBLIC_URL", "ftp://example.com")]),
                &[]
            )
            .is_err()
        );
        assert!(
            Settings::load(
                None,
                &env(&[("SWITCHBOARD_SERVER__MAX_BODY_BYTES", "0")]),
                &[]
            )
            .is_err()
        );
        for zero in [
            "SWITCHBOARD_TWILIO__STREAM_START_TIMEOUT_S",
            "SWITCHBOARD_CALLS__STALE_AFTER_S",
        ] {
            let err = Settings::load(None, &env(&[(zero, "0")]), &[]).expect_err(zero);
            assert!(err.to_string().contains("at least 1"), "{err}");
        }
        let missing = Path::new("/nonexistent/switchboard.toml");
        assert!(Settings::load(Some(missing), &env(&[]), &[]).is_err());
    }

    #[test]
    fn edge_settings_parse_and_are_checked() {
        let s = Settings::defaults().expect("defaults");
        assert_eq!(s.server.header_read_timeout_ms, 10_000);
        assert_eq!(s.server.body_read_timeout_ms, 30_000);
        assert_eq!(s.server.idle_timeout_s, 60);
        assert_eq!(s.server.max_connections_per_ip, 256);
        assert_eq!(s.server.max_connections, 10_000);
        assert_eq!(
            (s.server.auth_fail_limit, s.server.auth_fail_window_s),
            (20, 60)
        );
        assert!(s.server.trusted_proxies.is_empty());
        assert!(s.metrics.token.is_empty() && s.metrics.addr.is_none() && !s.metrics.public);

        let s = Settings::load(
            None,
            &env(&[
                (
                    "SWITCHBOARD_SERVER__TRUSTED_PROXIES",
                    "10.0.0.0/8,127.0.0.1",
                ),
                ("SWITCHBOARD_METRICS__TOKEN", "metrics-t0ken"),
                ("SWITCHBOARD_METRICS__ADDR", "127.0.0.1:9090"),
                ("SWITCHBOARD_METRICS__PUBLIC", "true"),
            ]),
            &[],
        )
        .expect("load");
        let nets = s.server.trusted_proxy_nets().expect("nets");
        assert_eq!(nets.len(), 2);
        assert!(nets[1].contains(&"127.0.0.1".parse::<std::net::IpAddr>().expect("ip")));
        assert_eq!(
            s.metrics.addr,
            Some("127.0.0.1:9090".parse().expect("addr"))
        );
        assert!(s.metrics.public);
        assert!(
            !format!("{s:?}").contains("metrics-t0ken"),
            "token redacted"
        );

        let err = Settings::load(
            None,
            &env(&[("SWITCHBOARD_SERVER__TRUSTED_PROXIES", "proxy.internal")]),
            &[],
        )
        .expect_err("not an address");
        assert!(err.to_string().contains("trusted_proxies"), "{err}");
        for key in [
            "SWITCHBOARD_SERVER__IDLE_TIMEOUT_S",
            "SWITCHBOARD_SERVER__HEADER_READ_TIMEOUT_MS",
            "SWITCHBOARD_SERVER__MAX_CONNECTIONS_PER_IP",
        ] {
            let err = Settings::load(None, &env(&[(key, "0")]), &[]).expect_err("zero");
            assert!(err.to_string().contains("at least 1"), "{key}: {err}");
        }
    }

    #[test]
    fn outbound_allowlist_is_empty_by_default_and_comma_separated_in_the_environment() {
        let s = Settings::defaults().expect("defaults");
        assert!(s.outbound.allow_hosts.is_empty());
        assert!(!s.webhooks.log_response_body);
        let s = Settings::load(
            None,
            &env(&[
                (
                    "SWITCHBOARD_OUTBOUND__ALLOW_HOSTS",
                    "127.0.0.1, ::1,llm.lan",
                ),
                ("SWITCHBOARD_LOGGING__FILTER", "info,sqlx=warn"),
                ("SWITCHBOARD_WEBHOOKS__LOG_RESPONSE_BODY", "true"),
            ]),
            &[],
        )
        .expect("load");
        let allow = &s.outbound.allow_hosts;
        assert!(allow.allows_ip("127.0.0.1".parse().expect("ip")));
        assert!(allow.allows_ip("::1".parse().expect("ip")));
        assert!(allow.allows_host("llm.lan"));
        assert_eq!(
            s.logging.filter, "info,sqlx=warn",
            "other keys are not split"
        );
        assert!(s.webhooks.log_response_body);
        let one = Settings::load(
            None,
            &env(&[("SWITCHBOARD_OUTBOUND__ALLOW_HOSTS", "10.0.0.0/8")]),
            &[],
        )
        .expect("a single entry");
        assert!(
            one.outbound
                .allow_hosts
                .allows_ip("10.9.8.7".parse().expect("ip"))
        );
        let err = Settings::load(
            None,
            &env(&[("SWITCHBOARD_OUTBOUND__ALLOW_HOSTS", "127.0.0.1,http://x")]),
            &[],
        )
        .expect_err("junk entry");
        assert!(err.to_string().contains("http://x"), "{err}");
    }

    #[test]
    fn env_key_orgs_and_environment_keys() {
        let s = Settings::defaults().expect("defaults");
        assert_eq!(s.providers.env_key_orgs, ["default"]);
        assert!(s.providers.env_keys_allowed_for("default"));
        assert!(!s.providers.env_keys_allowed_for("org-b"));
        assert_eq!(s.providers.environment_keys, EnvKeys::default());
        let s = Settings::load(
            None,
            &env(&[
                ("SWITCHBOARD_PROVIDERS__ENV_KEY_ORGS", "default, acme"),
                ("DEEPGRAM_API_KEY", "dg-operator-key"),
                ("HOME_KEY", "not a provider"),
                ("SWITCHBOARD_SECRET_KEY", &"ab".repeat(32)),
            ]),
            &[],
        )
        .expect("load");
        assert_eq!(s.providers.env_key_orgs, ["default", "acme"]);
        assert_eq!(
            s.providers.environment_keys.get("DEEPGRAM_API_KEY"),
            Some("dg-operator-key")
        );
        assert_eq!(s.providers.environment_keys.get("HOME_KEY"), None);
        assert_eq!(s.secrets.key.as_deref(), Some("ab".repeat(32).as_str()));
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("dg-operator-key") && !shown.contains(&"ab".repeat(32)),
            "{shown}"
        );
        let s = Settings::load(
            None,
            &env(&[("SWITCHBOARD_PROVIDERS__ENV_KEY_ORGS", "acme")]),
            &[],
        )
        .expect("load");
        assert_eq!(s.providers.env_key_orgs, ["acme"]);
    }

    #[test]
    fn debug_redacts_database_password() {
        let mut s = Settings::defaults().expect("defaults");
        s.database.url = "postgres://app:hunter2@db.internal/switchboard".into();
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("db.internal"));
    }

    #[test]
    fn s3_recordings_need_a_bucket_and_hide_their_secret() {
        let s = Settings::defaults().expect("defaults");
        assert_eq!(s.recordings.storage, RecordingStorageKind::Local);
        let e = Settings::load(
            None,
            &env(&[("SWITCHBOARD_RECORDINGS__STORAGE", "s3")]),
            &[],
        );
        assert!(
            matches!(&e, Err(SettingsError::Invalid(m)) if m.contains("recordings.s3.bucket")),
            "{e:?}"
        );
        let s = Settings::load(
            None,
            &env(&[
                ("SWITCHBOARD_RECORDINGS__STORAGE", "s3"),
                ("SWITCHBOARD_RECORDINGS__S3__BUCKET", "calls"),
                (
                    "SWITCHBOARD_RECORDINGS__S3__SECRET_ACCESS_KEY",
                    "hunter2-s3",
                ),
            ]),
            &[],
        )
        .expect("loads");
        assert_eq!(s.recordings.s3.bucket, "calls");
        assert_eq!(
            s.recordings.s3.secret_access_key.as_deref(),
            Some("hunter2-s3")
        );
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2-s3"), "{shown}");
    }

    #[test]
    fn background_sound_limits_default_parse_and_are_checked() {
        let s = Settings::defaults().expect("defaults").background_sound;
        assert_eq!(s.max_bytes, 10 * 1024 * 1024);
        assert_eq!(s.fetch_timeout_ms, 10_000);
        assert_eq!(s.cache_max_bytes, 64 * 1024 * 1024);
        assert_eq!(s.failure_retry_s, 60);
        assert_eq!(s.max_duration_s, 600);
        let s = Settings::load(
            None,
            &env(&[
                ("SWITCHBOARD_BACKGROUND_SOUND__MAX_BYTES", "2048"),
                ("SWITCHBOARD_BACKGROUND_SOUND__FAILURE_RETRY_S", "0"),
            ]),
            &[],
        )
        .expect("loads");
        assert_eq!(s.background_sound.max_bytes, 2048);
        assert_eq!(
            s.background_sound.failure_retry_s, 0,
            "0 = retry every call"
        );
        for key in [
            "SWITCHBOARD_BACKGROUND_SOUND__MAX_BYTES",
            "SWITCHBOARD_BACKGROUND_SOUND__FETCH_TIMEOUT_MS",
            "SWITCHBOARD_BACKGROUND_SOUND__CACHE_MAX_BYTES",
            "SWITCHBOARD_BACKGROUND_SOUND__MAX_DURATION_S",
        ] {
            let err = Settings::load(None, &env(&[(key, "0")]), &[]).expect_err(key);
            assert!(err.to_string().contains("at least 1"), "{key}: {err}");
        }
        let err = Settings::load(
            None,
            &env(&[("SWITCHBOARD_BACKGROUND_SOUND__FAILURE_RETRY_S", "3601")]),
            &[],
        )
        .expect_err("unbounded");
        assert!(err.to_string().contains("failure_retry_s"), "{err}");
    }
}
