//! Router-level tests of the keys routes over the in-memory store.

use std::sync::Arc;

use aws_lc_rs::digest;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::key_models::enc;
use super::{router, AkvState};
use crate::engine::keys::KeysEngine;
use crate::engine::mem_store::MemStore;
use crate::engine::secrets::SecretsEngine;
use crate::engine::vaults::VaultsEngine;

const V: &str = "api-version=2025-07-01";

struct App {
    router: Router,
    store: Arc<MemStore>,
}

struct Resp {
    status: StatusCode,
    body: Value,
}

impl Resp {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
    fn inner(&self) -> &str {
        self.body["error"]["innererror"]["code"]
            .as_str()
            .unwrap_or("")
    }
}

async fn app() -> App {
    let store = Arc::new(MemStore::new());
    let vaults = Arc::new(VaultsEngine::new(store.clone()));
    vaults.create("default", None).await.unwrap();
    let secrets = Arc::new(SecretsEngine::new(store.clone()));
    let keys = Arc::new(KeysEngine::new(store.clone(), None));
    let certificates = Arc::new(crate::engine::certificates::CertificatesEngine::new(
        store.clone(),
        keys.clone(),
        secrets.clone(),
    ));
    let backup = Arc::new(crate::api::akv::backup::BackupService::new(
        crate::engine::backup::BackupEngine::new(
            secrets.clone(),
            keys.clone(),
            certificates.clone(),
        ),
        None,
    ));
    let settings = Arc::new(crate::engine::settings::SettingsEngine::new(store.clone()));
    let state = AkvState {
        secrets,
        keys,
        certificates,
        vaults,
        vault_domain: None,
        default_vault: "default".into(),
        authz: Arc::new(crate::engine::authz::AuthzEngine::new(
            store.clone(),
            Arc::new(crate::engine::identity::IdentityEngine::new(
                store.clone(),
                "t",
            )),
        )),
        settings,
        backup,
    };
    App {
        router: router(state),
        store,
    }
}

impl App {
    async fn raw(&self, method: Method, path: &str, body: Body) -> Resp {
        let sep = if path.contains('?') { '&' } else { '?' };
        let req = Request::builder()
            .method(method)
            .uri(format!("{path}{sep}{V}"))
            .header("host", "kv.test")
            .header("content-type", "application/json")
            .body(body)
            .unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        Resp { status, body }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        self.raw(method, path, body).await
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let r = self.call(method, path, body).await;
        assert!(r.status.is_success(), "{path}: {} {}", r.status, r.body);
        r.body
    }

    fn snapshot(&self) -> Vec<Vec<u8>> {
        self.store.keys()
    }
}

fn sha256(m: &[u8]) -> String {
    enc(digest::digest(&digest::SHA256, m).as_ref())
}

fn version_of(kid: &str) -> String {
    kid.rsplit('/').next().unwrap().to_owned()
}

#[tokio::test]
async fn create_get_update_list_and_versions() {
    let app = app().await;
    let b = app
        .ok(
            Method::POST,
            "/keys/Signer/create",
            Some(json!({"kty": "EC", "crv": "P-256", "tags": {"a": "b"}})),
        )
        .await;
    let kid = b["key"]["kid"].as_str().unwrap().to_owned();
    assert!(kid.starts_with("https://kv.test/keys/Signer/"), "{kid}");
    assert_eq!(b["key"]["kty"], "EC");
    assert_eq!(b["key"]["crv"], "P-256");
    assert_eq!(b["key"]["key_ops"], json!(["sign", "verify"]));
    assert!(b["key"]["x"].as_str().unwrap().len() == 43 && b["key"].get("d").is_none());
    assert_eq!(b["attributes"]["recoveryLevel"], "Recoverable+Purgeable");
    assert_eq!(b["tags"]["a"], "b");
    let r = app
        .ok(
            Method::POST,
            "/keys/Rsa/create",
            Some(json!({"kty": "RSA", "key_size": 3072})),
        )
        .await;
    assert_eq!(r["key"]["e"], "AQAB");
    assert_eq!(r["key"]["n"].as_str().unwrap().len(), 512);
    for k in ["d", "p", "q", "dp", "dq", "qi", "k"] {
        assert!(r["key"].get(k).is_none());
    }
    let o = app
        .ok(
            Method::POST,
            "/keys/sym/create",
            Some(json!({"kty": "oct", "key_size": 128})),
        )
        .await;
    assert!(o["key"].get("k").is_none());
    let got = app.ok(Method::GET, "/keys/signer", None).await;
    assert_eq!(got["key"]["kid"], kid.as_str());
    let got = app
        .ok(
            Method::GET,
            &format!("/keys/signer/{}", version_of(&kid)),
            None,
        )
        .await;
    assert_eq!(got["key"]["x"], b["key"]["x"]);
    let up = app
        .ok(
            Method::PATCH,
            &format!("/keys/signer/{}", version_of(&kid)),
            Some(json!({"key_ops": ["verify"], "attributes": {"exp": 2000000000}})),
        )
        .await;
    assert_eq!(up["key"]["key_ops"], json!(["verify"]));
    assert_eq!(up["attributes"]["exp"], 2000000000);
    app.ok(Method::POST, "/keys/signer/rotate", None).await;
    let versions = app
        .ok(Method::GET, "/keys/signer/versions?maxresults=1", None)
        .await;
    assert_eq!(versions["value"].as_array().unwrap().len(), 1);
    assert!(versions["nextLink"]
        .as_str()
        .unwrap()
        .contains("$skiptoken="));
    let list = app.ok(Method::GET, "/keys", None).await;
    assert_eq!(list["value"].as_array().unwrap().len(), 3);
    assert_eq!(list["value"][0]["kid"], "https://kv.test/keys/Rsa");
    let r = app.call(Method::GET, "/keys/nope", None).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "KeyNotFound"));
}

