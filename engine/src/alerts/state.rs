//! Alert rules over state rather than the trail: objects whose current
//! version expires within a time (`expiring`, found by the leader's object
//! scan), Raft leader elections within a window (`leader-changes`,
//! from elections each new leader records through Raft) and sealed members
//! (`sealed`, from the leader's look at every member's seal status). A group that
//! holds fires through the rules' own [`AlertsEngine::fire`] — the firing
//! id comes from the rule, the group and the episode (the object's expiry,
//! the newest term), so a leader that takes over finds it — and resolves
//! once it stops holding.

use serde::{Deserialize, Serialize};

use super::firing::Firing;
use super::rule::{Rule, Signal};
use super::window::Crossing;
use super::{key, Active, AlertsEngine, ACTIVE_PREFIX, FIRING_PREFIX};
use crate::audit::record::format_time;
use crate::cas::{self, Plan};
use crate::error::EngineError;
use crate::store::{Compare, Mutation, Txn};

const ELECTIONS_KEY: &[u8] = b"alr/elections";
/// Elections remembered (enough for any threshold over a day's window).
const ELECTIONS_KEPT: usize = 1000;

/// A group for which a state rule holds now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holding {
    /// The group (`{vault}/{collection}/{name}`, `*`).
    pub group: String,
    /// What makes this episode this one (an expiry, a term): part of the
    /// firing id.
    pub episode: u64,
    /// The measured value (elections in the window; 1 for an object).
    pub count: u32,
}

/// One leadership taken: its term and when the new leader noticed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Election {
    term: u64,
    at_ms: u64,
}

/// What one state evaluation did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateOutcome {
    /// Alerts fired.
    pub fired: usize,
    /// Alerts resolved.
    pub resolved: usize,
}

impl AlertsEngine {
    /// Records that this node leads in `term` (once per term, whichever
    /// node records it first), at `now_ms`.
    pub async fn record_election(&self, term: u64, now_ms: u64) -> Result<(), EngineError> {
        cas::write(&*self.store, None, || {
            let (rev, mut all) = self
                .read::<Vec<Election>>(ELECTIONS_KEY)?
                .unwrap_or((0, Vec::new()));
            if all.iter().any(|e| e.term >= term) {
                return Ok(Plan::Answer(()));
            }
            all.push(Election {
                term,
                at_ms: now_ms,
            });
            let excess = all.len().saturating_sub(ELECTIONS_KEPT);
            all.drain(..excess);
            Ok(Plan::Commit(Txn {
                compare: vec![Compare::Revision {
                    key: ELECTIONS_KEY.to_vec(),
                    revision: rev,
                }],
                mutations: vec![Mutation::Put {
                    key: ELECTIONS_KEY.to_vec(),
                    value: cas::encode(&all)?,
                }],
                result: Vec::new(),
            }))
        })
        .await
    }

    /// Fires and resolves every `leader-changes` rule of `rules` at `now_ms`.
    pub(super) async fn evaluate_elections(
        &self,
        rules: &[Rule],
        now_ms: u64,
    ) -> Result<StateOutcome, EngineError> {
        let mut outcome = StateOutcome::default();
        let wanted: Vec<&Rule> = rules
            .iter()
            .filter(|r| r.enabled && r.condition.signal == Signal::LeaderChanges)
            .collect();
        if wanted.is_empty() {
            return Ok(outcome);
        }
        let elections = self
            .read::<Vec<Election>>(ELECTIONS_KEY)?
            .map(|(_, e)| e)
            .unwrap_or_default();
        for rule in wanted {
            let since = now_ms.saturating_sub(rule.condition.window_secs.saturating_mul(1000));
            let recent: Vec<&Election> = elections.iter().filter(|e| e.at_ms > since).collect();
            let count = u32::try_from(recent.len()).unwrap_or(u32::MAX);
            let holding: Vec<Holding> = match recent.iter().map(|e| e.term).max() {
                Some(term) if count >= rule.condition.threshold => vec![Holding {
                    group: "*".into(),
                    episode: term,
                    count,
                }],
                _ => Vec::new(),
            };
            outcome.add(self.apply_state(rule, &holding, true, now_ms).await?);
        }
        Ok(outcome)
    }

    /// Whether an enabled rule of `signal` exists (local state, the
    /// leader's): the node only gathers what such rules need.
    pub fn watches(&self, signal: Signal) -> Result<bool, EngineError> {
        Ok(self
            .list::<Rule>(super::RULE_PREFIX)?
            .iter()
            .any(|r| r.enabled && r.condition.signal == signal))
    }

    /// Fires and resolves every `sealed` rule at `now_ms`, given the ids of
    /// the members found sealed (`sealed`, from a look at every member).
    pub async fn evaluate_sealed(
        &self,
        sealed: &[u64],
        now_ms: u64,
    ) -> Result<StateOutcome, EngineError> {
        let mut outcome = StateOutcome::default();
        let rules: Vec<Rule> = self.list(super::RULE_PREFIX)?;
        // A sealing's episode is when it was noticed: while its alert is
        // active no other fires for the node, whichever leader looks.
        let holding: Vec<Holding> = sealed
            .iter()
            .map(|id| Holding {
                group: format!("node {id}"),
                episode: now_ms / 1000,
                count: 1,
            })
            .collect();
        for rule in rules
            .iter()
            .filter(|r| r.enabled && r.condition.signal == Signal::Sealed)
        {
            outcome.add(self.apply_state(rule, &holding, true, now_ms).await?);
        }
        Ok(outcome)
    }

    /// Fires `rule` for every group in `holding` (once per episode, as
    /// throttling allows) and, when `complete` (`holding` is every group
    /// that holds), resolves its active alerts whose group is not in it.
    pub(super) async fn apply_state(
        &self,
        rule: &Rule,
        holding: &[Holding],
        complete: bool,
        now_ms: u64,
    ) -> Result<StateOutcome, EngineError> {
        let mut outcome = StateOutcome::default();
        let time = format_time(u128::from(now_ms) * 1_000_000);
        for h in holding {
            let crossing = Crossing {
                rule: rule.name.clone(),
                group: h.group.clone(),
                seq: h.episode,
                time: time.clone(),
                window_start: time.clone(),
                count: h.count,
                requests: None,
            };
            if self.fire(rule, &crossing, now_ms / 1000).await? {
                outcome.fired += 1;
            }
        }
        if !complete {
            return Ok(outcome);
        }
        let prefix = format!("{ACTIVE_PREFIX}{}/", rule.name);
        for (k, e) in self.store.scan(prefix.as_bytes(), None, usize::MAX)? {
            let a: Active = cas::decode(&e.value)?;
            if a.resolved {
                continue;
            }
            let Some((_, firing)) = self.read::<Firing>(&key(FIRING_PREFIX, &a.firing))? else {
                continue;
            };
            if holding.iter().any(|h| h.group == firing.group) {
                continue;
            }
            if self.resolve(&k, e.revision, firing, now_ms).await? {
                outcome.resolved += 1;
            }
        }
        Ok(outcome)
    }
}

impl StateOutcome {
    /// Adds `other`'s counts.
    pub fn add(&mut self, other: StateOutcome) {
        self.fired += other.fired;
        self.resolved += other.resolved;
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
