//! HTTP APIs: Key Vault data plane (`akv`) and operator endpoints (`sys`).

pub mod akv;
