//! Authorization of every Key Vault request, after authentication and
//! before any handler: the request's operation names its data action, the
//! request's vault and path name its scope, and the caller (token `oid`
//! and groups) must hold the action there through a role assignment.
//! Otherwise 403 `ForbiddenByRbac` naming the action — before any lookup,
//! so a caller without a role cannot tell whether an object exists. A
//! request no operation classifies is refused (fail closed). The root
//! token is break-glass: allowed, and logged.

use std::sync::Arc;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::context::request_vault;
use super::errors::ApiError;
use super::firewall::{self, ClientAddr};
use super::operations::{self, Operation};
use crate::api::auth::BreakGlass;
use crate::engine::authz::{Actor, AuthzEngine, AuthzError, Decision, ScopePath};
use crate::engine::identity::VerifiedToken;
use crate::engine::network::Bypass;
use crate::engine::vaults::VaultsEngine;
use crate::engine::EngineError;

/// What the authorization middleware needs.
#[derive(Clone)]
pub struct AuthzState {
    /// Role definitions and assignments.
    pub authz: Arc<AuthzEngine>,
    /// Vault records: their network rules, checked again after the fence.
    pub vaults: Arc<VaultsEngine>,
    /// `{vault}.{vault_domain}` hosts select `{vault}`.
    pub vault_domain: Option<String>,
    /// Vault of requests whose Host does not name one.
    pub default_vault: String,
}

/// The authorized actor of a request, for handlers that apply further
/// rules (the role administration API).
pub struct Authorized(pub Actor);

impl<S: Send + Sync> FromRequestParts<S> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Actor>()
            .cloned()
            .map(Authorized)
            // Only reachable if the middleware was not installed: refuse.
            .ok_or_else(|| {
                ApiError::forbidden_by_rbac("(unknown)", "(unclassified)", "", "(unknown)")
            })
    }
}

