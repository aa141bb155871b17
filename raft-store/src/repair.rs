//! Offline repair of a damaged state database from a verified snapshot.
//!
//! Both functions open the Raft log, so they run while the node is stopped
//! (redb and the WAL refuse a second writer; that is reported as such).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::LogId;

use crate::error::StorageError;
use crate::snapshot::{copy_to_new, newest_published, sync_dir, verify_snapshot_file};
use crate::{open_with, LogStore, NodeId, SnapshotSummary, StoreOptions, SNAPSHOT_DIR, STATE_FILE};

/// What [`repair_state_from_snapshot`] did.
#[derive(Clone, Debug)]
pub struct RepairReport {
    /// Where the damaged `state.redb` was moved (`state.redb.corrupt-<unix
    /// seconds>`), if there was one.
    pub moved_aside: Option<PathBuf>,
    /// The snapshot the state was restored from, as verified.
    pub snapshot: SnapshotSummary,
    /// Its copy in the node's snapshot directory.
    pub installed_as: PathBuf,
    /// The restored state's last applied log id; openraft re-applies the
    /// committed log entries after it when the node starts.
    pub last_applied: Option<LogId<NodeId>>,
    /// Local snapshot files that failed verification and were moved aside.
    pub damaged_snapshots: Vec<PathBuf>,
    /// The log held a different entry at the snapshot's index (this node's
    /// log had diverged); it was reset to start after the snapshot.
    pub log_reset: bool,
}

