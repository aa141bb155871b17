//! Snapshot files: a self-describing, checksummed stream of the state
//! machine's records.
//!
//! Layout (format version 1; all integers big-endian):
//!
//! ```text
//! magic          8 bytes   "COFSNAP\0"
//! version        u16       1
//! header_len     u32       length of the header (at most 1 MiB)
//! header         JSON      SnapshotHeader: snapshot meta (last log id,
//!                          membership, snapshot id), creation time and
//!                          optional fields; unknown fields are ignored
//! records        repeated  u32 length + postcard(Record), at most 256 MiB:
//!                            Kv    { key, revision, value }   keys ascending
//!                            Dedup { id, time_ms, response }  ids ascending
//!                            End   { kv_entries, dedup_entries, kv_digest }
//! checksum       32 bytes  SHA-256 of every byte before it
//! ```
//!
//! `End` is the last record and must be followed by the checksum and the end
//! of the file, so truncation anywhere is detected; `kv_digest` is the
//! state's additive digest (see `digest.rs`), recomputed by every reader.
//! Files are written to a temporary name, fsynced, renamed into
//! `<data_dir>/snapshots/` and the directory fsynced.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::{LogId, SnapshotMeta};
use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::apply::DedupRecord;
use crate::digest::StateSum;
use crate::error::{RateLimit, StorageError};
use crate::state_machine::AppliedState;
use crate::tables::{
    decode_ref, encode, get_meta, VersionedRef, DEDUP, DEDUP_BY_TIME, KEY_DIGEST, KEY_LAST_APPLIED,
    KEY_MEMBERSHIP, KV, SM_META,
};
use crate::{Node, NodeId, Response};

/// First bytes of every snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"COFSNAP\0";
/// The format version this build writes and reads.
pub const SNAPSHOT_FORMAT_VERSION: u16 = 1;
/// Upper bound of the JSON header, so a damaged length cannot make a reader
/// allocate gigabytes.
const MAX_HEADER: u32 = 1 << 20;
/// Upper bound of one record (a value is bounded far below this by the
/// node's request size limit).
const MAX_RECORD: u32 = 256 << 20;
/// Extension of published snapshot files.
const SNAP_EXT: &str = "snap";
/// Extension of files being written or received.
const TMP_EXT: &str = "tmp";

/// The self-describing part at the start of a snapshot file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    /// What the snapshot covers: last log id, membership and snapshot id.
    pub meta: SnapshotMeta<NodeId, Node>,
    /// When the file was written, Unix milliseconds.
    pub created_unix_ms: u64,
    /// The cluster the snapshot belongs to, when the writer knew it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// The node that wrote the file, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<NodeId>,
}

/// What reading a whole snapshot file established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotSummary {
    /// The file's header.
    pub header: SnapshotHeader,
    /// Number of key/value records.
    pub kv_entries: u64,
    /// Number of remembered request ids.
    pub dedup_entries: u64,
    /// Hex digest of the key/value records (as [`crate::StateDigest`]).
    pub kv_digest_hex: String,
    /// Size of the file in bytes.
    pub bytes: u64,
}

impl SnapshotSummary {
    /// Log index the snapshot covers (0 for an empty state).
    pub fn index(&self) -> u64 {
        self.header.meta.last_log_id.map_or(0, |l| l.index)
    }
}

/// One record of the stream. Borrowed so neither writing nor reading copies
/// values (postcard encodes `&[u8]` exactly like `Vec<u8>`).
#[derive(Serialize, Deserialize)]
enum Record<'a> {
    Kv {
        key: &'a [u8],
        revision: u64,
        value: &'a [u8],
    },
    Dedup {
        id: &'a str,
        time_ms: u64,
        response: Response,
    },
    End {
        kv_entries: u64,
        dedup_entries: u64,
        kv_digest: [u8; 32],
    },
}

/// Verifies a snapshot file completely — format, every record, the digest
/// and the checksum — without changing anything.
pub fn verify_snapshot_file(path: &Path) -> Result<SnapshotSummary, StorageError> {
    let file = File::open(path).map_err(|e| StorageError::io(path, e))?;
    read_snapshot(file, path, |_| Ok(())).map(|(summary, _)| summary)
}

