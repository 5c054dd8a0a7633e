//! From an assistant record to what one call runs with: the core's settings, the provider
//! configurations and their keys.
//!
//! Keys are looked up in this order (docs/providers/README.md#keys): the assistant's own keys (for a
//! speech stage `api_keys.<provider>_api_key` then `provider_config.api_key`; for an LLM its
//! `api_key` then `api_keys`), then the organisation's keys, then the environment
//! (`OPENAI_API_KEY`, `DEEPGRAM_API_KEY`, …, only for the organisations named in
//! `[providers] env_key_orgs`).
//!
//! A key is only ever sent to a host it is bound to: an assistant's own key to the hosts it was
//! set for (`switchboard_assistant::SecretBindings`), an organisation's or the environment's
//! key to the provider's public host (or the base URL the organisation stored with its key).
//! The first key bound to where the stage connects is used; when keys exist but none is bound
//! there, the call is refused ([`ResolveError::KeyNotBound`]) instead of running keyless.
//!
//! Whether a provider runs, and what the record's model and voice names mean for it, come from
//! `switchboard_providers::registry`: `rachel`/`turbo` reach ElevenLabs as
//! `21m00Tcm4TlvDq8ikWAM`/`eleven_turbo_v2_5`, a name only another provider knows falls back to
//! this provider's default, and ids pass through unchanged.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};
use switchboard_assistant::{
    AssistantConfig, Secret, SecretBindings, default_provider_host, effective_bindings,
    endpoint_host, fallback_host, llm_host, stt_host, tts_host,
};
use switchboard_core::call::{
    BotBackchannelSettings, CallSettings, InterruptionMode, InterruptionSettings,
    SpeculativeSettings,
};
use switchboard_providers::llm::{AzureConfig, LlmConfig, LlmProvider};
use switchboard_providers::registry::{self, ProviderInfo, ProviderKind};
use switchboard_providers::stt::swap::EnglishFlux;
use switchboard_providers::stt::{FluxConfig, SttConfig, SttKeyword};
use switchboard_providers::tts::TtsConfig;

use switchboard_knowledge::EmbeddingTarget;
use switchboard_store::EndedReason;

use crate::config::{EnvKeys, ProviderSettings};

/// Per-call overrides from an outbound call request (`POST /calls/initiate`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CallOverrides {
    /// Replaces `llm_settings.welcome_message` for this call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub welcome_message: Option<String>,
    /// What this call is for; appended to the system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agenda: Option<String>,
    /// Values for the `{{name}}` slots of the prompt and welcome, also listed in the prompt.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
}

/// Who is on the line, for the prompt.
#[derive(Debug, Clone, Default)]
pub struct CallParty {
    /// What was said in this caller's previous call with the assistant, when it ended within
    /// the continuity window (`conversation_continuity_enabled`): `(role, text)` in order.
    pub previous_conversation: Vec<(String, String)>,
    /// The caller's number (inbound) or the number we called (outbound).
    pub caller_number: String,
    /// The assistant's number.
    pub assistant_number: String,
    /// `inbound` or `outbound`.
    pub direction: String,
}

/// Where keys come from besides the assistant record. `Debug` shows key names only.
#[derive(Clone, Default)]
pub struct KeySources {
    /// The organisation's provider keys: `<provider>_api_key` (or `<provider>_key`) → key, bound
    /// to the provider's public host; or `<provider>` → `{"api_key": …, "base_url": …}`, bound to
    /// that base URL's host (the public host when it has none).
    pub organization: Map<String, Value>,
    /// The operator's environment keys (`OPENAI_API_KEY`, …), bound to the providers' public
    /// hosts; empty unless this organisation is named in `[providers] env_key_orgs`.
    pub environment: EnvKeys,
}

impl fmt::Debug for KeySources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySources")
            .field(
                "organization",
                &self.organization.keys().collect::<Vec<_>>(),
            )
            .field("environment", &self.environment)
            .finish()
    }
}

impl KeySources {
    /// The key sources of a call of organisation `org_name`: its own provider keys, and the
    /// environment's keys only when `providers` names it in `env_key_orgs` (and
    /// `keys_from_env` is on).
    pub fn for_organization(
        org_name: &str,
        organization: Map<String, Value>,
        providers: &ProviderSettings,
    ) -> KeySources {
        KeySources {
            organization,
            environment: if providers.env_keys_allowed_for(org_name) {
                providers.environment_keys.clone()
            } else {
                EnvKeys::default()
            },
        }
    }
}

/// Why a record cannot run here: a provider this engine does not drive, or a key that may not be
/// sent where the record points.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The record names a provider (or provider setting) this engine cannot run.
    #[error("{0}")]
    Unsupported(String),
    /// Keys exist for the provider but none is bound to the host this stage connects to: the
    /// assistant's own keys were set for other hosts, and the organisation's and the
    /// environment's keys only go to the provider's public host (or the organisation's own base
    /// URL). The call is refused rather than run without a key.
    #[error(
        "key_not_bound: {stage}: no {provider} key may be sent to {host}; send the assistant's \
         key again with this base_url"
    )]
    KeyNotBound {
        /// `stt`, `tts`, `llm` or `llm fallback <n>`.
        stage: String,
        /// The provider of that stage.
        provider: String,
        /// Where the stage connects (`host:port`).
        host: String,
    },
}

impl ResolveError {
    /// The call record's `ended_reason` for a call refused with this error.
    pub fn ended_reason(&self) -> EndedReason {
        match self {
            ResolveError::Unsupported(_) => EndedReason::AssistantInvalid,
            ResolveError::KeyNotBound { .. } => EndedReason::KeyNotBound,
        }
    }
}

/// A key that could serve a stage, and the hosts it may be sent to.
struct Candidate {
    key: String,
    hosts: BTreeSet<String>,
}

/// Where one stage of the call connects, and the keys it could take, best first.
struct StageKeys<'a> {
    stage: String,
    provider: &'a str,
    host: String,
    candidates: Vec<Candidate>,
}

