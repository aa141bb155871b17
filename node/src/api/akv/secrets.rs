//! Secrets handlers: parse → engine → render.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

use super::context::AkvCtx;
use super::errors::ApiError;
use super::extract::{JsonBody, ObjectPath, PathParams};
use super::models::{
    bundle, bundle_with_value, deleted, item, BlobBody, Deleted, ListResult, SecretBundle,
    SecretItem, SetSecretBody, UpdateSecretBody,
};
use super::paging::{maxresults, next_link, skiptoken};
use super::AkvState;

type Res<T> = Result<Json<T>, ApiError>;

/// Backup blobs arrive with or without padding.
const BASE64URL_ANY_PAD: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// `PUT /secrets/{name}`
pub async fn set(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
    JsonBody(body): JsonBody<SetSecretBody>,
) -> Res<SecretBundle> {
    set_named(st, ctx, name, body).await
}

async fn set_named(
    st: AkvState,
    ctx: AkvCtx,
    name: String,
    body: SetSecretBody,
) -> Res<SecretBundle> {
    let id = ctx.write_id("set", &name);
    let s = st
        .secrets
        .set(&ctx.vault, &name, body.into(), Some(&id))
        .await?;
    Ok(Json(bundle_with_value(&ctx.base_url, s)))
}

/// `GET /secrets/{name}`, `GET /secrets/{name}/` (latest) and
/// `GET /secrets/{name}/{version}`.
pub async fn get(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(at): PathParams<ObjectPath>,
) -> Res<SecretBundle> {
    get_named(st, ctx, at.name, at.version).await
}

async fn get_named(st: AkvState, ctx: AkvCtx, name: String, version: String) -> Res<SecretBundle> {
    let mut s = st.secrets.get(&ctx.vault, &name, Some(&version)).await?;
    // A certificate's secret converts between PEM and PKCS#12 on read.
    let wanted = ctx.param("outContentType").filter(|t| !t.is_empty());
    if let (Some(to), Some(true)) = (wanted, s.properties.managed) {
        let from = s.properties.content_type.clone().unwrap_or_default();
        let converted = crate::engine::certificates::import::convert(&s.value, &from, to)?;
        s.value = converted.to_string();
        s.properties.content_type = Some(to.to_owned());
    }
    Ok(Json(bundle_with_value(&ctx.base_url, s)))
}

/// `PATCH /secrets/{name}/` (latest) and `PATCH /secrets/{name}/{version}`.
pub async fn update(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(at): PathParams<ObjectPath>,
    JsonBody(body): JsonBody<UpdateSecretBody>,
) -> Res<SecretBundle> {
    let (name, version) = (at.name, at.version);
    let id = ctx.write_id(&format!("update/{}", version.to_ascii_lowercase()), &name);
    let p = st
        .secrets
        .update(&ctx.vault, &name, Some(&version), body.into(), Some(&id))
        .await?;
    Ok(Json(bundle(&ctx.base_url, &p)))
}

/// `DELETE /secrets/{name}`
pub async fn delete(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
) -> Res<Deleted<SecretBundle>> {
    delete_named(st, ctx, name).await
}

async fn delete_named(st: AkvState, ctx: AkvCtx, name: String) -> Res<Deleted<SecretBundle>> {
    let id = ctx.write_id("delete", &name);
    let d = st.secrets.delete(&ctx.vault, &name, Some(&id)).await?;
    Ok(Json(deleted(
        &ctx.base_url,
        &d,
        bundle(&ctx.base_url, &d.properties),
    )))
}

/// `GET /secrets`
pub async fn list(State(st): State<AkvState>, ctx: AkvCtx) -> Res<ListResult<SecretItem>> {
    let max = maxresults(&ctx)?;
    let page = st.secrets.list(&ctx.vault, max, skiptoken(&ctx)).await?;
    Ok(Json(ListResult {
        value: page
            .items
            .iter()
            .map(|p| item(&ctx.base_url, p, false))
            .collect(),
        next_link: next_link(&ctx, "/secrets", page.skiptoken, max),
    }))
}

