//! [`ClusterStore`]: the replicated [`RawStore`] on top of a [`ClusterNode`].
//! The engines reach it through the barrier layer
//! ([`BarrierStore`](crate::engine::barrier_store::BarrierStore)), so it only
//! ever holds ciphertext; see [`cluster_store`].

use std::sync::Arc;

use async_trait::async_trait;
use raft_store::{Request, Txn, Versioned};
use zeroize::Zeroizing;

use super::ClusterNode;
use crate::engine::barrier_store::BarrierStore;
use crate::engine::clock::now_ms;
use crate::engine::store::{Outcome, RawStore, StoreError};
use crate::seal::SealManager;

/// The replicated key/value store below the barrier.
pub struct ClusterStore {
    node: Arc<ClusterNode>,
}

/// The engines' store: `node`'s replicated data behind `seal`'s barrier.
pub fn cluster_store(node: Arc<ClusterNode>, seal: Arc<SealManager>) -> BarrierStore<ClusterStore> {
    BarrierStore::over(ClusterStore::new(node), seal)
}

impl ClusterStore {
    /// A store over `node`.
    pub fn new(node: Arc<ClusterNode>) -> Self {
        Self { node }
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
}

#[async_trait]
impl RawStore for ClusterStore {
    async fn read_fence(&self) -> Result<(), StoreError> {
        self.serving()?;
        // A fence taken earlier in the same request already covers every
        // write acknowledged before the request arrived.
        if super::request_fence::taken() {
            return Ok(());
        }
        self.node.read_fence().await?;
        super::request_fence::record();
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Versioned>, StoreError> {
        self.node.get_raw(key)
    }

    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Versioned)>, StoreError> {
        self.node.scan_raw(prefix, start_after, limit)
    }

    async fn commit(&self, request_id: Option<&str>, txn: Txn) -> Result<Outcome, StoreError> {
        self.serving()?;
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
        Ok(Outcome {
            succeeded: resp.succeeded,
            revision: resp.revision,
            result: Zeroizing::new(resp.result),
            deduplicated: resp.deduplicated && caller_id,
        })
    }

    /// A value of this node's own state that fails the barrier's
    /// authentication was altered on its disk: the state cannot be trusted.
    fn stored_value_damaged(&self, detail: &str) {
        self.node.mark_corrupt(detail);
    }
}
