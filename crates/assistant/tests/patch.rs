//! PATCH merge semantics and PUT replacement.

use serde_json::{Value, json};
use switchboard_assistant::{
    AssistantConfig, AssistantPatch, InterruptionMode, apply_patch, apply_update, merge_json,
    parse_create,
};

fn stored() -> AssistantConfig {
    parse_create(json!({
        "name": "Front desk",
        "description": "Answers the phone",
        "webhook_url": "https://hooks.example.com/calls",
        "llm_settings": {"temperature": 0.3, "max_tokens": 200, "stop_sequences": ["a", "b"]},
        "custom_settings": {"team": "blue", "nested": {"x": 1, "y": 2}},
        "api_keys": {"deepgram_api_key": "dg-0000000000000000000000000001"},
        "bypass_numbers": ["+14155550123"]
    }))
    .expect("valid")
}

#[test]
fn nested_objects_merge_and_keep_their_other_fields() {
    let before = stored();
    let after =
        apply_patch(&before, &json!({"llm_settings": {"temperature": 0.9}})).expect("valid");
    assert_eq!(after.llm_settings.temperature, 0.9);
    assert_eq!(after.llm_settings.max_tokens, 200);
    assert_eq!(after.llm_settings.stop_sequences, ["a", "b"]);
    // Everything else untouched.
    let mut expected = before.clone();
    expected.llm_settings.temperature = 0.9;
    assert_eq!(after, expected);
}

#[test]
fn deeply_nested_fields_merge() {
    let after = apply_patch(
        &stored(),
        &json!({"stt_settings": {"flux_config": {"eot_threshold": 0.8}}, "interruption_settings": {"interruption_mode": "immediate"}}),
    )
    .expect("valid");
    assert_eq!(after.stt_settings.flux_config.eot_threshold, Some(0.8));
    assert_eq!(after.stt_settings.flux_config.mip_opt_out, Some(false));
    assert_eq!(after.stt_settings.model, "nova-2");
    assert_eq!(
        after.interruption_settings.interruption_mode,
        InterruptionMode::Immediate
    );
    assert_eq!(after.interruption_settings.min_speaking_time, 0.5);
}

#[test]
fn arrays_and_scalars_replace() {
    let after = apply_patch(
        &stored(),
        &json!({"llm_settings": {"stop_sequences": ["c"]}, "bypass_numbers": [], "name": "Reception"}),
    )
    .expect("valid");
    assert_eq!(after.llm_settings.stop_sequences, ["c"]);
    assert_eq!(after.bypass_numbers, Some(vec![]));
    assert_eq!(after.name, "Reception");
}

#[test]
fn free_form_maps_merge_and_null_sets_a_value_to_null() {
    let after = apply_patch(
        &stored(),
        &json!({"custom_settings": {"nested": {"y": 3}, "team": null, "new": true}}),
    )
    .expect("valid");
    let custom = after.custom_settings.expect("kept");
    assert_eq!(
        Value::Object(custom),
        json!({"team": null, "nested": {"x": 1, "y": 3}, "new": true})
    );
}

#[test]
fn explicit_null_sets_nullable_fields_to_null() {
    let after = apply_patch(
        &stored(),
        &json!({"description": null, "webhook_url": null, "idle_message": null, "bypass_numbers": null}),
    )
    .expect("valid");
    assert_eq!(after.description, None);
    assert_eq!(after.webhook_url, None);
    assert_eq!(after.idle_message, None);
    assert_eq!(after.bypass_numbers, None);
}

#[test]
fn explicit_null_resets_a_nested_settings_object_to_its_defaults() {
    let after = apply_patch(&stored(), &json!({"llm_settings": null})).expect("valid");
    assert_eq!(after.llm_settings, AssistantConfig::new("x").llm_settings);
}

#[test]
fn null_for_a_non_nullable_field_is_rejected_at_its_path() {
    let err = apply_patch(&stored(), &json!({"llm_settings": {"temperature": null}})).unwrap_err();
    assert!(err.has_field("llm_settings.temperature"), "{err}");
    let err = apply_patch(&stored(), &json!({"name": null})).unwrap_err();
    assert!(err.has_field("name"), "{err}");
}

