//! Coffer node: server, cluster wiring, seal, engines, APIs and the CLI.

pub mod api;
pub mod cli;
pub mod cluster;
pub mod engine;
pub mod seal;
pub mod tls;
