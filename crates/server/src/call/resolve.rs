//! From an assistant record to what one call runs with: the core's settings, the provider
//! configurations and their keys.
//!
//! Keys are looked up in this order (docs/providers/README.md#keys): the assistant's `api_keys`
//! (`<provider>_api_key`), then the provider's own config (`llm_provider_config.api_key`,
//! `provider_config.api_key`), then the organisation's keys, then the environment
//! (`OPENAI_API_KEY`, `DEEPGRAM_API_KEY`, …).

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use switchboard_assistant::AssistantConfig;
use switchboard_core::call::{
    BotBackchannelSettings, CallSettings, InterruptionMode, InterruptionSettings,
    SpeculativeSettings,
};
use switchboard_providers::llm::{AzureConfig, LlmConfig, LlmProvider};
use switchboard_providers::stt::{FluxConfig, SttConfig, SttKeyword};
use switchboard_providers::tts::TtsConfig;

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

/// Where keys come from besides the assistant record.
#[derive(Debug, Clone, Default)]
pub struct KeySources {
    /// The organisation's provider keys (`openai_api_key` → value).
    pub organization: Map<String, Value>,
    /// Read the process environment as the last resort (off in tests that must not see it).
    pub use_env: bool,
}

impl KeySources {
    fn lookup(&self, a: &AssistantConfig, names: &[&str]) -> Option<String> {
        let non_empty = |v: &str| (!v.is_empty()).then(|| v.to_owned());
        let from_assistant = names.iter().find_map(|n| {
            a.api_keys
                .as_ref()
                .and_then(|k| k.get(n))
                .and_then(non_empty)
        });
        let from_org = || {
            names.iter().find_map(|n| {
                self.organization
                    .get(*n)
                    .and_then(Value::as_str)
                    .and_then(non_empty)
            })
        };
        let from_env = || {
            self.use_env
                .then(|| {
                    names.iter().find_map(|n| {
                        std::env::var(n.to_ascii_uppercase())
                            .ok()
                            .filter(|v| !v.is_empty())
                    })
                })
                .flatten()
        };
        from_assistant.or_else(from_org).or_else(from_env)
    }
}

fn key_names(provider: &str) -> Vec<String> {
    vec![format!("{provider}_api_key"), format!("{provider}_key")]
}

fn lookup_provider_key(keys: &KeySources, a: &AssistantConfig, provider: &str) -> Option<String> {
    let names = key_names(provider);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    keys.lookup(a, &refs)
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
        disclosure_enabled: rec.enabled && rec.disclosure_enabled.unwrap_or(false),
        disclosure_message: rec.disclosure_message.clone(),
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

/// The STT session's configuration, or why this record's STT cannot run here.
pub fn stt_config(a: &AssistantConfig, keys: &KeySources) -> Result<SttConfig, String> {
    let s = &a.stt_settings;
    let provider = s.provider.clone().unwrap_or_else(|| "deepgram".to_owned());
    if provider != "deepgram" {
        return Err(format!(
            "stt provider `{provider}` is not supported by this engine (supported: deepgram)"
        ));
    }
    let english = s.language.to_ascii_lowercase().starts_with("en");
    let use_flux =
        s.model.starts_with("flux") || (english && s.prefer_flux_for_english == Some(true));
    let flux_src = if use_flux && !s.model.starts_with("flux") {
        &s.english_flux_config
    } else {
        &s.flux_config
    };
    let pc = s.provider_config.as_ref();
    let api_key = lookup_provider_key(keys, a, &provider)
        .or_else(|| pc.and_then(|p| p.get_str("api_key")).map(str::to_owned))
        .unwrap_or_default();
    Ok(SttConfig {
        provider,
        model: if use_flux && !s.model.starts_with("flux") {
            "flux-general-en".to_owned()
        } else {
            s.model.clone()
        },
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
        flux_config: FluxConfig {
            eot_threshold: flux_src.eot_threshold.map(|v| v as f32),
            eager_eot_threshold: flux_src.eager_eot_threshold.map(|v| v as f32),
            eot_timeout_ms: flux_src.eot_timeout_ms,
            language_hints: flux_src.language_hints.clone().unwrap_or_default(),
            mip_opt_out: flux_src.mip_opt_out.unwrap_or(false),
        },
        tag: flux_src.tag.clone(),
        base_url: pc.and_then(|p| p.get_str("base_url")).map(str::to_owned),
        api_key,
        ..SttConfig::default()
    })
}

/// The LLM configurations: the primary, then the fallbacks in order (empty when disabled).
pub fn llm_configs(
    a: &AssistantConfig,
    keys: &KeySources,
) -> Result<(LlmConfig, Vec<LlmConfig>), String> {
    let provider_name = a
        .llm_provider
        .clone()
        .unwrap_or_else(|| "openai".to_owned());
    let provider = LlmProvider::parse(&provider_name)
        .ok_or_else(|| format!("unknown llm provider `{provider_name}`"))?;
    let pc = &a.llm_provider_config;
    let key = pc
        .api_key
        .as_ref()
        .map(|k| k.expose().to_owned())
        .filter(|k| !k.is_empty())
        .or_else(|| lookup_provider_key(keys, a, provider.as_str()))
        .unwrap_or_default();
    let model = pc.model.clone().unwrap_or_else(|| "gpt-4o-mini".to_owned());
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
        for f in &a.llm_fallback_providers.fallbacks {
            let Some(fp) = LlmProvider::parse(&f.provider) else {
                return Err(format!("unknown fallback llm provider `{}`", f.provider));
            };
            let key = f
                .api_key
                .as_ref()
                .map(|k| k.expose().to_owned())
                .filter(|k| !k.is_empty())
                .or_else(|| lookup_provider_key(keys, a, fp.as_str()))
                .unwrap_or_default();
            let model = f.model.clone().unwrap_or_else(|| primary.model.clone());
            let mut cfg = LlmConfig::new(fp, model, key).with_settings_of(&primary);
            cfg.base_url = f.base_url.clone().filter(|b| !b.is_empty());
            fallbacks.push(cfg);
        }
    }
    Ok((primary, fallbacks))
}

