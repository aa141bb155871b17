//! Unchanged `azure-identity` credentials (client secret, certificate,
//! client assertion, workload identity, `DefaultAzureCredential` from the
//! environment) against a real 3-node cluster: each gets its token from one
//! node and reads a secret on another. `scripts/test.sh` creates the venv
//! and sets `COFFER_PYTHON`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use jepsen_tests::cluster::{ClusterOptions, LocalCluster};

#[tokio::test(flavor = "multi_thread")]
async fn azure_identity_credentials_against_the_built_in_issuer() {
    let python = std::env::var("COFFER_PYTHON").expect(
        "COFFER_PYTHON must name a Python with azure-identity installed; run ./scripts/test.sh",
    );
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_coffer"));
    let mut cluster = LocalCluster::start(&binary, ClusterOptions::default()).unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    cluster.init(leader, 3, 2).await.unwrap();
    // The authority is a follower, so token issuance forwards its writes.
    let order: Vec<String> = (1..=3)
        .map(|k| cluster.nodes[(leader + k) % 3].url())
        .collect();
    let tests = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    let output = Command::new(python)
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "test_identity.py",
        ])
        .current_dir(&tests)
        .env("COFFER_NODE_URLS", order.join(","))
        .env("COFFER_TOKEN", cluster.root_token.clone().unwrap())
        .env("COFFER_CACERT", &cluster.ca_path)
        .env("REQUESTS_CA_BUNDLE", &cluster.ca_path)
        .env_remove("AZURE_TENANT_ID")
        .env_remove("AZURE_CLIENT_ID")
        .env_remove("AZURE_CLIENT_SECRET")
        .env_remove("AZURE_AUTHORITY_HOST")
        .output()
        .expect("running pytest");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}\n{stderr}");
    assert!(
        output.status.success(),
        "azure-identity conformance failed:\n{stdout}\n{stderr}"
    );
}
