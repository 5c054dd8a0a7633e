//! Which stored values are secrets, sealing them on write and opening them on read, and the
//! rotation that re-encrypts every stored secret under the current key.
//!
//! The places are decided by the assistant crate's schema walks, so the store encrypts exactly
//! what the API masks: [`switchboard_assistant::visit_stored_secrets`] for an assistant record,
//! [`switchboard_assistant::visit_provider_key_secrets`] for an organisation's provider keys;
//! plus the organisation's Twilio auth token.

use serde_json::{Map, Value};
use sqlx::Row;
use switchboard_assistant::{visit_provider_key_secrets, visit_stored_secrets};

use crate::crypto::SecretError;
use crate::{Store, StoreError};

/// Rows read per query by [`Store::rotate_secrets`].
const ROTATE_BATCH_ROWS: i64 = 500;
/// How often [`Store::rotate_secrets`] re-reads a row that changed under it before giving up.
const ROTATE_RETRIES: usize = 5;

/// A walk over some stored secrets: calls the visitor it is given with each one.
type SecretWalk<'a> = dyn FnMut(&mut dyn FnMut(&str, &mut String)) + 'a;

/// What [`Store::rotate_secrets`] rewrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RotationReport {
    /// Assistant records with at least one secret rewritten.
    pub assistants: u64,
    /// Organisations whose Twilio token or provider keys were rewritten.
    pub organizations: u64,
    /// Secret values re-encrypted under the current key (legacy clear values included).
    pub values: u64,
}

impl Store {
    /// An assistant record as stored: every secret sealed.
    pub(crate) fn seal_record(&self, config: &Value) -> Value {
        let mut sealed = config.clone();
        visit_stored_secrets(&mut sealed, &mut |_, value| *value = self.seal(value));
        sealed
    }

    /// An assistant record as read: every secret opened.
    pub(crate) fn open_record(&self, mut config: Value) -> Result<Value, StoreError> {
        let mut failure = None;
        visit_stored_secrets(&mut config, &mut |_, value| match self.open(value) {
            Ok(clear) => *value = clear,
            Err(e) => failure = failure.take().or(Some(e)),
        });
        failure.map_or(Ok(config), Err)
    }

    /// An organisation's provider keys as stored: every secret sealed.
    pub(crate) fn seal_provider_keys(&self, keys: &Map<String, Value>) -> Map<String, Value> {
        let mut sealed = keys.clone();
        visit_provider_key_secrets(&mut sealed, &mut |_, value| *value = self.seal(value));
        sealed
    }

    /// An organisation's provider keys as read: every secret opened.
    pub(crate) fn open_provider_keys(
        &self,
        mut keys: Map<String, Value>,
    ) -> Result<Map<String, Value>, StoreError> {
        let mut failure = None;
        visit_provider_key_secrets(&mut keys, &mut |_, value| match self.open(value) {
            Ok(clear) => *value = clear,
            Err(e) => failure = failure.take().or(Some(e)),
        });
        failure.map_or(Ok(keys), Err)
    }

    /// Re-encrypts every stored secret that is not under the current key (legacy clear values
    /// and values of an old key) with the current key: assistant records, Twilio auth tokens and
    /// provider keys, every organisation. Content does not change, so `updated_at` does not
    /// either; each row is rewritten only if it still holds what was read (a concurrent API
    /// write, which encrypts under the current key anyway, wins and the row is read again).
    /// Running it twice rewrites nothing the second time. Needs a store with a secret box whose
    /// old keys can still decrypt every value.
    pub async fn rotate_secrets(&self) -> Result<RotationReport, StoreError> {
        if self.secrets.is_none() {
            return Err(SecretError::NoKey.into());
        }
        let mut report = RotationReport::default();
        let mut after = 0_i64;
        loop {
            let rows =
                sqlx::query("SELECT id, config FROM assistants WHERE id > $1 ORDER BY id LIMIT $2")
                    .bind(after)
                    .bind(ROTATE_BATCH_ROWS)
                    .fetch_all(&self.pool)
                    .await?;
            let Some(last) = rows.last() else { break };
            after = last.try_get("id")?;
            for row in rows {
                let id: i64 = row.try_get("id")?;
                let text: String = row.try_get("config")?;
                let values = self.rotate_assistant(id, text).await?;
                if values > 0 {
                    report.assistants += 1;
                    report.values += values;
                }
            }
        }
        let rows = sqlx::query("SELECT id FROM organizations ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        for row in rows {
            let values = self.rotate_organization(row.try_get("id")?).await?;
            if values > 0 {
                report.organizations += 1;
                report.values += values;
            }
        }
        Ok(report)
    }

