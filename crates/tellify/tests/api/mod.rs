//! End-to-end tests of the HTTP API against the real router, worker and an on-disk SQLite
//! store, with an injected clock. One module per area; `crate::helpers` has `spawn_app`.

mod auth_and_errors;
mod connections;
mod event_types;
mod filter_budget;
mod filters;
mod input_warnings;
mod lifecycle;
mod limits;
mod notify;
mod outbound;
mod passwords;
mod people;
mod route_table;
pub(crate) mod stream;
mod token_security;
mod use_cases;
