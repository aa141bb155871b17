//! The cluster's token-signing keys (RSA-2048, in the barrier like every
//! value), rotation, the JWKS, and minting and verifying access tokens.
//!
//! Private keys are never cached: each signature parses the key from the
//! store, so a sealed node holds none in memory (RSA parsing costs tens of
//! microseconds; tokens are minted once an hour per client). Verification
//! uses `jsonwebtoken` (RS256 only, exp/nbf with leeway); signing uses
//! aws-lc-rs directly because the stored key is PKCS#8, which jsonwebtoken's
//! aws-lc backend does not load.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::principals::{Kind, Principal};
use super::{new_guid, IdentityEngine, IdentityError, Tenant};
use super::{put, rev};
use crate::cas::{decode, encode, write, Plan};
use crate::store::{Mutation, Txn};

/// Default access-token lifetime (as Entra's).
pub const TOKEN_LIFETIME_SECS: u64 = 3600;
/// Clock skew tolerated on `exp`/`nbf`.
pub const LEEWAY_SECS: u64 = 60;
/// How long a retired signing key stays in the JWKS: longer than any token
/// it signed can live.
const RETIRED_KEY_KEEP_SECS: u64 = TOKEN_LIFETIME_SECS + 2 * LEEWAY_SECS + 3600;

const CURRENT_KEY: &[u8] = b"idn/sigcur";
const KEY_PREFIX: &str = "idn/sig/";

/// A public RSA key in JWK form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Always `RSA`.
    pub kty: String,
    /// `sig`.
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// Key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Equal to `kid` for Coffer's keys (as Entra does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x5t: Option<String>,
    /// Modulus, base64url.
    pub n: String,
    /// Exponent, base64url.
    pub e: String,
}

impl Jwk {
    /// An RSA JWK from big-endian modulus and exponent.
    pub fn rsa(kid: Option<String>, n: &[u8], e: &[u8]) -> Jwk {
        Jwk {
            kty: "RSA".into(),
            use_: Some("sig".into()),
            x5t: kid.clone(),
            kid,
            n: URL_SAFE_NO_PAD.encode(n),
            e: URL_SAFE_NO_PAD.encode(e),
        }
    }

    fn decoding_key(&self) -> Result<DecodingKey, Rejected> {
        if self.kty != "RSA" {
            return Err(Rejected::UnknownKey);
        }
        DecodingKey::from_rsa_components(&self.n, &self.e).map_err(|_| Rejected::UnknownKey)
    }
}

/// A signing key as stored.
#[derive(Clone, Serialize, Deserialize)]
struct SigningKey {
    kid: String,
    /// PKCS#8 DER, base64.
    pkcs8: String,
    public: Jwk,
    created: u64,
    /// When a newer key replaced it.
    retired: Option<u64>,
}

/// Which key is current.
#[derive(Clone, Serialize, Deserialize)]
struct CurrentKey {
    kid: String,
}

fn key_key(kid: &str) -> Vec<u8> {
    format!("{KEY_PREFIX}{kid}").into_bytes()
}

fn generate_key(now: u64) -> Result<SigningKey, IdentityError> {
    let failed = || IdentityError::BadRequest("generating the signing key failed".into());
    let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| failed())?;
    let der = pair.as_der().map_err(|_| failed())?;
    let kid = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>());
    let public = pair.public_key();
    let public = Jwk::rsa(
        Some(kid.clone()),
        public.modulus().big_endian_without_leading_zero(),
        public.exponent().big_endian_without_leading_zero(),
    );
    Ok(SigningKey {
        kid,
        pkcs8: STANDARD.encode(der.as_ref()),
        public,
        created: now,
        retired: None,
    })
}

/// The claims of an access token Coffer issues (§6 of the fact sheet).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Resource (`https://vault.azure.net`, the cluster's resource URI).
    pub aud: String,
    /// `https://{host}/{tid}/v2.0`.
    pub iss: String,
    /// Issued at.
    pub iat: u64,
    /// Not before.
    pub nbf: u64,
    /// Expiry.
    pub exp: u64,
    /// Tenant GUID.
    pub tid: String,
    /// Principal object id.
    pub oid: String,
    /// Subject (= `oid`).
    pub sub: String,
    /// `app` or `user`.
    pub idtyp: String,
    /// Client id of the application that asked (v1 claim).
    pub appid: String,
    /// Same, v2 claim.
    pub azp: String,
    /// `0` public client, `1` secret, `2` certificate/assertion.
    pub appidacr: String,
    /// Same, v2 claim.
    pub azpacr: String,
    /// Authentication methods (`pwd`, `otp`, `mfa`, `rsa`, `fed`).
    pub amr: Vec<String>,
    /// Delegated scopes of user tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scp: Option<String>,
    /// User sign-in name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    /// Satisfied authentication contexts (step-up).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acrs: Vec<String>,
    /// Client capabilities (`cp1` when the client asked for it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xms_cc: Vec<String>,
    /// Unique token id.
    pub uti: String,
    /// `2.0`.
    pub ver: String,
    /// The credential the token was obtained with (secret id, certificate
    /// thumbprint, federated credential name): removing it revokes the
    /// token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xms_coffer_cred: Option<String>,
}

