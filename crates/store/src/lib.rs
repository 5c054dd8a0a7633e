//! Persistence for Switchboard: organisations, API keys, assistants, phone numbers and call
//! records (calls, transcripts, per-turn metrics, recordings, webhook deliveries, tool
//! executions), and the knowledge base's documents and chunks ([`DocumentRow`], stored
//! embeddings).
//!
//! One set of repository functions serves both backends through `sqlx::any`: SQLite (the
//! default, one file, created on first start) and PostgreSQL (several instances sharing one
//! database). Queries are checked at run time (no `DATABASE_URL` at build time), use `$1`-style
//! bind parameters and only types both backends share: BIGINT ids and unix-millisecond
//! timestamps, TEXT (JSON documents are TEXT), DOUBLE, and booleans (INTEGER on SQLite,
//! BOOLEAN on PostgreSQL; decoded by one helper). Each backend has its own migration folder,
//! embedded in the binary and chosen at run time.
//!
//! ```no_run
//! # async fn demo() -> Result<(), switchboard_store::StoreError> {
//! use switchboard_store::Store;
//! let store = Store::connect("sqlite:./data/switchboard.db").await?;
//! store.migrate().await?;
//! let org = store.ensure_organization("default").await?;
//! let (_info, key) = store.create_api_key(org.id, Some("cli")).await?;
//! let auth = store.authenticate(&key).await?.ok_or(switchboard_store::StoreError::NotFound)?;
//! let a = store
//!     .create_assistant(auth.organization_id, auth.user_id, "Support", true, &serde_json::json!({"name": "Support"}))
//!     .await?;
//! store.assign_number(auth.organization_id, a.id, "+14155550100").await?;
//! # Ok(()) }
//! ```
//!
//! Secrets: API keys are stored as their SHA-256 (hex) only. Twilio auth tokens, organisation
//! provider keys and every secret inside an assistant record must be usable, so they are stored
//! encrypted (see [`crypto`]) by a store given a [`SecretBox`] ([`Store::with_secrets`]) and
//! decrypted on read: callers see clear values and never handle ciphertext. A store without a
//! box (tests, tools that write no secrets) writes them in clear. Nothing here logs them and
//! their types redact them in `Debug`.

mod assistants;
mod call_data;
mod call_reports;
mod call_status;
mod call_traces;
mod calls;
mod console_sessions;
pub mod crypto;
mod documents;
mod error;
mod models;
mod numbers;
mod orgs;
mod retention;
mod secrets;
mod time;
mod tool_executions;

pub use call_data::{CallData, CallDataRow};
pub use call_reports::{CallActivity, StatusTotal, TurnTiming};
pub use call_status::{CallStatus, EndedReason};
pub use call_traces::{
    CallTraceRow, MAX_TRACE_BYTES, StoredTrace, deflate_trace_writer, inflate_trace,
};
pub use console_sessions::ConsoleSession;
pub use crypto::{SecretBox, SecretError, SecretKey};
pub use documents::{
    ChunkRow, ChunkVector, DocumentRow, DocumentStatus, IndexedChunk, KnowledgeStamp, NewChunk,
    NewDocument, decode_embedding, encode_embedding,
};
pub use error::StoreError;
pub use models::*;
pub use numbers::{NumberAssignment, NumberPatch, SyncedNumber};
pub use orgs::hash_api_key;
pub use retention::ExpiredFile;
pub use secrets::RotationReport;
pub use time::{ms_to_datetime, ms_to_rfc3339, now_ms, opt_ms_to_rfc3339, rfc3339_to_ms};
pub use tool_executions::{
    MAX_TOOL_RESULT_BYTES, NewToolExecution, ToolExecutionRow, ToolExecutionStatus,
};

use serde::Serialize;
use sqlx::AnyPool;
use sqlx::Row;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Migrations for SQLite, embedded at compile time.
static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");
/// Migrations for PostgreSQL, embedded at compile time.
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a connection waits on a locked SQLite database before failing, ms.
const SQLITE_BUSY_TIMEOUT_MS: u64 = 5_000;
/// How long a request waits for a free pooled connection, s.
const ACQUIRE_TIMEOUT_S: u64 = 10;

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Backend {
    /// SQLite file or in-memory database.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// Pool tuning for [`Store::connect_with`]; `Default` gives the values [`Store::connect`] uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreOptions {
    /// Maximum pooled connections. Default: 10 for PostgreSQL, 8 for a SQLite file (one writer
    /// at a time anyway), always 1 for `sqlite::memory:` (each connection would otherwise see
    /// its own empty database).
    pub max_connections: Option<u32>,
    /// How long a request waits for a pooled connection (including connecting a new one)
    /// before it fails with `PoolTimedOut`. Default: 10 s.
    pub acquire_timeout: Option<Duration>,
}

