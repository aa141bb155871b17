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

/// Validates a policy as sent by a client: one trigger per action, at most
/// one action of each type, well-formed durations.
///
/// Unlike the real service (which requires at least 7 days), any positive
/// duration is accepted, so short policies can be exercised in tests.
pub fn validate(policy: &RotationPolicy) -> Result<(), EngineError> {
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
    for a in &policy.lifetime_actions {
        match (&a.trigger.time_after_create, &a.trigger.time_before_expiry) {
            (Some(d), None) | (None, Some(d)) => {
                parse_duration(d).ok_or_else(|| invalid_duration(d))?;
            }
            _ => return bad(
                "Each lifetime action needs exactly one of timeAfterCreate and timeBeforeExpiry"
                    .into(),
            ),
        }
    }
    if let Some(e) = &policy.attributes.expiry_time {
        parse_duration(e).ok_or_else(|| invalid_duration(e))?;
    }
    Ok(())
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
    const DAY: u64 = 86_400;
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
        assert!(validate(&p).is_err());
        // The largest accepted duration still fits any expiry up to 9999.
        assert!(253_402_300_799_i64
            .checked_add(MAX_DURATION_SECS as i64)
            .is_some());
    }

    #[test]
    fn validation_rejects_malformed_policies() {
        assert!(validate(&default_policy()).is_ok());
        let mut p = default_policy();
        p.lifetime_actions[0].trigger.time_after_create = Some("P1D".into());
        assert!(validate(&p).is_err(), "two triggers");
        let mut p = default_policy();
        p.lifetime_actions.push(p.lifetime_actions[0].clone());
        assert!(validate(&p).is_err(), "two Notify actions");
        let mut p = default_policy();
        p.attributes.expiry_time = Some("soon".into());
        assert!(validate(&p).is_err());
        let p: RotationPolicy = serde_json::from_str(
            r#"{"lifetimeActions":[{"trigger":{"timeAfterCreate":"P7D"},"action":{"type":"rotate"}}]}"#,
        )
        .unwrap();
        assert_eq!(p.lifetime_actions[0].action.kind, ActionType::Rotate);
        assert!(validate(&p).is_ok());
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
