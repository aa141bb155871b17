//! Lost writes: after healing, the final read of a set of create-only
//! secrets must contain every acknowledged creation and no failed one
//! (indeterminate ones may be present or not), each with the value written.

use std::collections::BTreeMap;

use crate::history::{Op, OpKind, Outcome};

use super::Verdict;

/// `final_read` maps each secret name present at the end to its value.
pub fn check_set(ops: &[Op], final_read: &BTreeMap<String, String>) -> Verdict {
    let mut lost = Vec::new();
    let mut resurrected = Vec::new();
    let mut corrupted = Vec::new();
    let mut unexpected = Vec::new();
    let mut attempted = std::collections::BTreeSet::new();
    for op in ops {
        let OpKind::Create { key, value } = &op.kind else {
            continue;
        };
        attempted.insert(key.as_str());
        match (op.outcome, final_read.get(key)) {
            (Outcome::Ok, None) => lost.push(key.as_str()),
            (Outcome::Fail, Some(_)) => resurrected.push(key.as_str()),
            (_, Some(v)) if v != value => corrupted.push(key.as_str()),
            _ => {}
        }
    }
    for key in final_read.keys() {
        if !attempted.contains(key.as_str()) {
            unexpected.push(key.as_str());
        }
    }
    if lost.is_empty() && resurrected.is_empty() && corrupted.is_empty() && unexpected.is_empty() {
        return Verdict::Pass;
    }
    Verdict::Fail(format!(
        "lost acknowledged creates: {lost:?}; failed creates present: {resurrected:?}; \
         wrong values: {corrupted:?}; never written: {unexpected:?}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(key: &str, outcome: Outcome) -> Op {
        Op {
            process: 0,
            node: None,
            kind: OpKind::Create {
                key: key.into(),
                value: format!("v-{key}"),
            },
            invoke_us: 0,
            complete_us: 1,
            outcome,
            error: None,
            bytes: 0,
            malformed: None,
        }
    }

    fn read(keys: &[&str]) -> BTreeMap<String, String> {
        keys.iter()
            .map(|k| (k.to_string(), format!("v-{k}")))
            .collect()
    }

    #[test]
    fn acknowledged_present_and_info_either_way_passes() {
        let ops = vec![
            create("a", Outcome::Ok),
            create("b", Outcome::Info),
            create("c", Outcome::Info),
            create("d", Outcome::Fail),
        ];
        assert!(check_set(&ops, &read(&["a", "b"])).is_pass());
    }

    #[test]
    fn lost_write_is_found() {
        let ops = vec![create("a", Outcome::Ok), create("b", Outcome::Ok)];
        let v = check_set(&ops, &read(&["a"]));
        assert!(
            matches!(&v, Verdict::Fail(m) if m.contains("[\"b\"]")),
            "{v:?}"
        );
    }

    #[test]
    fn failed_write_present_is_found() {
        let ops = vec![create("a", Outcome::Fail)];
        assert!(check_set(&ops, &read(&["a"])).is_fail());
    }

    #[test]
    fn wrong_value_is_found() {
        let ops = vec![create("a", Outcome::Ok)];
        let mut final_read = read(&["a"]);
        final_read.insert("a".into(), "other".into());
        assert!(check_set(&ops, &final_read).is_fail());
    }
}
