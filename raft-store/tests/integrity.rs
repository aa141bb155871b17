//! Damage on disk is detected at open whatever the last shutdown was, and a
//! damaged state database can be rebuilt from a verified snapshot.
//!
//! The damage is what bit rot does: a few bytes flipped inside pages that
//! hold live values (found by searching the file for the values written).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine, StorageHelper};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftSnapshotBuilder};
use raft_store::{
    local_repair_possible, repair_state_from_snapshot, verify_snapshot_file, ErrorKind,
    LocalRepair, LogStore, Mutation, NodeId, Request, StateMachineStore, StorageError, Txn,
    TypeConfig, SNAPSHOT_DIR, STATE_FILE,
};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

const CHILD_ENV: &str = "RAFT_STORE_INTEGRITY_CHILD_DIR";
const CHILD_MODE_ENV: &str = "RAFT_STORE_INTEGRITY_CHILD_MODE";
const VALUE_LEN: usize = 2048;

fn log_id(index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

/// The value entry `index` writes: random, so it is found nowhere else.
fn value(index: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(index);
    let mut v = vec![0u8; VALUE_LEN];
    rng.fill(v.as_mut_slice());
    v
}

fn key(index: u64) -> Vec<u8> {
    format!("secret/{:04}", index % 400).into_bytes()
}

/// Entry 1 is a membership; every other entry puts `value(i)` at `key(i)`
/// (so later entries overwrite earlier keys and leave stale copies around).
fn entry(index: u64) -> Entry<TypeConfig> {
    let payload = if index == 1 {
        EntryPayload::Membership(Membership::new(vec![[1u64, 2, 3].into()], None))
    } else {
        EntryPayload::Normal(Request {
            request_id: Some(format!("req-{index}")),
            time_ms: index,
            txn: Txn {
                mutations: vec![Mutation::Put {
                    key: key(index),
                    value: value(index),
                }],
                ..Txn::default()
            },
        })
    };
    Entry {
        log_id: log_id(index),
        payload,
    }
}

async fn apply(sm: &mut StateMachineStore, range: std::ops::RangeInclusive<u64>) {
    let entries: Vec<_> = range.map(entry).collect();
    for chunk in entries.chunks(100) {
        sm.apply(chunk.to_vec()).await.unwrap();
    }
}

/// Flips 4 bytes inside every copy of the values written by `indexes` in
/// `file`. Returns how many copies were damaged.
fn flip_values(file: &Path, indexes: &[u64]) -> usize {
    let mut data = std::fs::read(file).unwrap();
    let wanted: HashMap<[u8; 16], u64> = indexes
        .iter()
        .map(|&i| (value(i)[..16].try_into().unwrap(), i))
        .collect();
    let mut hits = Vec::new();
    for at in 0..data.len().saturating_sub(16) {
        let window: &[u8; 16] = data[at..at + 16].try_into().unwrap();
        if wanted.contains_key(window) {
            hits.push(at);
        }
    }
    for &at in &hits {
        // Inside the value, past the prefix used to find it.
        for b in &mut data[at + 700..at + 704] {
            *b ^= 0xA5;
        }
    }
    std::fs::write(file, data).unwrap();
    hits.len()
}

/// Keys whose current value was written by an entry in `1..=last`.
fn live_writers(last: u64) -> Vec<u64> {
    let mut by_key = HashMap::new();
    for i in 2..=last {
        by_key.insert(key(i), i);
    }
    let mut v: Vec<u64> = by_key.into_values().collect();
    v.sort_unstable();
    v
}

fn expect_corrupt(res: Result<(LogStore, StateMachineStore), StorageError>, file: &Path) -> String {
    let err = match res {
        Ok((_, sm)) => panic!(
            "a damaged store opened (applied index {}); damage must fail the open",
            sm.applied_index()
        ),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert_eq!(err.file(), file, "{err}");
    err.to_string()
}

/// A clean stop, then bit rot in pages holding live values: the next open
/// refuses the state database, several times over with different damage.
#[tokio::test]
async fn flipped_bytes_in_state_after_a_clean_stop_fail_the_open() {
    let mut rng = rand::rng();
    for round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_log, mut sm) = raft_store::open(dir.path()).unwrap();
            apply(&mut sm, 1..=600).await;
        }
        // Control: undamaged, it opens and serves every value.
        {
            let (_log, sm) = raft_store::open(dir.path()).unwrap();
            for i in live_writers(600) {
                assert_eq!(sm.get(&key(i)).unwrap().unwrap().value, value(i));
            }
        }
        let victims: Vec<u64> = live_writers(600)
            .choose_multiple(&mut rng, 6)
            .copied()
            .collect();
        let state = dir.path().join(STATE_FILE);
        let copies = flip_values(&state, &victims);
        assert!(
            copies >= victims.len(),
            "round {round}: values not found in the file"
        );
        let msg = expect_corrupt(raft_store::open(dir.path()), &state);
        assert!(msg.contains("coffer operator raft repair"), "{msg}");
    }
}

