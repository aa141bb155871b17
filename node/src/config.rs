//! Node configuration: the TOML file of `coffer server --config`, and the
//! settings `--dev` derives from its flags.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use raft_store::{Node, NodeId};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

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

/// A secret configuration value (the join token): zeroized on drop, never
/// printed — `Debug` and `--print-config` show `<redacted>`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(from = "String")]
pub struct SecretValue(Zeroizing<String>);

impl SecretValue {
    /// What `Debug` and `Serialize` show instead of the value.
    pub const REDACTED: &'static str = "<redacted>";

    /// The value itself, for the one place that compares or sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretValue {
    fn from(s: String) -> Self {
        Self(Zeroizing::new(s))
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(Self::REDACTED)
    }
}

impl Serialize for SecretValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(Self::REDACTED)
    }
}

/// Paths of the PEM files a node presents and trusts.
#[derive(Clone, Debug, Deserialize, Serialize)]
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
#[derive(Clone, Debug, Deserialize, Serialize)]
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
#[derive(Clone, Debug, Deserialize, Serialize)]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise_api_addr: Option<String>,
    /// Cluster address other nodes should use (default: `cluster_addr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise_cluster_addr: Option<String>,
    /// DNS suffix under which vaults are addressed as `{vault}.{vault_domain}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
    /// Auto-join: cluster addresses (`host:port` of members' gRPC endpoints;
    /// a DNS name may resolve to several) this node asks to be added at,
    /// as a learner and then a voter, while it belongs to no cluster. The
    /// request is authenticated by this node's certificate (issued by the
    /// cluster CA) and `join_token`.
    #[serde(default)]
    pub retry_join: Vec<String>,
    /// Shared secret a joining node presents and a member checks before it
    /// adds the node (absent on a member: auto-join requests are refused).
    /// Prefer `join_token_file` or the variable `COFFER_JOIN_TOKEN`, which
    /// is read once at start and removed from the environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_token: Option<SecretValue>,
    /// File holding the join token (trailing newline ignored; owner-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_token_file: Option<PathBuf>,
    /// Lock the process's memory (`mlockall`) so keys and secrets are never
    /// written to swap. On by default; when the memlock limit forbids it the
    /// node refuses to start and says how to raise the limit, or set this to
    /// false (where swap is off or encrypted).
    #[serde(default = "default_true")]
    pub lock_memory: bool,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsafe_min_rotation_secs: Option<u64>,
    /// TEST ONLY: the certificates engine and the leader's lifecycle work
    /// see the clock this many seconds ahead, so tests can watch
    /// certificate lifetime actions (AutoRenew at 80 % of months) fire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsafe_clock_offset_secs: Option<u64>,
    /// Start even when the data dir, the TLS key or the HSM PIN file is
    /// readable or writable by group or others, or a certificate is
    /// writable by them (checked at start by default).
    #[serde(default)]
    pub allow_insecure_permissions: bool,
    /// The PKCS#11 device of the HSM tier (absent: no `*-HSM` keys on this node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsm: Option<HsmConfig>,
    /// `[raft]`: cluster transport limits and health thresholds.
    #[serde(default)]
    pub raft: crate::cluster::RaftTuning,
    /// Connection caps and timeouts of the HTTPS API (all optional).
    #[serde(default)]
    pub limits: LimitsConfig,
    /// `[snapshots]`: automated snapshots taken by the leader (absent: none).
    #[serde(default)]
    pub snapshots: Option<crate::cluster::snapshot_file::SnapshotsConfig>,
    /// `[seal]`: how this node unseals (absent: Shamir shares).
    #[serde(default)]
    pub seal: SealSection,
    /// `[audit]`: the node's audit file, its write timeout and sinks.
    #[serde(default)]
    pub audit: crate::audit::AuditConfig,
    /// `[server]`: trusted reverse proxies (client addresses).
    #[serde(default)]
    pub server: crate::config_server::ServerSection,
    /// `[events]`: lifecycle event lead time and scan interval.
    #[serde(default)]
    pub events: crate::config_server::EventsSection,
    /// `[metrics]`: a separate listener and a scrape token (both optional).
    #[serde(default)]
    pub metrics: crate::config_server::MetricsSection,
}

