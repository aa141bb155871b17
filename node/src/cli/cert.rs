//! `coffer cert …`: Coffer's private CA from the command line.
//! `cert ca create` makes the CA certificate through the Key Vault API
//! (issuer `Self` for a root, a `Coffer` issuer for an intermediate; the
//! policy's `basic_constraints.ca`), waits for it, and names it by a
//! `Coffer` issuer; `cert revoke` revokes a certificate that issuer made
//! (`/v1/pki/{vault}/{issuer}/revoke`: the root token, or an access token
//! whose roles grant `certificates/revoke/action` on the vault).

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Subcommand;
use coffer_client::{Client, Request};
use serde_json::{json, Value};

use super::{print_json, print_rows, ClientArgs};

const API: &str = "api-version=7.4";

/// Certificate subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum CertCommand {
    /// The private CA: create a root or intermediate CA and its issuer.
    Ca {
        /// CA subcommand.
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Revoke a certificate issued by a Coffer issuer: it joins the
    /// issuer's CRL and the OCSP responder answers "revoked".
    Revoke {
        /// Certificate name in the vault (or give --serial).
        #[arg(required_unless_present = "serial")]
        name: Option<String>,
        /// The Coffer issuer that issued it.
        #[arg(long)]
        issuer: String,
        /// Certificate version (default: the latest).
        #[arg(long, conflicts_with = "serial")]
        version: Option<String>,
        /// Serial number (hex) instead of a certificate name.
        #[arg(long, conflicts_with = "name")]
        serial: Option<String>,
        /// RFC 5280 reason: unspecified, keyCompromise, cACompromise,
        /// affiliationChanged, superseded, cessationOfOperation,
        /// certificateHold, privilegeWithdrawn, aACompromise.
        #[arg(long, default_value = "unspecified")]
        reason: String,
        /// Vault the issuer belongs to (the one the address serves).
        #[arg(long, default_value = "default")]
        vault: String,
    },
}

/// `coffer cert ca …`.
#[derive(Debug, Clone, Subcommand)]
pub enum CaCommand {
    /// Create a CA certificate and a `Coffer` issuer naming it.
    Create {
        /// Name of the CA certificate in the vault.
        name: String,
        /// Subject, e.g. "CN=Example Root CA, O=Example".
        #[arg(long)]
        subject: String,
        /// Issuer name (default: the certificate's name).
        #[arg(long)]
        issuer: Option<String>,
        /// Make an intermediate signed by this Coffer issuer (default: a
        /// self-signed root).
        #[arg(long)]
        parent: Option<String>,
        /// Validity in months.
        #[arg(long, default_value_t = 120)]
        validity_months: u32,
        /// Key type: RSA, EC, or RSA-HSM / EC-HSM (the CA key stays in the
        /// HSM tier and signs there).
        #[arg(long, default_value = "RSA")]
        kty: String,
        /// RSA key size.
        #[arg(long)]
        key_size: Option<u32>,
        /// EC curve (P-256, P-384, P-521).
        #[arg(long)]
        curve: Option<String>,
        /// Longest chain of intermediates below this CA.
        #[arg(long)]
        path_len: Option<u8>,
        /// Seconds to wait for the CA certificate.
        #[arg(long, default_value_t = 60)]
        wait: u64,
    },
}

async fn call(client: &Client, req: Request) -> anyhow::Result<Value> {
    let resp = client.send(req).await?.error_for_status()?;
    if resp.body.is_empty() {
        return Ok(Value::Null);
    }
    Ok(resp.json::<Value>()?)
}

