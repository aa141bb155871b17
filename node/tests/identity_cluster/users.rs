//! Users of the token issuer: password, device code, TOTP step-up and
//! refresh tokens, against the shared cluster.

use super::*;

/// `POST /device` as the approval page's form would: (status, HTML).
async fn approve_on_page(client: &Client, form: &[(&str, &str)]) -> (u16, String) {
    let resp = post_form(client, "/device", form).await;
    (
        resp.status.as_u16(),
        String::from_utf8_lossy(&resp.body).into_owned(),
    )
}

/// `POST /{tenant}/oauth2/v2.0/devicecode`.
async fn start_device_flow(client: &Client, tid: &str, client_id: &str) -> Value {
    let form = [
        ("client_id", client_id),
        ("scope", "https://vault.azure.net/.default"),
    ];
    let resp = post_form(client, &format!("/{tid}/oauth2/v2.0/devicecode"), &form).await;
    assert_eq!(resp.status, 200);
    resp.json().unwrap()
}

/// The `claims` MSAL always sends, and with a step-up challenge merged in.
const CP1: &str = r#"{"access_token":{"xms_cc":{"values":["CP1"]}}}"#;
const STEP_UP: &str =
    r#"{"access_token":{"xms_cc":{"values":["CP1"]},"acrs":{"essential":true,"value":"c1"}}}"#;