impl StageKeys<'_> {
    /// The first non-empty candidate bound to the stage's host; `""` when there is no candidate
    /// at all (the provider then decides: a keyless self-hosted server works, a vendor refuses);
    /// [`ResolveError::KeyNotBound`] when keys exist but all are bound elsewhere.
    fn pick(self) -> Result<String, ResolveError> {
        let mut withheld = false;
        for candidate in self.candidates {
            if candidate.key.is_empty() {
                continue;
            }
            if candidate.hosts.contains(&self.host) {
                return Ok(candidate.key);
            }
            withheld = true;
        }
        if withheld {
            Err(ResolveError::KeyNotBound {
                stage: self.stage,
                provider: self.provider.to_owned(),
                host: self.host,
            })
        } else {
            Ok(String::new())
        }
    }
}

fn key_names(provider: &str) -> [String; 2] {
    [format!("{provider}_api_key"), format!("{provider}_key")]
}

/// The assistant's `api_keys` entries for `provider`, each with its binding.
fn assistant_key_candidates(
    a: &AssistantConfig,
    bindings: &SecretBindings,
    provider: &str,
) -> Vec<Candidate> {
    key_names(provider)
        .iter()
        .filter_map(|name| {
            let key = a.api_keys.as_ref()?.get(name)?;
            Some(Candidate {
                key: key.to_owned(),
                hosts: bindings.hosts(&format!("api_keys.{name}")),
            })
        })
        .collect()
}

/// The organisation's and then the environment's keys for `provider`.
fn outside_candidates(keys: &KeySources, provider: &str) -> Vec<Candidate> {
    let public: BTreeSet<String> = default_provider_host(provider)
        .map(str::to_owned)
        .into_iter()
        .collect();
    let mut out = Vec::new();
    for name in key_names(provider) {
        if let Some(Value::String(key)) = keys.organization.get(&name) {
            out.push(Candidate {
                key: key.clone(),
                hosts: public.clone(),
            });
        }
    }
    if let Some(Value::Object(entry)) = keys.organization.get(provider)
        && let Some(key) = entry.get("api_key").and_then(Value::as_str)
    {
        let base = entry.get("base_url").and_then(Value::as_str);
        out.push(Candidate {
            key: key.to_owned(),
            hosts: BTreeSet::from([endpoint_host(provider, base)]),
        });
    }
    for name in key_names(provider) {
        if let Some(key) = keys.environment.get(&name) {
            out.push(Candidate {
                key: key.to_owned(),
                hosts: public.clone(),
            });
        }
    }
    out
}

/// The key of a speech stage (`stt`/`tts`): the assistant's `api_keys`, then its
/// `provider_config.api_key` (at `config_path`), then the organisation's and the environment's.
fn speech_key(
    a: &AssistantConfig,
    keys: &KeySources,
    stage: &str,
    provider: &str,
    host: String,
    config_path: &str,
    config_key: Option<&str>,
) -> Result<String, ResolveError> {
    let bindings = effective_bindings(a);
    let mut candidates = assistant_key_candidates(a, &bindings, provider);
    candidates.extend(config_key.map(|key| Candidate {
        key: key.to_owned(),
        hosts: bindings.hosts(config_path),
    }));
    candidates.extend(outside_candidates(keys, provider));
    StageKeys {
        stage: stage.to_owned(),
        provider,
        host,
        candidates,
    }
    .pick()
}

/// The key of an LLM stage: its own `api_key` (at `own_path`), then the assistant's `api_keys`,
/// then the organisation's and the environment's.
fn llm_key(
    a: &AssistantConfig,
    keys: &KeySources,
    stage: String,
    provider: &str,
    host: String,
    own_path: &str,
    own_key: Option<&Secret>,
) -> Result<String, ResolveError> {
    let bindings = effective_bindings(a);
    let mut candidates: Vec<Candidate> = own_key
        .map(|key| Candidate {
            key: key.expose().to_owned(),
            hosts: bindings.hosts(own_path),
        })
        .into_iter()
        .collect();
    candidates.extend(assistant_key_candidates(a, &bindings, provider));
    candidates.extend(outside_candidates(keys, provider));
    StageKeys {
        stage,
        provider,
        host,
        candidates,
    }
    .pick()
}

/// Replaces `{{name}}` (and `{name}`-free text stays as is) with the call's variables.
pub fn fill_variables(text: &str, vars: &BTreeMap<String, String>) -> String {
    if vars.is_empty() || !text.contains("{{") {
        return text.to_owned();
    }
    let mut out = text.to_owned();
    for (k, v) in vars {
        out = out.replace(&format!("{{{{{k}}}}}", k = k), v);
        out = out.replace(&format!("{{{{ {k} }}}}", k = k), v);
    }
    out
}

/// The system prompt a call runs with: the record's prompt (variables filled), then the
/// call's agenda, variables and who is calling.
pub fn system_prompt(a: &AssistantConfig, ov: &CallOverrides, party: &CallParty) -> String {
    let mut prompt = fill_variables(&a.llm_settings.system_prompt, &ov.variables);
    if let Some(agenda) = ov.agenda.as_deref().filter(|s| !s.trim().is_empty()) {
        prompt.push_str("\n\nThe purpose of this call: ");
        prompt.push_str(agenda.trim());
    }
    if !ov.variables.is_empty() {
        prompt.push_str("\n\nKnown details for this call:");
        for (k, v) in &ov.variables {
            prompt.push_str(&format!("\n- {k}: {v}"));
        }
    }
    if !party.caller_number.is_empty() {
        let who = if party.direction.starts_with("outbound") {
            "You are calling"
        } else {
            "The caller's phone number is"
        };
        prompt.push_str(&format!("\n\n{who} {}.", party.caller_number));
    }
    if !party.previous_conversation.is_empty() {
        prompt.push_str(
            "\n\nThis caller spoke with you a few minutes ago; the call was cut off. Pick up \
             where it stopped, without repeating the greeting. What was said then:",
        );
        for (role, text) in &party.previous_conversation {
            let who = if role == "user" { "Caller" } else { "You" };
            prompt.push_str(&format!("\n{who}: {text}"));
        }
    }
    prompt.push_str(
        "\n\nYou are speaking on a phone call: answer in short spoken sentences, no lists, \
         no markdown, no emojis.",
    );
    prompt
}

