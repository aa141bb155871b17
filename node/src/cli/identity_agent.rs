//! `coffer agent`: a node-local process on an application host that serves
//! the App Service managed-identity protocol (`IDENTITY_ENDPOINT` on
//! 127.0.0.1 + `IDENTITY_HEADER`), so `ManagedIdentityCredential()` works
//! unchanged. The agent authenticates itself to the cluster with the
//! host's machine certificate (a certificate credential of one Coffer
//! application, the machine's identity); the workloads hold no secret of
//! their own — only the per-agent header value, readable by them alone.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use coffer_client::{Client, Request};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use super::ClientArgs;
use crate::engine::identity::signing::compose_rs256;

/// Renew a cached token this long before it expires (as the SDKs do).
const RENEW_BEFORE_SECS: u64 = 300;
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// `coffer agent` arguments (the cluster comes from `--addr`/`--ca-cert`).
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// Tenant id (GUID) or name.
    #[arg(long, env = "COFFER_TENANT")]
    pub tenant: String,
    /// Client id of the application that is this machine's identity.
    #[arg(long)]
    pub client_id: String,
    /// The machine certificate (PEM), registered with `identity app cert add`.
    #[arg(long)]
    pub cert: PathBuf,
    /// Its RSA private key (PKCS#8 PEM).
    #[arg(long)]
    pub key: PathBuf,
    /// Loopback address to serve on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Where to write the `IDENTITY_HEADER` value (mode 0600); without it,
    /// it is printed on stdout.
    #[arg(long)]
    pub header_file: Option<PathBuf>,
}

struct Agent {
    client: Client,
    tenant: String,
    client_id: String,
    /// `x5t` of the machine certificate (base64url SHA-1, padded as MSAL).
    x5t: String,
    key: Zeroizing<Vec<u8>>,
    header: Zeroizing<String>,
    /// Access tokens by resource, with their expiry.
    cache: Mutex<HashMap<String, (Zeroizing<String>, u64)>>,
}

