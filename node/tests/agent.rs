//! `coffer agent` in front of a real 3-node cluster: unchanged Azure SDK
//! applications (Python `SecretClient`, SDK retries off) pointed only at
//! the agent run set/get loops through a leader kill and a rolling restart
//! of all three nodes — 0 failed operations, the extra latency reported —
//! one bringing its own token, one with no credential at all
//! (`ManagedIdentityCredential()` served by the agent). Local callers
//! without their application key are refused, and the agent's log holds no
//! token, key or value.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use coffer_client::{Client, ClientConfig, Request};
use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION};
use jepsen_tests::cluster::{ClusterOptions, LocalCluster};
use serde_json::{json, Value};

const SECRETS_OFFICER: &str = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7";
const API: &str = "api-version=7.4";

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A JSON request with the root token; panics unless the status is `want`.
async fn admin(client: &Client, req: Request, want: u16) -> Value {
    let what = format!("{} {}", req.method, req.path);
    let resp = client.send(req).await.unwrap();
    assert_eq!(
        resp.status.as_u16(),
        want,
        "{what}: {}",
        String::from_utf8_lossy(&resp.body)
    );
    if resp.body.is_empty() {
        Value::Null
    } else {
        resp.json().unwrap()
    }
}

/// The running agent and what it printed.
struct Agent {
    child: Child,
    lines: HashMap<String, String>,
    log: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_agent(binary: &Path, config: &Path, log: PathBuf) -> Agent {
    let mut child = Command::new(binary)
        .args(["agent", "--config"])
        .arg(config)
        .env("COFFER_LOG", "debug,hyper=info,h2=info,rustls=info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = HashMap::new();
    let mut reader = BufReader::new(stdout);
    while !["AGENT_URL", "AGENT_CA", "IDENTITY_ENDPOINT"]
        .iter()
        .all(|k| lines.contains_key(*k))
    {
        let mut line = String::new();
        let n = reader.read_line(&mut line).unwrap();
        assert!(
            n > 0,
            "the agent exited: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        if let Some((k, v)) = line.trim().split_once('=') {
            lines.insert(k.to_owned(), v.to_owned());
        }
    }
    Agent { child, lines, log }
}

/// One operation as the Python loop recorded it.
#[derive(serde::Deserialize)]
struct Op {
    t: f64,
    op: String,
    ms: f64,
    ok: bool,
    err: String,
}

impl Op {
    fn new(t: f64, op: &str, started: Instant, outcome: Result<(), String>) -> Self {
        Self {
            t,
            op: op.to_owned(),
            ms: started.elapsed().as_secs_f64() * 1000.0,
            ok: outcome.is_ok(),
            err: outcome.err().unwrap_or_default(),
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `n ops, p50/p99/max ms` of the operations in [from, to).
fn stats(ops: &[Op], from: f64, to: f64) -> (usize, f64, f64, f64) {
    let mut ms: Vec<f64> = ops
        .iter()
        .filter(|o| o.t >= from && o.t < to)
        .map(|o| o.ms)
        .collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    let max = ms.last().copied().unwrap_or(f64::NAN);
    (ms.len(), percentile(&ms, 0.5), percentile(&ms, 0.99), max)
}

#[tokio::test(flavor = "multi_thread")]
async fn unchanged_sdk_apps_survive_a_leader_kill_and_a_rolling_restart_through_the_agent() {
    let python = std::env::var("COFFER_PYTHON").expect(
        "COFFER_PYTHON must name a Python with the Azure SDK installed; run ./scripts/test.sh",
    );
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_coffer"));
    let mut cluster = LocalCluster::start(&binary, ClusterOptions::default()).unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    cluster.init(leader, 3, 2).await.unwrap();
    let root = cluster.client().unwrap();
    let root_token = cluster.root_token.clone().unwrap();

    // The host's identity: an application with a client secret, allowed
    // to read and write secrets.
    let tenant = admin(&root, Request::get("/v1/sys/identity/tenant"), 200).await;
    let tenant = tenant["id"].as_str().unwrap().to_owned();
    let app = admin(
        &root,
        Request::post("/v1/sys/identity/apps")
            .json(&json!({"name": "agent-host"}))
            .unwrap(),
        201,
    )
    .await;
    let client_id = app["app"]["client_id"].as_str().unwrap().to_owned();
    let object_id = app["object_id"].as_str().unwrap().to_owned();
    let secret = admin(
        &root,
        Request::post("/v1/sys/identity/apps/agent-host/secrets")
            .json(&json!({}))
            .unwrap(),
        201,
    )
    .await;
    let client_secret = secret["secret"].as_str().unwrap().to_owned();
    admin(
        &root,
        Request::put(format!(
            "/providers/Microsoft.Authorization/roleAssignments/{}?{API}",
            uuid::Uuid::new_v4()
        ))
        .json(
            &json!({"properties": {"roleDefinitionId": SECRETS_OFFICER, "principalId": object_id}}),
        )
        .unwrap(),
        201,
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("client-secret"), &client_secret).unwrap();
    let nodes: Vec<String> = cluster.nodes.iter().map(|n| n.url()).collect();
    let config = format!(
        r#"
[agent]
nodes = {nodes:?}
ca_cert = {ca:?}
listen = "127.0.0.1:0"
msi_listen = "127.0.0.1:0"
state_dir = {state:?}
attempt_timeout_secs = 3
request_deadline_secs = 10

[agent.identity]
tenant = "{tenant}"
client_id = "{client_id}"
client_secret_file = {secret:?}

[[agent.apps]]
name = "sdk-token"
key_file = {k1:?}

[[agent.apps]]
name = "sdk-msi"
key_file = {k2:?}

[[agent.apps]]
name = "no-credential"
key_file = {k3:?}
attach_token = true
"#,
        ca = cluster.ca_path.display().to_string(),
        state = d.join("state").display().to_string(),
        secret = d.join("client-secret").display().to_string(),
        k1 = d.join("apps/sdk-token.key").display().to_string(),
        k2 = d.join("apps/sdk-msi.key").display().to_string(),
        k3 = d.join("apps/no-credential.key").display().to_string(),
    );
    std::fs::write(d.join("agent.toml"), config).unwrap();
    let agent = start_agent(&binary, &d.join("agent.toml"), d.join("agent.log"));
    let agent_url = agent.lines["AGENT_URL"].clone();
    let agent_ca = PathBuf::from(&agent.lines["AGENT_CA"]);
    let key = |name: &str| {
        std::fs::read_to_string(d.join(format!("apps/{name}.key")))
            .unwrap()
            .trim()
            .to_owned()
    };
    let (token_key, msi_key, bare_key) = (key("sdk-token"), key("sdk-msi"), key("no-credential"));

    // A plain HTTPS client (no token of its own) against the agent.
    let local = Client::new(ClientConfig {
        endpoints: vec![agent_url.clone()],
        ca_pem: Some(std::fs::read(&agent_ca).unwrap()),
        max_attempts: 1,
        // The agent's deadline (30 s) governs, not this client's.
        timeout: Duration::from_secs(40),
        ..ClientConfig::default()
    })
    .unwrap();
    let with_key = |req: Request, k: &str| {
        req.header(
            HeaderName::from_static("x-coffer-agent-key"),
            HeaderValue::from_str(k).unwrap(),
        )
    };
    // No key, or a wrong one: refused by the agent, whatever the token.
    for req in [
        Request::get(format!("/secrets/probe?{API}")),
        with_key(
            Request::get(format!("/secrets/probe?{API}")),
            "not-the-key-of-any-app",
        ),
        Request::get(format!("/secrets/probe?{API}")).header(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {root_token}")).unwrap(),
        ),
    ] {
        let resp = local.send(req).await.unwrap();
        assert_eq!(resp.status.as_u16(), 403);
        let body: Value = resp.json().unwrap();
        assert_eq!(body["error"]["innererror"]["code"], "AgentCallerUnknown");
    }
    // An SDK app's unauthenticated probe gets the node's 401 challenge,
    // naming the agent's address (the Host the app used).
    let resp = local
        .send(with_key(
            Request::get(format!("/secrets/probe?{API}")),
            &token_key,
        ))
        .await
        .unwrap();
    assert_eq!(resp.status.as_u16(), 401);
    let challenge = resp.headers["www-authenticate"].to_str().unwrap();
    let agent_host = agent_url.trim_start_matches("https://");
    assert!(
        challenge.contains(&format!("authorization=\"https://{agent_host}/")),
        "{challenge}"
    );
    // Auto-auth: an app with no credential at all writes and reads.
    let mut put = with_key(Request::put(format!("/secrets/auto-auth?{API}")), &bare_key);
    put.body = Some(Bytes::from_static(
        br#"{"value":"written-with-the-agents-token"}"#,
    ));
    let resp = local.send(put).await.unwrap();
    assert_eq!(
        resp.status.as_u16(),
        200,
        "{}",
        String::from_utf8_lossy(&resp.body)
    );
    let body: Value = resp.json().unwrap();
    assert!(
        body["id"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{agent_url}/secrets/auto-auth/")),
        "ids name the vault URL the app used: {body}"
    );
    let resp = local
        .send(with_key(
            Request::get(format!("/secrets/auto-auth?{API}")),
            &bare_key,
        ))
        .await
        .unwrap();
    let body: Value = resp.json().unwrap();
    assert_eq!(body["value"], "written-with-the-agents-token");

    // The two SDK applications.
    let tests = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    let stop = d.join("stop");
    let spawn_loop = |mode: &str, app_key: &str| {
        let mut cmd = Command::new(&python);
        cmd.arg(tests.join("agent_loop.py"))
            .env("AGENT_URL", &agent_url)
            .env("AGENT_CA", &agent_ca)
            .env("AGENT_KEY", app_key)
            .env("MODE", mode)
            .env("PREFIX", format!("loop-{mode}"))
            .env("STOP_FILE", &stop)
            .env("OUT_FILE", d.join(format!("{mode}.jsonl")))
            .env_remove("AZURE_CLIENT_ID")
            .env_remove("AZURE_TENANT_ID")
            .env_remove("AZURE_CLIENT_SECRET")
            .env_remove("REQUESTS_CA_BUNDLE");
        if mode == "token" {
            cmd.env("COFFER_TOKEN", &root_token);
        } else {
            cmd.env("IDENTITY_ENDPOINT", &agent.lines["IDENTITY_ENDPOINT"])
                .env("IDENTITY_HEADER", app_key)
                .env_remove("COFFER_TOKEN");
        }
        cmd.spawn().unwrap()
    };
    let mut loops = vec![spawn_loop("token", &token_key), spawn_loop("msi", &msi_key)];
    // A third application with no credential and no SDK: plain HTTPS
    // requests, no retry of its own, the agent's token attached.
    let stop_rust = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rust_done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let rust_loop = {
        let stop = stop_rust.clone();
        let done = rust_done.clone();
        let local = local.clone();
        let bare_key = bare_key.clone();
        tokio::spawn(async move {
            let mut ops = Vec::new();
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let path = format!("/secrets/loop-rust-{}?{API}", i % 4);
                let value = format!("rust-{i}-{}", uuid::Uuid::new_v4().simple());
                let key = HeaderValue::from_str(&bare_key).unwrap();
                let name = HeaderName::from_static("x-coffer-agent-key");
                let mut put = Request::put(path.clone()).header(name.clone(), key.clone());
                put.body = Some(Bytes::from(json!({ "value": value }).to_string()));
                let (t, started) = (unix_now(), Instant::now());
                let outcome = match local.send(put).await {
                    Ok(r) if r.status.is_success() => Ok(()),
                    Ok(r) => Err(format!("HTTP {}", r.status)),
                    Err(e) => Err(e.to_string()),
                };
                let ok = outcome.is_ok();
                ops.push(Op::new(t, "set", started, outcome));
                if !ok {
                    continue;
                }
                let (t, started) = (unix_now(), Instant::now());
                let outcome = match local.send(Request::get(path).header(name, key)).await {
                    Ok(r) if r.status.is_success() => {
                        let body: Value = r.json().unwrap_or_default();
                        if body["value"] == value.as_str() {
                            Ok(())
                        } else {
                            Err("read an older value than the one just written".to_owned())
                        }
                    }
                    Ok(r) => Err(format!("HTTP {}", r.status)),
                    Err(e) => Err(e.to_string()),
                };
                ops.push(Op::new(t, "get", started, outcome));
                done.fetch_add(2, std::sync::atomic::Ordering::Relaxed);
            }
            ops
        })
    };

    // The faults start once every application has completed some
    // operations (on a loaded machine the Python interpreters take seconds
    // to start), and at most after a minute, which the count below reports.
    let warmed = Instant::now();
    loop {
        let python_ops = |mode: &str| {
            std::fs::read_to_string(d.join(format!("{mode}.jsonl")))
                .map(|t| t.lines().count())
                .unwrap_or(0)
        };
        let ready = rust_done.load(std::sync::atomic::Ordering::Relaxed) >= 10
            && python_ops("token") >= 10
            && python_ops("msi") >= 10;
        if (ready && warmed.elapsed() >= Duration::from_secs(5))
            || warmed.elapsed() > Duration::from_secs(60)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let fault_start = unix_now();
    // 1. Kill the leader; bring it back once another node leads.
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    cluster.kill(leader);
    println!("killed the leader (node {})", leader + 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let new_leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    assert_ne!(new_leader, leader);
    // Down longer than the agent's request deadline (10 s): only failing
    // over to the other nodes keeps the applications going.
    tokio::time::sleep(Duration::from_secs(12)).await;
    cluster.restart(leader).unwrap();
    cluster.unseal(leader).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // 2. Rolling restart: every node stopped, restarted and unsealed in turn.
    for i in 0..cluster.nodes.len() {
        let started = Instant::now();
        cluster.stop(i).unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        cluster.restart(i).unwrap();
        cluster.unseal(i).await.unwrap();
        println!("restarted node {} in {:?}", i + 1, started.elapsed());
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let fault_end = unix_now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    std::fs::write(&stop, b"").unwrap();
    stop_rust.store(true, std::sync::atomic::Ordering::Relaxed);
    let rust_ops = rust_loop.await.unwrap();
    for child in &mut loops {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "the SDK loop failed: {status}");
                break;
            }
            assert!(Instant::now() < deadline, "the SDK loop did not stop");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    let mut failed = Vec::new();
    let mut runs = vec![("rust, no credential".to_owned(), rust_ops)];
    for mode in ["token", "msi"] {
        let text = std::fs::read_to_string(d.join(format!("{mode}.jsonl"))).unwrap();
        let ops: Vec<Op> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        runs.push((format!("python SDK, {mode}"), ops));
    }
    for (mode, ops) in runs {
        let bad: Vec<&Op> = ops.iter().filter(|o| !o.ok).collect();
        let before = stats(&ops, 0.0, fault_start);
        let during = stats(&ops, fault_start, fault_end);
        let after = stats(&ops, fault_end, f64::MAX);
        println!(
            "through the agent, {mode}: {} ops, {} failed ({} sets, {} gets)\n  \
             before faults: {} ops p50 {:.1} ms p99 {:.1} ms max {:.1} ms\n  \
             during faults: {} ops p50 {:.1} ms p99 {:.1} ms max {:.1} ms (extra at p99: {:.1} ms, at max: {:.1} ms)\n  \
             after faults:  {} ops p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
            ops.len(),
            bad.len(),
            ops.iter().filter(|o| o.op == "set").count(),
            ops.iter().filter(|o| o.op == "get").count(),
            before.0, before.1, before.2, before.3,
            during.0, during.1, during.2, during.3,
            during.2 - before.1, during.3 - before.1,
            after.0, after.1, after.2, after.3,
        );
        assert!(
            before.0 >= 10,
            "{mode}: too few operations before the faults"
        );
        assert!(
            during.0 >= 50,
            "{mode}: too few operations during the faults"
        );
        assert!(after.0 >= 5, "{mode}: too few operations after the faults");
        failed.extend(
            bad.iter()
                .map(|o| format!("{mode} {} at {:.3}: {}", o.op, o.t, o.err)),
        );
    }
    assert!(
        failed.is_empty(),
        "failed operations:\n{}",
        failed.join("\n")
    );

    // The agent logged what it forwarded, but no token, key or value.
    let log = std::fs::read_to_string(&agent.log).unwrap();
    assert!(log.contains("forwarded"), "the agent logs its requests");
    for needle in [
        root_token.as_str(),
        client_secret.as_str(),
        token_key.as_str(),
        msi_key.as_str(),
        bare_key.as_str(),
        "written-with-the-agents-token",
        "token-1-",
        "msi-1-",
        "rust-1-",
        "eyJ",
    ] {
        assert!(
            !log.contains(needle),
            "the agent log holds a secret ({} bytes)",
            needle.len()
        );
    }
}
