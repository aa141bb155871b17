//! Real `coffer` processes on loopback: a 3-node cluster with real TLS,
//! initialised, unsealed, written through followers, its leader killed.

use std::path::PathBuf;
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
    let scan = cluster.scan_data_dirs(&[value.as_bytes()]).unwrap();
    assert!(scan.hits.is_empty(), "plaintext found in {:?}", scan.hits);
    assert!(
        scan.files >= 3,
        "expected store files in every data dir, scanned {}",
        scan.files
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_far_behind_catches_up_from_a_snapshot() {
    let options = ClusterOptions {
        raft_snapshot_logs: Some(50),
        ..ClusterOptions::default()
    };
    let mut cluster = LocalCluster::start(&binary(), options).unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    cluster.init(leader, 3, 2).await.unwrap();
    let (lagging, _) = followers(leader);
    cluster.kill(lagging);

    let client = cluster.client().unwrap();
    for i in 0..300 {
        client
            .secrets()
            .set(
                &format!("bulk-{i}"),
                &format!("value-{i}"),
                &SetOptions::default(),
            )
            .await
            .unwrap();
    }
    let leader_log = cluster
        .node_client(leader)
        .unwrap()
        .sys()
        .health()
        .await
        .unwrap();
    let leader_snapshot = leader_log.body.snapshot_index.unwrap();
    assert!(
        leader_snapshot > 200,
        "leader snapshot at {leader_snapshot}"
    );

    cluster.restart(lagging).unwrap();
    cluster.unseal(lagging).await.unwrap();
    let node = cluster.node_client(lagging).unwrap();
    let read = node.secrets().get("bulk-299", None).await.unwrap();
    assert_eq!(read.value.as_deref(), Some("value-299"));
    let read = node.secrets().get("bulk-3", None).await.unwrap();
    assert_eq!(read.value.as_deref(), Some("value-3"));
    // The log it needed was purged: it can only have caught up by
    // installing the leader's snapshot.
    let health = node.sys().health().await.unwrap();
    assert!(
        health.body.snapshot_index.unwrap() >= 50,
        "restarted node has no snapshot: {health:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn vaults_are_chosen_by_host_and_isolated() {
    let options = ClusterOptions {
        vault_domain: Some("vault.test".into()),
        ..ClusterOptions::default()
    };
    let mut cluster = LocalCluster::start(&binary(), options).unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    cluster.init(leader, 1, 1).await.unwrap();
    let client = cluster.client().unwrap();
    client.sys().create_vault("payments").await.unwrap();
    let names: Vec<String> = client
        .sys()
        .list_vaults()
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert!(names.contains(&"payments".to_string()) && names.contains(&"default".to_string()));

    let port = cluster.nodes[0]
        .api_addr
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    // A Host header naming the vault needs HTTP/1.1: over HTTP/2 the URL's
    // authority (the IP address here) is what the server sees.
    let endpoints = cluster.nodes.iter().map(|n| n.url()).collect();
    let http1 = coffer_client::Client::new(coffer_client::ClientConfig {
        http2: false,
        ..cluster.client_config(endpoints).unwrap()
    })
    .unwrap();
    let payments = http1
        .secrets()
        .with_host(format!("payments.vault.test:{port}"));
    payments
        .set("api-key", "in-payments", &SetOptions::default())
        .await
        .unwrap();
    let got = payments.get("api-key", None).await.unwrap();
    assert_eq!(got.value.as_deref(), Some("in-payments"));
    let id = got.id.as_deref().unwrap();
    assert!(id.starts_with("https://payments.vault.test:"), "{id}");

    let err = client.secrets().get("api-key", None).await.unwrap_err();
    assert_eq!(
        err.status(),
        Some(404),
        "default vault must not see it: {err}"
    );
    let unknown = http1
        .secrets()
        .with_host(format!("nosuch.vault.test:{port}"));
    let err = unknown.get("api-key", None).await.unwrap_err();
    assert_eq!(err.status(), Some(404));

    client.sys().delete_vault("payments").await.unwrap();
    let err = payments.get("api-key", None).await.unwrap_err();
    assert_eq!(err.status(), Some(404));
}

#[tokio::test(flavor = "multi_thread")]
async fn keyring_rotation_replicates_and_old_values_stay_readable() {
    let cluster = started_cluster().await;
    let client = cluster.client().unwrap();
    client
        .secrets()
        .set("before-rotation", "old-term", &SetOptions::default())
        .await
        .unwrap();
    let response = client
        .send(coffer_client::Request::post("/v1/sys/rotate"))
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let term: serde_json::Value = response.json().unwrap();
    assert_eq!(term["term"], 2);
    client
        .secrets()
        .set("after-rotation", "new-term", &SetOptions::default())
        .await
        .unwrap();
    // Every node meets the new term on its first read and loads it.
    for i in 0..3 {
        let node = cluster.node_client(i).unwrap();
        let new = node.secrets().get("after-rotation", None).await.unwrap();
        assert_eq!(new.value.as_deref(), Some("new-term"));
        let old = node.secrets().get("before-rotation", None).await.unwrap();
        assert_eq!(old.value.as_deref(), Some("old-term"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unauthenticated_requests_get_the_key_vault_challenge() {
    let cluster = started_cluster().await;
    let config = coffer_client::ClientConfig {
        token: None,
        ..cluster.client_config(vec![cluster.nodes[0].url()]).unwrap()
    };
    let anonymous = coffer_client::Client::new(config).unwrap();
    let response = anonymous
        .send(coffer_client::Request::get(
            "/secrets/x?api-version=2026-04-01",
        ))
        .await
        .unwrap();
    assert_eq!(response.status.as_u16(), 401);
    let challenge = response.headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("Bearer authorization=\"https://"),
        "{challenge}"
    );
    assert!(challenge.contains("resource=\""), "{challenge}");
    let body: serde_json::Value = response.json().unwrap();
    assert_eq!(body["error"]["code"], "Unauthorized");

    let config = coffer_client::ClientConfig {
        token: Some("cft.not-a-real-token".into()),
        ..cluster.client_config(vec![cluster.nodes[0].url()]).unwrap()
    };
    let forged = coffer_client::Client::new(config).unwrap();
    let err = forged.secrets().get("x", None).await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    let err = forged.sys().peers().await.unwrap_err();
    assert_eq!(err.status(), Some(401));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_through_the_real_server_is_rejected_and_changes_nothing() {
    let cluster = started_cluster().await;
    let client = cluster.client().unwrap();
    let cases: [(&str, &str, &str); 4] = [
        (
            "PUT",
            "/secrets/bad_name!?api-version=2026-04-01",
            r#"{"value":"x"}"#,
        ),
        ("PUT", "/secrets/good", r#"{"value":"x"}"#),
        (
            "PUT",
            "/secrets/good?api-version=1999-01-01",
            r#"{"value":"x"}"#,
        ),
        (
            "PUT",
            "/secrets/good?api-version=2026-04-01",
            r#"{"value": 12"#,
        ),
    ];
    for (method, path, body) in cases {
        let request = coffer_client::Request::new(method.parse().unwrap(), path).header(
            "content-type".parse().unwrap(),
            "application/json".parse().unwrap(),
        );
        let request = coffer_client::Request {
            body: Some(bytes::Bytes::from(body.to_string())),
            ..request
        };
        let response = client.send(request).await.unwrap();
        assert_eq!(response.status.as_u16(), 400, "{method} {path}");
        let body: serde_json::Value = response.json().unwrap();
        assert_eq!(body["error"]["code"], "BadParameter", "{method} {path}");
    }
    let big = "x".repeat(25 * 1024 + 1);
    let err = client
        .secrets()
        .set("good", &big, &SetOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
    let err = client.secrets().get("good", None).await.unwrap_err();
    assert_eq!(
        err.status(),
        Some(404),
        "no bad request may have created it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_drives_a_cluster() {
    let cluster = started_cluster().await;
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.url()).collect();
    let run = |args: &[&str]| {
        let output = std::process::Command::new(binary())
            .args(args)
            .env("COFFER_ADDR", addrs.join(","))
            .env("COFFER_TOKEN", cluster.root_token.clone().unwrap())
            .env("COFFER_CACERT", &cluster.ca_path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "coffer {args:?} failed: {stdout}{stderr}"
        );
        stdout
    };
    run(&["secret", "set", "cli-secret", "--value", "from-the-cli"]);
    let got = run(&["secret", "get", "cli-secret", "--field", "value"]);
    assert_eq!(got.trim(), "from-the-cli");
    let peers = run(&["operator", "raft", "list-peers", "-o", "json"]);
    let peers: serde_json::Value = serde_json::from_str(&peers).unwrap();
    assert_eq!(peers["peers"].as_array().unwrap().len(), 3);
    let status = run(&["operator", "status", "-o", "json"]);
    assert!(status.contains("\"sealed\""), "{status}");
    run(&["secret", "delete", "cli-secret"]);
    run(&["secret", "recover", "cli-secret"]);
    let versions = run(&["secret", "versions", "cli-secret", "-o", "json"]);
    assert!(versions.contains("cli-secret"), "{versions}");
}
