//! Seal migration (`/v1/sys/seal-migrate/…`): Shamir ↔ pkcs11, authorised
//! by a quorum of shares. Like every ceremony it lives on one node, so
//! every call goes to the pinned (or first) endpoint.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::sys::{ok, Sys};
use crate::{ClientError, Request};

/// Progress and outcome of a seal migration.
///
/// ```
/// use coffer_client::seal_migrate::SealMigrateBody;
///
/// let body: SealMigrateBody = serde_json::from_str(r#"{
///     "started": true, "nonce": "0d9c8b7a-6f5e-4d3c-9b2a-1f0e9d8c7b6a",
///     "target": "pkcs11", "progress": 1, "required": 3
/// }"#).unwrap();
/// assert_eq!(body.target.as_deref(), Some("pkcs11"));
/// assert_eq!(body.required - body.progress, 2); // shares still needed
/// assert!(!body.complete);
/// ```
///
/// A whole migration, one share per holder:
///
/// ```no_run
/// # async fn demo(client: coffer_client::Client, shares: Vec<String>) -> Result<(), coffer_client::ClientError> {
/// let sys = client.sys().pinned(0);
/// let started = sys.seal_migrate_init("pkcs11").await?;
/// let nonce = started.nonce.unwrap_or_default();
/// for share in &shares {
///     if sys.seal_migrate_update(&nonce, share).await?.complete {
///         break;
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct SealMigrateBody {
    /// A migration is in progress on the node.
    pub started: bool,
    /// The ceremony's nonce.
    pub nonce: Option<String>,
    /// The seal type migrated to (`pkcs11` or `shamir`).
    pub target: Option<String>,
    /// Shares submitted so far.
    pub progress: u8,
    /// Shares needed.
    pub required: u8,
    /// The migration is done: the new seal type is active.
    pub complete: bool,
}

impl Sys<'_> {
    /// `POST /v1/sys/seal-migrate/init` (needs a token): start migrating to
    /// `target` (`pkcs11` or `shamir`).
    pub async fn seal_migrate_init(&self, target: &str) -> Result<SealMigrateBody, ClientError> {
        let req = Request::post("/v1/sys/seal-migrate/init").json(&json!({ "target": target }))?;
        ok(self.local(req).await?)?.json()
    }

    /// `GET /v1/sys/seal-migrate/init`: progress.
    pub async fn seal_migrate_status(&self) -> Result<SealMigrateBody, ClientError> {
        ok(self
            .local(Request::get("/v1/sys/seal-migrate/init"))
            .await?)?
        .json()
    }

    /// `POST /v1/sys/seal-migrate/update`: one share (unseal shares to
    /// pkcs11, recovery shares to Shamir).
    pub async fn seal_migrate_update(
        &self,
        nonce: &str,
        key: &str,
    ) -> Result<SealMigrateBody, ClientError> {
        let req = Request::post("/v1/sys/seal-migrate/update")
            .json(&json!({ "nonce": nonce, "key": key }))?;
        ok(self.local(req).await?)?.json()
    }

    /// `POST /v1/sys/seal-migrate/cancel` (needs a token).
    pub async fn seal_migrate_cancel(&self, nonce: &str) -> Result<(), ClientError> {
        let req = Request::post("/v1/sys/seal-migrate/cancel").json(&json!({ "nonce": nonce }))?;
        ok(self.local(req).await?).map(drop)
    }
}
