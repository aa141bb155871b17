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

mod dir;
mod read;
mod write;

pub(crate) use dir::{copy_to_new, newest_published, sync_dir, SnapshotDir};
pub(crate) use read::{read_applied, read_snapshot, restore_from, Item};
use read::{read_preamble, HashReader};
pub(crate) use write::{write_from_state, SnapshotWriter};

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
    let file = File::open(src).map_err(|e| StorageError::io(src, e))?;
    rewrite_open_snapshot(file, src, dst, edit)
}

/// [`rewrite_snapshot`] of a file already open, read from its start. A
/// handle stays readable after a newer snapshot prunes its file, so a
/// caller that opened the current snapshot under the directory's lock can
/// copy it at leisure; `src` only names it in errors.
pub fn rewrite_open_snapshot(
    mut file: File,
    src: &Path,
    dst: &Path,
    edit: impl FnOnce(&mut SnapshotHeader),
) -> Result<SnapshotSummary, StorageError> {
    let mut header = read_preamble(&mut HashReader::new(BufReader::new(&file)), src)?;
    edit(&mut header);
    file.seek(SeekFrom::Start(0))
        .map_err(|e| StorageError::io(src, e))?;
    let mut writer = SnapshotWriter::create(dst, &header)?;
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
