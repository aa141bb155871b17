//! Secrets handlers: parse → engine → render.

use async_trait::async_trait;
use axum::extract::State;
use axum::Json;

use super::context::AkvCtx;
use super::errors::ApiError;
use super::extract::{JsonBody, ObjectPath, PathParams};
use super::lifecycle::{self, DeletedFields, SoftDeleted};
use super::models::{
    bundle, bundle_with_value, item, Deleted, ListResult, SecretBundle, SecretItem, SetSecretBody,
    UpdateSecretBody,
};
use super::paging::{maxresults, next_link, skiptoken};
use super::AkvState;
use crate::engine::error::EngineError;
use crate::engine::paging::Page;
use crate::engine::secrets::DeletedSecret;

type Res<T> = Result<Json<T>, ApiError>;

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
    lifecycle::delete_named::<Secrets>(&st, &ctx, "restore").await
}

/// Secrets as the shared soft-delete and backup handlers see them.
pub struct Secrets;

#[async_trait]
impl SoftDeleted for Secrets {
    type Record = DeletedSecret;
    type Item = SecretItem;
    type Bundle = SecretBundle;
    const DELETED: &'static str = "deletedsecrets";
    const WRITE_PREFIX: &'static str = "";

    async fn delete(
        st: &AkvState,
        vault: &str,
        name: &str,
        id: &str,
    ) -> Result<DeletedSecret, EngineError> {
        st.secrets.delete(vault, name, Some(id)).await
    }
    async fn list_deleted(
        st: &AkvState,
        vault: &str,
        max: Option<u32>,
        skiptoken: Option<&str>,
    ) -> Result<Page<DeletedSecret>, EngineError> {
        st.secrets.list_deleted(vault, max, skiptoken).await
    }
    async fn get_deleted(
        st: &AkvState,
        vault: &str,
        name: &str,
    ) -> Result<DeletedSecret, EngineError> {
        st.secrets.get_deleted(vault, name).await
    }
    async fn purge(st: &AkvState, vault: &str, name: &str, id: &str) -> Result<(), EngineError> {
        st.secrets.purge(vault, name, Some(id)).await
    }
    async fn recover(
        st: &AkvState,
        ctx: &AkvCtx,
        name: &str,
        id: &str,
    ) -> Result<SecretBundle, EngineError> {
        let p = st.secrets.recover(&ctx.vault, name, Some(id)).await?;
        Ok(bundle(&ctx.base_url, &p))
    }
    async fn backup(st: &AkvState, vault: &str, name: &str) -> Result<Vec<u8>, EngineError> {
        st.secrets.backup(vault, name).await
    }
    async fn restore(
        st: &AkvState,
        ctx: &AkvCtx,
        blob: &[u8],
        id: &str,
    ) -> Result<SecretBundle, EngineError> {
        let p = st.secrets.restore(&ctx.vault, blob, Some(id)).await?;
        Ok(bundle(&ctx.base_url, &p))
    }
    fn fields(d: &DeletedSecret) -> DeletedFields<'_> {
        DeletedFields {
            name: &d.properties.name,
            deleted_date: d.deleted_date,
            scheduled_purge_date: d.scheduled_purge_date,
        }
    }
    fn item(base: &str, d: &DeletedSecret) -> SecretItem {
        item(base, &d.properties, false)
    }
    fn bundle(base: &str, d: &DeletedSecret) -> SecretBundle {
        bundle(base, &d.properties)
    }
}
