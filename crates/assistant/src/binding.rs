//! A stored secret is bound to the hosts it was set for.
//!
//! Masking a key on read would be cosmetic if the key followed any new host: a client that can
//! change `stt_settings.provider_config.base_url` but not read the key could point the base URL
//! at a server of its own and receive the key on the next call. So each secret of a record
//! remembers the hosts (`host:port`) it is sent to at the moment it is written in clear: the
//! host of the relevant base URL, or the provider's public host when there is none (see
//! [`default_provider_host`]).
//!
//! The contract, enforced at write time ([`crate::apply_update`], [`crate::apply_patch`]): a
//! write that keeps a secret (sent back masked, or absent from a PATCH) while changing where the
//! record sends it is refused with a 422 naming the secret's field, `the key must be sent again
//! when base_url changes`. Sending the key again in clear binds it to the new host. The call
//! runtime checks the same bindings before it sends any key (see the server's `call::resolve`),
//! so a record changed by any other path still cannot send a key elsewhere.
//!
//! The bindings travel with the stored record as its `_secret_bindings` member, which is never
//! part of a request or a response (see [`AssistantConfig::to_stored_json`]). A record stored
//! before bindings existed is bound to the hosts it sends its secrets to when it is first read.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::AssistantConfig;
use crate::secret_walk::{SecretUse, secret_values, visit_stored_secrets};
use crate::validate::{FieldError, ValidationErrors};

/// Name of the stored record's member that holds its [`SecretBindings`].
pub const SECRET_BINDINGS_FIELD: &str = "_secret_bindings";

/// The rule of the 422 a write gets when it keeps a secret but changes where it goes.
pub const RESEND_RULE: &str = "the key must be sent again when base_url changes";

/// For each secret of a record (by field path, e.g. `api_keys.deepgram_api_key`), the hosts
/// (`host:port`, lower case) it may be sent to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretBindings(pub BTreeMap<String, BTreeSet<String>>);

impl SecretBindings {
    /// Whether the secret at `path` may be sent to `host`.
    pub fn allows(&self, path: &str, host: &str) -> bool {
        self.0.get(path).is_some_and(|hosts| hosts.contains(host))
    }

    /// `None` when there is no secret to bind: a record without secrets stores no bindings, so
    /// that it equals the same record built in code.
    pub fn non_empty(self) -> Option<Self> {
        (!self.0.is_empty()).then_some(self)
    }

    /// The hosts the secret at `path` is bound to (empty when it has no binding).
    pub fn hosts(&self, path: &str) -> BTreeSet<String> {
        self.0.get(path).cloned().unwrap_or_default()
    }
}

/// The public API host (`host:port`) of a provider, where its key goes when no base URL is set.
/// `None` for providers that have no single public host (Azure, custom OpenAI-compatible
/// servers) or that this engine does not connect to.
pub fn default_provider_host(provider: &str) -> Option<&'static str> {
    Some(match provider.to_ascii_lowercase().as_str() {
        "openai" => "api.openai.com:443",
        "anthropic" => "api.anthropic.com:443",
        "gemini" => "generativelanguage.googleapis.com:443",
        "xai" => "api.x.ai:443",
        "groq" => "api.groq.com:443",
        "deepgram" => "api.deepgram.com:443",
        "elevenlabs" => "api.elevenlabs.io:443",
        "cartesia" => "api.cartesia.ai:443",
        "telnyx" => "api.telnyx.com:443",
        _ => return None,
    })
}

/// `host:port` of a URL (lower-case host, the scheme's default port when none is written:
/// 80 for http/ws, 443 for https/wss); `None` when it does not parse or has no host.
pub fn host_of_url(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url.trim()).ok()?;
    let host = parsed.host_str().filter(|h| !h.is_empty())?;
    let port = parsed.port_or_known_default()?;
    Some(format!("{}:{port}", host.to_ascii_lowercase()))
}

/// Where a provider connection goes: the host of `base_url` when one is set (non-empty), else the
/// provider's public host. A provider without a public host gives `default:<provider>`, and a
/// base URL that does not parse gives `invalid:<url>`: neither matches any real host, so no key
/// is ever bound to where such a connection would go.
pub fn endpoint_host(provider: &str, base_url: Option<&str>) -> String {
    match base_url.map(str::trim).filter(|b| !b.is_empty()) {
        Some(url) => host_of_url(url).unwrap_or_else(|| format!("invalid:{url}")),
        None => default_provider_host(provider)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("default:{}", provider.to_ascii_lowercase())),
    }
}

