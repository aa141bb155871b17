//! The PKI endpoints of `Coffer` issuers, outside the Key Vault namespace
//! and served by every node: `/v1/pki/{vault}/{issuer}/ca` (the CA
//! certificate, DER; `ca.pem`), `/crl` (the signed CRL, DER) and `/ocsp`
//! (RFC 6960: POST of a DER request, or GET with the request in the path,
//! RFC 6960 appendix A) without a token, as public CAs serve them; and
//! `/revoke`, `/revocations` behind the Key Vault API's authentication and
//! RBAC (dataActions `certificates/revoke/action`, Coffer's own, and
//! `certificates/read` on the path's vault; the root token is break-glass
//! there as everywhere), answering in the Key Vault error format.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;

use crate::api::akv::errors::ApiError;
use crate::api::akv::extract::JsonBody;
use crate::api::akv::AkvState;
use crate::api::sys::SysError;
use crate::engine::certificates::issue::pem_block;
use crate::engine::certificates::pki::{Revocation, RevokeTarget, RevokedEntry};
use crate::engine::certificates::CertificatesEngine;
use crate::engine::error::{EngineError, ObjectKind};

/// Largest OCSP request read (a request for a few certificates with a
/// nonce is a few hundred bytes).
pub const OCSP_REQUEST_MAX_BYTES: usize = 16 * 1024;
/// How long an OCSP request body may take to arrive.
const OCSP_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// GET requests carry standard base64 (URL-encoded by the client) with or
/// without padding.
const BASE64_ANY_PAD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Shared state of the PKI endpoints.
#[derive(Clone)]
pub struct PkiState {
    /// The certificates engine (issuers, CAs, revocations).
    pub certificates: Arc<CertificatesEngine>,
}

/// The `{vault}` and `{issuer}` of a PKI route.
type IssuerPath = Path<(String, String)>;

/// Routes anyone may call (CA certificate, CRL, OCSP).
pub fn public_router(state: PkiState) -> Router {
    Router::new()
        .route(
            "/v1/pki/{vault}/{issuer}/ca",
            get(|st: State<PkiState>, at: IssuerPath| document(st, at, Document::CaDer)),
        )
        .route(
            "/v1/pki/{vault}/{issuer}/ca.pem",
            get(|st: State<PkiState>, at: IssuerPath| document(st, at, Document::CaPem)),
        )
        .route(
            "/v1/pki/{vault}/{issuer}/crl",
            get(|st: State<PkiState>, at: IssuerPath| document(st, at, Document::Crl)),
        )
        .route("/v1/pki/{vault}/{issuer}/ocsp", post(ocsp_post))
        .route("/v1/pki/{vault}/{issuer}/ocsp/{*request}", get(ocsp_get))
        .with_state(state)
}

/// Routes behind Key Vault authentication and RBAC: merged into the Key
/// Vault router, whose operation table names their dataActions.
pub fn authorized_routes() -> Router<AkvState> {
    Router::new()
        .route("/v1/pki/{vault}/{issuer}/revoke", post(revoke))
        .route("/v1/pki/{vault}/{issuer}/revocations", get(revocations))
}

/// An engine error as an operator-style error body.
fn error(e: EngineError) -> SysError {
    match &e {
        EngineError::NotFound {
            kind: ObjectKind::CertificateIssuer,
            name,
        } => SysError::new(StatusCode::NOT_FOUND, format!("Issuer not found: {name}")),
        EngineError::NotFound { .. } => SysError::new(StatusCode::NOT_FOUND, e.to_string()),
        EngineError::NotSupported(_) => SysError::new(StatusCode::BAD_REQUEST, e.to_string()),
        _ => SysError::from(e),
    }
}

