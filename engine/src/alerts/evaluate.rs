//! The leader's evaluation: read the trail from the recorded cursor, count
//! records into the rules' windows, fire on crossings, resolve groups whose
//! condition stopped holding, move the cursor.
//!
//! A leader that starts (or a node that became leader again) first
//! rebuilds its windows from the records before the cursor without firing:
//! every crossing up to the cursor was handled by a leader before it. The
//! rebuild starts two windows before `now` (found by a binary search on
//! record time), so the windows it ends with are the ones a leader that
//! never stopped would hold, and a crossing after the cursor gets the same
//! firing id whichever leader finds it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::firing::{Delivery, Firing, MonitorCondition};
use super::rule::{Rule, Signal};
use super::seen;
use super::window::{Crossing, Windows};
use super::{
    active_key, key, Active, AlertsEngine, ACTIVE_PREFIX, CURSOR_KEY, FIRING_PREFIX,
    PENDING_PREFIX, RULE_PREFIX,
};
use crate::audit::record::{format_time, parse_time_ms};
use crate::audit::Link;
use crate::cas::{self, Plan};
use crate::error::EngineError;
use crate::store::{Compare, Mutation, Txn};

/// Trail lines read per page.
const PAGE: usize = 1000;
/// Cursor writes at most this often when nothing fired (each is a Raft entry).
const CURSOR_EVERY_MS: u64 = 2000;
/// Crossings older than this (or than their window) are not fired.
const STALE_SECS: u64 = 600;
/// Firings resolved or created per evaluation at most (a storm waits for the next round).
const ACTIONS_MAX: usize = 500;

/// The evaluator's memory on this node.
#[derive(Default)]
pub(super) struct State {
    windows: Windows,
    /// Trail position evaluated; `None` until rebuilt as leader.
    cursor: Option<u64>,
    written_cursor: u64,
    written_at_ms: u64,
}

/// What one evaluation did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    /// Records read.
    pub records: usize,
    /// Alerts fired.
    pub fired: usize,
    /// Crossings not fired: the group's alert is still active or throttled,
    /// or another leader already fired it.
    pub suppressed: usize,
    /// Alerts resolved.
    pub resolved: usize,
    /// The trail position evaluated.
    pub cursor: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Cursor {
    seq: u64,
}

impl AlertsEngine {
    /// Forgets the evaluator's memory (this node is not the leader): the
    /// next [`AlertsEngine::evaluate`] rebuilds it from the trail.
    pub async fn step_down(&self) {
        *self.eval.lock().await = State::default();
    }

    /// One round of evaluation at `now_ms` (Unix milliseconds). The leader
    /// calls it periodically. After a failure the windows are forgotten
    /// (they may hold records whose crossings were not recorded) and the
    /// next round rebuilds them from the recorded cursor.
    pub async fn evaluate(&self, now_ms: u64) -> Result<Evaluation, EngineError> {
        let mut st = self.eval.lock().await;
        let result = self.evaluate_locked(&mut st, now_ms).await;
        if result.is_err() {
            *st = State::default();
        }
        result
    }

