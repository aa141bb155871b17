//! Clients on hosts of their own for the tests of a cluster whose nodes run
//! in network namespaces (`network_rules`, `bound_cidrs`): HTTP exchanges
//! made with `curl` from a client namespace (or the root namespace, the
//! bridge address, which those tests configure as the trusted proxy), and
//! the operator CLI.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::PathBuf;
use std::process::Command;

use jepsen_tests::cluster::LocalCluster;
use serde_json::Value;

/// The clusters' `vault_domain`: vault `fw` is `fw.vault.test`.
pub const DOMAIN: &str = "vault.test";

/// The `coffer` binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_coffer"))
}

/// One HTTP exchange made with curl from namespace `ns` (`None`: the root
/// namespace, the bridge address, which is the trusted proxy).
pub struct Call<'a> {
    /// Client namespace (`None`: the root namespace, the trusted proxy).
    pub ns: Option<&'a str>,
    /// Node URL.
    pub node: &'a str,
    /// Vault (the Host header); `default`: a bare host.
    pub vault: &'a str,
    /// HTTP method.
    pub method: &'a str,
    /// Path (`api-version=7.4` is appended).
    pub path: &'a str,
    /// Bearer token.
    pub token: Option<&'a str>,
    /// `X-Forwarded-For`.
    pub xff: Option<&'a str>,
    /// Request body.
    pub body: Option<&'a str>,
    /// `body` is a form (`application/x-www-form-urlencoded`), not JSON.
    pub form: bool,
    /// `x-ms-client-request-id` (the audit record's `correlationId`).
    pub request_id: Option<&'a str>,
}

/// `GET /secrets` on vault `fw` of `node`, from `ns`.
pub fn call<'a>(
    ns: Option<&'a str>,
    node: &'a str,
    xff: Option<&'a str>,
    token: Option<&'a str>,
) -> Call<'a> {
    Call {
        ns,
        node,
        vault: "fw",
        method: "GET",
        path: "/secrets",
        token,
        xff,
        body: None,
        form: false,
        request_id: None,
    }
}

/// Runs the exchange: (status, body).
pub fn curl(cluster: &LocalCluster, c: &Call) -> (u16, String) {
    let mut cmd = match c.ns {
        Some(ns) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", ns, "curl"]);
            cmd
        }
        None => Command::new("curl"),
    };
    let host = if c.vault == "default" {
        "coffer".to_owned()
    } else {
        format!("{}.{DOMAIN}", c.vault)
    };
    cmd.args([
        "-sS",
        "--http1.1",
        "--max-time",
        "20",
        "-w",
        "\n%{http_code}",
        "-X",
        c.method,
    ])
    .arg("--cacert")
    .arg(&cluster.ca_path)
    .args(["-H", &format!("Host: {host}")]);
    if let Some(t) = c.token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(x) = c.xff {
        cmd.args(["-H", &format!("X-Forwarded-For: {x}")]);
    }
    if let Some(id) = c.request_id {
        cmd.args(["-H", &format!("x-ms-client-request-id: {id}")]);
    }
    if let Some(b) = c.body {
        let kind = if c.form {
            "application/x-www-form-urlencoded"
        } else {
            "application/json"
        };
        cmd.args(["-H", &format!("Content-Type: {kind}"), "--data", b]);
    }
    let sep = if c.path.contains('?') { '&' } else { '?' };
    cmd.arg(format!("{}{}{sep}api-version=7.4", c.node, c.path));
    let out = cmd.output().expect("running curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, status) = text.rsplit_once('\n').expect("status line");
    (status.trim().parse().expect("status"), body.to_owned())
}

/// `coffer operator vault …` from the root namespace (the operator API is
/// not behind a vault's network rules).
pub fn cli(cluster: &LocalCluster, args: &[&str]) -> Value {
    coffer(cluster, &["operator", "vault"], args)
}

/// `coffer {command…} {args…} --json` with the root token, from the root
/// namespace; its JSON output.
pub fn coffer(cluster: &LocalCluster, command: &[&str], args: &[&str]) -> Value {
    let out = Command::new(binary())
        .args(command)
        .args(args)
        .args(["--json", "--addr"])
        .arg(cluster.nodes[1].url())
        .arg("--ca-cert")
        .arg(&cluster.ca_path)
        .env("COFFER_TOKEN", cluster.root_token.clone().unwrap())
        .output()
        .expect("running coffer");
    assert!(
        out.status.success(),
        "coffer {command:?} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json output")
}

/// Asserts a 403 `ForbiddenByFirewall` naming `client`.
pub fn firewall_refusal(status: u16, body: &str, client: &str) {
    assert_eq!(status, 403, "{body}");
    let v: Value = serde_json::from_str(body).expect("json error body");
    assert_eq!(v["error"]["code"], "Forbidden", "{body}");
    assert_eq!(
        v["error"]["innererror"]["code"], "ForbiddenByFirewall",
        "{body}"
    );
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("Client address: {client}\r\n")),
        "{body}"
    );
}
