//! Organisations, their users and API keys, and organisation-level secrets (Twilio
//! credentials, provider keys).

use crate::{
    ApiKeyInfo, AuthContext, KeyRevocation, KeyRole, OrgTelephony, Organization, Store, StoreError,
    now_ms,
};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;

/// Name of the user every organisation gets at creation; API keys act as this user.
const OWNER_USER: &str = "owner";
/// Prefix of generated API keys, so they are recognisable in configs and secret scanners.
const KEY_PREFIX: &str = "sb_";
/// Random base62 characters after the prefix (~238 bits of entropy).
const KEY_RANDOM_CHARS: usize = 40;
/// Characters of a key kept in clear for display (`sb_` + 5).
const KEY_DISPLAY_CHARS: usize = 8;
/// `last_used_at` is rewritten at most this often per key, ms, to keep authentication read-only
/// in the common case.
const LAST_USED_GRANULARITY_MS: i64 = 60_000;

macro_rules! org_cols {
    () => {
        "o.id, o.name, o.created_at, o.updated_at, \
         (SELECT MIN(u.id) FROM users u WHERE u.organization_id = o.id AND u.name = 'owner') AS owner_user_id"
    };
}

macro_rules! key_cols {
    () => {
        "id, organization_id, user_id, label, key_prefix, created_at, last_used_at, revoked_at, role"
    };
}

/// SHA-256 of an API key, lowercase hex: the only form in which keys are stored. A fast hash
/// is right here because generated keys are long random strings, not passwords.
pub fn hash_api_key(plaintext: &str) -> String {
    hex::encode(Sha256::digest(plaintext.as_bytes()))
}

fn org_from_row(row: &AnyRow) -> Result<Organization, StoreError> {
    Ok(Organization {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        owner_user_id: row.try_get("owner_user_id")?,
        created_at_ms: row.try_get("created_at")?,
        updated_at_ms: row.try_get("updated_at")?,
    })
}

fn key_from_row(row: &AnyRow) -> Result<ApiKeyInfo, StoreError> {
    Ok(ApiKeyInfo {
        id: row.try_get("id")?,
        organization_id: row.try_get("organization_id")?,
        user_id: row.try_get("user_id")?,
        label: row.try_get("label")?,
        prefix: row.try_get("key_prefix")?,
        created_at_ms: row.try_get("created_at")?,
        last_used_at_ms: row.try_get("last_used_at")?,
        revoked_at_ms: row.try_get("revoked_at")?,
        role: role_from_row(row)?,
    })
}

fn role_from_row(row: &AnyRow) -> Result<KeyRole, StoreError> {
    let role: String = row.try_get("role")?;
    KeyRole::parse(&role)
        .ok_or_else(|| StoreError::InvalidInput(format!("stored api key role {role:?} is unknown")))
}

fn generate_key() -> String {
    let random: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(KEY_RANDOM_CHARS)
        .map(char::from)
        .collect();
    format!("{KEY_PREFIX}{random}")
}

fn display_prefix(plaintext: &str) -> String {
    plaintext.chars().take(KEY_DISPLAY_CHARS).collect()
}

impl Store {
    /// Returns the organisation called `name`, creating it (and its owner user) if needed.
    /// Safe to call concurrently and repeatedly.
    pub async fn ensure_organization(&self, name: &str) -> Result<Organization, StoreError> {
        if name.trim().is_empty() {
            return Err(StoreError::InvalidInput(
                "organisation name is empty".into(),
            ));
        }
        let now = now_ms();
        sqlx::query(
            "INSERT INTO organizations (name, provider_keys, created_at, updated_at) \
             VALUES ($1, '{}', $2, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(now)
        .execute(&self.pool)
        .await?;
        let id: i64 = sqlx::query("SELECT id FROM organizations WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?
            .try_get("id")?;
        self.ensure_owner_user(id).await?;
        self.get_organization(id).await?.ok_or(StoreError::NotFound)
    }

    /// The organisation with this id.
    pub async fn get_organization(&self, id: i64) -> Result<Option<Organization>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            org_cols!(),
            " FROM organizations o WHERE o.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(org_from_row).transpose()
    }

    /// The organisation called `name`.
    pub async fn get_organization_by_name(
        &self,
        name: &str,
    ) -> Result<Option<Organization>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            org_cols!(),
            " FROM organizations o WHERE o.name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(org_from_row).transpose()
    }

