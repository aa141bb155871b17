//! [`ClusterStore`]: the engines' [`Store`] on top of a [`ClusterNode`],
//! with barrier encryption of every value.

use std::sync::Arc;

use async_trait::async_trait;
use raft_store::{Mutation, Request, Txn, Versioned};
use zeroize::Zeroizing;

use super::ClusterNode;
use crate::engine::store::{Entry, Outcome, Store, StoreError};
use crate::seal::{Barrier, SealError, SealManager, KEYRING_KEY};

/// AAD of a transaction's `result` (values use their storage key).
pub const TXN_RESULT_AAD: &[u8] = b"coffer/txn-result";

/// Encrypting, replicated store for the engines.
pub struct ClusterStore {
    node: Arc<ClusterNode>,
    seal: Arc<SealManager>,
}

impl ClusterStore {
    /// A store over `node`, encrypting with `seal`'s barrier.
    pub fn new(node: Arc<ClusterNode>, seal: Arc<SealManager>) -> Self {
        Self { node, seal }
    }

    fn barrier(&self) -> Result<Arc<Barrier>, StoreError> {
        self.seal.barrier().ok_or(StoreError::Sealed)
    }

    /// Decrypts `ct`; a ciphertext from a keyring term this node has not
    /// loaded yet (a rotation replicated after unseal) triggers one reload
    /// of `sys/keyring` and a retry.
    fn decrypt(&self, aad: &[u8], ct: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        match self.barrier()?.decrypt(aad, ct) {
            Err(SealError::UnknownTerm(_)) => {
                self.reload_keyring()?;
                self.barrier()?.decrypt(aad, ct).map_err(seal_err)
            }
            other => other.map_err(seal_err),
        }
    }

    /// Refuses to serve from a state this node found damaged: the client
    /// gets a 503 and fails over to another member. Checked where every
    /// data request passes (the read fence, commits); token checks still
    /// read, so an operator can reach the repair endpoint.
    fn serving(&self) -> Result<(), StoreError> {
        match self.node.corrupt() {
            Some(reason) => Err(StoreError::Unavailable(format!(
                "this node's copy of the data is damaged and it serves none until repaired \
                 ({reason}); other members serve"
            ))),
            None => Ok(()),
        }
    }

    fn reload_keyring(&self) -> Result<(), StoreError> {
        let record = self
            .node
            .get_raw(KEYRING_KEY)?
            .ok_or_else(|| StoreError::Corrupt("keyring record missing".into()))?;
        self.seal.reload_keyring(&record.value).map_err(seal_err)
    }

    fn entry(&self, key: &[u8], v: &Versioned) -> Result<Entry, StoreError> {
        let value = self.decrypt(key, &v.value).inspect_err(|e| {
            if let StoreError::Corrupt(detail) = e {
                // A value of this node's own state that fails the barrier's
                // authentication was altered on its disk: the state cannot
                // be trusted. (Blobs from clients, such as backups, are
                // opened elsewhere and only refused.)
                self.node
                    .mark_corrupt(&format!("a stored value failed authentication ({detail})"));
            }
        })?;
        Ok(Entry {
            revision: v.revision,
            value,
        })
    }

    fn encrypt_txn(&self, mut txn: Txn) -> Result<Txn, StoreError> {
        let barrier = self.barrier()?;
        for m in &mut txn.mutations {
            if let Mutation::Put { key, value } = m {
                // Wipe the plaintext as it is replaced by its ciphertext.
                let plain = Zeroizing::new(std::mem::take(value));
                *value = barrier.encrypt(key, &plain);
            }
        }
        let result = Zeroizing::new(std::mem::take(&mut txn.result));
        txn.result = barrier.encrypt(TXN_RESULT_AAD, &result);
        Ok(txn)
    }
}

fn seal_err(e: SealError) -> StoreError {
    match e {
        SealError::Sealed => StoreError::Sealed,
        SealError::NotInitialized => StoreError::NotInitialized,
        other => StoreError::Corrupt(other.to_string()),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[async_trait]
impl Store for ClusterStore {
    async fn read_fence(&self) -> Result<(), StoreError> {
        self.serving()?;
        self.node.read_fence().await
    }

    fn get(&self, key: &[u8]) -> Result<Option<Entry>, StoreError> {
        self.barrier()?;
        self.node
            .get_raw(key)?
            .map(|v| self.entry(key, &v))
            .transpose()
    }

    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Entry)>, StoreError> {
        self.barrier()?;
        self.node
            .scan_raw(prefix, start_after, limit)?
            .into_iter()
            .map(|(k, v)| {
                let e = self.entry(&k, &v)?;
                Ok((k, e))
            })
            .collect()
    }

    async fn commit(&self, request_id: Option<&str>, txn: Txn) -> Result<Outcome, StoreError> {
        self.serving()?;
        let txn = self.encrypt_txn(txn)?;
        // Without a caller id, a private one still makes the node's internal
        // retries (leader changes) apply at most once.
        let (id, caller_id) = match request_id {
            Some(id) => (id.to_string(), true),
            None => (format!("auto-{}", uuid::Uuid::new_v4()), false),
        };
        let req = Request {
            request_id: Some(id),
            time_ms: now_ms(),
            txn,
        };
        let resp = self.node.propose(req).await?;
        let result = if resp.result.is_empty() {
            Zeroizing::new(Vec::new())
        } else {
            self.decrypt(TXN_RESULT_AAD, &resp.result)?
        };
        Ok(Outcome {
            succeeded: resp.succeeded,
            revision: resp.revision,
            result,
            deduplicated: resp.deduplicated && caller_id,
        })
    }

    fn seal_blob(&self, purpose: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        Ok(self.barrier()?.encrypt(purpose, plaintext))
    }

    fn open_blob(&self, purpose: &[u8], blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        self.decrypt(purpose, blob)
    }
}
