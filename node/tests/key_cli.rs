//! `coffer key …` against a real one-node cluster: create, sign a file and
//! verify it (and a tampered file fails with exit status 1), encrypt and
//! decrypt through a pipe, rotate, rotation policy, versions, delete.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use jepsen_tests::cluster::{ClusterOptions, LocalCluster};
use serde_json::Value;

fn coffer(cluster: &LocalCluster, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .arg("key")
        .args(args)
        .arg("--addr")
        .arg(cluster.nodes[0].url())
        .arg("--ca-cert")
        .arg(&cluster.ca_path)
        .env("COFFER_TOKEN", cluster.root_token.clone().unwrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running coffer");
    let mut input = child.stdin.take().unwrap();
    if let Some(data) = stdin {
        input.write_all(data).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "coffer key {what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(out: Output, what: &str) -> Value {
    serde_json::from_str(&ok(out, what)).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_key_commands_work_end_to_end() {
    let cluster = LocalCluster::start_ready(
        &std::path::PathBuf::from(env!("CARGO_BIN_EXE_coffer")),
        ClusterOptions {
            nodes: 1,
            ..ClusterOptions::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("release.tar");
    std::fs::write(&file, b"release contents").unwrap();
    let file = file.to_str().unwrap();

    let made = json(
        coffer(
            &cluster,
            &[
                "create", "signer", "--kty", "EC", "--curve", "P-256", "--json",
            ],
            None,
        ),
        "create",
    );
    assert_eq!(made["key"]["kty"], "EC", "{made}");
    assert_eq!(made["key"]["crv"], "P-256", "{made}");
    assert!(made["key"].get("d").is_none(), "no private member: {made}");

    let sig = ok(
        coffer(
            &cluster,
            &["sign", "signer", "--alg", "ES256", "--file", file],
            None,
        ),
        "sign",
    );
    let sig = sig.trim();
    let verified = coffer(
        &cluster,
        &[
            "verify",
            "signer",
            "--alg",
            "ES256",
            "--file",
            file,
            "--signature",
            sig,
        ],
        None,
    );
    assert_eq!(ok(verified, "verify").trim(), "valid");
    std::fs::write(file, b"tampered contents").unwrap();
    let tampered = coffer(
        &cluster,
        &[
            "verify",
            "signer",
            "--alg",
            "ES256",
            "--file",
            file,
            "--signature",
            sig,
        ],
        None,
    );
    assert_eq!(tampered.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&tampered.stdout).trim(), "invalid");

    // Encrypt from stdin, decrypt to stdout.
    ok(
        coffer(
            &cluster,
            &["create", "wrapper", "--kty", "RSA", "--size", "2048"],
            None,
        ),
        "create rsa",
    );
    let plaintext = b"a data encryption key\x00\xff";
    let ct = ok(
        coffer(
            &cluster,
            &["encrypt", "wrapper", "--alg", "RSA-OAEP-256"],
            Some(plaintext),
        ),
        "encrypt",
    );
    let back = coffer(
        &cluster,
        &[
            "decrypt",
            "wrapper",
            "--alg",
            "RSA-OAEP-256",
            "--ciphertext",
            ct.trim(),
        ],
        None,
    );
    assert!(
        back.status.success(),
        "{}",
        String::from_utf8_lossy(&back.stderr)
    );
    assert_eq!(back.stdout, plaintext);

    // Rotate: a second version; the rotation policy round-trips.
    let rotated = json(
        coffer(&cluster, &["rotate", "signer", "--json"], None),
        "rotate",
    );
    let versions = json(
        coffer(&cluster, &["versions", "signer", "--json"], None),
        "versions",
    );
    assert_eq!(versions.as_array().unwrap().len(), 2, "{versions}");
    assert!(
        rotated["key"]["kid"]
            .as_str()
            .unwrap()
            .starts_with("https://"),
        "{rotated}"
    );
    let policy = json(
        coffer(
            &cluster,
            &[
                "rotation-policy",
                "signer",
                "--rotate-after",
                "P90D",
                "--expiry",
                "P1Y",
            ],
            None,
        ),
        "rotation-policy set",
    );
    assert_eq!(
        policy["lifetimeActions"][0]["trigger"]["timeAfterCreate"], "P90D",
        "{policy}"
    );
    let read = json(
        coffer(&cluster, &["rotation-policy", "signer"], None),
        "rotation-policy get",
    );
    assert_eq!(read["attributes"]["expiryTime"], "P1Y", "{read}");

    // The list shows both keys; delete moves one to the deleted list.
    let listed = json(coffer(&cluster, &["list", "--json"], None), "list");
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    ok(coffer(&cluster, &["delete", "wrapper"], None), "delete");
    let deleted = json(
        coffer(&cluster, &["list", "--deleted", "--json"], None),
        "list --deleted",
    );
    assert_eq!(deleted.as_array().unwrap().len(), 1, "{deleted}");
    // A bad name is refused by the client before any request.
    let bad = coffer(&cluster, &["get", "../sys"], None);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid object name"));
}
