//! Router-level tests of the certificates API: the protocol traps the SDKs
//! rely on (create says inProgress, the latest is read with a trailing
//! slash, `x5t` unpadded base64url but `cer` padded base64) and the managed
//! key and secret.

use axum::http::{Method, StatusCode};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::json;

use super::tests::app;

fn self_policy() -> serde_json::Value {
    json!({"policy": {"issuer": {"name": "Self"},
                      "x509_props": {"subject": "CN=api.coffer.test", "validity_months": 3},
                      "key_props": {"kty": "EC", "crv": "P-256"}}})
}

#[tokio::test]
async fn create_answers_in_progress_and_the_latest_is_read_with_a_slash() {
    let app = app().await;
    let r = app
        .call(
            Method::POST,
            "/certificates/web/create",
            Some(self_policy()),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body["status"], "inProgress");
    assert!(r.headers.get("location").is_some());
    assert_eq!(
        r.body["id"],
        "https://prod.vault.test/certificates/web/pending"
    );

    let p = app
        .call(Method::GET, "/certificates/web/pending", None)
        .await;
    assert_eq!(p.body["status"], "completed", "{}", p.body);
    assert_eq!(p.body["target"], "https://prod.vault.test/certificates/web");
    assert!(p.body.get("status_details").is_none());

    let c = app.call(Method::GET, "/certificates/web/", None).await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.body);
    let cer = STANDARD.decode(c.body["cer"].as_str().unwrap()).unwrap();
    let x5t = c.body["x5t"].as_str().unwrap();
    assert!(!x5t.contains('=') && URL_SAFE_NO_PAD.decode(x5t).unwrap().len() == 20);
    let id = c.body["id"].as_str().unwrap();
    let version = id.rsplit('/').next().unwrap();
    assert_eq!(
        c.body["kid"],
        format!("https://prod.vault.test/keys/web/{version}")
    );
    assert_eq!(
        c.body["policy"]["id"],
        "https://prod.vault.test/certificates/web/policy"
    );
    assert_eq!(
        c.body["attributes"]["recoveryLevel"],
        "Recoverable+Purgeable"
    );
    assert!(!cer.is_empty());

    // The secret carries the key id and refuses direct writes.
    let s = app.call(Method::GET, "/secrets/web/", None).await;
    assert_eq!(s.body["kid"], c.body["kid"]);
    assert_eq!(s.body["managed"], true);
    let w = app
        .call(Method::PUT, "/secrets/web", Some(json!({"value": "x"})))
        .await;
    assert_eq!(w.status, StatusCode::FORBIDDEN);
    assert_eq!(w.code(), "Forbidden");
    assert_eq!(w.inner(), "SecretManagedByKeyVault");
    let k = app.call(Method::DELETE, "/keys/web", None).await;
    assert_eq!(k.status, StatusCode::FORBIDDEN);
    assert_eq!(k.inner(), "KeyManagedByKeyVault");
}

#[tokio::test]
async fn errors_use_the_services_codes() {
    let app = app().await;
    let r = app.call(Method::GET, "/certificates/none/", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "CertificateNotFound");
    let r = app
        .call(Method::GET, "/certificates/none/pending", None)
        .await;
    assert_eq!(r.code(), "PendingCertificateNotFound");
    let r = app.call(Method::GET, "/certificates/contacts", None).await;
    assert_eq!(r.code(), "ContactsNotFound");
    let r = app
        .call(Method::GET, "/certificates/issuers/none", None)
        .await;
    assert_eq!(r.code(), "CertificateIssuerNotFound");
    // Two lifetime actions: 400, nothing stored.
    let mut two = self_policy();
    two["policy"]["lifetime_actions"] = json!([
        {"trigger": {"lifetime_percentage": 80}, "action": {"action_type": "AutoRenew"}},
        {"trigger": {"days_before_expiry": 10}, "action": {"action_type": "EmailContacts"}}
    ]);
    let r = app
        .call(Method::POST, "/certificates/two/create", Some(two))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("At most one action is allowed"));
    let r = app
        .call(Method::GET, "/certificates/two/policy", None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // A wrong PFX is 400 BadParameter.
    let r = app
        .call(
            Method::POST,
            "/certificates/bad/import",
            Some(json!({"value": STANDARD.encode(b"not a pfx"), "pwd": "x"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "BadParameter");
    assert!(app.store.keys().iter().all(|k| !k.starts_with(b"c/")));
}
