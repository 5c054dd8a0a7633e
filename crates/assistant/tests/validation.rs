//! Every range edge: the edge is accepted, the value just outside is rejected at its path.

use serde_json::{Map, Value, json};
use switchboard_assistant::{
    AssistantConfig, ModelCheck, ProviderCatalog, ProviderKind, Support, ValidationErrors,
    apply_patch, check_providers, is_e164, parse_create, validate,
};

/// `{"a": {"b": value}}` for the path `a.b`.
fn nested(path: &str, value: Value) -> Value {
    path.rsplit('.').fold(value, |inner, key| {
        let mut map = Map::new();
        map.insert(key.to_owned(), inner);
        Value::Object(map)
    })
}

fn base() -> AssistantConfig {
    AssistantConfig::new("edge test")
}

fn try_set(path: &str, value: Value) -> Result<AssistantConfig, ValidationErrors> {
    apply_patch(&base(), &nested(path, value))
}

#[track_caller]
fn accepts(path: &str, value: Value) {
    if let Err(err) = try_set(path, value.clone()) {
        panic!("{path} = {value} should be accepted: {err}");
    }
}

#[track_caller]
fn rejects(path: &str, value: Value) {
    match try_set(path, value.clone()) {
        Ok(_) => panic!("{path} = {value} should be rejected"),
        Err(err) => assert!(
            err.has_field(path),
            "{path} = {value}: wrong field in {err}"
        ),
    }
}

/// Inclusive float range [min, max]: both edges pass, `step` outside fails.
#[track_caller]
fn float_range(path: &str, min: f64, max: f64, step: f64) {
    accepts(path, json!(min));
    accepts(path, json!(max));
    rejects(path, json!(min - step));
    rejects(path, json!(max + step));
}

#[track_caller]
fn int_range(path: &str, min: i64, max: i64) {
    accepts(path, json!(min));
    accepts(path, json!(max));
    rejects(path, json!(min - 1));
    rejects(path, json!(max + 1));
}

#[track_caller]
fn int_min(path: &str, min: i64) {
    accepts(path, json!(min));
    rejects(path, json!(min - 1));
}

#[track_caller]
fn float_min(path: &str, min: f64) {
    accepts(path, json!(min));
    rejects(path, json!(min - 0.001));
}

#[test]
fn default_record_and_example_are_valid() {
    assert_eq!(validate(&base()), Ok(()));
    assert!(parse_create(switchboard_assistant::example_record()).is_ok());
}

#[test]
fn llm_settings_ranges() {
    float_range("llm_settings.temperature", 0.0, 2.0, 0.01);
    float_range("llm_settings.top_p", 0.0, 1.0, 0.01);
    float_range("llm_settings.frequency_penalty", -2.0, 2.0, 0.01);
    float_range("llm_settings.presence_penalty", -2.0, 2.0, 0.01);
    int_min("llm_settings.max_tokens", 1);
}

#[test]
fn top_level_limits() {
    int_min("max_call_length", 1);
    accepts("max_call_length", Value::Null);
    int_range("tts_limit", 1, 1000);
    int_range("stt_limit", 1, 1000);
    int_min("idle_timeout", 0);
    int_min("max_idle_messages", 0);
}

#[test]
fn interruption_ranges() {
    int_min("interruption_settings.interruption_threshold", 1);
    float_min("interruption_settings.min_speaking_time", 0.0);
    float_min("interruption_settings.interruption_cooldown", 0.0);
    float_range("interruption_settings.min_stt_confidence", 0.0, 1.0, 0.01);
    int_min("interruption_settings.confirmation_window_ms", 0);
    int_min("interruption_settings.tentative_confirm_words", 1);
    int_min("interruption_settings.tail_protection_ms", 0);
}

#[test]
fn tts_ranges() {
    int_range("tts_settings.latency", 0, 4);
    float_range("tts_settings.stability", 0.0, 1.0, 0.01);
    float_range("tts_settings.similarity_boost", 0.0, 1.0, 0.01);
    float_range("tts_settings.style", 0.0, 1.0, 0.01);
    float_min("tts_settings.volume", 0.0);
    float_range("tts_settings.background_sound.volume", 0.0, 1.0, 0.01);
    // ElevenLabs (the default provider) accepts 0.7 to 1.2.
    float_range("tts_settings.speed", 0.7, 1.2, 0.01);
}

