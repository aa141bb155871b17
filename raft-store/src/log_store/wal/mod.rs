//! The write-ahead-log backend: the Raft log as append-only segment files.
//!
//! `log.wal/` holds numbered segments (`00000000000000000001.wal`, …) of
//! checksummed records (see `record`), the vote and the purge point as
//! small files replaced atomically (see `meta`), and a lock file. Each group
//! commit is one `pwrite` at the end of the newest segment and one
//! `fdatasync`; a segment past `StoreOptions::wal_segment_bytes` is closed
//! and a new one started. A truncation is a record (entries from an index
//! on are gone); a purge persists the purge point and deletes the whole
//! segments behind it. The index of where each live entry sits is kept in
//! memory and rebuilt at open by scanning every segment; a torn tail of the
//! newest segment (a write cut by a crash, never acknowledged) is cut off
//! back to the last whole record, and damage anywhere else fails the open.

mod index;
mod meta;
mod record;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::ops::Bound;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::LogState;
use openraft::{Entry, LogId, Vote};

use self::index::{Index, Pos};
use self::record::Record;
use super::group::{lock, Batch, Flusher, Group};
use crate::error::StorageError;
use crate::{NodeId, StoreOptions, TypeConfig};

const VOTE_FILE: &str = "vote";
const PURGED_FILE: &str = "purged";
const SEGMENT_EXT: &str = "wal";

/// The Raft log as a write-ahead log. Cheap to clone; clones share the
/// files and the flusher, which stops when the last clone is dropped.
#[derive(Clone)]
pub(crate) struct WalLog {
    shared: Arc<Shared>,
    _flusher: Arc<Flusher>,
}

struct Shared {
    dir: PathBuf,
    group: Arc<Group>,
    segment_bytes: u64,
    state: Mutex<State>,
    /// Serialises vote writes (they do not wait for log fsyncs).
    vote_io: Mutex<()>,
    /// Holds the directory lock while the log is open.
    _lock: File,
}

struct State {
    index: Index,
    /// Segments by sequence number; the last one is written to.
    segments: BTreeMap<u64, Segment>,
    /// Bytes of whole records in the newest segment.
    active_len: u64,
    vote: Option<Vote<NodeId>>,
    /// The committed id saved last, and the one last written to a segment.
    committed: Option<LogId<NodeId>>,
    committed_written: Option<LogId<NodeId>>,
}

struct Segment {
    file: Arc<File>,
    path: PathBuf,
    /// Highest entry index recorded in it (stale records included).
    max_index: Option<u64>,
}

/// The segment size in force (a floor keeps tiny settings sane).
fn segment_bytes(opts: &StoreOptions) -> u64 {
    opts.wal_segment_bytes.max(4096)
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.{SEGMENT_EXT}"))
}

fn open_segment(path: &Path) -> Result<File, StorageError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| StorageError::io(path, e))
}

/// Gives the segment its full size up front (zeros), so appends overwrite
/// allocated blocks instead of growing the file: an fdatasync then need not
/// commit a size change to the file system's journal (measured on ext4: a
/// few hundred µs instead of a few ms per group commit). Best effort: where
/// the file system cannot, or the disk is too full, appends grow the file.
fn preallocate(file: &File, path: &Path, bytes: u64) {
    use std::os::unix::io::AsRawFd;
    if file.metadata().is_ok_and(|m| m.len() >= bytes) {
        return;
    }
    let Ok(len) = libc::off_t::try_from(bytes) else {
        return;
    };
    // SAFETY: fallocate on a descriptor we own; no memory is involved.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
    if rc != 0 {
        tracing::debug!(
            file = %path.display(), error = %std::io::Error::last_os_error(),
            "segment not preallocated; appends grow the file"
        );
    }
}

