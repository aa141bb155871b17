//! `coffer operator rekey | generate-root | root`: the custodians'
//! ceremonies. Every share is read from the argument or, better, from stdin
//! without echo; the nonce of the ceremony is required on every submission
//! so a custodian's share never lands in a ceremony they did not mean.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use coffer_client::custody::{GenerateRootBody, RekeyBody};
use coffer_client::sys::Sys;
use zeroize::Zeroizing;

use super::operator::read_share;
use super::{format_time, print_json, print_rows};
use crate::seal::generate_root::{decode_otp, new_otp};

/// `coffer operator rekey …`: without a subcommand, submits one current share.
#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RekeyArgs {
    /// Ceremony step; omit it to submit one current share.
    #[command(subcommand)]
    pub action: Option<RekeyAction>,
    /// The share; omit it to type it without echo or pipe it in.
    pub key: Option<String>,
    /// The rekey's nonce (shown by `rekey init` and `rekey status`).
    #[arg(long)]
    pub nonce: Option<String>,
}

/// Rekey steps.
#[derive(Debug, Clone, Subcommand)]
pub enum RekeyAction {
    /// Start a rekey (needs a token).
    Init {
        /// New number of shares.
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..))]
        key_shares: u8,
        /// New threshold.
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..))]
        key_threshold: u8,
        /// OpenPGP public key files for the new shares, in order (comma separated).
        #[arg(long, value_delimiter = ',')]
        pgp_keys: Vec<PathBuf>,
        /// The new holders must submit their new shares (`rekey verify`)
        /// before the old shares stop working.
        #[arg(long)]
        verify: bool,
    },
    /// Show the rekey's progress on this node.
    Status,
    /// Submit one *new* share during verification.
    Verify {
        /// The new share; omit it to type it without echo or pipe it in.
        key: Option<String>,
        /// The verification nonce (shown when the new shares were issued).
        #[arg(long)]
        nonce: String,
    },
    /// Cancel the rekey in progress (needs a token).
    Cancel {
        /// The rekey's nonce.
        #[arg(long)]
        nonce: String,
    },
}

/// `coffer operator generate-root …`: without a subcommand, submits one share.
#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct GenerateRootArgs {
    /// Ceremony step; omit it to submit one unseal share.
    #[command(subcommand)]
    pub action: Option<GenerateRootAction>,
    /// The share; omit it to type it without echo or pipe it in.
    pub key: Option<String>,
    /// The ceremony's nonce (shown by `generate-root init`).
    #[arg(long)]
    pub nonce: Option<String>,
}

/// Generate-root steps.
#[derive(Debug, Clone, Subcommand)]
pub enum GenerateRootAction {
    /// Start: with --pgp-key the token is encrypted to that key; otherwise a
    /// one-time pad is generated here and printed (keep it, it decodes the token).
    Init {
        /// OpenPGP public key file to encrypt the new token to.
        #[arg(long)]
        pgp_key: Option<PathBuf>,
        /// Make a DR operation token instead of a root token: kept on this
        /// node only (no leader needed), good for one `operator dr promote`.
        #[arg(long)]
        dr_operation: bool,
    },
    /// Show progress on this node.
    Status,
    /// Cancel the ceremony in progress.
    Cancel {
        /// The ceremony's nonce.
        #[arg(long)]
        nonce: String,
    },
    /// Turn the encoded token into the token with the OTP (runs locally).
    Decode {
        /// The encoded token from the last submission.
        #[arg(long)]
        encoded: String,
        /// The OTP printed by `generate-root init`.
        #[arg(long, env = "COFFER_OTP", hide_env_values = true)]
        otp: String,
    },
}

/// `coffer operator root …`.
#[derive(Debug, Clone, Subcommand)]
pub enum RootCommand {
    /// List root tokens (accessors, never tokens).
    List,
    /// Revoke the initial root token, or the one with --accessor.
    Revoke {
        /// Accessor (from `root list`) of the token to revoke.
        #[arg(long)]
        accessor: Option<String>,
    },
}