/// How the principal proved itself, for the claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Proof {
    /// A client secret (its id).
    Secret(String),
    /// A certificate assertion (thumbprint).
    Certificate(String),
    /// A federated assertion (credential name).
    Federated(String),
    /// A user's password, with whether a TOTP code was given too.
    Password {
        /// A second factor was given.
        mfa: bool,
    },
}

impl Proof {
    fn acr(&self) -> &'static str {
        match self {
            Proof::Secret(_) => "1",
            Proof::Certificate(_) | Proof::Federated(_) => "2",
            Proof::Password { .. } => "0",
        }
    }

    fn amr(&self) -> Vec<String> {
        let v: &[&str] = match self {
            Proof::Secret(_) => &["pwd"],
            Proof::Certificate(_) => &["rsa"],
            Proof::Federated(_) => &["fed"],
            Proof::Password { mfa: false } => &["pwd"],
            Proof::Password { mfa: true } => &["pwd", "otp", "mfa"],
        };
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn credential(&self) -> Option<String> {
        match self {
            Proof::Secret(id) | Proof::Certificate(id) | Proof::Federated(id) => Some(id.clone()),
            Proof::Password { .. } => None,
        }
    }
}

/// What the issuer needs besides the principal.
#[derive(Clone, Debug)]
pub struct TokenRequest<'a> {
    /// `https://{host}` the client reached the issuer at.
    pub issuer_base: &'a str,
    /// The resource (`scope` without `/.default`).
    pub audience: &'a str,
    /// The client id of the calling application.
    pub client_id: &'a str,
    /// The client announced the `cp1` capability.
    pub cp1: bool,
    /// Authentication contexts the client asked for (step-up), already
    /// checked as satisfied.
    pub acrs: &'a [String],
}

/// An issued access token.
#[derive(Debug)]
pub struct IssuedToken {
    /// The JWT.
    pub access_token: Zeroizing<String>,
    /// Seconds until expiry.
    pub expires_in: u64,
    /// The claims in it.
    pub claims: AccessClaims,
}

/// Why a token was refused (for logs; the client only sees 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// Not a JWT.
    #[error("malformed token")]
    Malformed,
    /// `alg` other than RS256 (`none`, HS256, …).
    #[error("algorithm not allowed")]
    Algorithm,
    /// `kid` unknown.
    #[error("unknown signing key")]
    UnknownKey,
    /// Signature does not verify.
    #[error("bad signature")]
    Signature,
    /// Expired.
    #[error("token expired")]
    Expired,
    /// Not yet valid.
    #[error("token not yet valid")]
    NotYetValid,
    /// Claims missing or of the wrong type.
    #[error("invalid claims")]
    Claims,
    /// `aud` is not a resource of this cluster.
    #[error("wrong audience")]
    Audience,
    /// `iss` is not this cluster's tenant.
    #[error("wrong issuer")]
    Issuer,
    /// `tid` is another tenant.
    #[error("wrong tenant")]
    Tenant,
    /// The principal is gone or disabled, or the credential was removed.
    #[error("principal disabled, deleted, or credential removed")]
    Principal,
}

/// A token that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// Its claims.
    pub claims: AccessClaims,
}

/// Which audiences the verifying node accepts.
pub trait Audience: Sync {
    /// Whether `aud` names this cluster.
    fn accepts(&self, aud: &str) -> bool;
}

