//! Availability and latency figures of a history.

use serde::{Deserialize, Serialize};

use crate::history::{FaultWindow, Op, Outcome};

/// Summary numbers of a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Acknowledged operations.
    pub ok: usize,
    /// Definitely failed operations.
    pub fail: usize,
    /// Indeterminate operations.
    pub info: usize,
    /// Median latency of acknowledged operations, ms.
    pub p50_ms: f64,
    /// 99th percentile latency of acknowledged operations, ms.
    pub p99_ms: f64,
    /// Longest stretch without any acknowledged completion, ms.
    pub longest_unavailable_ms: f64,
    /// Worst time from a heal to the first acknowledged operation invoked
    /// after it, ms (`None` without faults).
    pub recovery_ms: Option<f64>,
    /// Bytes of values in acknowledged writes.
    pub written_bytes: u64,
    /// Median size of the values written (all attempts), bytes.
    pub value_p50_bytes: usize,
    /// Largest value written, bytes.
    pub value_max_bytes: usize,
    /// Bytes of values read back by acknowledged reads.
    pub read_bytes: u64,
}

/// Computes [`Stats`] over `ops` (which need not be sorted).
pub fn stats(ops: &[Op], faults: &[FaultWindow], load_end_us: u64) -> Stats {
    let count = |o: Outcome| ops.iter().filter(|op| op.outcome == o).count();
    let mut lat: Vec<f64> = ops
        .iter()
        .filter(|o| o.outcome == Outcome::Ok)
        .map(|o| (o.complete_us - o.invoke_us) as f64 / 1000.0)
        .collect();
    lat.sort_by(f64::total_cmp);
    let mut sizes: Vec<usize> = ops
        .iter()
        .filter(|o| o.kind.is_write())
        .map(|o| o.bytes)
        .collect();
    sizes.sort_unstable();
    let ok_bytes = |write: bool| -> u64 {
        ops.iter()
            .filter(|o| o.outcome == Outcome::Ok && o.kind.is_write() == write)
            .map(|o| o.bytes as u64)
            .sum()
    };
    Stats {
        written_bytes: ok_bytes(true),
        read_bytes: ok_bytes(false),
        value_p50_bytes: sizes.get(sizes.len() / 2).copied().unwrap_or(0),
        value_max_bytes: sizes.last().copied().unwrap_or(0),
        ok: count(Outcome::Ok),
        fail: count(Outcome::Fail),
        info: count(Outcome::Info),
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        longest_unavailable_ms: longest_gap(ops, load_end_us),
        recovery_ms: recovery(ops, faults),
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[idx]
}

fn longest_gap(ops: &[Op], load_end_us: u64) -> f64 {
    let mut done: Vec<u64> = ops
        .iter()
        .filter(|o| o.outcome == Outcome::Ok)
        .map(|o| o.complete_us)
        .collect();
    done.sort_unstable();
    let start = ops.iter().map(|o| o.invoke_us).min().unwrap_or(0);
    let mut prev = start;
    let mut gap = 0;
    for t in done.iter().copied().chain(std::iter::once(load_end_us)) {
        gap = gap.max(t.saturating_sub(prev));
        prev = prev.max(t);
    }
    gap as f64 / 1000.0
}

fn recovery(ops: &[Op], faults: &[FaultWindow]) -> Option<f64> {
    faults
        .iter()
        .map(|f| {
            ops.iter()
                .filter(|o| o.outcome == Outcome::Ok && o.invoke_us >= f.end_us)
                .map(|o| o.complete_us - f.end_us)
                .min()
                .map_or(f64::INFINITY, |us| us as f64 / 1000.0)
        })
        .reduce(f64::max)
}

/// Per-bucket counts and latencies for plots.
#[derive(Clone, Debug, Serialize)]
pub struct Bucket {
    /// Bucket start, seconds since the run began.
    pub t_s: f64,
    /// Acknowledged completions per second.
    pub ok_per_s: f64,
    /// Failed or indeterminate completions per second.
    pub err_per_s: f64,
}

/// Throughput in buckets of `width_us`.
pub fn buckets(ops: &[Op], width_us: u64, end_us: u64) -> Vec<Bucket> {
    let n = (end_us / width_us + 1) as usize;
    let mut ok = vec![0usize; n];
    let mut err = vec![0usize; n];
    for op in ops {
        let b = ((op.complete_us / width_us) as usize).min(n - 1);
        if op.outcome == Outcome::Ok {
            ok[b] += 1;
        } else {
            err[b] += 1;
        }
    }
    let per_s = 1_000_000.0 / width_us as f64;
    (0..n)
        .map(|i| Bucket {
            t_s: (i as u64 * width_us) as f64 / 1e6,
            ok_per_s: ok[i] as f64 * per_s,
            err_per_s: err[i] as f64 * per_s,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::OpKind;

    fn op(call: u64, ret: u64, outcome: Outcome) -> Op {
        Op {
            process: 0,
            node: None,
            kind: OpKind::Read {
                key: "k".into(),
                value: None,
            },
            invoke_us: call,
            complete_us: ret,
            outcome,
            error: None,
            bytes: 0,
            malformed: None,
        }
    }

    #[test]
    fn gaps_latency_and_recovery() {
        let ops = vec![
            op(0, 1_000, Outcome::Ok),
            op(1_000, 3_000, Outcome::Ok),
            op(3_000, 9_000, Outcome::Info),
            op(9_000, 10_000, Outcome::Ok),
        ];
        let faults = vec![FaultWindow {
            name: "x".into(),
            start_us: 3_000,
            end_us: 8_500,
        }];
        let s = stats(&ops, &faults, 10_000);
        assert_eq!((s.ok, s.fail, s.info), (3, 0, 1));
        assert_eq!(s.longest_unavailable_ms, 7.0);
        assert_eq!(s.recovery_ms, Some(1.5));
        assert_eq!(s.p50_ms, 1.0);
        assert_eq!(s.p99_ms, 2.0);
    }
}
