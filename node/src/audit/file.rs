//! The node's audit file: JSON lines on the node's own hash chain, written
//! by one thread in batches with one `fdatasync` per batch, acknowledged
//! only once on disk. Rotated by size; reopened on SIGHUP (after an
//! external logrotate moved it). A write that fails (a full disk) is cut
//! back to the last whole line, its records are kept and written first once
//! the disk takes them again, and every waiting request is told at once.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::config::AuditSync;
use crate::engine::audit::{AuditEvent, Head};

/// Records of failed writes kept for the next attempt, at most (beyond
/// this the oldest are dropped and counted in `coffer_audit_failures_total`).
const BACKLOG_MAX: usize = 10_000;
/// How often a non-empty backlog is retried without new requests.
const RETRY_EVERY: Duration = Duration::from_millis(500);
/// With [`AuditSync::Write`]: how long acknowledged records may stay
/// unflushed. One `fdatasync` per interval instead of one per batch: the
/// flush was most of the CPU the audit file cost a node (a profile of a
/// node signing at 2 clients: 21 % in `fdatasync`).
pub const FLUSH_WITHIN: Duration = Duration::from_millis(100);

/// Where a record ended up: its `seq` in the node's chain.
pub type Ack = Result<u64, String>;

/// A record to write and who waits for it.
pub struct Job {
    /// The record.
    pub event: AuditEvent,
    /// Told once the record is on disk or the write failed.
    pub ack: oneshot::Sender<Ack>,
}

/// Told about every record once it is durably written (shipping, copies).
pub type Written = Box<dyn Fn(&[(u64, AuditEvent, Vec<u8>)]) + Send>;

/// Settings of the writer.
#[derive(Clone, Debug)]
pub struct FileOptions {
    /// The current file.
    pub path: PathBuf,
    /// Size that triggers rotation.
    pub max_file_bytes: u64,
    /// Rotated files kept.
    pub max_files: usize,
    /// Records per write at most.
    pub batch_max: usize,
    /// Whether a batch is flushed before its requests are answered.
    pub sync: AuditSync,
}

/// Handle to the writer thread.
#[derive(Clone)]
pub struct FileSink {
    tx: mpsc::SyncSender<Job>,
    stream: String,
    healthy: Arc<AtomicBool>,
    reopen: Arc<AtomicBool>,
    flushes: Arc<AtomicU64>,
}

impl FileSink {
    /// Opens (creating) the file, finds where its chain ends and starts the
    /// writer thread.
    pub fn start(opts: FileOptions, written: Written) -> std::io::Result<Self> {
        if let Some(dir) = opts.path.parent() {
            fs::create_dir_all(dir)?;
        }
        let mut writer = Writer::open(opts, written)?;
        let flushes = writer.flushes.clone();
        let stream = writer.stream.clone();
        let (tx, rx) = mpsc::sync_channel::<Job>(4 * writer.opts.batch_max.max(256));
        let healthy = Arc::new(AtomicBool::new(true));
        let reopen = Arc::new(AtomicBool::new(false));
        let (h, r) = (healthy.clone(), reopen.clone());
        std::thread::Builder::new()
            .name("audit-file".into())
            .spawn(move || writer.run(&rx, &h, &r))?;
        Ok(Self {
            tx,
            stream,
            healthy,
            reopen,
            flushes,
        })
    }

    /// Queues a record; `false` when the writer cannot take it now (its
    /// queue is full: the disk is stuck) or has stopped.
    pub fn submit(&self, job: Job) -> bool {
        self.tx.try_send(job).is_ok()
    }

    /// Id of the file's chain (`nodeStream` of its records).
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Deferred flushes done so far ([`AuditSync::Write`]; with
    /// [`AuditSync::Always`] every batch is flushed as it is written).
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// Whether the last write succeeded.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Asks the writer to reopen the file before its next write (SIGHUP).
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Relaxed);
    }
}

struct Writer {
    opts: FileOptions,
    file: Option<File>,
    /// Length of the file up to its last whole, acknowledged line.
    good_len: u64,
    head: Head,
    /// Id of this chain (`nodeStream` of every record).
    stream: String,
    backlog: VecDeque<AuditEvent>,
    written: Written,
    /// With [`AuditSync::Write`]: acknowledged records are not flushed yet
    /// and must be by then.
    flush_by: Option<Instant>,
    flushes: Arc<AtomicU64>,
}

