//! Lifecycle events end to end on a real 3-node cluster, configured with
//! the CLI: an Event Grid subscriber started by the test (an HTTP server
//! that answers the subscription validation handshake) gets
//! `SecretNewVersionCreated`, `SecretNearExpiry` and `SecretExpired` for a
//! secret created with an expiry near now, each exactly once, although the
//! leader is killed between the near-expiry and the expiry (and an alert
//! rule over expiry dates fires once to a webhook); an endpoint that does
//! not answer the handshake never gets an event; a certificate
//! whose `EmailContacts` lifetime action triggers mails the vault's
//! certificate contacts once, through the SMTP receiver.

mod alerts_receivers;
mod common;

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alerts_receivers::Receivers;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use coffer_client::Request;
use common::{binary, ok_json};
use jepsen_tests::cluster::{ClusterOptions, LocalCluster};
use serde_json::{json, Value};

/// What the subscriber endpoints received: `(endpoint, aeg-event-type,
/// body)` in arrival order.
type Seen = Arc<Mutex<Vec<(&'static str, String, Value)>>>;

/// An Event Grid subscriber: `/events` answers the validation handshake
/// as Event Grid requires; `/deaf` answers 200 to everything without
/// echoing the code (a URL that never asked for events).
async fn subscriber() -> (String, Seen) {
    async fn take(
        State((seen, endpoint)): State<(Seen, &'static str)>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Json<Value> {
        let kind = headers
            .get("aeg-event-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let code = body[0]["data"]["validationCode"].clone();
        seen.lock().unwrap().push((endpoint, kind.clone(), body));
        if endpoint == "events" && kind == "SubscriptionValidation" {
            Json(json!({ "validationResponse": code }))
        } else {
            Json(json!({}))
        }
    }
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/events", post(take).with_state((seen.clone(), "events")))
        .route("/deaf", post(take).with_state((seen.clone(), "deaf")))
        .route("/hook", post(take).with_state((seen.clone(), "hook")));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, seen)
}

fn coffer(cluster: &LocalCluster, node: usize, args: &[&str]) -> std::process::Output {
    Command::new(binary())
        .args(args)
        .env("COFFER_ADDR", cluster.nodes[node].url())
        .env("COFFER_CACERT", &cluster.ca_path)
        .env("COFFER_TOKEN", cluster.root_token.as_deref().unwrap())
        .output()
        .unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Notifications posted to `endpoint` about object `name`, per event type.
fn events_of(seen: &Seen, endpoint: &str, name: &str) -> HashMap<String, Vec<Value>> {
    let mut out: HashMap<String, Vec<Value>> = HashMap::new();
    for (e, kind, body) in seen.lock().unwrap().iter() {
        if *e == endpoint && kind == "Notification" {
            for ev in body.as_array().into_iter().flatten() {
                if ev["subject"] == name {
                    let t = ev["eventType"].as_str().unwrap_or("").to_owned();
                    out.entry(t).or_default().push(ev.clone());
                }
            }
        }
    }
    out
}

/// Node `i`'s `coffer_secrets_expiring` for 7d, 30d and expired.
async fn expiring(cluster: &LocalCluster, i: usize) -> [f64; 3] {
    let text = common::scrape(cluster, i).await;
    ["7d", "30d", "expired"].map(|w| {
        common::sample(&text, &format!("coffer_secrets_expiring{{within=\"{w}\"}}"))
            .unwrap_or_else(|| panic!("no coffer_secrets_expiring{{within={w}}} in {text}"))
    })
}

/// Node `i`'s expiry gauges once `done` holds for them (a scan runs every
/// second here), or as they are after 15 s.
async fn expiring_when(
    cluster: &LocalCluster,
    i: usize,
    done: impl Fn(&[f64; 3]) -> bool,
) -> [f64; 3] {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let g = expiring(cluster, i).await;
        if done(&g) || Instant::now() > deadline {
            return g;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn wait_until(what: &str, within: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn cluster() -> LocalCluster {
    let mut cluster = LocalCluster::start(
        &binary(),
        ClusterOptions {
            env: vec![("COFFER_EVENTS__SCAN_INTERVAL_SECS".into(), "1".into())],
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

const SECRET_TYPES: [&str; 3] = [
    "Microsoft.KeyVault.SecretNewVersionCreated",
    "Microsoft.KeyVault.SecretNearExpiry",
    "Microsoft.KeyVault.SecretExpired",
];

#[tokio::test(flavor = "multi_thread")]
async fn secret_events_reach_a_validated_subscriber_exactly_once_across_a_leader_kill() {
    let (base, seen) = subscriber().await;
    let mut cluster = cluster().await;
    let mut grid = vec![
        "alert".to_owned(),
        "receiver".into(),
        "create".into(),
        "grid".into(),
        "--type=event-grid".into(),
        format!("--url={base}/events"),
    ];
    grid.extend(SECRET_TYPES.iter().map(|t| format!("--event-type={t}")));
    let args: Vec<&str> = grid.iter().map(String::as_str).collect();
    let shown = ok_json(coffer(&cluster, 0, &args), "subscription create");
    assert_eq!(shown["type"], "event-grid", "{shown}");
    let deaf_url = format!("--url={base}/deaf");
    ok_json(
        coffer(
            &cluster,
            1,
            &[
                "alert",
                "receiver",
                "create",
                "deaf",
                "--type=event-grid",
                &deaf_url,
            ],
        ),
        "deaf subscription create",
    );
    // An alert rule over expiry dates, to a plain webhook.
    let hook_url = format!("--url={base}/hook");
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
                &hook_url,
            ],
        ),
        "webhook create",
    );
    ok_json(
        coffer(
            &cluster,
            2,
            &[
                "alert",
                "rule",
                "create",
                "expiring-soon",
                "--signal=expiring",
                "--within=3600",
                "--receiver=hook",
            ],
        ),
        "expiring rule create",
    );
    // An Event Grid subscription cannot take alerts.
    assert!(!coffer(
        &cluster,
        0,
        &[
            "alert",
            "rule",
            "create",
            "r",
            "--signal=purge",
            "--receiver=grid"
        ]
    )
    .status
    .success());

    // A secret that expires 40 s from now.
    let exp = now() + 40;
    let root = cluster.client().unwrap();
    let put = Request::put("/secrets/rotating?api-version=7.4")
        .json(&json!({"value": "short-lived-value", "attributes": {"exp": exp}}))
        .unwrap();
    root.send(put).await.unwrap().error_for_status().unwrap();
    // And one that expires in three days (for the expiry gauges).
    let put = Request::put("/secrets/quarterly?api-version=7.4")
        .json(&json!({"value": "three-day-value", "attributes": {"exp": now() + 3 * 86_400}}))
        .unwrap();
    root.send(put).await.unwrap().error_for_status().unwrap();

    wait_until(
        "new-version and near-expiry events",
        Duration::from_secs(30),
        || {
            let got = events_of(&seen, "events", "rotating");
            got.contains_key(SECRET_TYPES[0]) && got.contains_key(SECRET_TYPES[1])
        },
    )
    .await;
    {
        let seen = seen.lock().unwrap();
        let first = seen.iter().find(|(e, _, _)| *e == "events").unwrap();
        assert_eq!(
            first.1, "SubscriptionValidation",
            "the handshake comes first"
        );
        assert_eq!(
            first.2[0]["eventType"],
            "Microsoft.EventGrid.SubscriptionValidationEvent"
        );
    }
    // The leader's scan counts both as expiring within 7 (and 30) days;
    // a follower reports 0.
    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .unwrap();
    let gauges = expiring_when(&cluster, leader, |g| g[0] >= 2.0).await;
    assert_eq!(gauges, [2.0, 2.0, 0.0], "secrets expiring 7d, 30d, expired");
    let follower = (leader + 1) % 3;
    assert_eq!(expiring(&cluster, follower).await, [0.0; 3]);
    assert!(
        now() < exp,
        "the near-expiry phase took too long for the test"
    );

    // The leader dies before the expiry; the next one sends Expired.
    cluster.kill(leader);
    let new_leader = cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .unwrap();
    assert_ne!(new_leader, leader);
    let wait = Duration::from_secs(exp.saturating_sub(now()) + 30);
    wait_until("the expired event", wait, || {
        events_of(&seen, "events", "rotating").contains_key(SECRET_TYPES[2])
    })
    .await;
    // The new leader counts now: one expired, one still within 7 days.
    let gauges = expiring_when(&cluster, new_leader, |g| g[2] >= 1.0).await;
    assert_eq!(gauges, [1.0, 1.0, 1.0], "secrets expiring 7d, 30d, expired");
    // Nothing more arrives.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let got = events_of(&seen, "events", "rotating");
    let mut ids = std::collections::HashSet::new();
    for t in SECRET_TYPES {
        let posts = &got[t];
        assert_eq!(posts.len(), 1, "{t}: {posts:?}");
        let ev = &posts[0];
        assert!(ids.insert(ev["id"].as_str().unwrap().to_owned()));
        assert_eq!(ev["data"]["ObjectType"], "Secret");
        assert_eq!(ev["data"]["ObjectName"], "rotating");
        assert_eq!(ev["data"]["EXP"], exp);
        assert_eq!(ev["dataVersion"], "1");
        let id = ev["data"]["Id"].as_str().unwrap();
        assert!(id.contains("/secrets/rotating/"), "{id}");
        assert!(ev["topic"]
            .as_str()
            .unwrap()
            .contains("/providers/Microsoft.KeyVault/vaults/"));
    }
    assert_eq!(got.len(), 3, "{got:?}");
    let vault = got[SECRET_TYPES[0]][0]["data"]["VaultName"]
        .as_str()
        .unwrap()
        .to_owned();
    let seen_now = seen.lock().unwrap().clone();
    // The expiry rule fired once for the secret, across the failover.
    let alerts: Vec<&Value> = seen_now
        .iter()
        .filter(|(e, _, _)| *e == "hook")
        .map(|(_, _, body)| &body["data"]["essentials"])
        .filter(|e| e["alertRule"] == "expiring-soon")
        .collect();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["monitorCondition"], "Fired");
    assert_eq!(
        alerts[0]["configurationItems"][0],
        format!("{vault}/secrets/rotating")
    );
    // The validation is replicated: the new leader did not ask again.
    let validations = seen_now
        .iter()
        .filter(|(e, k, _)| *e == "events" && k == "SubscriptionValidation")
        .count();
    assert_eq!(validations, 1);
    // The endpoint that never echoed the code got handshakes, no event.
    assert!(seen_now
        .iter()
        .any(|(e, k, _)| *e == "deaf" && k == "SubscriptionValidation"));
    assert!(
        !seen_now
            .iter()
            .any(|(e, k, _)| *e == "deaf" && k == "Notification"),
        "an unvalidated endpoint got an event"
    );
    // Delivery state: the grid's delivered once each, the deaf one's not.
    let survivor = (leader + 1) % 3;
    let listed = ok_json(
        coffer(&cluster, survivor, &["alert", "firing", "list"]),
        "firing list",
    );
    let events: Vec<&Value> = listed["firings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["event"]["name"] == "rotating")
        .collect();
    assert_eq!(events.len(), 3, "{listed}");
    for f in events {
        for d in f["deliveries"].as_array().unwrap() {
            if d["receiver"] == "grid" {
                assert_eq!(
                    (d["state"].as_str(), d["attempts"].as_u64()),
                    (Some("delivered"), Some(1)),
                    "{f}"
                );
            } else {
                assert_ne!(d["state"], "delivered", "{f}");
                assert!(
                    d["last_error"]
                        .as_str()
                        .unwrap_or("")
                        .contains("validation"),
                    "{f}"
                );
            }
        }
    }
}

/// The civil date (year, month, day) of a day count since 1970-01-01
/// (H. Hinnant's algorithm).
fn civil(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m as u8, d as u8)
}

/// A certificate valid from 16 days ago until 4 days ahead (midnights),
/// with its key (PEM): 80 % of its life is behind it.
fn short_certificate() -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["app.example.com".to_owned()]).unwrap();
    let today = (now() / 86_400) as i64;
    let (y, m, d) = civil(today - 16);
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = civil(today + 4);
    params.not_after = rcgen::date_time_ymd(y, m, d);
    let cert = params.self_signed(&key).unwrap();
    format!("{}{}", cert.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread")]
async fn email_contacts_lifetime_actions_mail_the_certificate_contacts_once() {
    let rx = Receivers::start().await;
    let cluster = cluster().await;
    let port = format!("--port={}", rx.smtp_port);
    ok_json(
        coffer(
            &cluster,
            0,
            &[
                "alert",
                "receiver",
                "create",
                "contacts-mail",
                "--type=email",
                "--host=127.0.0.1",
                &port,
                "--security=none",
                "--from=coffer@example.com",
                "--certificate-contacts",
            ],
        ),
        "email receiver create",
    );
    let root = cluster.client().unwrap();
    let contacts = Request::put("/certificates/contacts?api-version=7.4")
        .json(&json!({"contacts": [{"email": "owner@example.com", "name": "Owner"}]}))
        .unwrap();
    root.send(contacts)
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    // An imported certificate gets Key Vault's EmailContacts action at
    // 80 % of its life, which is behind this one.
    let import = Request::post("/certificates/web/import?api-version=7.4")
        .json(&json!({
            "value": short_certificate(),
            "policy": {"secret_props": {"contentType": "application/x-pem-file"}}
        }))
        .unwrap();
    let resp = root.send(import).await.unwrap();
    assert_eq!(
        resp.status.as_u16(),
        200,
        "{:?}",
        String::from_utf8_lossy(&resp.body)
    );

    let mails = |i: &alerts_receivers::Inbox| {
        i.email
            .iter()
            .filter(|m| m.contains("CertificateNearExpiry") && m.contains("owner@example.com"))
            .count()
    };
    rx.wait_for("the contacts' email", Duration::from_secs(30), |i| {
        mails(i) >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    rx.collect();
    let inbox = rx.inbox.lock().unwrap();
    assert_eq!(mails(&inbox), 1, "{:?}", inbox.email);
    let mail = inbox
        .email
        .iter()
        .find(|m| m.contains("CertificateNearExpiry"))
        .unwrap();
    assert!(mail.contains("Certificate: web"), "{mail}");
}

/// Webhook alerts of `rule` as `(monitorCondition, group)`.
fn alerts_of(seen: &Seen, rule: &str) -> Vec<(String, String)> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|(e, _, _)| *e == "hook")
        .map(|(_, _, body)| &body["data"]["essentials"])
        .filter(|e| e["alertRule"] == rule)
        .map(|e| {
            (
                e["monitorCondition"].as_str().unwrap_or("").to_owned(),
                e["configurationItems"][0].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sealed_member_alerts_once_and_resolves_when_unsealed() {
    let (base, seen) = subscriber().await;
    let cluster = cluster().await;
    let hook_url = format!("--url={base}/hook");
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
                &hook_url,
            ],
        ),
        "webhook create",
    );
    ok_json(
        coffer(
            &cluster,
            0,
            &[
                "alert",
                "rule",
                "create",
                "seal-watch",
                "--signal=sealed",
                "--receiver=hook",
            ],
        ),
        "sealed rule create",
    );
    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .unwrap();
    let follower = (leader + 1) % 3;
    let token = cluster.root_token.clone().unwrap();
    let out = common::operator_cli(&cluster, follower, Some(&token), &["seal"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until("the sealed alert", Duration::from_secs(30), || {
        alerts_of(&seen, "seal-watch")
            .iter()
            .any(|(c, _)| c == "Fired")
    })
    .await;
    cluster.unseal(follower).await.unwrap();
    wait_until("the resolution", Duration::from_secs(30), || {
        alerts_of(&seen, "seal-watch")
            .iter()
            .any(|(c, _)| c == "Resolved")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = alerts_of(&seen, "seal-watch");
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].0, "Fired");
    assert_eq!(got[1].0, "Resolved");
    assert!(
        got[0].1.starts_with("node ") && got[0].1 == got[1].1,
        "{got:?}"
    );
}
