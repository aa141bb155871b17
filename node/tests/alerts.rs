//! Alerts end to end on a real 3-node cluster, configured with the CLI,
//! delivering to real receivers started by the test (webhook and SMS
//! gateway over HTTP, SMTP, UDP syslog): a burst of denied requests from
//! one client address fires exactly one alert to each receiver, and still
//! exactly one when the leader is killed in the middle of the burst; a
//! purge fires and then resolves; every delivery is recorded. A
//! first-access rule alerts a new reader of a secret once, and not a
//! reader it saw while learning.

mod alerts_receivers;
mod common;

use std::process::Command;
use std::time::Duration;

use alerts_receivers::{Inbox, Post, Receivers};
use coffer_client::Request;
use common::{binary, ok_json};
use jepsen_tests::cluster::{ClusterOptions, LocalCluster};
use serde_json::Value;

const HOOK_SECRET: &str = "webhook-signing-key-for-the-test";
const SMS_AUTH: &str = "Basic dGVzdDpzbXMtZ2F0ZXdheQ==";

fn coffer(cluster: &LocalCluster, node: usize, args: &[&str]) -> std::process::Output {
    Command::new(binary())
        .args(args)
        .env("COFFER_ADDR", cluster.nodes[node].url())
        .env("COFFER_CACERT", &cluster.ca_path)
        .env("COFFER_TOKEN", cluster.root_token.as_deref().unwrap())
        .output()
        .unwrap()
}

/// A request with a bogus bearer token, sent by curl from `source` (a
/// loopback address) to node `node`; returns the HTTP status.
fn denied_request(cluster: &LocalCluster, node: usize, source: &str) -> u16 {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--interface",
            source,
        ])
        .arg("--cacert")
        .arg(&cluster.ca_path)
        .args(["-H", "Authorization: Bearer not-a-valid-token"])
        .arg(format!(
            "{}/secrets/payroll?api-version=7.4",
            cluster.nodes[node].url()
        ))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// Sends `n` denied requests from `source` to `node`: each is repeated
/// until it is refused as unauthenticated or forbidden (a node without a
/// leader may answer 503 meanwhile, which no rule counts as a denial).
async fn deny(cluster: &LocalCluster, node: usize, source: &str, n: usize) {
    for _ in 0..n {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let status = denied_request(cluster, node, source);
            if status == 401 || status == 403 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "a request with a bogus token from {source} got {status}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn hook_body(p: &Post) -> Value {
    serde_json::from_slice(&p.body).unwrap()
}

/// Webhook posts of `rule`'s `condition` about `group`.
fn hooks<'a>(inbox: &'a Inbox, rule: &str, group: &str, condition: &str) -> Vec<&'a Post> {
    inbox
        .webhook
        .iter()
        .filter(|p| {
            let v = hook_body(p);
            let e = &v["data"]["essentials"];
            e["alertRule"] == rule
                && e["monitorCondition"] == condition
                && e["configurationItems"][0] == group
        })
        .collect()
}

/// How many messages each receiver got that mention `group` as `Fired`.
fn fired_counts(inbox: &Inbox, group: &str) -> [usize; 4] {
    let quoted = format!("\"group\":\"{group}\"");
    [
        hooks(inbox, "denied-burst", group, "Fired").len(),
        inbox
            .email
            .iter()
            .filter(|m| {
                m.contains("Condition: Fired") && m.contains(&format!("CallerIPAddress: {group}"))
            })
            .count(),
        inbox
            .sms
            .iter()
            .filter(|p| {
                let form: Vec<(String, String)> =
                    url::form_urlencoded::parse(&p.body).into_owned().collect();
                form.iter()
                    .any(|(k, v)| k == "Body" && v.contains(" Fired: ") && v.contains(group))
            })
            .count(),
        inbox
            .syslog
            .iter()
            .filter(|m| m.contains(&quoted) && m.contains("\"monitorCondition\":\"Fired\""))
            .count(),
    ]
}

fn check_signatures(inbox: &Inbox) {
    for p in &inbox.webhook {
        let sig = p.headers["x-coffer-signature"].to_str().unwrap();
        assert_eq!(
            sig,
            coffer::alerts::send::signature(HOOK_SECRET.as_bytes(), &p.body)
        );
        assert_eq!(hook_body(p)["schemaId"], "azureMonitorCommonAlertSchema");
    }
    for p in &inbox.sms {
        assert_eq!(p.headers["authorization"].to_str().unwrap(), SMS_AUTH);
    }
}