impl Writer {
    fn open(opts: FileOptions, written: Written) -> std::io::Result<Self> {
        let mut w = Self {
            opts,
            file: None,
            good_len: 0,
            head: Head::default(),
            stream: String::new(),
            backlog: VecDeque::new(),
            written,
            flush_by: None,
            flushes: Arc::default(),
        };
        w.reopen_file()?;
        let mut last = last_line(&w.opts.path)?;
        // An empty current file (just rotated) continues the chain of `.1`.
        if last.is_none() {
            last = last_line(&rotated(&w.opts.path, 1))?;
        }
        let link = last
            .as_deref()
            .and_then(|l| serde_json::from_slice::<crate::engine::audit::Link>(l).ok());
        if let (Some(line), Some(link)) = (&last, &link) {
            w.head = Head::after(line).unwrap_or_default();
            w.stream = link.event.node_stream.clone().unwrap_or_default();
        }
        if w.stream.is_empty() {
            w.stream = uuid::Uuid::new_v4().to_string();
        }
        Ok(w)
    }

    /// Opens the current file, drops a partial last line (a crash mid
    /// write) and takes the chain head from its last line.
    fn reopen_file(&mut self) -> std::io::Result<()> {
        self.file = None;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(0o600)
            .open(&self.opts.path)?;
        let (whole, last) = scan_tail(&mut file)?;
        if whole < file.metadata()?.len() {
            file.set_len(whole)?;
        }
        self.good_len = whole;
        if let Some(head) = last.as_deref().and_then(Head::after) {
            self.head = head;
        }
        self.file = Some(file);
        Ok(())
    }

    fn run(&mut self, rx: &mpsc::Receiver<Job>, healthy: &AtomicBool, reopen: &AtomicBool) {
        loop {
            // Wake up for whichever comes first: a new record, the retry of
            // a backlog, or the deadline of an unflushed batch.
            let retry = (!self.backlog.is_empty()).then(|| Instant::now() + RETRY_EVERY);
            let wake = match (retry, self.flush_by) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let first = match wake {
                None => match rx.recv() {
                    Ok(j) => Some(j),
                    Err(_) => return self.flush(healthy),
                },
                Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                    Ok(j) => Some(j),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return self.flush(healthy),
                },
            };
            if self.flush_by.is_some_and(|at| at <= Instant::now()) {
                self.flush(healthy);
            }
            let mut jobs: Vec<Job> = first.into_iter().collect();
            while jobs.len() < self.opts.batch_max {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            if jobs.is_empty() && self.backlog.is_empty() {
                // Woken only to flush.
                continue;
            }
            if reopen.swap(false, Ordering::Relaxed) {
                // The records already acknowledged go to disk in the file
                // they were written to.
                self.flush(healthy);
                if let Err(e) = self.reopen_file() {
                    tracing::warn!(error = %e, path = %self.opts.path.display(), "reopening the audit file");
                }
            }
            let events: Vec<AuditEvent> = self
                .backlog
                .iter()
                .cloned()
                .chain(jobs.iter().map(|j| j.event.clone()))
                .collect();
            match self.write(&events) {
                Ok(seqs) => {
                    healthy.store(true, Ordering::Relaxed);
                    let ours = seqs.len() - jobs.len();
                    self.backlog.clear();
                    for (job, (seq, _, _)) in jobs.into_iter().zip(&seqs[ours..]) {
                        let _ = job.ack.send(Ok(*seq));
                    }
                    (self.written)(&seqs);
                    if self.opts.sync == AuditSync::Write && self.flush_by.is_none() {
                        self.flush_by = Some(Instant::now() + FLUSH_WITHIN);
                    }
                }
                Err(e) => {
                    healthy.store(false, Ordering::Relaxed);
                    metrics::counter!("coffer_audit_failures_total", "sink" => "file")
                        .increment(jobs.len().max(1) as u64);
                    tracing::error!(error = %e, path = %self.opts.path.display(), "audit file write failed: requests are refused until it works");
                    let message = format!("the audit file cannot be written: {}", e.kind());
                    for job in jobs {
                        self.backlog.push_back(job.event);
                        let _ = job.ack.send(Err(message.clone()));
                    }
                    while self.backlog.len() > BACKLOG_MAX {
                        self.backlog.pop_front();
                    }
                }
            }
        }
    }

