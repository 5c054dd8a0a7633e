//! The README's example record and the OpenAPI schemas the server generates from these types.

use serde_json::Value;
use switchboard_assistant::{
    AssistantConfig, AssistantPatch, AssistantResponse, EXAMPLE_RECORD_JSON, StatusUpdate,
    ValidationErrors, deserialize_config, example_record, parse_create, validate,
};
use utoipa::OpenApi;

#[test]
fn example_file_deserialises_validates_and_round_trips() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/seed-assistant.json");
    let text = std::fs::read_to_string(path).expect("example file present");
    let value: Value = serde_json::from_str(&text).expect("example file is JSON");
    assert_eq!(value, example_record());
    assert_eq!(text, EXAMPLE_RECORD_JSON);

    let config = deserialize_config(value.clone()).expect("deserialises");
    assert_eq!(validate(&config), Ok(()));
    // Serialising the parsed record gives back exactly the example.
    assert_eq!(serde_json::to_value(&config).expect("serialises"), value);
    // Creating it also binds its keys to their hosts (server-side state, not part of the JSON).
    let mut created = parse_create(value).expect("valid create body");
    assert!(
        created.secret_bindings.is_some(),
        "the example's keys are bound"
    );
    created.secret_bindings = None;
    assert_eq!(created, config);
}

#[test]
fn example_uses_realistic_values() {
    let config = parse_create(example_record()).expect("valid");
    assert_eq!(
        config.llm_provider_config.model.as_deref(),
        Some("gpt-4o-mini")
    );
    assert!(!config.name.is_empty());
    assert!(
        config.llm_provider_config.api_key.is_some(),
        "shows masking in the README"
    );
    assert!(
        config
            .bypass_numbers
            .as_ref()
            .is_some_and(|n| !n.is_empty())
    );
}

#[derive(OpenApi)]
#[openapi(components(schemas(
    AssistantConfig,
    AssistantPatch,
    AssistantResponse,
    StatusUpdate,
    ValidationErrors
)))]
struct Doc;

#[test]
fn openapi_schemas_use_the_burki_names() {
    let doc = serde_json::to_value(Doc::openapi()).expect("serialises");
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for name in [
        "AssistantConfig",
        "AssistantPatch",
        "AssistantResponse",
        "StatusUpdate",
        "LLMProviderConfig",
        "LLMSettings",
        "InterruptionSettings",
        "TTSSettings",
        "STTSettings",
        "FluxConfig",
        "ToolsSettings",
        "RAGSettings",
        "LLMFallbackSettings",
        "BackchannelGenerationSettings",
        "RecordingSettings",
    ] {
        assert!(
            schemas.contains_key(name),
            "{name} missing; have {:?}",
            schemas.keys().collect::<Vec<_>>()
        );
    }
    let required = &schemas["AssistantConfig"]["required"];
    assert_eq!(required, &serde_json::json!(["name"]));
    // The server-side secret bindings are no part of the public schema.
    assert!(!doc.to_string().contains("_secret_bindings"));
}

#[test]
fn enabled_tools_is_derived_from_the_tool_settings_on_every_path() {
    let body = serde_json::json!({"name": "t", "tools_settings": {
        "enabled_tools": ["endCall", "bogus"],
        "send_sms": {"enabled": true},
        "transfer_call": {"enabled": true},
        "custom_tools": [{}, {"name": "lookup", "url": "https://tools.example.com/l"}]
    }});
    let created = parse_create(body.clone()).expect("valid");
    // `transfer_call` has no number: it cannot run, so it is not offered.
    assert_eq!(created.tools_settings.enabled_tools, ["send_sms", "lookup"]);
    let patched = switchboard_assistant::apply_patch(
        &created,
        &serde_json::json!({"tools_settings": {"enabled_tools": ["x"], "end_call": {"enabled": true}}}),
    )
    .expect("valid");
    assert_eq!(
        patched.tools_settings.enabled_tools,
        ["end_call", "send_sms", "lookup"]
    );
    let updated = switchboard_assistant::apply_update(&created, body).expect("valid");
    assert_eq!(updated.tools_settings.enabled_tools, ["send_sms", "lookup"]);
    // A record stored with a stale list reads back derived.
    let mut stale = created.clone();
    stale.tools_settings.enabled_tools = vec!["endCall".to_owned()];
    let at = chrono::Utc::now();
    let response = AssistantResponse::new(
        1,
        2,
        3,
        at,
        at,
        stale,
        switchboard_assistant::AssistantStats::default(),
    );
    assert_eq!(
        response.config.tools_settings.enabled_tools,
        ["send_sms", "lookup"]
    );
}
