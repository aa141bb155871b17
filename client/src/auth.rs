//! Tokens from Coffer's issuer: an application signs in with a client
//! secret, a certificate (a `private_key_jwt` client assertion) or a
//! federated token (e.g. a Kubernetes service-account token), and the token
//! is cached and renewed before it expires.
//!
//! The token endpoint is `POST /{tenant}/oauth2/v2.0/token` on any node
//! (every node's issuer signs with the cluster key), reached through the
//! client's failover.
//!
//! ```
//! use coffer_client::auth::{AppCredential, Credential};
//!
//! let cred = AppCredential::new(
//!     "contoso",
//!     "9f2c0e55-1f4b-4c1e-9a57-0d5b0bb0f2e1",
//!     Credential::ClientSecret("s3cr3t".to_string().into()),
//! );
//! // Debug output never shows the secret.
//! assert!(!format!("{cred:?}").contains("s3cr3t"));
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use crate::{Client, ClientError, Request};

/// The resource the Key Vault API accepts in every deployment.
pub const VAULT_RESOURCE: &str = "https://vault.azure.net";
/// Renew a cached token this long before it expires (as the SDKs do), or
/// at half its lifetime when that comes first.
const RENEW_BEFORE_SECS: u64 = 300;
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How an application proves who it is to the issuer.
///
/// ```
/// use coffer_client::auth::Credential;
///
/// let path = std::env::temp_dir().join(format!("coffer-doc-secret-{}", std::process::id()));
/// std::fs::write(&path, "  s3cr3t\n").unwrap();
/// let cred = Credential::from_secret_file(&path)?;
/// match &cred {
///     Credential::ClientSecret(secret) => assert_eq!(secret.as_str(), "s3cr3t"),
///     other => panic!("expected a client secret, got {other:?}"),
/// }
/// // Debug output never shows the secret.
/// assert_eq!(format!("{cred:?}"), "ClientSecret(<redacted>)");
///
/// // A key that is not PKCS#8 RSA is refused up front.
/// assert!(Credential::from_certificate_pem(b"not pem", b"not pem").is_err());
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), coffer_client::ClientError>(())
/// ```
#[derive(Clone)]
pub enum Credential {
    /// A client secret of the application.
    ClientSecret(Zeroizing<String>),
    /// A certificate registered on the application: its `x5t` and its
    /// PKCS#8 RSA key sign a client assertion for each token request.
    Certificate {
        /// base64url SHA-1 of the certificate DER (padded, as MSAL sends it).
        x5t: String,
        /// PKCS#8 DER of the private key.
        key: Zeroizing<Vec<u8>>,
    },
    /// A token of an external issuer that the application trusts (a
    /// federated credential), read from this file at every sign-in because
    /// its owner (e.g. the kubelet) rotates it.
    FederatedFile(PathBuf),
    /// A fixed token of an external issuer.
    FederatedToken(Zeroizing<String>),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClientSecret(_) => f.write_str("ClientSecret(<redacted>)"),
            Self::Certificate { x5t, .. } => write!(f, "Certificate {{ x5t: {x5t:?} }}"),
            Self::FederatedFile(p) => write!(f, "FederatedFile({p:?})"),
            Self::FederatedToken(_) => f.write_str("FederatedToken(<redacted>)"),
        }
    }
}

