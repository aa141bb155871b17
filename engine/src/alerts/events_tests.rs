use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::*;
use crate::certificates::pending::CreateCertificate;
use crate::certificates::{CertificatesEngine, Contact};
use crate::clock::Clock;
use crate::keys::KeysEngine;
use crate::mem_store::MemStore;
use crate::secrets::{SecretsEngine, SetSecret};
use crate::vaults::VaultsEngine;

const T0: u64 = 1_800_000_000;
const DAY: u64 = 86_400;

struct Fixture {
    store: Arc<MemStore>,
    now: Arc<AtomicU64>,
    secrets: SecretsEngine,
    alerts: AlertsEngine,
}

async fn fixture() -> Fixture {
    let store = Arc::new(MemStore::new());
    let now = Arc::new(AtomicU64::new(T0));
    let n = now.clone();
    let clock: Clock = Arc::new(move || n.load(Ordering::SeqCst));
    let vaults = VaultsEngine::new(store.clone());
    vaults.create("v", None).await.unwrap();
    vaults.create("other", None).await.unwrap();
    Fixture {
        secrets: SecretsEngine::with_clock(store.clone(), clock),
        alerts: AlertsEngine::new(store.clone()),
        store,
        now,
    }
}

async fn subscribe(alerts: &AlertsEngine, name: &str, extra: serde_json::Value) {
    let mut body = serde_json::json!({
        "name": name, "type": "event-grid", "url": "http://127.0.0.1:9/events"
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    alerts
        .put_receiver(serde_json::from_value(body).unwrap())
        .await
        .unwrap();
}

async fn set(f: &Fixture, vault: &str, name: &str, exp: Option<u64>) {
    let params = SetSecret {
        value: "s3cret-value".into(),
        exp: exp.map(|e| e as i64),
        ..Default::default()
    };
    f.secrets.set(vault, name, params, None).await.unwrap();
}

fn types(firings: &[Firing]) -> Vec<String> {
    let mut t: Vec<String> = firings
        .iter()
        .map(|f| f.event.as_ref().unwrap().event_type.clone())
        .collect();
    t.sort();
    t
}

#[tokio::test]
async fn each_event_is_recorded_once_even_by_a_new_leader() {
    let f = fixture().await;
    subscribe(&f.alerts, "grid", serde_json::json!({})).await;
    set(&f, "v", "Payroll", Some(T0 + 100)).await;
    // New version and near expiry (100 s < 30 days) at once.
    let scan = f
        .alerts
        .emit_events(T0 + 1, DEFAULT_NEAR_EXPIRY_SECS)
        .await
        .unwrap();
    assert_eq!(scan.emitted, 2);
    let again = f
        .alerts
        .emit_events(T0 + 2, DEFAULT_NEAR_EXPIRY_SECS)
        .await
        .unwrap();
    assert_eq!((again.emitted, again.known), (0, 2));
    // Another node takes over with no memory: it finds both.
    let successor = AlertsEngine::new(f.store.clone());
    let scan = successor
        .emit_events(T0 + 3, DEFAULT_NEAR_EXPIRY_SECS)
        .await
        .unwrap();
    assert_eq!((scan.emitted, scan.known), (0, 2));
    // Expiry: one Expired, once.
    for at in [T0 + 100, T0 + 101] {
        successor
            .emit_events(at, DEFAULT_NEAR_EXPIRY_SECS)
            .await
            .unwrap();
    }
    let firings = f.alerts.firings(None, 100).await.unwrap();
    assert_eq!(
        types(&firings),
        [
            "Microsoft.KeyVault.SecretExpired",
            "Microsoft.KeyVault.SecretNearExpiry",
            "Microsoft.KeyVault.SecretNewVersionCreated",
        ]
    );
    for firing in &firings {
        assert_eq!(firing.deliveries.len(), 1);
        assert_eq!(firing.deliveries[0].receiver, "grid");
        let e = firing.event.as_ref().unwrap();
        assert_eq!((e.vault.as_str(), e.name.as_str()), ("v", "Payroll"));
        assert_eq!(e.exp, Some((T0 + 100) as i64));
    }
    // Every firing waits for delivery through the alerts' path.
    assert_eq!(f.alerts.due(T0 + 200, 100).unwrap().len(), 3);
    // A new version is a new object state: its own events.
    f.now.store(T0 + 200, Ordering::SeqCst);
    set(&f, "v", "Payroll", Some(T0 + 400)).await;
    let scan = f
        .alerts
        .emit_events(T0 + 201, DEFAULT_NEAR_EXPIRY_SECS)
        .await
        .unwrap();
    assert_eq!(scan.emitted, 2);
}

#[tokio::test]
async fn subscriptions_filter_by_type_and_vault_and_nothing_is_kept_without_one() {
    let f = fixture().await;
    set(&f, "v", "a", Some(T0 + 10 * DAY)).await;
    set(&f, "other", "b", Some(T0 + 10 * DAY)).await;
    set(&f, "v", "far", Some(T0 + 60 * DAY)).await;
    set(&f, "v", "never", None).await;
    let scan = f
        .alerts
        .emit_events(T0 + 1, DEFAULT_NEAR_EXPIRY_SECS)
        .await
        .unwrap();
    // Nothing subscribes: no event is kept, but the scan still counts
    // what expires (10 days: within 30, not within 7).
    assert_eq!((scan.emitted, scan.known, scan.fired), (0, 0, 0));
    assert!(scan.complete);
    assert_eq!(
        scan.secrets,
        ExpiryCounts {
            within_short: 0,
            within_long: 2,
            expired: 0
        }
    );
    assert!(f.alerts.firings(None, 100).await.unwrap().is_empty());

    subscribe(
        &f.alerts,
        "near-v",
        serde_json::json!({
            "event_types": ["Microsoft.KeyVault.SecretNearExpiry"], "vaults": ["V"]
        }),
    )
    .await;
    // Old versions are not news; near expiry is, in vault v only, and
    // "far" is beyond the 30 days.
    f.alerts
        .emit_events(T0 + 1000, DEFAULT_NEAR_EXPIRY_SECS)
        .await
        .unwrap();
    let firings = f.alerts.firings(None, 100).await.unwrap();
    assert_eq!(types(&firings), ["Microsoft.KeyVault.SecretNearExpiry"]);
    assert_eq!(firings[0].event.as_ref().unwrap().name, "a");
    // A shorter lead time (7 days) would not have sent it yet.
    let short = fixture().await;
    subscribe(&short.alerts, "grid", serde_json::json!({})).await;
    set(&short, "v", "a", Some(T0 + 10 * DAY)).await;
    short.alerts.emit_events(T0 + 1000, 7 * DAY).await.unwrap();
    assert!(short.alerts.firings(None, 100).await.unwrap().is_empty());
    short
        .alerts
        .emit_events(T0 + 3 * DAY + 1, 7 * DAY)
        .await
        .unwrap();
    assert_eq!(short.alerts.firings(None, 100).await.unwrap().len(), 1);
}

#[tokio::test]
async fn event_grid_receivers_take_no_alerts_and_rules_take_no_event_signal() {
    let f = fixture().await;
    subscribe(&f.alerts, "grid", serde_json::json!({})).await;
    let rule = |signal: &str, receiver: &str| -> Rule {
        serde_json::from_value(serde_json::json!({
            "name": "r", "condition": {"signal": signal}, "receivers": [receiver]
        }))
        .unwrap()
    };
    assert!(f.alerts.put_rule(rule("purge", "grid")).await.is_err());
    f.alerts
        .put_receiver(
            serde_json::from_value(serde_json::json!({
                "name": "hook", "type": "webhook", "url": "http://127.0.0.1:9/in"
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    assert!(f.alerts.put_rule(rule("event", "hook")).await.is_err());
    f.alerts.put_rule(rule("purge", "hook")).await.unwrap();
    let bad: Receiver = serde_json::from_value(serde_json::json!({
        "name": "g2", "type": "event-grid", "url": "http://127.0.0.1:9/e",
        "event_types": ["Microsoft.KeyVault.SecretRotated"]
    }))
    .unwrap();
    assert!(bad.validate().is_err());
}

#[tokio::test]
async fn validation_is_recorded_per_endpoint_and_reset_by_a_change() {
    let f = fixture().await;
    subscribe(&f.alerts, "grid", serde_json::json!({})).await;
    let url = "http://127.0.0.1:9/events";
    assert!(!f.alerts.subscription_validated("grid", url).unwrap());
    f.alerts.record_validation("grid", url, T0).await.unwrap();
    assert!(f.alerts.subscription_validated("grid", url).unwrap());
    // A validation for another url (the receiver changed meanwhile) is
    // not recorded, and replacing the receiver asks again.
    f.alerts
        .record_validation("grid", "http://elsewhere/", T0)
        .await
        .unwrap();
    assert!(!f
        .alerts
        .subscription_validated("grid", "http://elsewhere/")
        .unwrap());
    subscribe(&f.alerts, "grid", serde_json::json!({})).await;
    assert!(!f.alerts.subscription_validated("grid", url).unwrap());
}

#[test]
fn event_grid_shape_follows_the_fact_sheet() {
    let event = LifecycleEvent {
        event_type: event_type(ObjectType::Key, EventKind::Expired),
        object_type: ObjectType::Key,
        vault: "prod".into(),
        name: "Signer".into(),
        version: "0123456789abcdef0123456789abcdef".into(),
        nbf: None,
        exp: Some(1_900_000_000),
        time: "2030-03-17T17:46:40.0000000Z".into(),
        contacts: Vec::new(),
    };
    let id = event_id(&event, false);
    assert_eq!(id, event_id(&event.clone(), false));
    assert_ne!(id, event_id(&event, true));
    let v = event.event_grid(&id, "prod.vault.example", "tenant-1");
    let e = &v[0];
    assert_eq!(e["eventType"], "Microsoft.KeyVault.KeyExpired");
    assert_eq!(e["subject"], "Signer");
    assert_eq!(e["id"].as_str().unwrap().len(), 36);
    assert_eq!(
        e["topic"],
        "/subscriptions/tenant-1/resourceGroups/coffer/providers/Microsoft.KeyVault/vaults/prod"
    );
    assert_eq!(
        e["data"]["Id"],
        "https://prod.vault.example/keys/Signer/0123456789abcdef0123456789abcdef"
    );
    assert_eq!(e["data"]["ObjectType"], "Key");
    assert_eq!(e["data"]["EXP"], 1_900_000_000);
    assert!(e["data"]["NBF"].is_null());
    assert_eq!(
        (e["dataVersion"].as_str(), e["metadataVersion"].as_str()),
        (Some("1"), Some("1"))
    );
}

#[tokio::test]
async fn email_contacts_actions_notify_the_vaults_contacts_once() {
    let f = fixture().await;
    let n = f.now.clone();
    let clock: Clock = Arc::new(move || n.load(Ordering::SeqCst));
    let keys = Arc::new(KeysEngine::with_clock(f.store.clone(), None, clock.clone()));
    let secrets = Arc::new(SecretsEngine::with_clock(f.store.clone(), clock.clone()));
    let certs = CertificatesEngine::with_clock(f.store.clone(), keys, secrets, clock);
    let policy = serde_json::from_value(serde_json::json!({
        "key_props": {"kty": "EC", "crv": "P-256"},
        "x509_props": {"subject": "CN=app.example.com", "validity_months": 1},
        "issuer": {"name": "Self"},
        "lifetime_actions": [{
            "trigger": {"lifetime_percentage": 50},
            "action": {"action_type": "EmailContacts"}
        }]
    }))
    .unwrap();
    let create = CreateCertificate {
        policy,
        ..Default::default()
    };
    certs.create("v", "Web", create, None).await.unwrap();
    certs
        .set_contacts(
            "v",
            vec![Contact {
                email: Some("owner@example.com".into()),
                ..Default::default()
            }],
            None,
        )
        .await
        .unwrap();
    f.alerts
        .put_receiver(
            serde_json::from_value(serde_json::json!({
                "name": "mail", "type": "email", "host": "127.0.0.1",
                "from": "coffer@example.com", "certificate_contacts": true
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let cert = certs.get("v", "Web", None).await.unwrap();
    let half = (cert.nbf + (cert.exp - cert.nbf) / 2) as u64;
    // Before the trigger: nothing.
    let scan = f.alerts.emit_events(half - 10, 7 * DAY).await.unwrap();
    assert_eq!(scan.emitted, 0);
    for at in [half + 1, half + 2] {
        f.alerts.emit_events(at, 7 * DAY).await.unwrap();
    }
    let firings = f.alerts.firings(None, 100).await.unwrap();
    assert_eq!(firings.len(), 1, "{firings:?}");
    let e = firings[0].event.as_ref().unwrap();
    assert_eq!(e.event_type, "Microsoft.KeyVault.CertificateNearExpiry");
    assert_eq!(e.contacts, ["owner@example.com"]);
    assert_eq!(firings[0].deliveries[0].receiver, "mail");

    // Three days before it ends the certificate counts as expiring within
    // 7 (and 30) days, and its own secret is not counted as a secret.
    let scan = f
        .alerts
        .emit_events(cert.exp as u64 - 3 * DAY, 7 * DAY)
        .await
        .unwrap();
    assert_eq!(
        (scan.certificates, scan.secrets),
        (
            ExpiryCounts {
                within_short: 1,
                within_long: 1,
                expired: 0
            },
            ExpiryCounts::default()
        )
    );
    let scan = f
        .alerts
        .emit_events(cert.exp as u64 + 1, 7 * DAY)
        .await
        .unwrap();
    assert_eq!(scan.certificates.expired, 1);
    assert_eq!(scan.certificates.within_long, 0);
}