/// Whether the node can repair its state from its own snapshot.
#[derive(Clone, Debug)]
pub enum LocalRepair {
    /// The newest local snapshot verifies and the log holds every entry
    /// after it: [`repair_state_from_snapshot`] with this file restores the
    /// state without the leader.
    Possible {
        /// The snapshot file.
        snapshot: PathBuf,
        /// What it holds.
        summary: Box<SnapshotSummary>,
    },
    /// There is no local snapshot.
    NoSnapshot,
    /// The newest local snapshot does not verify.
    SnapshotDamaged {
        /// The file.
        snapshot: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// The log was purged past the snapshot: entries in between are gone.
    LogGap {
        /// Index the snapshot covers.
        snapshot_index: u64,
        /// Index the log was purged up to.
        purged_index: u64,
    },
}

/// Opens the log of a stopped node and finds the newest log id it knows
/// of (log, purged prefix or applied state); `what` names the refused
/// operation when there is none.
fn newest_log_id_offline(
    data_dir: &Path,
    what: &str,
) -> Result<(LogStore, LogId<NodeId>), StorageError> {
    let applied = {
        let (_log, sm) = open_with(data_dir, &StoreOptions::default())?;
        sm.applied_state_sync()?.0
    };
    let log = open_log_offline(data_dir)?;
    let state = log.log_state()?;
    let last = [state.last_log_id, state.last_purged_log_id, applied]
        .into_iter()
        .flatten()
        .max_by_key(|l| l.index);
    match last {
        Some(last) => Ok((log, last)),
        None => Err(StorageError::refused(
            data_dir,
            format!("this node has no log and no state: there is nothing to {what}"),
        )),
    }
}

fn open_log_offline(data_dir: &Path) -> Result<LogStore, StorageError> {
    LogStore::open_in(data_dir, &StoreOptions::default()).map_err(|e| match e {
        StorageError::Db {
            source: redb::Error::DatabaseAlreadyOpen,
            file,
        } => StorageError::refused(&file, "the database is in use: stop the node first"),
        other => other,
    })
}

/// Checks whether the node's own newest snapshot can repair its state: it
/// verifies completely and the log covers everything after it. Offline only.
pub fn local_repair_possible(data_dir: &Path) -> Result<LocalRepair, StorageError> {
    let dir = data_dir.join(SNAPSHOT_DIR);
    let Some(snapshot) = newest_published(&dir)? else {
        return Ok(LocalRepair::NoSnapshot);
    };
    let summary = match verify_snapshot_file(&snapshot) {
        Ok(s) => s,
        Err(e @ StorageError::BadSnapshot { .. }) => {
            return Ok(LocalRepair::SnapshotDamaged {
                snapshot,
                reason: e.to_string(),
            })
        }
        Err(e) => return Err(e),
    };
    let log = open_log_offline(data_dir)?;
    let purged = log.log_state()?.last_purged_log_id.map_or(0, |l| l.index);
    if summary.index() < purged {
        return Ok(LocalRepair::LogGap {
            snapshot_index: summary.index(),
            purged_index: purged,
        });
    }
    Ok(LocalRepair::Possible {
        snapshot,
        summary: Box::new(summary),
    })
}

/// Rebuilds the state database of the (stopped) node in `data_dir` from the
/// snapshot at `snapshot_path` — the node's own or one streamed from the
/// leader.
///
/// The snapshot is verified completely first, and it must reach the log's
/// purge point (otherwise the entries in between exist nowhere on this node
/// and the repair is refused). Then the damaged `state.redb` is moved aside
/// as `state.redb.corrupt-<unix seconds>`, the snapshot is copied into
/// `snapshots/`, and a fresh state database is restored from it in one
/// durable transaction. When the node starts, openraft re-applies the
/// committed log entries after the snapshot. Nothing is changed when a
/// check fails.
pub fn repair_state_from_snapshot(
    data_dir: &Path,
    snapshot_path: &Path,
) -> Result<RepairReport, StorageError> {
    let summary = verify_snapshot_file(snapshot_path)?;
    let index = summary.index();
    let log_reset = {
        let log = open_log_offline(data_dir)?;
        let purged = log.log_state()?.last_purged_log_id.map_or(0, |l| l.index);
        if index < purged {
            return Err(StorageError::refused(
                snapshot_path,
                format!(
                    "the snapshot covers the log up to index {index} but this node's log was \
                     purged up to {purged}, so the entries in between exist nowhere on this \
                     node; use a newer snapshot (the leader's current one)"
                ),
            ));
        }
        match summary.header.meta.last_log_id {
            Some(last) => log
                .entries(last.index..=last.index)?
                .first()
                .is_some_and(|e| e.log_id != last),
            None => false,
        }
        // The log closes here; `open_with` below opens it again.
    };

    let snap_dir = data_dir.join(SNAPSHOT_DIR);
    fs::create_dir_all(&snap_dir).map_err(|e| StorageError::io(&snap_dir, e))?;
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Local snapshot files that do not verify would fail the open below.
    let mut damaged_snapshots = Vec::new();
    while let Some(newest) = newest_published(&snap_dir)? {
        if verify_snapshot_file(&newest).is_ok() {
            break;
        }
        let aside = newest.with_extension(format!("snap.corrupt-{stamp}"));
        fs::rename(&newest, &aside).map_err(|e| StorageError::io(&newest, e))?;
        damaged_snapshots.push(aside);
    }

    let state = data_dir.join(STATE_FILE);
    let moved_aside = if state.exists() {
        let aside = data_dir.join(format!("{STATE_FILE}.corrupt-{stamp}"));
        fs::rename(&state, &aside).map_err(|e| StorageError::io(&state, e))?;
        Some(aside)
    } else {
        None
    };
    sync_dir(data_dir)?;

    // Copied under a name that makes it the newest at its index; `open_with`
    // verifies it again, finds it ahead of the empty state and restores.
    let seq = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let tmp = snap_dir.join(format!("repair-{seq}.tmp"));
    let installed_as = snap_dir.join(format!("snapshot-{index:020}-{seq:020}.snap"));
    let mut src = fs::File::open(snapshot_path).map_err(|e| StorageError::io(snapshot_path, e))?;
    copy_to_new(&mut src, &tmp)?;
    fs::rename(&tmp, &installed_as).map_err(|e| StorageError::io(&installed_as, e))?;
    sync_dir(&snap_dir)?;

    let (_log, sm) = open_with(data_dir, &StoreOptions::default())?;
    let last_applied = sm.applied_state_sync()?.0;
    tracing::warn!(
        data_dir = %data_dir.display(),
        snapshot = %installed_as.display(),
        index,
        "state database restored from a snapshot"
    );
    Ok(RepairReport {
        moved_aside,
        snapshot: summary,
        installed_as,
        last_applied,
        damaged_snapshots,
        log_reset,
    })
}

/// Lost-quorum recovery, offline on a surviving member: appends to its log
/// a membership entry naming `members` (all voters), after everything it
/// holds. Raft takes a membership entry into effect as soon as it is in
/// the log, so on start the members elect a leader among themselves and
/// commit what they hold — including entries the old majority may never
/// have committed. Run it with the same `members` on every survivor, then
/// start them. Returns the log id of the new entry.
///
/// Destroyed members must never come back with their old data: they would
/// still believe in the old membership.
pub fn recover_membership(
    data_dir: &Path,
    members: &std::collections::BTreeMap<NodeId, crate::Node>,
) -> Result<LogId<NodeId>, StorageError> {
    let (log, last) = newest_log_id_offline(data_dir, "recover")?;
    let voters: std::collections::BTreeSet<NodeId> = members.keys().copied().collect();
    let entry = openraft::Entry::<crate::TypeConfig> {
        log_id: LogId::new(last.leader_id, last.index + 1),
        payload: openraft::EntryPayload::Membership(openraft::Membership::new(
            vec![voters],
            members.clone(),
        )),
    };
    log.append_offline(&entry)?;
    tracing::warn!(
        data_dir = %data_dir.display(),
        index = entry.log_id.index,
        members = ?members.keys().collect::<Vec<_>>(),
        "membership rewritten by lost-quorum recovery"
    );
    Ok(entry.log_id)
}

/// Disaster-recovery promotion, offline on the promoted member `leader`:
/// appends a membership entry in which `leader` is the only voter and the
/// rest of `nodes` are learners (the leader makes them voters once it
/// leads). Unlike [`recover_membership`] the entry carries a new term led by
/// `leader`, and the vote moves to that term: a replica that received
/// entries this node lacks holds them under an older leader id, so they
/// conflict with the new entry and are truncated when the new leader
/// replicates to it, instead of silently standing for the same log id.
/// Returns the log id of the new entry.
pub fn promote_membership(
    data_dir: &Path,
    leader: NodeId,
    nodes: &std::collections::BTreeMap<NodeId, crate::Node>,
) -> Result<LogId<NodeId>, StorageError> {
    if !nodes.contains_key(&leader) {
        return Err(StorageError::refused(
            data_dir,
            "the promoted node must be one of the members",
        ));
    }
    let (log, last) = newest_log_id_offline(data_dir, "promote")?;
    let vote_term = log.vote()?.map_or(0, |v| v.leader_id().term);
    let term = vote_term.max(last.leader_id.term) + 1;
    let voters = std::collections::BTreeSet::from([leader]);
    let entry = openraft::Entry::<crate::TypeConfig> {
        log_id: LogId::new(
            openraft::CommittedLeaderId::new(term, leader),
            last.index + 1,
        ),
        payload: openraft::EntryPayload::Membership(openraft::Membership::new(
            vec![voters],
            nodes.clone(),
        )),
    };
    // The vote first: a node that crashed between the two writes holds a
    // higher vote and no new entry, which is harmless.
    log.save_vote_offline(&openraft::Vote::new(term, leader))?;
    log.append_offline(&entry)?;
    tracing::warn!(
        data_dir = %data_dir.display(),
        index = entry.log_id.index,
        term,
        members = ?nodes.keys().collect::<Vec<_>>(),
        "membership rewritten by disaster-recovery promotion"
    );
    Ok(entry.log_id)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};