/// The TTS session's configuration, or why this record's TTS cannot run here.
pub fn tts_config(a: &AssistantConfig, keys: &KeySources) -> Result<TtsConfig, String> {
    let t = &a.tts_settings;
    let provider = t.provider.clone();
    if provider != "elevenlabs" && provider != "deepgram" {
        return Err(format!(
            "tts provider `{provider}` is not supported by this engine (supported: elevenlabs, deepgram)"
        ));
    }
    let pc = t.provider_config.as_ref();
    let api_key = lookup_provider_key(keys, a, &provider)
        .or_else(|| pc.and_then(|p| p.get_str("api_key")).map(str::to_owned))
        .unwrap_or_default();
    Ok(TtsConfig {
        provider,
        voice_id: t.voice_id.clone(),
        model_id: t.model_id.clone(),
        stability: Some(t.stability as f32),
        similarity_boost: Some(t.similarity_boost as f32),
        style: Some(t.style as f32),
        use_speaker_boost: Some(t.use_speaker_boost),
        speed: Some(t.speed as f32),
        latency: Some(t.latency),
        base_url: pc.and_then(|p| p.get_str("base_url")).map(str::to_owned),
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
    fn keys_come_from_assistant_then_org() {
        let mut a = assistant("x");
        let keys = KeySources {
            organization: serde_json::from_str(
                r#"{"deepgram_api_key": "org-dg", "openai_api_key": "org-oa"}"#,
            )
            .unwrap(),
            use_env: false,
        };
        assert_eq!(stt_config(&a, &keys).unwrap().api_key, "org-dg");
        a.api_keys = serde_json::from_str(r#"{"deepgram_api_key": "own-dg"}"#).unwrap();
        assert_eq!(stt_config(&a, &keys).unwrap().api_key, "own-dg");
        let (llm, _) = llm_configs(&a, &keys).unwrap();
        assert_eq!(llm.api_key, "org-oa");
    }

    #[test]
    fn unsupported_providers_are_refused_with_a_reason() {
        let mut a = assistant("x");
        a.stt_settings.provider = Some("soniox".into());
        assert!(
            stt_config(&a, &KeySources::default())
                .unwrap_err()
                .contains("soniox")
        );
        a.tts_settings.provider = "cartesia".into();
        assert!(
            tts_config(&a, &KeySources::default())
                .unwrap_err()
                .contains("cartesia")
        );
    }
}
