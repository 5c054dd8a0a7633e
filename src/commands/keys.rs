//! `switchboard keys create --org NAME [--label L]`: create an API key and print it once.
//!
//! The key goes to stdout alone (so scripts can capture it); the explanation goes to stderr.
//! Only a hash is stored: the key cannot be shown again.

use anyhow::Context;
use switchboard_server::config::Settings;
use switchboard_server::serve;

use crate::cli::KeysCreateArgs;

/// Creates the organisation if needed, then a new key for it, and prints the key.
pub async fn create(settings: &Settings, args: &KeysCreateArgs) -> anyhow::Result<()> {
    let org = args.org.trim();
    anyhow::ensure!(!org.is_empty(), "--org must not be empty");
    let store = serve::open_store(settings).await?;
    let org_id = store
        .ensure_organization(org)
        .await
        .with_context(|| format!("creating organisation {org:?}"))?
        .id;
    let (_info, key) = store
        .create_api_key(org_id, args.label.as_deref())
        .await
        .context("creating the API key")?;
    store.close().await;
    println!("{key}");
    eprintln!(
        "Created an API key for organisation {org:?} (id {org_id}). It is shown only this once: \
         store it now. Use it as `Authorization: Bearer <key>`."
    );
    Ok(())
}