#[test]
fn tts_speed_range_of_other_providers() {
    let deepgram = |speed: f64| json!({"tts_settings": {"provider": "deepgram", "voice_id": "aura-2-thalia-en", "speed": speed}});
    for ok in [0.5, 2.0] {
        assert!(apply_patch(&base(), &deepgram(ok)).is_ok(), "{ok}");
    }
    for bad in [0.49, 2.01] {
        let err = apply_patch(&base(), &deepgram(bad)).unwrap_err();
        assert!(err.has_field("tts_settings.speed"), "{err}");
    }
}

#[test]
fn stt_ranges() {
    int_range("stt_settings.utterance_end_ms", 100, 10_000);
    float_range("stt_settings.utterance_timeout_seconds", 0.3, 5.0, 0.01);
    int_min("stt_settings.endpointing.silence_threshold", 0);
    int_min("stt_settings.endpointing.min_silence_duration", 0);
}

#[test]
fn flux_ranges_follow_protocols_2_2() {
    int_range("stt_settings.flux_config.eot_timeout_ms", 500, 60_000);
    float_range(
        "stt_settings.flux_config.eager_eot_threshold",
        0.3,
        0.9,
        0.01,
    );
    float_range("stt_settings.flux_config.eot_threshold", 0.5, 1.0, 0.01);
    int_range(
        "stt_settings.english_flux_config.eot_timeout_ms",
        500,
        60_000,
    );
    rejects(
        "stt_settings.english_flux_config.eot_threshold",
        json!(1.01),
    );
}

#[test]
fn flux_eager_threshold_must_not_exceed_eot_threshold() {
    let patch = |eager: f64, eot: f64| json!({"stt_settings": {"flux_config": {"eager_eot_threshold": eager, "eot_threshold": eot}}});
    assert!(apply_patch(&base(), &patch(0.7, 0.7)).is_ok());
    let err = apply_patch(&base(), &patch(0.71, 0.7)).unwrap_err();
    assert!(
        err.has_field("stt_settings.flux_config.eager_eot_threshold"),
        "{err}"
    );
}

#[test]
fn elevenlabs_stt_ranges() {
    let at = "stt_settings.elevenlabs_config";
    float_range(&format!("{at}.vad_threshold"), 0.1, 0.9, 0.01);
    float_range(&format!("{at}.vad_silence_threshold_secs"), 0.3, 3.0, 0.01);
    int_range(&format!("{at}.min_speech_duration_ms"), 50, 2000);
    int_range(&format!("{at}.min_silence_duration_ms"), 50, 2000);
    float_range(&format!("{at}.manual_commit_silence_secs"), 0.5, 5.0, 0.01);
    float_range(
        &format!("{at}.manual_commit_short_silence_secs"),
        0.3,
        2.0,
        0.01,
    );
    accepts(&format!("{at}.commit_strategy"), json!("manual"));
    rejects(&format!("{at}.commit_strategy"), json!("auto"));
}

#[test]
fn speechmatics_and_soniox_ranges() {
    let at = "stt_settings.speechmatics_config";
    float_range(&format!("{at}.max_delay"), 0.5, 10.0, 0.01);
    int_range(&format!("{at}.speaker_diarization_max_speakers"), 1, 10);
    float_range(&format!("{at}.utterance_silence_timeout"), 0.3, 5.0, 0.01);
    accepts(&format!("{at}.region"), json!("eu"));
    rejects(&format!("{at}.region"), json!("ap"));
    let at = "stt_settings.soniox_config";
    int_range(&format!("{at}.max_endpoint_delay_ms"), 500, 3000);
    int_range(&format!("{at}.num_channels"), 1, 2);
    float_range(&format!("{at}.utterance_silence_timeout"), 0.3, 5.0, 0.01);
    accepts(&format!("{at}.translation_type"), json!("two_way"));
    rejects(&format!("{at}.translation_type"), json!("three_way"));
}

#[test]
fn speculative_ranges() {
    let at = "stt_settings.speculative_config";
    int_range(&format!("{at}.speculative_debounce_ms"), 100, 1000);
    int_range(&format!("{at}.speculative_min_words"), 1, 10);
    float_range(
        &format!("{at}.speculative_similarity_threshold"),
        0.5,
        1.0,
        0.01,
    );
}

