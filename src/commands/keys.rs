//! `switchboard keys list|create|revoke|rotate --org NAME`: API-key management from the
//! command line (the REST API for keys comes later).
//!
//! A new key (from `create` or `rotate`) goes to stdout alone, so scripts can capture it; the
//! explanation goes to stderr. Only a hash is stored: the key cannot be shown again. Revoking
//! takes effect on the next request (keys are looked up on every request; nothing caches
//! them).

use anyhow::{Context, bail};
use switchboard_server::config::Settings;
use switchboard_server::serve;
use switchboard_store::{ApiKeyInfo, Store, ms_to_rfc3339};

use crate::cli::{KeysCreateArgs, KeysIdArgs, KeysListArgs};

/// Creates the organisation if needed, then a new key for it, and prints the key.
pub async fn create(settings: &Settings, args: &KeysCreateArgs) -> anyhow::Result<()> {
    let org = org_name(&args.org)?;
    let store = serve::open_store(settings).await?;
    let org_id = store
        .ensure_organization(org)
        .await
        .with_context(|| format!("creating organisation {org:?}"))?
        .id;
    let created = store.create_api_key(org_id, args.name.as_deref()).await;
    store.close().await;
    let (info, key) = created.context("creating the API key")?;
    println!("{key}");
    eprintln!(
        "Created API key {} ({}…) for organisation {org:?} (id {org_id}). It is shown only this \
         once: store it now. Use it as `Authorization: Bearer <key>`.",
        info.id, info.prefix
    );
    Ok(())
}

/// Prints the organisation's keys as a table, oldest first.
pub async fn list(settings: &Settings, args: &KeysListArgs) -> anyhow::Result<()> {
    let org = org_name(&args.org)?;
    let store = serve::open_store(settings).await?;
    let keys = async {
        let org_id = existing_org(&store, org).await?;
        store.list_api_keys(org_id).await.context("listing keys")
    }
    .await;
    store.close().await;
    print!("{}", table(&keys?));
    Ok(())
}

/// Revokes one key of the organisation.
pub async fn revoke(settings: &Settings, args: &KeysIdArgs) -> anyhow::Result<()> {
    let org = org_name(&args.org)?;
    let store = serve::open_store(settings).await?;
    let revoked = async {
        let org_id = existing_org(&store, org).await?;
        store
            .revoke_api_key(org_id, args.id)
            .await
            .context("revoking the key")
    }
    .await;
    store.close().await;
    if !revoked? {
        bail!(
            "organisation {org:?} has no active API key with id {}",
            args.id
        );
    }
    eprintln!(
        "Revoked API key {} of organisation {org:?}; it no longer works.",
        args.id
    );
    Ok(())
}

/// Replaces one key of the organisation and prints the new key.
pub async fn rotate(settings: &Settings, args: &KeysIdArgs) -> anyhow::Result<()> {
    let org = org_name(&args.org)?;
    let store = serve::open_store(settings).await?;
    let rotated = async {
        let org_id = existing_org(&store, org).await?;
        store
            .rotate_api_key(org_id, args.id)
            .await
            .context("rotating the key")
    }
    .await;
    store.close().await;
    let Some((info, key)) = rotated? else {
        bail!(
            "organisation {org:?} has no active API key with id {}",
            args.id
        );
    };
    println!("{key}");
    eprintln!(
        "API key {} is revoked; its replacement is key {} ({}…), shown only this once: store it \
         now.",
        args.id, info.id, info.prefix
    );
    Ok(())
}

fn org_name(raw: &str) -> anyhow::Result<&str> {
    let org = raw.trim();
    anyhow::ensure!(!org.is_empty(), "--org must not be empty");
    Ok(org)
}

async fn existing_org(store: &Store, org: &str) -> anyhow::Result<i64> {
    match store
        .get_organization_by_name(org)
        .await
        .with_context(|| format!("looking up organisation {org:?}"))?
    {
        Some(found) => Ok(found.id),
        None => bail!("no organisation named {org:?}"),
    }
}

/// One line per key under a header; `-` for an empty cell. Columns are separated by at least
/// two spaces so names with single spaces stay readable.
fn table(keys: &[ApiKeyInfo]) -> String {
    let header = [
        "ID",
        "PREFIX",
        "NAME",
        "ROLE",
        "CREATED",
        "LAST_USED",
        "REVOKED",
    ]
    .map(String::from);
    let opt_time = |ms: Option<i64>| ms.map_or_else(|| "-".to_owned(), ms_to_rfc3339);
    let rows: Vec<[String; 7]> = std::iter::once(header)
        .chain(keys.iter().map(|k| {
            [
                k.id.to_string(),
                k.prefix.clone(),
                k.label
                    .clone()
                    .filter(|l| !l.is_empty())
                    .unwrap_or_else(|| "-".to_owned()),
                k.role.as_str().to_owned(),
                ms_to_rfc3339(k.created_at_ms),
                opt_time(k.last_used_at_ms),
                opt_time(k.revoked_at_ms),
            ]
        }))
        .collect();
    let mut widths = [0usize; 7];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}
