//! The OAuth2/OIDC issuer every node serves (paths of §2 of the identity
//! fact sheet): discovery, JWKS and the token endpoint, plus the audience
//! rule the authentication middleware verifies tokens with. The operator
//! routes that manage principals are in [`admin`].

pub mod admin;
mod device;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::api::akv::extract::{check_declared_length, read_body};
use crate::api::akv::firewall::ClientAddr;
use crate::engine::identity::sessions::{DevicePoll, POLL_INTERVAL_SECS};
use crate::engine::identity::{
    Audience, IdentityEngine, IdentityError, Kind, Proof, Tenant, TokenRequest,
};
use crate::engine::store::StoreError;
use crate::engine::EngineError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// What the issuer routes need.
#[derive(Clone)]
pub struct IssuerState {
    /// Principals, keys, tokens.
    pub identity: Arc<IdentityEngine>,
}

/// The public issuer routes (no authentication: clients come here to get
/// their first token).
pub fn router(state: IssuerState) -> Router {
    Router::new()
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(discovery),
        )
        .route("/{tenant}/.well-known/openid-configuration", get(discovery))
        .route("/{tenant}/discovery/v2.0/keys", get(jwks))
        .route("/{tenant}/discovery/keys", get(jwks))
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route("/{tenant}/oauth2/token", post(token))
        .route("/{tenant}/oauth2/v2.0/authorize", get(authorize))
        .route("/{tenant}/oauth2/v2.0/devicecode", post(devicecode))
        .route("/device", get(device::page).post(device::approve))
        .with_state(state)
}

/// The audiences a node accepts in access tokens: the Key Vault resource
/// `https://vault.azure.net`, the cluster's `https://{vault_domain}`, and
/// `https://{node}` for the node asked and every member's API address
/// (a token from one node works on the others). A trailing `/` is ignored.
pub struct ClusterAudience {
    /// Accepted resources, without trailing `/`, lower-case.
    pub resources: Vec<String>,
}

impl ClusterAudience {
    /// The audiences of a cluster with `vault_domain`, reached at `host`,
    /// whose members' API addresses are `members`.
    pub fn new<'a>(
        vault_domain: Option<&str>,
        host: Option<&str>,
        members: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let mut resources = vec!["https://vault.azure.net".to_owned()];
        resources.extend(vault_domain.map(|d| format!("https://{d}")));
        resources.extend(host.map(|h| format!("https://{h}")));
        resources.extend(members.into_iter().map(|m| format!("https://{m}")));
        for r in &mut resources {
            *r = r.to_ascii_lowercase();
        }
        Self { resources }
    }
}

impl Audience for ClusterAudience {
    fn accepts(&self, aud: &str) -> bool {
        let aud = aud.trim_end_matches('/').to_ascii_lowercase();
        let aud = aud.strip_suffix(":443").unwrap_or(&aud);
        self.resources.iter().any(|r| r == aud)
    }
}

/// The host the client addressed: `Host` (HTTP/1.1) or the URI's
/// authority (HTTP/2 `:authority`).
pub fn request_host<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> Option<&'a str> {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
}

/// `https://{host}`: the base every URL of the issuer's answers uses, so a
/// client is sent back to the node it asked.
fn base_url(headers: &HeaderMap, uri: &Uri) -> String {
    let host = request_host(headers, uri)
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        })
        .unwrap_or("localhost");
    format!("https://{host}")
}