/// Creates a new segment holding only the header, preallocated, durably.
fn create_segment(dir: &Path, seq: u64, bytes: u64) -> Result<Segment, StorageError> {
    let path = segment_path(dir, seq);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| StorageError::io(&path, e))?;
    file.write_all_at(record::MAGIC, 0)
        .map_err(|e| StorageError::io(&path, e))?;
    preallocate(&file, &path, bytes);
    file.sync_all().map_err(|e| StorageError::io(&path, e))?;
    meta::sync_dir(dir)?;
    Ok(Segment {
        file: Arc::new(file),
        path,
        max_index: None,
    })
}

/// Segment sequence numbers found in `dir`, ascending.
fn list_segments(dir: &Path) -> Result<Vec<u64>, StorageError> {
    let mut seqs = Vec::new();
    for item in std::fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))? {
        let item = item.map_err(|e| StorageError::io(dir, e))?;
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = name
            .strip_suffix(&format!(".{SEGMENT_EXT}"))
            .and_then(|s| s.parse::<u64>().ok())
        {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

impl WalLog {
    /// Opens (creating if needed) the WAL in `dir`, replaying every segment.
    pub(crate) fn open(dir: &Path, opts: &StoreOptions) -> Result<Self, StorageError> {
        if !dir.is_dir() {
            crate::create_private_dir(dir).map_err(|e| StorageError::io(dir, e))?;
            // The new directory's own entry must be durable before anything
            // acknowledged is written inside it.
            if let Some(parent) = dir.parent() {
                meta::sync_dir(parent)?;
            }
        }
        let lock_file = meta::lock_dir(dir)?;
        let vote: Option<Vote<NodeId>> = meta::read(dir, VOTE_FILE)?;
        let purged: Option<LogId<NodeId>> = meta::read(dir, PURGED_FILE)?;
        let mut state = State {
            index: Index::new(purged),
            segments: BTreeMap::new(),
            active_len: record::MAGIC.len() as u64,
            vote,
            committed: None,
            committed_written: None,
        };
        let seqs = list_segments(dir)?;
        for (i, &seq) in seqs.iter().enumerate() {
            replay_segment(&mut state, dir, seq, i + 1 == seqs.len(), opts)?;
        }
        if state.segments.is_empty() {
            state
                .segments
                .insert(1, create_segment(dir, 1, segment_bytes(opts))?);
        }
        // Purged entries were applied, so committed; the record of a newer
        // committed id may have gone with the purged segments.
        if state.committed.map(|c| c.index) < purged.map(|p| p.index) {
            state.committed = purged;
        }
        state.committed_written = state.committed;
        let group = Arc::new(Group::new(dir));
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            group: group.clone(),
            segment_bytes: segment_bytes(opts),
            state: Mutex::new(state),
            vote_io: Mutex::new(()),
            _lock: lock_file,
        });
        let (writer, closer) = (shared.clone(), shared.clone());
        let flusher = Flusher::start(
            group,
            move |batch| writer.write_batch(batch),
            move || closer.close(),
        )?;
        Ok(Self {
            shared,
            _flusher: Arc::new(flusher),
        })
    }

    /// The group commit queue and fail-stop state.
    pub(crate) fn group(&self) -> &Group {
        &self.shared.group
    }

    /// Current vote, if one was ever saved.
    pub(crate) fn vote(&self) -> Option<Vote<NodeId>> {
        lock(&self.shared.state).vote
    }

    /// The committed id saved last.
    pub(crate) fn committed(&self) -> Option<LogId<NodeId>> {
        lock(&self.shared.state).committed
    }

    /// Last purged log id and last log id (the purged id when the log is empty).
    pub(crate) fn log_state(&self) -> LogState<TypeConfig> {
        let queued = self.group().last_queued();
        let st = lock(&self.shared.state);
        LogState {
            last_purged_log_id: st.index.purged(),
            last_log_id: queued.or_else(|| st.index.last_log_id()),
        }
    }

    /// Entries whose index lies in `bounds`, in order.
    pub(crate) fn entries(
        &self,
        bounds: (Bound<u64>, Bound<u64>),
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let queued = self.group().queued(bounds);
        let lo = match bounds.0 {
            Bound::Included(i) => i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let hi = match bounds.1 {
            Bound::Included(i) => i.saturating_add(1),
            Bound::Excluded(i) => i,
            Bound::Unbounded => u64::MAX,
        };
        // Contiguous records of one segment are read with one pread.
        let mut runs: Vec<(Arc<File>, PathBuf, u64, u64)> = Vec::new();
        {
            let st = lock(&self.shared.state);
            let mut last: Option<(u64, u64)> = None;
            for p in st.index.range(lo, hi) {
                let follows = last == Some((p.seg, p.offset));
                match runs.last_mut() {
                    Some(run) if follows => run.3 += u64::from(p.len),
                    _ => {
                        let Some(s) = st.segments.get(&p.seg) else {
                            return Err(StorageError::corrupt(
                                &self.shared.dir,
                                format!("the index names segment {} which is gone", p.seg),
                            ));
                        };
                        runs.push((s.file.clone(), s.path.clone(), p.offset, u64::from(p.len)));
                    }
                }
                last = Some((p.seg, p.offset + u64::from(p.len)));
            }
        }
        let mut out = Vec::new();
        for (file, path, offset, len) in runs {
            let mut buf = vec![0u8; len as usize];
            file.read_exact_at(&mut buf, offset)
                .map_err(|e| StorageError::io(&path, e))?;
            record::decode_entries(&path, &buf, &mut out)?;
        }
        if queued.is_empty() {
            return Ok(out);
        }
        let mut all: Batch = out.into_iter().map(|e| (e.log_id.index, e)).collect();
        all.extend(queued);
        Ok(all.into_values().collect())
    }

    /// Saves the vote durably (its own file, replaced atomically).
    pub(crate) fn save_vote(&self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let _v = lock(&self.shared.vote_io);
        self.group().write(|| {
            meta::write_atomic(&self.shared.dir, VOTE_FILE, vote)?;
            lock(&self.shared.state).vote = Some(*vote);
            Ok(())
        })
    }

    /// Keeps the committed id; it is written with the next group commit
    /// (openraft re-learns it from the leader, so it needs no fsync).
    pub(crate) fn save_committed(
        &self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError> {
        self.group().write(|| {
            lock(&self.shared.state).committed = committed;
            Ok(())
        })
    }

    /// Appends one entry durably, outside openraft (offline tools only).
    pub(crate) fn append_offline(&self, entry: &Entry<TypeConfig>) -> Result<(), StorageError> {
        let _io = self.group().lock_io();
        let batch = Batch::from([(entry.log_id.index, entry.clone())]);
        self.group().write(|| self.shared.write_batch(&batch))
    }

    /// Removes entries with index >= `index`: a durable truncation record.
    pub(crate) fn truncate_from(&self, index: u64) -> Result<(), StorageError> {
        let _io = self.group().lock_io();
        self.group().retain_queued(|k| k < index);
        self.group().write(|| {
            let live = lock(&self.shared.state).index.next();
            if live.is_none_or(|next| next <= index) {
                return Ok(()); // nothing at or after `index`
            }
            self.shared.truncate_durably(index)
        })
    }

    /// Records `log_id` as purged (durably, never backwards), then deletes
    /// the segments that hold nothing after it.
    pub(crate) fn purge_upto(&self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        let _io = self.group().lock_io();
        self.group().retain_queued(|k| k > log_id.index);
        self.group().write(|| {
            let behind = lock(&self.shared.state)
                .index
                .purged()
                .is_some_and(|p| p.index >= log_id.index);
            if behind {
                return Ok(());
            }
            meta::write_atomic(&self.shared.dir, PURGED_FILE, &log_id)?;
            lock(&self.shared.state).index.purge(log_id);
            self.shared.delete_purged_segments(log_id.index)
        })
    }

    /// Drops the whole log and records `last` as purged (see
    /// `LogStore::align_with_snapshot`).
    pub(crate) fn reset_to(&self, last: LogId<NodeId>) -> Result<(), StorageError> {
        let _io = self.group().lock_io();
        self.group().retain_queued(|_| false);
        self.group().write(|| {
            // The truncation first: a crash before the purge point is
            // written leaves an empty log, never diverged entries.
            self.shared.truncate_durably(0)?;
            meta::write_atomic(&self.shared.dir, PURGED_FILE, &last)?;
            lock(&self.shared.state).index = Index::new(Some(last));
            self.shared.delete_purged_segments(last.index)
        })
    }
}

/// Replays one segment into `state`; cuts a torn tail off the newest one.
fn replay_segment(
    state: &mut State,
    dir: &Path,
    seq: u64,
    newest: bool,
    opts: &StoreOptions,
) -> Result<(), StorageError> {
    let path = segment_path(dir, seq);
    let bytes = std::fs::read(&path).map_err(|e| StorageError::io(&path, e))?;
    let found = record::scan(&bytes);
    let file = open_segment(&path)?;
    let mut len = found.end;
    // A header cut short (a prefix of it, then nothing or zeros): the
    // segment was being started when the process died.
    let started = bytes
        .iter()
        .zip(record::MAGIC)
        .take_while(|(a, b)| a == b)
        .count();
    let unstarted = found.end == 0 && bytes[started..].iter().all(|b| *b == 0);
    if let Some(reason) = found.torn.filter(|_| !(newest && unstarted)) {
        if !newest || found.end == 0 {
            return Err(StorageError::corrupt(
                &path,
                format!(
                    "{reason} (byte {} of {}); only the newest segment can end in a torn write",
                    found.end,
                    bytes.len()
                ),
            ));
        }
        tracing::warn!(
            file = %path.display(),
            kept = found.end,
            reason = %reason,
            "the raft log ends in a torn write (a crash during an append that was never \
             acknowledged); cutting it back to the last whole record"
        );
        file.set_len(found.end)
            .and_then(|()| file.sync_all())
            .map_err(|e| StorageError::io(&path, e))?;
    }
    if newest && unstarted {
        // A crash while the segment was being started: start it again.
        file.set_len(0)
            .and_then(|()| file.write_all_at(record::MAGIC, 0))
            .and_then(|()| file.sync_all())
            .map_err(|e| StorageError::io(&path, e))?;
        len = record::MAGIC.len() as u64;
    }
    if newest {
        preallocate(&file, &path, segment_bytes(opts));
    }
    let mut max_index = None;
    for r in found.records {
        match r {
            Record::Entry {
                log_id,
                offset,
                len,
            } => {
                if opts.verify_on_open {
                    let rec = &bytes[offset as usize..(offset + u64::from(len)) as usize];
                    record::decode_entries(&path, rec, &mut Vec::with_capacity(1))?;
                }
                let pos = Pos {
                    seg: seq,
                    offset,
                    len,
                    term: log_id.leader_id.term,
                    node: log_id.leader_id.node_id,
                };
                state
                    .index
                    .push(log_id.index, pos)
                    .map_err(|e| StorageError::corrupt(&path, e))?;
                max_index = max_index.max(Some(log_id.index));
            }
            Record::Truncate { from } => state.index.truncate(from),
            Record::Committed(c) => state.committed = c,
        }
    }
    state.segments.insert(
        seq,
        Segment {
            file: Arc::new(file),
            path,
            max_index,
        },
    );
    state.active_len = len;
    Ok(())
}

impl Shared {
    /// Appends `buf` at the end of the newest segment (first starting a new
    /// one when `roll` and the newest is full) and fdatasyncs it. Returns
    /// the segment and the offset written at. Call with the write lock held.
    fn append_bytes(&self, buf: &[u8], roll: bool) -> Result<(u64, u64), StorageError> {
        let (mut seq, mut file, mut path, mut offset) = {
            let st = lock(&self.state);
            let (seq, seg) = st
                .segments
                .last_key_value()
                .ok_or_else(|| StorageError::corrupt(&self.dir, "no segment to write to"))?;
            (*seq, seg.file.clone(), seg.path.clone(), st.active_len)
        };
        if roll && offset >= self.segment_bytes {
            let seg = create_segment(&self.dir, seq + 1, self.segment_bytes)?;
            seq += 1;
            (file, path, offset) = (
                seg.file.clone(),
                seg.path.clone(),
                record::MAGIC.len() as u64,
            );
            let mut st = lock(&self.state);
            st.segments.insert(seq, seg);
            st.active_len = offset;
        }
        file.write_all_at(buf, offset)
            .and_then(|()| file.sync_data())
            .map_err(|e| StorageError::io(&path, e))?;
        lock(&self.state).active_len = offset + buf.len() as u64;
        Ok((seq, offset))
    }

    /// Writes one group of entries (and the committed id, when it moved)
    /// with one fdatasync, then indexes them. Refuses a hole.
    fn write_batch(&self, batch: &Batch) -> Result<(), StorageError> {
        if batch.is_empty() {
            return Ok(());
        }
        let committed = {
            let st = lock(&self.state);
            let mut next = st.index.next();
            for &index in batch.keys() {
                if next.is_some_and(|n| index > n) {
                    return Err(StorageError::corrupt(
                        &self.dir,
                        format!("append of index {index} would leave a hole (expected {next:?})"),
                    ));
                }
                next = Some(index + 1);
            }
            (st.committed != st.committed_written).then_some(st.committed)
        };
        let mut buf = Vec::with_capacity(256 * batch.len());
        if let Some(c) = &committed {
            record::put_committed(&mut buf, c)?;
        }
        let mut at = Vec::with_capacity(batch.len());
        for e in batch.values() {
            let rel = buf.len() as u64;
            at.push((e.log_id, rel, record::put_entry(&mut buf, e)?));
        }
        let (seq, offset) = self.append_bytes(&buf, true)?;
        let mut st = lock(&self.state);
        for (log_id, rel, len) in at {
            let pos = Pos {
                seg: seq,
                offset: offset + rel,
                len,
                term: log_id.leader_id.term,
                node: log_id.leader_id.node_id,
            };
            st.index
                .push(log_id.index, pos)
                .map_err(|e| StorageError::corrupt(&self.dir, e))?;
            if let Some(seg) = st.segments.get_mut(&seq) {
                seg.max_index = seg.max_index.max(Some(log_id.index));
            }
        }
        if let Some(c) = committed {
            st.committed_written = c;
        }
        Ok(())
    }

    /// Writes a truncation record durably and applies it to the index.
    fn truncate_durably(&self, from: u64) -> Result<(), StorageError> {
        let mut buf = Vec::new();
        record::put_truncate(&mut buf, from);
        self.append_bytes(&buf, false)?;
        lock(&self.state).index.truncate(from);
        Ok(())
    }

    /// Deletes the oldest segments while every entry they hold is at or
    /// below `purged` (the newest segment stays: it is written to).
    fn delete_purged_segments(&self, purged: u64) -> Result<(), StorageError> {
        let doomed: Vec<PathBuf> = {
            let mut st = lock(&self.state);
            let newest = st.segments.keys().next_back().copied().unwrap_or(0);
            let mut doomed = Vec::new();
            while let Some(entry) = st.segments.first_entry() {
                let seg = entry.get();
                if *entry.key() == newest || seg.max_index.is_some_and(|m| m > purged) {
                    break;
                }
                doomed.push(entry.remove().path);
            }
            doomed
        };
        if doomed.is_empty() {
            return Ok(());
        }
        for path in &doomed {
            // Open readers keep their handle; the space comes back after.
            std::fs::remove_file(path).map_err(|e| StorageError::io(path, e))?;
        }
        meta::sync_dir(&self.dir)
    }

    /// At close: persists a committed id saved since the last group commit.
    fn close(&self) {
        if self.group.failed().is_some() {
            return;
        }
        let committed = {
            let st = lock(&self.state);
            if st.committed == st.committed_written {
                return;
            }
            st.committed
        };
        let _io = self.group.lock_io();
        let mut buf = Vec::new();
        let res = record::put_committed(&mut buf, &committed)
            .and_then(|()| self.append_bytes(&buf, false));
        if let Err(e) = res {
            tracing::warn!(error = %e, "raft log flush on close failed");
        }
    }
}
