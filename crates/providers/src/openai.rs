//! OpenAI Chat Completions streaming (docs/providers/openai.md): one client for OpenAI, Groq,
//! xAI, Gemini (OpenAI-compatible endpoint), any custom OpenAI-compatible server, and Azure
//! OpenAI. Used through [`crate::llm::stream_chat`] / [`crate::llm::stream_with_fallback`].
//!
//! Request mapping from [`LlmConfig`]:
//! - URL: `{api_root}/chat/completions`; Azure: `{endpoint}/openai/deployments/{deployment}/chat/completions?api-version={v}`,
//!   or `{endpoint}/openai/v1/chat/completions` when the API version is `v1`, `preview`,
//!   `latest` or empty (an endpoint that already contains `/deployments/` or `/openai/v1` is
//!   completed, not duplicated).
//! - Auth: `Authorization: Bearer {key}`; Azure: `api-key: {key}`.
//! - Body: `model`, `messages`, `stream: true`, `stream_options.include_usage: true`,
//!   `temperature`, `top_p`, `frequency_penalty`, `presence_penalty`, `stop` (first 4),
//!   `tools` + `tool_choice: "auto"` when tools are offered, and the token cap.
//! - Token cap rule: OpenAI/Azure reasoning models (name starting with `o1`, `o3`, `o4` or
//!   `gpt-5`, except `gpt-5-chat…`) get `max_completion_tokens` and no `temperature`, `top_p`
//!   or penalties, because they reject those with 400; every other model gets `max_tokens`
//!   (compatible servers, Groq and Gemini accept it). Never both.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::ProviderError;
use crate::llm::{
    ChatMessage, FinishReason, HttpRequest, LlmConfig, LlmEvent, LlmProvider, LlmRequest, ToolCall,
    Usage, parse_arguments,
};
use crate::sse::SseEvent;

/// OpenAI accepts at most this many stop sequences.
pub const MAX_STOP_SEQUENCES: usize = 4;

/// Whether `model` is an OpenAI reasoning model that takes `max_completion_tokens` and
/// rejects sampling parameters (see the module docs for the rule).
pub fn is_reasoning_model(model: &str) -> bool {
    let m = model.trim().to_ascii_lowercase();
    let m = m.rsplit('/').next().unwrap_or(&m);
    if m.starts_with("gpt-5-chat") {
        return false;
    }
    ["o1", "o3", "o4", "gpt-5"].iter().any(|p| m.starts_with(p))
}

/// The full URL the adapter posts to for `cfg`.
pub fn chat_completions_url(cfg: &LlmConfig) -> Result<String, ProviderError> {
    let root = cfg.api_root()?;
    if cfg.provider != LlmProvider::Azure {
        return Ok(format!("{root}/chat/completions"));
    }
    let azure = cfg.azure.clone().unwrap_or_default();
    let version = azure.api_version.trim();
    let mut endpoint = root.trim_end_matches('/').to_owned();
    if endpoint.contains("/deployments/") {
        return Ok(format!("{endpoint}/chat/completions?api-version={version}"));
    }
    if endpoint.ends_with("/openai/v1") {
        return Ok(format!("{endpoint}/chat/completions"));
    }
    if let Some(stripped) = endpoint.strip_suffix("/openai") {
        endpoint = stripped.to_owned();
    }
    if matches!(version, "" | "v1" | "preview" | "latest") {
        return Ok(format!("{endpoint}/openai/v1/chat/completions"));
    }
    let deployment = azure
        .deployment
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .unwrap_or(cfg.model.as_str());
    if deployment.is_empty() {
        return Err(ProviderError::Config {
            provider: cfg.provider.as_str(),
            message: "azure needs a deployment (custom_config.deployment) or a model".to_owned(),
        });
    }
    let mut url = url::Url::parse(&format!("{endpoint}/openai/deployments/")).map_err(|e| {
        ProviderError::Config {
            provider: cfg.provider.as_str(),
            message: format!("invalid base_url: {e}"),
        }
    })?;
    url.path_segments_mut()
        .map_err(|_| ProviderError::Config {
            provider: cfg.provider.as_str(),
            message: "base_url cannot carry a path".to_owned(),
        })?
        .pop_if_empty()
        .extend([deployment, "chat", "completions"]);
    url.query_pairs_mut().append_pair("api-version", version);
    Ok(url.to_string())
}

