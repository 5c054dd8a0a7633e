//! Anthropic Messages streaming (docs/providers/anthropic.md), used through
//! [`crate::llm::stream_chat`] / [`crate::llm::stream_with_fallback`].
//!
//! Request mapping from [`LlmConfig`]:
//! - URL `{api_root}/messages` (default root `https://api.anthropic.com/v1`), headers
//!   `x-api-key`, `anthropic-version: 2023-06-01`, `content-type: application/json`.
//! - `max_tokens` is mandatory: the record's value or [`ANTHROPIC_DEFAULT_MAX_TOKENS`].
//! - `temperature` clamped to 0–1 (Anthropic's range). `top_p` is sent only when no
//!   temperature is set: newer Claude models reject both together, and Anthropic advises
//!   tuning one. `frequency_penalty`/`presence_penalty` do not exist here and are not sent.
//! - `stop_sequences` all sent; `tools` as `{name, description, input_schema}` with
//!   `tool_choice: {"type":"auto"}`.
//! - History: every system message joins (blank line between) into top-level `system`;
//!   assistant tool calls become `tool_use` blocks, tool results `tool_result` blocks in a user
//!   message; consecutive messages of one role merge into one message; empty texts are dropped
//!   (the API rejects empty text blocks). When the history starts with the assistant (the
//!   welcome message), a user message [`CALL_STARTED_TEXT`] is put first, since the first
//!   message must come from the user.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::ProviderError;
use crate::llm::{
    ANTHROPIC_DEFAULT_MAX_TOKENS, ChatMessage, FinishReason, HttpRequest, LlmConfig, LlmEvent,
    LlmRequest, ToolCall, Usage, parse_arguments,
};
use crate::sse::SseEvent;

/// The `anthropic-version` header value.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// First user message inserted when the history opens with the assistant's welcome.
pub const CALL_STARTED_TEXT: &str = "(The call has connected.)";

const PROVIDER: &str = "anthropic";

/// The full URL the adapter posts to for `cfg`.
pub fn messages_url(cfg: &LlmConfig) -> Result<String, ProviderError> {
    Ok(format!("{}/messages", cfg.api_root()?))
}

/// The JSON body for `cfg` and `req` (exposed so the mapping can be inspected and tested).
pub fn request_body(cfg: &LlmConfig, req: &LlmRequest) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), Value::String(cfg.model.clone()));
    body.insert(
        "max_tokens".into(),
        json!(cfg.max_tokens.unwrap_or(ANTHROPIC_DEFAULT_MAX_TOKENS)),
    );
    let system: Vec<&str> = req
        .messages
        .iter()
        .filter_map(|m| match m {
            ChatMessage::System { content } if !content.trim().is_empty() => Some(content.as_str()),
            _ => None,
        })
        .collect();
    if !system.is_empty() {
        body.insert("system".into(), Value::String(system.join("\n\n")));
    }
    body.insert(
        "messages".into(),
        Value::Array(messages_json(&req.messages)),
    );
    body.insert("stream".into(), Value::Bool(true));
    match cfg.temperature.filter(|t| t.is_finite()) {
        Some(t) => {
            body.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
        }
        None => {
            if let Some(p) = cfg.top_p.filter(|p| p.is_finite()) {
                body.insert("top_p".into(), json!(p));
            }
        }
    }
    let stops: Vec<Value> = cfg
        .stop_sequences
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| Value::String(s.clone()))
        .collect();
    if !stops.is_empty() {
        body.insert("stop_sequences".into(), Value::Array(stops));
    }
    if !req.tools.is_empty() {
        let tools = req
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
            .collect();
        body.insert("tools".into(), Value::Array(tools));
        body.insert("tool_choice".into(), json!({"type": "auto"}));
    }
    Value::Object(body)
}

fn messages_json(history: &[ChatMessage]) -> Vec<Value> {
    let mut out: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for m in history {
        let (role, blocks): (&'static str, Vec<Value>) = match m {
            ChatMessage::System { .. } => continue,
            ChatMessage::User { content } => ("user", text_block(content).into_iter().collect()),
            ChatMessage::Assistant {
                content,
                tool_calls,
            } => {
                let mut blocks: Vec<Value> = text_block(content).into_iter().collect();
                for c in tool_calls {
                    let input = if c.arguments.is_object() {
                        c.arguments.clone()
                    } else {
                        json!({})
                    };
                    blocks.push(
                        json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input}),
                    );
                }
                ("assistant", blocks)
            }
            ChatMessage::Tool {
                tool_call_id,
                content,
            } => (
                "user",
                vec![
                    json!({"type": "tool_result", "tool_use_id": tool_call_id, "content": content}),
                ],
            ),
        };
        if blocks.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some((last_role, last_blocks)) if *last_role == role => {
                last_blocks.extend(blocks);
                if role == "user" {
                    // tool_result blocks must come first in a user message (stable: keeps order)
                    last_blocks.sort_by_key(|b| b["type"] != "tool_result");
                }
            }
            _ => out.push((role, blocks)),
        }
    }
    if out.first().is_some_and(|(role, _)| *role == "assistant") {
        out.insert(
            0,
            (
                "user",
                vec![json!({"type": "text", "text": CALL_STARTED_TEXT})],
            ),
        );
    }
    out.into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect()
}

