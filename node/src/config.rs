//! Node configuration: the TOML file of `coffer server --config`, and the
//! settings `--dev` derives from its flags.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use raft_store::{Node, NodeId};
use serde::Deserialize;

pub use crate::crypto::hsm::HsmConfig;
use crate::engine::names::{is_valid_vault_name, VAULT_NAME_RULE};
use crate::engine::rotation::RotationLimits;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// The values are inconsistent.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// Paths of the PEM files a node presents and trusts.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Cluster CA certificate (trusted for peers; clients should trust it too).
    pub ca: PathBuf,
    /// This node's certificate (used for the API and for mutual TLS between nodes).
    pub cert: PathBuf,
    /// This node's private key.
    pub key: PathBuf,
}

/// Another member of the cluster at bootstrap time.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Its Raft node id.
    pub node_id: NodeId,
    /// `host:port` of its HTTPS API.
    pub api_addr: String,
    /// `host:port` of its gRPC cluster endpoint.
    pub cluster_addr: String,
}

/// A node's configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Raft node id, unique in the cluster, never reused.
    pub node_id: NodeId,
    /// Directory holding the Raft log, state machine and snapshots.
    pub data_dir: PathBuf,
    /// Address the HTTPS API listens on.
    pub api_addr: SocketAddr,
    /// Address the gRPC cluster endpoint listens on.
    pub cluster_addr: SocketAddr,
    /// API address other nodes and clients should use (default: `api_addr`).
    #[serde(default)]
    pub advertise_api_addr: Option<String>,
    /// Cluster address other nodes should use (default: `cluster_addr`).
    #[serde(default)]
    pub advertise_cluster_addr: Option<String>,
    /// DNS suffix under which vaults are addressed as `{vault}.{vault_domain}`.
    #[serde(default)]
    pub vault_domain: Option<String>,
    /// Vault served for hosts outside `vault_domain` (bare addresses).
    #[serde(default = "default_vault")]
    pub default_vault: String,
    /// Tenant named in the authentication challenge.
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// When true and this node has never been part of a cluster, it
    /// initialises Raft with itself and `peers` as the voters. Set it on
    /// exactly one node of a new cluster.
    #[serde(default)]
    pub bootstrap: bool,
    /// The other initial members (used with `bootstrap`).
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    /// Certificates.
    pub tls: TlsConfig,
    /// `json` (default) or `text` log lines.
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// Build a Raft snapshot (and purge the log behind it) every this many
    /// entries. Small values make lagging nodes catch up from snapshots.
    #[serde(default = "default_snapshot_logs")]
    pub raft_snapshot_logs: u64,
    /// How often the leader purges soft-deleted objects past their purge
    /// date and carries out due key rotation policies.
    #[serde(default = "default_lifecycle_interval")]
    pub lifecycle_interval_secs: u64,
    /// TEST ONLY: serve reads from the local state machine without a
    /// ReadIndex round trip. Breaks linearizability; exists so the fault
    /// tests can prove they catch stale reads.
    #[serde(default)]
    pub unsafe_stale_reads: bool,
    /// TEST ONLY: lowers Key Vault's minimum durations of key rotation
    /// policies (triggers of 7 days, `expiryTime` of 28 days) to this many
    /// seconds, so tests can watch policies being carried out.
    #[serde(default)]
    pub unsafe_min_rotation_secs: Option<u64>,
    /// Start even when the data dir, the TLS key or the HSM PIN file is
    /// readable or writable by group or others, or a certificate is
    /// writable by them (checked at start by default).
    #[serde(default)]
    pub allow_insecure_permissions: bool,
    /// The PKCS#11 device of the HSM tier (absent: no `*-HSM` keys on this node).
    #[serde(default)]
    pub hsm: Option<HsmConfig>,
    /// `[raft]`: cluster transport limits and health thresholds.
    #[serde(default)]
    pub raft: crate::cluster::RaftTuning,
    /// Connection caps and timeouts of the HTTPS API (all optional).
    #[serde(default)]
    pub limits: LimitsConfig,
}

