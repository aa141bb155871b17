//! The snapshot directory: publishing, finding the newest, pruning and
//! removing temporaries left by a crash.

use super::*;

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
    /// (only the newest is kept). The file comes back open: a snapshot older
    /// than the newest (a build that finished after a newer one was
    /// installed from the leader) is pruned at once, and reading it by path
    /// afterwards failed the node.
    pub(crate) fn publish(
        &self,
        tmp: &Path,
        meta: &SnapshotMeta<NodeId, Node>,
    ) -> Result<(Published, File), StorageError> {
        let index = meta.last_log_id.map_or(0, |l| l.index);
        let seq = self.next_seq();
        let path = self
            .dir
            .join(format!("snapshot-{index:020}-{seq:020}.{SNAP_EXT}"));
        let mut current = lock(&self.current);
        // Opened before the rename so that it is never the pruned name that
        // is opened.
        let file = File::open(tmp).map_err(|e| StorageError::io(tmp, e))?;
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
        Ok((published, file))
    }

    /// Removes published files older than the newest. Nothing reads an older
    /// one: the open takes the newest, and a transfer that is streaming an
    /// older file holds it open, which on Unix keeps its data until it is
    /// closed. Keeping one more used to double the snapshots' share of the
    /// disk (a full copy of the state). Failures are only logged: a leftover
    /// file wastes space but harms nothing.
    fn prune(&self, current: Option<&Published>) {
        let Some(current) = current else { return };
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let older: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let (i, s) = parse_name(&e.file_name().to_string_lossy())?;
                ((i, s) < (current.index, current.seq)).then(|| e.path())
            })
            .collect();
        for path in older {
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
