//! Authorization: Key Vault RBAC. Role definitions (built-in and custom),
//! role assignments (a principal or group, a role, a scope), the evaluator
//! that decides a request, and the separation-of-duties rules that govern
//! changing them. Knows nothing of HTTP: `api::akv` maps each route to its
//! data action and renders the administration API.
//!
//! Storage, all in the replicated store (barrier-encrypted):
//! `authz/a/{vault|*}/{name}` assignments, `authz/d/{vault|*}/{guid}` custom
//! roles (`*`: cluster-wide, not a valid vault name), `authz/v/{vault|*}`
//! a version key every change bumps and every change compares, so the
//! separation-of-duties checks of concurrent changes cannot interleave.
//!
//! A check fences reads first ([`AuthzEngine::decide`]): a revocation
//! committed through any node is in force on this one before it answers.

mod admin;
mod cache;
pub mod evaluate;
pub mod roles;
pub mod scope;

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::cas::decode;
use crate::clock::{system_clock, Clock};
use crate::error::EngineError;
use crate::identity::{AccessClaims, IdentityEngine, IdentityError};
use crate::store::{Store, StoreError};

pub use admin::{AssignmentFilter, AssignmentSpec, DefinitionSpec};
pub use evaluate::{Caller, Decision, Grants, Refusal};
pub use roles::{Permission, RoleDefinition, RoleType};
pub use scope::ScopePath;

/// Why an authorization operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthzError {
    /// No such assignment or role definition.
    #[error("{0} was not found")]
    NotFound(String),
    /// The change conflicts with what exists (an assignment under the same
    /// name, a role still assigned, the last holder of assignment rights).
    #[error("{0}")]
    Conflict(String),
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The caller may not make this change (separation of duties).
    #[error("{message}")]
    Forbidden {
        /// The action the caller lacks.
        action: String,
        /// Why, for the error body.
        message: String,
    },
    /// Storage, CAS or encoding failure.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<StoreError> for AuthzError {
    fn from(e: StoreError) -> Self {
        AuthzError::Engine(EngineError::Store(e))
    }
}

impl From<IdentityError> for AuthzError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::Engine(e) => AuthzError::Engine(e),
            other => AuthzError::BadRequest(other.to_string()),
        }
    }
}

/// A role assignment: `principal_id` holds `role_definition_id` at `scope`
/// of `vault` (every vault when `None`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleAssignment {
    /// Name (a GUID chosen by the client), unique per vault.
    pub name: String,
    /// The vault, or `None` for a cluster-wide assignment.
    pub vault: Option<String>,
    /// Normalised scope path inside the vault (`/`, `/keys`, `/keys/k1`).
    pub scope: String,
    /// Object id of the user, application or group.
    pub principal_id: String,
    /// GUID of the role definition.
    pub role_definition_id: String,
    /// The assignment applies only to tokens with a second factor
    /// (`amr` contains `mfa`).
    #[serde(default)]
    pub require_mfa: bool,
    /// Coffer's source-network condition: the assignment applies only to
    /// requests whose client address is in one of these ranges (canonical
    /// CIDRs, as [`crate::network::canonical_ranges`] writes them). Empty:
    /// from any address — what assignments stored before the condition
    /// existed, and every one made through the Azure API, have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_cidrs: Vec<String>,
    /// Unix seconds.
    pub created: u64,
}

impl RoleAssignment {
    /// The scope as a path. A stored scope that no longer parses covers
    /// nothing (fail closed).
    pub fn scope_path(&self) -> ScopePath {
        ScopePath::parse(&self.scope).unwrap_or_else(|_| ScopePath::nothing())
    }
}

/// Who makes a change: the root token (break-glass: no role checks) or a
/// principal, subject to separation of duties.
#[derive(Clone, Debug)]
pub enum Actor {
    /// The operator's root token.
    BreakGlass,
    /// A verified principal.
    Principal(Caller),
}

/// Role definitions and assignments of every vault.
pub struct AuthzEngine {
    store: Arc<dyn Store>,
    identity: Arc<IdentityEngine>,
    clock: Clock,
    /// Each vault's grants between changes (the request path's decisions).
    cache: cache::GrantsCache,
}

/// `*`: the storage name of the cluster-wide scope.
const CLUSTER: &str = "*";

impl AuthzEngine {
    /// An engine over `store`; `identity` resolves principals and groups.
    pub fn new(store: Arc<dyn Store>, identity: Arc<IdentityEngine>) -> Self {
        Self::with_clock(store, identity, system_clock())
    }

    /// An engine with an injected clock (tests).
    pub fn with_clock(store: Arc<dyn Store>, identity: Arc<IdentityEngine>, clock: Clock) -> Self {
        Self {
            store,
            identity,
            clock,
            cache: cache::GrantsCache::default(),
        }
    }

