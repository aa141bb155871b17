//! `[server]` of the node configuration: how the node sees its clients
//! (trusted reverse proxies) and where full vault backups may be written;
//! `[events]`: when lifecycle events are looked for.

use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// `[server]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// CIDR ranges of reverse proxies whose `X-Forwarded-For` header names
    /// the client (e.g. `["10.0.0.5/32"]`). Empty (the default): the
    /// header is ignored and the TCP peer is the client.
    pub trusted_proxies: Vec<IpNet>,
    /// The directory under which `KeyVaultBackupClient` may write and read
    /// full backups (`storageResourceUri` = `file:///…` inside it). Absent
    /// (the default): full backup and restore are refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_dir: Option<PathBuf>,
}

/// `[events]`: how the leader finds lifecycle events (Event Grid
/// `…NewVersionCreated`, `…NearExpiry`, `…Expired`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct EventsSection {
    /// Days before `exp` that `…NearExpiry` is sent (Key Vault: 30).
    pub near_expiry_days: u64,
    /// Seconds between two scans of the objects for due events (each
    /// scan reads every object's current version on the leader).
    pub scan_interval_secs: u64,
}

impl Default for EventsSection {
    fn default() -> Self {
        Self {
            near_expiry_days: 30,
            scan_interval_secs: 30,
        }
    }
}

impl EventsSection {
    /// The leader's schedule for these settings.
    pub fn schedule(&self, clock_offset: u64) -> crate::alerts::EventsSchedule {
        crate::alerts::EventsSchedule {
            every: std::time::Duration::from_secs(self.scan_interval_secs.max(1)),
            near_expiry_secs: self.near_expiry_days.saturating_mul(86_400),
            clock_offset,
        }
    }
}

/// `[metrics]`: where `/metrics` is served and who may scrape it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSection {
    /// Serve `/metrics` on this address only (HTTPS with the API's
    /// certificate), so it can be firewalled apart from the API; absent:
    /// on the API port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<std::net::SocketAddr>,
    /// A file holding the bearer token a scraper must present
    /// (Prometheus `authorization.credentials_file`); absent: no token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_section_parses_cidrs_and_the_backup_dir() {
        let s: ServerSection = toml::from_str(
            "trusted_proxies = [\"10.0.0.0/8\", \"::1/128\"]\nbackup_dir = \"/var/backups/coffer\"",
        )
        .unwrap();
        assert_eq!(s.trusted_proxies.len(), 2);
        assert_eq!(s.backup_dir, Some(PathBuf::from("/var/backups/coffer")));
        assert!(toml::from_str::<ServerSection>("trusted_proxies = [\"10.0.0.300/8\"]").is_err());
        assert!(toml::from_str::<ServerSection>("other = 1").is_err());
        assert_eq!(
            toml::from_str::<ServerSection>("").unwrap(),
            ServerSection::default()
        );
    }

    #[test]
    fn events_default_to_key_vaults_thirty_days() {
        let e: EventsSection = toml::from_str("scan_interval_secs = 5").unwrap();
        assert_eq!(e.near_expiry_days, 30);
        let s = e.schedule(7);
        assert_eq!(s.near_expiry_secs, 30 * 86_400);
        assert_eq!((s.every.as_secs(), s.clock_offset), (5, 7));
        assert!(toml::from_str::<EventsSection>("lead = 1").is_err());
    }
}
