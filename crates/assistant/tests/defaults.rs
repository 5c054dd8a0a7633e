//! Defaults of a name-only record, the seed's field set and order, and response (de)serialisation.
#![recursion_limit = "512"]

use chrono::{TimeZone, Utc};
use serde_json::{Value, json};
use switchboard_assistant::{
    AssistantConfig, AssistantResponse, AssistantStats, READ_ONLY_FIELDS, parse_create,
};

/// The seed response of `GET /api/v1/assistants/{id}` from the Burki docs, verbatim.
const SEED: &str = include_str!("fixtures/assistant-get-response.json");

fn seed() -> Value {
    serde_json::from_str(SEED).expect("fixture is JSON")
}

fn response(config: AssistantConfig) -> AssistantResponse {
    let at = Utc
        .with_ymd_and_hms(2023, 11, 7, 5, 31, 56)
        .single()
        .expect("valid time");
    AssistantResponse::new(7, 3, 5, at, at, config, AssistantStats::default())
}

/// Every default written out by hand from `burki-openapi-extract.json`.
fn expected_defaults() -> Value {
    json!({
        "name": "Front desk",
        "description": null,
        "llm_provider": "openai",
        "llm_provider_config": {"api_key": null, "base_url": null, "model": "gpt-4o-mini", "custom_config": null},
        "llm_settings": {
            "temperature": 0.5, "max_tokens": 1000,
            "system_prompt": "You are a helpful assistant that can answer questions and help with tasks.",
            "welcome_message": null, "top_p": 1.0, "frequency_penalty": 0.0, "presence_penalty": 0.0,
            "stop_sequences": []
        },
        "webhook_url": null, "sms_webhook_url": null, "messaging_service_sid": null,
        "interruption_settings": {
            "interruption_threshold": 3, "min_speaking_time": 0.5, "interruption_cooldown": 2.0,
            "interruption_mode": "confirmed", "min_stt_confidence": 0.65, "confirmation_window_ms": 400,
            "tentative_confirm_words": 2, "backchannel_filter": true, "tail_protection_ms": 2000
        },
        "tts_settings": {
            "provider": "elevenlabs", "voice_id": "rachel", "model_id": "turbo", "latency": 1,
            "stability": 0.5, "similarity_boost": 0.75, "style": 0.0, "speed": 1.0, "volume": 1.0,
            "use_speaker_boost": true, "provider_config": null,
            "background_sound": {"enabled": false, "storage_key": null, "sound_url": null, "volume": 0.3, "loop": true}
        },
        "stt_settings": {
            "provider": "deepgram", "model": "nova-2", "language": "en-US", "punctuate": true,
            "interim_results": true,
            "endpointing": {"silence_threshold": 500, "min_silence_duration": 500},
            "utterance_end_ms": 1000, "smart_format": true, "keywords": [], "keyterms": [],
            "diarize": false, "detect_entities": false, "audio_denoising": false,
            "flux_config": {"eot_timeout_ms": null, "eager_eot_threshold": null, "eot_threshold": null,
                            "language_hints": null, "tag": null, "mip_opt_out": false},
            "elevenlabs_config": {
                "commit_strategy": "vad", "vad_threshold": 0.5, "vad_silence_threshold_secs": 0.8,
                "min_speech_duration_ms": 100, "min_silence_duration_ms": 250,
                "include_timestamps": false, "include_language_detection": false,
                "manual_commit_silence_secs": 1.5, "manual_commit_short_silence_secs": 0.8
            },
            "speechmatics_config": {
                "region": "us", "max_delay": 1.0, "enable_partials": true, "remove_disfluencies": true,
                "enable_diarization": false, "speaker_diarization_max_speakers": 2,
                "additional_vocab": null, "utterance_silence_timeout": 1.0
            },
            "soniox_config": {
                "language_hints": null, "enable_endpoint_detection": true, "max_endpoint_delay_ms": 2000,
                "enable_speaker_diarization": false, "enable_language_identification": false,
                "context_terms": null, "context_text": null, "context_general": null,
                "context_translation_terms": null, "translation_type": null,
                "translation_target_language": null, "translation_language_a": null,
                "translation_language_b": null, "num_channels": 1, "utterance_silence_timeout": 1.0
            },
            "speculative_config": {
                "enable_speculative_llm": false, "speculative_stream_to_tts": true,
                "speculative_debounce_ms": 300, "speculative_min_words": 3,
                "speculative_similarity_threshold": 0.85
            },
            "utterance_timeout_seconds": null,
            "incomplete_utterance_detection": false,
            "provider_config": null,
            "prefer_flux_for_english": false,
            "english_flux_config": {"eot_timeout_ms": 6000, "eager_eot_threshold": 0.9, "eot_threshold": 0.9,
                                    "language_hints": null, "tag": null, "mip_opt_out": false}
        },
        "end_call_message": null, "transfer_call_message": null,
        "idle_message": "Are you still there? I'm here to help if you need anything.",
        "max_idle_messages": null, "idle_timeout": null, "max_call_length": null,
        "conversation_continuity_enabled": true,
        "tools_settings": {
            "enabled_tools": [],
            "end_call": {"enabled": false, "scenarios": [], "custom_message": null},
            "transfer_call": {"enabled": false, "scenarios": [], "transfer_numbers": [], "custom_message": null,
                              "transfer_type": "cold", "agent_confirmation": false, "unavailable_message": null},
            "dtmf_solver": {"enabled": false, "scenarios": []},
            "send_sms": {"enabled": false, "scenarios": [], "default_message": null},
            "custom_tools": []
        },
        "rag_settings": {
            "enabled": false, "rag_inject_before_llm": false, "search_limit": 3, "similarity_threshold": 0.7,
            "embedding_model": "text-embedding-3-small", "chunking_strategy": "recursive",
            "chunk_size": 1000, "chunk_overlap": 200, "auto_process": true, "include_metadata": true,
            "context_window_tokens": 4000
        },
        "llm_fallback_providers": {"enabled": false, "fallbacks": []},
        "bypass_numbers": null,
        "custom_settings": null,
        "is_active": true,
        "backchannel_settings": {"enabled": false, "frequency": 3},
        "recording_settings": {
            "enabled": true, "format": "mp3", "sample_rate": 8000, "channels": 1,
            "record_user_audio": true, "record_assistant_audio": true, "record_mixed_audio": true,
            "record_user_only_track": null, "auto_save": true, "recordings_dir": "recordings",
            "create_database_records": true, "disclosure_enabled": false, "disclosure_message": null,
            "disclosure_mode": "every_call"
        },
        "api_keys": null,
        "tts_limit": null,
        "stt_limit": null
    })
}