/// The JSON body for `cfg` and `req` (exposed so the mapping can be inspected and tested).
pub fn request_body(cfg: &LlmConfig, req: &LlmRequest) -> Value {
    let reasoning = matches!(cfg.provider, LlmProvider::OpenAi | LlmProvider::Azure)
        && is_reasoning_model(&cfg.model);
    let mut body = Map::new();
    body.insert("model".into(), Value::String(cfg.model.clone()));
    body.insert(
        "messages".into(),
        Value::Array(req.messages.iter().map(message_json).collect()),
    );
    body.insert("stream".into(), Value::Bool(true));
    body.insert("stream_options".into(), json!({"include_usage": true}));
    if !reasoning {
        let mut num = |k: &str, v: Option<f64>| {
            if let Some(v) = v.filter(|v| v.is_finite()) {
                body.insert(k.into(), json!(v));
            }
        };
        num("temperature", cfg.temperature);
        num("top_p", cfg.top_p);
        num("frequency_penalty", cfg.frequency_penalty);
        num("presence_penalty", cfg.presence_penalty);
    }
    if let Some(max) = cfg.max_tokens {
        let key = if reasoning {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        body.insert(key.into(), json!(max));
    }
    let stops: Vec<Value> = cfg
        .stop_sequences
        .iter()
        .filter(|s| !s.is_empty())
        .take(MAX_STOP_SEQUENCES)
        .map(|s| Value::String(s.clone()))
        .collect();
    if !stops.is_empty() {
        body.insert("stop".into(), Value::Array(stops));
    }
    if !req.tools.is_empty() {
        let tools = req
            .tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {
                    "name": t.name, "description": t.description, "parameters": t.parameters}})
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
        body.insert("tool_choice".into(), Value::String("auto".into()));
    }
    Value::Object(body)
}

fn message_json(m: &ChatMessage) -> Value {
    match m {
        ChatMessage::System { content } => json!({"role": "system", "content": content}),
        ChatMessage::User { content } => json!({"role": "user", "content": content}),
        ChatMessage::Assistant {
            content,
            tool_calls,
        } if tool_calls.is_empty() => {
            json!({"role": "assistant", "content": content})
        }
        ChatMessage::Assistant {
            content,
            tool_calls,
        } => {
            let calls: Vec<Value> = tool_calls
                .iter()
                .map(|c| {
                    json!({"id": c.id, "type": "function", "function": {
                        "name": c.name, "arguments": c.arguments.to_string()}})
                })
                .collect();
            let content = if content.is_empty() {
                Value::Null
            } else {
                Value::String(content.clone())
            };
            json!({"role": "assistant", "content": content, "tool_calls": calls})
        }
        ChatMessage::Tool {
            tool_call_id,
            content,
        } => {
            json!({"role": "tool", "tool_call_id": tool_call_id, "content": content})
        }
    }
}

pub(crate) fn build_request(
    cfg: &LlmConfig,
    req: &LlmRequest,
) -> Result<HttpRequest, ProviderError> {
    let url = chat_completions_url(cfg)?;
    let body = serde_json::to_vec(&request_body(cfg, req)).map_err(|e| ProviderError::Config {
        provider: cfg.provider.as_str(),
        message: format!("request not serialisable: {e}"),
    })?;
    let auth = if cfg.provider == LlmProvider::Azure {
        ("api-key", cfg.api_key.trim().to_owned())
    } else {
        ("authorization", format!("Bearer {}", cfg.api_key.trim()))
    };
    Ok(HttpRequest {
        url,
        headers: vec![
            auth,
            ("content-type", "application/json".to_owned()),
            ("accept", "text/event-stream".to_owned()),
        ],
        body,
    })
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolFragment>>,
}

#[derive(Deserialize)]
struct ToolFragment {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionFragment>,
}

#[derive(Deserialize)]
struct FunctionFragment {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u32>,
}

struct PartialTool {
    index: u32,
    id: String,
    name: String,
    arguments: String,
}

/// Decodes `chat.completion.chunk` events into [`LlmEvent`]s.
pub(crate) struct Decoder {
    provider: &'static str,
    tools: Vec<PartialTool>,
    finish: Option<FinishReason>,
    tools_emitted: bool,
    usage: Option<Usage>,
}

