//! Router-level tests over the in-memory store.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::{router, AkvState};
use crate::engine::mem_store::MemStore;
use crate::engine::secrets::SecretsEngine;
use crate::engine::vaults::VaultsEngine;

mod errors;

pub(super) const V: &str = "api-version=2026-04-01";
pub(super) const HOST: &str = "prod.vault.test";

pub(super) struct App {
    router: Router,
    pub(super) store: Arc<MemStore>,
}

pub(super) async fn app() -> App {
    app_with_backup_dir(None).await
}

/// The router over fresh engines; full backups may go under `backup_dir`.
pub(super) async fn app_with_backup_dir(backup_dir: Option<std::path::PathBuf>) -> App {
    let store = Arc::new(MemStore::new());
    let vaults = Arc::new(VaultsEngine::new(store.clone()));
    vaults.create("prod", None).await.unwrap();
    vaults.create("default", None).await.unwrap();
    let secrets = Arc::new(SecretsEngine::new(store.clone()));
    let keys = Arc::new(crate::engine::keys::KeysEngine::new(store.clone(), None));
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
        backup_dir,
    ));
    let settings = Arc::new(crate::engine::settings::SettingsEngine::new(store.clone()));
    let state = AkvState {
        secrets,
        keys,
        certificates,
        vaults,
        vault_domain: Some("vault.test".into()),
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

pub(super) struct Resp {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Value,
}

impl Resp {
    pub(super) fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
    pub(super) fn inner(&self) -> &str {
        self.body["error"]["innererror"]["code"]
            .as_str()
            .unwrap_or("")
    }
}

impl App {
    async fn raw(
        &self,
        method: Method,
        uri: &str,
        host: &str,
        body: Body,
        rid: Option<&str>,
    ) -> Resp {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", host);
        if let Some(r) = rid {
            req = req.header("x-ms-client-request-id", r);
        }
        let resp = self
            .router
            .clone()
            .oneshot(
                req.header("content-type", "application/json")
                    .body(body)
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("non-JSON body: {}", String::from_utf8_lossy(&bytes)))
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    pub(super) async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        let sep = if path.contains('?') { '&' } else { '?' };
        self.raw(method, &format!("{path}{sep}{V}"), HOST, body, None)
            .await
    }

    async fn set(&self, name: &str, value: &str) -> Resp {
        let r = self
            .call(
                Method::PUT,
                &format!("/secrets/{name}"),
                Some(json!({ "value": value })),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r
    }
}

fn version_of(id: &str) -> String {
    id.rsplit('/').next().unwrap().to_owned()
}

#[tokio::test]
async fn set_get_update_and_versions() {
    let app = app().await;
    let body = json!({"value": "s3cret", "contentType": "text/plain", "tags": {"env": "prod"},
                      "attributes": {"enabled": true, "exp": 1900000000}});
    let r = app.call(Method::PUT, "/secrets/MyName", Some(body)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["value"], "s3cret");
    assert_eq!(r.body["contentType"], "text/plain");
    assert_eq!(r.body["tags"]["env"], "prod");
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert!(
        id.starts_with("https://prod.vault.test/secrets/MyName/"),
        "{id}"
    );
    let v1 = version_of(&id);
    assert_eq!(v1.len(), 32);
    let a = &r.body["attributes"];
    assert_eq!(a["enabled"], true);
    assert_eq!(a["exp"], 1900000000);
    assert_eq!(a["recoveryLevel"], "Recoverable+Purgeable");
    assert_eq!(a["recoverableDays"], 90);
    assert!(a["created"].is_u64() && a["updated"].is_u64());
    assert!(a.get("nbf").is_none());

    let v2 = version_of(
        app.set("myname", "second").await.body["id"]
            .as_str()
            .unwrap(),
    );
    for path in ["/secrets/myname/", "/secrets/MYNAME"] {
        let r = app.call(Method::GET, path, None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body["value"], "second");
        assert_eq!(version_of(r.body["id"].as_str().unwrap()), v2);
    }
    let r = app
        .call(Method::GET, &format!("/secrets/myname/{v1}"), None)
        .await;
    assert_eq!(r.body["value"], "s3cret");

    // PATCH a version: no value in the answer; disabling blocks reads.
    let r = app
        .call(
            Method::PATCH,
            &format!("/secrets/myname/{v1}"),
            Some(json!({"attributes": {"enabled": false}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.get("value").is_none());
    assert_eq!(r.body["attributes"]["enabled"], false);
    assert_eq!(r.body["tags"]["env"], "prod");
    let r = app
        .call(Method::GET, &format!("/secrets/myname/{v1}"), None)
        .await;
    assert_eq!(
        (r.status, r.code(), r.inner()),
        (StatusCode::FORBIDDEN, "Forbidden", "SecretDisabled")
    );
    assert!(!r.body.to_string().contains("s3cret"));
    // PATCH latest through the trailing-slash route.
    let r = app
        .call(
            Method::PATCH,
            "/secrets/myname/",
            Some(json!({"contentType": "x"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(version_of(r.body["id"].as_str().unwrap()), v2);

    let r = app
        .call(Method::GET, "/secrets/myname/versions", None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let items = r.body["value"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items
        .iter()
        .all(|i| i.get("value").is_none() && i["id"].as_str().unwrap().len() > 40));
    assert!(r.body["nextLink"].is_null());

    let r = app.call(Method::GET, "/secrets/absent", None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "SecretNotFound")
    );
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("absent"));
    let r = app
        .call(
            Method::GET,
            "/secrets/myname/0123456789abcdef0123456789abcdef",
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "SecretNotFound")
    );
}

#[tokio::test]
async fn list_pages_follow_absolute_next_link() {
    let app = app().await;
    for n in ["a", "b", "c"] {
        app.set(n, "x").await;
    }
    let r = app.call(Method::GET, "/secrets?maxresults=2", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let items = r.body["value"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], "https://prod.vault.test/secrets/a");
    assert!(items[0].get("value").is_none());
    let next = r.body["nextLink"].as_str().unwrap();
    assert!(
        next.starts_with("https://prod.vault.test/secrets?api-version=2026-04-01&$skiptoken="),
        "{next}"
    );
    let path = next.trim_start_matches("https://prod.vault.test");
    let r = app.raw(Method::GET, path, HOST, Body::empty(), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["value"].as_array().unwrap().len(), 1);
    assert_eq!(
        r.body["value"][0]["id"],
        "https://prod.vault.test/secrets/c"
    );
    assert!(r.body["nextLink"].is_null());
}

#[tokio::test]
async fn delete_recover_purge_lifecycle() {
    let app = app().await;
    let v = version_of(app.set("gone", "x").await.body["id"].as_str().unwrap());
    let r = app.call(Method::DELETE, "/secrets/gone", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body["recoveryId"],
        "https://prod.vault.test/deletedsecrets/gone"
    );
    assert_eq!(
        r.body["id"],
        format!("https://prod.vault.test/secrets/gone/{v}")
    );
    let deleted = r.body["deletedDate"].as_u64().unwrap();
    assert_eq!(
        r.body["scheduledPurgeDate"].as_u64().unwrap(),
        deleted + 90 * 86_400
    );
    assert!(r.body.get("value").is_none());

    let r = app.call(Method::GET, "/secrets/gone", None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "SecretNotFound")
    );
    let keys = app.store.keys();
    let r = app
        .call(Method::PUT, "/secrets/gone", Some(json!({"value": "y"})))
        .await;
    assert_eq!(
        (r.status, r.code(), r.inner()),
        (
            StatusCode::CONFLICT,
            "Conflict",
            "ObjectIsDeletedButRecoverable"
        )
    );
    assert_eq!(app.store.keys(), keys);

    let r = app.call(Method::GET, "/deletedsecrets/gone", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body["recoveryId"],
        "https://prod.vault.test/deletedsecrets/gone"
    );
    let r = app.call(Method::GET, "/deletedsecrets", None).await;
    assert_eq!(
        r.body["value"][0]["recoveryId"],
        "https://prod.vault.test/deletedsecrets/gone"
    );
    assert_eq!(
        r.body["value"][0]["id"],
        "https://prod.vault.test/secrets/gone"
    );

    let r = app
        .call(Method::POST, "/deletedsecrets/gone/recover", None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body["id"],
        format!("https://prod.vault.test/secrets/gone/{v}")
    );
    assert_eq!(
        app.call(Method::GET, "/secrets/gone", None).await.body["value"],
        "x"
    );
    let r = app.call(Method::GET, "/deletedsecrets/gone", None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "SecretNotFound")
    );

    app.call(Method::DELETE, "/secrets/gone", None).await;
    let r = app.call(Method::DELETE, "/deletedsecrets/gone", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.body, Value::Null);
    let r = app.call(Method::DELETE, "/deletedsecrets/gone", None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "SecretNotFound")
    );
    assert!(app
        .store
        .keys()
        .iter()
        .all(|k| !k.starts_with(b"s/prod/") && !k.starts_with(b"sv/prod/")));
}

#[tokio::test]
async fn backup_and_restore() {
    let app = app().await;
    app.set("bk", "payload").await;
    let r = app.call(Method::POST, "/secrets/bk/backup", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let blob = r.body["value"].as_str().unwrap().to_owned();
    assert!(!blob.contains('=') && !blob.contains('+') && !blob.contains('/'));

    let r = app
        .call(
            Method::POST,
            "/secrets/restore",
            Some(json!({"value": blob})),
        )
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "Conflict"));
    app.call(Method::DELETE, "/secrets/bk", None).await;
    app.call(Method::DELETE, "/deletedsecrets/bk", None).await;
    let r = app
        .call(
            Method::POST,
            "/secrets/restore",
            Some(json!({"value": blob})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body["id"]
        .as_str()
        .unwrap()
        .starts_with("https://prod.vault.test/secrets/bk/"));
    assert_eq!(
        app.call(Method::GET, "/secrets/bk", None).await.body["value"],
        "payload"
    );

    let keys = app.store.keys();
    for bad in [
        "!!!not base64",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let r = app
            .call(
                Method::POST,
                "/secrets/restore",
                Some(json!({"value": bad})),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "BadParameter")
        );
        assert_eq!(r.body["error"]["message"], "Malformed backup blob");
    }
    assert_eq!(app.store.keys(), keys);
    let r = app.call(Method::POST, "/secrets/absent/backup", None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "SecretNotFound")
    );
}

#[tokio::test]
async fn request_id_is_echoed_and_dedups_writes() {
    let app = app().await;
    let body = || Body::from(r#"{"value":"x"}"#);
    let uri = format!("/secrets/d?{V}");
    let a = app
        .raw(Method::PUT, &uri, HOST, body(), Some("rid-1"))
        .await;
    let b = app
        .raw(Method::PUT, &uri, HOST, body(), Some("rid-1"))
        .await;
    assert_eq!(a.headers["x-ms-client-request-id"], "rid-1");
    assert_eq!(a.headers["x-ms-request-id"], "rid-1");
    assert_eq!(a.body["id"], b.body["id"]);
    let c = app
        .raw(Method::PUT, &uri, HOST, body(), Some("rid-2"))
        .await;
    assert_ne!(a.body["id"], c.body["id"]);
    // The same client id on another secret is a different write.
    let d = app
        .raw(
            Method::PUT,
            &format!("/secrets/e?{V}"),
            HOST,
            body(),
            Some("rid-1"),
        )
        .await;
    assert!(d.body["id"].as_str().unwrap().contains("/secrets/e/"));
    let r = app.call(Method::GET, "/secrets/d/versions", None).await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), 2);
    // Generated when absent, echoed on errors too.
    let e = app
        .raw(Method::GET, "/secrets/d", HOST, Body::empty(), None)
        .await;
    assert_eq!(e.status, StatusCode::BAD_REQUEST);
    assert_eq!(e.headers["x-ms-request-id"].to_str().unwrap().len(), 36);
}

#[tokio::test]
async fn sealed_node_answers_503() {
    let app = app().await;
    app.store.set_sealed(true);
    let r = app.call(Method::GET, "/secrets/a", None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable")
    );
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("sealed"));
    assert_eq!(r.headers["retry-after"], "1");
}

