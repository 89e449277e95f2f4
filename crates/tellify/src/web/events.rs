//! Dashboard pages: events (filled in by issue 11's work; see `web/mod.rs` for how a page is
//! made).

use axum::Router;

use crate::services::AppState;

/// This area's routes, merged into [`super::routes`].
pub fn routes() -> Router<AppState> {
    Router::new()
}
