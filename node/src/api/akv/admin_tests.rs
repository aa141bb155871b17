//! Settings and full backup/restore through the router, with the shapes
//! `azure-keyvault-administration` reads (the Python test drives the SDK).

use axum::http::{Method, StatusCode};
use serde_json::json;

use super::tests::{app_with_backup_dir, App, Resp};

const NAME: &str = "AllowKeyManagementOperationsThroughARM";

#[tokio::test]
async fn settings_list_get_and_patch() {
    let app = app_with_backup_dir(None).await;
    let r = app.call(Method::GET, "/settings", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body["settings"][0],
        json!({"name": NAME, "value": "false", "type": "boolean"})
    );
    let r = app
        .call(
            Method::PATCH,
            &format!("/settings/{NAME}"),
            Some(json!({"value": "true"})),
        )
        .await;
    assert_eq!(
        (r.status, r.body["value"].as_str()),
        (StatusCode::OK, Some("true"))
    );
    let r = app
        .call(Method::GET, &format!("/settings/{NAME}"), None)
        .await;
    assert_eq!(r.body["value"], "true");
    let r = app
        .call(
            Method::PATCH,
            &format!("/settings/{NAME}"),
            Some(json!({"value": "maybe"})),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "BadParameter")
    );
    let r = app.call(Method::GET, "/settings/Nope", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

/// Polls a job's `Azure-AsyncOperation` URL until it leaves `InProgress`.
async fn finished(app: &App, accepted: &Resp) -> Resp {
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.body);
    assert_eq!(accepted.body["status"], "InProgress");
    let url = accepted.headers["azure-asyncoperation"]
        .to_str()
        .unwrap()
        .to_owned();
    let path = url.split_once("://").unwrap().1;
    let path = &path[path.find('/').unwrap()..];
    for _ in 0..200 {
        let r = app.call(Method::GET, path, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        if r.body["status"] != "InProgress" {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("job never finished");
}

#[tokio::test]
async fn full_backup_purge_restore_and_selective_key_restore() {
    let root = tempfile::tempdir().unwrap();
    let app = app_with_backup_dir(Some(root.path().to_owned())).await;
    let uri = format!("file://{}", root.path().display());
    for (name, value) in [("s1", "one"), ("s1", "two"), ("s2", "three")] {
        let r = app
            .call(
                Method::PUT,
                &format!("/secrets/{name}"),
                Some(json!({"value": value})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let r = app
        .call(Method::POST, "/keys/k1/create", Some(json!({"kty": "EC"})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    let started = app
        .call(
            Method::POST,
            "/backup",
            Some(json!({"storageResourceUri": uri, "useManagedIdentity": true})),
        )
        .await;
    let done = finished(&app, &started).await;
    assert_eq!(done.body["status"], "Succeeded", "{}", done.body);
    let folder_uri = done.body["azureStorageBlobContainerUri"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        folder_uri.starts_with(&format!("{uri}/prod-")),
        "{folder_uri}"
    );
    let folder = folder_uri.strip_prefix("file://").unwrap();
    assert!(std::path::Path::new(folder).join("manifest.json").is_file());

    // Purge everything, then restore the folder the way the SDK splits it:
    // container = first path segment, folder = the rest.
    for name in ["s1", "s2"] {
        app.call(Method::DELETE, &format!("/secrets/{name}"), None)
            .await;
        let r = app
            .call(Method::DELETE, &format!("/deletedsecrets/{name}"), None)
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
    }
    app.call(Method::DELETE, "/keys/k1", None).await;
    assert_eq!(
        app.call(Method::DELETE, "/deletedkeys/k1", None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let path = folder.trim_start_matches('/');
    let (container, rest) = path.split_once('/').unwrap();
    let sas =
        json!({"storageResourceUri": format!("file:///{container}"), "useManagedIdentity": true});
    let started = app
        .call(
            Method::PUT,
            "/restore",
            Some(json!({"sasTokenParameters": sas, "folderToRestore": rest})),
        )
        .await;
    let done = finished(&app, &started).await;
    assert_eq!(done.body["status"], "Succeeded", "{}", done.body);
    assert_eq!(
        app.call(Method::GET, "/secrets/s1", None).await.body["value"],
        "two"
    );
    let versions = app.call(Method::GET, "/secrets/s1/versions", None).await;
    assert_eq!(versions.body["value"].as_array().unwrap().len(), 2);
    assert_eq!(
        app.call(Method::GET, "/keys/k1", None).await.status,
        StatusCode::OK
    );

    // One key again, from the same folder.
    app.call(Method::DELETE, "/keys/k1", None).await;
    app.call(Method::DELETE, "/deletedkeys/k1", None).await;
    let started = app
        .call(
            Method::PUT,
            "/keys/k1/restore",
            Some(json!({"sasTokenParameters": sas, "folder": rest})),
        )
        .await;
    assert_eq!(finished(&app, &started).await.body["status"], "Succeeded");
    assert_eq!(
        app.call(Method::GET, "/keys/k1", None).await.status,
        StatusCode::OK
    );
    // A second full restore: every name is taken, the job says so.
    let started = app
        .call(
            Method::PUT,
            "/restore",
            Some(json!({"sasTokenParameters": sas, "folderToRestore": rest})),
        )
        .await;
    let done = finished(&app, &started).await;
    assert_eq!(done.body["status"], "Failed");
    assert!(done.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("0 objects restored"));

    // Targets outside the backup directory, and other schemes, are refused.
    for bad in [
        "file:///etc",
        "https://account.blob.core.windows.net/c",
        "file://../x",
    ] {
        let r = app
            .call(
                Method::POST,
                "/backup",
                Some(json!({"storageResourceUri": bad})),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.body);
    }
    let escape = json!({"sasTokenParameters": sas, "folderToRestore": "../../etc"});
    assert_eq!(
        app.call(Method::PUT, "/restore", Some(escape)).await.status,
        StatusCode::BAD_REQUEST
    );
    // An unknown job.
    let r = app.call(Method::GET, "/backup/nope/pending", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