/// Child mode of the kill -9 test: applies entries (the first 1,100 reach a
/// durable commit, the rest stay lazily committed), reports, and waits to be
/// killed.
#[tokio::test]
async fn integrity_child_entry() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return; // normal test run: nothing to do
    };
    let (_log, mut sm) = raft_store::open(Path::new(&dir)).unwrap();
    if std::env::var_os(CHILD_MODE_ENV).is_some_and(|m| m == "snapshot") {
        // Applies below the durable threshold stay lazily committed; the
        // snapshot file is the only durable copy of them.
        apply(&mut sm, 1..=500).await;
        build_snapshot(&mut sm).await;
    } else {
        apply(&mut sm, 1..=1100).await;
        apply(&mut sm, 1101..=1150).await;
    }
    println!("READY {}", sm.applied_index());
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

fn run_child_and_kill(dir: &Path, mode: &str) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "integrity_child_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .env(CHILD_MODE_ENV, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // libtest prints the test name on the same line before the output.
        let ready = stdout
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("READY"));
        let _ = tx.send(ready);
    });
    // Generous: only a hung child takes this long.
    let ready = rx.recv_timeout(Duration::from_secs(600)).unwrap_or(false);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(ready, "the child died or hung before applying its entries");
}

/// The same damage after a kill -9 (redb recovers the file at open) is
/// refused too: detection does not depend on how the node stopped.
#[tokio::test]
async fn flipped_bytes_in_state_after_kill_9_fail_the_open() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    // Control: killed, undamaged, it opens with everything durable intact.
    let control = tempfile::tempdir().unwrap();
    run_child_and_kill(control.path(), "applies");
    {
        let (_log, sm) = raft_store::open(control.path()).unwrap();
        assert!(sm.applied_index() >= 1100, "durable applies lost");
    }

    let dir = tempfile::tempdir().unwrap();
    run_child_and_kill(dir.path(), "applies");
    let state = dir.path().join(STATE_FILE);
    // Keys last written by entries 700..=1000 are in the durable commit.
    let victims: Vec<u64> = live_writers(1150)
        .into_iter()
        .filter(|i| (700..=1000).contains(i))
        .take(6)
        .collect();
    assert!(flip_values(&state, &victims) >= victims.len());
    expect_corrupt(raft_store::open(dir.path()), &state);
}

async fn build_snapshot(sm: &mut StateMachineStore) -> PathBuf {
    sm.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    sm.current_snapshot_file().unwrap().1
}

/// A flipped byte in the current snapshot file fails the open, naming the
/// file and what to do with it; so does a truncated one.
#[tokio::test]
async fn damaged_snapshot_file_fails_the_open() {
    for damage in ["flip", "truncate"] {
        let dir = tempfile::tempdir().unwrap();
        let snap = {
            let (_log, mut sm) = raft_store::open(dir.path()).unwrap();
            apply(&mut sm, 1..=80).await;
            build_snapshot(&mut sm).await
        };
        raft_store::open(dir.path()).unwrap();
        let mut data = std::fs::read(&snap).unwrap();
        let n = data.len();
        match damage {
            "flip" => data[n / 2] ^= 0x01,
            _ => data.truncate(n - 100),
        }
        std::fs::write(&snap, data).unwrap();
        let msg = expect_corrupt(raft_store::open(dir.path()), &snap);
        assert!(msg.contains("out of the snapshot directory"), "{msg}");
    }
}

/// Copies a data directory (the node is stopped).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Log 1..=300 (purged up to 150), state applied to 300, snapshot at 200,
/// committed 300. Returns the snapshot file.
async fn populate(dir: &Path) -> PathBuf {
    let (mut log, mut sm) = raft_store::open(dir).unwrap();
    log.blocking_append((1..=300).map(entry).collect::<Vec<_>>())
        .await
        .unwrap();
    apply(&mut sm, 1..=200).await;
    let snap = build_snapshot(&mut sm).await;
    log.purge(log_id(150)).await.unwrap();
    apply(&mut sm, 201..=300).await;
    log.save_committed(Some(log_id(300))).await.unwrap();
    snap
}