/// How long the turn waits for the LLM's verdict on a short utterance, in ms.
pub const INCOMPLETE_LLM_TIMEOUT_MS: u32 = 600;

/// The instructions of the incomplete-utterance classifier.
pub const CLASSIFIER_PROMPT: &str = "You judge phone-call speech. The caller paused after \
saying the text below. Answer with exactly one word: INCOMPLETE if they are clearly in the \
middle of a thought and will go on (e.g. \"I want to\", \"my number is\", \"and also\"), \
otherwise COMPLETE.";

/// How long after a call ends the next call from the same number continues it, in ms.
pub const CONTINUITY_WINDOW_MS: i64 = 15 * 60 * 1000;

/// The sans-IO core's settings for this call.
pub fn core_settings(a: &AssistantConfig, ov: &CallOverrides, party: &CallParty) -> CallSettings {
    let d = CallSettings::default();
    let i = &a.interruption_settings;
    let s = &a.stt_settings;
    let sc = &s.speculative_config;
    let welcome = ov
        .welcome_message
        .clone()
        .or_else(|| a.llm_settings.welcome_message.clone())
        .filter(|w| !w.trim().is_empty())
        .map(|w| fill_variables(&w, &ov.variables));
    let rec = &a.recording_settings;
    CallSettings {
        interruption: InterruptionSettings {
            interruption_threshold: i.interruption_threshold,
            min_speaking_time: i.min_speaking_time as f32,
            interruption_cooldown: i.interruption_cooldown as f32,
            interruption_mode: match i.interruption_mode {
                switchboard_assistant::InterruptionMode::Confirmed => InterruptionMode::Confirmed,
                switchboard_assistant::InterruptionMode::Immediate => InterruptionMode::Immediate,
                switchboard_assistant::InterruptionMode::Disabled => InterruptionMode::Disabled,
            },
            min_stt_confidence: i.min_stt_confidence as f32,
            confirmation_window_ms: i.confirmation_window_ms,
            tentative_confirm_words: i.tentative_confirm_words,
            backchannel_filter: i.backchannel_filter,
            tail_protection_ms: i.tail_protection_ms,
        },
        utterance_timeout_seconds: s
            .utterance_timeout_seconds
            .or_else(|| soniox_silence_timeout(s))
            .map(|v| v as f32)
            .unwrap_or(d.utterance_timeout_seconds),
        incomplete_utterance_detection: s.incomplete_utterance_detection.unwrap_or(false),
        // The record's setting asks a lightweight LLM about short utterances; the rules answer
        // the obvious ones at once and this bounds the wait for the others.
        incomplete_llm_timeout_ms: s
            .incomplete_utterance_detection
            .unwrap_or(false)
            .then_some(INCOMPLETE_LLM_TIMEOUT_MS),
        speculative: SpeculativeSettings {
            enabled: sc.enable_speculative_llm,
            stream_to_tts: sc.speculative_stream_to_tts,
            debounce_ms: sc.speculative_debounce_ms,
            min_words: sc.speculative_min_words,
            similarity_threshold: sc.speculative_similarity_threshold as f32,
        },
        idle_timeout: a.idle_timeout.filter(|t| *t > 0),
        idle_message: a.idle_message.clone().or(d.idle_message.clone()),
        max_idle_messages: a.max_idle_messages.unwrap_or(d.max_idle_messages),
        end_call_message: a.end_call_message.clone(),
        max_call_length: a.max_call_length,
        welcome_message: welcome,
        disclosure_enabled: super::disclosure::is_on(rec),
        disclosure_message: Some(super::disclosure::message(rec)),
        backchannel: BotBackchannelSettings {
            enabled: a.backchannel_settings.enabled,
            frequency: a.backchannel_settings.frequency,
        },
        system_prompt: system_prompt(a, ov, party),
        volume: a.tts_settings.volume as f32,
        language: s.language.clone(),
        ..d
    }
}

/// Soniox without endpoint detection sends no end-of-utterance marker: its
/// `utterance_silence_timeout` is then the silence after the last final that commits the turn
/// (the core's utterance timeout), unless the record sets `utterance_timeout_seconds` itself.
fn soniox_silence_timeout(s: &switchboard_assistant::SttSettings) -> Option<f64> {
    let c = &s.soniox_config;
    (s.provider.as_deref() == Some("soniox") && c.enable_endpoint_detection == Some(false))
        .then_some(c.utterance_silence_timeout)
        .flatten()
}

/// The registry's entry for provider `name` of `kind` when the engine runs it; otherwise
/// `Unsupported` with the registry's reason (a record saved before the provider was refused, or
/// written to the store directly).
fn supported(kind: ProviderKind, name: &str) -> Result<&'static ProviderInfo, ResolveError> {
    registry::runnable(kind, name).map_err(|e| ResolveError::Unsupported(e.to_string()))
}

