//! Health under faults: what each node said about itself in
//! `/v1/sys/health` while faults came and went, held against what the
//! nemesis knows (the [`NetState`] timeline).
//!
//! The rules, with `limit` the nodes' `max_leader_silence_ms` and `slack`
//! a margin for RPCs in flight and the sampling itself:
//! - **no healthy answer without a leader**: a node answering 429 (a
//!   healthy standby) must have been able to reach the leader it names at
//!   some point in the `limit + slack` before the request, and one naming no
//!   leader must have been able to reach some node; a node answering 200 (a
//!   leader) must have been able to reach a majority. So a node cut off,
//!   behind a partition or whose leader was killed or paused answers 5xx
//!   within `limit + slack` of the fault. Paused and killed nodes cannot
//!   answer at all, which breaks no rule.
//! - **one leader per term**: no two nodes answer 200 with the same term.
//! - **healthy standbys say so** (checked by the runner at the end): once
//!   every fault is healed and the nodes converged, the leader answers 200
//!   and every other node 429 with no problem. During the run, 5xx answers
//!   while nothing was faulty are counted, not failed: on a loaded machine a
//!   starved leader may really go silent for longer than the limit.
//!
//! A follower on the minority side together with the old leader still hears
//! from that leader and may answer 429 although nothing it forwards can
//! commit: the node cannot know better, so it is counted, not failed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::history::NetState;

use super::Verdict;

/// One `/v1/sys/health` request to one node.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Sample {
    /// Node index.
    pub node: usize,
    /// When the request was sent, µs since the run began.
    pub invoke_us: u64,
    /// When the answer (or the error) came back.
    pub complete_us: u64,
    /// HTTP status; `None` when the node did not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Whether the node said it is sealed.
    #[serde(default)]
    pub sealed: bool,
    /// Node index of the leader it names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<usize>,
    /// Its term.
    #[serde(default)]
    pub term: u64,
    /// Its applied index.
    #[serde(default)]
    pub applied_index: u64,
    /// Its snapshot index.
    #[serde(default)]
    pub snapshot_index: u64,
    /// The problems it reported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// Transport error or timeout when it did not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Sample {
    /// 200 or 429: the node says it can serve.
    pub fn claims_healthy(&self) -> bool {
        matches!(self.status, Some(200 | 429))
    }
}

/// Thresholds of [`check`].
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Rules {
    /// Cluster size.
    pub nodes: usize,
    /// The nodes' `max_leader_silence_ms`, µs.
    pub limit_us: u64,
    /// Margin on top of `limit_us`.
    pub slack_us: u64,
}

/// Counts that show how much the rules were exercised.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Requests sent.
    pub samples: usize,
    /// Requests answered.
    pub answered: usize,
    /// Answers by status.
    pub by_status: BTreeMap<u16, usize>,
    /// Answers from a node that could reach no majority for the whole
    /// `limit + slack` before it (cut off, isolated, minority side).
    pub cut_off_answers: usize,
    /// Of these, answered 5xx with a problem or sealed.
    pub cut_off_unhealthy: usize,
    /// Of these, 429 from a minority follower that still reaches the old
    /// leader (allowed, see the module docs).
    pub minority_followers_429: usize,
    /// Answers 5xx with a problem (not sealed, not uninitialised) while
    /// every node could reach every other for the whole `limit + slack`
    /// before: alarms without a fault (a starved leader on a loaded machine
    /// can cause them; counted, not failed).
    pub unhealthy_without_fault: usize,
    /// Rule violations.
    pub violations: usize,
}

