//! Alert rules: which audit records count, how they are grouped, and how
//! many of them in how long a window make an alert fire.

use serde::{Deserialize, Serialize};

use crate::audit::{AuditEvent, Query};
use crate::error::EngineError;

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
            Signal::Any => true,
            Signal::Expiring | Signal::LeaderChanges | Signal::Sealed | Signal::Event => false,
        }
    }

    /// Whether rules of this signal count trail records (the others hold
    /// or not by state, see `alerts::state`).
    pub fn is_trail(self) -> bool {
        matches!(
            self,
            Signal::Denied | Signal::Purge | Signal::RootToken | Signal::Any
        )
    }
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
}

impl GroupBy {
    /// The group `event` falls in.
    pub fn key(self, event: &AuditEvent) -> String {
        match self {
            GroupBy::None => "*".to_owned(),
            GroupBy::Principal => event.identity.claim.display().to_owned(),
            GroupBy::Ip => event.caller_ip_address.clone(),
            GroupBy::Vault => event.properties.vault.clone(),
        }
    }

    /// The dimension name in alert payloads.
    pub fn dimension(self) -> &'static str {
        match self {
            GroupBy::None => "Cluster",
            GroupBy::Principal => "Principal",
            GroupBy::Ip => "CallerIPAddress",
            GroupBy::Vault => "VaultName",
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
}

impl Condition {
    /// Whether `event` counts for this condition.
    pub fn matches(&self, event: &AuditEvent) -> bool {
        self.signal.matches(event) && self.filter.matches(event)
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
                "signal must be denied, purge, root-token, any, expiring or leader-changes",
            );
        }
        if c.within_secs.is_some() && c.signal != Signal::Expiring {
            return bad("within_secs is for the expiring signal");
        }
        if c.within_secs.is_some_and(|w| w == 0 || w > MAX_WITHIN_SECS) {
            return bad("within_secs must be 1..=31536000");
        }
        if c.threshold == 0 || c.threshold > MAX_THRESHOLD {
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