    /// With [`AuditSync::Write`]: flushes what was acknowledged since the
    /// last flush (at most [`FLUSH_WITHIN`] after the first of it, and when
    /// the writer stops). A failed flush refuses the next requests until a
    /// write works again.
    fn flush(&mut self, healthy: &AtomicBool) {
        if self.flush_by.take().is_none() {
            return;
        }
        let Some(file) = self.file.as_ref() else {
            return;
        };
        self.flushes.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = file.sync_data() {
            healthy.store(false, Ordering::Relaxed);
            metrics::counter!("coffer_audit_failures_total", "sink" => "file").increment(1);
            tracing::error!(error = %e, path = %self.opts.path.display(), "flushing the audit file failed: requests are refused until a write works");
        }
    }

    /// Appends `events` as one batch and (with [`AuditSync::Always`])
    /// fsyncs; all or nothing.
    fn write(&mut self, events: &[AuditEvent]) -> std::io::Result<Vec<(u64, AuditEvent, Vec<u8>)>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        if self.file.is_none() {
            self.reopen_file()?;
        }
        let events: Vec<AuditEvent> = events
            .iter()
            .map(|e| AuditEvent {
                node_stream: Some(self.stream.clone()),
                ..e.clone()
            })
            .collect();
        let (lines, head) = self
            .head
            .extend(&events)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut buf = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for line in &lines {
            buf.extend_from_slice(line);
            buf.push(b'\n');
        }
        let Some(file) = self.file.as_mut() else {
            return Err(std::io::Error::other("audit file not open"));
        };
        let sync = self.opts.sync == AuditSync::Always;
        let result = file
            .write_all(&buf)
            .and_then(|()| if sync { file.sync_data() } else { Ok(()) });
        if let Err(e) = result {
            // Cut back to the last whole line; if even that fails, reopen
            // (which drops the partial line) before the next write.
            if file.set_len(self.good_len).is_err() {
                self.file = None;
            }
            return Err(e);
        }
        self.good_len += buf.len() as u64;
        let first = self.head.seq + 1;
        self.head = head;
        let out = lines
            .into_iter()
            .zip(events)
            .zip(first..)
            .map(|((line, event), seq)| (seq, event, line))
            .collect();
        if self.good_len >= self.opts.max_file_bytes {
            if let Err(e) = self.rotate() {
                tracing::warn!(error = %e, "rotating the audit file");
            }
        }
        Ok(out)
    }

    /// `path` → `path.1` → … → `path.{max_files}` (dropped beyond).
    fn rotate(&mut self) -> std::io::Result<()> {
        // With `AuditSync::Write` the last batches may not be flushed yet.
        if let Some(file) = self.file.take() {
            file.sync_data()?;
        }
        self.flush_by = None;
        let path = &self.opts.path;
        let _ = fs::remove_file(rotated(path, self.opts.max_files));
        for n in (1..self.opts.max_files).rev() {
            let from = rotated(path, n);
            if from.exists() {
                fs::rename(&from, rotated(path, n + 1))?;
            }
        }
        fs::rename(path, rotated(path, 1))?;
        self.reopen_file()
    }
}

/// `{path}.{n}`.
pub fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// The node's files oldest first: `.N` … `.1`, then the current one.
pub fn files_oldest_first(path: &Path, max_files: usize) -> Vec<PathBuf> {
    (1..=max_files)
        .rev()
        .map(|n| rotated(path, n))
        .chain([path.to_path_buf()])
        .filter(|p| p.exists())
        .collect()
}

