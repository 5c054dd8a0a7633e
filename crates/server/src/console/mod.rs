//! The web console (`/console`): server-rendered HTML pages for operators, signed in with an
//! API key.
//!
//! Pages are rendered with `maud` (compile-time checked templates that escape every value),
//! styled by one CSS file and made live by a little hand-written JavaScript; all of it is
//! embedded in the binary ([`assets`]), so the console needs no internet and no front-end
//! build. See docs/ARCHITECTURE.md, "Console".
//!
//! Layout, so page groups can be added without touching each other:
//! - [`session`]: sign-in with an API key, the `sb_session` cookie, the [`session::ConsoleUser`]
//!   extractor, sign-out;
//! - [`csrf`]: the anti-forgery check every non-GET console request passes;
//! - [`layout`]: the page shell and navigation;
//! - [`assets`]: the embedded CSS/JS, served under `/console/assets/` with long caching;
//! - one module per page group, each with `pub fn routes() -> Router<AppState>` merged below:
//!   [`live`], [`calls`], [`analytics`], [`assistants`], [`org`].
//!
//! Every console response carries the console's Content-Security-Policy (no inline script or
//! style), `X-Content-Type-Options: nosniff` and `Referrer-Policy: same-origin`.

pub mod analytics;
pub mod assets;
pub mod assistants;
pub mod calls;
pub mod csrf;
pub mod error;
pub mod fields;
pub mod latency_trend;
pub mod layout;
pub mod line_chart;
pub mod live;
pub mod org;
pub mod session;
pub mod timeline;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware;
use axum::response::Redirect;
use axum::routing::get;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::state::AppState;

/// The console's Content-Security-Policy: only this origin's scripts, styles, media and
/// connections; no framing, no `<base>`, forms post only here. `data:` images allow small
/// inline icons; nothing else may be inline.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; media-src 'self'; connect-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The console's routes, with the CSRF check and the console's response headers around them.
/// `state` is needed by the CSRF middleware (it reads the session).
pub fn router(state: AppState) -> Router<AppState> {
    let pages = Router::new()
        .route("/console", get(home))
        .route("/console/", get(home))
        .merge(session::routes())
        .merge(assets::routes())
        .merge(live::routes())
        .merge(calls::routes())
        .merge(analytics::routes())
        .merge(assistants::routes())
        .merge(org::routes())
        .layer(middleware::from_fn_with_state(state, csrf::require_csrf));
    with_console_headers(pages)
}

/// `/console` → the live calls page (which sends a signed-out browser to the sign-in page).
async fn home() -> Redirect {
    Redirect::to(live::PATH)
}

fn with_console_headers(mut router: Router<AppState>) -> Router<AppState> {
    let overriding: [(HeaderName, &'static str); 3] = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
    ];
    for (name, value) in overriding {
        router = router.layer(SetResponseHeaderLayer::overriding(
            name,
            HeaderValue::from_static(value),
        ));
    }
    // Pages hold tenant data: not cached. Assets set their own long cache first.
    router.layer(SetResponseHeaderLayer::if_not_present(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    ))
}
