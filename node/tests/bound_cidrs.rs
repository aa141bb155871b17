//! Applications bound to CIDRs (Vault's `token_bound_cidrs`) and the audit
//! record's client address, on a real 3-node cluster whose nodes each run
//! in a network namespace, with clients on hosts of their own speaking
//! through `curl`. An application bound to the insider's address gets a
//! token only from there (the token exchange from outside is refused) and
//! its token works only from there, on every node; the client address is
//! the one the network rules use (a trusted proxy's `X-Forwarded-For`
//! believed, a forged one ignored); a binding changed through one node
//! holds at once on the others, for tokens already issued; and the audit
//! record of a request that came through the trusted proxy names the
//! forwarded client, not the proxy. On the same cluster, a role
//! assignment limited to the insider's /32 (`--source-cidr`) admits reads
//! from there only, refusing the rest with the 403 that names the network
//! condition. Needs root (`ip netns`).

mod netns_client;

use std::time::{Duration, Instant};

use jepsen_tests::cluster::{ClusterOptions, LocalCluster, Placement};
use netns_client::{binary, call, coffer, curl, firewall_refusal, Call, DOMAIN};
use serde_json::Value;

/// Secrets User (IDENTITY.md §7).
const SECRETS_USER: &str = "4633458b-17de-408a-b874-0445c86b69e6";
/// Key Vault Reader.
const READER: &str = "21090545-7ca7-4776-b22c-e363652d74d2";

/// `coffer identity …` with the root token.
fn identity(cluster: &LocalCluster, args: &[&str]) -> Value {
    coffer(cluster, &["identity"], args)
}

/// The client-credentials token request of `app` from `ns` (through the
/// trusted proxy with `xff` when `ns` is `None`): (status, body).
fn token_request(
    cluster: &LocalCluster,
    ns: Option<&str>,
    node: &str,
    xff: Option<&str>,
    tenant: &str,
    (client_id, secret): (&str, &str),
) -> (u16, Value) {
    let form = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", "https://vault.azure.net/.default"),
        ])
        .finish();
    let path = format!("/{tenant}/oauth2/v2.0/token");
    let (status, body) = curl(
        cluster,
        &Call {
            method: "POST",
            path: &path,
            body: Some(&form),
            form: true,
            ..call(ns, node, xff, None)
        },
    );
    (
        status,
        serde_json::from_str(&body).expect("json token answer"),
    )
}

/// The token endpoint's refusal of a client outside the binding.
fn exchange_refused(status: u16, body: &Value, client: &str) {
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.contains(&format!("client address {client} ")),
        "{body}"
    );
    assert!(body.get("access_token").is_none(), "{body}");
}

