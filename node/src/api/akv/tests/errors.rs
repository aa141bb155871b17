//! Bad input: every refusal is a Key Vault error body that says what went
//! wrong, echoes no value, and changes nothing.

use super::*;

#[tokio::test]
async fn bad_inputs_are_400_and_change_nothing() {
    let app = app().await;
    app.set("keep", "x").await;
    let keys = app.store.keys();
    let commits = app.store.commit_count();
    let tags16: serde_json::Map<String, Value> =
        (0..16).map(|i| (format!("t{i}"), json!("v"))).collect();
    let cases: Vec<(Method, String, Body)> = vec![
        (
            Method::PUT,
            format!("/secrets/bad_name?{V}"),
            Body::from(r#"{"value":"x"}"#),
        ),
        (
            Method::PUT,
            format!("/secrets/{}?{V}", "a".repeat(128)),
            Body::from(r#"{"value":"x"}"#),
        ),
        (
            Method::PUT,
            "/secrets/keep".into(),
            Body::from(r#"{"value":"x"}"#),
        ),
        (
            Method::PUT,
            "/secrets/keep?api-version=1999-01-01".into(),
            Body::from(r#"{"value":"x"}"#),
        ),
        (Method::GET, "/secrets/keep".into(), Body::empty()),
        (
            Method::PUT,
            format!("/secrets/keep?{V}"),
            Body::from("{not json"),
        ),
        (
            Method::PUT,
            format!("/secrets/keep?{V}"),
            Body::from(r#"{"value":5}"#),
        ),
        (
            Method::PUT,
            format!("/secrets/keep?{V}"),
            Body::from(r#"{"contentType":"x"}"#),
        ),
        (
            Method::PUT,
            format!("/secrets/keep?{V}"),
            Body::from(r#"{"value":"x","tags":{"a":1}}"#),
        ),
        (Method::PUT, format!("/secrets/keep?{V}"), Body::empty()),
        (
            Method::PUT,
            format!("/secrets/keep?{V}"),
            Body::from(json!({"value": "x".repeat(25 * 1024 + 1)}).to_string()),
        ),
        (
            Method::PUT,
            format!("/secrets/keep?{V}"),
            Body::from(json!({"value": "x", "tags": tags16}).to_string()),
        ),
        (
            Method::PATCH,
            format!("/secrets/keep/?{V}"),
            Body::from(r#"{"attributes":{"enabled":"yes"}}"#),
        ),
        (
            Method::GET,
            format!("/secrets?{V}&maxresults=0"),
            Body::empty(),
        ),
        (
            Method::GET,
            format!("/secrets?{V}&maxresults=26"),
            Body::empty(),
        ),
        (
            Method::GET,
            format!("/secrets?{V}&maxresults=abc"),
            Body::empty(),
        ),
        (
            Method::GET,
            format!("/secrets/keep/versions?{V}&maxresults=26"),
            Body::empty(),
        ),
        (
            Method::GET,
            format!("/deletedsecrets?{V}&maxresults=0"),
            Body::empty(),
        ),
        (
            Method::GET,
            format!("/secrets?{V}&$skiptoken=%25%25"),
            Body::empty(),
        ),
        (
            Method::POST,
            format!("/secrets/restore?{V}"),
            Body::from(r#"{"value":7}"#),
        ),
    ];
    for (method, uri, body) in cases {
        let r = app.raw(method.clone(), &uri, HOST, body, None).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "BadParameter"),
            "{method} {uri}: {}",
            r.body
        );
        assert!(r.body["error"]["message"].is_string());
    }
    // A valid body that fits the limit right at 25 KiB is accepted after all that.
    assert_eq!(app.store.keys(), keys);
    assert_eq!(app.store.commit_count(), commits);
    let r = app
        .call(
            Method::PUT,
            "/secrets/keep",
            Some(json!({"value": "x".repeat(25 * 1024)})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn error_bodies_never_echo_secret_values() {
    let app = app().await;
    let r = app
        .raw(
            Method::PUT,
            &format!("/secrets/k?{V}"),
            HOST,
            Body::from(r#"{"value":"hunter2","tags":"hunter3"}"#),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(!r.body.to_string().contains("hunter"));
}

#[tokio::test]
async fn unknown_vault_is_404_vault_not_found() {
    let app = app().await;
    let keys = app.store.keys();
    let body = || Body::from(r#"{"value":"x"}"#);
    let r = app
        .raw(
            Method::PUT,
            &format!("/secrets/a?{V}"),
            "nope.vault.test",
            body(),
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "VaultNotFound")
    );
    let r = app
        .raw(
            Method::GET,
            &format!("/secrets?{V}"),
            "nope.vault.test:8443",
            Body::empty(),
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "VaultNotFound")
    );
    assert_eq!(app.store.keys(), keys);
    // A bare address uses the default vault.
    let r = app
        .raw(
            Method::PUT,
            &format!("/secrets/a?{V}"),
            "127.0.0.1:8443",
            body(),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body["id"]
        .as_str()
        .unwrap()
        .starts_with("https://127.0.0.1:8443/secrets/a/"));
    assert!(app
        .store
        .keys()
        .iter()
        .any(|k| k.starts_with(b"s/default/a")));
}

#[tokio::test]
async fn body_errors_say_what_went_wrong() {
    let app = app().await;
    let uri = format!("/secrets/big?{V}");
    // Over the limit, streamed without a length: 413.
    let big = json!({ "value": "x".repeat(300_000) }).to_string();
    let chunks = big
        .into_bytes()
        .chunks(16 * 1024)
        .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
        .collect::<Vec<_>>();
    let r = app
        .raw(
            Method::PUT,
            &uri,
            HOST,
            Body::from_stream(futures::stream::iter(chunks)),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    assert_eq!(r.code(), "RequestEntityTooLarge");
    // Declared over the limit: 413 before reading anything.
    let resp = app
        .router
        .clone()
        .oneshot(
            Request::builder()
                .method(Method::PUT)
                .uri(&uri)
                .header("host", HOST)
                .header("content-length", "1000000")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // A stream that fails midway is not "too large": 400 saying so.
    let broken = futures::stream::iter(vec![
        Ok(b"{\"value\":".to_vec()),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        )),
    ]);
    let r = app
        .raw(Method::PUT, &uri, HOST, Body::from_stream(broken), None)
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "BadParameter")
    );
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("could not be read"), "{message}");
    assert!(!message.contains("larger"), "{message}");
    // Nothing was written.
    let r = app.call(Method::GET, "/secrets/big", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
