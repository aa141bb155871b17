//! Alert rules: which audit records count, how they are grouped, and how
//! many of them in how long a window make an alert fire.

use serde::{Deserialize, Serialize};

use super::hours::OutsideHours;
use crate::audit::record::parse_time_ms;
use crate::audit::{AuditEvent, Query};
use crate::error::EngineError;
use crate::operation::Operation;

/// Longest window a rule may count over (the new leader rebuilds windows
/// from the trail, so this bounds what it reads on a failover).
pub const MAX_WINDOW_SECS: u64 = 24 * 3600;
/// Highest threshold (a window keeps that many record times per group).
pub const MAX_THRESHOLD: u32 = 10_000;
/// Most receivers one rule notifies.
pub const MAX_RECEIVERS: usize = 16;
/// Furthest an `expiring` rule looks ahead (a year).
pub const MAX_WITHIN_SECS: u64 = 365 * 86_400;
/// What an `expiring` rule looks ahead by default (7 days).
pub const DEFAULT_WITHIN_SECS: u64 = 7 * 86_400;
/// (principal, object) pairs a `first-access` rule remembers by default;
/// past it the pair first seen longest ago is forgotten (and would fire again).
pub const DEFAULT_MAX_PAIRS: u32 = 50_000;
/// Most pairs a `first-access` rule may remember.
pub const MAX_PAIRS: u32 = 1_000_000;
/// Requests an `error-rate` window needs by default before a rate counts.
pub const DEFAULT_MIN_REQUESTS: u32 = 10;
/// Longest learning period of a `first-access` rule (30 days).
pub const MAX_LEARN_SECS: u64 = 30 * 86_400;

/// What kind of record a rule counts, before its filter narrows it down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Signal {
    /// A refused request: 403, or 401 to a request that presented a bearer
    /// token (a bare 401 is the authentication challenge every SDK client
    /// gets first, not a denial).
    Denied,
    /// A successful purge of a secret, key or certificate (any
    /// `…Purge` operation answered 2xx).
    Purge,
    /// Any request made with the break-glass root token.
    RootToken,
    /// Every record (narrow it with the filter).
    Any,
    /// A successful read of a secret's value or of a key, or a use of a key
    /// (encrypt, sign, …), by a principal never seen on that object before:
    /// fires once per (principal, object) pair, remembered through Raft.
    FirstAccess,
    /// The fraction of 5xx answers among the requests of the window reaches
    /// `threshold` percent (with at least `min_requests` requests).
    ErrorRate,
    /// Requests slower than `slower_than_ms` (counted against `threshold`).
    Slow,
    /// State, not records: the current version of a secret, key or
    /// certificate expires within `within_secs` (or expired). One alert
    /// per object; resolved by a new version with a later expiry or a
    /// delete. Checked by the leader's object scan.
    Expiring,
    /// State, not records: Raft leader elections within the window reach
    /// the threshold (each new leader records its term through Raft).
    LeaderChanges,
    /// State, not records: a member answers its seal status as sealed
    /// (one alert per node; the leader asks every member).
    Sealed,
    /// Not a signal of the trail: the firing delivers a lifecycle event
    /// (rules cannot use it).
    Event,
}

impl Signal {
    /// Whether `event` is of this kind.
    pub fn matches(self, event: &AuditEvent) -> bool {
        let code = event.properties.http_status_code;
        match self {
            Signal::Denied => code == 403 || (code == 401 && event.properties.token_hmac.is_some()),
            Signal::Purge => event.operation_name.ends_with("Purge") && (200..300).contains(&code),
            Signal::RootToken => event.identity.claim.root_token,
            Signal::Any | Signal::ErrorRate | Signal::Slow => true,
            Signal::FirstAccess => {
                (200..300).contains(&code)
                    && Operation::named(&event.operation_name)
                        .is_some_and(Operation::reads_or_uses_object)
                    && accessed_object(event).is_some()
            }
            Signal::Expiring | Signal::LeaderChanges | Signal::Sealed | Signal::Event => false,
        }
    }

    /// Whether rules of this signal count trail records (the others hold
    /// or not by state, see `alerts::state`).
    pub fn is_trail(self) -> bool {
        matches!(
            self,
            Signal::Denied
                | Signal::Purge
                | Signal::RootToken
                | Signal::Any
                | Signal::FirstAccess
                | Signal::ErrorRate
                | Signal::Slow
        )
    }
}

