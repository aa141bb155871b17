//! Workloads over the Key Vault secrets API. Each worker is one logical
//! process: it either goes through the failover client or is pinned to one
//! node (so followers forward). Every write carries a unique value and an
//! explicit request id, which the failover client keeps across retries.

pub mod register;
pub mod set;
pub mod version;

use std::time::Duration;

use coffer_client::{Client, ClientError};
use rand::rngs::StdRng;

use crate::history::{Op, OpKind, Outcome, Recorder};

/// Which workload to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadKind {
    /// Per-key set / read-latest, checked for linearizability.
    Register,
    /// Create-only secrets, then a final read (lost writes).
    Set,
    /// New versions of a few keys, then the version lists (double apply).
    Version,
}

/// Pause after a failed or indeterminate operation.
const ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// One client's context.
pub struct Worker {
    /// Logical process number.
    pub process: usize,
    /// Node index this worker is pinned to, if any.
    pub pinned: Option<usize>,
    /// Client with every node as endpoint.
    pub client: Client,
    /// Where operations are recorded.
    pub recorder: Recorder,
    /// Random source (seeded per worker).
    pub rng: StdRng,
    /// Operations issued so far.
    pub seq: u64,
    /// Give up on one operation (and record it indeterminate) after this.
    pub op_timeout: Duration,
}

/// A client call's result, before classification.
pub type CallResult<T> = Result<T, ClientError>;

impl Worker {
    /// The secrets API, pinned if this worker is, with a fresh request id.
    pub fn secrets(&self, request_id: &str) -> coffer_client::Secrets<'_> {
        let s = self.client.secrets().with_request_id(request_id);
        match self.pinned {
            Some(i) => s.pinned(i),
            None => s,
        }
    }

    /// A value (and request id) never used before in this run.
    pub fn unique(&mut self) -> String {
        self.seq += 1;
        format!("p{}-{}", self.process, self.seq)
    }

    /// Runs `call` with the op timeout and records it as `kind` refined by
    /// `finish` (which fills in results and picks the outcome).
    pub async fn record<T, F>(
        &self,
        kind: OpKind,
        call: F,
        finish: impl FnOnce(OpKind, CallResult<T>) -> (OpKind, Outcome, Option<String>),
    ) where
        F: std::future::Future<Output = CallResult<T>>,
    {
        let invoke_us = self.recorder.now_us();
        let result = tokio::time::timeout(self.op_timeout, call).await.ok();
        let complete_us = self.recorder.now_us();
        let (kind, outcome, error) = match result {
            Some(r) => finish(kind, r),
            None if kind.is_write() => (kind, Outcome::Info, Some("client timeout".into())),
            None => (kind, Outcome::Fail, Some("client timeout".into())),
        };
        self.recorder.push(Op {
            process: self.process,
            node: self.pinned,
            kind,
            invoke_us,
            complete_us,
            outcome,
            error,
        });
        if outcome != Outcome::Ok {
            // A client pinned to a dead or sealed node would otherwise spin
            // on instant errors and flood the history.
            tokio::time::sleep(ERROR_BACKOFF).await;
        }
    }
}

/// How a failed write ended: 4xx answers are definite (nothing was
/// applied); transport errors, timeouts and 5xx may have been applied.
pub fn write_failure(e: &ClientError) -> Outcome {
    match e.status() {
        Some(s) if (400..500).contains(&s) && s != 408 && s != 429 => Outcome::Fail,
        _ => Outcome::Info,
    }
}
