//! The key stored secrets are encrypted with (`[secrets]`, `SWITCHBOARD_SECRET_KEY`), turned
//! into the store's [`SecretBox`]. See `switchboard_store::crypto` for the format and
//! `docs/SECURITY.md` ("Secrets at rest") for rotation.

use std::path::Path;
use std::sync::Once;

use switchboard_store::crypto::load_or_create_key_file;
use switchboard_store::{SecretBox, SecretError, SecretKey};

use crate::config::SecretsSettings;

/// The box for these settings: `key` when set, else the key in `key_file` (created with a random
/// key on first use, with a warning logged once per process — never the key itself); `old_keys`
/// (comma-separated) still decrypt.
pub fn load_secret_box(settings: &SecretsSettings) -> Result<SecretBox, SecretError> {
    let old = settings
        .old_keys
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| SecretKey::parse(k, "SWITCHBOARD_SECRET_KEY_OLD"))
        .collect::<Result<Vec<_>, _>>()?;
    let configured = settings
        .key
        .as_deref()
        .map(str::trim)
        .filter(|k| !k.is_empty());
    let current = match configured {
        Some(key) => SecretKey::parse(key, "SWITCHBOARD_SECRET_KEY")?,
        None => {
            let path = Path::new(&settings.key_file);
            let (key, created) = load_or_create_key_file(path)?;
            warn_key_file_once(path, created);
            key
        }
    };
    Ok(SecretBox::new(current, old))
}

/// Says once per process that secrets are encrypted with a key kept next to the data rather
/// than one the operator holds.
fn warn_key_file_once(path: &Path, created: bool) {
    static WARNED: Once = Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            key_file = %path.display(),
            created,
            "SWITCHBOARD_SECRET_KEY is not set: stored secrets are encrypted with the key in \
             this file; keep it (and back it up) with the database, or set \
             SWITCHBOARD_SECRET_KEY"
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path, key: Option<&str>, old: Option<&str>) -> SecretsSettings {
        SecretsSettings {
            key_file: dir.join("secret.key").display().to_string(),
            key: key.map(str::to_owned),
            old_keys: old.map(str::to_owned),
        }
    }

    #[test]
    fn a_configured_key_wins_and_old_keys_decrypt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = "11".repeat(32);
        let before = load_secret_box(&settings(dir.path(), Some(&old), None)).expect("old");
        let sealed = before.encrypt("twilio-token-0123456789");
        let now = load_secret_box(&settings(dir.path(), Some(&"22".repeat(32)), Some(&old)))
            .expect("rotated");
        assert_eq!(
            now.decrypt(&sealed).expect("old key decrypts"),
            "twilio-token-0123456789"
        );
        assert!(
            !dir.path().join("secret.key").exists(),
            "no key file when a key is set"
        );
        assert!(matches!(
            load_secret_box(&settings(dir.path(), Some("not-a-key"), None)),
            Err(SecretError::BadKey("SWITCHBOARD_SECRET_KEY"))
        ));
    }

    #[test]
    fn without_a_key_the_key_file_is_created_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = load_secret_box(&settings(dir.path(), None, None)).expect("created");
        let again = load_secret_box(&settings(dir.path(), None, None)).expect("read");
        assert_eq!(first.current_key_id(), again.current_key_id());
        assert!(dir.path().join("secret.key").exists());
    }
}