    use super::*;

    fn node(n: u64) -> crate::Node {
        crate::Node {
            api_addr: format!("10.0.0.{n}:8443"),
            cluster_addr: format!("10.0.0.{n}:8444"),
        }
    }

    #[test]
    fn a_promotion_makes_the_node_sole_voter_in_a_new_term() {
        promotion(crate::LogKind::Redb);
    }

    #[test]
    fn a_promotion_makes_the_node_sole_voter_in_a_new_term_wal() {
        promotion(crate::LogKind::Wal);
    }

    /// The offline helpers find the log of either kind in the data dir.
    fn promotion(kind: crate::LogKind) {
        let dir = tempfile::tempdir().unwrap();
        {
            let opts = StoreOptions {
                log_store: kind,
                ..StoreOptions::default()
            };
            let (log, _sm) = crate::open_with(dir.path(), &opts).unwrap();
            assert_eq!(log.kind(), kind);
            log.save_vote_offline(&Vote::new_committed(3, 1)).unwrap();
            for index in 1..=5 {
                let entry = Entry::<crate::TypeConfig> {
                    log_id: LogId::new(CommittedLeaderId::new(3, 1), index),
                    payload: EntryPayload::Blank,
                };
                log.append_offline(&entry).unwrap();
            }
        }
        let nodes: BTreeMap<NodeId, crate::Node> = [(4, node(4)), (5, node(5))].into();
        // The promoted node must be a member.
        assert!(promote_membership(dir.path(), 6, &nodes).is_err());
        let id = promote_membership(dir.path(), 4, &nodes).unwrap();
        assert_eq!(id.index, 6);
        assert_eq!(id.leader_id, CommittedLeaderId::new(4, 4));
        let log = open_log_offline(dir.path()).unwrap();
        assert_eq!(log.kind(), kind);
        assert_eq!(log.vote().unwrap(), Some(Vote::new(4, 4)));
        let entries = log.entries(6..7).unwrap();
        let EntryPayload::Membership(m) = &entries[0].payload else {
            panic!("not a membership entry: {:?}", entries[0].payload);
        };
        assert_eq!(m.voter_ids().collect::<BTreeSet<_>>(), BTreeSet::from([4]));
        assert_eq!(
            m.learner_ids().collect::<BTreeSet<_>>(),
            BTreeSet::from([5])
        );
    }
}
