//! The custodians' ceremony end to end, with the real `coffer` CLI against a
//! real 3-node cluster and Debian's `gpg` as the custodians' OpenPGP
//! client: init with 5 PGP keys (threshold 3), `gpg` decrypts three shares,
//! they unseal every node; rekey to 3/2 with `--verify` (the old shares keep
//! working until the new holders verified); the old shares then no longer
//! unseal; generate-root with a quorum of the new shares; the initial root
//! token is revoked and refused on every node.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use coffer_client::secrets::SetOptions;
use jepsen_tests::cluster::{ClusterOptions, LocalCluster};
use serde_json::Value;

mod common;

use common::{binary, ok_json, operator_cli as operator};

/// One custodian: a private GnuPG home with one key (ed25519 + cv25519).
struct Custodian {
    home: PathBuf,
    public_key: PathBuf,
}

fn gpg(home: &Path) -> Command {
    let mut cmd = Command::new("gpg");
    cmd.env("GNUPGHOME", home).args([
        "--batch",
        "--quiet",
        "--no-tty",
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
    ]);
    cmd
}

fn custodian(dir: &Path, i: usize) -> Custodian {
    let home = dir.join(format!("gnupg-{i}"));
    std::fs::create_dir_all(&home).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let uid = format!("Custodian {i} <custodian{i}@coffer.test>");
    let out = gpg(&home)
        .args([
            "--quick-gen-key",
            &uid,
            "future-default",
            "default",
            "never",
        ])
        .output()
        .expect("gpg is installed (scripts/test.sh installs gnupg)");
    assert!(
        out.status.success(),
        "gpg keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public_key = dir.join(format!("custodian-{i}.asc"));
    let out = gpg(&home)
        .args(["--armor", "--export", &format!("custodian{i}@coffer.test")])
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(&public_key, &out.stdout).unwrap();
    Custodian { home, public_key }
}

impl Custodian {
    /// What the custodian runs: `gpg --decrypt`.
    fn decrypt(&self, armored: &str) -> String {
        let mut child = gpg(&self.home)
            .arg("--decrypt")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(armored.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "gpg --decrypt: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Seals node `i` and tries to unseal it with `shares`: whether it unsealed.
fn reseal_and_unseal(cluster: &LocalCluster, i: usize, token: &str, shares: &[String]) -> bool {
    let status = ok_json(operator(cluster, i, None, &["status"]), "status");
    if status["seal_status"]["sealed"] == false {
        let sealed = operator(cluster, i, Some(token), &["seal"]);
        assert!(
            sealed.status.success(),
            "seal: {}",
            String::from_utf8_lossy(&sealed.stderr)
        );
    }
    let mut unsealed = false;
    for share in shares {
        let out = operator(cluster, i, None, &["unseal", share]);
        if !out.status.success() {
            break;
        }
        let status: Value = serde_json::from_slice(&out.stdout).unwrap();
        if status["sealed"] == false {
            unsealed = true;
            break;
        }
    }
    if !unsealed {
        ok_json(
            operator(cluster, i, None, &["unseal", "--reset"]),
            "unseal --reset",
        );
    }
    unsealed
}

async fn wait_until<F: Fn() -> bool>(what: &str, f: F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pgp_init_rekey_with_verification_generate_root_and_revoke() {
    let work = tempfile::tempdir().unwrap();
    let custodians: Vec<Custodian> = (1..=5).map(|i| custodian(work.path(), i)).collect();
    let mut cluster = LocalCluster::start(&binary(), ClusterOptions::default()).unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    let follower = (leader + 1) % 3;

    // Init with one key per custodian; the root token to custodian 1.
    let keys: Vec<String> = custodians
        .iter()
        .map(|c| c.public_key.display().to_string())
        .collect();
    let init = ok_json(
        operator(
            &cluster,
            follower,
            None,
            &[
                "init",
                "--key-shares",
                "5",
                "--key-threshold",
                "3",
                "--pgp-keys",
                &keys.join(","),
                "--root-token-pgp-key",
                &keys[0],
            ],
        ),
        "init",
    );
    let encrypted = strings(&init["keys"]);
    assert_eq!(encrypted.len(), 5);
    assert_eq!(strings(&init["pgp_fingerprints"]).len(), 5);
    for e in &encrypted {
        assert!(e.starts_with("-----BEGIN PGP MESSAGE-----"), "{e}");
    }
    let root_armored = init["root_token"].as_str().unwrap();
    assert!(
        !root_armored.contains("cft."),
        "the root token left in clear"
    );
    // Each custodian decrypts their own share only.
    let shares: Vec<String> = [0, 2, 4]
        .iter()
        .map(|&i| custodians[i].decrypt(&encrypted[i]))
        .collect();
    let failed = gpg(&custodians[1].home)
        .arg("--decrypt")
        .arg(work.path().join("custodian-1.asc"))
        .output()
        .unwrap();
    assert!(!failed.status.success());
    let initial_root = custodians[0].decrypt(root_armored);
    assert!(initial_root.starts_with("cft."));
    cluster.shares = shares.clone();
    cluster.root_token = Some(initial_root.clone());
    for i in 0..3 {
        cluster.unseal(i).await.unwrap();
    }
    let client = cluster.client().unwrap();
    client
        .secrets()
        .set("ceremony", "kept-through-rekey", &SetOptions::default())
        .await
        .unwrap();

    // Rekey to 3 shares / threshold 2, to custodians 2..4, with verification.
    let new_keys = keys[1..4].join(",");
    let started = ok_json(
        operator(
            &cluster,
            leader,
            Some(&initial_root),
            &[
                "rekey",
                "init",
                "--key-shares",
                "3",
                "--key-threshold",
                "2",
                "--pgp-keys",
                &new_keys,
                "--verify",
            ],
        ),
        "rekey init",
    );
    let nonce = started["nonce"].as_str().unwrap().to_string();
    assert_eq!(started["required"], 3);
    // A wrong nonce is refused and does not count.
    assert!(!operator(
        &cluster,
        leader,
        None,
        &["rekey", "--nonce", "nope", &shares[0]]
    )
    .status
    .success());
    let mut answer = Value::Null;
    for (n, share) in shares.iter().enumerate() {
        answer = ok_json(
            operator(&cluster, leader, None, &["rekey", "--nonce", &nonce, share]),
            "rekey update",
        );
        if n < 2 {
            assert_eq!(answer["progress"], n + 1);
            assert!(answer.get("keys").is_none());
        }
    }
    assert_eq!(answer["complete"], false);
    let new_encrypted = strings(&answer["keys"]);
    assert_eq!(new_encrypted.len(), 3);
    let new_shares: Vec<String> = new_encrypted
        .iter()
        .enumerate()
        .map(|(i, e)| custodians[i + 1].decrypt(e))
        .collect();
    let verification_nonce = answer["verification_nonce"].as_str().unwrap().to_string();

    // Not verified yet: the old shares still unseal, the new ones do not.
    let other = (leader + 2) % 3;
    assert!(reseal_and_unseal(&cluster, other, &initial_root, &shares));
    assert!(!reseal_and_unseal(
        &cluster,
        other,
        &initial_root,
        &new_shares[..2]
    ));
    cluster.unseal(other).await.unwrap();

    // The new holders verify (two of three suffice).
    for (n, share) in [&new_shares[2], &new_shares[0]].into_iter().enumerate() {
        let answer = ok_json(
            operator(
                &cluster,
                leader,
                None,
                &["rekey", "verify", "--nonce", &verification_nonce, share],
            ),
            "rekey verify",
        );
        assert_eq!(answer["complete"], n == 1, "{answer}");
    }

    // Every node: the old shares are refused, the new ones unseal, data kept.
    for i in 0..3 {
        let node = i;
        wait_until("the new seal config replicates", || {
            let out = operator(&cluster, node, None, &["status"]);
            let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            v["seal_status"]["t"] == 2
        })
        .await;
        assert!(
            !reseal_and_unseal(&cluster, i, &initial_root, &shares),
            "old shares unsealed node {}",
            i + 1
        );
        assert!(
            reseal_and_unseal(&cluster, i, &initial_root, &new_shares[1..]),
            "new shares did not unseal node {}",
            i + 1
        );
    }
    cluster.shares = new_shares.clone();
    // The data key rotates without custodians; old values stay readable.
    let rotated = ok_json(
        operator(&cluster, leader, Some(&initial_root), &["rotate"]),
        "rotate",
    );
    assert_eq!(rotated["term"], 2);
    let read = cluster
        .node_client(other)
        .unwrap()
        .secrets()
        .get("ceremony", None)
        .await
        .unwrap();
    assert_eq!(read.value.as_deref(), Some("kept-through-rekey"));

    // A ceremony is cancelled only with its nonce; then another may start.
    let started = ok_json(
        operator(&cluster, follower, None, &["generate-root", "init"]),
        "generate-root init",
    );
    let first_nonce = started["status"]["nonce"].as_str().unwrap().to_string();
    assert!(
        !operator(&cluster, follower, None, &["generate-root", "init"])
            .status
            .success()
    );
    assert!(!operator(
        &cluster,
        follower,
        None,
        &["generate-root", "cancel", "--nonce", "x"]
    )
    .status
    .success());
    let out = operator(
        &cluster,
        follower,
        None,
        &["generate-root", "cancel", "--nonce", &first_nonce],
    );
    assert!(out.status.success());

    // Generate-root with an OTP and a quorum of the new shares.
    let init = ok_json(
        operator(&cluster, follower, None, &["generate-root", "init"]),
        "generate-root init",
    );
    let otp = init["otp"].as_str().unwrap().to_string();
    let gr_nonce = init["status"]["nonce"].as_str().unwrap().to_string();
    // Old shares cannot make a root token.
    let out = operator(
        &cluster,
        follower,
        None,
        &["generate-root", "--nonce", &gr_nonce, &shares[0]],
    );
    assert!(out.status.success());
    let out = operator(
        &cluster,
        follower,
        None,
        &["generate-root", "--nonce", &gr_nonce, &shares[1]],
    );
    assert!(!out.status.success(), "old shares generated a root token");
    let mut answer = Value::Null;
    for share in &new_shares[..2] {
        answer = ok_json(
            operator(
                &cluster,
                follower,
                None,
                &["generate-root", "--nonce", &gr_nonce, share],
            ),
            "generate-root update",
        );
    }
    assert_eq!(answer["complete"], true);
    let encoded = answer["encoded_token"].as_str().unwrap();
    assert!(!encoded.contains("cft."));
    let out = operator(
        &cluster,
        follower,
        None,
        &[
            "generate-root",
            "decode",
            "--encoded",
            encoded,
            "--otp",
            &otp,
        ],
    );
    assert!(out.status.success());
    let new_root = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(new_root.starts_with("cft.") && new_root != initial_root);

    // Two root tokens; revoke the initial one with the new one.
    let listed = ok_json(
        operator(&cluster, leader, Some(&new_root), &["root", "list"]),
        "root list",
    );
    let origins: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["origin"].as_str().unwrap())
        .collect();
    assert_eq!(origins.len(), 2, "{listed}");
    assert!(origins.contains(&"init") && origins.contains(&"generate-root"));
    let revoked = ok_json(
        operator(&cluster, leader, Some(&new_root), &["root", "revoke"]),
        "root revoke",
    );
    assert_eq!(strings(&revoked["revoked"]).len(), 1);
    for i in 0..3 {
        let node = i;
        wait_until("the revocation replicates", || {
            let out = operator(&cluster, node, Some(&initial_root), &["vault", "list"]);
            !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("401")
        })
        .await;
        let out = operator(&cluster, i, Some(&new_root), &["vault", "list"]);
        assert!(out.status.success(), "new root refused on node {}", i + 1);
    }
    // The events are in the node's log, without any share or token.
    let log = cluster.log(leader) + &cluster.log(follower);
    for event in [
        "rekey.started",
        "rekey.shares_issued",
        "rekey.completed",
        "generate_root.completed",
        "root_token.revoked",
    ] {
        assert!(log.contains(event), "no {event} event in the logs");
    }
    for secret in shares
        .iter()
        .chain(&new_shares)
        .chain([&initial_root, &new_root])
    {
        assert!(
            !log.contains(secret.as_str()),
            "a share or token is in a log"
        );
    }
}
