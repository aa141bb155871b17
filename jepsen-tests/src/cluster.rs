//! A cluster of real `coffer` processes on 127.0.0.1 with real TLS.
//!
//! Certificates come from `coffer operator tls`, each node gets a TOML config
//! and a data dir under one temporary directory, node 1 bootstraps Raft with
//! every member. Processes are SIGKILLed when the cluster is dropped.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use coffer_client::{Client, ClientConfig};

/// One node of a [`LocalCluster`].
pub struct LocalNode {
    /// Raft node id (1-based).
    pub id: u64,
    /// `127.0.0.1:port` of the HTTPS API.
    pub api_addr: String,
    /// `127.0.0.1:port` of the gRPC cluster endpoint.
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

/// Options for [`LocalCluster::start`].
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Number of voters (3 or 5 usually).
    pub nodes: usize,
    /// TEST ONLY: nodes serve reads without ReadIndex.
    pub unsafe_stale_reads: bool,
    /// Extra `KEY=VALUE` environment for node processes (e.g. `COFFER_LOG`).
    pub env: Vec<(String, String)>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            nodes: 3,
            unsafe_stale_reads: false,
            env: Vec::new(),
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
    dir: tempfile::TempDir,
}

/// Reserves a free loopback port (released before the node binds it).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl LocalCluster {
    /// Generates certificates and configs, then starts every node.
    pub fn start(binary: &Path, options: ClusterOptions) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("coffer-cluster-")
            .tempdir()?;
        let tls_dir = dir.path().join("tls");
        let mut nodes = Vec::new();
        for i in 0..options.nodes {
            let id = i as u64 + 1;
            nodes.push(LocalNode {
                id,
                api_addr: format!("127.0.0.1:{}", free_port()?),
                cluster_addr: format!("127.0.0.1:{}", free_port()?),
                data_dir: dir.path().join(format!("node{id}")),
                config_path: dir.path().join(format!("node{id}.toml")),
                log_path: dir.path().join(format!("node{id}.log")),
                child: None,
            });
        }
        let mut tls = Command::new(binary);
        tls.args(["operator", "tls", "--out"]).arg(&tls_dir);
        for node in &nodes {
            tls.arg("--node")
                .arg(format!("node{}=127.0.0.1,localhost", node.id));
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
            dir,
        };
        for i in 0..cluster.nodes.len() {
            cluster.write_config(i, &tls_dir)?;
            cluster.spawn(i)?;
        }
        Ok(cluster)
    }

    /// The directory holding configs, logs and data dirs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn write_config(&self, i: usize, tls_dir: &Path) -> anyhow::Result<()> {
        let node = &self.nodes[i];
        let mut text = format!(
            "node_id = {id}\ndata_dir = {data:?}\napi_addr = {api:?}\ncluster_addr = {cluster:?}\n\
             bootstrap = {bootstrap}\nlog_format = \"text\"\nunsafe_stale_reads = {stale}\n\
             [tls]\nca = {ca:?}\ncert = {cert:?}\nkey = {key:?}\n",
            id = node.id,
            data = node.data_dir,
            api = node.api_addr,
            cluster = node.cluster_addr,
            bootstrap = node.id == 1,
            stale = self.options.unsafe_stale_reads,
            ca = tls_dir.join("ca.pem"),
            cert = tls_dir.join(format!("node{}.pem", node.id)),
            key = tls_dir.join(format!("node{}-key.pem", node.id)),
        );
        for peer in self.nodes.iter().filter(|p| p.id != node.id) {
            text.push_str(&format!(
                "[[peers]]\nnode_id = {}\napi_addr = {:?}\ncluster_addr = {:?}\n",
                peer.id, peer.api_addr, peer.cluster_addr
            ));
        }
        fs::write(&node.config_path, text)?;
        Ok(())
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[i];
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)?;
        let mut cmd = Command::new(&self.binary);
        cmd.arg("server")
            .arg("--config")
            .arg(&node.config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for (k, v) in &self.options.env {
            cmd.env(k, v);
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
        let ca_pem = fs::read(&self.ca_path)?;
        let config = ClientConfig {
            endpoints,
            token: self.root_token.clone(),
            ca_pem: Some(ca_pem),
            ..ClientConfig::default()
        };
        Ok(Client::new(config)?)
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
            if status.initialized {
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

    /// SIGKILLs node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts node `i` on its data dir (it comes back sealed).
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i);
        self.spawn(i)
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
        if std::thread::panicking() || std::env::var_os("COFFER_KEEP_CLUSTER").is_some() {
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
