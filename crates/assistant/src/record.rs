//! The assistant record: what an operator configures ([`AssistantConfig`]), the request bodies
//! that change it, and the response of `GET /api/v1/assistants/{id}`.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::Error as _;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use crate::binding::{SECRET_BINDINGS_FIELD, SecretBindings};
use crate::secret::{ApiKeys, mask_secrets};
use crate::settings::{
    BackchannelSettings, InterruptionSettings, LlmFallbackSettings, LlmProviderConfig, LlmSettings,
    RagSettings, RecordingSettings, SttSettings, ToolsSettings, TtsSettings, null_as_default,
};
use crate::validate::{FieldError, ValidationErrors};

/// Default of [`AssistantConfig::idle_message`].
pub const DEFAULT_IDLE_MESSAGE: &str =
    "Are you still there? I'm here to help if you need anything.";

/// Default of [`AssistantConfig::llm_provider`].
pub const DEFAULT_LLM_PROVIDER: &str = "openai";

/// Default of `llm_provider_config.model` (Burki's): OpenAI's model. With another provider it
/// follows the provider (its registry default, see [`crate::apply_provider_defaults`]).
pub const DEFAULT_LLM_MODEL: &str = "gpt-4o-mini";

fn default_llm_provider() -> Option<String> {
    Some(DEFAULT_LLM_PROVIDER.to_owned())
}

fn default_idle_message() -> Option<String> {
    Some(DEFAULT_IDLE_MESSAGE.to_owned())
}

fn default_some_true() -> Option<bool> {
    Some(true)
}

/// Everything an operator sets on an assistant: every field of the record except the
/// server-owned ones (`id`, `organization_id`, `user_id`, timestamps, stats).
///
/// This is also the body of `POST /api/v1/assistants` ([`AssistantCreate`]) and of the full
/// update `PUT /api/v1/assistants/{id}` ([`AssistantUpdate`]): `name` is required, every other
/// field takes its default. Nested settings objects are always present (a `null` resets one to
/// its defaults), so a record created with only a name reads back showing what a call will do.
/// Unknown fields are rejected at every level.
///
/// Serialises with secrets **in clear** (for storage); call [`mask_secrets`] on a copy before
/// returning it to a client. `Debug` redacts secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssistantConfig {
    /// Display name, 1 to 255 characters (not only whitespace). Required.
    pub name: String,
    /// Free-text description for operators.
    #[serde(default)]
    pub description: Option<String>,
    /// LLM provider, checked against the engine by [`crate::check_providers`]; `null` = `openai`. Default `openai`.
    #[serde(default = "default_llm_provider")]
    pub llm_provider: Option<String>,
    /// Connection to the LLM provider (key, base URL, model).
    #[serde(default, deserialize_with = "null_as_default")]
    pub llm_provider_config: LlmProviderConfig,
    /// LLM generation settings and prompts.
    #[serde(default, deserialize_with = "null_as_default")]
    pub llm_settings: LlmSettings,
    /// URL that receives call event webhooks (http/https); `null` = none.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// URL that receives SMS webhook events (http/https); `null` = none.
    #[serde(default)]
    pub sms_webhook_url: Option<String>,
    /// Twilio Messaging Service SID used for SMS (`MG` + 32 hex digits); `null` = send from
    /// the call's number.
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
    /// Barge-in behaviour.
    #[serde(default, deserialize_with = "null_as_default")]
    pub interruption_settings: InterruptionSettings,
    /// Text-to-speech settings.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tts_settings: TtsSettings,
    /// Speech-to-text and turn-commit settings.
    #[serde(default, deserialize_with = "null_as_default")]
    pub stt_settings: SttSettings,
    /// What the assistant says before it hangs up; `null` = hang up without a message.
    #[serde(default)]
    pub end_call_message: Option<String>,
    /// What the assistant says before a transfer; `null` = transfer without a message.
    #[serde(default)]
    pub transfer_call_message: Option<String>,
    /// What the assistant says when the caller has been silent for `idle_timeout` seconds;
    /// `null` = say nothing. Default "Are you still there? I'm here to help if you need
    /// anything."
    #[serde(default = "default_idle_message")]
    pub idle_message: Option<String>,
    /// Idle prompts said in a row before the call is ended; `null` = the server's default.
    #[serde(default)]
    pub max_idle_messages: Option<u32>,
    /// Seconds of caller silence (while the assistant is not speaking) before the idle message
    /// is said; `null` = the server's default.
    #[serde(default)]
    pub idle_timeout: Option<u32>,
    /// Seconds after which the call is ended, >= 1; `null` = unlimited.
    #[serde(default)]
    pub max_call_length: Option<u32>,
    /// Continue the conversation history for calls from the same number within 15 minutes;
    /// `null` = true. Default true.
    #[serde(default = "default_some_true")]
    pub conversation_continuity_enabled: Option<bool>,
    /// Tools the LLM may call.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tools_settings: ToolsSettings,
    /// Retrieval-augmented generation.
    #[serde(default, deserialize_with = "null_as_default")]
    pub rag_settings: RagSettings,
    /// LLM fallback chain.
    #[serde(default, deserialize_with = "null_as_default")]
    pub llm_fallback_providers: LlmFallbackSettings,
    /// Caller numbers (E.164) that skip the AI and are transferred straight to the first
    /// transfer number; `null` = none.
    #[serde(default)]
    pub bypass_numbers: Option<Vec<String>>,
    /// Free-form operator settings, stored and returned as given.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub custom_settings: Option<Map<String, Value>>,
    /// Whether the assistant answers calls; `null` = true. Default true.
    #[serde(default = "default_some_true")]
    pub is_active: Option<bool>,
    /// AI backchannel generation.
    #[serde(default, deserialize_with = "null_as_default")]
    pub backchannel_settings: BackchannelSettings,
    /// Call recording and disclosure.
    #[serde(default, deserialize_with = "null_as_default")]
    pub recording_settings: RecordingSettings,
    /// Assistant-specific provider keys (`deepgram_api_key`, `elevenlabs_api_key`,
    /// `cartesia_api_key`, …) that override the organisation's keys. Returned masked.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub api_keys: Option<ApiKeys>,
    /// Concurrent TTS sessions allowed on this assistant's own TTS key, 1 to 1000; `null` =
    /// the organisation's limit. Only used when the assistant has its own TTS key.
    #[serde(default)]
    pub tts_limit: Option<u32>,
    /// Concurrent STT sessions allowed on this assistant's own STT key, 1 to 1000; `null` =
    /// the organisation's limit. Only used when the assistant has its own STT key.
    #[serde(default)]
    pub stt_limit: Option<u32>,
    /// Server-side only: the hosts each stored secret may be sent to (see
    /// [`crate::SecretBindings`]); `None` for a record stored before bindings existed. Never read
    /// from a request nor written to a response: only [`AssistantConfig::to_stored_json`]
    /// writes it, and the request parsers refuse it.
    #[serde(default, rename = "_secret_bindings", skip_serializing)]
    pub secret_bindings: Option<SecretBindings>,
}

