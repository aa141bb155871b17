//! Closed-loop load generation: `concurrency` workers each issue one
//! operation at a time for a fixed duration (or a fixed number of
//! operations), recording every latency.
//!
//! The generator is independent of what an operation does, so the same loop
//! drives Coffer, its peers (etcd, a TLS hello-world) and in-process crypto,
//! which keeps the comparison fair.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

/// How long and how hard to drive the load.
///
/// ```
/// use std::time::Duration;
/// use coffer_client::load::{run, LoadOptions};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// // 100 operations over 4 workers; every 10th one fails.
/// let opts = LoadOptions { concurrency: 4, total_ops: Some(100), ..LoadOptions::default() };
/// let report = run(&opts, |_worker, seq| async move {
///     tokio::time::sleep(Duration::from_micros(200)).await;
///     if seq % 10 == 9 { Err(format!("op {seq} failed")) } else { Ok(()) }
/// })
/// .await;
/// assert_eq!((report.ops, report.errors, report.issued), (90, 10, 100));
/// assert!(report.first_error.unwrap().ends_with("failed"));
/// assert!(report.p50_us >= 200 && report.p50_us <= report.max_us);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Workers, each with one operation in flight.
    pub concurrency: usize,
    /// Measured duration (ignored when `total_ops` is set).
    pub duration: Duration,
    /// Unmeasured warm-up before the measured window (connections, caches).
    pub warmup: Duration,
    /// Stop after this many operations in total instead of after `duration`.
    pub total_ops: Option<u64>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            concurrency: 16,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            total_ops: None,
        }
    }
}

/// Latencies in microseconds, exact (every sample kept).
///
/// ```
/// use std::time::Duration;
/// use coffer_client::load::Latencies;
///
/// let mut fast = Latencies::default();
/// for ms in 1..=99 {
///     fast.record(Duration::from_millis(ms));
/// }
/// assert_eq!(fast.quantile_us(0.5), 50_000);
/// let mut slow = Latencies::default();
/// slow.record(Duration::from_secs(2));
/// fast.merge(slow);
/// assert_eq!(fast.len(), 100);
/// assert_eq!(fast.quantile_us(1.0), 2_000_000);
/// assert_eq!(Latencies::default().quantile_us(0.99), 0); // no samples
/// ```
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    samples: Vec<u32>,
    sorted: bool,
}

