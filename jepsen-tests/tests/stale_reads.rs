//! Proof that the linearizability checker bites, made deterministic: with
//! the test-only flag that serves reads without ReadIndex, a follower cut
//! off from the others still answers reads from its own state. Write v1,
//! wait until the follower applied it, cut the follower off, write v2
//! through the majority, read through the follower: it answers v1 after v2
//! was acknowledged, and the checker must say so with a counterexample.
//! Without the flag the same steps must pass (the follower cannot confirm
//! its read, so it answers no stale value).

use std::time::{Duration, Instant};

use jepsen_tests::checker::linear::check_register;
use jepsen_tests::checker::Verdict;
use jepsen_tests::cluster::{ClusterOptions, LocalCluster, Placement};
use jepsen_tests::history::{Op, OpKind, Outcome, Recorder};
use jepsen_tests::netns;
use jepsen_tests::runner::coffer_binary;
use jepsen_tests::workload::{register, Worker};
use rand::rngs::StdRng;
use rand::SeedableRng;

const KEY: &str = "reg-0";

/// A worker pinned to node index `node`.
fn worker(cluster: &LocalCluster, process: usize, node: usize, recorder: &Recorder) -> Worker {
    let urls = cluster.nodes.iter().map(|n| n.url()).collect();
    let mut cfg = cluster.client_config(urls).unwrap();
    cfg.timeout = Duration::from_secs(2);
    Worker {
        process,
        pinned: Some(node),
        client: coffer_client::Client::new(cfg).unwrap(),
        recorder: recorder.clone(),
        rng: StdRng::seed_from_u64(process as u64),
        seq: 0,
        op_timeout: Duration::from_secs(4),
    }
}

async fn applied(cluster: &LocalCluster, i: usize) -> u64 {
    let client = cluster.node_client(i).unwrap();
    let h = client.sys().health().await.unwrap();
    h.body.applied_index.unwrap_or(0)
}

/// Runs the scenario; returns the history (write v1, write v2, read).
async fn cut_off_follower_reads(stale_reads: bool) -> Vec<Op> {
    netns::check_available().unwrap();
    let options = ClusterOptions {
        placement: Placement::Netns,
        unsafe_stale_reads: stale_reads,
        ..ClusterOptions::default()
    };
    let mut cluster = LocalCluster::start(&coffer_binary().unwrap(), options).unwrap();
    cluster.init(0, 1, 1).await.unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    let follower = (leader + 1) % cluster.nodes.len();
    let recorder = Recorder::new();
    let mut writer = worker(&cluster, 0, leader, &recorder);
    let mut reader = worker(&cluster, 1, follower, &recorder);

    register::write(&mut writer, KEY).await;
    // The follower has v1 before it is cut off (health, not a recorded read).
    let target = applied(&cluster, leader).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while applied(&cluster, follower).await < target {
        assert!(Instant::now() < deadline, "follower never applied v1");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let net = cluster.netns().unwrap();
    for other in (0..cluster.nodes.len()).filter(|&o| o != follower) {
        net.cut(follower, other).unwrap();
    }
    register::write(&mut writer, KEY).await;
    register::read(&mut reader, KEY).await;
    recorder.snapshot()
}

fn value_of(op: &Op) -> Option<&str> {
    match &op.kind {
        OpKind::Write { value, .. } => Some(value),
        OpKind::Read { value, .. } => value.as_deref(),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_read_from_a_cut_off_follower_is_not_linearizable() {
    let history = cut_off_follower_reads(true).await;
    let [v1, v2, read] = &history[..] else {
        panic!("three operations expected: {history:?}");
    };
    assert_eq!((v1.outcome, v2.outcome), (Outcome::Ok, Outcome::Ok));
    assert_eq!(read.outcome, Outcome::Ok, "{read:?}");
    assert_eq!(value_of(read), value_of(v1), "the cut-off follower read v1");
    assert!(read.malformed.is_none() && read.bytes == v1.bytes);

    let verdict = check_register(&history, Duration::from_secs(10));
    let Verdict::Fail(counterexample) = verdict else {
        panic!("the stale read went unnoticed: {verdict:?}");
    };
    assert!(
        counterexample.contains("no linearization"),
        "{counterexample}"
    );
    let stale = format!("read -> {}", value_of(v1).unwrap());
    assert!(counterexample.contains(&stale), "{counterexample}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_flag_the_cut_off_follower_reads_nothing_stale() {
    let history = cut_off_follower_reads(false).await;
    let [v1, v2, read] = &history[..] else {
        panic!("three operations expected: {history:?}");
    };
    assert_eq!((v1.outcome, v2.outcome), (Outcome::Ok, Outcome::Ok));
    assert_ne!(
        read.outcome,
        Outcome::Ok,
        "a cut-off follower confirmed a read: {read:?}"
    );
    assert_eq!(
        check_register(&history, Duration::from_secs(10)),
        Verdict::Pass
    );
}
