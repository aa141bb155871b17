//! `/v1/sys/hsm/…`: the node's PKCS#11 device and the cluster KEK ceremony
//! (status, kek/create, transport-key, kek/export, kek/import). All routes
//! need a token; byte fields are base64url without padding.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{bad_json, SysError, SysState};
use crate::crypto::hsm::{HsmAdmin, KekExport, OaepHash, TransportKey};
use crate::crypto::CryptoError;

/// The HSM routes (merged into the protected operator router).
pub fn router() -> Router<SysState> {
    Router::new()
        .route("/v1/sys/hsm/status", get(status))
        .route("/v1/sys/hsm/kek/create", post(create_kek))
        .route("/v1/sys/hsm/transport-key", post(transport_key))
        .route("/v1/sys/hsm/kek/export", post(export_kek))
        .route("/v1/sys/hsm/kek/import", post(import_kek))
}

/// `POST /v1/sys/hsm/transport-key` answer and `kek/export` request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportKeyBody {
    /// RSA modulus.
    pub n: String,
    /// RSA public exponent.
    pub e: String,
    /// The receiving device accepts SHA-256 OAEP.
    pub oaep_sha256: bool,
}

/// `POST /v1/sys/hsm/kek/export` answer and `kek/import` request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KekExportBody {
    /// The KEK wrapped under the transport key.
    pub wrapped: String,
    /// `sha1` or `sha256`.
    pub oaep_hash: OaepHash,
}

fn device(s: &SysState) -> Result<Arc<dyn HsmAdmin>, SysError> {
    s.hsm.clone().ok_or_else(|| {
        SysError(
            StatusCode::NOT_FOUND,
            "this node has no [hsm] section in its configuration".into(),
        )
    })
}

fn crypto_error(e: CryptoError) -> SysError {
    let status = match &e {
        CryptoError::HsmUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        CryptoError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    SysError(status, e.to_string())
}

/// Runs a blocking device call off the async runtime.
async fn blocking<T: Send + 'static>(
    hsm: Arc<dyn HsmAdmin>,
    f: impl FnOnce(&dyn HsmAdmin) -> Result<T, CryptoError> + Send + 'static,
) -> Result<T, SysError> {
    tokio::task::spawn_blocking(move || f(hsm.as_ref()))
        .await
        .map_err(|e| SysError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(crypto_error)
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(field: &str, text: &str) -> Result<Vec<u8>, SysError> {
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| SysError(StatusCode::BAD_REQUEST, format!("{field} is not base64url")))
}

async fn status(State(s): State<SysState>) -> Result<Response, SysError> {
    let Some(hsm) = s.hsm.clone() else {
        return Ok(Json(json!({ "configured": false, "available": false })).into_response());
    };
    let status = blocking(hsm, |h| Ok(h.status())).await?;
    let mut body = serde_json::to_value(status)
        .map_err(|e| SysError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    body["configured"] = json!(true);
    Ok(Json(body).into_response())
}

async fn create_kek(State(s): State<SysState>) -> Result<Response, SysError> {
    let info = blocking(device(&s)?, |h| h.create_kek()).await?;
    Ok(Json(info).into_response())
}

async fn transport_key(State(s): State<SysState>) -> Result<Response, SysError> {
    let key = blocking(device(&s)?, |h| h.transport_key()).await?;
    Ok(Json(TransportKeyBody {
        n: b64(&key.n),
        e: b64(&key.e),
        oaep_sha256: key.oaep_sha256,
    })
    .into_response())
}

async fn export_kek(
    State(s): State<SysState>,
    body: Result<Json<TransportKeyBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, SysError> {
    let Json(req) = body.map_err(bad_json)?;
    let transport = TransportKey {
        n: unb64("n", &req.n)?,
        e: unb64("e", &req.e)?,
        oaep_sha256: req.oaep_sha256,
    };
    let export = blocking(device(&s)?, move |h| h.export_kek(&transport)).await?;
    Ok(Json(KekExportBody {
        wrapped: b64(&export.wrapped),
        oaep_hash: export.oaep_hash,
    })
    .into_response())
}

async fn import_kek(
    State(s): State<SysState>,
    body: Result<Json<KekExportBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, SysError> {
    let Json(req) = body.map_err(bad_json)?;
    let export = KekExport {
        wrapped: unb64("wrapped", &req.wrapped)?,
        oaep_hash: req.oaep_hash,
    };
    let info = blocking(device(&s)?, move |h| h.import_kek(&export)).await?;
    Ok(Json(info).into_response())
}