/// The STT session's configuration, or why this record's STT cannot run here.
pub fn stt_config(a: &AssistantConfig, keys: &KeySources) -> Result<SttConfig, ResolveError> {
    let s = &a.stt_settings;
    let provider = s.provider.clone().unwrap_or_else(|| "deepgram".to_owned());
    let info = supported(ProviderKind::Stt, &provider)?;
    // `nova` → `nova-3`; another provider's model → this provider's default; ids pass through.
    let model = registry::resolve_model(info, Some(&s.model)).unwrap_or_default();
    let pc = s.provider_config.as_ref();
    let api_key = speech_key(
        a,
        keys,
        "stt",
        &provider,
        stt_host(a),
        "stt_settings.provider_config.api_key",
        pc.and_then(|p| p.get_str("api_key")),
    )?;
    // Burki's meaning: only with ElevenLabs STT, and as a mid-call swap once the first
    // utterance is detected as English (the provider layer's `stt::swap`).
    let english_flux = if provider == "elevenlabs" && s.prefer_flux_for_english == Some(true) {
        Some(english_flux(a, keys)?)
    } else {
        None
    };
    let mut elevenlabs = s.elevenlabs_config.clone();
    if english_flux.is_some() {
        // The swap decides on the detected language: ask for it.
        elevenlabs.include_language_detection = Some(true);
    }
    let flux_src = &s.flux_config;
    Ok(SttConfig {
        provider,
        model,
        language: Some(s.language.clone()).filter(|l| !l.is_empty()),
        punctuate: s.punctuate,
        smart_format: s.smart_format,
        interim_results: s.interim_results,
        endpointing_ms: Some(s.endpointing.silence_threshold),
        utterance_end_ms: Some(s.utterance_end_ms).filter(|v| *v > 0),
        keywords: s
            .keywords
            .iter()
            .map(|k| SttKeyword {
                keyword: k.keyword.clone(),
                intensifier: Some(k.intensifier as f32),
            })
            .collect(),
        keyterms: s.keyterms.clone(),
        diarize: s.diarize,
        detect_entities: s.detect_entities,
        vad_events: true,
        flux_config: flux_settings(flux_src),
        elevenlabs,
        speechmatics: s.speechmatics_config.clone(),
        soniox: s.soniox_config.clone(),
        english_flux,
        telnyx_engine: pc
            .and_then(|p| p.get_str("transcription_engine"))
            .map(str::to_owned),
        tag: flux_src.tag.clone(),
        base_url: pc.and_then(|p| p.get_str("base_url")).map(str::to_owned),
        api_key,
        ..SttConfig::default()
    })
}

/// A record's Flux settings (`flux_config` or `english_flux_config`) for the session.
fn flux_settings(c: &switchboard_assistant::FluxConfig) -> FluxConfig {
    FluxConfig {
        eot_threshold: c.eot_threshold.map(|v| v as f32),
        eager_eot_threshold: c.eager_eot_threshold.map(|v| v as f32),
        eot_timeout_ms: c.eot_timeout_ms,
        language_hints: c.language_hints.clone().unwrap_or_default(),
        mip_opt_out: c.mip_opt_out.unwrap_or(false),
    }
}

/// The Flux side of `prefer_flux_for_english`: `english_flux_config` and a Deepgram key bound to
/// where Flux connects (the organisation's `deepgram` entry's `base_url`, else Deepgram's public
/// host).
fn english_flux(a: &AssistantConfig, keys: &KeySources) -> Result<EnglishFlux, ResolveError> {
    let c = &a.stt_settings.english_flux_config;
    let base_url = match keys.organization.get("deepgram") {
        Some(Value::Object(entry)) => entry
            .get("base_url")
            .and_then(Value::as_str)
            .filter(|b| !b.trim().is_empty())
            .map(str::to_owned),
        _ => None,
    };
    let api_key = speech_key(
        a,
        keys,
        "stt (english flux)",
        "deepgram",
        endpoint_host("deepgram", base_url.as_deref()),
        "stt_settings.english_flux_config",
        None,
    )?;
    Ok(EnglishFlux {
        flux_config: flux_settings(c),
        tag: c.tag.clone(),
        api_key,
        base_url,
    })
}

/// The LLM configurations: the primary, then the fallbacks in order (empty when disabled).
pub fn llm_configs(
    a: &AssistantConfig,
    keys: &KeySources,
) -> Result<(LlmConfig, Vec<LlmConfig>), ResolveError> {
    let provider_name = a
        .llm_provider
        .clone()
        .unwrap_or_else(|| "openai".to_owned());
    supported(ProviderKind::Llm, &provider_name)?;
    let provider = LlmProvider::parse(&provider_name).ok_or_else(|| {
        ResolveError::Unsupported(format!("unknown llm provider `{provider_name}`"))
    })?;
    let pc = &a.llm_provider_config;
    let key = llm_key(
        a,
        keys,
        "llm".to_owned(),
        provider.as_str(),
        llm_host(a),
        "llm_provider_config.api_key",
        pc.api_key.as_ref(),
    )?;
    // The record's OpenAI default follows the provider (`claude-haiku-4-5` on Anthropic), also
    // for records saved before the API applied it.
    let model = registry::resolve_llm_model(&provider_name, pc.model.as_deref())
        .unwrap_or_else(|| switchboard_assistant::DEFAULT_LLM_MODEL.to_owned());
    let ls = &a.llm_settings;
    let mut primary = LlmConfig::new(provider, model, key);
    primary.base_url = pc.base_url.clone().filter(|b| !b.is_empty());
    primary.temperature = Some(ls.temperature);
    primary.max_tokens = Some(ls.max_tokens);
    primary.top_p = Some(ls.top_p);
    primary.frequency_penalty = Some(ls.frequency_penalty);
    primary.presence_penalty = Some(ls.presence_penalty);
    primary.stop_sequences = ls.stop_sequences.clone();
    if provider == LlmProvider::Azure {
        let cc = pc.custom_config.as_ref();
        primary.azure = Some(AzureConfig {
            api_version: cc
                .and_then(|c| c.get_str("api_version"))
                .unwrap_or("2024-10-21")
                .to_owned(),
            deployment: cc
                .and_then(|c| {
                    c.get_str("deployment")
                        .or_else(|| c.get_str("deployment_name"))
                })
                .map(str::to_owned),
        });
    }
    let mut fallbacks = Vec::new();
    if a.llm_fallback_providers.enabled {
        for (i, f) in a.llm_fallback_providers.fallbacks.iter().enumerate() {
            supported(ProviderKind::Llm, &f.provider)?;
            let Some(fp) = LlmProvider::parse(&f.provider) else {
                return Err(ResolveError::Unsupported(format!(
                    "unknown fallback llm provider `{}`",
                    f.provider
                )));
            };
            let key = llm_key(
                a,
                keys,
                format!("llm fallback {i}"),
                fp.as_str(),
                fallback_host(a, i).unwrap_or_default(),
                &format!("llm_fallback_providers.fallbacks[{i}].api_key"),
                f.api_key.as_ref(),
            )?;
            // A fallback without a model of its own takes the primary's, unless it is another
            // provider with a default of its own (the primary's model means nothing there).
            let model = match f.model.as_deref() {
                Some(m) => registry::resolve_llm_model(fp.as_str(), Some(m)),
                None if fp == provider => None,
                None => registry::resolve_llm_model(fp.as_str(), None),
            }
            .unwrap_or_else(|| primary.model.clone());
            let mut cfg = LlmConfig::new(fp, model, key).with_settings_of(&primary);
            cfg.base_url = f.base_url.clone().filter(|b| !b.is_empty());
            fallbacks.push(cfg);
        }
    }
    Ok((primary, fallbacks))
}

