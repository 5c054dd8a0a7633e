//! Process-wide setup done once at start: the tracing subscriber (with the OpenTelemetry span
//! export when `logging.otlp_endpoint` is set) and the TLS crypto provider.
//!
//! Every call runs inside one `call` span carrying `call_sid` and `call_id`; the call task's
//! provider, tool and recorder tasks are spawned inside it, so every line they log carries the
//! SID, and the exported trace of a call holds them all.

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
    /// `logging.otlp_endpoint` is not an `http(s)://` URL.
    #[error("invalid logging.otlp_endpoint {endpoint:?}: {reason}")]
    OtlpEndpoint {
        /// The rejected value.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An endpoint is set but this binary was built without the `otel` feature.
    #[error(
        "logging.otlp_endpoint is set but this build has no OpenTelemetry export (build with --features otel)"
    )]
    OtelNotBuilt,
    /// The OTLP exporter could not be built.
    #[error("OpenTelemetry exporter: {0}")]
    Exporter(String),
}

/// The collector URL spans go to, from `logging.otlp_endpoint`: `None` when empty; a URL with
/// no path gets OTLP/HTTP's `/v1/traces`.
pub fn otlp_endpoint(settings: &LoggingSettings) -> Result<Option<url::Url>, TelemetryError> {
    let text = settings.otlp_endpoint.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let invalid = |reason: &str| TelemetryError::OtlpEndpoint {
        endpoint: text.to_owned(),
        reason: reason.to_owned(),
    };
    let mut url = url::Url::parse(text).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid("expected http://host[:port][/path] or https://…"));
    }
    if url.path() == "/" || url.path().is_empty() {
        url.set_path("/v1/traces");
    }
    Ok(Some(url))
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
    let export = otel::layer(otlp_endpoint(settings)?, &settings.service_name)?;
    let registry = tracing_subscriber::registry().with(filter).with(export);
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

/// Sends the spans still buffered for export (at shutdown); nothing without an export.
pub fn flush() {
    otel::shutdown();
}

/// Sends the spans that ended and are still buffered, now, and keeps exporting (blocking: call
/// it off the async runtime); nothing without an export.
pub fn force_flush() {
    otel::force_flush();
}

/// Installs rustls' `ring` crypto provider as the process default, so every TLS client
/// (providers, webhooks, PostgreSQL) uses ring and never needs aws-lc. Idempotent: a provider
/// already installed (by an earlier call or a library) is left as it is.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(feature = "otel")]
mod otel;

/// Without the `otel` feature: no layer, and a set endpoint is an error rather than ignored.
#[cfg(not(feature = "otel"))]
mod otel {
    use super::TelemetryError;

    /// No export layer; an endpoint asks for what this build cannot do.
    pub fn layer(
        endpoint: Option<url::Url>,
        _service_name: &str,
    ) -> Result<Option<tracing_subscriber::layer::Identity>, TelemetryError> {
        match endpoint {
            Some(_) => Err(TelemetryError::OtelNotBuilt),
            None => Ok(None),
        }
    }

    /// Nothing to flush.
    pub fn shutdown() {}

    /// Nothing to flush.
    pub fn force_flush() {}
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::{EnvSource, Settings};

    fn logging(vars: &[(&str, &str)]) -> LoggingSettings {
        let env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::load(None, &EnvSource::Map(env), &[])
            .expect("settings")
            .logging
    }

    #[test]
    fn export_is_off_by_default() {
        let s = logging(&[]);
        assert_eq!(s.service_name, "switchboard");
        assert!(otlp_endpoint(&s).expect("valid").is_none());
    }

    #[test]
    fn endpoint_from_the_environment_gets_the_traces_path() {
        let s = logging(&[
            (
                "SWITCHBOARD_LOGGING__OTLP_ENDPOINT",
                "http://collector:4318",
            ),
            ("SWITCHBOARD_LOGGING__SERVICE_NAME", "switchboard-eu"),
        ]);
        assert_eq!(s.service_name, "switchboard-eu");
        let url = otlp_endpoint(&s).expect("valid").expect("set");
        assert_eq!(url.as_str(), "http://collector:4318/v1/traces");
        let full = logging(&[(
            "SWITCHBOARD_LOGGING__OTLP_ENDPOINT",
            "https://otel.example/custom/traces",
        )]);
        let url = otlp_endpoint(&full).expect("valid").expect("set");
        assert_eq!(url.path(), "/custom/traces");
    }

    #[test]
    fn a_bad_endpoint_is_refused() {
        for bad in ["collector:4318", "ftp://collector", "not a url"] {
            let s = logging(&[("SWITCHBOARD_LOGGING__OTLP_ENDPOINT", bad)]);
            assert!(
                matches!(otlp_endpoint(&s), Err(TelemetryError::OtlpEndpoint { .. })),
                "{bad}"
            );
        }
    }

    #[cfg(not(feature = "otel"))]
    #[test]
    fn an_endpoint_without_the_feature_is_an_error() {
        let s = logging(&[(
            "SWITCHBOARD_LOGGING__OTLP_ENDPOINT",
            "http://collector:4318",
        )]);
        let url = otlp_endpoint(&s).expect("valid");
        assert!(matches!(
            otel::layer(url, &s.service_name),
            Err(TelemetryError::OtelNotBuilt)
        ));
    }

    #[cfg(feature = "otel")]
    #[test]
    fn an_endpoint_with_the_feature_builds_a_layer() {
        let s = logging(&[("SWITCHBOARD_LOGGING__OTLP_ENDPOINT", "http://127.0.0.1:9")]);
        let url = otlp_endpoint(&s).expect("valid");
        let layer =
            otel::layer::<tracing_subscriber::Registry>(url, &s.service_name).expect("layer");
        assert!(layer.is_some());
        otel::shutdown();
    }
}
