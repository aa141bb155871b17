//! Reading snapshot files: every record checked against the format, the
//! counts, the digest and the checksum; restoring a state from one.

use super::*;

pub(super) struct HashReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
}

impl<R: Read> HashReader<R> {
    pub(super) fn new(inner: R) -> Self {
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

pub(super) fn read_preamble<R: Read>(
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
