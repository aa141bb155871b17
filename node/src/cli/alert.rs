//! `coffer alert rule|receiver|firing …`: alert configuration and firings
//! through `/v1/sys/alerts/…`. Receiver secrets are read from files, never
//! from the command line (where `ps` would show them).

use std::path::PathBuf;

use anyhow::Context as _;
use coffer_client::{Client, Request};
use serde_json::{json, Map, Value};

use super::{print_json, ClientArgs};

/// `coffer alert …`.
#[derive(Debug, clap::Subcommand)]
pub enum AlertCommand {
    /// Alert rules: conditions over the audit trail.
    #[command(subcommand)]
    Rule(RuleCommand),
    /// Receivers: webhook, email, SMS gateway, syslog, and Event Grid
    /// subscriptions to lifecycle events (`--type event-grid`).
    #[command(subcommand)]
    Receiver(ReceiverCommand),
    /// Alerts that fired, with the delivery state of each notification.
    #[command(subcommand)]
    Firing(FiringCommand),
}

/// `coffer alert rule …`.
#[derive(Debug, clap::Subcommand)]
pub enum RuleCommand {
    /// Create or replace a rule.
    Create(Box<RuleSpec>),
    /// List the rules.
    List,
    /// Show one rule.
    Show {
        /// Rule name.
        name: String,
    },
    /// Dry run: what the rule counts in its window now, per group.
    Test {
        /// Rule name.
        name: String,
    },
    /// Delete a rule.
    Delete {
        /// Rule name.
        name: String,
    },
}

/// `coffer alert rule create` arguments.
#[derive(Debug, clap::Args)]
pub struct RuleSpec {
    /// Rule name.
    name: String,
    /// What is counted: denied, purge, root-token, any (audit records);
    /// first-access (a principal's first read or use of a secret or key,
    /// once per pair); error-rate (percentage of 5xx among the window's
    /// requests reaches --threshold); slow (requests slower than
    /// --slower-than-ms); or a state: expiring (objects expiring within
    /// --within seconds), leader-changes (Raft elections within the
    /// window), sealed (a member answers its seal status as sealed).
    #[arg(long)]
    signal: String,
    /// first-access: pairs seen in the first N seconds after the rule is
    /// created are remembered without alerting.
    #[arg(long)]
    learn_secs: Option<u64>,
    /// first-access: pairs remembered at most (default 50000; the oldest
    /// is forgotten past it).
    #[arg(long)]
    max_pairs: Option<u32>,
    /// error-rate: requests the window needs before its rate counts
    /// (default 10).
    #[arg(long)]
    min_requests: Option<u32>,
    /// slow: a request counts when it took longer than this.
    #[arg(long)]
    slower_than_ms: Option<u64>,
    /// Count only records outside these hours, `HH:MM-HH:MM` (with --days
    /// and --tz-offset).
    #[arg(long)]
    outside_hours: Option<String>,
    /// With --outside-hours: the working days (`mon-fri`; default every
    /// day); records on other days always count.
    #[arg(long, requires = "outside_hours")]
    days: Option<String>,
    /// With --outside-hours: the local time's fixed UTC offset (`+01:00`;
    /// default +00:00). Daylight saving time is not followed.
    #[arg(long, requires = "outside_hours", allow_hyphen_values = true)]
    tz_offset: Option<String>,
    /// expiring: seconds ahead an expiry counts (default 7 days).
    #[arg(long)]
    within: Option<u64>,
    /// One window per: none, principal, ip, vault, operation,
    /// principal-object (first-access always groups by principal-object).
    #[arg(long, default_value = "none")]
    group_by: String,
    /// Matching records within the window that fire the rule
    /// (error-rate: the percentage of 5xx answers).
    #[arg(long, default_value_t = 1)]
    threshold: u32,
    /// Window length in seconds.
    #[arg(long, default_value_t = 60)]
    window: u64,
    /// Receiver to notify (repeat for several).
    #[arg(long = "receiver", required = true)]
    receivers: Vec<String>,
    /// 0 (critical) … 4.
    #[arg(long, default_value_t = 2)]
    severity: u8,
    /// Seconds before the same group may fire again.
    #[arg(long, default_value_t = 300)]
    throttle: u64,
    /// Shown in notifications.
    #[arg(long, default_value = "")]
    description: String,
    /// Only this operation (`SecretGet`, …).
    #[arg(long)]
    operation: Option<String>,
    /// Only this status (`403`) or class (`4xx`).
    #[arg(long)]
    status: Option<String>,
    /// Only this principal (oid, appid, upn, `root`).
    #[arg(long)]
    principal: Option<String>,
    /// Only this vault.
    #[arg(long)]
    vault: Option<String>,
    /// Create the rule disabled.
    #[arg(long)]
    disabled: bool,
}

