//! The console's CSS and JavaScript, embedded in the binary and served under
//! `/console/assets/{name}`.
//!
//! Pages link each asset as `/console/assets/{name}?v={version}`, where the version is the
//! first 16 hex digits of the SHA-256 of its content. A request naming the current version is
//! answered `Cache-Control: public, max-age=31536000, immutable` (a new build changes the URL,
//! so browsers never use a stale copy); any other request gets `no-cache`.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::{Path, Query};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::state::AppState;

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// File name in URLs (`/console/assets/{name}`).
    pub name: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its content.
    pub bytes: &'static [u8],
    version: LazyLock<String>,
}

impl Asset {
    /// The content version: the first 16 hex digits of the content's SHA-256.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The URL pages link: path plus `?v=` version, cacheable for a year.
    pub fn url(&self) -> String {
        format!("/console/assets/{}?v={}", self.name, self.version())
    }
}

fn content_version(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    hex::encode(&digest[..8])
}

macro_rules! asset {
    ($name:literal, $content_type:literal) => {
        Asset {
            name: $name,
            content_type: $content_type,
            bytes: include_bytes!(concat!("assets/", $name)),
            version: LazyLock::new(|| content_version(include_bytes!(concat!("assets/", $name)))),
        }
    };
}

/// The one stylesheet.
pub static CONSOLE_CSS: Asset = asset!("console.css", "text/css; charset=utf-8");
/// Shared script of every signed-in page: CSRF header for fetches, small DOM helpers.
pub static APP_JS: Asset = asset!("app.js", "text/javascript; charset=utf-8");
/// The live calls page (EventSource, transcripts, latency waterfalls).
pub static LIVE_JS: Asset = asset!("live.js", "text/javascript; charset=utf-8");
/// One call's page (timeline hover details, the what-if replay form).
pub static CALLS_JS: Asset = asset!("calls.js", "text/javascript; charset=utf-8");

/// Every served asset. Add new ones here (and as a `static` above).
pub static ALL: [&Asset; 4] = [&CONSOLE_CSS, &APP_JS, &LIVE_JS, &CALLS_JS];

/// `GET /console/assets/{name}`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/console/assets/{name}", get(serve))
}

/// Query of an asset request.
#[derive(Debug, Deserialize)]
pub struct VersionQuery {
    /// The content version the page linked.
    v: Option<String>,
}

async fn serve(Path(name): Path<String>, Query(query): Query<VersionQuery>) -> Response {
    let Some(asset) = ALL.iter().find(|a| a.name == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let cache = if query.v.as_deref() == Some(asset.version()) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        asset.bytes,
    )
        .into_response()
}
