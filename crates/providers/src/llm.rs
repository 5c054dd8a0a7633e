//! Provider-neutral LLM streaming: configuration, chat history, events, and the fallback chain.
//!
//! The call runtime builds an [`LlmConfig`] per provider from the assistant record
//! (`llm_provider`, `llm_provider_config`, `llm_settings`, `llm_fallback_providers`), then calls
//! [`stream_with_fallback`] (or [`stream_chat`] for a single provider) once per turn. The returned
//! [`LlmStream`] yields [`LlmEvent`]s from a spawned task that owns the HTTP response; dropping
//! the stream or calling [`LlmStream::cancel`] aborts the request at once (barge-in).
//!
//! Event order of one turn:
//! `AttemptFailed*` (providers that failed before answering), then `Provider` (who answers),
//! then `Text`/`ToolCall` in stream order, then exactly one `Done` or `Failed`. When every
//! provider fails before answering, the `AttemptFailed` of the last one is replaced by `Failed`.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument as _;

use switchboard_netguard::{GuardedClient, refusal_of};

use crate::error::ProviderError;
use crate::sse::{SseEvent, SseParser};

/// Which wire protocol and default endpoint a configuration uses (`llm_provider` of the record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LlmProvider {
    /// OpenAI Chat Completions, `https://api.openai.com/v1`.
    OpenAi,
    /// Azure OpenAI: `api-key` header, deployment path and `api-version` query.
    Azure,
    /// Anthropic Messages API, `https://api.anthropic.com/v1`.
    Anthropic,
    /// Google Gemini through its OpenAI-compatible endpoint.
    Gemini,
    /// xAI Grok, OpenAI-compatible.
    Xai,
    /// Groq, OpenAI-compatible.
    Groq,
    /// Any OpenAI-compatible server (vLLM, Ollama, a proxy); `base_url` is required.
    Custom,
}

impl LlmProvider {
    /// Parses the record's `llm_provider` (case-insensitive; `grok` is accepted for xAI,
    /// `google` for Gemini, `azure_openai` for Azure). `None` for an unknown name.
    pub fn parse(name: &str) -> Option<Self> {
        let n = name.trim().to_ascii_lowercase();
        Some(match n.as_str() {
            "openai" => Self::OpenAi,
            "azure" | "azure_openai" | "azure-openai" | "azureopenai" => Self::Azure,
            "anthropic" | "claude" => Self::Anthropic,
            "gemini" | "google" => Self::Gemini,
            "xai" | "grok" | "x-ai" => Self::Xai,
            "groq" => Self::Groq,
            "custom" | "openai_compatible" | "openai-compatible" => Self::Custom,
            _ => return None,
        })
    }

    /// The canonical lower-case name, used in errors, metrics and the call record.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Azure => "azure",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
            Self::Xai => "xai",
            Self::Groq => "groq",
            Self::Custom => "custom",
        }
    }

    /// The vendor's API root (docs/providers/openai.md#compatible-providers), to which the adapter appends its path
    /// (`/chat/completions` or `/messages`). `None` for Azure (per-resource) and custom.
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            Self::OpenAi => Some("https://api.openai.com/v1"),
            Self::Anthropic => Some("https://api.anthropic.com/v1"),
            Self::Gemini => Some("https://generativelanguage.googleapis.com/v1beta/openai"),
            Self::Xai => Some("https://api.x.ai/v1"),
            Self::Groq => Some("https://api.groq.com/openai/v1"),
            Self::Azure | Self::Custom => None,
        }
    }
}

impl fmt::Display for LlmProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Azure OpenAI specifics, from `llm_provider_config.custom_config`
/// (`api_version`, `deployment` / `deployment_name`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AzureConfig {
    /// The mandatory `api-version` query value, e.g. `2024-10-21`. `v1`, `preview` or `latest`
    /// (or an empty string) select the newer `/openai/v1/chat/completions` surface instead.
    pub api_version: String,
    /// Deployment name in the path; when `None` the model name is used as the deployment.
    pub deployment: Option<String>,
}

/// Default for [`LlmConfig::connect_timeout_ms`].
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Default for [`LlmConfig::first_token_timeout_ms`].
pub const DEFAULT_FIRST_TOKEN_TIMEOUT_MS: u64 = 5_000;
/// Default for [`LlmConfig::stream_idle_timeout_ms`].
pub const DEFAULT_STREAM_IDLE_TIMEOUT_MS: u64 = 15_000;
/// `max_tokens` sent to Anthropic (where it is mandatory) when the record has none.
pub const ANTHROPIC_DEFAULT_MAX_TOKENS: u32 = 1_024;

