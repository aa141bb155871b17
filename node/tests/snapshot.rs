//! Backups a custodian can keep: `operator snapshot save` from a 3-node
//! cluster under write load from all three nodes, `inspect` without keys,
//! a flipped byte and a truncated file refused (and nothing changed), and
//! the snapshot restored into a fresh 3-node cluster on other addresses,
//! unsealed with the source's shares: its state digest equals the source's
//! at the snapshot's index and every write acknowledged before the save is
//! there.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coffer_client::secrets::SetOptions;
use jepsen_tests::cluster::{ClusterOptions, LocalCluster};
use serde_json::Value;

mod common;

use common::{binary, ok_json};

fn operator(cluster: &LocalCluster, i: usize, args: &[&str]) -> Output {
    common::operator_cli(cluster, i, cluster.root_token.as_deref(), args)
}

fn inspect(cluster: &LocalCluster, file: &Path) -> Output {
    operator(cluster, 0, &["snapshot", "inspect", file.to_str().unwrap()])
}

/// `/v1/sys/raft/digest?index=` of node `i`.
async fn state_digest(cluster: &LocalCluster, i: usize, index: u64) -> Value {
    let client = reqwest_like(cluster, i);
    let resp = client
        .send_to(
            0,
            coffer_client::Request::get(format!("/v1/sys/raft/digest?index={index}")),
        )
        .await
        .unwrap();
    assert_eq!(resp.status.as_u16(), 200);
    let body: Value = serde_json::from_slice(&resp.body).unwrap();
    body["state_digest"].clone()
}

