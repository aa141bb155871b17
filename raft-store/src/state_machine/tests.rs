use openraft::{CommittedLeaderId, EntryPayload, Membership};

use redb::ReadableTableMetadata;

use super::*;
use crate::{Compare, Mutation, Request, Txn, SNAPSHOT_DIR};

fn opts(window_ms: u64) -> StoreOptions {
    StoreOptions {
        dedup_window_ms: window_ms,
        ..StoreOptions::default()
    }
}

fn store(window_ms: u64) -> (tempfile::TempDir, StateMachineStore) {
    let dir = tempfile::tempdir().unwrap();
    let sm = StateMachineStore::open(dir.path(), &opts(window_ms)).unwrap();
    (dir, sm)
}

fn log_id(index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn normal(index: u64, req: Request) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(req),
    }
}

fn put(key: &str, value: &str) -> Mutation {
    Mutation::Put {
        key: key.into(),
        value: value.into(),
    }
}

fn req(id: Option<&str>, time_ms: u64, compare: Vec<Compare>, mutations: Vec<Mutation>) -> Request {
    Request {
        request_id: id.map(str::to_owned),
        time_ms,
        txn: Txn {
            compare,
            mutations,
            result: b"done".to_vec(),
        },
    }
}

fn rev(key: &str, revision: u64) -> Compare {
    Compare::Revision {
        key: key.into(),
        revision,
    }
}

fn apply_one(sm: &StateMachineStore, index: u64, r: Request) -> Response {
    sm.apply_entries(vec![normal(index, r)]).unwrap().remove(0)
}

fn value(sm: &StateMachineStore, key: &str) -> Option<(u64, Vec<u8>)> {
    sm.get(key.as_bytes())
        .unwrap()
        .map(|v| (v.revision, v.value))
}

#[test]
fn cas_applies_only_when_revisions_match() {
    let (_d, sm) = store(DEFAULT_DEDUP_WINDOW_MS);
    let r = apply_one(&sm, 1, req(None, 0, vec![rev("a", 0)], vec![put("a", "1")]));
    assert!(r.succeeded);
    assert_eq!((r.revision, r.result.as_slice()), (1, &b"done"[..]));
    assert_eq!(value(&sm, "a"), Some((1, b"1".to_vec())));

    // Stale revision: nothing changes, empty result.
    let r = apply_one(
        &sm,
        2,
        req(
            None,
            0,
            vec![rev("a", 0)],
            vec![put("a", "2"), put("b", "x")],
        ),
    );
    assert!(!r.succeeded);
    assert_eq!((r.revision, r.result.len()), (2, 0));
    assert_eq!(value(&sm, "a"), Some((1, b"1".to_vec())));
    assert_eq!(value(&sm, "b"), None);

    let r = apply_one(
        &sm,
        3,
        req(None, 0, vec![rev("a", 1), rev("b", 0)], vec![put("a", "3")]),
    );
    assert!(r.succeeded);
    assert_eq!(value(&sm, "a"), Some((3, b"3".to_vec())));
    assert_eq!(sm.applied_index(), 3);
}

/// A batch entry applies each of its requests as if it were an entry of
/// its own at the entry's index: its own comparisons (a failed one changes
/// only its request), its own request id (a retry inside or after the batch
/// is answered from it), its own response; a nested batch is refused.
#[test]
fn a_batch_entry_applies_each_request_as_its_own() {
    let (_d, sm) = store(DEFAULT_DEDUP_WINDOW_MS);
    apply_one(&sm, 1, req(None, 0, vec![], vec![put("held", "v1")]));
    let mut batch = crate::Batch::new(1 << 20);
    let requests = [
        req(Some("a"), 0, vec![rev("a", 0)], vec![put("a", "A")]),
        req(Some("b"), 0, vec![rev("held", 7)], vec![put("b", "B")]),
        req(Some("c"), 0, vec![rev("held", 1)], vec![put("c", "C")]),
    ];
    for r in requests {
        assert!(matches!(batch.admit(r), crate::Admit::Taken));
    }
    let nested = crate::Batch::new(1 << 20).into_request(0);
    let mut entry = batch.into_request(50);
    if let Mutation::Batch { requests } = &mut entry.txn.mutations[0] {
        requests.push(Request {
            request_id: None,
            ..nested
        });
    }
    let out = apply_one(&sm, 2, entry);
    assert!(out.succeeded);
    let each = crate::Batch::responses(&out).unwrap();
    let got: Vec<(bool, u64, &[u8], bool)> = each
        .iter()
        .map(|r| (r.succeeded, r.revision, r.result.as_slice(), r.deduplicated))
        .collect();
    assert_eq!(
        got,
        [
            (true, 2, &b"done"[..], false),
            (false, 2, &b""[..], false),
            (true, 2, &b"done"[..], false),
            (false, 2, &b""[..], false),
        ]
    );
    assert_eq!(value(&sm, "a"), Some((2, b"A".to_vec())));
    assert_eq!(value(&sm, "b"), None);
    assert_eq!(value(&sm, "c"), Some((2, b"C".to_vec())));
    // Each id was remembered with its own outcome.
    let retry = apply_one(
        &sm,
        3,
        req(Some("a"), 60, vec![rev("a", 0)], vec![put("a", "X")]),
    );
    assert!(retry.deduplicated && retry.succeeded);
    assert_eq!(value(&sm, "a"), Some((2, b"A".to_vec())));
}

