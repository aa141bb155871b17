//! Command-line clients of a running cluster: `coffer operator …`,
//! `coffer secret …` and `coffer key …`. They talk to the nodes through `coffer-client`.
//!
//! The binary is expected to embed them like this:
//! ```ignore
//! Operator { #[command(flatten)] client: ClientArgs, #[command(subcommand)] cmd: OperatorCommand }
//! Secret   { #[command(flatten)] client: ClientArgs, #[command(subcommand)] cmd: SecretCommand }
//! ```

pub mod alert;
pub mod audit;
pub mod bench;
pub mod cert;
pub mod custody;
pub mod dr;
pub mod hsm;
pub mod identity;
pub mod identity_agent;
pub mod key;
pub mod operator;
pub mod role;
pub mod seal;
pub mod secret;
pub mod snapshot;
pub mod tls;
pub mod vault;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use coffer_client::{Client, ClientConfig};

pub use alert::{run_alert, AlertCommand};
pub use audit::{run_audit, AuditCommand};
pub use bench::{run_bench, BenchArgs, Workload};
pub use cert::{run_cert, CertCommand};
pub use identity::{run_identity, IdentityCommand};
pub use identity_agent::{run_agent, AgentArgs};
pub use key::{run_key, KeyCommand};
pub use operator::{run_operator, OperatorCommand, RaftCommand};
pub use role::{run_role, RoleCommand};
pub use secret::{run_secret, SecretCommand};
pub use vault::VaultCommand;

/// Default API address when neither `--addr` nor `COFFER_ADDR` is given.
pub const DEFAULT_ADDR: &str = "https://127.0.0.1:8443";

/// Output format of the CLI commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Human-readable text.
    Text,
    /// JSON, one document per command.
    Json,
}

/// How the CLI reaches the cluster (shared by all client subcommands).
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Node API addresses, comma-separated (`host:port` or `https://host:port`);
    /// requests fail over between them.
    #[arg(long, env = "COFFER_ADDR", default_value = DEFAULT_ADDR, global = true)]
    pub addr: String,
    /// Bearer token (prefer the environment variable over the flag).
    #[arg(long, env = "COFFER_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) that signed the nodes' API certificates.
    #[arg(long = "ca-cert", env = "COFFER_CACERT", global = true)]
    pub ca_cert: Option<PathBuf>,
    /// Per-attempt timeout in seconds.
    #[arg(long, default_value_t = 10, global = true)]
    pub timeout: u64,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Text, global = true)]
    pub output: OutputFormat,
    /// Shorthand for `--output json`.
    #[arg(long, global = true)]
    pub json: bool,
}

impl ClientArgs {
    /// Whether JSON output was asked for.
    pub fn json_output(&self) -> bool {
        self.json || self.output == OutputFormat::Json
    }

    /// Builds the client; a CA certificate is required.
    pub fn client(&self) -> anyhow::Result<Client> {
        let ca = self
            .ca_cert
            .as_deref()
            .context("a CA certificate is required: pass --ca-cert or set COFFER_CACERT")?;
        let mut cfg = ClientConfig::from_parts(&self.addr, self.token.clone(), Some(ca))?;
        cfg.timeout = Duration::from_secs(self.timeout.max(1));
        Ok(Client::new(cfg)?)
    }
}

/// Prints `value` as pretty JSON on stdout.
fn print_json<T: serde::Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints aligned `key  value` rows.
fn print_rows(rows: &[(&str, String)]) {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        println!("{k:<width$}  {v}");
    }
}

/// Unix seconds as an RFC 3339 UTC timestamp, `-` when absent.
fn format_time(secs: Option<i64>) -> String {
    let Some(secs) = secs else {
        return "-".into();
    };
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn formats_unix_times() {
        assert_eq!(format_time(Some(0)), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(Some(1_709_210_096)), "2024-02-29T12:34:56Z");
        assert_eq!(format_time(None), "-");
    }

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        cmd: OperatorCommand,
    }

    #[test]
    fn global_client_flags_work_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "coffer",
            "status",
            "--addr",
            "a:1,b:2",
            "--ca-cert",
            "/tmp/ca.pem",
            "-o",
            "json",
        ])
        .unwrap();
        assert_eq!(cli.client.addr, "a:1,b:2");
        assert!(cli.client.json_output());
        assert!(matches!(cli.cmd, OperatorCommand::Status));
    }

    #[test]
    fn client_requires_a_ca_certificate() {
        let cli = Cli::try_parse_from(["coffer", "--addr", "a:1", "seal"]).unwrap();
        let mut args = cli.client;
        args.ca_cert = None;
        let err = args.client().unwrap_err().to_string();
        assert!(err.contains("CA certificate"), "{err}");
    }
}
