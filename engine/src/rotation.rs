//! Key rotation policies: their JSON shape, validation, ISO-8601 durations
//! and when a lifetime action is due. Pure logic; the keys engine stores
//! policies and carries the actions out.

use serde::{Deserialize, Deserializer, Serialize};

use super::error::EngineError;

/// A key's rotation policy (Key Vault's JSON, without `id`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationPolicy {
    /// What to do when.
    #[serde(default)]
    pub lifetime_actions: Vec<LifetimeAction>,
    /// Expiry applied to new versions, creation and update times.
    #[serde(default)]
    pub attributes: PolicyAttributes,
}

/// One lifetime action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifetimeAction {
    /// When.
    pub trigger: Trigger,
    /// What.
    pub action: Action,
}

/// Exactly one of the two durations.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    /// ISO-8601 duration after the latest version's creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_after_create: Option<String>,
    /// ISO-8601 duration before the latest version's expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_before_expiry: Option<String>,
}

/// `{"type": "Rotate" | "Notify"}` (case-insensitive on input).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    /// The action.
    #[serde(rename = "type")]
    pub kind: ActionType,
}

/// Lifetime action types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ActionType {
    /// Create a new version.
    Rotate,
    /// Record a near-expiry event.
    Notify,
}

impl<'de> Deserialize<'de> for ActionType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.to_ascii_lowercase().as_str() {
            "rotate" => Ok(ActionType::Rotate),
            "notify" => Ok(ActionType::Notify),
            _ => Err(serde::de::Error::custom(
                "action type must be Rotate or Notify",
            )),
        }
    }
}

/// Policy attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyAttributes {
    /// ISO-8601 duration: expiry of versions created by rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_time: Option<String>,
    /// Unix seconds the policy was first set (server-owned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<u64>,
    /// Unix seconds of the last change (server-owned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<u64>,
}

/// The policy of a key that never had one set: notify 30 days before expiry.
pub fn default_policy() -> RotationPolicy {
    RotationPolicy {
        lifetime_actions: vec![LifetimeAction {
            trigger: Trigger {
                time_after_create: None,
                time_before_expiry: Some("P30D".into()),
            },
            action: Action {
                kind: ActionType::Notify,
            },
        }],
        attributes: PolicyAttributes::default(),
    }
}

const DAY: u64 = 86_400;

/// The shortest durations a rotation policy may name. Key Vault's are
/// [`RotationLimits::KEY_VAULT`]; shorter ones would let a policy mint a new
/// key version on every lifecycle tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotationLimits {
    /// Every trigger (`timeAfterCreate`, `timeBeforeExpiry`) is at least this
    /// long, and with an `expiryTime` it fires at least this long after
    /// creation and before expiry.
    pub min_trigger_secs: u64,
    /// `expiryTime` is at least this long.
    pub min_expiry_secs: u64,
}

impl RotationLimits {
    /// Key Vault's minimums: triggers of 7 days, `expiryTime` of 28 days.
    pub const KEY_VAULT: Self = Self {
        min_trigger_secs: 7 * DAY,
        min_expiry_secs: 28 * DAY,
    };

    /// TEST ONLY (`unsafe_min_rotation_secs`): every minimum is `secs`, so
    /// tests can watch policies being carried out.
    pub fn unsafe_minimum(secs: u64) -> Self {
        Self {
            min_trigger_secs: secs,
            min_expiry_secs: secs,
        }
    }
}

impl Default for RotationLimits {
    fn default() -> Self {
        Self::KEY_VAULT
    }
}