/// Verifies a snapshot file completely, like [`verify_snapshot_file`], and
/// returns the stored (raw) value of `key` as well — how a backup is
/// inspected without keys (the seal configuration is stored unencrypted).
pub fn inspect_snapshot_file(
    path: &Path,
    key: &[u8],
) -> Result<(SnapshotSummary, Option<Vec<u8>>), StorageError> {
    let file = File::open(path).map_err(|e| StorageError::io(path, e))?;
    let mut found = None;
    let (summary, _) = read_snapshot(file, path, |item| {
        if let Item::Kv { key: k, value, .. } = item {
            if k == key {
                found = Some(value.to_vec());
            }
        }
        Ok(())
    })?;
    Ok((summary, found))
}

/// Copies the snapshot `src` (verifying it completely) into the new file
/// `dst` with its header changed by `edit` — a backup labelled with the
/// cluster it came from, or restored into a new cluster with that
/// cluster's membership. Records, digest, index and term are unchanged.
pub fn rewrite_snapshot(
    src: &Path,
    dst: &Path,
    edit: impl FnOnce(&mut SnapshotHeader),
) -> Result<SnapshotSummary, StorageError> {
    let mut header = read_header(src)?;
    edit(&mut header);
    let mut writer = SnapshotWriter::create(dst, &header)?;
    let file = File::open(src).map_err(|e| StorageError::io(src, e))?;
    let copied = read_snapshot(file, src, |item| match item {
        Item::Kv {
            key,
            revision,
            value,
        } => writer.kv(key, revision, value),
        Item::Dedup { id, record } => writer.dedup(id, &record),
    });
    if let Err(e) = copied.and_then(|_| writer.finish().map(drop)) {
        let _ = fs::remove_file(dst);
        return Err(e);
    }
    verify_snapshot_file(dst)
}

/// Reads only the header (cheap; does not verify the rest).
pub(crate) fn read_header(path: &Path) -> Result<SnapshotHeader, StorageError> {
    let file = File::open(path).map_err(|e| StorageError::io(path, e))?;
    let mut r = HashReader::new(BufReader::new(file));
    read_preamble(&mut r, path)
}

// ---------------------------------------------------------------- writing

/// Writes a snapshot stream, hashing and counting as it goes.
pub(crate) struct SnapshotWriter {
    out: HashWriter<BufWriter<File>>,
    path: PathBuf,
    buf: Vec<u8>,
    kv_entries: u64,
    dedup_entries: u64,
    sum: StateSum,
}

impl SnapshotWriter {
    /// Creates `path` and writes the preamble.
    pub(crate) fn create(path: &Path, header: &SnapshotHeader) -> Result<Self, StorageError> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| StorageError::io(path, e))?;
        let mut w = Self {
            out: HashWriter::new(BufWriter::with_capacity(1 << 20, file)),
            path: path.to_path_buf(),
            buf: Vec::new(),
            kv_entries: 0,
            dedup_entries: 0,
            sum: StateSum::default(),
        };
        let json = serde_json::to_vec(header)
            .map_err(|e| StorageError::Task(format!("snapshot header encoding: {e}")))?;
        let header_len = u32::try_from(json.len())
            .ok()
            .filter(|l| *l <= MAX_HEADER)
            .ok_or_else(|| StorageError::Task("snapshot header too large".into()))?;
        w.write(&SNAPSHOT_MAGIC)?;
        w.write(&SNAPSHOT_FORMAT_VERSION.to_be_bytes())?;
        w.write(&header_len.to_be_bytes())?;
        w.write(&json)?;
        Ok(w)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.out
            .write_all(bytes)
            .map_err(|e| StorageError::io(&self.path, e))
    }

    fn record(&mut self, rec: &Record<'_>) -> Result<(), StorageError> {
        self.buf.clear();
        let body = postcard::to_extend(rec, std::mem::take(&mut self.buf))
            .map_err(|e| StorageError::Task(format!("snapshot record encoding: {e}")))?;
        let len = u32::try_from(body.len())
            .ok()
            .filter(|l| *l <= MAX_RECORD)
            .ok_or_else(|| StorageError::Task("snapshot record too large".into()))?;
        self.write(&len.to_be_bytes())?;
        self.write(&body)?;
        self.buf = body;
        Ok(())
    }

    /// Appends one key/value entry (keys must come in ascending order).
    pub(crate) fn kv(
        &mut self,
        key: &[u8],
        revision: u64,
        value: &[u8],
    ) -> Result<(), StorageError> {
        self.sum.add(key, revision, value);
        self.kv_entries += 1;
        self.record(&Record::Kv {
            key,
            revision,
            value,
        })
    }

    /// Appends one remembered request id (ids in ascending order).
    pub(crate) fn dedup(&mut self, id: &str, rec: &DedupRecord) -> Result<(), StorageError> {
        self.dedup_entries += 1;
        self.record(&Record::Dedup {
            id,
            time_ms: rec.time_ms,
            response: rec.response.clone(),
        })
    }

    /// Writes the end record and the checksum, and makes the file durable.
    /// Returns the digest of what was written.
    pub(crate) fn finish(mut self) -> Result<StateSum, StorageError> {
        let end = Record::End {
            kv_entries: self.kv_entries,
            dedup_entries: self.dedup_entries,
            kv_digest: self.sum.bytes(),
        };
        self.record(&end)?;
        let checksum = self.out.hasher.clone().finalize();
        self.out
            .inner
            .write_all(&checksum)
            .and_then(|()| self.out.inner.flush())
            .map_err(|e| StorageError::io(&self.path, e))?;
        let file = self
            .out
            .inner
            .into_inner()
            .map_err(|e| StorageError::io(&self.path, e.into_error()))?;
        file.sync_all()
            .map_err(|e| StorageError::io(&self.path, e))?;
        Ok(self.sum)
    }
}

struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> HashWriter<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
        }
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Streams the state as of `txn` (one read transaction: a consistent view)
/// into a new snapshot file at `path`. Returns the header written and the
/// digest of the records.
pub(crate) fn write_from_state(
    txn: &ReadTransaction,
    path: &Path,
    header: &SnapshotHeader,
    mut progress: impl FnMut(u64),
) -> Result<StateSum, StorageError> {
    let mut w = SnapshotWriter::create(path, header)?;
    for item in txn.open_table(KV)?.iter()? {
        let (k, v) = item?;
        let v = decode_ref(v.value())?;
        w.kv(k.value(), v.revision, v.value)?;
        progress(w.kv_entries);
    }
    for item in txn.open_table(DEDUP)?.iter()? {
        let (k, v) = item?;
        let rec: DedupRecord = crate::tables::decode(v.value())?;
        w.dedup(k.value(), &rec)?;
    }
    w.finish()
}

// ---------------------------------------------------------------- reading

struct HashReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
}

impl<R: Read> HashReader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            read: 0,
        }
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// Maps a read failure: running out of bytes is a truncated file.
fn read_err(path: &Path, at: u64, e: io::Error) -> StorageError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        StorageError::bad_snapshot(path, format!("truncated: the file ends at byte {at}"))
    } else {
        StorageError::io(path, e)
    }
}

fn read_u32<R: Read>(r: &mut HashReader<R>, path: &Path) -> Result<u32, StorageError> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)
        .map_err(|e| read_err(path, r.read, e))?;
    Ok(u32::from_be_bytes(b))
}

fn read_preamble<R: Read>(
    r: &mut HashReader<R>,
    path: &Path,
) -> Result<SnapshotHeader, StorageError> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)
        .map_err(|e| read_err(path, r.read, e))?;
    if magic != SNAPSHOT_MAGIC {
        return Err(StorageError::bad_snapshot(
            path,
            "not a Coffer snapshot file (wrong magic bytes)",
        ));
    }
    let mut version = [0u8; 2];
    r.read_exact(&mut version)
        .map_err(|e| read_err(path, r.read, e))?;
    let version = u16::from_be_bytes(version);
    if version != SNAPSHOT_FORMAT_VERSION {
        return Err(StorageError::bad_snapshot(
            path,
            format!(
                "format version {version} is not supported (this build reads version \
                 {SNAPSHOT_FORMAT_VERSION})"
            ),
        ));
    }
    let len = read_u32(r, path)?;
    if len > MAX_HEADER {
        return Err(StorageError::bad_snapshot(
            path,
            format!("header length {len} exceeds {MAX_HEADER} bytes"),
        ));
    }
    let mut json = vec![0u8; len as usize];
    r.read_exact(&mut json)
        .map_err(|e| read_err(path, r.read, e))?;
    serde_json::from_slice(&json)
        .map_err(|e| StorageError::bad_snapshot(path, format!("header does not decode: {e}")))
}

/// A record handed to [`read_snapshot`]'s visitor.
pub(crate) enum Item<'a> {
    Kv {
        key: &'a [u8],
        revision: u64,
        value: &'a [u8],
    },
    Dedup {
        id: &'a str,
        record: DedupRecord,
    },
}

