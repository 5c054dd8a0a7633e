//! Process-wide setup done once at start: the tracing subscriber and the TLS crypto provider.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, LoggingSettings};

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `RUST_LOG` or `logging.filter` is not valid EnvFilter syntax.
    #[error("invalid log filter {filter:?}: {reason}")]
    Filter {
        /// The rejected directive string.
        filter: String,
        /// The parser's explanation.
        reason: String,
    },
}

/// Installs the global tracing subscriber writing to stderr (stdout stays free for command
/// output such as a freshly created API key). `RUST_LOG`, when set, replaces `logging.filter`.
/// A second call (tests, embedding) leaves the first subscriber in place and succeeds.
pub fn init_tracing(settings: &LoggingSettings) -> Result<(), TelemetryError> {
    let filter_text = std::env::var("RUST_LOG")
        .ok()
        .filter(|value| !value.trim().is_empty())
        .unwrap_or_else(|| settings.filter.clone());
    let filter = EnvFilter::try_new(&filter_text).map_err(|err| TelemetryError::Filter {
        filter: filter_text.clone(),
        reason: err.to_string(),
    })?;
    let registry = tracing_subscriber::registry().with(filter);
    // Colours only on a terminal: log files and collectors get plain text.
    let ansi = std::io::stderr().is_terminal();
    let result = match settings.format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(ansi)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    // Err only means a subscriber is already installed, which is fine.
    let _ = result;
    Ok(())
}

/// Installs rustls' `ring` crypto provider as the process default, so every TLS client
/// (providers, webhooks, PostgreSQL) uses ring and never needs aws-lc. Idempotent: a provider
/// already installed (by an earlier call or a library) is left as it is.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
