//! Assistants: one JSON document per assistant, scoped by organisation. The secrets inside a
//! document are sealed on write and opened on read (see `secrets.rs`).

use crate::{AssistantRow, Store, StoreError, get_bool, get_json, non_negative, now_ms};
use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

/// How often [`Store::set_assistant_active`] retries when a concurrent write changed the row
/// between its read and its write.
const ACTIVE_RETRIES: usize = 5;

macro_rules! assistant_cols {
    () => {
        "id, organization_id, user_id, name, is_active, config, created_at, updated_at"
    };
}

/// SQL expression for a new `updated_at` given the current time in `$n`: strictly greater than
/// the old value, so it can serve as a version even when two writes share a millisecond.
macro_rules! bump_updated_at {
    ($n:literal) => {
        concat!(
            "updated_at = CASE WHEN ",
            $n,
            " > updated_at THEN ",
            $n,
            " ELSE updated_at + 1 END"
        )
    };
}

impl Store {
    /// A row with its record's secrets opened.
    pub(crate) fn assistant_from_row(&self, row: &AnyRow) -> Result<AssistantRow, StoreError> {
        Ok(AssistantRow {
            id: row.try_get("id")?,
            organization_id: row.try_get("organization_id")?,
            user_id: row.try_get("user_id")?,
            name: row.try_get("name")?,
            is_active: get_bool(row, "is_active")?,
            config: self.open_record(get_json(row, "config")?)?,
            created_at_ms: row.try_get("created_at")?,
            updated_at_ms: row.try_get("updated_at")?,
        })
    }

    /// Creates an assistant in the organisation. `config` is the full record as the API
    /// validated it; `name` and `is_active` should match the values inside it.
    pub async fn create_assistant(
        &self,
        org_id: i64,
        user_id: i64,
        name: &str,
        is_active: bool,
        config: &Value,
    ) -> Result<AssistantRow, StoreError> {
        let now = now_ms();
        let row = sqlx::query(concat!(
            "INSERT INTO assistants (organization_id, user_id, name, is_active, config, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING ",
            assistant_cols!()
        ))
        .bind(org_id)
        .bind(user_id)
        .bind(name)
        .bind(is_active)
        .bind(serde_json::to_string(&self.seal_record(config))?)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        self.assistant_from_row(&row)
    }

