//! HTTP APIs: Key Vault data plane (`akv`), operator endpoints (`sys`),
//! the private CA's PKI endpoints (`pki`),
//! the authentication in front of them, and the router that joins them.

pub mod akv;
pub mod audit;
pub mod auth;
pub mod envelope;
pub mod identity;
pub mod pki;
pub mod router;
pub mod sys;

pub use router::{router, ApiConfig};