/// A key one request of a batch writes is neither written nor compared by
/// another (comparing the same key is fine), and a request on a prefix
/// goes alone; the first request goes in whatever its size.
#[test]
fn a_key_written_in_a_batch_belongs_to_one_request() {
    let mut batch = crate::Batch::new(100);
    let admit = |b: &mut crate::Batch, r| matches!(b.admit(r), crate::Admit::Taken);
    let big = req(None, 0, vec![], vec![put("big", &"x".repeat(500))]);
    assert!(
        admit(&mut batch, big),
        "the first request, whatever its size"
    );
    assert!(
        !admit(&mut batch, req(None, 0, vec![], vec![put("small", "v")])),
        "full"
    );
    let mut batch = crate::Batch::new(1 << 20);
    assert!(admit(
        &mut batch,
        req(None, 0, vec![rev("k", 3)], vec![put("j", "v")])
    ));
    assert!(
        !admit(&mut batch, req(None, 0, vec![], vec![put("k", "v")])),
        "compared key"
    );
    assert!(
        !admit(&mut batch, req(None, 0, vec![], vec![put("j", "w")])),
        "written key"
    );
    assert!(
        !admit(&mut batch, req(None, 0, vec![rev("j", 0)], vec![])),
        "compares a written key"
    );
    assert!(
        admit(
            &mut batch,
            req(None, 0, vec![rev("k", 3)], vec![put("m", "v")])
        ),
        "both compare k"
    );
    let prefix = || {
        req(
            None,
            0,
            vec![],
            vec![Mutation::DeletePrefix {
                prefix: b"p/".to_vec(),
            }],
        )
    };
    assert!(!admit(&mut batch, prefix()), "a prefix op beside others");
    assert_eq!(batch.len(), 2);
    let mut alone = crate::Batch::new(1 << 20);
    assert!(
        admit(&mut alone, prefix()),
        "a prefix op opens an empty batch"
    );
    assert!(
        !admit(&mut alone, req(None, 0, vec![], vec![put("z", "v")])),
        "and closes it"
    );
    // One request is proposed as itself, not as a batch.
    let one = alone.into_request(9);
    assert!(matches!(
        one.txn.mutations[..],
        [Mutation::DeletePrefix { .. }]
    ));
    assert_eq!(one.time_ms, 9);
}

#[test]
fn duplicate_request_replays_first_response_and_changes_nothing() {
    let (_d, sm) = store(DEFAULT_DEDUP_WINDOW_MS);
    let first = apply_one(&sm, 1, req(Some("id1"), 1000, vec![], vec![put("k", "v1")]));
    assert!(first.succeeded && !first.deduplicated);

    let again = apply_one(&sm, 2, req(Some("id1"), 2000, vec![], vec![put("k", "v2")]));
    assert!(again.deduplicated);
    assert_eq!(
        (again.succeeded, again.revision, again.result),
        (true, 1, b"done".to_vec())
    );
    assert_eq!(value(&sm, "k"), Some((1, b"v1".to_vec())));

    // A failed outcome is remembered too.
    let failed = apply_one(
        &sm,
        3,
        req(Some("id2"), 3000, vec![rev("k", 99)], vec![put("k", "x")]),
    );
    assert!(!failed.succeeded);
    let replay = apply_one(
        &sm,
        4,
        req(Some("id2"), 3000, vec![rev("k", 1)], vec![put("k", "x")]),
    );
    assert!(replay.deduplicated && !replay.succeeded);
    assert_eq!(replay.revision, 3);
    assert_eq!(value(&sm, "k"), Some((1, b"v1".to_vec())));
    assert_eq!(sm.applied_index(), 4);
}

