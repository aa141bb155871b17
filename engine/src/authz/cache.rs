//! The grants of each vault, kept between requests.
//!
//! Every Key Vault request is decided against all the assignments and
//! custom roles bearing on its vault. Loading them means scanning and
//! decrypting every record, which under a burst of requests costs more
//! than everything else a request does. Every change of those records
//! bumps the version keys of the parts it touches (`authz/v/{vault|*}`) in
//! the same transaction, so the revisions of the vault's version key and
//! the cluster's name exactly one set of grants: a cached set is served
//! while both revisions are unchanged, and reloaded from local state as
//! soon as either moves (a change applied on this node, from any node).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{parts, version_key, AuthzEngine, AuthzError, Grants};

/// At most this many vaults are kept; requests may name any vault (the
/// Host header), so the map must not grow with them.
const MAX_VAULTS: usize = 1024;

/// Grants per vault, each with the version-key revisions it was loaded at.
#[derive(Default)]
pub(super) struct GrantsCache {
    entries: Mutex<HashMap<String, Cached>>,
}

struct Cached {
    stamp: Vec<u64>,
    grants: Arc<Grants>,
}

impl AuthzEngine {
    /// The grants bearing on `vault` (normalised) as of this node's applied
    /// state: from the cache while no change has been applied since they
    /// were loaded, else loaded again. Call after a fence, as for
    /// [`Self::grants_local`].
    pub(super) fn grants_cached(&self, vault: &str) -> Result<Arc<Grants>, AuthzError> {
        let stamp = parts(Some(vault))
            .into_iter()
            .map(|part| {
                Ok(self
                    .store
                    .get(&version_key(part))?
                    .map_or(0, |e| e.revision))
            })
            .collect::<Result<Vec<u64>, AuthzError>>()?;
        if let Some(hit) = self.cache.get(vault, &stamp) {
            return Ok(hit);
        }
        // Loaded outside the lock: concurrent misses each load (no request
        // waits behind another's scan). What is read is at least as new as
        // `stamp`, so a later request with a newer stamp reloads.
        let grants = Arc::new(self.grants_local(Some(vault))?);
        self.cache.put(vault, stamp, grants.clone());
        Ok(grants)
    }
}

impl GrantsCache {
    fn get(&self, vault: &str, stamp: &[u64]) -> Option<Arc<Grants>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(vault)
            .filter(|c| c.stamp == stamp)
            .map(|c| c.grants.clone())
    }

    fn put(&self, vault: &str, stamp: Vec<u64>, grants: Arc<Grants>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_VAULTS && !entries.contains_key(vault) {
            entries.clear();
        }
        entries.insert(vault.to_owned(), Cached { stamp, grants });
    }
}