/// Where the primary LLM connects (`llm_provider_config.base_url` or the provider's host).
pub fn llm_host(config: &AssistantConfig) -> String {
    endpoint_host(
        config.llm_provider_name(),
        config.llm_provider_config.base_url.as_deref(),
    )
}

/// Where fallback `index` connects; `None` when there is no such fallback.
pub fn fallback_host(config: &AssistantConfig, index: usize) -> Option<String> {
    let f = config.llm_fallback_providers.fallbacks.get(index)?;
    Some(endpoint_host(&f.provider, f.base_url.as_deref()))
}

/// The STT provider in effect (`stt_settings.provider`, `null` meaning `deepgram`).
pub fn stt_provider_name(config: &AssistantConfig) -> &str {
    config
        .stt_settings
        .provider
        .as_deref()
        .unwrap_or("deepgram")
}

/// Where the STT session connects (`stt_settings.provider_config.base_url` or the provider's
/// host).
pub fn stt_host(config: &AssistantConfig) -> String {
    let base = config
        .stt_settings
        .provider_config
        .as_ref()
        .and_then(|p| p.get_str("base_url"));
    endpoint_host(stt_provider_name(config), base)
}

/// Where the TTS session connects (`tts_settings.provider_config.base_url` or the provider's
/// host).
pub fn tts_host(config: &AssistantConfig) -> String {
    let base = config
        .tts_settings
        .provider_config
        .as_ref()
        .and_then(|p| p.get_str("base_url"));
    endpoint_host(&config.tts_settings.provider, base)
}

/// Where custom tool `index` is called: the hosts of its `url` (and `endpoint`) fields.
pub fn tool_hosts(config: &AssistantConfig, index: usize) -> BTreeSet<String> {
    let Some(tool) = config.tools_settings.custom_tools.get(index) else {
        return BTreeSet::new();
    };
    ["url", "endpoint"]
        .iter()
        .filter_map(|field| tool.get(*field).and_then(Value::as_str))
        .map(|url| host_of_url(url).unwrap_or_else(|| format!("invalid:{url}")))
        .collect()
}

fn own_key_is_empty(key: Option<&crate::Secret>) -> bool {
    key.is_none_or(|k| k.expose().is_empty())
}

/// The hosts a secret used as `used` is sent to by `config`. An `api_keys` entry goes to every
/// stage that would take it (STT and TTS of that provider; the primary LLM and fallbacks of that
/// provider that have no key of their own), and nowhere when no stage uses it.
pub fn hosts_of_use(config: &AssistantConfig, used: &SecretUse) -> BTreeSet<String> {
    match used {
        SecretUse::Llm => BTreeSet::from([llm_host(config)]),
        SecretUse::Fallback(i) => fallback_host(config, *i).into_iter().collect(),
        SecretUse::Stt => BTreeSet::from([stt_host(config)]),
        SecretUse::Tts => BTreeSet::from([tts_host(config)]),
        SecretUse::Tool(i) => tool_hosts(config, *i),
        SecretUse::ProviderKey(provider) => {
            let mut hosts = BTreeSet::new();
            if stt_provider_name(config) == provider {
                hosts.insert(stt_host(config));
            }
            if config.tts_settings.provider == *provider {
                hosts.insert(tts_host(config));
            }
            if config.llm_provider_name() == provider
                && own_key_is_empty(config.llm_provider_config.api_key.as_ref())
            {
                hosts.insert(llm_host(config));
            }
            for (i, f) in config.llm_fallback_providers.fallbacks.iter().enumerate() {
                if f.provider == *provider && own_key_is_empty(f.api_key.as_ref()) {
                    hosts.extend(fallback_host(config, i));
                }
            }
            hosts
        }
    }
}

/// The binding a secret gets when it is written in clear: the hosts `config` sends it to; for an
/// `api_keys` entry no stage uses yet, the provider's public host (where such a key is meant to
/// go).
pub fn fresh_binding(config: &AssistantConfig, used: &SecretUse) -> BTreeSet<String> {
    let hosts = hosts_of_use(config, used);
    match used {
        SecretUse::ProviderKey(provider) if hosts.is_empty() => {
            BTreeSet::from([endpoint_host(provider, None)])
        }
        _ => hosts,
    }
}