/// An OAuth error answer (`{"error","error_description"}`).
pub(super) struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
        }
    }

    fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(json!({
                "error": self.error,
                "error_description": self.description,
                "error_codes": [],
                "timestamp": "",
            })),
        )
            .into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<IdentityError> for OAuthError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::InvalidCredentials(m) => {
                Self::new(StatusCode::UNAUTHORIZED, "invalid_client", m)
            }
            e @ IdentityError::LockedOut { .. } => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_grant", e.to_string())
            }
            e @ IdentityError::MfaRequired => Self::new(
                StatusCode::BAD_REQUEST,
                "interaction_required",
                format!("{e}: use an interactive flow (device code)"),
            ),
            e @ (IdentityError::NotFound(_)
            | IdentityError::Exists(_)
            | IdentityError::BadRequest(_)
            | IdentityError::NoTenant) => Self::invalid_request(e.to_string()),
            IdentityError::Engine(EngineError::Store(
                StoreError::Sealed
                | StoreError::NotInitialized
                | StoreError::Unavailable(_)
                | StoreError::ReadOnly(_),
            )) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "this node cannot issue tokens now (sealed or no quorum); try another node",
            ),
            IdentityError::Engine(e) => {
                tracing::error!(error = %e, "token endpoint failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "the token could not be issued",
                )
            }
        }
    }
}

/// Our tenant, when the path names it; Entra answers an unknown tenant
/// with 400 `invalid_tenant`… as `invalid_request`.
fn our_tenant(state: &IssuerState, segment: &str) -> Result<Tenant, OAuthError> {
    state
        .identity
        .resolve_tenant(segment)?
        .ok_or_else(|| OAuthError::invalid_request(format!("tenant {segment} is not served here")))
}

/// `https://{host}/{tenant id}`: the prefix of the tenant's URLs as seen
/// by this client.
fn tenant_base(headers: &HeaderMap, uri: &Uri, tenant: &Tenant) -> String {
    format!("{}/{}", base_url(headers, uri), tenant.id)
}

