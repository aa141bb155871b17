use std::sync::Arc;

use super::*;
use crate::audit::record::format_time;
use crate::audit::{AuditEvent, Properties};
use crate::mem_store::MemStore;

const T0: u64 = 1_800_000_000; // Unix seconds of the first record

fn denied(ip: &str, secs: u64) -> AuditEvent {
    AuditEvent {
        time: format_time(u128::from(secs) * 1_000_000_000),
        operation_name: "SecretGet".into(),
        caller_ip_address: ip.into(),
        properties: Properties {
            http_status_code: 403,
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn configured(store: Arc<MemStore>) -> AlertsEngine {
    let alerts = AlertsEngine::new(store);
    alerts
        .put_receiver(
            serde_json::from_value(serde_json::json!({
                "name": "hook", "type": "webhook", "url": "http://127.0.0.1:9/in",
                "secret": "signing-key-1"
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    alerts
        .put_rule(
            serde_json::from_value(serde_json::json!({
                "name": "burst",
                "condition": {"signal": "denied", "group_by": "ip",
                              "threshold": 5, "window_secs": 60},
                "receivers": ["hook"],
                "throttle_secs": 120
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    alerts
}

/// Ships `records` (ip, second) into the trail as node 1's next batch.
async fn ship(store: &Arc<MemStore>, from_seq: u64, records: &[(&str, u64)]) {
    let trail = Trail::new(store.clone());
    let batch: Vec<(u64, AuditEvent)> = records
        .iter()
        .enumerate()
        .map(|(i, (ip, t))| (from_seq + i as u64, denied(ip, *t)))
        .collect();
    trail.append(1, &batch).await.unwrap();
}

#[tokio::test]
async fn five_denials_fire_once_and_a_new_leader_neither_loses_nor_repeats_it() {
    let store = Arc::new(MemStore::new());
    let leader = configured(store.clone()).await;
    // Two denials, evaluated by the first leader.
    ship(&store, 1, &[("10.0.0.9", T0), ("10.0.0.9", T0 + 1)]).await;
    let r = leader.evaluate((T0 + 2) * 1000).await.unwrap();
    assert_eq!((r.records, r.fired), (2, 0));
    // It dies; three more arrive; another node takes over.
    ship(
        &store,
        3,
        &[
            ("10.0.0.9", T0 + 5),
            ("10.0.0.9", T0 + 6),
            ("10.0.0.9", T0 + 7),
        ],
    )
    .await;
    let next = AlertsEngine::new(store.clone());
    let r = next.evaluate((T0 + 8) * 1000).await.unwrap();
    assert_eq!(r.fired, 1, "{r:?}");
    // The old leader comes back with its stale memory and evaluates too.
    let r = leader.evaluate((T0 + 9) * 1000).await.unwrap();
    assert_eq!(r.fired, 0, "{r:?}");
    // So does a third node rebuilding from scratch.
    let third = AlertsEngine::new(store.clone());
    let r = third.evaluate((T0 + 9) * 1000).await.unwrap();
    assert_eq!(r.fired, 0, "{r:?}");
    let firings = next.firings(None, 10).await.unwrap();
    assert_eq!(firings.len(), 1);
    let f = &firings[0];
    assert_eq!((f.group.as_str(), f.count, f.fired_seq), ("10.0.0.9", 5, 5));
    assert_eq!(f.deliveries.len(), 1);
    assert!(f.pending());
    // A sixth denial while the alert is active fires nothing.
    ship(&store, 6, &[("10.0.0.9", T0 + 10)]).await;
    assert_eq!(next.evaluate((T0 + 11) * 1000).await.unwrap().fired, 0);
}

#[tokio::test]
async fn alerts_resolve_after_the_window_and_throttle_refires() {
    let store = Arc::new(MemStore::new());
    let alerts = configured(store.clone()).await;
    let burst =
        |t: u64| -> Vec<(&'static str, u64)> { (0..5).map(|i| ("10.0.0.1", t + i)).collect() };
    ship(&store, 1, &burst(T0)).await;
    assert_eq!(alerts.evaluate((T0 + 5) * 1000).await.unwrap().fired, 1);
    // Still within the window: nothing resolves.
    assert_eq!(alerts.evaluate((T0 + 30) * 1000).await.unwrap().resolved, 0);
    let r = alerts.evaluate((T0 + 70) * 1000).await.unwrap();
    assert_eq!(r.resolved, 1);
    let f = &alerts.firings(Some("burst"), 10).await.unwrap()[0];
    assert_eq!(f.state, MonitorCondition::Resolved);
    assert_eq!(
        f.deliveries
            .iter()
            .filter(|d| d.condition == MonitorCondition::Resolved)
            .count(),
        1
    );
    // A new burst within the throttle (120 s after the first fired) is
    // suppressed; one after it fires.
    ship(&store, 6, &burst(T0 + 80)).await;
    let r = alerts.evaluate((T0 + 86) * 1000).await.unwrap();
    assert_eq!((r.fired, r.suppressed), (0, 1));
    ship(&store, 11, &burst(T0 + 200)).await;
    assert_eq!(alerts.evaluate((T0 + 206) * 1000).await.unwrap().fired, 1);
    assert_eq!(alerts.firings(None, 10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn deliveries_are_recorded_retried_and_leave_the_queue() {
    let store = Arc::new(MemStore::new());
    let alerts = configured(store.clone()).await;
    let records: Vec<(&str, u64)> = (0..5).map(|i| ("10.0.0.1", T0 + i)).collect();
    ship(&store, 1, &records).await;
    alerts.evaluate((T0 + 5) * 1000).await.unwrap();
    let due = alerts.due(T0 + 5, 100).unwrap();
    assert_eq!(due.len(), 1);
    let id = due[0].id.clone();
    let f = alerts
        .record_delivery(
            &id,
            "hook",
            MonitorCondition::Fired,
            Err("503".into()),
            T0 + 5,
        )
        .await
        .unwrap();
    assert_eq!(f.deliveries[0].attempts, 1);
    assert!(alerts.due(T0 + 5, 100).unwrap().is_empty(), "backing off");
    assert_eq!(alerts.due(T0 + 6, 100).unwrap().len(), 1);
    let f = alerts
        .record_delivery(&id, "hook", MonitorCondition::Fired, Ok(()), T0 + 6)
        .await
        .unwrap();
    assert_eq!(f.deliveries[0].state, DeliveryState::Delivered);
    assert!(!f.pending());
    assert!(alerts.due(T0 + 100, 100).unwrap().is_empty());
    // Recording the same delivery again changes nothing.
    let again = alerts
        .record_delivery(&id, "hook", MonitorCondition::Fired, Ok(()), T0 + 7)
        .await
        .unwrap();
    assert_eq!(again.deliveries[0].attempts, 2);
}

#[tokio::test]
async fn configuration_keeps_references_and_secrets() {
    let store = Arc::new(MemStore::new());
    let alerts = configured(store.clone()).await;
    // A rule naming a missing receiver is refused.
    let mut rule = alerts.rule("burst").await.unwrap();
    rule.receivers = vec!["nowhere".into()];
    assert!(matches!(
        alerts.put_rule(rule).await,
        Err(EngineError::BadParameter(_))
    ));
    // A receiver in use cannot be deleted; answers never show its secret.
    assert!(matches!(
        alerts.delete_receiver("hook").await,
        Err(EngineError::Conflict(_))
    ));
    let shown = serde_json::to_string(&alerts.receivers().await.unwrap()).unwrap();
    assert!(!shown.contains("signing-key-1"), "{shown}");
    assert!(matches!(
        alerts.receiver("hook").unwrap().kind,
        ReceiverKind::Webhook { secret: Some(ref s), .. } if s == "signing-key-1"
    ));
    alerts.delete_rule("burst").await.unwrap();
    alerts.delete_receiver("hook").await.unwrap();
    assert!(alerts.rules().await.unwrap().is_empty());
    assert!(matches!(
        alerts.rule("burst").await,
        Err(EngineError::NotFound { .. })
    ));
}

#[tokio::test]
async fn history_is_not_alerted_and_dry_runs_count_groups() {
    let store = Arc::new(MemStore::new());
    // Old denials, long before any rule existed.
    let old: Vec<(&str, u64)> = (0..5).map(|i| ("10.0.0.1", T0 + i)).collect();
    ship(&store, 1, &old).await;
    let alerts = configured(store.clone()).await;
    let r = alerts.evaluate((T0 + 3600) * 1000).await.unwrap();
    assert_eq!(r.fired, 0, "{r:?}");
    let recent: Vec<(&str, u64)> = vec![
        ("10.0.0.1", T0 + 3601),
        ("10.0.0.2", T0 + 3602),
        ("10.0.0.2", T0 + 3603),
    ];
    ship(&store, 6, &recent).await;
    let rule = alerts.rule("burst").await.unwrap();
    let counts = alerts.dry_run(&rule, (T0 + 3605) * 1000).await.unwrap();
    assert_eq!(
        counts,
        vec![("10.0.0.1".into(), 1, false), ("10.0.0.2".into(), 2, false)]
    );
}