/// `coffer alert receiver …`.
#[derive(Debug, clap::Subcommand)]
pub enum ReceiverCommand {
    /// Create or replace a receiver.
    Create(Box<ReceiverSpec>),
    /// List the receivers (secrets redacted).
    List,
    /// Show one receiver (secrets redacted).
    Show {
        /// Receiver name.
        name: String,
    },
    /// Send a test notification now.
    Test {
        /// Receiver name.
        name: String,
    },
    /// Delete a receiver (refused while a rule names it).
    Delete {
        /// Receiver name.
        name: String,
    },
}

/// `coffer alert receiver create` arguments.
#[derive(Debug, clap::Args)]
pub struct ReceiverSpec {
    /// Receiver name.
    name: String,
    /// webhook, email, sms, syslog or event-grid.
    #[arg(long = "type")]
    kind: String,
    /// Webhook, SMS gateway or Event Grid subscriber URL.
    #[arg(long)]
    url: Option<String>,
    /// File holding the secret: the webhook signing key, the SMTP
    /// password, or the SMS gateway's Authorization header value.
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// PEM CA certificates a webhook's TLS certificate may chain to.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// SMTP host.
    #[arg(long)]
    host: Option<String>,
    /// SMTP port.
    #[arg(long)]
    port: Option<u16>,
    /// SMTP security: starttls, tls, none.
    #[arg(long)]
    security: Option<String>,
    /// SMTP user.
    #[arg(long)]
    username: Option<String>,
    /// Sender address or number.
    #[arg(long)]
    from: Option<String>,
    /// Recipient address or number (repeat for several emails).
    #[arg(long = "to")]
    to: Vec<String>,
    /// SMS body format: form or json.
    #[arg(long)]
    format: Option<String>,
    /// Syslog target: udp://host:port, tcp://host:port, unix:///path.
    #[arg(long)]
    target: Option<String>,
    /// Event Grid: an event type delivered (repeat; none: every type),
    /// e.g. Microsoft.KeyVault.SecretNearExpiry.
    #[arg(long = "event-type")]
    event_types: Vec<String>,
    /// Event Grid: a vault whose events are delivered (repeat; none: all).
    #[arg(long = "vault")]
    vaults: Vec<String>,
    /// Email: also mail certificate contacts when a certificate's
    /// EmailContacts lifetime action triggers.
    #[arg(long)]
    certificate_contacts: bool,
}