/// `[limits]`: what one client may hold of the HTTPS API listener, and how
/// long the server waits for it. Every key is optional; the defaults suit a
/// node that serves applications directly or behind a few proxies.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Open API connections at most (default 4096). Lowered at start to what
    /// the open-files limit leaves after `reserved_fds`. Connections above
    /// the cap are accepted and closed at once.
    pub max_connections: usize,
    /// Open API connections at most from one client address (default 512);
    /// IPv6 clients are grouped by /64. Keep it well below `max_connections`
    /// so one address cannot take every slot from the others (a value above
    /// it acts as `max_connections`). Lowered in proportion when the
    /// open-files limit lowers `max_connections`.
    pub max_connections_per_ip: usize,
    /// File descriptors kept free for storage and cluster traffic: the
    /// connection cap never exceeds the open-files limit minus this
    /// (default 128).
    pub reserved_fds: usize,
    /// Seconds a client has to complete the TLS handshake (default 10).
    pub tls_handshake_timeout_secs: u64,
    /// Seconds a client has to send a complete request head, counted from
    /// its first byte, or from the handshake for a connection's first
    /// request (default 10).
    pub header_read_timeout_secs: u64,
    /// Seconds a connection may stay open with no request in progress
    /// (default 90; longer than the Coffer client's 60 s pool idle timeout,
    /// so the client closes first).
    pub idle_timeout_secs: u64,
    /// A request body must arrive at least this fast, in bytes per second
    /// averaged over `body_rate_window_secs`, or the request is cut
    /// (default 1024; 0 turns the check off).
    pub min_body_bytes_per_sec: u64,
    /// The window over which `min_body_bytes_per_sec` is measured (default 10).
    pub body_rate_window_secs: u64,
    /// Seconds the tokenless `/v1/sys/init` and `/v1/sys/unseal` wait for
    /// their (at most 4 KiB) body (default 5).
    pub operator_body_timeout_secs: u64,
    /// Concurrent streams per HTTP/2 connection (default 100).
    pub http2_max_concurrent_streams: u32,
    /// Largest request head in bytes: the HTTP/1 read buffer and the HTTP/2
    /// header list (default 32768, at least 32768 = twice the 16 KiB above
    /// which the API answers 431 itself).
    pub max_header_bytes: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_ip: 512,
            reserved_fds: 128,
            tls_handshake_timeout_secs: 10,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 90,
            min_body_bytes_per_sec: 1024,
            body_rate_window_secs: 10,
            operator_body_timeout_secs: 5,
            http2_max_concurrent_streams: 100,
            max_header_bytes: 32 * 1024,
        }
    }
}

impl LimitsConfig {
    /// Smallest `max_header_bytes`: twice the head size above which the API
    /// itself answers 431 with an error body
    /// ([`crate::http_limits::MAX_HEADER_BYTES`]), so that answer is the
    /// one clients see; above `max_header_bytes` hyper answers by itself.
    pub const MIN_HEADER_BYTES: u32 = 2 * crate::http_limits::MAX_HEADER_BYTES as u32;

    /// Checks that caps and timeouts are usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(format!("[limits] {m}")));
        if self.max_connections == 0 || self.max_connections_per_ip == 0 {
            return invalid("max_connections and max_connections_per_ip must be at least 1");
        }
        let timeouts = [
            self.tls_handshake_timeout_secs,
            self.header_read_timeout_secs,
            self.idle_timeout_secs,
            self.body_rate_window_secs,
            self.operator_body_timeout_secs,
        ];
        if timeouts.contains(&0) {
            return invalid("timeouts and body_rate_window_secs must be at least 1 second");
        }
        if self.http2_max_concurrent_streams == 0 {
            return invalid("http2_max_concurrent_streams must be at least 1");
        }
        if self.max_header_bytes < Self::MIN_HEADER_BYTES {
            return Err(ConfigError::Invalid(format!(
                "[limits] max_header_bytes must be at least {}",
                Self::MIN_HEADER_BYTES
            )));
        }
        Ok(())
    }

    /// `tls_handshake_timeout_secs` as a duration.
    pub fn tls_handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.tls_handshake_timeout_secs)
    }

    /// `header_read_timeout_secs` as a duration.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_secs)
    }

    /// `idle_timeout_secs` as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    /// `body_rate_window_secs` as a duration.
    pub fn body_rate_window(&self) -> Duration {
        Duration::from_secs(self.body_rate_window_secs)
    }

    /// `operator_body_timeout_secs` as a duration.
    pub fn operator_body_timeout(&self) -> Duration {
        Duration::from_secs(self.operator_body_timeout_secs)
    }
}

