//! Keys handlers: parse → engine → render.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::context::AkvCtx;
use super::errors::ApiError;
use super::extract::{JsonBody, ObjectPath, PathParams};
use super::key_models::{
    attributes, b64, bundle, deleted, enc, item, op_result, policy_out, CreateKeyBody, DeletedOut,
    ImportKeyBody, KeyBundle, KeyItem, KeyOperationResult, OperationBody, PolicyOut, RandomBody,
    SignBody, UpdateKeyBody, ValueBody, VerifyBody, VerifyResult,
};
use super::models::ListResult;
use super::paging::{maxresults, next_link, skiptoken};
use super::AkvState;
use crate::crypto::{EncAlg, SignAlg, SymParams};
use crate::engine::keys::{CreateKey, ImportKey};
use crate::engine::rotation::RotationPolicy;

type Res<T> = Result<Json<T>, ApiError>;

fn sign_alg(alg: &str) -> Result<SignAlg, ApiError> {
    serde_json::from_value(serde_json::Value::String(alg.to_owned()))
        .map_err(|_| ApiError::bad_parameter(format!("Unknown signature algorithm {alg:?}")))
}

fn enc_alg(alg: &str) -> Result<EncAlg, ApiError> {
    serde_json::from_value(serde_json::Value::String(alg.to_owned()))
        .map_err(|_| ApiError::bad_parameter(format!("Unknown encryption algorithm {alg:?}")))
}

/// `POST /keys/{name}/create`
pub async fn create(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
    JsonBody(b): JsonBody<CreateKeyBody>,
) -> Res<KeyBundle> {
    let params = CreateKey {
        kty: b.kty,
        key_size: b.key_size,
        curve: b.crv,
        public_exponent: b.public_exponent,
        attributes: attributes(b.key_ops, b.attributes, b.tags, b.release_policy.is_some()),
    };
    let id = ctx.write_id("keys/create", &name);
    let k = st.keys.create(&ctx.vault, &name, params, Some(&id)).await?;
    Ok(Json(bundle(&ctx.base_url, &k)))
}

/// `PUT /keys/{name}` (import)
pub async fn import(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
    JsonBody(b): JsonBody<ImportKeyBody>,
) -> Res<KeyBundle> {
    let params = ImportKey {
        key: b.key.private_key()?,
        hsm: b.hsm.unwrap_or(false) || b.key.kty.is_hsm(),
        attributes: attributes(
            b.key.key_ops.clone(),
            b.attributes,
            b.tags,
            b.release_policy.is_some(),
        ),
    };
    let id = ctx.write_id("keys/import", &name);
    let k = st.keys.import(&ctx.vault, &name, params, Some(&id)).await?;
    Ok(Json(bundle(&ctx.base_url, &k)))
}

/// `POST /keys/{name}/rotate`
pub async fn rotate(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
) -> Res<KeyBundle> {
    let id = ctx.write_id("keys/rotate", &name);
    let k = st.keys.rotate(&ctx.vault, &name, Some(&id)).await?;
    Ok(Json(bundle(&ctx.base_url, &k)))
}

/// `GET /keys/{name}`, `GET /keys/{name}/` (latest) and `GET /keys/{name}/{version}`.
pub async fn get(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(at): PathParams<ObjectPath>,
) -> Res<KeyBundle> {
    let k = st.keys.get(&ctx.vault, &at.name, Some(&at.version)).await?;
    Ok(Json(bundle(&ctx.base_url, &k)))
}

/// `PATCH /keys/{name}/` (latest) and `PATCH /keys/{name}/{version}`.
pub async fn update(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(at): PathParams<ObjectPath>,
    JsonBody(b): JsonBody<UpdateKeyBody>,
) -> Res<KeyBundle> {
    let (name, version) = (at.name, at.version);
    let id = ctx.write_id(
        &format!("keys/update/{}", version.to_ascii_lowercase()),
        &name,
    );
    let k = st
        .keys
        .update(&ctx.vault, &name, Some(&version), b.patch()?, Some(&id))
        .await?;
    Ok(Json(bundle(&ctx.base_url, &k)))
}

