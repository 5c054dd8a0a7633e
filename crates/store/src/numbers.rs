//! Phone numbers: owned by one organisation, routed to at most one of its assistants.

use crate::{AssistantRow, PhoneNumberRow, Store, StoreError, get_bool, get_json, now_ms};
use sqlx::Row;
use sqlx::any::AnyRow;

/// Columns of a [`PhoneNumberRow`], in the order [`number_from_row`] reads them.
macro_rules! number_cols {
    () => {
        "id, organization_id, assistant_id, number, friendly_name, twilio_sid, capabilities, \
         allowed_country_codes, is_active, created_at, updated_at"
    };
}

mod admin;

pub use admin::{NumberAssignment, NumberPatch, SyncedNumber};

pub(crate) fn number_from_row(row: &AnyRow) -> Result<PhoneNumberRow, StoreError> {
    let countries: Option<String> = row.try_get("allowed_country_codes")?;
    Ok(PhoneNumberRow {
        id: row.try_get("id")?,
        organization_id: row.try_get("organization_id")?,
        assistant_id: row.try_get("assistant_id")?,
        number: row.try_get("number")?,
        friendly_name: row.try_get("friendly_name")?,
        twilio_sid: row.try_get("twilio_sid")?,
        capabilities: get_json(row, "capabilities")?,
        allowed_country_codes: countries.as_deref().map(serde_json::from_str).transpose()?,
        is_active: get_bool(row, "is_active")?,
        created_at_ms: row.try_get("created_at")?,
        updated_at_ms: row.try_get("updated_at")?,
    })
}

impl Store {
    /// Routes `number` to the organisation's assistant. The number is created if new, moved if
    /// another assistant of the same organisation had it; `Conflict` if another organisation
    /// holds it; `NotFound` if the assistant is not this organisation's. The number is stored
    /// as given (the API validates E.164).
    pub async fn assign_number(
        &self,
        org_id: i64,
        assistant_id: i64,
        number: &str,
    ) -> Result<PhoneNumberRow, StoreError> {
        let owned = sqlx::query("SELECT id FROM assistants WHERE id = $1 AND organization_id = $2")
            .bind(assistant_id)
            .bind(org_id)
            .fetch_optional(&self.pool)
            .await?;
        if owned.is_none() {
            return Err(StoreError::NotFound);
        }
        // One statement, so two organisations racing for a number cannot both win: the
        // update branch only fires when the existing row is this organisation's.
        let row = sqlx::query(concat!(
            "INSERT INTO phone_numbers (organization_id, assistant_id, number, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4) \
             ON CONFLICT (number) DO UPDATE SET assistant_id = excluded.assistant_id, \
             updated_at = excluded.updated_at \
             WHERE phone_numbers.organization_id = excluded.organization_id \
             RETURNING ",
            number_cols!()
        ))
        .bind(org_id)
        .bind(assistant_id)
        .bind(number)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::from_unique(e, "phone number is held by another organisation"))?;
        match row {
            Some(row) => number_from_row(&row),
            None => Err(StoreError::Conflict(
                "phone number is held by another organisation".into(),
            )),
        }
    }

    /// Stops routing `number` to the assistant; the organisation keeps the number. `false` if
    /// the assistant (of this organisation) did not have it.
    pub async fn unassign_number(
        &self,
        org_id: i64,
        assistant_id: i64,
        number: &str,
    ) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "UPDATE phone_numbers SET assistant_id = NULL, updated_at = $4 \
             WHERE number = $1 AND organization_id = $2 AND assistant_id = $3",
        )
        .bind(number)
        .bind(org_id)
        .bind(assistant_id)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() > 0)
    }

    /// Gives up the organisation's claim on `number` (assigned or not), so another
    /// organisation can assign it. `false` if the organisation did not hold it.
    pub async fn release_number(&self, org_id: i64, number: &str) -> Result<bool, StoreError> {
        let res =
            sqlx::query("DELETE FROM phone_numbers WHERE number = $1 AND organization_id = $2")
                .bind(number)
                .bind(org_id)
                .execute(&self.pool)
                .await?;
        Ok(res.rows_affected() > 0)
    }

    /// Numbers routed to the organisation's assistant, ordered by number.
    pub async fn list_numbers(
        &self,
        org_id: i64,
        assistant_id: i64,
    ) -> Result<Vec<PhoneNumberRow>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            number_cols!(),
            " FROM phone_numbers WHERE organization_id = $1 AND assistant_id = $2 ORDER BY number"
        ))
        .bind(org_id)
        .bind(assistant_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(number_from_row).collect()
    }

    /// Every number the organisation holds, assigned or not, ordered by number.
    pub async fn list_org_numbers(&self, org_id: i64) -> Result<Vec<PhoneNumberRow>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            number_cols!(),
            " FROM phone_numbers WHERE organization_id = $1 ORDER BY number"
        ))
        .bind(org_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(number_from_row).collect()
    }

    /// The record of `number`, whatever its organisation: tells the Twilio webhook which
    /// organisation's auth token signs a call to it, even when no assistant is assigned.
    pub async fn get_number(&self, number: &str) -> Result<Option<PhoneNumberRow>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            number_cols!(),
            " FROM phone_numbers WHERE number = $1"
        ))
        .bind(number)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(number_from_row).transpose()
    }

    /// The assistant `number` is routed to, in any organisation (the Twilio voice webhook).
    pub async fn assistant_by_number(
        &self,
        number: &str,
    ) -> Result<Option<AssistantRow>, StoreError> {
        let row = sqlx::query(
            "SELECT a.id, a.organization_id, a.user_id, a.name, a.is_active, a.config, \
             a.created_at, a.updated_at FROM phone_numbers p \
             JOIN assistants a ON a.id = p.assistant_id AND a.organization_id = p.organization_id \
             WHERE p.number = $1",
        )
        .bind(number)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|r| self.assistant_from_row(r)).transpose()
    }

    /// The assistant `number` is routed to, only if the number is this organisation's.
    pub async fn assistant_by_number_in_org(
        &self,
        org_id: i64,
        number: &str,
    ) -> Result<Option<AssistantRow>, StoreError> {
        let row = sqlx::query(
            "SELECT a.id, a.organization_id, a.user_id, a.name, a.is_active, a.config, \
             a.created_at, a.updated_at FROM phone_numbers p \
             JOIN assistants a ON a.id = p.assistant_id AND a.organization_id = p.organization_id \
             WHERE p.number = $1 AND p.organization_id = $2",
        )
        .bind(number)
        .bind(org_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|r| self.assistant_from_row(r)).transpose()
    }
}