/// Everything needed to stream one chat completion from one provider. Named after the
/// assistant record: `llm_provider`, `llm_provider_config` (`model`, `base_url`, `api_key`,
/// `custom_config`) and `llm_settings`. A fallback entry of `llm_fallback_providers` becomes
/// another `LlmConfig` that normally copies the primary's `llm_settings`.
#[derive(Clone, PartialEq)]
pub struct LlmConfig {
    /// Wire protocol and default endpoint.
    pub provider: LlmProvider,
    /// Model name (`gpt-4o-mini`, `claude-…`); for Azure also the deployment unless one is set.
    pub model: String,
    /// API root override, OpenAI convention: the root including `/v1` (e.g.
    /// `http://127.0.0.1:9000/v1`); a bare `scheme://host[:port]` gets `/v1` appended. For
    /// Azure: the resource endpoint `https://{resource}.openai.azure.com`. Required for
    /// `custom` and `azure`.
    pub base_url: Option<String>,
    /// The key; sent as `Authorization: Bearer`, `api-key` (Azure) or `x-api-key` (Anthropic).
    /// Never logged; `Debug` redacts it.
    pub api_key: String,
    /// `llm_settings.temperature` (0–2; Anthropic is clamped to 0–1).
    pub temperature: Option<f64>,
    /// `llm_settings.max_tokens`: cap on generated tokens.
    pub max_tokens: Option<u32>,
    /// `llm_settings.top_p` (0–1).
    pub top_p: Option<f64>,
    /// `llm_settings.frequency_penalty` (−2–2; OpenAI-compatible only).
    pub frequency_penalty: Option<f64>,
    /// `llm_settings.presence_penalty` (−2–2; OpenAI-compatible only).
    pub presence_penalty: Option<f64>,
    /// `llm_settings.stop_sequences` (OpenAI accepts at most 4; the first 4 are sent).
    pub stop_sequences: Vec<String>,
    /// Azure deployment and API version; required when `provider` is Azure.
    pub azure: Option<AzureConfig>,
    /// Deadline in ms from the request start until the response headers (TCP + TLS connect
    /// and the server accepting the request). Expiry is a `Timeout` and triggers fallback.
    pub connect_timeout_ms: u64,
    /// Deadline in ms from the request start until the first token (text, tool call or end of
    /// reply). Expiry is a `Timeout` and triggers fallback.
    pub first_token_timeout_ms: u64,
    /// Longest silence in ms between chunks once the reply has started; expiry fails the turn.
    pub stream_idle_timeout_ms: u64,
}

impl LlmConfig {
    /// A configuration with no sampling settings and the default timeouts.
    pub fn new(
        provider: LlmProvider,
        model: impl Into<String>,
        api_key: impl Into<String>,
    ) -> Self {
        Self {
            provider,
            model: model.into(),
            base_url: None,
            api_key: api_key.into(),
            temperature: None,
            max_tokens: None,
            top_p: None,
            frequency_penalty: None,
            presence_penalty: None,
            stop_sequences: Vec::new(),
            azure: None,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            first_token_timeout_ms: DEFAULT_FIRST_TOKEN_TIMEOUT_MS,
            stream_idle_timeout_ms: DEFAULT_STREAM_IDLE_TIMEOUT_MS,
        }
    }

    /// Sets `base_url` (builder style).
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = Some(base_url.into());
        self
    }

    /// Copies the `llm_settings` fields (sampling, limits, stop sequences) and timeouts of
    /// `other`, keeping provider, model, key, base URL and Azure settings. This is how a
    /// fallback entry (which only names provider/key/base_url/model) inherits the settings.
    pub fn with_settings_of(mut self, other: &LlmConfig) -> Self {
        self.temperature = other.temperature;
        self.max_tokens = other.max_tokens;
        self.top_p = other.top_p;
        self.frequency_penalty = other.frequency_penalty;
        self.presence_penalty = other.presence_penalty;
        self.stop_sequences = other.stop_sequences.clone();
        self.connect_timeout_ms = other.connect_timeout_ms;
        self.first_token_timeout_ms = other.first_token_timeout_ms;
        self.stream_idle_timeout_ms = other.stream_idle_timeout_ms;
        self
    }

    /// The API root to use: `base_url` (trailing `/` removed, `/v1` added to a bare host)
    /// or the provider default. Errors for `custom`/`azure` without a base URL. Other
    /// OpenAI-compatible endpoints of the same server (embeddings) hang off it too.
    pub fn api_root(&self) -> Result<String, ProviderError> {
        let provider = self.provider.as_str();
        match self
            .base_url
            .as_deref()
            .map(str::trim)
            .filter(|b| !b.is_empty())
        {
            Some(base) => {
                let base = base.trim_end_matches('/');
                let url = url::Url::parse(base).map_err(|e| ProviderError::Config {
                    provider,
                    message: format!("invalid base_url: {e}"),
                })?;
                let bare = url.path().is_empty() || url.path() == "/";
                if bare && self.provider != LlmProvider::Azure {
                    Ok(format!("{base}/v1"))
                } else {
                    Ok(base.to_owned())
                }
            }
            None => self
                .provider
                .default_base_url()
                .map(str::to_owned)
                .ok_or_else(|| ProviderError::Config {
                    provider,
                    message: "base_url is required for this provider".to_owned(),
                }),
        }
    }
}

