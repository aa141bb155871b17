//! Coffer node: server, cluster wiring, seal, engines, APIs and the CLI.

pub mod api;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod crypto;
pub mod engine;
pub mod error_chain;
pub mod files;
pub mod hardening;
pub mod http_limits;
pub mod listener;
pub mod logging;
pub mod operator;
pub mod seal;
pub mod server;
pub mod tls;