#[tokio::test]
async fn sign_verify_encrypt_decrypt_wrap_unwrap_and_rng() {
    let app = app().await;
    let b = app
        .ok(Method::POST, "/keys/r/create", Some(json!({"kty": "RSA"})))
        .await;
    let v = version_of(b["key"]["kid"].as_str().unwrap());
    let s = app
        .ok(
            Method::POST,
            &format!("/keys/r/{v}/sign"),
            Some(json!({"alg": "RS256", "value": sha256(b"m")})),
        )
        .await;
    assert!(s["kid"].as_str().unwrap().ends_with(&v));
    let ok = app
        .ok(
            Method::POST,
            "/keys/r//verify",
            Some(json!({"alg": "RS256", "digest": sha256(b"m"), "value": s["value"]})),
        )
        .await;
    assert_eq!(ok["value"], true);
    let bad = app
        .ok(
            Method::POST,
            "/keys/r//verify",
            Some(json!({"alg": "RS256", "digest": sha256(b"x"), "value": s["value"]})),
        )
        .await;
    assert_eq!(bad["value"], false);
    let ct = app
        .ok(
            Method::POST,
            &format!("/keys/r/{v}/encrypt"),
            Some(json!({"alg": "RSA-OAEP-256", "value": enc(b"hello")})),
        )
        .await;
    let pt = app
        .ok(
            Method::POST,
            &format!("/keys/r/{v}/decrypt"),
            Some(json!({"alg": "RSA-OAEP-256", "value": ct["value"]})),
        )
        .await;
    assert_eq!(pt["value"], enc(b"hello"));
    let w = app
        .ok(
            Method::POST,
            &format!("/keys/r/{v}/wrapkey"),
            Some(json!({"alg": "RSA1_5", "value": enc(&[5; 32])})),
        )
        .await;
    let u = app
        .ok(
            Method::POST,
            &format!("/keys/r/{v}/unwrapkey"),
            Some(json!({"alg": "RSA1_5", "value": w["value"]})),
        )
        .await;
    assert_eq!(u["value"], enc(&[5; 32]));
    app.ok(
        Method::POST,
        "/keys/o/create",
        Some(json!({"kty": "oct", "key_size": 256})),
    )
    .await;
    let g = app
        .ok(
            Method::POST,
            "/keys/o//encrypt",
            Some(json!({"alg": "A256GCM", "value": enc(b"p"), "aad": enc(b"h")})),
        )
        .await;
    assert_eq!(g["aad"], enc(b"h"));
    let d = app
        .ok(Method::POST, "/keys/o//decrypt", Some(json!({"alg": "A256GCM", "value": g["value"], "iv": g["iv"], "tag": g["tag"], "aad": enc(b"h")})))
        .await;
    assert_eq!(d["value"], enc(b"p"));
    // The vault picks the GCM iv: the same plaintext twice gives two ivs and
    // two ciphertexts, both of which decrypt; a caller's iv is refused.
    let again = app
        .ok(
            Method::POST,
            "/keys/o//encrypt",
            Some(json!({"alg": "A256GCM", "value": enc(b"p"), "aad": enc(b"h")})),
        )
        .await;
    assert_ne!(again["iv"], g["iv"]);
    assert_ne!(again["value"], g["value"]);
    let d = app
        .ok(Method::POST, "/keys/o//decrypt", Some(json!({"alg": "A256GCM", "value": again["value"], "iv": again["iv"], "tag": again["tag"], "aad": enc(b"h")})))
        .await;
    assert_eq!(d["value"], enc(b"p"));
    let chosen = app
        .call(
            Method::POST,
            "/keys/o//encrypt",
            Some(json!({"alg": "A256GCM", "value": enc(b"p"), "iv": enc(&[0; 12])})),
        )
        .await;
    assert_eq!(
        (chosen.status, chosen.code()),
        (StatusCode::BAD_REQUEST, "BadParameter"),
        "{}",
        chosen.body
    );
    let rng = app
        .ok(Method::POST, "/rng", Some(json!({"count": 33})))
        .await;
    assert_eq!(
        super::key_models::b64("value", rng["value"].as_str().unwrap())
            .unwrap()
            .len(),
        33
    );
    let r = app
        .call(Method::POST, "/rng", Some(json!({"count": 129})))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "BadParameter")
    );
}

