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
        /// The assignment counts only for requests from this IPv4 or IPv6
        /// address or CIDR range (repeat for several; none: any address).
        #[arg(long = "source-cidr", value_name = "CIDR")]
        source_cidrs: Vec<String>,
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
            source_cidrs,
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
            let mut body = json!({"properties": {
                "roleDefinitionId": id, "principalId": principal, "requireMfa": require_mfa}});
            if !source_cidrs.is_empty() {
                body["properties"]["sourceCidrs"] = json!(source_cidrs);
            }
            let path = format!("{}/{name}?{API}", at(&scope, "roleAssignments"));
            let made = call(Request::put(path.clone()).json(&body)?).await?;
            // A server that predates the condition ignores the field and
            // stores an assignment valid from anywhere: take it back.
            if !source_cidrs.is_empty() && made["properties"]["sourceCidrs"].is_null() {
                let undone = call(Request::delete(path)).await;
                anyhow::bail!(
                    "the server does not support --source-cidr: it stored assignment {name} without the condition ({})",
                    match undone {
                        Ok(_) => "removed again".to_owned(),
                        Err(e) => format!("removing it failed: {e}; remove it with `coffer role unassign {name} --scope {scope}`"),
                    }
                );
            }
            made
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
            "{}  {}  {}  {}{}",
            item["name"].as_str().unwrap_or("-"),
            p["scope"].as_str().unwrap_or("-"),
            p["principalId"].as_str().unwrap_or("-"),
            p["roleDefinitionId"]
                .as_str()
                .and_then(|r| r.rsplit('/').next())
                .unwrap_or("-"),
            conditions(p),
        );
    }
}

/// An assignment's Coffer conditions, for its line: `  [mfa]`,
/// `  [from 10.0.0.0/8,2001:db8::/32]`, both, or nothing.
fn conditions(p: &Value) -> String {
    let mut out = String::new();
    if p["requireMfa"].as_bool() == Some(true) {
        out.push_str("  [mfa]");
    }
    let cidrs: Vec<&str> = p["sourceCidrs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !cidrs.is_empty() {
        out.push_str(&format!("  [from {}]", cidrs.join(",")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::conditions;
    use serde_json::json;

    #[test]
    fn assignment_lines_show_their_conditions() {
        assert_eq!(conditions(&json!({"scope": "/"})), "");
        assert_eq!(conditions(&json!({"requireMfa": true})), "  [mfa]");
        assert_eq!(
            conditions(
                &json!({"requireMfa": true, "sourceCidrs": ["10.0.0.0/8", "2001:db8::/32"]})
            ),
            "  [mfa]  [from 10.0.0.0/8,2001:db8::/32]"
        );
    }
}
