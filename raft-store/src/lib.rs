//! Durable openraft storage for Coffer on redb.

pub mod types;

pub use types::*;
