//! Custody ceremonies (`/v1/sys/rekey/…`, `/v1/sys/generate-root/…`,
//! `/v1/sys/root-tokens`) and init with OpenPGP-delivered shares.
//!
//! A ceremony lives on one node, so every call goes to the pinned (or
//! first) endpoint, like unseal.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::json;
use zeroize::Zeroize;

use crate::sys::{ok, InitResponse, Sys};
use crate::{ClientError, Request};

/// Progress and outcome of a rekey (every rekey answer has this shape).
///
/// ```
/// use coffer_client::custody::RekeyBody;
///
/// let body: RekeyBody = serde_json::from_str(r#"{
///     "started": true, "nonce": "4c1d7e2a-9b3f-4a6e-8d5c-2f1e0a9b8c7d",
///     "progress": 3, "required": 3, "n": 5, "t": 3, "complete": true,
///     "keys": ["new-share-1", "new-share-2", "new-share-3", "new-share-4", "new-share-5"]
/// }"#).unwrap();
/// assert!(body.complete && !body.verification_required);
/// assert_eq!(body.keys.len(), usize::from(body.n));
/// // Debug output counts the new shares but never shows them.
/// let shown = format!("{body:?}");
/// assert!(shown.contains("<5 redacted>") && !shown.contains("new-share"));
/// ```
#[derive(Clone, Default, Deserialize, Serialize)]
pub struct RekeyBody {
    /// A rekey is in progress on the node.
    #[serde(default)]
    pub started: bool,
    /// The ceremony's nonce.
    #[serde(default)]
    pub nonce: Option<String>,
    /// Current shares submitted.
    #[serde(default)]
    pub progress: u8,
    /// Current shares needed.
    #[serde(default)]
    pub required: u8,
    /// New share count.
    #[serde(default)]
    pub n: u8,
    /// New threshold.
    #[serde(default)]
    pub t: u8,
    /// The new holders must verify their shares.
    #[serde(default)]
    pub verification_required: bool,
    /// Nonce of the verification, once the new shares were issued.
    #[serde(default)]
    pub verification_nonce: Option<String>,
    /// New shares verified so far.
    #[serde(default)]
    pub verification_progress: u8,
    /// Fingerprints of the keys the new shares are encrypted to.
    #[serde(default)]
    pub pgp_fingerprints: Vec<String>,
    /// The new shares are active.
    #[serde(default)]
    pub complete: bool,
    /// The new shares (once, when the quorum is reached).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
}

impl fmt::Debug for RekeyBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RekeyBody")
            .field("started", &self.started)
            .field("progress", &self.progress)
            .field("required", &self.required)
            .field("complete", &self.complete)
            .field("keys", &format_args!("<{} redacted>", self.keys.len()))
            .finish()
    }
}

impl Drop for RekeyBody {
    fn drop(&mut self) {
        self.keys.iter_mut().for_each(Zeroize::zeroize);
    }
}

/// Progress and outcome of generate-root.
///
/// ```
/// use coffer_client::custody::GenerateRootBody;
///
/// let body: GenerateRootBody = serde_json::from_str(r#"{
///     "started": true, "nonce": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
///     "progress": 3, "required": 3, "complete": true,
///     "encoded_token": "QhEaPxkxGQ5gGQk0MjY1GRtHPyN9Gg"
/// }"#).unwrap();
/// assert!(body.complete);
/// assert!(body.encoded_token.is_some());
/// // Debug output leaves the encoded token out.
/// assert!(!format!("{body:?}").contains("QhEaPx"));
/// ```
#[derive(Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct GenerateRootBody {
    /// A ceremony is in progress on the node.
    pub started: bool,
    /// Its nonce.
    pub nonce: Option<String>,
    /// Shares submitted.
    pub progress: u8,
    /// Shares needed.
    pub required: u8,
    /// Fingerprint of the key the token goes to, if any.
    pub pgp_fingerprint: Option<String>,
    /// The token was created.
    pub complete: bool,
    /// The new token, OTP-encoded or PGP-encrypted.
    pub encoded_token: Option<String>,
}

impl fmt::Debug for GenerateRootBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenerateRootBody")
            .field("started", &self.started)
            .field("progress", &self.progress)
            .field("required", &self.required)
            .field("complete", &self.complete)
            .finish()
    }
}

