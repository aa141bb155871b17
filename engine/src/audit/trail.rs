//! The replicated, cluster-wide trail: every node ships its records here in
//! batches, through Raft, so every member (and a DR site) holds all of them.
//!
//! Layout (barrier-encrypted values, like every other key):
//! `aud/t/{seq:020}` one chain line, `aud/head` the chain's [`Head`],
//! `aud/n/{node}` the last node-file `seq` that node shipped. A batch moves
//! all three in one compare-and-set transaction, so a batch is appended
//! exactly once however often a node retries it, and two nodes shipping at
//! the same time both land, one after the other, on one chain.
//! `aud/checkpoint` is where the retained trail starts once old lines were
//! pruned (see [`super::retention`]).

use std::sync::Arc;

use crate::cas::{self, Plan};
use crate::error::EngineError;
use crate::store::{Compare, Mutation, Store, Txn};

use super::chain::Head;
use super::query::Query;
use super::record::AuditEvent;

const HEAD_KEY: &[u8] = b"aud/head";
pub(super) const ENTRY_PREFIX: &str = "aud/t/";
const NODE_PREFIX: &str = "aud/n/";

/// How far a node shipped: the last `seq` of its current file chain.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
struct Shipped {
    stream: Option<String>,
    seq: u64,
}

impl Shipped {
    /// The shipped `seq` of chain `stream` (0 for another chain).
    fn of(&self, stream: Option<&str>) -> u64 {
        if self.stream.as_deref() == stream {
            self.seq
        } else {
            0
        }
    }
}

/// The cluster trail over the replicated store.
#[derive(Clone)]
pub struct Trail {
    pub(super) store: Arc<dyn Store>,
}

pub(super) fn entry_key(seq: u64) -> Vec<u8> {
    format!("{ENTRY_PREFIX}{seq:020}").into_bytes()
}

fn node_key(node_id: u64) -> Vec<u8> {
    format!("{NODE_PREFIX}{node_id}").into_bytes()
}

impl Trail {
    /// The trail of the cluster behind `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Where the trail ends (empty: seq 0).
    pub fn head(&self) -> Result<Head, EngineError> {
        Ok(self.head_entry()?.1)
    }

    fn head_entry(&self) -> Result<(u64, Head), EngineError> {
        match self.store.get(HEAD_KEY)? {
            Some(e) => Ok((e.revision, cas::decode(&e.value)?)),
            None => Ok((0, Head::default())),
        }
    }

    /// How far `node_id` shipped, with the revision of that record.
    fn shipped_entry(&self, node_id: u64) -> Result<(u64, Shipped), EngineError> {
        match self.store.get(&node_key(node_id))? {
            Some(e) => Ok((e.revision, cas::decode(&e.value)?)),
            None => Ok((0, Shipped::default())),
        }
    }

    /// The last node-file `seq` of `node_id`'s chain `stream` already in
    /// the trail (0 for a chain the trail has not seen), after a read fence.
    pub async fn shipped(&self, node_id: u64, stream: Option<&str>) -> Result<u64, EngineError> {
        self.store.read_fence().await?;
        Ok(self.shipped_entry(node_id)?.1.of(stream))
    }

    /// Appends `batch` (node-file `seq`, record, all of one chain stream)
    /// of `node_id`, skipping what that node already shipped; returns the
    /// new head.
    pub async fn append(
        &self,
        node_id: u64,
        batch: &[(u64, AuditEvent)],
    ) -> Result<Head, EngineError> {
        cas::write(&*self.store, None, || {
            let (head_rev, head) = self.head_entry()?;
            let (node_rev, cursor) = self.shipped_entry(node_id)?;
            let stream = batch.first().and_then(|(_, e)| e.node_stream.clone());
            let shipped = cursor.of(stream.as_deref());
            let fresh: Vec<AuditEvent> = batch
                .iter()
                .filter(|(seq, _)| *seq > shipped)
                .map(|(seq, e)| AuditEvent {
                    node_seq: Some(*seq),
                    node_id,
                    ..e.clone()
                })
                .collect();
            let Some(last) = batch.iter().map(|(s, _)| *s).max().filter(|s| *s > shipped) else {
                return Ok(Plan::Answer(head));
            };
            let (lines, new_head) = head
                .extend(&fresh)
                .map_err(|e| EngineError::Corrupt(format!("encoding an audit record: {e}")))?;
            let mut mutations: Vec<Mutation> = lines
                .into_iter()
                .zip(head.seq + 1..)
                .map(|(line, seq)| Mutation::Put {
                    key: entry_key(seq),
                    value: line,
                })
                .collect();
            mutations.push(Mutation::Put {
                key: HEAD_KEY.to_vec(),
                value: cas::encode(&new_head)?,
            });
            mutations.push(Mutation::Put {
                key: node_key(node_id),
                value: cas::encode(&Shipped { stream, seq: last })?,
            });
            Ok(Plan::Commit(Txn {
                compare: vec![
                    Compare::Revision {
                        key: HEAD_KEY.to_vec(),
                        revision: head_rev,
                    },
                    Compare::Revision {
                        key: node_key(node_id),
                        revision: node_rev,
                    },
                ],
                mutations,
                result: cas::encode(&new_head)?,
            }))
        })
        .await
    }