/// Reads OpenPGP public key files (armored or binary) as the API takes them.
pub fn read_key_files(paths: &[PathBuf]) -> anyhow::Result<Vec<String>> {
    paths.iter().map(|p| read_key_file(p)).collect()
}

/// One key file: armored text as is, a binary key as base64.
pub fn read_key_file(path: &Path) -> anyhow::Result<String> {
    use base64::Engine as _;
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read the OpenPGP key {}", path.display()))?;
    Ok(match std::str::from_utf8(&bytes) {
        Ok(text) if text.trim_start().starts_with("-----BEGIN") => text.to_string(),
        _ => base64::engine::general_purpose::STANDARD.encode(&bytes),
    })
}

/// Prints shares, each with the fingerprint of the key it is encrypted to.
pub fn print_shares(keys: &[String], fingerprints: &[String], label: &str) {
    for (i, k) in keys.iter().enumerate() {
        match fingerprints.get(i) {
            Some(fp) => println!("{label} {} (encrypted to {fp}):\n{k}", i + 1),
            None => println!("{label} {}: {k}", i + 1),
        }
    }
    println!();
}

pub(super) fn share_or_stdin(key: Option<String>) -> anyhow::Result<Zeroizing<String>> {
    Ok(match key {
        Some(k) => Zeroizing::new(k),
        None => read_share()?,
    })
}

pub(super) fn need_nonce(nonce: Option<String>, what: &str) -> anyhow::Result<String> {
    nonce.with_context(|| format!("--nonce is required: ask the initiator for the {what} nonce (it is shown by `{what} status`)"))
}

/// Runs `operator rekey …`.
pub async fn run_rekey(sys: &Sys<'_>, args: RekeyArgs, json: bool) -> anyhow::Result<()> {
    let body = match args.action {
        Some(RekeyAction::Init {
            key_shares,
            key_threshold,
            pgp_keys,
            verify,
        }) => {
            if key_threshold > key_shares {
                bail!(
                    "--key-threshold ({key_threshold}) must not exceed --key-shares ({key_shares})"
                );
            }
            let keys = read_key_files(&pgp_keys)?;
            sys.rekey_init(key_shares, key_threshold, &keys, verify)
                .await?
        }
        Some(RekeyAction::Status) => sys.rekey_status().await?,
        Some(RekeyAction::Verify { key, nonce }) => {
            let key = share_or_stdin(key)?;
            sys.rekey_verify(&nonce, key.trim()).await?
        }
        Some(RekeyAction::Cancel { nonce }) => {
            sys.rekey_cancel(&nonce).await?;
            if !json {
                println!("Rekey cancelled.");
            }
            return Ok(());
        }
        None => {
            let nonce = need_nonce(args.nonce, "rekey")?;
            let key = share_or_stdin(args.key)?;
            sys.rekey_update(&nonce, key.trim()).await?
        }
    };
    if json {
        return print_json(&body);
    }
    show_rekey(&body);
    Ok(())
}

fn show_rekey(b: &RekeyBody) {
    if !b.keys.is_empty() {
        print_shares(&b.keys, &b.pgp_fingerprints, "New Key");
        match &b.verification_nonce {
            Some(vn) if !b.complete => {
                println!(
                    "The new shares are NOT active yet: a quorum of their {} holders",
                    b.t
                );
                println!("must submit them with `coffer operator rekey verify --nonce {vn}`.");
                println!("Until then the current shares keep working.");
            }
            _ => println!(
                "Rekey complete: {} new shares, threshold {}. The old shares no longer unseal.",
                b.n, b.t
            ),
        }
        return;
    }
    if b.complete {
        println!(
            "Rekey verified and complete: {} new shares, threshold {}. The old shares no longer unseal.",
            b.n, b.t
        );
        return;
    }
    let mut rows = vec![
        ("Rekey Started", b.started.to_string()),
        ("Nonce", b.nonce.clone().unwrap_or_else(|| "-".into())),
        ("Progress", format!("{}/{}", b.progress, b.required)),
        ("New Shares", b.n.to_string()),
        ("New Threshold", b.t.to_string()),
        ("Verification Required", b.verification_required.to_string()),
    ];
    if let Some(vn) = &b.verification_nonce {
        rows.push(("Verification Nonce", vn.clone()));
        rows.push((
            "Verification Progress",
            format!("{}/{}", b.verification_progress, b.t),
        ));
    }
    if !b.pgp_fingerprints.is_empty() {
        rows.push(("PGP Fingerprints", b.pgp_fingerprints.join(", ")));
    }
    print_rows(&rows);
}

