//! The write-ahead log on disk: torn writes at the tail are cut back to the
//! last whole record (never served), damage elsewhere fails the open, purges
//! delete whole segments and persist the purge point, the vote survives a
//! reopen, and a data directory keeps the log kind it was created with.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
use raft_store::{
    ErrorKind, LogKind, LogStore, Request, StoreOptions, Txn, TypeConfig, LOG_FILE, WAL_DIR,
};

fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
        payload: EntryPayload::Normal(Request {
            request_id: Some(format!("r{index}")),
            time_ms: index,
            txn: Txn {
                result: vec![index as u8; 100],
                ..Txn::default()
            },
        }),
    }
}

fn opts() -> StoreOptions {
    StoreOptions {
        log_store: LogKind::Wal,
        wal_segment_bytes: 4096,
        ..StoreOptions::default()
    }
}

fn open(dir: &Path) -> LogStore {
    let log = LogStore::open_in(dir, &opts()).unwrap();
    assert_eq!(log.kind(), LogKind::Wal);
    log
}

/// Segment files, oldest first.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join(WAL_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    v.sort();
    v
}

/// Appends entries `from..=to` in batches of 3 (each batch one group commit).
async fn append(log: &mut LogStore, term: u64, from: u64, to: u64) {
    let mut i = from;
    while i <= to {
        let end = (i + 2).min(to);
        log.blocking_append((i..=end).map(|n| entry(term, n)))
            .await
            .unwrap();
        i = end + 1;
    }
}

fn last_index(log: &LogStore) -> Option<u64> {
    log.log_state().unwrap().last_log_id.map(|l| l.index)
}

fn assert_entries(log: &LogStore, term: u64, from: u64, to: u64) {
    let got = log.entries(..).unwrap();
    let want: Vec<_> = (from..=to).map(|i| entry(term, i)).collect();
    assert_eq!(got, want);
}

/// Where the last record of a segment starts and where its records end
/// (what follows is preallocated zeros), found by walking record headers.
fn last_record(path: &Path) -> (u64, u64) {
    let bytes = std::fs::read(path).unwrap();
    let (mut at, mut last) = (8usize, 8usize);
    while at + 9 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        last = at;
        at += 9 + len;
    }
    (last as u64, at as u64)
}

fn newest_segment(dir: &Path) -> PathBuf {
    segments(dir).last().unwrap().clone()
}

fn damage(path: &Path, at: u64, f: impl Fn(u8) -> u8) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, at).unwrap();
    file.write_all_at(&[f(b[0])], at).unwrap();
}

#[tokio::test]
async fn a_torn_tail_is_cut_back_to_the_last_whole_record() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = open(dir.path());
        append(&mut log, 1, 1, 100).await;
        log.save_vote(&Vote::new_committed(1, 1)).await.unwrap();
    }
    let segs = segments(dir.path());
    assert!(segs.len() > 2, "small segments roll over: {segs:?}");
    let newest = newest_segment(dir.path());
    let (start, end) = last_record(&newest);
    assert!(
        std::fs::metadata(&newest).unwrap().len() >= 4096,
        "preallocated"
    );

    // A write cut short: the file ends 10 bytes into the last record.
    OpenOptions::new()
        .write(true)
        .open(&newest)
        .unwrap()
        .set_len(end - 10)
        .unwrap();
    let mut log = open(dir.path());
    assert_eq!(last_index(&log), Some(99), "the torn record is not served");
    assert_entries(&log, 1, 1, 99);
    assert_eq!(log.vote().unwrap(), Some(Vote::new_committed(1, 1)));
    assert_eq!(last_record(&newest).1, start, "the torn bytes are gone");
    assert!(
        std::fs::metadata(&newest).unwrap().len() >= 4096,
        "preallocated again"
    );

    // The log goes on after the cut, and that survives a reopen.
    append(&mut log, 1, 100, 102).await;
    drop(log);
    let log = open(dir.path());
    assert_entries(&log, 1, 1, 102);
    drop(log);

    // A flipped byte inside the newest record: that record goes, nothing
    // before it does.
    let newest = newest_segment(dir.path());
    let (start, end) = last_record(&newest);
    damage(&newest, (start + end) / 2, |b| b ^ 0x5a);
    let mut log = open(dir.path());
    assert_eq!(last_index(&log), Some(101));
    assert_entries(&log, 1, 1, 101);
    append(&mut log, 1, 102, 103).await;
    drop(log);
    assert_entries(&open(dir.path()), 1, 1, 103);

    // The last sector of a record never reached the disk (zeros where its
    // end should be, inside preallocated space).
    let newest = newest_segment(dir.path());
    let (_, end) = last_record(&newest);
    for at in end - 10..end {
        damage(&newest, at, |_| 0);
    }
    let mut log = open(dir.path());
    assert_entries(&log, 1, 1, 102);
    append(&mut log, 1, 103, 103).await;
    drop(log);
    assert_entries(&open(dir.path()), 1, 1, 103);

    // A segment with a partial header (a crash while starting it).
    let newest = newest_segment(dir.path());
    let seq: u64 = newest
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let next = newest.with_file_name(format!("{:020}.wal", seq + 1));
    std::fs::write(&next, b"Cof").unwrap();
    let mut log = open(dir.path());
    assert_entries(&log, 1, 1, 103);
    append(&mut log, 1, 104, 104).await;
    drop(log);
    assert_entries(&open(dir.path()), 1, 1, 104);
    assert_eq!(
        last_record(&next).0,
        8,
        "the new segment holds the new entry"
    );
}

