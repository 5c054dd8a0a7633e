//! The Organisation pages (`/console/org`): API keys, provider keys and Twilio credentials
//! (write-only secrets). Its routes are registered here and merged by `console::router`; the
//! navigation already links [`crate::console::layout::Nav::Organisation`].

use axum::Router;

use crate::state::AppState;

/// The Organisation pages' routes (none are registered yet: the pages are built separately).
pub fn routes() -> Router<AppState> {
    Router::new()
}