    /// The organisation's assistant `id`; `None` if it does not exist or is another
    /// organisation's.
    pub async fn get_assistant(
        &self,
        org_id: i64,
        id: i64,
    ) -> Result<Option<AssistantRow>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            assistant_cols!(),
            " FROM assistants WHERE id = $1 AND organization_id = $2"
        ))
        .bind(id)
        .bind(org_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|r| self.assistant_from_row(r)).transpose()
    }

    /// Assistant `id` whatever its organisation: for the call runtime, which got the id from
    /// a signed stream token, never for API requests.
    pub async fn get_assistant_any_org(&self, id: i64) -> Result<Option<AssistantRow>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            assistant_cols!(),
            " FROM assistants WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|r| self.assistant_from_row(r)).transpose()
    }

    /// `updated_at_ms` of assistant `id` (any organisation): a cheap version check for a
    /// cache of assistant records shared by several instances.
    pub async fn assistant_version(&self, id: i64) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT updated_at FROM assistants WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("updated_at")).transpose()?)
    }

    /// A page of the organisation's assistants ordered by id; `active_only` hides inactive
    /// ones. Negative `skip`/`limit` count as 0.
    pub async fn list_assistants(
        &self,
        org_id: i64,
        skip: i64,
        limit: i64,
        active_only: bool,
    ) -> Result<Vec<AssistantRow>, StoreError> {
        let (limit, skip) = (non_negative(limit), non_negative(skip));
        let rows = if active_only {
            sqlx::query(concat!(
                "SELECT ",
                assistant_cols!(),
                " FROM assistants WHERE organization_id = $1 AND is_active = $4 \
                 ORDER BY id LIMIT $2 OFFSET $3"
            ))
            .bind(org_id)
            .bind(limit)
            .bind(skip)
            .bind(true)
            .fetch_all(&self.pool)
            .await?
        } else {
            sqlx::query(concat!(
                "SELECT ",
                assistant_cols!(),
                " FROM assistants WHERE organization_id = $1 ORDER BY id LIMIT $2 OFFSET $3"
            ))
            .bind(org_id)
            .bind(limit)
            .bind(skip)
            .fetch_all(&self.pool)
            .await?
        };
        rows.iter().map(|r| self.assistant_from_row(r)).collect()
    }

    /// Id, name and active flag of every assistant of the organisation (what a number list
    /// shows next to each number), without their configurations.
    pub async fn list_assistant_names(
        &self,
        org_id: i64,
    ) -> Result<Vec<(i64, String, bool)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, is_active FROM assistants WHERE organization_id = $1 ORDER BY id",
        )
        .bind(org_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id")?,
                    r.try_get("name")?,
                    get_bool(r, "is_active")?,
                ))
            })
            .collect()
    }

    /// Number of the organisation's assistants (only active ones if `active_only`).
    pub async fn count_assistants(
        &self,
        org_id: i64,
        active_only: bool,
    ) -> Result<i64, StoreError> {
        let row = if active_only {
            sqlx::query(
                "SELECT COUNT(*) AS n FROM assistants WHERE organization_id = $1 AND is_active = $2",
            )
            .bind(org_id)
            .bind(true)
            .fetch_one(&self.pool)
            .await?
        } else {
            sqlx::query("SELECT COUNT(*) AS n FROM assistants WHERE organization_id = $1")
                .bind(org_id)
                .fetch_one(&self.pool)
                .await?
        };
        Ok(row.try_get("n")?)
    }

    /// Replaces the assistant's name, active flag and record; bumps `updated_at`. `None` if it
    /// does not exist or is another organisation's.
    pub async fn update_assistant(
        &self,
        org_id: i64,
        id: i64,
        name: &str,
        is_active: bool,
        config: &Value,
    ) -> Result<Option<AssistantRow>, StoreError> {
        self.replace_assistant(org_id, id, None, name, is_active, config)
            .await
    }

    /// [`Store::update_assistant`] only if the row is still the version read: its `updated_at`
    /// (ms) equals `expected_updated_at_ms`. `None` when it is not (changed since, deleted, or
    /// another organisation's): a read-modify-write such as a PATCH then reads again and
    /// re-applies its change instead of overwriting a concurrent one.
    pub async fn update_assistant_if_unchanged(
        &self,
        org_id: i64,
        id: i64,
        expected_updated_at_ms: i64,
        name: &str,
        is_active: bool,
        config: &Value,
    ) -> Result<Option<AssistantRow>, StoreError> {
        self.replace_assistant(
            org_id,
            id,
            Some(expected_updated_at_ms),
            name,
            is_active,
            config,
        )
        .await
    }

    async fn replace_assistant(
        &self,
        org_id: i64,
        id: i64,
        expected_updated_at_ms: Option<i64>,
        name: &str,
        is_active: bool,
        config: &Value,
    ) -> Result<Option<AssistantRow>, StoreError> {
        let row = sqlx::query(concat!(
            "UPDATE assistants SET name = $3, is_active = $4, config = $5, ",
            bump_updated_at!("$6"),
            " WHERE id = $1 AND organization_id = $2 AND ($7 IS NULL OR updated_at = $7) RETURNING ",
            assistant_cols!()
        ))
        .bind(id)
        .bind(org_id)
        .bind(name)
        .bind(is_active)
        .bind(serde_json::to_string(&self.seal_record(config))?)
        .bind(now_ms())
        .bind(expected_updated_at_ms)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|r| self.assistant_from_row(r)).transpose()
    }

    /// Turns the assistant on or off: sets the column and `is_active` inside the JSON record
    /// (when the record is an object). `None` if it does not exist or is another
    /// organisation's. Uses optimistic concurrency on `updated_at`, so a concurrent full update
    /// is never overwritten with a stale record.
    pub async fn set_assistant_active(
        &self,
        org_id: i64,
        id: i64,
        is_active: bool,
    ) -> Result<Option<AssistantRow>, StoreError> {
        for _ in 0..ACTIVE_RETRIES {
            let Some(current) = self.get_assistant(org_id, id).await? else {
                return Ok(None);
            };
            let mut config = current.config;
            if let Value::Object(map) = &mut config {
                map.insert("is_active".into(), Value::Bool(is_active));
            }
            let row = sqlx::query(concat!(
                "UPDATE assistants SET is_active = $3, config = $4, ",
                bump_updated_at!("$5"),
                " WHERE id = $1 AND organization_id = $2 AND updated_at = $6 RETURNING ",
                assistant_cols!()
            ))
            .bind(id)
            .bind(org_id)
            .bind(is_active)
            .bind(serde_json::to_string(&self.seal_record(&config))?)
            .bind(now_ms())
            .bind(current.updated_at_ms)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(row) = row {
                return self.assistant_from_row(&row).map(Some);
            }
        }
        Err(StoreError::Conflict(
            "the assistant kept changing concurrently; retry".into(),
        ))
    }

    /// Deletes the organisation's assistant; its phone numbers stay with the organisation,
    /// unassigned, and its calls keep their records (with no assistant). `false` if it does
    /// not exist or is another organisation's.
    pub async fn delete_assistant(&self, org_id: i64, id: i64) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        sqlx::query(
            "UPDATE phone_numbers SET assistant_id = NULL, updated_at = $3 \
             WHERE assistant_id = $1 AND organization_id = $2",
        )
        .bind(id)
        .bind(org_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE calls SET assistant_id = NULL WHERE assistant_id = $1 AND organization_id = $2",
        )
        .bind(id)
        .bind(org_id)
        .execute(&mut *tx)
        .await?;
        let res = sqlx::query("DELETE FROM assistants WHERE id = $1 AND organization_id = $2")
            .bind(id)
            .bind(org_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(res.rows_affected() > 0)
    }
}
