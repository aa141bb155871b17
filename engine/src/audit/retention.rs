//! Retention of the replicated trail by age and size: the leader prunes
//! the oldest lines and records, in the same transaction, a checkpoint —
//! the `seq` and hash of the last line pruned. The retained trail then
//! verifies from the checkpoint ([`super::chain::verify_after`]): its
//! first line must be the next record, linked to that hash, so pruning
//! never hides a gap, an edit or a reordering of what is kept.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::chain::{Head, Link};
use super::record::{format_time, parse_time_ms};
use super::trail::{entry_key, Trail};
use crate::cas::{self, Plan};
use crate::error::EngineError;
use crate::registry::{Done, Engine};
use crate::store::{Compare, Mutation, Txn};

const CHECKPOINT_KEY: &[u8] = b"aud/checkpoint";
/// Lines deleted per transaction at most (a large backlog is pruned over
/// several rounds, each one Raft entry of bounded size).
pub const PRUNE_BATCH: u64 = 1000;
/// Shortest age limit: alert rules rebuild their windows (up to a day)
/// from the trail after a failover.
pub const MIN_AGE_SECS: u64 = 86_400;
/// Smallest record limit.
pub const MIN_RECORDS: u64 = 1000;

/// Where the retained trail starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The last pruned record and its line's hash: the next line links to it.
    #[serde(flatten)]
    pub last_pruned: Head,
    /// When the last prune happened.
    pub pruned_at: String,
}

/// How much of the trail is kept (both limits apply when both are set).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// Records older than this many seconds are pruned.
    pub max_age_secs: Option<u64>,
    /// Only the newest this many records are kept.
    pub max_records: Option<u64>,
}

impl Retention {
    /// Refuses limits that would starve alert evaluation.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_age_secs.is_some_and(|a| a < MIN_AGE_SECS) {
            return Err(format!(
                "trail retention by age must keep at least {MIN_AGE_SECS} seconds"
            ));
        }
        if self.max_records.is_some_and(|r| r < MIN_RECORDS) {
            return Err(format!(
                "trail retention by size must keep at least {MIN_RECORDS} records"
            ));
        }
        Ok(())
    }

    /// Whether anything is ever pruned.
    pub fn is_unlimited(&self) -> bool {
        self.max_age_secs.is_none() && self.max_records.is_none()
    }
}

impl Trail {
    /// Where the retained trail starts (`None`: nothing was pruned).
    pub fn checkpoint(&self) -> Result<Option<Checkpoint>, EngineError> {
        self.store
            .get(CHECKPOINT_KEY)?
            .map(|e| cas::decode(&e.value))
            .transpose()
    }

