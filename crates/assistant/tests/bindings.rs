//! A stored secret is bound to the hosts it was set for: a write that keeps a secret while
//! changing where it goes is refused; sending the key again binds it to the new host.

use serde_json::{Value, json};
use switchboard_assistant::{
    AssistantConfig, RESEND_RULE, apply_patch, apply_update, deserialize_config,
    effective_bindings, mask_secrets, parse_create,
};

const DG_KEY: &str = "dg-0123456789abcdef0123";
const LLM_KEY: &str = "sk-proj-0123456789abcdef";
const TOOL_SECRET: &str = "tool-secret-0123456789";

fn stored() -> AssistantConfig {
    parse_create(json!({
        "name": "bound",
        "llm_provider_config": {"api_key": LLM_KEY},
        "api_keys": {"deepgram_api_key": DG_KEY},
        "stt_settings": {"provider_config": {"base_url": "wss://stt-a.example.com", "api_key": "stt-own-key-0123456789"}},
        "tools_settings": {"custom_tools": [{"name": "lookup", "url": "https://tools-a.example.com/lookup",
            "headers": {"X-Custom-Auth": TOOL_SECRET}}]}
    }))
    .expect("valid")
}

fn masked_body(config: &AssistantConfig) -> Value {
    let mut copy = config.clone();
    mask_secrets(&mut copy);
    serde_json::to_value(copy).expect("json")
}

#[track_caller]
fn refused_at(
    result: Result<AssistantConfig, switchboard_assistant::ValidationErrors>,
    field: &str,
) {
    let err = result.expect_err("must be refused");
    let hit = err
        .errors
        .iter()
        .find(|e| e.field == field)
        .unwrap_or_else(|| panic!("no error at {field}: {err}"));
    assert!(hit.rule.starts_with(RESEND_RULE), "{hit:?}");
}

#[test]
fn a_new_record_binds_each_secret_to_the_host_it_goes_to() {
    let b = effective_bindings(&stored());
    assert!(b.allows("api_keys.deepgram_api_key", "stt-a.example.com:443"));
    assert!(!b.allows("api_keys.deepgram_api_key", "api.deepgram.com:443"));
    assert!(b.allows("llm_provider_config.api_key", "api.openai.com:443"));
    assert!(b.allows(
        "stt_settings.provider_config.api_key",
        "stt-a.example.com:443"
    ));
    assert!(b.allows(
        "tools_settings.custom_tools[0].headers.X-Custom-Auth",
        "tools-a.example.com:443"
    ));
}

#[test]
fn patching_the_base_url_while_keeping_the_key_is_refused() {
    let s = stored();
    let patch =
        json!({"stt_settings": {"provider_config": {"base_url": "wss://attacker.example.net"}}});
    let err = apply_patch(&s, &patch).expect_err("refused");
    assert!(err.has_field("api_keys.deepgram_api_key"), "{err}");
    assert!(
        err.has_field("stt_settings.provider_config.api_key"),
        "{err}"
    );
    assert!(
        err.to_string().contains("attacker.example.net:443"),
        "{err}"
    );
    // Sent back masked: same answer.
    let masked = masked_body(&s);
    let patch = json!({"api_keys": masked["api_keys"],
        "stt_settings": {"provider_config": {"base_url": "wss://attacker.example.net", "api_key": "****"}}});
    refused_at(apply_patch(&s, &patch), "api_keys.deepgram_api_key");
}

#[test]
fn sending_the_keys_again_binds_them_to_the_new_host() {
    let s = stored();
    let patch = json!({
        "api_keys": {"deepgram_api_key": "dg-new-key-for-new-host-01"},
        "stt_settings": {"provider_config": {"base_url": "wss://stt-b.example.com", "api_key": "stt-own-key-0123456789"}}
    });
    let next = apply_patch(&s, &patch).expect("keys sent again");
    let b = effective_bindings(&next);
    assert!(b.allows("api_keys.deepgram_api_key", "stt-b.example.com:443"));
    assert!(!b.allows("api_keys.deepgram_api_key", "stt-a.example.com:443"));
    // Untouched secrets keep their binding.
    assert!(b.allows("llm_provider_config.api_key", "api.openai.com:443"));
}

