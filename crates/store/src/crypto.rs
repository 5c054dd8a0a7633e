//! Secrets at rest: provider keys, Twilio auth tokens and every other secret of an assistant
//! record are stored encrypted with an AEAD (ChaCha20-Poly1305, RustCrypto) under a 32-byte key
//! the operator holds (`SWITCHBOARD_SECRET_KEY`), never in clear.
//!
//! Stored form: `enc:v1:<key id>:<base64 of nonce (12 bytes) + ciphertext and tag>`. The key id
//! is the first 8 hex digits of a SHA-256 of the key: it tells which key to decrypt with after a
//! rotation and reveals nothing about the key. The `enc:v1:<key id>` prefix is also the
//! associated data, so a value cannot be re-labelled with another key id. A value without the
//! prefix is a legacy clear value: it is read as is and encrypted on its next write (or by
//! `switchboard secrets rotate`).
//!
//! Several keys can decrypt ([`SecretBox::new`] takes the current key and the old ones); only
//! the current one encrypts. Nothing here logs a key or a secret, and `Debug` shows key ids only.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};

/// Prefix of an encrypted value (format version 1).
pub const ENCRYPTED_PREFIX: &str = "enc:v1:";
/// Length of a secret key, in bytes.
pub const KEY_BYTES: usize = 32;
/// Length of the random nonce stored in front of each ciphertext, in bytes.
const NONCE_BYTES: usize = 12;
/// Length of the Poly1305 tag at the end of each ciphertext, in bytes.
const TAG_BYTES: usize = 16;
/// Hex digits of the key id.
const KEY_ID_HEX: usize = 8;
/// Domain separation of the key-id hash, so the id is not a plain hash of the key.
const KEY_ID_DOMAIN: &[u8] = b"switchboard secret key id v1\0";

/// Why a key could not be loaded or a stored secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// A configured key is not 32 bytes written as 64 hex digits or base64.
    #[error("{0} must be 32 bytes written as 64 hex digits or base64")]
    BadKey(&'static str),
    /// A stored value names a key that is neither the current key nor an old one.
    #[error(
        "a stored secret was encrypted with key {0}, which is neither SWITCHBOARD_SECRET_KEY nor \
         one of SWITCHBOARD_SECRET_KEY_OLD"
    )]
    UnknownKey(String),
    /// The key id matches but authentication failed: the value was altered, or encrypted under
    /// another key whose id happens to collide.
    #[error("a stored secret encrypted with key {0} does not decrypt: it was altered or corrupted")]
    Undecryptable(String),
    /// The value has the `enc:v1:` prefix but not the rest of the format.
    #[error("a stored secret is malformed: {0}")]
    Malformed(&'static str),
    /// A value is encrypted but this store was opened without any key.
    #[error("a stored secret is encrypted but no secret key is configured")]
    NoKey,
    /// The key file could not be read or created.
    #[error("secret key file {path}: {source}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// One 32-byte key with its id. `Debug` prints the id only.
#[derive(Clone)]
pub struct SecretKey {
    id: String,
    cipher: ChaCha20Poly1305,
}

impl SecretKey {
    /// A key from its raw bytes.
    pub fn from_bytes(bytes: &[u8; KEY_BYTES]) -> SecretKey {
        let mut hasher = Sha256::new();
        hasher.update(KEY_ID_DOMAIN);
        hasher.update(bytes);
        let id = hex::encode(hasher.finalize())[..KEY_ID_HEX].to_owned();
        SecretKey {
            id,
            cipher: ChaCha20Poly1305::new(Key::from_slice(bytes)),
        }
    }

    /// A key written as 64 hex digits or as base64 (standard or URL-safe, padded or not) of 32
    /// bytes; surrounding whitespace is ignored. `what` names the setting in the error.
    pub fn parse(text: &str, what: &'static str) -> Result<SecretKey, SecretError> {
        let text = text.trim();
        let bytes = if text.len() == 2 * KEY_BYTES && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).ok()
        } else {
            [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                .iter()
                .find_map(|engine| engine.decode(text).ok())
        };
        let bytes: [u8; KEY_BYTES] = bytes
            .and_then(|b| b.try_into().ok())
            .ok_or(SecretError::BadKey(what))?;
        Ok(SecretKey::from_bytes(&bytes))
    }

    /// The key id written into every value this key encrypts.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey").field("id", &self.id).finish()
    }
}

/// Encrypts with the current key, decrypts with the current or an old one.
#[derive(Clone, Debug)]
pub struct SecretBox {
    current: SecretKey,
    old: Vec<SecretKey>,
}

/// Whether a stored value is in the encrypted format (as opposed to a legacy clear value).
pub fn is_encrypted(stored: &str) -> bool {
    stored.starts_with(ENCRYPTED_PREFIX)
}

impl SecretBox {
    /// A box that encrypts with `current` and also decrypts values of the `old` keys.
    pub fn new(current: SecretKey, old: Vec<SecretKey>) -> SecretBox {
        SecretBox { current, old }
    }

    /// Id of the key new values are encrypted with.
    pub fn current_key_id(&self) -> &str {
        self.current.id()
    }

    /// `enc:v1:<key id>:<base64(nonce + ciphertext)>` of `clear`, under the current key.
    pub fn encrypt(&self, clear: &str) -> String {
        let nonce_bytes: [u8; NONCE_BYTES] = rand::random();
        let header = format!("{ENCRYPTED_PREFIX}{}", self.current.id);
        let sealed = self.current.cipher.encrypt(
            Nonce::from_slice(&nonce_bytes),
            Payload {
                msg: clear.as_bytes(),
                aad: header.as_bytes(),
            },
        );
        // ChaCha20-Poly1305 only fails for messages over 256 GiB, which a secret never is.
        let mut out = nonce_bytes.to_vec();
        out.extend(sealed.unwrap_or_default());
        format!("{header}:{}", STANDARD.encode(out))
    }

