use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::json;

use super::credentials::{user_template, FederatedCredential};
use super::principals::template;
use super::signing::{compose_rs256, Jwk, Rejected, TokenRequest, VerifyError};
use super::*;
use crate::mem_store::MemStore;

const T0: u64 = 1_700_000_000;
const AUD: &str = "https://vault.azure.net";

struct AnyCoffer;
impl Audience for AnyCoffer {
    fn accepts(&self, aud: &str) -> bool {
        aud == AUD
    }
}

struct Fixture {
    now: Arc<AtomicU64>,
    store: Arc<MemStore>,
    id: IdentityEngine,
}

fn fixture() -> Fixture {
    let store = Arc::new(MemStore::new());
    let now = Arc::new(AtomicU64::new(T0));
    let n = now.clone();
    let clock: crate::Clock = Arc::new(move || n.load(Ordering::SeqCst));
    Fixture {
        now,
        store: store.clone(),
        id: IdentityEngine::with_clock(store, "contoso", clock),
    }
}

fn req(client_id: &str) -> TokenRequest<'_> {
    TokenRequest {
        issuer_base: "https://node1:8443",
        audience: AUD,
        client_id,
        cp1: true,
        acrs: &[],
    }
}

/// A new app's client id.
async fn new_app(f: &Fixture, name: &str) -> String {
    let app =
        f.id.create_principal(template(Kind::App, name))
            .await
            .unwrap();
    app.app.unwrap().client_id
}

/// An app with one secret: (app, client id, secret).
async fn app_with_secret(f: &Fixture, name: &str) -> (Principal, String, String) {
    let app =
        f.id.create_principal(template(Kind::App, name))
            .await
            .unwrap();
    let client_id = app.app.as_ref().unwrap().client_id.clone();
    let secret = f.id.add_app_secret(name, Some(30)).await.unwrap().secret;
    (app, client_id, secret)
}

async fn token_for(f: &Fixture, client_id: &str, secret: &str) -> String {
    let tenant = f.id.ensure_tenant().await.unwrap();
    let (p, proof) = f.id.sign_in_with_secret(client_id, secret).await.unwrap();
    let t =
        f.id.issue(&tenant, &p, &proof, &req(client_id))
            .await
            .unwrap();
    t.access_token.to_string()
}