/// Where the knowledge base (`rag_settings`) makes its embeddings, resolved like the LLM: the
/// primary LLM's endpoint and key when it speaks OpenAI's embeddings API (OpenAI, Gemini's
/// OpenAI-compatible layer, a custom OpenAI-compatible server: `{api_root}/embeddings`);
/// otherwise (Anthropic, Azure, Groq, xAI) OpenAI's public API with an OpenAI key (the
/// assistant's `api_keys.openai_api_key`, then the organisation's, then the environment's).
/// The model is `rag_settings.embedding_model`.
pub fn embedding_target(
    a: &AssistantConfig,
    keys: &KeySources,
) -> Result<EmbeddingTarget, ResolveError> {
    let model = a.rag_settings.embedding_model.trim().to_owned();
    let provider = LlmProvider::parse(a.llm_provider.as_deref().unwrap_or("openai"));
    if let Some(p @ (LlmProvider::OpenAi | LlmProvider::Gemini | LlmProvider::Custom)) = provider {
        let pc = &a.llm_provider_config;
        let key = llm_key(
            a,
            keys,
            "embeddings".to_owned(),
            p.as_str(),
            llm_host(a),
            "llm_provider_config.api_key",
            pc.api_key.as_ref(),
        )?;
        let mut cfg = LlmConfig::new(p, model.clone(), key.clone());
        cfg.base_url = pc.base_url.clone().filter(|b| !b.is_empty());
        let api_root = cfg
            .api_root()
            .map_err(|e| ResolveError::Unsupported(e.to_string()))?;
        return Ok(EmbeddingTarget {
            api_root,
            api_key: key,
            model,
        });
    }
    let openai = LlmProvider::OpenAi;
    let key = llm_key(
        a,
        keys,
        "embeddings".to_owned(),
        openai.as_str(),
        default_provider_host(openai.as_str())
            .unwrap_or_default()
            .to_owned(),
        "api_keys.openai_api_key",
        None,
    )?;
    Ok(EmbeddingTarget {
        api_root: openai.default_base_url().unwrap_or_default().to_owned(),
        api_key: key,
        model,
    })
}

/// The language the TTS is told, for the providers that take one. The record has no TTS
/// language: the call's language is the STT's (`en-US`). Cartesia takes it as it is (the
/// adapter uses its primary subtag); ElevenLabs takes an ISO 639-1 `language_code`, and only
/// on its v2.5 models (Flash, Turbo), which enforce it; other models refuse one.
fn tts_language(a: &AssistantConfig, provider: &str, model_id: Option<&str>) -> Option<String> {
    let language = a.stt_settings.language.trim();
    if language.is_empty() {
        return None;
    }
    match provider {
        "cartesia" => Some(language.to_owned()),
        "elevenlabs" if model_id.is_some_and(|m| m.ends_with("_v2_5")) => language
            .split(['-', '_'])
            .next()
            .filter(|l| l.len() == 2)
            .map(str::to_ascii_lowercase),
        _ => None,
    }
}

