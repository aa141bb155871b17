//! Credentials of principals and how they are checked: client secrets
//! (hashed, with expiry), certificates (by SHA-1 thumbprint, RSA public key
//! kept), federated credentials (an external issuer's keys, subject and
//! audience), user passwords (Argon2id) and TOTP enrolments.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, PasswordVerifier};
use aws_lc_rs::digest;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::principals::{Kind, Principal};
use super::signing::Jwk;
use super::{new_guid, IdentityEngine, IdentityError};

/// A client secret: only its SHA-256 is stored. Secrets are 32 random
/// bytes generated here, so a fast hash is enough (no dictionary to guess
/// from); Argon2id is for human passwords.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientSecret {
    /// Key id (GUID) naming this secret in `app secret remove`.
    pub id: String,
    /// First three characters, to tell secrets apart.
    pub hint: String,
    /// Hex SHA-256 of the secret (empty in displayed copies).
    pub hash: String,
    /// Unix seconds after which the secret is refused.
    pub expires: Option<u64>,
    /// Unix seconds.
    pub created: u64,
}

/// A certificate an application signs client assertions with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppCertificate {
    /// Upper-case hex SHA-1 of the certificate DER (what `x5t` encodes).
    pub thumbprint: String,
    /// The certificate's RSA public key.
    pub key: Jwk,
    /// The certificate's `notAfter`, Unix seconds.
    pub not_after: u64,
    /// Subject, for display.
    pub subject: String,
}

/// Trust in an external issuer's tokens for one subject (workload identity
/// federation): `iss`, `sub` and `aud` must match and the token must be
/// signed by one of `keys`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederatedCredential {
    /// Name of this credential within the app.
    pub name: String,
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `sub`.
    pub subject: String,
    /// Accepted `aud` (Entra uses `api://AzureADTokenExchange`).
    pub audience: String,
    /// The issuer's public signing keys (its JWKS).
    pub keys: Vec<Jwk>,
}

/// A user's TOTP second factor (RFC 6238: SHA-1, 6 digits, 30 s).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpEnrolment {
    /// Base32 seed (empty in displayed copies).
    pub secret: String,
    /// The last time step whose code was accepted: codes are single-use.
    #[serde(default)]
    pub last_step: u64,
}

/// Length of generated client secrets in bytes.
const SECRET_BYTES: usize = 32;

/// A new random client secret (`cfs.` + base64url of 32 bytes).
fn new_client_secret() -> Zeroizing<String> {
    let bytes: [u8; SECRET_BYTES] = rand::random();
    Zeroizing::new(format!("cfs.{}", URL_SAFE_NO_PAD.encode(bytes)))
}

fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` is one of the app's unexpired secrets; returns its id.
pub fn match_client_secret(app: &super::App, secret: &str, now: u64) -> Option<String> {
    let hash = secret_hash(secret);
    app.secrets
        .iter()
        .filter(|s| s.expires.is_none_or(|e| now < e))
        .find(|s| bool::from(s.hash.as_bytes().ct_eq(hash.as_bytes())))
        .map(|s| s.id.clone())
}

/// An Argon2id PHC string of `password`.
pub fn hash_password(password: &str) -> Result<String, IdentityError> {
    check_password_rule(password)?;
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| IdentityError::BadRequest("the password could not be hashed".into()))
}

/// Whether `password` matches the PHC string (constant time inside argon2).
pub fn verify_password(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

fn check_password_rule(password: &str) -> Result<(), IdentityError> {
    if (12..=1024).contains(&password.chars().count()) {
        Ok(())
    } else {
        Err(IdentityError::BadRequest(
            "passwords are 12 to 1024 characters".into(),
        ))
    }
}

/// The `x5t` value of a thumbprint: base64url of the SHA-1 bytes. Clients
/// differ on padding (MSAL keeps the `=`), so compare without it.
pub fn x5t_matches(thumbprint_hex: &str, x5t: &str) -> bool {
    let Ok(bytes) = hex::decode(thumbprint_hex) else {
        return false;
    };
    let trimmed = x5t.trim_end_matches('=');
    URL_SAFE_NO_PAD.encode(&bytes) == trimmed
        || URL_SAFE.encode(&bytes).trim_end_matches('=') == trimmed
}

/// Parses a PEM (or base64 DER) certificate with an RSA key.
pub fn parse_certificate(pem_or_b64: &str) -> Result<AppCertificate, IdentityError> {
    let bad = |m: &str| IdentityError::BadRequest(format!("certificate: {m}"));
    let der = match x509_parser::pem::parse_x509_pem(pem_or_b64.as_bytes()) {
        Ok((_, pem)) => pem.contents,
        Err(_) => STANDARD
            .decode(pem_or_b64.trim())
            .map_err(|_| bad("neither PEM nor base64 DER"))?,
    };
    let (_, cert) =
        x509_parser::parse_x509_certificate(&der).map_err(|_| bad("not an X.509 certificate"))?;
    let key = match cert.public_key().parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => {
            Jwk::rsa(None, strip_zeros(rsa.modulus), strip_zeros(rsa.exponent))
        }
        _ => return Err(bad("only RSA keys are supported (as by the Azure SDKs)")),
    };
    let thumb = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &der);
    Ok(AppCertificate {
        thumbprint: hex::encode_upper(thumb.as_ref()),
        key,
        not_after: u64::try_from(cert.validity().not_after.timestamp()).unwrap_or(0),
        subject: cert.subject().to_string(),
    })
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// What `app secret add` returns: the secret is shown this once.
#[derive(Debug, Serialize, Deserialize)]
pub struct NewSecret {
    /// Key id of the new secret.
    pub id: String,
    /// The secret itself.
    pub secret: String,
    /// Expiry, Unix seconds.
    pub expires: Option<u64>,
}

impl IdentityEngine {
    /// Adds a client secret valid for `valid_days` (none: no expiry).
    pub async fn add_app_secret(
        &self,
        app: &str,
        valid_days: Option<u64>,
    ) -> Result<NewSecret, IdentityError> {
        let secret = new_client_secret();
        let now = self.now();
        let expires = valid_days.map(|d| now + d * 86_400);
        let id = new_guid();
        let record = ClientSecret {
            id: id.clone(),
            hint: secret.chars().skip(4).take(3).collect(),
            hash: secret_hash(&secret),
            expires,
            created: now,
        };
        self.update(Kind::App, app, |p| {
            p.app_mut()?.secrets.push(record.clone());
            Ok(())
        })
        .await?;
        Ok(NewSecret {
            id,
            secret: secret.to_string(),
            expires,
        })
    }

    /// Removes a client secret by key id; tokens obtained with it stop
    /// working.
    pub async fn remove_app_secret(&self, app: &str, id: &str) -> Result<(), IdentityError> {
        self.update(Kind::App, app, |p| {
            let secrets = &mut p.app_mut()?.secrets;
            let before = secrets.len();
            secrets.retain(|s| !s.id.eq_ignore_ascii_case(id));
            if secrets.len() == before {
                return Err(IdentityError::NotFound(format!("secret {id}")));
            }
            Ok(())
        })
        .await
    }

    /// Adds a certificate (PEM); returns its thumbprint.
    pub async fn add_app_certificate(&self, app: &str, pem: &str) -> Result<String, IdentityError> {
        let cert = parse_certificate(pem)?;
        let thumb = cert.thumbprint.clone();
        self.update(Kind::App, app, |p| {
            let certs = &mut p.app_mut()?.certificates;
            certs.retain(|c| c.thumbprint != cert.thumbprint);
            certs.push(cert.clone());
            Ok(())
        })
        .await?;
        Ok(thumb)
    }

    /// Removes a certificate by thumbprint (hex, any case).
    pub async fn remove_app_certificate(
        &self,
        app: &str,
        thumbprint: &str,
    ) -> Result<(), IdentityError> {
        self.update(Kind::App, app, |p| {
            let certs = &mut p.app_mut()?.certificates;
            let before = certs.len();
            certs.retain(|c| !c.thumbprint.eq_ignore_ascii_case(thumbprint));
            if certs.len() == before {
                return Err(IdentityError::NotFound(format!("certificate {thumbprint}")));
            }
            Ok(())
        })
        .await
    }

    /// Adds (or replaces, by name) a federated credential.
    pub async fn add_app_federated(
        &self,
        app: &str,
        cred: FederatedCredential,
    ) -> Result<(), IdentityError> {
        if cred.keys.is_empty() {
            return Err(IdentityError::BadRequest(
                "a federated credential needs the issuer's keys (JWKS)".into(),
            ));
        }
        self.update(Kind::App, app, |p| {
            let feds = &mut p.app_mut()?.federated;
            feds.retain(|f| f.name != cred.name);
            feds.push(cred.clone());
            Ok(())
        })
        .await
    }

    /// Sets a user's password.
    pub async fn set_password(&self, user: &str, password: &str) -> Result<(), IdentityError> {
        let hash = hash_password(password)?;
        self.update(Kind::User, user, |p| {
            p.user_mut()?.password_hash = hash.clone();
            Ok(())
        })
        .await?;
        self.clear_lockout(Kind::User, user).await
    }

    /// Enrols (or re-enrols) TOTP for a user; returns the `otpauth://` URI,
    /// shown this once.
    pub async fn enroll_totp(&self, user: &str) -> Result<String, IdentityError> {
        let tenant = self.ensure_tenant().await?;
        let secret = super::totp::new_secret();
        let name = self
            .update(Kind::User, user, |p| {
                p.user_mut()?.totp = Some(TotpEnrolment {
                    secret: secret.to_string(),
                    last_step: 0,
                });
                Ok(p.name.clone())
            })
            .await?;
        super::totp::uri(&secret, &tenant.name, &name)
    }
}

/// A new principal template for a user with `password`.
pub fn user_template(name: &str, password: &str) -> Result<Principal, IdentityError> {
    let mut p = super::principals::template(Kind::User, name);
    p.user_mut()?.password_hash = hash_password(password)?;
    Ok(p)
}
