//! Secret masking, the masked round trip of PUT/PATCH, and redacted Debug output.

use chrono::Utc;
use serde_json::json;
use switchboard_assistant::{
    AssistantConfig, AssistantResponse, AssistantStats, apply_patch, apply_update, is_masked,
    is_secret_key, keep_masked_secrets, mask, mask_secrets, parse_create, validate,
};

const LLM_KEY: &str = "sk-proj-abcdefghijklmnopqrstuvwxyz";
const FALLBACK_KEY: &str = "sk-ant-0123456789abcdefghij";
const FALLBACK_KEY_2: &str = "gsk_zyxwvutsrqponmlkjihgfe";
const DG_KEY: &str = "dg-9876543210fedcba98765";
const STT_TOKEN: &str = "tok-1111222233334444";
const TTS_SECRET: &str = "xi-aaaabbbbccccdddd";
const NESTED_PASSWORD: &str = "hunter2-is-long-enough";
const SHORT: &str = "Qz9x7kP";

fn with_secrets() -> AssistantConfig {
    parse_create(json!({
        "name": "Secretive",
        "llm_provider_config": {"api_key": LLM_KEY, "custom_config": {"api_version": "2024-06-01", "client_secret": "azure-client-secret-value"}},
        "llm_fallback_providers": {"enabled": true, "fallbacks": [
            {"provider": "anthropic", "api_key": FALLBACK_KEY},
            {"provider": "groq", "api_key": FALLBACK_KEY_2}
        ]},
        "api_keys": {"deepgram_api_key": DG_KEY, "cartesia_api_key": SHORT, "unused_api_key": null},
        "stt_settings": {"provider_config": {"base_url": "wss://stt.example.com", "AuthToken": STT_TOKEN, "keywords": ["Invisalign"]}},
        "tts_settings": {"provider_config": {"region": "eu", "Secret": TTS_SECRET, "auth": {"password": NESTED_PASSWORD, "user": "bob"}}}
    }))
    .expect("valid")
}

#[test]
fn mask_format_and_length_edges() {
    assert_eq!(mask(""), "");
    assert_eq!(mask("12345678901"), "****"); // 11 chars: too short to show anything
    assert_eq!(mask("123456789012"), "123…9012"); // 12 chars: head 3, tail 4
    assert_eq!(mask("sk-abcdefghijklmnopwxyz"), "sk-…wxyz");
    assert_eq!(mask("ééééééééééééé"), "ééé…éééé"); // counts characters, not bytes
}

#[test]
fn is_masked_recognises_only_mask_shapes() {
    assert!(is_masked("****"));
    assert!(is_masked("sk-…wxyz"));
    assert!(is_masked(&mask(LLM_KEY)));
    assert!(!is_masked(LLM_KEY));
    assert!(!is_masked("sk-...wxyz"));
    assert!(!is_masked("sk…wxyz"));
    assert!(!is_masked("***"));
    assert!(!is_masked(""));
}

#[test]
fn secret_key_names() {
    for secret in [
        "api_key",
        "API_KEY",
        "xi-api-key",
        "client_secret",
        "AuthToken",
        "password",
        "access_token",
    ] {
        assert!(is_secret_key(secret), "{secret}");
    }
    for plain in ["base_url", "region", "keywords", "keyterms", "model"] {
        assert!(!is_secret_key(plain), "{plain}");
    }
}

