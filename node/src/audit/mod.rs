//! The node's audit device: every request's record is written to this
//! node's file (fail closed, with a write timeout) before the answer leaves,
//! then shipped into the replicated trail and copied to the configured
//! sinks. What a record is, how trails are chained and checked, lives in
//! `engine::audit`; the HTTP side (building a record from a request) in
//! `api::audit`.

pub mod config;
pub mod file;
pub mod ship;
pub mod sinks;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, OnceCell};

use crate::engine::audit::{AuditEvent, AuditKey, Trail};
use crate::engine::store::Store;

pub use config::AuditConfig;
use file::{FileOptions, FileSink, Job};
use ship::{ShipQueue, Shipper};
use sinks::{Copies, SyslogTarget};

/// Why a record could not be written; the request is answered 503.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The record was not on disk within the write timeout.
    #[error("the audit record was not written within {0:?}")]
    Timeout(Duration),
    /// The write failed (full disk, I/O error) or the writer is stuck.
    #[error("{0}")]
    Failed(String),
}

/// This node's audit device.
pub struct Auditor {
    node_id: u64,
    file: FileSink,
    timeout: Duration,
    store: Arc<dyn Store>,
    key: OnceCell<AuditKey>,
}

impl Auditor {
    /// Opens the node's audit file, starts its writer, the copies and the
    /// shipper (which waits while the node is sealed).
    pub fn start(
        cfg: &AuditConfig,
        data_dir: &Path,
        node_id: u64,
        store: Arc<dyn Store>,
        sealed: Box<dyn Fn() -> bool + Send + Sync>,
    ) -> std::io::Result<Arc<Self>> {
        let path = cfg.file(data_dir, node_id);
        let queue = Arc::new(ShipQueue::default());
        let syslog = match &cfg.syslog {
            Some(s) => Some(SyslogTarget::parse(s).map_err(std::io::Error::other)?),
            None => None,
        };
        let copies = Copies::start(cfg.stdout, syslog, node_id);
        let q = queue.clone();
        let file = FileSink::start(
            FileOptions {
                path: path.clone(),
                max_file_bytes: cfg.max_file_bytes,
                max_files: cfg.max_files,
                batch_max: cfg.batch_max,
                sync: cfg.sync,
            },
            Box::new(move |written| {
                metrics::counter!("coffer_audit_records_total", "sink" => "file")
                    .increment(written.len() as u64);
                if let Some(c) = &copies {
                    for (_, event, line) in written {
                        c.send(event.time.clone(), line.clone());
                    }
                }
                q.push(written.iter().map(|(s, e, _)| (*s, e.clone())));
            }),
        )?;
        let max_files = cfg.max_files;
        tokio::spawn(
            Shipper {
                trail: Trail::new(store.clone()),
                node_id,
                queue,
                files: Box::new(move || file::files_oldest_first(&path, max_files)),
                every: Duration::from_millis(cfg.ship_interval_ms),
                sealed,
                stream: Some(file.stream().to_owned()),
            }
            .run(),
        );
        reopen_on_sighup(file.clone());
        Ok(Arc::new(Self {
            node_id,
            file,
            timeout: cfg.write_timeout(),
            store,
            key: OnceCell::new(),
        }))
    }

    /// The cluster's replicated trail.
    pub fn trail(&self) -> Trail {
        Trail::new(self.store.clone())
    }

    /// This node's id (records carry it).
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// Whether the file refuses writes now: requests are refused before
    /// they act, not only after.
    pub fn refusing(&self) -> bool {
        !self.file.healthy()
    }

    /// Writes `event` durably, waiting at most the write timeout.
    pub async fn record(&self, event: AuditEvent) -> Result<u64, AuditError> {
        let (ack, rx) = oneshot::channel();
        if !self.file.submit(Job { event, ack }) {
            metrics::counter!("coffer_audit_failures_total", "sink" => "file").increment(1);
            return Err(AuditError::Failed(
                "the audit writer is not keeping up".into(),
            ));
        }
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(Ok(seq))) => Ok(seq),
            Ok(Ok(Err(e))) => Err(AuditError::Failed(e)),
            Ok(Err(_)) => Err(AuditError::Failed("the audit writer stopped".into())),
            Err(_) => {
                metrics::counter!("coffer_audit_failures_total", "sink" => "file").increment(1);
                Err(AuditError::Timeout(self.timeout))
            }
        }
    }

    /// `hmac-sha256:…` of a sensitive value under the cluster audit key;
    /// `None` while the key cannot be read (sealed node): the value is then
    /// left out, never written in the clear.
    pub async fn fingerprint(&self, value: &[u8]) -> Option<String> {
        let key = self
            .key
            .get_or_try_init(|| AuditKey::load_or_create(&*self.store))
            .await
            .ok()?;
        Some(key.fingerprint(value))
    }
}

/// SIGHUP: reopen the file (after logrotate moved it).
fn reopen_on_sighup(file: FileSink) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reopening the audit file");
            file.reopen();
        }
    });
}