/// Why verification did not produce a verdict.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The token is refused.
    #[error(transparent)]
    Rejected(#[from] Rejected),
    /// The store could not be read (sealed, corrupt): not the token's fault.
    #[error(transparent)]
    Unavailable(#[from] IdentityError),
}

impl IdentityEngine {
    fn load_key(&self, kid: &str) -> Result<Option<SigningKey>, IdentityError> {
        match self.store.get(&key_key(kid))? {
            Some(e) => Ok(Some(decode(&e.value)?)),
            None => Ok(None),
        }
    }

    fn all_keys(&self) -> Result<Vec<SigningKey>, IdentityError> {
        let entries = self.store.scan(KEY_PREFIX.as_bytes(), None, 1024)?;
        let mut keys = entries
            .iter()
            .map(|(_, e)| decode::<SigningKey>(&e.value))
            .collect::<Result<Vec<_>, _>>()?;
        // The current key (never retired) first, then the most recently
        // retired.
        keys.sort_by_key(|k| {
            (
                k.retired.is_some(),
                std::cmp::Reverse(k.retired),
                std::cmp::Reverse(k.created),
            )
        });
        Ok(keys)
    }

    /// The public keys of the JWKS, newest first.
    pub fn jwks(&self) -> Result<Vec<Jwk>, IdentityError> {
        Ok(self.all_keys()?.into_iter().map(|k| k.public).collect())
    }

    /// Creates a signing key if there is none yet; returns the current kid.
    pub async fn ensure_signing_key(&self) -> Result<String, IdentityError> {
        if let Some(e) = self.store.get(CURRENT_KEY)? {
            return Ok(decode::<CurrentKey>(&e.value)?.kid);
        }
        self.rotate_inner(false).await
    }

    /// Adds a new signing key and makes it current; the old ones stay in
    /// the JWKS until every token they signed has expired.
    pub async fn rotate_signing_key(&self) -> Result<String, IdentityError> {
        self.ensure_tenant().await?;
        self.rotate_inner(true).await
    }

    async fn rotate_inner(&self, force: bool) -> Result<String, IdentityError> {
        let fresh = generate_key(self.now())?;
        let kid = write(self.store.as_ref(), None, || {
            let now = self.now();
            let current = self.store.get(CURRENT_KEY)?;
            let mut compare = vec![];
            let mut mutations = vec![];
            match &current {
                Some(e) if !force => {
                    return Ok(Plan::Answer(decode::<CurrentKey>(&e.value)?.kid));
                }
                Some(e) => {
                    compare.push(rev(CURRENT_KEY.to_vec(), e.revision));
                    let old: CurrentKey = decode(&e.value)?;
                    if let Some(entry) = self.store.get(&key_key(&old.kid))? {
                        let mut old_key: SigningKey = decode(&entry.value)?;
                        old_key.retired = Some(now);
                        compare.push(rev(key_key(&old.kid), entry.revision));
                        mutations.push(put(key_key(&old.kid), encode(&old_key)?));
                    }
                }
                None => compare.push(rev(CURRENT_KEY.to_vec(), 0)),
            }
            for k in self.all_keys().map_err(to_engine)? {
                if k.retired.is_some_and(|r| r + RETIRED_KEY_KEEP_SECS < now) {
                    mutations.push(Mutation::Delete {
                        key: key_key(&k.kid),
                    });
                }
            }
            mutations.push(put(key_key(&fresh.kid), encode(&fresh)?));
            mutations.push(put(
                CURRENT_KEY.to_vec(),
                encode(&CurrentKey {
                    kid: fresh.kid.clone(),
                })?,
            ));
            Ok(Plan::Commit(Txn {
                compare,
                mutations,
                result: encode(&fresh.kid)?,
            }))
        })
        .await?;
        Ok(kid)
    }

    /// Signs `claims` with the current key.
    pub(crate) fn sign<T: Serialize>(
        &self,
        claims: &T,
    ) -> Result<Zeroizing<String>, IdentityError> {
        let (key, der) = self.current_signing_key()?;
        let header =
            serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": key.kid, "x5t": key.kid});
        compose_rs256(&der, &header, claims)
    }

    /// The current signing key and its PKCS#8 private key.
    fn current_signing_key(&self) -> Result<(SigningKey, Zeroizing<Vec<u8>>), IdentityError> {
        let cur = match self.store.get(CURRENT_KEY)? {
            Some(e) => decode::<CurrentKey>(&e.value)?,
            None => return Err(IdentityError::NotFound("signing key".into())),
        };
        let key = self
            .load_key(&cur.kid)?
            .ok_or_else(|| IdentityError::NotFound("signing key".into()))?;
        let der = Zeroizing::new(STANDARD.decode(&key.pkcs8).map_err(|_| signing_failed())?);
        Ok((key, der))
    }

    /// TEST ONLY: signs `header` and `claims` bytes, whatever they hold, with
    /// the current key, so a fuzzer reaches the checks after the signature.
    #[cfg(any(test, feature = "test-util"))]
    pub fn sign_raw(
        &self,
        header: &[u8],
        claims: &[u8],
    ) -> Result<Zeroizing<String>, IdentityError> {
        let (_, der) = self.current_signing_key()?;
        compose_rs256_bytes(&der, header, claims)
    }

    /// Mints an access token for `principal` (an app, or a user through
    /// the app `req.client_id`).
    pub async fn issue(
        &self,
        tenant: &Tenant,
        principal: &Principal,
        proof: &Proof,
        req: &TokenRequest<'_>,
    ) -> Result<IssuedToken, IdentityError> {
        self.ensure_signing_key().await?;
        let now = self.now();
        let user = principal.kind == Kind::User;
        let claims = AccessClaims {
            aud: req.audience.trim_end_matches('/').to_owned(),
            iss: format!(
                "{}/{}/v2.0",
                req.issuer_base.trim_end_matches('/'),
                tenant.id
            ),
            iat: now,
            nbf: now,
            exp: now + TOKEN_LIFETIME_SECS,
            tid: tenant.id.clone(),
            oid: principal.object_id.clone(),
            sub: principal.object_id.clone(),
            idtyp: if user { "user" } else { "app" }.into(),
            appid: req.client_id.to_owned(),
            azp: req.client_id.to_owned(),
            appidacr: proof.acr().into(),
            azpacr: proof.acr().into(),
            amr: proof.amr(),
            scp: user.then(|| "user_impersonation".to_owned()),
            preferred_username: user.then(|| principal.name.clone()),
            acrs: req.acrs.to_vec(),
            xms_cc: if req.cp1 { vec!["cp1".into()] } else { vec![] },
            uti: URL_SAFE_NO_PAD.encode(new_guid()),
            ver: "2.0".into(),
            xms_coffer_cred: proof.credential(),
        };
        let access_token = self.sign(&claims)?;
        Ok(IssuedToken {
            access_token,
            expires_in: TOKEN_LIFETIME_SECS,
            claims,
        })
    }

    /// An OIDC ID token for a signed-in user (clients decode it without
    /// verifying; MSAL needs it for user accounts).
    pub fn id_token(
        &self,
        tenant: &Tenant,
        user: &Principal,
        client_id: &str,
        issuer_base: &str,
    ) -> Result<Zeroizing<String>, IdentityError> {
        let now = self.now();
        self.sign(&serde_json::json!({
            "iss": format!("{}/{}/v2.0", issuer_base.trim_end_matches('/'), tenant.id),
            "aud": client_id,
            "sub": user.object_id,
            "oid": user.object_id,
            "tid": tenant.id,
            "preferred_username": user.name,
            "name": user.name,
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME_SECS,
            "ver": "2.0",
        }))
    }

    /// Verifies an access token (see [`Self::verify_local`]). A refusal
    /// that a lagging replica could cause — a signing key, tenant or
    /// principal this node has not applied yet, though the issuing node had
    /// committed it before minting — is re-checked once after a read fence,
    /// so a token fresh from one node works at once on every other.
    pub async fn verify(
        &self,
        token: &str,
        audience: &dyn Audience,
    ) -> Result<VerifiedToken, VerifyError> {
        match self.verify_local(token, audience) {
            Err(VerifyError::Rejected(
                Rejected::UnknownKey | Rejected::Tenant | Rejected::Principal,
            )) => {
                self.store.read_fence().await.map_err(IdentityError::from)?;
                self.verify_local(token, audience)
            }
            other => other,
        }
    }

    /// Verifies an access token against this node's state: RS256 only,
    /// signature by `kid`, `exp`/`nbf`, `aud`, `iss`, `tid`; then that the
    /// principal still exists, is enabled, and still holds the credential
    /// the token was obtained with.
    pub fn verify_local(
        &self,
        token: &str,
        audience: &dyn Audience,
    ) -> Result<VerifiedToken, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Rejected::Malformed)?;
        if header.alg != Algorithm::RS256 {
            return Err(Rejected::Algorithm.into());
        }
        let kid = header.kid.ok_or(Rejected::UnknownKey)?;
        let tenant = self.tenant()?.ok_or(Rejected::Tenant)?;
        let key = self.load_key(&kid)?.ok_or(Rejected::UnknownKey)?;
        let claims: AccessClaims = decode_rs256(token, &key.public, self.now())?;
        if !audience.accepts(&claims.aud) {
            return Err(Rejected::Audience.into());
        }
        if claims.tid != tenant.id {
            return Err(Rejected::Tenant.into());
        }
        if !issuer_names_tenant(&claims.iss, &tenant.id) {
            return Err(Rejected::Issuer.into());
        }
        let principal = self
            .get_local(&claims.oid)?
            .filter(|p| p.enabled)
            .ok_or(Rejected::Principal)?;
        if !still_holds(&principal, &claims) {
            return Err(Rejected::Principal.into());
        }
        Ok(VerifiedToken { claims })
    }
}