/// Reads a whole snapshot stream, handing every record to `visit`, and
/// checks structure, order, counts, digest and checksum. Errors of `visit`
/// pass through unchanged; everything wrong with the file is
/// [`StorageError::BadSnapshot`].
pub(crate) fn read_snapshot<R: Read>(
    src: R,
    path: &Path,
    mut visit: impl FnMut(Item<'_>) -> Result<(), StorageError>,
) -> Result<(SnapshotSummary, StateSum), StorageError> {
    let bad = |detail: String| StorageError::bad_snapshot(path, detail);
    let mut r = HashReader::new(BufReader::with_capacity(1 << 20, src));
    let header = read_preamble(&mut r, path)?;
    let mut buf = Vec::new();
    let mut sum = StateSum::default();
    let (mut kv_entries, mut dedup_entries) = (0u64, 0u64);
    let mut last_key: Option<Vec<u8>> = None;
    let mut last_id: Option<String> = None;
    loop {
        let at = r.read;
        let len = read_u32(&mut r, path)?;
        if len > MAX_RECORD {
            return Err(bad(format!(
                "record at byte {at} claims {len} bytes (limit {MAX_RECORD})"
            )));
        }
        buf.resize(len as usize, 0);
        r.read_exact(&mut buf)
            .map_err(|e| read_err(path, r.read, e))?;
        let rec: Record<'_> = postcard::from_bytes(&buf)
            .map_err(|e| bad(format!("record at byte {at} does not decode: {e}")))?;
        match rec {
            Record::Kv {
                key,
                revision,
                value,
            } => {
                if dedup_entries > 0 || last_key.as_deref().is_some_and(|k| k >= key) {
                    return Err(bad(format!(
                        "key/value record at byte {at} is out of order"
                    )));
                }
                last_key = Some(key.to_vec());
                sum.add(key, revision, value);
                kv_entries += 1;
                visit(Item::Kv {
                    key,
                    revision,
                    value,
                })?;
            }
            Record::Dedup {
                id,
                time_ms,
                response,
            } => {
                if last_id.as_deref().is_some_and(|i| i >= id) {
                    return Err(bad(format!(
                        "request-id record at byte {at} is out of order"
                    )));
                }
                last_id = Some(id.to_owned());
                dedup_entries += 1;
                visit(Item::Dedup {
                    id,
                    record: DedupRecord { time_ms, response },
                })?;
            }
            Record::End {
                kv_entries: want_kv,
                dedup_entries: want_dedup,
                kv_digest,
            } => {
                if (want_kv, want_dedup) != (kv_entries, dedup_entries) {
                    return Err(bad(format!(
                        "end record counts {want_kv} entries and {want_dedup} request ids, \
                         the file holds {kv_entries} and {dedup_entries}"
                    )));
                }
                if kv_digest != sum.bytes() {
                    return Err(bad(
                        "the records do not match the digest in the end record".into()
                    ));
                }
                break;
            }
        }
    }
    let computed = r.hasher.clone().finalize();
    let mut stored = [0u8; 32];
    r.inner
        .read_exact(&mut stored)
        .map_err(|e| read_err(path, r.read, e))?;
    if stored[..] != computed[..] {
        return Err(bad("SHA-256 checksum mismatch: the file is damaged".into()));
    }
    let mut extra = [0u8; 1];
    match r.inner.read(&mut extra) {
        Ok(0) => {}
        Ok(_) => return Err(bad("unexpected bytes after the checksum".into())),
        Err(e) => return Err(StorageError::io(path, e)),
    }
    let summary = SnapshotSummary {
        header,
        kv_entries,
        dedup_entries,
        kv_digest_hex: sum.hex(),
        bytes: r.read + 32,
    };
    Ok((summary, sum))
}

// ---------------------------------------------------------- state access

/// Reads last applied id and membership within `txn`.
pub(crate) fn read_applied(txn: &ReadTransaction) -> Result<AppliedState, StorageError> {
    let meta = txn.open_table(SM_META)?;
    let applied: Option<Option<LogId<NodeId>>> = get_meta(&meta, KEY_LAST_APPLIED)?;
    let membership = get_meta(&meta, KEY_MEMBERSHIP)?.unwrap_or_default();
    Ok((applied.flatten(), membership))
}

/// Replaces all state machine tables with the snapshot in `src`, inside
/// `txn` (nothing is visible until the caller commits; on error the caller
/// drops the transaction and nothing changes).
pub(crate) fn restore_from<R: Read>(
    txn: &WriteTransaction,
    src: R,
    path: &Path,
) -> Result<(SnapshotSummary, StateSum), StorageError> {
    txn.delete_table(KV)?;
    txn.delete_table(DEDUP)?;
    txn.delete_table(DEDUP_BY_TIME)?;
    let mut kv = txn.open_table(KV)?;
    let mut dedup = txn.open_table(DEDUP)?;
    let mut by_time = txn.open_table(DEDUP_BY_TIME)?;
    let mut enc = Vec::new();
    let (summary, sum) = read_snapshot(src, path, |item| {
        match item {
            Item::Kv {
                key,
                revision,
                value,
            } => {
                enc.clear();
                enc = postcard::to_extend(
                    &VersionedRef { revision, value },
                    std::mem::take(&mut enc),
                )?;
                kv.insert(key, enc.as_slice())?;
            }
            Item::Dedup { id, record } => {
                dedup.insert(id, encode(&record)?.as_slice())?;
                by_time.insert((record.time_ms, id), ())?;
            }
        }
        Ok(())
    })?;
    let mut meta = txn.open_table(SM_META)?;
    let m = &summary.header.meta;
    meta.insert(KEY_LAST_APPLIED, encode(&m.last_log_id)?.as_slice())?;
    meta.insert(KEY_MEMBERSHIP, encode(&m.last_membership)?.as_slice())?;
    meta.insert(KEY_DIGEST, encode(&sum)?.as_slice())?;
    Ok((summary, sum))
}

// ------------------------------------------------------ snapshot directory

/// A published snapshot: what it covers and where it is.
#[derive(Clone, Debug)]
pub(crate) struct Published {
    pub meta: SnapshotMeta<NodeId, Node>,
    pub path: PathBuf,
    index: u64,
    seq: u64,
}

/// `<data_dir>/snapshots/`: published files named
/// `snapshot-<index:020>-<seq:020>.snap` (newest = highest index, then
/// highest sequence) and temporaries `*.tmp`.
pub(crate) struct SnapshotDir {
    dir: PathBuf,
    /// The newest published snapshot; also serialises publishing and pruning.
    current: Mutex<Option<Published>>,
    last_seq: AtomicU64,
}

static PRUNE_WARN: RateLimit = RateLimit::new(Duration::from_secs(60));

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn parse_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_prefix("snapshot-")?.strip_suffix(".snap")?;
    let (index, seq) = stem.split_once('-')?;
    Some((index.parse().ok()?, seq.parse().ok()?))
}