impl Credential {
    /// Reads a client secret file (surrounding whitespace ignored).
    pub fn from_secret_file(path: &Path) -> Result<Self, ClientError> {
        let text =
            Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                ClientError::Config(format!("cannot read {}: {e}", path.display()))
            })?);
        let secret = text.trim();
        if secret.is_empty() {
            return Err(ClientError::Config(format!("{} is empty", path.display())));
        }
        Ok(Self::ClientSecret(Zeroizing::new(secret.to_owned())))
    }

    /// A certificate (PEM, the first one counts) and its PKCS#8 RSA key (PEM).
    pub fn from_certificate_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, ClientError> {
        let bad =
            |what: &str| ClientError::Config(format!("invalid certificate credential: {what}"));
        let cert_der = rustls_pemfile::certs(&mut &cert_pem[..])
            .next()
            .ok_or_else(|| bad("no certificate in the PEM"))?
            .map_err(|_| bad("unreadable certificate PEM"))?;
        let sha1 =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &cert_der);
        let key = match rustls_pemfile::private_key(&mut &key_pem[..]) {
            Ok(Some(rustls::pki_types::PrivateKeyDer::Pkcs8(k))) => {
                Zeroizing::new(k.secret_pkcs8_der().to_vec())
            }
            _ => return Err(bad("the key must be a PKCS#8 RSA private key (PEM)")),
        };
        aws_lc_rs::signature::RsaKeyPair::from_pkcs8(&key)
            .map_err(|_| bad("the key must be a PKCS#8 RSA private key (PEM)"))?;
        Ok(Self::Certificate {
            x5t: URL_SAFE.encode(sha1.as_ref()),
            key,
        })
    }

    /// Reads the certificate and key files of [`Credential::from_certificate_pem`].
    pub fn from_certificate_files(cert: &Path, key: &Path) -> Result<Self, ClientError> {
        let read = |p: &Path| {
            std::fs::read(p)
                .map(Zeroizing::new)
                .map_err(|e| ClientError::Config(format!("cannot read {}: {e}", p.display())))
        };
        Self::from_certificate_pem(&read(cert)?, &read(key)?)
    }
}

/// An application of a tenant and its proof.
///
/// Put it in [`ClientConfig::credential`](crate::ClientConfig::credential)
/// and the client signs in and renews its tokens itself.
///
/// ```no_run
/// # async fn demo() -> Result<(), coffer_client::ClientError> {
/// use std::path::PathBuf;
/// use coffer_client::auth::{AppCredential, Credential};
/// use coffer_client::{Client, ClientConfig};
///
/// // A Kubernetes service-account token, re-read at every sign-in.
/// let app = AppCredential::new(
///     "contoso",
///     "9f2c0e55-1f4b-4c1e-9a57-0d5b0bb0f2e1",
///     Credential::FederatedFile(PathBuf::from("/var/run/secrets/tokens/coffer")),
/// );
/// let client = Client::new(ClientConfig {
///     credential: Some(app),
///     ..ClientConfig::from_parts("node1:8453", None, Some(std::path::Path::new("ca.pem")))?
/// })?;
/// let secret = client.secrets().get("db-password", None).await?;
/// # let _ = secret; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct AppCredential {
    /// Tenant id (GUID) or name: the issuer path is `/{tenant}/...`.
    pub tenant: String,
    /// The application's client id.
    pub client_id: String,
    /// The proof.
    pub credential: Credential,
}

impl AppCredential {
    /// An application `client_id` of `tenant` proving itself with `credential`.
    pub fn new(
        tenant: impl Into<String>,
        client_id: impl Into<String>,
        credential: Credential,
    ) -> Self {
        Self {
            tenant: tenant.into(),
            client_id: client_id.into(),
            credential,
        }
    }
}

/// A cached access token.
#[derive(Clone)]
struct Cached {
    token: Zeroizing<String>,
    /// Unix seconds.
    expires: u64,
    /// Unix seconds after which a new one is fetched.
    renew_at: u64,
}