fn rejected(r: Result<VerifiedToken, VerifyError>) -> Rejected {
    match r {
        Err(VerifyError::Rejected(r)) => r,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn the_tenant_is_created_once_and_found_by_guid_or_name() {
    let f = fixture();
    assert!(f.id.tenant().unwrap().is_none());
    let t = f.id.ensure_tenant().await.unwrap();
    assert_eq!(f.id.ensure_tenant().await.unwrap(), t, "fixed at creation");
    assert!(uuid::Uuid::parse_str(&t.id).is_ok());
    assert_eq!(f.id.resolve_tenant("CONTOSO").unwrap(), Some(t.clone()));
    assert_eq!(f.id.resolve_tenant(&t.id.to_uppercase()).unwrap(), Some(t));
    assert_eq!(f.id.resolve_tenant("fabrikam").unwrap(), None);
}

#[tokio::test]
async fn principals_have_unique_names_and_a_full_lifecycle() {
    let f = fixture();
    let app =
        f.id.create_principal(template(Kind::App, "billing"))
            .await
            .unwrap();
    let err =
        f.id.create_principal(template(Kind::App, "BILLING"))
            .await
            .unwrap_err();
    assert!(matches!(err, IdentityError::Exists(_)), "{err:?}");
    // A user may share an app's name: names are unique per kind.
    f.id.create_principal(user_template("billing", "correct horse battery").unwrap())
        .await
        .unwrap();
    let client_id = app.app.as_ref().unwrap().client_id.clone();
    for key in ["billing", &app.object_id, &client_id] {
        assert_eq!(
            f.id.find(Kind::App, key).await.unwrap().object_id,
            app.object_id
        );
    }
    assert_eq!(f.id.list(Kind::App).await.unwrap().len(), 1);
    f.id.create_principal(template(Kind::Group, "ops"))
        .await
        .unwrap();
    let g =
        f.id.set_group_member("ops", &app.object_id, true)
            .await
            .unwrap();
    assert_eq!(g.group.unwrap().members, vec![app.object_id.clone()]);
    assert!(
        !f.id
            .set_enabled(Kind::App, "billing", false)
            .await
            .unwrap()
            .enabled
    );
    f.id.delete(Kind::App, "billing").await.unwrap();
    assert!(matches!(
        f.id.find(Kind::App, &client_id).await,
        Err(IdentityError::NotFound(_))
    ));
    assert!(f.id.app_by_client_id(&client_id).unwrap().is_none());
    let g = f.id.find(Kind::Group, "ops").await.unwrap();
    assert!(
        g.group.unwrap().members.is_empty(),
        "memberships go with the principal"
    );
    // The name is free again.
    f.id.create_principal(template(Kind::App, "billing"))
        .await
        .unwrap();
}

#[tokio::test]
async fn displayed_principals_carry_no_verifiers() {
    let f = fixture();
    let (_, _, secret) = app_with_secret(&f, "a").await;
    let shown = f.id.find(Kind::App, "a").await.unwrap().redacted();
    let text = serde_json::to_string(&shown).unwrap();
    let stored = f.id.find(Kind::App, "a").await.unwrap();
    let hash = &stored.app.as_ref().unwrap().secrets[0].hash;
    assert!(!hash.is_empty());
    assert!(!text.contains(hash.as_str()) && !text.contains(&secret));
}

#[tokio::test]
async fn a_client_secret_token_verifies_until_the_secret_or_app_goes() {
    let f = fixture();
    let (app, client_id, secret) = app_with_secret(&f, "a").await;
    let token = token_for(&f, &client_id, &secret).await;
    let v = f.id.verify_local(&token, &AnyCoffer).unwrap();
    assert_eq!(v.claims.oid, app.object_id);
    assert_eq!(v.claims.idtyp, "app");
    assert_eq!(v.claims.appidacr, "1");
    assert_eq!(v.claims.xms_cc, vec!["cp1".to_owned()]);
    assert_eq!(v.claims.exp - v.claims.iat, 3600);
    let tenant = f.id.tenant().unwrap().unwrap();
    assert_eq!(
        v.claims.iss,
        format!("https://node1:8443/{}/v2.0", tenant.id)
    );

    f.id.set_enabled(Kind::App, "a", false).await.unwrap();
    assert_eq!(
        rejected(f.id.verify_local(&token, &AnyCoffer)),
        Rejected::Principal
    );
    f.id.set_enabled(Kind::App, "a", true).await.unwrap();
    assert!(f.id.verify_local(&token, &AnyCoffer).is_ok());

    let stored = f.id.find(Kind::App, "a").await.unwrap();
    let sid = stored.app.unwrap().secrets[0].id.clone();
    f.id.remove_app_secret("a", &sid).await.unwrap();
    assert_eq!(
        rejected(f.id.verify_local(&token, &AnyCoffer)),
        Rejected::Principal
    );
    assert!(f.id.sign_in_with_secret(&client_id, &secret).await.is_err());
}

#[tokio::test]
async fn expired_client_secrets_are_refused() {
    let f = fixture();
    let (_, client_id, secret) = app_with_secret(&f, "a").await;
    f.now.store(T0 + 31 * 86_400, Ordering::SeqCst);
    assert!(matches!(
        f.id.sign_in_with_secret(&client_id, &secret).await,
        Err(IdentityError::InvalidCredentials(_))
    ));
}

#[tokio::test]
async fn wrong_client_secrets_lock_the_app_out_with_backoff() {
    let f = fixture();
    let (_, client_id, secret) = app_with_secret(&f, "a").await;
    for _ in 0..lockout::FREE_FAILURES {
        assert!(matches!(
            f.id.sign_in_with_secret(&client_id, "cfs.wrong").await,
            Err(IdentityError::InvalidCredentials(_))
        ));
    }
    // Locked: even the right secret is refused now.
    assert!(matches!(
        f.id.sign_in_with_secret(&client_id, &secret).await,
        Err(IdentityError::LockedOut { until }) if until == T0 + 30
    ));
    f.now.store(T0 + 31, Ordering::SeqCst);
    // One more failure doubles the lock.
    assert!(f
        .id
        .sign_in_with_secret(&client_id, "cfs.wrong")
        .await
        .is_err());
    assert!(matches!(
        f.id.sign_in_with_secret(&client_id, &secret).await,
        Err(IdentityError::LockedOut { until }) if until == T0 + 31 + 60
    ));
    f.now.store(T0 + 200, Ordering::SeqCst);
    assert!(f.id.sign_in_with_secret(&client_id, &secret).await.is_ok());
    // A success clears the count.
    assert!(f
        .id
        .sign_in_with_secret(&client_id, "cfs.wrong")
        .await
        .is_err());
    assert!(f.id.sign_in_with_secret(&client_id, &secret).await.is_ok());
}

/// Signs `claims` with the cluster's current key but a chosen header.
fn forge(f: &Fixture, claims: &serde_json::Value) -> String {
    f.id.sign(claims).unwrap().to_string()
}

#[tokio::test]
async fn bad_tokens_are_rejected_for_the_right_reason() {
    let f = fixture();
    let (_, client_id, secret) = app_with_secret(&f, "a").await;
    let good = token_for(&f, &client_id, &secret).await;
    let claims: serde_json::Value = {
        let part = good.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    };
    let with = |k: &str, v: serde_json::Value| {
        let mut c = claims.clone();
        c[k] = v;
        forge(&f, &c)
    };
    let header_of = |h: serde_json::Value| {
        let parts: Vec<&str> = good.split('.').collect();
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(h.to_string()),
            parts[1],
            parts[2]
        )
    };
    let kid = f.id.jwks().unwrap()[0].kid.clone().unwrap();
    // HS256 "signed" with the public key's modulus as the HMAC secret.
    let hs256 = {
        use hmac::{Hmac, Mac};
        let head = URL_SAFE_NO_PAD.encode(json!({"alg":"HS256","typ":"JWT","kid":kid}).to_string());
        let body = good.split('.').nth(1).unwrap();
        let input = format!("{head}.{body}");
        let n = f.id.jwks().unwrap()[0].n.clone();
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(n.as_bytes()).unwrap();
        mac.update(input.as_bytes());
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    };
    let now = T0 as i64;
    let cases: Vec<(&str, String, Rejected)> = vec![
        (
            "alg none",
            format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(json!({"alg":"none","typ":"JWT"}).to_string()),
                good.split('.').nth(1).unwrap()
            ),
            Rejected::Malformed,
        ),
        ("HS256 with the public key", hs256, Rejected::Algorithm),
        (
            "wrong aud",
            with("aud", json!("https://evil.example")),
            Rejected::Audience,
        ),
        (
            "wrong iss",
            with("iss", json!("https://node1/other/v2.0")),
            Rejected::Issuer,
        ),
        (
            "other tenant",
            with("tid", json!(uuid::Uuid::new_v4().to_string())),
            Rejected::Tenant,
        ),
        ("expired", with("exp", json!(now - 120)), Rejected::Expired),
        (
            "not yet valid",
            with("nbf", json!(now + 3600)),
            Rejected::NotYetValid,
        ),
        (
            "unknown kid",
            header_of(json!({"alg":"RS256","typ":"JWT","kid":"nope"})),
            Rejected::UnknownKey,
        ),
        (
            "truncated",
            good[..good.len() - 10].to_owned(),
            Rejected::Signature,
        ),
        ("garbage", "not.a.jwt".to_owned(), Rejected::Malformed),
        ("empty", String::new(), Rejected::Malformed),
        (
            "unknown principal",
            with("oid", json!(uuid::Uuid::new_v4().to_string())),
            Rejected::Principal,
        ),
        (
            "app token posing as a user",
            with("idtyp", json!("user")),
            Rejected::Principal,
        ),
    ];
    for (name, token, want) in cases {
        let got = rejected(f.id.verify_local(&token, &AnyCoffer));
        assert_eq!(got, want, "{name}");
    }
    assert!(f.id.verify_local(&good, &AnyCoffer).is_ok());
}