    async fn evaluate_locked(
        &self,
        st: &mut State,
        now_ms: u64,
    ) -> Result<Evaluation, EngineError> {
        self.store.read_fence().await?;
        let rules: Vec<Rule> = self.list(RULE_PREFIX)?;
        let head = self.trail.head()?.seq;
        let mut report = Evaluation::default();
        if rules.is_empty() {
            // Nothing to count: no Raft writes for a cursor nobody needs.
            st.cursor = Some(head);
            report.cursor = head;
            return Ok(report);
        }
        let cursor = match st.cursor {
            Some(c) => c,
            None => {
                let lookback = rules
                    .iter()
                    .map(|r| r.condition.window_secs)
                    .max()
                    .unwrap_or(60)
                    .saturating_mul(2000);
                let recent = self.first_seq_at(now_ms.saturating_sub(lookback), head)?;
                // No cursor yet (alerts never evaluated on this cluster):
                // evaluate recent records only, not the whole history.
                let stored = self
                    .read::<Cursor>(CURSOR_KEY)?
                    .map_or(recent, |(_, c)| c.seq);
                let start = recent.min(stored);
                let mut windows = Windows::new();
                self.read_trail(start, stored, |seq, link| {
                    windows.feed(&rules, seq, &link.event);
                })?;
                st.windows = windows;
                st.written_cursor = stored;
                st.cursor = Some(stored);
                stored
            }
        };
        // New records: count, and fire in trail order.
        let mut crossings: Vec<Crossing> = Vec::new();
        let mut last = cursor;
        let windows = &mut st.windows;
        self.read_trail(cursor, head, |seq, link| {
            if crossings.len() < ACTIONS_MAX {
                crossings.extend(windows.feed(&rules, seq, &link.event));
                last = seq;
                report.records += 1;
            }
        })?;
        for crossing in &crossings {
            let Some(rule) = rules.iter().find(|r| r.name == crossing.rule) else {
                continue;
            };
            if self.fire(rule, crossing, now_ms / 1000).await? {
                report.fired += 1;
            } else {
                report.suppressed += 1;
            }
        }
        st.cursor = Some(last);
        report.cursor = last;
        if last > st.written_cursor
            && (report.fired > 0 || now_ms >= st.written_at_ms + CURSOR_EVERY_MS)
        {
            self.write_cursor(last).await?;
            st.written_cursor = last;
            st.written_at_ms = now_ms;
        }
        if last >= head {
            report.resolved = self.resolve_idle(&rules, &st.windows, now_ms).await?;
        }
        let elections = self.evaluate_elections(&rules, now_ms).await?;
        report.fired += elections.fired;
        report.resolved += elections.resolved;
        st.windows.prune(&rules, now_ms);
        Ok(report)
    }

    /// Feeds trail lines `(after, until]` to `f` in order.
    fn read_trail(
        &self,
        after: u64,
        until: u64,
        mut f: impl FnMut(u64, &Link),
    ) -> Result<(), EngineError> {
        let mut pos = after;
        while pos < until {
            let lines = self.trail.lines(pos, PAGE.min((until - pos) as usize))?;
            if lines.is_empty() {
                break;
            }
            for line in lines {
                let link: Link = cas::decode(&line)?;
                pos = link.seq;
                if pos > until {
                    return Ok(());
                }
                f(pos, &link);
            }
        }
        Ok(())
    }

    /// The last trail position before the first record at or after
    /// `target_ms` (see [`crate::audit::Trail::first_at`]).
    fn first_seq_at(&self, target_ms: u64, head: u64) -> Result<u64, EngineError> {
        self.trail.first_at(target_ms, head)
    }

    async fn write_cursor(&self, seq: u64) -> Result<(), EngineError> {
        cas::write(&*self.store, None, || {
            let (rev, stored) = self
                .read::<Cursor>(CURSOR_KEY)?
                .map_or((0, 0), |(r, c)| (r, c.seq));
            if stored >= seq {
                return Ok(Plan::Answer(()));
            }
            Ok(Plan::Commit(Txn {
                compare: vec![Compare::Revision {
                    key: CURSOR_KEY.to_vec(),
                    revision: rev,
                }],
                mutations: vec![Mutation::Put {
                    key: CURSOR_KEY.to_vec(),
                    value: cas::encode(&Cursor { seq })?,
                }],
                result: Vec::new(),
            }))
        })
        .await
    }

