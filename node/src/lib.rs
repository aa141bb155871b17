//! Coffer node: server, cluster wiring, seal, engines, APIs and the CLI.

pub mod agent;
pub mod alerts;
pub mod api;
pub mod audit;

// The library crates, under the module names the node has always used.
pub use coffer_crypto as crypto;
pub use coffer_engine as engine;
pub use coffer_seal as seal;

pub mod cli;
pub mod cluster;
pub mod config;
pub mod config_server;
pub mod error_chain;
pub mod files;
pub mod hardening;
pub mod http_limits;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod operator;
pub mod server;
pub mod tls;
