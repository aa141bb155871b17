//! The built-in issuer on a real 3-node cluster: a token from one node
//! works on the others, bad tokens get 401 with the challenge (never 500),
//! disabling a principal or removing its secret stops its token within
//! seconds on every node, failed secrets lock the app out, rotation keeps
//! live tokens, and tokens survive a leader failover and a restart.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use bytes::Bytes;
use coffer_client::{Client, Request, Response};
use jepsen_tests::cluster::{ClusterOptions, LocalCluster};
use raw::*;
use serde_json::{json, Value};

#[path = "identity_cluster/users.rs"]
mod users;

/// HTTP helpers on top of the project's client, sending no token of their own.
mod raw {
    use super::*;

    /// A client for node `i` that sends no token unless told to.
    pub fn anonymous(cluster: &LocalCluster, i: usize) -> Client {
        let mut cfg = cluster.client_config(vec![cluster.nodes[i].url()]).unwrap();
        cfg.token = None;
        cfg.max_attempts = 1;
        Client::new(cfg).unwrap()
    }

    /// `GET /secrets/{name}` with `Authorization: Bearer {token}`:
    /// (status, `WWW-Authenticate`).
    pub async fn read_secret(client: &Client, name: &str, token: &str) -> (u16, String) {
        let req = Request::get(format!("/secrets/{name}?api-version=7.4")).header(
            "authorization".parse().unwrap(),
            format!("Bearer {token}").parse().unwrap(),
        );
        let resp = client.send(req).await.unwrap();
        let challenge = resp
            .headers
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (resp.status.as_u16(), challenge)
    }

    /// `POST {path}` with an `application/x-www-form-urlencoded` body.
    pub async fn post_form(client: &Client, path: &str, form: &[(&str, &str)]) -> Response {
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut req = Request::post(path).header(
            "content-type".parse().unwrap(),
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        req.body = Some(Bytes::from(body));
        client.send(req).await.unwrap()
    }

    /// `POST /{tenant}/oauth2/v2.0/token` with a form: (status, JSON body).
    pub async fn token_request(
        client: &Client,
        tenant: &str,
        form: &[(&str, &str)],
    ) -> (u16, Value) {
        let resp = post_form(client, &format!("/{tenant}/oauth2/v2.0/token"), form).await;
        (resp.status.as_u16(), resp.json().unwrap_or(Value::Null))
    }
}

/// An initialised 3-node cluster with the secret `hello` and a root client.
async fn started() -> (LocalCluster, Client) {
    let mut cluster = LocalCluster::start(&binary(), ClusterOptions::default()).unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    cluster.init(leader, 3, 2).await.unwrap();
    let root = cluster.client().unwrap();
    root.secrets()
        .set("hello", "world", &Default::default())
        .await
        .unwrap();
    (cluster, root)
}

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_coffer"))
}

async fn admin(client: &Client, method: &str, path: &str, body: Option<Value>) -> Value {
    let mut req = Request::new(method.parse().unwrap(), format!("/v1/sys/identity{path}"));
    if let Some(b) = body {
        req = req.json(&b).unwrap();
    }
    let resp = client.send(req).await.unwrap();
    let status = resp.status;
    let v = resp.json().unwrap_or(Value::Null);
    assert!(status.is_success(), "{method} {path}: {status} {v}");
    v
}

/// Identity alone opens nothing: grants `object_id` Key Vault Secrets User
/// on the default vault, with the root token (break-glass). The assignment
/// is named after the principal.
async fn grant_secrets_user(root: &Client, object_id: &str) {
    let req = Request::put(format!(
        "/providers/Microsoft.Authorization/roleAssignments/{object_id}?api-version=7.4"
    ))
    .json(&json!({"properties": {
        "roleDefinitionId": "4633458b-17de-408a-b874-0445c86b69e6",
        "principalId": object_id,
    }}))
    .unwrap();
    let resp = root.send(req).await.unwrap();
    assert_eq!(resp.status, 201, "{:?}", resp.json::<Value>());
}

