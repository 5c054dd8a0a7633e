//! Secrets inside the assistant record: the types that hold them, the mask the API shows instead
//! of them, and the rule that keeps a stored secret when a client sends its masked form back.
//!
//! Secrets are serialised **in clear** (the store encrypts them on their way to the database,
//! using [`crate::visit_stored_secrets`] to find them); the REST layer calls [`mask_secrets`]
//! before a record leaves the process. `Debug` never prints them. Where the secrets of a record
//! are is decided in one place, `secret_walk`.
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
use crate::secret_walk::{SecretUse, secret_values, visit_secrets_mut, walk_object};

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

    /// The value, for the walk over every secret of a record.
    pub(crate) fn inner_mut(&mut self) -> &mut String {
        &mut self.0
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
/// provider adapter understands (`base_url`, `api_key`, `region`, …). Every value under a
/// `headers` object and under a key whose name marks a secret (see [`is_secret_key`]) is masked
/// by [`mask_secrets`] and redacted by `Debug`.
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
        let mut shown = self.0.clone();
        walk_object(&mut shown, "", false, &SecretUse::Stt, &mut |_, _, s| {
            *s = REDACTED.to_owned();
        });
        f.debug_tuple("ProviderConfig")
            .field(&Value::Object(shown))
            .finish()
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

/// Replaces every secret in `config` by its masked form (see [`mask`]): every place the schema
/// marks as a secret (see [`crate::visit_stored_secrets`] for the list), including every header
/// value of a provider or custom-tool `headers` object whatever the header is called. Call it on
/// a copy right before the record leaves the API.
pub fn mask_secrets(config: &mut AssistantConfig) {
    visit_secrets_mut(config, &mut |_, _, value| *value = mask(value));
}

/// Where [`keep_masked_secrets`] put a stored secret back: `(path in the new record, path it was
/// stored at)`. The two differ only for a fallback whose position changed.
pub type Restored = Vec<(String, String)>;

/// Restores stored secrets in `new` wherever `new` carries a mask instead of a secret, so that a
/// PUT or PATCH that echoes a masked record back does not overwrite the stored keys. Returns
/// where each restored secret came from.
///
/// A secret in `new` is replaced by the stored secret at the same place when it equals the mask
/// of that stored secret or merely has the shape of a mask ([`is_masked`]). A fallback whose
/// position changed is matched by the exact mask of its key. A mask with no stored secret behind
/// it is left as it is; [`crate::validate`] then rejects it.
pub fn keep_masked_secrets(new: &mut AssistantConfig, stored: &AssistantConfig) -> Restored {
    let stored_values: BTreeMap<String, String> = secret_values(stored)
        .into_iter()
        .map(|(path, _, value)| (path, value))
        .collect();
    let stored_fallbacks: Vec<(String, String)> = secret_values(stored)
        .into_iter()
        .filter(|(_, used, _)| matches!(used, SecretUse::Fallback(_)))
        .map(|(path, _, value)| (path, value))
        .collect();
    let mut restored = Vec::new();
    visit_secrets_mut(new, &mut |path, used, sent| {
        let same_place = stored_values.get(path);
        let exact_here = same_place.filter(|kept| mask(kept) == *sent);
        let exact_moved = || {
            stored_fallbacks
                .iter()
                .find(|(_, kept)| matches!(used, SecretUse::Fallback(_)) && mask(kept) == *sent)
                .map(|(from, kept)| (from.clone(), kept))
        };
        let choice = exact_here
            .map(|kept| (path.to_owned(), kept))
            .or_else(exact_moved)
            .or_else(|| {
                same_place
                    .filter(|_| is_masked(sent))
                    .map(|kept| (path.to_owned(), kept))
            });
        if let Some((from, kept)) = choice {
            sent.clone_from(kept);
            restored.push((path.to_owned(), from));
        }
    });
    restored
}

/// Field paths of the secrets in `config` that still have the shape of a mask: a client sent a
/// masked value where no stored secret stands behind it. [`crate::validate`] rejects them.
pub(crate) fn masked_secret_paths(config: &AssistantConfig) -> Vec<String> {
    secret_values(config)
        .into_iter()
        .filter(|(_, _, value)| is_masked(value))
        .map(|(path, _, _)| path)
        .collect()
}
