//! Azure Key Vault data-plane API (secrets).
//!
//! The vault is chosen by the Host header, every request needs a supported
//! `api-version`, and `x-ms-client-request-id` is the idempotency key of
//! writes (echoed in `x-ms-request-id` / `x-ms-client-request-id`). The lead
//! wraps this router with authentication. No fallback is set, so the router
//! can be merged with others.

pub mod context;
pub mod errors;
pub mod extract;
pub mod models;
pub mod paging;
pub mod secrets;

use std::sync::Arc;

use axum::routing::{get, post, put};
use axum::Router;

use crate::engine::secrets::SecretsEngine;
use crate::engine::vaults::VaultsEngine;

/// Shared state of the Key Vault API.
#[derive(Clone)]
pub struct AkvState {
    /// Secrets of all vaults.
    pub secrets: Arc<SecretsEngine>,
    /// Vault registry.
    pub vaults: Arc<VaultsEngine>,
    /// `{vault}.{vault_domain}` hosts select `{vault}`; `None`: always the default.
    pub vault_domain: Option<String>,
    /// Vault of requests whose Host does not name one.
    pub default_vault: String,
}

/// Every secrets route the Azure SDKs call.
pub fn router(state: AkvState) -> Router {
    Router::new()
        .route("/secrets", get(secrets::list))
        .route(
            "/secrets/restore",
            post(secrets::restore)
                .put(secrets::set_restore)
                .get(secrets::get_restore)
                .delete(secrets::delete_restore),
        )
        .route(
            "/secrets/{name}",
            put(secrets::set)
                .get(secrets::get_latest)
                .delete(secrets::delete),
        )
        .route(
            "/secrets/{name}/",
            get(secrets::get_latest).patch(secrets::update_latest),
        )
        .route("/secrets/{name}/versions", get(secrets::list_versions))
        .route("/secrets/{name}/backup", post(secrets::backup))
        .route(
            "/secrets/{name}/{version}",
            get(secrets::get_version).patch(secrets::update_version),
        )
        .route("/deletedsecrets", get(secrets::list_deleted))
        .route(
            "/deletedsecrets/{name}",
            get(secrets::get_deleted).delete(secrets::purge),
        )
        .route("/deletedsecrets/{name}/recover", post(secrets::recover))
        .layer(axum::middleware::from_fn(context::request_id_layer))
        .with_state(state)
}

#[cfg(test)]
mod tests;
