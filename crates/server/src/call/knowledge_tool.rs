//! The knowledge base on a call (`rag_settings.enabled`), in one of two ways:
//!
//! - `rag_inject_before_llm`: before each LLM request the caller's last words are searched and
//!   the best chunks are appended to the system prompt ([`inject`]), within
//!   `context_window_tokens` (estimated as characters / 4), with their sources when
//!   `include_metadata`. The search runs on the LLM stream's own task, before the request is
//!   sent, so the call task never waits for it; a failed search sends the request without
//!   context.
//! - otherwise the LLM is offered the `searchKnowledgeBase` tool ([`spec`]), run like every
//!   tool on its own task ([`run`]).
//!
//! Either way a search is one query embedding and one indexed search, never processing.

use std::sync::Arc;

use serde_json::{Value, json};
use switchboard_assistant::AssistantConfig;
use switchboard_knowledge::context::{render_context, tool_result};
use switchboard_providers::llm::{ChatMessage, LlmRequest, ToolSpec};

use super::runtime::CallSetup;
use super::tools::ToolOutcome;
use crate::knowledge::{CallKnowledge, Knowledge};
use crate::state::AppState;

/// The tool's name (Burki's).
pub const TOOL_NAME: &str = switchboard_assistant::KNOWLEDGE_TOOL;

/// Whether the record offers the tool: the knowledge base is on and context is not injected.
pub fn offered(a: &AssistantConfig) -> bool {
    a.rag_settings.enabled && !a.rag_settings.rag_inject_before_llm
}

/// The tool's spec when [`offered`].
pub fn spec(a: &AssistantConfig) -> Option<ToolSpec> {
    offered(a).then(|| ToolSpec {
        name: TOOL_NAME.to_owned(),
        description: "Search the knowledge base (the documents uploaded for this assistant) \
                      for facts to answer the caller. Use it before answering questions about \
                      products, policies, prices, hours or anything else specific."
            .to_owned(),
        parameters: json!({"type": "object", "properties": {
            "query": {"type": "string", "description": "What to look up, in a few words"}},
            "required": ["query"]}),
    })
}

/// Runs the tool: `{"ok": true, "results": [...]}` (see
/// `switchboard_knowledge::context::tool_result`), or an error result the LLM can talk about.
pub async fn run(state: &AppState, setup: &CallSetup, args: &Value) -> ToolOutcome {
    let error = |e: String| ToolOutcome {
        content: json!({"ok": false, "error": e}).to_string(),
        follow_up: None,
    };
    let query = args
        .get("query")
        .and_then(Value::as_str)
        .map(str::trim)
        .unwrap_or("");
    if query.is_empty() {
        return error("`query` is required".to_owned());
    }
    let Some(k) = setup.knowledge.as_ref() else {
        return error("the knowledge base is not available on this call".to_owned());
    };
    match k.retrieve(&state.knowledge, query).await {
        Ok(hits) => ToolOutcome {
            content: tool_result(&hits, k.include_metadata).to_string(),
            follow_up: None,
        },
        Err(e) => {
            tracing::warn!(call_sid = %setup.call_sid, error = %e, "knowledge base search failed");
            error("the knowledge base search failed".to_owned())
        }
    }
}

/// `req` with the retrieved context for its last user message appended to its first system
/// message (one is added when there is none). Unchanged when there is no user message, no hit
/// or the search fails. A question already searched for the previous request (the next round
/// of the same reply) reuses its context.
pub async fn inject(
    knowledge: Knowledge,
    k: Arc<CallKnowledge>,
    mut req: LlmRequest,
) -> LlmRequest {
    let Some(query) = req.messages.iter().rev().find_map(|m| match m {
        ChatMessage::User { content } if !content.trim().is_empty() => Some(content.clone()),
        _ => None,
    }) else {
        return req;
    };
    let cached = k.last_context.lock().ok().and_then(|last| {
        last.as_ref()
            .filter(|(q, _)| *q == query)
            .map(|(_, c)| c.clone())
    });
    let context = match cached {
        Some(context) => context,
        None => match k.retrieve(&knowledge, &query).await {
            Ok(hits) => {
                let context = render_context(&hits, k.context_tokens, k.include_metadata);
                if let Ok(mut last) = k.last_context.lock() {
                    *last = Some((query, context.clone()));
                }
                context
            }
            Err(e) => {
                tracing::warn!(assistant_id = k.assistant_id, error = %e, "knowledge base search failed; answering without context");
                None
            }
        },
    };
    let Some(context) = context else {
        return req;
    };
    match req
        .messages
        .iter_mut()
        .find(|m| matches!(m, ChatMessage::System { .. }))
    {
        Some(ChatMessage::System { content }) => {
            content.push_str("\n\n");
            content.push_str(&context);
        }
        _ => req.messages.insert(0, ChatMessage::system(context)),
    }
    req
}
