//! The pkcs11 seal (auto-unseal) on real 3-node clusters with SoftHSM2
//! (`apt-get install softhsm2`, done by scripts/test.sh).
//!
//! Device layout: one SoftHSM2 token `coffer-seal` is created in node 1's
//! token dir, its AES-256 seal key (not extractable) made by the real
//! `coffer operator seal-key create`, and that token dir is then *copied*
//! to every other node's own token dir before start — each node its own
//! copy of the same device key, as nodes reaching one network HSM would
//! (see jepsen-tests' `hsm::init_seal_tokens`).
//!
//! - Every node restarts (SIGKILL) and unseals itself with no human; the
//!   recovery shares are refused for unseal; a node whose device is gone
//!   stays sealed and says why in `/v1/sys/health` and `operator status`.
//! - Seal migration Shamir → pkcs11 → Shamir with the real CLI, authorised
//!   by a quorum of shares, keeps every secret (digests of every value,
//!   read back through every node, equal before and after).

use std::time::{Duration, Instant};

use coffer_client::secrets::SetOptions;
use jepsen_tests::cluster::{ClusterOptions, LocalCluster};
use serde_json::Value;
use sha2::{Digest, Sha256};

mod common;

use common::{binary, ok_json, operator_cli as operator, quick_client};

/// Secrets written before the restarts and migrations.
const SECRETS: usize = 24;

/// A value unique to `name`, 1 KiB to 25 KiB long (several spans of the
/// Raft snapshot chunks once compacted).
fn value(name: &str, i: usize) -> String {
    let len = 1024 + (i * 7919) % (24 * 1024);
    let mut v = format!("{name}:").repeat(len / (name.len() + 1) + 1);
    v.truncate(len);
    v
}

fn names() -> Vec<String> {
    (0..SECRETS).map(|i| format!("seal-secret-{i}")).collect()
}

async fn write_secrets(cluster: &LocalCluster) {
    let client = cluster.client().unwrap();
    for (i, name) in names().iter().enumerate() {
        client
            .secrets()
            .set(name, &value(name, i), &SetOptions::default())
            .await
            .unwrap_or_else(|e| panic!("writing {name}: {e}"));
    }
}

/// SHA-256 over every secret's value read through node `i` alone (retrying
/// while the node catches up), after checking each value is the one written.
async fn digest_via(cluster: &LocalCluster, i: usize) -> String {
    let client = quick_client(cluster, i);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut hash = Sha256::new();
    for (k, name) in names().iter().enumerate() {
        let got = loop {
            match client.secrets().get(name, None).await {
                Ok(got) => break got,
                Err(e) if Instant::now() < deadline && e.status() != Some(404) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("{name} through node {}: {e}", i + 1),
            }
        };
        let v = got.value.clone().unwrap_or_default();
        assert_eq!(v, value(name, k), "{name} through node {}", i + 1);
        hash.update(name.as_bytes());
        hash.update([0]);
        hash.update(v.as_bytes());
    }
    hex::encode(hash.finalize())
}

