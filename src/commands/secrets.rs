//! `switchboard secrets rotate`: re-encrypt every stored secret under the current key.
//!
//! Run it after setting a new `SWITCHBOARD_SECRET_KEY` with the previous key in
//! `SWITCHBOARD_SECRET_KEY_OLD` (see docs/SECURITY.md, "Secrets at rest"). It also encrypts
//! values stored in clear by a version that did not encrypt. Safe to run while servers run and
//! to run again: a value already under the current key is left alone.

use anyhow::Context;
use switchboard_server::config::{Settings, redact_url};
use switchboard_server::serve;

/// Opens the database with the configured keys and rewrites every secret not under the
/// current key; prints what it did to stderr.
pub async fn rotate(settings: &Settings) -> anyhow::Result<()> {
    let store = serve::open_store(settings).await?;
    let key_id = store
        .secret_box()
        .map(|b| b.current_key_id().to_owned())
        .unwrap_or_default();
    let report = store
        .rotate_secrets()
        .await
        .context("rotating the stored secrets")?;
    store.close().await;
    eprintln!(
        "database {}: {} secret value(s) re-encrypted under key {key_id} ({} assistant(s), {} \
         organisation(s)); every stored secret is now under that key",
        redact_url(&settings.database.url),
        report.values,
        report.assistants,
        report.organizations,
    );
    Ok(())
}