impl fmt::Debug for LlmConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmConfig")
            .field("provider", &self.provider)
            .field("model", &self.model)
            .field("base_url", &self.base_url)
            .field(
                "api_key",
                &if self.api_key.is_empty() {
                    "<empty>"
                } else {
                    "<redacted>"
                },
            )
            .field("temperature", &self.temperature)
            .field("max_tokens", &self.max_tokens)
            .field("top_p", &self.top_p)
            .field("frequency_penalty", &self.frequency_penalty)
            .field("presence_penalty", &self.presence_penalty)
            .field("stop_sequences", &self.stop_sequences)
            .field("azure", &self.azure)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("first_token_timeout_ms", &self.first_token_timeout_ms)
            .field("stream_idle_timeout_ms", &self.stream_idle_timeout_ms)
            .finish()
    }
}

/// A complete tool call requested by the model (arguments already parsed from JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// Provider-issued id (`call_…`, `toolu_…`); the tool result must quote it.
    pub id: String,
    /// Function name, as declared in a [`ToolSpec`].
    pub name: String,
    /// Parsed arguments (an object; `{}` when the model sent none).
    pub arguments: Value,
}

/// One message of the conversation history sent to the model.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatMessage {
    /// Instructions (`system_prompt`); Anthropic receives all of them joined as top-level `system`.
    System {
        /// Text.
        content: String,
    },
    /// What the caller said.
    User {
        /// Text.
        content: String,
    },
    /// What the assistant said (only what the caller heard, after an interruption), and the
    /// tools it called in that turn.
    Assistant {
        /// Spoken text; may be empty when the turn only called tools.
        content: String,
        /// Tool calls made in this turn, each answered by a later [`ChatMessage::Tool`].
        tool_calls: Vec<ToolCall>,
    },
    /// The result of one tool call.
    Tool {
        /// The [`ToolCall::id`] this answers.
        tool_call_id: String,
        /// Result text (often JSON).
        content: String,
    },
}

impl ChatMessage {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::System {
            content: content.into(),
        }
    }
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::User {
            content: content.into(),
        }
    }
    /// An assistant message without tool calls.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::Assistant {
            content: content.into(),
            tool_calls: Vec::new(),
        }
    }
    /// A tool result.
    pub fn tool(tool_call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self::Tool {
            tool_call_id: tool_call_id.into(),
            content: content.into(),
        }
    }
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// Function name (`[a-zA-Z0-9_-]{1,64}` for OpenAI).
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON Schema of the arguments object.
    pub parameters: Value,
}

/// One turn's request: the history and the tools on offer (`tool_choice` is `auto` when any).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LlmRequest {
    /// History, oldest first.
    pub messages: Vec<ChatMessage>,
    /// Tools the model may call; empty for none.
    pub tools: Vec<ToolSpec>,
}

/// Why the model stopped, normalised across providers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    /// Natural end (`stop`, `end_turn`, `stop_sequence`).
    Stop,
    /// Hit `max_tokens` (`length`, `max_tokens`).
    Length,
    /// Stopped to call tools (`tool_calls`, `tool_use`).
    ToolCalls,
    /// Filtered or refused (`content_filter`, `refusal`).
    ContentFilter,
    /// Anything else, verbatim.
    Other(String),
}

impl FinishReason {
    /// Maps an OpenAI `finish_reason` or Anthropic `stop_reason`.
    pub fn from_wire(s: &str) -> Self {
        match s {
            "stop" | "end_turn" | "stop_sequence" => Self::Stop,
            "length" | "max_tokens" | "model_context_window_exceeded" => Self::Length,
            "tool_calls" | "tool_use" | "function_call" => Self::ToolCalls,
            "content_filter" | "refusal" => Self::ContentFilter,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// Token accounting of one completion (when the provider reports it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Prompt tokens (`prompt_tokens` / `input_tokens`).
    pub input_tokens: u32,
    /// Generated tokens (`completion_tokens` / `output_tokens`).
    pub output_tokens: u32,
    /// Prompt tokens served from the provider's cache, when reported.
    pub cached_input_tokens: Option<u32>,
}

/// One attempt in the fallback chain that failed before producing a token.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedAttempt {
    /// Provider of the attempt.
    pub provider: LlmProvider,
    /// Model of the attempt.
    pub model: String,
    /// Why it failed.
    pub error: ProviderError,
}

/// What an [`LlmStream`] yields.
#[derive(Debug, Clone, PartialEq)]
pub enum LlmEvent {
    /// A provider failed before answering and the next one in the chain is being tried now.
    AttemptFailed(FailedAttempt),
    /// This provider answers the turn; sent once, right before its first token.
    Provider {
        /// Which provider answered.
        provider: LlmProvider,
        /// Which model answered.
        model: String,
        /// Position in the chain: 0 = primary, 1 = first fallback, ….
        attempt: usize,
    },
    /// A text delta, in order; concatenated they form the reply.
    Text(String),
    /// A complete tool call (fragments already accumulated and parsed).
    ToolCall(ToolCall),
    /// The reply ended normally. Last event.
    Done {
        /// Why the model stopped.
        finish_reason: FinishReason,
        /// Token usage if the provider sent it.
        usage: Option<Usage>,
    },
    /// The turn failed (every provider failed, or the answering one broke mid-reply). Last event.
    Failed(ProviderError),
}

/// Channel capacity in events: deltas are consumed faster than they arrive, this is slack.
const CHANNEL_CAPACITY: usize = 64;

/// A streaming reply. Yields [`LlmEvent`]s; dropping it (or [`LlmStream::cancel`]) aborts the
/// HTTP request immediately, so the provider sees the connection close.
#[derive(Debug)]
pub struct LlmStream {
    rx: mpsc::Receiver<LlmEvent>,
    task: JoinHandle<()>,
    first_token_at: Arc<OnceLock<Instant>>,
}

impl LlmStream {
    /// The next event; `None` after the final `Done`/`Failed` or after [`LlmStream::cancel`].
    pub async fn recv(&mut self) -> Option<LlmEvent> {
        self.rx.recv().await
    }