/// Waits until no firing has a notification pending.
async fn all_delivered(cluster: &LocalCluster, node: usize) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let v = ok_json(
            coffer(cluster, node, &["alert", "firing", "list"]),
            "firing list",
        );
        let pending = v["firings"].as_array().unwrap().iter().any(|f| {
            f["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["state"] == "pending")
        });
        if !pending {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "deliveries still pending: {v}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn cluster() -> LocalCluster {
    let mut cluster = LocalCluster::start(
        &binary(),
        ClusterOptions {
            env: vec![("COFFER_AUDIT__SHIP_INTERVAL_MS".into(), "200".into())],
            ..Default::default()
        },
    )
    .unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    cluster.init(leader, 3, 2).await.unwrap();
    cluster
}

fn configure(cluster: &LocalCluster, rx: &Receivers, dir: &std::path::Path) {
    let hook_secret = dir.join("hook-secret");
    std::fs::write(&hook_secret, HOOK_SECRET).unwrap();
    let sms_auth = dir.join("sms-auth");
    std::fs::write(&sms_auth, SMS_AUTH).unwrap();
    let smtp_port = rx.smtp_port.to_string();
    let receivers: Vec<Vec<String>> = vec![
        vec![
            "hook".into(),
            "--type=webhook".into(),
            format!("--url=http://{}/hook", rx.http),
            format!("--secret-file={}", hook_secret.display()),
        ],
        vec![
            "mail".into(),
            "--type=email".into(),
            "--host=127.0.0.1".into(),
            format!("--port={smtp_port}"),
            "--security=none".into(),
            "--from=coffer@example.com".into(),
            "--to=oncall@example.com".into(),
        ],
        vec![
            "pager".into(),
            "--type=sms".into(),
            format!("--url=http://{}/sms", rx.http),
            "--to=+15550100".into(),
            "--from=Coffer".into(),
            format!("--secret-file={}", sms_auth.display()),
        ],
        vec![
            "log".into(),
            "--type=syslog".into(),
            format!("--target=udp://{}", rx.syslog),
        ],
    ];
    for args in &receivers {
        let mut cmd = vec!["alert", "receiver", "create"];
        cmd.extend(args.iter().map(String::as_str));
        let shown = ok_json(coffer(cluster, 0, &cmd), "receiver create");
        let text = shown.to_string();
        assert!(
            !text.contains(HOOK_SECRET) && !text.contains(SMS_AUTH),
            "{text}"
        );
    }
    let rules: [&[&str]; 2] = [
        &[
            "denied-burst",
            "--signal=denied",
            "--group-by=ip",
            "--threshold=5",
            "--window=60",
            "--receiver=hook",
            "--receiver=mail",
            "--receiver=pager",
            "--receiver=log",
            "--severity=1",
        ],
        &[
            "any-purge",
            "--signal=purge",
            "--window=3",
            "--receiver=hook",
            "--receiver=mail",
        ],
    ];
    for args in rules {
        let mut cmd = vec!["alert", "rule", "create"];
        cmd.extend(args);
        ok_json(coffer(cluster, 1, &cmd), "rule create");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn denied_bursts_alert_every_receiver_exactly_once_even_across_a_leader_kill() {
    let rx = Receivers::start().await;
    eprintln!("SMTP receiver: {}", rx.smtp_kind);
    let mut cluster = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    configure(&cluster, &rx, dir.path());

    // Receiver tests reach each receiver directly.
    for name in ["hook", "mail", "pager", "log"] {
        let v = ok_json(
            coffer(&cluster, 2, &["alert", "receiver", "test", name]),
            "test",
        );
        assert_eq!(v["delivered"], true, "{v}");
    }
    rx.wait_for("the test notifications", Duration::from_secs(10), |i| {
        i.webhook.len() == 1 && i.email.len() == 1 && i.sms.len() == 1 && i.syslog.len() == 1
    })
    .await;
    // A receiver in use cannot be deleted.
    assert!(
        !coffer(&cluster, 0, &["alert", "receiver", "delete", "hook"])
            .status
            .success()
    );

    // Four denials from 127.0.0.2: below the threshold, nothing fires.
    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .unwrap();
    let follower = (leader + 1) % 3;
    deny(&cluster, follower, "127.0.0.2", 4).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    rx.collect();
    assert_eq!(fired_counts(&rx.inbox.lock().unwrap(), "127.0.0.2"), [0; 4]);
    // The fifth (and two more) fire one alert to every receiver.
    deny(&cluster, follower, "127.0.0.2", 3).await;
    rx.wait_for(
        "the burst alert at every receiver",
        Duration::from_secs(30),
        |i| fired_counts(i, "127.0.0.2").iter().all(|n| *n >= 1),
    )
    .await;

    // Dry run: the rule counts seven denials from 127.0.0.2.
    let dry = ok_json(
        coffer(&cluster, 0, &["alert", "rule", "test", "denied-burst"]),
        "dry run",
    );
    let group = dry["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == "127.0.0.2")
        .cloned()
        .unwrap_or_else(|| panic!("{dry}"));
    assert_eq!(
        (group["count"].as_u64(), group["fires"].as_bool()),
        (Some(7), Some(true))
    );

    // A purge fires, then resolves once its 3 s window passed.
    let root = cluster.client().unwrap();
    let put = Request::put("/secrets/doomed?api-version=7.4")
        .json(&serde_json::json!({"value": "v"}))
        .unwrap();
    root.send(put).await.unwrap().error_for_status().unwrap();
    root.send(Request::delete("/secrets/doomed?api-version=7.4"))
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let purge = Request::delete("/deletedsecrets/doomed?api-version=7.4");
    let resp = root.send(purge).await.unwrap();
    assert_eq!(resp.status.as_u16(), 204, "{:?}", resp.body);
    rx.wait_for(
        "the purge alert fired and resolved",
        Duration::from_secs(30),
        |i| {
            hooks(i, "any-purge", "*", "Fired").len() == 1
                && hooks(i, "any-purge", "*", "Resolved").len() == 1
                && i.email.iter().filter(|m| m.contains("any-purge")).count() == 2
        },
    )
    .await;
    let listed = all_delivered(&cluster, 0).await;
    assert_eq!(listed["firings"].as_array().unwrap().len(), 2, "{listed}");

    // From 127.0.0.3: two denials, the leader is killed, three more.
    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .unwrap();
    let survivor = (leader + 1) % 3;
    deny(&cluster, survivor, "127.0.0.3", 2).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let changes = |text: &str| common::sample(text, "coffer_raft_leader_changes_total").unwrap();
    let changes_before = changes(&common::scrape(&cluster, survivor).await);
    assert!(changes_before >= 1.0, "the survivor saw the first leader");
    cluster.kill(leader);
    let new_leader = cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .unwrap();
    assert_ne!(new_leader, leader);
    // The survivor counted the new leader when it took over, not per scrape.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let changes_after = loop {
        let n = changes(&common::scrape(&cluster, survivor).await);
        if n > changes_before || std::time::Instant::now() > deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        changes_after > changes_before,
        "leader changes on node {survivor}: {changes_before} before the kill, {changes_after} after"
    );
    assert_eq!(
        changes(&common::scrape(&cluster, survivor).await),
        changes_after,
        "a scrape does not count a change"
    );
    deny(&cluster, survivor, "127.0.0.3", 3).await;
    rx.wait_for(
        "the alert after the failover",
        Duration::from_secs(60),
        |i| fired_counts(i, "127.0.0.3").iter().all(|n| *n >= 1),
    )
    .await;
    // Nothing more arrives: exactly one per receiver and burst.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let listed = all_delivered(&cluster, survivor).await;
    // The delivery state of each firing: two bursts, four receivers each,
    // every notification delivered on its first attempt.
    let bursts: Vec<&Value> = listed["firings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "denied-burst")
        .collect();
    assert_eq!(bursts.len(), 2, "{listed}");
    for f in bursts {
        let fired: Vec<&Value> = f["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["condition"] == "Fired")
            .collect();
        assert_eq!(fired.len(), 4, "{f}");
        assert!(
            fired
                .iter()
                .all(|d| d["state"] == "delivered" && d["attempts"] == 1),
            "{f}"
        );
    }
    rx.collect();
    {
        let inbox = rx.inbox.lock().unwrap();
        assert_eq!(fired_counts(&inbox, "127.0.0.2"), [1; 4], "first burst");
        assert_eq!(
            fired_counts(&inbox, "127.0.0.3"),
            [1; 4],
            "burst across the failover"
        );
        check_signatures(&inbox);
        let firing = hook_body(hooks(&inbox, "denied-burst", "127.0.0.3", "Fired")[0]);
        let e = &firing["data"]["essentials"];
        assert_eq!(
            (e["alertRule"].as_str(), e["severity"].as_str()),
            (Some("denied-burst"), Some("Sev1"))
        );
        assert_eq!(
            firing["data"]["alertContext"]["condition"]["allOf"][0]["metricValue"],
            5
        );
    }

    // The Grafana dashboard queries what the new leader serves.
    let metrics = common::quick_client(&cluster, new_leader)
        .send(Request::get("/metrics"))
        .await
        .unwrap();
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    assert!(text.contains("coffer_alert_deliveries_total{"), "{text}");
    check_dashboard(&text);
}

/// Every metric the Grafana dashboard (deploy/grafana) queries is one a
/// node serves in `metrics` (its `/metrics` text).
fn check_dashboard(metrics: &str) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana/coffer-dashboard.json"
    );
    let dashboard: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut wanted: Vec<String> = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let mut rest = target["expr"].as_str().unwrap();
            while let Some(at) = rest.find("coffer_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                wanted.push(name.trim_end_matches("_bucket").to_owned());
            }
        }
    }
    assert!(wanted.len() >= 12, "{wanted:?}");
    for name in wanted {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(&format!("# TYPE {name} "))),
            "the dashboard queries {name}, which /metrics does not serve"
        );
    }
}