/// `coffer alert firing …`.
#[derive(Debug, clap::Subcommand)]
pub enum FiringCommand {
    /// Firings, newest first.
    List {
        /// Only this rule's.
        #[arg(long)]
        rule: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One firing with its deliveries.
    Show {
        /// Firing id.
        id: String,
    },
}

/// Runs `coffer alert …` (answers print as JSON).
pub async fn run_alert(args: &ClientArgs, cmd: AlertCommand) -> anyhow::Result<()> {
    let client = args.client()?;
    let value = match cmd {
        AlertCommand::Rule(c) => rule(&client, c).await?,
        AlertCommand::Receiver(c) => receiver(&client, c).await?,
        AlertCommand::Firing(FiringCommand::List { rule, limit }) => {
            let mut path = format!("/v1/sys/alerts/firings?limit={limit}");
            if let Some(r) = rule {
                path.push_str(&format!("&rule={}", encode(&r)));
            }
            call(&client, Request::get(path)).await?
        }
        AlertCommand::Firing(FiringCommand::Show { id }) => {
            call(
                &client,
                Request::get(format!("/v1/sys/alerts/firings/{}", encode(&id))),
            )
            .await?
        }
    };
    print_json(&value)
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn call(client: &Client, req: Request) -> anyhow::Result<Value> {
    let resp = client.send(req).await?.error_for_status()?;
    if resp.body.is_empty() {
        return Ok(json!({ "ok": true }));
    }
    Ok(resp.json::<Value>()?)
}

async fn rule(client: &Client, cmd: RuleCommand) -> anyhow::Result<Value> {
    let at = |name: &str| format!("/v1/sys/alerts/rules/{}", encode(name));
    match cmd {
        RuleCommand::Create(spec) => {
            let RuleSpec {
                name,
                signal,
                within,
                group_by,
                threshold,
                window,
                receivers,
                severity,
                throttle,
                description,
                operation,
                status,
                principal,
                vault,
                disabled,
                learn_secs,
                max_pairs,
                min_requests,
                slower_than_ms,
                outside_hours,
                days,
                tz_offset,
            } = *spec;
            let filter = json!({
                "operation": operation, "status": status,
                "principal": principal, "vault": vault,
            });
            let filter: Map<String, Value> = filter
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(_, v)| !v.is_null())
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            let hours = outside_hours.map(|hours| {
                let mut h = json!({ "hours": hours });
                if let Some(days) = days {
                    h["days"] = days.into();
                }
                if let Some(tz) = tz_offset {
                    h["tz_offset"] = tz.into();
                }
                h
            });
            let mut condition = json!({
                "signal": signal, "group_by": group_by, "threshold": threshold,
                "window_secs": window, "filter": filter,
            });
            for (field, value) in [
                ("within_secs", within.map(Value::from)),
                ("learn_secs", learn_secs.map(Value::from)),
                ("max_pairs", max_pairs.map(Value::from)),
                ("min_requests", min_requests.map(Value::from)),
                ("slower_than_ms", slower_than_ms.map(Value::from)),
                ("outside_hours", hours),
            ] {
                if let Some(v) = value {
                    condition[field] = v;
                }
            }
            let body = json!({
                "description": description,
                "severity": severity,
                "enabled": !disabled,
                "condition": condition,
                "receivers": receivers,
                "throttle_secs": throttle,
            });
            call(client, Request::put(at(&name)).json(&body)?).await
        }
        RuleCommand::List => call(client, Request::get("/v1/sys/alerts/rules")).await,
        RuleCommand::Show { name } => call(client, Request::get(at(&name))).await,
        RuleCommand::Test { name } => {
            call(client, Request::post(format!("{}/test", at(&name)))).await
        }
        RuleCommand::Delete { name } => call(client, Request::delete(at(&name))).await,
    }
}

async fn receiver(client: &Client, cmd: ReceiverCommand) -> anyhow::Result<Value> {
    let at = |name: &str| format!("/v1/sys/alerts/receivers/{}", encode(name));
    match cmd {
        ReceiverCommand::Create(spec) => {
            let ReceiverSpec {
                name,
                kind,
                url,
                secret_file,
                ca_file,
                host,
                port,
                security,
                username,
                from,
                to,
                format,
                target,
                event_types,
                vaults,
                certificate_contacts,
            } = *spec;
            let secret = secret_file
                .map(|p| {
                    std::fs::read_to_string(&p)
                        .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
                        .with_context(|| format!("reading {}", p.display()))
                })
                .transpose()?;
            let ca = ca_file
                .map(|p| {
                    std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
                })
                .transpose()?;
            let mut body = Map::new();
            body.insert("type".into(), json!(kind));
            let mut set = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    body.insert(k.into(), v);
                }
            };
            match kind.as_str() {
                "webhook" => {
                    set("url", url.map(Value::from));
                    set("secret", secret.map(Value::from));
                    set("ca_pem", ca.map(Value::from));
                }
                "email" => {
                    set("host", host.map(Value::from));
                    set("port", port.map(Value::from));
                    set("security", security.map(Value::from));
                    set("username", username.map(Value::from));
                    set("password", secret.map(Value::from));
                    set("from", from.map(Value::from));
                    set("to", Some(json!(to)));
                    set("certificate_contacts", Some(json!(certificate_contacts)));
                }
                "event-grid" => {
                    set("url", url.map(Value::from));
                    set("event_types", Some(json!(event_types)));
                    set("vaults", Some(json!(vaults)));
                    set("ca_pem", ca.map(Value::from));
                }
                "sms" => {
                    set("url", url.map(Value::from));
                    set("format", format.map(Value::from));
                    set("to", to.first().cloned().map(Value::from));
                    set("from", from.map(Value::from));
                    set("authorization", secret.map(Value::from));
                }
                "syslog" => set("target", target.map(Value::from)),
                other => anyhow::bail!(
                    "--type must be webhook, email, sms, syslog or event-grid, not {other}"
                ),
            }
            call(client, Request::put(at(&name)).json(&body)?).await
        }
        ReceiverCommand::List => call(client, Request::get("/v1/sys/alerts/receivers")).await,
        ReceiverCommand::Show { name } => call(client, Request::get(at(&name))).await,
        ReceiverCommand::Test { name } => {
            call(client, Request::post(format!("{}/test", at(&name)))).await
        }
        ReceiverCommand::Delete { name } => call(client, Request::delete(at(&name))).await,
    }
}
