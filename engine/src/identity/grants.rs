//! Sign-in checks behind the token endpoint's grants: client secret,
//! client assertion (certificate RS256 with `x5t`, or a federated issuer's
//! token), user password (+ TOTP). Each returns the principal and how it
//! proved itself; failed secrets and passwords count towards the lockout.

use serde::Deserialize;

use super::credentials::{match_client_secret, verify_password, x5t_matches};
use super::principals::{Kind, Principal};
use super::signing::{decode_rs256, Proof, Rejected};
use super::{IdentityEngine, IdentityError, Tenant};

/// The claims Coffer reads from a client assertion. `exp`/`iat` may be
/// floats (MSAL sends them so); `jsonwebtoken` checks `exp` itself.
#[derive(Debug, Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    #[serde(default)]
    aud: Aud,
}

/// `aud` as a string or an array of strings.
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum Aud {
    One(String),
    Many(Vec<String>),
    #[default]
    None,
}

impl Aud {
    fn contains(&self, pred: impl Fn(&str) -> bool) -> bool {
        match self {
            Aud::One(a) => pred(a),
            Aud::Many(v) => v.iter().any(|a| pred(a)),
            Aud::None => false,
        }
    }
}

fn invalid_client(msg: &str) -> IdentityError {
    IdentityError::InvalidCredentials(msg.to_owned())
}

/// Whether `aud` is a token endpoint URL of this tenant
/// (`https://{any node}/{tenant id or name}/oauth2/v2.0/token`).
fn is_our_token_endpoint(aud: &str, tenant: &Tenant) -> bool {
    let Ok(url) = url::Url::parse(aud) else {
        return false;
    };
    let segs: Vec<&str> = url.path().trim_matches('/').split('/').collect();
    url.scheme() == "https"
        && segs.len() == 4
        && tenant.is_named_by(segs[0])
        && segs[1..] == ["oauth2", "v2.0", "token"]
}

/// An Argon2id hash of nothing anyone knows, to verify against when the
/// user does not exist.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| super::credentials::hash_password(&super::new_guid()).unwrap_or_default())
}

impl IdentityEngine {
    /// The enabled, unlocked application with `client_id`, read after a
    /// fence: a sign-in must see the latest credentials and lockout state
    /// whichever node it reaches (a token request per client and hour makes
    /// the round trip cheap).
    async fn signing_in_app(&self, client_id: &str) -> Result<Principal, IdentityError> {
        self.store.read_fence().await?;
        let app = self
            .app_by_client_id(client_id)?
            .filter(|p| p.enabled && p.kind == Kind::App)
            .ok_or_else(|| invalid_client("unknown or disabled application"))?;
        self.check_not_locked(&app.object_id)?;
        Ok(app)
    }

    /// `client_credentials` with `client_secret`.
    pub async fn sign_in_with_secret(
        &self,
        client_id: &str,
        secret: &str,
    ) -> Result<(Principal, Proof), IdentityError> {
        let app = self.signing_in_app(client_id).await?;
        let now = self.now();
        let matched = app
            .app
            .as_ref()
            .and_then(|a| match_client_secret(a, secret, now));
        match matched {
            Some(id) => {
                self.record_success(&app.object_id).await?;
                Ok((app, Proof::Secret(id)))
            }
            None => {
                self.record_failure(&app.object_id).await?;
                Err(invalid_client("invalid client secret"))
            }
        }
    }

    /// `client_credentials` with a `client_assertion`: a certificate
    /// assertion when its `x5t` names one of the app's certificates,
    /// otherwise a federated token matched against the app's federated
    /// credentials.
    pub async fn sign_in_with_assertion(
        &self,
        tenant: &Tenant,
        client_id: &str,
        assertion: &str,
    ) -> Result<(Principal, Proof), IdentityError> {
        let app = self.signing_in_app(client_id).await?;
        let data = app
            .app
            .as_ref()
            .ok_or_else(|| invalid_client("not an application"))?;
        let header = jsonwebtoken::decode_header(assertion)
            .map_err(|_| invalid_client("the client assertion is not a JWT"))?;
        let reject = |r: Rejected| invalid_client(&format!("client assertion refused: {r}"));
        if let Some(cert) = header.x5t.as_deref().and_then(|x5t| {
            data.certificates
                .iter()
                .find(|c| x5t_matches(&c.thumbprint, x5t))
        }) {
            let claims: AssertionClaims =
                decode_rs256(assertion, &cert.key, self.now()).map_err(reject)?;
            if !claims.iss.eq_ignore_ascii_case(client_id)
                || !claims.sub.eq_ignore_ascii_case(client_id)
            {
                return Err(reject(Rejected::Claims));
            }
            if !claims.aud.contains(|a| is_our_token_endpoint(a, tenant)) {
                return Err(reject(Rejected::Audience));
            }
            return Ok((app.clone(), Proof::Certificate(cert.thumbprint.clone())));
        }
        for fed in &data.federated {
            let keys = fed
                .keys
                .iter()
                .filter(|k| header.kid.is_none() || k.kid == header.kid);
            for key in keys {
                let Ok(claims) = decode_rs256::<AssertionClaims>(assertion, key, self.now()) else {
                    continue;
                };
                if claims.iss == fed.issuer
                    && claims.sub == fed.subject
                    && claims.aud.contains(|a| a == fed.audience)
                {
                    return Ok((app.clone(), Proof::Federated(fed.name.clone())));
                }
            }
        }
        Err(invalid_client(
            "the client assertion matches no certificate or federated credential of the application",
        ))
    }

    /// A user's password (and TOTP code when enrolled). Without a code, a
    /// user with TOTP gets `MfaRequired` (the password grant cannot ask for
    /// one). A code is accepted once: the step is recorded.
    pub async fn sign_in_user(
        &self,
        name: &str,
        password: &str,
        code: Option<&str>,
    ) -> Result<(Principal, Proof), IdentityError> {
        let bad = || invalid_client("invalid user name or password");
        self.store.read_fence().await?;
        let Some(user) = self.user_by_name(name)?.filter(|p| p.enabled) else {
            // Spend the time of a real check, so response times do not tell
            // which user names exist.
            verify_password(dummy_hash(), password);
            return Err(bad());
        };
        self.check_not_locked(&user.object_id)?;
        let data = user.user.clone().ok_or_else(bad)?;
        if !verify_password(&data.password_hash, password) {
            self.record_failure(&user.object_id).await?;
            return Err(bad());
        }
        if data.totp.is_none() {
            self.record_success(&user.object_id).await?;
            return Ok((user, Proof::Password { mfa: false }));
        }
        let Some(code) = code else {
            return Err(IdentityError::MfaRequired);
        };
        let now = self.now();
        let id = user.object_id.clone();
        let accepted = self
            .update(Kind::User, &id, |p| {
                let t = p
                    .user_mut()?
                    .totp
                    .as_mut()
                    .ok_or(IdentityError::MfaRequired)?;
                let step = super::totp::accept(&t.secret, code, now, t.last_step)
                    .ok_or_else(|| invalid_client("invalid or already used verification code"))?;
                t.last_step = step;
                Ok(())
            })
            .await;
        match accepted {
            Ok(()) => {
                self.record_success(&id).await?;
                Ok((user, Proof::Password { mfa: true }))
            }
            Err(e @ IdentityError::InvalidCredentials(_)) => {
                self.record_failure(&id).await?;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }
}
