//! Sliding windows over the trail, per rule and group: which record makes
//! a group's count reach its rule's threshold. Pure and deterministic: any
//! node that feeds the same records in trail order, starting at least one
//! window before a crossing, finds the same crossing at the same record.

use std::collections::{HashMap, VecDeque};

use super::rule::{Rule, Signal};
use crate::audit::record::{format_time, parse_time_ms};
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
    /// Records counted (`error-rate`: the percentage of 5xx answers).
    pub count: u32,
    /// `error-rate`: requests in the window.
    pub requests: Option<u32>,
}

/// What one (rule, group) holds.
enum Tally {
    /// The newest matching records, at most `threshold` of them: "at least
    /// `threshold` within the window" holds exactly when the newest
    /// `threshold` records all lie within it, so older ones need not be
    /// kept.
    Count(VecDeque<(u64, String)>),
    /// `error-rate`: requests and 5xx answers per second of record time.
    Rate(VecDeque<Bucket>),
}

/// Requests of one second.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    sec: u64,
    total: u32,
    errors: u32,
}

/// Sums `buckets` of the window ending at second `now_sec` (the
/// `window_secs` seconds up to and including it).
fn rate_at(buckets: &VecDeque<Bucket>, now_sec: u64, window_secs: u64) -> (u32, u32) {
    buckets
        .iter()
        .filter(|b| b.sec + window_secs > now_sec)
        .fold((0, 0), |(t, e), b| {
            (t.saturating_add(b.total), e.saturating_add(b.errors))
        })
}

/// Whether `errors` of `total` requests reach `rule`'s rate.
fn rate_holds(rule: &Rule, total: u32, errors: u32) -> bool {
    let c = &rule.condition;
    total >= c.min_requests()
        && u64::from(errors) * 100 >= u64::from(c.threshold) * u64::from(total)
}

/// Every (rule, group)'s window.
#[derive(Default)]
pub struct Windows {
    map: HashMap<(String, String), Tally>,
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
            let entry = self.map.entry((rule.name.clone(), group.clone()));
            let crossing = if c.signal == Signal::ErrorRate {
                let tally = entry.or_insert_with(|| Tally::Rate(VecDeque::new()));
                // A rule replaced by one of another signal starts afresh.
                if !matches!(tally, Tally::Rate(_)) {
                    *tally = Tally::Rate(VecDeque::new());
                }
                let Tally::Rate(buckets) = tally else {
                    continue;
                };
                feed_rate(rule, buckets, t, event)
            } else {
                let tally = entry.or_insert_with(|| Tally::Count(VecDeque::new()));
                // A rule replaced by one of another signal starts afresh.
                if !matches!(tally, Tally::Count(_)) {
                    *tally = Tally::Count(VecDeque::new());
                }
                let Tally::Count(w) = tally else {
                    continue;
                };
                feed_count(rule, w, t, event)
            };
            if let Some((count, requests, window_start)) = crossing {
                out.push(Crossing {
                    rule: rule.name.clone(),
                    group,
                    seq,
                    time: event.time.clone(),
                    window_start,
                    count,
                    requests,
                });
            }
        }
        out
    }

    /// Whether `rule`'s condition still holds for `group` at `now_ms`.
    pub fn holds(&self, rule: &Rule, group: &str, now_ms: u64) -> bool {
        let c = &rule.condition;
        let window_ms = c.window_secs.saturating_mul(1000);
        match self.map.get(&(rule.name.clone(), group.to_owned())) {
            None => false,
            Some(Tally::Count(w)) => {
                w.iter().filter(|(t, _)| t + window_ms > now_ms).count() >= c.threshold as usize
            }
            Some(Tally::Rate(buckets)) => {
                let (total, errors) = rate_at(buckets, now_ms / 1000, c.window_secs);
                rate_holds(rule, total, errors)
            }
        }
    }

    /// Forgets records outside every window at `now_ms` and windows of
    /// rules no longer configured.
    pub fn prune(&mut self, rules: &[Rule], now_ms: u64) {
        self.map.retain(|(name, _), tally| {
            let Some(rule) = rules.iter().find(|r| &r.name == name) else {
                return false;
            };
            let window_ms = rule.condition.window_secs.saturating_mul(1000);
            // Keep a window's worth of slack: records may reach the trail
            // late, and a later record's eviction must still see them.
            match tally {
                Tally::Count(w) => {
                    while w.front().is_some_and(|(t, _)| t + 2 * window_ms <= now_ms) {
                        w.pop_front();
                    }
                    !w.is_empty()
                }
                Tally::Rate(buckets) => {
                    while buckets
                        .front()
                        .is_some_and(|b| b.sec * 1000 + 2 * window_ms <= now_ms)
                    {
                        buckets.pop_front();
                    }
                    !buckets.is_empty()
                }
            }
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

/// Adds a record at `t` to a count window; `(count, None, window start)`
/// when it makes the count reach the threshold.
fn feed_count(
    rule: &Rule,
    w: &mut VecDeque<(u64, String)>,
    t: u64,
    event: &AuditEvent,
) -> Option<(u32, Option<u32>, String)> {
    let c = &rule.condition;
    let window_ms = c.window_secs.saturating_mul(1000);
    let threshold = c.threshold as usize;
    while w.front().is_some_and(|(ft, _)| ft + window_ms <= t) {
        w.pop_front();
    }
    let before = w.len();
    w.push_back((t, event.time.clone()));
    while w.len() > threshold {
        w.pop_front();
    }
    (before < threshold && w.len() >= threshold).then(|| {
        (
            w.len() as u32,
            None,
            w.front().map(|(_, s)| s.clone()).unwrap_or_default(),
        )
    })
}

/// Adds a request at `t` to an `error-rate` window; `(percent of 5xx,
/// Some(requests), window start)` when it makes the rate reach the
/// threshold (it did not hold just before this request).
fn feed_rate(
    rule: &Rule,
    buckets: &mut VecDeque<Bucket>,
    t: u64,
    event: &AuditEvent,
) -> Option<(u32, Option<u32>, String)> {
    let window = rule.condition.window_secs;
    let sec = t / 1000;
    while buckets.front().is_some_and(|b| b.sec + window <= sec) {
        buckets.pop_front();
    }
    let (total, errors) = rate_at(buckets, sec, window);
    let before = rate_holds(rule, total, errors);
    let error = u32::from(event.properties.http_status_code >= 500);
    // Records reach the trail roughly in time order; a late one is counted
    // in the newest second (the same on every node: trail order decides).
    match buckets.back_mut() {
        Some(b) if b.sec >= sec => {
            b.total += 1;
            b.errors += error;
        }
        _ => buckets.push_back(Bucket {
            sec,
            total: 1,
            errors: error,
        }),
    }
    let (total, errors) = rate_at(buckets, sec, window);
    if before || !rate_holds(rule, total, errors) {
        return None;
    }
    let start = buckets.front().map_or(sec, |b| b.sec);
    let percent = u32::try_from(u64::from(errors) * 100 / u64::from(total.max(1))).unwrap_or(100);
    Some((
        percent,
        Some(total),
        format_time(u128::from(start) * 1_000_000_000),
    ))
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