#[test]
fn rag_ranges() {
    int_range("rag_settings.search_limit", 1, 50);
    float_range("rag_settings.similarity_threshold", 0.0, 1.0, 0.01);
    int_range("rag_settings.context_window_tokens", 1, 32_000);
    accepts("rag_settings.chunk_size", json!(8000));
    rejects("rag_settings.chunk_size", json!(8001));
    for strategy in ["recursive", "sentence", "fixed"] {
        accepts("rag_settings.chunking_strategy", json!(strategy));
    }
    rejects("rag_settings.chunking_strategy", json!("semantic"));
    rejects("rag_settings.chunking_strategy", json!(""));
    rejects("rag_settings.embedding_model", json!(" "));
    // chunk_overlap must stay below chunk_size (1000 by default).
    accepts("rag_settings.chunk_overlap", json!(999));
    rejects("rag_settings.chunk_overlap", json!(1000));
    let sizes = |size: u32, overlap: u32| json!({"rag_settings": {"chunk_size": size, "chunk_overlap": overlap}});
    assert!(apply_patch(&base(), &sizes(1, 0)).is_ok());
    let err = apply_patch(&base(), &sizes(0, 0)).unwrap_err();
    assert!(err.has_field("rag_settings.chunk_size"), "{err}");
}

#[test]
fn backchannel_frequency_range() {
    int_range("backchannel_settings.frequency", 1, 5);
}

#[test]
fn recording_rules() {
    accepts("recording_settings.sample_rate", json!(8000));
    accepts("recording_settings.sample_rate", json!(48000));
    rejects("recording_settings.sample_rate", json!(8001));
    int_range("recording_settings.channels", 1, 2);
    accepts("recording_settings.format", json!("wav"));
    rejects("recording_settings.format", json!("ogg"));
    accepts("recording_settings.recordings_dir", json!("calls/2026"));
    accepts("recording_settings.disclosure_mode", json!("every_call"));
    accepts(
        "recording_settings.disclosure_mode",
        json!("first_call_only"),
    );
    accepts("recording_settings.disclosure_mode", json!(null));
    rejects("recording_settings.disclosure_mode", json!("sometimes"));
    for bad in ["../etc", "/var/lib", "a/../../b", "", "C:\\x"] {
        rejects("recording_settings.recordings_dir", json!(bad));
    }
}

#[test]
fn name_rules() {
    accepts("name", json!("a"));
    accepts("name", json!("é".repeat(255)));
    rejects("name", json!("é".repeat(256)));
    rejects("name", json!(""));
    rejects("name", json!("   "));
    rejects("name", Value::Null);
}

#[test]
fn e164_edges() {
    assert!(is_e164("+12")); // shortest: 2 digits
    assert!(is_e164("+123456789012345")); // longest: 15 digits
    assert!(!is_e164("+1234567890123456")); // 16 digits
    assert!(!is_e164("+1"));
    assert!(!is_e164("+0123456"));
    assert!(!is_e164("14155550123"));
    assert!(!is_e164("+1 415 555 0123"));
    assert!(!is_e164("+1415555012a"));
    assert!(!is_e164(""));
    accepts("bypass_numbers", json!(["+14155550123", "+442071838750"]));
    let err = try_set("bypass_numbers", json!(["+14155550123", "4155550123"])).unwrap_err();
    assert!(err.has_field("bypass_numbers[1]"), "{err}");
    accepts(
        "tools_settings.transfer_call.transfer_numbers",
        json!(["+14155550199"]),
    );
    let err = try_set(
        "tools_settings.transfer_call.transfer_numbers",
        json!(["+1"]),
    )
    .unwrap_err();
    assert!(
        err.has_field("tools_settings.transfer_call.transfer_numbers[0]"),
        "{err}"
    );
}

/// A fixed catalog: what `check_providers` is asked is the engine's business, so the test
/// brings its own table (the real one is tested in `switchboard_providers::registry`).
struct Table;

impl ProviderCatalog for Table {
    fn support(&self, kind: ProviderKind, name: &str) -> Option<Support> {
        match (kind, name) {
            (ProviderKind::Llm, "openai" | "groq" | "anthropic")
            | (ProviderKind::Stt, "deepgram")
            | (ProviderKind::Tts, "elevenlabs" | "deepgram") => Some(Support::Runs),
            (ProviderKind::Stt, "telnyx") => Some(Support::Refused("no public streaming protocol")),
            _ => None,
        }
    }

    fn runnable(&self, kind: ProviderKind) -> Vec<&'static str> {
        match kind {
            ProviderKind::Llm => vec!["openai", "groq", "anthropic"],
            ProviderKind::Stt => vec!["deepgram"],
            ProviderKind::Tts => vec!["elevenlabs", "deepgram"],
        }
    }

    fn check_model(&self, _kind: ProviderKind, _name: &str, model: &str) -> ModelCheck {
        if model == "whisper-1" {
            ModelCheck::Refused {
                known: vec!["nova-3"],
            }
        } else {
            ModelCheck::Allowed
        }
    }
}