async fn app_token(client: &Client, tenant: &str, client_id: &str, secret: &str) -> String {
    let (status, body) = token_request(
        client,
        tenant,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", "https://vault.azure.net/.default"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    body["access_token"].as_str().unwrap().to_owned()
}

/// Polls until `read_secret` on `client` answers `want` (replication and
/// the local principal check take a moment on followers).
async fn eventually(client: &Client, token: &str, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = read_secret(client, "hello", token).await;
        if status == want {
            return;
        }
        assert!(Instant::now() < deadline, "still {status}, wanted {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn issuer_tokens_work_across_nodes_and_bad_ones_get_the_challenge() {
    let (mut cluster, root) = started().await;

    let tenant = admin(&root, "GET", "/tenant", None).await;
    let tid = tenant["id"].as_str().unwrap().to_owned();
    let app = admin(&root, "POST", "/apps", Some(json!({"name": "billing"}))).await;
    grant_secrets_user(&root, app["object_id"].as_str().unwrap()).await;
    let client_id = app["app"]["client_id"].as_str().unwrap().to_owned();
    let secret = admin(&root, "POST", "/apps/billing/secrets", Some(json!({}))).await;
    let secret_value = secret["secret"].as_str().unwrap().to_owned();

    let a = anonymous(&cluster, 0);
    let b = anonymous(&cluster, 1);
    let c = anonymous(&cluster, 2);

    // Discovery names the node asked and the tenant GUID; also by name.
    for t in [tid.as_str(), "coffer"] {
        let resp = a
            .send(Request::get(format!(
                "/{t}/v2.0/.well-known/openid-configuration"
            )))
            .await
            .unwrap();
        assert_eq!(resp.status, 200);
        let doc: Value = resp.json().unwrap();
        let base = format!("https://{}/{tid}", cluster.nodes[0].api_addr);
        assert_eq!(doc["token_endpoint"], format!("{base}/oauth2/v2.0/token"));
        assert_eq!(doc["issuer"], format!("{base}/v2.0"));
    }
    let jwks: Value = a
        .send(Request::get(format!("/{tid}/discovery/v2.0/keys")))
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);

    // A token from node 1 (by tenant name) reads on nodes 2 and 3.
    let token = app_token(&a, "coffer", &client_id, &secret_value).await;
    for node in [&b, &c] {
        eventually(node, &token, 200).await;
    }
    // A token for this cluster's own resource URI also works.
    let (status, body) = token_request(
        &b,
        &tid,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &client_id),
            ("client_secret", &secret_value),
            (
                "scope",
                &format!("https://{}/.default", cluster.nodes[2].api_addr),
            ),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    eventually(&c, body["access_token"].as_str().unwrap(), 200).await;

    // The table of bad tokens: 401 with the challenge naming the tenant.
    let parts: Vec<&str> = token.split('.').collect();
    let head: Value = serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    let reheader = |h: Value| format!("{}.{}.{}", B64.encode(h.to_string()), parts[1], parts[2]);
    let reclaim = |k: &str, v: Value| {
        let mut cl = claims.clone();
        cl[k] = v;
        format!("{}.{}.{}", parts[0], B64.encode(cl.to_string()), parts[2])
    };
    let bad: Vec<(&str, String)> = vec![
        (
            "alg none",
            format!(
                "{}.{}.",
                B64.encode(json!({"alg":"none"}).to_string()),
                parts[1]
            ),
        ),
        (
            "HS256",
            reheader(json!({"alg":"HS256","typ":"JWT","kid":head["kid"]})),
        ),
        (
            "unknown kid",
            reheader(json!({"alg":"RS256","typ":"JWT","kid":"nope"})),
        ),
        // Edited claims break the signature whatever they say.
        ("wrong aud", reclaim("aud", json!("https://evil.example"))),
        (
            "other tenant",
            reclaim("tid", json!("00000000-0000-0000-0000-000000000000")),
        ),
        ("expired", reclaim("exp", json!(1))),
        ("truncated", token[..token.len() - 20].to_owned()),
        ("garbage", "a.b.c".into()),
    ];
    for (name, t) in &bad {
        let (status, challenge) = read_secret(&b, "hello", t).await;
        assert_eq!(status, 401, "{name}");
        assert!(
            challenge.contains(&format!("/{tid}\""))
                && challenge.starts_with("Bearer authorization=\"https://"),
            "{name}: {challenge}"
        );
    }

    // Wrong secrets: invalid_client, then the lockout refuses even the right one.
    for _ in 0..5 {
        let (status, body) = token_request(
            &a,
            &tid,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &client_id),
                ("client_secret", "cfs.wrong"),
                ("scope", "https://vault.azure.net/.default"),
            ],
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client")),
            "{body}"
        );
    }
    let (status, body) = token_request(
        &c,
        &tid,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &client_id),
            ("client_secret", &secret_value),
            ("scope", "https://vault.azure.net/.default"),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    // The live token is unaffected; the operator can lift the lock.
    eventually(&c, &token, 200).await;
    admin(&root, "POST", "/apps/billing/unlock", None).await;
    app_token(&c, &tid, &client_id, &secret_value).await;

    // Rotation keeps the live token and adds a key.
    admin(&root, "POST", "/signing-keys/rotate", None).await;
    let keys = admin(&root, "GET", "/signing-keys", None).await;
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2);
    eventually(&b, &token, 200).await;

    let ops = admin(&root, "POST", "/apps", Some(json!({"name": "ops"}))).await;
    grant_secrets_user(&root, ops["object_id"].as_str().unwrap()).await;
    let ops = admin(&root, "GET", "/apps/ops", None).await;
    let ops_id = ops["app"]["client_id"].as_str().unwrap().to_owned();
    let ops_secret = admin(&root, "POST", "/apps/ops/secrets", Some(json!({}))).await;
    let ops_token = app_token(&b, &tid, &ops_id, ops_secret["secret"].as_str().unwrap()).await;
    assert_eq!(
        jsonwebtoken_kid(&ops_token),
        keys["keys"][0]["kid"].as_str().unwrap(),
        "new tokens use the new key"
    );
    eventually(&a, &ops_token, 200).await;

    // Disabling stops the token on every node within seconds; enabling restores it.
    admin(&root, "POST", "/apps/ops/disable", None).await;
    for node in [&a, &b, &c] {
        eventually(node, &ops_token, 401).await;
    }
    admin(&root, "POST", "/apps/ops/enable", None).await;
    eventually(&c, &ops_token, 200).await;
    // Removing the secret it was obtained with stops it too.
    let sid = ops_secret["id"].as_str().unwrap();
    admin(&root, "DELETE", &format!("/apps/ops/secrets/{sid}"), None).await;
    eventually(&a, &ops_token, 401).await;

    // Leader failover and a restart: the first token still works.
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    cluster.kill(leader);
    let survivor = (leader + 1) % 3;
    cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .unwrap();
    eventually(&anonymous(&cluster, survivor), &token, 200).await;
    cluster.restart(leader).unwrap();
    cluster.unseal(leader).await.unwrap();
    eventually(&anonymous(&cluster, leader), &token, 200).await;
}