/// `{vault}/{secrets|keys}/{name}` of the object a record addresses (the
/// name lower-cased, as Key Vault names are case-insensitive; versions and
/// actions after it dropped).
pub fn accessed_object(event: &AuditEvent) -> Option<String> {
    let id = event.properties.id.as_deref()?;
    let path = id.split_once("://").map_or(id, |(_, rest)| rest);
    let mut segments = path.split('/').skip(1);
    let collection = segments.next()?;
    let name = segments.next().filter(|n| !n.is_empty())?;
    matches!(collection, "secrets" | "keys").then(|| {
        format!(
            "{}/{collection}/{}",
            event.properties.vault,
            name.to_ascii_lowercase()
        )
    })
}

/// What a rule counts per: one window per distinct value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupBy {
    /// One window for the whole cluster.
    #[default]
    None,
    /// Per caller (upn, appid, oid, `root`, `-` for anonymous).
    Principal,
    /// Per caller IP address.
    Ip,
    /// Per vault addressed.
    Vault,
    /// Per operation (`SecretGet`, …).
    Operation,
    /// Per caller and object addressed (`{principal} {vault}/{collection}/{name}`):
    /// what `first-access` rules remember.
    PrincipalObject,
}

impl GroupBy {
    /// The group `event` falls in.
    pub fn key(self, event: &AuditEvent) -> String {
        match self {
            GroupBy::None => "*".to_owned(),
            GroupBy::Principal => event.identity.claim.display().to_owned(),
            GroupBy::Ip => event.caller_ip_address.clone(),
            GroupBy::Vault => event.properties.vault.clone(),
            GroupBy::Operation => event.operation_name.clone(),
            GroupBy::PrincipalObject => format!(
                "{} {}",
                event.identity.claim.display(),
                accessed_object(event).unwrap_or_else(|| "-".into())
            ),
        }
    }

    /// The dimension name in alert payloads.
    pub fn dimension(self) -> &'static str {
        match self {
            GroupBy::None => "Cluster",
            GroupBy::Principal => "Principal",
            GroupBy::Ip => "CallerIPAddress",
            GroupBy::Vault => "VaultName",
            GroupBy::Operation => "OperationName",
            GroupBy::PrincipalObject => "PrincipalOnObject",
        }
    }
}

fn one() -> u32 {
    1
}

fn sixty() -> u64 {
    60
}

fn default_throttle() -> u64 {
    300
}

fn default_severity() -> u8 {
    2
}

fn yes() -> bool {
    true
}

/// When a rule fires: `threshold` matching records of one group within
/// `window_secs` (by record time).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// The kind of record counted.
    pub signal: Signal,
    /// Further filters (principal, operation, status, vault; `since` and
    /// `until` are not allowed).
    #[serde(default)]
    pub filter: Query,
    /// One window per principal, IP, vault, or one for all.
    #[serde(default)]
    pub group_by: GroupBy,
    /// Matching records within the window that fire the rule.
    #[serde(default = "one")]
    pub threshold: u32,
    /// Window length in seconds.
    #[serde(default = "sixty")]
    pub window_secs: u64,
    /// `expiring`: how far ahead an expiry counts (default 7 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_secs: Option<u64>,
    /// Trail signals: count only records outside these working hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outside_hours: Option<OutsideHours>,
    /// `first-access`: pairs seen within this many seconds after the rule
    /// was created are remembered without firing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learn_secs: Option<u64>,
    /// `first-access`: pairs remembered at most (default 50 000); the one
    /// first seen longest ago is forgotten to make room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pairs: Option<u32>,
    /// `error-rate`: requests the window must hold before its rate counts
    /// (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u32>,
    /// `slow`: a request counts when its duration exceeds this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slower_than_ms: Option<u64>,
}

impl Condition {
    /// Whether `event` counts for this condition.
    pub fn matches(&self, event: &AuditEvent) -> bool {
        self.signal.matches(event)
            && self.filter.matches(event)
            && self
                .outside_hours
                .as_ref()
                .is_none_or(|h| parse_time_ms(&event.time).is_some_and(|t| h.outside(t)))
            && (self.signal != Signal::Slow
                || event
                    .duration_ms
                    .trim()
                    .parse::<u64>()
                    .is_ok_and(|d| self.slower_than_ms.is_some_and(|limit| d > limit)))
    }

    /// `first-access`: pairs remembered at most.
    pub fn max_pairs(&self) -> u32 {
        self.max_pairs.unwrap_or(DEFAULT_MAX_PAIRS)
    }

    /// `error-rate`: requests a window needs before its rate counts.
    pub fn min_requests(&self) -> u32 {
        self.min_requests.unwrap_or(DEFAULT_MIN_REQUESTS)
    }

