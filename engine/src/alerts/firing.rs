//! A firing: one alert of one rule for one group, recorded through Raft
//! before anything is sent, with the delivery state of each notification
//! (`Fired`, later `Resolved`) to each receiver; and its rendering as the
//! Azure Monitor common alert schema (fact sheet §10).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::rule::{GroupBy, Rule, Signal};
use crate::audit::record::format_time;

/// Attempts per notification before it is given up as failed.
pub const MAX_ATTEMPTS: u32 = 10;
/// Longest pause between two attempts.
pub const MAX_BACKOFF_SECS: u64 = 300;

/// `monitorCondition` of a notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MonitorCondition {
    /// The condition was met.
    Fired,
    /// The condition is no longer met.
    Resolved,
}

impl MonitorCondition {
    /// `Fired` or `Resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            MonitorCondition::Fired => "Fired",
            MonitorCondition::Resolved => "Resolved",
        }
    }
}

/// Where one notification stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Not delivered yet; tried again at `next_attempt`.
    Pending,
    /// The receiver accepted it.
    Delivered,
    /// Given up after [`MAX_ATTEMPTS`].
    Failed,
}

/// One notification of a firing to one receiver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Receiver name.
    pub receiver: String,
    /// Which notification.
    pub condition: MonitorCondition,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: u32,
    /// Unix seconds before which it is not tried again.
    pub next_attempt: u64,
    /// Why the last attempt failed (never holds a receiver secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When it was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
}

impl Delivery {
    /// A notification waiting for its first attempt.
    pub fn pending(receiver: &str, condition: MonitorCondition, now: u64) -> Self {
        Self {
            receiver: receiver.to_owned(),
            condition,
            state: DeliveryState::Pending,
            attempts: 0,
            next_attempt: now,
            last_error: None,
            delivered_at: None,
        }
    }

    /// Due for an attempt at `now`.
    pub fn due(&self, now: u64) -> bool {
        self.state == DeliveryState::Pending && self.next_attempt <= now
    }

    /// Records an attempt's outcome at `now` (Unix seconds).
    pub fn record(&mut self, outcome: Result<(), String>, now: u64) {
        self.attempts += 1;
        match outcome {
            Ok(()) => {
                self.state = DeliveryState::Delivered;
                self.last_error = None;
                self.delivered_at = Some(format_time(u128::from(now) * 1_000_000_000));
            }
            Err(e) => {
                self.last_error = Some(e);
                if self.attempts >= MAX_ATTEMPTS {
                    self.state = DeliveryState::Failed;
                } else {
                    let shift = (self.attempts - 1).min(16);
                    self.next_attempt = now + (1u64 << shift).min(MAX_BACKOFF_SECS);
                }
            }
        }
    }
}

/// One alert of a rule for one group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Firing {
    /// Stable id: derived from the rule, the group and the trail position
    /// of the record that crossed the threshold, so any leader that
    /// evaluates the same trail names it the same.
    pub id: String,
    /// Rule name.
    pub rule: String,
    /// The rule's description.
    #[serde(default)]
    pub description: String,
    /// 0…4.
    pub severity: u8,
    /// What was counted.
    pub signal: Signal,
    /// Grouped by.
    pub group_by: GroupBy,
    /// The group's value (an IP, principal, vault, `*`).
    pub group: String,
    /// Threshold and window of the rule when it fired.
    pub threshold: u32,
    /// Window in seconds.
    pub window_secs: u64,
    /// Matching records in the window when it fired (`error-rate`: the
    /// percentage of 5xx answers).
    pub count: u32,
    /// `error-rate`: requests in the window when it fired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<u32>,
    /// Trail position of the record that crossed the threshold.
    pub fired_seq: u64,
    /// Time of that record.
    pub fired_at: String,
    /// Start of the window it was counted in.
    pub window_start: String,
    /// `Fired` until resolved.
    pub state: MonitorCondition,
    /// When the condition stopped holding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<String>,
    /// Every notification and where it stands.
    pub deliveries: Vec<Delivery>,
    /// Set when this firing delivers a lifecycle event rather than an
    /// alert of a rule (see [`super::events`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<super::events::LifecycleEvent>,
}

impl Firing {
    /// The firing `rule` gets for `group` at the crossing record.
    pub fn new(rule: &Rule, crossing: &super::window::Crossing, now: u64) -> Self {
        Self {
            id: firing_id(&rule.name, &crossing.group, crossing.seq),
            rule: rule.name.clone(),
            description: rule.description.clone(),
            severity: rule.severity,
            signal: rule.condition.signal,
            group_by: rule.condition.group_by,
            group: crossing.group.clone(),
            threshold: rule.condition.threshold,
            window_secs: rule.condition.window_secs,
            count: crossing.count,
            requests: crossing.requests,
            fired_seq: crossing.seq,
            fired_at: crossing.time.clone(),
            window_start: crossing.window_start.clone(),
            state: MonitorCondition::Fired,
            resolved_at: None,
            deliveries: rule
                .receivers
                .iter()
                .map(|r| Delivery::pending(r, MonitorCondition::Fired, now))
                .collect(),
            event: None,
        }
    }

