//! The Rust client signing in to a real cluster's issuer as an application
//! of the identity store — with a client secret, then with a certificate
//! (an RS256 client assertion) — and using keys with the tokens it got,
//! with no token given to it. A wrong secret is refused with the issuer's
//! error, and the secret appears in no error text.

use coffer_client::auth::{AppCredential, Credential};
use coffer_client::keys::CreateKeyOptions;
use coffer_client::{Client, ClientError, Request};
use jepsen_tests::cluster::{ClusterOptions, LocalCluster};
use serde_json::{json, Value};

/// Key Vault Crypto Officer.
const CRYPTO_OFFICER: &str = "14b46e9e-c2b7-41b4-b07b-48a6ebf60603";

async fn admin(root: &Client, req: Request, want: u16) -> Value {
    let what = format!("{} {}", req.method, req.path);
    let resp = root.send(req).await.unwrap();
    assert_eq!(
        resp.status.as_u16(),
        want,
        "{what}: {}",
        String::from_utf8_lossy(&resp.body)
    );
    resp.json().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_application_signs_in_with_a_secret_or_a_certificate_and_uses_keys() {
    let cluster = LocalCluster::start_ready(
        &std::path::PathBuf::from(env!("CARGO_BIN_EXE_coffer")),
        ClusterOptions {
            nodes: 1,
            ..ClusterOptions::default()
        },
    )
    .await
    .unwrap();
    let root = cluster.client().unwrap();
    let tenant = admin(&root, Request::get("/v1/sys/identity/tenant"), 200).await;
    let tenant = tenant["id"].as_str().unwrap().to_owned();
    let app = admin(
        &root,
        Request::post("/v1/sys/identity/apps")
            .json(&json!({"name": "signer-app"}))
            .unwrap(),
        201,
    )
    .await;
    let client_id = app["app"]["client_id"].as_str().unwrap().to_owned();
    let object_id = app["object_id"].as_str().unwrap().to_owned();
    let secret = admin(
        &root,
        Request::post("/v1/sys/identity/apps/signer-app/secrets")
            .json(&json!({}))
            .unwrap(),
        201,
    )
    .await;
    let client_secret = secret["secret"].as_str().unwrap().to_owned();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["signer-app".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    admin(
        &root,
        Request::post("/v1/sys/identity/apps/signer-app/certificates")
            .json(&json!({"certificate": cert.pem()}))
            .unwrap(),
        201,
    )
    .await;
    admin(
        &root,
        Request::put(format!(
            "/providers/Microsoft.Authorization/roleAssignments/{}?api-version=7.4",
            uuid::Uuid::new_v4()
        ))
        .json(
            &json!({"properties": {"roleDefinitionId": CRYPTO_OFFICER, "principalId": object_id}}),
        )
        .unwrap(),
        201,
    )
    .await;

    let client_with = |credential: Credential| {
        let mut cfg = cluster.client_config(vec![cluster.nodes[0].url()]).unwrap();
        cfg.token = None;
        cfg.credential = Some(AppCredential::new(&tenant, &client_id, credential));
        Client::new(cfg).unwrap()
    };

    // A client secret.
    let by_secret = client_with(Credential::ClientSecret(client_secret.clone().into()));
    let made = by_secret
        .keys()
        .create("app-key", &CreateKeyOptions::ec("P-256"))
        .await
        .unwrap();
    assert_eq!(made.key.kty, "EC");
    let digest = [9u8; 32];
    let sig = by_secret
        .keys()
        .sign("app-key", None, "ES256", &digest)
        .await
        .unwrap();

    // The machine certificate: a signed client assertion, no secret.
    let by_cert = client_with(
        Credential::from_certificate_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
            .unwrap(),
    );
    assert!(by_cert
        .keys()
        .verify("app-key", None, "ES256", &digest, &sig)
        .await
        .unwrap());
    let (token, expires) = by_cert
        .token_source()
        .unwrap()
        .token_for(coffer_client::auth::VAULT_RESOURCE)
        .await
        .unwrap();
    assert!(token.starts_with("eyJ"), "a JWT");
    assert!(expires > coffer_client::auth::now());

    // A wrong secret: the issuer's refusal, without the secret.
    let wrong = client_with(Credential::ClientSecret(
        "not-the-secret-xyz".to_string().into(),
    ));
    let err = wrong.keys().get("app-key", None).await.unwrap_err();
    assert!(matches!(err, ClientError::Auth(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("invalid_client"), "{text}");
    assert!(!text.contains("not-the-secret-xyz"), "{text}");
    assert!(!text.contains(&client_secret), "{text}");
}