    /// `expiring`: how far ahead an expiry counts, in seconds.
    pub fn within(&self) -> u64 {
        self.within_secs.unwrap_or(DEFAULT_WITHIN_SECS)
    }
}

/// An alert rule (replicated configuration).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Name (set from the path).
    #[serde(default)]
    pub name: String,
    /// Shown in notifications.
    #[serde(default)]
    pub description: String,
    /// 0 (critical) … 4 (verbose), as Azure Monitor's `Sev0`…`Sev4`.
    #[serde(default = "default_severity")]
    pub severity: u8,
    /// A disabled rule is not evaluated.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// When the rule fires.
    pub condition: Condition,
    /// Names of the receivers notified.
    pub receivers: Vec<String>,
    /// After a group's alert resolved, a new one for the same group fires
    /// no sooner than this many seconds after the last one fired (storm
    /// protection).
    #[serde(default = "default_throttle")]
    pub throttle_secs: u64,
    /// When the rule was first stored (Unix milliseconds; set by the
    /// engine, kept when the rule is replaced): records before it, and
    /// within `learn_secs` after it, only teach a `first-access` rule.
    #[serde(default)]
    pub created_ms: u64,
}

impl Rule {
    /// Refuses rules that cannot work.
    pub fn validate(&self) -> Result<(), EngineError> {
        let bad = |m: &str| Err(EngineError::BadParameter(format!("alert rule: {m}")));
        if !is_valid_config_name(&self.name) {
            return bad("the name must be 1-64 letters, digits, '-' or '_'");
        }
        if self.severity > 4 {
            return bad("severity must be 0..=4");
        }
        let c = &self.condition;
        if c.signal == Signal::Event {
            return bad(
                "signal must be denied, purge, root-token, any, first-access, error-rate, \
                 slow, expiring, leader-changes or sealed",
            );
        }
        self.validate_signal_options()?;
        if c.within_secs.is_some() && c.signal != Signal::Expiring {
            return bad("within_secs is for the expiring signal");
        }
        if c.within_secs.is_some_and(|w| w == 0 || w > MAX_WITHIN_SECS) {
            return bad("within_secs must be 1..=31536000");
        }
        if c.signal == Signal::ErrorRate {
            if !(1..=100).contains(&c.threshold) {
                return bad("error-rate: threshold is a percentage, 1..=100");
            }
        } else if c.threshold == 0 || c.threshold > MAX_THRESHOLD {
            return bad("threshold must be 1..=10000");
        }
        if c.window_secs == 0 || c.window_secs > MAX_WINDOW_SECS {
            return bad("window_secs must be 1..=86400");
        }
        if c.filter.since.is_some() || c.filter.until.is_some() {
            return bad("the filter takes no since/until (the window is the time range)");
        }
        if self.receivers.is_empty() || self.receivers.len() > MAX_RECEIVERS {
            return bad("a rule names 1 to 16 receivers");
        }
        if self.throttle_secs > 7 * 86_400 {
            return bad("throttle_secs must be at most 604800");
        }
        Ok(())
    }

    /// Refuses options given to a signal that does not take them, and
    /// out-of-range values of those it does.
    fn validate_signal_options(&self) -> Result<(), EngineError> {
        let bad = |m: &str| Err(EngineError::BadParameter(format!("alert rule: {m}")));
        let c = &self.condition;
        let only = |given: bool, signal: Signal, what: &str| {
            if given && c.signal != signal {
                bad(what)
            } else {
                Ok(())
            }
        };
        only(
            c.learn_secs.is_some(),
            Signal::FirstAccess,
            "learn_secs is for the first-access signal",
        )?;
        only(
            c.max_pairs.is_some(),
            Signal::FirstAccess,
            "max_pairs is for the first-access signal",
        )?;
        only(
            c.min_requests.is_some(),
            Signal::ErrorRate,
            "min_requests is for the error-rate signal",
        )?;
        only(
            c.slower_than_ms.is_some(),
            Signal::Slow,
            "slower_than_ms is for the slow signal",
        )?;
        if let Some(h) = &c.outside_hours {
            if !c.signal.is_trail() {
                return bad("outside_hours filters audit records: use it with a trail signal");
            }
            if let Err(e) = h.validate() {
                return bad(&e);
            }
        }
        match c.signal {
            Signal::FirstAccess => {
                if c.group_by != GroupBy::PrincipalObject {
                    return bad("first-access groups by principal-object (one alert per pair)");
                }
                if c.threshold != 1 {
                    return bad("first-access fires on the first read: threshold must be 1");
                }
                if c.learn_secs.is_some_and(|l| l > MAX_LEARN_SECS) {
                    return bad("learn_secs must be at most 2592000 (30 days)");
                }
                if c.max_pairs.is_some_and(|m| m == 0 || m > MAX_PAIRS) {
                    return bad("max_pairs must be 1..=1000000");
                }
            }
            Signal::ErrorRate if c.min_requests.is_some_and(|m| m == 0 || m > MAX_THRESHOLD) => {
                return bad("min_requests must be 1..=10000");
            }
            Signal::Slow => match c.slower_than_ms {
                None => return bad("slow needs slower_than_ms"),
                Some(0) => return bad("slower_than_ms must be at least 1"),
                Some(ms) if ms > MAX_WINDOW_SECS * 1000 => {
                    return bad("slower_than_ms must be at most 86400000")
                }
                Some(_) => {}
            },
            _ => {}
        }
        Ok(())
    }

