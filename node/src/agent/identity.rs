//! The agent's own identity: a Coffer application that signs in with a
//! client secret or with the host's machine certificate (a `private_key_jwt`
//! client assertion), and the cache of the access tokens it gets.

use std::collections::HashMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use base64::engine::general_purpose::URL_SAFE;
use base64::Engine as _;
use bytes::Bytes;
use coffer_client::{Client, Request};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use crate::engine::identity::signing::compose_rs256;

/// Renew a cached token this long before it expires (as the SDKs do).
const RENEW_BEFORE_SECS: u64 = 300;
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The resource the Key Vault API accepts in every deployment.
pub const VAULT_RESOURCE: &str = "https://vault.azure.net";

/// How the agent proves who it is to the issuer.
pub enum Proof {
    /// A client secret of the application.
    Secret(Zeroizing<String>),
    /// The machine certificate's `x5t` and its PKCS#8 RSA key.
    Certificate {
        /// base64url SHA-1 of the certificate (padded, as MSAL sends it).
        x5t: String,
        /// PKCS#8 DER of the private key.
        key: Zeroizing<Vec<u8>>,
    },
}

impl Proof {
    /// Reads a client secret file (surrounding whitespace ignored).
    pub fn from_secret_file(path: &Path) -> anyhow::Result<Self> {
        let text = Zeroizing::new(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        );
        let secret = text.trim();
        if secret.is_empty() {
            bail!("{} is empty", path.display());
        }
        Ok(Self::Secret(Zeroizing::new(secret.to_owned())))
    }

    /// Reads the machine certificate (PEM) and its PKCS#8 key (PEM).
    pub fn from_certificate(cert: &Path, key: &Path) -> anyhow::Result<Self> {
        let cert_pem =
            std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
        let cert_der = rustls_pemfile::certs(&mut cert_pem.as_slice())
            .next()
            .context("no certificate in the certificate file")??;
        let sha1 =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &cert_der);
        let key_pem = Zeroizing::new(
            std::fs::read(key).with_context(|| format!("reading {}", key.display()))?,
        );
        let key = match rustls_pemfile::private_key(&mut key_pem.as_slice())? {
            Some(rustls::pki_types::PrivateKeyDer::Pkcs8(k)) => {
                Zeroizing::new(k.secret_pkcs8_der().to_vec())
            }
            _ => bail!("the key file must hold a PKCS#8 RSA private key"),
        };
        Ok(Self::Certificate {
            x5t: URL_SAFE.encode(sha1.as_ref()),
            key,
        })
    }
}

/// The agent's identity and its token cache.
pub struct Identity {
    client: Client,
    tenant: String,
    client_id: String,
    proof: Proof,
    /// Access tokens by resource, with their expiry (Unix seconds).
    cache: Mutex<HashMap<String, (Zeroizing<String>, u64)>>,
}

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Identity {
    /// An identity signing in through `client` (which must carry no token).
    pub fn new(client: Client, tenant: String, client_id: String, proof: Proof) -> Self {
        Self {
            client,
            tenant,
            client_id,
            proof,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The application's client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// A token for `resource` and its expiry, from the cache or the
    /// cluster (through the failover client: any node's issuer signs).
    pub async fn token_for(&self, resource: &str) -> anyhow::Result<(Zeroizing<String>, u64)> {
        let mut cache = self.cache.lock().await;
        if let Some((token, exp)) = cache.get(resource) {
            if *exp > now() + RENEW_BEFORE_SECS {
                return Ok((token.clone(), *exp));
            }
        }
        let issued = now();
        let scope = format!("{}/.default", resource.trim_end_matches('/'));
        // The serializer is not Send: it must not live across an await.
        let form = Zeroizing::new({
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "client_credentials")
                .append_pair("client_id", &self.client_id)
                .append_pair("scope", &scope);
            match &self.proof {
                Proof::Secret(secret) => {
                    form.append_pair("client_secret", secret);
                }
                Proof::Certificate { x5t, key } => {
                    let endpoint = self
                        .client
                        .endpoints()
                        .first()
                        .context("no cluster address")?
                        .trim_end_matches('/')
                        .to_owned();
                    let assertion = compose_rs256(
                        key,
                        &json!({"alg": "RS256", "typ": "JWT", "x5t": x5t}),
                        &json!({
                            "aud": format!("{endpoint}/{}/oauth2/v2.0/token", self.tenant),
                            "iss": self.client_id, "sub": self.client_id,
                            "jti": uuid::Uuid::new_v4().to_string(),
                            "iat": issued, "exp": issued + 600,
                        }),
                    )
                    .map_err(|e| anyhow::anyhow!("signing the client assertion: {e}"))?;
                    form.append_pair("client_assertion_type", JWT_BEARER)
                        .append_pair("client_assertion", &assertion);
                }
            }
            form.finish()
        });
        let mut req = Request::post(format!("/{}/oauth2/v2.0/token", self.tenant)).header(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        req.body = Some(Bytes::copy_from_slice(form.as_bytes()));
        let resp = self.client.send(req).await?;
        #[derive(Deserialize)]
        struct TokenBody {
            access_token: Option<String>,
            expires_in: Option<u64>,
            error: Option<String>,
            error_description: Option<String>,
        }
        let body: TokenBody = resp.json()?;
        let (Some(token), Some(expires_in)) = (body.access_token, body.expires_in) else {
            bail!(
                "{}: {}",
                body.error.unwrap_or_else(|| resp.status.to_string()),
                body.error_description.unwrap_or_default()
            );
        };
        let entry = (Zeroizing::new(token), issued + expires_in);
        cache.insert(resource.to_owned(), entry.clone());
        Ok(entry)
    }
}
