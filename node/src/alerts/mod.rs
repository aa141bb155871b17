//! The node's side of alerting: on the leader, evaluate the rules over the
//! replicated trail and send the notifications that are due, recording
//! each attempt through Raft. What rules, receivers and firings are lives
//! in `engine::alerts`; how a notification travels in [`send`].

pub mod send;

use std::sync::Arc;
use std::time::Duration;

use crate::engine::alerts::{AlertsEngine, Firing};
use crate::engine::clock::{now_ms, now_secs};
use crate::operator::Operator;

pub use send::{SendError, Sender};

/// How often the leader evaluates and sends.
pub const EVALUATE_EVERY: Duration = Duration::from_secs(1);
/// Firings handled per round at most.
const DUE_MAX: usize = 100;

/// Evaluates and delivers while this node leads; forgets its windows
/// whenever it does not (the next leader rebuilds them from the trail).
pub async fn run(operator: Arc<Operator>, alerts: Arc<AlertsEngine>, sender: Sender) {
    let mut tick = tokio::time::interval(EVALUATE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if operator.is_sealed() || !operator.node().status().is_leader {
            alerts.step_down().await;
            continue;
        }
        match alerts.evaluate(now_ms()).await {
            Ok(r) => {
                if r.fired > 0 {
                    metrics::counter!("coffer_alerts_fired_total").increment(r.fired as u64);
                }
                if r.resolved > 0 {
                    metrics::counter!("coffer_alerts_resolved_total").increment(r.resolved as u64);
                }
                if r.suppressed > 0 {
                    metrics::counter!("coffer_alerts_suppressed_total")
                        .increment(r.suppressed as u64);
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "alert evaluation failed; retrying");
                continue;
            }
        }
        deliver_due(&alerts, &sender).await;
    }
}

/// Sends every notification that is due, each receiver's in parallel.
async fn deliver_due(alerts: &AlertsEngine, sender: &Sender) {
    let now = now_secs();
    let due = match alerts.due(now, DUE_MAX) {
        Ok(d) => d,
        Err(e) => {
            tracing::debug!(error = %e, "reading pending alert notifications failed");
            return;
        }
    };
    for firing in due {
        let attempts = firing
            .deliveries
            .iter()
            .filter(|d| d.due(now))
            .map(|d| deliver(alerts, sender, &firing, &d.receiver, d.condition));
        futures::future::join_all(attempts).await;
    }
}

async fn deliver(
    alerts: &AlertsEngine,
    sender: &Sender,
    firing: &Firing,
    receiver: &str,
    condition: crate::engine::alerts::MonitorCondition,
) {
    let (kind, outcome) = match alerts.receiver(receiver) {
        Ok(r) => (
            r.kind_name(),
            sender
                .send(&r, firing, condition)
                .await
                .map_err(|e| e.to_string()),
        ),
        Err(e) => ("missing", Err(format!("receiver: {e}"))),
    };
    let result = if outcome.is_ok() {
        "delivered"
    } else {
        "failed"
    };
    metrics::counter!("coffer_alert_deliveries_total", "receiver_type" => kind, "outcome" => result)
        .increment(1);
    if let Err(e) = &outcome {
        tracing::warn!(firing = %firing.id, receiver, error = %e, "alert notification not delivered");
    }
    if let Err(e) = alerts
        .record_delivery(&firing.id, receiver, condition, outcome, now_secs())
        .await
    {
        tracing::warn!(firing = %firing.id, receiver, error = %e, "recording an alert delivery failed");
    }
}