impl Decoder {
    pub(crate) fn new(provider: &'static str) -> Self {
        Self {
            provider,
            tools: Vec::new(),
            finish: None,
            tools_emitted: false,
            usage: None,
        }
    }

    fn emit_tools(&mut self, out: &mut Vec<LlmEvent>) -> Result<(), ProviderError> {
        if self.tools_emitted {
            return Ok(());
        }
        self.tools_emitted = true;
        self.tools.sort_by_key(|t| t.index);
        for t in self.tools.drain(..) {
            let arguments = parse_arguments(self.provider, &t.name, &t.arguments)?;
            out.push(LlmEvent::ToolCall(ToolCall {
                id: t.id,
                name: t.name,
                arguments,
            }));
        }
        Ok(())
    }

    fn done(&mut self, out: &mut Vec<LlmEvent>) -> Result<bool, ProviderError> {
        let had_tools = !self.tools.is_empty();
        self.emit_tools(out)?;
        let finish_reason = self.finish.take().unwrap_or(if had_tools {
            FinishReason::ToolCalls
        } else {
            FinishReason::Stop
        });
        out.push(LlmEvent::Done {
            finish_reason,
            usage: self.usage.take(),
        });
        Ok(true)
    }

    fn stream_error(&self, err: &Value) -> ProviderError {
        let text = |k: &str| {
            err.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let (kind, code, message) = (text("type"), text("code"), text("message"));
        let fatal = kind == "invalid_request_error"
            || code == "insufficient_quota"
            || kind == "insufficient_quota";
        let label = if code.is_empty() { kind } else { code };
        ProviderError::Stream {
            provider: self.provider,
            message: if label.is_empty() {
                message
            } else {
                format!("{label}: {message}")
            },
            retryable: !fatal,
        }
    }
}

impl crate::llm::Decoder for Decoder {
    fn on_event(
        &mut self,
        ev: SseEvent<'_>,
        out: &mut Vec<LlmEvent>,
    ) -> Result<bool, ProviderError> {
        let data = ev.data.trim();
        if data == "[DONE]" {
            return self.done(out);
        }
        if data.is_empty() {
            return Ok(false);
        }
        let chunk: Chunk = serde_json::from_str(data).map_err(|e| ProviderError::Protocol {
            provider: self.provider,
            message: format!("unparseable chunk: {e}"),
        })?;
        if let Some(err) = chunk.error.as_ref().filter(|e| !e.is_null()) {
            return Err(self.stream_error(err));
        }
        if ev.event == "error" {
            // An `event: error` whose data lacks the `error` wrapper: read the fields directly.
            let raw: Value = serde_json::from_str(data).unwrap_or(Value::Null);
            return Err(self.stream_error(&raw));
        }
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            if let Some(delta) = choice.delta {
                if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                    out.push(LlmEvent::Text(text));
                }
                for frag in delta.tool_calls.unwrap_or_default() {
                    let pos = match self.tools.iter().position(|t| t.index == frag.index) {
                        Some(p) => p,
                        None => {
                            self.tools.push(PartialTool {
                                index: frag.index,
                                id: String::new(),
                                name: String::new(),
                                arguments: String::new(),
                            });
                            self.tools.len() - 1
                        }
                    };
                    let slot = &mut self.tools[pos];
                    if let Some(id) = frag.id.filter(|s| !s.is_empty()) {
                        slot.id = id;
                    }
                    if let Some(f) = frag.function {
                        if let Some(name) = f.name.filter(|s| !s.is_empty()) {
                            slot.name = name;
                        }
                        if let Some(args) = f.arguments {
                            slot.arguments.push_str(&args);
                        }
                    }
                }
            }
            if let Some(reason) = choice.finish_reason.filter(|r| !r.is_empty()) {
                self.finish = Some(FinishReason::from_wire(&reason));
                self.emit_tools(out)?;
            }
        }
        if let Some(u) = chunk.usage {
            self.usage = Some(Usage {
                input_tokens: u.prompt_tokens,
                output_tokens: u.completion_tokens,
                cached_input_tokens: u.prompt_tokens_details.and_then(|d| d.cached_tokens),
            });
        }
        Ok(false)
    }

    fn on_eof(&mut self, out: &mut Vec<LlmEvent>) -> Result<bool, ProviderError> {
        // Some compatible servers close without `[DONE]`; a finish_reason means the reply is whole.
        if self.finish.is_some() {
            return self.done(out);
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::{AzureConfig, Decoder as _, ToolSpec};

    fn azure(version: &str, deployment: Option<&str>, base: &str) -> LlmConfig {
        let mut cfg = LlmConfig::new(LlmProvider::Azure, "gpt-4o", "k").with_base_url(base);
        cfg.azure = Some(AzureConfig {
            api_version: version.to_owned(),
            deployment: deployment.map(str::to_owned),
        });
        cfg
    }

    #[test]
    fn azure_urls() {
        let u = |c: &LlmConfig| chat_completions_url(c).unwrap_or_default();
        assert_eq!(
            u(&azure(
                "2024-10-21",
                Some("prod-4o"),
                "https://r.openai.azure.com/"
            )),
            "https://r.openai.azure.com/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(
            u(&azure(
                "2024-10-21",
                None,
                "https://r.openai.azure.com/openai"
            )),
            "https://r.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(
            u(&azure("preview", None, "https://r.openai.azure.com")),
            "https://r.openai.azure.com/openai/v1/chat/completions"
        );
        assert_eq!(
            u(&azure(
                "2024-10-21",
                None,
                "https://r.openai.azure.com/openai/deployments/x"
            )),
            "https://r.openai.azure.com/openai/deployments/x/chat/completions?api-version=2024-10-21"
        );
    }

    #[test]
    fn reasoning_rule() {
        for m in [
            "o1-mini",
            "o3",
            "o4-mini",
            "gpt-5",
            "gpt-5-mini",
            "openai/gpt-5-nano",
        ] {
            assert!(is_reasoning_model(m), "{m}");
        }
        for m in [
            "gpt-4o-mini",
            "gpt-4.1",
            "gpt-5-chat-latest",
            "llama-3.3-70b",
            "omni",
        ] {
            assert!(!is_reasoning_model(m), "{m}");
        }
        let mut cfg = LlmConfig::new(LlmProvider::OpenAi, "o3-mini", "k");
        cfg.max_tokens = Some(50);
        cfg.temperature = Some(0.2);
        let body = request_body(&cfg, &LlmRequest::default());
        assert_eq!(body["max_completion_tokens"], 50);
        assert!(body.get("max_tokens").is_none() && body.get("temperature").is_none());
    }

    #[test]
    fn assistant_tool_calls_and_tool_results_map() {
        let req = LlmRequest {
            messages: vec![
                ChatMessage::Assistant {
                    content: String::new(),
                    tool_calls: vec![ToolCall {
                        id: "call_1".into(),
                        name: "get_time".into(),
                        arguments: json!({"city": "Paris"}),
                    }],
                },
                ChatMessage::tool("call_1", "14:05"),
            ],
            tools: vec![ToolSpec {
                name: "get_time".into(),
                description: "Time in a city".into(),
                parameters: json!({"type": "object"}),
            }],
        };
        let body = request_body(&LlmConfig::new(LlmProvider::Groq, "llama", "k"), &req);
        let m = &body["messages"];
        assert_eq!(m[0]["content"], Value::Null);
        assert_eq!(
            m[0]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Paris\"}"
        );
        assert_eq!(
            m[1],
            json!({"role": "tool", "tool_call_id": "call_1", "content": "14:05"})
        );
        assert_eq!(body["tool_choice"], "auto");
        assert_eq!(body["tools"][0]["function"]["name"], "get_time");
    }

    #[test]
    fn tolerates_azure_filter_chunks_and_unknown_fields() {
        let mut d = Decoder::new("azure");
        let mut out = Vec::new();
        let ev = |data: &'static str| SseEvent { event: "", data };
        let r = d.on_event(
            ev(r#"{"choices":[],"prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}]}"#),
            &mut out,
        );
        assert!(matches!(r, Ok(false)));
        let r = d.on_event(
            ev(r#"{"choices":[{"index":0,"delta":{"content":"Hi"},"content_filter_results":{"hate":{"filtered":false}},"finish_reason":null}],"obfuscation":"xx"}"#),
            &mut out,
        );
        assert!(matches!(r, Ok(false)));
        assert_eq!(out, vec![LlmEvent::Text("Hi".into())]);
    }
}
