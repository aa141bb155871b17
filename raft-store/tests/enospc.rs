//! A full disk under the log: the append fails with an error that names the
//! file and the OS error, the log stops (every later write fails with the
//! first cause) and `LogStore::failure()` reports it for the node's health.
//!
//! Run for both log backends. Needs root (it mounts a 4 MiB tmpfs); skipped with a message otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
use raft_store::{LogKind, LogStore, Request, StoreOptions, Txn, TypeConfig, LOG_FILE, WAL_DIR};

/// Unmounts the tmpfs when the test ends, however it ends.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount_tmpfs(at: &Path, size: &str) -> Option<Mount> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        return None;
    }
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(at)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIPPED: could not mount a tmpfs at {}", at.display());
        return None;
    }
    Some(Mount(at.to_path_buf()))
}

fn entry(index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Request {
            request_id: None,
            time_ms: index,
            txn: Txn {
                // Incompressible is irrelevant on tmpfs; the size is what counts.
                result: vec![index as u8; 64 * 1024],
                ..Txn::default()
            },
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_fails_the_append_names_the_file_and_stops_the_log() {
    full_disk(LogKind::Redb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_fails_the_append_names_the_file_and_stops_the_log_wal() {
    full_disk(LogKind::Wal).await;
}

async fn full_disk(kind: LogKind) {
    let mnt = tempfile::tempdir().unwrap();
    let Some(_mount) = mount_tmpfs(mnt.path(), "4m") else {
        return;
    };
    let path = mnt.path().join(match kind {
        LogKind::Redb => LOG_FILE,
        LogKind::Wal => WAL_DIR,
    });
    let opts = StoreOptions {
        log_store: kind,
        ..StoreOptions::default()
    };
    let mut log = LogStore::open_in(mnt.path(), &opts).unwrap();
    assert_eq!(log.kind(), kind);
    assert_eq!(log.failure(), None);

    let mut failed = None;
    for i in 1..=200 {
        if let Err(e) = log.blocking_append([entry(i)]).await {
            failed = Some((i, e.to_string()));
            break;
        }
    }
    let (at, msg) = failed.expect("4 MiB of appends never ran out of space");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("No space left on device"), "{msg}");

    let cause = log.failure().expect("the failure is reported");
    assert!(cause.contains(&path.display().to_string()), "{cause}");
    assert!(
        cause.contains("No space left on device (os error 28)"),
        "{cause}"
    );
    assert!(
        cause.contains(&format!(
            "free disk space on the volume holding {}",
            mnt.path().display()
        )),
        "{cause}"
    );
    assert!(log.failure_error().unwrap().is_no_space());
    eprintln!("append {at} failed: {msg}\nfailure(): {cause}");

    // Fail-stop: later writes fail at once with the first cause, even a
    // small one that would fit.
    let again = log
        .blocking_append([entry(at)])
        .await
        .unwrap_err()
        .to_string();
    assert!(again.contains("stopped accepting writes"), "{again}");
    assert!(again.contains("No space left on device"), "{again}");
    let vote = log
        .save_vote(&Vote::new(2, 1))
        .await
        .unwrap_err()
        .to_string();
    assert!(vote.contains("No space left on device"), "{vote}");
    // Reads still work: what was acknowledged is there.
    let entries = log.entries(..).unwrap();
    assert_eq!(entries.len() as u64, at - 1);
    if kind == LogKind::Wal {
        // The failed write may have left part of a record behind; a restart
        // cuts it off and serves exactly what was acknowledged.
        drop(log);
        let log = LogStore::open_in(mnt.path(), &opts).unwrap();
        let entries = log.entries(..).unwrap();
        assert_eq!(entries.len() as u64, at - 1);
        assert_eq!(entries.last().map(|e| e.log_id.index), Some(at - 1));
    }
}
