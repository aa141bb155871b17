//! Audit on real clusters: every routed Key Vault request leaves exactly
//! one record in its node's file and in the replicated trail; no secret
//! value or token reaches the audit files, logs or Raft data; `coffer audit
//! verify` finds deletions, edits and reorderings of a copied trail by
//! position; `/metrics` passes `promtool check metrics`; and a full audit
//! disk answers 503 within the write timeout, then resumes, with nothing
//! acknowledged missing.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use coffer::api::akv::operations::ROUTES;
use coffer_client::{Client, Request};
use common::binary;
use jepsen_tests::cluster::{scan_for_bytes, ClusterOptions, LocalCluster};
use serde_json::Value;

/// `[audit]` of every node: files in `dir`, quick shipping, 1 s timeout.
fn audit_env(dir: &Path) -> Vec<(String, String)> {
    vec![
        ("COFFER_AUDIT__DIR".into(), dir.display().to_string()),
        ("COFFER_AUDIT__SHIP_INTERVAL_MS".into(), "200".into()),
        ("COFFER_AUDIT__WRITE_TIMEOUT_MS".into(), "1000".into()),
    ]
}

async fn started(env: Vec<(String, String)>) -> (LocalCluster, Client) {
    let mut cluster = LocalCluster::start(
        &binary(),
        ClusterOptions {
            env,
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
    (cluster, root)
}

/// A root client of node `i` alone that does not retry.
fn single(cluster: &LocalCluster, i: usize) -> Client {
    let mut cfg = cluster.client_config(vec![cluster.nodes[i].url()]).unwrap();
    cfg.max_attempts = 1;
    Client::new(cfg).unwrap()
}

/// Every record of the node files in `dir`, by correlation id.
fn file_records(dir: &Path) -> HashMap<String, Vec<Value>> {
    let mut out: HashMap<String, Vec<Value>> = HashMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let v: Value = serde_json::from_slice(line).unwrap();
            let id = v["correlationId"].as_str().unwrap().to_owned();
            out.entry(id).or_default().push(v);
        }
    }
    out
}

/// The route pattern with its parameters filled in.
fn concrete(pattern: &str) -> String {
    pattern
        .replace("{name}", "walk")
        .replace("{version}", "0123456789abcdef0123456789abcdef")
        .replace("{job}", "job1")
        .replace("{id}", "00000000-0000-0000-0000-000000000001")
        .replace("{scope}", "keys")
        .replace("{vault}", "default")
        .replace("{issuer}", "walk")
}