/// `DELETE /keys/{name}`
pub async fn delete(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
) -> Res<DeletedOut<KeyBundle>> {
    let id = ctx.write_id("keys/delete", &name);
    let d = st.keys.delete(&ctx.vault, &name, Some(&id)).await?;
    Ok(Json(deleted(
        &ctx.base_url,
        &d,
        bundle(&ctx.base_url, &d.key),
    )))
}

/// `GET /keys`
pub async fn list(State(st): State<AkvState>, ctx: AkvCtx) -> Res<ListResult<KeyItem>> {
    let max = maxresults(&ctx)?;
    let page = st.keys.list(&ctx.vault, max, skiptoken(&ctx)).await?;
    Ok(Json(ListResult {
        value: page
            .items
            .iter()
            .map(|p| item(&ctx.base_url, p, false))
            .collect(),
        next_link: next_link(&ctx, "/keys", page.skiptoken, max),
    }))
}

/// `GET /keys/{name}/versions`
pub async fn list_versions(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
) -> Res<ListResult<KeyItem>> {
    let max = maxresults(&ctx)?;
    let page = st
        .keys
        .list_versions(&ctx.vault, &name, max, skiptoken(&ctx))
        .await?;
    Ok(Json(ListResult {
        value: page
            .items
            .iter()
            .map(|p| item(&ctx.base_url, p, true))
            .collect(),
        next_link: next_link(&ctx, &format!("/keys/{name}/versions"), page.skiptoken, max),
    }))
}

/// `GET /deletedkeys`
pub async fn list_deleted(
    State(st): State<AkvState>,
    ctx: AkvCtx,
) -> Res<ListResult<DeletedOut<KeyItem>>> {
    let max = maxresults(&ctx)?;
    let page = st
        .keys
        .list_deleted(&ctx.vault, max, skiptoken(&ctx))
        .await?;
    Ok(Json(ListResult {
        value: page
            .items
            .iter()
            .map(|d| {
                deleted(
                    &ctx.base_url,
                    d,
                    item(&ctx.base_url, &d.key.properties, false),
                )
            })
            .collect(),
        next_link: next_link(&ctx, "/deletedkeys", page.skiptoken, max),
    }))
}

/// `GET /deletedkeys/{name}`
pub async fn get_deleted(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
) -> Res<DeletedOut<KeyBundle>> {
    let d = st.keys.get_deleted(&ctx.vault, &name).await?;
    Ok(Json(deleted(
        &ctx.base_url,
        &d,
        bundle(&ctx.base_url, &d.key),
    )))
}

