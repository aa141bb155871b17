//! Keys handlers: parse → engine → render.

use async_trait::async_trait;
use axum::extract::State;
use axum::Json;

use super::context::AkvCtx;
use super::errors::ApiError;
use super::extract::{JsonBody, ObjectPath, PathParams};
use super::key_models::{
    attributes, b64, bundle, enc, item, op_result, policy_out, CreateKeyBody, ImportKeyBody,
    KeyBundle, KeyItem, KeyOperationResult, OperationBody, PolicyOut, RandomBody, SignBody,
    UpdateKeyBody, ValueBody, VerifyBody, VerifyResult,
};
use super::lifecycle::{DeletedFields, SoftDeleted};
use super::models::ListResult;
use super::paging::{maxresults, next_link, skiptoken};
use super::AkvState;
use crate::crypto::{EncAlg, SignAlg, SymParams};
use crate::engine::error::EngineError;
use crate::engine::keys::{CreateKey, DeletedKey, ImportKey};
use crate::engine::paging::Page;
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

/// Keys as the shared soft-delete and backup handlers see them.
pub struct Keys;

#[async_trait]
impl SoftDeleted for Keys {
    type Record = DeletedKey;
    type Item = KeyItem;
    type Bundle = KeyBundle;
    const DELETED: &'static str = "deletedkeys";
    const WRITE_PREFIX: &'static str = "keys/";

    async fn delete(
        st: &AkvState,
        vault: &str,
        name: &str,
        id: &str,
    ) -> Result<DeletedKey, EngineError> {
        st.keys.delete(vault, name, Some(id)).await
    }
    async fn list_deleted(
        st: &AkvState,
        vault: &str,
        max: Option<u32>,
        skiptoken: Option<&str>,
    ) -> Result<Page<DeletedKey>, EngineError> {
        st.keys.list_deleted(vault, max, skiptoken).await
    }
    async fn get_deleted(
        st: &AkvState,
        vault: &str,
        name: &str,
    ) -> Result<DeletedKey, EngineError> {
        st.keys.get_deleted(vault, name).await
    }
    async fn purge(st: &AkvState, vault: &str, name: &str, id: &str) -> Result<(), EngineError> {
        st.keys.purge(vault, name, Some(id)).await
    }
    async fn recover(
        st: &AkvState,
        ctx: &AkvCtx,
        name: &str,
        id: &str,
    ) -> Result<KeyBundle, EngineError> {
        let k = st.keys.recover(&ctx.vault, name, Some(id)).await?;
        Ok(bundle(&ctx.base_url, &k))
    }
    async fn backup(st: &AkvState, vault: &str, name: &str) -> Result<Vec<u8>, EngineError> {
        st.keys.backup(vault, name).await
    }
    async fn restore(
        st: &AkvState,
        ctx: &AkvCtx,
        blob: &[u8],
        id: &str,
    ) -> Result<KeyBundle, EngineError> {
        let k = st.keys.restore(&ctx.vault, blob, Some(id)).await?;
        Ok(bundle(&ctx.base_url, &k))
    }
    fn fields(d: &DeletedKey) -> DeletedFields<'_> {
        DeletedFields {
            name: &d.key.properties.name,
            deleted_date: d.deleted_date,
            scheduled_purge_date: d.scheduled_purge_date,
        }
    }
    fn item(base: &str, d: &DeletedKey) -> KeyItem {
        item(base, &d.key.properties, false)
    }
    fn bundle(base: &str, d: &DeletedKey) -> KeyBundle {
        bundle(base, &d.key)
    }
}
