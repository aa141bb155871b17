//! Checks on what the nodes did besides answering clients: snapshots
//! installed on nodes left behind, who took over after a leader was killed
//! while a follower lagged, and how much the nodes repeat themselves in
//! their logs.

use std::collections::BTreeMap;

use crate::history::{FaultWindow, Op, Outcome};
use crate::nemesis::LagReport;
use crate::observe::NodeSnapshots;

use super::Verdict;

/// The same warning or error more than this many times in one node's log
/// over one run is noise that buries what needs a human (issue 8: a line
/// per failed RPC while a peer is down).
pub const MAX_REPEATED_WARNINGS: usize = 30;

/// No node repeats one warning or error more than [`MAX_REPEATED_WARNINGS`]
/// times.
pub fn check_log_noise(warnings: &BTreeMap<u64, BTreeMap<String, usize>>) -> Verdict {
    let noisy: Vec<String> = warnings
        .iter()
        .flat_map(|(id, groups)| {
            groups
                .iter()
                .filter(|(_, &n)| n > MAX_REPEATED_WARNINGS)
                .map(move |(line, n)| format!("n{id}: {n}× {line}"))
        })
        .collect();
    if noisy.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail(format!(
            "repeated warnings (more than {MAX_REPEATED_WARNINGS} in one run):\n{}",
            noisy.join("\n")
        ))
    }
}

/// A run configured to install snapshots must have installed at least one.
pub fn check_installs(snapshots: &[NodeSnapshots]) -> Verdict {
    if snapshots.iter().any(|s| !s.installs.is_empty()) {
        return Verdict::Pass;
    }
    let builds: Vec<String> = snapshots
        .iter()
        .map(|s| format!("n{} built {}", s.node_id, s.builds))
        .collect();
    Verdict::Fail(format!(
        "no node installed a snapshot from a leader ({}); the faults never left a node \
         behind the purged log",
        builds.join(", ")
    ))
}

/// `kill-leader-lagging`: after the leader was killed while a follower was
/// catching up, a leader must have been elected, not the lagging follower,
/// and acknowledged writes must have resumed before the killed node came
/// back. At least one fault must have hit the scenario for real (the
/// follower behind the purged log, and still behind right after the kill).
pub fn check_lags(lags: &[LagReport], faults: &[FaultWindow], history: &[Op]) -> Verdict {
    let mut problems = Vec::new();
    for lag in lags {
        let name = |i: usize| format!("n{}", i + 1);
        match lag.new_leader {
            None => problems.push(format!(
                "no leader within 15 s after killing {}",
                name(lag.killed)
            )),
            Some(l) if l == lag.lagging && lag.still_catching_up() => problems.push(format!(
                "the lagging follower {} (applied {:?}, leader had {}) was elected in term {:?}",
                name(l),
                lag.lagging_applied_after_kill,
                lag.leader_applied_at_resume,
                lag.terms.1
            )),
            Some(_) => {}
        }
        let healed = faults
            .iter()
            .find(|f| f.start_us <= lag.kill_us && lag.kill_us <= f.end_us)
            .map_or(u64::MAX, |f| f.end_us);
        let resumed = history.iter().any(|o| {
            o.kind.is_write()
                && o.outcome == Outcome::Ok
                && o.invoke_us >= lag.kill_us
                && o.complete_us <= healed
        });
        if !resumed {
            problems.push(format!(
                "no acknowledged write between the kill of {} and its restart",
                name(lag.killed)
            ));
        }
    }
    if !problems.is_empty() {
        return Verdict::Fail(problems.join("\n"));
    }
    if !lags.iter().any(|l| l.purged_past && l.still_catching_up()) {
        return Verdict::Unknown(
            "the scenario never happened: no follower was behind the purged log and still \
             catching up when the leader was killed"
                .into(),
        );
    }
    Verdict::Pass
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::OpKind;
    use crate::nemesis::HoldBack;

    fn lag(new_leader: Option<usize>, after_kill: Option<u64>) -> LagReport {
        LagReport {
            lagging: 2,
            killed: 0,
            how: HoldBack::Cut,
            lagging_applied_before: 100,
            leader_snapshot_at_resume: 300,
            leader_applied_at_resume: 310,
            purged_past: true,
            held_ms: 3000.0,
            recontact_ms: Some(50.0),
            lagging_applied_after_kill: after_kill,
            kill_us: 10_000_000,
            new_leader,
            elected_after_ms: Some(1200.0),
            terms: (1, Some(2)),
        }
    }

    fn write_at(invoke_s: f64, complete_s: f64) -> Op {
        Op {
            process: 0,
            node: None,
            kind: OpKind::Create {
                key: "k".into(),
                value: "v".into(),
            },
            invoke_us: (invoke_s * 1e6) as u64,
            complete_us: (complete_s * 1e6) as u64,
            outcome: Outcome::Ok,
            error: None,
            bytes: 100,
            malformed: None,
        }
    }

    fn window() -> Vec<FaultWindow> {
        vec![FaultWindow {
            name: "lag".into(),
            start_us: 5_000_000,
            end_us: 16_000_000,
        }]
    }

    #[test]
    fn the_up_to_date_follower_taking_over_with_writes_resuming_passes() {
        let history = vec![write_at(12.0, 12.1)];
        let v = check_lags(&[lag(Some(1), Some(120))], &window(), &history);
        assert_eq!(v, Verdict::Pass);
    }

    #[test]
    fn the_lagging_follower_elected_while_behind_fails() {
        let history = vec![write_at(12.0, 12.1)];
        let v = check_lags(&[lag(Some(2), Some(120))], &window(), &history);
        assert!(matches!(&v, Verdict::Fail(m) if m.contains("n3") && m.contains("elected")));
        // Once caught up (applied ≥ the old leader's), it may win.
        let caught_up = check_lags(&[lag(Some(2), Some(310))], &window(), &history);
        assert!(matches!(caught_up, Verdict::Unknown(_)), "{caught_up:?}");
    }

    #[test]
    fn no_leader_or_no_write_before_the_restart_fails() {
        let history = vec![write_at(12.0, 12.1)];
        assert!(check_lags(&[lag(None, Some(120))], &window(), &history).is_fail());
        let late = vec![write_at(12.0, 17.0), write_at(9.0, 12.0)];
        let v = check_lags(&[lag(Some(1), Some(120))], &window(), &late);
        assert!(matches!(&v, Verdict::Fail(m) if m.contains("no acknowledged write")));
    }

    #[test]
    fn installs_and_noise() {
        let node = |installs: Vec<u64>| NodeSnapshots {
            node_id: 1,
            installs,
            ..NodeSnapshots::default()
        };
        assert!(check_installs(&[node(vec![]), node(vec![200])]).is_pass());
        assert!(check_installs(&[node(vec![]), node(vec![])]).is_fail());
        let quiet = BTreeMap::from([(1, BTreeMap::from([("WARN x".to_string(), 30)]))]);
        assert!(check_log_noise(&quiet).is_pass());
        let noisy = BTreeMap::from([(2, BTreeMap::from([("WARN x".to_string(), 31)]))]);
        assert!(
            matches!(check_log_noise(&noisy), Verdict::Fail(m) if m.contains("n2: 31× WARN x"))
        );
    }
}