#[test]
fn a_put_of_the_masked_body_with_a_new_base_url_is_refused() {
    let s = stored();
    let mut body = masked_body(&s);
    body["stt_settings"]["provider_config"]["base_url"] = json!("ws://127.0.0.1:9");
    refused_at(apply_update(&s, body.clone()), "api_keys.deepgram_api_key");
    // Unchanged URL: the masked body round-trips with every binding.
    let same = apply_update(&s, masked_body(&s)).expect("round trip");
    assert_eq!(same, s);
}

#[test]
fn switching_the_llm_provider_while_keeping_its_key_is_refused() {
    let s = stored();
    refused_at(
        apply_patch(&s, &json!({"llm_provider": "groq"})),
        "llm_provider_config.api_key",
    );
    refused_at(
        apply_patch(
            &s,
            &json!({"llm_provider_config": {"base_url": "https://proxy.example.org/v1"}}),
        ),
        "llm_provider_config.api_key",
    );
    // A new key with the new provider is fine.
    apply_patch(
        &s,
        &json!({"llm_provider": "groq", "llm_provider_config": {"api_key": "gsk-0123456789abcdef"}}),
    )
    .expect("key sent with the change");
}

#[test]
fn a_tool_header_follows_its_tool_url() {
    let s = stored();
    let masked = masked_body(&s);
    let mut tools = masked["tools_settings"]["custom_tools"].clone();
    tools[0]["url"] = json!("https://elsewhere.example.com/lookup");
    refused_at(
        apply_patch(&s, &json!({"tools_settings": {"custom_tools": tools}})),
        "tools_settings.custom_tools[0].headers.X-Custom-Auth",
    );
}

#[test]
fn other_changes_keep_every_binding() {
    let s = stored();
    let next = apply_patch(
        &s,
        &json!({"name": "renamed", "llm_settings": {"temperature": 1.0}}),
    )
    .expect("valid");
    assert_eq!(next.secret_bindings, s.secret_bindings);
}

#[test]
fn reordered_fallbacks_keep_their_bindings() {
    let s = parse_create(json!({"name": "f", "llm_fallback_providers": {"enabled": true, "fallbacks": [
        {"provider": "anthropic", "api_key": "sk-ant-0123456789abcdef"},
        {"provider": "groq", "api_key": "gsk-0123456789abcdefgh", "base_url": "https://groq-proxy.example.com"}
    ]}}))
    .expect("valid");
    let masked = masked_body(&s);
    let f = &masked["llm_fallback_providers"]["fallbacks"];
    let swapped = json!({"llm_fallback_providers": {"fallbacks": [f[1].clone(), f[0].clone()]}});
    let next = apply_patch(&s, &swapped).expect("moved, not re-pointed");
    let b = effective_bindings(&next);
    assert!(b.allows(
        "llm_fallback_providers.fallbacks[0].api_key",
        "groq-proxy.example.com:443"
    ));
    assert!(b.allows(
        "llm_fallback_providers.fallbacks[1].api_key",
        "api.anthropic.com:443"
    ));
}

#[test]
fn a_record_stored_before_bindings_is_bound_to_its_current_hosts() {
    let mut legacy = stored();
    legacy.secret_bindings = None;
    let b = effective_bindings(&legacy);
    assert!(b.allows("api_keys.deepgram_api_key", "stt-a.example.com:443"));
    let patch =
        json!({"stt_settings": {"provider_config": {"base_url": "wss://attacker.example.net"}}});
    refused_at(apply_patch(&legacy, &patch), "api_keys.deepgram_api_key");
}