#[track_caller]
fn checked(path: &str, value: Value) -> Result<(), ValidationErrors> {
    let record = try_set(path, value).expect("the record itself is valid");
    check_providers(&record, &Table)
}

#[test]
fn provider_names_are_checked_against_the_catalog() {
    assert_eq!(check_providers(&base(), &Table), Ok(()), "defaults run");
    for ok in ["openai", "groq"] {
        checked("llm_provider", json!(ok)).expect("runs");
    }
    let err = checked("llm_provider", json!("OpenAI")).unwrap_err();
    assert!(err.has_field("llm_provider"), "{err}");
    assert!(err.to_string().contains("openai, groq, anthropic"), "{err}");
    checked("llm_provider", Value::Null).expect("null is openai");
    rejects("llm_provider", json!(""));

    let err = checked("stt_settings.provider", json!("telnyx")).unwrap_err();
    assert!(err.has_field("stt_settings.provider"), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("no public streaming protocol") && text.contains("it runs: deepgram"),
        "{text}"
    );
    let err = checked("stt_settings.model", json!("whisper-1")).unwrap_err();
    assert!(err.has_field("stt_settings.model"), "{err}");
    assert!(err.to_string().contains("nova-3"), "{err}");

    checked("tts_settings.provider", json!("deepgram")).expect("runs");
    let err = checked("tts_settings.provider", json!("polly")).unwrap_err();
    assert!(err.has_field("tts_settings.provider"), "{err}");

    let err = checked(
        "llm_fallback_providers",
        json!({"fallbacks": [{"provider": "groq"}, {"provider": "mistral"}]}),
    )
    .unwrap_err();
    assert!(
        err.has_field("llm_fallback_providers.fallbacks[1].provider"),
        "{err}"
    );
}

#[test]
fn urls_must_parse_with_an_allowed_scheme() {
    accepts("webhook_url", json!("https://hooks.example.com/calls"));
    accepts("webhook_url", json!("http://127.0.0.1:9000/hook"));
    accepts("webhook_url", Value::Null);
    for bad in [
        "hooks.example.com",
        "ftp://example.com/x",
        "wss://example.com/x",
        "",
        "https://",
    ] {
        rejects("webhook_url", json!(bad));
    }
    rejects("sms_webhook_url", json!("not a url"));
    accepts(
        "llm_provider_config.base_url",
        json!("http://127.0.0.1:4010/v1"),
    );
    rejects("llm_provider_config.base_url", json!("127.0.0.1:4010"));
    accepts(
        "stt_settings.provider_config",
        json!({"base_url": "ws://127.0.0.1:4011"}),
    );
    let err = try_set("stt_settings.provider_config", json!({"base_url": "nope"})).unwrap_err();
    assert!(
        err.has_field("stt_settings.provider_config.base_url"),
        "{err}"
    );
    let err = try_set("tts_settings.provider_config", json!({"base_url": 5})).unwrap_err();
    assert!(
        err.has_field("tts_settings.provider_config.base_url"),
        "{err}"
    );
    accepts(
        "tts_settings.background_sound.sound_url",
        json!("https://cdn.example.com/a.mp3"),
    );
    rejects(
        "tts_settings.background_sound.sound_url",
        json!("file:///etc/passwd"),
    );
    let err = try_set(
        "llm_fallback_providers",
        json!({"fallbacks": [{"provider": "groq", "base_url": "x"}]}),
    )
    .unwrap_err();
    assert!(
        err.has_field("llm_fallback_providers.fallbacks[0].base_url"),
        "{err}"
    );
}

#[test]
fn messaging_service_sid_shape() {
    accepts(
        "messaging_service_sid",
        json!("MG0123456789abcdef0123456789ABCDEF"),
    );
    rejects(
        "messaging_service_sid",
        json!("MG0123456789abcdef0123456789abcde"),
    );
    rejects(
        "messaging_service_sid",
        json!("PN0123456789abcdef0123456789abcdef"),
    );
}

