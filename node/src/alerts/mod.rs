//! The node's side of alerting: on the leader, evaluate the rules over the
//! replicated trail, scan the objects for lifecycle events, and send the
//! notifications that are due, recording each attempt through Raft. What
//! rules, receivers, events and firings are lives in `engine::alerts`; how
//! a notification travels in [`send`].

pub mod probe;
pub mod send;

use std::sync::Arc;
use std::time::Duration;

use crate::engine::alerts::{AlertsEngine, Firing, Receiver, ReceiverKind, Signal};
use crate::engine::clock::{now_ms, now_secs};
use crate::operator::Operator;

pub use probe::SealProbe;
pub use send::{SendError, Sender};

/// How the leader looks for lifecycle events (`[events]` of the config).
#[derive(Clone, Copy, Debug)]
pub struct EventsSchedule {
    /// Seconds between two scans of the objects.
    pub every: Duration,
    /// Lead time of `…NearExpiry`, seconds.
    pub near_expiry_secs: u64,
    /// TEST ONLY: seconds the scan sees the clock ahead.
    pub clock_offset: u64,
}

/// How often the leader evaluates and sends.
pub const EVALUATE_EVERY: Duration = Duration::from_secs(1);
/// Firings handled per round at most.
const DUE_MAX: usize = 100;
/// A lifecycle scan reads every object's current version, which takes
/// seconds on a vault of a million secrets; the next scan then waits this
/// many times as long as the last one took (if that is longer than
/// `[events] scan_interval_secs`), so scanning never takes more than a
/// tenth of the leader's time however large the vault grows.
const SCAN_DUTY_FACTOR: u32 = 10;

impl EventsSchedule {
    /// How long after a scan that took `took` the next one starts.
    fn next_scan_after(&self, took: Duration) -> Duration {
        self.every.max(took.saturating_mul(SCAN_DUTY_FACTOR))
    }
}

