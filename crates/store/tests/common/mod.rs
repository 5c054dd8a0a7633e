//! Test harness: runs one test body against a SQLite file, an in-memory SQLite database and
//! (when `DATABASE_URL` is a postgres URL) a fresh PostgreSQL schema that is dropped afterwards.

#![allow(dead_code)]

use std::future::Future;
use switchboard_store::Store;

/// What a test body gets: a migrated store and the URL it was opened with (to reconnect).
pub struct Ctx {
    pub store: Store,
    pub url: String,
}

/// An inbound call of organisation `org`, in progress, with no assistant; returns its id.
pub async fn in_progress_call(s: &Store, org: i64, sid: &str) -> i64 {
    s.create_call(&switchboard_store::NewCall {
        organization_id: org,
        assistant_id: None,
        call_sid: sid.into(),
        direction: "inbound".into(),
        from_number: "+15551110000".into(),
        to_number: "+15559990000".into(),
        status: switchboard_store::CallStatus::InProgress,
        metadata: serde_json::json!({}),
        stream_deadline_at_ms: None,
    })
    .await
    .expect("create call")
    .id
}

/// Connects and migrates.
pub async fn open(url: &str) -> Store {
    let store = Store::connect(url).await.expect("connect");
    store.migrate().await.expect("migrate");
    store
}

pub async fn run_sqlite_file<F, Fut>(body: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:{}", dir.path().join("nested/dir/test.db").display());
    let store = open(&url).await;
    body(Ctx {
        store: store.clone(),
        url,
    })
    .await;
    store.close().await;
}

pub async fn run_sqlite_memory<F, Fut>(body: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()>,
{
    let url = "sqlite::memory:".to_string();
    let store = open(&url).await;
    body(Ctx { store, url }).await;
}

/// The PostgreSQL base URL from `DATABASE_URL`, if it is one.
pub fn postgres_url() -> Option<String> {
    let url = std::env::var("DATABASE_URL").ok()?;
    (url.starts_with("postgres://") || url.starts_with("postgresql://")).then_some(url)
}

/// Runs the body in a fresh schema `t_<pid>_<random>` so parallel tests and runs never see each
/// other's rows; drops the schema afterwards even if the body panicked, then re-raises.
pub async fn run_postgres<F, Fut>(body: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(base) = postgres_url() else {
        eprintln!("DATABASE_URL is not a postgres URL: skipping the PostgreSQL variant");
        return;
    };
    let schema = format!("t_{}_{}", std::process::id(), rand_suffix());
    let admin = Store::connect(&base).await.expect("connect admin");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(admin.pool())
        .await
        .expect("create schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    let store = open(&url).await;
    let fut = body(Ctx {
        store: store.clone(),
        url,
    });
    let result = tokio::spawn(fut).await;
    store.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(admin.pool())
        .await
        .expect("drop schema");
    admin.close().await;
    if let Err(e) = result {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
        panic!("test task failed: {e}");
    }
}

fn rand_suffix() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{nanos:x}_{n}")
}

/// Generates, for each listed `async fn name(ctx: Ctx)`, three tests: `sqlite_file::name`,
/// `sqlite_memory::name` and `postgres::name`.
#[macro_export]
macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite_file {
            $(#[tokio::test] async fn $name() { $crate::common::run_sqlite_file(super::$name).await })*
        }
        mod sqlite_memory {
            $(#[tokio::test] async fn $name() { $crate::common::run_sqlite_memory(super::$name).await })*
        }
        mod postgres {
            $(#[tokio::test] async fn $name() { $crate::common::run_postgres(super::$name).await })*
        }
    };
}