/// Checks the samples of a run against the timeline.
pub fn check(samples: &[Sample], timeline: &[NetState], rules: Rules) -> (Verdict, Summary) {
    let mut summary = Summary {
        samples: samples.len(),
        ..Summary::default()
    };
    let mut problems = Vec::new();
    let mut leaders: BTreeMap<u64, (usize, &Sample)> = BTreeMap::new();
    let majority = rules.nodes / 2 + 1;
    for s in samples {
        let Some(status) = s.status else { continue };
        summary.answered += 1;
        *summary.by_status.entry(status).or_default() += 1;
        let from = s.invoke_us.saturating_sub(rules.limit_us + rules.slack_us);
        let always = |pred: &dyn Fn(&NetState) -> bool| during(timeline, from, s.complete_us, pred);
        let cut_off = always(&|st| st.reach(s.node, rules.nodes) < majority);
        let no_fault = always(&|st| st.down.is_empty() && st.cuts.is_empty());
        if no_fault && status >= 500 && status != 501 && !s.sealed {
            summary.unhealthy_without_fault += 1;
        }
        if cut_off {
            summary.cut_off_answers += 1;
            if status >= 500 && (s.sealed || !s.problems.is_empty()) {
                summary.cut_off_unhealthy += 1;
            }
        }
        if status == 200 {
            if let Some((other, first)) = leaders.get(&s.term) {
                if *other != s.node {
                    problems.push(format!(
                        "two leaders in term {}: {} and {}",
                        s.term,
                        describe(first),
                        describe(s)
                    ));
                }
            } else {
                leaders.insert(s.term, (s.node, s));
            }
            if cut_off {
                problems.push(format!(
                    "answered 200 (leader) although it could reach no majority since {}: {}",
                    ms(from),
                    describe(s)
                ));
            }
        } else if status == 429 {
            match s.leader.filter(|&l| l != s.node) {
                Some(l) => {
                    if always(&|st| !st.reachable(s.node, l)) {
                        problems.push(format!(
                            "answered 429 naming leader n{} it could not reach since {}: {}",
                            l + 1,
                            ms(from),
                            describe(s)
                        ));
                    } else if cut_off {
                        summary.minority_followers_429 += 1;
                    }
                }
                None => {
                    if always(&|st| st.reach(s.node, rules.nodes) <= 1) {
                        problems.push(format!(
                            "answered 429 although it could reach no node since {}: {}",
                            ms(from),
                            describe(s)
                        ));
                    }
                }
            }
        }
    }
    summary.violations = problems.len();
    if problems.is_empty() {
        (Verdict::Pass, summary)
    } else {
        problems.truncate(20);
        (Verdict::Fail(problems.join("\n")), summary)
    }
}

/// Whether `pred` holds for every timeline state in effect at some point
/// of `[from_us, to_us]`.
fn during(
    timeline: &[NetState],
    from_us: u64,
    to_us: u64,
    pred: &dyn Fn(&NetState) -> bool,
) -> bool {
    let mut any = false;
    for (i, st) in timeline.iter().enumerate() {
        let end = timeline.get(i + 1).map_or(u64::MAX, |n| n.at_us);
        if end <= from_us || st.at_us > to_us {
            continue;
        }
        any = true;
        if !pred(st) {
            return false;
        }
    }
    any
}

fn ms(us: u64) -> String {
    format!("{:.2}s", us as f64 / 1e6)
}

