//! `switchboard providers check [--assistant ID]`: one tiny authenticated request to each
//! provider an assistant (or the environment) uses, and one table of key, model and voice
//! validity on stdout. The checks live in `switchboard_server::provider_check` (unit-tested
//! against the fakes); this only loads, runs and prints. Exits non-zero when a check fails.

use std::time::Duration;

use anyhow::{Context, bail};
use switchboard_server::config::Settings;
use switchboard_server::provider_check;
use switchboard_server::serve;

use crate::cli::ProvidersCheckArgs;

/// Resolves the targets, checks them and prints the table.
pub async fn run(settings: &Settings, args: &ProvidersCheckArgs) -> anyhow::Result<()> {
    let targets = match args.assistant {
        Some(id) => {
            let store = serve::open_store(settings).await?;
            let targets = provider_check::targets_of_assistant(&store, settings, id).await;
            store.close().await;
            targets.with_context(|| format!("loading assistant {id}"))?
        }
        None => provider_check::targets_of_environment(settings)?,
    };
    let timeout = Duration::from_secs(args.timeout.max(1));
    let rows = provider_check::check(settings, targets, timeout).await?;
    print!("{}", provider_check::table(&rows));
    let failed = rows.iter().filter(|r| r.failed()).count();
    if failed > 0 {
        bail!("{failed} of {} providers failed the check", rows.len());
    }
    Ok(())
}