#[test]
fn name_only_record_has_every_default_of_the_extract() {
    let config = parse_create(json!({"name": "Front desk"})).expect("valid");
    let got = serde_json::to_value(&config).expect("serialises");
    assert_eq!(got, expected_defaults());
    assert_eq!(config, AssistantConfig::new("Front desk"));
}

#[test]
fn null_nested_objects_read_back_as_defaults() {
    let config = parse_create(json!({
        "name": "Front desk",
        "llm_settings": null, "tts_settings": null, "stt_settings": {"flux_config": null, "english_flux_config": null},
        "backchannel_settings": null, "recording_settings": null, "interruption_settings": {"interruption_mode": null}
    }))
    .expect("valid");
    assert_eq!(
        serde_json::to_value(&config).expect("serialises"),
        expected_defaults()
    );
}

/// Compares key sets recursively. `nullable_ok`: a null on our side stands for any seed type.
/// Empty seed objects are free-form maps: any keys allowed. Array items are compared when both
/// sides have one.
fn same_shape(
    seed: &Value,
    ours: &Value,
    path: &str,
    nullable_ok: bool,
    problems: &mut Vec<String>,
) {
    match (seed, ours) {
        (Value::Object(s), Value::Object(o)) => {
            if s.is_empty() {
                return;
            }
            for key in s.keys() {
                match o.get(key) {
                    Some(inner) => same_shape(
                        &s[key],
                        inner,
                        &format!("{path}.{key}"),
                        nullable_ok,
                        problems,
                    ),
                    None => problems.push(format!("missing {path}.{key}")),
                }
            }
            for key in o.keys() {
                if !s.contains_key(key) {
                    problems.push(format!("extra {path}.{key}"));
                }
            }
        }
        (Value::Array(s), Value::Array(o)) => {
            if let (Some(si), Some(oi)) = (s.first(), o.first()) {
                same_shape(si, oi, &format!("{path}[0]"), nullable_ok, problems);
            }
        }
        (_, Value::Null) if nullable_ok => {}
        (Value::String(_), Value::String(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::Bool(_), Value::Bool(_)) => {}
        (s, o) => problems.push(format!("{path}: seed {s} vs ours {o}")),
    }
}

#[test]
fn default_record_has_every_field_of_the_seed() {
    let config = parse_create(json!({"name": "Front desk"})).expect("valid");
    let ours = serde_json::to_value(response(config)).expect("serialises");
    let mut problems = Vec::new();
    same_shape(&seed(), &ours, "", true, &mut problems);
    assert!(problems.is_empty(), "{problems:#?}");
    // Every nested settings object is present, never null.
    for key in [
        "llm_provider_config",
        "llm_settings",
        "interruption_settings",
        "tts_settings",
        "stt_settings",
        "tools_settings",
        "rag_settings",
        "llm_fallback_providers",
        "backchannel_settings",
        "recording_settings",
    ] {
        assert!(ours[key].is_object(), "{key}");
    }
}

#[test]
fn example_record_has_every_field_of_the_seed_with_its_json_type() {
    let config = parse_create(switchboard_assistant::example_record()).expect("valid");
    let mut filled = response(config);
    filled.stats = AssistantStats {
        total_calls: Some(12),
        avg_call_duration: Some(95),
        success_rate: Some(91.5),
    };
    let ours = serde_json::to_value(filled).expect("serialises");
    let mut problems = Vec::new();
    // The example fills every field, so even nullable ones must have the seed's type.
    same_shape(&seed(), &ours, "", false, &mut problems);
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn seed_response_parses_and_reserialises_with_the_same_shape() {
    let mut value = seed();
    // The docs' example writes "<string>" for the mode, which is an enum here.
    value["interruption_settings"]["interruption_mode"] = json!("immediate");
    let parsed = AssistantResponse::from_value(value.clone()).expect("seed parses");
    assert_eq!(parsed.id, 123);
    assert_eq!(parsed.stats.success_rate, Some(123.0));
    let again = serde_json::to_value(&parsed).expect("serialises");
    let mut problems = Vec::new();
    same_shape(&value, &again, "", false, &mut problems);
    assert!(problems.is_empty(), "{problems:#?}");
    // And through serde's Deserialize as well.
    let via_serde: AssistantResponse = serde_json::from_value(again).expect("deserialises");
    assert_eq!(via_serde, parsed);
}

fn top_level_keys(pretty: &str) -> Vec<String> {
    pretty
        .lines()
        .filter_map(|line| line.strip_prefix("  \""))
        .filter_map(|rest| rest.split_once('"').map(|(key, _)| key.to_owned()))
        .collect()
}

#[test]
fn response_fields_follow_the_seed_order() {
    let ours =
        serde_json::to_string_pretty(&response(AssistantConfig::new("a"))).expect("serialises");
    assert_eq!(top_level_keys(&ours), top_level_keys(SEED));
    assert_eq!(top_level_keys(SEED).len(), 37);
}

#[test]
fn response_timestamps_are_rfc3339_and_stats_default_to_zero_and_null() {
    let value = serde_json::to_value(response(AssistantConfig::new("a"))).expect("serialises");
    assert_eq!(value["created_at"], "2023-11-07T05:31:56Z");
    assert_eq!(value["total_calls"], 0);
    assert!(value["avg_call_duration"].is_null());
    assert!(value["success_rate"].is_null());
    assert_eq!(value["id"], 7);
    assert_eq!(value["organization_id"], 3);
    assert_eq!(value["user_id"], 5);
}

#[test]
fn response_without_id_is_an_error_naming_it() {
    let mut value = serde_json::to_value(response(AssistantConfig::new("a"))).expect("serialises");
    value.as_object_mut().expect("object").remove("id");
    let err = AssistantResponse::from_value(value).unwrap_err();
    assert!(err.has_field("id"), "{err}");
}

#[test]
fn read_only_fields_of_a_get_body_are_ignored_on_create() {
    let body = serde_json::to_value(response(AssistantConfig::new("copy"))).expect("serialises");
    for key in READ_ONLY_FIELDS {
        assert!(body.get(key).is_some(), "{key}");
    }
    let config = parse_create(body).expect("a GET body is a valid create body");
    assert_eq!(config, AssistantConfig::new("copy"));
}

#[test]
fn active_and_provider_helpers_read_null_as_the_default() {
    let mut config = AssistantConfig::new("a");
    assert!(config.active());
    config.is_active = None;
    assert!(config.active());
    config.is_active = Some(false);
    assert!(!config.active());
    config.llm_provider = None;
    assert_eq!(config.llm_provider_name(), "openai");
}