    /// The last trail position before the first record at or after
    /// `target_ms` (records are in time order up to shipping delays).
    pub fn first_at(&self, target_ms: u64, head: u64) -> Result<u64, EngineError> {
        let (mut lo, mut hi) = (0u64, head);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let time = match self.lines(mid, 1)?.first() {
                Some(line) => parse_time_ms(&cas::decode::<Link>(line)?.event.time).unwrap_or(0),
                None => u64::MAX,
            };
            if time < target_ms {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// Prunes what `retention` no longer keeps at `now_ms`, at most
    /// [`PRUNE_BATCH`] lines; returns how many lines went.
    pub async fn prune(&self, retention: Retention, now_ms: u64) -> Result<u64, EngineError> {
        if retention.is_unlimited() {
            return Ok(0);
        }
        self.store.read_fence().await?;
        let head = self.head()?.seq;
        let mut target = 0;
        if let Some(n) = retention.max_records {
            target = head.saturating_sub(n);
        }
        if let Some(age) = retention.max_age_secs {
            let cutoff = now_ms.saturating_sub(age.saturating_mul(1000));
            target = target.max(self.first_at(cutoff, head)?);
        }
        cas::write(&*self.store, None, || {
            let entry = self.store.get(CHECKPOINT_KEY)?;
            let revision = entry.as_ref().map_or(0, |e| e.revision);
            let done = match &entry {
                Some(e) => cas::decode::<Checkpoint>(&e.value)?.last_pruned.seq,
                None => 0,
            };
            let upto = target.min(done + PRUNE_BATCH);
            if upto <= done {
                return Ok(Plan::Answer(0));
            }
            let Some(line) = self.lines(upto - 1, 1)?.into_iter().next() else {
                return Ok(Plan::Answer(0));
            };
            let Some(last_pruned) = Head::after(&line).filter(|h| h.seq == upto) else {
                return Err(EngineError::Corrupt(format!(
                    "audit trail line {upto} is missing or unreadable; not pruning"
                )));
            };
            let checkpoint = Checkpoint {
                last_pruned,
                pruned_at: format_time(u128::from(now_ms) * 1_000_000),
            };
            let mut mutations: Vec<Mutation> = (done + 1..=upto)
                .map(|s| Mutation::Delete { key: entry_key(s) })
                .collect();
            mutations.push(Mutation::Put {
                key: CHECKPOINT_KEY.to_vec(),
                value: cas::encode(&checkpoint)?,
            });
            Ok(Plan::Commit(Txn {
                compare: vec![Compare::Revision {
                    key: CHECKPOINT_KEY.to_vec(),
                    revision,
                }],
                mutations,
                result: cas::encode(&(upto - done))?,
            }))
        })
        .await
    }
}

/// The trail's retention as leader work (registered with the engines, so
/// the leader's lifecycle loop runs it).
pub struct TrailRetention {
    trail: Trail,
    retention: Retention,
}

impl TrailRetention {
    /// Prunes `trail` to `retention`.
    pub fn new(trail: Trail, retention: Retention) -> Self {
        Self { trail, retention }
    }
}

#[async_trait]
impl Engine for TrailRetention {
    async fn leader_work(&self, now: u64) -> Vec<Done> {
        let pruned = self
            .trail
            .prune(self.retention, now.saturating_mul(1000))
            .await
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        vec![("pruned audit trail records past retention", pruned)]
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::audit::chain::{verify, verify_after, Problem};
    use crate::audit::AuditEvent;
    use crate::mem_store::MemStore;

    const T0: u64 = 1_800_000_000;

    async fn trail_of(n: u64) -> Trail {
        let trail = Trail::new(Arc::new(MemStore::new()));
        let batch: Vec<(u64, AuditEvent)> = (1..=n)
            .map(|i| {
                let event = AuditEvent {
                    time: format_time(u128::from(T0 + i * 60) * 1_000_000_000),
                    operation_name: format!("SecretGet{i}"),
                    ..Default::default()
                };
                (i, event)
            })
            .collect();
        trail.append(1, &batch).await.unwrap();
        trail
    }

    fn check(trail: &Trail) -> crate::audit::Verification {
        let lines = trail.lines(0, 100_000).unwrap();
        let mut v = match trail.checkpoint().unwrap() {
            Some(c) => verify_after(&c.last_pruned, &lines),
            None => verify(&lines),
        };
        v.check_head(&trail.head().unwrap());
        v
    }

    #[tokio::test]
    async fn pruning_by_age_and_size_keeps_a_verifiable_trail() {
        // Records a minute apart: 2500 of them span about 42 hours.
        let trail = trail_of(2500).await;
        let by_age = Retention {
            max_age_secs: Some(86_400),
            ..Default::default()
        };
        let now_ms = (T0 + 2500 * 60) * 1000;
        // Older than a day: records 1..=1059, in batches of 1000.
        assert_eq!(trail.prune(by_age, now_ms).await.unwrap(), 1000);
        assert_eq!(trail.prune(by_age, now_ms).await.unwrap(), 59);
        assert_eq!(trail.prune(by_age, now_ms).await.unwrap(), 0);
        let v = check(&trail);
        assert!(v.is_intact(), "{:?}", v.problems);
        assert_eq!(v.first_seq, Some(1060));
        let by_size = Retention {
            max_records: Some(1000),
            ..Default::default()
        };
        assert_eq!(trail.prune(by_size, now_ms).await.unwrap(), 441);
        assert_eq!(trail.lines(0, 10_000).unwrap().len(), 1000);
        let v = check(&trail);
        assert!(v.is_intact(), "{:?}", v.problems);
        assert_eq!(v.first_seq, Some(1501));
        // Older history is gone; the search for old times lands on the
        // first kept record.
        assert_eq!(trail.first_at(0, 2500).unwrap(), 0);
        assert_eq!(trail.checkpoint().unwrap().unwrap().last_pruned.seq, 1500);
    }

    #[tokio::test]
    async fn a_retained_trail_still_shows_deletions_and_edits() {
        let trail = trail_of(1200).await;
        let retention = Retention {
            max_records: Some(1000),
            ..Default::default()
        };
        trail.prune(retention, 0).await.unwrap();
        let checkpoint = trail.checkpoint().unwrap().unwrap();
        assert_eq!(checkpoint.last_pruned.seq, 200);
        let lines = trail.lines(0, 10_000).unwrap();
        // The first kept record removed as well: the checkpoint shows it.
        let v = verify_after(&checkpoint.last_pruned, &lines[1..]);
        assert_eq!(
            v.problems,
            [Problem::Gap {
                position: 1,
                missing_from: 201,
                missing_to: 201
            }]
        );
        // The first kept record edited: it no longer links to the checkpoint.
        let mut edited = lines.clone();
        let mut link: Link = serde_json::from_slice(&edited[0]).unwrap();
        link.prev = "00".repeat(32);
        edited[0] = serde_json::to_vec(&link).unwrap();
        let v = verify_after(&checkpoint.last_pruned, &edited);
        assert!(
            v.problems
                .iter()
                .any(|p| matches!(p, Problem::CheckpointMismatch { seq: 201 })),
            "{:?}",
            v.problems
        );
        assert!(Retention {
            max_records: Some(10),
            ..Default::default()
        }
        .validate()
        .is_err());
    }
}