#[tokio::test]
async fn rotation_keeps_tokens_of_the_old_key_valid() {
    let f = fixture();
    let (_, client_id, secret) = app_with_secret(&f, "a").await;
    let old = token_for(&f, &client_id, &secret).await;
    let k1 = f.id.ensure_signing_key().await.unwrap();
    let k2 = f.id.rotate_signing_key().await.unwrap();
    assert_ne!(k1, k2);
    let kids: Vec<_> =
        f.id.jwks()
            .unwrap()
            .into_iter()
            .map(|k| k.kid.unwrap())
            .collect();
    assert_eq!(kids, vec![k2.clone(), k1.clone()], "newest first, old kept");
    assert!(f.id.verify_local(&old, &AnyCoffer).is_ok());
    let new = token_for(&f, &client_id, &secret).await;
    let head = jsonwebtoken::decode_header(&new).unwrap();
    assert_eq!(head.kid.as_deref(), Some(k2.as_str()));
    // Long after, a further rotation drops the retired key.
    f.now.store(T0 + 100_000, Ordering::SeqCst);
    let k3 = f.id.rotate_signing_key().await.unwrap();
    let kids: Vec<_> =
        f.id.jwks()
            .unwrap()
            .into_iter()
            .map(|k| k.kid.unwrap())
            .collect();
    assert_eq!(kids, vec![k3, k2]);
}

