//! Real `coffer` processes on loopback: a 3-node cluster with real TLS,
//! initialised, unsealed, written through followers, its leader killed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use coffer_client::secrets::SetOptions;
use coffer_client::ClientError;
use jepsen_tests::cluster::{ClusterOptions, LocalCluster};

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_coffer"))
}

async fn started_cluster() -> LocalCluster {
    let mut cluster = LocalCluster::start(&binary(), ClusterOptions::default()).unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    // Initialise through a follower: init is forwarded like any write.
    let follower = (leader + 1) % 3;
    cluster.init(follower, 5, 3).await.unwrap();
    cluster
}

fn followers(leader: usize) -> (usize, usize) {
    ((leader + 1) % 3, (leader + 2) % 3)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_node_unseals_and_a_follower_write_is_read_through_another_follower() {
    let cluster = started_cluster().await;
    for i in 0..3 {
        let health = cluster
            .node_client(i)
            .unwrap()
            .sys()
            .health()
            .await
            .unwrap();
        assert!(!health.body.sealed, "node {} sealed", i + 1);
        assert!(health.body.initialized);
        assert!(health.status == 200 || health.status == 429, "{health:?}");
    }
    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .unwrap();
    let (a, b) = followers(leader);
    let written = cluster
        .node_client(a)
        .unwrap()
        .secrets()
        .set("replicated", "through-a-follower", &SetOptions::default())
        .await
        .unwrap();
    let read = cluster
        .node_client(b)
        .unwrap()
        .secrets()
        .get("replicated", None)
        .await
        .unwrap();
    assert_eq!(read.value.as_deref(), Some("through-a-follower"));
    // Ids carry the host the client used; the version is the identity.
    assert_eq!(read.version(), written.version());
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_resume_after_the_leader_is_killed_and_it_catches_up_on_restart() {
    let mut cluster = started_cluster().await;
    let client = cluster.client().unwrap();
    client
        .secrets()
        .set("before-kill", "v1", &SetOptions::default())
        .await
        .unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .unwrap();

    cluster.kill(leader);
    let killed_at = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let name = format!("after-kill-{attempt}");
        match client
            .secrets()
            .set(&name, "v", &SetOptions::default())
            .await
        {
            Ok(_) => break,
            Err(e) if killed_at.elapsed() < Duration::from_secs(30) => {
                eprintln!("write {attempt} failed during failover: {e}");
            }
            Err(e) => panic!("writes did not resume within 30 s: {e}"),
        }
    }
    let gap = killed_at.elapsed();
    eprintln!("FAILOVER: writes resumed {gap:?} after SIGKILL of the leader");

    for i in 0..20 {
        client
            .secrets()
            .set(&format!("while-down-{i}"), "v", &SetOptions::default())
            .await
            .unwrap();
    }
    cluster.restart(leader).unwrap();
    cluster.unseal(leader).await.unwrap();
    let old_leader = cluster.node_client(leader).unwrap();
    let read = old_leader
        .secrets()
        .get("while-down-19", None)
        .await
        .unwrap();
    assert_eq!(read.value.as_deref(), Some("v"));
    let read = old_leader.secrets().get("before-kill", None).await.unwrap();
    assert_eq!(read.value.as_deref(), Some("v1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sealed_node_answers_503_and_clients_fail_over_past_it() {
    let cluster = started_cluster().await;
    cluster
        .client()
        .unwrap()
        .secrets()
        .set("sealed-test", "x", &SetOptions::default())
        .await
        .unwrap();
    let node0 = cluster.node_client(0).unwrap();
    node0.sys().seal().await.unwrap();

    let err = node0
        .secrets()
        .pinned(0)
        .get("sealed-test", None)
        .await
        .unwrap_err();
    match &err {
        ClientError::Http {
            status, message, ..
        } => {
            assert_eq!(*status, 503);
            assert!(message.contains("sealed"), "{message}");
        }
        other => panic!("expected a 503, got {other:?}"),
    }
    let health = node0.sys().health().await.unwrap();
    assert_eq!(health.status, 503);
    assert!(health.body.sealed);

    // The failover client starts at node 1 and moves on to an unsealed node.
    let read = cluster
        .client()
        .unwrap()
        .secrets()
        .get("sealed-test", None)
        .await
        .unwrap();
    assert_eq!(read.value.as_deref(), Some("x"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_write_with_the_same_request_id_creates_one_version() {
    let cluster = started_cluster().await;
    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .unwrap();
    let (a, b) = followers(leader);
    let id = "3f0e4b52-0000-4000-8000-00000000c0ff";
    let first = cluster
        .node_client(a)
        .unwrap()
        .secrets()
        .with_request_id(id)
        .set("idempotent", "once", &SetOptions::default())
        .await
        .unwrap();
    // The same request replayed through another node (a client retrying
    // after a timeout) must not create a second version.
    let retry = cluster
        .node_client(b)
        .unwrap()
        .secrets()
        .with_request_id(id)
        .set("idempotent", "once", &SetOptions::default())
        .await
        .unwrap();
    assert_eq!(first.version(), retry.version());
    let versions = cluster
        .client()
        .unwrap()
        .secrets()
        .versions("idempotent", None)
        .await
        .unwrap();
    assert_eq!(versions.len(), 1, "{versions:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_file_in_any_data_dir_holds_a_secret_value() {
    let cluster = started_cluster().await;
    let value = "coffer-plaintext-canary-7f3a9c2e51";
    let client = cluster.client().unwrap();
    for i in 0..5 {
        client
            .secrets()
            .set(&format!("canary-{i}"), value, &SetOptions::default())
            .await
            .unwrap();
    }
    // Let every follower apply, then look at every byte on disk.
    for i in 0..3 {
        let read = cluster
            .node_client(i)
            .unwrap()
            .secrets()
            .get("canary-4", None)
            .await
            .unwrap();
        assert_eq!(read.value.as_deref(), Some(value));
    }
    let mut scanned = 0;
    for node in &cluster.nodes {
        scanned += assert_not_in_tree(&node.data_dir, value.as_bytes());
    }
    assert!(
        scanned >= 3,
        "expected store files in every data dir, scanned {scanned}"
    );
}

/// Returns the number of files scanned.
fn assert_not_in_tree(dir: &Path, needle: &[u8]) -> usize {
    let mut scanned = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            scanned += assert_not_in_tree(&path, needle);
        } else {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "plaintext found in {}",
                path.display()
            );
            scanned += 1;
        }
    }
    scanned
}