#[tokio::test]
async fn a_secret_may_be_named_restore() {
    let app = app().await;
    app.set("restore", "r").await;
    assert_eq!(
        app.call(Method::GET, "/secrets/restore", None).await.body["value"],
        "r"
    );
    assert_eq!(
        app.call(Method::GET, "/secrets/restore/", None).await.body["value"],
        "r"
    );
    let r = app.call(Method::DELETE, "/secrets/restore", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body["recoveryId"],
        "https://prod.vault.test/deletedsecrets/restore"
    );
}

#[tokio::test]
async fn every_listed_api_version_is_accepted() {
    let app = app().await;
    for v in ["7.0", "7.4", "7.6", "2025-07-01", "2026-04-01"] {
        let r = app
            .raw(
                Method::GET,
                &format!("/secrets?api-version={v}"),
                HOST,
                Body::empty(),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{v}");
    }
}

/// The route table names the patterns the router really registers: every
/// routed request classifies as its row's operation, and every secrets and
/// keys and certificates row is routed (authorization and audit rely on this table).
#[tokio::test]
async fn every_route_classifies_as_its_table_row() {
    use super::operations::{self, ROUTES};
    use std::sync::{Arc as StdArc, Mutex};

    let app = app().await;
    let seen: StdArc<Mutex<Option<Option<operations::Operation>>>> = StdArc::default();
    let probe = {
        let seen = seen.clone();
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let seen = seen.clone();
            async move {
                *seen.lock().unwrap() = Some(operations::of(&req));
                next.run(req).await
            }
        }
    };
    let router = app.router.clone().layer(axum::middleware::from_fn(probe));
    let mut routed = 0;
    for (method, pattern, op) in ROUTES {
        let path = pattern
            .replace("{name}", "n1")
            .replace("{version}", "v1")
            .replace("{issuer}", "i1")
            .replace("{vault}", "default")
            .replace("{job}", "j1")
            .replace("{id}", "d1");
        *seen.lock().unwrap() = None;
        let req = Request::builder()
            .method(method.clone())
            .uri(format!("{path}?{V}"))
            .header("host", HOST)
            .body(Body::empty())
            .unwrap();
        router.clone().oneshot(req).await.unwrap();
        let classified = seen.lock().unwrap().take();
        // `Some(None)`: the path matched another route whose methods do not
        // include this one (a 405), so this row's route is not registered.
        match classified.flatten() {
            Some(got) => {
                assert_eq!(got, *op, "{method} {pattern}");
                routed += 1;
            }
            // Every row of the table is served by this build (settings,
            // backup and restore included).
            None => panic!("{method} {pattern} is not routed"),
        }
    }
    assert_eq!(routed, ROUTES.len());
}
