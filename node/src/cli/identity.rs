//! `coffer identity …`: the tenant's applications, users and groups, their
//! credentials, and the token-signing key, through `/v1/sys/identity/…`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use coffer_client::{Request, Response};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::{print_json, print_rows, ClientArgs};

/// `coffer identity …`.
#[derive(Debug, Clone, Subcommand)]
pub enum IdentityCommand {
    /// Show the tenant (its GUID is the `tenant_id` clients use).
    Tenant,
    /// Applications / service principals.
    #[command(subcommand)]
    App(AppCommand),
    /// Users.
    #[command(subcommand)]
    User(UserCommand),
    /// Groups.
    #[command(subcommand)]
    Group(GroupCommand),
    /// The token-signing keys.
    #[command(subcommand)]
    SigningKey(SigningKeyCommand),
}

/// The lifecycle every principal kind shares.
#[derive(Debug, Clone, Subcommand)]
pub enum Lifecycle {
    /// List them.
    List,
    /// Show one (by name or object id; apps also by client id).
    Show {
        /// Name or id.
        id: String,
    },
    /// Enable one.
    Enable {
        /// Name or id.
        id: String,
    },
    /// Disable one: it cannot sign in and its tokens stop working.
    Disable {
        /// Name or id.
        id: String,
    },
    /// Delete one.
    Delete {
        /// Name or id.
        id: String,
    },
    /// Lift a lockout after failed sign-ins (it also ends by itself).
    Unlock {
        /// Name or id.
        id: String,
    },
}

/// `coffer identity app …`.
#[derive(Debug, Clone, Subcommand)]
pub enum AppCommand {
    /// Create an application (prints its client id).
    Create {
        /// Unique name.
        name: String,
        /// Bind its tokens to an address range (IPv4/IPv6 address or CIDR;
        /// repeat for several): they are issued and accepted only from
        /// inside (Vault's `token_bound_cidrs`).
        #[arg(long = "bound-cidr", value_name = "CIDR")]
        bound_cidrs: Vec<String>,
    },
    /// Replace an application's address binding (no `--cidr`: unbound).
    BoundCidrs {
        /// App name or id.
        app: String,
        /// An address range (repeat for several).
        #[arg(long = "cidr", value_name = "CIDR")]
        cidrs: Vec<String>,
    },
    /// Client secrets.
    #[command(subcommand)]
    Secret(AppSecretCommand),
    /// Certificates.
    #[command(subcommand)]
    Cert(AppCertCommand),
    /// Federated credentials (workload identity).
    #[command(subcommand)]
    Federated(FederatedCommand),
    #[command(flatten)]
    Common(Lifecycle),
}

/// `coffer identity app secret …`.
#[derive(Debug, Clone, Subcommand)]
pub enum AppSecretCommand {
    /// Add a client secret; it is printed this once.
    Add {
        /// App name or id.
        app: String,
        /// Validity in days (default: no expiry).
        #[arg(long)]
        valid_days: Option<u64>,
    },
    /// Remove a client secret by its key id.
    Remove {
        /// App name or id.
        app: String,
        /// Key id of the secret.
        secret_id: String,
    },
}

/// `coffer identity app cert …`.
#[derive(Debug, Clone, Subcommand)]
pub enum AppCertCommand {
    /// Trust a certificate (PEM file) for client assertions.
    Add {
        /// App name or id.
        app: String,
        /// PEM certificate file (the public part only).
        #[arg(long)]
        cert: PathBuf,
    },
    /// Remove a certificate by thumbprint.
    Remove {
        /// App name or id.
        app: String,
        /// SHA-1 thumbprint (hex).
        thumbprint: String,
    },
}

/// `coffer identity app federated …`.
#[derive(Debug, Clone, Subcommand)]
pub enum FederatedCommand {
    /// Trust tokens of an external issuer for one subject.
    Add {
        /// App name or id.
        app: String,
        /// Name of this credential.
        #[arg(long)]
        name: String,
        /// The issuer (`iss`).
        #[arg(long)]
        issuer: String,
        /// The subject (`sub`), e.g. `system:serviceaccount:ns:sa`.
        #[arg(long)]
        subject: String,
        /// The audience (`aud`).
        #[arg(long, default_value = "api://AzureADTokenExchange")]
        audience: String,
        /// The issuer's JWKS document (JSON file).
        #[arg(long)]
        jwks: PathBuf,
    },
}

