//! Damaged state is detected and never served as wrong or missing data:
//! bit rot found by the checks at open (after a clean stop and after
//! kill -9), a replica that silently diverged found by the leader's
//! cross-check, and each repaired from a snapshot — by an operator command
//! or by the node itself with `auto_repair`.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    binary, every_value_served_by, quick_client, wait_exit, write_all, writes_then_a_follower,
};
use jepsen_tests::cluster::{ClusterOptions, LocalCluster};

async fn started(raft: &str) -> LocalCluster {
    let mut cluster = LocalCluster::start(
        &binary(),
        ClusterOptions {
            raft_snapshot_logs: Some(100),
            raft_section: Some(raft.to_string()),
            ..ClusterOptions::default()
        },
    )
    .unwrap();
    cluster.init(0, 1, 1).await.unwrap();
    cluster
}

/// XORs 4 bytes in every 4 KiB page of `file` after its header pages:
/// bit rot that certainly reaches pages holding live data.
fn rot(file: &Path) {
    let mut bytes = std::fs::read(file).unwrap();
    let mut page = 8 * 4096;
    let mut flipped = 0;
    while page + 1028 < bytes.len() {
        for b in &mut bytes[page + 1024..page + 1028] {
            *b ^= 0xFF;
        }
        page += 4096;
        flipped += 1;
    }
    assert!(flipped > 10, "{} is too small to rot", file.display());
    std::fs::write(file, bytes).unwrap();
}

/// Runs `coffer operator raft repair` with `args`.
fn repair_command(cluster: &LocalCluster, args: &[&str]) -> std::process::Output {
    std::process::Command::new(cluster.binary())
        .args(["operator", "raft", "repair"])
        .args(args)
        .output()
        .unwrap()
}