/// `GET /secrets/{name}/versions`
pub async fn list_versions(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
) -> Res<ListResult<SecretItem>> {
    let max = maxresults(&ctx)?;
    let page = st
        .secrets
        .list_versions(&ctx.vault, &name, max, skiptoken(&ctx))
        .await?;
    Ok(Json(ListResult {
        value: page
            .items
            .iter()
            .map(|p| item(&ctx.base_url, p, true))
            .collect(),
        next_link: next_link(
            &ctx,
            &format!("/secrets/{name}/versions"),
            page.skiptoken,
            max,
        ),
    }))
}

/// `GET /deletedsecrets`
pub async fn list_deleted(
    State(st): State<AkvState>,
    ctx: AkvCtx,
) -> Res<ListResult<Deleted<SecretItem>>> {
    let max = maxresults(&ctx)?;
    let page = st
        .secrets
        .list_deleted(&ctx.vault, max, skiptoken(&ctx))
        .await?;
    Ok(Json(ListResult {
        value: page
            .items
            .iter()
            .map(|d| deleted(&ctx.base_url, d, item(&ctx.base_url, &d.properties, false)))
            .collect(),
        next_link: next_link(&ctx, "/deletedsecrets", page.skiptoken, max),
    }))
}

/// `GET /deletedsecrets/{name}`
pub async fn get_deleted(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
) -> Res<Deleted<SecretBundle>> {
    let d = st.secrets.get_deleted(&ctx.vault, &name).await?;
    Ok(Json(deleted(
        &ctx.base_url,
        &d,
        bundle(&ctx.base_url, &d.properties),
    )))
}

/// `DELETE /deletedsecrets/{name}` → 204
pub async fn purge(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    let id = ctx.write_id("purge", &name);
    st.secrets.purge(&ctx.vault, &name, Some(&id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /deletedsecrets/{name}/recover`
pub async fn recover(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
) -> Res<SecretBundle> {
    let id = ctx.write_id("recover", &name);
    let p = st.secrets.recover(&ctx.vault, &name, Some(&id)).await?;
    Ok(Json(bundle(&ctx.base_url, &p)))
}

/// `POST /secrets/{name}/backup`
pub async fn backup(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
) -> Res<BlobBody> {
    let blob = st.secrets.backup(&ctx.vault, &name).await?;
    Ok(Json(BlobBody {
        value: URL_SAFE_NO_PAD.encode(blob),
    }))
}

/// `POST /secrets/restore`
pub async fn restore(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    JsonBody(body): JsonBody<BlobBody>,
) -> Res<SecretBundle> {
    let blob = BASE64URL_ANY_PAD
        .decode(body.value.trim())
        .map_err(|_| ApiError::bad_parameter("Malformed backup blob"))?;
    let id = ctx.write_id("restore", "");
    let p = st.secrets.restore(&ctx.vault, &blob, Some(&id)).await?;
    Ok(Json(bundle(&ctx.base_url, &p)))
}

// A secret may be called "restore": the static `/secrets/restore` route
// shadows `/secrets/{name}` for it, so its other methods land here.

/// `PUT /secrets/restore` (the secret named "restore").
pub async fn set_restore(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    JsonBody(body): JsonBody<SetSecretBody>,
) -> Res<SecretBundle> {
    set_named(st, ctx, "restore".into(), body).await
}

/// `GET /secrets/restore` (the secret named "restore").
pub async fn get_restore(State(st): State<AkvState>, ctx: AkvCtx) -> Res<SecretBundle> {
    get_named(st, ctx, "restore".into(), String::new()).await
}

/// `DELETE /secrets/restore` (the secret named "restore").
pub async fn delete_restore(State(st): State<AkvState>, ctx: AkvCtx) -> Res<Deleted<SecretBundle>> {
    delete_named(st, ctx, "restore".into()).await
}
