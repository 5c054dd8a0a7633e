//! What the retention sweep reads and deletes: recordings and call traces stored before a
//! cutoff, oldest first, and their rows once their files are gone. The files themselves are
//! the server's to delete (they live in its recordings' storage); the store only says where
//! they are.

use sqlx::Row;

use crate::{Store, StoreError};

/// A stored file past its retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredFile {
    /// The recording's id, or the traced call's id.
    pub id: i64,
    /// Where the file is (a local path or an `s3://` URL); `None` for a trace kept inline in
    /// its row (written before migration 0014), which has no file.
    pub location: Option<String>,
}

impl Store {
    /// Up to `limit` recordings stored before `before_ms` (unix ms), oldest first.
    pub async fn recordings_stored_before(
        &self,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<ExpiredFile>, StoreError> {
        self.stored_before(
            "SELECT id, path_or_url AS location FROM recordings WHERE created_at < $1 \
             ORDER BY created_at, id LIMIT $2",
            before_ms,
            limit,
        )
        .await
    }

    /// Deletes the recording rows `ids`; returns how many there were.
    pub async fn delete_recordings(&self, ids: &[i64]) -> Result<u64, StoreError> {
        self.delete_where_in("DELETE FROM recordings WHERE id IN ", ids, None)
            .await
    }

    /// Up to `limit` call traces stored before `before_ms` (unix ms), oldest first.
    pub async fn call_traces_stored_before(
        &self,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<ExpiredFile>, StoreError> {
        self.stored_before(
            "SELECT call_id AS id, location FROM call_traces WHERE created_at < $1 \
             ORDER BY created_at, call_id LIMIT $2",
            before_ms,
            limit,
        )
        .await
    }

    /// Runs `sql` (selecting `id` and `location`, bound to the cutoff and the limit).
    async fn stored_before(
        &self,
        sql: &'static str,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<ExpiredFile>, StoreError> {
        let rows = sqlx::query(sql)
            .bind(before_ms)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ExpiredFile {
                    id: r.try_get("id")?,
                    location: r.try_get("location")?,
                })
            })
            .collect()
    }

    /// Deletes the trace rows of calls `call_ids` that were stored before `before_ms`: a trace
    /// stored again since it was read (a newer file) keeps its row. Returns how many went.
    pub async fn delete_call_traces(
        &self,
        call_ids: &[i64],
        before_ms: i64,
    ) -> Result<u64, StoreError> {
        self.delete_where_in(
            "DELETE FROM call_traces WHERE created_at < $1 AND call_id IN ",
            call_ids,
            Some(before_ms),
        )
        .await
    }

    /// Runs `head` followed by `($n, …)` for `ids`, binding `first` as `$1` when given.
    async fn delete_where_in(
        &self,
        head: &str,
        ids: &[i64],
        first: Option<i64>,
    ) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let offset = usize::from(first.is_some());
        // `($1), ($2), …` numbered after `first`, turned into one list `($1, $2, …)`.
        let list: Vec<String> = (1..=ids.len())
            .map(|i| format!("${}", i + offset))
            .collect();
        let sql = format!("{head}({})", list.join(", "));
        // Only our own SQL and numbered placeholders are formatted in.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
        if let Some(first) = first {
            q = q.bind(first);
        }
        for id in ids {
            q = q.bind(*id);
        }
        Ok(q.execute(&self.pool).await?.rows_affected())
    }
}