fn binary(content_type: &'static str, body: Vec<u8>) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// The documents an issuer publishes.
#[derive(Clone, Copy, Debug)]
enum Document {
    /// The CA certificate, DER.
    CaDer,
    /// The CA certificate, PEM.
    CaPem,
    /// The current CRL, DER.
    Crl,
}

/// `GET /v1/pki/{vault}/{issuer}/{ca,ca.pem,crl}`: one published document.
async fn document(
    State(st): State<PkiState>,
    Path((vault, issuer)): IssuerPath,
    doc: Document,
) -> Result<Response, SysError> {
    let (vault, issuer, certs) = (vault.as_str(), issuer.as_str(), &st.certificates);
    let (content_type, body) = match doc {
        Document::CaDer => (
            "application/pkix-cert",
            certs.ca_certificate(vault, issuer).await,
        ),
        Document::CaPem => (
            "application/x-pem-file",
            certs
                .ca_certificate(vault, issuer)
                .await
                .map(|der| pem_block("CERTIFICATE", &der).into_bytes()),
        ),
        Document::Crl => ("application/pkix-crl", certs.crl(vault, issuer).await),
    };
    Ok(binary(content_type, body.map_err(error)?))
}

fn ocsp_response(der: Vec<u8>) -> Response {
    binary("application/ocsp-response", der)
}

/// `POST /v1/pki/{vault}/{issuer}/ocsp` with a DER `OCSPRequest`.
async fn ocsp_post(
    State(st): State<PkiState>,
    Path((vault, issuer)): Path<(String, String)>,
    req: Request,
) -> Result<Response, SysError> {
    let body = read_limited(req.into_body()).await?;
    Ok(ocsp_response(
        st.certificates.ocsp(&vault, &issuer, &body).await,
    ))
}

/// `GET /v1/pki/{vault}/{issuer}/ocsp/{base64 of the DER request}`.
async fn ocsp_get(
    State(st): State<PkiState>,
    Path((vault, issuer, request)): Path<(String, String, String)>,
) -> Result<Response, SysError> {
    // Clients URL-encode the base64; axum has decoded the path already.
    let compact: String = request.chars().filter(|c| !c.is_whitespace()).collect();
    let der = BASE64_ANY_PAD
        .decode(compact.as_bytes())
        .unwrap_or_default();
    Ok(ocsp_response(
        st.certificates.ocsp(&vault, &issuer, &der).await,
    ))
}

/// The body up to [`OCSP_REQUEST_MAX_BYTES`], within [`OCSP_BODY_TIMEOUT`].
async fn read_limited(body: Body) -> Result<Bytes, SysError> {
    let read = Limited::new(body, OCSP_REQUEST_MAX_BYTES).collect();
    match tokio::time::timeout(OCSP_BODY_TIMEOUT, read).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(_)) => Err(SysError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the OCSP request is larger than {OCSP_REQUEST_MAX_BYTES} bytes"),
        )),
        Err(_) => Err(SysError::new(
            StatusCode::REQUEST_TIMEOUT,
            "the OCSP request did not arrive in time",
        )),
    }
}

/// Body of `POST /v1/pki/{vault}/{issuer}/revoke`: a certificate of the
/// vault (`certificate`, optional `version`) or a `serial` (hex).
#[derive(Deserialize)]
pub struct RevokeBody {
    /// Certificate name.
    #[serde(default)]
    pub certificate: Option<String>,
    /// Certificate version (latest when absent).
    #[serde(default)]
    pub version: Option<String>,
    /// Serial number, hex (colons allowed).
    #[serde(default)]
    pub serial: Option<String>,
    /// RFC 5280 reason name (`keyCompromise`, `superseded`, …).
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /v1/pki/{vault}/{issuer}/revoke` (`certificates/revoke/action`).
async fn revoke(
    State(st): State<AkvState>,
    Path((vault, issuer)): Path<(String, String)>,
    JsonBody(body): JsonBody<RevokeBody>,
) -> Result<Json<Revocation>, ApiError> {
    let target = match (body.certificate, body.serial) {
        (Some(name), None) => RevokeTarget::Certificate {
            name,
            version: body.version,
        },
        (None, Some(serial)) => RevokeTarget::Serial(serial),
        _ => {
            return Err(ApiError::bad_parameter(
                "Give either certificate (with an optional version) or serial",
            ))
        }
    };
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let done = st
        .certificates
        .revoke(
            &vault,
            &issuer,
            target,
            body.reason.as_deref(),
            Some(&request_id),
        )
        .await?;
    tracing::info!(%vault, %issuer, serial = %done.serial, reason = %done.reason, "certificate revoked");
    Ok(Json(done))
}

/// `GET /v1/pki/{vault}/{issuer}/revocations` (`certificates/read`).
async fn revocations(
    State(st): State<AkvState>,
    Path((vault, issuer)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let list: Vec<RevokedEntry> = st.certificates.revocations(&vault, &issuer).await?;
    Ok(Json(serde_json::json!({ "revoked": list })))
}
