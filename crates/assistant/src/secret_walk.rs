//! Where the secrets of an assistant record are: one walk over the record that every secret rule
//! uses (masking on read, keeping a secret sent back masked, binding a secret to the host it was
//! set for, encryption at rest in the store).
//!
//! A secret is recognised by its place in the schema, not by the name a client gave it:
//! - `llm_provider_config.api_key` and every `llm_fallback_providers.fallbacks[i].api_key`;
//! - every value of `api_keys`;
//! - inside the free-form objects (`llm_provider_config.custom_config`,
//!   `stt_settings.provider_config`, `tts_settings.provider_config`, and each custom tool of
//!   `tools_settings.custom_tools` apart from its `name`, `description` and `parameters`
//!   schema): every string under a `headers` object whatever the header is called
//!   (`X-Custom-Auth`), and every string under a key whose name marks a secret
//!   ([`is_secret_key`]: `api_key`, `client_secret`, `auth.password`, …).
//!
//! The walk exists twice, over the typed record ([`visit_secrets_mut`]) and over its JSON form
//! ([`visit_stored_secrets`], for the store, which holds JSON); both call the same free-form
//! rules and a test checks that they find the same places.

use serde_json::{Map, Value};

use crate::AssistantConfig;

/// Custom-tool fields that describe the tool to the LLM and never hold a secret: the JSON schema
/// in `parameters` may well name a property `token` or `password`.
const TOOL_DESCRIPTION_FIELDS: [&str; 3] = ["name", "description", "parameters"];

/// Where a secret is sent during a call: the connection whose host the secret is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretUse {
    /// The primary LLM (`llm_provider_config`).
    Llm,
    /// The fallback LLM at this index of `llm_fallback_providers.fallbacks`.
    Fallback(usize),
    /// The STT provider (`stt_settings.provider_config`).
    Stt,
    /// The TTS provider (`tts_settings.provider_config`).
    Tts,
    /// `api_keys.<provider>_api_key`: every stage that runs this provider.
    ProviderKey(String),
    /// The custom tool at this index of `tools_settings.custom_tools` (its `url`).
    Tool(usize),
}

/// The provider an `api_keys` entry is for: `deepgram_api_key` and `deepgram_key` → `deepgram`.
pub fn provider_of_key_name(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    lower
        .strip_suffix("_api_key")
        .or_else(|| lower.strip_suffix("_key"))
        .unwrap_or(&lower)
        .to_owned()
}

/// Whether a key inside a free-form object names a secret: its name contains `key`, `secret`,
/// `token` or `password` (case-insensitive). Names containing `keyword` or `keyterm` are
/// vocabulary lists, not secrets, and are left alone.
pub fn is_secret_key(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    if lower.contains("keyword") || lower.contains("keyterm") {
        return false;
    }
    ["key", "secret", "token", "password"]
        .iter()
        .any(|needle| lower.contains(needle))
}

/// Whether a key inside a free-form object holds HTTP headers: every value below it is a
/// secret, whatever the header is called.
pub fn is_headers_key(name: &str) -> bool {
    name.eq_ignore_ascii_case("headers")
}

/// Whether the value under `key` is secret, given whether its parent already is.
fn child_is_secret(parent_secret: bool, key: &str) -> bool {
    parent_secret || is_secret_key(key) || is_headers_key(key)
}

/// Calls `f(path, use, value)` for every secret string of `config` (see the module docs), with
/// the field path as validation errors name it (`api_keys.deepgram_api_key`,
/// `tools_settings.custom_tools[0].headers.X-Custom-Auth`).
pub(crate) fn visit_secrets_mut(
    config: &mut AssistantConfig,
    f: &mut dyn FnMut(&str, &SecretUse, &mut String),
) {
    let llm = &mut config.llm_provider_config;
    if let Some(key) = llm.api_key.as_mut() {
        f(
            "llm_provider_config.api_key",
            &SecretUse::Llm,
            key.inner_mut(),
        );
    }
    if let Some(custom) = llm.custom_config.as_mut() {
        walk_object(
            &mut custom.0,
            "llm_provider_config.custom_config",
            false,
            &SecretUse::Llm,
            f,
        );
    }
    for (i, fallback) in config
        .llm_fallback_providers
        .fallbacks
        .iter_mut()
        .enumerate()
    {
        if let Some(key) = fallback.api_key.as_mut() {
            f(
                &format!("llm_fallback_providers.fallbacks[{i}].api_key"),
                &SecretUse::Fallback(i),
                key.inner_mut(),
            );
        }
    }
    if let Some(keys) = config.api_keys.as_mut() {
        for (name, value) in keys.0.iter_mut() {
            if let Some(value) = value.as_mut() {
                let used = SecretUse::ProviderKey(provider_of_key_name(name));
                f(&format!("api_keys.{name}"), &used, value);
            }
        }
    }
    if let Some(pc) = config.stt_settings.provider_config.as_mut() {
        walk_object(
            &mut pc.0,
            "stt_settings.provider_config",
            false,
            &SecretUse::Stt,
            f,
        );
    }
    if let Some(pc) = config.tts_settings.provider_config.as_mut() {
        walk_object(
            &mut pc.0,
            "tts_settings.provider_config",
            false,
            &SecretUse::Tts,
            f,
        );
    }
    for (i, tool) in config.tools_settings.custom_tools.iter_mut().enumerate() {
        walk_tool(tool, i, f);
    }
}

