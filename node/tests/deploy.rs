//! What deployments rely on, with real `coffer` processes on loopback:
//! auto-join (`retry_join`), the join token, secrets taken out of the
//! environment, memory locking's refusal, and `server --dev` defaults.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coffer_client::secrets::SetOptions;
use coffer_client::{Client, ClientConfig};
use jepsen_tests::cluster::{free_port, ClusterOptions, LocalCluster};

const TOKEN: &str = "join-token-of-the-test-cluster-0123";
const WRONG: &str = "a-wrong-join-token-0123456789abcdef";

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_coffer"))
}

/// A node process, killed on drop; its log is the file it writes to.
struct Node {
    child: Child,
    log: PathBuf,
}

impl Node {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A one-node cluster (node 1 bootstraps alone) that accepts joins with
/// [`TOKEN`], initialised and unsealed.
async fn seed_cluster() -> LocalCluster {
    let options = ClusterOptions {
        nodes: 1,
        env: vec![("COFFER_JOIN_TOKEN".into(), TOKEN.into())],
        ..ClusterOptions::default()
    };
    let mut cluster = LocalCluster::start(&binary(), options).unwrap();
    cluster.init(0, 1, 1).await.unwrap();
    cluster
}

/// Issues a certificate for `name` under the cluster's CA and starts a node
/// with an empty data dir that auto-joins node 1 presenting `token`.
fn start_joiner(cluster: &LocalCluster, id: u64, token: &str) -> (Node, String) {
    let tls = cluster.ca_path.parent().unwrap().to_path_buf();
    let name = format!("joiner{id}");
    let status = Command::new(binary())
        .args(["operator", "tls", "--out"])
        .arg(&tls)
        .args(["--node", &format!("{name}=127.0.0.1,localhost")])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let dir = cluster.dir();
    let api = format!("127.0.0.1:{}", free_port().unwrap());
    let config = dir.join(format!("{name}.toml"));
    let text = format!(
        "node_id = {id}\ndata_dir = {data:?}\napi_addr = {api:?}\ncluster_addr = \"127.0.0.1:{cport}\"\n\
         retry_join = [{seed:?}]\nlog_format = \"text\"\n\
         [tls]\nca = {ca:?}\ncert = {cert:?}\nkey = {key:?}\n",
        data = dir.join(&name),
        cport = free_port().unwrap(),
        // A name, not an address: resolved by the joiner, and the name
        // its certificate check expects (the member's SANs hold localhost).
        seed = cluster.nodes[0].cluster_addr.replace("127.0.0.1", "localhost"),
        ca = cluster.ca_path,
        cert = tls.join(format!("{name}.pem")),
        key = tls.join(format!("{name}-key.pem")),
    );
    std::fs::write(&config, text).unwrap();
    let log = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(binary())
        .args(["server", "--config"])
        .arg(&config)
        // The token only in the environment, the way compose and k8s pass it.
        .env("COFFER_JOIN_TOKEN", token)
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    (Node { child, log }, format!("https://{api}"))
}

async fn members(client: &Client) -> Vec<(u64, bool)> {
    match client.sys().peers().await {
        Ok(p) => p.peers.iter().map(|p| (p.node_id, p.voter)).collect(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_node_with_retry_join_becomes_a_voter_and_a_wrong_token_is_refused() {
    let cluster = seed_cluster().await;
    let client = cluster.node_client(0).unwrap();
    client
        .secrets()
        .set("before-join", "v1", &SetOptions::default())
        .await
        .unwrap();
    let (joiner, joiner_url) = start_joiner(&cluster, 2, TOKEN);
    let (intruder, _) = start_joiner(&cluster, 3, WRONG);
    // Right token, but node 1's id (a copied config): refused too.
    let (duplicate, _) = start_joiner(&cluster, 1, TOKEN);

    // No operator step: node 2 asks, is added as a learner, then a voter.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !members(&client).await.contains(&(2, true)) {
        assert!(
            Instant::now() < deadline,
            "node 2 did not become a voter in 60 s; its log:\n{}",
            joiner.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The intruder has been asking all along; give it a few more rounds.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let now = members(&client).await;
    assert!(
        !now.iter().any(|(id, _)| *id == 3),
        "a node with a wrong join token was added: {now:?}"
    );
    assert!(
        intruder.log().contains("join token refused"),
        "the refused node does not say why:\n{}",
        intruder.log()
    );
    assert!(
        cluster
            .log(0)
            .contains("refused a join request: wrong join token"),
        "the member does not log the refusal:\n{}",
        cluster.log(0)
    );
    assert!(
        duplicate.log().contains("node id 1 is already a member"),
        "a node with a member's id does not say why it was refused:\n{}",
        duplicate.log()
    );
    let ones = members(&client).await;
    assert_eq!(
        ones.iter().filter(|(id, _)| *id == 1).count(),
        1,
        "{ones:?}"
    );
    for log in [
        joiner.log(),
        intruder.log(),
        duplicate.log(),
        cluster.log(0),
    ] {
        assert!(
            !log.contains(TOKEN) && !log.contains(WRONG),
            "a join token was logged"
        );
    }

    // The new voter holds the data: unsealed, it serves what was written
    // before it existed.
    let mut config = ClientConfig {
        endpoints: vec![joiner_url],
        ca_pem: Some(std::fs::read(&cluster.ca_path).unwrap()),
        token: cluster.root_token.clone(),
        ..ClientConfig::default()
    };
    config.timeout = Duration::from_secs(5);
    let node2 = Client::new(config).unwrap();
    for share in &cluster.shares {
        node2.sys().unseal(share).await.unwrap();
    }
    let read = node2.secrets().get("before-join", None).await.unwrap();
    assert_eq!(read.value.as_deref(), Some("v1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_environment_variable_is_gone_from_the_running_node() {
    let cluster = seed_cluster().await;
    let (joiner, _) = start_joiner(&cluster, 2, TOKEN);
    // The node took the variable before its runtime started; give it a moment.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !joiner.log().contains("auto-join") {
        assert!(
            Instant::now() < deadline,
            "node did not start:\n{}",
            joiner.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = joiner.child.id();
    let mut environ = Vec::new();
    std::fs::File::open(format!("/proc/{pid}/environ"))
        .unwrap()
        .read_to_end(&mut environ)
        .unwrap();
    let text = String::from_utf8_lossy(&environ);
    assert!(
        !text.contains(TOKEN),
        "/proc/{pid}/environ still shows the join token"
    );
    // Not dumpable: /proc/PID/* belongs to root now, core dumps are off.
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert!(
        core.split_whitespace().filter(|w| *w == "0").count() == 2,
        "{core}"
    );
}

/// `coffer server --config` without CAP_IPC_LOCK, under a finite memlock
/// limit, with `lock_memory` on: refused at start, saying how to fix it.
#[test]
fn a_node_that_cannot_lock_its_memory_refuses_to_start_and_says_why() {
    let limit = std::fs::read_to_string("/proc/self/limits").unwrap();
    let memlock = limit
        .lines()
        .find(|l| l.starts_with("Max locked memory"))
        .unwrap()
        .to_string();
    if memlock.contains("unlimited") || Command::new("setpriv").arg("--help").output().is_err() {
        eprintln!("skipped: memlock is unlimited here or setpriv is missing ({memlock})");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "node_id = 1\ndata_dir = {:?}\napi_addr = \"127.0.0.1:{}\"\ncluster_addr = \"127.0.0.1:{}\"\n\
             bootstrap = true\n[tls]\nca = \"ca.pem\"\ncert = \"n.pem\"\nkey = \"k.pem\"\n",
            dir.path().join("data"),
            free_port().unwrap(),
            free_port().unwrap()
        ),
    )
    .unwrap();
    let run = |extra_env: &[(&str, &str)]| {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--inh-caps=-ipc_lock", "--bounding-set=-ipc_lock", "--"])
            .arg(binary())
            .args(["server", "--config"])
            .arg(&config);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let out = run(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("cannot lock the node's memory"), "{stderr}");
    assert!(stderr.contains("LimitMEMLOCK=infinity"), "{stderr}");
    assert!(stderr.contains("lock_memory = false"), "{stderr}");
    // With the switch off it gets past that point (to the missing TLS files).
    let out = run(&[("COFFER_LOCK_MEMORY", "false")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("cannot lock"), "{stderr}");
    assert!(stderr.contains("TLS"), "{stderr}");
}

fn dev_server(dir: &Path, api: &str, extra: &[&str]) -> Node {
    let log = dir.with_extension("log");
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(binary())
        .args(["server", "--dev", "--api-addr", api, "--data-dir"])
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    Node { child, log }
}

async fn wait_for_banner(node: &Node) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = node.log();
        if log.contains("initialised and unsealed") && log.contains("HSM tier:") {
            return log;
        }
        assert!(Instant::now() < deadline, "dev server not ready:\n{log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_dev_servers_with_different_api_ports_do_not_clash() {
    let dir = tempfile::tempdir().unwrap();
    // Consecutive API ports would overlap with "API port + 1": spread them.
    let (a, b) = (free_port().unwrap(), free_port().unwrap());
    let first = dev_server(&dir.path().join("a"), &format!("127.0.0.1:{a}"), &[]);
    let second = dev_server(&dir.path().join("b"), &format!("127.0.0.1:{b}"), &[]);
    wait_for_banner(&first).await;
    wait_for_banner(&second).await;
    assert!(second.log().contains(&format!("https://127.0.0.1:{b}")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dev_server_creates_its_own_softhsm_token_with_the_kek() {
    if !Path::new("/usr/lib/softhsm/libsofthsm2.so").exists() {
        eprintln!("skipped: SoftHSM2 is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev");
    let api = format!("127.0.0.1:{}", free_port().unwrap());
    let node = dev_server(&data, &api, &["--hsm-softhsm"]);
    let log = wait_for_banner(&node).await;
    assert!(log.contains("token \"coffer-dev\", KEK present"), "{log}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(data.join("hsm-pin"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    // An HSM key works at once, with no ceremony.
    let token = std::fs::read_to_string(data.join("root-token")).unwrap();
    let client = Client::new(ClientConfig {
        endpoints: vec![format!("https://{api}")],
        token: Some(token.trim().to_string()),
        ca_pem: Some(std::fs::read(data.join("ca.pem")).unwrap()),
        ..ClientConfig::default()
    })
    .unwrap();
    let path = format!(
        "/keys/dev-hsm-key/create?api-version={}",
        coffer_client::KEY_VAULT_API_VERSION
    );
    let request = coffer_client::Request::post(path)
        .json(&serde_json::json!({"kty": "RSA-HSM", "key_size": 2048}))
        .unwrap();
    let created = client.send(request).await.unwrap();
    assert_eq!(created.status, 200);
    let body: serde_json::Value = created.json().unwrap();
    assert_eq!(body["key"]["kty"], "RSA-HSM", "{body}");
}
