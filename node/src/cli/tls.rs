//! `coffer operator tls`: create a cluster CA and node certificates.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;

use crate::tls;

/// Arguments of `coffer operator tls`.
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// Directory for ca.pem, ca-key.pem, NAME.pem and NAME-key.pem.
    #[arg(long)]
    pub out: PathBuf,
    /// A node certificate to issue, as NAME=SAN1,SAN2 (DNS names or IPs).
    /// Repeat for each node. An existing CA in DIR is reused.
    #[arg(long = "node", value_name = "NAME=SANS")]
    pub nodes: Vec<String>,
    /// Common name of a newly created CA.
    #[arg(long, default_value = "Coffer cluster CA")]
    pub ca_name: String,
}

fn parse_node(spec: &str) -> anyhow::Result<(String, Vec<String>)> {
    let Some((name, sans)) = spec.split_once('=') else {
        bail!("--node {spec:?}: expected NAME=SAN1,SAN2");
    };
    let valid_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if !valid_name || name.starts_with('.') {
        bail!("--node {spec:?}: NAME must be letters, digits, '-', '_' or '.'");
    }
    let sans: Vec<String> = sans
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if sans.is_empty() {
        bail!("--node {spec:?}: at least one SAN is required");
    }
    Ok((name.to_string(), sans))
}

/// Creates (or reuses) the CA in `--out` and issues every `--node`.
pub fn run(args: TlsArgs) -> anyhow::Result<()> {
    let nodes = args
        .nodes
        .iter()
        .map(|s| parse_node(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // It will hold the CA's private key: owner only.
    crate::files::create_private_dir(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let ca_path = args.out.join("ca.pem");
    let ca_key_path = args.out.join("ca-key.pem");
    let (ca_pem, ca_key) = if ca_path.exists() && ca_key_path.exists() {
        let m = tls::TlsMaterial::load(&ca_path, &ca_path, &ca_key_path)?;
        println!("reusing CA {}", ca_path.display());
        (m.ca_pem, m.key_pem)
    } else {
        let (c, k) = tls::generate_ca(&args.ca_name)?;
        tls::write_public_file(&ca_path, c.as_bytes())?;
        tls::write_private_file(&ca_key_path, k.as_bytes())?;
        println!("created CA {}", ca_path.display());
        (c, k)
    };
    for (name, sans) in nodes {
        let (cert, key) = tls::issue_cert(&ca_pem, &ca_key, &name, &sans)?;
        let cert_path = args.out.join(format!("{name}.pem"));
        tls::write_public_file(&cert_path, cert.as_bytes())?;
        tls::write_private_file(&args.out.join(format!("{name}-key.pem")), key.as_bytes())?;
        println!("issued {} for {}", cert_path.display(), sans.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_malformed_node_specs() {
        assert!(parse_node("n1").is_err());
        assert!(parse_node("n1=").is_err());
        assert!(parse_node("../x=localhost").is_err());
        let (n, s) = parse_node("n1=localhost, 10.0.0.1").unwrap();
        assert_eq!(n, "n1");
        assert_eq!(s, vec!["localhost", "10.0.0.1"]);
    }

    #[test]
    fn issues_nodes_under_one_reused_ca() {
        let dir = tempfile::tempdir().unwrap();
        let args = |node: &str| TlsArgs {
            out: dir.path().to_path_buf(),
            nodes: vec![node.to_string()],
            ca_name: "t".into(),
        };
        run(args("n1=127.0.0.1")).unwrap();
        let ca = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
        run(args("n2=localhost")).unwrap();
        assert_eq!(
            ca,
            std::fs::read_to_string(dir.path().join("ca.pem")).unwrap()
        );
        for f in ["n1.pem", "n1-key.pem", "n2.pem", "n2-key.pem", "ca-key.pem"] {
            assert!(dir.path().join(f).exists(), "{f}");
        }
    }
}
