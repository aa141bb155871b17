//! The official Azure SDKs for Python (`azure-keyvault-secrets`,
//! `azure-keyvault-keys`, `azure-keyvault-certificates`) against a real 3-node cluster. `scripts/test.sh`
//! creates the venv and sets `COFFER_PYTHON`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use jepsen_tests::cluster::{ClusterOptions, LocalCluster};

/// Starts a 3-node cluster (each node with its own SoftHSM2 token when
/// `hsm`) and runs one pytest file against a follower (so every write is
/// forwarded to the leader).
async fn run_pytest(file: &str, hsm: bool) {
    let python = std::env::var("COFFER_PYTHON").expect(
        "COFFER_PYTHON must name a Python with the Azure SDK installed; run ./scripts/test.sh",
    );
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_coffer"));
    // Full backups (KeyVaultBackupClient) go to file:// URIs in here.
    let backups = tempfile::Builder::new()
        .prefix("coffer-backups-")
        .tempdir()
        .unwrap();
    let options = ClusterOptions {
        hsm,
        server_section: Some(format!("backup_dir = {:?}", backups.path())),
        ..ClusterOptions::default()
    };
    let mut cluster = LocalCluster::start(&binary, options).unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    cluster.init(leader, 3, 2).await.unwrap();
    let follower = &cluster.nodes[(leader + 1) % 3];
    // Followers first: the identity tests get tokens from the first and
    // use them on the others.
    let nodes: Vec<String> = (1..=3)
        .map(|k| cluster.nodes[(leader + k) % 3].url())
        .collect();
    let tests = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    let output = Command::new(python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", file])
        .current_dir(&tests)
        .env("COFFER_VAULT_URL", follower.url())
        .env("COFFER_TOKEN", cluster.root_token.clone().unwrap())
        .env("COFFER_CACERT", &cluster.ca_path)
        .env("REQUESTS_CA_BUNDLE", &cluster.ca_path)
        .env("COFFER_NODE_URLS", nodes.join(","))
        .env("COFFER_BIN", &binary)
        .env("COFFER_BACKUP_DIR", backups.path())
        .env_remove("AZURE_TENANT_ID")
        .env_remove("AZURE_CLIENT_ID")
        .env_remove("AZURE_CLIENT_SECRET")
        .env_remove("AZURE_AUTHORITY_HOST")
        .env_remove("IDENTITY_ENDPOINT")
        .env_remove("IDENTITY_HEADER")
        .env("COFFER_HSM", if hsm { "1" } else { "0" })
        .output()
        .expect("running pytest");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}\n{stderr}");
    assert!(
        output.status.success(),
        "SDK conformance ({file}) failed:\n{stdout}\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_sdk_secret_client_conformance() {
    run_pytest("test_secrets.py", false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_sdk_key_client_conformance_with_hsm_tokens() {
    run_pytest("test_keys.py", true).await;
}

/// Unchanged `azure-identity` credentials (client secret, certificate,
/// client assertion, workload identity, `DefaultAzureCredential` from the
/// environment) against the built-in issuer: each gets its token from one
/// node and reads a secret on another.
#[tokio::test(flavor = "multi_thread")]
async fn azure_identity_credentials_against_the_built_in_issuer() {
    run_pytest("test_identity.py", false).await;
}

/// `azure-keyvault-certificates` unchanged: every `CertificateClient`
/// method, Self through the real poller, Unknown + merge with a CA chain,
/// PFX and PEM imports, and the downloaded secret checked by `cryptography`.
#[tokio::test(flavor = "multi_thread")]
async fn azure_sdk_certificate_client_conformance() {
    run_pytest("test_certificates.py", false).await;
}

/// Certificates with `RSA-HSM` / `EC-HSM` keys on a cluster whose nodes
/// each have a SoftHSM2 token: Self through the SDK poller, Unknown +
/// merge, a CA whose HSM key signs leaves, CRLs and OCSP responses
/// (`openssl verify`, `openssl crl`, `openssl ocsp`), exportable refused.
#[tokio::test(flavor = "multi_thread")]
async fn azure_sdk_certificates_with_hsm_keys() {
    run_pytest("test_certificates_hsm.py", true).await;
}

/// Key Vault RBAC through the unchanged `azure-keyvault-administration`
/// SDK: built-in and custom roles, assignments listed with filters,
/// Secrets User and Crypto User limits, separation of duties, a
/// revocation through node 1 in force on node 3 at once, an MFA-conditioned
/// role that works only after the step-up sign-in, `KeyVaultSettingsClient`,
/// and `KeyVaultBackupClient` (full backup, purge everything, full restore
/// with equal digests, selective key restore).
#[tokio::test(flavor = "multi_thread")]
async fn azure_keyvault_administration_access_control() {
    run_pytest("test_authz.py", false).await;
}
