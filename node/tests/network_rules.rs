//! Vault network rules on a real 3-node cluster whose nodes each run in a
//! network namespace, with clients on hosts of their own (namespaces with
//! their own addresses on the same bridge) speaking through `curl`:
//! an address outside `ipRules` is refused with `ForbiddenByFirewall`
//! before its token is looked at, one inside passes, a forged
//! `X-Forwarded-For` from a non-proxy is ignored, a trusted proxy's is
//! believed, the operator bypass lets the root token through, and one
//! vault's rules say nothing about another's. Needs root (`ip netns`).

use std::process::Command;
use std::time::Duration;

use jepsen_tests::cluster::{ClusterOptions, LocalCluster, Placement};
use serde_json::Value;

mod netns_client;

use netns_client::{binary, call, cli, curl, firewall_refusal, Call, DOMAIN};

#[tokio::test(flavor = "multi_thread")]
async fn vault_network_rules_judge_the_client_address() {
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
    let net = cluster.netns().unwrap();
    let (outsider_ns, insider_ns) = (net.add_client(1).unwrap(), net.add_client(2).unwrap());
    let (out_addr, in_addr, proxy_addr) = (net.client_ip(1), net.client_ip(2), net.host_ip());
    let (root, outsider, insider) = (
        root_token.as_str(),
        outsider_ns.as_str(),
        insider_ns.as_str(),
    );
    let (out_ip, in_ip, proxy_ip) = (out_addr.as_str(), in_addr.as_str(), proxy_addr.as_str());
    let nodes: Vec<String> = cluster.nodes.iter().map(|n| n.url()).collect();

    // The environment comes with its rules: only the insider (and a v6
    // range), and its administrator (an application of the identity store).
    let app = Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
        ])
        .args(["-H", &format!("Authorization: Bearer {root}")])
        .arg("--cacert")
        .arg(&cluster.ca_path)
        .args(["--data", r#"{"name":"fw-admin"}"#])
        .arg(format!("{}/v1/sys/identity/apps", nodes[0]))
        .output()
        .expect("running curl");
    let app: Value = serde_json::from_slice(&app.stdout).expect("app json");
    let admin_oid = app["object_id"].as_str().expect("object_id").to_owned();
    let made = cli(
        &cluster,
        &[
            "create",
            "fw",
            "--ip-rule",
            &format!("{in_ip}/32"),
            "--ip-rule",
            "2001:db8::/32",
            "--admin",
            &admin_oid,
        ],
    );
    assert_eq!(made["network_acls"]["defaultAction"], "Deny", "{made}");
    let assignments = Call {
        path: "/providers/Microsoft.Authorization/roleAssignments?$filter=atScope()",
        ..call(Some(insider), &nodes[2], None, Some(root))
    };
    let (status, body) = curl(&cluster, &assignments);
    assert_eq!(status, 200, "{body}");
    let listed: Value = serde_json::from_str(&body).unwrap();
    let admins: Vec<&Value> = listed["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["properties"]["principalId"] == admin_oid.as_str())
        .collect();
    assert_eq!(admins.len(), 1, "{body}");
    assert!(
        admins[0]["properties"]["roleDefinitionId"]
            .as_str()
            .unwrap()
            .ends_with("00482a5a-887f-4fb3-b363-3b7fe8e74483"),
        "{body}"
    );
    // The insider writes a secret and reads it on every node.
    let put = Call {
        method: "PUT",
        path: "/secrets/s1",
        body: Some(r#"{"value":"inside"}"#),
        ..call(Some(insider), &nodes[0], None, Some(root))
    };
    let (status, body) = curl(&cluster, &put);
    assert_eq!(status, 200, "{body}");
    let mut refused = 0;
    for node in &nodes {
        let get = Call {
            path: "/secrets/s1",
            ..call(Some(insider), node, None, Some(root))
        };
        let (status, body) = curl(&cluster, &get);
        assert_eq!(status, 200, "insider on {node}: {body}");
        assert!(body.contains("\"inside\""), "{body}");
        // The outsider is refused on every node, even with the root token,
        // and its write changes nothing.
        let (status, body) = curl(&cluster, &call(Some(outsider), node, None, Some(root)));
        firewall_refusal(status, &body, out_ip);
        let overwrite = Call {
            method: "PUT",
            path: "/secrets/s1",
            body: Some(r#"{"value":"outside"}"#),
            ..call(Some(outsider), node, None, Some(root))
        };
        let (status, body) = curl(&cluster, &overwrite);
        firewall_refusal(status, &body, out_ip);
        refused += 2;
    }
    let get = Call {
        path: "/secrets/s1",
        ..call(Some(insider), &nodes[2], None, Some(root))
    };
    assert!(curl(&cluster, &get).1.contains("\"inside\""));

    // Before authentication work: a token that would fail verification is
    // refused by address (403), where the insider gets the 401 challenge.
    let bogus = "eyJhbGciOiJSUzI1NiJ9.e30.c2ln";
    let (status, body) = curl(
        &cluster,
        &call(Some(outsider), &nodes[1], None, Some(bogus)),
    );
    firewall_refusal(status, &body, out_ip);
    let (status, _) = curl(&cluster, &call(Some(insider), &nodes[1], None, Some(bogus)));
    assert_eq!(status, 401);
    // A request without any credential still gets the challenge first.
    let (status, _) = curl(&cluster, &call(Some(outsider), &nodes[1], None, None));
    assert_eq!(status, 401);

    // A forged X-Forwarded-For from a client that is no proxy is ignored.
    let (status, body) = curl(
        &cluster,
        &call(Some(outsider), &nodes[2], Some(in_ip), Some(root)),
    );
    firewall_refusal(status, &body, out_ip);
    // The trusted proxy (the bridge address) is believed: the hop it names
    // is the client, whatever was forged before it.
    let (status, body) = curl(&cluster, &call(None, &nodes[2], Some(in_ip), Some(root)));
    assert_eq!(status, 200, "{body}");
    let forged_then_real = format!("{in_ip}, {out_ip}");
    let (status, body) = curl(
        &cluster,
        &call(None, &nodes[0], Some(forged_then_real.as_str()), Some(root)),
    );
    firewall_refusal(status, &body, out_ip);
    // The proxy's own address is not in the rules.
    let (status, body) = curl(&cluster, &call(None, &nodes[0], None, Some(root)));
    firewall_refusal(status, &body, proxy_ip);
    refused += 5;

    // Another vault has its own rules (none): the outsider reaches it.
    let other = Call {
        vault: "default",
        ..call(Some(outsider), &nodes[1], None, Some(root))
    };
    assert_eq!(curl(&cluster, &other).0, 200);

    // The operator bypass: the root token passes from anywhere, nothing else.
    let set = cli(
        &cluster,
        &[
            "network",
            "set",
            "fw",
            "--ip-rule",
            &format!("{in_ip}/32"),
            "--bypass",
            "operator",
        ],
    );
    assert_eq!(set["networkAcls"]["bypass"], "Operator", "{set}");
    for node in &nodes {
        let (status, body) = curl(&cluster, &call(Some(outsider), node, None, Some(root)));
        assert_eq!(status, 200, "bypass on {node}: {body}");
    }
    let (status, body) = curl(
        &cluster,
        &call(Some(outsider), &nodes[0], None, Some(bogus)),
    );
    firewall_refusal(status, &body, out_ip);

    // Tightened again (no bypass, no rules): in force on every node at once.
    cli(
        &cluster,
        &["network", "set", "fw", "--default-action", "deny"],
    );
    for node in &nodes {
        let (status, body) = curl(&cluster, &call(Some(insider), node, None, Some(root)));
        firewall_refusal(status, &body, in_ip);
        refused += 1;
    }
    let shown = cli(&cluster, &["network", "show", "fw"]);
    assert_eq!(
        shown["networkAcls"]["ipRules"],
        serde_json::json!([]),
        "{shown}"
    );
    // Cleared: open to every address.
    cli(&cluster, &["network", "clear", "fw"]);
    let (status, body) = curl(&cluster, &call(Some(outsider), &nodes[2], None, Some(root)));
    assert_eq!(status, 200, "{body}");
    println!("NETWORK RULES: {refused} requests refused by address, 0 let through wrongly");
}