/// `DELETE /deletedkeys/{name}` → 204
pub async fn purge(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    let id = ctx.write_id("keys/purge", &name);
    st.keys.purge(&ctx.vault, &name, Some(&id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /deletedkeys/{name}/recover`
pub async fn recover(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
) -> Res<KeyBundle> {
    let id = ctx.write_id("keys/recover", &name);
    let k = st.keys.recover(&ctx.vault, &name, Some(&id)).await?;
    Ok(Json(bundle(&ctx.base_url, &k)))
}

/// `POST /keys/{name}/backup`
pub async fn backup(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
) -> Res<ValueBody> {
    let blob = st.keys.backup(&ctx.vault, &name).await?;
    Ok(Json(ValueBody { value: enc(&blob) }))
}

/// `POST /keys/restore`
pub async fn restore(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    JsonBody(b): JsonBody<ValueBody>,
) -> Res<KeyBundle> {
    let blob =
        b64("value", &b.value).map_err(|_| ApiError::bad_parameter("Malformed backup blob"))?;
    let id = ctx.write_id("keys/restore", "");
    let k = st.keys.restore(&ctx.vault, &blob, Some(&id)).await?;
    Ok(Json(bundle(&ctx.base_url, &k)))
}

/// `GET /keys/{name}/rotationpolicy`
pub async fn get_policy(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
) -> Res<PolicyOut> {
    let p = st.keys.get_rotation_policy(&ctx.vault, &name).await?;
    Ok(Json(policy_out(&ctx.base_url, &name, p)))
}

/// `PUT /keys/{name}/rotationpolicy`
pub async fn set_policy(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
    JsonBody(p): JsonBody<RotationPolicy>,
) -> Res<PolicyOut> {
    let id = ctx.write_id("keys/rotationpolicy", &name);
    let p = st
        .keys
        .set_rotation_policy(&ctx.vault, &name, p, Some(&id))
        .await?;
    Ok(Json(policy_out(&ctx.base_url, &name, p)))
}

/// `POST /rng`
pub async fn random(
    State(st): State<AkvState>,
    JsonBody(b): JsonBody<RandomBody>,
) -> Res<ValueBody> {
    let count = usize::try_from(b.count).unwrap_or(0);
    let bytes = st.keys.random_bytes(count)?;
    Ok(Json(ValueBody { value: enc(&bytes) }))
}

/// `POST /keys/{name}/{version}/release` (and `attestation`): not supported.
pub async fn release() -> ApiError {
    ApiError::not_supported(
        "Key release (secure key release with attestation) is not supported by Coffer",
    )
}

/// Which operation an `/keys/{name}/{version}/{op}` request asks for.
#[derive(Clone, Copy)]
pub enum Op {
    /// encrypt
    Encrypt,
    /// decrypt
    Decrypt,
    /// wrapkey
    Wrap,
    /// unwrapkey
    Unwrap,
}

/// `POST /keys/{name}/{version}/{encrypt|decrypt|wrapkey|unwrapkey}`.
pub async fn operation(
    st: AkvState,
    ctx: AkvCtx,
    name: String,
    version: String,
    op: Op,
    b: OperationBody,
) -> Res<KeyOperationResult> {
    let alg = enc_alg(&b.alg)?;
    let (value, iv, aad, tag) = b.decode()?;
    let params = SymParams {
        iv,
        aad: aad.clone(),
        tag,
    };
    let v = Some(version.as_str());
    let (k, vault) = (&st.keys, ctx.vault.as_str());
    let out = match op {
        Op::Encrypt => k.encrypt(vault, &name, v, alg, &value, params).await?,
        Op::Decrypt => k.decrypt(vault, &name, v, alg, &value, params).await?,
        Op::Wrap => k.wrap_key(vault, &name, v, alg, &value).await?,
        Op::Unwrap => k.unwrap_key(vault, &name, v, alg, &value).await?,
    };
    let echo_aad = matches!(op, Op::Encrypt).then_some(aad).flatten();
    Ok(Json(op_result(&ctx.base_url, &out, echo_aad.as_deref())))
}

macro_rules! op_handlers {
    ($($handler:ident, $op:expr;)*) => {$(
        /// The operation on a named version (`/keys/{name}/{version}/…`)
        /// or the latest one (`/keys/{name}//…`).
        pub async fn $handler(
            State(st): State<AkvState>,
            ctx: AkvCtx,
            PathParams(at): PathParams<ObjectPath>,
            JsonBody(b): JsonBody<OperationBody>,
        ) -> Res<KeyOperationResult> {
            operation(st, ctx, at.name, at.version, $op, b).await
        }
    )*};
}

op_handlers! {
    encrypt, Op::Encrypt;
    decrypt, Op::Decrypt;
    wrap, Op::Wrap;
    unwrap, Op::Unwrap;
}

/// `POST /keys/{name}/{version}/sign` and `POST /keys/{name}//sign` (latest).
pub async fn sign(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(at): PathParams<ObjectPath>,
    JsonBody(b): JsonBody<SignBody>,
) -> Res<KeyOperationResult> {
    let alg = sign_alg(&b.alg)?;
    let digest = b64("value", &b.value)?;
    let out = st
        .keys
        .sign(&ctx.vault, &at.name, Some(&at.version), alg, &digest)
        .await?;
    Ok(Json(op_result(&ctx.base_url, &out, None)))
}

/// `POST /keys/{name}/{version}/verify` and `POST /keys/{name}//verify` (latest).
pub async fn verify(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(at): PathParams<ObjectPath>,
    JsonBody(b): JsonBody<VerifyBody>,
) -> Res<VerifyResult> {
    let alg = sign_alg(&b.alg)?;
    let digest = b64("digest", &b.digest)?;
    let sig = b64("value", &b.value)?;
    let ok = st
        .keys
        .verify(&ctx.vault, &at.name, Some(&at.version), alg, &digest, &sig)
        .await?;
    Ok(Json(VerifyResult { value: ok }))
}
