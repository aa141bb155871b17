//! The signals built on the trail windows beyond plain counts: first
//! access (with its replicated seen set), outside-hours filtering, error
//! rate and slow requests. Each fires through the one evaluator and firing
//! path, once, and resolves.

use std::sync::Arc;

use super::*;
use crate::audit::record::format_time;
use crate::audit::{AuditEvent, Claims, Identity, Properties};
use crate::mem_store::MemStore;

/// Friday 2027-01-15T08:00:00Z, Unix seconds.
const T0: u64 = 1_800_000_000;

/// One request record: `who` (upn) called `op` on `path` of vault `v`.
fn request(who: &str, op: &str, path: &str, status: u16, ms: u64, secs: u64) -> AuditEvent {
    AuditEvent {
        time: format_time(u128::from(secs) * 1_000_000_000),
        operation_name: op.into(),
        caller_ip_address: "10.0.0.5".into(),
        duration_ms: ms.to_string(),
        identity: Identity {
            claim: Claims {
                upn: Some(who.into()),
                ..Default::default()
            },
        },
        properties: Properties {
            id: Some(format!("https://v.vault.example{path}")),
            http_status_code: status,
            vault: "v".into(),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn read(who: &str, secret: &str, secs: u64) -> AuditEvent {
    request(
        who,
        "SecretGet",
        &format!("/secrets/{secret}/0123"),
        200,
        3,
        secs,
    )
}

/// The trail as node 1 ships it.
struct Shipper {
    store: Arc<MemStore>,
    next: u64,
}

impl Shipper {
    async fn ship(&mut self, events: Vec<AuditEvent>) {
        let batch: Vec<(u64, AuditEvent)> = events
            .into_iter()
            .map(|e| {
                self.next += 1;
                (self.next, e)
            })
            .collect();
        Trail::new(self.store.clone())
            .append(1, &batch)
            .await
            .unwrap();
    }
}

/// An engine over a fresh store with receiver `hook` and rule `watch`
/// (`condition`) created at `T0`.
async fn with_rule(condition: serde_json::Value) -> (Arc<MemStore>, AlertsEngine, Shipper) {
    let store = Arc::new(MemStore::new());
    let alerts = AlertsEngine::new(store.clone());
    alerts
        .put_receiver(
            serde_json::from_value(serde_json::json!({
                "name": "hook", "type": "webhook", "url": "http://127.0.0.1:9/in"
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    alerts
        .put_rule_at(
            serde_json::from_value(serde_json::json!({
                "name": "watch", "condition": condition, "receivers": ["hook"],
                "throttle_secs": 0
            }))
            .unwrap(),
            T0 * 1000,
        )
        .await
        .unwrap();
    let shipper = Shipper {
        store: store.clone(),
        next: 0,
    };
    (store, alerts, shipper)
}

fn groups(firings: &[Firing]) -> Vec<(String, &'static str)> {
    let mut v: Vec<(String, &'static str)> = firings
        .iter()
        .map(|f| (f.group.clone(), f.state.as_str()))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn first_access_fires_once_per_pair_and_a_new_leader_remembers_the_pairs() {
    let (store, leader, mut trail) =
        with_rule(serde_json::json!({"signal": "first-access", "learn_secs": 60})).await;
    let rule = leader.rule("watch").await.unwrap();
    assert_eq!(rule.condition.group_by, GroupBy::PrincipalObject);
    assert_eq!(rule.created_ms, T0 * 1000);
    // Alice reads during the learning period: remembered, not alerted.
    trail.ship(vec![read("alice", "db", T0 + 10)]).await;
    let r = leader.evaluate((T0 + 11) * 1000).await.unwrap();
    assert_eq!((r.records, r.fired), (1, 0), "{r:?}");
    // After it: alice again (seen), bob twice (new: one alert), a denied
    // read and a list (neither is an access).
    trail
        .ship(vec![
            read("alice", "db", T0 + 100),
            read("bob", "db", T0 + 100),
            read("bob", "DB", T0 + 101),
            request("carol", "SecretGet", "/secrets/db", 403, 1, T0 + 101),
            request("carol", "SecretList", "/secrets", 200, 1, T0 + 101),
        ])
        .await;
    let r = leader.evaluate((T0 + 102) * 1000).await.unwrap();
    assert_eq!(r.fired, 1, "{r:?}");
    // Bob signs with a key; the leader dies before evaluating it and a new
    // one (no windows, no memory) takes over: it fires that pair once.
    trail
        .ship(vec![request(
            "bob",
            "KeySign",
            "/keys/k1/77/sign",
            200,
            9,
            T0 + 110,
        )])
        .await;
    let successor = AlertsEngine::new(store.clone());
    assert_eq!(
        successor.evaluate((T0 + 111) * 1000).await.unwrap().fired,
        1
    );
    assert_eq!(leader.evaluate((T0 + 112) * 1000).await.unwrap().fired, 0);
    // Both alerts resolve once their window passed without the pair
    // crossing again.
    let r = successor.evaluate((T0 + 300) * 1000).await.unwrap();
    assert_eq!((r.fired, r.resolved), (0, 2), "{r:?}");
    // Later reads by the same pairs, long after any window, evaluated by
    // yet another fresh leader: the replicated seen set says "seen".
    trail
        .ship(vec![
            read("bob", "db", T0 + 900),
            request("bob", "KeySign", "/keys/k1/77/sign", 200, 9, T0 + 900),
            read("alice", "db", T0 + 900),
        ])
        .await;
    let third = AlertsEngine::new(store.clone());
    let r = third.evaluate((T0 + 901) * 1000).await.unwrap();
    assert_eq!(r.fired, 0, "{r:?}");
    let firings = third.firings(None, 10).await.unwrap();
    assert_eq!(
        groups(&firings),
        [
            ("bob v/keys/k1".to_owned(), "Resolved"),
            ("bob v/secrets/db".to_owned(), "Resolved"),
        ]
    );
    assert_eq!(firings[0].deliveries.len(), 2, "Fired and Resolved queued");
    let stats = third.seen_stats().unwrap();
    assert_eq!(
        (stats[0].rule.as_str(), stats[0].pairs, stats[0].evicted),
        ("watch", 3, 0)
    );
    // Deleting the rule forgets its pairs.
    third.delete_rule("watch").await.unwrap();
    assert!(third.seen_stats().unwrap().is_empty());
    assert!(store.scan(b"alr/s", None, 10).unwrap().is_empty());
}

#[tokio::test]
async fn a_full_seen_set_forgets_the_oldest_pair_which_then_alerts_again() {
    let (_store, alerts, mut trail) =
        with_rule(serde_json::json!({"signal": "first-access", "max_pairs": 2})).await;
    trail
        .ship(vec![
            read("a", "s", T0 + 1),
            read("b", "s", T0 + 2),
            read("c", "s", T0 + 3),
        ])
        .await;
    assert_eq!(alerts.evaluate((T0 + 4) * 1000).await.unwrap().fired, 3);
    let stats = &alerts.seen_stats().unwrap()[0];
    assert_eq!((stats.pairs, stats.evicted), (2, 1));
    assert_eq!(
        alerts.evaluate((T0 + 200) * 1000).await.unwrap().resolved,
        3
    );
    // After the windows: b is still remembered, a was evicted.
    trail
        .ship(vec![read("b", "s", T0 + 300), read("a", "s", T0 + 301)])
        .await;
    let r = alerts.evaluate((T0 + 302) * 1000).await.unwrap();
    assert_eq!(r.fired, 1, "{r:?}");
    let firings = alerts.firings(None, 10).await.unwrap();
    assert_eq!(
        firings
            .iter()
            .filter(|f| f.group == "a v/secrets/s")
            .count(),
        2
    );
}

#[tokio::test]
async fn outside_hours_filters_any_trail_signal_by_local_working_time() {
    let (_store, alerts, mut trail) = with_rule(serde_json::json!({
        "signal": "denied", "group_by": "principal", "window_secs": 60,
        "outside_hours": {"hours": "08:00-18:00", "days": "mon-fri", "tz_offset": "+01:00"}
    }))
    .await;
    let denied = |who: &str, secs: u64| request(who, "SecretGet", "/secrets/x", 403, 1, secs);
    // 10:00 local on Friday: working hours, no alert.
    trail.ship(vec![denied("day", T0 + 3600)]).await;
    assert_eq!(alerts.evaluate((T0 + 3601) * 1000).await.unwrap().fired, 0);
    // 18:30 local on Friday: outside, one alert.
    let evening = T0 + 9 * 3600 + 1800;
    trail.ship(vec![denied("night", evening)]).await;
    let r = alerts.evaluate((evening + 1) * 1000).await.unwrap();
    assert_eq!(r.fired, 1, "{r:?}");
    // Saturday noon local: not a working day.
    let saturday = T0 + 27 * 3600;
    trail.ship(vec![denied("weekend", saturday)]).await;
    assert_eq!(
        alerts.evaluate((saturday + 1) * 1000).await.unwrap().fired,
        1
    );
    let firings = alerts.firings(None, 10).await.unwrap();
    assert_eq!(
        groups(&firings),
        [
            ("night".to_owned(), "Resolved"),
            ("weekend".to_owned(), "Fired")
        ]
    );
}

#[tokio::test]
async fn error_rate_fires_per_operation_once_and_resolves_when_calm() {
    let (_store, alerts, mut trail) = with_rule(serde_json::json!({
        "signal": "error-rate", "group_by": "operation", "threshold": 50,
        "min_requests": 4, "window_secs": 60
    }))
    .await;
    let call = |op: &str, status: u16, secs: u64| request("app", op, "/secrets/s", status, 5, secs);
    // Three failures are too few requests to judge; the fourth request
    // (a success) makes 3 of 4 = 75 %. SecretSet: 1 of 5 fails.
    trail
        .ship(vec![
            call("SecretGet", 500, T0 + 1),
            call("SecretGet", 503, T0 + 2),
            call("SecretGet", 500, T0 + 3),
            call("SecretSet", 500, T0 + 3),
            call("SecretSet", 200, T0 + 3),
            call("SecretSet", 200, T0 + 3),
            call("SecretSet", 200, T0 + 4),
            call("SecretSet", 200, T0 + 4),
        ])
        .await;
    assert_eq!(alerts.evaluate((T0 + 4) * 1000).await.unwrap().fired, 0);
    trail
        .ship(vec![
            call("SecretGet", 200, T0 + 5),
            call("SecretGet", 500, T0 + 6),
        ])
        .await;
    let r = alerts.evaluate((T0 + 7) * 1000).await.unwrap();
    assert_eq!((r.fired, r.resolved), (1, 0), "{r:?}");
    let f = &alerts.firings(None, 10).await.unwrap()[0];
    assert_eq!(
        (f.group.as_str(), f.count, f.requests),
        ("SecretGet", 75, Some(4))
    );
    assert!(f
        .summary(MonitorCondition::Fired)
        .contains("75% of 4 requests"));
    // Healthy traffic brings the rate down; once the window has passed
    // since it fired, it resolves.
    let healthy: Vec<AuditEvent> = (0..20)
        .map(|i| call("SecretGet", 200, T0 + 40 + i / 4))
        .collect();
    trail.ship(healthy).await;
    assert_eq!(alerts.evaluate((T0 + 50) * 1000).await.unwrap().resolved, 0);
    let r = alerts.evaluate((T0 + 70) * 1000).await.unwrap();
    assert_eq!((r.fired, r.resolved), (0, 1), "{r:?}");
}

#[tokio::test]
async fn slow_requests_fire_at_the_threshold_and_resolve() {
    let (_store, alerts, mut trail) = with_rule(serde_json::json!({
        "signal": "slow", "slower_than_ms": 1000, "threshold": 2,
        "group_by": "vault", "window_secs": 30
    }))
    .await;
    let took = |ms: u64, secs: u64| request("app", "KeySign", "/keys/k/1/sign", 200, ms, secs);
    trail
        .ship(vec![
            took(500, T0 + 1),
            took(1000, T0 + 2),
            took(1500, T0 + 3),
        ])
        .await;
    assert_eq!(alerts.evaluate((T0 + 4) * 1000).await.unwrap().fired, 0);
    trail
        .ship(vec![took(2500, T0 + 5), took(4000, T0 + 6)])
        .await;
    let r = alerts.evaluate((T0 + 7) * 1000).await.unwrap();
    assert_eq!(r.fired, 1, "{r:?}");
    let f = &alerts.firings(None, 10).await.unwrap()[0];
    assert_eq!((f.group.as_str(), f.count), ("v", 2));
    let r = alerts.evaluate((T0 + 40) * 1000).await.unwrap();
    assert_eq!(r.resolved, 1, "{r:?}");
}

#[tokio::test]
async fn signal_options_are_validated() {
    let (_store, alerts, _trail) = with_rule(serde_json::json!({"signal": "any"})).await;
    for (condition, says) in [
        (
            serde_json::json!({"signal": "first-access", "threshold": 3}),
            "threshold must be 1",
        ),
        (
            serde_json::json!({"signal": "first-access", "group_by": "ip"}),
            "principal-object",
        ),
        (
            serde_json::json!({"signal": "denied", "learn_secs": 60}),
            "learn_secs",
        ),
        (serde_json::json!({"signal": "slow"}), "slower_than_ms"),
        (
            serde_json::json!({"signal": "error-rate", "threshold": 101}),
            "percentage",
        ),
        (
            serde_json::json!({"signal": "any", "min_requests": 5}),
            "min_requests",
        ),
        (
            serde_json::json!({"signal": "expiring", "outside_hours": {"hours": "08:00-18:00"}}),
            "trail signal",
        ),
        (
            serde_json::json!({"signal": "any", "outside_hours": {"hours": "8-18"}}),
            "HH:MM",
        ),
    ] {
        let rule: Rule = serde_json::from_value(serde_json::json!({
            "name": "bad", "condition": condition, "receivers": ["hook"]
        }))
        .unwrap();
        match alerts.put_rule(rule).await {
            Err(EngineError::BadParameter(m)) => assert!(m.contains(says), "{m}"),
            other => panic!("{condition}: {other:?}"),
        }
    }
    assert!(matches!(
        alerts.rule("bad").await,
        Err(EngineError::NotFound { .. })
    ));
}
