//! The one error type every provider adapter returns.

use std::time::Duration;

/// Why a provider call failed; the variant decides whether a fallback or a retry makes sense.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ProviderError {
    /// The TCP/TLS/websocket connection could not be made.
    #[error("{provider}: connect failed: {message}")]
    Connect {
        /// Provider name, e.g. `deepgram`.
        provider: &'static str,
        /// Underlying error text (never contains a key).
        message: String,
    },
    /// Nothing arrived within the allowed time (connect, first byte or idle).
    #[error("{provider}: timed out after {after:?} waiting for {waiting_for}")]
    Timeout {
        /// Provider name.
        provider: &'static str,
        /// What we were waiting for, e.g. "first token".
        waiting_for: &'static str,
        /// How long we waited.
        after: Duration,
    },
    /// The provider answered with an HTTP error status (or a websocket handshake refusal).
    #[error("{provider}: HTTP {status}: {message}")]
    Http {
        /// Provider name.
        provider: &'static str,
        /// HTTP status code.
        status: u16,
        /// Error text from the body, trimmed.
        message: String,
        /// Whether trying again (or another provider) may succeed: 408, 409, 429 (not quota), 5xx.
        retryable: bool,
    },
    /// The provider sent something that does not follow its protocol.
    #[error("{provider}: protocol error: {message}")]
    Protocol {
        /// Provider name.
        provider: &'static str,
        /// What was wrong.
        message: String,
    },
    /// The provider reported an error inside an otherwise healthy stream.
    #[error("{provider}: stream error: {message}")]
    Stream {
        /// Provider name.
        provider: &'static str,
        /// Error text.
        message: String,
        /// Whether trying again may succeed.
        retryable: bool,
    },
    /// No key was configured for this provider.
    #[error("{provider}: no API key configured")]
    MissingKey {
        /// Provider name.
        provider: &'static str,
    },
    /// The configuration names something this adapter cannot do.
    #[error("{provider}: bad configuration: {message}")]
    Config {
        /// Provider name.
        provider: &'static str,
        /// What was wrong.
        message: String,
    },
    /// The outbound policy refused the provider's address (a tenant `base_url` pointing
    /// inside our network); nothing was sent.
    #[error("{provider}: connection refused by the outbound policy: {message}")]
    NotAllowed {
        /// Provider name.
        provider: &'static str,
        /// Which address is not allowed and why.
        message: String,
    },
}

impl ProviderError {
    /// Whether a fallback provider (or a retry) should be tried after this error.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProviderError::Connect { .. } | ProviderError::Timeout { .. } => true,
            ProviderError::Http { retryable, .. } | ProviderError::Stream { retryable, .. } => {
                *retryable
            }
            ProviderError::Protocol { .. } => true,
            ProviderError::MissingKey { .. }
            | ProviderError::Config { .. }
            | ProviderError::NotAllowed { .. } => false,
        }
    }

    /// The provider that failed.
    pub fn provider(&self) -> &'static str {
        match self {
            ProviderError::Connect { provider, .. }
            | ProviderError::Timeout { provider, .. }
            | ProviderError::Http { provider, .. }
            | ProviderError::Protocol { provider, .. }
            | ProviderError::Stream { provider, .. }
            | ProviderError::MissingKey { provider }
            | ProviderError::Config { provider, .. }
            | ProviderError::NotAllowed { provider, .. } => provider,
        }
    }
}