/// An application of the cluster's tenant holding Key Vault Secrets User
/// on the default vault: its client id and a client bound to node `node`
/// with its token.
async fn secrets_reader(
    cluster: &LocalCluster,
    root: &coffer_client::Client,
    tenant: &str,
    name: &str,
) -> (String, coffer_client::Client) {
    let app: Value = root
        .send(
            Request::post("/v1/sys/identity/apps")
                .json(&serde_json::json!({ "name": name }))
                .unwrap(),
        )
        .await
        .unwrap()
        .json()
        .unwrap();
    let oid = app["object_id"].as_str().unwrap().to_owned();
    let client_id = app["app"]["client_id"].as_str().unwrap().to_owned();
    let secret: Value = root
        .send(
            Request::post(format!("/v1/sys/identity/apps/{name}/secrets"))
                .json(&serde_json::json!({}))
                .unwrap(),
        )
        .await
        .unwrap()
        .json()
        .unwrap();
    let out = coffer(
        cluster,
        0,
        &["role", "assign", "Key Vault Secrets User", &oid],
    );
    assert!(
        out.status.success(),
        "role assign: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token =
        common::app_token(root, tenant, &client_id, secret["secret"].as_str().unwrap()).await;
    let mut cfg = cluster.client_config(vec![cluster.nodes[1].url()]).unwrap();
    cfg.token = Some(token);
    (client_id, coffer_client::Client::new(cfg).unwrap())
}

/// Reads secret `payroll` as `client`, retrying while a fresh role
/// assignment or token is not yet served (403/401).
async fn read_payroll(client: &coffer_client::Client) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let resp = client
            .send(Request::get("/secrets/payroll?api-version=7.4"))
            .await
            .unwrap();
        if resp.status.as_u16() == 200 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "reading payroll: {} {:?}",
            resp.status,
            String::from_utf8_lossy(&resp.body)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_first_access_rule_alerts_a_new_reader_once_and_not_one_seen_while_learning() {
    let rx = Receivers::start().await;
    let cluster = cluster().await;
    let root = cluster.client().unwrap();
    let put = Request::put("/secrets/payroll?api-version=7.4")
        .json(&serde_json::json!({"value": "v"}))
        .unwrap();
    root.send(put).await.unwrap().error_for_status().unwrap();
    let tenant: Value = root
        .send(Request::get("/v1/sys/identity/tenant"))
        .await
        .unwrap()
        .json()
        .unwrap();
    let tenant = tenant["id"].as_str().unwrap().to_owned();
    let (old_id, old_reader) = secrets_reader(&cluster, &root, &tenant, "old-reader").await;
    let (new_id, new_reader) = secrets_reader(&cluster, &root, &tenant, "new-reader").await;
    ok_json(
        coffer(
            &cluster,
            0,
            &[
                "alert",
                "receiver",
                "create",
                "hook",
                "--type=webhook",
                &format!("--url=http://{}/hook", rx.http),
            ],
        ),
        "receiver create",
    );
    let learn_secs = 10;
    let rule = ok_json(
        coffer(
            &cluster,
            0,
            &[
                "alert",
                "rule",
                "create",
                "first-read",
                "--signal=first-access",
                &format!("--learn-secs={learn_secs}"),
                "--window=5",
                "--receiver=hook",
            ],
        ),
        "rule create",
    );
    assert_eq!(rule["condition"]["group_by"], "principal-object", "{rule}");
    let created = std::time::Instant::now();
    // The old reader reads while the rule learns: remembered, not alerted.
    read_payroll(&old_reader).await;
    assert!(
        created.elapsed() < Duration::from_secs(learn_secs),
        "too slow to learn"
    );
    tokio::time::sleep(Duration::from_secs(learn_secs + 1).saturating_sub(created.elapsed())).await;
    // After it: the old reader again, the new reader twice.
    read_payroll(&old_reader).await;
    read_payroll(&new_reader).await;
    read_payroll(&new_reader).await;
    let first_reads = |i: &Inbox, id: &str, condition: &str| {
        i.webhook
            .iter()
            .filter(|p| {
                let e = &hook_body(p)["data"]["essentials"];
                e["alertRule"] == "first-read"
                    && e["monitorCondition"] == condition
                    && e["configurationItems"][0]
                        .as_str()
                        .is_some_and(|g| g.starts_with(id) && g.ends_with("/secrets/payroll"))
            })
            .count()
    };
    rx.wait_for(
        "the first-access alert fired and resolved",
        Duration::from_secs(40),
        |i| first_reads(i, &new_id, "Fired") >= 1 && first_reads(i, &new_id, "Resolved") >= 1,
    )
    .await;
    // Nothing more arrives: once for the new reader, never for the old.
    tokio::time::sleep(Duration::from_secs(5)).await;
    rx.collect();
    {
        let inbox = rx.inbox.lock().unwrap();
        assert_eq!(first_reads(&inbox, &new_id, "Fired"), 1, "new reader");
        assert_eq!(first_reads(&inbox, &old_id, "Fired"), 0, "learned reader");
    }
    let listed = all_delivered(&cluster, 2).await;
    let firings: Vec<&Value> = listed["firings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "first-read")
        .collect();
    assert_eq!(firings.len(), 1, "{listed}");
    assert_eq!(firings[0]["signal"], "first-access");

    // The other new conditions as the CLI stores them, and refused in the
    // API's error format when they cannot work (nothing stored).
    let rule = ok_json(
        coffer(
            &cluster,
            1,
            &[
                "alert",
                "rule",
                "create",
                "after-hours",
                "--signal=denied",
                "--outside-hours=08:00-18:00",
                "--days=mon-fri",
                "--tz-offset=+01:00",
                "--receiver=hook",
            ],
        ),
        "outside-hours rule",
    );
    assert_eq!(
        rule["condition"]["outside_hours"],
        serde_json::json!({"hours": "08:00-18:00", "days": "mon-fri", "tz_offset": "+01:00"})
    );
    let rule = ok_json(
        coffer(
            &cluster,
            1,
            &[
                "alert",
                "rule",
                "create",
                "failing",
                "--signal=error-rate",
                "--group-by=operation",
                "--threshold=5",
                "--min-requests=50",
                "--receiver=hook",
            ],
        ),
        "error-rate rule",
    );
    assert_eq!(rule["condition"]["min_requests"], 50, "{rule}");
    for (args, says) in [
        (
            vec![
                "bad",
                "--signal=denied",
                "--outside-hours=8-18",
                "--receiver=hook",
            ],
            "is not a time HH:MM",
        ),
        (
            vec!["bad", "--signal=slow", "--receiver=hook"],
            "slow needs slower_than_ms",
        ),
    ] {
        let mut cmd = vec!["alert", "rule", "create"];
        cmd.extend(args);
        let out = coffer(&cluster, 1, &cmd);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(says), "{stderr}");
        assert!(
            stderr.contains("400") || stderr.contains("BadParameter"),
            "{stderr}"
        );
    }
    assert!(!coffer(&cluster, 1, &["alert", "rule", "show", "bad"])
        .status
        .success());
}