fn text_block(text: &str) -> Option<Value> {
    (!text.trim().is_empty()).then(|| json!({"type": "text", "text": text}))
}

pub(crate) fn build_request(
    cfg: &LlmConfig,
    req: &LlmRequest,
) -> Result<HttpRequest, ProviderError> {
    let url = messages_url(cfg)?;
    let body = serde_json::to_vec(&request_body(cfg, req)).map_err(|e| ProviderError::Config {
        provider: PROVIDER,
        message: format!("request not serialisable: {e}"),
    })?;
    Ok(HttpRequest {
        url,
        headers: vec![
            ("x-api-key", cfg.api_key.trim().to_owned()),
            ("anthropic-version", ANTHROPIC_VERSION.to_owned()),
            ("content-type", "application/json".to_owned()),
            ("accept", "text/event-stream".to_owned()),
        ],
        body,
    })
}

#[derive(Deserialize)]
struct WireEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    message: Option<WireMessage>,
    #[serde(default)]
    content_block: Option<WireBlock>,
    #[serde(default)]
    delta: Option<WireDelta>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct WireDelta {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    partial_json: Option<String>,
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u32>,
    #[serde(default)]
    output_tokens: Option<u32>,
    #[serde(default)]
    cache_read_input_tokens: Option<u32>,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

struct OpenTool {
    index: usize,
    id: String,
    name: String,
    json: String,
}

/// Decodes Messages stream events into [`LlmEvent`]s.
pub(crate) struct Decoder {
    tools: Vec<OpenTool>,
    stop_reason: Option<FinishReason>,
    usage: Usage,
    has_usage: bool,
}

impl Decoder {
    pub(crate) fn new() -> Self {
        Self {
            tools: Vec::new(),
            stop_reason: None,
            usage: Usage::default(),
            has_usage: false,
        }
    }

    fn add_usage(&mut self, u: WireUsage) {
        if let Some(i) = u.input_tokens {
            self.usage.input_tokens = i;
            self.has_usage = true;
        }
        if let Some(o) = u.output_tokens {
            self.usage.output_tokens = o; // cumulative
            self.has_usage = true;
        }
        if let Some(c) = u.cache_read_input_tokens {
            self.usage.cached_input_tokens = Some(c);
        }
    }

    fn finish(&mut self, out: &mut Vec<LlmEvent>) -> Result<bool, ProviderError> {
        // Blocks left open (no content_block_stop) are closed in index order.
        self.tools.sort_by_key(|t| t.index);
        for t in std::mem::take(&mut self.tools) {
            out.push(close_tool(t)?);
        }
        out.push(LlmEvent::Done {
            finish_reason: self.stop_reason.take().unwrap_or(FinishReason::Stop),
            usage: self.has_usage.then_some(self.usage),
        });
        Ok(true)
    }
}

fn close_tool(t: OpenTool) -> Result<LlmEvent, ProviderError> {
    let arguments = parse_arguments(PROVIDER, &t.name, &t.json)?;
    Ok(LlmEvent::ToolCall(ToolCall {
        id: t.id,
        name: t.name,
        arguments,
    }))
}

impl crate::llm::Decoder for Decoder {
    fn on_event(
        &mut self,
        ev: SseEvent<'_>,
        out: &mut Vec<LlmEvent>,
    ) -> Result<bool, ProviderError> {
        let data = ev.data.trim();
        if data.is_empty() {
            return Ok(false);
        }
        let w: WireEvent = serde_json::from_str(data).map_err(|e| ProviderError::Protocol {
            provider: PROVIDER,
            message: format!("unparseable event `{}`: {e}", ev.event),
        })?;
        match w.kind.as_str() {
            "message_start" => {
                if let Some(u) = w.message.and_then(|m| m.usage) {
                    self.add_usage(u);
                }
            }
            "content_block_start" => {
                let index = w.index.unwrap_or(0);
                if let Some(block) = w.content_block {
                    match block.kind.as_str() {
                        "text" => {
                            if let Some(t) = block.text.filter(|t| !t.is_empty()) {
                                out.push(LlmEvent::Text(t));
                            }
                        }
                        "tool_use" => self.tools.push(OpenTool {
                            index,
                            id: block.id.unwrap_or_default(),
                            name: block.name.unwrap_or_default(),
                            json: String::new(),
                        }),
                        _ => {} // thinking, server tools: not spoken
                    }
                }
            }
            "content_block_delta" => {
                let index = w.index.unwrap_or(0);
                if let Some(d) = w.delta {
                    match d.kind.as_deref() {
                        Some("text_delta") => {
                            if let Some(t) = d.text.filter(|t| !t.is_empty()) {
                                out.push(LlmEvent::Text(t));
                            }
                        }
                        Some("input_json_delta") => {
                            if let (Some(p), Some(t)) = (
                                d.partial_json,
                                self.tools.iter_mut().find(|t| t.index == index),
                            ) {
                                t.json.push_str(&p);
                            }
                        }
                        _ => {}
                    }
                }
            }
            "content_block_stop" => {
                let index = w.index.unwrap_or(0);
                if let Some(pos) = self.tools.iter().position(|t| t.index == index) {
                    let t = self.tools.remove(pos);
                    out.push(close_tool(t)?);
                }
            }
            "message_delta" => {
                if let Some(r) = w.delta.and_then(|d| d.stop_reason) {
                    self.stop_reason = Some(FinishReason::from_wire(&r));
                }
                if let Some(u) = w.usage {
                    self.add_usage(u);
                }
            }
            "message_stop" => return self.finish(out),
            "error" => {
                let e = w.error.unwrap_or(WireError {
                    kind: String::new(),
                    message: String::new(),
                });
                let retryable = matches!(
                    e.kind.as_str(),
                    "overloaded_error" | "api_error" | "rate_limit_error" | "timeout_error" | ""
                );
                return Err(ProviderError::Stream {
                    provider: PROVIDER,
                    message: format!("{}: {}", e.kind, e.message),
                    retryable,
                });
            }
            _ => {} // ping and future event types
        }
        Ok(false)
    }

    fn on_eof(&mut self, _out: &mut Vec<LlmEvent>) -> Result<bool, ProviderError> {
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::LlmProvider;

    #[test]
    fn history_mapping() {
        let req = LlmRequest {
            messages: vec![
                ChatMessage::system("Be brief."),
                ChatMessage::assistant("Hello, thanks for calling."),
                ChatMessage::user("Time in Paris?"),
                ChatMessage::Assistant {
                    content: "Let me check.".into(),
                    tool_calls: vec![
                        ToolCall {
                            id: "toolu_1".into(),
                            name: "t".into(),
                            arguments: json!({"city": "Paris"}),
                        },
                        ToolCall {
                            id: "toolu_2".into(),
                            name: "t".into(),
                            arguments: json!({}),
                        },
                    ],
                },
                ChatMessage::tool("toolu_1", "14:05"),
                ChatMessage::tool("toolu_2", "15:05"),
                ChatMessage::system("Caller is VIP."),
            ],
            tools: vec![],
        };
        let cfg = LlmConfig::new(LlmProvider::Anthropic, "claude-x", "k");
        let b = request_body(&cfg, &req);
        assert_eq!(b["system"], "Be brief.\n\nCaller is VIP.");
        assert_eq!(b["max_tokens"], ANTHROPIC_DEFAULT_MAX_TOKENS);
        let m = b["messages"].as_array().cloned().unwrap_or_default();
        assert_eq!(m.len(), 5);
        assert_eq!(m[0]["content"][0]["text"], CALL_STARTED_TEXT);
        assert_eq!(m[1]["role"], "assistant");
        assert_eq!(m[3]["content"][1]["type"], "tool_use");
        assert_eq!(m[3]["content"][1]["input"], json!({"city": "Paris"}));
        assert_eq!(m[4]["role"], "user");
        assert_eq!(m[4]["content"].as_array().map(Vec::len), Some(2));
        assert_eq!(m[4]["content"][1]["tool_use_id"], "toolu_2");
    }

    #[test]
    fn temperature_wins_over_top_p() {
        let mut cfg = LlmConfig::new(LlmProvider::Anthropic, "claude-x", "k");
        cfg.temperature = Some(1.5);
        cfg.top_p = Some(0.9);
        let b = request_body(&cfg, &LlmRequest::default());
        assert_eq!(b["temperature"], 1.0);
        assert!(b.get("top_p").is_none());
        cfg.temperature = None;
        let b = request_body(&cfg, &LlmRequest::default());
        assert_eq!(b["top_p"], 0.9);
    }
}
