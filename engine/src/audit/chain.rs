//! The hash chain both trails use: a node's audit file and the replicated
//! cluster trail.
//!
//! Each record is one JSON line `{"seq":N,"prev":"<hex>",…record…}`: `seq`
//! counts from 1 with no holes and `prev` is the SHA-256 of the previous
//! line's exact bytes. Deleting a record leaves a hole in `seq`, editing one
//! breaks the next line's `prev`, moving one puts `seq` out of order;
//! [`verify`] names the position of each.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::record::AuditEvent;

/// `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One line of a chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// SHA-256 (hex) of the previous line.
    pub prev: String,
    /// The record.
    #[serde(flatten)]
    pub event: AuditEvent,
}

/// SHA-256 (hex) of one line's bytes (without its newline).
pub fn hash(line: &[u8]) -> String {
    hex::encode(Sha256::digest(line))
}

/// Where a chain ends: what the next record links to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// `seq` of the last record (0: empty).
    pub seq: u64,
    /// Hash of the last line ([`GENESIS`] when empty).
    pub hash: String,
}

impl Default for Head {
    fn default() -> Self {
        Self {
            seq: 0,
            hash: GENESIS.to_owned(),
        }
    }
}

impl Head {
    /// The lines that append `events` after this head, and the new head.
    /// Nothing changes until the caller keeps the returned head (after the
    /// lines are durably written).
    pub fn extend<'a>(
        &self,
        events: impl IntoIterator<Item = &'a AuditEvent>,
    ) -> Result<(Vec<Vec<u8>>, Head), serde_json::Error> {
        let mut head = self.clone();
        let mut lines = Vec::new();
        for event in events {
            let link = Link {
                seq: head.seq + 1,
                prev: head.hash.clone(),
                event: event.clone(),
            };
            let line = serde_json::to_vec(&link)?;
            head = Head {
                seq: link.seq,
                hash: hash(&line),
            };
            lines.push(line);
        }
        Ok((lines, head))
    }

    /// The head after `line` (a line of this chain).
    pub fn after(line: &[u8]) -> Option<Head> {
        let link: LinkHeader = serde_json::from_slice(line).ok()?;
        Some(Head {
            seq: link.seq,
            hash: hash(line),
        })
    }
}

/// Just the chain fields of a line (verification does not need the record
/// to be of the current shape).
#[derive(Deserialize)]
struct LinkHeader {
    seq: u64,
    prev: String,
}

/// What is wrong at one position of a chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Problem {
    /// The line is not a chain record.
    Unreadable {
        /// 1-based line number.
        position: u64,
    },
    /// Records are missing before this line.
    Gap {
        /// 1-based line number of the first record after the hole.
        position: u64,
        /// First missing `seq`.
        missing_from: u64,
        /// Last missing `seq`.
        missing_to: u64,
    },
    /// This record is out of order (or repeated).
    Reordered {
        /// 1-based line number.
        position: u64,
        /// Its `seq`.
        seq: u64,
    },
    /// This record was changed after the next one was chained to it.
    Edited {
        /// 1-based line number.
        position: u64,
        /// Its `seq`.
        seq: u64,
    },
    /// The first retained record does not link to the retention
    /// checkpoint (it, or the last pruned record, was changed).
    CheckpointMismatch {
        /// Its `seq`.
        seq: u64,
    },
    /// The chain does not end where the cluster's head says it does (the
    /// last records were removed or the last one changed).
    HeadMismatch {
        /// `seq` the head names.
        head_seq: u64,
        /// `seq` of the last line read.
        last_seq: u64,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Unreadable { position } => {
                write!(f, "line {position}: not an audit record")
            }
            Problem::Gap {
                position,
                missing_from,
                missing_to,
            } => write!(
                f,
                "line {position}: records {missing_from}..={missing_to} are missing before it"
            ),
            Problem::Reordered { position, seq } => {
                write!(f, "line {position}: record {seq} is out of order")
            }
            Problem::Edited { position, seq } => write!(
                f,
                "line {position}: record {seq} was changed (the next record's hash does not match)"
            ),
            Problem::CheckpointMismatch { seq } => write!(
                f,
                "line 1: record {seq} does not link to the retention checkpoint"
            ),
            Problem::HeadMismatch { head_seq, last_seq } => write!(
                f,
                "the trail ends at record {last_seq} but the cluster head is record {head_seq}"
            ),
        }
    }
}