async fn discovery(
    State(s): State<IssuerState>,
    Path(segment): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, OAuthError> {
    let base = tenant_base(&headers, &uri, &our_tenant(&s, &segment)?);
    Ok(Json(json!({
        "issuer": format!("{base}/v2.0"),
        "authorization_endpoint": format!("{base}/oauth2/v2.0/authorize"),
        "token_endpoint": format!("{base}/oauth2/v2.0/token"),
        "device_authorization_endpoint": format!("{base}/oauth2/v2.0/devicecode"),
        "jwks_uri": format!("{base}/discovery/v2.0/keys"),
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
        "grant_types_supported": ["client_credentials", "password", "refresh_token",
            "urn:ietf:params:oauth:grant-type:device_code"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "oid", "tid",
            "preferred_username", "amr"],
        "tenant_region_scope": null,
    }))
    .into_response())
}

async fn jwks(
    State(s): State<IssuerState>,
    Path(segment): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, OAuthError> {
    let issuer = format!(
        "{}/v2.0",
        tenant_base(&headers, &uri, &our_tenant(&s, &segment)?)
    );
    s.identity.ensure_signing_key().await?;
    let keys: Vec<serde_json::Value> = s
        .identity
        .jwks()?
        .into_iter()
        .map(|k| {
            let mut v = json!(k);
            v["issuer"] = json!(issuer);
            v
        })
        .collect();
    Ok(Json(json!({ "keys": keys })).into_response())
}

/// Coffer has no browser sign-in; the endpoint exists because clients
/// require it in the discovery document.
async fn authorize() -> OAuthError {
    OAuthError::new(
        StatusCode::BAD_REQUEST,
        "unsupported_response_type",
        "interactive browser sign-in is not offered; use the device code flow",
    )
}

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The token endpoint: parses the form, runs the grant, mints the tokens.
async fn token(
    State(s): State<IssuerState>,
    Path(segment): Path<String>,
    req: Request,
) -> Result<Response, OAuthError> {
    let (parts, body) = req.into_parts();
    let form = read_form(&parts.headers, body).await?;
    let tenant = our_tenant(&s, &segment)?;
    let field = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());
    let required = |name: &'static str| {
        field(name).ok_or_else(|| OAuthError::invalid_request(format!("missing {name}")))
    };
    let client_id = required("client_id")?;
    let grant = required("grant_type")?;
    let cp1 = wants_cp1(field("claims"));
    let acrs = required_acrs(field("claims"));
    let mfa_asked = !acrs.is_empty() || wants_mfa(field("claims"));
    let id = &s.identity;
    let (principal, proof, audience) = match grant {
        "client_credentials" => {
            let audience = scope_resource(field("scope"))?;
            let (p, proof) = if let Some(secret) = field("client_secret") {
                id.sign_in_with_secret(client_id, secret).await?
            } else if field("client_assertion_type") == Some(JWT_BEARER) {
                let assertion = required("client_assertion")?.trim();
                id.sign_in_with_assertion(&tenant, client_id, assertion)
                    .await?
            } else {
                return Err(OAuthError::invalid_request(
                    "client_credentials needs client_secret or a jwt-bearer client_assertion",
                ));
            };
            (p, proof, audience)
        }
        "password" => {
            let audience = scope_resource(field("scope"))?;
            public_client(&s, client_id)?;
            let (p, proof) = id
                .sign_in_user(required("username")?, required("password")?, None)
                .await
                .map_err(user_error)?;
            (p, proof, audience)
        }
        DEVICE_CODE_GRANT => {
            let code = field("device_code").or(field("code"));
            let code = code.ok_or_else(|| OAuthError::invalid_request("missing device_code"))?;
            match id
                .poll_device_code(client_id, code)
                .await
                .map_err(user_error)?
            {
                DevicePoll::Pending => {
                    return Err(OAuthError::new(
                        StatusCode::BAD_REQUEST,
                        "authorization_pending",
                        "the user has not approved the code yet",
                    ))
                }
                DevicePoll::Approved(p, proof, audience) => (*p, proof, audience),
            }
        }
        "refresh_token" => {
            let audience = scope_resource(field("scope"))?;
            let (p, proof) = id
                .redeem_refresh_token(client_id, required("refresh_token")?)
                .await
                .map_err(user_error)?;
            (p, proof, audience)
        }
        other => {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("grant_type {other} is not supported"),
            ))
        }
    };
    // An application bound to CIDRs gets tokens only from inside them (the
    // client the network rules judge); checked after its credential, so an
    // outsider learns nothing about which applications exist.
    if let Some(ClientAddr(client)) = parts.extensions.get::<ClientAddr>().copied() {
        if !principal.allows_address(client) {
            tracing::info!(%client, oid = %principal.object_id, client_id, "token refused: client address outside the application's bound CIDRs");
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                format!(
                    "AADSTS53003: Access has been blocked: client address {client} is outside the \
                     address ranges this application is bound to"
                ),
            ));
        }
    }
    // Step-up: every authentication context a claims challenge names needs
    // the second factor; a sign-in without it must be redone interactively.
    if mfa_asked && proof != (Proof::Password { mfa: true }) {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "interaction_required",
            "the requested authentication context needs a second factor: sign in again with a \
             verification code",
        ));
    }
    let base = base_url(&parts.headers, &parts.uri);
    let issued = id
        .issue(
            &tenant,
            &principal,
            &proof,
            &TokenRequest {
                issuer_base: &base,
                audience: &audience,
                client_id,
                cp1,
                acrs: &acrs,
            },
        )
        .await?;
    tracing::info!(
        oid = %principal.object_id,
        client_id,
        method = proof_name(&proof),
        "access token issued"
    );
    let mut body = json!({
        "token_type": "Bearer",
        "access_token": issued.access_token.as_str(),
        "expires_in": issued.expires_in,
        "ext_expires_in": issued.expires_in,
    });
    if principal.kind == Kind::User {
        // MSAL needs these for user accounts: its cache is keyed by
        // client_info; `scope` must be a string.
        let mfa = matches!(proof, Proof::Password { mfa: true });
        let refresh = id.new_refresh_token(&principal, client_id, mfa).await?;
        let id_token = id.id_token(&tenant, &principal, client_id, &base)?;
        let client_info = json!({"uid": principal.object_id, "utid": tenant.id}).to_string();
        body["refresh_token"] = json!(refresh.as_str());
        body["id_token"] = json!(id_token.as_str());
        body["client_info"] = json!(URL_SAFE_NO_PAD.encode(client_info));
        body["scope"] = json!(field("scope").unwrap_or(&format!("{audience}/.default")));
    }
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// User grants answer bad credentials with `invalid_grant` (the client
/// itself is fine), as Entra does.
fn user_error(e: IdentityError) -> OAuthError {
    match e {
        IdentityError::InvalidCredentials(m) => {
            OAuthError::new(StatusCode::BAD_REQUEST, "invalid_grant", m)
        }
        e => e.into(),
    }
}

