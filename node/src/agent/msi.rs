//! The App Service managed-identity endpoint (`IDENTITY_ENDPOINT` +
//! `IDENTITY_HEADER`) that `ManagedIdentityCredential()` calls: a workload
//! presents its application key and gets the agent's token.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{apps, Shared};
use coffer_client::auth::VAULT_RESOURCE;

#[derive(Deserialize)]
pub(super) struct TokenQuery {
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

/// The resource to ask the cluster for. A client talking to the vault
/// through this agent is challenged for the agent's own address (the
/// node names the Host it was reached at); no node accepts a token for
/// that audience, so such a resource — a loopback host or one of the
/// agent's TLS names — becomes the Key Vault resource every node accepts.
pub(super) fn cluster_resource(resource: &str, agent_names: &[String]) -> String {
    let host = url::Url::parse(resource).ok().and_then(|u| {
        u.host_str()
            .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase())
    });
    let Some(host) = host else {
        return resource.to_owned();
    };
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback || agent_names.iter().any(|n| n.eq_ignore_ascii_case(&host)) {
        VAULT_RESOURCE.to_owned()
    } else {
        resource.to_owned()
    }
}

/// `GET /msi/token?api-version=2019-08-01&resource=…` with
/// `X-IDENTITY-HEADER`.
pub(super) async fn token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
) -> Response {
    let given = headers.get("x-identity-header").map(|v| v.as_bytes());
    let Some(app) = apps::find(&shared.apps, given) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong X-IDENTITY-HEADER",
        );
    };
    let Some(identity) = shared.identity.as_ref() else {
        return error(
            StatusCode::NOT_FOUND,
            "this agent has no identity configured",
        );
    };
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
            .is_some_and(|c| !c.eq_ignore_ascii_case(identity.client_id()))
    {
        return error(
            StatusCode::BAD_REQUEST,
            "this host has one identity: its client id",
        );
    }
    let asked = cluster_resource(&resource, &shared.names);
    match identity.token_for(&asked).await {
        Ok((token, exp)) => {
            tracing::debug!(app = %app.name, resource = %asked, "token handed out");
            Json(json!({
                "access_token": token.as_str(),
                "expires_on": exp.to_string(),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": identity.client_id(),
            }))
            .into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "token request to the cluster failed");
            error(StatusCode::BAD_GATEWAY, "the cluster did not issue a token")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agents_own_address_maps_to_the_vault_resource() {
        let names = vec!["vault.example.internal".to_owned()];
        for own in [
            "https://127.0.0.1:8200",
            "https://localhost:8200/",
            "https://[::1]:8200",
            "https://VAULT.example.internal:8200",
        ] {
            assert_eq!(cluster_resource(own, &names), VAULT_RESOURCE, "{own}");
        }
        for other in ["https://vault.azure.net", "https://kv.corp", "not a url"] {
            assert_eq!(cluster_resource(other, &names), other);
        }
    }
}