fn coffer(args: &[&str], cluster: &LocalCluster) -> std::process::Output {
    Command::new(binary())
        .args(args)
        .env("COFFER_ADDR", cluster.nodes[0].url())
        .env("COFFER_CACERT", &cluster.ca_path)
        .env("COFFER_TOKEN", cluster.root_token.as_deref().unwrap())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_leaves_one_record_and_the_trail_keeps_no_secret() {
    let audit_dir = tempfile::tempdir().unwrap();
    let (cluster, root) = started(audit_env(audit_dir.path())).await;

    // Realistic secrets (25 KiB) whose bytes must never reach a disk.
    let values: Vec<String> = (0..3)
        .map(|i| {
            let unit = format!("audit-canary-{i}-{}-", uuid::Uuid::new_v4().simple());
            unit.repeat(25 * 1024 / unit.len())
        })
        .collect();
    let mut sent: Vec<(String, String)> = Vec::new(); // (request id, operation)
    for (i, value) in values.iter().enumerate() {
        let name = format!("canary{i}");
        let req = Request::put(format!("/secrets/{name}?api-version=7.4"))
            .json(&serde_json::json!({ "value": value }))
            .unwrap();
        let resp = root.send(req).await.unwrap();
        assert_eq!(resp.status.as_u16(), 200, "{:?}", resp.body);
        sent.push((resp.request_id.clone(), "SecretSet".into()));
        let resp = root
            .send(Request::get(format!("/secrets/{name}?api-version=7.4")))
            .await
            .unwrap();
        assert_eq!(resp.status.as_u16(), 200);
        sent.push((resp.request_id.clone(), "SecretGet".into()));
    }
    // Walk the operation table: one request per row, each on its own node.
    let mut walked = 0;
    for (n, (method, pattern, op)) in ROUTES.iter().enumerate() {
        let client = single(&cluster, n % 3);
        let mut req = Request::get(format!("{}?api-version=7.4", concrete(pattern)));
        req.method = method.clone();
        if matches!(method.as_str(), "PUT" | "POST" | "PATCH") {
            req.body = Some(Bytes::from_static(b"{}"));
        }
        let resp = client.send(req).await.unwrap();
        sent.push((resp.request_id.clone(), op.name().to_owned()));
        walked += 1;
    }
    assert_eq!(walked, ROUTES.len());

    // The node files: exactly one record per request, under its operation
    // name for every route of the secrets and keys surfaces (the rows of
    // surfaces not served yet are recorded under their matched route).
    let files = file_records(audit_dir.path());
    for (id, op) in &sent {
        let records = files.get(id).map_or(&[][..], Vec::as_slice);
        assert_eq!(records.len(), 1, "request {id} ({op}): {records:?}");
    }
    let mut named = 0;
    for (n, (_, pattern, op)) in ROUTES.iter().enumerate() {
        let (id, _) = &sent[6 + n];
        let name = files[id][0]["operationName"].as_str().unwrap();
        // A row whose route the router does not serve yet is recorded
        // under the route it did match (`PUT /keys/{name}/{version}`) or
        // as `UnknownRoute`; every served row under its own name.
        if name != "UnknownRoute" && !name.contains(' ') {
            assert_eq!(name, op.name(), "{pattern}");
            named += 1;
        }
    }
    assert!(
        named >= 40,
        "only {named} routes recorded by operation name"
    );
    // Coffer's CA routes name their vault in the path: their records are
    // that vault's.
    for (n, (_, pattern, op)) in ROUTES.iter().enumerate() {
        if pattern.starts_with("/v1/pki/") {
            let (id, _) = &sent[6 + n];
            assert_eq!(
                files[id][0]["resourceId"], "/COFFER/VAULTS/DEFAULT",
                "{op}: {}",
                files[id][0]
            );
        }
    }

    // The replicated trail holds every one of them, exactly once.
    let deadline = Instant::now() + Duration::from_secs(30);
    let trail_ids = loop {
        let out = coffer(
            &["audit", "query", "--limit", "100000", "-o", "json"],
            &cluster,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let records: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        let mut ids: HashMap<String, usize> = HashMap::new();
        for r in &records {
            *ids.entry(r["correlationId"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        if sent.iter().all(|(id, _)| ids.contains_key(id)) || Instant::now() > deadline {
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    for (id, op) in &sent {
        assert_eq!(
            trail_ids.get(id),
            Some(&1),
            "request {id} ({op}) in the trail"
        );
    }
    let out = coffer(
        &[
            "audit",
            "query",
            "--operation",
            "SecretGet",
            "--principal",
            "root",
            "-o",
            "json",
        ],
        &cluster,
    );
    let gets: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(gets.len() >= 3 && gets.iter().all(|r| r["operationName"] == "SecretGet"));
    assert!(gets[0]["properties"]["tokenHmac"]
        .as_str()
        .unwrap()
        .starts_with("hmac-sha256:"));

    // The cluster trail verifies.
    let out = coffer(&["audit", "verify", "-o", "json"], &cluster);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // /metrics passes promtool and counts what was asked.
    let metrics = root.send(Request::get("/metrics")).await.unwrap();
    assert_eq!(metrics.status.as_u16(), 200);
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    assert!(
        text.contains("coffer_requests_total{operation=\"SecretGet\""),
        "{text}"
    );
    assert!(text.contains("coffer_raft_term") && text.contains("coffer_audit_failures_total"));
    // The writes above went through this node's Raft log: appends and
    // group commits were timed, and one commit covers one or more appends.
    let count = |name: &str| common::sample(&text, name).unwrap_or_else(|| panic!("{name}"));
    let appends = count("coffer_raft_log_append_duration_seconds_count");
    let fsyncs = count("coffer_raft_log_fsync_duration_seconds_count");
    assert!(
        appends > 0.0 && fsyncs > 0.0 && fsyncs <= appends,
        "appends {appends}, fsyncs {fsyncs}"
    );
    assert!(count("coffer_raft_log_fsync_duration_seconds_sum") > 0.0);
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus)");
    use std::io::Write as _;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // No secret value and no token in audit files, logs or Raft data.
    let token = cluster.root_token.clone().unwrap();
    let mut needles: Vec<&[u8]> = values.iter().map(|v| &v.as_bytes()[..64]).collect();
    needles.push(token.as_bytes());
    let audit_scan = scan_for_bytes(audit_dir.path(), &needles).unwrap();
    assert!(
        audit_scan.files >= 3 && audit_scan.hits.is_empty(),
        "{audit_scan:?}"
    );
    let data_scan = cluster.scan_data_dirs(&needles).unwrap();
    assert!(
        data_scan.files > 3 && data_scan.hits.is_empty(),
        "{data_scan:?}"
    );
    for i in 0..3 {
        let log = cluster.log(i);
        assert!(needles
            .iter()
            .all(|n| !log.contains(std::str::from_utf8(n).unwrap())));
    }

    // Tamper evidence on a copy of node 1's file.
    let original = std::fs::read(audit_dir.path().join("audit-node1.jsonl")).unwrap();
    let lines: Vec<&[u8]> = original
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert!(lines.len() > 10);
    let copy = tempfile::tempdir().unwrap();
    let verify_copy = |lines: Vec<Vec<u8>>| -> (bool, Value) {
        let path: PathBuf = copy.path().join("trail.jsonl");
        std::fs::write(&path, lines.join(&b'\n')).unwrap();
        let out = coffer(
            &[
                "audit",
                "verify",
                "--file",
                path.to_str().unwrap(),
                "-o",
                "json",
            ],
            &cluster,
        );
        (
            out.status.success(),
            serde_json::from_slice(&out.stdout).unwrap(),
        )
    };
    let owned: Vec<Vec<u8>> = lines.iter().map(|l| l.to_vec()).collect();
    let (ok, v) = verify_copy(owned.clone());
    assert!(ok && v["problems"].as_array().unwrap().is_empty(), "{v}");
    let mut deleted = owned.clone();
    deleted.remove(2);
    let (ok, v) = verify_copy(deleted);
    assert!(!ok);
    assert_eq!(v["problems"][0]["kind"], "gap");
    assert_eq!(v["problems"][0]["position"], 3);
    let mut edited = owned.clone();
    edited[4] = String::from_utf8(edited[4].clone())
        .unwrap()
        .replacen("\"durationMs\":\"", "\"durationMs\":\"9", 1)
        .into_bytes();
    let (ok, v) = verify_copy(edited);
    assert!(!ok);
    assert_eq!(v["problems"][0]["kind"], "edited");
    assert_eq!(v["problems"][0]["position"], 5);
    let mut swapped = owned;
    swapped.swap(6, 7);
    let (ok, v) = verify_copy(swapped);
    assert!(!ok);
    assert_eq!(v["problems"][0]["kind"], "reordered");
    assert_eq!(v["problems"][0]["position"], 7);
    assert_eq!(v["problems"][1]["position"], 8);
}

/// Unmounts the tmpfs when the test ends, however it ends.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Fills the file system at `dir` until it refuses more.
fn fill(dir: &Path) {
    use std::io::Write as _;
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).and_then(|()| f.sync_data()).is_ok() {}
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_audit_disk_answers_503_within_the_timeout_and_resumes() {
    let mnt = tempfile::tempdir().unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(mnt.path())
        .status()
        .expect("mount (the test runs as root)");
    assert!(status.success(), "mounting a tmpfs needs root");
    let _tmpfs = Tmpfs(mnt.path().to_path_buf());
    let (cluster, _root) = started(audit_env(mnt.path())).await;
    let client = single(&cluster, 0);
    let mut acknowledged = Vec::new();
    let set = |i: usize| {
        Request::put(format!("/secrets/full{i}?api-version=7.4"))
            .json(&serde_json::json!({ "value": "x".repeat(4096) }))
            .unwrap()
    };
    let resp = client.send(set(0)).await.unwrap();
    assert_eq!(resp.status.as_u16(), 200);
    acknowledged.push(resp.request_id.clone());

    fill(mnt.path());
    // The page the file ends in may take a record or two more; then 503.
    let mut refused = 0;
    for i in 1..20 {
        let started = Instant::now();
        let resp = client.send(set(i)).await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "took {:?}",
            started.elapsed()
        );
        match resp.status.as_u16() {
            200 => acknowledged.push(resp.request_id.clone()),
            503 => {
                let body: Value = resp.json().unwrap();
                assert_eq!(body["error"]["code"], "ServiceUnavailable", "{body}");
                assert!(resp.headers.contains_key("retry-after"));
                refused += 1;
                if refused == 3 {
                    break;
                }
            }
            other => panic!("unexpected {other}: {:?}", resp.body),
        }
    }
    assert_eq!(refused, 3, "a full audit disk must refuse requests");

    std::fs::remove_file(mnt.path().join("filler")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let resp = client.send(set(100)).await.unwrap();
        if resp.status.as_u16() == 200 {
            acknowledged.push(resp.request_id.clone());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {} after space returned",
            resp.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let files = file_records(mnt.path());
    for id in &acknowledged {
        assert_eq!(
            files.get(id).map(Vec::len),
            Some(1),
            "acknowledged {id} missing"
        );
    }
    let out = Command::new(binary())
        .args(["audit", "verify", "--file"])
        .arg(mnt.path().join("audit-node1.jsonl"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