/// The secrets of `config` as `(path, use, value)`, in walk order.
pub(crate) fn secret_values(config: &AssistantConfig) -> Vec<(String, SecretUse, String)> {
    let mut copy = config.clone();
    let mut out = Vec::new();
    visit_secrets_mut(&mut copy, &mut |path, used, value| {
        out.push((path.to_owned(), used.clone(), std::mem::take(value)));
    });
    out
}

/// The same walk as [`visit_secrets_mut`] over the JSON form of a record (as the store holds
/// it): calls `f(path, value)` for every secret string. Works on any JSON: places that are
/// missing or of another type are skipped, so a partial or legacy document is walked as far
/// as it goes.
pub fn visit_stored_secrets(record: &mut Value, f: &mut dyn FnMut(&str, &mut String)) {
    let mut g = |path: &str, _: &SecretUse, value: &mut String| f(path, value);
    let Some(root) = record.as_object_mut() else {
        return;
    };
    if let Some(llm) = root
        .get_mut("llm_provider_config")
        .and_then(Value::as_object_mut)
    {
        if let Some(Value::String(key)) = llm.get_mut("api_key") {
            g("llm_provider_config.api_key", &SecretUse::Llm, key);
        }
        if let Some(custom) = llm.get_mut("custom_config").and_then(Value::as_object_mut) {
            walk_object(
                custom,
                "llm_provider_config.custom_config",
                false,
                &SecretUse::Llm,
                &mut g,
            );
        }
    }
    if let Some(fallbacks) = root
        .get_mut("llm_fallback_providers")
        .and_then(|v| v.get_mut("fallbacks"))
        .and_then(Value::as_array_mut)
    {
        for (i, fallback) in fallbacks.iter_mut().enumerate() {
            if let Some(Value::String(key)) = fallback.get_mut("api_key") {
                g(
                    &format!("llm_fallback_providers.fallbacks[{i}].api_key"),
                    &SecretUse::Fallback(i),
                    key,
                );
            }
        }
    }
    if let Some(keys) = root.get_mut("api_keys").and_then(Value::as_object_mut) {
        for (name, value) in keys.iter_mut() {
            if let Value::String(value) = value {
                let used = SecretUse::ProviderKey(provider_of_key_name(name));
                g(&format!("api_keys.{name}"), &used, value);
            }
        }
    }
    for (section, used) in [
        ("stt_settings", SecretUse::Stt),
        ("tts_settings", SecretUse::Tts),
    ] {
        if let Some(pc) = root
            .get_mut(section)
            .and_then(|s| s.get_mut("provider_config"))
            .and_then(Value::as_object_mut)
        {
            walk_object(
                pc,
                &format!("{section}.provider_config"),
                false,
                &used,
                &mut g,
            );
        }
    }
    if let Some(tools) = root
        .get_mut("tools_settings")
        .and_then(|t| t.get_mut("custom_tools"))
        .and_then(Value::as_array_mut)
    {
        for (i, tool) in tools.iter_mut().enumerate() {
            if let Some(tool) = tool.as_object_mut() {
                walk_tool(tool, i, &mut g);
            }
        }
    }
}

/// Calls `f(path, value)` for every secret of an organisation's provider keys
/// (`PUT /api/v1/organization/provider-keys`): a string member is a key (`openai_api_key`); in a
/// provider object (`"azure": {"api_key": …, "base_url": …}`) the free-form rules apply.
pub fn visit_provider_key_secrets(
    keys: &mut Map<String, Value>,
    f: &mut dyn FnMut(&str, &mut String),
) {
    let mut g = |path: &str, _: &SecretUse, value: &mut String| f(path, value);
    for (name, value) in keys.iter_mut() {
        let used = SecretUse::ProviderKey(provider_of_key_name(name));
        match value {
            Value::String(key) => g(name, &used, key),
            other => walk_value(other, name, false, &used, &mut g),
        }
    }
}

