//! Identity: the cluster's tenant, its principals (applications, users,
//! groups), their credentials, the token-signing keys, and the minting and
//! verification of access tokens. Knows nothing of HTTP: `api::identity`
//! renders it as OIDC discovery, JWKS and the OAuth token endpoint.
//!
//! Everything lives in the replicated store under `idn/` and is therefore
//! barrier-encrypted like every other value; principals are cluster-wide,
//! not per vault.

pub mod credentials;
pub mod grants;
pub mod lockout;
pub mod principals;
pub mod sessions;
pub mod signing;
pub mod totp;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::cas::{decode, encode, write, Plan};
use super::clock::{system_clock, Clock};
use super::error::EngineError;
use super::store::{Store, StoreError};

pub use principals::{App, Group, Kind, Principal, User};
pub use signing::{
    AccessClaims, Audience, Proof, Rejected, TokenRequest, VerifiedToken, VerifyError,
};

/// The tenant alias the Azure SDKs treat as a single-tenant authority.
pub const ADFS_TENANT: &str = "adfs";

/// Storage key of the tenant record.
const TENANT_KEY: &[u8] = b"idn/tenant";

/// Why an identity operation failed. Messages never carry a secret,
/// password, code or token.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// No such principal (or credential).
    #[error("{0} was not found")]
    NotFound(String),
    /// A principal of that kind already has this name.
    #[error("{0} already exists")]
    Exists(String),
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The credentials were wrong, or the principal is disabled or unknown.
    /// Deliberately vague: the caller learns nothing about which.
    #[error("{0}")]
    InvalidCredentials(String),
    /// Too many failed attempts: refused until the given Unix second.
    #[error("too many failed sign-in attempts; try again later")]
    LockedOut {
        /// When the lockout ends.
        until: u64,
    },
    /// The user has MFA enrolled and the grant cannot carry a second factor.
    #[error("multi-factor authentication is required for this user")]
    MfaRequired,
    /// The identity store has not been set up yet (no tenant).
    #[error("the identity tenant has not been created yet")]
    NoTenant,
    /// Storage, CAS or encoding failure.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<StoreError> for IdentityError {
    fn from(e: StoreError) -> Self {
        IdentityError::Engine(EngineError::Store(e))
    }
}

/// The cluster's one tenant: a GUID fixed when the identity store is first
/// used, also reachable by its configured name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// Tenant GUID (the `tid` claim).
    pub id: String,
    /// Human name (`tenant` of the node config when it was created).
    pub name: String,
    /// Unix seconds.
    pub created: u64,
}

impl Tenant {
    /// Whether a path segment names this tenant: its GUID or name (any
    /// case), or `adfs`. The Azure SDKs treat the tenant `adfs` as a
    /// single-tenant authority (no instance discovery, no tenant
    /// cross-check), which lets `DefaultAzureCredential` work from
    /// environment variables alone.
    pub fn is_named_by(&self, segment: &str) -> bool {
        segment.eq_ignore_ascii_case(&self.id)
            || segment.eq_ignore_ascii_case(&self.name)
            || segment.eq_ignore_ascii_case(ADFS_TENANT)
    }
}

/// Principals, credentials, signing keys and tokens of the cluster's tenant.
pub struct IdentityEngine {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Clock,
    tenant_name: String,
}

impl IdentityEngine {
    /// An engine over `store`; `tenant_name` names the tenant when it is
    /// first created.
    pub fn new(store: Arc<dyn Store>, tenant_name: &str) -> Self {
        Self::with_clock(store, tenant_name, system_clock())
    }

    /// An engine with an injected clock (tests).
    pub fn with_clock(store: Arc<dyn Store>, tenant_name: &str, clock: Clock) -> Self {
        Self {
            store,
            clock,
            tenant_name: tenant_name.to_owned(),
        }
    }

    /// Current Unix seconds.
    pub(crate) fn now(&self) -> u64 {
        (self.clock)()
    }

    /// The tenant as replicated to this node, if it was created (local read,
    /// no fence: used on the request path).
    pub fn tenant(&self) -> Result<Option<Tenant>, IdentityError> {
        match self.store.get(TENANT_KEY)? {
            Some(e) => Ok(Some(decode(&e.value)?)),
            None => Ok(None),
        }
    }

    /// The tenant, created (once, cluster-wide) if absent.
    pub async fn ensure_tenant(&self) -> Result<Tenant, IdentityError> {
        if let Some(t) = self.tenant()? {
            return Ok(t);
        }
        let name = self.tenant_name.clone();
        let tenant = write(self.store.as_ref(), None, || {
            if let Some(e) = self.store.get(TENANT_KEY)? {
                return Ok(Plan::Answer(decode(&e.value)?));
            }
            let tenant = Tenant {
                id: uuid::Uuid::new_v4().to_string(),
                name: name.clone(),
                created: self.now(),
            };
            let bytes = encode(&tenant)?;
            Ok(Plan::Commit(super::store::Txn {
                compare: vec![rev(TENANT_KEY.to_vec(), 0)],
                mutations: vec![put(TENANT_KEY.to_vec(), bytes.clone())],
                result: bytes,
            }))
        })
        .await?;
        Ok(tenant)
    }

    /// The tenant named by a path segment (GUID or name), if it is ours.
    pub fn resolve_tenant(&self, segment: &str) -> Result<Option<Tenant>, IdentityError> {
        Ok(self.tenant()?.filter(|t| t.is_named_by(segment)))
    }
}

/// The comparison "`key` is still at `revision`" (0: still absent).
/// Identity records are cluster-wide, not under a vault view.
pub(crate) fn rev(key: Vec<u8>, revision: u64) -> super::store::Compare {
    super::store::Compare::Revision { key, revision }
}

/// Put `value` at `key`.
pub(crate) fn put(key: Vec<u8>, value: Vec<u8>) -> super::store::Mutation {
    super::store::Mutation::Put { key, value }
}

/// A fresh random GUID in its hyphenated lower-case form.
pub(crate) fn new_guid() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests;
