//! Coffer client library.
//!
//! An async HTTPS client for a Coffer cluster: it speaks the operator API
//! (`/v1/sys/...`) and the Key Vault data plane — [secrets](Secrets),
//! [keys](Keys) and [certificates](Certificates) — and fails over between
//! the configured nodes on connection errors, timeouts and `503` answers.
//!
//! - **Failover and leader routing** ([`routing`]): writes go to the leader
//!   when the nodes' health answers name it, reads to the node that
//!   answered last; a failing node's breaker opens for a backoff with
//!   jitter; passes over the nodes pause 50–800 ms with jitter.
//! - **Idempotent retries**: every attempt of a request carries the same
//!   `x-ms-client-request-id`, which the cluster uses to apply a write once
//!   and answer repeats with the first result.
//! - **Deadlines**: per attempt ([`ClientConfig::timeout`]) and per request
//!   ([`ClientConfig::deadline`], [`Request::deadline`]).
//! - **Sign-in** ([`auth`]): a fixed token, or an application credential
//!   (client secret, certificate, federated token) whose tokens are fetched
//!   from the cluster's issuer and renewed before they expire.
//! - **Paging as a stream**: `list_stream` methods yield items while the
//!   next pages are fetched on demand.
//! - **Blocking facade** ([`blocking`]) for code without an async runtime.
//!
//! ```no_run
//! # async fn demo() -> Result<(), coffer_client::ClientError> {
//! let client = coffer_client::Client::from_env()?;
//! let secret = client.secrets().get("db-password", None).await?;
//! # let _ = secret; Ok(()) }
//! ```

pub mod auth;
pub mod blocking;
pub mod certificates;
mod config;
pub mod custody;
mod error;
mod http;
pub mod keys;
mod kv;
pub mod load;
pub mod routing;
pub mod seal_migrate;
pub mod secrets;
pub mod sys;
mod transport;

pub use certificates::Certificates;
pub use config::{parse_endpoints, ClientConfig};
pub use error::ClientError;
pub use keys::Keys;
pub use kv::Attributes;
pub use secrets::Secrets;
pub use sys::Sys;
pub use transport::{Client, Request, Response};

/// The Key Vault `api-version` this client sends.
pub const KEY_VAULT_API_VERSION: &str = "2026-04-01";

/// Header carrying the per-request id (idempotency key of writes).
pub const REQUEST_ID_HEADER: &str = "x-ms-client-request-id";