/// The TTS session's configuration, or why this record's TTS cannot run here.
pub fn tts_config(a: &AssistantConfig, keys: &KeySources) -> Result<TtsConfig, ResolveError> {
    let t = &a.tts_settings;
    let provider = t.provider.clone();
    let info = supported(ProviderKind::Tts, &provider)?;
    let pc = t.provider_config.as_ref();
    let api_key = speech_key(
        a,
        keys,
        "tts",
        &provider,
        tts_host(a),
        "tts_settings.provider_config.api_key",
        pc.and_then(|p| p.get_str("api_key")),
    )?;
    // Names become ids per provider (`rachel` → `21m00Tcm4TlvDq8ikWAM`, `turbo` →
    // `eleven_turbo_v2_5`, `thalia` → `aura-2-thalia-en`); another provider's name falls back to
    // this provider's default; ids pass through (see `registry`).
    let model_id = registry::resolve_model(info, t.model_id.as_deref());
    let language_code = tts_language(a, &provider, model_id.as_deref());
    Ok(TtsConfig {
        provider,
        voice_id: registry::resolve_voice(info, Some(&t.voice_id)).unwrap_or_default(),
        model_id,
        stability: Some(t.stability as f32),
        similarity_boost: Some(t.similarity_boost as f32),
        style: Some(t.style as f32),
        use_speaker_boost: Some(t.use_speaker_boost),
        speed: Some(t.speed as f32),
        latency: Some(t.latency),
        language_code,
        base_url: pc.and_then(|p| p.get_str("base_url")).map(str::to_owned),
        instructions: pc
            .and_then(|p| p.get_str("instructions"))
            .map(str::to_owned),
        api_key,
        ..TtsConfig::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assistant(prompt: &str) -> AssistantConfig {
        let mut a = AssistantConfig::new("t");
        a.llm_settings.system_prompt = prompt.to_owned();
        a
    }

    #[test]
    fn prompt_carries_agenda_variables_caller_and_previous_call() {
        let a = assistant("You help {{customer}}.");
        let ov = CallOverrides {
            welcome_message: None,
            agenda: Some("Confirm Tuesday's appointment".into()),
            variables: BTreeMap::from([("customer".into(), "Maria".into())]),
        };
        let party = CallParty {
            previous_conversation: vec![
                ("user".into(), "I need to move my appointment".into()),
                ("assistant".into(), "Sure, to which day?".into()),
            ],
            caller_number: "+15550001111".into(),
            assistant_number: "+15550002222".into(),
            direction: "inbound".into(),
        };
        let p = system_prompt(&a, &ov, &party);
        assert!(p.starts_with("You help Maria."), "{p}");
        assert!(p.contains("Confirm Tuesday's appointment"));
        assert!(p.contains("- customer: Maria"));
        assert!(p.contains("+15550001111"));
        assert!(p.contains("Caller: I need to move my appointment"));
        assert!(p.contains("You: Sure, to which day?"));
    }

    #[test]
    fn welcome_override_and_variables() {
        let mut a = assistant("x");
        a.llm_settings.welcome_message = Some("Hello".into());
        let ov = CallOverrides {
            welcome_message: Some("Hi {{ name }}, it's Harbor Dental.".into()),
            agenda: None,
            variables: BTreeMap::from([("name".into(), "Sam".into())]),
        };
        let s = core_settings(&a, &ov, &CallParty::default());
        assert_eq!(
            s.welcome_message.as_deref(),
            Some("Hi Sam, it's Harbor Dental.")
        );
        let s = core_settings(&a, &CallOverrides::default(), &CallParty::default());
        assert_eq!(s.welcome_message.as_deref(), Some("Hello"));
    }

    #[test]
    fn the_llm_model_follows_the_provider_at_call_time() {
        let keys = org_keys();
        // A record stored with the OpenAI default on Anthropic (before saving applied it).
        let mut a = assistant("x");
        a.llm_provider = Some("anthropic".into());
        assert_eq!(a.llm_provider_config.model.as_deref(), Some("gpt-4o-mini"));
        let claude = registry::info(ProviderKind::Llm, "anthropic")
            .and_then(|p| p.default_model)
            .expect("default");
        assert_eq!(llm_configs(&a, &keys).unwrap().0.model, claude);
        a.llm_provider_config.model = None;
        assert_eq!(llm_configs(&a, &keys).unwrap().0.model, claude);
        a.llm_provider_config.model = Some("claude-sonnet-4-5".into());
        assert_eq!(llm_configs(&a, &keys).unwrap().0.model, "claude-sonnet-4-5");
        // OpenAI keeps its default; an Anthropic fallback without a model runs Claude.
        let b = record(serde_json::json!({"name": "f", "llm_fallback_providers": {
            "enabled": true, "fallbacks": [{"provider": "anthropic"}, {"provider": "openai"}]}}));
        let (primary, fallbacks) = llm_configs(&b, &keys).unwrap();
        assert_eq!(primary.model, "gpt-4o-mini");
        assert_eq!(fallbacks[0].model, claude);
        assert_eq!(fallbacks[1].model, "gpt-4o-mini");
    }

    #[test]
    fn keys_come_from_assistant_then_org() {
        let mut a = assistant("x");
        let keys = KeySources {
            organization: serde_json::from_str(
                r#"{"deepgram_api_key": "org-dg", "openai_api_key": "org-oa"}"#,
            )
            .unwrap(),
            environment: EnvKeys::default(),
        };
        assert_eq!(stt_config(&a, &keys).unwrap().api_key, "org-dg");
        a.api_keys = serde_json::from_str(r#"{"deepgram_api_key": "own-dg"}"#).unwrap();
        assert_eq!(stt_config(&a, &keys).unwrap().api_key, "own-dg");
        let (llm, _) = llm_configs(&a, &keys).unwrap();
        assert_eq!(llm.api_key, "org-oa");
    }

    #[test]
    fn embeddings_follow_the_llm_else_openai() {
        let keys = KeySources {
            organization: serde_json::from_str(
                r#"{"openai_api_key": "org-oa", "anthropic_api_key": "org-an"}"#,
            )
            .unwrap(),
            environment: EnvKeys::default(),
        };
        let mut a = assistant("x");
        a.rag_settings.embedding_model = "text-embedding-3-large".into();
        let t = embedding_target(&a, &keys).unwrap();
        assert_eq!(t.api_root, "https://api.openai.com/v1");
        assert_eq!(
            (t.api_key.as_str(), t.model.as_str()),
            ("org-oa", "text-embedding-3-large")
        );
        // An LLM without an embeddings API: OpenAI's, with the OpenAI key.
        a.llm_provider = Some("anthropic".into());
        let t = embedding_target(&a, &keys).unwrap();
        assert_eq!(t.api_root, "https://api.openai.com/v1");
        assert_eq!(t.api_key, "org-oa");
    }

    fn providers_with_env(pairs: &[(&str, &str)]) -> ProviderSettings {
        let vars: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut providers = crate::config::Settings::defaults()
            .expect("defaults")
            .providers;
        providers.environment_keys = EnvKeys::from_vars(&vars);
        providers
    }

    fn record(body: serde_json::Value) -> AssistantConfig {
        switchboard_assistant::parse_create(body).expect("valid record")
    }

    fn org_keys() -> KeySources {
        KeySources {
            organization: serde_json::from_str(
                r#"{"deepgram_api_key": "dg", "elevenlabs_api_key": "el", "openai_api_key": "oa"}"#,
            )
            .expect("json"),
            environment: EnvKeys::default(),
        }
    }

    #[test]
    fn record_default_names_reach_elevenlabs_as_ids() {
        let a = record(serde_json::json!({"name": "defaults"}));
        assert_eq!(a.tts_settings.voice_id, "rachel");
        assert_eq!(a.tts_settings.model_id.as_deref(), Some("turbo"));
        let tts = tts_config(&a, &org_keys()).expect("runs");
        assert_eq!(tts.voice_id, "21m00Tcm4TlvDq8ikWAM");
        assert_eq!(tts.model_id.as_deref(), Some("eleven_turbo_v2_5"));

        let ids = record(serde_json::json!({"name": "ids", "tts_settings": {
            "voice_id": "pNInz6obpgDQGcFmaJgB", "model_id": "eleven_multilingual_v2"}}));
        let tts = tts_config(&ids, &org_keys()).expect("runs");
        assert_eq!(tts.voice_id, "pNInz6obpgDQGcFmaJgB", "ids pass through");
        assert_eq!(tts.model_id.as_deref(), Some("eleven_multilingual_v2"));
    }

    #[test]
    fn the_call_language_reaches_the_tts_that_takes_one() {
        let a = record(serde_json::json!({"name": "l", "stt_settings": {"language": "fr-FR"}}));
        // `turbo` is eleven_turbo_v2_5, which enforces a language.
        let tts = tts_config(&a, &org_keys()).expect("runs");
        assert_eq!(tts.language_code.as_deref(), Some("fr"));
        let multi = record(
            serde_json::json!({"name": "m", "stt_settings": {"language": "fr-FR"},
            "tts_settings": {"model_id": "eleven_multilingual_v2"}}),
        );
        assert_eq!(tts_config(&multi, &org_keys()).unwrap().language_code, None);
        let aura =
            record(serde_json::json!({"name": "d", "tts_settings": {"provider": "deepgram"}}));
        assert_eq!(tts_config(&aura, &org_keys()).unwrap().language_code, None);
    }

    #[test]
    fn another_providers_names_fall_back_to_this_providers_default() {
        // The record defaults `rachel`/`turbo` on Aura: Aura's default voice, and no model (the
        // voice is the model).
        let a = record(serde_json::json!({"name": "aura",
            "tts_settings": {"provider": "deepgram"}}));
        let tts = tts_config(&a, &org_keys()).expect("runs");
        assert_eq!(tts.voice_id, "aura-2-thalia-en");
        assert_eq!(tts.model_id, None);
        let a = record(serde_json::json!({"name": "aura",
            "tts_settings": {"provider": "deepgram", "voice_id": "luna"}}));
        assert_eq!(
            tts_config(&a, &org_keys()).expect("runs").voice_id,
            "aura-2-luna-en"
        );
        let a = record(serde_json::json!({"name": "flux",
            "stt_settings": {"model": "flux"}}));
        assert_eq!(
            stt_config(&a, &org_keys()).expect("runs").model,
            "flux-general-en"
        );
    }

    #[test]
    fn providers_the_engine_does_not_run_are_refused_with_the_reason() {
        let mut a = record(serde_json::json!({"name": "x"}));
        a.stt_settings.provider = Some("uplift".into());
        let err = stt_config(&a, &org_keys()).expect_err("refused");
        assert!(
            err.to_string().contains("uplift") && err.to_string().contains("it runs: deepgram"),
            "{err}"
        );
        a.tts_settings.provider = "polly".into();
        assert!(matches!(
            tts_config(&a, &org_keys()),
            Err(ResolveError::Unsupported(_))
        ));
    }

    #[test]
    fn environment_keys_only_for_named_organisations() {
        let providers = providers_with_env(&[
            ("DEEPGRAM_API_KEY", "operator-dg"),
            ("OPENAI_API_KEY", "operator-oa"),
        ]);
        let a = assistant("x");
        let named = KeySources::for_organization("default", Map::new(), &providers);
        assert_eq!(stt_config(&a, &named).unwrap().api_key, "operator-dg");
        assert_eq!(llm_configs(&a, &named).unwrap().0.api_key, "operator-oa");
        let other = KeySources::for_organization("org-b", Map::new(), &providers);
        assert_eq!(stt_config(&a, &other).unwrap().api_key, "");
        assert_eq!(llm_configs(&a, &other).unwrap().0.api_key, "");
        let debug = format!("{named:?}");
        assert!(!debug.contains("operator-dg"), "{debug}");
    }

    #[test]
    fn outside_keys_never_go_to_an_assistant_base_url() {
        let providers = providers_with_env(&[("DEEPGRAM_API_KEY", "operator-dg")]);
        let org: Map<String, Value> =
            serde_json::from_str(r#"{"deepgram_api_key": "org-dg"}"#).unwrap();
        let keys = KeySources::for_organization("default", org, &providers);
        let a = record(serde_json::json!({"name": "x",
            "stt_settings": {"provider_config": {"base_url": "ws://127.0.0.1:9"}}}));
        assert_eq!(
            stt_config(&a, &keys).unwrap_err(),
            ResolveError::KeyNotBound {
                stage: "stt".into(),
                provider: "deepgram".into(),
                host: "127.0.0.1:9".into()
            }
        );
        // An organisation key stored with that base URL may go there.
        let org: Map<String, Value> = serde_json::from_str(
            r#"{"deepgram": {"api_key": "org-proxy-dg", "base_url": "ws://127.0.0.1:9/"}}"#,
        )
        .unwrap();
        let keys = KeySources::for_organization("org-b", org, &providers);
        assert_eq!(stt_config(&a, &keys).unwrap().api_key, "org-proxy-dg");
        // The assistant's own key set with that base URL wins.
        let own = record(serde_json::json!({"name": "x",
            "api_keys": {"deepgram_api_key": "own-dg"},
            "stt_settings": {"provider_config": {"base_url": "ws://127.0.0.1:9"}}}));
        assert_eq!(stt_config(&own, &keys).unwrap().api_key, "own-dg");
    }

    #[test]
    fn an_own_key_is_not_sent_to_a_host_it_was_not_set_for() {
        let mut a = record(serde_json::json!({"name": "x",
            "api_keys": {"deepgram_api_key": "own-dg", "elevenlabs_api_key": "own-el"},
            "llm_provider_config": {"api_key": "own-oa"},
            "stt_settings": {"provider_config": {"base_url": "ws://127.0.0.1:9"}}}));
        // The record changed behind the API's back (or before bindings existed and was then
        // bound): the bindings still say where the keys were set for.
        let pc = a.stt_settings.provider_config.as_mut().expect("pc");
        pc.0.insert("base_url".into(), "ws://127.0.0.1:10".into());
        a.llm_provider_config.base_url = Some("http://127.0.0.1:11/v1".into());
        let keys = KeySources::default();
        assert!(matches!(
            stt_config(&a, &keys),
            Err(ResolveError::KeyNotBound { ref host, .. }) if host == "127.0.0.1:10"
        ));
        assert!(matches!(
            llm_configs(&a, &keys),
            Err(ResolveError::KeyNotBound { ref stage, .. }) if stage == "llm"
        ));
        assert_eq!(tts_config(&a, &keys).unwrap().api_key, "own-el");
    }

    #[test]
    fn public_hosts_agree_with_the_adapters() {
        use switchboard_assistant::host_of_url;
        for provider in [
            LlmProvider::OpenAi,
            LlmProvider::Anthropic,
            LlmProvider::Gemini,
            LlmProvider::Xai,
            LlmProvider::Groq,
        ] {
            let url = provider.default_base_url().expect("public endpoint");
            assert_eq!(
                host_of_url(url).as_deref(),
                default_provider_host(provider.as_str()),
                "{provider}"
            );
        }
        let stt = switchboard_providers::stt::deepgram::listen_url(&SttConfig::default()).unwrap();
        assert_eq!(
            host_of_url(stt.as_str()).as_deref(),
            default_provider_host("deepgram")
        );
        let el = TtsConfig {
            voice_id: "rachel".into(),
            ..TtsConfig::default()
        };
        let el = switchboard_providers::tts::elevenlabs::stream_url(&el, false).unwrap();
        assert_eq!(
            host_of_url(el.as_str()).as_deref(),
            default_provider_host("elevenlabs")
        );
        let aura = TtsConfig {
            provider: "deepgram".into(),
            voice_id: "aura-2-thalia-en".into(),
            ..TtsConfig::default()
        };
        let aura = switchboard_providers::tts::deepgram_aura::speak_url(&aura).unwrap();
        assert_eq!(
            host_of_url(aura.as_str()).as_deref(),
            default_provider_host("deepgram")
        );
        let speech = switchboard_providers::tts::openai::speech_url(&TtsConfig::default());
        assert_eq!(
            host_of_url(&speech).as_deref(),
            default_provider_host("openai")
        );
    }

    #[test]
    fn openai_tts_takes_its_instructions_from_the_provider_config() {
        let mut a = assistant("x");
        a.tts_settings.provider = "openai".into();
        a.tts_settings.voice_id = "coral".into();
        a.tts_settings.provider_config = serde_json::from_value(
            serde_json::json!({"api_key": "sk-tts", "instructions": "Speak warmly."}),
        )
        .ok();
        let cfg = tts_config(&a, &KeySources::default()).unwrap();
        assert_eq!(cfg.provider, "openai");
        assert_eq!(cfg.instructions.as_deref(), Some("Speak warmly."));
        assert_eq!(cfg.api_key, "sk-tts");
    }

    #[test]
    fn telnyx_stt_takes_its_engine_from_the_provider_config() {
        let mut a = assistant("x");
        a.stt_settings.provider = Some("telnyx".into());
        a.stt_settings.provider_config = serde_json::from_value(
            serde_json::json!({"api_key": "tx-stt", "transcription_engine": "Google"}),
        )
        .ok();
        let cfg = stt_config(&a, &KeySources::default()).unwrap();
        assert_eq!(cfg.provider, "telnyx");
        assert_eq!(cfg.telnyx_engine.as_deref(), Some("Google"));
        assert_eq!(cfg.api_key, "tx-stt");
        assert_eq!(default_provider_host("telnyx"), Some("api.telnyx.com:443"));
    }

    #[test]
    fn prefer_flux_for_english_is_a_swap_with_its_own_flux_settings_and_deepgram_key() {
        let mut a = assistant("x");
        a.stt_settings.prefer_flux_for_english = Some(true);
        // With Deepgram itself the setting changes nothing: the record's model runs.
        let keys = KeySources::default();
        let dg = stt_config(&a, &keys).unwrap();
        assert_eq!(dg.model, a.stt_settings.model);
        assert!(dg.english_flux.is_none());

        a.stt_settings.english_flux_config.eot_timeout_ms = Some(4000);
        let org: Map<String, Value> = serde_json::from_str(
            r#"{"deepgram": {"api_key": "org-dg", "base_url": "ws://127.0.0.1:9"}}"#,
        )
        .unwrap();
        let keys = KeySources {
            organization: org,
            ..KeySources::default()
        };
        let flux = english_flux(&a, &keys).unwrap();
        assert_eq!(flux.api_key, "org-dg");
        assert_eq!(flux.base_url.as_deref(), Some("ws://127.0.0.1:9"));
        assert_eq!(flux.flux_config.eot_timeout_ms, Some(4000));
        assert_eq!(flux.flux_config.eot_threshold, Some(0.9));
    }

    #[test]
    fn soniox_silence_commits_the_turn_only_without_endpoint_detection() {
        let mut a = assistant("x");
        a.stt_settings.provider = Some("soniox".into());
        a.stt_settings.soniox_config.utterance_silence_timeout = Some(2.5);
        let none = CallOverrides::default();
        let party = CallParty::default();
        let with_endpoints = core_settings(&a, &none, &party).utterance_timeout_seconds;
        a.stt_settings.soniox_config.enable_endpoint_detection = Some(false);
        assert_eq!(
            core_settings(&a, &none, &party).utterance_timeout_seconds,
            2.5
        );
        assert_ne!(with_endpoints, 2.5);
        a.stt_settings.utterance_timeout_seconds = Some(1.0);
        assert_eq!(
            core_settings(&a, &none, &party).utterance_timeout_seconds,
            1.0
        );
    }

    #[test]
    fn unsupported_providers_are_refused_with_a_reason() {
        let mut a = assistant("x");
        a.stt_settings.provider = Some("azure".into());
        assert!(
            stt_config(&a, &KeySources::default())
                .unwrap_err()
                .to_string()
                .contains("azure")
        );
        a.tts_settings.provider = "acme-tts".into();
        assert!(
            tts_config(&a, &KeySources::default())
                .unwrap_err()
                .to_string()
                .contains("acme-tts")
        );
    }
}
