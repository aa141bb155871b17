//! The node's HTTP router: operator routes, then the Key Vault data plane,
//! each behind the authentication its callers expect, all inside the
//! envelope (security headers, error bodies, request-head limits).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::api::akv::authorize::{authorize, AuthzState};
use crate::api::akv::extract::{check_declared_length, read_body};
use crate::api::akv::firewall::{firewall, resolve_client, FirewallState};
use crate::api::akv::{self, AkvState};
use crate::api::audit;
use crate::api::auth::{authenticate, AuthState, Flavor};
use crate::api::envelope;
use crate::api::identity;
use crate::api::pki;
use crate::api::sys::{self, SysState};
use crate::engine::keys::KeysEngine;
use crate::engine::secrets::SecretsEngine;
use crate::engine::vaults::VaultsEngine;
use crate::operator::Operator;

/// Everything the router needs.
pub struct ApiConfig {
    /// Operator actions and token checks.
    pub operator: Arc<Operator>,
    /// Vaults engine.
    pub vaults: Arc<VaultsEngine>,
    /// Secrets engine.
    pub secrets: Arc<SecretsEngine>,
    /// Keys engine.
    pub keys: Arc<KeysEngine>,
    /// Certificates engine.
    pub certificates: Arc<crate::engine::certificates::CertificatesEngine>,
    /// DNS suffix of `{vault}.{domain}` hosts.
    pub vault_domain: Option<String>,
    /// Vault for bare addresses.
    pub default_vault: String,
    /// Tenant named in the authentication challenge.
    pub tenant: String,
    /// Principals, signing keys and tokens.
    pub identity: Arc<crate::engine::identity::IdentityEngine>,
    /// Role definitions and assignments.
    pub authz: Arc<crate::engine::authz::AuthzEngine>,
    /// The node's PKCS#11 device, when `[hsm]` is configured (operator
    /// routes under `/v1/sys/hsm/…`).
    pub hsm: Option<Arc<dyn crate::crypto::hsm::HsmAdmin>>,
    /// The node's audit device: every request leaves one record.
    pub audit: Arc<crate::audit::Auditor>,
    /// Alert rules, receivers and firings (`/v1/sys/alerts/…`).
    pub alerts: sys::alerts::AlertsState,
    /// Proxies whose `X-Forwarded-For` names the client (`[server]`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Vault settings.
    pub settings: Arc<crate::engine::settings::SettingsEngine>,
    /// Where full backups may be written (`[server] backup_dir`).
    pub backup_dir: Option<std::path::PathBuf>,
    /// `/metrics` on this port and who may scrape it; `None` when
    /// `[metrics] listen` serves it elsewhere.
    pub metrics: Option<crate::metrics::ScrapeAuth>,
}

/// Builds the complete router.
pub fn router(cfg: ApiConfig) -> Router {
    let auth = |flavor| AuthState {
        operator: cfg.operator.clone(),
        tenant: cfg.tenant.clone(),
        vault_domain: cfg.vault_domain.clone(),
        flavor,
        identity: cfg.identity.clone(),
    };
    let sys_state = SysState {
        operator: cfg.operator.clone(),
        vaults: cfg.vaults.clone(),
        authz: cfg.authz.clone(),
        hsm: cfg.hsm.clone(),
    };
    let pki_state = pki::PkiState {
        certificates: cfg.certificates.clone(),
    };
    let protected_sys = sys::protected_router(sys_state.clone())
        .merge(identity::admin::router(cfg.identity.clone()))
        .merge(sys::audit::router(cfg.audit.trail()))
        .merge(sys::alerts::router(cfg.alerts.clone()))
        .layer(from_fn_with_state(auth(Flavor::Sys), authenticate));
    let akv = akv::router(AkvState {
        secrets: cfg.secrets.clone(),
        keys: cfg.keys.clone(),
        certificates: cfg.certificates.clone(),
        vaults: cfg.vaults.clone(),
        vault_domain: cfg.vault_domain.clone(),
        default_vault: cfg.default_vault.clone(),
        authz: cfg.authz.clone(),
        settings: cfg.settings.clone(),
        backup: Arc::new(akv::backup::BackupService::new(
            crate::engine::backup::BackupEngine::new(
                cfg.secrets.clone(),
                cfg.keys.clone(),
                cfg.certificates.clone(),
            ),
            cfg.backup_dir.clone(),
        )),
    })
    .layer(from_fn_with_state(
        AuthzState {
            authz: cfg.authz.clone(),
            vaults: cfg.vaults.clone(),
            vault_domain: cfg.vault_domain.clone(),
            default_vault: cfg.default_vault.clone(),
        },
        authorize,
    ))
    .layer(from_fn(read_body_first))
    .layer(from_fn_with_state(auth(Flavor::KeyVault), authenticate))
    .layer(from_fn_with_state(
        FirewallState {
            vaults: cfg.vaults.clone(),
            operator: cfg.operator.clone(),
            trusted_proxies: Arc::new(cfg.trusted_proxies.clone()),
            vault_domain: cfg.vault_domain.clone(),
            default_vault: cfg.default_vault.clone(),
        },
        firewall,
    ));
    sys::public_router(sys_state)
        .merge(pki::public_router(pki_state))
        .merge(identity::router(identity::IssuerState {
            identity: cfg.identity.clone(),
        }))
        .merge(protected_sys)
        .merge(akv)
        .merge(match cfg.metrics.clone() {
            Some(scrape) => crate::metrics::router(cfg.operator.clone(), scrape),
            None => Router::new(),
        })
        .fallback(envelope::unknown_route)
        .layer(from_fn_with_state(
            audit::AuditState::new(&cfg),
            audit::audit,
        ))
        // Outside the audit layer: the record names the client the rules judged.
        .layer(from_fn_with_state(
            Arc::new(cfg.trusted_proxies.clone()),
            resolve_client,
        ))
        .layer(from_fn(envelope::envelope))
        .layer(from_fn(one_fence))
}

/// Every read fence a request takes after its first is answered by the
/// first (see [`request_fence`](crate::cluster::request_fence)).
async fn one_fence(req: Request, next: Next) -> Response {
    crate::cluster::request_fence::scope(next.run(req)).await
}

/// Reads the whole request body (authenticated requests only) before any
/// handler runs. A handler that answers without reading the body (an error
/// found in the path, `release`, …) would otherwise make hyper close the
/// keep-alive connection under a client that is about to reuse it.
async fn read_body_first(req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let read = match check_declared_length(&parts.headers) {
        Ok(()) => read_body(body).await,
        Err(e) => Err(e),
    };
    match read {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(error) => {
            let mut response = error.into_response();
            // The rest of the body is unread: this connection cannot be reused.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}
