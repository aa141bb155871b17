//! Workloads over the Key Vault secrets API. Each worker is one logical
//! process: it either goes through the failover client or is pinned to one
//! node (so followers forward). Every write carries a unique value of a
//! realistic size ([`payload`]) and an explicit request id, which the
//! failover client keeps across retries; every value read back is checked
//! whole.

pub mod payload;
pub mod register;
pub mod set;
pub mod version;

use std::collections::BTreeMap;
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

    /// An operation id (and request id) never used before in this run.
    pub fn unique(&mut self) -> String {
        self.seq += 1;
        format!("p{}-{}", self.process, self.seq)
    }

    /// The value operation `id` writes, of a length drawn from this
    /// worker's random source.
    pub fn payload(&mut self, id: &str) -> String {
        let len = payload::draw_len(&mut self.rng);
        payload::value(id, len)
    }

    /// Runs `call` with the op timeout and records it as `kind` refined by
    /// `finish` (which fills in results and picks the outcome). `bytes` is
    /// the size of the value written (reads set it in `finish`).
    pub async fn record<T, F>(
        &self,
        kind: OpKind,
        bytes: usize,
        call: F,
        finish: impl FnOnce(OpKind, CallResult<T>) -> Completion,
    ) where
        F: std::future::Future<Output = CallResult<T>>,
    {
        let invoke_us = self.recorder.now_us();
        let result = tokio::time::timeout(self.op_timeout, call).await.ok();
        let complete_us = self.recorder.now_us();
        let done = match result {
            Some(r) => finish(kind, r),
            None if kind.is_write() => {
                Completion::new(kind, Outcome::Info, Some("client timeout".into()))
            }
            None => Completion::new(kind, Outcome::Fail, Some("client timeout".into())),
        };
        let outcome = done.outcome;
        self.recorder.push(Op {
            process: self.process,
            node: self.pinned,
            kind: done.kind,
            invoke_us,
            complete_us,
            outcome,
            error: done.error,
            bytes: done.bytes.unwrap_or(bytes),
            malformed: done.malformed,
        });
        if outcome != Outcome::Ok {
            // A client pinned to a dead or sealed node would otherwise spin
            // on instant errors and flood the history.
            tokio::time::sleep(ERROR_BACKOFF).await;
        }
    }
}

/// How an operation ended, as [`Worker::record`] writes it down.
pub struct Completion {
    /// The operation with what it returned.
    pub kind: OpKind,
    /// Ok / fail / info.
    pub outcome: Outcome,
    /// Error text of failed and indeterminate operations.
    pub error: Option<String>,
    /// Size of the value read back, for reads.
    pub bytes: Option<usize>,
    /// What is wrong with a value read back, if anything.
    pub malformed: Option<String>,
}

impl Completion {
    /// A completion without a value read back.
    pub fn new(kind: OpKind, outcome: Outcome, error: Option<String>) -> Self {
        Self {
            kind,
            outcome,
            error,
            bytes: None,
            malformed: None,
        }
    }

    /// An acknowledged operation.
    pub fn ok(kind: OpKind) -> Self {
        Self::new(kind, Outcome::Ok, None)
    }

    /// A failed write, classified by [`write_failure`].
    pub fn write_error(kind: OpKind, e: &ClientError) -> Self {
        Self::new(kind, write_failure(e), Some(e.to_string()))
    }
}

/// Checks a value read back: the operation id it belongs to, or (when it is
/// not whole) the id it claims plus what is wrong with it.
pub fn read_back(value: &str) -> (String, Option<String>) {
    match payload::check(value) {
        Ok(id) => (id, None),
        Err(m) => (m.recorded_value(), Some(m.to_string())),
    }
}

/// What a final read found: per name, what the workload reads out of it;
/// and every value read back that was not whole.
#[derive(Debug, Default)]
pub struct FinalRead<T> {
    /// Per secret name.
    pub values: BTreeMap<String, T>,
    /// Descriptions of values that did not check ([`payload::check`]).
    pub malformed: Vec<String>,
}

/// One secret version fetched by [`get_all`].
#[derive(Debug)]
pub struct Fetched {
    /// Secret name.
    pub name: String,
    /// The operation id its value belongs to.
    pub id: String,
    /// Its version id.
    pub version: Option<String>,
    /// Its creation time (Unix seconds).
    pub created: Option<i64>,
    /// What is wrong with the value, if it is not whole.
    pub malformed: Option<String>,
}

/// Parallel reads of a final read (thousands of values of up to 25 KiB).
const FINAL_READERS: usize = 8;

/// Gets every `(name, version)` (latest when `None`) with a few readers in
/// parallel, checking each value whole.
pub async fn get_all(
    client: &Client,
    wanted: Vec<(String, Option<String>)>,
) -> anyhow::Result<Vec<Fetched>> {
    let mut stripes: Vec<Vec<(String, Option<String>)>> = vec![Vec::new(); FINAL_READERS];
    for (i, w) in wanted.into_iter().enumerate() {
        stripes[i % FINAL_READERS].push(w);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for stripe in stripes {
        let client = client.clone();
        tasks.spawn(async move {
            let mut out = Vec::with_capacity(stripe.len());
            for (name, version) in stripe {
                let b = client.secrets().get(&name, version.as_deref()).await?;
                let (id, malformed) = read_back(b.value.as_deref().unwrap_or_default());
                out.push(Fetched {
                    version: b.version().map(str::to_string).or(version),
                    created: b.attributes.created,
                    name,
                    id,
                    malformed,
                });
            }
            anyhow::Ok(out)
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    Ok(all)
}

/// [`get_all`] of the latest versions, as a name → operation id map.
pub async fn read_all(
    client: &Client,
    wanted: Vec<(String, Option<String>)>,
) -> anyhow::Result<FinalRead<String>> {
    let mut read = FinalRead::default();
    for f in get_all(client, wanted).await? {
        if let Some(m) = f.malformed {
            read.malformed.push(format!("{}: {m}", f.name));
        }
        read.values.insert(f.name, f.id);
    }
    Ok(read)
}

/// How a failed write ended: 4xx answers are definite (nothing was
/// applied); transport errors, timeouts and 5xx may have been applied.
pub fn write_failure(e: &ClientError) -> Outcome {
    match e.status() {
        Some(s) if (400..500).contains(&s) && s != 408 && s != 429 => Outcome::Fail,
        _ => Outcome::Info,
    }
}
