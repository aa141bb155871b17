//! Coffer's private CA on a real 3-node cluster, judged by real clients:
//! `coffer cert ca create` makes a root and its `Coffer` issuer, a create
//! with that issuer answers `inProgress` and is complete at once, the leaf
//! verifies under the CA with `openssl verify`, an `openssl s_server`
//! using it is accepted by `curl --cacert`, and after `coffer cert revoke`
//! every node's OCSP responder tells `openssl ocsp` it is revoked and
//! every node's CRL (checked by `openssl crl`) lists its serial. Revocation
//! is a vault RBAC action: a Certificates Officer may, a Certificate User
//! may not (403 `ForbiddenByRbac`).

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use coffer_client::{Client, Request};
use jepsen_tests::cluster::{free_port, ClusterOptions, LocalCluster};
use serde_json::{json, Value};

mod common;
use common::binary;

const API: &str = "api-version=7.4";

async fn call(client: &Client, method: &str, path: &str, body: Option<Value>) -> Value {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut request = Request::new(method.parse().unwrap(), format!("{path}{sep}{API}"));
    if let Some(body) = body {
        request = request.json(&body).unwrap();
    }
    let response = client.send(request).await.unwrap();
    let status = response.status;
    let value: Value = response.json().unwrap_or(Value::Null);
    assert!(status.is_success(), "{method} {path}: {status} {value}");
    value
}

fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// Runs `cmd`, which must succeed; its stdout and stderr together.
fn run(cmd: &mut Command) -> String {
    let out = output(cmd);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// The PEM blocks labelled `label` in `pem`, each with its armour.
fn blocks(pem: &str, label: &str) -> Vec<String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(i) = rest.find(&begin) {
        let Some(j) = rest[i..].find(&end) else { break };
        out.push(format!("{}\n", &rest[i..i + j + end.len()]));
        rest = &rest[i + j + end.len()..];
    }
    out
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An `openssl s_server` with `leaf.pem` in `dir`, once `curl` trusting
/// `ca.pem` fetched its page into `page`. The port is picked before the
/// server binds it, so another process can take it in between; a server
/// that exits is started again on a new port.
async fn serve_leaf(dir: &Path, page: &Path) -> (Server, u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let port = free_port().unwrap();
        let mut server = Server(
            Command::new("openssl")
                .args(["s_server", "-quiet", "-www", "-accept", &port.to_string()])
                .args(["-cert", "leaf.pem", "-key", "key.pem"])
                .current_dir(dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        loop {
            let got = curl(
                &dir.join("ca.pem"),
                &format!("https://localhost:{port}/"),
                page,
            );
            if got.status.success() {
                return (server, port);
            }
            assert!(Instant::now() < deadline, "curl never got through: {got:?}");
            if server.0.try_wait().unwrap().is_some() {
                break; // lost the port: try another
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// `curl` of `url` trusting `ca` (a file), the body saved to `out`.
fn curl(ca: &Path, url: &str, out: &Path) -> Output {
    output(
        Command::new("curl")
            .args(["--fail", "-sS", "--max-time", "10", "--cacert"])
            .arg(ca)
            .arg(url)
            .arg("-o")
            .arg(out),
    )
}

/// `openssl ocsp` for `leaf` of `ca` against `url`: its report.
fn ocsp(dir: &Path, url: &str) -> String {
    run(Command::new("openssl")
        .args([
            "ocsp", "-issuer", "ca.pem", "-cert", "leaf.pem", "-CAfile", "ca.pem",
        ])
        .args(["-url", url, "-timeout", "10"])
        .current_dir(dir))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_ca_issues_and_revokes_for_openssl_and_curl() {
    let mut cluster = LocalCluster::start(&binary(), ClusterOptions::default()).unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    cluster.init(leader, 3, 2).await.unwrap();
    let dir = cluster.dir().join("pki");
    std::fs::create_dir_all(&dir).unwrap();
    let cluster_ca = cluster.ca_path.clone();
    let token = cluster.root_token.clone().unwrap();
    let follower = (leader + 1) % 3;
    let urls: Vec<String> = cluster.nodes.iter().map(|n| n.url()).collect();
    let cli = |url: &str| {
        let mut c = Command::new(binary());
        c.env("COFFER_TOKEN", &token)
            .env("COFFER_ADDR", url)
            .env("COFFER_CACERT", &cluster_ca);
        c
    };

    // The CA: a root certificate in the vault and the issuer naming it.
    let made = run(cli(&urls[follower]).args([
        "cert",
        "ca",
        "create",
        "corp-root",
        "--subject",
        "CN=Coffer Test Root, O=Coffer",
        "--issuer",
        "corp",
    ]));
    assert!(made.contains("/certificates/issuers/corp"), "{made}");

    // A leaf for localhost: create answers inProgress, the operation is
    // already complete.
    let client = cluster.node_client(follower).unwrap();
    let policy = json!({
        "key_props": {"kty": "RSA", "key_size": 2048, "exportable": true},
        "secret_props": {"contentType": "application/x-pem-file"},
        "x509_props": {"subject": "CN=localhost",
                       "sans": {"dns_names": ["localhost"], "ipAddresses": ["127.0.0.1"]},
                       "validity_months": 3},
        "issuer": {"name": "corp"},
    });
    let op = call(
        &client,
        "POST",
        "/certificates/web/create",
        Some(json!({ "policy": policy })),
    )
    .await;
    assert_eq!(op["status"], "inProgress", "{op}");
    let pending = call(&client, "GET", "/certificates/web/pending", None).await;
    assert_eq!(pending["status"], "completed", "{pending}");
    let secret = call(&client, "GET", "/secrets/web/", None).await;
    let pem = secret["value"].as_str().unwrap();
    let certs = blocks(pem, "CERTIFICATE");
    assert_eq!(certs.len(), 2, "leaf and CA in the secret");
    std::fs::write(dir.join("leaf.pem"), &certs[0]).unwrap();
    std::fs::write(dir.join("key.pem"), &blocks(pem, "PRIVATE KEY")[0]).unwrap();

    // The CA certificate from another node, without a token.
    let other = (leader + 2) % 3;
    let got = curl(
        &cluster_ca,
        &format!("{}/v1/pki/default/corp/ca.pem", urls[other]),
        &dir.join("ca.pem"),
    );
    assert!(got.status.success(), "{got:?}");
    assert_eq!(
        std::fs::read_to_string(dir.join("ca.pem")).unwrap(),
        certs[1]
    );

    let verified = run(Command::new("openssl")
        .args(["verify", "-CAfile", "ca.pem", "leaf.pem"])
        .current_dir(&dir));
    assert!(verified.contains("leaf.pem: OK"), "{verified}");

    // A TLS server with the leaf: curl trusts it through the CA only.
    let page = dir.join("page.html");
    let (_server, port) = serve_leaf(&dir, &page).await;
    assert!(std::fs::read_to_string(&page).unwrap().contains("s_server"));
    let untrusted = curl(&cluster_ca, &format!("https://localhost:{port}/"), &page);
    assert!(!untrusted.status.success(), "a CA the leaf is not from");

    // The embedded responder is the issuer's, on the node it was set on.
    let uri = run(Command::new("openssl")
        .args(["x509", "-noout", "-ocsp_uri", "-in", "leaf.pem"])
        .current_dir(&dir));
    assert_eq!(
        uri.trim(),
        format!("{}/v1/pki/default/corp/ocsp", urls[follower])
    );
    for url in &urls {
        let report = ocsp(&dir, &format!("{url}/v1/pki/default/corp/ocsp"));
        assert!(report.contains("Response verify OK"), "{report}");
        assert!(report.contains("leaf.pem: good"), "{report}");
    }

    // Revocation is a vault RBAC action (`certificates/revoke/action`):
    // a Certificate User (read only) is refused before anything happens, a
    // Certificates Officer revokes, through a follower.
    let tenant = call(&client, "GET", "/v1/sys/identity/tenant", None).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoke_body = json!({"certificate": "web", "reason": "keyCompromise"});
    let user = principal(&cluster, &client, &tenant, "cert-user", CERTIFICATE_USER).await;
    let (status, refused) = revoke_as(&user, &revoke_body).await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["error"]["innererror"]["code"], "ForbiddenByRbac");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("certificates/revoke/action"),
        "{refused}"
    );
    let good = ocsp(&dir, &format!("{}/v1/pki/default/corp/ocsp", urls[other]));
    assert!(
        good.contains("leaf.pem: good"),
        "refused, so not revoked: {good}"
    );
    let officer = principal(
        &cluster,
        &client,
        &tenant,
        "cert-officer",
        CERTIFICATES_OFFICER,
    )
    .await;
    let (status, done) = revoke_as(&officer, &revoke_body).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["reason"], "keyCompromise");

    // The CLI with the root token (break-glass) through the leader answers
    // the same revocation; every node answers from it at once.
    let revoked = run(cli(&urls[leader]).args([
        "cert",
        "revoke",
        "web",
        "--issuer",
        "corp",
        "--reason",
        "keyCompromise",
    ]));
    assert!(revoked.contains("keyCompromise"), "{revoked}");
    let serial = run(Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in", "leaf.pem"])
        .current_dir(&dir));
    let serial = serial.trim().trim_start_matches("serial=").to_owned();
    for (i, url) in urls.iter().enumerate() {
        let report = ocsp(&dir, &format!("{url}/v1/pki/default/corp/ocsp"));
        assert!(report.contains("Response verify OK"), "{report}");
        assert!(report.contains("leaf.pem: revoked"), "{report}");
        assert!(report.contains("Reason: keyCompromise"), "{report}");

        let crl = dir.join(format!("crl{i}.der"));
        let got = curl(&cluster_ca, &format!("{url}/v1/pki/default/corp/crl"), &crl);
        assert!(got.status.success(), "{got:?}");
        let text = run(Command::new("openssl")
            .args([
                "crl", "-inform", "DER", "-text", "-noout", "-CAfile", "ca.pem", "-in",
            ])
            .arg(&crl)
            .current_dir(&dir));
        assert!(text.contains("verify OK"), "{text}");
        assert!(text.contains(&format!("Serial Number: {serial}")), "{text}");
        assert!(text.contains("Key Compromise"), "{text}");
    }
    // openssl's own chain check with the CRL refuses the leaf.
    run(Command::new("openssl")
        .args([
            "crl", "-inform", "DER", "-in", "crl0.der", "-out", "crl.pem",
        ])
        .current_dir(&dir));
    let refused = output(
        Command::new("openssl")
            .args([
                "verify",
                "-crl_check",
                "-CAfile",
                "ca.pem",
                "-CRLfile",
                "crl.pem",
            ])
            .arg("leaf.pem")
            .current_dir(&dir),
    );
    let text = String::from_utf8_lossy(&refused.stdout).to_string()
        + &String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{text}");
    assert!(text.contains("certificate revoked"), "{text}");

    // Revocation needs a token; CRL and OCSP do not.
    let anonymous = output(
        Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(&cluster_ca)
            .args(["-X", "POST", "-H", "content-type: application/json"])
            .args(["-d", r#"{"certificate":"web"}"#])
            .arg(format!("{}/v1/pki/default/corp/revoke", urls[other])),
    );
    assert_eq!(String::from_utf8_lossy(&anonymous.stdout), "401");
}

/// Key Vault Certificate User (built-in role id).
const CERTIFICATE_USER: &str = "db79e9a7-68ee-4b58-9aeb-b90e7c24fcba";
/// Key Vault Certificates Officer (built-in role id).
const CERTIFICATES_OFFICER: &str = "a4417e6f-fecd-4de8-b567-7b0420556985";

/// A client of a follower for a new application `name` that holds `role`
/// on the default vault (assigned by `root`), with its access token.
async fn principal(
    cluster: &LocalCluster,
    root: &Client,
    tenant: &str,
    name: &str,
    role: &str,
) -> Client {
    let app = call(
        root,
        "POST",
        "/v1/sys/identity/apps",
        Some(json!({ "name": name })),
    )
    .await;
    let oid = app["object_id"].as_str().unwrap();
    let client_id = app["app"]["client_id"].as_str().unwrap();
    let path = format!("/v1/sys/identity/apps/{name}/secrets");
    let secret = call(root, "POST", &path, Some(json!({}))).await;
    let secret = secret["secret"].as_str().unwrap();
    let assignment = format!("/providers/Microsoft.Authorization/roleAssignments/{oid}");
    let body = json!({"properties": {"roleDefinitionId": role, "principalId": oid}});
    call(root, "PUT", &assignment, Some(body)).await;
    let token = common::app_token(root, tenant, client_id, secret).await;
    let mut cfg = cluster.client_config(vec![cluster.nodes[1].url()]).unwrap();
    cfg.token = Some(token);
    cfg.max_attempts = 1;
    Client::new(cfg).unwrap()
}

/// `POST /v1/pki/default/corp/revoke` as `client`: status and body.
async fn revoke_as(client: &Client, body: &Value) -> (u16, Value) {
    let req = Request::post("/v1/pki/default/corp/revoke")
        .json(body)
        .unwrap();
    let resp = client.send(req).await.unwrap();
    (resp.status.as_u16(), resp.json().unwrap_or(Value::Null))
}

/// How far ahead the nodes' clock is moved for the renewal: past 80 % of a
/// one-month certificate (80 % of 31 days is 24.8 days), before its end.
const OFFSET: u64 = 25 * 86_400;

/// The number of versions of certificate `name`.
async fn versions(client: &Client, name: &str) -> Option<usize> {
    let request = Request::get(format!("/certificates/{name}/versions?{API}"));
    let response = client.send(request).await.ok()?;
    if !response.status.is_success() {
        return None;
    }
    let value: Value = response.json().ok()?;
    value["value"].as_array().map(Vec::len)
}

/// AutoRenew of a certificate issued by the Coffer CA, carried out by the
/// leader without an operator: every node's clock is moved past 80 % of
/// the certificate's life (test-only `unsafe_clock_offset_secs`), the
/// leader that renews is killed the moment the new version is visible, and
/// the next leader does not renew again: exactly one new version.
#[tokio::test(flavor = "multi_thread")]
async fn auto_renew_makes_one_version_when_the_leader_is_killed_at_renewal() {
    let options = ClusterOptions {
        lifecycle_interval_secs: Some(1),
        ..ClusterOptions::default()
    };
    let mut cluster = LocalCluster::start(&binary(), options).unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    cluster.init(leader, 3, 2).await.unwrap();
    let client = cluster.client().unwrap();
    let ca_policy = json!({
        "key_props": {"kty": "EC", "crv": "P-256", "exportable": false},
        "x509_props": {"subject": "CN=Renewal Root", "validity_months": 120,
                       "basic_constraints": {"ca": true}},
        "issuer": {"name": "Self"},
    });
    call(
        &client,
        "POST",
        "/certificates/renewal-root/create",
        Some(json!({ "policy": ca_policy })),
    )
    .await;
    call(
        &client,
        "PUT",
        "/certificates/issuers/renewal-ca",
        Some(json!({"provider": "Coffer", "credentials": {"account_id": "renewal-root"}})),
    )
    .await;
    let leaf_policy = json!({
        "key_props": {"kty": "EC", "crv": "P-256"},
        "x509_props": {"subject": "CN=renewing.coffer.test", "validity_months": 1},
        "issuer": {"name": "renewal-ca"},
        "lifetime_actions": [{"trigger": {"lifetime_percentage": 80},
                              "action": {"action_type": "AutoRenew"}}],
    });
    call(
        &client,
        "POST",
        "/certificates/svc/create",
        Some(json!({ "policy": leaf_policy })),
    )
    .await;
    let first = call(&client, "GET", "/certificates/svc/", None).await;
    assert_eq!(versions(&client, "svc").await, Some(1));

    // 25 days later on every node.
    for i in 0..3 {
        let path = cluster.config_path(i).to_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            format!("unsafe_clock_offset_secs = {OFFSET}\n{text}"),
        )
        .unwrap();
        cluster.kill(i);
    }
    for i in 0..3 {
        cluster.restart(i).unwrap();
    }
    for i in 0..3 {
        cluster.unseal(i).await.unwrap();
    }
    // Kill whoever leads the moment the renewal is visible.
    let deadline = Instant::now() + Duration::from_secs(60);
    let renewing_leader = loop {
        if versions(&client, "svc").await == Some(2) {
            let leader = cluster
                .wait_for_leader(Duration::from_secs(5))
                .await
                .unwrap();
            cluster.kill(leader);
            break leader;
        }
        assert!(Instant::now() < deadline, "no renewal within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let next = cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .unwrap();
    assert_ne!(next, renewing_leader);
    // Several lifecycle ticks of the new leader: nothing more to renew.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let survivors = cluster.node_client(next).unwrap();
    assert_eq!(versions(&survivors, "svc").await, Some(2));
    let second = call(&survivors, "GET", "/certificates/svc/", None).await;
    assert_ne!(second["id"], first["id"]);
    assert!(second["attributes"]["exp"].as_i64() > first["attributes"]["exp"].as_i64());
    // Renewed by the CA, not self-signed.
    let root = call(&survivors, "GET", "/certificates/renewal-root/", None).await;
    let dir = cluster.dir().join("renewal");
    std::fs::create_dir_all(&dir).unwrap();
    for (file, cert) in [("root.pem", &root), ("leaf.pem", &second)] {
        let der = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            cert["cer"].as_str().unwrap(),
        )
        .unwrap();
        std::fs::write(dir.join(file.replace(".pem", ".der")), der).unwrap();
        run(Command::new("openssl")
            .args([
                "x509",
                "-inform",
                "DER",
                "-in",
                &file.replace(".pem", ".der"),
                "-out",
                file,
            ])
            .current_dir(&dir));
    }
    // At the nodes' (shifted) time: the renewed leaf starts then.
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + OFFSET;
    let verified = run(Command::new("openssl")
        .args([
            "verify",
            "-attime",
            &at.to_string(),
            "-CAfile",
            "root.pem",
            "leaf.pem",
        ])
        .current_dir(&dir));
    assert!(verified.contains("leaf.pem: OK"), "{verified}");
}