/// The last whole line of the file at `path`, if any.
pub fn last_line(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match File::open(path) {
        Ok(mut f) => Ok(scan_tail(&mut f)?.1),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Length up to the last newline, and the last whole line.
fn scan_tail(file: &mut File) -> std::io::Result<(u64, Option<Vec<u8>>)> {
    let len = file.metadata()?.len();
    let mut window = 64 * 1024u64;
    loop {
        let start = len.saturating_sub(window);
        file.seek(SeekFrom::Start(start))?;
        let mut tail = Vec::new();
        Read::by_ref(file)
            .take(len - start)
            .read_to_end(&mut tail)?;
        let Some(last_nl) = tail.iter().rposition(|b| *b == b'\n') else {
            if start == 0 {
                return Ok((0, None));
            }
            window *= 4;
            continue;
        };
        let whole = start + last_nl as u64 + 1;
        let body = &tail[..last_nl];
        let line_start = body.iter().rposition(|b| *b == b'\n').map(|p| p + 1);
        match line_start {
            Some(s) => return Ok((whole, Some(body[s..].to_vec()))),
            None if start == 0 => return Ok((whole, Some(body.to_vec()))),
            None => window *= 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::audit::verify;
    use std::sync::Mutex;

    fn event(i: usize) -> AuditEvent {
        AuditEvent {
            operation_name: format!("SecretGet{i}"),
            ..Default::default()
        }
    }

    async fn write_n(sink: &FileSink, from: usize, n: usize) -> Vec<u64> {
        let mut seqs = Vec::new();
        for i in from..from + n {
            let (ack, rx) = oneshot::channel();
            assert!(sink.submit(Job {
                event: event(i),
                ack
            }));
            seqs.push(rx.await.unwrap().unwrap());
        }
        seqs
    }

    fn lines_of(paths: &[PathBuf]) -> Vec<Vec<u8>> {
        paths
            .iter()
            .flat_map(|p| {
                fs::read(p)
                    .unwrap()
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(<[u8]>::to_vec)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[tokio::test]
    async fn write_mode_flushes_once_per_interval_not_once_per_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit-node1.jsonl");
        let opts = FileOptions {
            path: path.clone(),
            max_file_bytes: 64 * 1024 * 1024,
            max_files: 2,
            batch_max: 8,
            sync: AuditSync::Write,
        };
        let sink = FileSink::start(opts, Box::new(|_| {})).unwrap();
        let started = std::time::Instant::now();
        // One request at a time: each is its own batch.
        write_n(&sink, 0, 200).await;
        let elapsed = started.elapsed();
        let bound = (elapsed.as_millis() / FLUSH_WITHIN.as_millis()) as u64 + 1;
        assert!(
            sink.flushes() <= bound,
            "{} flushes for 200 batches in {elapsed:?}",
            sink.flushes()
        );
        assert_eq!(lines_of(std::slice::from_ref(&path)).len(), 200);
        // A lone record after a quiet spell is flushed within the interval
        // with no further request to wake the writer.
        tokio::time::sleep(FLUSH_WITHIN * 3).await;
        write_n(&sink, 200, 1).await;
        let before = sink.flushes();
        tokio::time::sleep(FLUSH_WITHIN * 3).await;
        assert_eq!(sink.flushes(), before + 1);
        assert_eq!(lines_of(&[path]).len(), 201);
    }

    #[tokio::test]
    async fn the_chain_continues_across_restarts_rotations_and_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit-node1.jsonl");
        let opts = FileOptions {
            path: path.clone(),
            max_file_bytes: 2_000,
            max_files: 50,
            batch_max: 8,
            sync: AuditSync::Always,
        };
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let sink = FileSink::start(
            opts.clone(),
            Box::new(move |w| s2.lock().unwrap().extend(w.iter().map(|(s, _, _)| *s))),
        )
        .unwrap();
        assert_eq!(write_n(&sink, 0, 20).await, (1..=20).collect::<Vec<_>>());
        drop(sink);
        // A crash in the middle of a line.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":21,\"prev\":\"ab").unwrap();
        drop(f);
        let sink = FileSink::start(opts.clone(), Box::new(|_| {})).unwrap();
        assert_eq!(write_n(&sink, 20, 10).await, (21..=30).collect::<Vec<_>>());
        let files = files_oldest_first(&path, 50);
        assert!(files.len() > 2, "rotated: {files:?}");
        let lines = lines_of(&files);
        let v = verify(&lines);
        assert!(v.is_intact(), "{:?}", v.problems);
        assert_eq!(v.records, 30);
        // One chain, one stream id, kept across the restart.
        let streams: std::collections::HashSet<String> = lines
            .iter()
            .map(|l| serde_json::from_slice::<crate::engine::audit::Link>(l).unwrap())
            .map(|l| l.event.node_stream.unwrap())
            .collect();
        assert_eq!(streams.len(), 1);
        assert_eq!(seen.lock().unwrap().len(), 20);
    }
}
