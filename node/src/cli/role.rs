//! `coffer role …`: role definitions and assignments of the vault the
//! address serves, through the same administration API the Azure SDK uses
//! (`/{scope}/providers/Microsoft.Authorization/…`).

use clap::Subcommand;
use coffer_client::{Request, Response};
use serde_json::{json, Value};

use super::{print_json, ClientArgs};

const API: &str = "api-version=7.4";
const PROVIDER: &str = "providers/Microsoft.Authorization";

/// Role subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum RoleCommand {
    /// List the role definitions (built-in and custom).
    Definitions,
    /// List role assignments related to a scope.
    List {
        /// Scope: `/`, `/keys`, `/secrets/{name}`, …
        #[arg(long, default_value = "/")]
        scope: String,
        /// Only this principal's assignments (object id).
        #[arg(long)]
        principal: Option<String>,
    },
    /// Assign a role (by name, e.g. "Key Vault Secrets User", or GUID) to a
    /// principal (object id) at a scope.
    Assign {
        /// Role name or definition GUID.
        role: String,
        /// Object id of the user, application or group.
        principal: String,
        /// Scope: `/`, `/keys`, `/secrets/{name}`, …
        #[arg(long, default_value = "/")]
        scope: String,
        /// The assignment counts only for tokens with a second factor.
        #[arg(long)]
        require_mfa: bool,
    },
    /// Remove a role assignment by name.
    Unassign {
        /// Assignment name.
        name: String,
        /// Scope the assignment was made at.
        #[arg(long, default_value = "/")]
        scope: String,
    },
}

/// `/{scope}/providers/Microsoft.Authorization/{what}` (scope `/`: none).
fn at(scope: &str, what: &str) -> String {
    let scope = scope.trim_matches('/');
    if scope.is_empty() {
        format!("/{PROVIDER}/{what}")
    } else {
        format!("/{scope}/{PROVIDER}/{what}")
    }
}

/// Runs a `coffer role` subcommand.
pub async fn run_role(args: &ClientArgs, cmd: RoleCommand) -> anyhow::Result<()> {
    let client = args.client()?;
    let call = |req: Request| {
        let client = &client;
        async move {
            let resp: Response = client.send(req).await?.error_for_status()?;
            Ok::<Value, anyhow::Error>(resp.json::<Value>()?)
        }
    };
    let definitions = || {
        call(Request::get(format!(
            "{}?{API}",
            at("/", "roleDefinitions")
        )))
    };
    let value = match cmd {
        RoleCommand::Definitions => definitions().await?,
        RoleCommand::List { scope, principal } => {
            let mut path = format!("{}?{API}", at(&scope, "roleAssignments"));
            if let Some(p) = principal {
                let filter = format!("principalId eq '{p}'");
                path.push_str("&$filter=");
                path.push_str(
                    &url::form_urlencoded::byte_serialize(filter.as_bytes()).collect::<String>(),
                );
            }
            call(Request::get(path)).await?
        }
        RoleCommand::Assign {
            role,
            principal,
            scope,
            require_mfa,
        } => {
            let defs = definitions().await?;
            let id = defs["value"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|d| {
                    d["name"]
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case(&role))
                        || d["properties"]["roleName"]
                            .as_str()
                            .is_some_and(|n| n.eq_ignore_ascii_case(&role))
                })
                .and_then(|d| d["id"].as_str())
                .ok_or_else(|| anyhow::anyhow!("no role named {role:?}"))?
                .to_owned();
            let name = uuid::Uuid::new_v4();
            let body = json!({"properties": {
                "roleDefinitionId": id, "principalId": principal, "requireMfa": require_mfa}});
            call(
                Request::put(format!("{}/{name}?{API}", at(&scope, "roleAssignments")))
                    .json(&body)?,
            )
            .await?
        }
        RoleCommand::Unassign { name, scope } => {
            call(Request::delete(format!(
                "{}/{name}?{API}",
                at(&scope, "roleAssignments")
            )))
            .await?
        }
    };
    if args.json_output() {
        return print_json(&value);
    }
    match value.get("value").and_then(Value::as_array) {
        Some(items) => {
            for item in items {
                print_item(item);
            }
        }
        None => print_item(&value),
    }
    Ok(())
}

/// One line per definition or assignment.
fn print_item(item: &Value) {
    let p = &item["properties"];
    if let Some(role) = p["roleName"].as_str() {
        println!("{}  {role}", item["name"].as_str().unwrap_or("-"));
    } else {
        println!(
            "{}  {}  {}  {}",
            item["name"].as_str().unwrap_or("-"),
            p["scope"].as_str().unwrap_or("-"),
            p["principalId"].as_str().unwrap_or("-"),
            p["roleDefinitionId"]
                .as_str()
                .and_then(|r| r.rsplit('/').next())
                .unwrap_or("-"),
        );
    }
}