#[test]
fn request_ids_expire_after_the_window() {
    let (_d, sm) = store(1000);
    apply_one(
        &sm,
        1,
        req(Some("old"), 10_000, vec![], vec![put("k", "v1")]),
    );
    // Within the window: deduplicated.
    let r = apply_one(
        &sm,
        2,
        req(Some("old"), 11_000, vec![], vec![put("k", "v2")]),
    );
    assert!(r.deduplicated);
    // Past the window the id is forgotten and the request applies again.
    let r = apply_one(
        &sm,
        3,
        req(Some("old"), 11_001, vec![], vec![put("k", "v3")]),
    );
    assert!(!r.deduplicated && r.succeeded);
    assert_eq!(value(&sm, "k"), Some((3, b"v3".to_vec())));
    let txn = sm.inner.db.begin_read().unwrap();
    assert_eq!(txn.open_table(DEDUP).unwrap().len().unwrap(), 1);
    assert_eq!(txn.open_table(DEDUP_BY_TIME).unwrap().len().unwrap(), 1);
}

#[test]
fn delete_prefix_removes_only_matching_keys() {
    let (_d, sm) = store(DEFAULT_DEDUP_WINDOW_MS);
    let puts = ["s/a/1", "s/a/2", "s/ab", "s/b/1", "s/"]
        .map(|k| put(k, "v"))
        .to_vec();
    apply_one(&sm, 1, req(None, 0, vec![], puts));
    let del = vec![
        Mutation::DeletePrefix {
            prefix: b"s/a/".to_vec(),
        },
        Mutation::Delete {
            key: b"s/".to_vec(),
        },
    ];
    apply_one(&sm, 2, req(None, 0, vec![], del));
    let keys: Vec<_> = sm
        .scan_prefix(b"", None, 100)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, vec![b"s/ab".to_vec(), b"s/b/1".to_vec()]);
}

#[test]
fn scan_prefix_pages_with_start_after() {
    let (_d, sm) = store(DEFAULT_DEDUP_WINDOW_MS);
    let mut puts: Vec<_> = (0..7).map(|i| put(&format!("p/{i}"), "v")).collect();
    puts.extend([put("o", "v"), put("q", "v")]);
    apply_one(&sm, 1, req(None, 0, vec![], puts));
    let mut seen = Vec::new();
    let mut cursor: Option<Vec<u8>> = None;
    loop {
        let page = sm.scan_prefix(b"p/", cursor.as_deref(), 3).unwrap();
        assert!(page.len() <= 3);
        let Some((last, _)) = page.last() else { break };
        cursor = Some(last.clone());
        seen.extend(page.into_iter().map(|(k, _)| String::from_utf8(k).unwrap()));
    }
    let expected: Vec<_> = (0..7).map(|i| format!("p/{i}")).collect();
    assert_eq!(seen, expected);
}

#[test]
fn snapshot_roundtrip_preserves_state_and_dedup() {
    let (_d1, a) = store(DEFAULT_DEDUP_WINDOW_MS);
    let (_d2, b) = store(DEFAULT_DEDUP_WINDOW_MS);
    let members = Membership::new(vec![[1u64, 2].into()], None);
    let entries = vec![
        Entry {
            log_id: log_id(1),
            payload: EntryPayload::Membership(members),
        },
        normal(
            2,
            req(Some("x"), 5, vec![], vec![put("k1", "v1"), put("k2", "v2")]),
        ),
    ];
    a.apply_entries(entries).unwrap();
    // State on b that the snapshot must replace.
    b.apply_entries(vec![normal(
        1,
        req(None, 0, vec![], vec![put("zz", "gone")]),
    )])
    .unwrap();

    let snap = a.build().unwrap();
    assert_eq!(snap.meta.last_log_id, Some(log_id(2)));
    let (meta, path) = a.current_snapshot_file().unwrap();
    assert_eq!(meta, snap.meta);
    b.install(&snap.meta, File::open(path).unwrap()).unwrap();

    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.ordered_digest().unwrap(), b.ordered_digest().unwrap());
    assert_eq!(b.get(b"zz").unwrap(), None);
    assert_eq!(b.applied_index(), 2);
    assert_eq!(
        a.applied_state_sync().unwrap(),
        b.applied_state_sync().unwrap()
    );
    let current = b.current_snapshot().unwrap().unwrap();
    assert_eq!(current.meta, snap.meta);
    // The dedup memory came along: a retry on b is answered from it.
    let r = apply_one(&b, 3, req(Some("x"), 6, vec![], vec![put("k1", "other")]));
    assert!(r.deduplicated);
    assert_eq!(r.revision, 2);
}