#[tokio::test]
async fn bad_inputs_get_the_service_codes_and_change_nothing() {
    let app = app().await;
    app.ok(
        Method::POST,
        "/keys/e/create",
        Some(json!({"kty": "EC", "crv": "P-384"})),
    )
    .await;
    app.ok(
        Method::POST,
        "/keys/o/create",
        Some(json!({"kty": "oct", "key_size": 128})),
    )
    .await;
    app.ok(
        Method::POST,
        "/keys/lim/create",
        Some(json!({"kty": "RSA", "key_ops": ["verify"]})),
    )
    .await;
    app.ok(
        Method::POST,
        "/keys/off/create",
        Some(json!({"kty": "EC", "attributes": {"enabled": false}})),
    )
    .await;
    let before = app.snapshot();
    let cases: Vec<(&str, Value, StatusCode, &str, &str)> = vec![
        // Wrong algorithm for the key type.
        (
            "/keys/e//sign",
            json!({"alg": "RS256", "value": sha256(b"m")}),
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "",
        ),
        (
            "/keys/e//sign",
            json!({"alg": "ES256", "value": sha256(b"m")}),
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "",
        ),
        (
            "/keys/o//encrypt",
            json!({"alg": "RSA-OAEP", "value": enc(b"x")}),
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "",
        ),
        (
            "/keys/o//encrypt",
            json!({"alg": "A256GCM", "value": enc(b"x")}),
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "",
        ),
        (
            "/keys/o//encrypt",
            json!({"alg": "NOPE", "value": enc(b"x")}),
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "",
        ),
        // Wrong digest length.
        (
            "/keys/e//sign",
            json!({"alg": "ES384", "value": sha256(b"m")}),
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "",
        ),
        // Bad base64.
        (
            "/keys/e//sign",
            json!({"alg": "ES384", "value": "!!!"}),
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "",
        ),
        // Disabled key.
        (
            "/keys/off//sign",
            json!({"alg": "ES256", "value": sha256(b"m")}),
            StatusCode::FORBIDDEN,
            "Forbidden",
            "KeyDisabled",
        ),
        // Missing key_ops.
        (
            "/keys/lim//sign",
            json!({"alg": "RS256", "value": sha256(b"m")}),
            StatusCode::FORBIDDEN,
            "Forbidden",
            "KeyOperationForbidden",
        ),
        (
            "/keys/lim//encrypt",
            json!({"alg": "RSA-OAEP", "value": enc(b"m")}),
            StatusCode::FORBIDDEN,
            "Forbidden",
            "KeyOperationForbidden",
        ),
        // Oversized payload (engine limit).
        (
            "/keys/o//encrypt",
            json!({"alg": "A128GCM", "value": enc(&vec![0u8; 70_000])}),
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "",
        ),
        // Release is not supported.
        (
            "/keys/o//release",
            json!({"target": "x"}),
            StatusCode::NOT_IMPLEMENTED,
            "NotSupported",
            "",
        ),
        // Create with unsupported parameters.
        (
            "/keys/n/create",
            json!({"kty": "RSA", "key_size": 1024}),
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "",
        ),
        (
            "/keys/n/create",
            json!({"kty": "oct", "attributes": {"exportable": true}}),
            StatusCode::NOT_IMPLEMENTED,
            "NotSupported",
            "",
        ),
        // HSM key types without an HSM on this node.
        (
            "/keys/n/create",
            json!({"kty": "RSA-HSM"}),
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "HsmUnavailable",
        ),
    ];
    for (path, body, status, code, inner) in cases {
        let r = app.call(Method::POST, path, Some(body.clone())).await;
        assert_eq!(
            (r.status, r.code()),
            (status, code),
            "{path} {body}: {}",
            r.body
        );
        if !inner.is_empty() {
            assert_eq!(r.inner(), inner, "{path}");
        }
    }
    // Body above the extractor's limit: 413, not the engine's 400.
    let huge = format!(
        "{{\"alg\":\"A128GCM\",\"value\":\"{}\"}}",
        "A".repeat(300_000)
    );
    let r = app
        .raw(Method::POST, "/keys/o//encrypt", Body::from(huge))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge")
    );
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("262144 bytes"));
    assert_eq!(app.snapshot(), before, "nothing changed");
}