/// A self-signed RSA certificate: (PEM, PKCS#8 DER of its key, DER).
fn rsa_cert() -> (String, Vec<u8>, Vec<u8>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["app.example".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_der(), cert.der().to_vec())
}

#[tokio::test]
async fn certificate_assertions_sign_in_by_thumbprint() {
    let f = fixture();
    let client_id = new_app(&f, "c").await;
    let (pem, key, der) = rsa_cert();
    let thumb = f.id.add_app_certificate("c", &pem).await.unwrap();
    let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &der);
    assert_eq!(thumb, hex::encode_upper(sha1.as_ref()));
    let tenant = f.id.ensure_tenant().await.unwrap();
    // MSAL's form: padded x5t, float times, aud = the token endpoint.
    let x5t = base64::engine::general_purpose::URL_SAFE.encode(sha1.as_ref());
    // The engine's clock; MSAL writes times as floats.
    let now = T0 as f64;
    let assertion = |aud: &str, iss: &str| {
        compose_rs256(
            &key,
            &json!({"alg":"RS256","typ":"JWT","x5t":x5t}),
            &json!({"aud":aud,"iss":iss,"sub":iss,"jti":"1","iat":now,"exp":now + 600.0}),
        )
        .unwrap()
        .to_string()
    };
    let endpoint = format!("https://node2:9443/{}/oauth2/v2.0/token", tenant.name);
    let (p, proof) =
        f.id.sign_in_with_assertion(&tenant, &client_id, &assertion(&endpoint, &client_id))
            .await
            .unwrap();
    assert_eq!(p.name, "c");
    assert_eq!(proof, Proof::Certificate(thumb.clone()));
    for (aud, iss) in [
        ("https://node2/other/oauth2/v2.0/token", client_id.as_str()),
        (endpoint.as_str(), "someone-else"),
    ] {
        assert!(matches!(
            f.id.sign_in_with_assertion(&tenant, &client_id, &assertion(aud, iss))
                .await,
            Err(IdentityError::InvalidCredentials(_))
        ));
    }
    // Another key with the same x5t does not verify.
    let (_, other_key, _) = rsa_cert();
    let forged = compose_rs256(
        &other_key,
        &json!({"alg":"RS256","typ":"JWT","x5t":x5t}),
        &json!({"aud":endpoint,"iss":client_id,"sub":client_id,"exp":now + 600.0}),
    )
    .unwrap();
    assert!(f
        .id
        .sign_in_with_assertion(&tenant, &client_id, &forged)
        .await
        .is_err());
}