impl Latencies {
    /// Adds one sample.
    pub fn record(&mut self, d: Duration) {
        self.samples
            .push(u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
        self.sorted = false;
    }

    /// Merges another set of samples.
    pub fn merge(&mut self, other: Latencies) {
        self.samples.extend(other.samples);
        self.sorted = false;
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The `q` quantile (0..=1) in microseconds; 0 without samples.
    pub fn quantile_us(&mut self, q: f64) -> u64 {
        if self.samples.is_empty() {
            return 0;
        }
        if !self.sorted {
            self.samples.sort_unstable();
            self.sorted = true;
        }
        let last = self.samples.len() - 1;
        let rank = ((q.clamp(0.0, 1.0) * last as f64).round() as usize).min(last);
        u64::from(self.samples[rank])
    }
}

/// Result of one load run.
///
/// ```
/// use std::time::Duration;
/// use coffer_client::load::{Latencies, LoadReport};
///
/// let mut lat = Latencies::default();
/// (0..1000).for_each(|_| lat.record(Duration::from_micros(800)));
/// let report = LoadReport::from_samples(8, lat, 2, Duration::from_secs(2), None);
/// assert_eq!((report.ops, report.errors, report.issued), (1000, 2, 1002));
/// assert_eq!(report.throughput, 500.0);
/// assert_eq!(report.p99_us, 800);
/// // Reports are JSON for the benchmark files.
/// let json = serde_json::to_value(&report).unwrap();
/// assert_eq!(json["p50_us"], 800);
/// assert!(json.get("first_error").is_none());
/// ```
#[derive(Debug, Clone, Serialize, serde::Deserialize, Default)]
pub struct LoadReport {
    /// Workers.
    pub concurrency: usize,
    /// Successful operations in the measured window.
    pub ops: u64,
    /// Failed operations in the measured window.
    pub errors: u64,
    /// Every operation that completed, warm-up included (for CPU per op).
    #[serde(default)]
    pub issued: u64,
    /// Measured wall time in seconds.
    pub elapsed_s: f64,
    /// Successful operations per second.
    pub throughput: f64,
    /// Median latency of successful operations, microseconds.
    pub p50_us: u64,
    /// 99th percentile, microseconds.
    pub p99_us: u64,
    /// 99.9th percentile, microseconds.
    pub p999_us: u64,
    /// Maximum, microseconds.
    pub max_us: u64,
    /// The first error seen, for diagnosis (never contains request bodies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl LoadReport {
    /// Builds a report from merged samples.
    pub fn from_samples(
        concurrency: usize,
        mut lat: Latencies,
        errors: u64,
        elapsed: Duration,
        first_error: Option<String>,
    ) -> Self {
        let elapsed_s = elapsed.as_secs_f64().max(1e-9);
        let ops = lat.len() as u64;
        Self {
            concurrency,
            ops,
            errors,
            issued: ops + errors,
            elapsed_s,
            throughput: ops as f64 / elapsed_s,
            p50_us: lat.quantile_us(0.5),
            p99_us: lat.quantile_us(0.99),
            p999_us: lat.quantile_us(0.999),
            max_us: lat.quantile_us(1.0),
            first_error,
        }
    }
}

struct Shared {
    seq: AtomicU64,
    stop_at: Option<u64>,
}

/// Runs `op(worker, seq)` from `concurrency` tasks until the time or
/// operation budget is spent. `seq` is globally unique and increasing, so
/// operations can derive distinct keys from it.
///
/// ```
/// use std::time::Duration;
/// use coffer_client::load::{run, LoadOptions};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// // Two workers for 200 ms after a 50 ms warm-up that is not measured.
/// let opts = LoadOptions {
///     concurrency: 2,
///     duration: Duration::from_millis(200),
///     warmup: Duration::from_millis(50),
///     total_ops: None,
/// };
/// let report = run(&opts, |_worker, _seq| async {
///     tokio::time::sleep(Duration::from_millis(2)).await;
///     Ok::<(), String>(())
/// })
/// .await;
/// assert_eq!(report.errors, 0);
/// assert!(report.ops > 0);
/// assert!(report.issued >= report.ops); // warm-up operations count as issued only
/// assert!(report.p50_us >= 2_000);
/// # });
/// ```
pub async fn run<F, Fut, E>(opts: &LoadOptions, op: F) -> LoadReport
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let op = Arc::new(op);
    let shared = Arc::new(Shared {
        seq: AtomicU64::new(0),
        stop_at: opts.total_ops,
    });
    let start = Instant::now();
    let measure_from = start
        + if opts.total_ops.is_some() {
            Duration::ZERO
        } else {
            opts.warmup
        };
    let deadline = opts.total_ops.map_or(measure_from + opts.duration, |_| {
        start + Duration::from_secs(24 * 3600)
    });
    let mut tasks = Vec::with_capacity(opts.concurrency);
    for worker in 0..opts.concurrency.max(1) {
        let op = op.clone();
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            worker_loop(worker, &*op, &shared, measure_from, deadline).await
        }));
    }
    let mut lat = Latencies::default();
    let mut errors = 0;
    let mut first_error = None;
    for t in tasks {
        if let Ok((l, e, fe)) = t.await {
            lat.merge(l);
            errors += e;
            first_error = first_error.or(fe);
        }
    }
    let elapsed = Instant::now().saturating_duration_since(measure_from);
    let issued = shared
        .seq
        .load(Ordering::Relaxed)
        .min(shared.stop_at.unwrap_or(u64::MAX));
    let mut report =
        LoadReport::from_samples(opts.concurrency.max(1), lat, errors, elapsed, first_error);
    // Workers each draw one seq they do not run when they stop.
    report.issued = issued.saturating_sub(if shared.stop_at.is_some() {
        0
    } else {
        opts.concurrency.max(1) as u64
    });
    report
}

async fn worker_loop<F, Fut, E>(
    worker: usize,
    op: &F,
    shared: &Shared,
    measure_from: Instant,
    deadline: Instant,
) -> (Latencies, u64, Option<String>)
where
    F: Fn(usize, u64) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut lat = Latencies::default();
    let mut errors = 0;
    let mut first_error = None;
    loop {
        let seq = shared.seq.fetch_add(1, Ordering::Relaxed);
        if shared.stop_at.is_some_and(|n| seq >= n) {
            break;
        }
        let t0 = Instant::now();
        if t0 >= deadline {
            break;
        }
        let res = op(worker, seq).await;
        let t1 = Instant::now();
        if t0 < measure_from || t1 > deadline {
            continue;
        }
        match res {
            Ok(()) => lat.record(t1 - t0),
            Err(e) => {
                errors += 1;
                if first_error.is_none() {
                    first_error = Some(e.to_string());
                }
            }
        }
    }
    (lat, errors, first_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_pick_the_right_rank() {
        let mut lat = Latencies::default();
        for us in (1..=1000).rev() {
            lat.record(Duration::from_micros(us));
        }
        assert_eq!(lat.quantile_us(0.5), 501);
        assert_eq!(lat.quantile_us(0.99), 990);
        assert_eq!(lat.quantile_us(1.0), 1000);
        assert_eq!(Latencies::default().quantile_us(0.5), 0);
    }

    #[tokio::test]
    async fn op_budget_runs_each_seq_once_and_counts_errors() {
        let opts = LoadOptions {
            concurrency: 4,
            total_ops: Some(100),
            ..LoadOptions::default()
        };
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        let report = run(&opts, move |_, seq| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push(seq);
                if seq % 10 == 0 {
                    Err("boom")
                } else {
                    Ok(())
                }
            }
        })
        .await;
        let mut seen = seen.lock().unwrap().clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        assert_eq!(report.ops, 90);
        assert_eq!(report.errors, 10);
        assert_eq!(report.first_error.as_deref(), Some("boom"));
    }
}
