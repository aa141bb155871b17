//! Measures what issue 8 reported about snapshots: how long applies stall
//! while a snapshot of a large state is built, how large `state.redb` grows
//! for the live data it holds, and what verifying at open costs. Timings
//! include the periodic durable apply (every 1024 entries), which stalls
//! applies whether or not a snapshot is being built.
//!
//! `cargo run --release -p raft-store --example snapshot_stall -- [values] [value_kib]`
//! (defaults: 3750 values of 20 KiB, ~75 MB live). Prints one line per phase.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder};
use raft_store::{Mutation, Request, Txn, TypeConfig};

fn put(index: u64, key: u64, len: usize) -> Entry<TypeConfig> {
    let mut value = vec![0u8; len];
    let mut x = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for b in value.iter_mut() {
        // xorshift: incompressible enough, cheap.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Request {
            request_id: Some(format!("r{index}")),
            time_ms: index,
            txn: Txn {
                mutations: vec![Mutation::Put {
                    key: format!("secret/{key:06}").into_bytes(),
                    value,
                }],
                ..Txn::default()
            },
        }),
    }
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| {
                    let md = e.metadata().unwrap();
                    if md.is_dir() {
                        dir_size(&e.path())
                    } else {
                        md.len()
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(3750);
    let len = args.get(1).copied().unwrap_or(20) as usize * 1024;
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let (_log, mut sm) = raft_store::open(dir.path()).unwrap();

    // Fill, then overwrite every key once, building a snapshot every 1000
    // entries as the node's policy would (in the background).
    let mut index = 0;
    let started = Instant::now();
    for round in 0..2 {
        for key in 0..n {
            index += 1;
            sm.apply(vec![put(index, key, len)]).await.unwrap();
            if index % 1000 == 0 {
                sm.get_snapshot_builder()
                    .await
                    .build_snapshot()
                    .await
                    .unwrap();
            }
        }
        println!(
            "round {round}: {index} applies, {:.1}s, data dir {} MB, state.redb {} MB",
            started.elapsed().as_secs_f64(),
            dir_size(dir.path()) / 1_000_000,
            std::fs::metadata(dir.path().join("state.redb"))
                .unwrap()
                .len()
                / 1_000_000,
        );
    }

    // Applies while one more snapshot is built: the longest single apply.
    let building = Arc::new(AtomicBool::new(true));
    let mut builder = sm.get_snapshot_builder().await;
    let flag = building.clone();
    let build = tokio::spawn(async move {
        let t = Instant::now();
        builder.build_snapshot().await.unwrap();
        flag.store(false, Ordering::Release);
        t.elapsed()
    });
    let (mut during, mut worst) = (0u32, Duration::ZERO);
    while building.load(Ordering::Acquire) {
        index += 1;
        let t = Instant::now();
        sm.apply(vec![put(index, index % n, len)]).await.unwrap();
        worst = worst.max(t.elapsed());
        during += 1;
    }
    let build_time = build.await.unwrap();
    println!(
        "snapshot build {:.2}s; {during} applies meanwhile, longest {:.1} ms",
        build_time.as_secs_f64(),
        worst.as_secs_f64() * 1000.0
    );
    let (mut base, mut k) = (Duration::ZERO, 0u32);
    // As many applies without a build, so both spans cross the same number
    // of durable commits (one per 1024 applies) on average.
    for _ in 0..during.max(50) {
        index += 1;
        let t = Instant::now();
        sm.apply(vec![put(index, index % n, len)]).await.unwrap();
        base = base.max(t.elapsed());
        k += 1;
    }
    println!(
        "without a build: longest of {k} applies {:.1} ms",
        base.as_secs_f64() * 1000.0
    );
    drop(sm);
    drop(_log);
    for verify_on_open in [true, false] {
        let opts = raft_store::StoreOptions {
            verify_on_open,
            ..raft_store::StoreOptions::default()
        };
        let t = Instant::now();
        let reopened = raft_store::open_with(dir.path(), &opts);
        println!(
            "reopen verify_on_open={verify_on_open}: {:.2}s, ok={}; data dir {} MB, state.redb {} MB",
            t.elapsed().as_secs_f64(),
            reopened.is_ok(),
            dir_size(dir.path()) / 1_000_000,
            std::fs::metadata(dir.path().join("state.redb")).unwrap().len() / 1_000_000,
        );
    }
}
