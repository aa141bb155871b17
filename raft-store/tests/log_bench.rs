//! Micro-benchmark of the log backends: appends per second with 1 and 64
//! concurrent proposers, each appending one ~300-byte entry and waiting for
//! it to be durable (as a client write waits for the leader's own fsync).
//! Ignored by default; run in release:
//!
//! ```text
//! cargo test --release -p raft-store --test log_bench -- --ignored --nocapture
//! ```
//!
//! `LOG_BENCH_ONLY=wal:64` runs one case (for `strace -c -f`),
//! `LOG_BENCH_SECS` sets the time per case (default 3), `LOG_BENCH_DIR`
//! the directory (default the temp dir; it must be a real disk, not tmpfs).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use openraft::storage::RaftLogStorageExt;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use raft_store::{LogKind, LogStore, Request, StoreOptions, Txn, TypeConfig};

fn entry(index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Request {
            request_id: Some(format!("bench-{index:016}")),
            time_ms: index,
            txn: Txn {
                result: vec![0xa5; 256],
                ..Txn::default()
            },
        }),
    }
}

/// Appends per second with `proposers` concurrent appenders for `secs`.
async fn run(kind: LogKind, proposers: usize, secs: f64) -> (u64, f64) {
    let base = std::env::var_os("LOG_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(base).unwrap();
    let opts = StoreOptions {
        log_store: kind,
        ..StoreOptions::default()
    };
    let log = LogStore::open_in(dir.path(), &opts).unwrap();
    // Index order = queue order: a proposer takes the next index and
    // queues its entry under one lock (as openraft's core appends in order),
    // then waits for durability outside it.
    let order = Arc::new(Mutex::new(1u64));
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..proposers {
        let (log, order, done) = (log.clone(), order.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let mut fut = {
                    let mut next = order.lock().unwrap();
                    let mut log = log.clone();
                    let index = *next;
                    *next += 1;
                    let mut fut =
                        Box::pin(async move { log.blocking_append([entry(index)]).await });
                    // The first poll queues the entry; the rest waits for it.
                    if let Poll::Ready(r) =
                        fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
                    {
                        r.unwrap();
                        done.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    fut
                };
                (&mut fut).await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n = done.load(Ordering::Relaxed);
    (n, n as f64 / started.elapsed().as_secs_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
async fn log_append_throughput() {
    let secs: f64 = std::env::var("LOG_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let only = std::env::var("LOG_BENCH_ONLY").ok();
    for kind in [LogKind::Redb, LogKind::Wal] {
        for proposers in [1usize, 64] {
            let name = format!("{kind}:{proposers}");
            if only.as_ref().is_some_and(|o| *o != name) {
                continue;
            }
            let (n, rate) = run(kind, proposers, secs).await;
            println!(
                "log bench: store={kind} proposers={proposers} appends={n} appends_per_s={rate:.0}"
            );
            assert!(n > 0);
        }
    }
}
