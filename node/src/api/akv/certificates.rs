//! Certificates handlers: parse → engine → render.

use async_trait::async_trait;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::alphabet::STANDARD as STD_ALPHABET;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use zeroize::Zeroizing;

use super::cert_models::{
    bundle, contacts, issuer, issuer_item, item, operation, policy_out, CertificateBundle,
    CertificateItem, ContactsBody, CreateBody, ImportBody, IssuerBody, IssuerItem, IssuerOut,
    MergeBody, OperationOut, PendingPatch, PolicyOut, UpdateBody,
};
use super::context::AkvCtx;
use super::errors::ApiError;
use super::extract::{JsonBody, ObjectPath, PathParams};
use super::lifecycle::{DeletedFields, SoftDeleted};
use super::models::ListResult;
use super::paging::{maxresults, next_link, skiptoken};
use super::AkvState;
use crate::engine::certificates::issuers::IssuerParams;
use crate::engine::certificates::pending::{
    CreateCertificate, ImportCertificate, MergeCertificate,
};
use crate::engine::certificates::{DeletedCertificate, OpStatus, Policy, UpdateCertificate};
use crate::engine::error::EngineError;
use crate::engine::paging::Page;

type Res<T> = Result<Json<T>, ApiError>;

/// `x5c` entries: standard base64, padding optional.
const BASE64_ANY_PAD: GeneralPurpose = GeneralPurpose::new(
    &STD_ALPHABET,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// `POST /certificates/{name}/create` → 202 with the operation. The
/// answer always says `inProgress`, even when Coffer has already issued
/// the certificate: the SDK poller returns nothing for any other status
/// and only then polls `/pending`, which tells the truth.
pub async fn create(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<Response, ApiError> {
    let id = ctx.write_id("certificate-create", &name);
    let req = CreateCertificate {
        policy: body.policy.unwrap_or_default(),
        enabled: body.attributes.and_then(|a| a.enabled),
        tags: body.tags,
    };
    let mut op = st
        .certificates
        .create(&ctx.vault, &name, req, Some(&id))
        .await?;
    op.status = OpStatus::InProgress;
    let out = operation(&ctx.base_url, &op);
    let location = format!(
        "{}/certificates/{name}/pending?api-version={}&request_id={}",
        ctx.base_url, ctx.api_version, op.request_id
    );
    let mut resp = (StatusCode::ACCEPTED, Json(out)).into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(&location) {
        resp.headers_mut().insert(axum::http::header::LOCATION, v);
    }
    resp.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("10"),
    );
    Ok(resp)
}

/// `POST /certificates/{name}/import`
pub async fn import(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
    JsonBody(body): JsonBody<ImportBody>,
) -> Res<CertificateBundle> {
    let id = ctx.write_id("certificate-import", &name);
    let req = ImportCertificate {
        value: Zeroizing::new(body.value),
        password: body.pwd.map(Zeroizing::new),
        policy: body.policy,
        enabled: body.attributes.and_then(|a| a.enabled),
        tags: body.tags,
    };
    let c = st
        .certificates
        .import(&ctx.vault, &name, req, Some(&id))
        .await?;
    Ok(Json(bundle(&ctx.base_url, c)))
}

/// `GET /certificates/{name}`, `/certificates/{name}/` (latest) and
/// `/certificates/{name}/{version}`.
pub async fn get(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(at): PathParams<ObjectPath>,
) -> Res<CertificateBundle> {
    let c = st
        .certificates
        .get(&ctx.vault, &at.name, Some(&at.version))
        .await?;
    Ok(Json(bundle(&ctx.base_url, c)))
}

/// `PATCH /certificates/{name}/` and `/certificates/{name}/{version}`.
pub async fn update(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(at): PathParams<ObjectPath>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> Res<CertificateBundle> {
    let id = ctx.write_id(
        &format!("certificate-update/{}", at.version.to_ascii_lowercase()),
        &at.name,
    );
    let patch = UpdateCertificate {
        enabled: body.attributes.and_then(|a| a.enabled),
        tags: body.tags,
        policy: body.policy,
    };
    let c = st
        .certificates
        .update(&ctx.vault, &at.name, Some(&at.version), patch, Some(&id))
        .await?;
    Ok(Json(bundle(&ctx.base_url, c)))
}

/// `GET /certificates`
pub async fn list(State(st): State<AkvState>, ctx: AkvCtx) -> Res<ListResult<CertificateItem>> {
    let max = maxresults(&ctx)?;
    let page = st
        .certificates
        .list(&ctx.vault, max, skiptoken(&ctx))
        .await?;
    Ok(Json(ListResult {
        value: page
            .items
            .iter()
            .map(|c| item(&ctx.base_url, c, false))
            .collect(),
        next_link: next_link(&ctx, "/certificates", page.skiptoken, max),
    }))
}

/// `GET /certificates/{name}/versions`
pub async fn list_versions(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
) -> Res<ListResult<CertificateItem>> {
    let max = maxresults(&ctx)?;
    let page = st
        .certificates
        .list_versions(&ctx.vault, &name, max, skiptoken(&ctx))
        .await?;
    Ok(Json(ListResult {
        value: page
            .items
            .iter()
            .map(|c| item(&ctx.base_url, c, true))
            .collect(),
        next_link: next_link(
            &ctx,
            &format!("/certificates/{name}/versions"),
            page.skiptoken,
            max,
        ),
    }))
}

/// `GET /certificates/{name}/policy`
pub async fn get_policy(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
) -> Res<PolicyOut> {
    let p = st.certificates.get_policy(&ctx.vault, &name).await?;
    Ok(Json(policy_out(&ctx.base_url, &name, p)))
}

/// `PATCH /certificates/{name}/policy`
pub async fn update_policy(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
    JsonBody(body): JsonBody<Policy>,
) -> Res<PolicyOut> {
    let id = ctx.write_id("certificate-policy", &name);
    let p = st
        .certificates
        .update_policy(&ctx.vault, &name, body, Some(&id))
        .await?;
    Ok(Json(policy_out(&ctx.base_url, &name, p)))
}

/// `GET /certificates/{name}/pending` (`?request_id=` must match if given).
pub async fn get_pending(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
) -> Res<OperationOut> {
    let op = st.certificates.get_operation(&ctx.vault, &name).await?;
    if ctx
        .param("request_id")
        .is_some_and(|r| !r.is_empty() && r != op.request_id)
    {
        return Err(crate::engine::EngineError::NotFound {
            kind: crate::engine::ObjectKind::CertificateOperation,
            name,
        }
        .into());
    }
    Ok(Json(operation(&ctx.base_url, &op)))
}

/// `PATCH /certificates/{name}/pending` with `cancellation_requested: true`.
pub async fn cancel_pending(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
    JsonBody(body): JsonBody<PendingPatch>,
) -> Res<OperationOut> {
    if !body.cancellation_requested {
        return Err(ApiError::bad_parameter(
            "Only cancellation_requested: true can be set on a pending certificate",
        ));
    }
    let id = ctx.write_id("certificate-cancel", &name);
    let op = st
        .certificates
        .cancel_operation(&ctx.vault, &name, Some(&id))
        .await?;
    Ok(Json(operation(&ctx.base_url, &op)))
}

/// `DELETE /certificates/{name}/pending`
pub async fn delete_pending(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
) -> Res<OperationOut> {
    let id = ctx.write_id("certificate-pending-delete", &name);
    let op = st
        .certificates
        .delete_operation(&ctx.vault, &name, Some(&id))
        .await?;
    Ok(Json(operation(&ctx.base_url, &op)))
}

/// `POST /certificates/{name}/pending/merge` → 201.
pub async fn merge(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
    JsonBody(body): JsonBody<MergeBody>,
) -> Result<(StatusCode, Json<CertificateBundle>), ApiError> {
    let x5c = body
        .x5c
        .iter()
        .map(|c| BASE64_ANY_PAD.decode(c.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            ApiError::bad_parameter(
                "Property x5c has invalid value X5C must has at least one valid item",
            )
        })?;
    let attrs = body.attributes;
    let req = MergeCertificate {
        x5c,
        enabled: attrs.and_then(|a| a.enabled),
        tags: body.tags,
    };
    let id = ctx.write_id("certificate-merge", &name);
    let c = st
        .certificates
        .merge(&ctx.vault, &name, req, Some(&id))
        .await?;
    Ok((StatusCode::CREATED, Json(bundle(&ctx.base_url, c))))
}

/// `GET /certificates/contacts`
pub async fn get_contacts(State(st): State<AkvState>, ctx: AkvCtx) -> Res<ContactsBody> {
    let c = st.certificates.get_contacts(&ctx.vault).await?;
    Ok(Json(contacts(&ctx.base_url, c)))
}

/// `PUT /certificates/contacts`
pub async fn set_contacts(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    JsonBody(body): JsonBody<ContactsBody>,
) -> Res<ContactsBody> {
    let id = ctx.write_id("certificate-contacts-set", "");
    let c = st
        .certificates
        .set_contacts(&ctx.vault, body.contacts, Some(&id))
        .await?;
    Ok(Json(contacts(&ctx.base_url, c)))
}

/// `DELETE /certificates/contacts`
pub async fn delete_contacts(State(st): State<AkvState>, ctx: AkvCtx) -> Res<ContactsBody> {
    let id = ctx.write_id("certificate-contacts-delete", "");
    let c = st
        .certificates
        .delete_contacts(&ctx.vault, Some(&id))
        .await?;
    Ok(Json(contacts(&ctx.base_url, c)))
}

/// `GET /certificates/issuers`
pub async fn list_issuers(State(st): State<AkvState>, ctx: AkvCtx) -> Res<ListResult<IssuerItem>> {
    let max = maxresults(&ctx)?;
    let page = st
        .certificates
        .list_issuers(&ctx.vault, max, skiptoken(&ctx))
        .await?;
    Ok(Json(ListResult {
        value: page
            .items
            .iter()
            .map(|i| issuer_item(&ctx.base_url, i))
            .collect(),
        next_link: next_link(&ctx, "/certificates/issuers", page.skiptoken, max),
    }))
}

/// `GET /certificates/issuers/{name}`
pub async fn get_issuer(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
) -> Res<IssuerOut> {
    let i = st.certificates.get_issuer(&ctx.vault, &name).await?;
    Ok(Json(issuer(&ctx.base_url, i)))
}

/// The engine's issuer parameters of `body`, with the base URL of the
/// issuer's PKI endpoints on the address the request came through (a
/// `Coffer` issuer embeds it in what it issues).
fn issuer_params(ctx: &AkvCtx, name: &str, body: IssuerBody) -> IssuerParams {
    IssuerParams {
        pki_url: Some(format!(
            "{}/v1/pki/{}/{}",
            ctx.base_url,
            ctx.vault,
            name.to_ascii_lowercase()
        )),
        ..body.into()
    }
}

/// `PUT /certificates/issuers/{name}`
pub async fn set_issuer(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
    JsonBody(body): JsonBody<IssuerBody>,
) -> Res<IssuerOut> {
    let id = ctx.write_id("certificate-issuer-set", &name);
    let i = st
        .certificates
        .set_issuer(
            &ctx.vault,
            &name,
            issuer_params(&ctx, &name, body),
            Some(&id),
        )
        .await?;
    Ok(Json(issuer(&ctx.base_url, i)))
}

/// `PATCH /certificates/issuers/{name}`
pub async fn update_issuer(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
    JsonBody(body): JsonBody<IssuerBody>,
) -> Res<IssuerOut> {
    let id = ctx.write_id("certificate-issuer-update", &name);
    let i = st
        .certificates
        .update_issuer(
            &ctx.vault,
            &name,
            issuer_params(&ctx, &name, body),
            Some(&id),
        )
        .await?;
    Ok(Json(issuer(&ctx.base_url, i)))
}

/// `DELETE /certificates/issuers/{name}`
pub async fn delete_issuer(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
) -> Res<IssuerOut> {
    let id = ctx.write_id("certificate-issuer-delete", &name);
    let i = st
        .certificates
        .delete_issuer(&ctx.vault, &name, Some(&id))
        .await?;
    Ok(Json(issuer(&ctx.base_url, i)))
}

/// Certificates as the shared soft-delete and backup handlers see them.
/// The engine acts on the certificate's key and secret in the same
/// transaction.
pub struct Certificates;

#[async_trait]
impl SoftDeleted for Certificates {
    type Record = DeletedCertificate;
    type Item = CertificateItem;
    type Bundle = CertificateBundle;
    const DELETED: &'static str = "deletedcertificates";
    const WRITE_PREFIX: &'static str = "certificate-";

    async fn delete(
        st: &AkvState,
        vault: &str,
        name: &str,
        id: &str,
    ) -> Result<DeletedCertificate, EngineError> {
        st.certificates.delete(vault, name, Some(id)).await
    }
    async fn list_deleted(
        st: &AkvState,
        vault: &str,
        max: Option<u32>,
        skiptoken: Option<&str>,
    ) -> Result<Page<DeletedCertificate>, EngineError> {
        st.certificates.list_deleted(vault, max, skiptoken).await
    }
    async fn get_deleted(
        st: &AkvState,
        vault: &str,
        name: &str,
    ) -> Result<DeletedCertificate, EngineError> {
        st.certificates.get_deleted(vault, name).await
    }
    async fn purge(st: &AkvState, vault: &str, name: &str, id: &str) -> Result<(), EngineError> {
        st.certificates.purge(vault, name, Some(id)).await
    }
    async fn recover(
        st: &AkvState,
        ctx: &AkvCtx,
        name: &str,
        id: &str,
    ) -> Result<CertificateBundle, EngineError> {
        let c = st.certificates.recover(&ctx.vault, name, Some(id)).await?;
        Ok(bundle(&ctx.base_url, c))
    }
    async fn backup(st: &AkvState, vault: &str, name: &str) -> Result<Vec<u8>, EngineError> {
        st.certificates.backup(vault, name).await
    }
    async fn restore(
        st: &AkvState,
        ctx: &AkvCtx,
        blob: &[u8],
        id: &str,
    ) -> Result<CertificateBundle, EngineError> {
        let c = st.certificates.restore(&ctx.vault, blob, Some(id)).await?;
        Ok(bundle(&ctx.base_url, c))
    }
    fn fields(d: &DeletedCertificate) -> DeletedFields<'_> {
        DeletedFields {
            name: &d.certificate.name,
            deleted_date: d.deleted_date,
            scheduled_purge_date: d.scheduled_purge_date,
        }
    }
    fn item(base: &str, d: &DeletedCertificate) -> CertificateItem {
        item(base, &d.certificate, false)
    }
    fn bundle(base: &str, d: &DeletedCertificate) -> CertificateBundle {
        bundle(base, d.certificate.clone())
    }
}
