//! After a live restore (`cluster::live_restore`): a node whose in-memory
//! keys no longer match the restored seal records seals itself.
//!
//! A restore puts back the snapshot's keyring record. A node that kept the
//! keyring it unsealed with could go on encrypting under a term the
//! restored record does not hold — data no node could read after its next
//! restart. Revisions only grow, except when a restore puts an older
//! record back, so a keyring record whose revision went down is the sign:
//! the node seals, and unseals again from the restored records (by itself
//! with the pkcs11 seal; with the shares of the snapshot's time otherwise).

use std::sync::Arc;
use std::time::Duration;

use super::Operator;
use crate::seal::KEYRING_KEY;

/// How often a node compares the keyring record's revision.
const WATCH_EVERY: Duration = Duration::from_secs(1);

impl Operator {
    /// Runs until the process ends; see the module documentation.
    pub async fn watch_restores(self: Arc<Self>) {
        let mut seen: Option<u64> = None;
        loop {
            tokio::time::sleep(WATCH_EVERY).await;
            if self.seal.is_sealed() {
                seen = None;
                continue;
            }
            let Ok(Some(record)) = self.node.get_raw(KEYRING_KEY) else {
                continue;
            };
            if seen.is_some_and(|s| record.revision < s) {
                tracing::warn!(
                    event = "seal.sealed_after_restore",
                    revision = record.revision,
                    "the keyring record was restored from a snapshot: sealing this node; it \
                     unseals again from the restored records"
                );
                // Not `seal()`: a pkcs11-sealed node unseals itself again.
                self.seal.seal();
                self.engines.clear_on_seal();
                seen = None;
                continue;
            }
            seen = Some(seen.map_or(record.revision, |s| s.max(record.revision)));
        }
    }
}
