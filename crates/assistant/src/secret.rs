//! Secrets inside the assistant record: the types that hold them, the mask the API shows instead
//! of them, and the rule that keeps a stored secret when a client sends its masked form back.
//!
//! Secrets are serialised **in clear** (the store needs them); the REST layer calls
//! [`mask_secrets`] before a record leaves the process. `Debug` never prints them.
//!
//! Mask format (see [`mask`]): a secret of 12 characters or more shows its first 3 and last 4
//! characters around an ellipsis (`sk-…wxyz`); a shorter one shows nothing and becomes `****`,
//! because 7 visible characters of a short secret would give most of it away. The empty string
//! stays empty so that an unset secret is visibly unset.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::AssistantConfig;

/// The mask shown for a secret shorter than [`MASK_MIN_CHARS`] characters.
pub const SHORT_MASK: &str = "****";

/// The character between the visible head and tail of a masked secret.
pub const MASK_ELLIPSIS: char = '…';

/// Secrets with at least this many characters (Unicode scalar values) show head and tail when
/// masked; shorter ones become [`SHORT_MASK`].
pub const MASK_MIN_CHARS: usize = 12;

/// Visible leading characters of a masked long secret.
const MASK_HEAD_CHARS: usize = 3;
/// Visible trailing characters of a masked long secret.
const MASK_TAIL_CHARS: usize = 4;

/// Text printed by `Debug` in place of a secret.
const REDACTED: &str = "<redacted>";