/// `coffer identity user …`.
#[derive(Debug, Clone, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from stdin (no echo on a
    /// terminal).
    Create {
        /// Sign-in name (e.g. `alice@example.com`).
        name: String,
    },
    /// Passwords.
    #[command(subcommand)]
    Password(PasswordCommand),
    /// Second factor.
    #[command(subcommand)]
    Mfa(MfaCommand),
    #[command(flatten)]
    Common(Lifecycle),
}

/// `coffer identity user password …`.
#[derive(Debug, Clone, Subcommand)]
pub enum PasswordCommand {
    /// Set a new password (read from stdin).
    Reset {
        /// Name or id.
        id: String,
    },
}

/// `coffer identity user mfa …`.
#[derive(Debug, Clone, Subcommand)]
pub enum MfaCommand {
    /// Enrol TOTP: prints the `otpauth://` URI and a QR code to scan.
    Enroll {
        /// Name or id.
        id: String,
    },
}

/// `coffer identity group …`.
#[derive(Debug, Clone, Subcommand)]
pub enum GroupCommand {
    /// Create a group.
    Create {
        /// Unique name.
        name: String,
        /// Member object id; repeatable.
        #[arg(long = "member")]
        members: Vec<String>,
    },
    /// Add a member (a principal's object id).
    AddMember {
        /// Group name or id.
        group: String,
        /// The member's object id.
        member: String,
    },
    /// Remove a member.
    RemoveMember {
        /// Group name or id.
        group: String,
        /// The member's object id.
        member: String,
    },
    #[command(flatten)]
    Common(Lifecycle),
}

/// `coffer identity signing-key …`.
#[derive(Debug, Clone, Subcommand)]
pub enum SigningKeyCommand {
    /// List the public keys (the JWKS).
    List,
    /// Add a new key and make it current; old keys stay until their
    /// tokens expire.
    Rotate,
}

const BASE: &str = "/v1/sys/identity";