/// Runs `operator generate-root …`.
pub async fn run_generate_root(
    sys: &Sys<'_>,
    args: GenerateRootArgs,
    json: bool,
) -> anyhow::Result<()> {
    let body = match args.action {
        Some(GenerateRootAction::Decode { encoded, otp }) => {
            let token = decode_otp(&encoded, &otp)?;
            println!("{}", token.as_str());
            return Ok(());
        }
        Some(GenerateRootAction::Init {
            pgp_key,
            dr_operation,
        }) => {
            let (otp, key) = match pgp_key {
                Some(p) => (None, Some(read_key_file(&p)?)),
                None => (Some(new_otp()), None),
            };
            let otp_str = otp.as_ref().map(|o| o.as_str());
            let body = if dr_operation {
                sys.generate_dr_token_init(otp_str, key.as_deref()).await?
            } else {
                sys.generate_root_init(otp_str, key.as_deref()).await?
            };
            if let Some(otp) = &otp {
                if json {
                    return print_json(&serde_json::json!({ "status": body, "otp": otp.as_str() }));
                }
                // The OTP is the initiator's to keep: without it the encoded
                // token is useless, so printing it here is the point.
                println!("OTP: {}", otp.as_str());
                println!("Keep it: `generate-root decode` needs it to read the new token.\n");
            }
            body
        }
        Some(GenerateRootAction::Status) => sys.generate_root_status().await?,
        Some(GenerateRootAction::Cancel { nonce }) => {
            sys.generate_root_cancel(&nonce).await?;
            if !json {
                println!("Generate-root cancelled.");
            }
            return Ok(());
        }
        None => {
            let nonce = need_nonce(args.nonce, "generate-root")?;
            let key = share_or_stdin(args.key)?;
            sys.generate_root_update(&nonce, key.trim()).await?
        }
    };
    if json {
        return print_json(&body);
    }
    show_generate_root(&body);
    Ok(())
}

fn show_generate_root(b: &GenerateRootBody) {
    if let Some(encoded) = &b.encoded_token {
        match &b.pgp_fingerprint {
            Some(fp) => println!("New root token (encrypted to {fp}):\n{encoded}"),
            None => {
                println!("Encoded Token: {encoded}");
                println!("Decode it with: coffer operator generate-root decode --encoded {encoded} --otp <OTP>");
            }
        }
        return;
    }
    print_rows(&[
        ("Started", b.started.to_string()),
        ("Nonce", b.nonce.clone().unwrap_or_else(|| "-".into())),
        ("Progress", format!("{}/{}", b.progress, b.required)),
        (
            "PGP Fingerprint",
            b.pgp_fingerprint.clone().unwrap_or_else(|| "-".into()),
        ),
    ]);
}

/// Runs `operator root …`.
pub async fn run_root(sys: &Sys<'_>, cmd: RootCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        RootCommand::List => {
            let tokens = sys.root_tokens().await?;
            if json {
                return print_json(&tokens);
            }
            println!("{:<64}  {:<14}  CREATED", "ACCESSOR", "ORIGIN");
            for t in tokens {
                let created = i64::try_from(t.created).ok();
                println!(
                    "{:<64}  {:<14}  {}",
                    t.accessor,
                    t.origin,
                    format_time(created)
                );
            }
        }
        RootCommand::Revoke { accessor } => {
            let revoked = sys.revoke_root(accessor.as_deref()).await?;
            if json {
                return print_json(&serde_json::json!({ "revoked": revoked }));
            }
            for a in revoked {
                println!("Revoked root token {a}.");
            }
        }
    }
    Ok(())
}
