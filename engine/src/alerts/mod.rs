//! Alerts: rules over the replicated audit trail and the receivers they
//! notify, both replicated configuration; firings recorded through Raft
//! before anything is sent, with the delivery state of every notification.
//!
//! Only the leader evaluates ([`AlertsEngine::evaluate`]); a firing's id
//! comes from the trail position that crossed the threshold and is created
//! with a compare-and-set, so a new leader that evaluates the same records
//! finds it instead of firing again, and the evaluation cursor is recorded
//! through Raft only after every firing before it, so nothing is lost
//! either. Sending (HTTP, SMTP, syslog) is the node's business: it asks for
//! [`AlertsEngine::due`] notifications and records each attempt with
//! [`AlertsEngine::record_delivery`].
//!
//! Layout (barrier-encrypted values): `alr/r/{rule}`, `alr/v/{receiver}`,
//! `alr/f/{firing id}`, `alr/a/{rule}/{group hex}` (the group's last
//! firing, for throttling and resolution), `alr/p/{firing id}` (firings
//! with a notification still pending), `alr/cursor` (trail position
//! evaluated), `alr/s/…`, `alr/so/…`, `alr/sn/…` (what `first-access`
//! rules have seen, see `seen`).

mod evaluate;
pub mod events;
pub mod firing;
pub mod hours;
pub mod receiver;
pub mod rule;
mod seen;
pub mod state;
pub mod window;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::audit::Trail;
use crate::cas::{self, Plan};
use crate::error::{EngineError, ObjectKind};
use crate::store::{Compare, Mutation, Store, Txn};

pub use evaluate::Evaluation;
pub use events::{
    EventScan, ExpiryCounts, LifecycleEvent, ObjectType, EXPIRY_WITHIN_LONG_SECS,
    EXPIRY_WITHIN_SHORT_SECS,
};
pub use firing::{Delivery, DeliveryState, Firing, MonitorCondition};
pub use hours::OutsideHours;
pub use receiver::{Receiver, ReceiverKind, SmsFormat, SmtpSecurity};
pub use rule::{Condition, GroupBy, Rule, Signal};
pub use seen::SeenStats;

const RULE_PREFIX: &str = "alr/r/";
const RECEIVER_PREFIX: &str = "alr/v/";
const FIRING_PREFIX: &str = "alr/f/";
const ACTIVE_PREFIX: &str = "alr/a/";
const PENDING_PREFIX: &str = "alr/p/";
const CURSOR_KEY: &[u8] = b"alr/cursor";
const VALIDATED_PREFIX: &str = "alr/g/";
/// Rules or receivers listed at most.
const CONFIG_MAX: usize = 1000;

fn key(prefix: &str, name: &str) -> Vec<u8> {
    format!("{prefix}{name}").into_bytes()
}

/// A group's last firing: what throttling and resolution look at.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Active {
    firing: String,
    fired_ms: u64,
    resolved: bool,
}

/// An Event Grid subscription's passed validation handshake.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Validation {
    url: String,
    validated_at: u64,
}

fn active_key(rule: &str, group: &str) -> Vec<u8> {
    format!("{ACTIVE_PREFIX}{rule}/{}", hex::encode(group)).into_bytes()
}

/// Rules, receivers, firings and the leader's evaluation.
pub struct AlertsEngine {
    store: Arc<dyn Store>,
    trail: Trail,
    eval: tokio::sync::Mutex<evaluate::State>,
}