/// Runs one identity command.
pub async fn run_identity(args: &ClientArgs, cmd: IdentityCommand) -> anyhow::Result<()> {
    let client = args.client()?;
    let call = |req: Request| {
        let client = &client;
        async move {
            let resp: Response = client.send(req).await?.error_for_status()?;
            if resp.body.is_empty() {
                return Ok::<Value, anyhow::Error>(Value::Null);
            }
            Ok(resp.json::<Value>()?)
        }
    };
    let (value, shown) = match cmd {
        IdentityCommand::Tenant => (
            call(Request::get(format!("{BASE}/tenant"))).await?,
            Shown::Tenant,
        ),
        IdentityCommand::App(AppCommand::Create { name, bound_cidrs }) => {
            let req = Request::post(format!("{BASE}/apps"))
                .json(&json!({ "name": name, "bound_cidrs": bound_cidrs }))?;
            (call(req).await?, Shown::Principal)
        }
        IdentityCommand::App(AppCommand::BoundCidrs { app, cidrs }) => {
            let req = Request::put(format!("{BASE}/apps/{}/bound-cidrs", seg(&app)))
                .json(&json!({ "bound_cidrs": cidrs }))?;
            (call(req).await?, Shown::Principal)
        }
        IdentityCommand::App(AppCommand::Common(c)) => lifecycle(&call, "apps", c).await?,
        IdentityCommand::App(AppCommand::Secret(AppSecretCommand::Add { app, valid_days })) => {
            let req = Request::post(format!("{BASE}/apps/{}/secrets", seg(&app)))
                .json(&json!({ "valid_days": valid_days }))?;
            (call(req).await?, Shown::NewSecret)
        }
        IdentityCommand::App(AppCommand::Secret(AppSecretCommand::Remove { app, secret_id })) => {
            let path = format!("{BASE}/apps/{}/secrets/{}", seg(&app), seg(&secret_id));
            (call(Request::delete(path)).await?, Shown::Done)
        }
        IdentityCommand::App(AppCommand::Cert(AppCertCommand::Add { app, cert })) => {
            let pem = std::fs::read_to_string(&cert)
                .with_context(|| format!("reading {}", cert.display()))?;
            let req = Request::post(format!("{BASE}/apps/{}/certificates", seg(&app)))
                .json(&json!({ "certificate": pem }))?;
            (call(req).await?, Shown::Raw)
        }
        IdentityCommand::App(AppCommand::Cert(AppCertCommand::Remove { app, thumbprint })) => {
            let path = format!(
                "{BASE}/apps/{}/certificates/{}",
                seg(&app),
                seg(&thumbprint)
            );
            (call(Request::delete(path)).await?, Shown::Done)
        }
        IdentityCommand::App(AppCommand::Federated(FederatedCommand::Add {
            app,
            name,
            issuer,
            subject,
            audience,
            jwks,
        })) => {
            let doc: Value = serde_json::from_slice(
                &std::fs::read(&jwks).with_context(|| format!("reading {}", jwks.display()))?,
            )
            .context("the JWKS file is not JSON")?;
            let req =
                Request::post(format!("{BASE}/apps/{}/federated", seg(&app))).json(&json!({
                    "name": name, "issuer": issuer, "subject": subject,
                    "audience": audience, "jwks": doc,
                }))?;
            (call(req).await?, Shown::Done)
        }
        IdentityCommand::User(UserCommand::Create { name }) => {
            let password = read_password("Password for the new user: ")?;
            let req = Request::post(format!("{BASE}/users"))
                .json(&json!({ "name": name, "password": password.as_str() }))?;
            (call(req).await?, Shown::Principal)
        }
        IdentityCommand::User(UserCommand::Password(PasswordCommand::Reset { id })) => {
            let password = read_password("New password: ")?;
            let req = Request::post(format!("{BASE}/users/{}/password", seg(&id)))
                .json(&json!({ "password": password.as_str() }))?;
            (call(req).await?, Shown::Done)
        }
        IdentityCommand::User(UserCommand::Mfa(MfaCommand::Enroll { id })) => {
            let req = Request::post(format!("{BASE}/users/{}/mfa", seg(&id)));
            (call(req).await?, Shown::Otpauth)
        }
        IdentityCommand::User(UserCommand::Common(c)) => lifecycle(&call, "users", c).await?,
        IdentityCommand::Group(GroupCommand::Create { name, members }) => {
            let req = Request::post(format!("{BASE}/groups"))
                .json(&json!({ "name": name, "members": members }))?;
            (call(req).await?, Shown::Principal)
        }
        IdentityCommand::Group(GroupCommand::AddMember { group, member }) => {
            let path = format!("{BASE}/groups/{}/members/{}", seg(&group), seg(&member));
            (call(Request::put(path)).await?, Shown::Principal)
        }
        IdentityCommand::Group(GroupCommand::RemoveMember { group, member }) => {
            let path = format!("{BASE}/groups/{}/members/{}", seg(&group), seg(&member));
            (call(Request::delete(path)).await?, Shown::Principal)
        }
        IdentityCommand::Group(GroupCommand::Common(c)) => lifecycle(&call, "groups", c).await?,
        IdentityCommand::SigningKey(SigningKeyCommand::List) => (
            call(Request::get(format!("{BASE}/signing-keys"))).await?,
            Shown::Raw,
        ),
        IdentityCommand::SigningKey(SigningKeyCommand::Rotate) => (
            call(Request::post(format!("{BASE}/signing-keys/rotate"))).await?,
            Shown::Raw,
        ),
    };
    if args.json_output() {
        return print_json(&value);
    }
    show(&value, shown)
}

/// How a result is printed as text.
#[derive(Clone, Copy)]
enum Shown {
    Tenant,
    Principal,
    List,
    NewSecret,
    Otpauth,
    Raw,
    Done,
}