    /// Up to `limit` chain lines after `after_seq`, in order (local state:
    /// call [`Trail::fence`] first for a linearizable read).
    pub fn lines(&self, after_seq: u64, limit: usize) -> Result<Vec<Vec<u8>>, EngineError> {
        let start = (after_seq > 0).then(|| entry_key(after_seq));
        Ok(self
            .store
            .scan(ENTRY_PREFIX.as_bytes(), start.as_deref(), limit)?
            .into_iter()
            .map(|(_, e)| e.value.to_vec())
            .collect())
    }

    /// Waits until this node reflects every batch committed before the call.
    pub async fn fence(&self) -> Result<(), EngineError> {
        Ok(self.store.read_fence().await?)
    }

    /// Records matching `query` after `after_seq`, scanning at most `scan`
    /// lines; returns them with the last seq scanned (to continue from).
    pub fn query(
        &self,
        query: &Query,
        after_seq: u64,
        scan: usize,
    ) -> Result<(Vec<super::chain::Link>, u64), EngineError> {
        let mut found = Vec::new();
        let mut last = after_seq;
        for line in self.lines(after_seq, scan)? {
            let link: super::chain::Link = cas::decode(&line)?;
            last = link.seq;
            if query.matches(&link.event) {
                found.push(link);
            }
        }
        Ok((found, last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::verify;
    use crate::mem_store::MemStore;

    fn events(node: u64, from: u64, n: u64) -> Vec<(u64, AuditEvent)> {
        (from..from + n)
            .map(|s| {
                (
                    s,
                    AuditEvent {
                        operation_name: format!("n{node}-{s}"),
                        ..Default::default()
                    },
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn batches_of_several_nodes_form_one_chain_and_retries_append_once() {
        let trail = Trail::new(Arc::new(MemStore::new()));
        trail.append(1, &events(1, 1, 3)).await.unwrap();
        trail.append(2, &events(2, 1, 2)).await.unwrap();
        // Node 1 retries a batch whose answer it lost, plus one new record.
        let head = trail.append(1, &events(1, 2, 3)).await.unwrap();
        assert_eq!(head.seq, 6);
        assert_eq!(trail.shipped(1, None).await.unwrap(), 4);
        assert_eq!(trail.shipped(2, None).await.unwrap(), 2);
        let lines = trail.lines(0, 100).unwrap();
        let mut v = verify(&lines);
        v.check_head(&head);
        assert!(v.is_intact(), "{:?}", v.problems);
        let names: Vec<String> = lines
            .iter()
            .map(|l| cas::decode::<crate::audit::chain::Link>(l).unwrap())
            .map(|l| {
                format!(
                    "{}@{}:{}",
                    l.event.operation_name,
                    l.event.node_id,
                    l.event.node_seq.unwrap()
                )
            })
            .collect();
        assert_eq!(
            names,
            ["n1-1@1:1", "n1-2@1:2", "n1-3@1:3", "n2-1@2:1", "n2-2@2:2", "n1-4@1:4"]
        );
        assert_eq!(trail.lines(4, 100).unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_node_that_restarts_its_chain_ships_it_from_the_start() {
        let trail = Trail::new(Arc::new(MemStore::new()));
        let in_stream = |node, from, n, stream: &str| {
            events(node, from, n)
                .into_iter()
                .map(|(s, e)| {
                    let e = AuditEvent {
                        node_stream: Some(stream.to_owned()),
                        ..e
                    };
                    (s, e)
                })
                .collect::<Vec<_>>()
        };
        trail.append(1, &in_stream(1, 1, 5, "a")).await.unwrap();
        // The node's data dir was wiped: a new chain starts at seq 1.
        let head = trail.append(1, &in_stream(1, 1, 2, "b")).await.unwrap();
        assert_eq!(head.seq, 7);
        assert_eq!(trail.shipped(1, Some("b")).await.unwrap(), 2);
        assert_eq!(trail.shipped(1, Some("a")).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn concurrent_shippers_never_fork_the_chain() {
        let trail = Trail::new(Arc::new(MemStore::new()));
        let mut tasks = Vec::new();
        for node in 1..=3u64 {
            let t = trail.clone();
            tasks.push(tokio::spawn(async move {
                for b in 0..5 {
                    t.append(node, &events(node, b * 2 + 1, 2)).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let lines = trail.lines(0, 1000).unwrap();
        assert_eq!(lines.len(), 30);
        let mut v = verify(&lines);
        v.check_head(&trail.head().unwrap());
        assert!(v.is_intact(), "{:?}", v.problems);
    }
}