/// The policy of a CA certificate (no automatic renewal: a CA is renewed
/// on purpose, its contacts are told at 80 % of its life).
pub fn ca_policy(
    subject: &str,
    issuer: &str,
    validity_months: u32,
    kty: &str,
    key_size: Option<u32>,
    curve: Option<&str>,
    path_len: Option<u8>,
) -> Value {
    let mut key_props = json!({"kty": kty, "exportable": false, "reuse_key": true});
    if let Some(size) = key_size {
        key_props["key_size"] = json!(size);
    }
    if let Some(crv) = curve {
        key_props["crv"] = json!(crv);
    }
    let mut constraints = json!({"ca": true});
    if let Some(n) = path_len {
        constraints["path_len_constraint"] = json!(n);
    }
    json!({
        "key_props": key_props,
        "secret_props": {"contentType": "application/x-pem-file"},
        "x509_props": {
            "subject": subject,
            "key_usage": ["keyCertSign", "cRLSign", "digitalSignature"],
            "ekus": [],
            "validity_months": validity_months,
            "basic_constraints": constraints,
        },
        "lifetime_actions": [
            {"trigger": {"lifetime_percentage": 80}, "action": {"action_type": "EmailContacts"}}
        ],
        "issuer": {"name": issuer},
    })
}

/// Runs one `coffer cert` command against the cluster.
pub async fn run_cert(args: &ClientArgs, cmd: CertCommand) -> anyhow::Result<()> {
    let client = args.client()?;
    match cmd {
        CertCommand::Ca {
            command:
                CaCommand::Create {
                    name,
                    subject,
                    issuer,
                    parent,
                    validity_months,
                    kty,
                    key_size,
                    curve,
                    path_len,
                    wait,
                },
        } => {
            let issuer = issuer.unwrap_or_else(|| name.clone());
            let policy = ca_policy(
                &subject,
                parent.as_deref().unwrap_or("Self"),
                validity_months,
                &kty,
                key_size,
                curve.as_deref(),
                path_len,
            );
            call(
                &client,
                Request::post(format!("/certificates/{name}/create?{API}"))
                    .json(&json!({ "policy": policy }))?,
            )
            .await?;
            let deadline = Instant::now() + Duration::from_secs(wait);
            loop {
                let op = call(
                    &client,
                    Request::get(format!("/certificates/{name}/pending?{API}")),
                )
                .await?;
                match op["status"].as_str().unwrap_or("") {
                    "completed" => break,
                    "inProgress" if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(250)).await
                    }
                    "inProgress" => {
                        bail!("the CA certificate {name} was not issued within {wait} s")
                    }
                    other => bail!(
                        "the CA certificate {name} was not issued ({other}): {}",
                        op["error"]["message"].as_str().unwrap_or("no reason given")
                    ),
                }
            }
            let cert = call(
                &client,
                Request::get(format!("/certificates/{name}/?{API}")),
            )
            .await?;
            let set = call(
                &client,
                Request::put(format!("/certificates/issuers/{issuer}?{API}")).json(&json!({
                    "provider": "Coffer",
                    "credentials": {"account_id": name},
                }))?,
            )
            .await?;
            if args.json_output() {
                return print_json(&json!({"certificate": cert, "issuer": set}));
            }
            print_rows(&[
                ("certificate", cert["id"].as_str().unwrap_or("-").to_owned()),
                ("issuer", set["id"].as_str().unwrap_or("-").to_owned()),
                ("x5t", cert["x5t"].as_str().unwrap_or("-").to_owned()),
            ]);
            println!(
                "Create certificates with policy issuer {{\"name\": \"{issuer}\"}}; the CA certificate, CRL and OCSP responder are under /v1/pki/{{vault}}/{}/",
                issuer.to_ascii_lowercase()
            );
        }
        CertCommand::Revoke {
            name,
            issuer,
            version,
            serial,
            reason,
            vault,
        } => {
            let mut body = json!({"reason": reason});
            match (name, serial) {
                (Some(n), None) => {
                    body["certificate"] = json!(n);
                    if let Some(v) = version {
                        body["version"] = json!(v);
                    }
                }
                (None, Some(s)) => body["serial"] = json!(s),
                _ => bail!("give a certificate name or --serial"),
            }
            let done = call(
                &client,
                Request::post(format!("/v1/pki/{vault}/{issuer}/revoke")).json(&body)?,
            )
            .await
            .context("revoking")?;
            if args.json_output() {
                return print_json(&done);
            }
            print_rows(&[
                ("serial", done["serial"].as_str().unwrap_or("-").to_owned()),
                ("reason", done["reason"].as_str().unwrap_or("-").to_owned()),
                ("crl_number", done["crl_number"].to_string()),
            ]);
        }
    }
    Ok(())
}