async fn lifecycle<F, Fut>(call: &F, kind: &str, cmd: Lifecycle) -> anyhow::Result<(Value, Shown)>
where
    F: Fn(Request) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Value>>,
{
    let one = |id: &str| format!("{BASE}/{kind}/{}", seg(id));
    Ok(match cmd {
        Lifecycle::List => (
            call(Request::get(format!("{BASE}/{kind}"))).await?,
            Shown::List,
        ),
        Lifecycle::Show { id } => (call(Request::get(one(&id))).await?, Shown::Principal),
        Lifecycle::Enable { id } => (
            call(Request::post(format!("{}/enable", one(&id)))).await?,
            Shown::Principal,
        ),
        Lifecycle::Disable { id } => (
            call(Request::post(format!("{}/disable", one(&id)))).await?,
            Shown::Principal,
        ),
        Lifecycle::Delete { id } => (call(Request::delete(one(&id))).await?, Shown::Done),
        Lifecycle::Unlock { id } => (
            call(Request::post(format!("{}/unlock", one(&id)))).await?,
            Shown::Done,
        ),
    })
}

/// A path segment: names may contain `@` and other characters.
fn seg(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

fn text(v: &Value, key: &str) -> String {
    match &v[key] {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn show(v: &Value, shown: Shown) -> anyhow::Result<()> {
    match shown {
        Shown::Tenant => print_rows(&[("tenant id", text(v, "id")), ("name", text(v, "name"))]),
        Shown::Principal => {
            let mut rows = vec![
                ("kind", text(v, "kind")),
                ("name", text(v, "name")),
                ("object id", text(v, "object_id")),
                ("enabled", text(v, "enabled")),
            ];
            if let Some(app) = v.get("app") {
                rows.push(("client id", text(app, "client_id")));
                let n = |k: &str| app[k].as_array().map_or(0, Vec::len).to_string();
                rows.push(("secrets", n("secrets")));
                rows.push(("certificates", n("certificates")));
                rows.push(("federated", n("federated")));
                let bound: Vec<&str> = app["bound_cidrs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let bound = if bound.is_empty() {
                    "(any address)".to_owned()
                } else {
                    bound.join(", ")
                };
                rows.push(("bound cidrs", bound));
            }
            if let Some(user) = v.get("user") {
                rows.push(("mfa", user["totp"].is_object().to_string()));
            }
            if let Some(group) = v.get("group") {
                let members: Vec<&str> = group["members"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                rows.push(("members", members.join(", ")));
            }
            print_rows(&rows);
        }
        Shown::List => {
            for p in v["value"].as_array().into_iter().flatten() {
                let id = p["app"]["client_id"].as_str().unwrap_or("");
                println!(
                    "{}  {}  {}{}",
                    text(p, "object_id"),
                    text(p, "name"),
                    if p["enabled"] == Value::Bool(true) {
                        "enabled"
                    } else {
                        "disabled"
                    },
                    if id.is_empty() {
                        String::new()
                    } else {
                        format!("  client_id={id}")
                    }
                );
            }
        }
        Shown::NewSecret => {
            print_rows(&[
                ("secret id", text(v, "id")),
                ("secret", text(v, "secret")),
                ("expires", super::format_time(v["expires"].as_i64())),
            ]);
            eprintln!("The secret is shown only now; store it safely.");
        }
        Shown::Otpauth => {
            let uri = text(v, "otpauth_uri");
            println!("{uri}");
            match qrcode::QrCode::new(uri.as_bytes()) {
                Ok(code) => println!(
                    "{}",
                    code.render::<qrcode::render::unicode::Dense1x2>()
                        .quiet_zone(true)
                        .build()
                ),
                Err(e) => eprintln!("(no QR code: {e})"),
            }
            eprintln!("Scan it with an authenticator app; it is shown only now.");
        }
        Shown::Raw => print_json(v)?,
        Shown::Done => println!("ok"),
    }
    Ok(())
}

/// Reads a password from stdin (no echo on a terminal), without the
/// line end.
fn read_password(prompt: &str) -> anyhow::Result<Zeroizing<String>> {
    let line = super::operator::read_hidden(prompt, "password")?;
    Ok(Zeroizing::new(
        line.trim_end_matches(['\n', '\r']).to_owned(),
    ))
}
