//! Both log backends time their appends and group commits into the
//! histograms the node exports (`coffer_raft_log_append_duration_seconds`,
//! `coffer_raft_log_fsync_duration_seconds`). A recorder installed for this
//! test binary captures what the log records, through the `metrics` facade
//! exactly as the node's Prometheus recorder receives it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use openraft::storage::RaftLogStorageExt;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use raft_store::log_store::{APPEND_SECONDS, FSYNC_SECONDS};
use raft_store::{LogKind, LogStore, Request, StoreOptions, Txn, TypeConfig};

/// Every histogram value recorded in this process, by metric name.
type Samples = Arc<Mutex<HashMap<String, Vec<f64>>>>;

struct Capture(Samples);

struct Series {
    name: String,
    samples: Samples,
}

impl HistogramFn for Series {
    fn record(&self, value: f64) {
        let mut all = self.samples.lock().unwrap();
        all.entry(self.name.clone()).or_default().push(value);
    }
}

impl Recorder for Capture {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(Arc::new(Series {
            name: key.name().to_owned(),
            samples: self.0.clone(),
        }))
    }
}

/// The process-wide capture (installed once for the test binary).
fn samples() -> &'static Samples {
    static SAMPLES: OnceLock<Samples> = OnceLock::new();
    SAMPLES.get_or_init(|| {
        let samples = Samples::default();
        metrics::set_global_recorder(Capture(samples.clone())).expect("first recorder");
        samples
    })
}

fn recorded(name: &str) -> Vec<f64> {
    samples()
        .lock()
        .unwrap()
        .get(name)
        .cloned()
        .unwrap_or_default()
}

fn entry(index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Request {
            request_id: Some(format!("metrics-{index:016}")),
            time_ms: index,
            txn: Txn {
                result: vec![0x5a; 2048],
                ..Txn::default()
            },
        }),
    }
}

/// Three acknowledged appends on a fresh log of `kind`: three append
/// durations, and one to three group commits (each covers one or more
/// appends), every one of them a positive time.
async fn appends_are_timed(kind: LogKind) {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        log_store: kind,
        ..StoreOptions::default()
    };
    let mut log = LogStore::open_in(dir.path(), &opts).unwrap();
    let (appends, fsyncs) = (
        recorded(APPEND_SECONDS).len(),
        recorded(FSYNC_SECONDS).len(),
    );
    log.blocking_append([entry(1)]).await.unwrap();
    log.blocking_append([entry(2), entry(3)]).await.unwrap();
    log.blocking_append([entry(4)]).await.unwrap();
    let append = recorded(APPEND_SECONDS);
    let fsync = recorded(FSYNC_SECONDS);
    assert_eq!(append.len() - appends, 3, "{kind}: one duration per append");
    let commits = fsync.len() - fsyncs;
    assert!(
        (1..=3).contains(&commits),
        "{kind}: {commits} group commits"
    );
    assert!(
        append[appends..]
            .iter()
            .chain(&fsync[fsyncs..])
            .all(|s| *s > 0.0),
        "{kind}: {append:?} {fsync:?}"
    );
}

// One test, so the two backends' counts do not interleave.
#[tokio::test]
async fn both_backends_time_appends_and_group_commits() {
    appends_are_timed(LogKind::Redb).await;
    appends_are_timed(LogKind::Wal).await;
}