    /// Aborts the request now (barge-in). Further `recv` calls return what was already queued,
    /// then `None`.
    pub fn cancel(&mut self) {
        self.task.abort();
        self.rx.close();
    }

    /// When the first token (text, tool call or end of reply) arrived from the provider that
    /// answered; `None` until then. Tokio time, so tests with a paused clock see virtual time.
    pub fn first_token_at(&self) -> Option<Instant> {
        self.first_token_at.get().copied()
    }
}

impl Drop for LlmStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl futures::Stream for LlmStream {
    type Item = LlmEvent;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<LlmEvent>> {
        self.rx.poll_recv(cx)
    }
}

/// Builds the primary [`LlmConfig`] and its fallbacks from an assistant record (the JSON of
/// `GET /api/v1/assistants/{id}`): `llm_provider`, `llm_provider_config` (`model`, `base_url`,
/// `api_key`, `custom_config`), `llm_settings` (temperature, max_tokens, top_p,
/// frequency_penalty, presence_penalty, stop_sequences) and `llm_fallback_providers` (used only
/// when `enabled`; each entry's `provider`, `model`, `base_url`, `api_key`, optional
/// `custom_config`, inheriting the primary's `llm_settings`).
///
/// `custom_config` may carry `api_version` and `deployment` (or `deployment_name`) for Azure,
/// and `connect_timeout_ms`, `first_token_timeout_ms`, `stream_idle_timeout_ms`. Keys are taken
/// as written in the record (possibly empty): resolving organisation and environment keys is
/// the caller's job (set `api_key` afterwards). A fallback entry with an unknown provider or no
/// model is skipped with a warning rather than failing the primary.
pub fn configs_from_record(record: &Value) -> Result<(LlmConfig, Vec<LlmConfig>), ProviderError> {
    let provider_name = record
        .get("llm_provider")
        .and_then(Value::as_str)
        .unwrap_or("openai");
    let pcfg = record.get("llm_provider_config").unwrap_or(&Value::Null);
    let mut primary = config_entry(provider_name, pcfg)?;
    let settings = record.get("llm_settings").unwrap_or(&Value::Null);
    let num = |k: &str| {
        settings
            .get(k)
            .and_then(Value::as_f64)
            .filter(|v| v.is_finite())
    };
    primary.temperature = num("temperature");
    primary.top_p = num("top_p");
    primary.frequency_penalty = num("frequency_penalty");
    primary.presence_penalty = num("presence_penalty");
    primary.max_tokens = settings
        .get("max_tokens")
        .and_then(Value::as_u64)
        .filter(|&m| m > 0)
        .map(|m| u32::try_from(m).unwrap_or(u32::MAX));
    primary.stop_sequences = settings
        .get("stop_sequences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let mut fallbacks = Vec::new();
    let fb = record.get("llm_fallback_providers").unwrap_or(&Value::Null);
    if fb.get("enabled").and_then(Value::as_bool).unwrap_or(false) {
        for entry in fb
            .get("fallbacks")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = entry
                .get("provider")
                .and_then(Value::as_str)
                .unwrap_or_default();
            match config_entry(name, entry) {
                Ok(cfg) => fallbacks.push(cfg.with_settings_of(&primary)),
                Err(e) => tracing::warn!(error = %e, "skipping unusable llm fallback entry"),
            }
        }
    }
    Ok((primary, fallbacks))
}

/// One `{provider?, model, base_url, api_key, custom_config}` object.
fn config_entry(provider_name: &str, obj: &Value) -> Result<LlmConfig, ProviderError> {
    let provider = LlmProvider::parse(provider_name).ok_or_else(|| ProviderError::Config {
        provider: "llm",
        message: format!("unknown llm provider `{provider_name}`"),
    })?;
    let text = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let model = text(obj, "model").ok_or_else(|| ProviderError::Config {
        provider: provider.as_str(),
        message: "model is required".to_owned(),
    })?;
    let mut cfg = LlmConfig::new(provider, model, text(obj, "api_key").unwrap_or_default());
    cfg.base_url = text(obj, "base_url");
    let custom = obj.get("custom_config").unwrap_or(&Value::Null);
    if provider == LlmProvider::Azure {
        cfg.azure = Some(AzureConfig {
            api_version: text(custom, "api_version").unwrap_or_default(),
            deployment: text(custom, "deployment").or_else(|| text(custom, "deployment_name")),
        });
    }
    let ms = |k: &str| custom.get(k).and_then(Value::as_u64).filter(|&v| v > 0);
    if let Some(v) = ms("connect_timeout_ms") {
        cfg.connect_timeout_ms = v;
    }
    if let Some(v) = ms("first_token_timeout_ms") {
        cfg.first_token_timeout_ms = v;
    }
    if let Some(v) = ms("stream_idle_timeout_ms") {
        cfg.stream_idle_timeout_ms = v;
    }
    Ok(cfg)
}

/// Streams one reply from one provider (no fallback). See [`stream_with_fallback`].
pub fn stream_chat(cfg: &LlmConfig, req: LlmRequest, client: &GuardedClient) -> LlmStream {
    stream_with_fallback(cfg, &[], req, client)
}

/// Streams one reply, trying `primary` then each of `fallbacks` in order **within the same
/// turn** until one produces a token.
///
/// An attempt hands over to the next provider when it fails before its first token with
/// ([`fails_over`]): a connect error, a timeout (response headers or first token), HTTP 408,
/// 409, 429 (including `insufficient_quota`: the quota is this provider's, another provider
/// can still answer), 401/403/404 (this provider's key or model is unusable), a missing key,
/// an address the outbound policy refuses, any 5xx including Anthropic's 529, or a retryable
/// in-stream error. It does not fail over on 400, 413 or 422 (the request itself is wrong) or
/// on a configuration error. Once a token has reached the caller there is no fallback: a later
/// failure ends the turn with `Failed`.
/// There are no same-provider retries with backoff: on a phone call the next provider now is
/// better than the same one after a pause.
///
/// Must be called inside a tokio runtime.
pub fn stream_with_fallback(
    primary: &LlmConfig,
    fallbacks: &[LlmConfig],
    req: LlmRequest,
    client: &GuardedClient,
) -> LlmStream {
    stream_with_fallback_prepared(primary, fallbacks, std::future::ready(req), client)
}

/// [`stream_with_fallback`] for a request that needs asynchronous work before it can be sent
/// (the knowledge base's retrieved context): `prepare` runs first on the stream's own task, so
/// the caller never waits for it, and cancelling or dropping the stream stops it too.
///
/// Must be called inside a tokio runtime.
pub fn stream_with_fallback_prepared<F>(
    primary: &LlmConfig,
    fallbacks: &[LlmConfig],
    prepare: F,
    client: &GuardedClient,
) -> LlmStream
where
    F: std::future::Future<Output = LlmRequest> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    let first_token_at = Arc::new(OnceLock::new());
    let mut chain = Vec::with_capacity(1 + fallbacks.len());
    chain.push(primary.clone());
    chain.extend_from_slice(fallbacks);
    let client = client.clone();
    let first = Arc::clone(&first_token_at);
    let work = async move {
        let req = prepare.await;
        run_chain(chain, req, client, tx, first).await;
    };
    let task = tokio::spawn(work.in_current_span());
    LlmStream {
        rx,
        task,
        first_token_at,
    }
}

