//! What `first-access` rules have seen: the (principal, object) pairs,
//! replicated through Raft in the same transaction as the firing (or, for
//! a pair learned without firing, on its own), so a new leader finds every
//! pair its predecessor saw and does not alert it again.
//!
//! Bounded per rule by the rule's `max_pairs`: an exact set (no false
//! positives, unlike a Bloom filter, so a genuinely new reader is never
//! missed) plus an index by trail position; when the set is full, adding a
//! pair forgets the one first seen longest ago, counts the eviction
//! ([`SeenStats::evicted`], exported as a metric) and that pair would alert
//! again on its next read.
//!
//! Layout: `alr/s/{rule}/{pair hex}` (the pair, with where it was first
//! seen), `alr/so/{rule}/{seq:020}/{pair hex}` (the eviction order),
//! `alr/sn/{rule}` (how many are held and how many were evicted).

use serde::{Deserialize, Serialize};

use super::rule::Rule;
use super::{AlertsEngine, RULE_PREFIX};
use crate::cas;
use crate::error::EngineError;
use crate::store::{Compare, Mutation, Store};

const SEEN_PREFIX: &str = "alr/s/";
const ORDER_PREFIX: &str = "alr/so/";
const COUNT_PREFIX: &str = "alr/sn/";

/// Where a pair was first seen.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Pair {
    seq: u64,
    at_ms: u64,
}

/// The seen set of one `first-access` rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenStats {
    /// Rule name (not stored: the key names it).
    #[serde(default, skip_serializing)]
    pub rule: String,
    /// Pairs held.
    pub pairs: u64,
    /// Pairs forgotten to make room since the rule was created.
    pub evicted: u64,
}

fn seen_key(rule: &str, pair: &str) -> Vec<u8> {
    format!("{SEEN_PREFIX}{rule}/{}", hex::encode(pair)).into_bytes()
}

fn count_key(rule: &str) -> Vec<u8> {
    format!("{COUNT_PREFIX}{rule}").into_bytes()
}

/// Whether `rule` has seen `pair` (local state).
pub(super) fn contains(store: &dyn Store, rule: &str, pair: &str) -> Result<bool, EngineError> {
    Ok(store.get(&seen_key(rule, pair))?.is_some())
}

/// What a transaction must compare and change.
type Plan = (Vec<Compare>, Vec<Mutation>);

/// The comparisons and mutations that add `pair` (first seen at trail
/// position `seq`, time `at_ms`) to `rule`'s set, evicting the oldest pairs
/// past its `max_pairs`; `None` when the set holds it already.
pub(super) fn add(
    store: &dyn Store,
    rule: &Rule,
    pair: &str,
    seq: u64,
    at_ms: u64,
) -> Result<Option<Plan>, EngineError> {
    let name = &rule.name;
    let skey = seen_key(name, pair);
    if store.get(&skey)?.is_some() {
        return Ok(None);
    }
    let ckey = count_key(name);
    let (crev, mut stats) = match store.get(&ckey)? {
        Some(e) => (e.revision, cas::decode::<SeenStats>(&e.value)?),
        None => (0, SeenStats::default()),
    };
    let mut mutations = vec![
        Mutation::Put {
            key: skey.clone(),
            value: cas::encode(&Pair { seq, at_ms })?,
        },
        Mutation::Put {
            key: format!("{ORDER_PREFIX}{name}/{seq:020}/{}", hex::encode(pair)).into_bytes(),
            value: b"null".to_vec(),
        },
    ];
    let max = u64::from(rule.condition.max_pairs());
    let excess = (stats.pairs + 1).saturating_sub(max);
    if excess > 0 {
        let prefix = format!("{ORDER_PREFIX}{name}/");
        let limit = usize::try_from(excess).unwrap_or(usize::MAX);
        for (okey, _) in store.scan(prefix.as_bytes(), None, limit)? {
            // `{seq:020}/{pair hex}` after the prefix.
            let rest = String::from_utf8_lossy(&okey[prefix.len()..]).into_owned();
            if let Some((_, pair_hex)) = rest.split_once('/') {
                mutations.push(Mutation::Delete {
                    key: format!("{SEEN_PREFIX}{name}/{pair_hex}").into_bytes(),
                });
            }
            mutations.push(Mutation::Delete { key: okey });
            stats.pairs = stats.pairs.saturating_sub(1);
            stats.evicted += 1;
        }
    }
    stats.pairs += 1;
    mutations.push(Mutation::Put {
        key: ckey.clone(),
        value: cas::encode(&stats)?,
    });
    let compare = vec![
        Compare::Revision {
            key: skey,
            revision: 0,
        },
        Compare::Revision {
            key: ckey,
            revision: crev,
        },
    ];
    Ok(Some((compare, mutations)))
}

/// Mutations that forget everything rule `name` has seen.
pub(super) fn forget_rule(name: &str) -> Vec<Mutation> {
    vec![
        Mutation::DeletePrefix {
            prefix: format!("{SEEN_PREFIX}{name}/").into_bytes(),
        },
        Mutation::DeletePrefix {
            prefix: format!("{ORDER_PREFIX}{name}/").into_bytes(),
        },
        Mutation::Delete {
            key: count_key(name),
        },
    ]
}

impl AlertsEngine {
    /// The seen sets of the `first-access` rules (local state), for metrics.
    pub fn seen_stats(&self) -> Result<Vec<SeenStats>, EngineError> {
        let rules: Vec<Rule> = self.list(RULE_PREFIX)?;
        let mut out = Vec::new();
        for rule in rules
            .iter()
            .filter(|r| r.condition.signal == super::Signal::FirstAccess)
        {
            let mut stats = match self.store.get(&count_key(&rule.name))? {
                Some(e) => cas::decode::<SeenStats>(&e.value)?,
                None => SeenStats::default(),
            };
            stats.rule = rule.name.clone();
            out.push(stats);
        }
        Ok(out)
    }
}
