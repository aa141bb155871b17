//! Checkers over recorded histories. Each returns a [`Verdict`]; an
//! `Unknown` verdict (time budget exhausted) counts as a failure.

pub mod cluster;
pub mod health;
pub mod linear;
pub mod sets;
pub mod stats;
pub mod versions;

use serde::{Deserialize, Serialize};

use crate::history::Op;

/// The result of one checker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", content = "detail", rename_all = "lowercase")]
pub enum Verdict {
    /// The property holds.
    Pass,
    /// The property is violated; the text is a counterexample.
    Fail(String),
    /// The checker could not decide (counts as failure).
    Unknown(String),
}

impl Verdict {
    /// Whether the property was shown to hold.
    pub fn is_pass(&self) -> bool {
        matches!(self, Self::Pass)
    }

    /// Whether a violation was found (not merely undecided).
    pub fn is_fail(&self) -> bool {
        matches!(self, Self::Fail(_))
    }

    /// `pass`, `FAIL` or `UNKNOWN`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail(_) => "FAIL",
            Self::Unknown(_) => "UNKNOWN",
        }
    }
}

/// A named checker result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckResult {
    /// Checker name, e.g. `linearizable`.
    pub name: String,
    /// Its verdict.
    pub verdict: Verdict,
}

/// Every value read back, during the run and in the final read, was whole:
/// exactly as some writer wrote it ([`crate::workload::payload`]).
pub fn check_intact(ops: &[Op], final_read: &[String]) -> Verdict {
    let mut bad: Vec<String> = ops
        .iter()
        .filter_map(|o| {
            let m = o.malformed.as_ref()?;
            Some(format!("{}: {m}", linear::describe(o)))
        })
        .collect();
    bad.extend(final_read.iter().map(|m| format!("final read {m}")));
    if bad.is_empty() {
        Verdict::Pass
    } else {
        bad.truncate(30);
        Verdict::Fail(format!("values not read back whole:\n{}", bad.join("\n")))
    }
}

/// Convergence: every node reports the same state digest.
pub fn check_convergence(digests: &[(u64, Option<String>)]) -> Verdict {
    let missing: Vec<u64> = digests
        .iter()
        .filter(|(_, d)| d.is_none())
        .map(|(id, _)| *id)
        .collect();
    if !missing.is_empty() {
        return Verdict::Unknown(format!("no digest from nodes {missing:?}"));
    }
    let first = &digests[0].1;
    if digests.iter().all(|(_, d)| d == first) {
        Verdict::Pass
    } else {
        let list: Vec<String> = digests
            .iter()
            .map(|(id, d)| format!("n{id}={}", d.as_deref().unwrap_or("-")))
            .collect();
        Verdict::Fail(format!("state digests differ: {}", list.join(" ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn convergence_needs_equal_digests_from_all() {
        let same = [(1, Some("ab".into())), (2, Some("ab".into()))];
        assert!(check_convergence(&same).is_pass());
        let differ = [(1, Some("ab".into())), (2, Some("cd".into()))];
        assert!(check_convergence(&differ).is_fail());
        let missing = [(1, Some("ab".into())), (2, None)];
        assert!(!check_convergence(&missing).is_pass());
    }
}