/// Whether the token's principal is of the kind it claims and still holds
/// the credential it signed in with.
fn still_holds(p: &Principal, claims: &AccessClaims) -> bool {
    match (p.kind, claims.idtyp.as_str()) {
        (Kind::User, "user") => true,
        (Kind::App, "app") => {
            let Some(app) = &p.app else { return false };
            if !app.client_id.eq_ignore_ascii_case(&claims.azp) {
                return false;
            }
            let Some(cred) = &claims.xms_coffer_cred else {
                return false;
            };
            app.secrets.iter().any(|s| &s.id == cred)
                || app.certificates.iter().any(|c| &c.thumbprint == cred)
                || app.federated.iter().any(|f| &f.name == cred)
        }
        _ => false,
    }
}

fn signing_failed() -> IdentityError {
    IdentityError::BadRequest("signing the token failed".into())
}

/// `base64url(header).base64url(claims).base64url(RS256 signature)` with
/// the PKCS#8 RSA key `pkcs8`.
pub fn compose_rs256<T: Serialize>(
    pkcs8: &[u8],
    header: &serde_json::Value,
    claims: &T,
) -> Result<Zeroizing<String>, IdentityError> {
    let header = serde_json::to_vec(header).map_err(|_| signing_failed())?;
    let claims = serde_json::to_vec(claims).map_err(|_| signing_failed())?;
    compose_rs256_bytes(pkcs8, &header, &claims)
}