#[tokio::test]
async fn delete_recover_purge_backup_restore_import_and_policy() {
    let app = app().await;
    app.ok(Method::POST, "/keys/k/create", Some(json!({"kty": "EC"})))
        .await;
    let blob = app.ok(Method::POST, "/keys/k/backup", None).await;
    let d = app.ok(Method::DELETE, "/keys/k", None).await;
    assert_eq!(d["recoveryId"], "https://kv.test/deletedkeys/k");
    assert!(d["scheduledPurgeDate"].as_u64().unwrap() > d["deletedDate"].as_u64().unwrap());
    let r = app
        .call(Method::POST, "/keys/k/create", Some(json!({"kty": "EC"})))
        .await;
    assert_eq!(
        (r.status, r.inner()),
        (StatusCode::CONFLICT, "ObjectIsDeletedButRecoverable")
    );
    assert_eq!(
        app.ok(Method::GET, "/deletedkeys", None).await["value"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    app.ok(Method::GET, "/deletedkeys/k", None).await;
    app.ok(Method::POST, "/deletedkeys/k/recover", None).await;
    app.ok(Method::DELETE, "/keys/k", None).await;
    let r = app.call(Method::DELETE, "/deletedkeys/k", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app.call(Method::GET, "/deletedkeys/k", None).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "KeyNotFound"));
    let restored = app.ok(Method::POST, "/keys/restore", Some(blob)).await;
    assert_eq!(restored["key"]["kty"], "EC");
    let r = app
        .call(
            Method::POST,
            "/keys/restore",
            Some(json!({"value": "AAAA"})),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "BadParameter")
    );
    // Import an AES key.
    let imp = app
        .ok(Method::PUT, "/keys/imp", Some(json!({"key": {"kty": "oct", "k": enc(&[1; 16]), "key_ops": ["wrapKey", "unwrapKey"]}})))
        .await;
    assert_eq!(imp["key"]["kty"], "oct");
    assert!(imp["key"].get("k").is_none());
    let r = app
        .call(
            Method::PUT,
            "/keys/imp2",
            Some(json!({"key": {"kty": "RSA", "n": "AQAB"}})),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "BadParameter")
    );
    // Rotation policy.
    let p = app.ok(Method::GET, "/keys/k/rotationpolicy", None).await;
    assert_eq!(p["id"], "https://kv.test/keys/k/rotationpolicy");
    assert_eq!(p["lifetimeActions"][0]["action"]["type"], "Notify");
    let body = json!({"lifetimeActions": [{"trigger": {"timeAfterCreate": "P90D"}, "action": {"type": "Rotate"}}],
                      "attributes": {"expiryTime": "P1Y"}});
    let p = app
        .ok(Method::PUT, "/keys/k/rotationpolicy", Some(body))
        .await;
    assert_eq!(
        p["lifetimeActions"][0]["trigger"]["timeAfterCreate"],
        "P90D"
    );
    assert_eq!(p["attributes"]["expiryTime"], "P1Y");
    assert!(p["attributes"]["created"].is_u64());
    let bad = json!({"lifetimeActions": [{"trigger": {"timeAfterCreate": "90 days"}, "action": {"type": "Rotate"}}]});
    let r = app
        .call(Method::PUT, "/keys/k/rotationpolicy", Some(bad))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "BadParameter")
    );
    // Key Vault's minimums: a trigger of 7 days, an expiryTime of 28 days.
    for (trigger, expiry) in [("PT1S", "P1Y"), ("P6D", "P1Y"), ("P7D", "P27D")] {
        let short = json!({"lifetimeActions": [{"trigger": {"timeAfterCreate": trigger}, "action": {"type": "Rotate"}}],
                           "attributes": {"expiryTime": expiry}});
        let r = app
            .call(Method::PUT, "/keys/k/rotationpolicy", Some(short))
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "BadParameter"),
            "{trigger} {expiry}"
        );
        assert!(r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too short"));
    }
    let p = app.ok(Method::GET, "/keys/k/rotationpolicy", None).await;
    assert_eq!(
        p["lifetimeActions"][0]["trigger"]["timeAfterCreate"], "P90D",
        "refused policies changed nothing"
    );
    let weekly = json!({"lifetimeActions": [{"trigger": {"timeAfterCreate": "P7D"}, "action": {"type": "Rotate"}}],
                        "attributes": {"expiryTime": "P28D"}});
    app.ok(Method::PUT, "/keys/k/rotationpolicy", Some(weekly))
        .await;
}
