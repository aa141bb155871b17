//! `coffer server --dev`: a single self-initialising node that keeps its
//! data and unseals itself again after a restart.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coffer_client::secrets::SetOptions;
use coffer_client::{Client, ClientConfig};

/// A loopback address no other test process is handed (see `jepsen_tests::ports`).
fn free_addr() -> String {
    format!("127.0.0.1:{}", jepsen_tests::ports::free_port().unwrap())
}

struct DevNode(Child);

impl Drop for DevNode {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path, api: &str, cluster: &str) -> DevNode {
    let child = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args([
            "server",
            "--dev",
            "--api-addr",
            api,
            "--cluster-addr",
            cluster,
            "--data-dir",
        ])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    DevNode(child)
}

async fn ready_client(dir: &Path, api: &str) -> Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let token = std::fs::read_to_string(dir.join("root-token")).unwrap_or_default();
        if !token.is_empty() {
            let client = Client::new(ClientConfig {
                endpoints: vec![format!("https://{api}")],
                token: Some(token.trim().to_string()),
                ca_pem: Some(std::fs::read(dir.join("ca.pem")).unwrap()),
                ..ClientConfig::default()
            })
            .unwrap();
            if let Ok(h) = client.sys().health().await {
                if h.status == 200 {
                    return client;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "dev server not ready within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dev_server_initialises_itself_and_keeps_data_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data: PathBuf = dir.path().join("dev");
    let (api, cluster) = (free_addr(), free_addr());

    let node = start(&data, &api, &cluster);
    let client = ready_client(&data, &api).await;
    for file in ["ca.pem", "root-token", "unseal-key"] {
        assert!(data.join(file).is_file(), "{file} missing");
    }
    let set = client
        .secrets()
        .set("kept", "across-restarts", &SetOptions::default())
        .await
        .unwrap();
    drop(node);

    let _node = start(&data, &api, &cluster);
    let client = ready_client(&data, &api).await;
    let got = client.secrets().get("kept", None).await.unwrap();
    assert_eq!(got.value.as_deref(), Some("across-restarts"));
    assert_eq!(got.id, set.id);
}
