//! The soft-delete and backup handlers of every versioned kind, written once.
//!
//! Secrets, keys and certificates share one engine lifecycle
//! (`engine::object`); their delete, deleted-object, purge, recover, backup
//! and restore routes differ only in which engine they call and how the
//! result is rendered. [`SoftDeleted`] names those differences for one kind;
//! the handlers below are the rest, so a fourth kind adds an impl, not a
//! fourth copy of the handlers.

use async_trait::async_trait;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde::Serialize;

use super::context::AkvCtx;
use super::errors::ApiError;
use super::extract::{JsonBody, PathParams};
use super::models::{BlobBody, Deleted, ListResult};
use super::paging::{maxresults, next_link, skiptoken};
use super::AkvState;
use crate::engine::error::EngineError;
use crate::engine::paging::Page;

type Res<T> = Result<Json<T>, ApiError>;

/// Backup blobs arrive with or without padding.
const BASE64URL_ANY_PAD: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The deleted-object fields every kind's deleted record carries.
pub struct DeletedFields<'a> {
    /// The object's name as created.
    pub name: &'a str,
    /// When it was deleted (Unix seconds).
    pub deleted_date: u64,
    /// When it will be purged (Unix seconds).
    pub scheduled_purge_date: u64,
}

/// One versioned kind as its soft-delete and backup routes see it.
#[async_trait]
pub trait SoftDeleted: Send + Sync + 'static {
    /// The engine's record of a deleted object.
    type Record: Send + Sync;
    /// How an object renders in a list.
    type Item: Serialize + Send;
    /// How an object renders on its own.
    type Bundle: Serialize + Send;

    /// The URL collection of deleted objects, e.g. `deletedsecrets`.
    const DELETED: &'static str;
    /// Prefix of this kind's idempotency ids; kept as earlier releases
    /// wrote them, so a client retry across an upgrade stays one write.
    const WRITE_PREFIX: &'static str;

    /// Deletes `name` (soft) and returns its deleted record.
    async fn delete(
        st: &AkvState,
        vault: &str,
        name: &str,
        id: &str,
    ) -> Result<Self::Record, EngineError>;
    /// A page of the vault's deleted objects.
    async fn list_deleted(
        st: &AkvState,
        vault: &str,
        max: Option<u32>,
        skiptoken: Option<&str>,
    ) -> Result<Page<Self::Record>, EngineError>;
    /// One deleted object.
    async fn get_deleted(
        st: &AkvState,
        vault: &str,
        name: &str,
    ) -> Result<Self::Record, EngineError>;
    /// Removes a deleted object for good.
    async fn purge(st: &AkvState, vault: &str, name: &str, id: &str) -> Result<(), EngineError>;
    /// Brings a deleted object back and renders it.
    async fn recover(
        st: &AkvState,
        ctx: &AkvCtx,
        name: &str,
        id: &str,
    ) -> Result<Self::Bundle, EngineError>;
    /// The protected backup blob of every version of `name`.
    async fn backup(st: &AkvState, vault: &str, name: &str) -> Result<Vec<u8>, EngineError>;
    /// Restores a backup blob and renders the restored object.
    async fn restore(
        st: &AkvState,
        ctx: &AkvCtx,
        blob: &[u8],
        id: &str,
    ) -> Result<Self::Bundle, EngineError>;

    /// The deleted-object fields of a record.
    fn fields(d: &Self::Record) -> DeletedFields<'_>;
    /// A deleted record as a list item.
    fn item(base: &str, d: &Self::Record) -> Self::Item;
    /// A deleted record as a bundle.
    fn bundle(base: &str, d: &Self::Record) -> Self::Bundle;
}

/// Wraps a rendered deleted object with its recovery id and dates.
fn wrap<K: SoftDeleted, T>(base: &str, d: &K::Record, inner: T) -> Deleted<T> {
    let f = K::fields(d);
    Deleted {
        recovery_id: format!("{base}/{}/{}", K::DELETED, f.name),
        deleted_date: f.deleted_date,
        scheduled_purge_date: f.scheduled_purge_date,
        inner,
    }
}

fn write_id<K: SoftDeleted>(ctx: &AkvCtx, op: &str, name: &str) -> String {
    ctx.write_id(&format!("{}{op}", K::WRITE_PREFIX), name)
}

/// Deletes `name` and renders what was deleted (shared by `DELETE
/// /{kind}/{name}` and the routes a static path shadows).
pub async fn delete_named<K: SoftDeleted>(
    st: &AkvState,
    ctx: &AkvCtx,
    name: &str,
) -> Res<Deleted<K::Bundle>> {
    let id = write_id::<K>(ctx, "delete", name);
    let d = K::delete(st, &ctx.vault, name, &id).await?;
    Ok(Json(wrap::<K, _>(
        &ctx.base_url,
        &d,
        K::bundle(&ctx.base_url, &d),
    )))
}

/// `DELETE /{kind}/{name}`
pub async fn delete<K: SoftDeleted>(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
) -> Res<Deleted<K::Bundle>> {
    delete_named::<K>(&st, &ctx, &name).await
}

/// `GET /deleted{kind}`
pub async fn list_deleted<K: SoftDeleted>(
    State(st): State<AkvState>,
    ctx: AkvCtx,
) -> Res<ListResult<Deleted<K::Item>>> {
    let max = maxresults(&ctx)?;
    let page = K::list_deleted(&st, &ctx.vault, max, skiptoken(&ctx)).await?;
    Ok(Json(ListResult {
        value: page
            .items
            .iter()
            .map(|d| wrap::<K, _>(&ctx.base_url, d, K::item(&ctx.base_url, d)))
            .collect(),
        next_link: next_link(&ctx, &format!("/{}", K::DELETED), page.skiptoken, max),
    }))
}

/// `GET /deleted{kind}/{name}`
pub async fn get_deleted<K: SoftDeleted>(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
) -> Res<Deleted<K::Bundle>> {
    let d = K::get_deleted(&st, &ctx.vault, &name).await?;
    Ok(Json(wrap::<K, _>(
        &ctx.base_url,
        &d,
        K::bundle(&ctx.base_url, &d),
    )))
}

/// `DELETE /deleted{kind}/{name}` → 204
pub async fn purge<K: SoftDeleted>(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    let id = write_id::<K>(&ctx, "purge", &name);
    K::purge(&st, &ctx.vault, &name, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /deleted{kind}/{name}/recover`
pub async fn recover<K: SoftDeleted>(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
) -> Res<K::Bundle> {
    let id = write_id::<K>(&ctx, "recover", &name);
    Ok(Json(K::recover(&st, &ctx, &name, &id).await?))
}

/// `POST /{kind}/{name}/backup`
pub async fn backup<K: SoftDeleted>(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
) -> Res<BlobBody> {
    let blob = K::backup(&st, &ctx.vault, &name).await?;
    Ok(Json(BlobBody {
        value: URL_SAFE_NO_PAD.encode(blob),
    }))
}

/// `POST /{kind}/restore`
pub async fn restore<K: SoftDeleted>(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    JsonBody(body): JsonBody<BlobBody>,
) -> Res<K::Bundle> {
    let blob = BASE64URL_ANY_PAD
        .decode(body.value.trim())
        .map_err(|_| ApiError::bad_parameter("Malformed backup blob"))?;
    let id = write_id::<K>(&ctx, "restore", "");
    Ok(Json(K::restore(&st, &ctx, &blob, &id).await?))
}