/// `GET /secrets/s1` on the default vault with `token`.
fn read<'a>(ns: Option<&'a str>, node: &'a str, xff: Option<&'a str>, token: &'a str) -> Call<'a> {
    Call {
        vault: "default",
        path: "/secrets/s1",
        ..call(ns, node, xff, Some(token))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn applications_bound_to_cidrs_and_the_audited_client_address() {
    jepsen_tests::netns::check_available().unwrap();
    let mut cluster = LocalCluster::start(
        &binary(),
        ClusterOptions {
            placement: Placement::Netns,
            vault_domain: Some(DOMAIN.into()),
            server_section: Some("trusted_proxies = [\"{host_ip}/32\"]".into()),
            ..ClusterOptions::default()
        },
    )
    .unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    cluster.init(leader, 1, 1).await.unwrap();
    let root_token = cluster.root_token.clone().unwrap();
    let root = root_token.as_str();
    let net = cluster.netns().unwrap();
    let (outsider_ns, insider_ns) = (net.add_client(1).unwrap(), net.add_client(2).unwrap());
    let (outsider, insider) = (Some(outsider_ns.as_str()), Some(insider_ns.as_str()));
    let (out_addr, in_addr) = (net.client_ip(1), net.client_ip(2));
    let (out_ip, in_ip) = (out_addr.as_str(), in_addr.as_str());
    let nodes: Vec<String> = cluster.nodes.iter().map(|n| n.url()).collect();

    // An application bound to the insider (and a v6 range), created with
    // the CLI, with a secret and Secrets User on the default vault.
    let inside_cidr = format!("{in_ip}/32");
    let app = identity(
        &cluster,
        &[
            "app",
            "create",
            "bound-app",
            "--bound-cidr",
            in_ip,
            "--bound-cidr",
            "2001:db8::1/32",
        ],
    );
    assert_eq!(
        app["app"]["bound_cidrs"],
        serde_json::json!([inside_cidr, "2001:db8::/32"]),
        "{app}"
    );
    let oid = app["object_id"].as_str().unwrap().to_owned();
    let client_id = app["app"]["client_id"].as_str().unwrap().to_owned();
    let secret = identity(&cluster, &["app", "secret", "add", "bound-app"]);
    let secret = secret["secret"].as_str().expect("secret").to_owned();
    let tenant = identity(&cluster, &["tenant"]);
    let tenant = tenant["id"].as_str().unwrap().to_owned();
    let credentials = (client_id.as_str(), secret.as_str());
    let assignment = format!(
        r#"{{"properties":{{"roleDefinitionId":"{SECRETS_USER}","principalId":"{oid}"}}}}"#
    );
    let assign_path = format!(
        "/providers/Microsoft.Authorization/roleAssignments/{}",
        uuid::Uuid::new_v4()
    );
    let put = |path: &str, body: &str| {
        curl(
            &cluster,
            &Call {
                vault: "default",
                method: "PUT",
                path,
                body: Some(body),
                ..call(insider, &nodes[0], None, Some(root))
            },
        )
    };
    let (status, body) = put(&assign_path, &assignment);
    assert_eq!(status, 201, "{body}");
    let (status, body) = put("/secrets/s1", r#"{"value":"bound"}"#);
    assert_eq!(status, 200, "{body}");

    // The token exchange: refused from outside on every node (also when a
    // trusted proxy forwards the outsider, or the outsider forges the
    // header), granted from inside.
    let mut refused = 0;
    for node in &nodes {
        let (status, body) = token_request(&cluster, outsider, node, None, &tenant, credentials);
        exchange_refused(status, &body, out_ip);
        refused += 1;
    }
    let (status, body) = token_request(
        &cluster,
        None,
        &nodes[1],
        Some(out_ip),
        &tenant,
        credentials,
    );
    exchange_refused(status, &body, out_ip);
    let (status, body) = token_request(
        &cluster,
        outsider,
        &nodes[2],
        Some(in_ip),
        &tenant,
        credentials,
    );
    exchange_refused(status, &body, out_ip);
    refused += 2;
    let (status, body) = token_request(&cluster, insider, &nodes[0], None, &tenant, credentials);
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    // Through the proxy, for the insider: granted too.
    let (status, body) =
        token_request(&cluster, None, &nodes[2], Some(in_ip), &tenant, credentials);
    assert_eq!(status, 200, "{body}");

    // The token: from inside on every node, never from outside.
    for node in &nodes {
        let (status, body) = curl(&cluster, &read(insider, node, None, &token));
        assert_eq!(status, 200, "insider on {node}: {body}");
        assert!(body.contains("\"bound\""), "{body}");
        let (status, body) = curl(&cluster, &read(outsider, node, None, &token));
        firewall_refusal(status, &body, out_ip);
        assert!(body.contains(&format!("oid={oid}")), "{body}");
        refused += 1;
    }
    let (status, body) = curl(&cluster, &read(outsider, &nodes[1], Some(in_ip), &token));
    firewall_refusal(status, &body, out_ip);
    let (status, body) = curl(&cluster, &read(None, &nodes[1], Some(out_ip), &token));
    firewall_refusal(status, &body, out_ip);
    refused += 2;

    // Audit: the record of a request through the trusted proxy names the
    // forwarded client; a forged header from a non-proxy names the sender.
    let via_proxy = uuid::Uuid::new_v4().to_string();
    let forged = uuid::Uuid::new_v4().to_string();
    let (status, body) = curl(
        &cluster,
        &Call {
            request_id: Some(&via_proxy),
            ..read(None, &nodes[2], Some(in_ip), &token)
        },
    );
    assert_eq!(status, 200, "{body}");
    let (status, _) = curl(
        &cluster,
        &Call {
            request_id: Some(&forged),
            ..read(outsider, &nodes[0], Some(in_ip), &token)
        },
    );
    assert_eq!(status, 403);
    let callers = audited_callers(&cluster, &[&via_proxy, &forged]).await;
    assert_eq!(
        callers,
        [in_ip, out_ip],
        "callerIpAddress of the two records"
    );

    // Rebound through one node to the outsider: at once on every node, for
    // the token already issued.
    let rebound = identity(
        &cluster,
        &["app", "bound-cidrs", "bound-app", "--cidr", out_ip],
    );
    assert_eq!(
        rebound["app"]["bound_cidrs"],
        serde_json::json!([format!("{out_ip}/32")]),
        "{rebound}"
    );
    for node in &nodes {
        let (status, body) = curl(&cluster, &read(insider, node, None, &token));
        firewall_refusal(status, &body, in_ip);
        let (status, body) = curl(&cluster, &read(outsider, node, None, &token));
        assert_eq!(
            status, 200,
            "outsider on {node} after the rebinding: {body}"
        );
        refused += 1;
    }
    // Unbound: from anywhere.
    identity(&cluster, &["app", "bound-cidrs", "bound-app"]);
    let (status, body) = curl(&cluster, &read(insider, &nodes[2], None, &token));
    assert_eq!(status, 200, "{body}");
    println!(
        "BOUND CIDRS: {refused} token requests and uses refused by address, 0 let through wrongly"
    );

    // The same cluster and hosts: a role assignment limited to a source
    // network.
    let hosts = Hosts {
        nodes: &nodes,
        tenant: &tenant,
        outsider: (outsider, out_ip),
        insider: (insider, in_ip),
        proxy: &net.host_ip(),
    };
    role_assignment_limited_to_a_source_network(&cluster, &hosts);
}

/// Where the clients of the source-network test are.
struct Hosts<'a> {
    nodes: &'a [String],
    tenant: &'a str,
    /// (namespace, address) of the client outside the network.
    outsider: (Option<&'a str>, &'a str),
    /// (namespace, address) of the client inside it.
    insider: (Option<&'a str>, &'a str),
    /// The root namespace's address: the trusted proxy.
    proxy: &'a str,
}

/// A Secrets User assignment made with `coffer role assign --source-cidr`
/// for the insider's /32 (and a v6 range): the application's token reads
/// from the insider on every node, and from nowhere else — the outsider,
/// the outsider forging `X-Forwarded-For: insider`, the root namespace
/// (the proxy's own address) — each refused with the 403 `ForbiddenByRbac`
/// saying the assignment requires a source network; the trusted proxy
/// forwarding the insider is believed. A bad range is a 400 that stores
/// nothing; the listing shows the condition.
fn role_assignment_limited_to_a_source_network(cluster: &LocalCluster, h: &Hosts) {
    let (outsider, out_ip) = h.outsider;
    let (insider, in_ip) = h.insider;
    let app = identity(cluster, &["app", "create", "net-app"]);
    let oid = app["object_id"].as_str().unwrap().to_owned();
    let client_id = app["app"]["client_id"].as_str().unwrap().to_owned();
    let secret = identity(cluster, &["app", "secret", "add", "net-app"]);
    let secret = secret["secret"].as_str().expect("secret").to_owned();
    // The application is not bound: it gets its token from anywhere.
    let (status, body) = token_request(
        cluster,
        outsider,
        &h.nodes[0],
        None,
        h.tenant,
        (&client_id, &secret),
    );
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();

    let role = |args: &[&str]| coffer(cluster, &["role"], args);
    let inside_cidr = format!("{in_ip}/32");
    let made = role(&[
        "assign",
        "Key Vault Secrets User",
        &oid,
        "--scope",
        "/secrets",
        "--source-cidr",
        in_ip,
        "--source-cidr",
        "2001:db8:5::1/48",
    ]);
    assert_eq!(
        made["properties"]["sourceCidrs"],
        serde_json::json!([inside_cidr, "2001:db8:5::/48"]),
        "{made}"
    );

    // A range that does not parse: the API's 400, nothing stored.
    let out = std::process::Command::new(binary())
        .args(["role", "assign", "Key Vault Secrets User", &oid])
        .args(["--source-cidr", "10.0.0.0/33", "--addr"])
        .arg(cluster.nodes[0].url())
        .arg("--ca-cert")
        .arg(&cluster.ca_path)
        .env("COFFER_TOKEN", cluster.root_token.clone().unwrap())
        .output()
        .expect("running coffer");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("HTTP 400")
            && stderr.contains("BadParameter")
            && stderr.contains("sourceCidrs value \"10.0.0.0/33\""),
        "{stderr}"
    );
    let listed = role(&["list", "--scope", "/secrets", "--principal", &oid]);
    let listed = listed["value"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["name"], made["name"]);
    // The plain listing prints the condition.
    let out = std::process::Command::new(binary())
        .args([
            "role",
            "list",
            "--scope",
            "/secrets",
            "--principal",
            &oid,
            "--addr",
        ])
        .arg(cluster.nodes[2].url())
        .arg("--ca-cert")
        .arg(&cluster.ca_path)
        .env("COFFER_TOKEN", cluster.root_token.clone().unwrap())
        .output()
        .expect("running coffer");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("[from {inside_cidr},2001:db8:5::/48]")),
        "{text}"
    );

    // The refusal: RBAC's 403, saying the assignment exists but needs
    // another network, naming the client address as judged.
    let refused = |status: u16, body: &str, client: &str| {
        assert_eq!(status, 403, "{body}");
        let v: Value = serde_json::from_str(body).expect("json error body");
        assert_eq!(
            v["error"]["innererror"]["code"], "ForbiddenByRbac",
            "{body}"
        );
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("secrets/getSecret/action")
                && message.contains("requires a source network")
                && message.contains(&format!("client address {client} "))
                && !message.contains("(not found)"),
            "{body}"
        );
    };
    let mut refusals = 0;
    for node in h.nodes {
        let (status, body) = curl(cluster, &read(insider, node, None, &token));
        assert_eq!(status, 200, "insider on {node}: {body}");
        assert!(body.contains("\"bound\""), "{body}");
        let (status, body) = curl(cluster, &read(outsider, node, None, &token));
        refused(status, &body, out_ip);
        refusals += 1;
    }
    // A forged X-Forwarded-For from a non-proxy changes nothing.
    let (status, body) = curl(cluster, &read(outsider, &h.nodes[1], Some(in_ip), &token));
    refused(status, &body, out_ip);
    // The proxy's own requests come from its address, outside the range.
    let (status, body) = curl(cluster, &read(None, &h.nodes[2], None, &token));
    refused(status, &body, h.proxy);
    refusals += 2;
    // The trusted proxy forwarding the insider is believed.
    let (status, body) = curl(cluster, &read(None, &h.nodes[0], Some(in_ip), &token));
    assert_eq!(status, 200, "{body}");

    // Role administration too: an administrator limited to the insider's
    // network assigns from there, and from the outsider holds no
    // assignment rights (the same 403, for roleAssignments/write).
    let admin = identity(cluster, &["app", "create", "net-admin"]);
    let admin_oid = admin["object_id"].as_str().unwrap().to_owned();
    let admin_id = admin["app"]["client_id"].as_str().unwrap().to_owned();
    let admin_secret = identity(cluster, &["app", "secret", "add", "net-admin"]);
    let admin_secret = admin_secret["secret"].as_str().unwrap().to_owned();
    role(&[
        "assign",
        "Key Vault Administrator",
        &admin_oid,
        "--source-cidr",
        in_ip,
    ]);
    let (status, body) = token_request(
        cluster,
        insider,
        &h.nodes[1],
        None,
        h.tenant,
        (&admin_id, &admin_secret),
    );
    assert_eq!(status, 200, "{body}");
    let admin_token = body["access_token"].as_str().unwrap().to_owned();
    let grant = |ns: Option<&str>, node: &str| {
        let path = format!(
            "/keys/providers/Microsoft.Authorization/roleAssignments/{}",
            uuid::Uuid::new_v4()
        );
        let body =
            format!(r#"{{"properties":{{"roleDefinitionId":"{READER}","principalId":"{oid}"}}}}"#);
        curl(
            cluster,
            &Call {
                vault: "default",
                method: "PUT",
                path: &path,
                body: Some(&body),
                ..call(ns, node, None, Some(&admin_token))
            },
        )
    };
    let (status, body) = grant(outsider, &h.nodes[2]);
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("ForbiddenByRbac")
            && body.contains("roleAssignments/write")
            && body.contains("requires a source network")
            && body.contains(&format!("client address {out_ip} ")),
        "{body}"
    );
    refusals += 1;
    let (status, body) = grant(insider, &h.nodes[2]);
    assert_eq!(status, 201, "{body}");
    assert!(
        body.contains(READER) && !body.contains("sourceCidrs"),
        "{body}"
    );
    println!("SOURCE CIDRS: {refusals} requests from outside the assignment's network refused as such (reads and one role assignment), 5 from inside allowed");
}

/// The `callerIpAddress` of the trail records with these correlation ids,
/// in order (the trail is replicated in batches: waits up to 30 s).
async fn audited_callers(cluster: &LocalCluster, ids: &[&str]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let records = coffer(
            cluster,
            &["audit", "query"],
            &["--operation", "SecretGet", "--limit", "100000"],
        );
        let found: Vec<String> = ids
            .iter()
            .filter_map(|id| {
                records
                    .as_array()?
                    .iter()
                    .find(|r| r["correlationId"] == *id)
                    .map(|r| r["callerIpAddress"].as_str().unwrap_or("").to_owned())
            })
            .collect();
        if found.len() == ids.len() {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "audit records {ids:?} not in the trail: {records}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