/// A secret string (API key, token). Serialises in clear (for storage); `Debug` prints
/// `Secret(<redacted>)` so that a logged config never leaks it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret in clear, for the one place that must send it to a provider.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The masked form the API shows (see [`mask`]).
    pub fn masked(&self) -> String {
        mask(&self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

/// A free-form provider configuration object (`provider_config`, `custom_config`): whatever the
/// provider adapter understands (`base_url`, `api_key`, `region`, …). Values under a key whose
/// name marks a secret (see [`is_secret_key`]) are masked by [`mask_secrets`] and redacted by
/// `Debug`.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct ProviderConfig(pub Map<String, Value>);

impl ProviderConfig {
    /// The value at `key`, if any.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// The string at `key`, if it is present and a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = Value::Object(self.0.clone());
        replace_secrets(&mut shown, false, &|_| REDACTED.to_owned());
        f.debug_tuple("ProviderConfig").field(&shown).finish()
    }
}

/// Assistant-specific provider keys (`elevenlabs_api_key`, `deepgram_api_key`,
/// `cartesia_api_key`, …) that override the organisation's keys. Every value is a secret;
/// `Debug` prints only the key names.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct ApiKeys(pub BTreeMap<String, Option<String>>);

impl ApiKeys {
    /// The key stored under `name`, if present and not null.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.as_deref())
    }
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ApiKeys")
            .field(&self.0.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The masked form of `secret`: `""` stays `""`; fewer than [`MASK_MIN_CHARS`] characters give
/// [`SHORT_MASK`]; otherwise the first 3 and last 4 characters around `…` (`sk-…wxyz`).
pub fn mask(secret: &str) -> String {
    let chars = secret.chars().count();
    if chars == 0 {
        return String::new();
    }
    if chars < MASK_MIN_CHARS {
        return SHORT_MASK.to_owned();
    }
    let head: String = secret.chars().take(MASK_HEAD_CHARS).collect();
    let tail: String = secret.chars().skip(chars - MASK_TAIL_CHARS).collect();
    format!("{head}{MASK_ELLIPSIS}{tail}")
}

/// Whether `s` has the shape of a mask produced by [`mask`] (`****`, or 3 characters, `…`,
/// 4 characters). Real provider keys never contain `…`, so this does not misfire on them.
pub fn is_masked(s: &str) -> bool {
    if s == SHORT_MASK {
        return true;
    }
    s.chars().count() == MASK_HEAD_CHARS + 1 + MASK_TAIL_CHARS
        && s.chars().nth(MASK_HEAD_CHARS) == Some(MASK_ELLIPSIS)
        && s.chars().filter(|c| *c == MASK_ELLIPSIS).count() == 1
}

/// Whether a key inside a free-form provider config names a secret: its name contains `key`,
/// `secret`, `token` or `password` (case-insensitive). Names containing `keyword` or `keyterm`
/// are vocabulary lists, not secrets, and are left alone.
pub fn is_secret_key(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    if lower.contains("keyword") || lower.contains("keyterm") {
        return false;
    }
    ["key", "secret", "token", "password"]
        .iter()
        .any(|needle| lower.contains(needle))
}

/// Replaces every secret in `config` by its masked form (see [`mask`]): the LLM key, every
/// fallback's key, every value of `api_keys`, and every string under a secret-named key (see
/// [`is_secret_key`]) anywhere inside `llm_provider_config.custom_config`,
/// `stt_settings.provider_config` and `tts_settings.provider_config` (nested objects and arrays
/// included). Call it on a copy right before the record leaves the API.
pub fn mask_secrets(config: &mut AssistantConfig) {
    let llm = &mut config.llm_provider_config;
    if let Some(key) = llm.api_key.as_mut() {
        *key = Secret(key.masked());
    }
    for fallback in &mut config.llm_fallback_providers.fallbacks {
        if let Some(key) = fallback.api_key.as_mut() {
            *key = Secret(key.masked());
        }
    }
    if let Some(keys) = config.api_keys.as_mut() {
        for value in keys.0.values_mut().flatten() {
            *value = mask(value);
        }
    }
    for map in [
        llm.custom_config.as_mut(),
        config.stt_settings.provider_config.as_mut(),
        config.tts_settings.provider_config.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        for (key, value) in &mut map.0 {
            replace_secrets(value, is_secret_key(key), &|s| mask(s));
        }
    }
}

/// Restores stored secrets in `new` wherever `new` carries a mask instead of a secret, so that a
/// PUT or PATCH that echoes a masked record back does not overwrite the stored keys.
///
/// A secret in `new` is replaced by the stored secret at the same place when it equals the mask
/// of that stored secret or merely has the shape of a mask ([`is_masked`]). A fallback whose
/// position changed is matched by the exact mask of its key. A mask with no stored secret behind
/// it is left as it is; [`crate::validate`] then rejects it.
pub fn keep_masked_secrets(new: &mut AssistantConfig, stored: &AssistantConfig) {
    restore_secret(
        &mut new.llm_provider_config.api_key,
        stored.llm_provider_config.api_key.as_ref(),
    );

    let stored_fallbacks = &stored.llm_fallback_providers.fallbacks;
    for (index, fallback) in new.llm_fallback_providers.fallbacks.iter_mut().enumerate() {
        let Some(sent) = fallback.api_key.as_ref() else {
            continue;
        };
        let same_place = stored_fallbacks.get(index).and_then(|f| f.api_key.as_ref());
        let exact = |s: &&Secret| s.masked() == sent.expose();
        let replacement = same_place
            .filter(exact)
            .or_else(|| {
                stored_fallbacks
                    .iter()
                    .filter_map(|f| f.api_key.as_ref())
                    .find(exact)
            })
            .or_else(|| same_place.filter(|_| is_masked(sent.expose())));
        if let Some(secret) = replacement {
            fallback.api_key = Some(secret.clone());
        }
    }

    if let (Some(new_keys), Some(stored_keys)) = (new.api_keys.as_mut(), stored.api_keys.as_ref()) {
        for (name, value) in &mut new_keys.0 {
            if let (Some(sent), Some(Some(kept))) = (value.as_mut(), stored_keys.0.get(name))
                && sent_is_mask_of(sent, kept)
            {
                *sent = kept.clone();
            }
        }
    }

    let pairs = [
        (
            new.llm_provider_config.custom_config.as_mut(),
            stored.llm_provider_config.custom_config.as_ref(),
        ),
        (
            new.stt_settings.provider_config.as_mut(),
            stored.stt_settings.provider_config.as_ref(),
        ),
        (
            new.tts_settings.provider_config.as_mut(),
            stored.tts_settings.provider_config.as_ref(),
        ),
    ];
    for (new_map, stored_map) in pairs {
        if let (Some(new_map), Some(stored_map)) = (new_map, stored_map) {
            for (key, value) in &mut new_map.0 {
                if let Some(kept) = stored_map.0.get(key) {
                    restore_value(value, kept, is_secret_key(key));
                }
            }
        }
    }
}

/// Field paths of the secrets in `config` that still have the shape of a mask: a client sent a
/// masked value where no stored secret stands behind it. [`crate::validate`] rejects them.
pub(crate) fn masked_secret_paths(config: &AssistantConfig) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(key) = &config.llm_provider_config.api_key
        && is_masked(key.expose())
    {
        found.push("llm_provider_config.api_key".to_owned());
    }
    for (index, fallback) in config.llm_fallback_providers.fallbacks.iter().enumerate() {
        if let Some(key) = &fallback.api_key
            && is_masked(key.expose())
        {
            found.push(format!("llm_fallback_providers.fallbacks[{index}].api_key"));
        }
    }
    if let Some(keys) = &config.api_keys {
        for (name, value) in &keys.0 {
            if value.as_deref().is_some_and(is_masked) {
                found.push(format!("api_keys.{name}"));
            }
        }
    }
    let maps = [
        (
            "llm_provider_config.custom_config",
            config.llm_provider_config.custom_config.as_ref(),
        ),
        (
            "stt_settings.provider_config",
            config.stt_settings.provider_config.as_ref(),
        ),
        (
            "tts_settings.provider_config",
            config.tts_settings.provider_config.as_ref(),
        ),
    ];
    for (prefix, map) in maps {
        if let Some(map) = map {
            for (key, value) in &map.0 {
                find_masked(
                    value,
                    is_secret_key(key),
                    &format!("{prefix}.{key}"),
                    &mut found,
                );
            }
        }
    }
    found
}

fn sent_is_mask_of(sent: &str, kept: &str) -> bool {
    sent == mask(kept) || is_masked(sent)
}

fn restore_secret(new: &mut Option<Secret>, stored: Option<&Secret>) {
    if let (Some(sent), Some(kept)) = (new.as_mut(), stored)
        && sent_is_mask_of(sent.expose(), kept.expose())
    {
        *sent = kept.clone();
    }
}

/// Replaces every string that sits under a secret-named key (at any depth) by `replace(s)`.
fn replace_secrets(value: &mut Value, in_secret: bool, replace: &dyn Fn(&str) -> String) {
    match value {
        Value::String(s) if in_secret => *s = replace(s),
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                replace_secrets(inner, in_secret || is_secret_key(key), replace);
            }
        }
        Value::Array(items) => {
            for inner in items {
                replace_secrets(inner, in_secret, replace);
            }
        }
        _ => {}
    }
}

