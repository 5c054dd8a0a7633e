//! `switchboard-assistant`: the assistant record, which configures everything a call does.
//!
//! It is the wire schema of `GET /api/v1/assistants/{id}` (field for field the Burki API's
//! `AssistantResponse`), with the defaults and ranges of the Burki OpenAPI extract, validation
//! that names the field path and the rule, and secret masking. No I/O happens here: the store
//! persists [`AssistantConfig`] as JSON, the server parses request bodies with
//! [`parse_create`], [`apply_update`] and [`apply_patch`] and answers with
//! [`AssistantResponse`].
//!
//! ```
//! use switchboard_assistant::{AssistantConfig, apply_patch, parse_create};
//! use serde_json::json;
//!
//! // A record created with only a name carries every setting at its default.
//! let created = parse_create(json!({"name": "Front desk"})).expect("valid");
//! assert_eq!(created.llm_settings.temperature, 0.5);
//!
//! // PATCH merges nested objects: only the temperature changes.
//! let patched = apply_patch(&created, &json!({"llm_settings": {"temperature": 0.9}}))
//!     .expect("valid");
//! assert_eq!(patched.llm_settings.temperature, 0.9);
//! assert_eq!(patched.llm_settings.max_tokens, 1000);
//!
//! // A typo is an error that names the path.
//! let err = parse_create(json!({"name": "x", "llm_settings": {"temprature": 1}})).unwrap_err();
//! assert_eq!(err.errors[0].field, "llm_settings.temprature");
//! # let _ = AssistantConfig::new("x");
//! ```

#![deny(missing_docs)]

mod binding;
mod catalog;
mod parse;
mod record;
mod secret;
mod secret_walk;
mod settings;
mod validate;

pub use binding::{
    RESEND_RULE, SECRET_BINDINGS_FIELD, SecretBindings, current_bindings, default_provider_host,
    effective_bindings, endpoint_host, fallback_host, fresh_binding, host_of_url, hosts_of_use,
    llm_host, stt_host, stt_provider_name, tool_hosts, tts_host,
};
pub use catalog::{
    ModelCheck, ProviderCatalog, ProviderKind, Support, apply_provider_defaults, check_providers,
};
pub use parse::{apply_patch, apply_update, deserialize_config, merge_json, parse_create};
pub use record::{
    AssistantConfig, AssistantCreate, AssistantPatch, AssistantResponse, AssistantStats,
    AssistantUpdate, DEFAULT_IDLE_MESSAGE, DEFAULT_LLM_MODEL, DEFAULT_LLM_PROVIDER,
    READ_ONLY_FIELDS, StatusUpdate,
};
pub use secret::{
    ApiKeys, MASK_ELLIPSIS, MASK_MIN_CHARS, ProviderConfig, Restored, SHORT_MASK, Secret,
    is_masked, keep_masked_secrets, mask, mask_secrets,
};
pub use secret_walk::{
    SecretUse, is_headers_key, is_secret_key, provider_of_key_name, visit_provider_key_secrets,
    visit_stored_secrets,
};
pub use settings::{
    BackchannelSettings, BackgroundSound, CustomToolEntry, CustomToolMethod, DtmfSolverTool,
    ElevenLabsSttConfig, EndCallTool, EndpointingSettings, FluxConfig, InterruptionMode,
    InterruptionSettings, KNOWLEDGE_TOOL, Keyword, LlmFallbackProvider, LlmFallbackSettings,
    LlmProviderConfig, LlmSettings, RagSettings, RecordingFormat, RecordingSettings, SendSmsTool,
    SonioxSttConfig, SpeculativeConfig, SpeechmaticsSttConfig, SttSettings, ToolsSettings,
    TransferCallTool, TransferType, TtsSettings,
};
pub use validate::{
    BUILT_IN_TOOLS, CHANGE_DESCRIPTION_MAX_CHARS, DISCLOSURE_MODES, FieldError, MAX_TOKENS_LIMIT,
    MAX_TOOL_TIMEOUT_MS, NAME_MAX_CHARS, RECORDING_SAMPLE_RATES_HZ, ValidationErrors,
    control_character_paths, is_e164, validate,
};

/// The example assistant of the README (`examples/seed-assistant.json`): the seed record of
/// the Burki docs filled with realistic values (real model and voice ids, E.164 numbers,
/// example keys). It is a valid `POST /api/v1/assistants` body and round-trips unchanged
/// through [`parse_create`] and serialisation. Returns `Value::Null` only if the file shipped
/// with the crate were not JSON, which the crate's tests rule out.
pub fn example_record() -> serde_json::Value {
    serde_json::from_str(EXAMPLE_RECORD_JSON).unwrap_or(serde_json::Value::Null)
}

/// Text of `examples/seed-assistant.json`, embedded at build time.
pub const EXAMPLE_RECORD_JSON: &str = include_str!("../examples/seed-assistant.json");