/// Each published snapshot replaces the one before: the directory holds
/// one file, the newest, which a reopen finds.
#[test]
fn only_the_newest_snapshot_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(DEFAULT_DEDUP_WINDOW_MS);
    let snap_files = |sm: &StateMachineStore| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(sm.snapshot_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "snap"))
            .collect()
    };
    let last = {
        let sm = StateMachineStore::open(dir.path(), &o).unwrap();
        for i in 1..=3u64 {
            apply_one(
                &sm,
                i,
                req(None, 0, vec![], vec![put(&format!("k{i}"), "v")]),
            );
            let snap = sm.build().unwrap();
            assert_eq!(snap.meta.last_log_id, Some(log_id(i)));
            let files = snap_files(&sm);
            assert_eq!(files.len(), 1, "after snapshot {i}: {files:?}");
            assert_eq!(sm.current_snapshot_file().unwrap().1, files[0]);
        }
        snap_files(&sm)
    };
    let sm = StateMachineStore::open(dir.path(), &o).unwrap();
    assert_eq!(snap_files(&sm), last);
    let current = sm.current_snapshot().unwrap().unwrap();
    assert_eq!(current.meta.last_log_id, Some(log_id(3)));
}

/// A build that finishes after a newer snapshot was installed from the
/// leader publishes a file that is pruned at once (only the newest is
/// kept). It must still hand openraft a readable file: it used to open it
/// again by name, and the node stopped on "No such file or directory" (seen
/// in the Jepsen short suite, Set × Kill).
#[test]
fn a_build_overtaken_by_an_installed_snapshot_still_returns_its_file() {
    let (_da, a) = store(DEFAULT_DEDUP_WINDOW_MS);
    let (_db, leader) = store(DEFAULT_DEDUP_WINDOW_MS);
    let write = |i: u64| req(None, 0, vec![], vec![put(&format!("k{i}"), "v")]);
    for i in 1..=5 {
        apply_one(&leader, i, write(i));
    }
    leader.build().unwrap();
    let (newer, newer_path) = leader.current_snapshot_file().unwrap();
    for i in 1..=2 {
        apply_one(&a, i, write(i));
    }
    // While `a` writes its snapshot at index 2, the leader's at 5 arrives.
    let installer = a.clone();
    let mut installed = false;
    *lock(&a.inner.build_hook) = Some(Box::new(move |_written| {
        if !installed {
            installed = true;
            installer
                .install(&newer, File::open(&newer_path).unwrap())
                .unwrap();
        }
    }));
    let built = a.build();
    *lock(&a.inner.build_hook) = None;
    let built = built.expect("the overtaken build fails");
    assert_eq!(built.meta.last_log_id, Some(log_id(2)));
    // The installed snapshot stays the newest, and the only file.
    let (current, path) = a.current_snapshot_file().unwrap();
    assert_eq!(current.last_log_id, Some(log_id(5)));
    let files: Vec<_> = std::fs::read_dir(a.snapshot_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "snap"))
        .collect();
    assert_eq!(files, vec![path]);
    assert_eq!(a.applied_index(), 5);
}

#[test]
fn digest_changes_with_content() {
    let (_d, sm) = store(DEFAULT_DEDUP_WINDOW_MS);
    let empty = sm.ordered_digest().unwrap();
    let empty_sum = sm.digest();
    apply_one(&sm, 1, req(None, 0, vec![], vec![put("k", "v")]));
    assert_ne!(sm.ordered_digest().unwrap(), empty);
    assert_eq!(sm.ordered_digest().unwrap().len(), 64);
    let d = sm.digest();
    assert_ne!(d.digest_hex, empty_sum.digest_hex);
    assert_eq!((d.applied_index, d.entries, d.digest_hex.len()), (1, 1, 64));
}