impl AlertsEngine {
    /// The alerts of the cluster behind `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            trail: Trail::new(store.clone()),
            store,
            eval: tokio::sync::Mutex::new(evaluate::State::default()),
        }
    }

    fn read<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<(u64, T)>, EngineError> {
        match self.store.get(key)? {
            Some(e) => Ok(Some((e.revision, cas::decode(&e.value)?))),
            None => Ok(None),
        }
    }

    fn list<T: serde::de::DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>, EngineError> {
        self.store
            .scan(prefix.as_bytes(), None, CONFIG_MAX)?
            .into_iter()
            .map(|(_, e)| cas::decode(&e.value))
            .collect()
    }

    /// Creates or replaces rule `rule.name`; every receiver it names must
    /// exist.
    pub async fn put_rule(&self, rule: Rule) -> Result<Rule, EngineError> {
        self.put_rule_at(rule, crate::clock::now_ms()).await
    }

    /// [`AlertsEngine::put_rule`] at Unix milliseconds `now_ms` (the rule's
    /// creation time when it is new).
    pub async fn put_rule_at(&self, rule: Rule, now_ms: u64) -> Result<Rule, EngineError> {
        let mut checked = rule.clone();
        checked.prepare(None, now_ms);
        checked.validate()?;
        cas::write(&*self.store, None, || {
            let previous = self.read::<Rule>(&key(RULE_PREFIX, &rule.name))?;
            let mut rule = rule.clone();
            rule.prepare(previous.as_ref().map(|(_, r)| r), now_ms);
            let mut compare = vec![Compare::Revision {
                key: key(RULE_PREFIX, &rule.name),
                revision: previous.as_ref().map_or(0, |(rev, _)| *rev),
            }];
            for r in &rule.receivers {
                let Some(e) = self.store.get(&key(RECEIVER_PREFIX, r))? else {
                    return Ok(Plan::Refuse(EngineError::BadParameter(format!(
                        "alert rule: receiver {r} does not exist"
                    ))));
                };
                let receiver: Receiver = cas::decode(&e.value)?;
                if matches!(receiver.kind, ReceiverKind::EventGrid { .. }) {
                    return Ok(Plan::Refuse(EngineError::BadParameter(format!(
                        "alert rule: receiver {r} is an Event Grid subscription (it takes \
                         lifecycle events, not alerts)"
                    ))));
                }
                compare.push(Compare::Revision {
                    key: key(RECEIVER_PREFIX, r),
                    revision: e.revision,
                });
            }
            Ok(Plan::Commit(Txn {
                compare,
                mutations: vec![Mutation::Put {
                    key: key(RULE_PREFIX, &rule.name),
                    value: cas::encode(&rule)?,
                }],
                result: cas::encode(&rule)?,
            }))
        })
        .await
    }

    /// Rule `name`.
    pub async fn rule(&self, name: &str) -> Result<Rule, EngineError> {
        self.store.read_fence().await?;
        self.read(&key(RULE_PREFIX, name))?
            .map(|(_, r)| r)
            .ok_or_else(|| not_found(ObjectKind::AlertRule, name))
    }

    /// Every rule, by name.
    pub async fn rules(&self) -> Result<Vec<Rule>, EngineError> {
        self.store.read_fence().await?;
        self.list(RULE_PREFIX)
    }

    /// Deletes rule `name` and its groups' state (its firings stay, as
    /// history).
    pub async fn delete_rule(&self, name: &str) -> Result<(), EngineError> {
        cas::write(&*self.store, None, || {
            let Some((rev, _)) = self.read::<Rule>(&key(RULE_PREFIX, name))? else {
                return Ok(Plan::Refuse(not_found(ObjectKind::AlertRule, name)));
            };
            Ok(Plan::Commit(Txn {
                compare: vec![Compare::Revision {
                    key: key(RULE_PREFIX, name),
                    revision: rev,
                }],
                mutations: vec![
                    Mutation::Delete {
                        key: key(RULE_PREFIX, name),
                    },
                    Mutation::DeletePrefix {
                        prefix: format!("{ACTIVE_PREFIX}{name}/").into_bytes(),
                    },
                ]
                .into_iter()
                .chain(seen::forget_rule(name))
                .collect(),
                result: Vec::new(),
            }))
        })
        .await
    }

    /// Creates or replaces receiver `receiver.name`.
    pub async fn put_receiver(&self, receiver: Receiver) -> Result<Receiver, EngineError> {
        receiver.validate()?;
        let k = key(RECEIVER_PREFIX, &receiver.name);
        let value = cas::encode(&receiver)?;
        let shown = cas::encode(&receiver.redacted())?;
        cas::write(&*self.store, None, || {
            // A changed endpoint must pass the validation handshake again.
            Ok(Plan::Commit(Txn {
                compare: Vec::new(),
                mutations: vec![
                    Mutation::Put {
                        key: k.clone(),
                        value: value.clone(),
                    },
                    Mutation::Delete {
                        key: key(VALIDATED_PREFIX, &receiver.name),
                    },
                ],
                result: shown.clone(),
            }))
        })
        .await
    }

    /// Receiver `name` with its secrets (for sending; answers show
    /// [`Receiver::redacted`]).
    pub fn receiver(&self, name: &str) -> Result<Receiver, EngineError> {
        self.read(&key(RECEIVER_PREFIX, name))?
            .map(|(_, r)| r)
            .ok_or_else(|| not_found(ObjectKind::AlertReceiver, name))
    }

    /// Every receiver, secrets redacted.
    pub async fn receivers(&self) -> Result<Vec<Receiver>, EngineError> {
        self.store.read_fence().await?;
        Ok(self
            .list::<Receiver>(RECEIVER_PREFIX)?
            .iter()
            .map(Receiver::redacted)
            .collect())
    }

    /// Receiver `name`, secrets redacted, after a read fence.
    pub async fn receiver_shown(&self, name: &str) -> Result<Receiver, EngineError> {
        self.store.read_fence().await?;
        Ok(self.receiver(name)?.redacted())
    }

    /// Deletes receiver `name`; refused while a rule names it.
    pub async fn delete_receiver(&self, name: &str) -> Result<(), EngineError> {
        cas::write(&*self.store, None, || {
            let Some((rev, _)) = self.read::<Receiver>(&key(RECEIVER_PREFIX, name))? else {
                return Ok(Plan::Refuse(not_found(ObjectKind::AlertReceiver, name)));
            };
            let rules: Vec<Rule> = self.list(RULE_PREFIX)?;
            if let Some(r) = rules.iter().find(|r| r.receivers.iter().any(|x| x == name)) {
                return Ok(Plan::Refuse(EngineError::Conflict(format!(
                    "receiver {name} is used by rule {}",
                    r.name
                ))));
            }
            // A rule naming it commits with a compare on this revision, so
            // the two cannot cross.
            Ok(Plan::Commit(Txn {
                compare: vec![Compare::Revision {
                    key: key(RECEIVER_PREFIX, name),
                    revision: rev,
                }],
                mutations: vec![
                    Mutation::Delete {
                        key: key(RECEIVER_PREFIX, name),
                    },
                    Mutation::Delete {
                        key: key(VALIDATED_PREFIX, name),
                    },
                ],
                result: Vec::new(),
            }))
        })
        .await
    }

    /// Whether `event-grid` receiver `name` passed the subscription
    /// validation handshake for `url` (local state, the leader's).
    pub fn subscription_validated(&self, name: &str, url: &str) -> Result<bool, EngineError> {
        Ok(self
            .read::<Validation>(&key(VALIDATED_PREFIX, name))?
            .is_some_and(|(_, v)| v.url == url))
    }

    /// Records that `event-grid` receiver `name` answered the validation
    /// handshake at `url` (Unix seconds `now`).
    pub async fn record_validation(
        &self,
        name: &str,
        url: &str,
        now: u64,
    ) -> Result<(), EngineError> {
        let value = cas::encode(&Validation {
            url: url.to_owned(),
            validated_at: now,
        })?;
        cas::write(&*self.store, None, || {
            // Only while the receiver still exists with this url.
            let current = self.read::<Receiver>(&key(RECEIVER_PREFIX, name))?;
            let Some((rev, r)) = current else {
                return Ok(Plan::Answer(()));
            };
            if !matches!(&r.kind, ReceiverKind::EventGrid { url: u, .. } if u == url) {
                return Ok(Plan::Answer(()));
            }
            Ok(Plan::Commit(Txn {
                compare: vec![Compare::Revision {
                    key: key(RECEIVER_PREFIX, name),
                    revision: rev,
                }],
                mutations: vec![Mutation::Put {
                    key: key(VALIDATED_PREFIX, name),
                    value: value.clone(),
                }],
                result: Vec::new(),
            }))
        })
        .await
    }

    /// Firing `id`, after a read fence.
    pub async fn firing(&self, id: &str) -> Result<Firing, EngineError> {
        self.store.read_fence().await?;
        self.read(&key(FIRING_PREFIX, id))?
            .map(|(_, f)| f)
            .ok_or_else(|| not_found(ObjectKind::AlertFiring, id))
    }

    /// Firings (of `rule` when given), newest first, at most `limit`.
    pub async fn firings(
        &self,
        rule: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Firing>, EngineError> {
        self.store.read_fence().await?;
        let mut all: Vec<Firing> = self
            .store
            .scan(FIRING_PREFIX.as_bytes(), None, usize::MAX)?
            .into_iter()
            .map(|(_, e)| cas::decode::<Firing>(&e.value))
            .collect::<Result<_, _>>()?;
        all.retain(|f| rule.is_none_or(|r| f.rule == r));
        all.sort_by(|a, b| b.fired_at.cmp(&a.fired_at).then(b.id.cmp(&a.id)));
        all.truncate(limit);
        Ok(all)
    }

    /// Firings with a notification due at `now` (Unix seconds), from local
    /// state (the leader's).
    pub fn due(&self, now: u64, limit: usize) -> Result<Vec<Firing>, EngineError> {
        let mut out = Vec::new();
        for (k, _) in self.store.scan(PENDING_PREFIX.as_bytes(), None, limit)? {
            let id = String::from_utf8_lossy(&k[PENDING_PREFIX.len()..]).into_owned();
            if let Some((_, f)) = self.read::<Firing>(&key(FIRING_PREFIX, &id))? {
                if f.deliveries.iter().any(|d| d.due(now)) {
                    out.push(f);
                }
            }
        }
        Ok(out)
    }

    /// Records one attempt to deliver firing `id`'s `condition`
    /// notification to `receiver`.
    pub async fn record_delivery(
        &self,
        id: &str,
        receiver: &str,
        condition: MonitorCondition,
        outcome: Result<(), String>,
        now: u64,
    ) -> Result<Firing, EngineError> {
        cas::write(&*self.store, None, || {
            let Some((rev, mut f)) = self.read::<Firing>(&key(FIRING_PREFIX, id))? else {
                return Ok(Plan::Refuse(not_found(ObjectKind::AlertFiring, id)));
            };
            let Some(d) = f.deliveries.iter_mut().find(|d| {
                d.receiver == receiver
                    && d.condition == condition
                    && d.state == DeliveryState::Pending
            }) else {
                return Ok(Plan::Answer(f));
            };
            d.record(outcome.clone(), now);
            let index = if f.pending() {
                Mutation::Put {
                    key: key(PENDING_PREFIX, id),
                    value: b"null".to_vec(),
                }
            } else {
                Mutation::Delete {
                    key: key(PENDING_PREFIX, id),
                }
            };
            Ok(Plan::Commit(Txn {
                compare: vec![Compare::Revision {
                    key: key(FIRING_PREFIX, id),
                    revision: rev,
                }],
                mutations: vec![
                    Mutation::Put {
                        key: key(FIRING_PREFIX, id),
                        value: cas::encode(&f)?,
                    },
                    index,
                ],
                result: cas::encode(&f)?,
            }))
        })
        .await
    }
}

fn not_found(kind: ObjectKind, name: &str) -> EngineError {
    EngineError::NotFound {
        kind,
        name: name.to_owned(),
    }
}

#[cfg(test)]
#[path = "alerts_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "signals_tests.rs"]
mod signals_tests;
