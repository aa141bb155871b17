//! `coffer operator dr …`: a DR replica's status and the promotion of the
//! DR site when the primary is lost (see README "Custody and recovery").

use clap::Subcommand;
use coffer_client::sys::Sys;
use zeroize::Zeroizing;

use super::print_json;

/// `coffer operator dr …`.
#[derive(Debug, Clone, Subcommand)]
pub enum DrCommand {
    /// This node's DR role: replica or not, the DR members, leader contact.
    Status,
    /// Promote the DR site through this DR replica (COFFER_ADDR): the DR
    /// members become a new cluster. Only when the primary is lost.
    Promote {
        /// The DR operation token generated on this node (`generate-root
        /// init --dr-operation`, then decode); omit it to type it without
        /// echo or pipe it in.
        #[arg(long, env = "COFFER_DR_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
}

/// Runs `operator dr …`.
pub async fn run_dr(sys: &Sys<'_>, cmd: DrCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        DrCommand::Status => {
            let status = sys.dr_status().await?;
            print_json(&status)?;
        }
        DrCommand::Promote { token } => {
            let token = match token {
                Some(t) => Zeroizing::new(t),
                None => super::operator::read_hidden(
                    "DR operation token (will be hidden): ",
                    "DR operation token",
                )?,
            };
            eprintln!(
                "WARNING: promoting the DR site makes it a new, writable cluster. The old \
                 primary must stay down: wipe its nodes before they return."
            );
            let message = sys.dr_promote(token.trim()).await?;
            if json {
                print_json(&serde_json::json!({ "promoted": true, "message": message }))?;
            } else {
                println!("{message}");
            }
        }
    }
    Ok(())
}