/// One line for a sample.
pub fn describe(s: &Sample) -> String {
    let status = s.status.map_or("no answer".to_string(), |c| c.to_string());
    let leader = s.leader.map_or("-".to_string(), |l| format!("n{}", l + 1));
    format!(
        "[{} .. {}] n{} {status} leader {leader} term {} applied {}{}{}",
        ms(s.invoke_us),
        ms(s.complete_us),
        s.node + 1,
        s.term,
        s.applied_index,
        if s.sealed { " sealed" } else { "" },
        if s.problems.is_empty() {
            String::new()
        } else {
            format!(" problems {:?}", s.problems)
        }
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const RULES: Rules = Rules {
        nodes: 3,
        limit_us: 1_000_000,
        slack_us: 500_000,
    };

    fn state(at_s: f64, down: &[usize], cuts: &[(usize, usize)]) -> NetState {
        NetState {
            at_us: (at_s * 1e6) as u64,
            down: down.iter().copied().collect(),
            cuts: cuts.iter().copied().collect::<BTreeSet<_>>(),
        }
    }

    fn sample(node: usize, at_s: f64, status: u16, leader: Option<usize>, term: u64) -> Sample {
        let t = (at_s * 1e6) as u64;
        Sample {
            node,
            invoke_us: t,
            complete_us: t + 10_000,
            status: Some(status),
            leader,
            term,
            problems: if status >= 500 {
                vec!["no contact with a leader".into()]
            } else {
                Vec::new()
            },
            ..Sample::default()
        }
    }

    /// n3 (index 2) cut off from both others from 10 s to 20 s.
    fn isolate_n3() -> Vec<NetState> {
        vec![
            state(0.0, &[], &[]),
            state(10.0, &[], &[(0, 2), (1, 2)]),
            state(20.0, &[], &[]),
        ]
    }

    #[test]
    fn a_cut_off_node_saying_503_passes_and_is_counted() {
        let samples = vec![
            sample(2, 5.0, 429, Some(0), 1),
            // Within limit + slack of the cut: may still say 429.
            sample(2, 11.0, 429, Some(0), 1),
            sample(2, 12.0, 503, Some(0), 1),
            sample(2, 15.0, 503, Some(0), 1),
            sample(0, 15.0, 200, Some(0), 1),
            sample(1, 15.0, 429, Some(0), 1),
        ];
        let (v, s) = check(&samples, &isolate_n3(), RULES);
        assert_eq!(v, Verdict::Pass);
        assert_eq!((s.cut_off_answers, s.cut_off_unhealthy), (2, 2));
    }

    #[test]
    fn a_cut_off_node_claiming_health_fails() {
        let samples = vec![sample(2, 15.0, 429, Some(0), 1)];
        let (v, _) = check(&samples, &isolate_n3(), RULES);
        assert!(
            matches!(&v, Verdict::Fail(m) if m.contains("n3 429")),
            "{v:?}"
        );
        let none = vec![sample(2, 15.0, 429, None, 1)];
        assert!(check(&none, &isolate_n3(), RULES).0.is_fail());
    }

    #[test]
    fn an_isolated_leader_claiming_200_fails() {
        let samples = vec![sample(2, 15.0, 200, Some(2), 1)];
        assert!(check(&samples, &isolate_n3(), RULES).0.is_fail());
    }

    #[test]
    fn naming_a_killed_leader_fails_once_the_limit_passed() {
        let timeline = vec![
            state(0.0, &[], &[]),
            state(10.0, &[0], &[]),
            state(20.0, &[], &[]),
        ];
        let early = vec![sample(1, 10.5, 429, Some(0), 1)];
        assert_eq!(check(&early, &timeline, RULES).0, Verdict::Pass);
        let late = vec![sample(1, 12.0, 429, Some(0), 1)];
        assert!(check(&late, &timeline, RULES).0.is_fail());
        // A new leader it can reach is fine.
        let moved = vec![sample(1, 12.0, 429, Some(2), 2)];
        assert_eq!(check(&moved, &timeline, RULES).0, Verdict::Pass);
    }

    #[test]
    fn a_minority_follower_with_its_old_leader_is_counted_not_failed() {
        // 5 nodes, {n1,n2} | {n3,n4,n5}; n1 was leader.
        let cuts: Vec<(usize, usize)> = [0, 1]
            .iter()
            .flat_map(|&a| [2, 3, 4].map(|b| (a, b)))
            .collect();
        let timeline = vec![state(0.0, &[], &[]), state(10.0, &[], &cuts)];
        let rules = Rules { nodes: 5, ..RULES };
        let samples = vec![
            sample(1, 15.0, 429, Some(0), 1),
            sample(0, 15.0, 503, Some(0), 1),
        ];
        let (v, s) = check(&samples, &timeline, rules);
        assert_eq!(v, Verdict::Pass);
        assert_eq!(s.minority_followers_429, 1);
    }

    #[test]
    fn two_leaders_in_one_term_fail() {
        let samples = vec![
            sample(0, 1.0, 200, Some(0), 4),
            sample(1, 30.0, 200, Some(1), 4),
        ];
        let (v, _) = check(&samples, &[state(0.0, &[], &[])], RULES);
        assert!(matches!(&v, Verdict::Fail(m) if m.contains("two leaders in term 4")));
        let next_term = vec![
            sample(0, 1.0, 200, Some(0), 4),
            sample(1, 30.0, 200, Some(1), 5),
        ];
        assert_eq!(
            check(&next_term, &[state(0.0, &[], &[])], RULES).0,
            Verdict::Pass
        );
    }
}