/// Validates a policy as sent by a client: one trigger per action, at most
/// one action of each type, well-formed durations, and Key Vault's minimums
/// (`limits`): triggers of at least 7 days, firing at least 7 days after
/// creation and 7 days before expiry, and an `expiryTime` of at least 28 days.
pub fn validate(policy: &RotationPolicy, limits: &RotationLimits) -> Result<(), EngineError> {
    let bad = |m: String| Err(EngineError::BadParameter(m));
    for kind in [ActionType::Rotate, ActionType::Notify] {
        if policy
            .lifetime_actions
            .iter()
            .filter(|a| a.action.kind == kind)
            .count()
            > 1
        {
            return bad(format!("At most one {kind:?} lifetime action is allowed"));
        }
    }
    let expiry = match &policy.attributes.expiry_time {
        Some(e) => {
            let secs = parse_duration(e).ok_or_else(|| invalid_duration(e))?;
            if secs < limits.min_expiry_secs {
                return bad(format!(
                    "expiryTime {e:?} is too short: the minimum is {}",
                    describe_secs(limits.min_expiry_secs)
                ));
            }
            Some(secs)
        }
        None => None,
    };
    let min = limits.min_trigger_secs;
    for a in &policy.lifetime_actions {
        let (field, d) = match (&a.trigger.time_after_create, &a.trigger.time_before_expiry) {
            (Some(d), None) => ("timeAfterCreate", d),
            (None, Some(d)) => ("timeBeforeExpiry", d),
            _ => return bad(
                "Each lifetime action needs exactly one of timeAfterCreate and timeBeforeExpiry"
                    .into(),
            ),
        };
        let secs = parse_duration(d).ok_or_else(|| invalid_duration(d))?;
        if secs < min {
            return bad(format!(
                "{field} {d:?} of the {:?} action is too short: the minimum is {}",
                a.action.kind,
                describe_secs(min)
            ));
        }
        // Both triggers fire `secs` from one end of the version's lifetime:
        // at least `min` must remain to the other end.
        if let Some(expiry) = expiry {
            if secs > expiry.saturating_sub(min) {
                let end = match field {
                    "timeAfterCreate" => "before expiry",
                    _ => "after creation",
                };
                return bad(format!(
                    "{field} {d:?} of the {:?} action leaves less than {} {end} \
                     with expiryTime {:?}",
                    a.action.kind,
                    describe_secs(min),
                    policy.attributes.expiry_time.as_deref().unwrap_or_default()
                ));
            }
        }
    }
    Ok(())
}

/// `"7 days (P7D)"`, or `"2 seconds (PT2S)"` for lowered test minimums.
fn describe_secs(secs: u64) -> String {
    if secs.is_multiple_of(DAY) {
        format!("{} days (P{}D)", secs / DAY, secs / DAY)
    } else {
        format!("{secs} seconds (PT{secs}S)")
    }
}

fn invalid_duration(d: &str) -> EngineError {
    EngineError::BadParameter(format!(
        "{d:?} is not a valid ISO-8601 duration of at most 1000 years (e.g. P90D, P1Y2M, PT12H)"
    ))
}

/// Longest accepted duration: 1000 years of 365 days. Durations are added
/// to Unix times (`created + d`, the `exp` of rotated versions, an `i64`),
/// so an unbounded one overflowed: `PT18446744073709551615S` (found by the
/// `rotation_duration` fuzz target) made rotated versions expire in the past.
pub const MAX_DURATION_SECS: u64 = 1000 * 365 * 86_400;

/// Seconds of an ISO-8601 duration `PnYnMnWnDTnHnMnS` (integers; a year
/// counts 365 days, a month 30). `None` if malformed, empty, zero or longer
/// than [`MAX_DURATION_SECS`].
pub fn parse_duration(s: &str) -> Option<u64> {
    let rest = s.strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) if !t.is_empty() => (d, Some(t)),
        Some(_) => return None,
        None => (rest, None),
    };
    let mut total: u64 = 0;
    let mut any = false;
    let mut add = |part: &str, units: &[(char, u64)]| -> Option<()> {
        let mut num = String::new();
        let mut next_unit = 0;
        for c in part.chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            let pos = units[next_unit..].iter().position(|(u, _)| *u == c)? + next_unit;
            let n: u64 = num.parse().ok()?;
            total = total.checked_add(n.checked_mul(units[pos].1)?)?;
            num.clear();
            next_unit = pos + 1;
            any = true;
        }
        num.is_empty().then_some(())
    };
    add(
        date,
        &[
            ('Y', 365 * DAY),
            ('M', 30 * DAY),
            ('W', 7 * DAY),
            ('D', DAY),
        ],
    )?;
    if let Some(t) = time {
        add(t, &[('H', 3600), ('M', 60), ('S', 1)])?;
    }
    (any && total > 0 && total <= MAX_DURATION_SECS).then_some(total)
}