    /// The clear value of a stored one: decrypted when encrypted, as is when it is a legacy
    /// clear value.
    pub fn decrypt(&self, stored: &str) -> Result<String, SecretError> {
        let Some(rest) = stored.strip_prefix(ENCRYPTED_PREFIX) else {
            return Ok(stored.to_owned());
        };
        let (id, body) = rest
            .split_once(':')
            .ok_or(SecretError::Malformed("no key id"))?;
        let key = std::iter::once(&self.current)
            .chain(&self.old)
            .find(|k| k.id == id)
            .ok_or_else(|| SecretError::UnknownKey(id.to_owned()))?;
        let bytes = STANDARD
            .decode(body)
            .map_err(|_| SecretError::Malformed("not base64"))?;
        if bytes.len() < NONCE_BYTES + TAG_BYTES {
            return Err(SecretError::Malformed("too short"));
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let header = format!("{ENCRYPTED_PREFIX}{id}");
        let clear = key
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: header.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Undecryptable(id.to_owned()))?;
        String::from_utf8(clear).map_err(|_| SecretError::Undecryptable(id.to_owned()))
    }

    /// Whether a stored value should be written again: a non-empty legacy clear value, or one
    /// encrypted under an old key.
    pub fn needs_rewrite(&self, stored: &str) -> bool {
        match stored.strip_prefix(ENCRYPTED_PREFIX) {
            Some(rest) => !rest.starts_with(&format!("{}:", self.current.id)),
            None => !stored.is_empty(),
        }
    }
}

/// Reads the key in `path`, or creates the file with a new random key when it does not exist:
/// the folder is created with mode 0700 (when missing) and the file with mode 0600, written in
/// full under a temporary name and then linked into place, so that two processes starting at
/// once end up with the same key. Returns the key and whether the file was created now.
pub fn load_or_create_key_file(path: &Path) -> Result<(SecretKey, bool), SecretError> {
    let fail = |source| SecretError::KeyFile {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => return Ok((SecretKey::parse(&text, "the secret key file")?, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e)),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir).map_err(fail)?;
    }
    let bytes: [u8; KEY_BYTES] = rand::random();
    let temp = path.with_extension(format!(
        "tmp-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let written = write_private_file(&temp, format!("{}\n", hex::encode(bytes)).as_bytes());
    let linked = written.and_then(|()| std::fs::hard_link(&temp, path));
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => Ok((SecretKey::from_bytes(&bytes), true)),
        // Another process created it first: use its key.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path).map_err(fail)?;
            Ok((SecretKey::parse(&text, "the secret key file")?, false))
        }
        Err(e) => Err(fail(e)),
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

fn write_private_file(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(content)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_bytes(&[byte; KEY_BYTES])
    }

    #[test]
    fn round_trip_and_format() {
        let b = SecretBox::new(key(1), vec![]);
        let stored = b.encrypt("sk-live-0123456789");
        assert!(stored.starts_with(&format!("enc:v1:{}:", b.current_key_id())));
        assert!(!stored.contains("sk-live"));
        assert_ne!(
            stored,
            b.encrypt("sk-live-0123456789"),
            "fresh nonce each time"
        );
        assert_eq!(b.decrypt(&stored).expect("decrypts"), "sk-live-0123456789");
        assert_eq!(b.decrypt("legacy-clear").expect("clear"), "legacy-clear");
        assert!(!b.needs_rewrite(&stored));
        assert!(b.needs_rewrite("legacy-clear"));
        assert!(!b.needs_rewrite(""));
    }

    #[test]
    fn wrong_or_old_keys() {
        let old = SecretBox::new(key(1), vec![]);
        let stored = old.encrypt("secret-value");
        let other = SecretBox::new(key(2), vec![]);
        assert!(matches!(
            other.decrypt(&stored),
            Err(SecretError::UnknownKey(_))
        ));
        let rotated = SecretBox::new(key(2), vec![key(1)]);
        assert_eq!(rotated.decrypt(&stored).expect("old key"), "secret-value");
        assert!(rotated.needs_rewrite(&stored));
        // A flipped byte fails authentication; a relabelled key id is unknown or fails too.
        let mut tampered = stored.clone();
        let last = tampered.pop().expect("non-empty");
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(old.decrypt(&tampered).is_err());
        assert!(matches!(
            old.decrypt("enc:v1:zz"),
            Err(SecretError::Malformed(_))
        ));
    }

    #[test]
    fn keys_parse_from_hex_and_base64() {
        let hex_text = "00".repeat(32);
        let b64 = STANDARD.encode([0u8; 32]);
        assert_eq!(
            SecretKey::parse(&hex_text, "k").expect("hex").id(),
            SecretKey::parse(&b64, "k").expect("b64").id()
        );
        assert!(matches!(
            SecretKey::parse("short", "SWITCHBOARD_SECRET_KEY"),
            Err(SecretError::BadKey("SWITCHBOARD_SECRET_KEY"))
        ));
        let debug = format!("{:?}", key(7));
        assert!(!debug.contains("7, 7"), "{debug}");
    }

    #[test]
    fn key_file_is_created_private_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys").join("secret.key");
        let (first, created) = load_or_create_key_file(&path).expect("created");
        assert!(created);
        let (again, created) = load_or_create_key_file(&path).expect("read");
        assert!(!created);
        assert_eq!(first.id(), again.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(path.parent().expect("dir")), 0o700);
        }
    }
}