    /// Whether any notification still waits.
    pub fn pending(&self) -> bool {
        self.deliveries
            .iter()
            .any(|d| d.state == DeliveryState::Pending)
    }

    /// One-line text for email subjects, SMS and syslog.
    pub fn summary(&self, condition: MonitorCondition) -> String {
        if let Some(event) = &self.event {
            return event.summary();
        }
        let measured = match (self.signal, self.requests) {
            (Signal::ErrorRate, Some(requests)) => format!(
                "{}% of {requests} requests answered 5xx within {}s",
                self.count, self.window_secs
            ),
            (Signal::FirstAccess, _) => "first read of the object by this principal".into(),
            _ => format!(
                "{} matching {:?} records within {}s",
                self.count, self.signal, self.window_secs
            ),
        };
        format!(
            "Coffer Sev{} {}: {} ({} {}: {measured})",
            self.severity,
            condition.as_str(),
            self.rule,
            self.group_by.dimension(),
            self.group,
        )
    }

    /// The Azure Monitor common alert schema body of a notification.
    pub fn common_schema(&self, condition: MonitorCondition, cluster: &str) -> Value {
        let target = format!("/COFFER/CLUSTERS/{}", cluster.to_ascii_uppercase());
        json!({
            "schemaId": "azureMonitorCommonAlertSchema",
            "data": {
                "essentials": {
                    "alertId": format!("{target}/providers/Microsoft.AlertsManagement/alerts/{}", self.id),
                    "alertRule": self.rule,
                    "alertRuleID": format!("{target}/providers/Microsoft.Insights/scheduledQueryRules/{}", self.rule),
                    "severity": format!("Sev{}", self.severity),
                    "signalType": "Log",
                    "monitorCondition": condition.as_str(),
                    "monitoringService": "Log Alerts V2",
                    "alertTargetIDs": [target],
                    "configurationItems": [self.group],
                    "originAlertId": self.id,
                    "firedDateTime": self.fired_at,
                    "resolvedDateTime": match condition {
                        MonitorCondition::Resolved => json!(self.resolved_at),
                        MonitorCondition::Fired => Value::Null,
                    },
                    "description": self.description,
                    "essentialsVersion": "1.0",
                    "alertContextVersion": "1.0",
                },
                "alertContext": {
                    "properties": null,
                    "conditionType": "LogQueryCriteria",
                    "condition": {
                        "windowSize": format!("PT{}S", self.window_secs),
                        "allOf": [{
                            "searchQuery": format!("AuditEvent | where signal == \"{:?}\"", self.signal),
                            "metricMeasureColumn": null,
                            "targetResourceTypes": "['Coffer/cluster']",
                            "operator": "GreaterThanOrEqual",
                            "threshold": self.threshold.to_string(),
                            "timeAggregation": "Count",
                            "dimensions": [{"name": self.group_by.dimension(), "value": self.group}],
                            "metricValue": self.count,
                        }],
                        "windowStartTime": self.window_start,
                        "windowEndTime": self.fired_at,
                    },
                },
                "customProperties": {},
            },
        })
    }
}

/// `{rule}-{32 hex}`: a digest of the rule, group and crossing position.
pub fn firing_id(rule: &str, group: &str, seq: u64) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [rule.as_bytes(), group.as_bytes(), &seq.to_be_bytes()[..]] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    let digest = h.finalize();
    hex::encode(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_and_give_up() {
        let mut d = Delivery::pending("hook", MonitorCondition::Fired, 100);
        assert!(d.due(100));
        d.record(Err("connection refused".into()), 100);
        assert_eq!((d.next_attempt, d.state), (101, DeliveryState::Pending));
        d.record(Err("503".into()), 101);
        assert_eq!(d.next_attempt, 103);
        assert!(!d.due(102) && d.due(103));
        for _ in 2..MAX_ATTEMPTS {
            d.record(Err("503".into()), 200);
        }
        assert_eq!(d.state, DeliveryState::Failed);
        let mut ok = Delivery::pending("hook", MonitorCondition::Fired, 100);
        ok.record(Ok(()), 0);
        assert_eq!(ok.state, DeliveryState::Delivered);
        assert_eq!(
            ok.delivered_at.as_deref(),
            Some("1970-01-01T00:00:00.0000000Z")
        );
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        assert_eq!(firing_id("r", "1.2.3.4", 7), firing_id("r", "1.2.3.4", 7));
        assert_ne!(firing_id("r", "1.2.3.4", 7), firing_id("r", "1.2.3.4", 8));
        assert_ne!(firing_id("r", "a", 7), firing_id("ra", "", 7));
        assert_eq!(firing_id("r", "a", 7).len(), 32);
    }
}
