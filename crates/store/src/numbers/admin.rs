//! The organisation's number list as Burki's API manages it: sync from the Twilio account,
//! assignment by id (never taking a number from another assistant), and edits of the display
//! name, assignment and allowed countries.

use serde_json::Value;

use super::number_from_row;
use crate::{PhoneNumberRow, Store, StoreError, now_ms};

/// A number as the organisation's Twilio account lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncedNumber {
    /// E.164.
    pub number: String,
    /// `PN…`.
    pub twilio_sid: String,
    /// Twilio's label.
    pub friendly_name: Option<String>,
    /// Twilio's capabilities object.
    pub capabilities: Value,
}

/// What [`Store::assign_number_by_id`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum NumberAssignment {
    /// Routed to the assistant now (or it already was).
    Assigned(PhoneNumberRow),
    /// No such number in the organisation (or no such assistant).
    NotFound,
    /// Another assistant of the organisation has it; nothing changed.
    HeldByOtherAssistant(i64),
}

/// Changes of `PATCH …/organization/phone-numbers/{id}`; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NumberPatch {
    /// New display name (`Some(None)` clears it).
    pub friendly_name: Option<Option<String>>,
    /// New assistant (`Some(None)` unassigns). The assistant must be the organisation's.
    pub assistant_id: Option<Option<i64>>,
    /// New allowed countries (`Some(None)` allows every country).
    pub allowed_country_codes: Option<Option<Vec<String>>>,
}

