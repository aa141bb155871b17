//! Operation histories: one record per client operation with its invocation
//! and completion times (microseconds since the run started) and whether it
//! definitely happened (`Ok`), definitely did not (`Fail`) or may have
//! (`Info`, e.g. a timeout after the request was sent).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Acknowledged: it took effect between invocation and completion.
    Ok,
    /// Definitely had no effect.
    Fail,
    /// Indeterminate: it may take effect at any point after invocation, or never.
    Info,
}

/// What an operation did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "lowercase")]
pub enum OpKind {
    /// Register write of a unique value.
    Write {
        /// Secret name.
        key: String,
        /// Value written.
        value: String,
    },
    /// Register read of the latest value (`None`: the secret did not exist).
    Read {
        /// Secret name.
        key: String,
        /// Value read (only meaningful when `Ok`).
        value: Option<String>,
    },
    /// Set workload: creation of a fresh secret.
    Create {
        /// Secret name (unique per operation).
        key: String,
        /// Value written.
        value: String,
    },
    /// Version workload: a new version of `key`.
    Append {
        /// Secret name.
        key: String,
        /// Value written (unique).
        value: String,
        /// Version id the server acknowledged.
        version: Option<String>,
        /// Server creation time of the version (Unix seconds).
        created: Option<i64>,
    },
}

impl OpKind {
    /// The key the operation touched.
    pub fn key(&self) -> &str {
        match self {
            Self::Write { key, .. }
            | Self::Read { key, .. }
            | Self::Create { key, .. }
            | Self::Append { key, .. } => key,
        }
    }

    /// Whether the operation changes state (indeterminate reads are harmless).
    pub fn is_write(&self) -> bool {
        !matches!(self, Self::Read { .. })
    }
}

/// One completed (or abandoned) operation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Op {
    /// Client (logical process) number.
    pub process: usize,
    /// Node index the client was pinned to; `None` for failover clients.
    pub node: Option<usize>,
    /// The operation and its result.
    pub kind: OpKind,
    /// Invocation time, µs since the run began.
    pub invoke_us: u64,
    /// When the client stopped waiting, µs since the run began.
    pub complete_us: u64,
    /// Ok / fail / info.
    pub outcome: Outcome,
    /// Error text of failed and indeterminate operations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Length in bytes of the value written, or read back (0: none).
    #[serde(default)]
    pub bytes: usize,
    /// A value read back that is not, whole, a value some writer wrote
    /// (truncated, wrong length, different bytes): what is wrong with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malformed: Option<String>,
}

/// A thread-safe recorder shared by every client of a run.
#[derive(Clone)]
pub struct Recorder {
    start: Instant,
    ops: Arc<Mutex<Vec<Op>>>,
}

impl Recorder {
    /// A recorder whose clock starts now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            ops: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Microseconds since the run began.
    pub fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// The instant the run began.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Adds a finished operation.
    pub fn push(&self, op: Op) {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).push(op);
    }

    /// Every operation recorded so far, sorted by invocation time.
    pub fn snapshot(&self) -> Vec<Op> {
        let mut ops = self.ops.lock().unwrap_or_else(|e| e.into_inner()).clone();
        ops.sort_by_key(|o| o.invoke_us);
        ops
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

/// A closed interval during which a fault was active.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FaultWindow {
    /// What was done, e.g. `partition {1,2} | {3}`.
    pub name: String,
    /// Start, µs since the run began.
    pub start_us: u64,
    /// When it was healed.
    pub end_us: u64,
}

/// Which nodes could talk to which from `at_us` on, until the next entry of
/// the timeline: the ground truth the health checker holds nodes' own
/// reports against. Entries are stamped conservatively: a fault after it
/// took effect, a heal before it is undone, so a node is never counted as
/// unreachable when it might not have been.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetState {
    /// µs since the run began.
    pub at_us: u64,
    /// Node indexes that are killed, paused or removed.
    pub down: BTreeSet<usize>,
    /// Node index pairs `(a, b)`, `a < b`, whose traffic is dropped.
    pub cuts: BTreeSet<(usize, usize)>,
}

impl NetState {
    /// Whether nodes `a` and `b` can exchange messages.
    pub fn reachable(&self, a: usize, b: usize) -> bool {
        if a == b {
            return !self.down.contains(&a);
        }
        !self.down.contains(&a)
            && !self.down.contains(&b)
            && !self.cuts.contains(&(a.min(b), a.max(b)))
    }

    /// How many of the `n` nodes (itself included) node `a` can reach.
    pub fn reach(&self, a: usize, n: usize) -> usize {
        (0..n).filter(|&b| self.reachable(a, b)).count()
    }
}

/// The [`NetState`]s of a run, in time order, shared by the nemesis (which
/// appends) and the checker (which reads it at the end).
#[derive(Clone)]
pub struct Timeline {
    recorder: Recorder,
    states: Arc<Mutex<Vec<NetState>>>,
}

impl Timeline {
    /// A timeline on `recorder`'s clock, starting with everyone connected.
    pub fn new(recorder: &Recorder) -> Self {
        Self {
            recorder: recorder.clone(),
            states: Arc::new(Mutex::new(vec![NetState::default()])),
        }
    }

    /// Microseconds since the run began (the recorder's clock).
    pub fn now_us(&self) -> u64 {
        self.recorder.now_us()
    }

    /// The state in effect now.
    pub fn current(&self) -> NetState {
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        states.last().cloned().unwrap_or_default()
    }

    /// Records that from now on `change` applies to the current state.
    pub fn update(&self, change: impl FnOnce(&mut NetState)) {
        let mut next = self.current();
        change(&mut next);
        next.at_us = self.recorder.now_us();
        self.states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(next);
    }

    /// Every state so far.
    pub fn states(&self) -> Vec<NetState> {
        self.states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
