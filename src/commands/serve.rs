//! `switchboard serve`: start the server and run until SIGTERM/SIGINT, then drain.

use anyhow::Context;
use switchboard_server::config::Settings;
use switchboard_server::serve::{self, StartOptions};

/// Environment variable holding an API key to install for organisation `default` at start.
pub const BOOTSTRAP_KEY_ENV: &str = "SWITCHBOARD_BOOTSTRAP_KEY";

/// Runs the server until a shutdown signal; errors if it cannot start.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let options = StartOptions {
        bootstrap_key: std::env::var(BOOTSTRAP_KEY_ENV)
            .ok()
            .filter(|key| !key.trim().is_empty()),
    };
    let server = serve::start(settings, options)
        .await
        .context("server failed to start")?;
    let report = server.run_until(serve::shutdown_signal).await;
    if !report.drained {
        tracing::warn!(
            tasks_left = report.tasks_left,
            "exited before every live task finished"
        );
    }
    Ok(())
}