/// The middleware: allow, ask for a second factor, or refuse.
pub async fn authorize(State(st): State<AuthzState>, mut req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let vault = match request_vault(&parts, st.vault_domain.as_deref(), &st.default_vault) {
        Ok(vault) => vault,
        Err(e) => return e.into_response(),
    };
    req = Request::from_parts(parts, body);
    if req.extensions().get::<BreakGlass>().is_some() {
        // No fence has run for the root token: the network check fences.
        let client = req.extensions().get::<ClientAddr>().copied();
        if let Some(refused) = network_check(&st, client, true, &vault, "root token").await {
            return refused;
        }
        // Every use is in the audit trail (and the root-token alert rule
        // sees it); the log says that it happens, once a minute at most, with
        // how many uses it left out. A line per request was the largest
        // per-request cost the architecture benchmark found (formatting and
        // a write(2) per request: ~7 µs of an 88 µs ES256 sign).
        crate::log_every!(
            std::time::Duration::from_secs(60),
            info,
            method = %req.method(),
            path = req.uri().path(),
            vault,
            "break-glass: root token allowed on the Key Vault API"
        );
        req.extensions_mut().insert(Actor::BreakGlass);
        return next.run(req).await;
    }
    let Some(token) = req.extensions().get::<Arc<VerifiedToken>>().cloned() else {
        return ApiError::forbidden_by_rbac(
            "(unauthenticated)",
            "(none)",
            req.uri().path(),
            &vault,
        )
        .into_response();
    };
    let claims = &token.claims;
    let who = format!(
        "appid={};oid={};iss={}",
        claims.appid, claims.oid, claims.iss
    );
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let resource = format!("/vaults/{vault}{}", req.uri().path());
    let Some(op) = operations::of(&req) else {
        tracing::warn!(method = %req.method(), matched, "unclassified Key Vault route refused");
        return ApiError::forbidden_by_rbac(&who, "(unclassified operation)", &resource, &vault)
            .into_response();
    };
    let action = op.data_action();
    let scope = request_scope(op, &matched, req.uri().path());
    // The address `resolve_client` settled for this request: the one the
    // network rules, bindings and audit use decides source-network
    // conditions of role assignments too.
    let client = req.extensions().get::<ClientAddr>().copied();
    let addr = client.map(|ClientAddr(a)| a);
    let decision = match st.authz.fenced_caller(claims, addr).await {
        Ok(caller) => st
            .authz
            .decide_local(&caller, &vault, &scope, &action)
            .map(|d| (d, caller)),
        Err(e) => Err(e),
    };
    // After the caller's fence: a rule tightened anywhere is in force here.
    if decision.is_ok() {
        if let Some(refused) = binding_check(&st, client, &claims.oid, &vault, &who) {
            return refused;
        }
    }
    if let Some(refused) = network_check(&st, client, false, &vault, &who).await {
        return refused;
    }
    match decision {
        Ok((Decision::Allow, caller)) => {
            req.extensions_mut().insert(Actor::Principal(caller));
            next.run(req).await
        }
        Ok((Decision::StepUp, _)) => step_up(
            &req,
            claims.xms_cc.iter().any(|c| c == "cp1"),
            &who,
            &action,
            &resource,
            &vault,
        ),
        Ok((Decision::OutsideNetwork, _)) => {
            let client = addr.map_or_else(|| "(unknown)".to_owned(), |a| a.to_string());
            tracing::info!(
                oid = claims.oid,
                action,
                resource,
                %client,
                "denied by RBAC: outside the assignment's source networks"
            );
            ApiError::forbidden_outside_network(&who, &action, &resource, &vault, &client)
                .into_response()
        }
        Ok((Decision::Deny, _)) => {
            tracing::info!(oid = claims.oid, action, resource, "denied by RBAC");
            ApiError::forbidden_by_rbac(&who, &action, &resource, &vault).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The caller's application address binding (Vault's `token_bound_cidrs`),
/// checked on every use of its tokens, after the caller's read fence (a
/// binding set through any node is in force): outside it, the
/// `ForbiddenByFirewall` answer naming the client.
fn binding_check(
    st: &AuthzState,
    client: Option<ClientAddr>,
    oid: &str,
    vault: &str,
    who: &str,
) -> Option<Response> {
    let ClientAddr(client) = client?;
    match st.authz.identity().allows_address_local(oid, client) {
        Ok(true) => None,
        Ok(false) => {
            tracing::info!(%client, oid, "token used outside its application's bound CIDRs");
            Some(ApiError::forbidden_by_firewall(&client.to_string(), who, vault).into_response())
        }
        Err(e) => Some(ApiError::from(AuthzError::from(e)).into_response()),
    }
}

/// The vault's network rules again, after a read fence (the firewall in
/// front of authentication judged by this node's applied state, which may
/// trail a rule change acknowledged elsewhere by a few milliseconds).
/// `root`: the caller is the root token, whose check has not fenced yet;
/// it passes a vault whose bypass is `Operator`.
async fn network_check(
    st: &AuthzState,
    client: Option<ClientAddr>,
    root: bool,
    vault: &str,
    who: &str,
) -> Option<Response> {
    let ClientAddr(client) = client?;
    let info = if root {
        match st.vaults.get(vault).await {
            Ok(info) => Ok(Some(info)),
            // No such vault (or no valid name): nothing to protect; the
            // handler answers.
            Err(EngineError::VaultNotFound(_) | EngineError::BadParameter(_)) => Ok(None),
            Err(e) => Err(e),
        }
    } else {
        st.vaults.get_local(vault)
    };
    let acls = match info {
        Ok(info) => info.and_then(|v| v.network_acls),
        Err(e) => return Some(ApiError::from(e).into_response()),
    };
    let root_bypass = root && acls.as_ref().is_some_and(|a| a.bypass == Bypass::Operator);
    if root_bypass || firewall::allowed(acls.as_ref(), client) {
        return None;
    }
    tracing::info!(%client, vault, "request refused by the vault's network rules");
    Some(ApiError::forbidden_by_firewall(&client.to_string(), who, vault).into_response())
}

/// A request's scope: the object its path names (`/keys/{name}/…`,
/// `/deletedkeys/{name}` → `/keys/{name}`), else the operation's
/// collection, else the vault. Role-administration paths carry their scope
/// before `/providers/`.
pub fn request_scope(op: Operation, matched: &str, path: &str) -> ScopePath {
    let lower = path.to_ascii_lowercase();
    if let Some(at) = lower.find("/providers/microsoft.authorization/") {
        // An unparsable scope: the handler refuses it; check at the root.
        return ScopePath::parse(&path[..at]).unwrap_or_else(|_| ScopePath::root());
    }
    let Some(collection) = op.collection().scope() else {
        return ScopePath::root();
    };
    let collection = collection.trim_start_matches('/');
    let pattern: Vec<&str> = matched.trim_start_matches('/').split('/').collect();
    let actual: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // `/secrets/restore` is also the route of a secret named "restore"
    // (every method but POST): those operations always name one object.
    let named = pattern.get(1) == Some(&"{name}")
        || matches!(
            op,
            Operation::SecretGet | Operation::SecretSet | Operation::SecretDelete
        );
    match actual.get(1) {
        Some(name) if named => ScopePath::object(collection, name)
            // An invalid name matches no object scope; the handler answers
            // it, and only collection-wide rights reach it.
            .or_else(|_| ScopePath::collection(collection))
            .unwrap_or_else(|_| ScopePath::root()),
        _ => ScopePath::collection(collection).unwrap_or_else(|_| ScopePath::root()),
    }
}

/// The claims challenge of a step-up: authentication context `c1`.
pub const STEP_UP_CLAIMS: &str = r#"{"access_token":{"acrs":{"essential":true,"value":"c1"}}}"#;

/// The answer to a caller whose only matching assignment needs MFA: the
/// claims challenge (401 `insufficient_claims`) when the client declared it
/// can handle one (`xms_cc` has `cp1`), else the 403 naming the action and
/// the missing factor.
fn step_up(
    req: &Request,
    cp1: bool,
    who: &str,
    action: &str,
    resource: &str,
    vault: &str,
) -> Response {
    if !cp1 {
        return ApiError::forbidden_without_mfa(who, action, resource, vault).into_response();
    }
    use base64::Engine as _;
    // An authentication context, as Key Vault's conditional access asks
    // (IDENTITY.md §1): the SDK replays it in `claims`, and the token
    // endpoint grants `c1` only to a sign-in that gave the second factor.
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(STEP_UP_CLAIMS);
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let value = format!(
        "Bearer realm=\"\", authorization_uri=\"https://{host}/common/oauth2/authorize\", error=\"insufficient_claims\", claims=\"{claims}\""
    );
    let mut response = (
        StatusCode::UNAUTHORIZED,
        axum::Json(serde_json::json!({"error": {
            "code": "Unauthorized",
            "message": format!("Multi-factor authentication is required for '{action}'"),
        }})),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::request_scope;
    use crate::api::akv::operations::classify;
    use axum::http::Method;

    #[test]
    fn scopes_come_from_the_operation_the_matched_route_and_the_path() {
        let cases = [
            (
                Method::POST,
                "/keys/{name}/{version}/sign",
                "/keys/K1/abc/sign",
                "/keys/k1",
            ),
            (
                Method::POST,
                "/keys/{name}//sign",
                "/keys/k1//sign",
                "/keys/k1",
            ),
            (Method::GET, "/keys", "/keys", "/keys"),
            (Method::POST, "/keys/restore", "/keys/restore", "/keys"),
            (
                Method::GET,
                "/deletedkeys/{name}",
                "/deletedkeys/k1",
                "/keys/k1",
            ),
            (
                Method::GET,
                "/deletedsecrets",
                "/deletedsecrets",
                "/secrets",
            ),
            (Method::GET, "/secrets/{name}", "/secrets/s1", "/secrets/s1"),
            (
                Method::GET,
                "/secrets/{name}",
                "/secrets/bad_name",
                "/secrets",
            ),
            (Method::POST, "/rng", "/rng", "/"),
            (
                Method::GET,
                "/secrets/restore",
                "/secrets/restore",
                "/secrets/restore",
            ),
            (
                Method::POST,
                "/secrets/restore",
                "/secrets/restore",
                "/secrets",
            ),
            (
                Method::PUT,
                "/keys/{name}/providers/Microsoft.Authorization/roleAssignments/{name}",
                "/keys/k9/providers/Microsoft.Authorization/roleAssignments/x",
                "/keys/k9",
            ),
            (
                Method::GET,
                "/providers/Microsoft.Authorization/roleDefinitions",
                "/providers/Microsoft.Authorization/roleDefinitions",
                "/",
            ),
        ];
        for (method, matched, path, want) in cases {
            let op = classify(&method, matched).unwrap();
            assert_eq!(request_scope(op, matched, path).as_str(), want, "{path}");
        }
    }

    mod through_the_middleware {
        use std::sync::Arc;

        use axum::body::Body;
        use axum::extract::Request;
        use axum::middleware::{from_fn, from_fn_with_state, Next};
        use axum::routing::get;
        use axum::Router;
        use tower::ServiceExt as _;

        use super::super::{authorize, AuthzState};
        use crate::api::akv::firewall::ClientAddr;
        use crate::engine::authz::{Actor, AssignmentSpec, AuthzEngine};
        use crate::engine::identity::principals::template;
        use crate::engine::identity::{IdentityEngine, Kind, VerifiedToken};
        use crate::engine::mem_store::MemStore;
        use crate::engine::vaults::VaultsEngine;

        /// A router whose requests carry a verified token of `oid` with
        /// `amr` and `xms_cc`, behind the authorization middleware.
        fn app(authz: Arc<AuthzEngine>, oid: &str, amr: &[&str], cp1: bool) -> Router {
            let claims = serde_json::from_value(serde_json::json!({
                "aud": "a", "iss": "i", "iat": 0, "nbf": 0, "exp": 0, "tid": "t",
                "oid": oid, "sub": oid, "idtyp": "user", "appid": "x", "azp": "x",
                "appidacr": "0", "azpacr": "0", "amr": amr, "uti": "u", "ver": "2.0",
                "xms_cc": if cp1 { vec!["cp1"] } else { vec![] },
            }))
            .unwrap();
            let token = Arc::new(VerifiedToken { claims });
            // No client address in these requests: the network rules are not
            // consulted (the firewall's own tests cover them).
            let vaults = Arc::new(VaultsEngine::new(Arc::new(MemStore::new())));
            Router::new()
                .route("/secrets/{name}", get(|| async { "the value" }))
                .route("/unclassified", get(|| async { "should not be reached" }))
                .layer(from_fn_with_state(
                    AuthzState {
                        authz,
                        vaults,
                        vault_domain: None,
                        default_vault: "default".into(),
                    },
                    authorize,
                ))
                .layer(from_fn(move |mut req: Request, next: Next| {
                    req.extensions_mut().insert(token.clone());
                    next.run(req)
                }))
        }

        async fn call(router: Router, path: &str) -> (u16, String, String) {
            let resp = router
                .oneshot(Request::get(path).body(Body::empty()).unwrap())
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let challenge = resp
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            (
                status,
                challenge,
                String::from_utf8_lossy(&body).into_owned(),
            )
        }

        /// A vault `default` whose user `name` is a Secrets User on
        /// `/secrets` under the given conditions: the engine and the user's id.
        async fn secrets_user(
            name: &str,
            require_mfa: bool,
            source_cidrs: Vec<String>,
        ) -> (Arc<AuthzEngine>, String) {
            let store = Arc::new(MemStore::new());
            VaultsEngine::new(store.clone())
                .create("default", None)
                .await
                .unwrap();
            let identity = Arc::new(IdentityEngine::new(store.clone(), "t"));
            let user = identity
                .create_principal(template(Kind::User, name))
                .await
                .unwrap();
            let authz = Arc::new(AuthzEngine::new(store.clone(), identity));
            let spec = AssignmentSpec {
                scope: "/secrets".into(),
                principal_id: user.object_id.clone(),
                role_definition_id: "4633458b-17de-408a-b874-0445c86b69e6".into(),
                require_mfa,
                source_cidrs,
            };
            authz
                .put_assignment(&Actor::BreakGlass, Some("default"), name, spec)
                .await
                .unwrap();
            (authz, user.object_id)
        }

        #[tokio::test]
        async fn mfa_conditions_step_up_and_unclassified_routes_are_refused() {
            let (authz, oid) = secrets_user("alice", true, Vec::new()).await;
            let oid = oid.as_str();

            // Without a second factor: the claims challenge for a cp1 client...
            let (status, challenge, _) =
                call(app(authz.clone(), oid, &["pwd"], true), "/secrets/s").await;
            assert_eq!(status, 401);
            assert!(
                challenge.contains("error=\"insufficient_claims\""),
                "{challenge}"
            );
            // ...and, for one that cannot step up (no cp1: azure-identity
            // declares it only for `enable_cae=True`, as the SDKs' challenge
            // policy asks), the 403 naming the action and the missing factor,
            // not "Assignment: (not found)" (what hid the cause of the SDK
            // test's failure: a token requested without `enable_cae`).
            let (status, _, body) =
                call(app(authz.clone(), oid, &["pwd"], false), "/secrets/s").await;
            assert_eq!(status, 403);
            assert!(
                body.contains("ForbiddenByRbac")
                    && body.contains("secrets/getSecret/action")
                    && body.contains("requires multi-factor authentication")
                    && !body.contains("(not found)"),
                "{body}"
            );
            // With it: through.
            let (status, _, body) = call(
                app(authz.clone(), oid, &["pwd", "mfa"], false),
                "/secrets/s",
            )
            .await;
            assert_eq!((status, body.as_str()), (200, "the value"));
            // A route the operation table does not know is refused, whoever asks.
            let (status, _, body) = call(
                app(authz.clone(), oid, &["pwd", "mfa"], false),
                "/unclassified",
            )
            .await;
            assert_eq!(status, 403);
            assert!(body.contains("unclassified"), "{body}");
            // Another principal learns nothing about what exists: 403, not 404.
            let (status, _, body) = call(
                app(
                    authz,
                    "00000000-0000-0000-0000-000000000001",
                    &["mfa"],
                    false,
                ),
                "/secrets/s",
            )
            .await;
            assert_eq!(status, 403, "{body}");
            assert!(body.contains("Assignment: (not found)"), "{body}");
        }

        #[tokio::test]
        async fn source_network_conditions_use_the_resolved_client_address() {
            let cidrs = vec!["10.9.0.0/16".into(), "2001:db8:9::/48".into()];
            let (authz, oid) = secrets_user("bob", false, cidrs).await;
            let oid = oid.as_str();
            // The address the outer `resolve_client` layer settled on.
            let from = |addr: &str| {
                let addr = ClientAddr(addr.parse().unwrap());
                app(authz.clone(), oid, &["pwd"], true).layer(from_fn(
                    move |mut req: Request, next: Next| {
                        req.extensions_mut().insert(addr);
                        next.run(req)
                    },
                ))
            };
            for inside in ["10.9.8.7", "2001:db8:9::1"] {
                let (status, _, body) = call(from(inside), "/secrets/s").await;
                assert_eq!((status, body.as_str()), (200, "the value"), "{inside}");
            }
            for outside in ["127.0.0.1", "2001:db8:a::1"] {
                let (status, challenge, body) = call(from(outside), "/secrets/s").await;
                assert_eq!(status, 403, "{outside}: {body}");
                // Not a step-up: a second factor would not help.
                assert!(challenge.is_empty(), "{challenge}");
                assert!(
                    body.contains("ForbiddenByRbac")
                        && body.contains("secrets/getSecret/action")
                        && body.contains("requires a source network")
                        && body.contains(&format!("client address {outside} "))
                        && body.contains("DeniedOutsideSourceNetwork")
                        && !body.contains("(not found)")
                        && !body.contains("10.9.0.0"),
                    "{body}"
                );
            }
            // Without a resolved address (no listener), fail closed.
            let (status, _, body) =
                call(app(authz.clone(), oid, &["pwd"], true), "/secrets/s").await;
            assert_eq!(status, 403, "{body}");
            assert!(body.contains("(unknown)"), "{body}");
        }
    }
}