/// Whether an error that happened before the first token should hand the turn to the next
/// provider in the chain (see [`stream_with_fallback`] for the policy).
pub fn fails_over(err: &ProviderError) -> bool {
    match err {
        ProviderError::Http { status, .. } => {
            err.is_retryable()
                || matches!(status, 401 | 403 | 404 | 408 | 409 | 429)
                || *status >= 500
        }
        ProviderError::MissingKey { .. } | ProviderError::NotAllowed { .. } => true,
        ProviderError::Config { .. } => false,
        _ => err.is_retryable(),
    }
}

async fn run_chain(
    chain: Vec<LlmConfig>,
    req: LlmRequest,
    client: GuardedClient,
    tx: mpsc::Sender<LlmEvent>,
    first_token_at: Arc<OnceLock<Instant>>,
) {
    let last = chain.len().saturating_sub(1);
    for (i, cfg) in chain.iter().enumerate() {
        let mut attempt = Attempt {
            tx: &tx,
            provider: cfg.provider,
            model: &cfg.model,
            index: i,
            committed: false,
            closed: false,
            first_token_at: &first_token_at,
        };
        let result = run_attempt(cfg, &req, &client, &mut attempt).await;
        if attempt.closed {
            return;
        }
        let err = match result {
            Ok(()) => return,
            Err(e) => e,
        };
        if attempt.committed || i == last || !fails_over(&err) {
            tracing::warn!(provider = cfg.provider.as_str(), model = %cfg.model, error = %err, "llm turn failed");
            let _ = tx.send(LlmEvent::Failed(err)).await;
            return;
        }
        tracing::warn!(provider = cfg.provider.as_str(), model = %cfg.model, error = %err, "llm attempt failed; falling back");
        let failed = FailedAttempt {
            provider: cfg.provider,
            model: cfg.model.clone(),
            error: err,
        };
        if tx.send(LlmEvent::AttemptFailed(failed)).await.is_err() {
            return;
        }
    }
}

