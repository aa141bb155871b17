//! Crash durability: a child process appends log batches and saves votes,
//! printing what was acknowledged; the parent SIGKILLs it at random moments
//! and checks that everything acknowledged survived, without holes. Run for
//! both log backends (the WAL with small segments, so kills land in segment
//! roll-overs and purges delete whole segments).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
use raft_store::{LogKind, LogStore, Request, StoreOptions, Txn, TypeConfig};
use rand::Rng;

const CHILD_ENV: &str = "RAFT_STORE_CRASH_CHILD_DIR";
/// The log kind the child writes: "wal" or "redb".
const KIND_ENV: &str = "RAFT_STORE_CRASH_KIND";
const ROUNDS: usize = 24;

fn entry(index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Request {
            request_id: Some(format!("r{index}")),
            time_ms: index,
            txn: Txn {
                result: index.to_be_bytes().to_vec(),
                ..Txn::default()
            },
        }),
    }
}

/// The log alone: this test purges without snapshots, which a whole store
/// refuses at open (the state machine would be behind the purge point).
fn open_log(dir: &Path, kind: LogKind) -> LogStore {
    std::fs::create_dir_all(dir).unwrap();
    let opts = StoreOptions {
        log_store: kind,
        wal_segment_bytes: 16 * 1024,
        ..StoreOptions::default()
    };
    let log = LogStore::open_in(dir, &opts).unwrap();
    assert_eq!(log.kind(), kind);
    log
}

fn kind_name(kind: LogKind) -> &'static str {
    match kind {
        LogKind::Wal => "wal",
        LogKind::Redb => "redb",
    }
}

/// Child mode: runs until killed, reporting each durable step on stdout.
#[test]
fn crash_child_entry() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return; // normal test run: nothing to do
    };
    let kind = match std::env::var(KIND_ENV).as_deref() {
        Ok("wal") => LogKind::Wal,
        _ => LogKind::Redb,
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(child_loop(PathBuf::from(dir), kind));
}

async fn child_loop(dir: PathBuf, kind: LogKind) {
    let mut log = open_log(&dir, kind);
    let state = log.get_log_state().await.unwrap();
    let mut next = state.last_log_id.map_or(1, |l| l.index + 1);
    let mut term = log
        .read_vote()
        .await
        .unwrap()
        .map_or(0, |v| v.leader_id.term);
    let mut out = std::io::stdout().lock();
    let mut rng = rand::rng();
    loop {
        let n = rng.random_range(1..=8u64);
        let batch: Vec<_> = (next..next + n).map(entry).collect();
        log.blocking_append(batch).await.unwrap();
        writeln!(out, "ACK {}", next + n - 1).unwrap();
        out.flush().unwrap();
        next += n;
        if rng.random_bool(0.3) {
            term += 1;
            log.save_vote(&Vote::new(term, 1)).await.unwrap();
            writeln!(out, "VOTE {term}").unwrap();
            out.flush().unwrap();
        }
        if rng.random_bool(0.05) && next > 40 {
            let upto = next - 30;
            log.purge(LogId::new(CommittedLeaderId::new(1, 1), upto))
                .await
                .unwrap();
        }
    }
}

/// What the child acknowledged before it was killed.
#[derive(Default)]
struct Acked {
    last_index: u64,
    max_term: u64,
}

fn run_child_and_kill(dir: &Path, kind: LogKind, delay: Duration) -> Acked {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .env(KIND_ENV, kind_name(kind))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || parse_acks(BufReader::new(stdout)));
    std::thread::sleep(delay);
    child.kill().unwrap(); // SIGKILL on unix
    child.wait().unwrap();
    reader.join().unwrap()
}

fn parse_acks(r: impl BufRead) -> Acked {
    let mut acked = Acked::default();
    for line in r.lines().map_while(Result::ok) {
        if let Some(i) = line.strip_prefix("ACK ") {
            acked.last_index = i.parse().unwrap();
        } else if let Some(t) = line.strip_prefix("VOTE ") {
            acked.max_term = t.parse().unwrap();
        }
    }
    acked
}

async fn check_store(dir: &Path, kind: LogKind, acked: &Acked, prev_term: u64) -> (u64, u64) {
    let mut log = open_log(dir, kind);
    let state = log.get_log_state().await.unwrap();
    let purged = state.last_purged_log_id.map_or(0, |l| l.index);
    let last = state.last_log_id.map_or(0, |l| l.index);
    assert!(
        last >= acked.last_index,
        "lost acknowledged entries: last {last} < acked {}",
        acked.last_index
    );
    check_contiguous(&log, purged, last);
    let term = log
        .read_vote()
        .await
        .unwrap()
        .map_or(0, |v| v.leader_id.term);
    assert!(
        term >= acked.max_term,
        "vote went back: {term} < acked {}",
        acked.max_term
    );
    assert!(
        term >= prev_term,
        "vote went back: {term} < previous {prev_term}"
    );
    (last, term)
}

fn check_contiguous(log: &LogStore, purged: u64, last: u64) {
    let entries = log.entries(..).unwrap();
    assert_eq!(entries.len() as u64, last - purged, "hole in the log");
    for (e, expected) in entries.iter().zip(purged + 1..) {
        assert_eq!(e.log_id.index, expected, "hole in the log");
        assert_eq!(
            e.payload,
            entry(expected).payload,
            "wrong payload at {expected}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    survive_sigkill(LogKind::Redb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill_wal() {
    survive_sigkill(LogKind::Wal).await;
}

async fn survive_sigkill(kind: LogKind) {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (mut prev_last, mut prev_term) = (0, 0);
    for round in 0..ROUNDS {
        // Opening verifies both databases first, so some kills land in the
        // open and most in the appends after it.
        let delay = Duration::from_millis(rand::rng().random_range(5..400));
        let acked = run_child_and_kill(dir.path(), kind, delay);
        let (last, term) = check_store(dir.path(), kind, &acked, prev_term).await;
        assert!(last >= prev_last, "round {round}: log shrank");
        (prev_last, prev_term) = (last, term);
    }
    assert!(prev_last > 0, "child never acknowledged anything");
    eprintln!(
        "crash test ({}): {ROUNDS} rounds, last index {prev_last}, term {prev_term}, {:?}",
        kind_name(kind),
        started.elapsed()
    );
}
