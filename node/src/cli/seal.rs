//! `coffer operator seal-migrate …` (Shamir ↔ pkcs11, by a quorum of
//! shares) and `coffer operator seal-key create` (the auto-unseal key in
//! the `[hsm]` device, run offline before a node first starts with
//! `[seal] type = "pkcs11"`).

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use coffer_client::seal_migrate::SealMigrateBody;
use coffer_client::sys::Sys;

use super::custody::{need_nonce, share_or_stdin};
use super::{print_json, print_rows};
use crate::crypto::pkcs11::{Pkcs11Hsm, Pkcs11SealKey};

/// `coffer operator seal-migrate …`: without a subcommand, submits one share.
#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SealMigrateArgs {
    /// Ceremony step; omit it to submit one share.
    #[command(subcommand)]
    pub action: Option<SealMigrateAction>,
    /// The share (an unseal share to pkcs11, a recovery share to shamir);
    /// omit it to type it without echo or pipe it in.
    pub key: Option<String>,
    /// The migration's nonce (shown by `seal-migrate init` and `status`).
    #[arg(long)]
    pub nonce: Option<String>,
}

/// Seal migration steps.
#[derive(Debug, Clone, Subcommand)]
pub enum SealMigrateAction {
    /// Start a migration (needs a token). To pkcs11, run it against a node
    /// configured with `[seal] type = "pkcs11"`.
    Init {
        /// The seal type to migrate to.
        #[arg(long, value_parser = ["pkcs11", "shamir"])]
        to: String,
    },
    /// Show the migration's progress on this node.
    Status,
    /// Cancel the migration in progress (needs a token).
    Cancel {
        /// The migration's nonce.
        #[arg(long)]
        nonce: String,
    },
}

/// `coffer operator seal-key …`.
#[derive(Debug, Clone, Subcommand)]
pub enum SealKeyCommand {
    /// Create the auto-unseal key (AES-256, not extractable) in the `[hsm]`
    /// device named by a node's config, under `[seal] key_label`. Offline:
    /// run it once, before the first start with `[seal] type = "pkcs11"`.
    Create {
        /// The node's config file.
        #[arg(long)]
        config: PathBuf,
    },
}

/// Runs `operator seal-migrate …`.
pub async fn run_seal_migrate(
    sys: &Sys<'_>,
    args: SealMigrateArgs,
    json: bool,
) -> anyhow::Result<()> {
    let body = match args.action {
        Some(SealMigrateAction::Init { to }) => sys.seal_migrate_init(&to).await?,
        Some(SealMigrateAction::Status) => sys.seal_migrate_status().await?,
        Some(SealMigrateAction::Cancel { nonce }) => {
            sys.seal_migrate_cancel(&nonce).await?;
            if json {
                return print_json(&serde_json::json!({ "cancelled": true }));
            }
            println!("Seal migration cancelled.");
            return Ok(());
        }
        None => {
            let nonce = need_nonce(args.nonce, "seal-migrate")?;
            let key = share_or_stdin(args.key)?;
            sys.seal_migrate_update(&nonce, key.trim()).await?
        }
    };
    if json {
        return print_json(&body);
    }
    show(&body);
    Ok(())
}

fn show(b: &SealMigrateBody) {
    let target = b.target.clone().unwrap_or_else(|| "-".into());
    if b.complete {
        match target.as_str() {
            "pkcs11" => {
                println!("Seal migrated to pkcs11: nodes with [seal] type = \"pkcs11\" unseal");
                println!(
                    "themselves from the device. The shares are now RECOVERY shares: keep them;"
                );
                println!("they authorise rekey, generate-root and a migration back, not unseal.");
            }
            _ => {
                println!("Seal migrated to shamir: the (former recovery) shares unseal the nodes;");
                println!("remove [seal] type = \"pkcs11\" from the nodes' configs.");
            }
        }
        return;
    }
    print_rows(&[
        ("Migration Started", b.started.to_string()),
        ("Target", target),
        ("Nonce", b.nonce.clone().unwrap_or_else(|| "-".into())),
        ("Progress", format!("{}/{}", b.progress, b.required)),
    ]);
}

/// Runs `operator seal-key …` (offline, on the node's host).
pub fn run_seal_key(cmd: SealKeyCommand) -> anyhow::Result<()> {
    let SealKeyCommand::Create { config } = cmd;
    let config = crate::config::Config::load(&config)?;
    let hsm = config
        .hsm
        .as_ref()
        .context("the config has no [hsm] section naming the device")?;
    let label = config.seal.key_label.clone();
    let device = std::sync::Arc::new(Pkcs11Hsm::open(hsm));
    let status = crate::crypto::hsm::HsmProvider::status(device.as_ref());
    if !status.available {
        bail!(
            "the device is unavailable: {}",
            status.error.unwrap_or_default()
        );
    }
    let key = Pkcs11SealKey::new(device, label.clone());
    let created = key.create()?;
    let attrs = key.attributes()?;
    if attrs.extractable || !attrs.sensitive {
        bail!("the device reports the seal key {label:?} as extractable or not sensitive; refusing to use it");
    }
    tracing::info!(event = "seal.key_created", created, key_label = %label, "seal key ready");
    if created {
        println!(
            "Created seal key {label:?} in token {:?} (AES-256, sensitive, not extractable).",
            hsm.token_label
        );
    } else {
        println!("Token {:?} already holds seal key {label:?} (sensitive, not extractable); left as it is.", hsm.token_label);
    }
    Ok(())
}
