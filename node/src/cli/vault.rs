//! `coffer operator vault …`: vaults as environments — create one with its
//! network rules, list, delete, and show or change who may reach it.

use anyhow::bail;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};

use super::{format_time, print_json};

/// `coffer operator vault …`.
#[derive(Debug, Clone, Subcommand)]
pub enum VaultCommand {
    /// List vaults.
    List,
    /// Create a vault, optionally with its network rules in force from the
    /// start (`--default-action deny --ip-rule 10.0.0.0/8`).
    Create {
        /// Vault name (letters, digits, '-').
        name: String,
        /// Network rules of the new vault.
        #[command(flatten)]
        network: NetworkArgs,
        /// Object id of a user, application or group made Key Vault
        /// Administrator of the new vault (repeat for several).
        #[arg(long = "admin")]
        admins: Vec<String>,
    },
    /// Delete a vault and everything in it.
    Delete {
        /// Vault name.
        name: String,
    },
    /// A vault's network rules.
    #[command(subcommand)]
    Network(NetworkCommand),
}

/// `coffer operator vault network …`.
#[derive(Debug, Clone, Subcommand)]
pub enum NetworkCommand {
    /// Show the vault's rules.
    Show {
        /// Vault name.
        name: String,
    },
    /// Replace the vault's rules.
    Set {
        /// Vault name.
        name: String,
        /// The rules.
        #[command(flatten)]
        network: NetworkArgs,
    },
    /// Remove the vault's rules: every address may reach it again.
    Clear {
        /// Vault name.
        name: String,
    },
}

/// What addresses not in `--ip-rule` get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DefaultActionArg {
    /// Allowed (the rules are then moot).
    Allow,
    /// Refused with 403 ForbiddenByFirewall.
    Deny,
}

/// Who passes from any address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BypassArg {
    /// Nobody.
    None,
    /// Requests with the root token (break-glass).
    Operator,
}

/// Network rules on the command line.
#[derive(Debug, Clone, Default, Args)]
pub struct NetworkArgs {
    /// Allow or deny addresses that no --ip-rule matches.
    #[arg(long, value_enum)]
    pub default_action: Option<DefaultActionArg>,
    /// An allowed IPv4 or IPv6 address or CIDR range; repeat or separate
    /// with commas.
    #[arg(long = "ip-rule", value_delimiter = ',')]
    pub ip_rules: Vec<String>,
    /// Let the root token through from any address.
    #[arg(long, value_enum)]
    pub bypass: Option<BypassArg>,
}

impl NetworkArgs {
    /// The `networkAcls` body, or `None` when no option was given.
    pub fn to_json(&self) -> Option<Value> {
        if self.default_action.is_none() && self.ip_rules.is_empty() && self.bypass.is_none() {
            return None;
        }
        // Rules without a default action mean "only these": Deny.
        let action = match self.default_action.unwrap_or(DefaultActionArg::Deny) {
            DefaultActionArg::Allow => "Allow",
            DefaultActionArg::Deny => "Deny",
        };
        let bypass = match self.bypass.unwrap_or(BypassArg::None) {
            BypassArg::None => "None",
            BypassArg::Operator => "Operator",
        };
        let rules: Vec<Value> = self
            .ip_rules
            .iter()
            .map(|r| json!({ "value": r.trim() }))
            .collect();
        Some(json!({ "defaultAction": action, "bypass": bypass, "ipRules": rules }))
    }
}