/// User flows name a registered, enabled application as their client.
fn public_client(s: &IssuerState, client_id: &str) -> Result<(), OAuthError> {
    match s.identity.app_by_client_id(client_id)? {
        Some(app) if app.enabled => Ok(()),
        _ => Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            format!("application {client_id} is not registered or is disabled"),
        )),
    }
}

/// `POST /{tenant}/oauth2/v2.0/devicecode`: starts a device authorization.
async fn devicecode(
    State(s): State<IssuerState>,
    Path(segment): Path<String>,
    req: Request,
) -> Result<Response, OAuthError> {
    let (parts, body) = req.into_parts();
    let form = read_form(&parts.headers, body).await?;
    our_tenant(&s, &segment)?;
    let client_id = form
        .get("client_id")
        .ok_or_else(|| OAuthError::invalid_request("missing client_id"))?;
    public_client(&s, client_id)?;
    let audience = scope_resource(form.get("scope").map(String::as_str))?;
    let started = s.identity.start_device_code(client_id, &audience).await?;
    let uri = format!("{}/device", base_url(&parts.headers, &parts.uri));
    Ok(Json(json!({
        "device_code": started.device_code.as_str(),
        "user_code": started.user_code,
        "verification_uri": uri,
        "expires_in": started.expires_in,
        "interval": POLL_INTERVAL_SECS,
        "message": format!(
            "To sign in, open {uri} and enter the code {} to authenticate.",
            started.user_code
        ),
    }))
    .into_response())
}

fn proof_name(p: &Proof) -> &'static str {
    match p {
        Proof::Secret(_) => "client_secret",
        Proof::Certificate(_) => "certificate",
        Proof::Federated(_) => "federated",
        Proof::Password { mfa: false } => "password",
        Proof::Password { mfa: true } => "password+totp",
    }
}

/// Reads an `application/x-www-form-urlencoded` body (bounded as every
/// request body of the node).
pub(super) async fn read_form(
    headers: &HeaderMap,
    body: Body,
) -> Result<HashMap<String, String>, OAuthError> {
    let bad = |_| OAuthError::invalid_request("the request body could not be read");
    check_declared_length(headers).map_err(bad)?;
    let bytes = read_body(body).await.map_err(bad)?;
    Ok(url::form_urlencoded::parse(&bytes).into_owned().collect())
}

/// The resource of the `scope` parameter: the first `{resource}/.default`
/// (or a bare resource URI); OIDC scopes (`openid`, …) are ignored.
fn scope_resource(scope: Option<&str>) -> Result<String, OAuthError> {
    let invalid = || {
        OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "scope must name a resource, e.g. https://vault.azure.net/.default",
        )
    };
    let scope = scope.ok_or_else(invalid)?;
    scope
        .split_whitespace()
        .filter(|s| !matches!(*s, "openid" | "profile" | "offline_access" | "email"))
        .map(|s| s.strip_suffix("/.default").unwrap_or(s))
        .find(|s| s.starts_with("https://") || s.starts_with("api://"))
        .map(|s| s.trim_end_matches('/').to_owned())
        .ok_or_else(invalid)
}

/// The `access_token` member of the `claims` parameter (JSON), if any.
fn access_token_claims(claims: Option<&str>) -> serde_json::Value {
    claims
        .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
        .map(|v| v["access_token"].clone())
        .unwrap_or_default()
}