/// [`compose_rs256`] over header and claims bytes as they are (which need
/// not be JSON: the fuzz target of the token parser signs arbitrary ones).
fn compose_rs256_bytes(
    pkcs8: &[u8],
    header: &[u8],
    claims: &[u8],
) -> Result<Zeroizing<String>, IdentityError> {
    let pair = KeyPair::from_pkcs8(pkcs8).map_err(|_| signing_failed())?;
    let mut input = URL_SAFE_NO_PAD.encode(header);
    input.push('.');
    input.push_str(&URL_SAFE_NO_PAD.encode(claims));
    let mut sig = vec![0u8; pair.public_modulus_len()];
    let rng = aws_lc_rs::rand::SystemRandom::new();
    pair.sign(&RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut sig)
        .map_err(|_| signing_failed())?;
    input.push('.');
    input.push_str(&URL_SAFE_NO_PAD.encode(&sig));
    Ok(Zeroizing::new(input))
}

/// `iss` is `https://{host}/{tid}/v2.0` or `https://{host}/{tid}/`. The host
/// is whichever node the client asked (all nodes share the signing key), so
/// only the tenant path is checked.
pub fn issuer_names_tenant(iss: &str, tid: &str) -> bool {
    let Ok(url) = url::Url::parse(iss) else {
        return false;
    };
    let path = url.path().trim_end_matches('/');
    url.scheme() == "https"
        && (path.eq_ignore_ascii_case(&format!("/{tid}/v2.0"))
            || path.eq_ignore_ascii_case(&format!("/{tid}")))
}

/// Verifies an RS256 JWT's signature with `key`, then `exp` (required)
/// and `nbf` (when present) against `now` with leeway — times may be
/// floats, as MSAL writes them — and decodes the claims.
pub fn decode_rs256<T: DeserializeOwned>(token: &str, key: &Jwk, now: u64) -> Result<T, Rejected> {
    let mut validation = Validation::new(Algorithm::RS256);
    // Times are checked below with the engine's clock.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<serde_json::Value>(token, &key.decoding_key()?, &validation)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => Rejected::Signature,
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => Rejected::Algorithm,
            jsonwebtoken::errors::ErrorKind::InvalidToken
            | jsonwebtoken::errors::ErrorKind::Base64(_)
            | jsonwebtoken::errors::ErrorKind::Utf8(_) => Rejected::Malformed,
            _ => Rejected::Claims,
        })?;
    let time = |name: &str| data.claims.get(name).and_then(serde_json::Value::as_f64);
    let now = now as f64;
    let leeway = LEEWAY_SECS as f64;
    let exp = time("exp").ok_or(Rejected::Claims)?;
    if exp + leeway < now {
        return Err(Rejected::Expired);
    }
    if time("nbf").is_some_and(|nbf| nbf > now + leeway) {
        return Err(Rejected::NotYetValid);
    }
    serde_json::from_value(data.claims).map_err(|_| Rejected::Claims)
}

fn to_engine(e: IdentityError) -> crate::EngineError {
    match e {
        IdentityError::Engine(e) => e,
        other => crate::EngineError::Corrupt(other.to_string()),
    }
}