async fn run_attempt(
    cfg: &LlmConfig,
    req: &LlmRequest,
    client: &GuardedClient,
    attempt: &mut Attempt<'_>,
) -> Result<(), ProviderError> {
    let provider = cfg.provider.as_str();
    if cfg.api_key.trim().is_empty() {
        return Err(ProviderError::MissingKey { provider });
    }
    let http = match cfg.provider {
        LlmProvider::Anthropic => crate::anthropic::build_request(cfg, req)?,
        _ => crate::openai::build_request(cfg, req)?,
    };
    let start = Instant::now();
    let first_token_deadline = start + Duration::from_millis(cfg.first_token_timeout_ms);
    let headers_deadline =
        (start + Duration::from_millis(cfg.connect_timeout_ms)).min(first_token_deadline);
    let mut builder = client
        .post(&http.url)
        .map_err(|refused| ProviderError::NotAllowed {
            provider,
            message: refused.to_string(),
        })?
        .body(http.body);
    for (name, value) in &http.headers {
        builder = builder.header(*name, value.as_str());
    }
    let response = match tokio::time::timeout_at(headers_deadline, builder.send()).await {
        Err(_) => {
            return Err(ProviderError::Timeout {
                provider,
                waiting_for: "response headers",
                after: headers_deadline - start,
            });
        }
        Ok(Err(e)) => {
            return Err(match refusal_of(&e) {
                Some(refused) => ProviderError::NotAllowed {
                    provider,
                    message: refused.to_string(),
                },
                None => ProviderError::Connect {
                    provider,
                    message: error_chain(&e.without_url()),
                },
            });
        }
        Ok(Ok(r)) => r,
    };
    let status = response.status();
    if !status.is_success() {
        return Err(read_http_error(provider, response, first_token_deadline).await);
    }
    let timing = Timing {
        start,
        first_token_deadline,
        idle: Duration::from_millis(cfg.stream_idle_timeout_ms),
    };
    match cfg.provider {
        LlmProvider::Anthropic => {
            let mut dec = crate::anthropic::Decoder::new();
            drive_sse(provider, response, &mut dec, attempt, timing).await
        }
        _ => {
            let mut dec = crate::openai::Decoder::new(provider);
            drive_sse(provider, response, &mut dec, attempt, timing).await
        }
    }
}

/// A ready-to-send HTTP request built by an adapter.
pub(crate) struct HttpRequest {
    pub(crate) url: String,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Vec<u8>,
}

/// Turns SSE events of one provider into [`LlmEvent`]s.
pub(crate) trait Decoder {
    /// Handles one event; pushes zero or more events to `out`. `Ok(true)` when the reply is
    /// complete (the last pushed event is `Done`).
    fn on_event(
        &mut self,
        ev: SseEvent<'_>,
        out: &mut Vec<LlmEvent>,
    ) -> Result<bool, ProviderError>;
    /// The body ended without the provider's terminator: finish if the reply was complete
    /// enough (`Ok(true)` after pushing `Done`), else `Ok(false)` (the driver reports it).
    fn on_eof(&mut self, out: &mut Vec<LlmEvent>) -> Result<bool, ProviderError>;
}

struct Timing {
    start: Instant,
    first_token_deadline: Instant,
    idle: Duration,
}

/// Forwards events of one attempt; knows whether a token has reached the caller.
struct Attempt<'a> {
    tx: &'a mpsc::Sender<LlmEvent>,
    provider: LlmProvider,
    model: &'a str,
    index: usize,
    committed: bool,
    closed: bool,
    first_token_at: &'a OnceLock<Instant>,
}

impl Attempt<'_> {
    /// Sends `ev`, preceded by `Provider` on the first token. `false` when the caller is gone.
    async fn emit(&mut self, ev: LlmEvent) -> bool {
        if !self.committed {
            self.committed = true;
            let _ = self.first_token_at.set(Instant::now());
            let who = LlmEvent::Provider {
                provider: self.provider,
                model: self.model.to_owned(),
                attempt: self.index,
            };
            if self.tx.send(who).await.is_err() {
                self.closed = true;
                return false;
            }
        }
        if self.tx.send(ev).await.is_err() {
            self.closed = true;
            return false;
        }
        true
    }
}

