//! Domain logic: vaults, secrets (later keys, certificates). Knows nothing of HTTP.

pub mod store;
