//! Keys on a real 3-node cluster: HSM-tier keys survive the loss of the node
//! that created them and never reach a disk in the clear; rotation policies
//! are carried out by the leader without an operator. Each node times
//! its HSM operations in `/metrics`.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use coffer_client::{Client, Request};
use jepsen_tests::cluster::{ClusterOptions, LocalCluster};
use serde_json::{json, Value};

const API: &str = "api-version=7.4";

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_coffer"))
}

async fn call(client: &Client, method: &str, path: &str, body: Option<Value>) -> Value {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut request = Request::new(method.parse().unwrap(), format!("{path}{sep}{API}"));
    if let Some(body) = body {
        request = request.json(&body).unwrap();
    }
    let response = client.send(request).await.unwrap();
    let status = response.status;
    let value: Value = response.json().unwrap_or(Value::Null);
    assert!(status.is_success(), "{method} {path}: {status} {value}");
    value
}

/// How many HSM `operation`s a node's `/metrics` text has timed.
fn hsm_count(text: &str, operation: &str) -> f64 {
    let series =
        format!("coffer_hsm_operation_duration_seconds_count{{operation=\"{operation}\"}}");
    common::sample(text, &series).unwrap_or_else(|| panic!("no {series}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_hsm_key_outlives_its_creator_node_and_never_reaches_disk_in_the_clear() {
    let options = ClusterOptions {
        hsm: true,
        ..ClusterOptions::default()
    };
    let mut cluster = LocalCluster::start(&binary(), options).unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    cluster.init(leader, 3, 2).await.unwrap();

    let node1 = cluster.node_client(0).unwrap();
    // Known secret material, so the test can look for it byte by byte.
    let k: [u8; 32] = *b"coffer-hsm-canary-key-0123456789";
    let ec_d: [u8; 32] = *b"coffer-hsm-ec-private-scalar-xyz";
    let ec =
        aws_lc_rs::agreement::PrivateKey::from_private_key(&aws_lc_rs::agreement::ECDH_P256, &ec_d)
            .unwrap();
    let point = ec.compute_public_key().unwrap();
    let (x, y) = point.as_ref()[1..].split_at(32);
    call(
        &node1,
        "PUT",
        "/keys/hsm-oct",
        Some(json!({"key": {"kty": "oct-HSM", "k": B64.encode(k),
            "key_ops": ["encrypt", "decrypt", "wrapKey", "unwrapKey"]}, "Hsm": true})),
    )
    .await;
    call(
        &node1,
        "PUT",
        "/keys/hsm-ec",
        Some(
            json!({"key": {"kty": "EC-HSM", "crv": "P-256", "d": B64.encode(ec_d),
            "x": B64.encode(x), "y": B64.encode(y), "key_ops": ["sign", "verify"]}, "Hsm": true}),
        ),
    )
    .await;
    let created = call(
        &node1,
        "POST",
        "/keys/hsm-rsa/create",
        Some(json!({"kty": "RSA-HSM", "key_size": 2048})),
    )
    .await;
    assert_eq!(created["key"]["kty"], "RSA-HSM");
    assert!(
        created["key"].get("d").is_none(),
        "private material returned"
    );

    // Made in a device: one generate and two imports, on whichever nodes
    // ran them.
    let mut made = [0.0; 2];
    for i in 0..3 {
        let text = common::scrape(&cluster, i).await;
        for (n, op) in made.iter_mut().zip(["generate", "import"]) {
            *n += hsm_count(&text, op);
        }
    }
    assert_eq!(made, [1.0, 2.0], "HSM generate, import");
    let before = [
        common::scrape(&cluster, 1).await,
        common::scrape(&cluster, 2).await,
    ];

    cluster.kill(0);
    let node3 = cluster.node_client(2).unwrap();
    let node2 = cluster.node_client(1).unwrap();
    let digest = B64.encode([7u8; 32]);
    for key in ["hsm-ec", "hsm-rsa"] {
        let alg = if key == "hsm-ec" { "ES256" } else { "PS256" };
        let signed = call(
            &node3,
            "POST",
            &format!("/keys/{key}//sign"),
            Some(json!({"alg": alg, "value": digest})),
        )
        .await;
        let verified = call(
            &node2,
            "POST",
            &format!("/keys/{key}//verify"),
            Some(json!({"alg": alg, "digest": digest, "value": signed["value"]})),
        )
        .await;
        assert_eq!(verified["value"], true, "{key}");
    }
    let plaintext = B64.encode(b"replicated hsm key");
    let sealed = call(
        &node3,
        "POST",
        "/keys/hsm-oct//encrypt",
        Some(json!({"alg": "A256GCM", "value": plaintext})),
    )
    .await;
    let opened = call(
        &node2,
        "POST",
        "/keys/hsm-oct//decrypt",
        Some(json!({"alg": "A256GCM", "value": sealed["value"], "iv": sealed["iv"], "tag": sealed["tag"]})),
    )
    .await;
    assert_eq!(opened["value"], plaintext);

    // Node 3 signed twice and encrypted once in its device, node 2
    // decrypted once; verify is software and not an HSM operation.
    let after = [
        common::scrape(&cluster, 1).await,
        common::scrape(&cluster, 2).await,
    ];
    let grew = |node: usize, op: &str| hsm_count(&after[node], op) - hsm_count(&before[node], op);
    assert_eq!(
        [grew(1, "sign"), grew(1, "encrypt"), grew(0, "decrypt")],
        [2.0, 1.0, 1.0],
        "HSM operations timed on node 3 (sign, encrypt) and node 2 (decrypt)"
    );
    for text in &after {
        assert!(!text.contains("operation=\"verify\""));
        assert_eq!(
            common::sample(text, "coffer_hsm_errors_total{operation=\"sign\"}"),
            Some(0.0)
        );
    }

    let scan = cluster.scan_data_dirs(&[&k, &ec_d]).unwrap();
    assert!(
        scan.hits.is_empty(),
        "private key bytes found in {:?}",
        scan.hits
    );
    assert!(
        scan.files >= 6,
        "expected raft and state files, scanned {}",
        scan.files
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_leader_rotates_a_key_when_its_policy_is_due() {
    let options = ClusterOptions {
        lifecycle_interval_secs: Some(1),
        // PT2S is far below Key Vault's 7 days: lowered for this test only.
        unsafe_min_rotation_secs: Some(1),
        ..ClusterOptions::default()
    };
    let mut cluster = LocalCluster::start(&binary(), options).unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    cluster.init(leader, 1, 1).await.unwrap();
    let client = cluster.client().unwrap();
    call(
        &client,
        "POST",
        "/keys/rotating/create",
        Some(json!({"kty": "EC", "crv": "P-256"})),
    )
    .await;
    call(
        &client,
        "PUT",
        "/keys/rotating/rotationpolicy",
        Some(json!({"lifetimeActions": [
            {"trigger": {"timeAfterCreate": "PT2S"}, "action": {"type": "Rotate"}}
        ], "attributes": {"expiryTime": "P90D"}})),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let versions = call(&client, "GET", "/keys/rotating/versions", None).await;
        let count = versions["value"].as_array().map_or(0, Vec::len);
        if count >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no rotation within 20 s: {versions}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
