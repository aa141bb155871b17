//! When a node builds a Raft snapshot, and so purges its log.
//!
//! openraft's own policy (`LogsSinceLast`) builds a snapshot every N applied
//! entries and then purges the log up to the snapshot minus the entries it
//! keeps. On a leader that is streaming a snapshot to a lagging follower
//! this can starve the follower: by the time it has installed snapshot S,
//! the leader has built S' and purged past S+1, so the follower needs yet
//! another snapshot, and under steady writes with large values (a slow
//! install) it never catches up. The Jepsen suite saw 16 installs in a row
//! on a loaded machine.
//!
//! So nodes build snapshots themselves (openraft's policy is `Never`): every
//! N applied entries, but a leader defers the build while a snapshot transfer
//! to a follower is under way, up to a bound that caps how much log a stuck
//! transfer can pin on disk: `MAX_DEFER` intervals or `DEFER_BYTES` of log,
//! whichever is more. An entry count alone was too short where entries are
//! few bytes and the install is slow: the Jepsen short suite (interval 100,
//! a debug build on a loaded machine) saw a wiped member take 40 s to
//! install a 46 MB snapshot, by which time the leader had built and purged
//! past it again, 25 installs in a row.
//!
//! A build writes the whole state, so on a large state (past 64 MiB of
//! snapshot) it also waits until the entries applied since the last
//! snapshot add up to half of its size ([`big_enough`]): the scaling run at
//! 1M secrets built a 1.4 GB snapshot every 5000 writes, ~280 KB of disk
//! writes per 256-byte secret, and its fill slowed down with every snapshot.
//! Snapshots now write at most about two bytes per byte of log, and the log
//! stays under about half the state's size.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raft_store::{NodeId, StateMachineStore, TypeConfig};

/// How often the node looks at its applied and snapshot indexes.
const TICK: Duration = Duration::from_millis(200);
/// A transfer with no chunk in flight and none finished for this long is
/// over (the leader gave up on it, or the follower went away).
const TRANSFER_IDLE: Duration = Duration::from_secs(5);
/// A build is deferred for a transfer until this many intervals of entries
/// have accumulated: the log on disk stays bounded.
const MAX_DEFER: u64 = 4;
/// …or until this much log (as [`raft_store::entry_bytes`] counts it) has
/// accumulated, if that is more: one WAL segment of the default size.
const DEFER_BYTES: u64 = raft_store::DEFAULT_WAL_SEGMENT_BYTES;

/// Snapshot transfers from this node to its peers, as seen by the network
/// layer: shared by every `Network` openraft builds.
#[derive(Clone, Default)]
pub struct SnapshotTransfers {
    by_peer: Arc<Mutex<HashMap<NodeId, Transfer>>>,
}

#[derive(Clone, Copy)]
struct Transfer {
    /// Chunk calls in flight.
    calls: u32,
    /// When the last chunk call started or ended.
    last: Instant,
}

impl SnapshotTransfers {
    /// A chunk to `peer` is about to be sent.
    pub fn chunk_started(&self, peer: NodeId) {
        let mut map = self.lock();
        let t = map.entry(peer).or_insert(Transfer {
            calls: 0,
            last: Instant::now(),
        });
        t.calls += 1;
        t.last = Instant::now();
    }

    /// A chunk call to `peer` ended. `delivered`: the peer took the chunk;
    /// `last`: it was the final one. A transfer ends when its last chunk
    /// lands or a chunk fails: a peer that cannot be reached (down, cut off)
    /// is not receiving anything, and must not hold back this node's
    /// snapshots while the leader keeps retrying it.
    pub fn chunk_ended(&self, peer: NodeId, delivered: bool, last: bool) {
        let mut map = self.lock();
        if !delivered || last {
            map.remove(&peer);
        } else if let Some(t) = map.get_mut(&peer) {
            t.calls = t.calls.saturating_sub(1);
            t.last = Instant::now();
        }
    }

