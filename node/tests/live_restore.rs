//! `operator snapshot restore FILE` into a running 3-node cluster: a file
//! larger than one Raft entry goes through the log in chunks; a tampered
//! or truncated file is refused (by the CLI, and by the nodes when sent
//! anyway) and nothing changes; after the restore the state digest at the
//! restore's index equals the snapshot's on every node, the writes made
//! after the snapshot are gone, and the cluster takes writes again.

use std::path::Path;
use std::time::Duration;

use coffer_client::secrets::SetOptions;
use jepsen_tests::cluster::{ClusterOptions, LocalCluster};
use serde_json::Value;

mod common;

use common::{binary, ok_json, value_for};

fn operator(cluster: &LocalCluster, args: &[&str]) -> std::process::Output {
    common::operator_cli(cluster, 0, cluster.root_token.as_deref(), args)
}

/// `/v1/sys/raft/digest?index=` of node `i`: the state digest right after `index`.
async fn digest_at(cluster: &LocalCluster, i: usize, index: u64) -> Value {
    let resp = cluster
        .node_client(i)
        .unwrap()
        .send_to(
            0,
            coffer_client::Request::get(format!("/v1/sys/raft/digest?index={index}")),
        )
        .await
        .unwrap();
    assert_eq!(resp.status.as_u16(), 200);
    let body: Value = serde_json::from_slice(&resp.body).unwrap();
    body["state_digest"]["digest_hex"].clone()
}

async fn value_of(cluster: &LocalCluster, name: &str) -> Option<String> {
    match cluster.client().unwrap().secrets().get(name, None).await {
        Ok(got) => got.value.clone(),
        Err(e) if e.status() == Some(404) => None,
        Err(e) => panic!("{name}: {e}"),
    }
}

async fn restore_refused(cluster: &LocalCluster, file: &Path) {
    // The CLI verifies the file before sending anything.
    let out = operator(cluster, &["snapshot", "restore", file.to_str().unwrap()]);
    assert!(!out.status.success(), "{} accepted", file.display());
    // Sent anyway, the node refuses it after staging, and removes the chunks.
    let bytes = std::fs::read(file).unwrap();
    let sent = cluster
        .node_client(1)
        .unwrap()
        .sys()
        .snapshot_restore(&bytes, 512 * 1024, false, |_, _| {})
        .await;
    let err = sent.expect_err("a damaged file was installed");
    assert_eq!(err.status(), Some(400), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_restore_replaces_the_state_and_refuses_damaged_files() {
    let work = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::start(&binary(), ClusterOptions::default()).unwrap();
    cluster.init(0, 3, 2).await.unwrap();
    let client = cluster.client().unwrap();
    // 80 values of 20 KB: the snapshot spans two 1 MiB chunks and more
    // than one Raft entry.
    let before: Vec<String> = (0..80).map(|i| format!("before-{i}")).collect();
    common::write_all(&client, before.clone(), 4).await;

    let file = work.path().join("backup.snap");
    let info = ok_json(
        operator(&cluster, &["snapshot", "save", file.to_str().unwrap()]),
        "snapshot save",
    );
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.len() > 1024 * 1024, "{} bytes", bytes.len());

    // After the snapshot: an overwrite and a new secret.
    let opts = SetOptions::default();
    client
        .secrets()
        .set("before-0", "changed", &opts)
        .await
        .unwrap();
    client
        .secrets()
        .set("after", &value_for("after"), &opts)
        .await
        .unwrap();

    // Damaged files change nothing.
    let flipped = work.path().join("flipped.snap");
    let mut damaged = bytes.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x01;
    std::fs::write(&flipped, &damaged).unwrap();
    let truncated = work.path().join("truncated.snap");
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    for bad in [&flipped, &truncated] {
        restore_refused(&cluster, bad).await;
    }
    assert_eq!(
        value_of(&cluster, "before-0").await.as_deref(),
        Some("changed")
    );
    assert!(value_of(&cluster, "after").await.is_some());

    // The real file: the state becomes the snapshot's.
    // The install entry verifies and writes the whole file on every node
    // before the answer: give a loaded test machine more than 10 s.
    let restored = ok_json(
        operator(
            &cluster,
            &[
                "--timeout",
                "120",
                "snapshot",
                "restore",
                file.to_str().unwrap(),
            ],
        ),
        "snapshot restore",
    );
    eprintln!("restored: {restored}");
    assert_eq!(restored["kv_digest"], info["kv_digest"]);
    assert_eq!(restored["snapshot_index"], info["index"]);
    let index = restored["index"].as_u64().unwrap();
    for i in 0..3 {
        // Every node applies the restore entry (wait for the followers).
        let mut at = digest_at(&cluster, i, index).await;
        for _ in 0..50 {
            if !at.is_null() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            at = digest_at(&cluster, i, index).await;
        }
        assert_eq!(at, info["kv_digest"], "node {} at index {index}", i + 1);
    }
    for name in &before {
        assert_eq!(
            value_of(&cluster, name).await.as_deref(),
            Some(value_for(name).as_str()),
            "{name}"
        );
    }
    assert_eq!(value_of(&cluster, "after").await, None);
    // The cluster takes writes again.
    client
        .secrets()
        .set("after-restore", "yes", &opts)
        .await
        .unwrap();
    assert_eq!(
        value_of(&cluster, "after-restore").await.as_deref(),
        Some("yes")
    );
}
