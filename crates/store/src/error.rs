//! The one error type of the store.

/// Everything a store operation can fail with. The API layer maps these to HTTP statuses:
/// `NotFound` → 404, `Conflict` → 409, `InvalidInput` → 422, the rest → 500.
#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    /// The record does not exist, or belongs to another organisation (callers must not be able
    /// to tell the two apart).
    #[error("not found")]
    NotFound,
    /// The write would break a uniqueness rule (e.g. a phone number another organisation holds).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database URL is not `sqlite:PATH`, `sqlite::memory:` or `postgres://…`. The message
    /// never repeats the URL, which may carry a password.
    #[error("invalid database url: {0}")]
    InvalidUrl(String),
    /// An argument the store refuses to persist (e.g. an empty API key).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The database driver failed (connection, SQL, decoding).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A JSON column did not hold valid JSON, or a value could not be serialised.
    #[error("json error: {0}")]
    Serde(#[from] serde_json::Error),
    /// A stored secret could not be decrypted, or the secret key could not be loaded.
    #[error("secret: {0}")]
    Secret(#[from] crate::crypto::SecretError),
    /// Creating the SQLite file or its parent directory failed.
    #[error("io error: {0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    /// Whether the failure is the database's state rather than the request's: the connection
    /// broke or could not be made, the pool had no connection in time, the server is shutting
    /// down or out of resources, or (SQLite) another writer held the lock too long. The same
    /// request may succeed later; anything else (a constraint, a decoding error) will fail
    /// again the same way.
    pub fn is_transient(&self) -> bool {
        let StoreError::Database(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => db.code().is_some_and(|code| transient_code(&code)),
            _ => false,
        }
    }

    /// Turns a unique-constraint violation into [`StoreError::Conflict`] with `what` as message;
    /// any other error is wrapped unchanged.
    pub(crate) fn from_unique(err: sqlx::Error, what: &str) -> StoreError {
        if let sqlx::Error::Database(db) = &err
            && db.is_unique_violation()
        {
            return StoreError::Conflict(what.to_owned());
        }
        StoreError::Database(err)
    }
}

/// Whether a database error code says "try again later": PostgreSQL SQLSTATE classes 08
/// (connection exception) and 53 (insufficient resources), 57P01-57P03 (the server shutting
/// down or not yet accepting), 40001 / 40P01 (serialisation failure, deadlock); SQLite's
/// primary codes 5 (`SQLITE_BUSY`) and 6 (`SQLITE_LOCKED`), which sqlx reports as the decimal
/// extended code (its low byte is the primary code). A SQLSTATE is always five characters and
/// SQLite's extended codes stay under 10 000, so the length tells them apart.
fn transient_code(code: &str) -> bool {
    if code.len() != 5 {
        return code
            .parse::<u32>()
            .is_ok_and(|sqlite| matches!(sqlite & 0xff, 5 | 6));
    }
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(code, "57P01" | "57P02" | "57P03" | "40001" | "40P01")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_states_are_transient_and_request_faults_are_not() {
        for code in [
            "08006", "08001", "53300", "57P01", "40P01", "5", "517", "6", "262",
        ] {
            assert!(transient_code(code), "{code}");
        }
        for code in ["23505", "23503", "42P01", "19", "1", "2067", "22P02"] {
            assert!(!transient_code(code), "{code}");
        }
        assert!(StoreError::Database(sqlx::Error::PoolTimedOut).is_transient());
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(StoreError::Database(sqlx::Error::Io(io)).is_transient());
        assert!(!StoreError::Database(sqlx::Error::PoolClosed).is_transient());
        assert!(!StoreError::Database(sqlx::Error::RowNotFound).is_transient());
        assert!(!StoreError::NotFound.is_transient());
    }
}