impl AssistantConfig {
    /// A record with this name and every other field at its default.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            description: None,
            llm_provider: default_llm_provider(),
            llm_provider_config: LlmProviderConfig::default(),
            llm_settings: LlmSettings::default(),
            webhook_url: None,
            sms_webhook_url: None,
            messaging_service_sid: None,
            interruption_settings: InterruptionSettings::default(),
            tts_settings: TtsSettings::default(),
            stt_settings: SttSettings::default(),
            end_call_message: None,
            transfer_call_message: None,
            idle_message: default_idle_message(),
            max_idle_messages: None,
            idle_timeout: None,
            max_call_length: None,
            conversation_continuity_enabled: default_some_true(),
            tools_settings: ToolsSettings::default(),
            rag_settings: RagSettings::default(),
            llm_fallback_providers: LlmFallbackSettings::default(),
            bypass_numbers: None,
            custom_settings: None,
            is_active: default_some_true(),
            backchannel_settings: BackchannelSettings::default(),
            recording_settings: RecordingSettings::default(),
            api_keys: None,
            tts_limit: None,
            stt_limit: None,
            secret_bindings: None,
        }
    }

    /// Whether the assistant answers calls (`is_active`, with `null` meaning true).
    pub fn active(&self) -> bool {
        self.is_active.unwrap_or(true)
    }

    /// The LLM provider name in effect (`llm_provider`, with `null` meaning `openai`).
    pub fn llm_provider_name(&self) -> &str {
        self.llm_provider.as_deref().unwrap_or(DEFAULT_LLM_PROVIDER)
    }

    /// The JSON the store keeps: the record (secrets in clear; the store encrypts them) plus its
    /// secret bindings under `_secret_bindings`, which plain serialisation leaves out so that no
    /// response ever shows them.
    pub fn to_stored_json(&self) -> Result<Value, serde_json::Error> {
        let mut value = serde_json::to_value(self)?;
        if let (Value::Object(map), Some(bindings)) = (&mut value, &self.secret_bindings) {
            map.insert(
                SECRET_BINDINGS_FIELD.to_owned(),
                serde_json::to_value(bindings)?,
            );
        }
        Ok(value)
    }

    /// A copy with every secret masked, for API responses.
    pub fn masked(&self) -> Self {
        let mut copy = self.clone();
        mask_secrets(&mut copy);
        copy
    }
}

