//! Coalesced read-index rounds on the leader.
//!
//! Every linearizable read needs a read index that the leader confirmed with
//! a quorum heartbeat round *after the read arrived*. Concurrent reads can
//! share one round as long as that holds: a caller joins the round that has
//! not started yet (or creates it); a round starts only when the previous one
//! has finished, and from that moment new callers wait for the next one. So
//! every caller of a round arrived before the round asked the quorum, and N
//! concurrent reads cost one round instead of N.

use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, FutureExt, Shared};

use super::forward::{self, RaftHandle, ReadIndexResult};

type Round = Shared<BoxFuture<'static, ReadIndexResult>>;

/// Shares quorum-confirmed read-index rounds among concurrent readers.
pub struct ReadIndexBatcher {
    raft: RaftHandle,
    /// The round that has not started yet, which new callers join.
    pending: Mutex<Option<Round>>,
    /// Held by the running round: rounds never overlap.
    turn: tokio::sync::Mutex<()>,
}

impl ReadIndexBatcher {
    /// A batcher over this node's Raft.
    pub fn new(raft: RaftHandle) -> Arc<Self> {
        Arc::new(Self {
            raft,
            pending: Mutex::new(None),
            turn: tokio::sync::Mutex::new(()),
        })
    }

    /// A read index confirmed by a quorum after this call began.
    pub async fn read_index(self: &Arc<Self>) -> ReadIndexResult {
        let round = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending
                .get_or_insert_with(|| Self::round(self.clone()).boxed().shared())
                .clone()
        };
        round.await
    }

    async fn round(this: Arc<Self>) -> ReadIndexResult {
        let _turn = this.turn.lock().await;
        // From here on, arrivals start a new round: everyone in this one
        // arrived before the quorum is asked.
        this.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        forward::leader_read_index(&this.raft).await
    }
}