impl Store {
    /// One of the organisation's numbers by id.
    pub async fn get_org_number(
        &self,
        org_id: i64,
        number_id: i64,
    ) -> Result<Option<PhoneNumberRow>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            number_cols!(),
            " FROM phone_numbers WHERE id = $1 AND organization_id = $2"
        ))
        .bind(number_id)
        .bind(org_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(number_from_row).transpose()
    }

    /// Records what the organisation's Twilio account lists: new numbers are added unassigned,
    /// known ones get Twilio's SID and capabilities (and Twilio's name when they have none) and
    /// are active again; numbers of this organisation no longer listed become inactive.
    /// Numbers another organisation holds are left alone. Returns (added, held by another
    /// organisation, deactivated).
    pub async fn sync_numbers(
        &self,
        org_id: i64,
        listed: &[SyncedNumber],
    ) -> Result<(usize, Vec<String>, usize), StoreError> {
        let now = now_ms();
        let before: Vec<String> = self
            .list_org_numbers(org_id)
            .await?
            .into_iter()
            .map(|r| r.number)
            .collect();
        let mut added = 0;
        let mut elsewhere = Vec::new();
        for n in listed {
            let caps = serde_json::to_string(&n.capabilities)?;
            // Insert, or refresh when the row is this organisation's: one statement, so a
            // concurrent claim by another organisation cannot be overwritten.
            let row = sqlx::query(
                "INSERT INTO phone_numbers (organization_id, assistant_id, number, friendly_name, \
                 twilio_sid, capabilities, is_active, created_at, updated_at) \
                 VALUES ($1, NULL, $2, $3, $4, $5, TRUE, $6, $6) \
                 ON CONFLICT (number) DO UPDATE SET twilio_sid = excluded.twilio_sid, \
                 capabilities = excluded.capabilities, is_active = TRUE, \
                 friendly_name = COALESCE(phone_numbers.friendly_name, excluded.friendly_name), \
                 updated_at = excluded.updated_at \
                 WHERE phone_numbers.organization_id = excluded.organization_id \
                 RETURNING id",
            )
            .bind(org_id)
            .bind(&n.number)
            .bind(&n.friendly_name)
            .bind(&n.twilio_sid)
            .bind(&caps)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
            match row {
                Some(_) if !before.contains(&n.number) => added += 1,
                Some(_) => {}
                None => elsewhere.push(n.number.clone()),
            }
        }
        let known: Vec<&str> = listed.iter().map(|n| n.number.as_str()).collect();
        let mut deactivated = 0;
        for row in self.list_org_numbers(org_id).await? {
            if row.is_active && !known.contains(&row.number.as_str()) {
                let res = sqlx::query(
                    "UPDATE phone_numbers SET is_active = FALSE, updated_at = $3 \
                     WHERE id = $1 AND organization_id = $2",
                )
                .bind(row.id)
                .bind(org_id)
                .bind(now)
                .execute(&self.pool)
                .await?;
                deactivated += res.rows_affected() as usize;
            }
        }
        Ok((added, elsewhere, deactivated))
    }

    /// Routes the organisation's number `number_id` to its assistant, unless another of its
    /// assistants has it (Burki's rule for assignment by id; moving a number takes an
    /// unassignment first or `PATCH`).
    pub async fn assign_number_by_id(
        &self,
        org_id: i64,
        assistant_id: i64,
        number_id: i64,
    ) -> Result<NumberAssignment, StoreError> {
        if !self.assistant_in_org(org_id, assistant_id).await? {
            return Ok(NumberAssignment::NotFound);
        }
        let row = sqlx::query(concat!(
            "UPDATE phone_numbers SET assistant_id = $3, updated_at = $4 \
             WHERE id = $1 AND organization_id = $2 \
             AND (assistant_id IS NULL OR assistant_id = $3) RETURNING ",
            number_cols!()
        ))
        .bind(number_id)
        .bind(org_id)
        .bind(assistant_id)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = row {
            return Ok(NumberAssignment::Assigned(number_from_row(&row)?));
        }
        Ok(match self.get_org_number(org_id, number_id).await? {
            Some(PhoneNumberRow {
                assistant_id: Some(other),
                ..
            }) => NumberAssignment::HeldByOtherAssistant(other),
            _ => NumberAssignment::NotFound,
        })
    }

    /// Stops routing number `number_id` to the assistant; `false` if the assistant (of this
    /// organisation) did not have it.
    pub async fn unassign_number_by_id(
        &self,
        org_id: i64,
        assistant_id: i64,
        number_id: i64,
    ) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "UPDATE phone_numbers SET assistant_id = NULL, updated_at = $4 \
             WHERE id = $1 AND organization_id = $2 AND assistant_id = $3",
        )
        .bind(number_id)
        .bind(org_id)
        .bind(assistant_id)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() > 0)
    }

    /// Applies `patch` to the organisation's number; `NotFound` for a number or assistant that
    /// is not the organisation's.
    pub async fn update_number(
        &self,
        org_id: i64,
        number_id: i64,
        patch: &NumberPatch,
    ) -> Result<PhoneNumberRow, StoreError> {
        let Some(current) = self.get_org_number(org_id, number_id).await? else {
            return Err(StoreError::NotFound);
        };
        if let Some(Some(assistant)) = patch.assistant_id
            && !self.assistant_in_org(org_id, assistant).await?
        {
            return Err(StoreError::NotFound);
        }
        let friendly = match &patch.friendly_name {
            Some(v) => v.clone(),
            None => current.friendly_name.clone(),
        };
        let assistant = patch.assistant_id.unwrap_or(current.assistant_id);
        let countries = match &patch.allowed_country_codes {
            Some(v) => v.clone(),
            None => current.allowed_country_codes.clone(),
        };
        let countries = countries.map(|c| serde_json::to_string(&c)).transpose()?;
        let row = sqlx::query(concat!(
            "UPDATE phone_numbers SET friendly_name = $3, assistant_id = $4, \
             allowed_country_codes = $5, updated_at = $6 \
             WHERE id = $1 AND organization_id = $2 RETURNING ",
            number_cols!()
        ))
        .bind(number_id)
        .bind(org_id)
        .bind(friendly)
        .bind(assistant)
        .bind(countries)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => number_from_row(&row),
            None => Err(StoreError::NotFound),
        }
    }

    /// Records Twilio's SID and name of a number just proven to be in the organisation's
    /// account (assignment by number); our own name, when set, wins.
    pub async fn set_number_twilio_details(
        &self,
        org_id: i64,
        number: &str,
        details: &SyncedNumber,
        friendly_name: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE phone_numbers SET twilio_sid = $3, capabilities = $4, is_active = TRUE, \
             friendly_name = COALESCE($5, friendly_name, $6) \
             WHERE number = $1 AND organization_id = $2",
        )
        .bind(number)
        .bind(org_id)
        .bind(&details.twilio_sid)
        .bind(serde_json::to_string(&details.capabilities)?)
        .bind(friendly_name)
        .bind(&details.friendly_name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn assistant_in_org(&self, org_id: i64, assistant_id: i64) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("SELECT id FROM assistants WHERE id = $1 AND organization_id = $2")
                .bind(assistant_id)
                .bind(org_id)
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
    }
}