#[test]
fn all_broken_rules_are_reported_together() {
    let err = parse_create(json!({
        "name": "a",
        "llm_settings": {"temperature": 9.0, "top_p": 2.0},
        "tts_limit": 0,
        "bypass_numbers": ["x"]
    }))
    .unwrap_err();
    for field in [
        "llm_settings.temperature",
        "llm_settings.top_p",
        "tts_limit",
        "bypass_numbers[0]",
    ] {
        assert!(err.has_field(field), "{field} missing in {err}");
    }
    assert_eq!(err.errors.len(), 4);
}

#[test]
fn a_section_of_the_wrong_type_is_refused_not_reset() {
    for (path, value) in [
        ("stt_settings", json!([])),
        ("llm_settings", json!("x")),
        ("tts_settings", json!(3)),
        ("stt_settings.endpointing", json!([500, 500])),
        ("tools_settings.end_call", json!([true])),
    ] {
        rejects(path, value);
    }
    let err = apply_patch(
        &base(),
        &json!({"llm_fallback_providers": {"fallbacks": [["openai"]]}}),
    )
    .unwrap_err();
    assert!(
        err.has_field("llm_fallback_providers.fallbacks[0]"),
        "{err}"
    );
    let err = parse_create(json!({"name": "a", "recording_settings": []})).unwrap_err();
    assert!(err.has_field("recording_settings"), "{err}");
    // `null` still resets a section to its defaults.
    accepts("stt_settings", Value::Null);
}

#[test]
fn max_tokens_has_an_upper_bound() {
    int_range(
        "llm_settings.max_tokens",
        1,
        i64::from(switchboard_assistant::MAX_TOKENS_LIMIT),
    );
}

#[test]
fn control_characters_are_refused_in_text() {
    rejects("name", json!("front\u{0}desk"));
    rejects("name", json!("bell\u{7}"));
    rejects("tts_settings.voice_id", json!("rachel\u{1b}[31m"));
    rejects("llm_settings.system_prompt", json!("lone\rreturn"));
    accepts("name", json!("two\tparts"));
    accepts(
        "llm_settings.system_prompt",
        json!("line one\r\nline two\n\tindented"),
    );
    let err = parse_create(json!({"name": "a", "custom_settings": {"k\u{0}": 1}})).unwrap_err();
    assert!(err.errors[0].field.starts_with("custom_settings."), "{err}");
}

/// A custom tool entry is checked field by field; the 422 names the field.
#[test]
fn custom_tools_are_validated_per_field() {
    let good = json!({"name": "lookup_hours", "description": "d", "method": "GET",
        "url": "https://tools.example.com/hours/{day}", "headers": {"X-Key": "k"},
        "body": "{\"day\": \"{day}\"}", "timeout_ms": 30000,
        "parameters": {"type": "object", "properties": {"day": {"type": "string"}}}});
    let set =
        |tools: Value| apply_patch(&base(), &json!({"tools_settings": {"custom_tools": tools}}));
    assert!(set(json!([good.clone()])).is_ok());
    let cases: [(&str, Value, &str); 9] = [
        (
            "name",
            json!("has space"),
            "tools_settings.custom_tools[0].name",
        ),
        (
            "name",
            json!("end_call"),
            "tools_settings.custom_tools[0].name",
        ),
        (
            "url",
            json!("ftp://x.example.com"),
            "tools_settings.custom_tools[0].url",
        ),
        ("url", Value::Null, "tools_settings.custom_tools[0].url"),
        (
            "method",
            json!("TRACE"),
            "tools_settings.custom_tools[0].method",
        ),
        (
            "headers",
            json!({"X-Key": 5}),
            "tools_settings.custom_tools[0].headers",
        ),
        (
            "timeout_ms",
            json!(30001),
            "tools_settings.custom_tools[0].timeout_ms",
        ),
        (
            "timeout_ms",
            json!(0),
            "tools_settings.custom_tools[0].timeout_ms",
        ),
        (
            "parameters",
            json!({"type": "string"}),
            "tools_settings.custom_tools[0].parameters",
        ),
    ];
    for (field, value, path) in cases {
        let mut tool = good.clone();
        if value.is_null() {
            tool.as_object_mut().map(|t| t.remove(field));
        } else {
            tool[field] = value.clone();
        }
        match set(json!([tool])) {
            Ok(_) => panic!("{field} = {value} should be rejected"),
            Err(err) => assert!(err.has_field(path), "{field} = {value}: {err}"),
        }
    }
    let err = set(json!([good.clone(), good])).expect_err("duplicate names");
    assert!(
        err.has_field("tools_settings.custom_tools[1].name"),
        "{err}"
    );
}
