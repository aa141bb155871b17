//! Object and vault name rules and the storage keys derived from them.

/// True for a Key Vault object name: `^[0-9a-zA-Z-]{1,127}$`.
pub fn is_valid_object_name(name: &str) -> bool {
    (1..=127).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The vault name rule in words, for error messages.
pub const VAULT_NAME_RULE: &str =
    "1-63 characters of 0-9, a-z, A-Z and -, neither starting nor ending with - (a DNS label)";

/// True for a vault name: a DNS label (1–63 characters of `[0-9a-zA-Z-]`,
/// no leading or trailing `-`), since vaults are addressed as
/// `{vault}.{vault_domain}`. The one rule for vault names: the API, the
/// engines and the config file all use it.
pub fn is_valid_vault_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// True for a version id as this service issues them: 32 lowercase hex digits.
pub fn is_valid_version(version: &str) -> bool {
    version.len() == 32
        && version
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `vault/{vault}`.
pub fn vault_key(vault: &str) -> Vec<u8> {
    format!("vault/{vault}").into_bytes()
}

/// Prefix of every vault record.
pub const VAULT_PREFIX: &[u8] = b"vault/";

// Tables: every object record lives at `{table}/{vault}/{suffix}` (see
// `view::VaultView`).

/// Secret name records: `s/{vault}/{name_lower}`.
pub const SECRETS: &str = "s";
/// Secret versions: `sv/{vault}/{name_lower}/{version}`.
pub const SECRET_VERSIONS: &str = "sv";
/// Key name records: `k/{vault}/{name_lower}`.
pub const KEYS: &str = "k";
/// Key versions (with the key material): `kv/{vault}/{name_lower}/{version}`.
pub const KEY_VERSIONS: &str = "kv";
/// Key rotation policies: `kp/{vault}/{name_lower}`.
pub const KEY_POLICIES: &str = "kp";
/// Key Notify events: `sys/events/keys/{vault}/{name_lower}/{version}/notify`.
pub const KEY_EVENTS: &str = "sys/events/keys";

/// Certificate name records: `c/{vault}/{name_lower}`.
pub const CERTS: &str = "c";
/// Certificate versions: `cv/{vault}/{name_lower}/{version}`.
pub const CERT_VERSIONS: &str = "cv";
/// Certificate policies: `cp/{vault}/{name_lower}`.
pub const CERT_POLICIES: &str = "cp";
/// Pending certificate operations: `co/{vault}/{name_lower}`.
pub const CERT_OPS: &str = "co";
/// Certificate contacts of a vault: `cc/{vault}/contacts`.
pub const CERT_CONTACTS: &str = "cc";
/// Certificate issuers: `ci/{vault}/{issuer_lower}`.
pub const CERT_ISSUERS: &str = "ci";

/// Lifetime actions fired per certificate version:
/// `cf/{vault}/{name_lower}/{version}`.
pub const CERT_FIRED: &str = "cf";

/// Revocations and the current CRL of a `Coffer` issuer:
/// `cr/{vault}/{issuer_lower}`.
pub const CERT_REVOCATIONS: &str = "cr";
/// Vault settings: `set/{vault}/{name}`.
pub const SETTINGS: &str = "set";

/// Every table holding a vault's objects: what deleting the vault removes.
pub const VAULT_TABLES: &[&str] = &[
    SECRETS,
    SECRET_VERSIONS,
    KEYS,
    KEY_VERSIONS,
    KEY_POLICIES,
    KEY_EVENTS,
    CERTS,
    CERT_VERSIONS,
    CERT_POLICIES,
    CERT_OPS,
    CERT_CONTACTS,
    CERT_ISSUERS,
    CERT_FIRED,
    CERT_REVOCATIONS,
    SETTINGS,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_follow_key_vault_rules() {
        assert!(is_valid_object_name("my-Secret-1"));
        assert!(is_valid_object_name(&"a".repeat(127)));
        assert!(!is_valid_object_name(&"a".repeat(128)));
        assert!(!is_valid_object_name(""));
        assert!(!is_valid_object_name("a_b"));
        assert!(!is_valid_object_name("a/b"));
        assert!(!is_valid_object_name("é"));
    }

    #[test]
    fn vault_names_are_dns_labels() {
        for good in ["a", "prod", "Prod-1", "a-b-c", "0", &"v".repeat(63)] {
            assert!(is_valid_vault_name(good), "{good}");
        }
        for bad in [
            "",
            "-vault",
            "vault-",
            "-",
            "a_b",
            "a.b",
            "é",
            &"v".repeat(64),
        ] {
            assert!(!is_valid_vault_name(bad), "{bad}");
        }
    }

    #[test]
    fn versions_are_32_lowercase_hex() {
        assert!(is_valid_version("0123456789abcdef0123456789abcdef"));
        assert!(!is_valid_version("0123456789ABCDEF0123456789abcdef"));
        assert!(!is_valid_version("0123"));
    }
}
