//! tellify: events in, subscriptions, handlers, alerts out.
//!
//! This crate is the binary and its IO edges: configuration, the HTTP API, the worker that
//! runs the engine, and the CLI. The engine itself (`tellify-engine`) is pure; storage
//! lives behind `tellify-store`.

pub mod api;
pub mod app;
pub mod auth;
pub mod backoff;
pub mod channels;
pub mod cli;
pub mod clock;
pub mod config;
pub mod data_lock;
pub mod event_types;
pub mod eventlog;
pub mod export;
pub mod filter_budget;
pub mod ingest;
pub mod lease;
pub mod notify;
pub mod outbound;
pub mod pollers;
pub mod secrets;
pub mod server;
pub mod services;
pub mod sources;
pub mod stream;
pub mod telemetry;
pub mod web;
pub mod worker;