/// Waits until node `i` reports itself unsealed, submitting nothing.
async fn wait_unsealed_alone(cluster: &LocalCluster, i: usize, within: Duration) {
    let client = quick_client(cluster, i);
    let deadline = Instant::now() + within;
    loop {
        if let Ok(s) = client.sys().seal_status().await {
            if s.initialized && !s.sealed {
                assert_eq!(s.seal_type, "pkcs11");
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "node {} did not unseal itself within {within:?}; log:\n{}",
            i + 1,
            cluster.log(i)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn restart_all(cluster: &mut LocalCluster) {
    for i in 0..cluster.nodes.len() {
        cluster.kill(i);
    }
    for i in 0..cluster.nodes.len() {
        cluster.restart(i).unwrap();
    }
}

/// Rewrites `[seal] type` in every node's config.
fn set_seal_type(cluster: &LocalCluster, from: &str, to: &str) {
    for i in 0..cluster.nodes.len() {
        let path = cluster.config_path(i);
        let text = std::fs::read_to_string(path).unwrap();
        let line = format!("type = {from:?}");
        assert!(text.contains(&line), "{}", path.display());
        std::fs::write(path, text.replace(&line, &format!("type = {to:?}"))).unwrap();
    }
}

fn start(seal_type: &'static str) -> LocalCluster {
    LocalCluster::start(
        &binary(),
        ClusterOptions {
            seal_device: Some(seal_type),
            // Compact often so restarts install snapshots, not only replay.
            raft_snapshot_logs: Some(20),
            ..ClusterOptions::default()
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pkcs11_cluster_restarts_and_unseals_itself_and_reports_a_missing_device() {
    let mut cluster = start("pkcs11");
    cluster.init(0, 5, 3).await.unwrap();
    let token = cluster.root_token.clone().unwrap();
    for i in 0..3 {
        wait_unsealed_alone(&cluster, i, Duration::from_secs(30)).await;
    }
    let status = ok_json(operator(&cluster, 0, None, &["status"]), "status");
    assert_eq!(status["seal_status"]["type"], "pkcs11");
    assert_eq!(status["seal_status"]["recovery_seal"], true);
    assert_eq!(status["health"]["body"]["seal_type"], "pkcs11");
    write_secrets(&cluster).await;
    let before = digest_via(&cluster, 0).await;

    // Recovery shares do not unseal: an operator-sealed node stays sealed.
    assert!(operator(&cluster, 2, Some(&token), &["seal"])
        .status
        .success());
    let out = operator(&cluster, 2, None, &["unseal", &cluster.shares[0]]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("recovery shares"), "{err}");
    assert!(
        !err.contains(&cluster.shares[0][..16]),
        "the error echoes the share"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sealed = ok_json(operator(&cluster, 2, None, &["status"]), "status");
    assert_eq!(sealed["seal_status"]["sealed"], true, "sealed on purpose");
    let why = sealed["seal_status"]["reason"].as_str().unwrap_or_default();
    assert!(why.contains("sealed by an operator"), "{why}");

    // Every node killed and restarted: all unseal with no human.
    restart_all(&mut cluster);
    cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .unwrap();
    for i in 0..3 {
        wait_unsealed_alone(&cluster, i, Duration::from_secs(30)).await;
    }
    for i in 0..3 {
        assert_eq!(digest_via(&cluster, i).await, before, "node {}", i + 1);
        // The unseal went through the device, timed, without an error.
        let text = common::scrape(&cluster, i).await;
        assert!(seal_unwraps(&text) >= 1.0, "node {}: {text}", i + 1);
        assert_eq!(seal_unwrap_errors(&text), 0.0, "node {}", i + 1);
    }
    // Writes go on after the restart.
    let client = cluster.client().unwrap();
    client
        .secrets()
        .set(
            "after-restart",
            &value("after-restart", 3),
            &SetOptions::default(),
        )
        .await
        .unwrap();

    // Node 3's device is gone: it stays sealed and says why.
    let tokens = cluster.dir().join("softhsm/node3/tokens");
    let moved = cluster.dir().join("softhsm/node3/tokens-away");
    cluster.kill(2);
    std::fs::rename(&tokens, &moved).unwrap();
    std::fs::create_dir(&tokens).unwrap();
    cluster.restart(2).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let reason = loop {
        let health = quick_client(&cluster, 2).sys().health().await;
        if let Ok(h) = health {
            if let Some(reason) = h.body.seal_reason.clone() {
                assert_eq!(h.status, 503);
                assert!(h.body.sealed);
                break reason;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no reason; log:\n{}",
            cluster.log(2)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(reason.contains("auto-unseal"), "{reason}");
    assert!(reason.contains("coffer-seal"), "{reason}");
    assert!(
        !reason.contains("coffer-test-pin"),
        "the PIN leaks: {reason}"
    );
    let status = ok_json(operator(&cluster, 2, None, &["status"]), "status");
    assert_eq!(status["seal_status"]["sealed"], true);
    assert_eq!(
        status["seal_status"]["reason"].as_str(),
        Some(reason.as_str())
    );
    // Its metrics count the failed unseals as HSM errors.
    let text = common::scrape(&cluster, 2).await;
    assert!(seal_unwrap_errors(&text) >= 1.0, "{text}");
    // The other two still serve.
    assert_eq!(digest_via(&cluster, 0).await, before);

    // The device is back: after a restart the node unseals itself again.
    cluster.kill(2);
    std::fs::remove_dir(&tokens).unwrap();
    std::fs::rename(&moved, &tokens).unwrap();
    cluster.restart(2).unwrap();
    wait_unsealed_alone(&cluster, 2, Duration::from_secs(30)).await;
    assert_eq!(digest_via(&cluster, 2).await, before);
}

/// Auto-unseals a node's `/metrics` text has timed.
fn seal_unwraps(text: &str) -> f64 {
    let series = "coffer_hsm_operation_duration_seconds_count{operation=\"seal_unwrap\"}";
    common::sample(text, series).unwrap_or_else(|| panic!("no {series}"))
}

/// Auto-unseals the device failed, in a node's `/metrics` text.
fn seal_unwrap_errors(text: &str) -> f64 {
    let series = "coffer_hsm_errors_total{operation=\"seal_unwrap\"}";
    common::sample(text, series).unwrap_or_else(|| panic!("no {series}"))
}

/// Runs a migration to `to` through node 0 with the CLI: init (token), then
/// `shares` one at a time with the nonce. Returns the last answer.
fn migrate(cluster: &LocalCluster, token: &str, to: &str, shares: &[String]) -> Value {
    let init = ok_json(
        operator(
            cluster,
            0,
            Some(token),
            &["seal-migrate", "init", "--to", to],
        ),
        "seal-migrate init",
    );
    let nonce = init["nonce"].as_str().unwrap().to_string();
    assert_eq!(init["target"], to);
    let mut last = Value::Null;
    for share in shares {
        last = ok_json(
            operator(
                cluster,
                0,
                None,
                &["seal-migrate", "--nonce", &nonce, share],
            ),
            "seal-migrate",
        );
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seal_migration_shamir_to_pkcs11_and_back_keeps_every_secret() {
    // Devices present but the cluster starts with the Shamir seal.
    let mut cluster = start("shamir");
    cluster.init(0, 3, 2).await.unwrap();
    let token = cluster.root_token.clone().unwrap();
    let shares = cluster.shares.clone();
    write_secrets(&cluster).await;
    let before = digest_via(&cluster, 0).await;

    // To pkcs11: nodes configured for it, unsealed with shares, then a
    // quorum of unseal shares authorises the migration.
    set_seal_type(&cluster, "shamir", "pkcs11");
    restart_all(&mut cluster);
    for i in 0..3 {
        cluster.unseal(i).await.unwrap();
    }
    // Below the quorum nothing changes; a wrong share commits nothing.
    let first = migrate(&cluster, &token, "pkcs11", &shares[..1]);
    assert_eq!(first["complete"], false);
    assert_eq!(first["progress"], 1);
    let status = ok_json(operator(&cluster, 0, None, &["status"]), "status");
    assert_eq!(status["seal_status"]["type"], "shamir");
    let nonce = first["nonce"].as_str().unwrap().to_string();
    let cancelled = ok_json(
        operator(
            &cluster,
            0,
            Some(&token),
            &["seal-migrate", "cancel", "--nonce", &nonce],
        ),
        "cancel",
    );
    assert_eq!(cancelled["cancelled"], true);
    let done = migrate(&cluster, &token, "pkcs11", &shares[1..3]);
    assert_eq!(done["complete"], true, "{done}");
    for i in 0..3 {
        assert_eq!(digest_via(&cluster, i).await, before);
    }

    // Every node restarts and unseals itself; the shares are recovery shares.
    restart_all(&mut cluster);
    cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .unwrap();
    for i in 0..3 {
        wait_unsealed_alone(&cluster, i, Duration::from_secs(30)).await;
    }
    for i in 0..3 {
        assert_eq!(digest_via(&cluster, i).await, before, "node {}", i + 1);
    }

    // Back to Shamir with a quorum of the recovery shares.
    let back = migrate(
        &cluster,
        &token,
        "shamir",
        &[shares[2].clone(), shares[0].clone()],
    );
    assert_eq!(back["complete"], true, "{back}");
    set_seal_type(&cluster, "pkcs11", "shamir");
    restart_all(&mut cluster);
    // Until node 2 answers (it took 3.5 s to listen on a loaded machine; a
    // fixed 3 s wait failed there) and has the migration: it may have been
    // killed before applying it (`complete` means a quorum committed it),
    // and then reports the seal of its own last applied state until the new
    // leader's log reaches it (seen on a loaded machine).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        let out = operator(&cluster, 1, None, &["status"]);
        let caught_up = out.status.success()
            && serde_json::from_slice::<Value>(&out.stdout)
                .is_ok_and(|s| s["seal_status"]["type"] == "shamir");
        if caught_up || std::time::Instant::now() > deadline {
            break ok_json(out, "status");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(status["seal_status"]["type"], "shamir");
    assert_eq!(
        status["seal_status"]["sealed"], true,
        "no auto-unseal any more"
    );
    for i in 0..3 {
        cluster.unseal(i).await.unwrap();
    }
    for i in 0..3 {
        assert_eq!(digest_via(&cluster, i).await, before, "node {}", i + 1);
    }
}