async fn drive_sse(
    provider: &'static str,
    mut response: reqwest::Response,
    dec: &mut impl Decoder,
    attempt: &mut Attempt<'_>,
    timing: Timing,
) -> Result<(), ProviderError> {
    let mut parser = SseParser::new();
    let mut out: Vec<LlmEvent> = Vec::new();
    loop {
        let (deadline, waiting_for) = if attempt.committed {
            (Instant::now() + timing.idle, "next chunk")
        } else {
            (timing.first_token_deadline, "first token")
        };
        let chunk = match tokio::time::timeout_at(deadline, response.chunk()).await {
            Err(_) => {
                let after = if attempt.committed {
                    timing.idle
                } else {
                    deadline - timing.start
                };
                return Err(ProviderError::Timeout {
                    provider,
                    waiting_for,
                    after,
                });
            }
            Ok(Err(e)) => {
                return Err(ProviderError::Stream {
                    provider,
                    message: format!("connection lost: {}", error_chain(&e.without_url())),
                    retryable: true,
                });
            }
            Ok(Ok(c)) => c,
        };
        let mut failure: Option<ProviderError> = None;
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
        let parsed = match &chunk {
            Some(bytes) => parser.feed(bytes, &mut on_event),
            None => parser.finish(&mut on_event),
        };
        if let Err(e) = parsed
            && !finished
            && failure.is_none()
        {
            failure = Some(ProviderError::Protocol {
                provider,
                message: e.to_string(),
            });
        }
        if chunk.is_none() && !finished && failure.is_none() {
            match dec.on_eof(&mut out) {
                Ok(done) => finished = done,
                Err(e) => failure = Some(e),
            }
        }
        for ev in out.drain(..) {
            if !attempt.emit(ev).await {
                return Ok(());
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        if finished {
            return Ok(());
        }
        if chunk.is_none() {
            return Err(ProviderError::Stream {
                provider,
                message: "stream ended before the reply was complete".to_owned(),
                retryable: true,
            });
        }
    }
}

/// Largest error body read, in bytes; error messages are trimmed further.
const MAX_ERROR_BODY_BYTES: usize = 16 * 1024;
/// Longest error message kept from a body, in chars.
const MAX_ERROR_MESSAGE_CHARS: usize = 300;

pub(crate) async fn read_http_error(
    provider: &'static str,
    mut response: reqwest::Response,
    deadline: Instant,
) -> ProviderError {
    let status = response.status().as_u16();
    let should_retry = response
        .headers()
        .get("x-should-retry")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.eq_ignore_ascii_case("true"));
    let mut body = Vec::new();
    // A slow error body must not hold the turn: read what arrives before the deadline.
    let _ = tokio::time::timeout_at(deadline, async {
        while let Ok(Some(chunk)) = response.chunk().await {
            body.extend_from_slice(&chunk);
            if body.len() >= MAX_ERROR_BODY_BYTES {
                break;
            }
        }
    })
    .await;
    http_error(provider, status, should_retry, &body)
}

/// Maps an HTTP error status and body to [`ProviderError::Http`] (docs/providers/openai.md, docs/providers/anthropic.md#errors):
/// retryable on 408, 409, 429 (unless the code or type is `insufficient_quota`) and ≥ 500
/// (including 529); `x-should-retry` (`should_retry`) overrides. The message is
/// `"<code or type>: <message>"` from `{"error":{…}}` bodies of both OpenAI and Anthropic.
pub fn http_error(
    provider: &'static str,
    status: u16,
    should_retry: Option<bool>,
    body: &[u8],
) -> ProviderError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let err = parsed.as_ref().and_then(|v| v.get("error"));
    let field = |name: &str| -> Option<String> {
        match err.and_then(|e| e.get(name)) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    };
    let code = field("code");
    let kind = field("type");
    let quota = code.as_deref() == Some("insufficient_quota")
        || kind.as_deref() == Some("insufficient_quota");
    let retryable = should_retry.unwrap_or(match status {
        408 | 409 => true,
        429 => !quota,
        s => s >= 500,
    });
    let text = match (field("message"), parsed.is_some()) {
        (Some(m), _) => m,
        (None, true) => String::new(),
        (None, false) => String::from_utf8_lossy(body).trim().to_owned(),
    };
    let label = code.or(kind);
    let mut message = match label {
        Some(l) if text.is_empty() => l,
        Some(l) => format!("{l}: {text}"),
        None => text,
    };
    if message.chars().count() > MAX_ERROR_MESSAGE_CHARS {
        message = message.chars().take(MAX_ERROR_MESSAGE_CHARS).collect();
    }
    ProviderError::Http {
        provider,
        status,
        message,
        retryable,
    }
}

/// The error and its sources on one line (reqwest's top-level text alone says little).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        s.push_str(": ");
        s.push_str(&src.to_string());
        cur = src.source();
    }
    s
}