/// Runs one vault command.
pub async fn run_vault(
    client: &coffer_client::Client,
    cmd: VaultCommand,
    json: bool,
) -> anyhow::Result<()> {
    let sys = client.sys();
    match cmd {
        VaultCommand::List => {
            let vaults = sys.list_vaults().await?;
            if json {
                return print_json(&json!({ "vaults": vaults }));
            }
            println!("{:<32}  {:<20}  NETWORK", "NAME", "CREATED");
            for v in vaults {
                println!(
                    "{:<32}  {:<20}  {}",
                    v.name,
                    format_time(Some(v.created)),
                    describe(v.network_acls.as_ref())
                );
            }
        }
        VaultCommand::Create {
            name,
            network,
            admins,
        } => {
            let acls = network.to_json();
            let v = if acls.is_none() && admins.is_empty() {
                sys.create_vault(&name).await?
            } else {
                sys.create_vault_with(&name, acls.as_ref(), &admins).await?
            };
            if json {
                return print_json(&v);
            }
            println!(
                "Vault {} created ({}).",
                v.name,
                describe(v.network_acls.as_ref())
            );
        }
        VaultCommand::Delete { name } => {
            sys.delete_vault(&name).await?;
            if !json {
                println!("Vault {name} deleted.");
            }
        }
        VaultCommand::Network(cmd) => {
            let shown = match cmd {
                NetworkCommand::Show { name } => sys.vault_network(&name).await?,
                NetworkCommand::Set { name, network } => {
                    let Some(acls) = network.to_json() else {
                        bail!("give --default-action, --ip-rule or --bypass (or use `clear`)");
                    };
                    sys.set_vault_network(&name, Some(&acls)).await?
                }
                NetworkCommand::Clear { name } => sys.set_vault_network(&name, None).await?,
            };
            if json {
                return print_json(&shown);
            }
            let name = shown["name"].as_str().unwrap_or_default();
            println!("Vault {name}: {}", describe(Some(&shown["networkAcls"])));
        }
    }
    Ok(())
}

/// One line: `open to every address`, or the action, rules and bypass.
fn describe(acls: Option<&Value>) -> String {
    let Some(acls) = acls.filter(|a| !a.is_null()) else {
        return "open to every address".into();
    };
    let rules: Vec<&str> = acls["ipRules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["value"].as_str())
        .collect();
    let action = acls["defaultAction"].as_str().unwrap_or("Allow");
    let bypass = acls["bypass"].as_str().unwrap_or("None");
    if action == "Allow" {
        return format!("open to every address (defaultAction Allow; bypass {bypass})");
    }
    let rules = if rules.is_empty() {
        "no address".to_owned()
    } else {
        rules.join(", ")
    };
    format!("only {rules}; bypass {bypass}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: VaultCommand,
    }

    fn parse(args: &[&str]) -> VaultCommand {
        Cli::try_parse_from(std::iter::once("vault").chain(args.iter().copied()))
            .unwrap()
            .cmd
    }

    #[test]
    fn network_options_become_key_vault_network_acls() {
        let VaultCommand::Create {
            name,
            network,
            admins,
        } = parse(&[
            "create",
            "prod",
            "--ip-rule",
            "10.0.0.0/8,::1",
            "--ip-rule",
            "192.0.2.7",
            "--bypass",
            "operator",
            "--admin",
            "oid-1",
        ])
        else {
            panic!("not a create");
        };
        assert_eq!((name.as_str(), admins), ("prod", vec!["oid-1".to_owned()]));
        let acls = network.to_json().unwrap();
        assert_eq!(acls["defaultAction"], "Deny");
        assert_eq!(acls["bypass"], "Operator");
        assert_eq!(acls["ipRules"].as_array().unwrap().len(), 3);
        assert_eq!(acls["ipRules"][1]["value"], "::1");
        let VaultCommand::Create { network, .. } = parse(&["create", "dev"]) else {
            panic!("not a create");
        };
        assert!(network.to_json().is_none());
        assert!(matches!(
            parse(&["network", "set", "prod", "--default-action", "allow"]),
            VaultCommand::Network(NetworkCommand::Set { .. })
        ));
        assert!(describe(Some(&acls)).contains("only 10.0.0.0/8, ::1, 192.0.2.7"));
        assert_eq!(describe(None), "open to every address");
    }
}