fn jsonwebtoken_kid(token: &str) -> String {
    let head: Value =
        serde_json::from_slice(&B64.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
    head["kid"].as_str().unwrap().to_owned()
}

/// Runs `coffer identity …` against the cluster with the root token.
fn cli(cluster: &LocalCluster, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write as _;
    let mut child = std::process::Command::new(binary())
        .arg("identity")
        .args(args)
        .env("COFFER_ADDR", cluster.nodes[0].url())
        .env("COFFER_CACERT", &cluster.ca_path)
        .env("COFFER_TOKEN", cluster.root_token.clone().unwrap())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_manages_principals_and_enrols_totp_with_a_qr_code() {
    let (cluster, _) = started().await;

    let (ok, out, err) = cli(&cluster, &["tenant"], None);
    assert!(ok, "{err}");
    assert!(out.contains("tenant id") && out.contains("coffer"), "{out}");
    let (ok, out, err) = cli(&cluster, &["app", "create", "billing"], None);
    assert!(ok, "{err}");
    assert!(out.contains("client id"), "{out}");
    let (ok, out, err) = cli(
        &cluster,
        &["app", "secret", "add", "billing", "--valid-days", "7"],
        None,
    );
    assert!(ok, "{err}");
    assert!(out.contains("cfs."), "the secret is shown once: {out}");
    let (ok, out, _) = cli(&cluster, &["app", "list"], None);
    assert!(
        ok && out.contains("billing") && out.contains("client_id="),
        "{out}"
    );
    let (ok, out, _) = cli(&cluster, &["--json", "app", "show", "billing"], None);
    assert!(ok);
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["app"]["secrets"][0]["hash"], "", "no verifier shown");

    let (ok, _, err) = cli(
        &cluster,
        &["user", "create", "bob@contoso"],
        Some("correct horse battery staple\n"),
    );
    assert!(ok, "{err}");
    let (ok, _, err) = cli(
        &cluster,
        &["user", "create", "eve@contoso"],
        Some("short\n"),
    );
    assert!(!ok && err.contains("12 to 1024"), "{err}");
    let (ok, out, err) = cli(&cluster, &["user", "mfa", "enroll", "bob@contoso"], None);
    assert!(ok, "{err}");
    assert!(out.starts_with("otpauth://totp/"), "{out}");
    assert!(
        out.contains('█') || out.contains('▀'),
        "a QR code follows: {out}"
    );
    let (ok, out, _) = cli(&cluster, &["user", "show", "bob@contoso"], None);
    assert!(ok && out.contains("mfa") && out.contains("true"), "{out}");
    let (ok, _, _) = cli(&cluster, &["user", "disable", "bob@contoso"], None);
    assert!(ok);
    let (ok, out, _) = cli(&cluster, &["user", "list"], None);
    assert!(ok && out.contains("disabled"), "{out}");
    let (ok, _, _) = cli(&cluster, &["group", "create", "auditors"], None);
    assert!(ok);
    let (ok, out, _) = cli(&cluster, &["--json", "user", "show", "bob@contoso"], None);
    assert!(ok);
    let bob: Value = serde_json::from_str(&out).unwrap();
    let bob_id = bob["object_id"].as_str().unwrap();
    let (ok, out, err) = cli(&cluster, &["group", "add-member", "auditors", bob_id], None);
    assert!(ok && out.contains(bob_id), "{out}{err}");
    let (ok, _, err) = cli(
        &cluster,
        &[
            "group",
            "add-member",
            "auditors",
            "00000000-0000-0000-0000-000000000000",
        ],
        None,
    );
    assert!(!ok && err.contains("not found"), "{err}");
    let (ok, out, _) = cli(
        &cluster,
        &["group", "remove-member", "auditors", bob_id],
        None,
    );
    assert!(ok && !out.contains(bob_id), "{out}");
    let (ok, _, _) = cli(&cluster, &["group", "delete", "auditors"], None);
    assert!(ok);
    let (ok, _, err) = cli(&cluster, &["group", "show", "auditors"], None);
    assert!(!ok && err.contains("not found"), "{err}");
    let (ok, out, _) = cli(&cluster, &["signing-key", "rotate"], None);
    assert!(ok && out.contains("kid"), "{out}");

    // `coffer role`: assign by role name, list by principal, unassign.
    let role = |args: &[&str]| {
        let out = std::process::Command::new(binary())
            .arg("role")
            .args(args)
            .env("COFFER_ADDR", cluster.nodes[1].url())
            .env("COFFER_CACERT", &cluster.ca_path)
            .env("COFFER_TOKEN", cluster.root_token.clone().unwrap())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = role(&[
        "assign",
        "Key Vault Secrets User",
        bob_id,
        "--scope",
        "/secrets",
    ]);
    assert!(ok, "{err}");
    let name = out.split_whitespace().next().unwrap().to_owned();
    assert!(
        out.contains("/secrets") && out.contains("4633458b-17de-408a-b874-0445c86b69e6"),
        "{out}"
    );
    let (ok, out, _) = role(&["--json", "list", "--principal", bob_id]);
    assert!(ok);
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed["value"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["value"][0]["name"], name.as_str());
    let (ok, _, err) = role(&["unassign", &name, "--scope", "/secrets"]);
    assert!(ok, "{err}");
    let (ok, out, _) = role(&["list", "--principal", bob_id]);
    assert!(ok && out.trim().is_empty(), "{out}");
    let (ok, _, err) = role(&["assign", "No Such Role", bob_id]);
    assert!(!ok && err.contains("no role named"), "{err}");
}
