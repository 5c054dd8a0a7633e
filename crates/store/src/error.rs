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
