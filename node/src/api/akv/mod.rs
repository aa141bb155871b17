//! Azure Key Vault data-plane API (secrets, keys and certificates).
//!
//! The vault is chosen by the Host header, every request needs a supported
//! `api-version`, and `x-ms-client-request-id` is the idempotency key of
//! writes (echoed in `x-ms-request-id` / `x-ms-client-request-id`). The lead
//! wraps this router with authentication. No fallback is set, so the router
//! can be merged with others.

pub mod authorize;
pub mod backup;
pub mod cert_models;
pub mod certificates;
pub mod context;
pub mod errors;
pub mod extract;
pub mod firewall;
pub mod key_models;
pub mod keys;
pub mod lifecycle;
pub mod models;
pub mod operations;
pub mod paging;
pub mod rbac;
pub mod secrets;
pub mod settings;

use std::sync::Arc;

use axum::routing::{delete, get, post, put};
use axum::Router;

use crate::engine::authz::AuthzEngine;
use crate::engine::certificates::CertificatesEngine;
use crate::engine::keys::KeysEngine;
use crate::engine::secrets::SecretsEngine;
use crate::engine::vaults::VaultsEngine;

/// Shared state of the Key Vault API.
#[derive(Clone)]
pub struct AkvState {
    /// Secrets of all vaults.
    pub secrets: Arc<SecretsEngine>,
    /// Keys of all vaults.
    pub keys: Arc<KeysEngine>,
    /// Certificates of all vaults.
    pub certificates: Arc<CertificatesEngine>,
    /// Vault registry.
    pub vaults: Arc<VaultsEngine>,
    /// `{vault}.{vault_domain}` hosts select `{vault}`; `None`: always the default.
    pub vault_domain: Option<String>,
    /// Vault of requests whose Host does not name one.
    pub default_vault: String,
    /// Role definitions and assignments (the administration API).
    pub authz: Arc<AuthzEngine>,
    /// Vault settings (`KeyVaultSettingsClient`).
    pub settings: Arc<crate::engine::settings::SettingsEngine>,
    /// Full backups and restores with their jobs (`KeyVaultBackupClient`).
    pub backup: Arc<backup::BackupService>,
}

/// Every secrets route the Azure SDKs call.
pub fn router(state: AkvState) -> Router {
    Router::new()
        .route("/secrets", get(secrets::list))
        .route(
            "/secrets/restore",
            post(lifecycle::restore::<secrets::Secrets>)
                .put(secrets::set_restore)
                .get(secrets::get_restore)
                .delete(secrets::delete_restore),
        )
        .route(
            "/secrets/{name}",
            put(secrets::set)
                .get(secrets::get)
                .delete(lifecycle::delete::<secrets::Secrets>),
        )
        .route("/secrets/{name}/", get(secrets::get).patch(secrets::update))
        .route("/secrets/{name}/versions", get(secrets::list_versions))
        .route(
            "/secrets/{name}/backup",
            post(lifecycle::backup::<secrets::Secrets>),
        )
        .route(
            "/secrets/{name}/{version}",
            get(secrets::get).patch(secrets::update),
        )
        .route(
            "/deletedsecrets",
            get(lifecycle::list_deleted::<secrets::Secrets>),
        )
        .route(
            "/deletedsecrets/{name}",
            get(lifecycle::get_deleted::<secrets::Secrets>)
                .delete(lifecycle::purge::<secrets::Secrets>),
        )
        .route(
            "/deletedsecrets/{name}/recover",
            post(lifecycle::recover::<secrets::Secrets>),
        )
        .merge(key_routes())
        .merge(certificate_routes())
        .merge(rbac::routes())
        .merge(administration_routes())
        .merge(crate::api::pki::authorized_routes())
        .layer(axum::middleware::from_fn(context::request_id_layer))
        .with_state(state)
}

