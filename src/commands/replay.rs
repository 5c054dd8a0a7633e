//! `switchboard replay CALL_ID --org NAME [--set PATH=VALUE]… [--json]`: re-runs a recorded
//! call through the call core (see `switchboard_server::replay`) and prints whether it
//! reproduced its decisions, and the timeline — the original beside the what-if when settings
//! were changed.

use anyhow::{Context, bail};
use switchboard_server::config::Settings;
use switchboard_server::recording_storage::RecordingStorage;
use switchboard_server::replay::replay_call;
use switchboard_server::serve;

use crate::cli::ReplayArgs;

/// Loads the organisation's call trace, replays it and prints the result; fails when the exact
/// replay did not reproduce the recorded decisions.
pub async fn run(settings: &Settings, args: &ReplayArgs) -> anyhow::Result<()> {
    let org = args.org.trim();
    anyhow::ensure!(!org.is_empty(), "--org must not be empty");
    let store = serve::open_store(settings).await?;
    let storage = RecordingStorage::from_settings(&settings.recordings)
        .context("opening the recordings' storage, where call traces are kept")?;
    let report = async {
        let org_id = store
            .get_organization_by_name(org)
            .await
            .with_context(|| format!("looking up organisation {org:?}"))?
            .with_context(|| format!("no organisation named {org:?}"))?
            .id;
        replay_call(&store, &storage, org_id, args.call_id, args.sets.clone())
            .await
            .with_context(|| format!("replaying call {}", args.call_id))
    }
    .await;
    store.close().await;
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for c in &report.changes {
            println!("what if {} = {} (was {})", c.path, c.to, c.from);
        }
        print!("{}", report.side_by_side);
    }
    if !report.reproduced {
        bail!(
            "the replay did not reproduce the recorded decisions (the engine decides differently \
             now than when the call was recorded)"
        );
    }
    Ok(())
}