/// Body of `POST /api/v1/assistants`: `name` required, everything else optional (defaults).
/// Parse it with [`crate::parse_create`].
pub type AssistantCreate = AssistantConfig;

/// Body of `PUT /api/v1/assistants/{id}`: the whole configuration, replacing the stored one
/// (`name` required; absent fields return to their defaults). Parse it with
/// [`crate::apply_update`], which keeps secrets sent back masked.
pub type AssistantUpdate = AssistantConfig;

/// Body of `PATCH /api/v1/assistants/{id}`: every field optional. This type documents the
/// shape (and serves the OpenAPI document); the patch itself is applied from raw JSON by
/// [`crate::apply_patch`]: nested objects merge field by field, arrays and scalars replace, and
/// an explicit `null` sets a nullable field to null (a nested settings object to its defaults).
/// Nested objects are `serde_json::Value` here because a patch may hold any subset of their
/// fields.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssistantPatch {
    /// New name, 1 to 255 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// New LLM provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm_provider: Option<String>,
    /// Fields of `llm_provider_config` to change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<LlmProviderConfig>)]
    pub llm_provider_config: Option<Value>,
    /// Fields of `llm_settings` to change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<LlmSettings>)]
    pub llm_settings: Option<Value>,
    /// New call webhook URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// New SMS webhook URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms_webhook_url: Option<String>,
    /// New Twilio Messaging Service SID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messaging_service_sid: Option<String>,
    /// Fields of `interruption_settings` to change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<InterruptionSettings>)]
    pub interruption_settings: Option<Value>,
    /// Fields of `tts_settings` to change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<TtsSettings>)]
    pub tts_settings: Option<Value>,
    /// Fields of `stt_settings` to change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<SttSettings>)]
    pub stt_settings: Option<Value>,
    /// New end-call message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_call_message: Option<String>,
    /// New transfer message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_call_message: Option<String>,
    /// New idle message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_message: Option<String>,
    /// New maximum number of idle prompts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_idle_messages: Option<u32>,
    /// New idle timeout in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<u32>,
    /// New maximum call length in seconds (>= 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_call_length: Option<u32>,
    /// New conversation-continuity flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_continuity_enabled: Option<bool>,
    /// Fields of `tools_settings` to change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<ToolsSettings>)]
    pub tools_settings: Option<Value>,
    /// Fields of `rag_settings` to change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<RagSettings>)]
    pub rag_settings: Option<Value>,
    /// Fields of `llm_fallback_providers` to change (`fallbacks` replaces the whole list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<LlmFallbackSettings>)]
    pub llm_fallback_providers: Option<Value>,
    /// New bypass numbers (replaces the list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bypass_numbers: Option<Vec<String>>,
    /// Keys of `custom_settings` to change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub custom_settings: Option<Value>,
    /// New active flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_active: Option<bool>,
    /// Fields of `backchannel_settings` to change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<BackchannelSettings>)]
    pub backchannel_settings: Option<Value>,
    /// Fields of `recording_settings` to change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<RecordingSettings>)]
    pub recording_settings: Option<Value>,
    /// Keys of `api_keys` to change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub api_keys: Option<Value>,
    /// New TTS slot limit (1 to 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tts_limit: Option<u32>,
    /// New STT slot limit (1 to 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stt_limit: Option<u32>,
    /// Why the change was made (at most 500 characters). Accepted for compatibility with the
    /// Burki API and not stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_description: Option<String>,
}

impl fmt::Debug for AssistantPatch {
    /// Prints only the names of the fields the patch sets: values may hold secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields: Vec<String> = match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map.keys().cloned().collect(),
            _ => Vec::new(),
        };
        f.debug_struct("AssistantPatch")
            .field("fields", &fields)
            .finish()
    }
}

/// Body (or query) of `PATCH /api/v1/assistants/{id}/status`: activates or deactivates an
/// assistant without touching the rest of its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatusUpdate {
    /// true: the assistant answers calls; false: it does not.
    pub is_active: bool,
}