/// Walks `new` and `stored` in parallel (objects by key, arrays by index) and puts the stored
/// string back wherever `new` holds a mask of a secret.
fn restore_value(new: &mut Value, stored: &Value, in_secret: bool) {
    match (new, stored) {
        (Value::String(sent), Value::String(kept)) if in_secret && sent_is_mask_of(sent, kept) => {
            sent.clone_from(kept);
        }
        (Value::Object(new_map), Value::Object(stored_map)) => {
            for (key, inner) in new_map.iter_mut() {
                if let Some(kept) = stored_map.get(key) {
                    restore_value(inner, kept, in_secret || is_secret_key(key));
                }
            }
        }
        (Value::Array(new_items), Value::Array(stored_items)) => {
            for (inner, kept) in new_items.iter_mut().zip(stored_items) {
                restore_value(inner, kept, in_secret);
            }
        }
        _ => {}
    }
}

fn find_masked(value: &Value, in_secret: bool, path: &str, found: &mut Vec<String>) {
    match value {
        Value::String(s) if in_secret && is_masked(s) => found.push(path.to_owned()),
        Value::Object(map) => {
            for (key, inner) in map {
                find_masked(
                    inner,
                    in_secret || is_secret_key(key),
                    &format!("{path}.{key}"),
                    found,
                );
            }
        }
        Value::Array(items) => {
            for (index, inner) in items.iter().enumerate() {
                find_masked(inner, in_secret, &format!("{path}[{index}]"), found);
            }
        }
        _ => {}
    }
}