/// Runs the agent until SIGINT/SIGTERM.
pub async fn run_agent(client_args: &ClientArgs, args: AgentArgs) -> anyhow::Result<()> {
    // Logs on stderr: stdout carries the IDENTITY_* lines for the caller.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .try_init();
    if !args.listen.ip().is_loopback() {
        bail!(
            "the agent serves on a loopback address only (got {})",
            args.listen
        );
    }
    let cert_pem =
        std::fs::read(&args.cert).with_context(|| format!("reading {}", args.cert.display()))?;
    let cert_der = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .next()
        .context("no certificate in the --cert file")??;
    let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &cert_der);
    let key_pem = Zeroizing::new(
        std::fs::read(&args.key).with_context(|| format!("reading {}", args.key.display()))?,
    );
    let key = match rustls_pemfile::private_key(&mut key_pem.as_slice())? {
        Some(rustls::pki_types::PrivateKeyDer::Pkcs8(k)) => {
            Zeroizing::new(k.secret_pkcs8_der().to_vec())
        }
        _ => bail!("the --key file must hold a PKCS#8 RSA private key"),
    };
    let mut no_token = client_args.clone();
    no_token.token = None;
    let header = Zeroizing::new(URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()));
    let agent = Arc::new(Agent {
        client: no_token.client()?,
        tenant: args.tenant.clone(),
        client_id: args.client_id.clone(),
        x5t: URL_SAFE.encode(sha1.as_ref()),
        key,
        header,
        cache: Mutex::new(HashMap::new()),
    });
    // Fail at start, not at the first workload request, when the cluster
    // refuses the machine certificate.
    agent
        .token_for("https://vault.azure.net")
        .await
        .context("the cluster refused the machine certificate")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    match &args.header_file {
        Some(path) => {
            crate::files::write_private_file(path, agent.header.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            println!("IDENTITY_HEADER_FILE={}", path.display());
        }
        None => println!("IDENTITY_HEADER={}", agent.header.as_str()),
    }
    println!("IDENTITY_ENDPOINT=http://{addr}/msi/token");
    tracing::info!(%addr, client_id = %args.client_id, "managed identity agent listening");
    let router = Router::new()
        .route("/msi/token", get(token))
        .with_state(agent);
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Agent {
    /// A token for `resource`, from the cache or the cluster.
    async fn token_for(&self, resource: &str) -> anyhow::Result<(Zeroizing<String>, u64)> {
        let mut cache = self.cache.lock().await;
        if let Some((token, exp)) = cache.get(resource) {
            if *exp > now() + RENEW_BEFORE_SECS {
                return Ok((token.clone(), *exp));
            }
        }
        let endpoint = self
            .client
            .endpoints()
            .first()
            .context("no cluster address")?
            .trim_end_matches('/')
            .to_owned();
        let issued = now();
        let assertion = compose_rs256(
            &self.key,
            &json!({"alg": "RS256", "typ": "JWT", "x5t": self.x5t}),
            &json!({
                "aud": format!("{endpoint}/{}/oauth2/v2.0/token", self.tenant),
                "iss": self.client_id, "sub": self.client_id,
                "jti": uuid::Uuid::new_v4().to_string(),
                "iat": issued, "exp": issued + 600,
            }),
        )
        .map_err(|e| anyhow::anyhow!("signing the client assertion: {e}"))?;
        let form: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", &self.client_id)
            .append_pair("client_assertion_type", JWT_BEARER)
            .append_pair("client_assertion", &assertion)
            .append_pair(
                "scope",
                &format!("{}/.default", resource.trim_end_matches('/')),
            )
            .finish();
        let mut req = Request::post(format!("/{}/oauth2/v2.0/token", self.tenant)).header(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        req.body = Some(Bytes::from(form));
        let resp = self.client.send(req).await?;
        #[derive(Deserialize)]
        struct TokenBody {
            access_token: Option<String>,
            expires_in: Option<u64>,
            error: Option<String>,
            error_description: Option<String>,
        }
        let body: TokenBody = resp.json()?;
        let (Some(token), Some(expires_in)) = (body.access_token, body.expires_in) else {
            bail!(
                "{}: {}",
                body.error.unwrap_or_else(|| resp.status.to_string()),
                body.error_description.unwrap_or_default()
            );
        };
        let entry = (Zeroizing::new(token), issued + expires_in);
        cache.insert(resource.to_owned(), entry.clone());
        Ok(entry)
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    resource: Option<String>,
    client_id: Option<String>,
    object_id: Option<String>,
    mi_res_id: Option<String>,
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({ "statusCode": status.as_u16(), "message": message })),
    )
        .into_response()
}

/// `GET /msi/token?api-version=2019-08-01&resource=…` with
/// `X-IDENTITY-HEADER`.
async fn token(
    State(agent): State<Arc<Agent>>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
) -> Response {
    let given = headers
        .get("x-identity-header")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !bool::from(given.ct_eq(agent.header.as_bytes())) {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong X-IDENTITY-HEADER",
        );
    }
    let Some(resource) = q.resource.filter(|r| !r.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "the resource parameter is required",
        );
    };
    // This agent has one identity: asking for another is an error, not a
    // silent substitution.
    if q.object_id.is_some()
        || q.mi_res_id.is_some()
        || q.client_id
            .as_deref()
            .is_some_and(|c| !c.eq_ignore_ascii_case(&agent.client_id))
    {
        return error(
            StatusCode::BAD_REQUEST,
            "this host has one identity: its client id",
        );
    }
    match agent.token_for(&resource).await {
        Ok((token, exp)) => Json(json!({
            "access_token": token.as_str(),
            "expires_on": exp.to_string(),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": agent.client_id,
        }))
        .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "token request to the cluster failed");
            error(StatusCode::BAD_GATEWAY, "the cluster did not issue a token")
        }
    }
}