/// The verdict on a chain.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// Lines read.
    pub records: u64,
    /// `seq` of the first line.
    pub first_seq: Option<u64>,
    /// The head after the last line.
    pub last: Option<Head>,
    /// Everything found wrong, in line order.
    pub problems: Vec<Problem>,
}

impl Verification {
    /// No problem found.
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }

    /// Adds a mismatch with the cluster's `head`, if any.
    pub fn check_head(&mut self, head: &Head) {
        let last = self.last.clone().unwrap_or_default();
        if last != *head {
            self.problems.push(Problem::HeadMismatch {
                head_seq: head.seq,
                last_seq: last.seq,
            });
        }
    }
}

/// Verifies a chain given as its lines, in stored order. A chain that
/// starts after seq 1 (a rotated-away beginning) is checked from its first
/// line on.
pub fn verify<L: AsRef<[u8]>>(lines: &[L]) -> Verification {
    let parsed: Vec<Option<(LinkHeader, String)>> = lines
        .iter()
        .map(|l| {
            let l = l.as_ref();
            serde_json::from_slice::<LinkHeader>(l)
                .ok()
                .map(|h| (h, hash(l)))
        })
        .collect();
    let present: HashSet<u64> = parsed.iter().flatten().map(|(h, _)| h.seq).collect();
    let hash_of: HashMap<u64, (u64, &str)> = parsed
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.as_ref().map(|(h, d)| (h.seq, (i as u64 + 1, d.as_str()))))
        .collect();
    let mut out = Verification {
        records: lines.len() as u64,
        ..Default::default()
    };
    let mut max_seen: Option<u64> = None;
    for (i, p) in parsed.iter().enumerate() {
        let position = i as u64 + 1;
        let Some((link, digest)) = p else {
            out.problems.push(Problem::Unreadable { position });
            continue;
        };
        out.first_seq.get_or_insert(link.seq);
        match max_seen {
            Some(max) if link.seq <= max => out.problems.push(Problem::Reordered {
                position,
                seq: link.seq,
            }),
            Some(max) if link.seq > max + 1 => {
                if (max + 1..link.seq).any(|s| present.contains(&s)) {
                    out.problems.push(Problem::Reordered {
                        position,
                        seq: link.seq,
                    });
                } else {
                    out.problems.push(Problem::Gap {
                        position,
                        missing_from: max + 1,
                        missing_to: link.seq - 1,
                    });
                }
            }
            _ => {}
        }
        max_seen = Some(max_seen.map_or(link.seq, |m| m.max(link.seq)));
        // The link to the record before it, wherever that record now sits.
        let expected = match link.seq {
            1 => Some((0, GENESIS)),
            s => hash_of.get(&(s - 1)).copied(),
        };
        if let Some((before_position, before_hash)) = expected {
            if before_hash != link.prev {
                out.problems.push(Problem::Edited {
                    position: before_position.max(1),
                    seq: link.seq.saturating_sub(1).max(1),
                });
            }
        }
        out.last = Some(Head {
            seq: link.seq,
            hash: digest.clone(),
        });
    }
    out.problems.sort_by_key(position_of);
    out
}