/// One custom tool: every field but its description to the LLM follows the free-form rules.
fn walk_tool(
    tool: &mut Map<String, Value>,
    index: usize,
    f: &mut dyn FnMut(&str, &SecretUse, &mut String),
) {
    let used = SecretUse::Tool(index);
    let prefix = format!("tools_settings.custom_tools[{index}]");
    for (key, value) in tool.iter_mut() {
        if TOOL_DESCRIPTION_FIELDS.contains(&key.as_str()) {
            continue;
        }
        walk_value(
            value,
            &format!("{prefix}.{key}"),
            child_is_secret(false, key),
            &used,
            f,
        );
    }
}

/// Walks the members of a free-form object.
pub(crate) fn walk_object(
    map: &mut Map<String, Value>,
    prefix: &str,
    in_secret: bool,
    used: &SecretUse,
    f: &mut dyn FnMut(&str, &SecretUse, &mut String),
) {
    for (key, value) in map.iter_mut() {
        walk_value(
            value,
            &format!("{prefix}.{key}"),
            child_is_secret(in_secret, key),
            used,
            f,
        );
    }
}

/// Walks a free-form value: strings under a secret place are secrets; objects and arrays are
/// walked (arrays by index, `path[i]`).
fn walk_value(
    value: &mut Value,
    path: &str,
    in_secret: bool,
    used: &SecretUse,
    f: &mut dyn FnMut(&str, &SecretUse, &mut String),
) {
    match value {
        Value::String(s) if in_secret => f(path, used, s),
        Value::Object(map) => walk_object(map, path, in_secret, used, f),
        Value::Array(items) => {
            for (i, inner) in items.iter_mut().enumerate() {
                walk_value(inner, &format!("{path}[{i}]"), in_secret, used, f);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record() -> AssistantConfig {
        crate::parse_create(json!({
            "name": "walk",
            "llm_provider_config": {"api_key": "sk-aaaaaaaaaaaaaaaa", "custom_config": {"client_secret": "cs-aaaaaaaaaaaa", "api_version": "v1"}},
            "llm_fallback_providers": {"enabled": true, "fallbacks": [{"provider": "groq", "api_key": "gsk-aaaaaaaaaaaa"}]},
            "api_keys": {"deepgram_api_key": "dg-aaaaaaaaaaaa", "none_api_key": null},
            "stt_settings": {"provider_config": {"headers": {"X-Custom-Auth": "xc-aaaaaaaaaaaa"}, "region": "eu"}},
            "tts_settings": {"provider_config": {"auth": {"password": "pw-aaaaaaaaaaaa", "user": "u"}}},
            "tools_settings": {"custom_tools": [{"name": "t", "url": "https://tools.example.com/x",
                "parameters": {"type": "object", "properties": {"token": {"type": "string"}}},
                "headers": {"X-Odd": "od-aaaaaaaaaaaa"}, "bearer_token": "bt-aaaaaaaaaaaa"}]}
        }))
        .expect("valid")
    }

    #[test]
    fn typed_and_json_walks_find_the_same_secrets() {
        let config = record();
        let typed: Vec<(String, String)> = secret_values(&config)
            .into_iter()
            .map(|(p, _, v)| (p, v))
            .collect();
        let mut json = serde_json::to_value(&config).expect("json");
        let mut stored = Vec::new();
        visit_stored_secrets(&mut json, &mut |p, v| {
            stored.push((p.to_owned(), v.clone()))
        });
        let mut a = typed.clone();
        let mut b = stored;
        a.sort();
        b.sort();
        assert_eq!(a, b);
        let paths: Vec<&str> = typed.iter().map(|(p, _)| p.as_str()).collect();
        for expected in [
            "llm_provider_config.api_key",
            "llm_provider_config.custom_config.client_secret",
            "llm_fallback_providers.fallbacks[0].api_key",
            "api_keys.deepgram_api_key",
            "stt_settings.provider_config.headers.X-Custom-Auth",
            "tts_settings.provider_config.auth.password",
            "tools_settings.custom_tools[0].headers.X-Odd",
            "tools_settings.custom_tools[0].bearer_token",
        ] {
            assert!(paths.contains(&expected), "{expected} not in {paths:?}");
        }
        assert_eq!(paths.len(), 8, "{paths:?}");
    }

    #[test]
    fn key_names_map_to_providers() {
        assert_eq!(provider_of_key_name("deepgram_api_key"), "deepgram");
        assert_eq!(provider_of_key_name("OPENAI_KEY"), "openai");
        assert_eq!(provider_of_key_name("odd"), "odd");
    }
}
