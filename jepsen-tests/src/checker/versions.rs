//! Double application: the version list of a key after healing must hold
//! one value per version and no value at two versions (a retried write
//! applied twice shows up as two versions with the same value); every
//! acknowledged append must be there under the version it was acknowledged
//! with, no failed append may be there, and version creation times must not
//! contradict real time (an append acknowledged before another began cannot
//! have a later creation time). Creation times have one-second resolution,
//! so the order check only catches inversions across seconds.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::history::{Op, OpKind, Outcome};

use super::Verdict;

/// One version as read after healing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalVersion {
    /// Version id.
    pub version: String,
    /// Its value.
    pub value: String,
    /// Creation time (Unix seconds).
    pub created: Option<i64>,
}

/// `final_read` maps each key to its versions.
pub fn check_versions(ops: &[Op], final_read: &BTreeMap<String, Vec<FinalVersion>>) -> Verdict {
    let mut problems = Vec::new();
    for (key, versions) in final_read {
        let mut by_value: HashMap<&str, Vec<&str>> = HashMap::new();
        let mut by_version: HashMap<&str, Vec<&str>> = HashMap::new();
        for v in versions {
            by_value.entry(&v.value).or_default().push(&v.version);
            by_version.entry(&v.version).or_default().push(&v.value);
        }
        for (value, vs) in by_value.iter().filter(|(_, vs)| vs.len() > 1) {
            problems.push(format!(
                "{key}: value {value} applied twice, at versions {vs:?}"
            ));
        }
        for (version, vals) in by_version.iter().filter(|(_, vs)| vs.len() > 1) {
            problems.push(format!("{key}: version {version} has values {vals:?}"));
        }
    }
    let empty = Vec::new();
    let mut acked: Vec<(&Op, &str, i64)> = Vec::new();
    for op in ops {
        let OpKind::Append {
            key,
            value,
            version,
            ..
        } = &op.kind
        else {
            continue;
        };
        let versions = final_read.get(key).unwrap_or(&empty);
        let found = versions.iter().find(|v| &v.value == value);
        match (op.outcome, found) {
            (Outcome::Ok, None) => problems.push(format!("{key}: acknowledged {value} lost")),
            (Outcome::Ok, Some(f)) => {
                if version.as_deref() != Some(f.version.as_str()) {
                    problems.push(format!(
                        "{key}: {value} acknowledged as version {version:?} but stored as {}",
                        f.version
                    ));
                }
                if let Some(created) = f.created {
                    acked.push((op, key, created));
                }
            }
            (Outcome::Fail, Some(f)) => problems.push(format!(
                "{key}: failed append {value} present as {}",
                f.version
            )),
            _ => {}
        }
    }
    problems.extend(order_violations(&acked));
    if problems.is_empty() {
        Verdict::Pass
    } else {
        problems.truncate(50);
        Verdict::Fail(problems.join("\n"))
    }
}

/// Pairs (a, b) on one key where a finished before b began, yet b's version
/// was created in an earlier second than a's.
fn order_violations(acked: &[(&Op, &str, i64)]) -> Vec<String> {
    let mut out = Vec::new();
    for (a, key_a, created_a) in acked {
        for (b, key_b, created_b) in acked {
            if key_a == key_b && a.complete_us < b.invoke_us && created_b < created_a {
                out.push(format!(
                    "{key_a}: append finishing at {}µs created at {created_a}s, \
                     a later append starting at {}µs created at {created_b}s",
                    a.complete_us, b.invoke_us
                ));
                if out.len() > 10 {
                    return out;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(value: &str, version: &str, outcome: Outcome, t: u64) -> Op {
        Op {
            process: 0,
            node: None,
            kind: OpKind::Append {
                key: "k".into(),
                value: value.into(),
                version: Some(version.into()),
                created: None,
            },
            invoke_us: t,
            complete_us: t + 1,
            outcome,
            error: None,
            bytes: 0,
            malformed: None,
        }
    }

    fn fv(version: &str, value: &str, created: i64) -> FinalVersion {
        FinalVersion {
            version: version.into(),
            value: value.into(),
            created: Some(created),
        }
    }

    fn read(vs: Vec<FinalVersion>) -> BTreeMap<String, Vec<FinalVersion>> {
        BTreeMap::from([("k".to_string(), vs)])
    }

    #[test]
    fn clean_history_passes() {
        let ops = vec![
            append("a", "1", Outcome::Ok, 0),
            append("b", "2", Outcome::Info, 10),
            append("c", "3", Outcome::Fail, 20),
        ];
        let fin = read(vec![fv("1", "a", 100), fv("2", "b", 101)]);
        assert!(check_versions(&ops, &fin).is_pass());
    }

    #[test]
    fn duplicate_apply_is_found() {
        let ops = vec![append("a", "1", Outcome::Ok, 0)];
        let fin = read(vec![fv("1", "a", 100), fv("9", "a", 100)]);
        let v = check_versions(&ops, &fin);
        assert!(
            matches!(&v, Verdict::Fail(m) if m.contains("applied twice")),
            "{v:?}"
        );
    }

    #[test]
    fn lost_and_failed_present_are_found() {
        let ops = vec![
            append("a", "1", Outcome::Ok, 0),
            append("b", "2", Outcome::Fail, 10),
        ];
        let fin = read(vec![fv("2", "b", 100)]);
        let v = check_versions(&ops, &fin);
        assert!(matches!(&v, Verdict::Fail(m) if m.contains("lost") && m.contains("failed")));
    }

    #[test]
    fn real_time_inversion_is_found() {
        let ops = vec![
            append("a", "1", Outcome::Ok, 0),
            append("b", "2", Outcome::Ok, 10),
        ];
        let fin = read(vec![fv("1", "a", 200), fv("2", "b", 100)]);
        assert!(check_versions(&ops, &fin).is_fail());
    }
}
