//! Coffer client library.
//!
//! An async HTTPS client for a Coffer cluster: it speaks the operator API
//! (`/v1/sys/...`) and the Key Vault secrets API, and fails over between the
//! configured nodes on connection errors, timeouts and `503` answers while
//! keeping the same `x-ms-client-request-id`, which the server uses as the
//! idempotency key of writes.
//!
//! ```no_run
//! # async fn demo() -> Result<(), coffer_client::ClientError> {
//! let client = coffer_client::Client::from_env()?;
//! let secret = client.secrets().get("db-password", None).await?;
//! # let _ = secret; Ok(()) }
//! ```

mod config;
pub mod custody;
mod error;
pub mod load;
pub mod seal_migrate;
pub mod secrets;
pub mod sys;
mod transport;

pub use config::{parse_endpoints, ClientConfig};
pub use error::ClientError;
pub use secrets::Secrets;
pub use sys::Sys;
pub use transport::{Client, Request, Response};

/// The Key Vault `api-version` this client sends.
pub const KEY_VAULT_API_VERSION: &str = "2026-04-01";

/// Header carrying the per-request id (idempotency key of writes).
pub const REQUEST_ID_HEADER: &str = "x-ms-client-request-id";