/// Call statistics of an assistant, computed from its call records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AssistantStats {
    /// Number of calls handled; 0 until calls exist.
    pub total_calls: Option<i64>,
    /// Average call duration in seconds; `null` until calls exist.
    pub avg_call_duration: Option<i64>,
    /// Percentage (0 to 100) of calls that ended successfully; `null` until calls exist.
    pub success_rate: Option<f64>,
}

impl Default for AssistantStats {
    /// The stats of an assistant that has taken no calls: 0 calls, no average, no rate.
    fn default() -> Self {
        Self {
            total_calls: Some(0),
            avg_call_duration: None,
            success_rate: None,
        }
    }
}

/// The response of `GET /api/v1/assistants/{id}` (and of create, update, patch and status):
/// the server-owned fields, the configuration and the stats, serialised in the field order of
/// the Burki API (`name` first, then `id` … `updated_at`, the configuration, the stats).
///
/// Timestamps are `chrono::DateTime<Utc>` and serialise as RFC 3339 (`2023-11-07T05:31:56Z`,
/// with a fraction only when there is one). Build it with [`AssistantResponse::new`], which
/// masks the secrets.
#[derive(Debug, Clone, PartialEq, ToSchema)]
pub struct AssistantResponse {
    /// Assistant id.
    pub id: i64,
    /// Owning organisation.
    pub organization_id: i64,
    /// User who created the assistant.
    pub user_id: i64,
    /// Creation time, UTC (RFC 3339 on the wire).
    pub created_at: DateTime<Utc>,
    /// Last change, UTC (RFC 3339 on the wire).
    pub updated_at: DateTime<Utc>,
    /// The configuration, secrets masked.
    #[serde(flatten)]
    pub config: AssistantConfig,
    /// Call statistics.
    #[serde(flatten)]
    pub stats: AssistantStats,
}

/// Fields of the response that the server owns; a request body may carry them (a GET body sent
/// back) and they are ignored there.
pub const READ_ONLY_FIELDS: [&str; 8] = [
    "id",
    "organization_id",
    "user_id",
    "created_at",
    "updated_at",
    "total_calls",
    "avg_call_duration",
    "success_rate",
];

impl AssistantResponse {
    /// Builds the response for a stored record; the secrets of `config` are masked here, so a
    /// response never carries a secret in clear, its server-side secret bindings are dropped,
    /// and `tools_settings.enabled_tools` is derived from the other tool settings.
    pub fn new(
        id: i64,
        organization_id: i64,
        user_id: i64,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
        mut config: AssistantConfig,
        stats: AssistantStats,
    ) -> Self {
        mask_secrets(&mut config);
        config.secret_bindings = None;
        // Derived on read too: a record stored before the derivation shows what runs.
        crate::parse::derive_enabled_tools(&mut config);
        Self {
            id,
            organization_id,
            user_id,
            created_at,
            updated_at,
            config,
            stats,
        }
    }

    /// Parses a response body (e.g. in a client or a test), naming the field of any error.
    pub fn from_value(value: Value) -> Result<Self, ValidationErrors> {
        let Value::Object(mut map) = value else {
            return Err(ValidationErrors::single("", "must be a JSON object"));
        };
        let mut errors = Vec::new();
        let mut take = |key: &str, required: bool| -> Option<Value> {
            match map.remove(key) {
                Some(v) => Some(v),
                None => {
                    if required {
                        errors.push(FieldError::new(key, "is required"));
                    }
                    None
                }
            }
        };
        let id = take("id", true);
        let organization_id = take("organization_id", true);
        let user_id = take("user_id", true);
        let created_at = take("created_at", true);
        let updated_at = take("updated_at", true);
        let total_calls = take("total_calls", false);
        let avg_call_duration = take("avg_call_duration", false);
        let success_rate = take("success_rate", false);

        let id: Option<i64> = parse_field("id", id, &mut errors);
        let organization_id: Option<i64> =
            parse_field("organization_id", organization_id, &mut errors);
        let user_id: Option<i64> = parse_field("user_id", user_id, &mut errors);
        let created_at: Option<DateTime<Utc>> = parse_field("created_at", created_at, &mut errors);
        let updated_at: Option<DateTime<Utc>> = parse_field("updated_at", updated_at, &mut errors);
        let total_calls: Option<Option<i64>> = parse_field("total_calls", total_calls, &mut errors);
        let avg_call_duration: Option<Option<i64>> =
            parse_field("avg_call_duration", avg_call_duration, &mut errors);
        let success_rate: Option<Option<f64>> =
            parse_field("success_rate", success_rate, &mut errors);

        let config = match crate::parse::deserialize_config(Value::Object(map)) {
            Ok(config) => Some(config),
            Err(e) => {
                errors.extend(e.errors);
                None
            }
        };
        match (id, organization_id, user_id, created_at, updated_at, config) {
            (
                Some(id),
                Some(organization_id),
                Some(user_id),
                Some(created_at),
                Some(updated_at),
                Some(config),
            ) if errors.is_empty() => Ok(Self {
                id,
                organization_id,
                user_id,
                created_at,
                updated_at,
                config,
                stats: AssistantStats {
                    total_calls: total_calls.flatten(),
                    avg_call_duration: avg_call_duration.flatten(),
                    success_rate: success_rate.flatten(),
                },
            }),
            _ => Err(ValidationErrors { errors }),
        }
    }
}

