//! Every integration test of `crates/tellify`, built as one test binary (one link step
//! instead of one per file). One module per area; `helpers` starts an app in-process
//! (`spawn_app`), `support` has the real SMTP server and HTTP sink.

mod helpers;
mod support;

mod alerta;
mod alertmanager;
mod api;
mod browser;
mod channels;
mod cli;
mod cli_time;
mod cluster;
mod crash;
mod engine_channel;
mod insight;
mod jetstream;
mod links;
mod metric;
mod migrate_store;
mod multi_node;
mod on_postgres;
mod openapi;
mod quickstart;
mod services;
mod shutdown;
mod sources;
mod spool;
mod startup;
mod syslog;
mod telemetry;
mod tidy;
mod web;
