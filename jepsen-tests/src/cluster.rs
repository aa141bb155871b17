//! A cluster of real `coffer` processes with real TLS, on 127.0.0.1 or each
//! in its own network namespace ([`Placement`]).
//!
//! Certificates come from `coffer operator tls`, each node gets a TOML config
//! and a data dir under one temporary directory, node 1 bootstraps Raft with
//! every member. Processes are SIGKILLed when the cluster is dropped, and
//! namespaces removed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use coffer_client::{Client, ClientConfig};

use crate::netns::Netns;

/// One node of a [`LocalCluster`].
pub struct LocalNode {
    /// Raft node id (1-based).
    pub id: u64,
    /// `host:port` of the HTTPS API.
    pub api_addr: String,
    /// `host:port` of the gRPC cluster endpoint.
    pub cluster_addr: String,
    /// The node's data directory.
    pub data_dir: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
}

impl LocalNode {
    /// `https://` URL of the node's API.
    pub fn url(&self) -> String {
        format!("https://{}", self.api_addr)
    }

    /// The OS process id while the node runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

/// Where node processes run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Placement {
    /// All on 127.0.0.1 with distinct ports.
    #[default]
    Loopback,
    /// Each in its own network namespace (needs root; see [`crate::netns`]),
    /// which partition nemeses need.
    Netns,
}

/// Options for [`LocalCluster::start`].
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Where the node processes run.
    pub placement: Placement,
    /// Number of voters (3 or 5 usually).
    pub nodes: usize,
    /// TEST ONLY: nodes serve reads without ReadIndex.
    pub unsafe_stale_reads: bool,
    /// Extra `KEY=VALUE` environment for node processes (e.g. `COFFER_LOG`).
    pub env: Vec<(String, String)>,
    /// `vault_domain` of every node (vaults addressed as `{vault}.{domain}`).
    pub vault_domain: Option<String>,
    /// Snapshot interval in log entries (`raft_snapshot_logs`).
    pub raft_snapshot_logs: Option<u64>,
    /// Leader lifecycle tick (`lifecycle_interval_secs`: purges, key rotation).
    pub lifecycle_interval_secs: Option<u64>,
    /// Give every node its own SoftHSM2 token (`coffer-nodeN`) and run the
    /// cluster KEK ceremony after [`LocalCluster::init`].
    pub hsm: bool,
    /// Lines of the `[raft]` section of every node's config (e.g.
    /// `corruption_check_interval_secs = 1`).
    pub raft_section: Option<String>,
    /// TEST ONLY: lowered rotation policy minimums
    /// (`unsafe_min_rotation_secs`), for tests that watch a policy rotate.
    pub unsafe_min_rotation_secs: Option<u64>,
    /// `[raft] max_leader_silence_ms`: how long a node may go without
    /// leader contact (a leader: quorum contact) before its health is 503.
    pub max_leader_silence_ms: Option<u64>,
    /// Give every node the same auto-unseal key (one SoftHSM2 token,
    /// `coffer-seal`, whose key `coffer operator seal-key create` made,
    /// copied to every node's own token dir before start) and write
    /// `[seal] type = "<this>"` (`pkcs11` or `shamir`: a device ready for a
    /// migration). Not together with `hsm`.
    pub seal_device: Option<&'static str>,
    /// Lines of the `[server]` section of every node's config; `{host_ip}`
    /// is replaced by the bridge address of a [`Placement::Netns`] cluster
    /// (e.g. `trusted_proxies = ["{host_ip}/32"]`).
    pub server_section: Option<String>,
    /// TOML added to every node's config (the benchmark's `--node-config`):
    /// top-level keys before its first `[section]` go to the top of the file
    /// (so `lock_memory = false` stays a top-level key), whole sections such
    /// as `[audit]\nsync = "write"` after everything else.
    pub extra_config: Option<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            placement: Placement::Loopback,
            nodes: 3,
            unsafe_stale_reads: false,
            env: Vec::new(),
            vault_domain: None,
            raft_snapshot_logs: None,
            lifecycle_interval_secs: None,
            hsm: false,
            unsafe_min_rotation_secs: None,
            raft_section: None,
            max_leader_silence_ms: None,
            seal_device: None,
            server_section: None,
            extra_config: None,
        }
    }
}

