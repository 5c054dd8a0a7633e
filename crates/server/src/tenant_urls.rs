//! Every URL a tenant sets in an assistant record, held to the outbound policy when the record
//! is saved: a URL that could reach inside our network is refused with a 422 naming its field,
//! before it is stored. (Connections are checked again when they are made, on the resolved
//! addresses: see `switchboard_netguard`.)

use serde_json::Value;
use switchboard_assistant::{AssistantConfig, FieldError, ValidationErrors};
use switchboard_netguard::OutboundPolicy;

/// A URL of the record, with the path of its field.
struct TenantUrl<'a> {
    field: String,
    url: &'a str,
    /// Only http/https make sense (the engine POSTs to it); provider base URLs may be ws(s).
    http_only: bool,
}

/// The URLs found so far; blank ones mean "not set" and are skipped.
#[derive(Default)]
struct Found<'a>(Vec<TenantUrl<'a>>);

impl<'a> Found<'a> {
    fn add(&mut self, field: String, url: &'a str, http_only: bool) {
        if !url.trim().is_empty() {
            self.0.push(TenantUrl {
                field,
                url,
                http_only,
            });
        }
    }
}

/// The URLs of `a` the engine may contact, with their field paths, plus the rules broken by
/// fields that should hold a URL but do not hold a string.
fn urls_of(a: &AssistantConfig) -> (Vec<TenantUrl<'_>>, Vec<FieldError>) {
    let mut found = Found::default();
    let mut broken = Vec::new();
    if let Some(url) = &a.webhook_url {
        found.add("webhook_url".into(), url, true);
    }
    if let Some(url) = &a.sms_webhook_url {
        found.add("sms_webhook_url".into(), url, true);
    }
    let llm = &a.llm_provider_config;
    if let Some(url) = &llm.base_url {
        found.add("llm_provider_config.base_url".into(), url, false);
    }
    if let Some(url) = llm
        .custom_config
        .as_ref()
        .and_then(|c| c.get_str("base_url"))
    {
        found.add(
            "llm_provider_config.custom_config.base_url".into(),
            url,
            false,
        );
    }
    for (i, f) in a.llm_fallback_providers.fallbacks.iter().enumerate() {
        if let Some(url) = &f.base_url {
            found.add(
                format!("llm_fallback_providers.fallbacks[{i}].base_url"),
                url,
                false,
            );
        }
    }
    let stt = a.stt_settings.provider_config.as_ref();
    if let Some(url) = stt.and_then(|c| c.get_str("base_url")) {
        found.add("stt_settings.provider_config.base_url".into(), url, false);
    }
    let tts = &a.tts_settings;
    if let Some(url) = tts
        .provider_config
        .as_ref()
        .and_then(|c| c.get_str("base_url"))
    {
        found.add("tts_settings.provider_config.base_url".into(), url, false);
    }
    if let Some(url) = &tts.background_sound.sound_url {
        found.add("tts_settings.background_sound.sound_url".into(), url, true);
    }
    for (i, tool) in a.tools_settings.custom_tools.iter().enumerate() {
        let field = format!("tools_settings.custom_tools[{i}].url");
        match tool.get("url") {
            None | Some(Value::Null) => {}
            Some(Value::String(url)) => found.add(field, url, true),
            Some(_) => broken.push(FieldError::new(field, "must be a string")),
        }
    }
    (found.0, broken)
}

/// Checks every URL of `a` against `policy`; each refusal names its field and says which
/// address or name is not allowed.
pub fn check(policy: &OutboundPolicy, a: &AssistantConfig) -> Result<(), ValidationErrors> {
    let (urls, mut errors) = urls_of(a);
    for u in urls {
        match policy.check_url_str(u.url) {
            Ok(parsed) if u.http_only && !matches!(parsed.scheme(), "http" | "https") => {
                errors.push(FieldError::new(
                    u.field,
                    "must be an absolute URL with scheme http or https",
                ));
            }
            Ok(_) => {}
            Err(refused) => errors.push(FieldError::new(u.field, refused.to_string())),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors { errors })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(json: serde_json::Value) -> AssistantConfig {
        switchboard_assistant::parse_create(json).expect("record parses")
    }

    #[test]
    fn every_url_field_is_checked_and_named() {
        let a = record(serde_json::json!({
            "name": "x",
            "webhook_url": "http://127.0.0.1:9/hook",
            "llm_provider_config": {"base_url": "http://10.0.0.1/v1"},
            "llm_fallback_providers": {"enabled": true, "fallbacks": [
                {"provider": "anthropic", "base_url": "http://[::ffff:169.254.169.254]/"}
            ]},
            "stt_settings": {"provider_config": {"base_url": "ws://localhost:1"}},
            "tts_settings": {"provider_config": {"base_url": "wss://192.168.0.2"}},
            "tools_settings": {"custom_tools": [
                {"name": "lookup", "url": "http://100.64.0.1/"}
            ]}
        }));
        let err = check(&OutboundPolicy::default(), &a).expect_err("refused");
        let fields: Vec<&str> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "webhook_url",
                "llm_provider_config.base_url",
                "llm_fallback_providers.fallbacks[0].base_url",
                "stt_settings.provider_config.base_url",
                "tts_settings.provider_config.base_url",
                "tools_settings.custom_tools[0].url",
            ]
        );
        assert!(err.errors[0].rule.contains("not allowed"), "{err}");
    }

    #[test]
    fn public_urls_and_allowlisted_ones_pass() {
        let a = record(serde_json::json!({
            "name": "x",
            "webhook_url": "https://hooks.example.com/in",
            "llm_provider_config": {"base_url": "http://127.0.0.1:8000/v1"},
            "tools_settings": {"custom_tools": [{"name": "t", "url": "https://api.example.com/t"}]}
        }));
        assert!(check(&OutboundPolicy::default(), &a).is_err());
        let allow = OutboundPolicy::new("127.0.0.1".parse().expect("allowlist"));
        check(&allow, &a).expect("allowed");
    }
}
