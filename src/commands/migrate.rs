//! `switchboard migrate`: apply pending migrations to the configured database and exit.

use anyhow::Context;
use switchboard_server::config::{Settings, redact_url};
use switchboard_server::serve;

/// Opens the database (creating a SQLite file if needed) and applies migrations.
pub async fn run(settings: &Settings) -> anyhow::Result<()> {
    let store = serve::open_store(settings)
        .await
        .context("migration failed")?;
    store.close().await;
    eprintln!(
        "database {} is up to date",
        redact_url(&settings.database.url)
    );
    Ok(())
}