    /// Records a firing for `crossing` unless it exists (another leader
    /// fired it) or its group's alert is active or throttled; `true` when
    /// it was recorded now.
    pub(super) async fn fire(
        &self,
        rule: &Rule,
        crossing: &Crossing,
        now: u64,
    ) -> Result<bool, EngineError> {
        let firing = Firing::new(rule, crossing, now);
        let crossing_ms = parse_time_ms(&crossing.time).unwrap_or(0);
        // A crossing long past (records shipped after a long outage, a rule
        // created over old records) is history, not an alert.
        let stale_after = rule
            .condition
            .window_secs
            .max(STALE_SECS)
            .saturating_mul(1000);
        let stale = crossing_ms.saturating_add(stale_after) < now.saturating_mul(1000);
        let first_access = rule.condition.signal == Signal::FirstAccess;
        if stale {
            tracing::info!(rule = %rule.name, group = %crossing.group, at = %crossing.time, "stale crossing not fired");
            if !first_access {
                return Ok(false);
            }
        }
        // First access: a pair seen before (by any leader) is no alert; one
        // in history or the learning period is remembered without one.
        let learn_only = first_access && (stale || rule.learning(crossing_ms));
        let fkey = key(FIRING_PREFIX, &firing.id);
        let akey = active_key(&rule.name, &crossing.group);
        let fired = cas::write(&*self.store, None, || {
            if self.store.get(&fkey)?.is_some() {
                return Ok(Plan::Answer(false));
            }
            let (mut compare, mut mutations) = (Vec::new(), Vec::new());
            if first_access {
                let Some((c, m)) = seen::add(
                    &*self.store,
                    rule,
                    &crossing.group,
                    crossing.seq,
                    crossing_ms,
                )?
                else {
                    return Ok(Plan::Answer(false));
                };
                if learn_only {
                    return Ok(Plan::Commit(Txn {
                        compare: c,
                        mutations: m,
                        result: b"false".to_vec(),
                    }));
                }
                (compare, mutations) = (c, m);
            }
            let active = self.read::<Active>(&akey)?;
            if let Some((_, a)) = &active {
                let throttled = crossing_ms < a.fired_ms + rule.throttle_secs.saturating_mul(1000);
                if !a.resolved || throttled {
                    return Ok(Plan::Answer(false));
                }
            }
            compare.extend([
                Compare::Revision {
                    key: fkey.clone(),
                    revision: 0,
                },
                Compare::Revision {
                    key: akey.clone(),
                    revision: active.as_ref().map_or(0, |(r, _)| *r),
                },
            ]);
            Ok(Plan::Commit(Txn {
                compare,
                mutations: [
                    Mutation::Put {
                        key: fkey.clone(),
                        value: cas::encode(&firing)?,
                    },
                    Mutation::Put {
                        key: akey.clone(),
                        value: cas::encode(&Active {
                            firing: firing.id.clone(),
                            fired_ms: crossing_ms,
                            resolved: false,
                        })?,
                    },
                    Mutation::Put {
                        key: key(PENDING_PREFIX, &firing.id),
                        value: b"null".to_vec(),
                    },
                ]
                .into_iter()
                .chain(mutations)
                .collect(),
                result: b"true".to_vec(),
            }))
        })
        .await?;
        if fired {
            tracing::info!(
                rule = %rule.name, group = %crossing.group, firing = %firing.id,
                "alert fired"
            );
        }
        Ok(fired)
    }

    /// Resolves every active alert whose condition no longer holds (and
    /// whose window has passed since it fired); returns how many.
    async fn resolve_idle(
        &self,
        rules: &[Rule],
        windows: &Windows,
        now_ms: u64,
    ) -> Result<usize, EngineError> {
        let mut resolved = 0;
        let actives = self
            .store
            .scan(ACTIVE_PREFIX.as_bytes(), None, usize::MAX)?;
        for (k, e) in actives {
            let a: Active = cas::decode(&e.value)?;
            if a.resolved || resolved >= ACTIONS_MAX {
                continue;
            }
            let Some((_, firing)) = self.read::<Firing>(&key(FIRING_PREFIX, &a.firing))? else {
                continue;
            };
            let rule = rules.iter().find(|r| r.name == firing.rule);
            let idle = match rule {
                // State rules resolve when their state stops holding.
                Some(r) if !r.condition.signal.is_trail() => false,
                Some(r) => {
                    now_ms >= a.fired_ms + r.condition.window_secs.saturating_mul(1000)
                        && !windows.holds(r, &firing.group, now_ms)
                }
                None => true,
            };
            if idle && self.resolve(&k, e.revision, firing, now_ms).await? {
                resolved += 1;
            }
        }
        Ok(resolved)
    }