/// The bindings each secret of `config` would get if it were written in clear now (see
/// [`fresh_binding`]).
pub fn current_bindings(config: &AssistantConfig) -> SecretBindings {
    SecretBindings(
        secret_values(config)
            .into_iter()
            .map(|(path, used, _)| {
                let hosts = fresh_binding(config, &used);
                (path, hosts)
            })
            .collect(),
    )
}

/// The bindings in force for a stored record: its stored bindings, and for a secret that has
/// none (a record written before bindings existed) the hosts the record sends it to now.
pub fn effective_bindings(config: &AssistantConfig) -> SecretBindings {
    let mut bindings = current_bindings(config);
    if let Some(stored) = &config.secret_bindings {
        for (path, hosts) in &mut bindings.0 {
            if let Some(bound) = stored.0.get(path) {
                hosts.clone_from(bound);
            }
        }
    }
    bindings
}

/// Paths of the secrets a request body carries (in clear or masked): the same walk as the
/// store's, on the partial JSON of a PATCH or the full JSON of a PUT.
pub(crate) fn secret_paths_in(body: &Value) -> BTreeSet<String> {
    let mut copy = body.clone();
    let mut paths = BTreeSet::new();
    visit_stored_secrets(&mut copy, &mut |path, _| {
        paths.insert(path.to_owned());
    });
    paths
}

/// The bindings of `next`, the record a write produces from `stored`.
///
/// A secret the request sent in clear (`sent` holds its path and it was not restored from a
/// mask) is bound to the hosts `next` sends it to. A secret kept from `stored` (restored from
/// its mask, recorded in `restored` as `(path, stored path)`, or absent from a PATCH) keeps its
/// binding; if `next` would send it to a host outside that binding, the write is refused at
/// the secret's path with [`RESEND_RULE`].
pub(crate) fn rebind(
    next: &AssistantConfig,
    stored: Option<&AssistantConfig>,
    sent: &BTreeSet<String>,
    restored: &[(String, String)],
) -> Result<SecretBindings, ValidationErrors> {
    let previous = stored.map(effective_bindings).unwrap_or_default();
    let restored: BTreeMap<&str, &str> = restored
        .iter()
        .map(|(path, from)| (path.as_str(), from.as_str()))
        .collect();
    let mut bindings = SecretBindings::default();
    let mut errors = Vec::new();
    for (path, used, _) in secret_values(next) {
        let wanted = hosts_of_use(next, &used);
        let kept_from = match restored.get(path.as_str()) {
            Some(from) => Some((*from).to_owned()),
            None if sent.contains(&path) => None,
            None => Some(path.clone()),
        };
        let Some(from) = kept_from else {
            bindings.0.insert(path, fresh_binding(next, &used));
            continue;
        };
        let bound = previous.hosts(&from);
        if wanted.is_subset(&bound) {
            bindings.0.insert(path, bound);
        } else {
            let now: Vec<&str> = wanted.difference(&bound).map(String::as_str).collect();
            let was: Vec<&str> = bound.iter().map(String::as_str).collect();
            errors.push(FieldError::new(
                path,
                format!(
                    "{RESEND_RULE} (it was set for {}; this record would send it to {})",
                    if was.is_empty() {
                        "no host".to_owned()
                    } else {
                        was.join(", ")
                    },
                    now.join(", ")
                ),
            ));
        }
    }
    if errors.is_empty() {
        Ok(bindings)
    } else {
        Err(ValidationErrors { errors })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_urls() {
        assert_eq!(
            host_of_url("wss://API.deepgram.com/v1").as_deref(),
            Some("api.deepgram.com:443")
        );
        assert_eq!(
            host_of_url("http://127.0.0.1:9000/x").as_deref(),
            Some("127.0.0.1:9000")
        );
        assert_eq!(host_of_url("ws://[::1]:81").as_deref(), Some("[::1]:81"));
        assert_eq!(host_of_url("not a url"), None);
        assert_eq!(endpoint_host("deepgram", None), "api.deepgram.com:443");
        assert_eq!(endpoint_host("deepgram", Some(" ")), "api.deepgram.com:443");
        assert_eq!(endpoint_host("azure", None), "default:azure");
    }
}
