//! The Key Vault router over the engine's in-memory store (barrier layer
//! with the fixed test keyring), reset to a fixture (one vault, one secret,
//! keys of every software type, a rotation policy) before every request
//! sequence: the fixture store is built once and forked per iteration.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use coffer::api::akv::{router, AkvState};
use coffer::crypto::{Curve, KeyType};
use coffer::engine::authz::AuthzEngine;
use coffer::engine::certificates::CertificatesEngine;
use coffer::engine::identity::IdentityEngine;
use coffer::engine::keys::{CreateKey, KeyAttributes, KeysEngine};
use coffer::engine::mem_store::MemStore;
use coffer::engine::rotation::RotationLimits;
use coffer::engine::rotation::RotationPolicy;
use coffer::engine::secrets::{SecretsEngine, SetSecret};
use coffer::engine::vaults::VaultsEngine;
use serde_json::Value;
use tower::ServiceExt;

use crate::block_on;
use crate::keyring::test_barrier;

/// The vault every request addresses.
pub const VAULT: &str = "fuzz";
/// A second, empty vault (restore targets).
pub const VAULT2: &str = "fuzz2";
/// The fixture secret.
pub const SECRET: &str = "s1";
/// Its value (the fuzzer never sees it in an error either).
pub const SECRET_VALUE: &str = "fixture secret value 0123456789";

/// Fixture keys: name, type, size/curve. RSA is made once per process;
/// every iteration reuses it through the replayed log.
pub const KEYS: &[(&str, KeyType, Option<u32>, Option<Curve>)] = &[
    ("rsa", KeyType::Rsa, Some(2048), None),
    ("ec", KeyType::Ec, None, Some(Curve::P256)),
    ("ec384", KeyType::Ec, None, Some(Curve::P384)),
    ("ec521", KeyType::Ec, None, Some(Curve::P521)),
    ("ec256k", KeyType::Ec, None, Some(Curve::P256K)),
    ("oct", KeyType::Oct, Some(256), None),
    ("oct128", KeyType::Oct, Some(128), None),
    ("oct192", KeyType::Oct, Some(192), None),
];

/// What the fixture holds, for building paths.
pub struct Fixture {
    store: MemStore,
    /// Version id of the fixture secret.
    pub secret_version: String,
    /// Version id of each entry of [`KEYS`], same order.
    pub key_versions: Vec<String>,
}

/// Builds the fixture once per process (on its own thread and runtime, so
/// it may be first called from inside the harness runtime).
pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("fixture runtime")
                .block_on(build_fixture())
        })
        .join()
        .expect("building the fixture")
    })
}

async fn build_fixture() -> Fixture {
    let store = Arc::new(MemStore::with_barrier(test_barrier()));
    let vaults = VaultsEngine::new(store.clone());
    vaults.create(VAULT, None).await.expect("fixture vault");
    vaults.create(VAULT2, None).await.expect("second vault");
    let secrets = SecretsEngine::new(store.clone());
    let tags = BTreeMap::from([("env".to_owned(), "fuzz".to_owned())]);
    let secret = secrets
        .set(
            VAULT,
            SECRET,
            SetSecret {
                value: SECRET_VALUE.into(),
                content_type: Some("text/plain".into()),
                enabled: None,
                nbf: None,
                exp: None,
                tags: Some(tags.clone()),
            },
            None,
        )
        .await
        .expect("fixture secret");
    let keys = KeysEngine::new(store.clone(), None);
    let mut key_versions = Vec::new();
    for (name, kty, key_size, curve) in KEYS {
        let params = CreateKey {
            kty: *kty,
            key_size: *key_size,
            curve: *curve,
            public_exponent: None,
            attributes: KeyAttributes {
                tags: Some(tags.clone()),
                ..KeyAttributes::default()
            },
        };
        let k = keys
            .create(VAULT, name, params, None)
            .await
            .expect("fixture key");
        key_versions.push(k.properties.version);
    }
    let policy: RotationPolicy = serde_json::from_str(
        r#"{"lifetimeActions":[{"trigger":{"timeAfterCreate":"P90D"},"action":{"type":"Rotate"}},
            {"trigger":{"timeBeforeExpiry":"P30D"},"action":{"type":"Notify"}}],
            "attributes":{"expiryTime":"P1Y"}}"#,
    )
    .expect("fixture policy");
    keys.set_rotation_policy(VAULT, "ec", policy, None)
        .await
        .expect("fixture rotation policy");
    Fixture {
        store: store.fork(),
        secret_version: secret.properties.version,
        key_versions,
    }
}

