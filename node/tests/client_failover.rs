//! The Rust client through faults on a real three-node cluster in network
//! namespaces: workers drive mixed secrets and keys operations (set, get,
//! create, rotate, sign, verify) while the leader is killed and, later,
//! the new leader is cut off from both peers. Every operation must succeed
//! from the caller's point of view (the client fails over, routes writes
//! to the leader it learns, retries with the same request id), and the
//! state must hold each acknowledged write exactly once: the versions of
//! every secret and key are exactly the versions the workers were answered
//! with — none lost, none duplicated by a retry.
//!
//! The check can fail: with the client changed to send a fresh request id
//! on each retry (an experiment, not kept), a run stored 7 versions of a
//! secret for 6 acknowledged writes — a write committed by the killed
//! leader and applied again when retried on the new one.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_client::keys::CreateKeyOptions;
use coffer_client::secrets::SetOptions;
use coffer_client::{Client, ClientError};
use common::binary;
use jepsen_tests::cluster::{ClusterOptions, LocalCluster, Placement};

/// Concurrent workers, each with its own secret and key.
const WORKERS: usize = 3;
/// How long the leader stays cut off from its peers.
const CUT: Duration = Duration::from_secs(8);

/// What one worker was told by the cluster.
#[derive(Debug, Default)]
struct Outcome {
    /// Versions of its secret the cluster acknowledged.
    secret_versions: BTreeSet<String>,
    /// Versions of its key (create, then rotations) acknowledged.
    key_versions: BTreeSet<String>,
    /// Successful operations of each kind: set, get, create/rotate, sign+verify.
    ops: [usize; 4],
    /// Operations that failed, with their errors.
    failures: Vec<String>,
    /// Slowest operation.
    slowest: Duration,
}

/// Runs `op`, recording its latency, or its error as a failure.
async fn timed<T>(
    out: &mut Outcome,
    what: &str,
    op: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Option<T> {
    let started = Instant::now();
    let result = op.await;
    out.slowest = out.slowest.max(started.elapsed());
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            out.failures.push(format!("{what}: {e}"));
            None
        }
    }
}

/// One worker: until `stop`, set its secret, read it back, rotate its key
/// and sign and verify with the newest version.
async fn worker(client: Client, k: usize, stop: Arc<AtomicBool>) -> Outcome {
    let (secret, key) = (format!("fo-secret-{k}"), format!("fo-key-{k}"));
    let mut out = Outcome::default();
    let created = timed(
        &mut out,
        "create key",
        client.keys().create(&key, &CreateKeyOptions::ec("P-256")),
    )
    .await;
    if let Some(v) = created.as_ref().and_then(|b| b.version()) {
        out.key_versions.insert(v.to_owned());
        out.ops[2] += 1;
    }
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let value = format!("{secret}-value-{i}");
        let (secrets, opts) = (client.secrets(), SetOptions::default());
        if let Some(b) = timed(&mut out, "set secret", secrets.set(&secret, &value, &opts)).await {
            out.secret_versions
                .insert(b.version().unwrap_or_default().to_owned());
            out.ops[0] += 1;
            // Read-your-write through any node (reads are linearizable).
            if let Some(got) = timed(&mut out, "get secret", secrets.get(&secret, None)).await {
                if got.value.as_deref() != Some(value.as_str()) {
                    out.failures
                        .push(format!("get {secret}: not the value just written"));
                }
                out.ops[1] += 1;
            }
        }
        // Every other round rotates the key.
        if i & 1 == 0 {
            if let Some(b) = timed(&mut out, "rotate key", client.keys().rotate(&key)).await {
                out.key_versions
                    .insert(b.version().unwrap_or_default().to_owned());
                out.ops[2] += 1;
            }
        }
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.as_bytes());
        let keys = client.keys();
        let signed = timed(
            &mut out,
            "sign",
            keys.sign(&key, None, "ES256", digest.as_ref()),
        )
        .await;
        if let Some(sig) = signed {
            let verify = keys.verify(&key, None, "ES256", digest.as_ref(), &sig);
            // A rotation by no one else: the newest version signed and verifies.
            match timed(&mut out, "verify", verify).await {
                Some(true) => out.ops[3] += 1,
                Some(false) => out
                    .failures
                    .push("verify: a fresh signature did not verify".into()),
                None => {}
            }
        }
    }
    out
}