#[test]
fn state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(DEFAULT_DEDUP_WINDOW_MS);
    let digest = {
        let sm = StateMachineStore::open(dir.path(), &o).unwrap();
        apply_one(&sm, 5, req(Some("r"), 1, vec![], vec![put("k", "v")]));
        sm.digest()
    };
    let sm = StateMachineStore::open(dir.path(), &o).unwrap();
    assert_eq!(sm.digest(), digest);
    assert_eq!(sm.applied_index(), 5);
    assert_eq!(value(&sm, "k"), Some((5, b"v".to_vec())));
    assert!(apply_one(&sm, 6, req(Some("r"), 2, vec![], vec![])).deduplicated);
}

fn big_value(seed: u64, len: usize) -> Vec<u8> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill(v.as_mut_slice());
    v
}

fn put_entry(index: u64, key: &str, value: Vec<u8>) -> Entry<TypeConfig> {
    normal(
        index,
        req(
            None,
            0,
            vec![],
            vec![Mutation::Put {
                key: key.into(),
                value,
            }],
        ),
    )
}

/// 2,000 values of 20 KiB (~40 MB): the snapshot is streamed to a file
/// from one read transaction while an apply runs and commits, and
/// installs on a second store with the same digest.
#[test]
fn snapshot_of_tens_of_mb_builds_while_applying_and_installs_elsewhere() {
    const N: u64 = 2000;
    const VALUE: usize = 20 * 1024;
    let (_da, a) = store(DEFAULT_DEDUP_WINDOW_MS);
    let (_db, b) = store(DEFAULT_DEDUP_WINDOW_MS);
    for chunk in (1..=N).collect::<Vec<_>>().chunks(100) {
        let entries = chunk
            .iter()
            .map(|&i| put_entry(i, &format!("k{i:05}"), big_value(i, VALUE)))
            .collect();
        a.apply_entries(entries).unwrap();
    }
    let at_build = a.digest();
    assert_eq!((at_build.applied_index, at_build.entries), (N, N));

    // Halfway through writing the file the builder stops in the hook
    // until the test has applied (and committed) another entry: if the
    // build blocked applies, the apply could not finish and the hook
    // would give up waiting.
    let (halfway_tx, halfway_rx) = std::sync::mpsc::channel::<()>();
    let (applied_tx, applied_rx) = std::sync::mpsc::channel::<()>();
    let applied_rx = Mutex::new(applied_rx);
    *lock(&a.inner.build_hook) = Some(Box::new(move |written| {
        if written == N / 2 {
            halfway_tx.send(()).unwrap();
            applied_rx
                .lock()
                .unwrap()
                .recv_timeout(std::time::Duration::from_secs(300))
                .expect("an apply did not complete while a snapshot was being built");
        }
    }));
    let builder = a.clone();
    let build = std::thread::spawn(move || builder.build());
    halfway_rx
        .recv_timeout(std::time::Duration::from_secs(300))
        .expect("the build never reached the middle of the state");
    a.apply_entries(vec![
        put_entry(N + 1, "k00001", b"overwritten".to_vec()),
        put_entry(N + 2, "new", b"x".to_vec()),
    ])
    .unwrap();
    assert_eq!(a.applied_index(), N + 2);
    applied_tx.send(()).unwrap();
    let snap = build.join().unwrap().unwrap();
    *lock(&a.inner.build_hook) = None;

    // The snapshot is the state as of its read transaction.
    assert_eq!(snap.meta.last_log_id, Some(log_id(N)));
    let (meta, path) = a.current_snapshot_file().unwrap();
    assert_eq!(meta, snap.meta);
    let summary = verify_snapshot_file(&path).unwrap();
    assert_eq!(summary.kv_entries, N);
    assert_eq!(summary.kv_digest_hex, at_build.digest_hex);
    assert_eq!(a.digest_at(N), Some(at_build.clone()));
    assert!(summary.bytes > N * VALUE as u64);

    b.install(&meta, File::open(&path).unwrap()).unwrap();
    assert_eq!(b.digest(), at_build);
    assert_eq!(b.applied_index(), N);
    assert_eq!(
        b.get(b"k00001").unwrap().unwrap().value,
        big_value(1, VALUE)
    );
    assert_eq!(b.get(b"new").unwrap(), None);
    // The installed file is b's current snapshot now.
    let (b_meta, b_path) = b.current_snapshot_file().unwrap();
    assert_eq!(b_meta, meta);
    assert!(b_path.starts_with(b.snapshot_dir()));
    // Applying the same entries after the snapshot converges.
    b.apply_entries(vec![
        put_entry(N + 1, "k00001", b"overwritten".to_vec()),
        put_entry(N + 2, "new", b"x".to_vec()),
    ])
    .unwrap();
    assert_eq!(b.digest(), a.digest());
    assert_eq!(b.ordered_digest().unwrap(), a.ordered_digest().unwrap());
}

