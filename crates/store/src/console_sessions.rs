//! Web console sessions: a signed-in browser, acting with the rights of the API key it signed
//! in with.
//!
//! The browser holds a random token in a cookie; the store keeps only its SHA-256, so a copy
//! of the table signs no one in. Every lookup joins `api_keys` and refuses a revoked key, which
//! is what makes a revocation end the key's sessions at once on every instance.

use sqlx::Row;

use crate::{AuthContext, Store, StoreError, hash_api_key, now_ms};

/// A live console session, as read back on each console request.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// Row id.
    pub id: i64,
    /// Who the session acts as: its API key's organisation, user and role, as
    /// [`Store::authenticate`] would resolve them now.
    pub auth: AuthContext,
    /// The per-session anti-forgery token every state-changing console request must echo.
    pub csrf_token: String,
    /// When the session was created, unix ms.
    pub created_at_ms: i64,
    /// When the session stops being accepted, unix ms.
    pub expires_at_ms: i64,
}

impl std::fmt::Debug for ConsoleSession {
    // The CSRF token is a per-session secret: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleSession")
            .field("id", &self.id)
            .field("auth", &self.auth)
            .field("csrf_token", &"<redacted>")
            .field("created_at_ms", &self.created_at_ms)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

impl Store {
    /// Records a new session for `auth`'s key, identified by the clear cookie `token` (stored
    /// as its SHA-256 only), valid for `ttl_ms` from now. Expired sessions of every key are
    /// removed on the way (an indexed delete), so the table does not grow without bound.
    pub async fn create_console_session(
        &self,
        token: &str,
        auth: &AuthContext,
        csrf_token: &str,
        ttl_ms: i64,
    ) -> Result<ConsoleSession, StoreError> {
        if token.is_empty() || csrf_token.is_empty() {
            return Err(StoreError::InvalidInput(
                "console session token is empty".into(),
            ));
        }
        let now = now_ms();
        sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        let expires_at = now.saturating_add(ttl_ms);
        let id: i64 = sqlx::query(
            "INSERT INTO console_sessions \
             (token_hash, api_key_id, organization_id, csrf_token, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(hash_api_key(token))
        .bind(auth.api_key_id)
        .bind(auth.organization_id)
        .bind(csrf_token)
        .bind(now)
        .bind(expires_at)
        .fetch_one(&self.pool)
        .await?
        .try_get("id")?;
        Ok(ConsoleSession {
            id,
            auth: *auth,
            csrf_token: csrf_token.to_owned(),
            created_at_ms: now,
            expires_at_ms: expires_at,
        })
    }

    /// The session whose cookie token is `token`; `None` when there is none, it expired, or
    /// its API key was revoked since (checked on every call, so revocation is immediate).
    pub async fn console_session(&self, token: &str) -> Result<Option<ConsoleSession>, StoreError> {
        if token.is_empty() {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT s.id, s.csrf_token, s.created_at, s.expires_at, \
                    k.id AS api_key_id, k.organization_id, k.user_id, k.role \
             FROM console_sessions s JOIN api_keys k ON k.id = s.api_key_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND k.revoked_at IS NULL \
               AND k.organization_id = s.organization_id",
        )
        .bind(hash_api_key(token))
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let role: String = row.try_get("role")?;
        let role = crate::KeyRole::parse(&role).ok_or_else(|| {
            StoreError::InvalidInput(format!("stored api key role {role:?} is unknown"))
        })?;
        Ok(Some(ConsoleSession {
            id: row.try_get("id")?,
            auth: AuthContext {
                organization_id: row.try_get("organization_id")?,
                api_key_id: row.try_get("api_key_id")?,
                user_id: row.try_get("user_id")?,
                role,
            },
            csrf_token: row.try_get("csrf_token")?,
            created_at_ms: row.try_get("created_at")?,
            expires_at_ms: row.try_get("expires_at")?,
        }))
    }

    /// Ends the session whose cookie token is `token` (sign out); `false` if there was none.
    pub async fn delete_console_session(&self, token: &str) -> Result<bool, StoreError> {
        let res = sqlx::query("DELETE FROM console_sessions WHERE token_hash = $1")
            .bind(hash_api_key(token))
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;

    #[tokio::test]
    async fn sessions_follow_their_key() {
        let store = Store::connect("sqlite::memory:").await.expect("connect");
        store.migrate().await.expect("migrate");
        let org = store.ensure_organization("acme").await.expect("org");
        let (info, key) = store
            .create_api_key(org.id, Some("console"))
            .await
            .expect("key");
        let auth = store
            .authenticate(&key)
            .await
            .expect("auth")
            .expect("known key");

        let created = store
            .create_console_session("tok-1", &auth, "csrf-1", 60_000)
            .await
            .expect("create");
        let read = store.console_session("tok-1").await.expect("read");
        assert_eq!(read.as_ref(), Some(&created));
        assert_eq!(read.map(|s| s.auth), Some(auth));
        assert_eq!(store.console_session("tok-2").await.expect("read"), None);

        // Expired sessions are not accepted.
        store
            .create_console_session("tok-old", &auth, "csrf-2", -1)
            .await
            .expect("create expired");
        assert_eq!(store.console_session("tok-old").await.expect("read"), None);

        // Revoking the key ends its sessions at once.
        assert!(store.revoke_api_key(org.id, info.id).await.expect("revoke"));
        assert_eq!(store.console_session("tok-1").await.expect("read"), None);

        assert!(store.delete_console_session("tok-1").await.expect("delete"));
        assert!(
            !store
                .delete_console_session("tok-1")
                .await
                .expect("delete again")
        );
    }
}
