//! Retention of the replicated audit trail on a real 3-node cluster: with
//! `[audit] trail_max_records = 1000`, the leader prunes the oldest records
//! after a burst of requests, and `coffer audit verify` checks the kept
//! trail from the recorded checkpoint — intact, starting after record 1,
//! ending at the cluster head.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use coffer_client::Request;
use common::binary;
use jepsen_tests::cluster::{ClusterOptions, LocalCluster};
use serde_json::Value;

fn verify(cluster: &LocalCluster) -> (bool, Value) {
    let out = Command::new(binary())
        .args(["audit", "verify", "-o", "json"])
        .env("COFFER_ADDR", cluster.nodes[2].url())
        .env("COFFER_CACERT", &cluster.ca_path)
        .env("COFFER_TOKEN", cluster.root_token.as_deref().unwrap())
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), v)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pruned_trail_verifies_from_its_checkpoint() {
    let mut cluster = LocalCluster::start(
        &binary(),
        ClusterOptions {
            env: vec![
                ("COFFER_AUDIT__SHIP_INTERVAL_MS".into(), "200".into()),
                ("COFFER_AUDIT__TRAIL_MAX_RECORDS".into(), "1000".into()),
            ],
            lifecycle_interval_secs: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    cluster.init(leader, 3, 2).await.unwrap();
    let root = cluster.client().unwrap();
    // 1300 requests, each one record.
    for _ in 0..26 {
        let batch = (0..50).map(|_| root.send(Request::get("/secrets/absent?api-version=7.4")));
        for r in futures::future::join_all(batch).await {
            assert_eq!(r.unwrap().status.as_u16(), 404);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let v = loop {
        let (ok, v) = verify(&cluster);
        assert!(ok, "the trail failed verification: {v}");
        // Pruned, and every node's records shipped (on a loaded machine the
        // leader may prune before the last batches of the burst arrive).
        let shipped = v["last"]["seq"].as_u64().unwrap_or(0) >= 1300;
        if v["firstSeq"].as_u64().unwrap_or(0) > 1 && shipped {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "nothing was pruned, or the burst's records never reached the trail: {v}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(v["problems"].as_array().unwrap().is_empty(), "{v}");
    let first = v["firstSeq"].as_u64().unwrap();
    let last = v["last"]["seq"].as_u64().unwrap();
    let records = v["records"].as_u64().unwrap();
    assert!(last >= 1300, "{v}");
    assert_eq!(first + records - 1, last, "{v}");
    assert!(
        records >= 1000,
        "more was pruned than retention allows: {v}"
    );
}