    /// The identity engine the callers' principals and groups come from.
    pub fn identity(&self) -> &IdentityEngine {
        &self.identity
    }

    /// The caller a verified token stands for: its `oid`, its groups (from
    /// local state: call after a fence), whether it carries `mfa`, and the
    /// client address the request came from (`addr`, as the API layer
    /// resolved it once for every check; `None`: unknown).
    pub fn caller(
        &self,
        claims: &AccessClaims,
        addr: Option<IpAddr>,
    ) -> Result<Caller, AuthzError> {
        Ok(Caller {
            oid: claims.oid.to_ascii_lowercase(),
            groups: self.identity.groups_of_local(&claims.oid)?,
            mfa: claims.amr.iter().any(|m| m == "mfa"),
            addr,
        })
    }

    /// [`Self::caller`] after a read fence (group changes are in force too).
    pub async fn fenced_caller(
        &self,
        claims: &AccessClaims,
        addr: Option<IpAddr>,
    ) -> Result<Caller, AuthzError> {
        let started = std::time::Instant::now();
        self.store.read_fence().await?;
        let fenced = started.elapsed();
        let caller = self.caller(claims, addr);
        // Where a request's time goes before its decision (no values).
        tracing::debug!(
            fence_ms = fenced.as_millis() as u64,
            groups_ms = (started.elapsed() - fenced).as_millis() as u64,
            "authorization: caller fenced and resolved"
        );
        caller
    }

    /// Decides whether the token, used from `addr`, may perform `action`
    /// at `scope` of `vault`, after a read fence: every assignment and
    /// group change committed anywhere before the call is in force.
    pub async fn decide(
        &self,
        claims: &AccessClaims,
        addr: Option<IpAddr>,
        vault: &str,
        scope: &ScopePath,
        action: &str,
    ) -> Result<Decision, AuthzError> {
        let caller = self.fenced_caller(claims, addr).await?;
        self.decide_local(&caller, vault, scope, action)
    }

    /// Decides for `caller` from local state (call after a fence).
    pub fn decide_local(
        &self,
        caller: &Caller,
        vault: &str,
        scope: &ScopePath,
        action: &str,
    ) -> Result<Decision, AuthzError> {
        let started = std::time::Instant::now();
        let grants = self.grants_cached(&vault.to_ascii_lowercase())?;
        let loaded = started.elapsed();
        let decision = grants.decide(caller, scope, action);
        tracing::debug!(
            grants_ms = loaded.as_millis() as u64,
            evaluate_ms = (started.elapsed() - loaded).as_millis() as u64,
            assignments = grants.assignments.len(),
            "authorization: grants loaded and evaluated"
        );
        Ok(decision)
    }

    /// The assignments and custom roles bearing on `vault` (cluster-wide
    /// ones only for `None`), from local state.
    pub fn grants_local(&self, vault: Option<&str>) -> Result<Grants, AuthzError> {
        let mut grants = Grants::default();
        for part in parts(vault) {
            for value in self.scan_all(&format!("authz/a/{part}/"))? {
                grants.assignments.push(decode(&value)?);
            }
            for value in self.scan_all(&format!("authz/d/{part}/"))? {
                grants.custom.push(decode(&value)?);
            }
        }
        Ok(grants)
    }

    /// Every value under `prefix`, in key order.
    fn scan_all(&self, prefix: &str) -> Result<Vec<zeroize::Zeroizing<Vec<u8>>>, AuthzError> {
        const BATCH: usize = 256;
        let mut out = Vec::new();
        let mut cursor: Option<Vec<u8>> = None;
        loop {
            let batch = self
                .store
                .scan(prefix.as_bytes(), cursor.as_deref(), BATCH)?;
            let full = batch.len() == BATCH;
            cursor = batch.last().map(|(k, _)| k.clone());
            out.extend(batch.into_iter().map(|(_, e)| e.value));
            if !full {
                return Ok(out);
            }
        }
    }

    /// Current Unix seconds.
    fn now(&self) -> u64 {
        (self.clock)()
    }
}

/// The storage names whose records bear on `vault`: the cluster's, and the
/// vault's own.
fn parts(vault: Option<&str>) -> Vec<&str> {
    let mut parts = vec![CLUSTER];
    parts.extend(vault);
    parts
}

/// `authz/a/{part}/{name}`.
fn assignment_key(part: &str, name: &str) -> Vec<u8> {
    format!("authz/a/{part}/{}", name.to_ascii_lowercase()).into_bytes()
}

/// `authz/d/{part}/{guid}`.
fn definition_key(part: &str, id: &str) -> Vec<u8> {
    format!("authz/d/{part}/{}", id.to_ascii_lowercase()).into_bytes()
}

/// `authz/v/{part}`.
fn version_key(part: &str) -> Vec<u8> {
    format!("authz/v/{part}").into_bytes()
}

#[cfg(test)]
mod evaluate_tests;
#[cfg(test)]
mod tests;