#[tokio::test]
async fn damage_before_the_newest_segment_fails_the_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = open(dir.path());
        append(&mut log, 1, 1, 60).await;
    }
    let segs = segments(dir.path());
    assert!(segs.len() >= 2);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&segs[0])
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, 100).unwrap();
    f.write_all_at(&[b[0] ^ 1], 100).unwrap();
    drop(f);
    let err = LogStore::open_in(dir.path(), &opts()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&segs[0].display().to_string()), "{msg}");
    assert!(msg.contains("checksum"), "{msg}");
    assert!(msg.contains("remove the node from the cluster"), "{msg}");
}

#[tokio::test]
async fn truncation_purge_and_vote_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    append(&mut log, 1, 1, 80).await;
    // A new leader's conflicting suffix from 71 on.
    log.truncate(LogId::new(CommittedLeaderId::new(1, 1), 71))
        .await
        .unwrap();
    append(&mut log, 2, 71, 90).await;
    let before = segments(dir.path()).len();
    log.purge(LogId::new(CommittedLeaderId::new(1, 1), 60))
        .await
        .unwrap();
    let after = segments(dir.path()).len();
    assert!(after < before, "whole segments go: {before} -> {after}");
    log.save_vote(&Vote::new(5, 2)).await.unwrap();
    log.save_committed(Some(LogId::new(CommittedLeaderId::new(2, 1), 85)))
        .await
        .unwrap();
    let check = |log: &LogStore| {
        let state = log.log_state().unwrap();
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(60));
        assert_eq!(
            state.last_log_id,
            Some(LogId::new(CommittedLeaderId::new(2, 1), 90))
        );
        let got = log.entries(..).unwrap();
        let want: Vec<_> = (61..=70)
            .map(|i| entry(1, i))
            .chain((71..=90).map(|i| entry(2, i)))
            .collect();
        assert_eq!(got, want);
        assert_eq!(log.vote().unwrap(), Some(Vote::new(5, 2)));
    };
    check(&log);
    drop(log);
    let mut log = open(dir.path());
    check(&log);
    // The committed id saved last is written at close.
    assert_eq!(
        log.read_committed().await.unwrap(),
        Some(LogId::new(CommittedLeaderId::new(2, 1), 85))
    );
    // Purging past the end leaves an empty log that goes on after it.
    log.purge(LogId::new(CommittedLeaderId::new(2, 1), 95))
        .await
        .unwrap();
    append(&mut log, 3, 96, 97).await;
    drop(log);
    let log = open(dir.path());
    assert_entries(&log, 3, 96, 97);
}

#[tokio::test]
async fn a_second_process_is_refused_and_a_data_dir_keeps_its_kind() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let err = LogStore::open_in(dir.path(), &opts()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Refused, "{err}");
    assert!(err.to_string().contains("stop the node first"), "{err}");
    drop(log);

    // A redb data dir stays redb when the config asks for the WAL.
    let redb_dir = tempfile::tempdir().unwrap();
    let redb_opts = StoreOptions {
        log_store: LogKind::Redb,
        ..StoreOptions::default()
    };
    let redb = LogStore::open_in(redb_dir.path(), &redb_opts).unwrap();
    assert_eq!(redb.kind(), LogKind::Redb);
    drop(redb);
    assert!(redb_dir.path().join(LOG_FILE).exists());
    let again = LogStore::open_in(redb_dir.path(), &opts()).unwrap();
    assert_eq!(again.kind(), LogKind::Redb);
    assert!(!redb_dir.path().join(WAL_DIR).exists());
    drop(again);

    // Both at once: refused, nothing guessed.
    std::fs::create_dir(redb_dir.path().join(WAL_DIR)).unwrap();
    let err = LogStore::open_in(redb_dir.path(), &opts()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Refused, "{err}");
}