    /// Marks `firing` resolved and queues its `Resolved` notifications.
    pub(super) async fn resolve(
        &self,
        akey: &[u8],
        arev: u64,
        firing: Firing,
        now_ms: u64,
    ) -> Result<bool, EngineError> {
        let fkey = key(FIRING_PREFIX, &firing.id);
        let done = cas::write(&*self.store, None, || {
            let Some((frev, mut f)) = self.read::<Firing>(&fkey)? else {
                return Ok(Plan::Answer(false));
            };
            let Some((rev, mut a)) = self.read::<Active>(akey)? else {
                return Ok(Plan::Answer(false));
            };
            if rev != arev || a.resolved || f.state == MonitorCondition::Resolved {
                return Ok(Plan::Answer(false));
            }
            a.resolved = true;
            f.state = MonitorCondition::Resolved;
            f.resolved_at = Some(format_time(u128::from(now_ms) * 1_000_000));
            let receivers: Vec<String> = f
                .deliveries
                .iter()
                .filter(|d| d.condition == MonitorCondition::Fired)
                .map(|d| d.receiver.clone())
                .collect();
            f.deliveries.extend(
                receivers
                    .iter()
                    .map(|r| Delivery::pending(r, MonitorCondition::Resolved, now_ms / 1000)),
            );
            Ok(Plan::Commit(Txn {
                compare: vec![
                    Compare::Revision {
                        key: fkey.clone(),
                        revision: frev,
                    },
                    Compare::Revision {
                        key: akey.to_vec(),
                        revision: rev,
                    },
                ],
                mutations: vec![
                    Mutation::Put {
                        key: fkey.clone(),
                        value: cas::encode(&f)?,
                    },
                    // A first-access pair never fires again (the seen set
                    // says so): its group state goes, or one would pile up
                    // per pair ever seen.
                    if f.signal == Signal::FirstAccess {
                        Mutation::Delete { key: akey.to_vec() }
                    } else {
                        Mutation::Put {
                            key: akey.to_vec(),
                            value: cas::encode(&a)?,
                        }
                    },
                    Mutation::Put {
                        key: key(PENDING_PREFIX, &f.id),
                        value: b"null".to_vec(),
                    },
                ],
                result: b"true".to_vec(),
            }))
        })
        .await?;
        if done {
            tracing::info!(rule = %firing.rule, group = %firing.group, firing = %firing.id, "alert resolved");
        }
        Ok(done)
    }

    /// What `rule` would count now: matching records per group within its
    /// window ending at `now_ms` (`error-rate`: the percentage of 5xx), and
    /// whether each group reaches the threshold (`first-access`: whether
    /// the pair is new). A dry run; nothing fires.
    pub async fn dry_run(
        &self,
        rule: &Rule,
        now_ms: u64,
    ) -> Result<Vec<(String, u32, bool)>, EngineError> {
        rule.validate()?;
        self.store.read_fence().await?;
        let head = self.trail.head()?.seq;
        let window_ms = rule.condition.window_secs.saturating_mul(1000);
        let since = now_ms.saturating_sub(window_ms);
        let start = self.first_seq_at(since, head)?;
        // Per group: matching records and, of them, 5xx answers.
        let mut counts: HashMap<String, (u32, u32)> = HashMap::new();
        self.read_trail(start, head, |_, link| {
            let in_window = parse_time_ms(&link.event.time).is_some_and(|t| t >= since);
            if in_window && rule.condition.matches(&link.event) {
                let n = counts
                    .entry(rule.condition.group_by.key(&link.event))
                    .or_default();
                n.0 += 1;
                n.1 += u32::from(link.event.properties.http_status_code >= 500);
            }
        })?;
        let c = &rule.condition;
        let mut out = Vec::with_capacity(counts.len());
        for (g, (n, errors)) in counts {
            out.push(match c.signal {
                Signal::ErrorRate => {
                    let percent =
                        u32::try_from(u64::from(errors) * 100 / u64::from(n.max(1))).unwrap_or(100);
                    let holds = n >= c.min_requests()
                        && u64::from(errors) * 100 >= u64::from(c.threshold) * u64::from(n);
                    (g, percent, holds)
                }
                Signal::FirstAccess => {
                    let new = !seen::contains(&*self.store, &rule.name, &g)?;
                    (g, n, new)
                }
                _ => (g, n, n >= c.threshold),
            });
        }
        out.sort();
        Ok(out)
    }
}