/// Every kind of damage to a received snapshot is refused before the
/// state is touched.
#[test]
fn truncated_or_flipped_snapshot_is_refused_and_changes_nothing() {
    let (_da, a) = store(DEFAULT_DEDUP_WINDOW_MS);
    let (dir_b, b) = store(DEFAULT_DEDUP_WINDOW_MS);
    let entries: Vec<_> = (1..=20)
        .map(|i| put_entry(i, &format!("k{i}"), big_value(i, 300)))
        .collect();
    a.apply_entries(entries).unwrap();
    a.apply_entries(vec![normal(
        21,
        req(Some("rid"), 5, vec![], vec![put("dedup", "d")]),
    )])
    .unwrap();
    let snap = a.build().unwrap();
    let (_, good) = a.current_snapshot_file().unwrap();
    let bytes = std::fs::read(&good).unwrap();

    b.apply_entries(vec![put_entry(1, "mine", b"keep".to_vec())])
        .unwrap();
    let before = (b.digest(), b.applied_state_sync().unwrap());
    let header_end = 14 + u32::from_be_bytes(bytes[10..14].try_into().unwrap()) as usize;
    let n = bytes.len();
    let mut damaged: Vec<(&str, Vec<u8>)> = Vec::new();
    for cut in [
        0,
        5,
        12,
        header_end - 3,
        header_end + 2,
        n / 2,
        n - 33,
        n - 1,
    ] {
        damaged.push(("truncated", bytes[..cut].to_vec()));
    }
    for at in [3, 9, 20, header_end + 6, n / 2, n - 40, n - 10] {
        let mut d = bytes.clone();
        d[at] ^= 0x10;
        damaged.push(("flipped", d));
    }
    let mut longer = bytes.clone();
    longer.push(0);
    damaged.push(("extended", longer));

    let scratch = tempfile::tempdir().unwrap();
    for (i, (what, data)) in damaged.into_iter().enumerate() {
        let path = scratch.path().join(format!("bad-{i}.snap"));
        std::fs::write(&path, &data).unwrap();
        let err = b
            .install(&snap.meta, File::open(&path).unwrap())
            .expect_err(what);
        assert_eq!(
            err.kind(),
            crate::ErrorKind::BadSnapshot,
            "{what} {i}: {err}"
        );
        assert!(err.to_string().contains("refused"), "{err}");
        assert_eq!(
            (b.digest(), b.applied_state_sync().unwrap()),
            before,
            "{what} {i}"
        );
        assert!(verify_snapshot_file(&path).is_err(), "{what} {i}");
    }
    assert_eq!(b.current_snapshot_file(), None);
    assert_eq!(value(&b, "mine"), Some((1, b"keep".to_vec())));
    let leftovers: Vec<_> = std::fs::read_dir(dir_b.path().join(SNAPSHOT_DIR))
        .unwrap()
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The undamaged file installs, with the remembered request ids.
    b.install(&snap.meta, File::open(&good).unwrap()).unwrap();
    assert_eq!(b.digest(), a.digest());
    let r = apply_one(&b, 22, req(Some("rid"), 6, vec![], vec![put("dedup", "e")]));
    assert!(r.deduplicated);
}

