//! Shipping: this node's written records go, in batches, into the
//! replicated trail ([`Trail`]). The trail remembers the last node `seq`
//! each node shipped, in the same transaction as the records, so a batch
//! lands exactly once; after a restart (or a queue overflow while the
//! cluster was unreachable) shipping resumes from the node's files.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::engine::audit::{AuditEvent, Link, Trail};

/// Records waiting in memory at most; beyond, they are dropped from the
/// queue (they are in the file) and read back from the files later.
const QUEUE_MAX: usize = 100_000;
/// Records per replicated entry at most.
const BATCH_MAX: usize = 128;

/// Written records not yet in the trail.
#[derive(Default)]
pub struct ShipQueue {
    inner: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    items: VecDeque<(u64, AuditEvent)>,
    overflow: bool,
}

impl ShipQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds records just written to the file.
    pub fn push(&self, records: impl IntoIterator<Item = (u64, AuditEvent)>) {
        let mut q = self.lock();
        q.items.extend(records);
        if q.items.len() > QUEUE_MAX {
            q.items.clear();
            q.overflow = true;
        }
        metrics::gauge!("coffer_audit_ship_backlog").set(q.items.len() as f64);
    }

    /// Up to [`BATCH_MAX`] records after `shipped`, in `seq` order.
    fn batch(&self, shipped: u64) -> Vec<(u64, AuditEvent)> {
        let mut q = self.lock();
        while q.items.front().is_some_and(|(s, _)| *s <= shipped) {
            q.items.pop_front();
        }
        let mut out: Vec<(u64, AuditEvent)> = Vec::new();
        for (seq, event) in q.items.iter() {
            if out.len() >= BATCH_MAX {
                break;
            }
            if *seq > out.last().map_or(shipped, |(s, _)| *s) {
                out.push((*seq, event.clone()));
            }
        }
        out
    }

    /// Replaces what is queued with what the files hold after `shipped`
    /// (plus anything newer queued meanwhile).
    fn refill(&self, from_files: Vec<(u64, AuditEvent)>) {
        let mut q = self.lock();
        let last_file = from_files.last().map_or(0, |(s, _)| *s);
        let newer: Vec<(u64, AuditEvent)> =
            q.items.drain(..).filter(|(s, _)| *s > last_file).collect();
        q.items = from_files.into_iter().chain(newer).collect();
        q.overflow = false;
    }

    fn take_overflow(&self) -> bool {
        std::mem::take(&mut self.lock().overflow)
    }

    /// Records written but not yet shipped.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// Nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the shipper needs.
pub struct Shipper {
    /// The cluster trail.
    pub trail: Trail,
    /// This node.
    pub node_id: u64,
    /// Records to ship.
    pub queue: Arc<ShipQueue>,
    /// The node's files, oldest first, when asked.
    pub files: Box<dyn Fn() -> Vec<PathBuf> + Send + Sync>,
    /// Pause between batches.
    pub every: Duration,
    /// Whether the node is sealed (nothing can be shipped).
    pub sealed: Box<dyn Fn() -> bool + Send + Sync>,
    /// The node file chain's id (every record written by this process
    /// carries it).
    pub stream: Option<String>,
}

impl Shipper {
    /// Ships forever.
    pub async fn run(self) {
        let mut shipped: Option<u64> = None;
        loop {
            tokio::time::sleep(self.every).await;
            if (self.sealed)() {
                continue;
            }
            if self.queue.take_overflow() {
                shipped = None;
            }
            let from = match shipped {
                Some(s) => s,
                None => match self
                    .trail
                    .shipped(self.node_id, self.stream.as_deref())
                    .await
                {
                    Ok(s) => {
                        let files = (self.files)();
                        let stream = self.stream.clone();
                        let recovered = tokio::task::spawn_blocking(move || {
                            read_after(&files, stream.as_deref(), s)
                        })
                        .await
                        .unwrap_or_default();
                        self.queue.refill(recovered);
                        shipped = Some(s);
                        s
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "audit shipping: trail not reachable");
                        continue;
                    }
                },
            };
            loop {
                let batch = self.queue.batch(from.max(shipped.unwrap_or(0)));
                let Some(last) = batch.last().map(|(s, _)| *s) else {
                    break;
                };
                match self.trail.append(self.node_id, &batch).await {
                    Ok(_) => {
                        metrics::counter!("coffer_audit_records_total", "sink" => "raft")
                            .increment(batch.len() as u64);
                        shipped = Some(last);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "audit shipping failed; retrying");
                        // Re-read where the trail is: the answer may be lost
                        // after the batch applied.
                        shipped = None;
                        break;
                    }
                }
            }
        }
    }
}

/// Records of chain `stream` with `seq > after` in `files` (oldest
/// first), reading newest files first and stopping at the file that starts
/// at or before `after`.
pub fn read_after(files: &[PathBuf], stream: Option<&str>, after: u64) -> Vec<(u64, AuditEvent)> {
    let mut chunks: Vec<Vec<(u64, AuditEvent)>> = Vec::new();
    for path in files.iter().rev() {
        let Ok(bytes) = std::fs::read(path) else {
            continue;
        };
        let links: Vec<Link> = bytes
            .split(|b| *b == b'\n')
            .filter_map(|l| serde_json::from_slice::<Link>(l).ok())
            .filter(|l| l.event.node_stream.as_deref() == stream)
            .collect();
        let starts_before = links.first().is_some_and(|l| l.seq <= after + 1);
        chunks.push(
            links
                .into_iter()
                .filter(|l| l.seq > after)
                .map(|l| (l.seq, l.event))
                .collect(),
        );
        if starts_before {
            break;
        }
    }
    chunks.into_iter().rev().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: u64) -> (u64, AuditEvent) {
        (n, AuditEvent::default())
    }

    #[test]
    fn batches_skip_what_was_shipped_and_repeated_records() {
        let q = ShipQueue::default();
        q.push([ev(1), ev(2), ev(3)]);
        q.refill(vec![ev(2), ev(3)]);
        q.push([ev(3), ev(4)]);
        let seqs: Vec<u64> = q.batch(1).into_iter().map(|(s, _)| s).collect();
        assert_eq!(seqs, [2, 3, 4]);
        assert_eq!(q.batch(4).len(), 0);
        assert!(q.is_empty());
    }
}