fn reqwest_like(cluster: &LocalCluster, i: usize) -> coffer_client::Client {
    cluster.node_client(i).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn save_under_load_inspect_refuse_tampering_and_restore_into_a_fresh_cluster() {
    let work = tempfile::tempdir().unwrap();
    let mut source = LocalCluster::start(&binary(), ClusterOptions::default()).unwrap();
    let leader = source
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    source.init(leader, 3, 2).await.unwrap();

    // Write load through all three nodes; remember when each write was acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let mut writers = Vec::new();
    for i in 0..3 {
        let client = source.node_client(i).unwrap();
        let (stop, acked) = (stop.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("load-{i}-{n}");
                if client
                    .secrets()
                    .set(&name, &format!("value of {name}"), &SetOptions::default())
                    .await
                    .is_ok()
                {
                    acked.lock().unwrap().push((name, Instant::now()));
                }
                n += 1;
            }
        }));
    }
    // Load from every node before the save (a slow machine needs longer).
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < 60 {
        assert!(
            Instant::now() < deadline,
            "the write load does not progress"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let file = work.path().join("backup.snap");
    let save_started = Instant::now();
    let saved = ok_json(
        operator(
            &source,
            leader,
            &["snapshot", "save", file.to_str().unwrap()],
        ),
        "snapshot save",
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let before_save: Vec<String> = acked
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, at)| *at < save_started)
        .map(|(n, _)| n.clone())
        .collect();
    let total = acked.lock().unwrap().len();
    assert!(before_save.len() >= 60, "{}", before_save.len());
    assert!(total > before_save.len(), "no write after the save started");

    // Inspect without keys: header and seal, as the file says.
    let info = ok_json(inspect(&source, &file), "inspect");
    assert_eq!(info, saved);
    let health = source
        .node_client(leader)
        .unwrap()
        .sys()
        .health()
        .await
        .unwrap();
    assert_eq!(
        info["cluster_id"].as_str(),
        health.body.cluster_id.as_deref()
    );
    assert_eq!(info["seal_type"], "shamir");
    assert_eq!(info["seal"]["threshold"], 2);
    let index = info["index"].as_u64().unwrap();
    eprintln!(
        "snapshot at index {index}: {} records, {} bytes; {} writes acknowledged before the save, {total} in all",
        info["kv_entries"], info["bytes"], before_save.len()
    );
    assert!(info["term"].as_u64().unwrap() >= 1);
    // The snapshot's digest is the source's state at that index, on every member.
    for i in 0..3 {
        let at = state_digest(&source, i, index).await;
        assert_eq!(at["digest_hex"], info["kv_digest"], "node {}", i + 1);
    }
    // The values in it are ciphertext: no written value appears in the file.
    let bytes = std::fs::read(&file).unwrap();
    let needle = format!("value of {}", before_save[0]);
    assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_bytes()));

    // A flipped byte and a truncated file are refused.
    let flipped = work.path().join("flipped.snap");
    let mut damaged = bytes.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x01;
    std::fs::write(&flipped, &damaged).unwrap();
    let truncated = work.path().join("truncated.snap");
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    for bad in [&flipped, &truncated] {
        let out = inspect(&source, bad);
        assert!(!out.status.success(), "{} accepted", bad.display());
    }

    // A fresh cluster (other CA, other ports); its nodes stopped and wiped.
    let mut fresh = LocalCluster::start(&binary(), ClusterOptions::default()).unwrap();
    for i in 0..3 {
        fresh.stop(i).unwrap();
        let dir = fresh.nodes[i].data_dir.clone();
        let _ = std::fs::remove_dir_all(&dir);
    }
    // Tampered files change nothing: no data dir is even created.
    for bad in [&flipped, &truncated] {
        let out = restore(&fresh, 0, bad);
        assert!(!out.status.success());
        assert!(
            !fresh.nodes[0].data_dir.exists(),
            "a refused restore wrote files"
        );
    }
    // `coffer server --restore` refuses them as well, before writing anything.
    for bad in [&flipped, &truncated] {
        let out = Command::new(binary())
            .args(["server", "--config"])
            .arg(fresh.config_path(2))
            .arg("--restore")
            .arg(bad)
            .output()
            .unwrap();
        assert!(!out.status.success(), "server --restore accepted {bad:?}");
        assert!(
            !fresh.nodes[2].data_dir.exists(),
            "a refused server --restore wrote files"
        );
    }
    // Nodes 1 and 2 with the offline one-liner, node 3 with `server --restore`.
    for i in 0..2 {
        let out = restore(&fresh, i, &file);
        assert!(
            out.status.success(),
            "restore on node {}: {}",
            i + 1,
            String::from_utf8_lossy(&out.stderr)
        );
        // A node that has a log is not overwritten.
        assert!(!restore(&fresh, i, &file).status.success());
    }
    let started = Instant::now();
    for i in 0..2 {
        fresh.restart(i).unwrap();
    }
    fresh
        .restart_with(2, &["--restore".as_ref(), file.as_os_str()])
        .unwrap();
    // The custodians unseal with their existing shares.
    fresh.shares = source.shares.clone();
    fresh.root_token = source.root_token.clone();
    fresh
        .wait_for_leader(Duration::from_secs(30))
        .await
        .unwrap();
    for i in 0..3 {
        fresh.unseal(i).await.unwrap();
    }
    eprintln!("restore → 3 nodes unsealed in {:?}", started.elapsed());
    for i in 0..3 {
        let at = state_digest(&fresh, i, index).await;
        assert_eq!(
            at["digest_hex"],
            info["kv_digest"],
            "restored node {}",
            i + 1
        );
    }
    let client = fresh.client().unwrap();
    for name in &before_save {
        let got = client.secrets().get(name, None).await.unwrap();
        assert_eq!(
            got.value.as_deref(),
            Some(format!("value of {name}").as_str())
        );
    }
    // The restored cluster takes writes; its new identity is its own.
    client
        .secrets()
        .set("after-restore", "yes", &SetOptions::default())
        .await
        .unwrap();
    let fresh_health = fresh.node_client(0).unwrap().sys().health().await.unwrap();
    assert_ne!(fresh_health.body.cluster_id, health.body.cluster_id);
}

