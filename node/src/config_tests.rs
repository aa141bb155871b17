//! Tests of `config.rs` (kept apart so the module stays readable).

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
fn a_pkcs11_seal_needs_an_hsm_section() {
    let config: Config = toml::from_str(SAMPLE).unwrap();
    assert_eq!(config.seal.seal_type, crate::seal::SealType::Shamir);
    let seal = "[seal]\ntype = \"pkcs11\"\n";
    let without_hsm: Config = toml::from_str(&format!("{SAMPLE}\n{seal}")).unwrap();
    let err = without_hsm.validate().unwrap_err().to_string();
    assert!(err.contains("[hsm]"), "{err}");
    let with_hsm = format!(
        "{SAMPLE}\n{seal}key_label = \"k1\"\n[hsm]\nmodule = \"/m.so\"\ntoken_label = \"t\"\npin_env = \"PIN\"\n"
    );
    let config: Config = toml::from_str(&with_hsm).unwrap();
    config.validate().unwrap();
    assert_eq!(config.seal.seal_type, crate::seal::SealType::Pkcs11);
    assert_eq!(config.seal.key_label, "k1");
    let typo = format!("{SAMPLE}\n[seal]\ntype = \"pkcs12\"\n");
    assert!(toml::from_str::<Config>(&typo).is_err());
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

fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coffer.toml");
    std::fs::write(&path, text).unwrap();
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Config::load_with_env(&path, env)
}

