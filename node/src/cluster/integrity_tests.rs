//! Tests of `integrity.rs` (kept apart so the module stays readable).

use super::*;

fn digests(v: &[(NodeId, &str)]) -> BTreeMap<NodeId, String> {
    v.iter().map(|(id, d)| (*id, d.to_string())).collect()
}

#[test]
fn the_majority_decides_who_is_damaged() {
    assert_eq!(
        judge(9, &digests(&[(1, "a"), (2, "a"), (3, "a")])),
        Verdict::Agree {
            index: 9,
            members: 3
        }
    );
    assert_eq!(
        judge(9, &digests(&[(1, "a"), (2, "b"), (3, "a")])),
        Verdict::Minority {
            index: 9,
            nodes: vec![2]
        }
    );
    assert_eq!(
        judge(
            9,
            &digests(&[(1, "b"), (2, "a"), (3, "a"), (4, "a"), (5, "c")])
        ),
        Verdict::Minority {
            index: 9,
            nodes: vec![1, 5]
        }
    );
    // Two that disagree: no way to tell.
    assert_eq!(
        judge(9, &digests(&[(1, "a"), (2, "b")])),
        Verdict::Split { index: 9 }
    );
    assert_eq!(judge(9, &digests(&[(1, "a")])), Verdict::Skipped);
}

#[test]
fn the_verdict_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let flag = CorruptFlag::load(dir.path());
    assert_eq!(flag.corrupt(), None);
    flag.mark("digest differs");
    flag.mark("a second sign");
    let again = CorruptFlag::load(dir.path());
    assert_eq!(again.corrupt().as_deref(), Some("digest differs"));
    clear_marker(dir.path()).unwrap();
    assert_eq!(CorruptFlag::load(dir.path()).corrupt(), None);
}