/// Corrupt state + a good snapshot + the log: the repair restores the state
/// from the snapshot, the next open passes every check, and re-applying the
/// log (what openraft does at start) yields exactly the undamaged state.
#[tokio::test]
async fn repair_from_snapshot_then_log_reapply_matches_the_undamaged_copy() {
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("node");
    let twin = dir.path().join("twin");
    let snap = populate(&node).await;
    copy_dir(&node, &twin);

    let state = node.join(STATE_FILE);
    let victims: Vec<u64> = live_writers(300).into_iter().take(5).collect();
    assert!(flip_values(&state, &victims) >= victims.len());
    expect_corrupt(raft_store::open(&node), &state);

    let LocalRepair::Possible { snapshot, summary } = local_repair_possible(&node).unwrap() else {
        panic!("the node's own snapshot should allow a local repair");
    };
    assert_eq!(snapshot, snap);
    assert_eq!(summary.index(), 200);

    let report = repair_state_from_snapshot(&node, &snapshot).unwrap();
    let aside = report.moved_aside.expect("damaged state moved aside");
    assert!(aside.exists());
    assert!(aside
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("state.redb.corrupt-"));
    assert_eq!(report.last_applied, Some(log_id(200)));
    assert!(!report.log_reset);
    assert!(report.installed_as.starts_with(node.join(SNAPSHOT_DIR)));

    let (mut log, mut sm) = raft_store::open(&node).unwrap();
    assert_eq!(sm.applied_index(), 200);
    StorageHelper::new(&mut log, &mut sm)
        .get_initial_state()
        .await
        .unwrap();
    assert_eq!(sm.applied_index(), 300);

    let (_tlog, twin_sm) = raft_store::open(&twin).unwrap();
    assert_eq!(sm.digest(), twin_sm.digest());
    assert_eq!(
        sm.ordered_digest().unwrap(),
        twin_sm.ordered_digest().unwrap()
    );
    for i in live_writers(300) {
        assert_eq!(sm.get(&key(i)).unwrap().unwrap().value, value(i));
    }
}

/// A snapshot that stops before the log's purge point cannot repair: the
/// entries in between exist nowhere on the node. Refused, nothing changed.
#[tokio::test]
async fn repair_refuses_a_snapshot_behind_the_purged_log() {
    let dir = tempfile::tempdir().unwrap();
    let old_snapshot = {
        let (_log, mut sm) = raft_store::open(dir.path()).unwrap();
        apply(&mut sm, 1..=100).await;
        let snap = build_snapshot(&mut sm).await;
        let keep = dir.path().join("old.snap");
        std::fs::copy(&snap, &keep).unwrap();
        keep
    };
    let snap = populate(&dir.path().join("node")).await;
    let node = dir.path().join("node");
    assert_eq!(verify_snapshot_file(&old_snapshot).unwrap().index(), 100);
    let state_before = std::fs::read(node.join(STATE_FILE)).unwrap();

    let err = repair_state_from_snapshot(&node, &old_snapshot).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Refused, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("purged up to 150"), "{msg}");
    assert_eq!(std::fs::read(node.join(STATE_FILE)).unwrap(), state_before);
    let names: Vec<String> = std::fs::read_dir(&node)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains("corrupt")), "{names:?}");

    // The node's own snapshot (at 200) reaches past the purge point.
    assert!(matches!(
        local_repair_possible(&node).unwrap(),
        LocalRepair::Possible { snapshot, .. } if snapshot == snap
    ));
    // Once the log is purged past it, the local snapshot cannot repair.
    {
        let (mut log, _sm) = raft_store::open(&node).unwrap();
        log.purge(log_id(250)).await.unwrap();
    }
    assert!(matches!(
        local_repair_possible(&node).unwrap(),
        LocalRepair::LogGap {
            snapshot_index: 200,
            purged_index: 250
        }
    ));
}

/// An install interrupted after the snapshot file was published but before
/// the state was replaced is finished by the next open.
#[tokio::test]
async fn open_finishes_an_install_interrupted_after_publishing() {
    let dir = tempfile::tempdir().unwrap();
    let leader = dir.path().join("leader");
    let follower = dir.path().join("follower");
    let snap = populate(&leader).await;
    {
        let (_log, mut sm) = raft_store::open(&follower).unwrap();
        apply(&mut sm, 1..=20).await;
    }
    let name = snap.file_name().unwrap();
    std::fs::copy(&snap, follower.join(SNAPSHOT_DIR).join(name)).unwrap();

    let (_log, sm) = raft_store::open(&follower).unwrap();
    assert_eq!(sm.applied_index(), 200);
    let summary = verify_snapshot_file(&snap).unwrap();
    assert_eq!(sm.digest().digest_hex, summary.kv_digest_hex);
    assert_eq!(sm.digest().entries, summary.kv_entries);
}

/// A snapshot is built without a durable commit of the state (which would
/// make applies wait for its fsync): after a kill -9 the state comes back
/// at its last durable commit, behind the snapshot, and the open restores
/// it from the snapshot file.
#[tokio::test]
async fn state_applied_lazily_before_a_snapshot_and_a_kill_9_comes_back_from_the_snapshot() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    run_child_and_kill(dir.path(), "snapshot");
    let (_log, sm) = raft_store::open(dir.path()).unwrap();
    assert_eq!(sm.applied_index(), 500);
    for i in live_writers(500) {
        assert_eq!(sm.get(&key(i)).unwrap().unwrap().value, value(i));
    }
    let (_, snap) = sm.current_snapshot_file().unwrap();
    assert_eq!(
        sm.digest().digest_hex,
        verify_snapshot_file(&snap).unwrap().kv_digest_hex
    );
}
