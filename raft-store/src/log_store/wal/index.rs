//! The in-memory index of a WAL: where each live entry's record is.
//!
//! Live entries are contiguous (`first..first + len`), so positions sit in
//! a deque; the same rules apply when records are written and when they are
//! replayed at open, so both reach the same log.

use std::collections::VecDeque;

use openraft::{CommittedLeaderId, LogId};

use crate::NodeId;

/// Where one entry's record is, and its log id's leader.
#[derive(Clone, Copy, Debug)]
pub(super) struct Pos {
    /// Segment sequence number.
    pub seg: u64,
    /// Byte offset of the record in the segment.
    pub offset: u64,
    /// Record length (header included).
    pub len: u32,
    pub term: u64,
    pub node: NodeId,
}

/// Live entries by index, and the purge point.
#[derive(Debug, Default)]
pub(super) struct Index {
    purged: Option<LogId<NodeId>>,
    /// Index of `pos[0]`.
    first: u64,
    pos: VecDeque<Pos>,
}

impl Index {
    /// An empty index after `purged`.
    pub(super) fn new(purged: Option<LogId<NodeId>>) -> Self {
        Self {
            purged,
            first: purged.map_or(0, |p| p.index + 1),
            pos: VecDeque::new(),
        }
    }

    pub(super) fn purged(&self) -> Option<LogId<NodeId>> {
        self.purged
    }

    /// The index the next entry must have, when the log constrains it (an
    /// empty log that never purged accepts any first index).
    pub(super) fn next(&self) -> Option<u64> {
        if self.pos.is_empty() {
            self.purged.map(|p| p.index + 1)
        } else {
            Some(self.first + self.pos.len() as u64)
        }
    }

    /// The newest live log id, else the purge point.
    pub(super) fn last_log_id(&self) -> Option<LogId<NodeId>> {
        match self.pos.back() {
            Some(p) => Some(log_id(p, self.first + self.pos.len() as u64 - 1)),
            None => self.purged,
        }
    }

    /// Drops entries with index >= `from`.
    pub(super) fn truncate(&mut self, from: u64) {
        if from <= self.first {
            self.pos.clear();
        } else {
            self.pos.truncate((from - self.first) as usize);
        }
    }

    /// Records where entry `index` now is. An index at or below the purge
    /// point is ignored (a stale record replayed after a purge); one at or
    /// below the newest replaces it and drops the entries after it, as Raft
    /// does with a conflicting suffix. Fails on a hole.
    pub(super) fn push(&mut self, index: u64, pos: Pos) -> Result<(), String> {
        if self.purged.is_some_and(|p| index <= p.index) {
            return Ok(());
        }
        self.truncate(index);
        match self.next() {
            Some(n) if n != index => {
                return Err(format!("entry {index} would leave a hole (expected {n})"));
            }
            None => self.first = index,
            Some(_) if self.pos.is_empty() => self.first = index,
            Some(_) => {}
        }
        self.pos.push_back(pos);
        Ok(())
    }

    /// Records `log_id` as the purge point (never backwards) and drops the
    /// entries up to it. Returns whether it moved.
    pub(super) fn purge(&mut self, log_id: LogId<NodeId>) -> bool {
        if self.purged.is_some_and(|p| p.index >= log_id.index) {
            return false;
        }
        self.purged = Some(log_id);
        while !self.pos.is_empty() && self.first <= log_id.index {
            self.pos.pop_front();
            self.first += 1;
        }
        if self.pos.is_empty() {
            self.first = log_id.index + 1;
        }
        true
    }

    /// Positions of the live entries with index in `lo..hi`, in order.
    pub(super) fn range(&self, lo: u64, hi: u64) -> impl Iterator<Item = &Pos> {
        let end = self.first + self.pos.len() as u64;
        let (lo, hi) = (lo.max(self.first), hi.min(end));
        let (a, b) = if lo < hi {
            ((lo - self.first) as usize, (hi - self.first) as usize)
        } else {
            (0, 0)
        };
        self.pos.range(a..b)
    }
}

fn log_id(p: &Pos, index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(p.term, p.node), index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(term: u64) -> Pos {
        Pos {
            seg: 1,
            offset: 0,
            len: 0,
            term,
            node: 1,
        }
    }

    fn id(term: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    #[test]
    fn conflicting_suffix_purge_and_holes() {
        let mut ix = Index::new(None);
        for i in 3..=6 {
            ix.push(i, pos(1)).unwrap();
        }
        assert_eq!(ix.last_log_id(), Some(id(1, 6)));
        assert!(ix.push(8, pos(1)).is_err());
        // A newer entry at 5 replaces 5 and drops 6.
        ix.push(5, pos(2)).unwrap();
        assert_eq!(ix.last_log_id(), Some(id(2, 5)));
        assert_eq!(ix.range(0, 100).count(), 3);
        assert!(ix.purge(id(1, 4)));
        assert!(!ix.purge(id(1, 3)), "the purge point never goes back");
        assert_eq!(ix.range(0, 100).count(), 1);
        // Stale records at or below the purge point are ignored.
        ix.push(2, pos(1)).unwrap();
        assert_eq!(ix.last_log_id(), Some(id(2, 5)));
        // Purging past the end leaves an empty log that must go on after it.
        ix.purge(id(2, 9));
        assert_eq!(ix.last_log_id(), Some(id(2, 9)));
        assert!(ix.push(11, pos(2)).is_err());
        ix.push(10, pos(2)).unwrap();
        assert_eq!(ix.last_log_id(), Some(id(2, 10)));
        ix.truncate(10);
        assert_eq!(ix.last_log_id(), Some(id(2, 9)));
    }
}