fn totp_now(secret: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    coffer::engine::identity::totp::code_at(secret, now).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn users_sign_in_with_password_device_code_totp_and_refresh_tokens() {
    let (cluster, root) = started().await;
    let tid = admin(&root, "GET", "/tenant", None).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cli = admin(&root, "POST", "/apps", Some(json!({"name": "cli"}))).await;
    let client_id = cli["app"]["client_id"].as_str().unwrap().to_owned();
    let password = "correct horse battery staple";
    let alice = admin(
        &root,
        "POST",
        "/users",
        Some(json!({"name": "alice@contoso", "password": password})),
    )
    .await;
    grant_secrets_user(&root, alice["object_id"].as_str().unwrap()).await;
    let a = anonymous(&cluster, 0);
    let b = anonymous(&cluster, 1);
    let scope = "https://vault.azure.net/.default offline_access openid profile";

    let password_form = [
        ("grant_type", "password"),
        ("client_id", client_id.as_str()),
        ("username", "alice@contoso"),
        ("password", password),
        ("scope", scope),
    ];
    let password_grant = || token_request(&a, &tid, &password_form);
    // Password grant without MFA: access, refresh and ID tokens.
    let (status, body) = password_grant().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], scope);
    let id_claims: Value = serde_json::from_slice(
        &B64.decode(
            body["id_token"]
                .as_str()
                .unwrap()
                .split('.')
                .nth(1)
                .unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(id_claims["aud"], client_id.as_str());
    assert_eq!(id_claims["preferred_username"], "alice@contoso");
    let info: Value =
        serde_json::from_slice(&B64.decode(body["client_info"].as_str().unwrap()).unwrap())
            .unwrap();
    assert_eq!(info["utid"], tid.as_str());
    eventually(&b, body["access_token"].as_str().unwrap(), 200).await;

    // Refresh tokens are single use.
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let redeem = |rt: String, claims: &'static str| {
        let b = b.clone();
        let tid = tid.clone();
        let client_id = client_id.clone();
        async move {
            token_request(
                &b,
                &tid,
                &[
                    ("grant_type", "refresh_token"),
                    ("client_id", &client_id),
                    ("refresh_token", &rt),
                    ("scope", scope),
                    ("claims", claims),
                ],
            )
            .await
        }
    };
    let (status, body) = redeem(refresh.clone(), CP1).await;
    assert_eq!(status, 200, "{body}");
    let second = body["refresh_token"].as_str().unwrap().to_owned();
    assert!(second != refresh);
    let (status, body) = redeem(refresh, CP1).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // With TOTP enrolled the password grant asks for interaction.
    let mfa = admin(&root, "POST", "/users/alice@contoso/mfa", None).await;
    let uri = url::Url::parse(mfa["otpauth_uri"].as_str().unwrap()).unwrap();
    let secret = uri
        .query_pairs()
        .find(|(k, _)| k == "secret")
        .unwrap()
        .1
        .into_owned();
    let (status, body) = password_grant().await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("interaction_required")),
        "{body}"
    );

    // Device code: pending until approved on the page of another node.
    let flow = start_device_flow(&a, &tid, &client_id).await;
    let device_code = flow["device_code"].as_str().unwrap().to_owned();
    let user_code = flow["user_code"].as_str().unwrap().to_owned();
    assert!(flow["verification_uri"]
        .as_str()
        .unwrap()
        .ends_with("/device"));
    let poll = || {
        let a = a.clone();
        let (tid, client_id, device_code) = (tid.clone(), client_id.clone(), device_code.clone());
        async move {
            token_request(
                &a,
                &tid,
                &[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                    ("client_id", &client_id),
                    ("device_code", &device_code),
                ],
            )
            .await
        }
    };
    let (status, body) = poll().await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("authorization_pending"))
    );
    let page = b.send(Request::get("/device")).await.unwrap();
    assert_eq!(page.status, 200);
    // Without the second factor, and with a wrong one, the page refuses.
    let base = [
        ("user_code", user_code.as_str()),
        ("username", "alice@contoso"),
        ("password", password),
    ];
    let (status, html) = approve_on_page(&b, &base).await;
    assert_eq!(status, 401, "{html}");
    assert!(html.contains("verification code"));
    let mut wrong = base.to_vec();
    wrong.push(("otp", "000000"));
    assert_eq!(approve_on_page(&b, &wrong).await.0, 401);
    let code = totp_now(&secret);
    let mut right = base.to_vec();
    right.push(("otp", &code));
    let (status, html) = approve_on_page(&b, &right).await;
    assert_eq!(status, 200, "{html}");
    let (status, body) = poll().await;
    assert_eq!(status, 200, "{body}");
    let claims: Value = serde_json::from_slice(
        &B64.decode(
            body["access_token"]
                .as_str()
                .unwrap()
                .split('.')
                .nth(1)
                .unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["idtyp"], "user");
    assert!(claims["amr"].as_array().unwrap().contains(&json!("mfa")));
    eventually(&b, body["access_token"].as_str().unwrap(), 200).await;
    // The device code is redeemed once.
    let (status, _) = poll().await;
    assert_eq!(status, 400);

    // Step-up: a claims challenge naming an authentication context needs
    // the second factor. The password-only session cannot satisfy it; the
    // device session with TOTP can, and its token says so.
    let (status, refused) = redeem(second, STEP_UP).await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (400, Some("interaction_required")),
        "{refused}"
    );
    let (status, stepped) =
        redeem(body["refresh_token"].as_str().unwrap().to_owned(), STEP_UP).await;
    assert_eq!(status, 200, "{stepped}");
    let stepped_claims: Value = serde_json::from_slice(
        &B64.decode(
            stepped["access_token"]
                .as_str()
                .unwrap()
                .split('.')
                .nth(1)
                .unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(stepped_claims["acrs"], json!(["c1"]));
    assert_eq!(stepped_claims["xms_cc"], json!(["cp1"]));

    // The same TOTP code cannot approve a second device.
    let flow2 = start_device_flow(&a, &tid, &client_id).await;
    let mut reused = right.clone();
    reused[0].1 = flow2["user_code"].as_str().unwrap();
    let (status, html) = approve_on_page(&b, &reused).await;
    assert_eq!(status, 401, "reused TOTP code accepted: {html}");

    // A disabled user's token stops working on every node.
    let user_token = body["access_token"].as_str().unwrap().to_owned();
    admin(&root, "POST", "/users/alice@contoso/disable", None).await;
    for i in 0..3 {
        eventually(&anonymous(&cluster, i), &user_token, 401).await;
    }
}