/// `[seal]`: `type = "shamir"` (custodians unseal with shares, the default)
/// or `type = "pkcs11"`: the node unseals itself with an AES-256 key held in
/// the `[hsm]` device (module, token, PIN), labelled `key_label`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SealSection {
    /// `shamir` or `pkcs11`.
    #[serde(rename = "type", default)]
    pub seal_type: crate::seal::SealType,
    /// Label of the seal key in the `[hsm]` token.
    #[serde(default = "default_seal_key_label")]
    pub key_label: String,
}

impl Default for SealSection {
    fn default() -> Self {
        Self {
            seal_type: crate::seal::SealType::Shamir,
            key_label: default_seal_key_label(),
        }
    }
}

fn default_seal_key_label() -> String {
    crate::crypto::seal_device::DEFAULT_SEAL_KEY_LABEL.to_string()
}

/// `[limits]`: what one client may hold of the HTTPS API listener, and how
/// long the server waits for it. Every key is optional; the defaults suit a
/// node that serves applications directly or behind a few proxies.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
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

/// Shortest accepted join token: it is a password guarding membership.
pub const MIN_JOIN_TOKEN_LEN: usize = 16;

/// Prefix of the environment variables that override config keys.
pub const ENV_PREFIX: &str = "COFFER_";
/// Separates a table from its key in an override's name.
const ENV_NESTING: &str = "__";
/// Keys whose override is always text, and whose variable is removed from
/// the environment once read ([`take_secret_env`]).
const SECRET_KEYS: &[&str] = &["join_token"];