fn restore(cluster: &LocalCluster, i: usize, file: &Path) -> Output {
    Command::new(binary())
        .args([
            "operator",
            "snapshot",
            "restore",
            file.to_str().unwrap(),
            "--config",
        ])
        .arg(cluster.config_path(i))
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn automated_snapshots_by_the_leader_are_atomic_pruned_and_failures_shown() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("backups");
    let options = ClusterOptions {
        // Appended after the `[raft]` lines: a section of its own.
        raft_section: Some(format!(
            "\n[snapshots]\ninterval_secs = 1\nretain = 2\ndir = {:?}",
            dir.display().to_string()
        )),
        ..ClusterOptions::default()
    };
    let mut cluster = LocalCluster::start(&binary(), options).unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    cluster.init(leader, 1, 1).await.unwrap();
    let client = cluster.client().unwrap();
    // One "automated snapshot written" event in the leader's log a round.
    let rounds = |cluster: &LocalCluster| {
        cluster
            .log(leader)
            .matches("automated snapshot written")
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    while rounds(&cluster) < 4 {
        assert!(
            Instant::now() < deadline,
            "fewer than 4 automated snapshots in 30 s"
        );
        client
            .secrets()
            .set(&format!("s{n}"), "v", &SetOptions::default())
            .await
            .unwrap();
        n += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    // Pruned to `retain`, no temporary left, each one verified and written
    // by the leader (the followers take none).
    let snaps: Vec<&PathBuf> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    assert!(
        snaps.len() <= 2 && !snaps.is_empty(),
        "{files:?} after {} rounds",
        rounds(&cluster)
    );
    // At most one temporary: the round that may be copying right now.
    let temporaries = files
        .iter()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .count();
    assert!(temporaries <= 1, "{files:?}");
    for snap in &snaps {
        let info = ok_json(inspect(&cluster, snap), "inspect");
        assert_eq!(info["node_id"], leader as u64 + 1, "{}", snap.display());
    }
    let status = ok_json(operator(&cluster, leader, &["status"]), "status");
    let auto = &status["health"]["body"]["snapshots"];
    assert!(auto["last_file"].is_string(), "{status}");
    assert!(auto["last_error"].is_null(), "{status}");
    for i in (0..3).filter(|&i| i != leader) {
        let status = ok_json(operator(&cluster, i, &["status"]), "status");
        assert!(status["health"]["body"]["snapshots"].is_null(), "{status}");
    }

    // The directory becomes unusable: the failure shows in the status.
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(&dir, b"not a directory").unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = ok_json(operator(&cluster, leader, &["status"]), "status");
        if status["health"]["body"]["snapshots"]["last_error"].is_string() {
            // Health stays as it was: a failed backup does not stop serving.
            assert!(
                status["health"]["body"]["problems"]
                    .as_array()
                    .unwrap()
                    .is_empty(),
                "{status}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no failure reported: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_quorum_raft_recover_on_the_survivor_serves_all_its_data() {
    let work = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::start(&binary(), ClusterOptions::default()).unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    cluster.init(leader, 1, 1).await.unwrap();
    let client = cluster.client().unwrap();
    let names: Vec<String> = (0..40).map(|i| format!("kept-{i}")).collect();
    for name in &names {
        client
            .secrets()
            .set(name, &format!("value of {name}"), &SetOptions::default())
            .await
            .unwrap();
    }
    // The survivor is a follower that has applied everything.
    let survivor = (leader + 1) % 3;
    let commit = cluster
        .node_client(leader)
        .unwrap()
        .sys()
        .health()
        .await
        .unwrap()
        .body
        .commit_index
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let h = cluster
            .node_client(survivor)
            .unwrap()
            .sys()
            .health()
            .await
            .unwrap();
        if h.body.applied_index.unwrap_or(0) >= commit {
            break;
        }
        assert!(Instant::now() < deadline, "the survivor does not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Two of three destroyed; the survivor alone cannot elect a leader.
    let killed = Instant::now();
    for i in (0..3).filter(|&i| i != survivor) {
        cluster.kill(i);
    }
    cluster.stop(survivor).unwrap();
    let node = &cluster.nodes[survivor];
    let peers = work.path().join("peers.json");
    std::fs::write(
        &peers,
        serde_json::json!([{
            "node_id": node.id,
            "api_addr": node.api_addr,
            "cluster_addr": node.cluster_addr,
        }])
        .to_string(),
    )
    .unwrap();
    // A peers file without this node is refused.
    let other = serde_json::json!([{"node_id": 99, "api_addr": "x:1", "cluster_addr": "x:2"}]);
    let wrong = work.path().join("wrong.json");
    std::fs::write(&wrong, other.to_string()).unwrap();
    let recover = |peers: &Path| {
        Command::new(binary())
            .args(["operator", "raft", "recover", "--peers"])
            .arg(peers)
            .arg("--config")
            .arg(cluster.config_path(survivor))
            .output()
            .unwrap()
    };
    assert!(!recover(&wrong).status.success());
    let out = recover(&peers);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("WARNING"));

    cluster.restart(survivor).unwrap();
    let new_leader = cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(new_leader, survivor);
    cluster.unseal(survivor).await.unwrap();
    let client = cluster.node_client(survivor).unwrap();
    client
        .secrets()
        .set("after-recovery", "yes", &SetOptions::default())
        .await
        .unwrap();
    eprintln!(
        "lost quorum: kill → recover → first write on the survivor in {:?}",
        killed.elapsed()
    );
    for name in &names {
        let got = client.secrets().get(name, None).await.unwrap();
        assert_eq!(
            got.value.as_deref(),
            Some(format!("value of {name}").as_str())
        );
    }
    let peers = client.sys().peers().await.unwrap();
    assert_eq!(peers.peers.len(), 1, "{peers:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("membership of node"));
}
