//! The Assistants pages (`/console/assistants`): list, create, duplicate and edit assistant
//! records. Its routes are registered here and merged by `console::router`; the navigation
//! already links [`crate::console::layout::Nav::Assistants`].

use axum::Router;

use crate::state::AppState;

/// The Assistants pages' routes (none are registered yet: the pages are built separately).
pub fn routes() -> Router<AppState> {
    Router::new()
}