/// The newest published snapshot file in `dir` (highest index, then highest
/// sequence), without reading it.
pub(crate) fn newest_published(dir: &Path) -> Result<Option<PathBuf>, StorageError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io(dir, e)),
    };
    let mut newest: Option<(u64, u64, PathBuf)> = None;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io(dir, e))?;
        if let Some((index, seq)) = parse_name(&entry.file_name().to_string_lossy()) {
            if newest
                .as_ref()
                .is_none_or(|(i, s, _)| (index, seq) > (*i, *s))
            {
                newest = Some((index, seq, entry.path()));
            }
        }
    }
    Ok(newest.map(|(_, _, p)| p))
}

/// fsyncs a directory so a rename or removal in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io(dir, e))
}

impl SnapshotDir {
    /// Opens (creating) the directory, removes temporaries left by a crash
    /// and finds the newest snapshot. With `verify` the newest file is read
    /// completely; a damaged one fails the open.
    pub(crate) fn open(dir: &Path, verify: bool) -> Result<Self, StorageError> {
        fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
        let mut newest: Option<(u64, u64, PathBuf)> = None;
        let mut removed = false;
        for entry in fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))? {
            let entry = entry.map_err(|e| StorageError::io(dir, e))?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if path.extension().is_some_and(|e| e == TMP_EXT) {
                fs::remove_file(&path).map_err(|e| StorageError::io(&path, e))?;
                removed = true;
            } else if let Some((index, seq)) = parse_name(&name) {
                if newest
                    .as_ref()
                    .is_none_or(|(i, s, _)| (index, seq) > (*i, *s))
                {
                    newest = Some((index, seq, path));
                }
            }
        }
        if removed {
            sync_dir(dir)?;
        }
        let current = match newest {
            None => None,
            Some((index, seq, path)) => {
                let header = if verify {
                    verify_snapshot_file(&path)
                        .map_err(|e| match e {
                            StorageError::BadSnapshot { file, detail } => {
                                StorageError::Corrupt { file, detail }
                            }
                            other => other,
                        })?
                        .header
                } else {
                    read_header(&path).map_err(|e| match e {
                        StorageError::BadSnapshot { file, detail } => {
                            StorageError::Corrupt { file, detail }
                        }
                        other => other,
                    })?
                };
                Some(Published {
                    meta: header.meta,
                    path,
                    index,
                    seq,
                })
            }
        };
        let last_seq = current.as_ref().map_or(0, |p| p.seq);
        Ok(Self {
            dir: dir.to_path_buf(),
            current: Mutex::new(current),
            last_seq: AtomicU64::new(last_seq),
        })
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// A fresh, increasing sequence number (Unix ns, bumped past the last).
    fn next_seq(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut last = self.last_seq.load(Ordering::Relaxed);
        loop {
            let next = now.max(last + 1);
            match self
                .last_seq
                .compare_exchange(last, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(l) => last = l,
            }
        }
    }

    /// A new temporary path (`kind` says what for: "build", "recv").
    pub(crate) fn temp_path(&self, kind: &str) -> PathBuf {
        self.dir
            .join(format!("{kind}-{}.{TMP_EXT}", self.next_seq()))
    }

    /// The newest published snapshot.
    pub(crate) fn current(&self) -> Option<Published> {
        lock(&self.current).clone()
    }

    /// Runs `f` on the newest snapshot while no publish or prune can run,
    /// so the file cannot be removed in between.
    pub(crate) fn with_current<T>(&self, f: impl FnOnce(Option<&Published>) -> T) -> T {
        f(lock(&self.current).as_ref())
    }

    /// Moves the complete, fsynced temporary `tmp` into place as a snapshot
    /// covering `meta`, makes the rename durable and prunes older files
    /// (the newest and the one before it are kept).
    pub(crate) fn publish(
        &self,
        tmp: &Path,
        meta: &SnapshotMeta<NodeId, Node>,
    ) -> Result<Published, StorageError> {
        let index = meta.last_log_id.map_or(0, |l| l.index);
        let seq = self.next_seq();
        let path = self
            .dir
            .join(format!("snapshot-{index:020}-{seq:020}.{SNAP_EXT}"));
        let mut current = lock(&self.current);
        fs::rename(tmp, &path).map_err(|e| StorageError::io(&path, e))?;
        sync_dir(&self.dir)?;
        let published = Published {
            meta: meta.clone(),
            path,
            index,
            seq,
        };
        if current
            .as_ref()
            .is_none_or(|c| (c.index, c.seq) < (published.index, published.seq))
        {
            *current = Some(published.clone());
        }
        self.prune(current.as_ref());
        Ok(published)
    }

    /// Removes published files older than the newest but one. Failures are
    /// only logged: a leftover file wastes space but harms nothing.
    fn prune(&self, current: Option<&Published>) {
        let Some(current) = current else { return };
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut older: Vec<(u64, u64, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let (i, s) = parse_name(&e.file_name().to_string_lossy())?;
                ((i, s) < (current.index, current.seq)).then(|| (i, s, e.path()))
            })
            .collect();
        older.sort();
        older.pop(); // keep the one before the current
        for (_, _, path) in older {
            if let Err(e) = fs::remove_file(&path) {
                if let Some(held_back) = PRUNE_WARN.allow() {
                    tracing::warn!(
                        file = %path.display(), error = %e, held_back,
                        "could not remove an old snapshot file"
                    );
                }
            }
        }
    }

    /// Removes temporaries of abandoned receptions other than `keep`.
    pub(crate) fn remove_stale_receptions(&self, keep: &Path) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.filter_map(Result::ok) {
            let path = e.path();
            let name = e.file_name();
            if path != keep
                && name.to_string_lossy().starts_with("recv-")
                && path.extension().is_some_and(|x| x == TMP_EXT)
            {
                let _ = fs::remove_file(&path);
            }
        }
    }
}

/// Copies everything from `src` (from its start) into a new file at `dst`
/// and fsyncs it.
pub(crate) fn copy_to_new(src: &mut File, dst: &Path) -> Result<(), StorageError> {
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dst)
        .map_err(|e| StorageError::io(dst, e))?;
    src.seek(SeekFrom::Start(0))
        .map_err(|e| StorageError::io(dst, e))?;
    io::copy(src, &mut out).map_err(|e| StorageError::io(dst, e))?;
    out.sync_all().map_err(|e| StorageError::io(dst, e))
}
