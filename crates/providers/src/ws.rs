//! Websocket plumbing shared by the speech adapters: vendor URL with a base-URL override, and a
//! connect with timeout, held to the outbound policy (addresses and trusted CAs), whose
//! handshake refusals become typed [`ProviderError::Http`] errors and policy refusals
//! [`ProviderError::NotAllowed`].

use std::time::Duration;

/// Read buffer of a provider websocket, in bytes (see [`connect`]).
pub(crate) const READ_BUFFER_BYTES: usize = 4 * 1024;

use switchboard_netguard::{ConnectError, OutboundPolicy};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite};
use url::Url;

use crate::error::ProviderError;

/// A client websocket (plain or TLS).
pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Longest error text kept from a handshake refusal body (bytes).
const MAX_ERROR_TEXT: usize = 300;

/// Build `<base><path>` where `base` is the configured override (scheme + host + port, optional
/// path prefix; `http`→`ws`, `https`→`wss`) or `default_base`.
pub(crate) fn ws_url(
    provider: &'static str,
    base: Option<&str>,
    default_base: &str,
    path: &str,
) -> Result<Url, ProviderError> {
    let base = base
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .unwrap_or(default_base);
    let mut url = Url::parse(base).map_err(|e| ProviderError::Config {
        provider,
        message: format!("base_url is not a URL: {e}"),
    })?;
    let scheme = match url.scheme() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        other => {
            return Err(ProviderError::Config {
                provider,
                message: format!("base_url scheme `{other}` is not http(s)/ws(s)"),
            });
        }
    };
    if url.scheme() != scheme {
        url.set_scheme(scheme).map_err(|()| ProviderError::Config {
            provider,
            message: "base_url scheme cannot be changed to a websocket scheme".into(),
        })?;
    }
    let prefix = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{prefix}{path}"));
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// Whether an HTTP status is worth retrying (or falling back on).
pub(crate) fn status_retryable(status: u16) -> bool {
    matches!(status, 408 | 409 | 429) || status >= 500
}

/// Connect to `url` with extra request headers, bounded by `timeout`, only to an address the
/// outbound `policy` allows (the TCP connection goes to the very address that was checked, so
/// DNS cannot rebind it). Header values (keys) are never put into error messages.
pub(crate) async fn connect(
    provider: &'static str,
    url: &Url,
    headers: &[(&'static str, &str)],
    error_header: Option<&'static str>,
    timeout: Duration,
    policy: &OutboundPolicy,
) -> Result<Ws, ProviderError> {
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| ProviderError::Config {
            provider,
            message: format!("bad websocket URL: {e}"),
        })?;
    for (name, value) in headers {
        let value = HeaderValue::from_str(value).map_err(|_| ProviderError::Config {
            provider,
            message: format!("header `{name}` holds characters not allowed in HTTP headers"),
        })?;
        request.headers_mut().insert(*name, value);
    }
    // tungstenite zero-fills its whole read buffer before every read (128 KiB by default);
    // provider messages are small, and with hundreds of calls that memset was a quarter of the
    // engine's CPU (perf, 200 calls). Nagle is off (`connect_tcp`): every message is
    // latency-critical.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES);
    // The handshake future is several KiB; boxed, it is freed once connected instead of being
    // carried inside every long-lived session task that may reconnect (heaptrack, 200 calls).
    let attempt = Box::pin(async {
        let tcp = policy
            .connect_tcp(url)
            .await
            .map_err(|e| connect_error(provider, e))?;
        // TLS verified against the policy's roots (public plus `[tls] extra_ca_file`), one
        // configuration shared by every connection.
        let tls = tokio_tungstenite::Connector::Rustls(policy.trust().client_config());
        tokio_tungstenite::client_async_tls_with_config(request, tcp, Some(config), Some(tls))
            .await
            .map_err(|e| handshake_error(provider, error_header, e))
    });
    match tokio::time::timeout(timeout, attempt).await {
        Err(_) => Err(ProviderError::Timeout {
            provider,
            waiting_for: "websocket handshake",
            after: timeout,
        }),
        Ok(result) => result.map(|(ws, _response)| ws),
    }
}

/// A refused or failed TCP connect as a provider error: a policy refusal is `NotAllowed`
/// (not worth retrying), anything else a retryable `Connect`.
fn connect_error(provider: &'static str, e: ConnectError) -> ProviderError {
    match e {
        ConnectError::NotAllowed(refused) => ProviderError::NotAllowed {
            provider,
            message: refused.to_string(),
        },
        other => ProviderError::Connect {
            provider,
            message: other.to_string(),
        },
    }
}

/// A failed TLS or websocket handshake; an HTTP refusal keeps its status and error text.
fn handshake_error(
    provider: &'static str,
    error_header: Option<&'static str>,
    e: tungstenite::Error,
) -> ProviderError {
    match e {
        tungstenite::Error::Http(response) => {
            let status = response.status().as_u16();
            let from_header = error_header
                .and_then(|h| response.headers().get(h))
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let from_body = response
                .body()
                .as_deref()
                .map(error_text_from_body)
                .filter(|t| !t.is_empty());
            let message = from_header.or(from_body).unwrap_or_else(|| {
                response
                    .status()
                    .canonical_reason()
                    .unwrap_or("handshake refused")
                    .to_owned()
            });
            ProviderError::Http {
                provider,
                status,
                message: truncate(message),
                retryable: status_retryable(status),
            }
        }
        e => ProviderError::Connect {
            provider,
            message: e.to_string(),
        },
    }
}

/// The most useful text of an error body: a JSON `message`/`detail.message`/`err_msg`/`error`
/// field when there is one, else the body itself.
pub(crate) fn error_text_from_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) {
        let candidates = [
            json.pointer("/detail/message"),
            json.pointer("/message"),
            json.pointer("/err_msg"),
            json.pointer("/error/message"),
            json.pointer("/error"),
            json.pointer("/detail"),
        ];
        for c in candidates.into_iter().flatten() {
            if let Some(s) = c.as_str() {
                return truncate(s.trim().to_owned());
            }
        }
    }
    truncate(text.trim().to_owned())
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_ERROR_TEXT {
        let mut cut = MAX_ERROR_TEXT;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_override_maps_scheme_and_keeps_prefix() {
        let u = ws_url(
            "x",
            Some("http://127.0.0.1:9000"),
            "wss://api.example.com",
            "/v1/listen",
        );
        assert_eq!(
            u.map(|u| u.to_string()).ok().as_deref(),
            Some("ws://127.0.0.1:9000/v1/listen")
        );
        let u = ws_url(
            "x",
            Some("https://proxy.local/dg/"),
            "wss://api.example.com",
            "/v1/listen",
        );
        assert_eq!(
            u.map(|u| u.to_string()).ok().as_deref(),
            Some("wss://proxy.local/dg/v1/listen")
        );
        let u = ws_url("x", None, "wss://api.example.com", "/v1/speak");
        assert_eq!(
            u.map(|u| u.to_string()).ok().as_deref(),
            Some("wss://api.example.com/v1/speak")
        );
        assert!(ws_url("x", Some("ftp://h"), "wss://a", "/p").is_err());
        assert!(ws_url("x", Some("not a url"), "wss://a", "/p").is_err());
    }

    #[test]
    fn error_text_prefers_json_message() {
        assert_eq!(
            error_text_from_body(br#"{"detail":{"status":"x","message":"bad key"}}"#),
            "bad key"
        );
        assert_eq!(error_text_from_body(b"  plain  "), "plain");
        assert!(status_retryable(429) && status_retryable(503) && !status_retryable(401));
    }
}