    /// Id of the organisation's owner user, created if missing; `NotFound` for an unknown
    /// organisation.
    async fn ensure_owner_user(&self, org_id: i64) -> Result<i64, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO users (organization_id, name, created_at) \
             SELECT id, $2, $3 FROM organizations WHERE id = $1 \
             ON CONFLICT (organization_id, name) DO NOTHING",
        )
        .bind(org_id)
        .bind(OWNER_USER)
        .bind(now_ms())
        .execute(&self.pool)
        .await;
        inserted?;
        let row = sqlx::query("SELECT id FROM users WHERE organization_id = $1 AND name = $2")
            .bind(org_id)
            .bind(OWNER_USER)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => Ok(r.try_get("id")?),
            None => Err(StoreError::NotFound),
        }
    }

    /// Creates a new admin API key for the organisation (acting as its owner user): what the
    /// operator's CLI and the bootstrap do. See [`Store::create_api_key_with_role`].
    pub async fn create_api_key(
        &self,
        org_id: i64,
        label: Option<&str>,
    ) -> Result<(ApiKeyInfo, String), StoreError> {
        self.create_api_key_with_role(org_id, label, KeyRole::Admin)
            .await
    }

    /// Creates a new API key with `role` for the organisation (acting as its owner user).
    /// Returns the key's info and the plaintext key — `sb_` + 40 random base62 characters —
    /// which is shown once and never stored. `NotFound` for an unknown organisation.
    pub async fn create_api_key_with_role(
        &self,
        org_id: i64,
        label: Option<&str>,
        role: KeyRole,
    ) -> Result<(ApiKeyInfo, String), StoreError> {
        let user_id = self.ensure_owner_user(org_id).await?;
        let plaintext = generate_key();
        let row = sqlx::query(concat!(
            "INSERT INTO api_keys (organization_id, user_id, key_hash, key_prefix, label, created_at, role) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ",
            key_cols!()
        ))
        .bind(org_id)
        .bind(user_id)
        .bind(hash_api_key(&plaintext))
        .bind(display_prefix(&plaintext))
        .bind(label)
        .bind(now_ms())
        .bind(role.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| StoreError::from_unique(e, "api key collision"))?;
        Ok((key_from_row(&row)?, plaintext))
    }

    /// Installs a key chosen by the operator (e.g. `SWITCHBOARD_BOOTSTRAP_KEY`) for the
    /// organisation. `Ok(true)` if stored now, `Ok(false)` if this organisation already has it,
    /// `Conflict` if another organisation has it, `InvalidInput` if empty or containing
    /// whitespace (it could never arrive in a bearer header).
    pub async fn install_api_key(&self, org_id: i64, plaintext: &str) -> Result<bool, StoreError> {
        if plaintext.is_empty() || plaintext.chars().any(char::is_whitespace) {
            return Err(StoreError::InvalidInput(
                "an API key must be non-empty and contain no whitespace".into(),
            ));
        }
        let user_id = self.ensure_owner_user(org_id).await?;
        let hash = hash_api_key(plaintext);
        let res = sqlx::query(
            "INSERT INTO api_keys (organization_id, user_id, key_hash, key_prefix, label, created_at) \
             VALUES ($1, $2, $3, $4, 'installed', $5) ON CONFLICT (key_hash) DO NOTHING",
        )
        .bind(org_id)
        .bind(user_id)
        .bind(&hash)
        .bind(display_prefix(plaintext))
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        if res.rows_affected() > 0 {
            return Ok(true);
        }
        let owner: i64 = sqlx::query("SELECT organization_id FROM api_keys WHERE key_hash = $1")
            .bind(&hash)
            .fetch_one(&self.pool)
            .await?
            .try_get("organization_id")?;
        if owner == org_id {
            Ok(false)
        } else {
            Err(StoreError::Conflict(
                "this API key belongs to another organisation".into(),
            ))
        }
    }

    /// Resolves a bearer key to its organisation and user; `None` for an unknown or revoked key.
    /// Records `last_used_at` at most once a minute per key; a failure to record it does not
    /// fail the authentication.
    pub async fn authenticate(&self, plaintext: &str) -> Result<Option<AuthContext>, StoreError> {
        if plaintext.is_empty() {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT id, organization_id, user_id, last_used_at, role FROM api_keys \
             WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(hash_api_key(plaintext))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let ctx = AuthContext {
            organization_id: row.try_get("organization_id")?,
            api_key_id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            role: role_from_row(&row)?,
        };
        let last_used: Option<i64> = row.try_get("last_used_at")?;
        let now = now_ms();
        if last_used.is_none_or(|t| now - t >= LAST_USED_GRANULARITY_MS) {
            let res = sqlx::query(
                "UPDATE api_keys SET last_used_at = $2 WHERE id = $1 \
                 AND (last_used_at IS NULL OR last_used_at < $3)",
            )
            .bind(ctx.api_key_id)
            .bind(now)
            .bind(now - LAST_USED_GRANULARITY_MS)
            .execute(&self.pool)
            .await;
            if let Err(e) = res {
                tracing::debug!(api_key_id = ctx.api_key_id, error = %e, "could not record key use");
            }
        }
        Ok(Some(ctx))
    }

    /// The organisation's API keys (without secrets), oldest first.
    pub async fn list_api_keys(&self, org_id: i64) -> Result<Vec<ApiKeyInfo>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            key_cols!(),
            " FROM api_keys WHERE organization_id = $1 ORDER BY id"
        ))
        .bind(org_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    /// Revokes one of the organisation's keys; `false` if it has no such key (or it was
    /// already revoked).
    pub async fn revoke_api_key(&self, org_id: i64, key_id: i64) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "UPDATE api_keys SET revoked_at = $3 \
             WHERE id = $1 AND organization_id = $2 AND revoked_at IS NULL",
        )
        .bind(key_id)
        .bind(org_id)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() > 0)
    }

    /// Revokes one of the organisation's keys over the API, refusing to revoke its last active
    /// admin key (the organisation could then never manage keys again without the CLI). The
    /// check and the write are one statement.
    pub async fn revoke_api_key_keeping_admin(
        &self,
        org_id: i64,
        key_id: i64,
    ) -> Result<KeyRevocation, StoreError> {
        let res = sqlx::query(
            "UPDATE api_keys SET revoked_at = $3 \
             WHERE id = $1 AND organization_id = $2 AND revoked_at IS NULL \
             AND (role <> 'admin' OR (SELECT COUNT(*) FROM api_keys k \
                  WHERE k.organization_id = $2 AND k.role = 'admin' AND k.revoked_at IS NULL) > 1)",
        )
        .bind(key_id)
        .bind(org_id)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        if res.rows_affected() > 0 {
            return Ok(KeyRevocation::Revoked);
        }
        let active = sqlx::query(
            "SELECT role FROM api_keys WHERE id = $1 AND organization_id = $2 AND revoked_at IS NULL",
        )
        .bind(key_id)
        .bind(org_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match active {
            Some(_) => KeyRevocation::LastAdmin,
            None => KeyRevocation::NotFound,
        })
    }

    /// Replaces one of the organisation's active keys: a new key with the same label is
    /// created and the old one revoked, in one transaction. Returns the new key's info and its
    /// plaintext (shown once, never stored); `None` if the organisation has no such active key.
    pub async fn rotate_api_key(
        &self,
        org_id: i64,
        key_id: i64,
    ) -> Result<Option<(ApiKeyInfo, String)>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        // Revoking first takes the row's write lock, so two concurrent rotations of one key
        // cannot both succeed.
        let old = sqlx::query(
            "UPDATE api_keys SET revoked_at = $3 \
             WHERE id = $1 AND organization_id = $2 AND revoked_at IS NULL \
             RETURNING user_id, label, role",
        )
        .bind(key_id)
        .bind(org_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(old) = old else {
            tx.rollback().await?;
            return Ok(None);
        };
        let user_id: i64 = old.try_get("user_id")?;
        let label: Option<String> = old.try_get("label")?;
        let role = role_from_row(&old)?;
        let plaintext = generate_key();
        let row = sqlx::query(concat!(
            "INSERT INTO api_keys (organization_id, user_id, key_hash, key_prefix, label, created_at, role) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ",
            key_cols!()
        ))
        .bind(org_id)
        .bind(user_id)
        .bind(hash_api_key(&plaintext))
        .bind(display_prefix(&plaintext))
        .bind(label)
        .bind(now)
        .bind(role.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| StoreError::from_unique(e, "api key collision"))?;
        let info = key_from_row(&row)?;
        tx.commit().await?;
        Ok(Some((info, plaintext)))
    }

    /// Stores the organisation's Twilio credentials (replacing any); the auth token is sealed
    /// (encrypted at rest). `NotFound` for an unknown organisation.
    pub async fn set_org_telephony(
        &self,
        org_id: i64,
        account_sid: &str,
        auth_token: &str,
    ) -> Result<(), StoreError> {
        let res = sqlx::query(
            "UPDATE organizations SET twilio_account_sid = $2, twilio_auth_token = $3, \
             updated_at = $4 WHERE id = $1",
        )
        .bind(org_id)
        .bind(account_sid)
        .bind(self.seal(auth_token))
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Removes the organisation's Twilio credentials (account SID and sealed token); clearing
    /// credentials that were never set is not an error. `NotFound` for an unknown organisation.
    pub async fn clear_org_telephony(&self, org_id: i64) -> Result<(), StoreError> {
        let res = sqlx::query(
            "UPDATE organizations SET twilio_account_sid = NULL, twilio_auth_token = NULL, \
             updated_at = $2 WHERE id = $1",
        )
        .bind(org_id)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// The organisation's Twilio credentials; `None` if unset or the organisation is unknown.
    pub async fn get_org_telephony(&self, org_id: i64) -> Result<Option<OrgTelephony>, StoreError> {
        let row = sqlx::query(
            "SELECT twilio_account_sid, twilio_auth_token FROM organizations WHERE id = $1",
        )
        .bind(org_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let sid: Option<String> = row.try_get("twilio_account_sid")?;
        let token: Option<String> = row.try_get("twilio_auth_token")?;
        Ok(match (sid, token) {
            (Some(account_sid), Some(auth_token)) => Some(OrgTelephony {
                account_sid,
                auth_token: self.open(&auth_token)?,
            }),
            _ => None,
        })
    }

    /// Every organisation's Twilio credentials, the token opened: `(organisation id,
    /// credentials)` for those with both set. A token that cannot be opened (sealed under
    /// another key) is left out with a warning, as reading that organisation alone would fail.
    pub async fn list_org_telephony(&self) -> Result<Vec<(i64, OrgTelephony)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, twilio_account_sid, twilio_auth_token FROM organizations \
             WHERE twilio_account_sid IS NOT NULL AND twilio_auth_token IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut listed = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.try_get("id")?;
            let account_sid: String = row.try_get("twilio_account_sid")?;
            let sealed: String = row.try_get("twilio_auth_token")?;
            match self.open(&sealed) {
                Ok(auth_token) => listed.push((
                    id,
                    OrgTelephony {
                        account_sid,
                        auth_token,
                    },
                )),
                Err(e) => {
                    tracing::warn!(organization_id = id, error = %e, "a Twilio auth token does not open");
                }
            }
        }
        Ok(listed)
    }

    /// Replaces the organisation's provider keys (provider name → key or config object), used
    /// when an assistant has no key of its own; every secret in them is sealed (encrypted at
    /// rest). `NotFound` for an unknown organisation.
    pub async fn set_org_provider_keys(
        &self,
        org_id: i64,
        keys: &Map<String, Value>,
    ) -> Result<(), StoreError> {
        let text = serde_json::to_string(&self.seal_provider_keys(keys))?;
        let res = sqlx::query(
            "UPDATE organizations SET provider_keys = $2, updated_at = $3 WHERE id = $1",
        )
        .bind(org_id)
        .bind(text)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// The organisation's provider keys, secrets opened; empty if none are set or the
    /// organisation is unknown.
    pub async fn get_org_provider_keys(
        &self,
        org_id: i64,
    ) -> Result<Map<String, Value>, StoreError> {
        let row = sqlx::query("SELECT provider_keys FROM organizations WHERE id = $1")
            .bind(org_id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(Map::new());
        };
        match crate::get_json(&row, "provider_keys")? {
            Value::Object(m) => self.open_provider_keys(m),
            _ => Ok(Map::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let k = generate_key();
        assert!(k.starts_with("sb_"));
        assert_eq!(k.len(), 43);
        assert!(k[3..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(generate_key(), k);
        assert_eq!(display_prefix(&k).len(), 8);
    }

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            hash_api_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