    /// Fills in what the engine decides for a rule being stored: its
    /// creation time (`created_ms`, the earlier rule's when it replaces
    /// one) and, for `first-access`, grouping by principal and object.
    pub fn prepare(&mut self, previous: Option<&Rule>, now_ms: u64) {
        self.created_ms = previous.map_or(now_ms, |p| p.created_ms);
        if self.condition.signal == Signal::FirstAccess && self.condition.group_by == GroupBy::None
        {
            self.condition.group_by = GroupBy::PrincipalObject;
        }
    }

    /// `first-access`: whether a record at `t_ms` falls before the rule
    /// existed or in its learning period (its pair is remembered, not
    /// alerted).
    pub fn learning(&self, t_ms: u64) -> bool {
        let learn_ms = self.condition.learn_secs.unwrap_or(0).saturating_mul(1000);
        t_ms < self.created_ms.saturating_add(learn_ms)
    }

    /// `Sev0` … `Sev4`.
    pub fn severity_name(&self) -> String {
        format!("Sev{}", self.severity)
    }
}

/// Names of rules and receivers: 1-64 of `[A-Za-z0-9_-]`.
pub fn is_valid_config_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Claims, Identity, Properties};

    fn event(op: &str, code: u16, token: bool, root: bool) -> AuditEvent {
        AuditEvent {
            operation_name: op.into(),
            caller_ip_address: "10.0.0.7".into(),
            identity: Identity {
                claim: Claims {
                    root_token: root,
                    ..Default::default()
                },
            },
            properties: Properties {
                http_status_code: code,
                token_hmac: token.then(|| "hmac-sha256:x".into()),
                vault: "prod".into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn signals_pick_denials_purges_and_root_use() {
        assert!(Signal::Denied.matches(&event("SecretGet", 403, true, false)));
        assert!(Signal::Denied.matches(&event("SecretGet", 401, true, false)));
        // The SDK's first, token-less request is a challenge, not a denial.
        assert!(!Signal::Denied.matches(&event("SecretGet", 401, false, false)));
        assert!(!Signal::Denied.matches(&event("SecretGet", 200, true, false)));
        assert!(Signal::Purge.matches(&event("KeyPurge", 204, true, false)));
        assert!(!Signal::Purge.matches(&event("KeyPurge", 403, true, false)));
        assert!(Signal::RootToken.matches(&event("SecretGet", 200, true, true)));
        assert!(!Signal::RootToken.matches(&event("SecretGet", 200, true, false)));
        assert_eq!(
            GroupBy::Ip.key(&event("SecretGet", 403, true, false)),
            "10.0.0.7"
        );
        assert_eq!(
            GroupBy::Vault.key(&event("SecretGet", 403, true, false)),
            "prod"
        );
    }

    #[test]
    fn rules_are_validated_and_parsed_with_defaults() {
        let rule: Rule = serde_json::from_value(serde_json::json!({
            "name": "denied-burst",
            "condition": {"signal": "denied", "group_by": "ip", "threshold": 5},
            "receivers": ["hook"]
        }))
        .unwrap();
        rule.validate().unwrap();
        assert_eq!(rule.condition.window_secs, 60);
        assert_eq!(
            (rule.severity, rule.throttle_secs, rule.enabled),
            (2, 300, true)
        );
        for broken in [
            Rule {
                name: "bad name".into(),
                ..rule.clone()
            },
            Rule {
                receivers: vec![],
                ..rule.clone()
            },
            Rule {
                severity: 5,
                ..rule.clone()
            },
        ] {
            assert!(broken.validate().is_err(), "{broken:?}");
        }
        let mut c = rule.clone();
        c.condition.window_secs = 0;
        assert!(c.validate().is_err());
        c.condition.window_secs = 60;
        c.condition.filter.since = Some("2026".into());
        assert!(c.validate().is_err());
    }
}