/// Every keys route the Azure SDKs call. An empty version segment
/// (`/keys/{name}//sign`) means the latest version.
fn key_routes() -> Router<AkvState> {
    Router::new()
        .route("/keys", get(keys::list))
        .route("/keys/restore", post(lifecycle::restore::<keys::Keys>))
        .route("/rng", post(keys::random))
        .route(
            "/keys/{name}",
            put(keys::import)
                .get(keys::get)
                .delete(lifecycle::delete::<keys::Keys>),
        )
        .route("/keys/{name}/", get(keys::get).patch(keys::update))
        .route("/keys/{name}/create", post(keys::create))
        .route("/keys/{name}/rotate", post(keys::rotate))
        .route("/keys/{name}/backup", post(lifecycle::backup::<keys::Keys>))
        .route("/keys/{name}/versions", get(keys::list_versions))
        .route(
            "/keys/{name}/rotationpolicy",
            get(keys::get_policy).put(keys::set_policy),
        )
        .route("/keys/{name}/{version}", get(keys::get).patch(keys::update))
        .route("/keys/{name}/{version}/encrypt", post(keys::encrypt))
        .route("/keys/{name}/{version}/decrypt", post(keys::decrypt))
        .route("/keys/{name}/{version}/wrapkey", post(keys::wrap))
        .route("/keys/{name}/{version}/unwrapkey", post(keys::unwrap))
        .route("/keys/{name}/{version}/sign", post(keys::sign))
        .route("/keys/{name}/{version}/verify", post(keys::verify))
        .route("/keys/{name}/{version}/release", post(keys::release))
        .route("/keys/{name}/{version}/attestation", get(keys::release))
        .route("/keys/{name}//encrypt", post(keys::encrypt))
        .route("/keys/{name}//decrypt", post(keys::decrypt))
        .route("/keys/{name}//wrapkey", post(keys::wrap))
        .route("/keys/{name}//unwrapkey", post(keys::unwrap))
        .route("/keys/{name}//sign", post(keys::sign))
        .route("/keys/{name}//verify", post(keys::verify))
        .route("/keys/{name}//release", post(keys::release))
        .route("/deletedkeys", get(lifecycle::list_deleted::<keys::Keys>))
        .route(
            "/deletedkeys/{name}",
            get(lifecycle::get_deleted::<keys::Keys>).delete(lifecycle::purge::<keys::Keys>),
        )
        .route(
            "/deletedkeys/{name}/recover",
            post(lifecycle::recover::<keys::Keys>),
        )
}

/// Settings, full backup and restore (`azure-keyvault-administration`).
fn administration_routes() -> Router<AkvState> {
    Router::new()
        .route("/settings", get(settings::list))
        .route(
            "/settings/{name}",
            get(settings::get).patch(settings::update),
        )
        .route("/backup", post(backup::backup))
        .route("/prebackup", post(backup::pre_backup))
        .route("/backup/{job}/pending", get(backup::backup_status))
        .route("/restore", put(backup::restore))
        .route("/prerestore", put(backup::pre_restore))
        .route("/restore/{job}/pending", get(backup::restore_status))
        .route("/keys/{name}/restore", put(backup::restore_key))
}

/// Every certificates route the Azure SDKs call. The latest version is
/// read and updated with a trailing slash (`/certificates/{name}/`).
fn certificate_routes() -> Router<AkvState> {
    use certificates as c;
    Router::new()
        .route("/certificates", get(c::list))
        .route(
            "/certificates/contacts",
            get(c::get_contacts)
                .put(c::set_contacts)
                .delete(c::delete_contacts),
        )
        .route("/certificates/issuers", get(c::list_issuers))
        .route(
            "/certificates/issuers/{issuer}",
            get(c::get_issuer)
                .put(c::set_issuer)
                .patch(c::update_issuer)
                .delete(c::delete_issuer),
        )
        .route(
            "/certificates/restore",
            post(lifecycle::restore::<c::Certificates>),
        )
        .route(
            "/certificates/{name}",
            get(c::get).delete(lifecycle::delete::<c::Certificates>),
        )
        .route("/certificates/{name}/", get(c::get).patch(c::update))
        .route("/certificates/{name}/create", post(c::create))
        .route("/certificates/{name}/import", post(c::import))
        .route(
            "/certificates/{name}/backup",
            post(lifecycle::backup::<c::Certificates>),
        )
        .route("/certificates/{name}/versions", get(c::list_versions))
        .route(
            "/certificates/{name}/policy",
            get(c::get_policy).patch(c::update_policy),
        )
        .route(
            "/certificates/{name}/pending",
            get(c::get_pending)
                .patch(c::cancel_pending)
                .delete(c::delete_pending),
        )
        .route("/certificates/{name}/pending/merge", post(c::merge))
        .route(
            "/certificates/{name}/{version}",
            get(c::get).patch(c::update),
        )
        .route(
            "/deletedcertificates",
            get(lifecycle::list_deleted::<c::Certificates>),
        )
        .route(
            "/deletedcertificates/{name}",
            get(lifecycle::get_deleted::<c::Certificates>)
                .merge(delete(lifecycle::purge::<c::Certificates>)),
        )
        .route(
            "/deletedcertificates/{name}/recover",
            post(lifecycle::recover::<c::Certificates>),
        )
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod cert_tests;

#[cfg(test)]
mod keys_tests;

#[cfg(test)]
mod admin_tests;
