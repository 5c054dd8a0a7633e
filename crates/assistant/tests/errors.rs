//! Deserialisation errors (unknown field, wrong type, missing field) name the field path.

use serde_json::{Value, json};
use switchboard_assistant::{ValidationErrors, parse_create};

fn error_of(body: Value) -> ValidationErrors {
    parse_create(body).expect_err("must be rejected")
}

fn assert_field(body: Value, field: &str) -> ValidationErrors {
    let err = error_of(body);
    assert_eq!(err.errors.len(), 1, "{err}");
    assert_eq!(err.errors[0].field, field, "{err}");
    err
}

#[test]
fn unknown_top_level_field_is_named() {
    let err = assert_field(json!({"name": "a", "nmae": "b"}), "nmae");
    assert!(err.errors[0].rule.starts_with("unknown field"), "{err}");
    assert!(
        err.errors[0].rule.contains("`name`"),
        "lists expected fields: {err}"
    );
}

#[test]
fn unknown_nested_field_is_named_by_its_path() {
    assert_field(
        json!({"name": "a", "llm_settings": {"temprature": 1}}),
        "llm_settings.temprature",
    );
    assert_field(
        json!({"name": "a", "stt_settings": {"flux_config": {"eot_timeout": 5000}}}),
        "stt_settings.flux_config.eot_timeout",
    );
    assert_field(
        json!({"name": "a", "tts_settings": {"background_sound": {"looping": true}}}),
        "tts_settings.background_sound.looping",
    );
    assert_field(
        json!({"name": "a", "recording_settings": {"formats": "mp3"}}),
        "recording_settings.formats",
    );
}

#[test]
fn unknown_field_inside_an_array_item_is_named_with_its_index() {
    assert_field(
        json!({"name": "a", "stt_settings": {"keywords": [{"keyword": "x"}, {"keyword": "y", "boost": 2}]}}),
        "stt_settings.keywords[1].boost",
    );
    assert_field(
        json!({"name": "a", "llm_fallback_providers": {"fallbacks": [{"provider": "groq", "apikey": "k"}]}}),
        "llm_fallback_providers.fallbacks[0].apikey",
    );
}

#[test]
fn wrong_type_is_named() {
    let err = assert_field(
        json!({"name": "a", "llm_settings": {"max_tokens": "many"}}),
        "llm_settings.max_tokens",
    );
    assert!(err.errors[0].rule.contains("invalid type"), "{err}");
    assert_field(
        json!({"name": "a", "bypass_numbers": [1]}),
        "bypass_numbers[0]",
    );
    assert_field(json!({"name": "a", "is_active": "yes"}), "is_active");
    assert_field(json!({"name": 5}), "name");
}

#[test]
fn negative_value_for_an_unsigned_field_is_named() {
    assert_field(
        json!({"name": "a", "interruption_settings": {"confirmation_window_ms": -1}}),
        "interruption_settings.confirmation_window_ms",
    );
}

#[test]
fn missing_required_fields_are_named() {
    let err = assert_field(json!({"description": "no name"}), "name");
    assert_eq!(err.errors[0].rule, "is required");
    let err = assert_field(
        json!({"name": "a", "stt_settings": {"keywords": [{"intensifier": 2.0}]}}),
        "stt_settings.keywords[0].keyword",
    );
    assert_eq!(err.errors[0].rule, "is required");
    assert_field(
        json!({"name": "a", "llm_fallback_providers": {"fallbacks": [{"model": "m"}]}}),
        "llm_fallback_providers.fallbacks[0].provider",
    );
}

#[test]
fn unknown_enum_values_are_named() {
    let err = assert_field(
        json!({"name": "a", "interruption_settings": {"interruption_mode": "Immediate"}}),
        "interruption_settings.interruption_mode",
    );
    assert!(err.errors[0].rule.contains("confirmed"), "{err}");
    assert_field(
        json!({"name": "a", "tools_settings": {"transfer_call": {"transfer_type": "hot"}}}),
        "tools_settings.transfer_call.transfer_type",
    );
    assert_field(
        json!({"name": "a", "recording_settings": {"format": "ogg"}}),
        "recording_settings.format",
    );
}

#[test]
fn body_that_is_not_an_object_is_rejected() {
    let err = error_of(json!([1, 2]));
    assert_eq!(err.errors[0].field, "");
    let err = error_of(json!("name"));
    assert!(err.to_string().contains("JSON object"), "{err}");
}

#[test]
fn display_lists_every_error_with_its_field() {
    let err = error_of(json!({"name": "", "llm_settings": {"temperature": 3.0}}));
    let text = err.to_string();
    assert!(text.contains("name: must not be empty"), "{text}");
    assert!(
        text.contains("llm_settings.temperature: must be between 0 and 2"),
        "{text}"
    );
    assert_eq!(err.first().map(|e| e.field.as_str()), Some("name"));
}

#[test]
fn all_interruption_modes_are_accepted_and_serialise_lowercase() {
    for mode in ["confirmed", "immediate", "disabled"] {
        let config = parse_create(
            json!({"name": "a", "interruption_settings": {"interruption_mode": mode}}),
        )
        .expect("valid");
        let value = serde_json::to_value(&config).expect("serialises");
        assert_eq!(value["interruption_settings"]["interruption_mode"], mode);
    }
}