/// Parses accumulated tool-call arguments; an empty string means no arguments (`{}`).
pub(crate) fn parse_arguments(
    provider: &'static str,
    name: &str,
    raw: &str,
) -> Result<Value, ProviderError> {
    if raw.trim().is_empty() {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    serde_json::from_str(raw).map_err(|e| ProviderError::Protocol {
        provider,
        message: format!("arguments of tool call `{name}` are not valid JSON: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_key() {
        let cfg = LlmConfig::new(LlmProvider::OpenAi, "gpt-4o-mini", "sk-secret-123");
        let s = format!("{cfg:?}");
        assert!(!s.contains("sk-secret-123"), "{s}");
        assert!(s.contains("<redacted>"));
    }

    #[test]
    fn provider_names_round_trip() {
        for p in [
            LlmProvider::OpenAi,
            LlmProvider::Azure,
            LlmProvider::Anthropic,
            LlmProvider::Gemini,
            LlmProvider::Xai,
            LlmProvider::Groq,
            LlmProvider::Custom,
        ] {
            assert_eq!(LlmProvider::parse(p.as_str()), Some(p));
        }
        assert_eq!(LlmProvider::parse("Grok"), Some(LlmProvider::Xai));
        assert_eq!(LlmProvider::parse("cohere"), None);
    }

    #[test]
    fn api_root_rules() {
        let mut cfg = LlmConfig::new(LlmProvider::Gemini, "gemini-2.5-flash", "k");
        assert_eq!(
            cfg.api_root().ok().as_deref(),
            Some("https://generativelanguage.googleapis.com/v1beta/openai")
        );
        cfg.base_url = Some("http://127.0.0.1:9/".to_owned());
        assert_eq!(
            cfg.api_root().ok().as_deref(),
            Some("http://127.0.0.1:9/v1")
        );
        cfg.base_url = Some("http://127.0.0.1:9/proxy/v1/".to_owned());
        assert_eq!(
            cfg.api_root().ok().as_deref(),
            Some("http://127.0.0.1:9/proxy/v1")
        );
        let custom = LlmConfig::new(LlmProvider::Custom, "m", "k");
        assert!(matches!(
            custom.api_root(),
            Err(ProviderError::Config { .. })
        ));
    }

    #[test]
    fn configs_from_the_assistant_record() {
        let record = serde_json::json!({
            "llm_provider": "azure",
            "llm_provider_config": {"api_key": "az", "base_url": "https://r.openai.azure.com",
                "model": "gpt-4o", "custom_config": {"api_version": "2024-10-21",
                "deployment_name": "prod", "first_token_timeout_ms": 2500}},
            "llm_settings": {"temperature": 0.5, "max_tokens": 1000, "system_prompt": "x",
                "top_p": 1, "frequency_penalty": 0, "presence_penalty": 0.5,
                "stop_sequences": ["END", ""]},
            "llm_fallback_providers": {"enabled": true, "fallbacks": [
                {"provider": "anthropic", "api_key": "ak", "base_url": null, "model": "claude-x"},
                {"provider": "<string>", "api_key": "", "base_url": "", "model": "m"}]}
        });
        let (p, f) = configs_from_record(&record).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.provider, LlmProvider::Azure);
        assert_eq!(
            p.azure,
            Some(AzureConfig {
                api_version: "2024-10-21".into(),
                deployment: Some("prod".into())
            })
        );
        assert_eq!(p.first_token_timeout_ms, 2500);
        assert_eq!(
            (p.temperature, p.max_tokens, p.top_p),
            (Some(0.5), Some(1000), Some(1.0))
        );
        assert_eq!(
            (p.frequency_penalty, p.presence_penalty),
            (Some(0.0), Some(0.5))
        );
        assert_eq!(p.stop_sequences, vec!["END".to_owned()]);
        assert_eq!(f.len(), 1, "the unknown provider entry is skipped");
        assert_eq!(f[0].provider, LlmProvider::Anthropic);
        assert_eq!(f[0].api_key, "ak");
        assert_eq!(f[0].base_url, None);
        assert_eq!(f[0].temperature, Some(0.5));
        assert_eq!(f[0].first_token_timeout_ms, 2500);

        let disabled = serde_json::json!({"llm_provider": "openai",
            "llm_provider_config": {"model": "gpt-4o-mini"},
            "llm_fallback_providers": {"enabled": false, "fallbacks": [{"provider": "groq", "model": "m"}]}});
        let (p, f) = configs_from_record(&disabled).unwrap_or_else(|e| panic!("{e}"));
        assert!(f.is_empty() && p.api_key.is_empty() && p.temperature.is_none());
        assert!(configs_from_record(&serde_json::json!({"llm_provider": "openai"})).is_err());
    }

    #[test]
    fn http_error_retryability() {
        let quota = br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
        let e = http_error("openai", 429, None, quota);
        assert!(!e.is_retryable());
        assert!(fails_over(&e));
        assert!(e.to_string().contains("insufficient_quota"));
        let rate = br#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
        assert!(http_error("openai", 429, None, rate).is_retryable());
        assert!(!http_error("openai", 429, Some(false), rate).is_retryable());
        assert!(http_error("openai", 400, Some(true), b"").is_retryable());
        let overloaded = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}"#;
        let e = http_error("anthropic", 529, None, overloaded);
        assert!(e.is_retryable());
        assert_eq!(
            e.to_string(),
            "anthropic: HTTP 529: overloaded_error: Overloaded"
        );
        let e = http_error("openai", 401, None, b"not json");
        assert!(!e.is_retryable() && fails_over(&e));
        assert!(!fails_over(&http_error("openai", 400, None, b"{}")));
        assert!(!fails_over(&http_error("openai", 422, None, b"{}")));
    }
}