    /// Whether any transfer is under way (forgetting idle ones).
    pub fn in_flight(&self) -> bool {
        let mut map = self.lock();
        map.retain(|_, t| t.calls > 0 || t.last.elapsed() < TRANSFER_IDLE);
        !map.is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, Transfer>> {
        // The map holds plain counters: a panic elsewhere cannot leave it
        // in a state worse than slightly stale.
        self.by_peer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Below this snapshot size the entry interval alone decides (a snapshot of
/// 64 MiB every 5000 entries costs at most ~13 KB of writes per entry), so
/// small states, and the tests that shorten the interval to force
/// snapshots, behave as before.
const SNAPSHOT_BYTES_FLOOR: u64 = 64 << 20;

/// Whether the entries applied since the last snapshot (`log_bytes`, as
/// [`raft_store::entry_bytes`] counts them) are worth rebuilding a snapshot
/// of `snapshot_bytes` for: at least half its size, once it is past
/// [`SNAPSHOT_BYTES_FLOOR`].
pub fn big_enough(log_bytes: u64, snapshot_bytes: u64) -> bool {
    snapshot_bytes < SNAPSHOT_BYTES_FLOOR || log_bytes >= snapshot_bytes / 2
}

/// Whether a node that applied up to `applied` (`log_bytes` of log since
/// its last snapshot), with its last snapshot at `snapshot`, should build one
/// now, given the `interval` in entries and whether it is `sending` a
/// snapshot to a peer.
pub fn due(applied: u64, snapshot: u64, log_bytes: u64, interval: u64, sending: bool) -> bool {
    let since = applied.saturating_sub(snapshot);
    let deferred_enough = since >= interval.saturating_mul(MAX_DEFER) && log_bytes >= DEFER_BYTES;
    since >= interval && (!sending || deferred_enough)
}

/// Size of the node's current snapshot file (0: none).
fn snapshot_bytes(sm: &StateMachineStore) -> u64 {
    sm.current_snapshot_file()
        .and_then(|(_, path)| std::fs::metadata(path).ok())
        .map_or(0, |m| m.len())
}

/// Builds snapshots by [`due`] until the Raft instance shuts down.
pub async fn run(
    raft: openraft::Raft<TypeConfig>,
    sm: StateMachineStore,
    interval: u64,
    transfers: SnapshotTransfers,
) {
    let metrics = raft.metrics();
    let mut last_snapshot: (u64, u64) = (u64::MAX, 0);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (applied, snapshot) = {
            let m = metrics.borrow();
            if m.running_state.is_err() {
                return;
            }
            (
                m.last_applied.map_or(0, |l| l.index),
                m.snapshot.map_or(0, |l| l.index),
            )
        };
        // The applied bytes when this node's snapshot index last moved (a
        // build or an install): after a restart, the log before it is not
        // counted, which delays the next snapshot by at most half of one.
        if last_snapshot.0 != snapshot {
            last_snapshot = (snapshot, sm.applied_bytes());
        }
        let log_bytes = sm.applied_bytes().saturating_sub(last_snapshot.1);
        // The file is looked at only once the configured interval passed.
        if !due(
            applied,
            snapshot,
            log_bytes,
            interval,
            transfers.in_flight(),
        ) {
            continue;
        }
        if big_enough(log_bytes, snapshot_bytes(&sm)) {
            // A build already running makes this a no-op; an error means
            // Raft is shutting down, which the next tick sees.
            if let Err(e) = raft.trigger().snapshot().await {
                tracing::debug!(error = %e, "snapshot trigger failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_every_interval_and_defers_for_a_transfer_up_to_a_bound() {
        const MB: u64 = 1 << 20;
        assert!(!due(99, 0, MB, 100, false));
        assert!(due(100, 0, MB, 100, false));
        assert!(due(1_250, 1_000, MB, 100, false));
        // A follower is receiving a snapshot: keep the log it will need.
        assert!(!due(100, 0, MB, 100, true));
        assert!(!due(399, 0, 100 * MB, 100, true));
        // Four intervals of small entries are not enough while a slow
        // install is under way (the short suite's 40 s install)…
        assert!(!due(900, 0, 4 * MB, 100, true));
        // …but not forever: four intervals and a WAL segment's worth of log.
        assert!(due(400, 0, 64 * MB, 100, true));
        // With large entries the interval count is what is reached last.
        assert!(!due(300, 0, 200 * MB, 100, true));
        // A snapshot ahead of applied (just installed) is not due.
        assert!(!due(5, 100, 0, 100, false));
    }

    #[test]
    fn a_large_state_waits_for_half_its_size_of_log() {
        // No snapshot yet, or one under 64 MiB: the entry interval rules.
        assert!(big_enough(0, 0));
        assert!(big_enough(50 * 300, 2 << 20));
        assert!(big_enough(0, (64 << 20) - 1));
        assert!(!big_enough(0, 64 << 20));
        // 1.4 GB (1M secrets): 5000 entries of ~600 bytes are not enough…
        assert!(!big_enough(5_000 * 600, 1_400_000_000));
        // …700 MB of log is.
        assert!(big_enough(700_000_000, 1_400_000_000));
    }

    #[test]
    fn transfers_end_when_complete_failed_or_idle() {
        let t = SnapshotTransfers::default();
        assert!(!t.in_flight());
        t.chunk_started(2);
        assert!(t.in_flight());
        t.chunk_ended(2, true, false);
        // Between chunks: still a transfer.
        assert!(t.in_flight());
        t.chunk_started(2);
        t.chunk_ended(2, true, true);
        assert!(!t.in_flight());
        // A peer that cannot be reached is not receiving a snapshot.
        t.chunk_started(3);
        assert!(t.in_flight());
        t.chunk_ended(3, false, false);
        assert!(!t.in_flight());
    }
}