/// Bit rot in `state.redb` of a node stopped cleanly: the node refuses to
/// start (it does not serve missing data), says what to run, and the
/// operator's offline repair from the leader's snapshot brings it back with
/// every value.
#[tokio::test(flavor = "multi_thread")]
async fn rot_after_a_clean_stop_is_refused_at_start_and_repaired_from_the_leader() {
    let mut cluster = started("").await;
    let names: Vec<String> = (0..150).map(|i| format!("cert-{i:03}")).collect();
    let (leader, f) = writes_then_a_follower(&cluster, &names).await;
    let client = cluster.client().unwrap();
    cluster.stop(f).unwrap();
    rot(&cluster.nodes[f].data_dir.join("state.redb"));

    cluster.restart(f).unwrap();
    let status = wait_exit(&mut cluster, f, Duration::from_secs(30)).await;
    assert!(
        !status.success(),
        "a node with a rotten state started: {status}"
    );
    let log = cluster.log(f);
    assert!(log.contains("state.redb"), "the damaged file is named");
    assert!(
        log.contains("coffer operator raft repair"),
        "the remedy is named"
    );

    // More writes meanwhile; then the offline repair from the leader.
    write_all(&client, vec!["after-rot".into()], 1).await;
    let leader_addr = cluster.nodes[leader].cluster_addr.clone();
    let config = cluster.config_path(f).to_path_buf();
    let out = repair_command(
        &cluster,
        &["--config", config.to_str().unwrap(), "--from", &leader_addr],
    );
    assert!(
        out.status.success(),
        "repair failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    cluster.restart(f).unwrap();
    cluster.unseal(f).await.unwrap();
    let mut all = names.clone();
    all.push("after-rot".into());
    every_value_served_by(&cluster, f, &all).await;
}

/// The same damage after a kill -9, on a node with `auto_repair`: it repairs
/// itself from its own snapshot at start and serves every value. (More than
/// 1024 entries, so that part of the state was committed durably: applies
/// in between are lazy, and a kill -9 before the first durable commit
/// leaves nothing on disk to rot. Proposal batching is off so that 1100
/// writes are 1100 entries.)
#[tokio::test(flavor = "multi_thread")]
async fn rot_after_kill_9_is_repaired_by_the_node_itself_with_auto_repair() {
    let mut cluster = started("auto_repair = true\nproposals_in_flight = 0").await;
    let names: Vec<String> = (0..1100).map(|i| format!("s-{i:04}")).collect();
    let client = cluster.client().unwrap();
    write_all(&client, names.clone(), 8).await;
    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .unwrap();
    let f = (leader + 1) % 3;
    cluster.kill(f);
    rot(&cluster.nodes[f].data_dir.join("state.redb"));

    cluster.restart(f).unwrap();
    cluster.unseal(f).await.unwrap();
    every_value_served_by(&cluster, f, &names).await;
    let log = cluster.log(f);
    assert!(log.contains("repaired at start"), "the repair is logged");
}

/// A follower whose state silently diverged (here: one extra key applied
/// behind Raft's back, with a self-consistent digest, so the checks at open
/// pass) is found by the leader's cross-check, stops serving, reports it,
/// and is repaired online by `coffer operator raft repair`.
#[tokio::test(flavor = "multi_thread")]
async fn a_diverged_follower_is_found_by_the_cross_check_and_repaired_online() {
    let mut cluster = started("corruption_check_interval_secs = 1").await;
    let names: Vec<String> = (0..20).map(|i| format!("key-{i:02}")).collect();
    let (_, f) = writes_then_a_follower(&cluster, &names).await;
    let client = cluster.client().unwrap();
    cluster.stop(f).unwrap();
    diverge(&cluster.nodes[f].data_dir).await;
    cluster.restart(f).unwrap();
    cluster.unseal(f).await.unwrap();
    write_all(&client, vec!["after-diverge".into()], 1).await;

    // Found within a few check intervals; the node says so and refuses data.
    let probe = quick_client(&cluster, f);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let h = probe.sys().health().await.unwrap();
        if h.body.problems.iter().any(|p| p.contains("damaged")) {
            assert_eq!(h.status, 503);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the divergence went unnoticed: {h:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let refused = probe.secrets().get("key-00", None).await.unwrap_err();
    assert_eq!(refused.status(), Some(503), "{refused}");

    // The online repair: the node fetches the leader's snapshot, exits 75,
    // installs it at the next start, and serves again.
    let out = std::process::Command::new(cluster.binary())
        .args(["operator", "raft", "repair"])
        .env("COFFER_ADDR", cluster.nodes[f].url())
        .env("COFFER_TOKEN", cluster.root_token.clone().unwrap())
        .env("COFFER_CACERT", &cluster.ca_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "repair failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = wait_exit(&mut cluster, f, Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(coffer::server::EXIT_RESTART_FOR_REPAIR));
    cluster.restart(f).unwrap();
    cluster.unseal(f).await.unwrap();
    let mut all = names.clone();
    all.push("after-diverge".into());
    every_value_served_by(&cluster, f, &all).await;
    let h = quick_client(&cluster, f).sys().health().await.unwrap();
    assert!(h.body.problems.is_empty(), "{h:?}");
}

/// Applies one extra key at the state's current applied index, straight
/// through the state machine (no Raft): a divergence that the storage's own
/// checks cannot see.
async fn diverge(data_dir: &Path) {
    use openraft::storage::RaftStateMachine;
    use openraft::{Entry, EntryPayload};
    let (_log, mut sm) = raft_store::open(data_dir).unwrap();
    let (applied, _) = sm.applied_state().await.unwrap();
    let entry = Entry {
        log_id: applied.unwrap(),
        payload: EntryPayload::Normal(raft_store::Request {
            request_id: None,
            time_ms: 0,
            txn: raft_store::Txn {
                compare: vec![],
                mutations: vec![raft_store::Mutation::Put {
                    key: b"zz/diverged".to_vec(),
                    value: b"not in anyone else's state".to_vec(),
                }],
                result: vec![],
            },
        }),
    };
    sm.apply(vec![entry]).await.unwrap();
}