#[test]
fn mask_secrets_masks_every_secret_location() {
    let mut config = with_secrets();
    mask_secrets(&mut config);
    let text = serde_json::to_string(&config).expect("serialises");
    for secret in [
        LLM_KEY,
        FALLBACK_KEY,
        FALLBACK_KEY_2,
        DG_KEY,
        STT_TOKEN,
        TTS_SECRET,
        NESTED_PASSWORD,
        "azure-client-secret-value",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let value = serde_json::to_value(&config).expect("serialises");
    assert_eq!(value["llm_provider_config"]["api_key"], "sk-…wxyz");
    assert_eq!(
        value["llm_fallback_providers"]["fallbacks"][0]["api_key"],
        mask(FALLBACK_KEY)
    );
    assert_eq!(value["api_keys"]["deepgram_api_key"], mask(DG_KEY));
    assert_eq!(value["api_keys"]["cartesia_api_key"], "****");
    assert!(value["api_keys"]["unused_api_key"].is_null());
    assert_eq!(
        value["stt_settings"]["provider_config"]["AuthToken"],
        mask(STT_TOKEN)
    );
    assert_eq!(
        value["tts_settings"]["provider_config"]["auth"]["password"],
        mask(NESTED_PASSWORD)
    );
    // Non-secrets stay readable.
    assert_eq!(
        value["stt_settings"]["provider_config"]["base_url"],
        "wss://stt.example.com"
    );
    assert_eq!(
        value["stt_settings"]["provider_config"]["keywords"],
        json!(["Invisalign"])
    );
    assert_eq!(
        value["tts_settings"]["provider_config"]["auth"]["user"],
        "bob"
    );
    assert_eq!(
        value["llm_provider_config"]["custom_config"]["api_version"],
        "2024-06-01"
    );
}

#[test]
fn response_constructor_masks() {
    let now = Utc::now();
    let response =
        AssistantResponse::new(1, 1, 1, now, now, with_secrets(), AssistantStats::default());
    let text = serde_json::to_string(&response).expect("serialises");
    assert!(!text.contains(LLM_KEY) && !text.contains(DG_KEY), "{text}");
    assert!(text.contains("sk-…wxyz"));
}

#[test]
fn put_of_the_masked_get_body_keeps_every_stored_secret() {
    let stored = with_secrets();
    let now = Utc::now();
    let get_body = serde_json::to_value(AssistantResponse::new(
        1,
        1,
        1,
        now,
        now,
        stored.clone(),
        AssistantStats::default(),
    ))
    .expect("serialises");
    let after = apply_update(&stored, get_body).expect("the masked GET body is a valid PUT body");
    assert_eq!(after, stored);
}

#[test]
fn patch_of_the_masked_get_body_keeps_every_stored_secret() {
    let stored = with_secrets();
    let masked = serde_json::to_value(stored.masked()).expect("serialises");
    let after = apply_patch(&stored, &masked).expect("valid");
    assert_eq!(after, stored);
}

#[test]
fn a_new_secret_replaces_the_stored_one() {
    let stored = with_secrets();
    let after = apply_patch(
        &stored,
        &json!({"llm_provider_config": {"api_key": "sk-new-key-000000000000"}, "api_keys": {"deepgram_api_key": "dg-new-key-0000000000"}}),
    )
    .expect("valid");
    assert_eq!(
        after
            .llm_provider_config
            .api_key
            .as_ref()
            .map(|k| k.expose()),
        Some("sk-new-key-000000000000")
    );
    assert_eq!(
        after
            .api_keys
            .as_ref()
            .and_then(|k| k.get("deepgram_api_key")),
        Some("dg-new-key-0000000000")
    );
    // Untouched secrets stay.
    assert_eq!(
        after
            .api_keys
            .as_ref()
            .and_then(|k| k.get("cartesia_api_key")),
        Some(SHORT)
    );
}

#[test]
fn any_mask_shape_keeps_the_stored_secret_at_that_place() {
    let stored = with_secrets();
    let after = apply_patch(
        &stored,
        &json!({"llm_provider_config": {"api_key": "****"}}),
    )
    .expect("valid");
    assert_eq!(
        after
            .llm_provider_config
            .api_key
            .as_ref()
            .map(|k| k.expose()),
        Some(LLM_KEY)
    );
}

#[test]
fn reordered_fallbacks_keep_their_own_keys() {
    let stored = with_secrets();
    let masked = stored.masked();
    let swapped = json!({"llm_fallback_providers": {"fallbacks": [
        serde_json::to_value(&masked.llm_fallback_providers.fallbacks[1]).expect("serialises"),
        serde_json::to_value(&masked.llm_fallback_providers.fallbacks[0]).expect("serialises"),
    ]}});
    let after = apply_patch(&stored, &swapped).expect("valid");
    let keys: Vec<_> = after
        .llm_fallback_providers
        .fallbacks
        .iter()
        .map(|f| f.api_key.as_ref().map(|k| k.expose()))
        .collect();
    assert_eq!(keys, [Some(FALLBACK_KEY_2), Some(FALLBACK_KEY)]);
}

#[test]
fn a_mask_with_nothing_stored_behind_it_is_rejected() {
    let err = parse_create(json!({"name": "a", "llm_provider_config": {"api_key": "sk-…wxyz"}}))
        .unwrap_err();
    assert!(err.has_field("llm_provider_config.api_key"), "{err}");
    let err =
        parse_create(json!({"name": "a", "api_keys": {"deepgram_api_key": "****"}})).unwrap_err();
    assert!(err.has_field("api_keys.deepgram_api_key"), "{err}");
    let err = parse_create(
        json!({"name": "a", "stt_settings": {"provider_config": {"auth": {"token": "abc…wxyz"}}}}),
    )
    .unwrap_err();
    assert!(
        err.has_field("stt_settings.provider_config.auth.token"),
        "{err}"
    );
    let err = parse_create(json!({"name": "a", "llm_fallback_providers": {"fallbacks": [{"provider": "groq", "api_key": "****"}]}})).unwrap_err();
    assert!(
        err.has_field("llm_fallback_providers.fallbacks[0].api_key"),
        "{err}"
    );
}

#[test]
fn keep_masked_secrets_leaves_real_values_alone() {
    let stored = with_secrets();
    let mut new = AssistantConfig::new("x");
    new.llm_provider_config.api_key = Some("sk-other-000000000000".into());
    keep_masked_secrets(&mut new, &stored);
    assert_eq!(
        new.llm_provider_config.api_key.as_ref().map(|k| k.expose()),
        Some("sk-other-000000000000")
    );
    assert_eq!(validate(&new), Ok(()));
}

#[test]
fn debug_output_never_contains_a_secret() {
    let config = with_secrets();
    let debug = format!("{config:?}");
    for secret in [
        LLM_KEY,
        FALLBACK_KEY,
        FALLBACK_KEY_2,
        DG_KEY,
        SHORT,
        STT_TOKEN,
        TTS_SECRET,
        NESTED_PASSWORD,
        "azure-client-secret-value",
    ] {
        assert!(!debug.contains(secret), "{secret} in Debug: {debug}");
    }
    assert!(debug.contains("deepgram_api_key"), "key names stay visible");
    assert!(
        debug.contains("wss://stt.example.com"),
        "non-secrets stay visible"
    );
}