/// Signs an application in and caches its access tokens by resource;
/// obtained from [`Client::token_source`] or built for other clients.
///
/// ```
/// # fn main() -> Result<(), coffer_client::ClientError> {
/// # let ca_pem = rcgen::generate_simple_self_signed(vec!["localhost".into()])
/// #     .unwrap().cert.pem().into_bytes();
/// use std::path::PathBuf;
/// use coffer_client::auth::{AppCredential, Credential, TokenSource};
/// use coffer_client::{Client, ClientConfig, ClientError};
///
/// let client = Client::new(ClientConfig {
///     endpoints: coffer_client::parse_endpoints("127.0.0.1:1")?,
///     ca_pem: Some(ca_pem),
///     ..ClientConfig::default()
/// })?;
/// let app = AppCredential::new(
///     "contoso",
///     "9f2c0e55-1f4b-4c1e-9a57-0d5b0bb0f2e1",
///     Credential::FederatedFile(PathBuf::from("/nonexistent/coffer-token")),
/// );
/// let source = TokenSource::new(client, app);
/// assert_eq!(source.client_id(), "9f2c0e55-1f4b-4c1e-9a57-0d5b0bb0f2e1");
/// // The federated token file is read at sign-in; a missing one is an
/// // `Auth` error before anything is sent.
/// let err = tokio::runtime::Runtime::new().unwrap().block_on(source.token()).unwrap_err();
/// assert!(matches!(err, ClientError::Auth(_)), "{err}");
/// # Ok(()) }
/// ```
pub struct TokenSource {
    client: Client,
    app: AppCredential,
    cache: Mutex<HashMap<String, Cached>>,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("app", &self.app)
            .finish_non_exhaustive()
    }
}

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// When a token issued at `issued` for `lifetime` seconds is renewed:
/// [`RENEW_BEFORE_SECS`] before expiry, at half its lifetime for short ones,
/// or at the issuer's `refresh_in` when it says so and that is sooner.
fn renew_at(issued: u64, lifetime: u64, refresh_in: Option<u64>) -> u64 {
    let by_margin = lifetime.saturating_sub(RENEW_BEFORE_SECS.min(lifetime / 2));
    issued + refresh_in.map_or(by_margin, |r| r.min(by_margin))
}

#[derive(Deserialize)]
struct TokenBody {
    access_token: Option<String>,
    #[serde(default, deserialize_with = "number_or_string")]
    expires_in: Option<u64>,
    #[serde(default, deserialize_with = "number_or_string")]
    refresh_in: Option<u64>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `expires_in` may be an integer or a numeric string.
fn number_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    })
}

impl TokenSource {
    /// A source signing `app` in through `client` (which must carry no
    /// token or credential of its own).
    pub fn new(client: Client, app: AppCredential) -> Self {
        Self {
            client,
            app,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The application's client id.
    pub fn client_id(&self) -> &str {
        &self.app.client_id
    }

    /// The client the source signs in through (no token of its own).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A token for the Key Vault API ([`VAULT_RESOURCE`]).
    pub async fn token(&self) -> Result<Zeroizing<String>, ClientError> {
        self.token_for(VAULT_RESOURCE).await.map(|(t, _)| t)
    }

    /// Drops every cached token (the next call signs in again).
    pub async fn forget(&self) {
        self.cache.lock().await.clear();
    }

    /// A token for `resource` and its expiry (Unix seconds), from the cache
    /// while it is fresh, else from the issuer.
    pub async fn token_for(&self, resource: &str) -> Result<(Zeroizing<String>, u64), ClientError> {
        // One sign-in at a time: concurrent callers wait for it and share
        // its token instead of each asking the issuer.
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.get(resource) {
            if now() < c.renew_at {
                return Ok((c.token.clone(), c.expires));
            }
        }
        let issued = now();
        let scope = format!("{}/.default", resource.trim_end_matches('/'));
        let form = self.form(&scope, issued)?;
        let mut req = Request::post(format!("/{}/oauth2/v2.0/token", self.app.tenant)).header(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        req.body = Some(Bytes::copy_from_slice(form.as_bytes()));
        let resp = self.client.send_boxed(req).await?;
        let body: TokenBody = resp.json()?;
        let (Some(token), Some(lifetime)) = (body.access_token, body.expires_in) else {
            return Err(ClientError::Auth(format!(
                "{}: {}",
                body.error.unwrap_or_else(|| resp.status.to_string()),
                body.error_description.unwrap_or_default()
            )));
        };
        let entry = Cached {
            token: Zeroizing::new(token),
            expires: issued + lifetime,
            renew_at: renew_at(issued, lifetime, body.refresh_in),
        };
        cache.insert(resource.to_owned(), entry.clone());
        Ok((entry.token, entry.expires))
    }

    /// The token request's form for `scope`.
    fn form(&self, scope: &str, issued: u64) -> Result<Zeroizing<String>, ClientError> {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials")
            .append_pair("client_id", &self.app.client_id)
            .append_pair("scope", scope);
        match &self.app.credential {
            Credential::ClientSecret(secret) => {
                form.append_pair("client_secret", secret);
            }
            Credential::Certificate { x5t, key } => {
                let assertion = self.assertion(x5t, key, issued)?;
                form.append_pair("client_assertion_type", JWT_BEARER)
                    .append_pair("client_assertion", &assertion);
            }
            Credential::FederatedFile(path) => {
                let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                    ClientError::Auth(format!("cannot read {}: {e}", path.display()))
                })?);
                form.append_pair("client_assertion_type", JWT_BEARER)
                    .append_pair("client_assertion", text.trim());
            }
            Credential::FederatedToken(token) => {
                form.append_pair("client_assertion_type", JWT_BEARER)
                    .append_pair("client_assertion", token.trim());
            }
        }
        Ok(Zeroizing::new(form.finish()))
    }