/// The authentication contexts (`acrs`) a claims challenge asks for:
/// `{"acrs":{"essential":true,"value":"c1"}}` or `"values":[…]`.
fn required_acrs(claims: Option<&str>) -> Vec<String> {
    let acrs = &access_token_claims(claims)["acrs"];
    let values = acrs["value"].as_str().into_iter().chain(
        acrs["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str()),
    );
    let mut out: Vec<String> = values.map(str::to_owned).collect();
    out.dedup();
    out
}

/// Whether the `claims` parameter asks for the second factor itself:
/// `{"amr":{"essential":true,"values":["mfa"]}}` (or `"value":"mfa"`).
fn wants_mfa(claims: Option<&str>) -> bool {
    let amr = &access_token_claims(claims)["amr"];
    amr["value"].as_str() == Some("mfa")
        || amr["values"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v.as_str() == Some("mfa")))
}

/// Whether the `claims` parameter announces the `CP1` client capability.
fn wants_cp1(claims: Option<&str>) -> bool {
    access_token_claims(claims)["xms_cc"]["values"]
        .as_array()
        .is_some_and(|a| {
            a.iter()
                .any(|x| x.as_str().is_some_and(|s| s.eq_ignore_ascii_case("cp1")))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_names_the_resource() {
        let r = |s| scope_resource(Some(s)).ok();
        assert_eq!(
            r("https://vault.azure.net/.default").as_deref(),
            Some("https://vault.azure.net")
        );
        assert_eq!(
            r("https://127.0.0.1:8443/.default offline_access openid profile").as_deref(),
            Some("https://127.0.0.1:8443")
        );
        assert_eq!(r("openid profile"), None);
        assert!(scope_resource(None).is_err());
    }

    #[test]
    fn step_up_contexts_are_read_from_the_claims_parameter() {
        let challenge = r#"{"access_token":{"xms_cc":{"values":["CP1"]},"acrs":{"essential":true,"value":"c1"}}}"#;
        assert_eq!(required_acrs(Some(challenge)), vec!["c1".to_owned()]);
        assert_eq!(
            required_acrs(Some(
                r#"{"access_token":{"acrs":{"essential":true,"values":["c1","c2"]}}}"#
            )),
            vec!["c1".to_owned(), "c2".to_owned()]
        );
        assert!(
            required_acrs(Some(r#"{"access_token":{"xms_cc":{"values":["CP1"]}}}"#)).is_empty()
        );
        assert!(required_acrs(None).is_empty());
    }

    #[test]
    fn a_second_factor_is_asked_by_amr_or_the_vaults_step_up_context() {
        assert!(wants_mfa(Some(
            r#"{"access_token":{"amr":{"essential":true,"values":["mfa"]}}}"#
        )));
        assert!(!wants_mfa(Some(
            r#"{"access_token":{"amr":{"essential":true,"values":["pwd"]}}}"#
        )));
        assert!(!wants_mfa(None));
        // The vault's step-up challenge names a context the endpoint requires
        // the second factor for.
        let vault = crate::api::akv::authorize::STEP_UP_CLAIMS;
        assert_eq!(required_acrs(Some(vault)), vec!["c1".to_owned()]);
    }

    #[test]
    fn cp1_is_read_from_the_claims_parameter() {
        assert!(wants_cp1(Some(
            r#"{"access_token":{"xms_cc":{"values":["CP1"]}}}"#
        )));
        assert!(!wants_cp1(Some(r#"{"access_token":{}}"#)));
        assert!(!wants_cp1(Some("not json")));
        assert!(!wants_cp1(None));
    }

    #[test]
    fn audiences_are_the_cluster_resources() {
        let a = ClusterAudience::new(Some("coffer.example"), Some("n1:8443"), ["n2:8443"]);
        for ok in [
            "https://vault.azure.net",
            "https://vault.azure.net/",
            "https://coffer.example",
            "https://N1:8443",
            "https://n2:8443/",
        ] {
            assert!(a.accepts(ok), "{ok}");
        }
        for bad in [
            "https://evil.example",
            "http://vault.azure.net",
            "https://n3:8443",
            "",
        ] {
            assert!(!a.accepts(bad), "{bad}");
        }
    }
}