/// Applies `COFFER_*` overrides to the parsed file; returns the variables
/// used. Only names whose first part is a top-level key of [`Config`] are
/// overrides; unknown keys below it are left for serde to refuse by name.
fn apply_env_overrides(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<String>, ConfigError> {
    let top = struct_fields::<Config>();
    let mut used: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| {
            name.strip_prefix(ENV_PREFIX).is_some_and(|rest| {
                let first = rest.split(ENV_NESTING).next().unwrap_or_default();
                top.contains(&first.to_ascii_lowercase().as_str())
            })
        })
        .collect();
    // Deterministic: a table override first, then keys inside it.
    used.sort();
    for (name, raw) in &used {
        let key = name[ENV_PREFIX.len()..].to_ascii_lowercase();
        let path: Vec<&str> = key.split(ENV_NESTING).collect();
        let (last, tables) = path.split_last().unwrap_or((&"", &[]));
        let mut at = &mut *table;
        for part in tables {
            let entry = at
                .entry(part.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            at = entry.as_table_mut().ok_or_else(|| {
                ConfigError::Invalid(format!("{name}: `{part}` is not a table in the config"))
            })?;
        }
        let value = if SECRET_KEYS.contains(last) {
            toml::Value::String(raw.clone())
        } else {
            env_value(raw)
        };
        at.insert(last.to_string(), value);
    }
    Ok(used.into_iter().map(|(name, _)| name).collect())
}

/// An override's value: a TOML literal when it is one (number, boolean,
/// array, inline table, quoted string), else the text itself, so
/// `COFFER_NODE_ID=3` is a number and `COFFER_API_ADDR=0.0.0.0:8443` text.
fn env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

/// Takes the secret overrides (`COFFER_JOIN_TOKEN`) out of the process
/// environment ([`crate::hardening::take_env_secret`]: scrubbed from what
/// `/proc/PID/environ` shows, removed so children never inherit them) and
/// returns them as (name, value) pairs for [`Config::load_with_env`].
///
/// Call before any other thread exists: the binary does so first thing in
/// `main`, before the async runtime starts.
pub fn take_secret_env() -> Vec<(String, String)> {
    SECRET_KEYS
        .iter()
        .filter_map(|key| {
            let name = format!("{ENV_PREFIX}{}", key.to_ascii_uppercase());
            let value = crate::hardening::take_env_secret(&name)?;
            Some((name, value.to_string()))
        })
        .collect()
}

/// The field names serde knows for struct `T` (its `deserialize_struct`
/// call reveals them), so the override filter cannot drift from [`Config`].
fn struct_fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    use serde::de::{Error as _, Visitor};
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for Probe<'_> {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(Self::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(Self::Error::custom("probed"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

fn default_true() -> bool {
    true
}

fn default_log_format() -> String {
    "json".to_string()
}

impl Config {
    /// Reads a TOML config file, applies the `COFFER_*` environment
    /// overrides of the process and validates the result.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// [`Config::load`] with the environment given: `COFFER_<KEY>` sets a
    /// top-level key, `COFFER_<TABLE>__<KEY>` one in a table (`COFFER_RAFT__HEARTBEAT_MS`);
    /// other `COFFER_*` variables (`COFFER_LOG`, the CLI's) are not config keys.
    pub fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let parse_error = |message: String| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        };
        let mut table: toml::Table =
            toml::from_str(&text).map_err(|e| parse_error(e.to_string()))?;
        let overridden = apply_env_overrides(&mut table, env)?;
        let mut config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    let mut message = e.to_string();
                    if !overridden.is_empty() {
                        message.push_str(&format!(
                            " (with environment overrides {})",
                            overridden.join(", ")
                        ));
                    }
                    parse_error(message)
                })?;
        config.read_join_token_file()?;
        config.validate()?;
        Ok(config)
    }

    /// Reads `join_token_file` into `join_token` (the file is checked to be
    /// owner-only by [`crate::files::check_node_files`] at start).
    fn read_join_token_file(&mut self) -> Result<(), ConfigError> {
        let Some(path) = &self.join_token_file else {
            return Ok(());
        };
        if self.join_token.is_some() {
            return Err(ConfigError::Invalid(
                "give the join token once: join_token (or COFFER_JOIN_TOKEN) or join_token_file"
                    .into(),
            ));
        }
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?,
            );
        self.join_token = Some(SecretValue::from(
            text.trim_end_matches(['\r', '\n']).to_string(),
        ));
        Ok(())
    }

    /// The effective configuration as TOML, secrets shown as `<redacted>`
    /// (`coffer server --print-config`).
    pub fn to_redacted_toml(&self) -> Result<String, ConfigError> {
        toml::to_string_pretty(self)
            .map_err(|e| ConfigError::Invalid(format!("cannot print the config: {e}")))
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
        if self.seal.seal_type == crate::seal::SealType::Pkcs11 {
            if self.hsm.is_none() {
                return Err(ConfigError::Invalid(
                    "[seal] type = \"pkcs11\" needs an [hsm] section naming the device".into(),
                ));
            }
            if self.seal.key_label.is_empty() || self.seal.key_label.len() > 64 {
                return Err(ConfigError::Invalid(
                    "[seal] key_label must be 1 to 64 bytes".into(),
                ));
            }
        }
        if self
            .join_token
            .as_ref()
            .is_some_and(|t| t.expose().len() < MIN_JOIN_TOKEN_LEN)
        {
            return Err(ConfigError::Invalid(format!(
                "join_token must be at least {MIN_JOIN_TOKEN_LEN} characters \
                 (e.g. `openssl rand -hex 32`)"
            )));
        }
        if !self.retry_join.is_empty() && self.join_token.is_none() {
            return Err(ConfigError::Invalid(
                "retry_join needs a join token (join_token_file or COFFER_JOIN_TOKEN)".into(),
            ));
        }
        if !self.retry_join.is_empty() && (self.bootstrap || !self.peers.is_empty()) {
            return Err(ConfigError::Invalid(
                "retry_join is for nodes that join an existing cluster: \
                 it cannot be combined with bootstrap or peers"
                    .into(),
            ));
        }
        self.raft
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        self.limits.validate()?;
        self.audit.validate().map_err(ConfigError::Invalid)?;
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
#[path = "config_tests.rs"]
mod tests;