/// Handle to the database: a connection pool. Cheap to clone (an `Arc` inside); share one per
/// process.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Encrypts secrets on write and decrypts them on read; `None` stores them in clear.
    secrets: Option<std::sync::Arc<SecretBox>>,
}

impl fmt::Debug for Store {
    // Never print the URL or options: they may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .field(
                "secret_key_id",
                &self.secrets.as_ref().map(|b| b.current_key_id()),
            )
            .field("pool_size", &self.pool.size())
            .finish()
    }
}

/// A database URL, classified.
enum Target {
    /// `sqlite::memory:` (or `mode=memory`).
    SqliteMemory,
    /// A SQLite file: its path, and the URL to hand to sqlx (with `mode=rwc`).
    SqliteFile { path: PathBuf, url: String },
    /// `postgres://…` / `postgresql://…`.
    Postgres,
}

fn classify(url: &str) -> Result<Target, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Target::Postgres);
    }
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return Err(StoreError::InvalidUrl(
            "expected sqlite:PATH, sqlite::memory: or postgres://…".into(),
        ));
    };
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, params) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let memory_param = params.is_some_and(|q| q.split('&').any(|kv| kv == "mode=memory"));
    if path == ":memory:" || memory_param {
        return Ok(Target::SqliteMemory);
    }
    if path.is_empty() {
        return Err(StoreError::InvalidUrl(
            "the sqlite URL has no file path".into(),
        ));
    }
    if let Some(parent) = Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        create_private_dir_all(parent)?;
    }
    let mut url = format!("sqlite:{path}");
    match params {
        Some(q) if q.split('&').any(|kv| kv.starts_with("mode=")) => {
            url.push('?');
            url.push_str(q);
        }
        Some(q) if !q.is_empty() => {
            url.push('?');
            url.push_str(q);
            url.push_str("&mode=rwc");
        }
        _ => url.push_str("?mode=rwc"),
    }
    Ok(Target::SqliteFile {
        path: PathBuf::from(path),
        url,
    })
}

/// Creates `dir` and its missing parents readable by the owner only (0700 on Unix): the
/// database holds every tenant's calls and credentials. Existing folders keep their mode.
fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

/// Creates the SQLite file, empty (which SQLite takes as a new database), readable by the owner
/// only (0600 on Unix), unless it exists. SQLite gives its `-wal` and `-shm` files the main
/// file's mode, so they are private too. An existing file keeps its mode (the operator's
/// choice), but a group- or world-readable one is logged.
fn create_private_db_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(path)?.permissions().mode();
                if mode & 0o077 != 0 {
                    tracing::warn!(
                        mode = format!("{:o}", mode & 0o777),
                        "the SQLite database file is readable by other users; chmod 600 it"
                    );
                }
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