/// Versions of `name` the cluster holds, as secret or key.
async fn stored_versions(client: &Client, name: &str, key: bool) -> BTreeSet<String> {
    let versions: Vec<Option<String>> = if key {
        let items = client.keys().versions(name, Some(25)).await.unwrap();
        items
            .iter()
            .map(|i| i.version().map(str::to_owned))
            .collect()
    } else {
        let items = client.secrets().versions(name, Some(25)).await.unwrap();
        items
            .iter()
            .map(|i| i.version().map(str::to_owned))
            .collect()
    };
    versions
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixed_operations_survive_a_leader_kill_and_a_partition_exactly_once() {
    jepsen_tests::netns::check_available().unwrap();
    let mut cluster = LocalCluster::start(
        &binary(),
        ClusterOptions {
            placement: Placement::Netns,
            max_leader_silence_ms: Some(1000),
            ..ClusterOptions::default()
        },
    )
    .unwrap();
    cluster.init(0, 1, 1).await.unwrap();
    let first_leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    let mut cfg = cluster
        .client_config(cluster.nodes.iter().map(|n| n.url()).collect())
        .unwrap();
    // Short attempts (a cut-off node never answers), a request deadline
    // long enough for an election, no attempt limit but the deadline.
    cfg.timeout = Duration::from_secs(2);
    cfg.deadline = Some(Duration::from_secs(45));
    cfg.max_attempts = 0;
    let client = Client::new(cfg).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..WORKERS)
        .map(|k| tokio::spawn(worker(client.clone(), k, stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The client learnt the leader from the nodes' health answers.
    assert_eq!(
        client.routing().leader(),
        Some(first_leader),
        "writes should be routed to the leader"
    );

    // Fault 1: the leader dies (SIGKILL) mid-traffic, comes back, unseals.
    let killed_at = Instant::now();
    cluster.kill(first_leader);
    let second_leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    eprintln!(
        "CLIENT-FAILOVER: node {first_leader} killed, node {second_leader} leads after {:?}",
        killed_at.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.restart(first_leader).unwrap();
    cluster.unseal(first_leader).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Fault 2: the leader is cut off from both peers (it still answers
    // the client, but can commit nothing); the majority elects another.
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    let net = cluster.netns().unwrap();
    for other in (0..3).filter(|&o| o != leader) {
        net.cut(leader, other).unwrap();
    }
    let cut_at = Instant::now();
    tokio::time::sleep(CUT).await;
    net.heal().unwrap();
    eprintln!(
        "CLIENT-FAILOVER: node {leader} cut off for {:?}, healed",
        cut_at.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);

    let mut total = [0usize; 4];
    for (k, w) in workers.into_iter().enumerate() {
        let out = w.await.unwrap();
        eprintln!(
            "CLIENT-FAILOVER: worker {k}: set {} get {} create/rotate {} sign+verify {}, \
             failed {}, slowest {:?}",
            out.ops[0],
            out.ops[1],
            out.ops[2],
            out.ops[3],
            out.failures.len(),
            out.slowest
        );
        assert!(
            out.failures.is_empty(),
            "worker {k} saw failed operations: {:?}",
            out.failures
        );
        for (t, n) in total.iter_mut().zip(out.ops) {
            *t += n;
        }
        // Exactly the acknowledged writes are in the state: none lost, and
        // no retry of a write applied twice (a duplicate is an extra version).
        let secret = stored_versions(&client, &format!("fo-secret-{k}"), false).await;
        assert_eq!(
            secret, out.secret_versions,
            "worker {k}: stored secret versions differ from the acknowledged ones"
        );
        assert_eq!(secret.len(), out.ops[0], "worker {k}: secret writes");
        let key = stored_versions(&client, &format!("fo-key-{k}"), true).await;
        assert_eq!(
            key, out.key_versions,
            "worker {k}: stored key versions differ from the acknowledged ones"
        );
        assert_eq!(
            key.len(),
            out.ops[2],
            "worker {k}: key creates and rotations"
        );
    }
    eprintln!(
        "CLIENT-FAILOVER: total set {} get {} create/rotate {} sign+verify {}; 0 failed, 0 duplicated",
        total[0], total[1], total[2], total[3]
    );
    assert!(
        total[0] >= 10 && total[2] >= 5,
        "too little traffic to mean anything: {total:?}"
    );
}
