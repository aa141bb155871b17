//! A 3-member etcd cluster from Debian's `etcd-server`, on loopback, with TLS
//! on both the client and the peer ports (Coffer replicates over mutual TLS
//! too), certificates issued by `coffer operator tls`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use coffer_client::{Client, ClientConfig, Request};

use crate::cluster::free_port;

/// A running etcd cluster; members are killed on drop.
pub struct EtcdCluster {
    /// `https://127.0.0.1:port` client URLs.
    pub client_urls: Vec<String>,
    /// CA that signed the member certificates.
    pub ca_path: PathBuf,
    children: Vec<Child>,
    _dir: tempfile::TempDir,
}

/// Installs `etcd-server` with apt when `etcd` is missing.
pub fn ensure_installed() -> anyhow::Result<PathBuf> {
    let path = PathBuf::from("/usr/bin/etcd");
    if path.exists() {
        return Ok(path);
    }
    eprintln!("etcd not found: apt-get install etcd-server");
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-qq", "etcd-server"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get")?
        .success();
    if !ok || !path.exists() {
        bail!("could not install etcd-server (run: apt-get install etcd-server)");
    }
    Ok(path)
}

impl EtcdCluster {
    /// Starts `members` etcd processes and waits until they answer.
    pub async fn start(coffer: &Path, members: usize) -> anyhow::Result<Self> {
        let etcd = ensure_installed()?;
        let dir = tempfile::Builder::new().prefix("etcd-bench-").tempdir()?;
        let tls = dir.path().join("tls");
        let mut cmd = Command::new(coffer);
        cmd.args(["operator", "tls", "--out"]).arg(&tls);
        for i in 1..=members {
            cmd.arg("--node")
                .arg(format!("etcd{i}=127.0.0.1,localhost"));
        }
        if !cmd.status().context("coffer operator tls")?.success() {
            bail!("coffer operator tls failed for etcd");
        }
        let ports: Vec<(u16, u16)> = (0..members)
            .map(|_| Ok((free_port()?, free_port()?)))
            .collect::<anyhow::Result<_>>()?;
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("etcd{}=https://127.0.0.1:{peer}", i + 1))
            .collect();
        let mut children = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let name = format!("etcd{}", i + 1);
            let cert = tls.join(format!("{name}.pem"));
            let key = tls.join(format!("{name}-key.pem"));
            let log = fs::File::create(dir.path().join(format!("{name}.log")))?;
            let child = Command::new(&etcd)
                .arg("--name")
                .arg(&name)
                .arg("--data-dir")
                .arg(dir.path().join(&name))
                .arg(format!("--listen-client-urls=https://127.0.0.1:{client}"))
                .arg(format!(
                    "--advertise-client-urls=https://127.0.0.1:{client}"
                ))
                .arg(format!("--listen-peer-urls=https://127.0.0.1:{peer}"))
                .arg(format!(
                    "--initial-advertise-peer-urls=https://127.0.0.1:{peer}"
                ))
                .arg(format!("--initial-cluster={}", initial.join(",")))
                .args([
                    "--initial-cluster-state",
                    "new",
                    "--initial-cluster-token",
                    "bench",
                ])
                .arg("--cert-file")
                .arg(&cert)
                .arg("--key-file")
                .arg(&key)
                .arg("--peer-cert-file")
                .arg(&cert)
                .arg("--peer-key-file")
                .arg(&key)
                .arg("--peer-trusted-ca-file")
                .arg(tls.join("ca.pem"))
                .arg("--peer-client-cert-auth")
                .args(["--log-level", "warn"])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("spawning etcd")?;
            children.push(child);
        }
        let cluster = Self {
            client_urls: ports
                .iter()
                .map(|(c, _)| format!("https://127.0.0.1:{c}"))
                .collect(),
            ca_path: tls.join("ca.pem"),
            children,
            _dir: dir,
        };
        cluster.wait_healthy(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    /// Member process ids.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    async fn wait_healthy(&self, timeout: Duration) -> anyhow::Result<()> {
        let client = Client::new(ClientConfig {
            endpoints: self.client_urls.clone(),
            ca_pem: Some(fs::read(&self.ca_path)?),
            timeout: Duration::from_secs(2),
            ..ClientConfig::default()
        })?;
        let deadline = Instant::now() + timeout;
        loop {
            for i in 0..self.client_urls.len() {
                let ok = client
                    .send_to(i, Request::get("/health"))
                    .await
                    .is_ok_and(|r| {
                        r.status.is_success() && r.body.windows(4).any(|w| w == b"true")
                    });
                if ok && i + 1 == self.client_urls.len() {
                    return Ok(());
                }
                if !ok {
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!("etcd did not become healthy in {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
