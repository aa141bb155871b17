//! ISO-8601 durations of rotation policies (`engine/rotation.rs`), and what
//! the engine does with an accepted one.
//!
//! Input: the duration text. Invariants beyond "no panic":
//! - the parser agrees with an independent reference (u128 arithmetic, the
//!   documented grammar `P[nY][nM][nW][nD][T[nH][nM][nS]]`): it accepts
//!   exactly the durations up to `MAX_DURATION_SECS`;
//! - an accepted duration never overflows: added to any Unix time up to
//!   the year 9999 it still fits the `i64` seconds of `exp`;
//! - policy validation accepts exactly the durations the parser accepts,
//!   in each of its three places, and the policy JSON round-trips;
//! - `is_due` handles extreme times;
//! - a key rotated under a policy with this `expiryTime` expires that long
//!   after now (not in the past, not wrapped around).
#![no_main]

use coffer::engine::rotation::{
    is_due, parse_duration, validate, Action, ActionType, LifetimeAction, PolicyAttributes,
    RotationLimits, RotationPolicy, Trigger, MAX_DURATION_SECS,
};
use coffer_fuzz::app::{with_app, VAULT};
use libfuzzer_sys::fuzz_target;

/// 9999-12-31T23:59:59Z.
const YEAR_9999: u64 = 253_402_300_799;
/// The largest duration that is usable as an expiry offset.
const USABLE: u64 = i64::MAX as u64 - YEAR_9999;

fn reference(s: &str) -> Option<u128> {
    const DAY: u128 = 86_400;
    let rest = s.strip_prefix('P')?;
    let (date, time) = match rest.find('T') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    if time == Some("") {
        return None;
    }
    let mut total: u128 = 0;
    let mut any = false;
    let mut part = |p: &str, units: &[(u8, u128)]| -> Option<()> {
        let b = p.as_bytes();
        let (mut i, mut next) = (0, 0);
        while i < b.len() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i == start || i == b.len() {
                return None;
            }
            let at = units[next..].iter().position(|(u, _)| *u == b[i])? + next;
            let n: u128 = p[start..i].parse().ok()?;
            total = total.checked_add(n.checked_mul(units[at].1)?)?;
            next = at + 1;
            any = true;
            i += 1;
        }
        Some(())
    };
    part(
        date,
        &[
            (b'Y', 365 * DAY),
            (b'M', 30 * DAY),
            (b'W', 7 * DAY),
            (b'D', DAY),
        ],
    )?;
    if let Some(t) = time {
        part(t, &[(b'H', 3600), (b'M', 60), (b'S', 1)])?;
    }
    (any && total > 0).then_some(total)
}

fn action(kind: ActionType, after: Option<&str>, before: Option<&str>) -> LifetimeAction {
    LifetimeAction {
        trigger: Trigger {
            time_after_create: after.map(str::to_owned),
            time_before_expiry: before.map(str::to_owned),
        },
        action: Action { kind },
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse_duration(s);
    if let Some(d) = parsed {
        assert!(d > 0, "zero duration accepted");
        assert!(
            d <= USABLE,
            "duration {d}s accepted: now + d overflows the i64 expiry"
        );
    }
    let expected = reference(s).filter(|&e| e <= u128::from(MAX_DURATION_SECS));
    assert_eq!(
        parsed.map(u128::from),
        expected,
        "parser disagrees with the reference"
    );

    let ok = parsed.is_some();
    let policies = [
        RotationPolicy {
            lifetime_actions: vec![action(ActionType::Rotate, Some(s), None)],
            attributes: PolicyAttributes::default(),
        },
        RotationPolicy {
            lifetime_actions: vec![action(ActionType::Notify, None, Some(s))],
            attributes: PolicyAttributes::default(),
        },
        RotationPolicy {
            lifetime_actions: Vec::new(),
            attributes: PolicyAttributes {
                expiry_time: Some(s.to_owned()),
                ..PolicyAttributes::default()
            },
        },
    ];
    for p in &policies {
        // Without minimums, validation accepts exactly what parses; with
        // Key Vault's, only a subset of it.
        assert_eq!(
            validate(p, &RotationLimits::unsafe_minimum(0)).is_ok(),
            ok,
            "validation disagrees with the parser"
        );
        if validate(p, &RotationLimits::KEY_VAULT).is_ok() {
            assert!(ok, "Key Vault's limits accepted what does not parse");
        }
        let json = serde_json::to_string(p).expect("serialise policy");
        let back: RotationPolicy = serde_json::from_str(&json).expect("policy re-parses");
        assert_eq!(&back, p, "policy JSON round trip");
        for a in &p.lifetime_actions {
            for created in [0, now(), u64::MAX] {
                for exp in [None, Some(i64::MIN), Some(0), Some(i64::MAX)] {
                    for at in [0, now(), u64::MAX] {
                        let _ = is_due(a, created, exp, at);
                    }
                }
            }
        }
    }

    let Some(d) = parsed else { return };
    // Rotation under a policy with this expiryTime: the new version's
    // expiry is now + d, in the future.
    let policy = RotationPolicy {
        lifetime_actions: vec![action(ActionType::Rotate, Some(s), None)],
        attributes: PolicyAttributes {
            expiry_time: Some(s.to_owned()),
            ..PolicyAttributes::default()
        },
    };
    with_app(|app| async move {
        app.keys
            .set_rotation_policy(VAULT, "ec", policy, None)
            .await
            .expect("a valid policy is stored");
        let before = now();
        let k = app.keys.rotate(VAULT, "ec", None).await.expect("rotate");
        let exp = k
            .properties
            .exp
            .expect("rotated key has the policy's expiry");
        let lo = i128::from(before) + i128::from(d);
        assert!(
            i128::from(exp) >= lo && i128::from(exp) <= lo + 120,
            "rotated key expires at {exp}, expected about {lo}"
        );
        // And the lifecycle task, once the policy is due.
        let due = before.saturating_add(d).saturating_add(1);
        app.keys
            .run_rotation_policies(due)
            .await
            .expect("lifecycle task");
    });
});