impl Store {
    /// Opens a pool on `url`: `sqlite:PATH` (file and parent directories created if missing;
    /// WAL journal, busy timeout), `sqlite::memory:` (one connection, lives as long as the
    /// store), or `postgres://…`. Does not migrate: call [`Store::migrate`].
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Self::connect_with(url, StoreOptions::default()).await
    }

    /// [`Store::connect`] with pool tuning.
    pub async fn connect_with(url: &str, options: StoreOptions) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let base = AnyPoolOptions::new().acquire_timeout(
            options
                .acquire_timeout
                .unwrap_or(Duration::from_secs(ACQUIRE_TIMEOUT_S)),
        );
        let (pool, backend) = match classify(url)? {
            Target::Postgres => {
                let pool = base
                    .max_connections(options.max_connections.unwrap_or(10))
                    .connect(url)
                    .await?;
                (pool, Backend::Postgres)
            }
            Target::SqliteMemory => {
                // Every new connection to `:memory:` is a new, empty database, so keep exactly
                // one connection alive for the life of the pool.
                let pool = base
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            sqlx::query("PRAGMA foreign_keys = ON")
                                .execute(&mut *conn)
                                .await?;
                            Ok(())
                        })
                    })
                    .connect("sqlite::memory:")
                    .await?;
                (pool, Backend::Sqlite)
            }
            Target::SqliteFile { path, url } => {
                create_private_db_file(&path)?;
                let pool = base
                    .max_connections(options.max_connections.unwrap_or(8))
                    // A ping before each acquire is a round trip to the connection's worker
                    // thread, and a connection to a local file cannot have gone away (at 500
                    // calls, ~170 a second of the SQLite threads' switches; PERFORMANCE.md).
                    .test_before_acquire(false)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            sqlx::query("PRAGMA journal_mode = WAL")
                                .execute(&mut *conn)
                                .await?;
                            sqlx::query("PRAGMA synchronous = NORMAL")
                                .execute(&mut *conn)
                                .await?;
                            sqlx::query("PRAGMA foreign_keys = ON")
                                .execute(&mut *conn)
                                .await?;
                            // SQLite pragmas take no bind parameters; the value is a constant.
                            sqlx::query(sqlx::AssertSqlSafe(format!(
                                "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}"
                            )))
                            .execute(&mut *conn)
                            .await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?;
                (pool, Backend::Sqlite)
            }
        };
        Ok(Store {
            pool,
            backend,
            secrets: None,
        })
    }

    /// This store, encrypting every secret it writes with `secrets` and decrypting what it reads
    /// (see [`crypto`]). Every store a server writes secrets through must have one.
    pub fn with_secrets(mut self, secrets: SecretBox) -> Store {
        self.secrets = Some(std::sync::Arc::new(secrets));
        self
    }

    /// The box secrets are encrypted with, if any.
    pub fn secret_box(&self) -> Option<&SecretBox> {
        self.secrets.as_deref()
    }

    /// The stored form of a secret: encrypted under the current key (clear without a box; the
    /// empty string, which hides nothing, stays empty).
    pub(crate) fn seal(&self, clear: &str) -> String {
        match &self.secrets {
            Some(b) if !clear.is_empty() => b.encrypt(clear),
            _ => clear.to_owned(),
        }
    }

    /// The clear value of a stored secret (a legacy clear value comes back as is).
    pub(crate) fn open(&self, stored: &str) -> Result<String, StoreError> {
        match &self.secrets {
            Some(b) => Ok(b.decrypt(stored)?),
            None if crypto::is_encrypted(stored) => Err(SecretError::NoKey.into()),
            None => Ok(stored.to_owned()),
        }
    }

    /// Applies the backend's pending migrations; running it again is a no-op.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATOR.run(&self.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATOR.run(&self.pool).await?,
        }
        Ok(())
    }

    /// Which database this store talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Round-trips a trivial query (for `/healthz` and readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes every pooled connection; later calls fail. Lets a file database be reopened
    /// cleanly (e.g. in restart tests) and flushes SQLite's WAL on shutdown.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The underlying pool, for queries this crate does not offer (tests, one-off tools).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// Reads a boolean column: PostgreSQL returns BOOLEAN, SQLite an INTEGER 0/1.
pub(crate) fn get_bool(row: &AnyRow, col: &str) -> Result<bool, sqlx::Error> {
    match row.try_get::<bool, _>(col) {
        Ok(b) => Ok(b),
        Err(_) => Ok(row.try_get::<i64, _>(col)? != 0),
    }
}

/// Reads a TEXT column holding JSON.
pub(crate) fn get_json(row: &AnyRow, col: &str) -> Result<serde_json::Value, StoreError> {
    let text: String = row.try_get(col)?;
    Ok(serde_json::from_str(&text)?)
}

/// Clamps a caller-supplied offset or limit to be non-negative.
pub(crate) fn non_negative(v: i64) -> i64 {
    v.max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_urls() {
        assert!(matches!(
            classify("postgres://u@h/db"),
            Ok(Target::Postgres)
        ));
        assert!(matches!(
            classify("postgresql://u@h/db"),
            Ok(Target::Postgres)
        ));
        assert!(matches!(
            classify("sqlite::memory:"),
            Ok(Target::SqliteMemory)
        ));
        assert!(matches!(
            classify("sqlite://:memory:"),
            Ok(Target::SqliteMemory)
        ));
        assert!(matches!(
            classify("mysql://x"),
            Err(StoreError::InvalidUrl(_))
        ));
        assert!(matches!(
            classify("sqlite:"),
            Err(StoreError::InvalidUrl(_))
        ));
        let err = classify("mysql://user:hunter2@h/db")
            .err()
            .map(|e| e.to_string());
        assert!(!err.unwrap_or_default().contains("hunter2"));
    }

    #[test]
    fn file_urls_get_create_mode() {
        let dir = std::env::temp_dir().join(format!("sb-store-unit-{}", std::process::id()));
        let path = dir.join("a.db");
        let url = format!("sqlite:{}", path.display());
        match classify(&url) {
            Ok(Target::SqliteFile { url, .. }) => assert!(url.ends_with("?mode=rwc"), "{url}"),
            _ => panic!("not a file target"),
        }
        assert!(dir.is_dir());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
