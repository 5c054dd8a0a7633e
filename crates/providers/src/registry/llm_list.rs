//! The LLM providers the record may name (`llm_provider`, fallbacks). All run: `llm.rs`
//! dispatches them by `LlmProvider` (OpenAI-compatible ones share one adapter), so they carry
//! no factory here. Models pass through unchanged (vendors add models often); the lists are
//! the ones the docs pages describe. Sources: <https://platform.openai.com/docs/models>,
//! <https://docs.anthropic.com/en/docs/about-claude/models>,
//! <https://ai.google.dev/gemini-api/docs/openai>, <https://docs.x.ai/docs/models>,
//! <https://console.groq.com/docs/models>,
//! <https://learn.microsoft.com/azure/ai-services/openai/reference>.

use crate::catalog::{Capabilities, Model, ProviderInfo, ProviderKind, Support};

const fn model(id: &'static str, description: &'static str) -> Model {
    Model {
        id,
        aliases: &[],
        description,
    }
}

const fn llm(
    name: &'static str,
    display_name: &'static str,
    default_model: Option<&'static str>,
    models: &'static [Model],
    docs: &'static str,
) -> ProviderInfo {
    ProviderInfo {
        kind: ProviderKind::Llm,
        name,
        display_name,
        support: Support::Runs,
        default_model,
        models,
        strict_models: false,
        voices: &[],
        default_voice: None,
        capabilities: Capabilities {
            encodings: &[],
            sample_rates_hz: &[],
            timings: false,
            streaming_partials: true,
            end_of_turn: false,
            language: false,
        },
        docs,
    }
}

/// Every LLM provider, in the order the API lists them.
pub(super) const LLM: &[ProviderInfo] = &[
    llm(
        "openai",
        "OpenAI Chat Completions",
        Some("gpt-4o-mini"),
        &[
            model("gpt-4o-mini", "fast, cheap"),
            model("gpt-4o", "more capable"),
            model("gpt-4.1-mini", "fast, long context"),
            model("gpt-4.1", "more capable, long context"),
        ],
        "docs/providers/openai.md",
    ),
    llm(
        "azure",
        "Azure OpenAI",
        None,
        &[],
        "docs/providers/openai.md",
    ),
    llm(
        "anthropic",
        "Anthropic Messages",
        Some("claude-haiku-4-5"),
        &[
            model("claude-haiku-4-5", "fastest, for real-time replies"),
            model("claude-sonnet-4-5", "more capable"),
            model("claude-sonnet-4-6", "newest Sonnet"),
            model("claude-opus-4-6", "most capable, slower"),
            model("claude-sonnet-4-0", "previous Sonnet"),
        ],
        "docs/providers/anthropic.md",
    ),
    llm(
        "gemini",
        "Google Gemini (OpenAI-compatible)",
        Some("gemini-2.0-flash"),
        &[
            model("gemini-2.0-flash", "fast"),
            model("gemini-2.5-flash", "newer, fast"),
        ],
        "docs/providers/openai.md",
    ),
    llm(
        "xai",
        "xAI Grok (OpenAI-compatible)",
        Some("grok-3-mini"),
        &[
            model("grok-3-mini", "fast"),
            model("grok-3", "more capable"),
        ],
        "docs/providers/openai.md",
    ),
    llm(
        "groq",
        "Groq (OpenAI-compatible)",
        Some("llama-3.3-70b-versatile"),
        &[
            model("llama-3.3-70b-versatile", "Llama 3.3 70B"),
            model("llama-3.1-8b-instant", "Llama 3.1 8B, fastest"),
        ],
        "docs/providers/openai.md",
    ),
    llm(
        "custom",
        "Any OpenAI-compatible server (base_url required)",
        None,
        &[],
        "docs/providers/openai.md",
    ),
];
