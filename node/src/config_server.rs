//! `[server]` of the node configuration: how the node sees its clients
//! (trusted reverse proxies) and where full vault backups may be written.

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
}