/// Damage that keeps redb's page checksums intact (a bug, or a write that
/// bypassed the apply path) is caught by the stored digest.
#[test]
fn state_that_does_not_match_its_digest_fails_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(DEFAULT_DEDUP_WINDOW_MS);
    {
        let sm = StateMachineStore::open(dir.path(), &o).unwrap();
        let entries = (1..=10)
            .map(|i| put_entry(i, &format!("k{i}"), big_value(i, 100)))
            .collect();
        sm.apply_entries(entries).unwrap();
    }
    {
        let db = Database::create(dir.path().join(STATE_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(KV)
            .unwrap()
            .remove(b"k3".as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let err = StateMachineStore::open(dir.path(), &o).unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::Corrupt, "{err}");
    assert_eq!(err.file(), dir.path().join(STATE_FILE));
    let msg = err.to_string();
    assert!(msg.contains("does not match its stored digest"), "{msg}");
    assert!(msg.contains("coffer operator raft repair"), "{msg}");
    // Turning verification off trusts the stored digest (documented).
    let unchecked = StoreOptions {
        verify_on_open: false,
        ..o
    };
    let sm = StateMachineStore::open(dir.path(), &unchecked).unwrap();
    assert_eq!(sm.get(b"k3").unwrap(), None);
    // ... but a snapshot build still notices and refuses.
    let err = sm.build().unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::Corrupt, "{err}");
    assert_eq!(sm.current_snapshot_file(), None);
}

/// Data dirs of older versions kept the snapshot as a blob in the state
/// database; the table is dropped at open and the space given back.
#[test]
fn legacy_snapshot_table_is_dropped_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STATE_FILE);
    let o = opts(DEFAULT_DEDUP_WINDOW_MS);
    {
        let sm = StateMachineStore::open(dir.path(), &o).unwrap();
        sm.apply_entries(vec![put_entry(1, "k", b"v".to_vec())])
            .unwrap();
    }
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(LEGACY_SNAPSHOT)
            .unwrap()
            .insert("data", vec![7u8; 8 << 20].as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let with_blob = std::fs::metadata(&path).unwrap().len();
    let sm = StateMachineStore::open(dir.path(), &o).unwrap();
    assert_eq!(value(&sm, "k"), Some((1, b"v".to_vec())));
    assert!(!table_names(&sm.inner.db)
        .unwrap()
        .iter()
        .any(|n| n == LEGACY_SNAPSHOT.name()));
    drop(sm);
    let after = std::fs::metadata(&path).unwrap().len();
    assert!(after < with_blob / 2, "{after} >= {with_blob} / 2");
}

/// Stages `bytes` as chunks under `staging/` from log index `first`;
/// returns the next free index.
fn stage_chunks(sm: &StateMachineStore, first: u64, bytes: &[u8]) -> u64 {
    let mut index = first;
    for (i, chunk) in bytes.chunks(bytes.len() / 3 + 1).enumerate() {
        let m = Mutation::Put {
            key: format!("staging/{i:04}").into_bytes(),
            value: chunk.to_vec(),
        };
        apply_one(sm, index, req(None, 0, vec![], vec![m]));
        index += 1;
    }
    index
}

#[test]
fn a_staged_snapshot_replaces_the_state_only_when_it_verifies() {
    let (_d1, a) = store(DEFAULT_DEDUP_WINDOW_MS);
    let (_d2, b) = store(DEFAULT_DEDUP_WINDOW_MS);
    apply_one(
        &a,
        1,
        req(None, 0, vec![], vec![put("k1", "v1"), put("k2", "v2")]),
    );
    a.build().unwrap();
    let (_, path) = a.current_snapshot_file().unwrap();
    let file = std::fs::read(path).unwrap();
    let want = a.digest();
    apply_one(
        &b,
        1,
        req(None, 0, vec![], vec![put("zz", "gone"), put("k1", "other")]),
    );
    let restore = || Mutation::RestoreStaged {
        prefix: b"staging/".to_vec(),
    };

    // A flipped byte: refused, and only the staged chunks go.
    let before = b.digest();
    let mut bad = file.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 1;
    let next = stage_chunks(&b, 2, &bad);
    let r = apply_one(&b, next, req(None, 0, vec![], vec![restore()]));
    assert!(!r.succeeded);
    assert_eq!(b.digest().digest_hex, before.digest_hex);
    assert_eq!(value(&b, "zz"), Some((1, b"gone".to_vec())));

    // The real file: the state is the snapshot's, revisions included.
    let next = stage_chunks(&b, next + 1, &file);
    let r = apply_one(&b, next, req(None, 0, vec![], vec![restore()]));
    assert!(r.succeeded);
    assert_eq!(b.digest().digest_hex, want.digest_hex);
    assert_eq!(b.digest().entries, 2);
    assert_eq!(b.digest_at(next).unwrap().digest_hex, want.digest_hex);
    assert_eq!(value(&b, "k1"), Some((1, b"v1".to_vec())));
    assert_eq!(value(&b, "zz"), None);
    assert_eq!(b.applied_index(), next);
}