/// Evaluates and delivers while this node leads; forgets its windows
/// whenever it does not (the next leader rebuilds them from the trail).
pub async fn run(
    operator: Arc<Operator>,
    alerts: Arc<AlertsEngine>,
    sender: Sender,
    events: EventsSchedule,
    probe: SealProbe,
) {
    let mut tick = tokio::time::interval(EVALUATE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_scan: Option<tokio::time::Instant> = None;
    let mut scan_gap = events.every;
    let mut recorded_term: Option<u64> = None;
    loop {
        tick.tick().await;
        let status = operator.node().status();
        if operator.is_sealed() || !status.is_leader {
            alerts.step_down().await;
            // Only the leader counts what expires (its scan).
            crate::metrics::set_expiring(None);
            last_scan = None;
            continue;
        }
        // Each leadership is recorded once, for `leader-changes` rules.
        if recorded_term != Some(status.term) {
            match alerts.record_election(status.term, now_ms()).await {
                Ok(()) => recorded_term = Some(status.term),
                Err(e) => tracing::debug!(error = %e, "recording the election failed; retrying"),
            }
        }
        if last_scan.is_none_or(|t| t.elapsed() >= scan_gap) {
            let started = tokio::time::Instant::now();
            last_scan = Some(started);
            scan_events(&alerts, &events).await;
            let took = started.elapsed();
            scan_gap = events.next_scan_after(took);
            if scan_gap > events.every {
                tracing::debug!(
                    took_ms = took.as_millis() as u64,
                    next_in_s = scan_gap.as_secs(),
                    "the lifecycle scan is slow; the next one waits longer"
                );
            }
            look_for_sealed(&operator, &alerts, &probe, status.node_id).await;
            export_seen_sets(&alerts);
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

/// One scan for lifecycle events (logged and counted).
async fn scan_events(alerts: &AlertsEngine, events: &EventsSchedule) {
    match alerts
        .emit_events(now_secs() + events.clock_offset, events.near_expiry_secs)
        .await
    {
        Ok(scan) => {
            // A scan cut short by a storm of events counted only part of
            // the objects: keep the last complete counts.
            if scan.complete {
                crate::metrics::set_expiring(Some((scan.secrets, scan.certificates)));
            }
            if scan.emitted > 0 {
                metrics::counter!("coffer_events_recorded_total").increment(scan.emitted as u64);
            }
            if scan.fired > 0 {
                metrics::counter!("coffer_alerts_fired_total").increment(scan.fired as u64);
            }
            if scan.resolved > 0 {
                metrics::counter!("coffer_alerts_resolved_total").increment(scan.resolved as u64);
            }
        }
        Err(e) => tracing::debug!(error = %e, "lifecycle event scan failed; retrying"),
    }
}

/// Asks every member whether it is sealed, for `sealed` rules (only while
/// such a rule exists: each look is one request to every member).
async fn look_for_sealed(operator: &Operator, alerts: &AlertsEngine, probe: &SealProbe, me: u64) {
    if !alerts.watches(Signal::Sealed).unwrap_or(false) {
        return;
    }
    let peers = match operator.node().peers().await {
        Ok(p) => p.peers,
        Err(e) => {
            tracing::debug!(error = %e, "reading the membership failed");
            return;
        }
    };
    let sealed = probe.sealed(&peers, me).await;
    match alerts.evaluate_sealed(&sealed, now_ms()).await {
        Ok(o) => {
            if o.fired > 0 {
                metrics::counter!("coffer_alerts_fired_total").increment(o.fired as u64);
            }
            if o.resolved > 0 {
                metrics::counter!("coffer_alerts_resolved_total").increment(o.resolved as u64);
            }
        }
        Err(e) => tracing::debug!(error = %e, "evaluating sealed rules failed; retrying"),
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
            send_validated(alerts, sender, &r, firing, condition)
                .await
                .map_err(|e| e.to_string()),
        ),
        Err(e) => ("missing", Err(format!("receiver: {e}"))),
    };
    if let (Ok(()), Some(event)) = (&outcome, &firing.event) {
        metrics::counter!("coffer_events_emitted_total", "type" => event.event_type.clone())
            .increment(1);
    }
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

/// Sends one notification; an Event Grid subscription first passes the
/// validation handshake (once per endpoint, recorded through Raft), so no
/// event reaches an endpoint that did not ask for them.
async fn send_validated(
    alerts: &AlertsEngine,
    sender: &Sender,
    receiver: &Receiver,
    firing: &Firing,
    condition: crate::engine::alerts::MonitorCondition,
) -> Result<(), SendError> {
    if let ReceiverKind::EventGrid { url, .. } = &receiver.kind {
        let validated = alerts
            .subscription_validated(&receiver.name, url)
            .map_err(|e| SendError::Transport(format!("reading the validation state: {e}")))?;
        if !validated {
            sender.validate_subscription(receiver).await?;
            alerts
                .record_validation(&receiver.name, url, now_secs())
                .await
                .map_err(|e| SendError::Transport(format!("recording the validation: {e}")))?;
            tracing::info!(receiver = %receiver.name, "event subscription validated");
        }
    }
    sender.send(receiver, firing, condition).await
}

/// Exports how full the `first-access` rules' seen sets are: a set that
/// evicts pairs forgets readers, who then alert again.
fn export_seen_sets(alerts: &AlertsEngine) {
    match alerts.seen_stats() {
        Ok(all) => {
            for s in all {
                metrics::gauge!("coffer_alert_first_access_pairs", "rule" => s.rule.clone())
                    .set(s.pairs as f64);
                metrics::gauge!("coffer_alert_first_access_evicted_pairs", "rule" => s.rule)
                    .set(s.evicted as f64);
            }
        }
        Err(e) => tracing::debug!(error = %e, "reading the first-access seen sets failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_scan_spaces_out_the_next_one_to_a_tenth_of_the_time() {
        let schedule = EventsSchedule {
            every: Duration::from_secs(30),
            near_expiry_secs: 0,
            clock_offset: 0,
        };
        // A small vault: the configured interval.
        assert_eq!(
            schedule.next_scan_after(Duration::from_millis(40)),
            Duration::from_secs(30)
        );
        // A scan of 8 s (a million objects): the next in 80 s.
        assert_eq!(
            schedule.next_scan_after(Duration::from_secs(8)),
            Duration::from_secs(80)
        );
    }
}