#[tokio::test]
async fn federated_assertions_match_issuer_subject_audience_and_keys() {
    let f = fixture();
    let client_id = new_app(&f, "w").await;
    let (_, key, _) = rsa_cert();
    let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(&key).unwrap();
    let public = aws_lc_rs::signature::KeyPair::public_key(&pair);
    let jwk = Jwk::rsa(
        Some("k8s".into()),
        public.modulus().big_endian_without_leading_zero(),
        public.exponent().big_endian_without_leading_zero(),
    );
    f.id.add_app_federated(
        "w",
        FederatedCredential {
            name: "ci".into(),
            issuer: "https://issuer.example".into(),
            subject: "system:serviceaccount:ns:sa".into(),
            audience: "api://AzureADTokenExchange".into(),
            keys: vec![jwk],
        },
    )
    .await
    .unwrap();
    let tenant = f.id.ensure_tenant().await.unwrap();
    let now = T0;
    let token = |sub: &str, aud: &str| {
        compose_rs256(
            &key,
            &json!({"alg":"RS256","typ":"JWT","kid":"k8s"}),
            &json!({"iss":"https://issuer.example","sub":sub,"aud":[aud],"exp":now + 600,"iat":now}),
        )
        .unwrap()
        .to_string()
    };
    let (p, proof) =
        f.id.sign_in_with_assertion(
            &tenant,
            &client_id,
            &token("system:serviceaccount:ns:sa", "api://AzureADTokenExchange"),
        )
        .await
        .unwrap();
    assert_eq!(p.name, "w");
    assert_eq!(proof, Proof::Federated("ci".into()));
    assert!(f
        .id
        .sign_in_with_assertion(
            &tenant,
            &client_id,
            &token(
                "system:serviceaccount:ns:other",
                "api://AzureADTokenExchange"
            )
        )
        .await
        .is_err());
    assert!(f
        .id
        .sign_in_with_assertion(
            &tenant,
            &client_id,
            &token("system:serviceaccount:ns:sa", "api://else")
        )
        .await
        .is_err());
}

#[tokio::test]
async fn users_need_their_totp_code_once_it_is_enrolled_and_codes_are_single_use() {
    let f = fixture();
    f.id.create_principal(user_template("alice@contoso", "correct horse battery").unwrap())
        .await
        .unwrap();
    let (_, proof) =
        f.id.sign_in_user("ALICE@contoso", "correct horse battery", None)
            .await
            .unwrap();
    assert_eq!(proof, Proof::Password { mfa: false });
    assert!(f
        .id
        .sign_in_user("alice@contoso", "wrong password!!", None)
        .await
        .is_err());

    let uri = f.id.enroll_totp("alice@contoso").await.unwrap();
    let secret = url::Url::parse(&uri)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "secret")
        .unwrap()
        .1
        .into_owned();
    assert!(matches!(
        f.id.sign_in_user("alice@contoso", "correct horse battery", None)
            .await,
        Err(IdentityError::MfaRequired)
    ));
    let code = totp::code_at(&secret, T0).unwrap();
    let (_, proof) =
        f.id.sign_in_user("alice@contoso", "correct horse battery", Some(&code))
            .await
            .unwrap();
    assert_eq!(proof, Proof::Password { mfa: true });
    assert!(
        matches!(
            f.id.sign_in_user("alice@contoso", "correct horse battery", Some(&code))
                .await,
            Err(IdentityError::InvalidCredentials(_))
        ),
        "a reused code is refused"
    );
    let shown = serde_json::to_string(
        &f.id
            .find(Kind::User, "alice@contoso")
            .await
            .unwrap()
            .redacted(),
    )
    .unwrap();
    assert!(!shown.contains(&secret));
}

