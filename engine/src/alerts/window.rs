//! Sliding windows over the trail, per rule and group: which record makes
//! a group's count reach its rule's threshold. Pure and deterministic: any
//! node that feeds the same records in trail order, starting at least one
//! window before a crossing, finds the same crossing at the same record.

use std::collections::{HashMap, VecDeque};

use super::rule::Rule;
use crate::audit::record::parse_time_ms;
use crate::audit::AuditEvent;

/// A group's count reached its rule's threshold at one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crossing {
    /// Rule name.
    pub rule: String,
    /// Group value.
    pub group: String,
    /// Trail position of the record.
    pub seq: u64,
    /// Its time.
    pub time: String,
    /// Time of the oldest record counted with it.
    pub window_start: String,
    /// Records counted.
    pub count: u32,
}

/// The newest matching records of each (rule, group), at most `threshold`
/// of them: "at least `threshold` within the window" holds exactly when
/// the newest `threshold` records all lie within it, so older ones need
/// not be kept.
#[derive(Default)]
pub struct Windows {
    map: HashMap<(String, String), VecDeque<(u64, String)>>,
}

impl Windows {
    /// No records yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts `event` (trail position `seq`) for every enabled rule it
    /// matches; returns the crossings it causes.
    pub fn feed(&mut self, rules: &[Rule], seq: u64, event: &AuditEvent) -> Vec<Crossing> {
        let Some(t) = parse_time_ms(&event.time) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for rule in rules
            .iter()
            .filter(|r| r.enabled && r.condition.matches(event))
        {
            let c = &rule.condition;
            let group = c.group_by.key(event);
            let window_ms = c.window_secs.saturating_mul(1000);
            let threshold = c.threshold as usize;
            let w = self
                .map
                .entry((rule.name.clone(), group.clone()))
                .or_default();
            while w.front().is_some_and(|(ft, _)| ft + window_ms <= t) {
                w.pop_front();
            }
            let before = w.len();
            w.push_back((t, event.time.clone()));
            while w.len() > threshold {
                w.pop_front();
            }
            if before < threshold && w.len() >= threshold {
                out.push(Crossing {
                    rule: rule.name.clone(),
                    group,
                    seq,
                    time: event.time.clone(),
                    window_start: w.front().map(|(_, s)| s.clone()).unwrap_or_default(),
                    count: w.len() as u32,
                });
            }
        }
        out
    }

    /// Whether `rule`'s condition still holds for `group` at `now_ms`.
    pub fn holds(&self, rule: &Rule, group: &str, now_ms: u64) -> bool {
        let c = &rule.condition;
        let window_ms = c.window_secs.saturating_mul(1000);
        self.map
            .get(&(rule.name.clone(), group.to_owned()))
            .is_some_and(|w| {
                w.iter().filter(|(t, _)| t + window_ms > now_ms).count() >= c.threshold as usize
            })
    }

    /// Forgets records outside every window at `now_ms` and windows of
    /// rules no longer configured.
    pub fn prune(&mut self, rules: &[Rule], now_ms: u64) {
        self.map.retain(|(name, _), w| {
            let Some(rule) = rules.iter().find(|r| &r.name == name) else {
                return false;
            };
            let window_ms = rule.condition.window_secs.saturating_mul(1000);
            // Keep a window's worth of slack: records may reach the trail
            // late, and a later record's eviction must still see them.
            while w.front().is_some_and(|(t, _)| t + 2 * window_ms <= now_ms) {
                w.pop_front();
            }
            !w.is_empty()
        });
    }

    /// Windows held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// No windows held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::format_time;
    use crate::audit::Properties;

    fn denied(ip: &str, secs: u64) -> AuditEvent {
        AuditEvent {
            time: format_time(u128::from(secs) * 1_000_000_000),
            caller_ip_address: ip.into(),
            properties: Properties {
                http_status_code: 403,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn rule(threshold: u32, window: u64) -> Rule {
        serde_json::from_value(serde_json::json!({
            "name": "burst",
            "condition": {"signal": "denied", "group_by": "ip",
                          "threshold": threshold, "window_secs": window},
            "receivers": ["hook"]
        }))
        .unwrap()
    }

    #[test]
    fn the_fifth_denial_within_a_minute_crosses_once_per_address() {
        let rules = [rule(5, 60)];
        let mut w = Windows::new();
        let mut crossings = Vec::new();
        // Four from .1 spread over 50 s, one from .2, then .1's fifth.
        for (seq, (ip, t)) in [
            ("10.0.0.1", 1000),
            ("10.0.0.1", 1010),
            ("10.0.0.2", 1011),
            ("10.0.0.1", 1020),
            ("10.0.0.1", 1050),
            ("10.0.0.1", 1055),
            ("10.0.0.1", 1056),
            ("10.0.0.1", 1057),
        ]
        .into_iter()
        .enumerate()
        {
            crossings.extend(w.feed(&rules, seq as u64 + 1, &denied(ip, t)));
        }
        assert_eq!(crossings.len(), 1, "{crossings:?}");
        let c = &crossings[0];
        assert_eq!((c.group.as_str(), c.seq, c.count), ("10.0.0.1", 6, 5));
        assert_eq!(c.window_start, format_time(1_000_000_000_000));
        assert!(w.holds(&rules[0], "10.0.0.1", 1_057_000));
        assert!(!w.holds(&rules[0], "10.0.0.1", 1_200_000));
        assert!(!w.holds(&rules[0], "10.0.0.2", 1_057_000));
    }

    #[test]
    fn records_spread_wider_than_the_window_never_cross() {
        let rules = [rule(3, 10)];
        let mut w = Windows::new();
        let mut n = 0;
        for (i, t) in [0u64, 6, 12, 18, 24, 30].into_iter().enumerate() {
            n += w.feed(&rules, i as u64, &denied("a", 5000 + t)).len();
        }
        assert_eq!(n, 0);
    }

    #[test]
    fn a_later_start_finds_the_same_crossing() {
        let rules = [rule(3, 10)];
        let events: Vec<AuditEvent> = [0u64, 30, 60, 61, 62, 63]
            .iter()
            .map(|t| denied("a", 5000 + t))
            .collect();
        let crossings_from = |start: usize| {
            let mut w = Windows::new();
            events
                .iter()
                .enumerate()
                .skip(start)
                .flat_map(|(i, e)| w.feed(&rules, i as u64, e))
                .collect::<Vec<_>>()
        };
        assert_eq!(crossings_from(0), crossings_from(2));
        assert_eq!(crossings_from(0)[0].seq, 4);
    }

    #[test]
    fn pruning_forgets_old_records_and_deleted_rules() {
        let rules = [rule(2, 10)];
        let mut w = Windows::new();
        w.feed(&rules, 1, &denied("a", 100));
        w.prune(&rules, 105_000);
        assert_eq!(w.len(), 1);
        w.prune(&rules, 200_000);
        assert!(w.is_empty());
        w.feed(&rules, 2, &denied("a", 300));
        w.prune(&[], 300_000);
        assert!(w.is_empty());
    }
}
