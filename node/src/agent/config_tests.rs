use super::*;

fn parse(text: &str) -> anyhow::Result<AgentConfig> {
    let file: File = toml::from_str(text)?;
    file.agent.validate()?;
    Ok(file.agent)
}

#[test]
fn the_shipped_example_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/agent/agent.example.toml");
    let cfg = AgentConfig::load(&path).unwrap();
    assert_eq!(cfg.nodes.len(), 3);
    assert_eq!(cfg.listen, Some("127.0.0.1:8200".parse().unwrap()));
    assert_eq!(cfg.apps.len(), 1);
    assert!(!cfg.apps[0].attach_token);
    assert!(
        cfg.identity.unwrap().credential().is_err(),
        "the secret file does not exist here"
    );
}

#[test]
fn defaults_and_refusals() {
    let base = r#"
[agent]
nodes = ["https://a:1"]
ca_cert = "/ca.pem"
listen = "127.0.0.1:0"
"#;
    let cfg = parse(base).unwrap();
    assert_eq!(cfg.request_deadline_secs, 30);
    assert_eq!(cfg.attempt_timeout_secs, 5);
    assert!(cfg.identity.is_none());
    let public = base.replace("127.0.0.1:0", "0.0.0.0:8200");
    assert!(parse(&public).unwrap_err().to_string().contains("loopback"));
    let msi_without_identity = format!("{base}msi_listen = \"127.0.0.1:0\"\n");
    assert!(parse(&msi_without_identity).is_err());
    let unknown = format!("{base}bogus = 1\n");
    assert!(parse(&unknown).is_err());
    let nothing = base.replace("listen = \"127.0.0.1:0\"", "");
    assert!(parse(&nothing).is_err());
}
