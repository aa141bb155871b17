//! Helpers shared by the fault tests on real clusters (`reliability`,
//! `integrity`): realistic values, per-node probes, waiting for catch-up.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_client::secrets::SetOptions;
use coffer_client::Client;
use jepsen_tests::cluster::LocalCluster;

/// The `coffer` binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_coffer"))
}

/// A value of the size of a PEM certificate chain (20 KB), unique to
/// `name` so that a wrong value is detected; 200 bytes for names starting
/// with `s-` (tests that need many entries rather than large ones).
pub fn value_for(name: &str) -> String {
    let len = if name.starts_with("s-") { 200 } else { 20_000 };
    let mut v = format!("{name}|").repeat(len / (name.len() + 1) + 1);
    v.truncate(len);
    v
}

/// Writes `names` with `parallel` concurrent writers; every write must succeed.
pub async fn write_all(client: &Client, names: Vec<String>, parallel: usize) {
    let client = Arc::new(client.clone());
    let names = Arc::new(tokio::sync::Mutex::new(names));
    let mut tasks = Vec::new();
    for _ in 0..parallel {
        let client = client.clone();
        let names = names.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(name) = names.lock().await.pop() else {
                    return;
                };
                client
                    .secrets()
                    .set(&name, &value_for(&name), &SetOptions::default())
                    .await
                    .unwrap_or_else(|e| panic!("writing {name}: {e}"));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// A client for node `i` alone, with a short per-attempt deadline.
pub fn quick_client(cluster: &LocalCluster, i: usize) -> Client {
    let mut cfg = cluster.client_config(vec![cluster.nodes[i].url()]).unwrap();
    cfg.timeout = Duration::from_secs(3);
    cfg.max_attempts = 1;
    Client::new(cfg).unwrap()
}

/// Waits until node `i` has applied at least `index` (and is unsealed).
pub async fn wait_applied(cluster: &LocalCluster, i: usize, index: u64, within: Duration) {
    let deadline = Instant::now() + within;
    let client = quick_client(cluster, i);
    loop {
        if let Ok(h) = client.sys().health().await {
            if h.body.applied_index.unwrap_or(0) >= index && !h.body.sealed {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "node {} did not reach index {index} within {within:?}; logs in {}",
            i + 1,
            cluster.dir().display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The term and applied index node `leader` reports.
pub async fn leader_state(cluster: &LocalCluster, leader: usize) -> (u64, u64) {
    let client = quick_client(cluster, leader);
    let h = client.sys().health().await.unwrap();
    (h.body.term.unwrap_or(0), h.body.applied_index.unwrap_or(0))
}

/// Asserts that node `leader` still leads in `term` (no election happened),
/// then waits until node `follower` caught up with it.
pub async fn assert_leader_kept(
    cluster: &LocalCluster,
    leader: usize,
    term: u64,
    follower: usize,
    why: &str,
) {
    let now_leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .unwrap();
    let (term_after, applied) = leader_state(cluster, now_leader).await;
    assert_eq!(now_leader, leader, "leadership moved: {why}");
    assert_eq!(term_after, term, "the term changed: {why}");
    wait_applied(cluster, follower, applied, Duration::from_secs(30)).await;
}

/// Every value of `names` read through node `i` alone is exactly what was
/// written (retrying while the node catches up and answers 503).
pub async fn every_value_served_by(cluster: &LocalCluster, i: usize, names: &[String]) {
    let client = quick_client(cluster, i);
    let deadline = Instant::now() + Duration::from_secs(60);
    for name in names {
        loop {
            match client.secrets().get(name, None).await {
                Ok(got) => {
                    assert_eq!(
                        got.value.as_deref(),
                        Some(value_for(name).as_str()),
                        "{name}"
                    );
                    break;
                }
                Err(e) if Instant::now() < deadline && e.status() != Some(404) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("{name} through node {}: {e}", i + 1),
            }
        }
    }
}

/// Waits until node `i`'s process ends by itself.
pub async fn wait_exit(
    cluster: &mut LocalCluster,
    i: usize,
    within: Duration,
) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = cluster.exited(i) {
            return status;
        }
        assert!(Instant::now() < deadline, "node {} did not exit", i + 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Restarts node `i` on its data dir, unseals it and waits until it has
/// applied everything the leader had applied when it came back.
pub async fn rejoin(cluster: &mut LocalCluster, i: usize, within: Duration) {
    cluster.restart(i).unwrap();
    cluster.unseal(i).await.unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .unwrap();
    let (_, applied) = leader_state(cluster, leader).await;
    wait_applied(cluster, i, applied, within).await;
}

/// Writes `names` through the failover client, then returns the index of
/// a follower of the current leader (and the leader's).
pub async fn writes_then_a_follower(cluster: &LocalCluster, names: &[String]) -> (usize, usize) {
    let client = cluster.client().unwrap();
    write_all(&client, names.to_vec(), 4).await;
    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .unwrap();
    (leader, (leader + 1) % cluster.nodes.len())
}

/// Runs `coffer operator ARGS -o json` against node `i`, with `token` as
/// COFFER_TOKEN when given (the CLI as an operator or custodian runs it).
pub fn operator_cli(
    cluster: &LocalCluster,
    i: usize,
    token: Option<&str>,
    args: &[&str],
) -> std::process::Output {
    let mut cmd = std::process::Command::new(binary());
    cmd.arg("operator")
        .args(args)
        .args(["-o", "json"])
        .env("COFFER_ADDR", cluster.nodes[i].url())
        .env("COFFER_CACERT", &cluster.ca_path)
        .env_remove("COFFER_TOKEN");
    if let Some(t) = token {
        cmd.env("COFFER_TOKEN", t);
    }
    cmd.output().expect("running the coffer binary")
}

/// The JSON a successful CLI run printed; fails the test with its stderr otherwise.
pub fn ok_json(out: std::process::Output, what: &str) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// An access token of the cluster's issuer for an application: the
/// `client_credentials` grant at `POST /{tenant}/oauth2/v2.0/token`.
pub async fn app_token(client: &Client, tenant: &str, client_id: &str, secret: &str) -> String {
    let form: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", "https://vault.azure.net/.default"),
        ])
        .finish();
    let mut req = coffer_client::Request::post(format!("/{tenant}/oauth2/v2.0/token")).header(
        "content-type".parse().unwrap(),
        "application/x-www-form-urlencoded".parse().unwrap(),
    );
    req.body = Some(form.into());
    let body: serde_json::Value = client.send(req).await.unwrap().json().unwrap();
    body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access token: {body}"))
        .to_owned()
}

/// Node `i`'s `/metrics` text (served on the API port by default).
pub async fn scrape(cluster: &LocalCluster, i: usize) -> String {
    let resp = quick_client(cluster, i)
        .send(coffer_client::Request::get("/metrics"))
        .await
        .unwrap();
    assert_eq!(resp.status.as_u16(), 200, "scraping node {i}");
    String::from_utf8(resp.body.to_vec()).unwrap()
}

/// The value of one series in a `/metrics` text: `series` is the name with
/// its labels as rendered (`coffer_x{a="b"}`), or the bare name.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}
