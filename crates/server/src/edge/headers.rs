//! Security headers on every response. Nothing this server sends is meant to be rendered by a
//! browser (JSON, TwiML, Prometheus text), so the strictest settings cost nothing and blunt
//! content sniffing, framing, referrer leaks and caching of tenant data by intermediaries.
//!
//! A handler that sets one of these headers itself keeps its value.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use tower_http::set_header::SetResponseHeaderLayer;

/// `Strict-Transport-Security` sent when `server.public_url` is https: one year, this host only
/// (the operator's other subdomains are not ours to pin).
const HSTS: &str = "max-age=31536000";

/// The headers every response carries, in the order they are added.
const ALWAYS: [(HeaderName, &str); 5] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-store"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none'",
    ),
];

/// Adds the security headers to every response of `router`; `https` adds
/// `Strict-Transport-Security` (only meaningful when clients reach us over TLS).
pub fn with_security_headers<S>(mut router: Router<S>, https: bool) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    for (name, value) in ALWAYS {
        router = router.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ));
    }
    if https {
        router = router.layer(SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        ));
    }
    router
}