    /// An RS256 client assertion for the token endpoint of the first node
    /// (the issuer checks the audience's tenant path, not its host).
    fn assertion(
        &self,
        x5t: &str,
        key: &[u8],
        issued: u64,
    ) -> Result<Zeroizing<String>, ClientError> {
        let endpoint = self
            .client
            .endpoints()
            .first()
            .ok_or_else(|| ClientError::Config("no endpoint given".into()))?;
        let header = json!({"alg": "RS256", "typ": "JWT", "x5t": x5t});
        let claims = json!({
            "aud": format!("{}/{}/oauth2/v2.0/token", endpoint.trim_end_matches('/'), self.app.tenant),
            "iss": self.app.client_id, "sub": self.app.client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "iat": issued, "exp": issued + 600,
        });
        sign_rs256(key, &header, &claims)
    }
}

/// `base64url(header).base64url(claims).base64url(RS256 signature)`.
fn sign_rs256(
    pkcs8: &[u8],
    header: &serde_json::Value,
    claims: &serde_json::Value,
) -> Result<Zeroizing<String>, ClientError> {
    let failed = || ClientError::Auth("signing the client assertion failed".into());
    let pair = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(pkcs8).map_err(|_| failed())?;
    let mut input = Zeroizing::new(URL_SAFE_NO_PAD.encode(header.to_string()));
    input.push('.');
    input.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
    let mut sig = vec![0u8; pair.public_modulus_len()];
    let rng = aws_lc_rs::rand::SystemRandom::new();
    pair.sign(
        &aws_lc_rs::signature::RSA_PKCS1_SHA256,
        &rng,
        input.as_bytes(),
        &mut sig,
    )
    .map_err(|_| failed())?;
    input.push('.');
    input.push_str(&URL_SAFE_NO_PAD.encode(&sig));
    Ok(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_renew_before_expiry() {
        // An hour-long token: 300 s before expiry.
        assert_eq!(renew_at(1000, 3600, None), 1000 + 3300);
        // A one-minute token: at half its lifetime.
        assert_eq!(renew_at(1000, 60, None), 1030);
        // The issuer's refresh_in when sooner.
        assert_eq!(renew_at(1000, 3600, Some(1800)), 2800);
        assert_eq!(renew_at(1000, 3600, Some(9999)), 4300);
    }

    #[test]
    fn expires_in_may_be_a_string() {
        let b: TokenBody =
            serde_json::from_str(r#"{"access_token":"t","expires_in":"3599"}"#).unwrap();
        assert_eq!(b.expires_in, Some(3599));
        let b: TokenBody = serde_json::from_str(r#"{"error":"invalid_client"}"#).unwrap();
        assert_eq!(b.expires_in, None);
    }

    #[test]
    fn certificate_assertion_verifies_with_the_public_key() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["app".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let cred =
            Credential::from_certificate_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
                .unwrap();
        let Credential::Certificate { x5t, key: pkcs8 } = &cred else {
            panic!("not a certificate credential");
        };
        // Padded base64url of a 20-byte SHA-1.
        assert_eq!(x5t.len(), 28);
        assert!(x5t.ends_with('='));
        let jwt = sign_rs256(pkcs8, &json!({"alg": "RS256"}), &json!({"sub": "a"})).unwrap();
        let (input, sig) = jwt.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        let pair = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(pkcs8).unwrap();
        use aws_lc_rs::signature::KeyPair as _;
        let public = aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            pair.public_key().as_ref(),
        );
        public.verify(input.as_bytes(), &sig).unwrap();
        assert_eq!(
            format!("{cred:?}"),
            format!("Certificate {{ x5t: {x5t:?} }}")
        );
    }
}