#[test]
fn patch_with_a_typo_is_rejected_naming_the_path() {
    let err = apply_patch(&stored(), &json!({"llm_settings": {"temprature": 0.9}})).unwrap_err();
    assert!(err.has_field("llm_settings.temprature"), "{err}");
    let err = apply_patch(&stored(), &json!({"descripton": "x"})).unwrap_err();
    assert!(err.has_field("descripton"), "{err}");
}

#[test]
fn patch_that_breaks_a_rule_is_rejected() {
    let err = apply_patch(&stored(), &json!({"tts_limit": 0})).unwrap_err();
    assert!(err.has_field("tts_limit"), "{err}");
    let err = apply_patch(&stored(), &json!("not an object")).unwrap_err();
    assert_eq!(err.errors[0].field, "");
}

#[test]
fn empty_patch_changes_nothing() {
    assert_eq!(apply_patch(&stored(), &json!({})).expect("valid"), stored());
}

#[test]
fn server_owned_fields_and_change_description_are_accepted_and_ignored() {
    let after = apply_patch(
        &stored(),
        &json!({"id": 99, "created_at": "2020-01-01T00:00:00Z", "total_calls": 5, "change_description": "tune"}),
    )
    .expect("valid");
    assert_eq!(after, stored());
    let err = apply_patch(&stored(), &json!({"change_description": "x".repeat(501)})).unwrap_err();
    assert!(err.has_field("change_description"), "{err}");
    assert!(apply_patch(&stored(), &json!({"change_description": "x".repeat(500)})).is_ok());
}

#[test]
fn put_replaces_the_whole_configuration() {
    let after = apply_update(&stored(), json!({"name": "Fresh"})).expect("valid");
    assert_eq!(after, AssistantConfig::new("Fresh"));
    let err = apply_update(&stored(), json!({"description": "no name"})).unwrap_err();
    assert!(err.has_field("name"), "{err}");
}

#[test]
fn merge_json_follows_the_documented_rules() {
    let mut target = json!({"a": {"b": 1, "c": [1, 2]}, "d": 1, "e": {"f": 1}});
    merge_json(
        &mut target,
        &json!({"a": {"c": [3]}, "d": {"g": 1}, "e": null, "h": 2}),
    );
    assert_eq!(
        target,
        json!({"a": {"b": 1, "c": [3]}, "d": {"g": 1}, "e": null, "h": 2})
    );
}

#[test]
fn typed_patch_serialises_only_the_fields_it_sets() {
    let patch = AssistantPatch {
        description: Some("new".to_owned()),
        llm_settings: Some(json!({"temperature": 1.0})),
        ..AssistantPatch::default()
    };
    let value = serde_json::to_value(&patch).expect("serialises");
    assert_eq!(
        value,
        json!({"description": "new", "llm_settings": {"temperature": 1.0}})
    );
    let after = apply_patch(&stored(), &value).expect("valid");
    assert_eq!(after.llm_settings.temperature, 1.0);
    assert_eq!(after.llm_settings.max_tokens, 200);
    // Debug names the fields only.
    let debug = format!("{patch:?}");
    assert!(
        debug.contains("llm_settings") && !debug.contains("1.0"),
        "{debug}"
    );
    // The typed patch rejects unknown fields too.
    assert!(serde_json::from_value::<AssistantPatch>(json!({"nmae": "x"})).is_err());
}

#[test]
fn status_update_parses_from_json_and_rejects_extras() {
    let s: switchboard_assistant::StatusUpdate =
        serde_json::from_value(json!({"is_active": false})).expect("valid");
    assert!(!s.is_active);
    assert!(
        serde_json::from_value::<switchboard_assistant::StatusUpdate>(
            json!({"is_active": true, "x": 1})
        )
        .is_err()
    );
    assert!(serde_json::from_value::<switchboard_assistant::StatusUpdate>(json!({})).is_err());
}