#[tokio::test]
async fn a_replica_that_lags_behind_the_issuer_fences_before_refusing() {
    let f = fixture();
    f.id.ensure_tenant().await.unwrap();
    let before = f.store.snapshot();
    let before_again = f.store.snapshot();
    let (_, client_id, secret) = app_with_secret(&f, "a").await;
    let token = token_for(&f, &client_id, &secret).await;
    // This node has not applied the app (nor the first signing key) yet.
    f.store.lag_behind(before);
    assert_eq!(
        rejected(f.id.verify_local(&token, &AnyCoffer)),
        Rejected::UnknownKey
    );
    f.store.lag_behind(before_again);
    let fences = f.store.fence_count();
    assert!(f.id.verify(&token, &AnyCoffer).await.is_ok());
    assert_eq!(f.store.fence_count(), fences + 1);
    // A token of a deleted app is refused after the one fence.
    f.id.delete(Kind::App, "a").await.unwrap();
    assert!(matches!(
        f.id.verify(&token, &AnyCoffer).await,
        Err(VerifyError::Rejected(Rejected::Principal))
    ));
}

#[tokio::test]
async fn the_leader_sweeps_expired_device_codes_and_refresh_tokens() {
    let f = fixture();
    let client_id = new_app(&f, "cli").await;
    let user =
        f.id.create_principal(user_template("carol@contoso", "correct horse battery").unwrap())
            .await
            .unwrap();
    let code = f.id.start_device_code(&client_id, AUD).await.unwrap();
    let refresh =
        f.id.new_refresh_token(&user, &client_id, false)
            .await
            .unwrap();
    assert_eq!(
        f.id.sweep_sessions(T0 + 60).await.unwrap(),
        0,
        "nothing expired yet"
    );
    // Past the device code's 15 minutes: the code and its user code go.
    assert_eq!(f.id.sweep_sessions(T0 + 901).await.unwrap(), 2);
    assert!(f
        .id
        .poll_device_code(&client_id, &code.device_code)
        .await
        .is_err());
    assert!(f
        .id
        .redeem_refresh_token(&client_id, &refresh)
        .await
        .is_ok());
    let again =
        f.id.new_refresh_token(&user, &client_id, false)
            .await
            .unwrap();
    assert_eq!(f.id.sweep_sessions(T0 + 2 * 86_400).await.unwrap(), 1);
    assert!(f.id.redeem_refresh_token(&client_id, &again).await.is_err());
}

#[tokio::test]
async fn an_apps_bound_cidrs_hold_for_its_tokens_already_issued() {
    let f = fixture();
    let (_, client_id, secret) = app_with_secret(&f, "bound").await;
    let token = token_for(&f, &client_id, &secret).await;
    let oid = f.id.verify_local(&token, &AnyCoffer).unwrap().claims.oid;
    let (inside, outside) = ("10.1.2.3".parse().unwrap(), "10.9.9.9".parse().unwrap());
    let allowed = |addr| f.id.allows_address_local(&oid, addr).unwrap();
    assert!(allowed(outside));
    let cidrs = ["10.1.2.0/24".to_owned(), "10.1.2.7".to_owned()];
    let app = f.id.set_bound_cidrs("bound", &cidrs).await.unwrap();
    assert_eq!(app.app.unwrap().bound_cidrs, ["10.1.2.0/24", "10.1.2.7/32"]);
    assert!(allowed(inside) && !allowed(outside));
    // A bad range is refused and changes nothing; a user cannot be bound.
    let bad = f.id.set_bound_cidrs("bound", &["10.0.0.0/33".into()]).await;
    assert!(matches!(bad, Err(IdentityError::BadRequest(_))), "{bad:?}");
    assert!(!allowed(outside));
    let mut t = template(Kind::App, "bad-at-birth");
    t.app.as_mut().unwrap().bound_cidrs = vec!["host.example".into()];
    let bad = f.id.create_principal(t).await;
    assert!(matches!(bad, Err(IdentityError::BadRequest(_))), "{bad:?}");
    let user = user_template("u", "pw-long-enough").unwrap();
    let user = f.id.create_principal(user).await.unwrap();
    assert!(f.id.set_bound_cidrs("u", &cidrs).await.is_err());
    assert!(f.id.allows_address_local(&user.object_id, outside).unwrap());
    // A principal that is gone may not; unbound again: from anywhere.
    assert!(!f.id.allows_address_local("no-such-oid", inside).unwrap());
    f.id.set_bound_cidrs("bound", &[]).await.unwrap();
    assert!(allowed(outside));
}