/// A running cluster; every process is killed on drop.
pub struct LocalCluster {
    /// The nodes, index `i` has id `i + 1`.
    pub nodes: Vec<LocalNode>,
    /// Cluster CA certificate (PEM file).
    pub ca_path: PathBuf,
    /// Root token once [`LocalCluster::init`] ran.
    pub root_token: Option<String>,
    /// Unseal shares once [`LocalCluster::init`] ran.
    pub shares: Vec<String>,
    binary: PathBuf,
    options: ClusterOptions,
    tls_dir: PathBuf,
    keep: bool,
    // Dropped after `Drop::drop` killed the processes, before `dir`.
    netns: Option<Netns>,
    dir: tempfile::TempDir,
}

pub use crate::ports::free_port;

impl LocalCluster {
    /// Generates certificates and configs, then starts every node.
    pub fn start(binary: &Path, options: ClusterOptions) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("coffer-cluster-")
            .tempdir()?;
        let tls_dir = dir.path().join("tls");
        let netns = match options.placement {
            Placement::Loopback => None,
            Placement::Netns => Some(Netns::create(options.nodes)?),
        };
        let mut nodes = Vec::new();
        for i in 0..options.nodes {
            let id = i as u64 + 1;
            let (api_addr, cluster_addr) = match &netns {
                None => (
                    format!("127.0.0.1:{}", free_port()?),
                    format!("127.0.0.1:{}", free_port()?),
                ),
                Some(net) => (format!("{}:8443", net.ip(i)), format!("{}:8444", net.ip(i))),
            };
            nodes.push(LocalNode {
                id,
                api_addr,
                cluster_addr,
                data_dir: dir.path().join(format!("node{id}")),
                config_path: dir.path().join(format!("node{id}.toml")),
                log_path: dir.path().join(format!("node{id}.log")),
                child: None,
            });
        }
        let mut tls = Command::new(binary);
        tls.args(["operator", "tls", "--out"]).arg(&tls_dir);
        for (i, node) in nodes.iter().enumerate() {
            let sans = match &netns {
                None => "127.0.0.1,localhost".to_string(),
                Some(net) => format!("{},localhost", net.ip(i)),
            };
            tls.arg("--node").arg(format!("node{}={sans}", node.id));
        }
        let status = tls.status().context("running coffer operator tls")?;
        if !status.success() {
            bail!("coffer operator tls failed: {status}");
        }
        let mut cluster = Self {
            nodes,
            ca_path: tls_dir.join("ca.pem"),
            root_token: None,
            shares: Vec::new(),
            binary: binary.to_path_buf(),
            options,
            tls_dir,
            keep: false,
            netns,
            dir,
        };
        if cluster.options.hsm {
            hsm::init_tokens(cluster.dir.path(), cluster.nodes.len())?;
        }
        if cluster.options.seal_device.is_some() {
            if cluster.options.hsm {
                bail!("seal_device and hsm cannot be combined in a test cluster");
            }
            for i in 0..cluster.nodes.len() {
                cluster.write_config(i, i == 0, true)?;
            }
            hsm::init_seal_tokens(
                cluster.dir.path(),
                cluster.nodes.len(),
                &cluster.binary,
                &cluster.nodes[0].config_path,
            )?;
        }
        for i in 0..cluster.nodes.len() {
            cluster.write_config(i, i == 0, true)?;
            cluster.spawn(i)?;
        }
        Ok(cluster)
    }

    /// The directory holding configs, logs and data dirs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The namespaces of a [`Placement::Netns`] cluster.
    pub fn netns(&self) -> Option<&Netns> {
        self.netns.as_ref()
    }

    /// Keeps configs, logs and data dirs after drop (for failed runs).
    pub fn keep_files(&mut self) {
        self.keep = true;
    }

    /// Kills node `i`, wipes its data dir and starts it as a fresh node that
    /// waits to be added with `join` (no bootstrap, no peers).
    pub fn wipe_and_start_fresh(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i);
        let data = &self.nodes[i].data_dir;
        if data.exists() {
            fs::remove_dir_all(data).context("wiping data dir")?;
        }
        self.write_config(i, false, false)?;
        self.spawn(i)
    }

    fn write_config(&self, i: usize, bootstrap: bool, with_peers: bool) -> anyhow::Result<()> {
        let tls_dir = &self.tls_dir;
        let node = &self.nodes[i];
        let mut text = format!(
            "node_id = {id}\ndata_dir = {data:?}\napi_addr = {api:?}\ncluster_addr = {cluster:?}\n\
             bootstrap = {bootstrap}\nlog_format = \"text\"\nunsafe_stale_reads = {stale}\n\
             [tls]\nca = {ca:?}\ncert = {cert:?}\nkey = {key:?}\n",
            id = node.id,
            data = node.data_dir,
            api = node.api_addr,
            cluster = node.cluster_addr,
            bootstrap = bootstrap,
            stale = self.options.unsafe_stale_reads,
            ca = tls_dir.join("ca.pem"),
            cert = tls_dir.join(format!("node{}.pem", node.id)),
            key = tls_dir.join(format!("node{}-key.pem", node.id)),
        );
        if let Some(domain) = &self.options.vault_domain {
            text = format!("vault_domain = {domain:?}\n{text}");
        }
        if let Some(n) = self.options.raft_snapshot_logs {
            text = format!("raft_snapshot_logs = {n}\n{text}");
        }
        if let Some(n) = self.options.lifecycle_interval_secs {
            text = format!("lifecycle_interval_secs = {n}\n{text}");
        }
        if let Some(n) = self.options.unsafe_min_rotation_secs {
            text = format!("unsafe_min_rotation_secs = {n}\n{text}");
        }
        let peers = self.nodes.iter().filter(|p| with_peers && p.id != node.id);
        for peer in peers {
            text.push_str(&format!(
                "[[peers]]\nnode_id = {}\napi_addr = {:?}\ncluster_addr = {:?}\n",
                peer.id, peer.api_addr, peer.cluster_addr
            ));
        }
        if self.options.hsm {
            text.push_str(&hsm::config_section(self.dir.path(), node.id));
        }
        if let Some(seal_type) = self.options.seal_device {
            text.push_str(&hsm::seal_config_section(self.dir.path(), seal_type));
        }
        if let Some(lines) = &self.options.server_section {
            let host_ip = self.netns.as_ref().map(Netns::host_ip);
            let lines = lines.replace("{host_ip}", host_ip.as_deref().unwrap_or("127.0.0.1"));
            text.push_str(&format!("[server]\n{lines}\n"));
        }
        let mut raft = Vec::new();
        if let Some(ms) = self.options.max_leader_silence_ms {
            raft.push(format!("max_leader_silence_ms = {ms}"));
        }
        if let Some(lines) = &self.options.raft_section {
            raft.push(lines.clone());
        }
        if !raft.is_empty() {
            text.push_str(&format!("[raft]\n{}\n", raft.join("\n")));
        }
        if let Some(extra) = &self.options.extra_config {
            let (top, sections) = split_top_level(extra);
            text = format!("{top}{text}{sections}\n");
        }
        fs::write(&node.config_path, text)?;
        Ok(())
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        self.spawn_with(i, &[])
    }

    fn spawn_with(&mut self, i: usize, extra: &[&std::ffi::OsStr]) -> anyhow::Result<()> {
        let node = &mut self.nodes[i];
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)?;
        let mut cmd = match &self.netns {
            None => Command::new(&self.binary),
            Some(net) => {
                // `ip netns exec` execs in place, so the child pid is the node's.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &net.ns(i)]).arg(&self.binary);
                c
            }
        };
        cmd.arg("server")
            .arg("--config")
            .arg(&node.config_path)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for (k, v) in &self.options.env {
            cmd.env(k, v);
        }
        if self.options.hsm || self.options.seal_device.is_some() {
            cmd.env("SOFTHSM2_CONF", hsm::conf_path(self.dir.path(), node.id));
        }
        node.child = Some(cmd.spawn().context("spawning coffer server")?);
        Ok(())
    }

    /// A client with every node as a failover endpoint.
    pub fn client(&self) -> anyhow::Result<Client> {
        let urls = self.nodes.iter().map(LocalNode::url).collect();
        self.client_for_urls(urls)
    }

    /// A client that talks to node index `i` only.
    pub fn node_client(&self, i: usize) -> anyhow::Result<Client> {
        self.client_for_urls(vec![self.nodes[i].url()])
    }

    fn client_for_urls(&self, endpoints: Vec<String>) -> anyhow::Result<Client> {
        Ok(Client::new(self.client_config(endpoints)?)?)
    }

    /// A client configuration for `endpoints` with the CA and root token, to
    /// be adjusted (timeouts, attempts) before building a [`Client`].
    pub fn client_config(&self, endpoints: Vec<String>) -> anyhow::Result<ClientConfig> {
        let ca_pem = fs::read(&self.ca_path)?;
        Ok(ClientConfig {
            endpoints,
            token: self.root_token.clone(),
            ca_pem: Some(ca_pem),
            ..ClientConfig::default()
        })
    }

    /// Waits until some running node reports itself leader; returns its index.
    pub async fn wait_for_leader(&self, timeout: Duration) -> anyhow::Result<usize> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            for (i, node) in self.nodes.iter().enumerate() {
                if !node.is_running() {
                    continue;
                }
                let Ok(client) = self.node_client(i) else {
                    continue;
                };
                if let Ok(h) = client.sys().health().await {
                    if h.body.leader_id == Some(node.id) && h.body.node_id == Some(node.id) {
                        return Ok(i);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "no leader within {timeout:?}; logs in {}",
            self.dir().display()
        )
    }

    /// Starts the cluster, initialises it with one unseal share through node
    /// 0 and waits for a leader: a cluster ready to serve the root token.
    pub async fn start_ready(binary: &Path, options: ClusterOptions) -> anyhow::Result<Self> {
        let mut cluster = Self::start(binary, options)?;
        cluster.init(0, 1, 1).await?;
        cluster.wait_for_leader(Duration::from_secs(20)).await?;
        Ok(cluster)
    }

    /// Initialises the cluster through node `via` and unseals every running node.
    pub async fn init(&mut self, via: usize, shares: u8, threshold: u8) -> anyhow::Result<()> {
        self.wait_for_leader(Duration::from_secs(20)).await?;
        let init = self.node_client(via)?.sys().init(shares, threshold).await?;
        self.root_token = Some(init.root_token.clone());
        self.shares = init.keys.clone();
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_running() {
                self.unseal(i).await?;
            }
        }
        if self.options.hsm {
            self.hsm_ceremony().await?;
        }
        Ok(())
    }

    /// Unseals node `i` with `threshold` of the shares, waiting for the seal
    /// records to replicate to it.
    pub async fn unseal(&self, i: usize) -> anyhow::Result<()> {
        let client = self.node_client(i)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = match client.sys().seal_status().await {
                Ok(status) => status,
                // A node that was just (re)started may not listen yet.
                Err(e) if e.is_transient() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if !status.sealed {
                return Ok(());
            }
            // With the pkcs11 seal the node unseals itself; the shares are
            // recovery shares and would be refused.
            if status.initialized && status.seal_type != "pkcs11" {
                for share in &self.shares {
                    let status = client.sys().unseal(share).await?;
                    if !status.sealed {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "node {} did not unseal; logs in {}",
                    i + 1,
                    self.dir().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Creates the cluster KEK in node 1's device and distributes it to
    /// every other running node with `coffer operator hsm`.
    pub async fn hsm_ceremony(&self) -> anyhow::Result<()> {
        let token = self
            .root_token
            .clone()
            .context("hsm ceremony before init")?;
        let first = self.nodes[0].url();
        let mut runs = vec![vec!["create-kek".to_string()]];
        for node in self.nodes.iter().skip(1).filter(|n| n.is_running()) {
            runs.push(vec![
                "distribute".into(),
                "--from".into(),
                first.clone(),
                "--to".into(),
                node.url(),
            ]);
        }
        for args in runs {
            let out = tokio::process::Command::new(&self.binary)
                .args(["operator", "hsm"])
                .args(&args)
                .env("COFFER_ADDR", &first)
                .env("COFFER_TOKEN", &token)
                .env("COFFER_CACERT", &self.ca_path)
                .output()
                .await?;
            if !out.status.success() {
                bail!(
                    "coffer operator hsm {} failed: {}",
                    args[0],
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        Ok(())
    }

    /// SIGKILLs node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The exit status of node `i` if its process has ended by itself (the
    /// node is then marked as not running).
    pub fn exited(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        let child = self.nodes[i].child.as_mut()?;
        let status = child.try_wait().ok().flatten()?;
        self.nodes[i].child = None;
        Some(status)
    }

    /// Stops node `i` gracefully (SIGTERM) and waits for it to exit.
    pub fn stop(&mut self, i: usize) -> anyhow::Result<()> {
        let Some(mut child) = self.nodes[i].child.take() else {
            return Ok(());
        };
        // SAFETY: kill(2) on a pid we spawned and still own.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        bail!("node {} did not stop within 20 s of SIGTERM", i + 1)
    }

    /// The config file of node `i`.
    pub fn config_path(&self, i: usize) -> &Path {
        &self.nodes[i].config_path
    }

    /// The `coffer` binary the cluster runs.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Restarts node `i` on its data dir (it comes back sealed).
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i);
        self.spawn(i)
    }

    /// Restarts node `i` with `extra` arguments after `server --config
    /// FILE` (e.g. `--restore SNAPSHOT`).
    pub fn restart_with(&mut self, i: usize, extra: &[&std::ffi::OsStr]) -> anyhow::Result<()> {
        self.kill(i);
        self.spawn_with(i, extra)
    }

    /// Sends `signal` (e.g. `libc::SIGSTOP`) to node `i`'s process.
    pub fn signal(&self, i: usize, signal: i32) -> anyhow::Result<()> {
        let pid = self.nodes[i].pid().context("node is not running")?;
        // SAFETY: kill(2) with a pid we spawned and still own; no memory involved.
        let rc = unsafe { libc::kill(pid as i32, signal) };
        if rc != 0 {
            bail!(
                "kill({pid}, {signal}) failed: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// The log file of node `i` (kept for failure reports).
    pub fn log(&self, i: usize) -> String {
        fs::read_to_string(&self.nodes[i].log_path).unwrap_or_default()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        if self.keep
            || std::thread::panicking()
            || std::env::var_os("COFFER_KEEP_CLUSTER").is_some()
        {
            // Keep data dirs and logs of a failed test for inspection.
            let path = std::mem::replace(
                &mut self.dir,
                tempfile::tempdir().expect("tempdir for drop"),
            )
            .keep();
            eprintln!("cluster files kept in {}", path.display());
        }
    }
}

/// What a scan of a data dir for leaked bytes found.
#[derive(Debug, Default)]
pub struct LeakScan {
    /// Files read.
    pub files: usize,
    /// Files that contain at least one of the needles.
    pub hits: Vec<PathBuf>,
}

/// Reads every file under `dir` and reports those containing any of
/// `needles` (plaintext that must never reach a disk).
pub fn scan_for_bytes(dir: &Path, needles: &[&[u8]]) -> std::io::Result<LeakScan> {
    let mut scan = LeakScan::default();
    scan_into(dir, needles, &mut scan)?;
    Ok(scan)
}

impl LocalCluster {
    /// [`scan_for_bytes`] over every node's data dir, combined.
    pub fn scan_data_dirs(&self, needles: &[&[u8]]) -> std::io::Result<LeakScan> {
        let mut scan = LeakScan::default();
        for node in &self.nodes {
            scan_into(&node.data_dir, needles, &mut scan)?;
        }
        Ok(scan)
    }
}

fn scan_into(dir: &Path, needles: &[&[u8]], scan: &mut LeakScan) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            scan_into(&path, needles, scan)?;
            continue;
        }
        let bytes = fs::read(&path)?;
        scan.files += 1;
        let contains = |n: &&[u8]| bytes.windows(n.len()).any(|w| w == *n);
        if needles.iter().any(contains) {
            scan.hits.push(path);
        }
    }
    Ok(())
}

/// A node's SoftHSM2 token, for in-process comparisons on the same device.
#[derive(Debug, Clone)]
pub struct HsmToken {
    /// PKCS#11 module path.
    pub module: PathBuf,
    /// The `SOFTHSM2_CONF` file that locates the tokens.
    pub conf: PathBuf,
    /// Token label.
    pub label: String,
    /// User PIN (a fixed test PIN; never printed).
    pub pin: String,
}

impl LocalCluster {
    /// Node `index`'s token when the cluster runs with `hsm: true`.
    pub fn hsm_token(&self, index: usize) -> Option<HsmToken> {
        let node = self.nodes.get(index)?;
        self.options
            .hsm
            .then(|| hsm::token(self.dir.path(), node.id))
    }
}

/// Splits extra node config into its top-level keys (the lines before the
/// first `[section]` header, each ending in a newline) and the rest.
fn split_top_level(extra: &str) -> (String, &str) {
    let at = extra
        .lines()
        .scan(0, |offset, line| {
            let start = *offset;
            *offset += line.len() + 1;
            Some((start, line))
        })
        .find(|(_, line)| line.trim_start().starts_with('['))
        .map_or(extra.len(), |(start, _)| start.min(extra.len()));
    let top = &extra[..at];
    let top = if top.is_empty() || top.ends_with('\n') {
        top.to_string()
    } else {
        format!("{top}\n")
    };
    (top, &extra[at..])
}

mod hsm;

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod leak_scan_tests;
