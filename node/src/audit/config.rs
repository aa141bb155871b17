//! `[audit]` of the node config.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where and how this node writes its audit records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Directory of this node's audit files (`audit-node{id}.jsonl` and its
    /// rotations); default `{data_dir}/audit`. Several nodes may share one
    /// directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// How long a request waits for its record to be on disk before it is
    /// answered 503 (fail closed, never hang).
    pub write_timeout_ms: u64,
    /// A file larger than this is rotated.
    pub max_file_bytes: u64,
    /// Rotated files kept (`.1` newest … `.N` oldest).
    pub max_files: usize,
    /// Records written (and fsync'd) together at most.
    pub batch_max: usize,
    /// When a request's record counts as written: see [`AuditSync`].
    pub sync: AuditSync,
    /// How often records are shipped into the replicated trail.
    pub ship_interval_ms: u64,
    /// Also copy every record to standard output (JSON lines).
    pub stdout: bool,
    /// Also copy every record to syslog (RFC 5424): `udp://host:514`,
    /// `tcp://host:601` or `unix:///dev/log`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syslog: Option<String>,
    /// Retention of the replicated trail: records older than this many
    /// days are pruned by the leader (absent: kept forever). At least 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trail_max_age_days: Option<u64>,
    /// Retention of the replicated trail: only the newest this many
    /// records are kept (absent: no limit). At least 1000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trail_max_records: Option<u64>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            dir: None,
            write_timeout_ms: 2_000,
            max_file_bytes: 64 * 1024 * 1024,
            max_files: 10,
            batch_max: 256,
            sync: AuditSync::Always,
            ship_interval_ms: 500,
            stdout: false,
            syslog: None,
            trail_max_age_days: None,
            trail_max_records: None,
        }
    }
}

/// How far a record must get before the request it describes is answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditSync {
    /// On disk: the batch is `fdatasync`'d before any of its requests is
    /// answered. Survives power loss; costs one disk flush per batch on
    /// the request path (the default, and what a regulator usually wants).
    #[default]
    Always,
    /// In the kernel: answered once `write(2)` took the batch (a full or
    /// failing disk still refuses the request), flushed within 100 ms
    /// together with everything written meanwhile. Survives a crash of the
    /// process but not of the machine before the flush; Vault's file audit
    /// device works this way.
    Write,
}

impl AuditConfig {
    /// Refuses settings that cannot work.
    pub fn validate(&self) -> Result<(), String> {
        if self.write_timeout_ms == 0 || self.write_timeout_ms > 60_000 {
            return Err("[audit] write_timeout_ms must be 1..=60000".into());
        }
        if self.max_file_bytes < 4096 || self.max_files == 0 || self.batch_max == 0 {
            return Err(
                "[audit] max_file_bytes must be at least 4096, max_files and batch_max at least 1"
                    .into(),
            );
        }
        if let Some(s) = &self.syslog {
            super::sinks::SyslogTarget::parse(s)?;
        }
        self.trail_retention()
            .validate()
            .map_err(|e| format!("[audit] {e}"))
    }

    /// How much of the replicated trail the leader keeps.
    pub fn trail_retention(&self) -> crate::engine::audit::Retention {
        crate::engine::audit::Retention {
            max_age_secs: self.trail_max_age_days.map(|d| d.saturating_mul(86_400)),
            max_records: self.trail_max_records,
        }
    }

    /// The node's audit file.
    pub fn file(&self, data_dir: &Path, node_id: u64) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| data_dir.join("audit"))
            .join(format!("audit-node{node_id}.jsonl"))
    }

    /// [`AuditConfig::write_timeout_ms`] as a duration.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }
}
