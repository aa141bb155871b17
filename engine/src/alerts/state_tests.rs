use std::sync::Arc;

use super::*;
use crate::mem_store::MemStore;
use crate::secrets::{SecretsEngine, SetSecret};
use crate::vaults::VaultsEngine;

const DAY: u64 = 86_400;

async fn engine_with_rule(store: &Arc<MemStore>, condition: serde_json::Value) -> AlertsEngine {
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
        .put_rule(
            serde_json::from_value(serde_json::json!({
                "name": "watch", "condition": condition, "receivers": ["hook"],
                "throttle_secs": 0
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    alerts
}

fn states(firings: &[Firing]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = firings
        .iter()
        .map(|f| (f.group.clone(), f.state.as_str().to_owned()))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn an_expiring_rule_fires_once_per_object_and_resolves_on_renewal() {
    let store = Arc::new(MemStore::new());
    VaultsEngine::new(store.clone())
        .create("v", None)
        .await
        .unwrap();
    let secrets = SecretsEngine::new(store.clone());
    let now = crate::clock::now_secs();
    let set = |name: &'static str, exp: u64| {
        let secrets = &secrets;
        async move {
            let params = SetSecret {
                value: "v".into(),
                exp: Some(exp as i64),
                ..Default::default()
            };
            secrets.set("v", name, params, None).await.unwrap();
        }
    };
    set("soon", now + 2 * DAY).await;
    set("later", now + 30 * DAY).await;
    let alerts = engine_with_rule(
        &store,
        serde_json::json!({"signal": "expiring", "within_secs": 7 * DAY}),
    )
    .await;
    let scan = alerts.emit_events(now, DAY).await.unwrap();
    assert_eq!((scan.fired, scan.resolved), (1, 0));
    // Again, and by another leader: nothing new.
    let scan = AlertsEngine::new(store.clone())
        .emit_events(now + 1, DAY)
        .await
        .unwrap();
    assert_eq!((scan.fired, scan.resolved), (0, 0));
    let firings = alerts.firings(None, 10).await.unwrap();
    assert_eq!(
        states(&firings),
        [("v/secrets/soon".into(), "Fired".into())]
    );
    assert_eq!(firings[0].deliveries.len(), 1);
    // Renewed: resolved, and the Resolved notification is queued.
    set("soon", now + 90 * DAY).await;
    let scan = alerts.emit_events(now + 2, DAY).await.unwrap();
    assert_eq!((scan.fired, scan.resolved), (0, 1));
    let firings = alerts.firings(None, 10).await.unwrap();
    assert_eq!(
        states(&firings),
        [("v/secrets/soon".into(), "Resolved".into())]
    );
    assert_eq!(firings[0].deliveries.len(), 2);
}

#[tokio::test]
async fn leader_changes_fire_above_the_threshold_and_resolve_when_calm() {
    let store = Arc::new(MemStore::new());
    let alerts = engine_with_rule(
        &store,
        serde_json::json!({"signal": "leader-changes", "threshold": 3, "window_secs": 600}),
    )
    .await;
    let t0 = 1_800_000_000_000u64;
    for (term, at) in [(2, t0), (3, t0 + 60_000)] {
        alerts.record_election(term, at).await.unwrap();
    }
    // The same term twice (two nodes noticed it) counts once.
    alerts.record_election(3, t0 + 61_000).await.unwrap();
    let r = alerts.evaluate(t0 + 62_000).await.unwrap();
    assert_eq!(r.fired, 0);
    alerts.record_election(4, t0 + 120_000).await.unwrap();
    let r = alerts.evaluate(t0 + 121_000).await.unwrap();
    assert_eq!(r.fired, 1);
    // A new leader evaluating the same state does not fire again.
    let successor = AlertsEngine::new(store.clone());
    assert_eq!(successor.evaluate(t0 + 122_000).await.unwrap().fired, 0);
    // Ten minutes after the first election the count drops to 2.
    let r = successor.evaluate(t0 + 601_000).await.unwrap();
    assert_eq!((r.fired, r.resolved), (0, 1));
    let firings = alerts.firings(None, 10).await.unwrap();
    assert_eq!(firings.len(), 1);
    assert_eq!(firings[0].count, 3);
}

#[tokio::test]
async fn a_sealed_member_alerts_once_until_it_is_unsealed() {
    let store = Arc::new(MemStore::new());
    let alerts = engine_with_rule(&store, serde_json::json!({"signal": "sealed"})).await;
    assert!(alerts.watches(Signal::Sealed).unwrap());
    assert!(!alerts.watches(Signal::Expiring).unwrap());
    let t0 = 1_800_000_000_000u64;
    assert_eq!(alerts.evaluate_sealed(&[], t0).await.unwrap().fired, 0);
    assert_eq!(
        alerts.evaluate_sealed(&[3], t0 + 1000).await.unwrap().fired,
        1
    );
    // Still sealed, seen by the next leader a second later: no new alert.
    let successor = AlertsEngine::new(store.clone());
    let o = successor.evaluate_sealed(&[3], t0 + 2000).await.unwrap();
    assert_eq!((o.fired, o.resolved), (0, 0));
    let o = successor.evaluate_sealed(&[], t0 + 3000).await.unwrap();
    assert_eq!((o.fired, o.resolved), (0, 1));
    let firings = alerts.firings(None, 10).await.unwrap();
    assert_eq!(states(&firings), [("node 3".into(), "Resolved".into())]);
}