fn parse_field<T: serde::de::DeserializeOwned>(
    key: &str,
    value: Option<Value>,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    let value = value?;
    match serde_json::from_value(value) {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(FieldError::new(key, e.to_string()));
            None
        }
    }
}

impl Serialize for AssistantResponse {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Destructured so that a field added to the config without being listed here is a
        // compile error.
        let AssistantConfig {
            name,
            description,
            llm_provider,
            llm_provider_config,
            llm_settings,
            webhook_url,
            sms_webhook_url,
            messaging_service_sid,
            interruption_settings,
            tts_settings,
            stt_settings,
            end_call_message,
            transfer_call_message,
            idle_message,
            max_idle_messages,
            idle_timeout,
            max_call_length,
            conversation_continuity_enabled,
            tools_settings,
            rag_settings,
            llm_fallback_providers,
            bypass_numbers,
            custom_settings,
            is_active,
            backchannel_settings,
            recording_settings,
            api_keys,
            tts_limit,
            stt_limit,
            secret_bindings: _,
        } = &self.config;
        let mut map = serializer.serialize_map(Some(37))?;
        map.serialize_entry("name", name)?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("organization_id", &self.organization_id)?;
        map.serialize_entry("user_id", &self.user_id)?;
        map.serialize_entry("created_at", &self.created_at)?;
        map.serialize_entry("updated_at", &self.updated_at)?;
        map.serialize_entry("description", description)?;
        map.serialize_entry("llm_provider", llm_provider)?;
        map.serialize_entry("llm_provider_config", llm_provider_config)?;
        map.serialize_entry("llm_settings", llm_settings)?;
        map.serialize_entry("webhook_url", webhook_url)?;
        map.serialize_entry("sms_webhook_url", sms_webhook_url)?;
        map.serialize_entry("messaging_service_sid", messaging_service_sid)?;
        map.serialize_entry("interruption_settings", interruption_settings)?;
        map.serialize_entry("tts_settings", tts_settings)?;
        map.serialize_entry("stt_settings", stt_settings)?;
        map.serialize_entry("end_call_message", end_call_message)?;
        map.serialize_entry("transfer_call_message", transfer_call_message)?;
        map.serialize_entry("idle_message", idle_message)?;
        map.serialize_entry("max_idle_messages", max_idle_messages)?;
        map.serialize_entry("idle_timeout", idle_timeout)?;
        map.serialize_entry("max_call_length", max_call_length)?;
        map.serialize_entry(
            "conversation_continuity_enabled",
            conversation_continuity_enabled,
        )?;
        map.serialize_entry("tools_settings", tools_settings)?;
        map.serialize_entry("rag_settings", rag_settings)?;
        map.serialize_entry("llm_fallback_providers", llm_fallback_providers)?;
        map.serialize_entry("bypass_numbers", bypass_numbers)?;
        map.serialize_entry("custom_settings", custom_settings)?;
        map.serialize_entry("is_active", is_active)?;
        map.serialize_entry("backchannel_settings", backchannel_settings)?;
        map.serialize_entry("recording_settings", recording_settings)?;
        map.serialize_entry("api_keys", api_keys)?;
        map.serialize_entry("tts_limit", tts_limit)?;
        map.serialize_entry("stt_limit", stt_limit)?;
        map.serialize_entry("total_calls", &self.stats.total_calls)?;
        map.serialize_entry("avg_call_duration", &self.stats.avg_call_duration)?;
        map.serialize_entry("success_rate", &self.stats.success_rate)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for AssistantResponse {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::from_value(value).map_err(D::Error::custom)
    }
}