/// Whether `action` is due for a version created at `created` expiring at
/// `exp`, at `now` (Unix seconds).
pub fn is_due(action: &LifetimeAction, created: u64, exp: Option<i64>, now: u64) -> bool {
    if let Some(d) = action
        .trigger
        .time_after_create
        .as_deref()
        .and_then(parse_duration)
    {
        return created.saturating_add(d) <= now;
    }
    if let (Some(d), Some(exp)) = (
        action
            .trigger
            .time_before_expiry
            .as_deref()
            .and_then(parse_duration),
        exp,
    ) {
        return (exp.max(0) as u64).saturating_sub(d) <= now;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_the_iso_subset() {
        let day = 86_400;
        assert_eq!(parse_duration("P90D"), Some(90 * day));
        assert_eq!(parse_duration("P1Y"), Some(365 * day));
        assert_eq!(parse_duration("P3M"), Some(90 * day));
        assert_eq!(parse_duration("P2W"), Some(14 * day));
        assert_eq!(parse_duration("PT48H"), Some(48 * 3600));
        assert_eq!(parse_duration("P1Y10D"), Some(375 * day));
        assert_eq!(parse_duration("P1DT1H1M1S"), Some(day + 3661));
        assert_eq!(parse_duration("PT10S"), Some(10));
        for bad in [
            "", "P", "PT", "P1", "90D", "P1H", "PT1D", "P1D2Y", "P-1D", "P0D", "P1.5D", "p1d",
            "P1DT",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn durations_are_bounded_so_expiry_times_cannot_overflow() {
        // Fuzz finding: accepted, then `now + d` wrapped the rotated expiry.
        assert_eq!(parse_duration("PT18446744073709551615S"), None);
        assert_eq!(parse_duration("P300000000000Y"), None);
        assert_eq!(parse_duration("P1000Y"), Some(MAX_DURATION_SECS));
        assert_eq!(parse_duration("P1000YT1S"), None);
        assert_eq!(parse_duration("P365000D"), Some(MAX_DURATION_SECS));
        let mut p = default_policy();
        p.attributes.expiry_time = Some("PT18446744073709551615S".into());
        assert!(validate(&p, &RotationLimits::KEY_VAULT).is_err());
        // The largest accepted duration still fits any expiry up to 9999.
        assert!(253_402_300_799_i64
            .checked_add(MAX_DURATION_SECS as i64)
            .is_some());
    }

    #[test]
    fn validation_rejects_malformed_policies() {
        let kv = RotationLimits::KEY_VAULT;
        assert!(validate(&default_policy(), &kv).is_ok());
        let mut p = default_policy();
        p.lifetime_actions[0].trigger.time_after_create = Some("P7D".into());
        assert!(validate(&p, &kv).is_err(), "two triggers");
        let mut p = default_policy();
        p.lifetime_actions.push(p.lifetime_actions[0].clone());
        assert!(validate(&p, &kv).is_err(), "two Notify actions");
        let mut p = default_policy();
        p.attributes.expiry_time = Some("soon".into());
        assert!(validate(&p, &kv).is_err());
        let p: RotationPolicy = serde_json::from_str(
            r#"{"lifetimeActions":[{"trigger":{"timeAfterCreate":"P7D"},"action":{"type":"rotate"}}]}"#,
        )
        .unwrap();
        assert_eq!(p.lifetime_actions[0].action.kind, ActionType::Rotate);
        assert!(validate(&p, &kv).is_ok());
    }

    fn policy(trigger: &str, duration: &str, expiry: Option<&str>) -> RotationPolicy {
        let expiry = expiry.map_or(String::new(), |e| {
            format!(r#","attributes":{{"expiryTime":"{e}"}}"#)
        });
        serde_json::from_str(&format!(
            r#"{{"lifetimeActions":[{{"trigger":{{"{trigger}":"{duration}"}},"action":{{"type":"Rotate"}}}}]{expiry}}}"#
        ))
        .unwrap()
    }

    fn refusal(p: &RotationPolicy, limits: &RotationLimits) -> String {
        match validate(p, limits) {
            Err(EngineError::BadParameter(m)) => m,
            other => panic!("expected a BadParameter refusal, got {other:?}"),
        }
    }

    #[test]
    fn key_vault_minimums_are_enforced() {
        let kv = RotationLimits::KEY_VAULT;
        for (trigger, d) in [
            ("timeAfterCreate", "PT1S"),
            ("timeAfterCreate", "P6D"),
            ("timeAfterCreate", "P6DT23H59M59S"),
            ("timeBeforeExpiry", "PT1H"),
        ] {
            let m = refusal(&policy(trigger, d, None), &kv);
            assert!(m.contains("too short") && m.contains("7 days (P7D)"), "{m}");
        }
        for ok in ["P7D", "P1W", "PT168H", "P90D", "P1Y"] {
            assert!(
                validate(&policy("timeAfterCreate", ok, None), &kv).is_ok(),
                "{ok}"
            );
        }
        // expiryTime: at least 28 days.
        let m = refusal(&policy("timeAfterCreate", "P7D", Some("P27D")), &kv);
        assert!(m.contains("expiryTime") && m.contains("28 days"), "{m}");
        assert!(validate(&policy("timeAfterCreate", "P7D", Some("P28D")), &kv).is_ok());
        // With an expiry, rotation lands at least 7 days from either end.
        let m = refusal(&policy("timeAfterCreate", "P25D", Some("P30D")), &kv);
        assert!(m.contains("before expiry"), "{m}");
        let m = refusal(&policy("timeBeforeExpiry", "P25D", Some("P30D")), &kv);
        assert!(m.contains("after creation"), "{m}");
        assert!(validate(&policy("timeAfterCreate", "P23D", Some("P30D")), &kv).is_ok());
        assert!(validate(&policy("timeBeforeExpiry", "P23D", Some("P30D")), &kv).is_ok());
    }

    #[test]
    fn the_test_override_lowers_every_minimum() {
        let short = RotationLimits::unsafe_minimum(2);
        assert!(validate(&policy("timeAfterCreate", "PT2S", Some("P90D")), &short).is_ok());
        assert!(validate(&policy("timeAfterCreate", "PT2S", Some("PT4S")), &short).is_ok());
        let m = refusal(&policy("timeAfterCreate", "PT1S", None), &short);
        assert!(m.contains("2 seconds (PT2S)"), "{m}");
        assert_eq!(RotationLimits::default(), RotationLimits::KEY_VAULT);
    }

    #[test]
    fn due_times_follow_the_triggers() {
        let rotate_after = LifetimeAction {
            trigger: Trigger {
                time_after_create: Some("P1D".into()),
                time_before_expiry: None,
            },
            action: Action {
                kind: ActionType::Rotate,
            },
        };
        assert!(!is_due(&rotate_after, 1000, None, 1000 + 86_399));
        assert!(is_due(&rotate_after, 1000, None, 1000 + 86_400));
        let before_exp = LifetimeAction {
            trigger: Trigger {
                time_after_create: None,
                time_before_expiry: Some("PT1H".into()),
            },
            action: Action {
                kind: ActionType::Notify,
            },
        };
        assert!(
            !is_due(&before_exp, 0, None, u64::MAX / 2),
            "no expiry, never due"
        );
        assert!(!is_due(&before_exp, 0, Some(10_000), 10_000 - 3601));
        assert!(is_due(&before_exp, 0, Some(10_000), 10_000 - 3600));
    }
}