/// The router and engines over a fresh copy of the fixture.
pub struct App {
    /// The Key Vault API as the server mounts it (without authentication).
    pub router: Router,
    /// Its keys engine.
    pub keys: Arc<KeysEngine>,
    /// Its secrets engine.
    pub secrets: Arc<SecretsEngine>,
    /// The store below.
    pub store: Arc<MemStore>,
}

/// A response: status and the parsed JSON body (`Null` when empty).
#[derive(Debug)]
pub struct Resp {
    /// HTTP status.
    pub status: StatusCode,
    /// JSON body.
    pub body: Value,
}

impl Resp {
    /// `error.message` of an error body.
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }

    /// `error.code` of an error body.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl App {
    /// A fresh app (a copy of the fixture's store).
    pub async fn fresh() -> App {
        let f = fixture();
        let store = Arc::new(f.store.fork());
        // Without rotation minimums: policies of any length reach the
        // rotation code (the minimums themselves are checked by the
        // rotation_duration target and by unit tests).
        let keys = Arc::new(
            KeysEngine::new(store.clone(), None)
                .with_rotation_limits(RotationLimits::unsafe_minimum(0)),
        );
        let secrets = Arc::new(SecretsEngine::new(store.clone()));
        let certificates = Arc::new(CertificatesEngine::new(
            store.clone(),
            keys.clone(),
            secrets.clone(),
        ));
        // The role administration routes need the authz engine; the
        // authorization middleware is outside this router (the fuzz
        // targets reach every handler).
        let authz = Arc::new(AuthzEngine::new(
            store.clone(),
            Arc::new(IdentityEngine::new(store.clone(), "fuzz")),
        ));
        // No backup directory: the fuzzer never writes files.
        let backup = Arc::new(coffer::api::akv::backup::BackupService::new(
            coffer::engine::backup::BackupEngine::new(
                secrets.clone(),
                keys.clone(),
                certificates.clone(),
            ),
            None,
        ));
        let state = AkvState {
            secrets: secrets.clone(),
            keys: keys.clone(),
            certificates,
            vaults: Arc::new(VaultsEngine::new(store.clone())),
            vault_domain: None,
            default_vault: VAULT.into(),
            authz,
            settings: Arc::new(coffer::engine::settings::SettingsEngine::new(store.clone())),
            backup,
        };
        App {
            router: router(state),
            keys,
            secrets,
            store,
        }
    }

    /// Sends one request (`path` without query) and checks what every
    /// answer must satisfy: a JSON body (Key Vault error JSON on errors),
    /// no 5xx but 501 `NotSupported` (features Coffer lacks) and 503 for
    /// the missing HSM of this HSM-less node.
    pub async fn call(&self, method: Method, path: &str, body: Vec<u8>) -> Resp {
        let req = Request::builder()
            .method(method.clone())
            .uri(format!("{path}?api-version=7.6"))
            .header("host", "fuzz.vault.test")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .expect("request builder");
        let resp = match self.router.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("response body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                panic!(
                    "{method} {path}: {status} with a non-JSON body: {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        let r = Resp { status, body };
        let expected_5xx = (r.status == StatusCode::NOT_IMPLEMENTED && r.code() == "NotSupported")
            || (r.status == StatusCode::SERVICE_UNAVAILABLE
                && r.body["error"]["innererror"]["code"] == "HsmUnavailable");
        assert!(
            !r.status.is_server_error() || expected_5xx,
            "{method} {path}: server error {r:?}"
        );
        if r.status.is_client_error() || r.status.is_server_error() {
            assert!(
                !r.code().is_empty() && r.body["error"]["message"].is_string(),
                "{method} {path}: error without the Key Vault error body: {r:?}"
            );
        } else if r.status != StatusCode::NO_CONTENT {
            assert!(
                r.body.is_object(),
                "{method} {path}: success without a JSON object: {r:?}"
            );
        }
        r
    }
}

/// Runs `f` against a fresh app on the harness runtime.
pub fn with_app<F, Fut>(f: F)
where
    F: FnOnce(App) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    block_on(async move {
        let app = App::fresh().await;
        f(app).await;
    });
}