fn default_vault() -> String {
    "default".to_string()
}

fn default_tenant() -> String {
    "coffer".to_string()
}

/// Default of `raft_snapshot_logs`: a Raft snapshot every this many entries.
pub const SNAPSHOT_LOGS: u64 = 5000;

fn default_snapshot_logs() -> u64 {
    SNAPSHOT_LOGS
}

fn default_lifecycle_interval() -> u64 {
    60
}

fn default_log_format() -> String {
    "json".to_string()
}

impl Config {
    /// Reads and validates a TOML config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the values that serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(ConfigError::Invalid("node_id must be at least 1".into()));
        }
        if self.raft_snapshot_logs < 10 {
            return Err(ConfigError::Invalid(
                "raft_snapshot_logs must be at least 10".into(),
            ));
        }
        if self.lifecycle_interval_secs == 0 {
            return Err(ConfigError::Invalid(
                "lifecycle_interval_secs must be at least 1".into(),
            ));
        }
        if self.unsafe_min_rotation_secs == Some(0) {
            return Err(ConfigError::Invalid(
                "unsafe_min_rotation_secs must be at least 1".into(),
            ));
        }
        if self.peers.iter().any(|p| p.node_id == self.node_id) {
            return Err(ConfigError::Invalid(
                "peers must not list this node's own node_id".into(),
            ));
        }
        if !is_valid_vault_name(&self.default_vault) {
            return Err(ConfigError::Invalid(format!(
                "default_vault {:?} must be {VAULT_NAME_RULE}",
                self.default_vault
            )));
        }
        if let Some(hsm) = &self.hsm {
            hsm.validate().map_err(ConfigError::Invalid)?;
        }
        self.raft
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        self.limits.validate()?;
        Ok(())
    }

    /// Minimum durations of key rotation policies: Key Vault's, unless the
    /// test-only `unsafe_min_rotation_secs` lowers them.
    pub fn rotation_limits(&self) -> RotationLimits {
        self.unsafe_min_rotation_secs
            .map_or(RotationLimits::KEY_VAULT, RotationLimits::unsafe_minimum)
    }

    /// This node as the rest of the cluster addresses it.
    pub fn advertised_node(&self) -> Node {
        Node {
            api_addr: self
                .advertise_api_addr
                .clone()
                .unwrap_or_else(|| self.api_addr.to_string()),
            cluster_addr: self
                .advertise_cluster_addr
                .clone()
                .unwrap_or_else(|| self.cluster_addr.to_string()),
        }
    }

    /// The voters a bootstrapping node initialises Raft with.
    pub fn initial_members(&self) -> BTreeMap<NodeId, Node> {
        let mut members: BTreeMap<NodeId, Node> = self
            .peers
            .iter()
            .map(|p| {
                let node = Node {
                    api_addr: p.api_addr.clone(),
                    cluster_addr: p.cluster_addr.clone(),
                };
                (p.node_id, node)
            })
            .collect();
        members.insert(self.node_id, self.advertised_node());
        members
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
        node_id = 1
        data_dir = "/tmp/n1"
        api_addr = "127.0.0.1:8443"
        cluster_addr = "127.0.0.1:8444"
        bootstrap = true
        [tls]
        ca = "ca.pem"
        cert = "n1.pem"
        key = "n1-key.pem"
        [[peers]]
        node_id = 2
        api_addr = "127.0.0.1:8453"
        cluster_addr = "127.0.0.1:8454"
    "#;

    #[test]
    fn parses_a_bootstrap_config_with_peers() {
        let config: Config = toml::from_str(SAMPLE).unwrap();
        config.validate().unwrap();
        let members = config.initial_members();
        assert_eq!(members.len(), 2);
        assert_eq!(members[&1].cluster_addr, "127.0.0.1:8444");
        assert_eq!(members[&2].api_addr, "127.0.0.1:8453");
        assert_eq!(config.default_vault, "default");
    }

    #[test]
    fn rejects_unknown_fields_and_self_in_peers() {
        let unknown = format!("{SAMPLE}\nbogus = 1\n");
        assert!(toml::from_str::<Config>(&unknown).is_err());
        let selfpeer = SAMPLE.replace("node_id = 2", "node_id = 1");
        let config: Config = toml::from_str(&selfpeer).unwrap();
        assert!(config.validate().is_err());
    }

    #[test]
    fn default_vault_follows_the_vault_name_rule() {
        for bad in ["-vault", "vault-", "a_b"] {
            let text = format!("default_vault = {bad:?}\n{SAMPLE}");
            let config: Config = toml::from_str(&text).unwrap();
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains("default_vault"), "{err}");
        }
        let text = format!("default_vault = \"team-a\"\n{SAMPLE}");
        let config: Config = toml::from_str(&text).unwrap();
        config.validate().unwrap();
    }

    #[test]
    fn rotation_minimums_are_key_vaults_unless_lowered_for_tests() {
        let config: Config = toml::from_str(SAMPLE).unwrap();
        assert_eq!(config.rotation_limits(), RotationLimits::KEY_VAULT);
        let lowered = format!("unsafe_min_rotation_secs = 2\n{SAMPLE}");
        let config: Config = toml::from_str(&lowered).unwrap();
        config.validate().unwrap();
        assert_eq!(config.rotation_limits(), RotationLimits::unsafe_minimum(2));
        let zero = format!("unsafe_min_rotation_secs = 0\n{SAMPLE}");
        let config: Config = toml::from_str(&zero).unwrap();
        assert!(config.validate().is_err());
    }

    #[test]
    fn parses_an_hsm_section_and_requires_one_pin_source() {
        let with_hsm = format!(
            "{SAMPLE}\n[hsm]\nmodule = \"/usr/lib/softhsm/libsofthsm2.so\"\ntoken_label = \"coffer-node1\"\npin_env = \"COFFER_HSM_PIN\"\n"
        );
        let config: Config = toml::from_str(&with_hsm).unwrap();
        config.validate().unwrap();
        let hsm = config.hsm.as_ref().unwrap();
        assert_eq!(hsm.token_label, "coffer-node1");
        assert_eq!(hsm.max_sessions, 16);
        let both = format!("{with_hsm}pin_file = \"/etc/coffer/pin\"\n");
        let config: Config = toml::from_str(&both).unwrap();
        assert!(config.validate().is_err());
        let inline_pin = format!("{with_hsm}pin = \"1234\"\n");
        assert!(toml::from_str::<Config>(&inline_pin).is_err());
    }

    #[test]
    fn limits_default_when_absent_and_are_validated_when_given() {
        let config: Config = toml::from_str(SAMPLE).unwrap();
        assert_eq!(config.limits, LimitsConfig::default());
        let partial = format!("{SAMPLE}\n[limits]\nidle_timeout_secs = 30\nmax_connections = 64\n");
        let config: Config = toml::from_str(&partial).unwrap();
        config.validate().unwrap();
        assert_eq!(config.limits.idle_timeout(), Duration::from_secs(30));
        assert_eq!(config.limits.max_connections, 64);
        assert_eq!(config.limits.header_read_timeout(), Duration::from_secs(10));
        for bad in [
            "max_connections_per_ip = 0",
            "tls_handshake_timeout_secs = 0",
            "body_rate_window_secs = 0",
            "max_header_bytes = 4096",
            "http2_max_concurrent_streams = 0",
        ] {
            let text = format!("{SAMPLE}\n[limits]\n{bad}\n");
            let config: Config = toml::from_str(&text).unwrap();
            assert!(config.validate().is_err(), "{bad} accepted");
        }
        let typo = format!("{SAMPLE}\n[limits]\nidle_timeout = 30\n");
        assert!(toml::from_str::<Config>(&typo).is_err());
    }
}