/// A root token's record: its accessor, never the token.
///
/// ```no_run
/// # async fn demo(client: coffer_client::Client) -> Result<(), coffer_client::ClientError> {
/// // Revoke every root token made by generate-root, keep the init one.
/// for token in client.sys().root_tokens().await? {
///     if token.origin == "generate-root" {
///         client.sys().revoke_root(Some(&token.accessor)).await?;
///     }
/// }
/// # Ok(()) }
/// ```
///
/// ```
/// let token: coffer_client::custody::RootToken = serde_json::from_str(r#"{
///     "accessor": "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8",
///     "policy": "root", "origin": "init", "created": 1764547200
/// }"#).unwrap();
/// assert_eq!((token.policy.as_str(), token.origin.as_str()), ("root", "init"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct RootToken {
    /// SHA-256 hex of the token.
    pub accessor: String,
    /// Policy.
    pub policy: String,
    /// `init` or `generate-root`.
    pub origin: String,
    /// Unix seconds.
    pub created: u64,
}

#[derive(Deserialize)]
struct RootTokens {
    tokens: Vec<RootToken>,
}

#[derive(Deserialize)]
struct Revoked {
    revoked: Vec<String>,
}

impl Sys<'_> {
    /// `POST /v1/sys/init` with one OpenPGP key per share (in order) and
    /// optionally one for the root token; the answer holds armored messages.
    pub async fn init_with_keys(
        &self,
        shares: u8,
        threshold: u8,
        pgp_keys: &[String],
        root_token_pgp_key: Option<&str>,
    ) -> Result<InitResponse, ClientError> {
        let req = Request::post("/v1/sys/init").json(&json!({
            "secret_shares": shares,
            "secret_threshold": threshold,
            "pgp_keys": pgp_keys,
            "root_token_pgp_key": root_token_pgp_key,
        }))?;
        ok(self.local(req).await?)?.json()
    }

    /// `POST /v1/sys/rekey/init` (needs a token).
    pub async fn rekey_init(
        &self,
        shares: u8,
        threshold: u8,
        pgp_keys: &[String],
        require_verification: bool,
    ) -> Result<RekeyBody, ClientError> {
        let req = Request::post("/v1/sys/rekey/init").json(&json!({
            "secret_shares": shares,
            "secret_threshold": threshold,
            "pgp_keys": pgp_keys,
            "require_verification": require_verification,
        }))?;
        ok(self.local(req).await?)?.json()
    }

    /// `GET /v1/sys/rekey/init`: progress.
    pub async fn rekey_status(&self) -> Result<RekeyBody, ClientError> {
        ok(self.local(Request::get("/v1/sys/rekey/init")).await?)?.json()
    }

    /// `POST /v1/sys/rekey/update`: one current share.
    pub async fn rekey_update(&self, nonce: &str, key: &str) -> Result<RekeyBody, ClientError> {
        let req =
            Request::post("/v1/sys/rekey/update").json(&json!({"nonce": nonce, "key": key}))?;
        ok(self.local(req).await?)?.json()
    }

    /// `POST /v1/sys/rekey/verify`: one new share.
    pub async fn rekey_verify(&self, nonce: &str, key: &str) -> Result<RekeyBody, ClientError> {
        let req =
            Request::post("/v1/sys/rekey/verify").json(&json!({"nonce": nonce, "key": key}))?;
        ok(self.local(req).await?)?.json()
    }

    /// `POST /v1/sys/rekey/cancel` (needs a token).
    pub async fn rekey_cancel(&self, nonce: &str) -> Result<(), ClientError> {
        let req = Request::post("/v1/sys/rekey/cancel").json(&json!({ "nonce": nonce }))?;
        ok(self.local(req).await?).map(drop)
    }

    /// Starts generate-root for a DR operation token (kept on this node,
    /// good for one `dr promote` there) with an OTP or one OpenPGP key.
    pub async fn generate_dr_token_init(
        &self,
        otp: Option<&str>,
        pgp_key: Option<&str>,
    ) -> Result<GenerateRootBody, ClientError> {
        let req = Request::post("/v1/sys/generate-root/attempt")
            .json(&json!({ "otp": otp, "pgp_key": pgp_key, "dr_operation": true }))?;
        ok(self.local(req).await?)?.json()
    }

    /// `POST /v1/sys/generate-root/attempt` with an OTP or one OpenPGP key.
    pub async fn generate_root_init(
        &self,
        otp: Option<&str>,
        pgp_key: Option<&str>,
    ) -> Result<GenerateRootBody, ClientError> {
        let req = Request::post("/v1/sys/generate-root/attempt")
            .json(&json!({ "otp": otp, "pgp_key": pgp_key }))?;
        ok(self.local(req).await?)?.json()
    }

    /// `GET /v1/sys/generate-root/attempt`: progress.
    pub async fn generate_root_status(&self) -> Result<GenerateRootBody, ClientError> {
        ok(self
            .local(Request::get("/v1/sys/generate-root/attempt"))
            .await?)?
        .json()
    }

    /// `POST /v1/sys/generate-root/update`: one unseal share.
    pub async fn generate_root_update(
        &self,
        nonce: &str,
        key: &str,
    ) -> Result<GenerateRootBody, ClientError> {
        let req = Request::post("/v1/sys/generate-root/update")
            .json(&json!({"nonce": nonce, "key": key}))?;
        ok(self.local(req).await?)?.json()
    }

    /// `POST /v1/sys/generate-root/cancel`.
    pub async fn generate_root_cancel(&self, nonce: &str) -> Result<(), ClientError> {
        let req = Request::post("/v1/sys/generate-root/cancel").json(&json!({ "nonce": nonce }))?;
        ok(self.local(req).await?).map(drop)
    }

    /// `POST /v1/sys/rotate`: a new keyring term (data key) through Raft;
    /// returns the new term.
    pub async fn rotate(&self) -> Result<u32, ClientError> {
        #[derive(Deserialize)]
        struct Term {
            term: u32,
        }
        let t: Term = ok(self.any(Request::post("/v1/sys/rotate")).await?)?.json()?;
        Ok(t.term)
    }

    /// `GET /v1/sys/snapshot`: streams a consistent snapshot into `sink`,
    /// reporting `progress(received, total)`; returns the index it covers.
    pub async fn snapshot_save(
        &self,
        sink: impl FnMut(&[u8]) -> std::io::Result<()>,
        progress: impl FnMut(u64, Option<u64>),
    ) -> Result<u64, ClientError> {
        let resp = self
            .download_local(Request::get("/v1/sys/snapshot"), sink, progress)
            .await?;
        let resp = ok(resp)?;
        Ok(resp
            .headers
            .get("x-coffer-snapshot-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Live restore of the snapshot file `bytes` into the running cluster,
    /// through this node: `POST /v1/sys/snapshot/restore/{id}/{seq}` per
    /// chunk of `chunk_bytes`, then `…/{id}/commit`; `progress(sent, total)`
    /// after each chunk. The node answers 400 and nothing changes when the
    /// file is damaged, or of another cluster without `force`. Returns the
    /// node's answer (`index`, `snapshot_index`, `kv_digest`, …).
    pub async fn snapshot_restore(
        &self,
        bytes: &[u8],
        chunk_bytes: usize,
        force: bool,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<serde_json::Value, ClientError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let total = bytes.len() as u64;
        let mut chunks = 0u32;
        for (seq, chunk) in bytes.chunks(chunk_bytes.max(1)).enumerate() {
            let mut req = Request::post(format!("/v1/sys/snapshot/restore/{id}/{seq}"));
            req.body = Some(bytes::Bytes::copy_from_slice(chunk));
            let sent = self.local(req).await.and_then(ok);
            if let Err(e) = sent {
                let _ = self
                    .local(Request::delete(format!("/v1/sys/snapshot/restore/{id}")))
                    .await;
                return Err(e);
            }
            chunks += 1;
            progress((seq * chunk_bytes + chunk.len()) as u64, total);
        }
        let req = Request::post(format!("/v1/sys/snapshot/restore/{id}/commit"))
            .json(&json!({ "chunks": chunks, "force": force }))?;
        ok(self.local(req).await?)?.json()
    }

    /// `GET /v1/sys/root-tokens`.
    pub async fn root_tokens(&self) -> Result<Vec<RootToken>, ClientError> {
        let list: RootTokens = ok(self.any(Request::get("/v1/sys/root-tokens")).await?)?.json()?;
        Ok(list.tokens)
    }

    /// `POST /v1/sys/root-tokens/revoke`: the token with `accessor`, or the
    /// initial root token. Returns the accessors revoked.
    pub async fn revoke_root(&self, accessor: Option<&str>) -> Result<Vec<String>, ClientError> {
        let req =
            Request::post("/v1/sys/root-tokens/revoke").json(&json!({ "accessor": accessor }))?;
        let r: Revoked = ok(self.any(req).await?)?.json()?;
        Ok(r.revoked)
    }
}