    /// Rewrites one assistant's secrets; returns how many values changed.
    async fn rotate_assistant(&self, id: i64, mut text: String) -> Result<u64, StoreError> {
        for _ in 0..ROTATE_RETRIES {
            let mut config: Value = serde_json::from_str(&text)?;
            let count = self.reseal(&mut |f| visit_stored_secrets(&mut config, f))?;
            if count == 0 {
                return Ok(0);
            }
            let res =
                sqlx::query("UPDATE assistants SET config = $2 WHERE id = $1 AND config = $3")
                    .bind(id)
                    .bind(serde_json::to_string(&config)?)
                    .bind(&text)
                    .execute(&self.pool)
                    .await?;
            if res.rows_affected() > 0 {
                return Ok(count);
            }
            let Some(row) = sqlx::query("SELECT config FROM assistants WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
            else {
                return Ok(0);
            };
            text = row.try_get("config")?;
        }
        Err(StoreError::Conflict(format!(
            "assistant {id} kept changing during the rotation; run it again"
        )))
    }

    /// Rewrites one organisation's Twilio token and provider keys; returns how many values
    /// changed.
    async fn rotate_organization(&self, id: i64) -> Result<u64, StoreError> {
        for _ in 0..ROTATE_RETRIES {
            let Some(row) = sqlx::query(
                "SELECT twilio_auth_token, provider_keys FROM organizations WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            else {
                return Ok(0);
            };
            let old_token: Option<String> = row.try_get("twilio_auth_token")?;
            let old_keys: String = row.try_get("provider_keys")?;
            let mut token = old_token.clone();
            let mut keys: Value = serde_json::from_str(&old_keys)?;
            let mut count = 0;
            if let Some(token) = token.as_mut() {
                count += self.reseal(&mut |f| f("twilio_auth_token", token))?;
            }
            if let Value::Object(map) = &mut keys {
                count += self.reseal(&mut |f| visit_provider_key_secrets(map, f))?;
            }
            if count == 0 {
                return Ok(0);
            }
            // `IS NOT DISTINCT FROM` is PostgreSQL; SQLite spells it `IS`. Compare with a
            // sentinel instead so one statement serves both.
            let res = sqlx::query(
                "UPDATE organizations SET twilio_auth_token = $2, provider_keys = $3 \
                 WHERE id = $1 AND COALESCE(twilio_auth_token, '') = $4 AND provider_keys = $5",
            )
            .bind(id)
            .bind(token)
            .bind(serde_json::to_string(&keys)?)
            .bind(old_token.unwrap_or_default())
            .bind(&old_keys)
            .execute(&self.pool)
            .await?;
            if res.rows_affected() > 0 {
                return Ok(count);
            }
        }
        Err(StoreError::Conflict(format!(
            "organisation {id} kept changing during the rotation; run it again"
        )))
    }

    /// Runs `walk` over some stored secrets and re-seals each one that needs it; returns how
    /// many changed. Fails on the first value no configured key decrypts.
    fn reseal(&self, walk: &mut SecretWalk<'_>) -> Result<u64, StoreError> {
        let Some(secrets) = self.secrets.as_deref() else {
            return Err(SecretError::NoKey.into());
        };
        let mut count = 0;
        let mut failure = None;
        walk(&mut |_, value| {
            if failure.is_some() || !secrets.needs_rewrite(value) {
                return;
            }
            match secrets.decrypt(value) {
                Ok(clear) => {
                    *value = secrets.encrypt(&clear);
                    count += 1;
                }
                Err(e) => failure = Some(e),
            }
        });
        match failure {
            Some(e) => Err(e.into()),
            None => Ok(count),
        }
    }
}
