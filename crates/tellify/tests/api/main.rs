//! End-to-end tests of the HTTP API against the real router, worker and an on-disk SQLite
//! store, with an injected clock. One module per area; `helpers` has `spawn_app`.

mod helpers;

mod auth_and_errors;
mod lifecycle;
mod stream;
mod use_cases;