#[test]
fn environment_overrides_set_top_level_and_table_keys() {
    let config = load(
        SAMPLE,
        &[
            ("COFFER_NODE_ID", "3"),
            ("COFFER_API_ADDR", "0.0.0.0:9443"),
            ("COFFER_BOOTSTRAP", "false"),
            ("COFFER_PEERS", "[]"),
            ("COFFER_TLS__CERT", "/etc/coffer/tls/n3.pem"),
            ("COFFER_RAFT__HEARTBEAT_MS", "50"),
            ("COFFER_LIMITS__MAX_CONNECTIONS", "64"),
            ("COFFER_RETRY_JOIN", r#"["coffer-1:8444", "coffer-2:8444"]"#),
            ("COFFER_JOIN_TOKEN", "1234567890123456"),
            // Not config keys: the log filter, the CLI's, a PIN variable.
            ("COFFER_LOG", "debug"),
            ("COFFER_ADDR", "https://x:1"),
            ("COFFER_HSM_PIN", "1234"),
            ("PATH", "/usr/bin"),
        ],
    )
    .unwrap();
    assert_eq!(config.node_id, 3);
    assert_eq!(config.api_addr, "0.0.0.0:9443".parse().unwrap());
    assert!(!config.bootstrap);
    assert!(config.peers.is_empty());
    assert_eq!(config.tls.cert, PathBuf::from("/etc/coffer/tls/n3.pem"));
    assert_eq!(
        config.tls.ca,
        PathBuf::from("ca.pem"),
        "the rest of [tls] stays"
    );
    assert_eq!(config.raft.heartbeat_ms, 50);
    assert_eq!(config.limits.max_connections, 64);
    assert_eq!(config.retry_join, ["coffer-1:8444", "coffer-2:8444"]);
    // All digits, still text: a secret is never read as a number.
    assert_eq!(config.join_token.unwrap().expose(), "1234567890123456");
}

#[test]
fn unknown_keys_are_refused_by_name_in_the_file_and_the_environment() {
    let err = load(&format!("{SAMPLE}\nbogus_key = 1\n"), &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("bogus_key"), "{err}");
    let err = load(&format!("{SAMPLE}\n[raft]\nheartbeat = 1\n"), &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("heartbeat"), "{err}");
    let err = load(SAMPLE, &[("COFFER_RAFT__HEARTBEATS_MS", "5")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("heartbeats_ms"), "{err}");
    assert!(err.contains("COFFER_RAFT__HEARTBEATS_MS"), "{err}");
    let err = load(SAMPLE, &[("COFFER_NODE_ID", "three")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("COFFER_NODE_ID"), "{err}");
}

#[test]
fn print_config_redacts_the_join_token() {
    let config = load(SAMPLE, &[("COFFER_JOIN_TOKEN", "very-secret-join-token")]).unwrap();
    let text = config.to_redacted_toml().unwrap();
    assert!(!text.contains("very-secret-join-token"), "{text}");
    assert!(text.contains(r#"join_token = "<redacted>""#), "{text}");
    assert!(format!("{config:?}").contains("<redacted>"));
    assert!(!format!("{config:?}").contains("very-secret"));
    // The printed config is itself a valid config (apart from the token).
    let reparsed: Config = toml::from_str(&text).unwrap();
    assert_eq!(reparsed.node_id, 1);
    assert_eq!(reparsed.limits, config.limits);
    assert_eq!(reparsed.raft, config.raft);
}

#[test]
fn retry_join_needs_a_token_and_excludes_bootstrap() {
    let joiner = SAMPLE
        .replace("bootstrap = true", "retry_join = [\"coffer-1:8444\"]")
        .replace("[[peers]]\n    node_id = 2\n    api_addr = \"127.0.0.1:8453\"\n    cluster_addr = \"127.0.0.1:8454\"", "");
    let err = load(&joiner, &[]).unwrap_err().to_string();
    assert!(err.contains("join token"), "{err}");
    load(&joiner, &[("COFFER_JOIN_TOKEN", "0123456789abcdef")]).unwrap();
    let err = load(&joiner, &[("COFFER_JOIN_TOKEN", "short")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("at least 16"), "{err}");
    let err = load(
        SAMPLE,
        &[
            ("COFFER_RETRY_JOIN", "[\"a:1\"]"),
            ("COFFER_JOIN_TOKEN", "0123456789abcdef"),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("bootstrap"), "{err}");
}

#[test]
fn the_join_token_file_is_read_without_its_newline() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("join-token");
    std::fs::write(&token, "from-a-file-0123456789\n").unwrap();
    let text = format!("join_token_file = {token:?}\n{SAMPLE}");
    let config = load(&text, &[]).unwrap();
    assert_eq!(
        config.join_token.unwrap().expose(),
        "from-a-file-0123456789"
    );
    let err = load(&text, &[("COFFER_JOIN_TOKEN", "0123456789abcdef")]).unwrap_err();
    assert!(err.to_string().contains("once"), "{err}");
}

#[test]
fn memory_is_locked_unless_switched_off() {
    assert!(load(SAMPLE, &[]).unwrap().lock_memory);
    assert!(
        !load(SAMPLE, &[("COFFER_LOCK_MEMORY", "false")])
            .unwrap()
            .lock_memory
    );
}

#[test]
fn the_raft_log_store_is_chosen_in_the_config_and_defaults_to_wal() {
    let config = load(SAMPLE, &[]).unwrap();
    assert_eq!(config.raft.log_store, raft_store::LogKind::Wal);
    let config = load(&format!("{SAMPLE}\n[raft]\nlog_store = \"redb\"\n"), &[]).unwrap();
    assert_eq!(config.raft.log_store, raft_store::LogKind::Redb);
    let config = load(SAMPLE, &[("COFFER_RAFT__LOG_STORE", "redb")]).unwrap();
    assert_eq!(config.raft.log_store, raft_store::LogKind::Redb);
    let err = load(&format!("{SAMPLE}\n[raft]\nlog_store = \"sled\"\n"), &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("sled"), "{err}");
}

#[test]
fn the_store_cache_is_bounded_by_default_and_must_be_positive() {
    let config = load(SAMPLE, &[]).unwrap();
    assert_eq!(config.raft.cache_mb, 32);
    let config = load(&format!("{SAMPLE}\n[raft]\ncache_mb = 256\n"), &[]).unwrap();
    assert_eq!(config.raft.cache_mb, 256);
    let err = load(&format!("{SAMPLE}\n[raft]\ncache_mb = 0\n"), &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("cache_mb"), "{err}");
}

#[test]
fn proposal_batching_keeps_two_entries_in_flight_by_default_and_can_be_turned_off() {
    let config = load(SAMPLE, &[]).unwrap();
    assert_eq!(config.raft.proposals_in_flight, 2);
    for n in [0, 8] {
        let text = format!("{SAMPLE}\n[raft]\nproposals_in_flight = {n}\n");
        assert_eq!(load(&text, &[]).unwrap().raft.proposals_in_flight, n);
    }
}