#[test]
fn bindings_are_stored_but_never_serialised_nor_accepted() {
    let s = stored();
    let plain = serde_json::to_value(&s).expect("json");
    assert!(plain.get("_secret_bindings").is_none(), "{plain}");
    let stored_json = s.to_stored_json().expect("json");
    assert!(stored_json.get("_secret_bindings").is_some());
    let back = deserialize_config(stored_json.clone()).expect("stored form reads back");
    assert_eq!(back, s);
    // A client cannot forge a binding.
    let err = parse_create(json!({"name": "x", "_secret_bindings": {}})).unwrap_err();
    assert!(err.has_field("_secret_bindings"), "{err}");
    let err = apply_patch(
        &s,
        &json!({"_secret_bindings": {"api_keys.deepgram_api_key": ["evil:443"]}}),
    )
    .unwrap_err();
    assert!(err.has_field("_secret_bindings"), "{err}");
    // Nor learn its name from an unknown-field error.
    let err = parse_create(json!({"name": "x", "nmae": 1})).unwrap_err();
    assert!(!err.to_string().contains("_secret_bindings"), "{err}");
}

#[test]
fn unusual_header_names_are_masked_and_kept() {
    let s = parse_create(json!({"name": "h",
        "stt_settings": {"provider_config": {"headers": {"X-Custom-Auth": "hdr-secret-0123456789"}}},
        "tools_settings": {"custom_tools": [{"name": "t", "url": "https://t.example.com",
            "headers": {"X-Tenant-Signature": "sig-0123456789abcdef"},
            "parameters": {"type": "object", "properties": {"token": {"type": "string"}}}}]}}))
    .expect("valid");
    let masked = masked_body(&s);
    let text = masked.to_string();
    assert!(!text.contains("hdr-secret-0123456789"), "{text}");
    assert!(!text.contains("sig-0123456789abcdef"), "{text}");
    assert_eq!(
        masked["tools_settings"]["custom_tools"][0]["parameters"]["properties"]["token"]["type"],
        "string",
        "the tool's parameter schema is not a secret"
    );
    let back = apply_update(&s, masked).expect("masked body round-trips");
    assert_eq!(back, s);
}

#[test]
fn a_key_no_stage_uses_any_more_does_not_block_a_change() {
    // The live Flux/Aura switch: TTS moves from ElevenLabs to Deepgram on the STT's host.
    let s = parse_create(json!({"name": "switch",
        "api_keys": {"deepgram_api_key": DG_KEY, "elevenlabs_api_key": "el-0123456789abcdef"},
        "stt_settings": {"provider_config": {"base_url": "ws://127.0.0.1:7001"}},
        "tts_settings": {"provider_config": {"base_url": "ws://127.0.0.1:7002"}}}))
    .expect("valid");
    let next = apply_patch(
        &s,
        &json!({"tts_settings": {"provider": "deepgram", "voice_id": "aura-2-thalia-en",
            "provider_config": {"base_url": "ws://127.0.0.1:7001"}}}),
    )
    .expect("the ElevenLabs key is simply unused now");
    let b = effective_bindings(&next);
    assert!(b.allows("api_keys.elevenlabs_api_key", "127.0.0.1:7002"));
    // Moving TTS back elsewhere with the kept ElevenLabs key is refused.
    refused_at(
        apply_patch(
            &next,
            &json!({"tts_settings": {"provider": "elevenlabs", "voice_id": "rachel",
                "provider_config": {"base_url": "ws://127.0.0.1:7003"}}}),
        ),
        "api_keys.elevenlabs_api_key",
    );
    // A key for a provider no stage uses yet is meant for its public host.
    let c =
        parse_create(json!({"name": "c", "api_keys": {"cartesia_api_key": "ca-0123456789abcdef"}}))
            .expect("valid");
    assert!(effective_bindings(&c).allows("api_keys.cartesia_api_key", "api.cartesia.ai:443"));
}