/// Verifies a trail whose records up to `checkpoint` were pruned by
/// retention: as [`verify`], and its first line must be record
/// `checkpoint.seq + 1` linked to `checkpoint.hash` (an empty trail ends
/// at the checkpoint).
pub fn verify_after<L: AsRef<[u8]>>(checkpoint: &Head, lines: &[L]) -> Verification {
    let mut out = verify(lines);
    let first = lines.first().and_then(|l| {
        serde_json::from_slice::<LinkHeader>(l.as_ref())
            .ok()
            .map(|h| (h.seq, h.prev))
    });
    match first {
        None if lines.is_empty() => out.last = Some(checkpoint.clone()),
        None => {}
        Some((seq, _)) if seq > checkpoint.seq + 1 => out.problems.push(Problem::Gap {
            position: 1,
            missing_from: checkpoint.seq + 1,
            missing_to: seq - 1,
        }),
        Some((seq, _)) if seq <= checkpoint.seq => {
            out.problems.push(Problem::Reordered { position: 1, seq })
        }
        Some((seq, prev)) if prev != checkpoint.hash => {
            out.problems.push(Problem::CheckpointMismatch { seq })
        }
        Some(_) => {}
    }
    out.problems.sort_by_key(position_of);
    out
}

fn position_of(p: &Problem) -> u64 {
    match p {
        Problem::Unreadable { position }
        | Problem::Gap { position, .. }
        | Problem::Reordered { position, .. }
        | Problem::Edited { position, .. } => *position,
        Problem::CheckpointMismatch { .. } => 1,
        Problem::HeadMismatch { .. } => u64::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> Vec<Vec<u8>> {
        let events: Vec<AuditEvent> = (0..n)
            .map(|i| AuditEvent {
                operation_name: format!("SecretGet{i}"),
                ..Default::default()
            })
            .collect();
        Head::default().extend(&events).unwrap().0
    }

    #[test]
    fn an_intact_chain_verifies_and_ends_at_its_head() {
        let lines = chain(5);
        let v = verify(&lines);
        assert!(v.is_intact(), "{:?}", v.problems);
        assert_eq!(v.records, 5);
        let last = v.last.clone().unwrap();
        assert_eq!(last.seq, 5);
        assert_eq!(Head::after(&lines[4]), Some(last.clone()));
        let mut v2 = v.clone();
        v2.check_head(&last);
        assert!(v2.is_intact());
    }

    #[test]
    fn a_deleted_record_is_a_gap_at_its_position() {
        let mut lines = chain(6);
        lines.remove(2);
        let v = verify(&lines);
        assert_eq!(
            v.problems,
            vec![Problem::Gap {
                position: 3,
                missing_from: 3,
                missing_to: 3
            }]
        );
    }

    #[test]
    fn an_edited_record_is_named_by_its_position() {
        let mut lines = chain(6);
        lines[3] = String::from_utf8(lines[3].clone())
            .unwrap()
            .replace("SecretGet3", "SecretSet3")
            .into_bytes();
        let v = verify(&lines);
        assert_eq!(
            v.problems,
            vec![Problem::Edited {
                position: 4,
                seq: 4
            }]
        );
    }

    #[test]
    fn swapped_records_are_reported_as_reordered() {
        let mut lines = chain(6);
        lines.swap(2, 3);
        let v = verify(&lines);
        assert_eq!(
            v.problems,
            vec![
                Problem::Reordered {
                    position: 3,
                    seq: 4
                },
                Problem::Reordered {
                    position: 4,
                    seq: 3
                }
            ]
        );
    }

    #[test]
    fn a_removed_tail_is_caught_by_the_head_only() {
        let lines = chain(4);
        let full = verify(&lines).last.unwrap();
        let mut v = verify(&lines[..3]);
        assert!(v.is_intact());
        v.check_head(&full);
        assert_eq!(
            v.problems,
            vec![Problem::HeadMismatch {
                head_seq: 4,
                last_seq: 3
            }]
        );
    }

    #[test]
    fn garbage_lines_are_unreadable() {
        let mut lines = chain(3);
        lines.insert(1, b"not json".to_vec());
        let v = verify(&lines);
        assert_eq!(v.problems, vec![Problem::Unreadable { position: 2 }]);
    }
}
