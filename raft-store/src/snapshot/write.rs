//! Writing snapshot files: the preamble, the records and the checksum,
//! hashed as they are written.

use super::*;

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
