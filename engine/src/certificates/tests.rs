use std::sync::atomic::{AtomicU64, Ordering};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use zeroize::Zeroizing;

use super::pending::{CreateCertificate, ImportCertificate, MergeCertificate};
use super::policy::{IssuerRef, KeyProps, SecretProps, X509Props, PEM};
use super::*;
use crate::mem_store::MemStore;
use crate::secrets::SetSecret;
use crate::vaults::VaultsEngine;

const T0: u64 = 1_790_000_000;

struct Fixture {
    store: Arc<MemStore>,
    now: Arc<AtomicU64>,
    certs: CertificatesEngine,
    keys: Arc<KeysEngine>,
    secrets: Arc<SecretsEngine>,
}

async fn fixture() -> Fixture {
    let store = Arc::new(MemStore::new());
    let now = Arc::new(AtomicU64::new(T0));
    let n = now.clone();
    let clock: Clock = Arc::new(move || n.load(Ordering::SeqCst));
    VaultsEngine::new(store.clone())
        .create("v", None)
        .await
        .unwrap();
    let keys = Arc::new(KeysEngine::with_clock(store.clone(), None, clock.clone()));
    let secrets = Arc::new(SecretsEngine::with_clock(store.clone(), clock.clone()));
    let certs = CertificatesEngine::with_clock(store.clone(), keys.clone(), secrets.clone(), clock);
    Fixture {
        store,
        now,
        certs,
        keys,
        secrets,
    }
}

fn policy(issuer: &str, content_type: Option<&str>) -> Policy {
    Policy {
        x509_props: Some(X509Props {
            subject: Some("CN=app.example.com, O=Coffer".into()),
            sans: Some(policy::Sans {
                dns_names: Some(vec!["app.example.com".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        issuer: Some(IssuerRef {
            name: Some(issuer.into()),
            ..Default::default()
        }),
        secret_props: content_type.map(|c| SecretProps {
            content_type: Some(c.into()),
        }),
        key_props: Some(KeyProps {
            kty: Some("EC".into()),
            crv: Some("P-256".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn create(issuer: &str, ct: Option<&str>) -> CreateCertificate {
    CreateCertificate {
        policy: policy(issuer, ct),
        ..Default::default()
    }
}

/// The stored keys of a table for `name` in vault `v`.
fn rows(store: &MemStore, table: &str, name: &str) -> usize {
    let prefix = format!("{table}/v/{name}");
    store
        .keys()
        .iter()
        .filter(|k| k.starts_with(prefix.as_bytes()))
        .count()
}

#[tokio::test]
async fn self_signed_create_makes_certificate_key_and_secret_of_one_version() {
    let f = fixture().await;
    let op = f
        .certs
        .create("v", "Web", create("self", None), None)
        .await
        .unwrap();
    assert_eq!(op.status, OpStatus::Completed);
    assert_eq!(op.issuer, "Self");
    let cert = f.certs.get("v", "web", None).await.unwrap();
    assert_eq!(cert.name, "Web");
    let info = x509::info(&cert.cer).unwrap();
    assert!(
        info.subject.contains("CN=app.example.com"),
        "{}",
        info.subject
    );
    assert_eq!(
        info.sans.dns_names.as_deref(),
        Some(&["app.example.com".to_owned()][..])
    );
    assert_eq!(cert.nbf, (T0 - issue::BACKDATE_SECS) as i64);
    assert_eq!(cert.exp, issue::add_months(T0, 12).unwrap() as i64);

    let key = f.keys.get("v", "Web", Some(&cert.version)).await.unwrap();
    assert_eq!(key.properties.managed, Some(true));
    assert!(x509::public_matches(&cert.cer, &key.public).unwrap());
    let secret = f
        .secrets
        .get("v", "Web", Some(&cert.version))
        .await
        .unwrap();
    assert_eq!(secret.properties.managed, Some(true));
    assert_eq!(
        secret.properties.kid.as_deref(),
        Some(format!("/keys/Web/{}", cert.version).as_str())
    );
    assert_eq!(
        secret.properties.content_type.as_deref(),
        Some(policy::PKCS12)
    );
    // The secret is a password-less PFX with the certificate and its key.
    let pfx = STANDARD.decode(&secret.value).unwrap();
    let read = import::read(&STANDARD.encode(&pfx), None, false).unwrap();
    assert_eq!(read.chain, vec![cert.cer.clone()]);
    let sw = coffer_crypto::software::import_pkcs8(&read.key).unwrap();
    assert_eq!(sw.public, key.public);
}

#[tokio::test]
async fn pem_secret_holds_key_then_certificate() {
    let f = fixture().await;
    f.certs
        .create("v", "p", create("Self", Some(PEM)), None)
        .await
        .unwrap();
    let cert = f.certs.get("v", "p", None).await.unwrap();
    let secret = f.secrets.get("v", "p", None).await.unwrap();
    assert!(secret.value.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let read = import::read(&secret.value, None, true).unwrap();
    assert_eq!(read.chain, vec![cert.cer]);
    // And converted on read to PKCS#12 it still holds both.
    let pfx = import::convert(&secret.value, PEM, policy::PKCS12).unwrap();
    let back = import::read(&pfx, None, false).unwrap();
    assert_eq!(back.key, read.key);
}

#[tokio::test]
async fn managed_key_and_secret_refuse_direct_writes() {
    let f = fixture().await;
    f.certs
        .create("v", "m", create("Self", None), None)
        .await
        .unwrap();
    let set = SetSecret {
        value: "x".into(),
        ..Default::default()
    };
    let err = f.secrets.set("v", "m", set, None).await.unwrap_err();
    assert!(
        matches!(err, EngineError::Managed { op: "set", .. }),
        "{err:?}"
    );
    let err = f.secrets.delete("v", "m", None).await.unwrap_err();
    assert!(
        matches!(err, EngineError::Managed { op: "delete", .. }),
        "{err:?}"
    );
    let err = f.keys.delete("v", "m", None).await.unwrap_err();
    assert!(
        matches!(err, EngineError::Managed { op: "delete", .. }),
        "{err:?}"
    );
    // Nothing changed.
    assert!(f.keys.get("v", "m", None).await.is_ok());
    assert!(f.secrets.get("v", "m", None).await.is_ok());
}

#[tokio::test]
async fn a_name_held_by_an_ordinary_secret_is_refused() {
    let f = fixture().await;
    let set = SetSecret {
        value: "plain".into(),
        ..Default::default()
    };
    f.secrets.set("v", "taken", set, None).await.unwrap();
    let err = f
        .certs
        .create("v", "taken", create("Self", None), None)
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::Conflict(_)), "{err:?}");
    assert_eq!(rows(&f.store, "c", "taken"), 0);
    assert_eq!(rows(&f.store, "k", "taken"), 0);
}

#[tokio::test]
async fn delete_recover_purge_act_on_all_three() {
    let f = fixture().await;
    f.certs
        .create("v", "d", create("Self", None), None)
        .await
        .unwrap();
    let deleted = f.certs.delete("v", "d", None).await.unwrap();
    assert_eq!(deleted.deleted_date, T0);
    assert!(f.certs.get("v", "d", None).await.is_err());
    assert!(f.keys.get("v", "d", None).await.is_err());
    assert!(f.secrets.get("v", "d", None).await.is_err());
    // The deleted key and secret are found by name, not listed.
    assert!(f.keys.get_deleted("v", "d").await.is_ok());
    assert!(f.secrets.get_deleted("v", "d").await.is_ok());
    assert!(f
        .keys
        .list_deleted("v", None, None)
        .await
        .unwrap()
        .items
        .is_empty());
    assert_eq!(
        f.certs
            .list_deleted("v", None, None)
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    // Their own purge is refused: they go with the certificate.
    assert!(matches!(
        f.keys.purge("v", "d", None).await.unwrap_err(),
        EngineError::Managed { .. }
    ));

    let back = f.certs.recover("v", "d", None).await.unwrap();
    assert!(back.policy.is_some());
    assert!(f.keys.get("v", "d", None).await.is_ok());
    assert!(f.secrets.get("v", "d", None).await.is_ok());

    f.certs.delete("v", "d", None).await.unwrap();
    f.certs.purge("v", "d", None).await.unwrap();
    for table in ["c", "cv", "cp", "co", "k", "kv", "s", "sv"] {
        assert_eq!(rows(&f.store, table, "d"), 0, "{table}");
    }
}

#[tokio::test]
async fn expired_deletions_are_purged_with_key_and_secret() {
    let f = fixture().await;
    f.certs
        .create("v", "e", create("Self", None), None)
        .await
        .unwrap();
    f.certs.delete("v", "e", None).await.unwrap();
    let later = T0 + RECOVERABLE_DAYS * 86_400;
    // The keys' and secrets' purger leaves managed objects alone.
    assert_eq!(f.keys.purge_expired(later).await.unwrap(), 0);
    assert_eq!(f.secrets.purge_expired(later).await.unwrap(), 0);
    assert_eq!(f.certs.purge_expired(later).await.unwrap(), 1);
    for table in ["c", "k", "s"] {
        assert_eq!(rows(&f.store, table, "e"), 0, "{table}");
    }
}

#[tokio::test]
async fn update_mirrors_enabled_and_tags_to_key_and_secret() {
    let f = fixture().await;
    f.certs
        .create("v", "u", create("Self", None), None)
        .await
        .unwrap();
    let tags: BTreeMap<String, String> = [("env".to_owned(), "prod".to_owned())].into();
    let patch = UpdateCertificate {
        enabled: Some(false),
        tags: Some(tags.clone()),
        policy: None,
    };
    f.now.store(T0 + 5, Ordering::SeqCst);
    let c = f.certs.update("v", "u", None, patch, None).await.unwrap();
    assert!(!c.enabled);
    assert_eq!(c.updated, T0 + 5);
    let key = f.keys.get("v", "u", None).await.unwrap();
    assert!(!key.properties.enabled);
    assert_eq!(key.properties.tags.as_ref(), Some(&tags));
}

#[tokio::test]
async fn unknown_request_is_merged_with_a_ca_signed_certificate() {
    let f = fixture().await;
    let op = f
        .certs
        .create("v", "ext", create("Unknown", None), None)
        .await
        .unwrap();
    assert_eq!(op.status, OpStatus::InProgress);
    let csr = STANDARD.decode(op.csr.as_deref().unwrap()).unwrap();
    // A second create waits for this one.
    let err = f
        .certs
        .create("v", "ext", create("Unknown", None), None)
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::PendingInProgress(_)), "{err:?}");

    let (ca_der, leaf_der) = sign_csr(&csr);
    // A certificate for another key is refused and creates nothing.
    let other = rcgen::KeyPair::generate().unwrap();
    let stranger = rcgen::CertificateParams::new(vec!["x.example".into()])
        .unwrap()
        .self_signed(&other)
        .unwrap();
    let bad = MergeCertificate {
        x5c: vec![stranger.der().to_vec()],
        ..Default::default()
    };
    let err = f.certs.merge("v", "ext", bad, None).await.unwrap_err();
    assert!(err.to_string().contains("doesn't match"), "{err}");
    assert_eq!(rows(&f.store, "c", "ext"), 0);

    let good = MergeCertificate {
        x5c: vec![leaf_der.clone(), ca_der.clone()],
        ..Default::default()
    };
    let merged = f.certs.merge("v", "ext", good, None).await.unwrap();
    assert_eq!(merged.cer, leaf_der);
    let op = f.certs.get_operation("v", "ext").await.unwrap();
    assert_eq!(op.status, OpStatus::Completed);
    let secret = f.secrets.get("v", "ext", None).await.unwrap();
    let read = import::read(&secret.value, None, false).unwrap();
    assert_eq!(read.chain, vec![leaf_der, ca_der]);
}

/// A test CA signs `csr`; answers (CA DER, leaf DER).
fn sign_csr(csr: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Test CA");
    let ca_cert = ca_params.clone().self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let req = rcgen::CertificateSigningRequestParams::from_der(&csr.to_vec().into()).unwrap();
    let leaf = req.signed_by(&issuer).unwrap();
    (ca_cert.der().to_vec(), leaf.der().to_vec())
}

/// A PKCS#12 of a fresh self-signed certificate under `password`, and the
/// certificate.
fn pfx_with(password: &str) -> (Vec<u8>, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["imp.example".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der = cert.der().to_vec();
    let mut ks = p12_keystore::KeyStore::new();
    let chain = p12_keystore::PrivateKeyChain::new(
        vec![1, 2, 3],
        p12_keystore::PrivateKey::from_der(&key.serialize_der()).unwrap(),
        vec![p12_keystore::Certificate::from_der(&der).unwrap()],
    );
    ks.add_entry("imp", p12_keystore::KeyStoreEntry::PrivateKeyChain(chain));
    (ks.writer(password).write().unwrap(), der)
}

fn import_req(value: String, password: Option<&str>, pol: Option<Policy>) -> ImportCertificate {
    ImportCertificate {
        value: Zeroizing::new(value),
        password: password.map(|p| Zeroizing::new(p.to_owned())),
        policy: pol,
        ..Default::default()
    }
}

#[tokio::test]
async fn pfx_import_with_password_and_wrong_password() {
    let f = fixture().await;
    let (pfx, der) = pfx_with("s3cret-pw");
    let wrong = import_req(STANDARD.encode(&pfx), Some("nope"), None);
    let err = f.certs.import("v", "imp", wrong, None).await.unwrap_err();
    assert!(err.to_string().contains("PKCS#12"), "{err}");
    assert_eq!(rows(&f.store, "c", "imp"), 0);
    assert_eq!(rows(&f.store, "k", "imp"), 0);

    let right = import_req(STANDARD.encode(&pfx), Some("s3cret-pw"), None);
    let c = f.certs.import("v", "imp", right, None).await.unwrap();
    assert_eq!(c.cer, der);
    let p = c.policy.unwrap();
    assert_eq!(p.issuer_name(), "Unknown");
    let sans = p.x509_props.unwrap().sans.unwrap();
    assert_eq!(sans.dns_names.unwrap(), ["imp.example"]);
    // The stored secret has no password.
    let secret = f.secrets.get("v", "imp", None).await.unwrap();
    assert_eq!(
        import::read(&secret.value, None, false).unwrap().chain,
        vec![der]
    );
}

#[tokio::test]
async fn pem_import_with_a_mismatched_key_creates_nothing() {
    let f = fixture().await;
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["pem.example".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let other = rcgen::KeyPair::generate().unwrap();
    let pem_policy = Policy {
        secret_props: Some(SecretProps {
            content_type: Some(PEM.into()),
        }),
        ..Default::default()
    };
    let mismatched = format!("{}{}", other.serialize_pem(), cert.pem());
    let req = import_req(STANDARD.encode(&mismatched), None, Some(pem_policy.clone()));
    let err = f.certs.import("v", "pem", req, None).await.unwrap_err();
    assert!(err.to_string().contains("doesn't match"), "{err}");
    assert_eq!(rows(&f.store, "c", "pem"), 0);

    let no_key = import_req(cert.pem(), None, Some(pem_policy.clone()));
    let err = f.certs.import("v", "pem", no_key, None).await.unwrap_err();
    assert!(
        err.to_string().contains("Private key is not specified"),
        "{err}"
    );

    // Raw PEM text (azure-cli) and base64 of it (the SDKs) both work.
    let good = format!("{}{}", key.serialize_pem(), cert.pem());
    let req = import_req(good, None, Some(pem_policy));
    let c = f.certs.import("v", "pem", req, None).await.unwrap();
    assert_eq!(c.cer, cert.der().to_vec());
    let secret = f.secrets.get("v", "pem", None).await.unwrap();
    assert!(secret.value.starts_with("-----BEGIN PRIVATE KEY-----"));
}

#[tokio::test]
async fn backup_and_restore_bring_back_key_and_secret() {
    let f = fixture().await;
    f.certs
        .create("v", "b", create("Self", None), None)
        .await
        .unwrap();
    let before = f.certs.get("v", "b", None).await.unwrap();
    let blob = f.certs.backup("v", "b").await.unwrap();
    // A managed key's own backup cannot be restored without its certificate.
    let key_blob = f.keys.backup("v", "b").await.unwrap();
    f.certs.delete("v", "b", None).await.unwrap();
    f.certs.purge("v", "b", None).await.unwrap();
    assert!(matches!(
        f.keys.restore("v", &key_blob, None).await.unwrap_err(),
        EngineError::Managed { .. }
    ));
    let restored = f.certs.restore("v", &blob, None).await.unwrap();
    assert_eq!(restored.version, before.version);
    assert_eq!(restored.cer, before.cer);
    let key = f.keys.get("v", "b", None).await.unwrap();
    assert_eq!(key.properties.managed, Some(true));
    assert!(f.secrets.get("v", "b", None).await.is_ok());
    assert!(f.certs.get_policy("v", "b").await.is_ok());
    // Restoring again: the name is taken.
    assert!(f.certs.restore("v", &blob, None).await.is_err());
}

#[tokio::test]
async fn contacts_and_issuers() {
    let f = fixture().await;
    assert!(matches!(
        f.certs.get_contacts("v").await.unwrap_err(),
        EngineError::NotFound {
            kind: ObjectKind::CertificateContacts,
            ..
        }
    ));
    let c = Contact {
        email: Some("ops@example.com".into()),
        name: Some("Ops".into()),
        phone: None,
    };
    f.certs
        .set_contacts("v", vec![c.clone()], None)
        .await
        .unwrap();
    assert_eq!(f.certs.get_contacts("v").await.unwrap(), vec![c.clone()]);
    assert_eq!(f.certs.delete_contacts("v", None).await.unwrap(), vec![c]);
    assert!(f.certs.get_contacts("v").await.is_err());

    let params = issuers::IssuerParams {
        provider: Some("Test".into()),
        account_id: Some("acct".into()),
        password: Some(Zeroizing::new("pw".into())),
        ..Default::default()
    };
    f.certs.set_issuer("v", "Iss", params, None).await.unwrap();
    let patch = issuers::IssuerParams {
        enabled: Some(false),
        ..Default::default()
    };
    let i = f
        .certs
        .update_issuer("v", "iss", patch, None)
        .await
        .unwrap();
    assert_eq!(i.account_id.as_deref(), Some("acct"));
    assert!(!i.enabled);
    assert_eq!(
        f.certs
            .list_issuers("v", None, None)
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    f.certs.delete_issuer("v", "Iss", None).await.unwrap();
    assert!(f.certs.get_issuer("v", "Iss").await.is_err());
}

#[tokio::test]
async fn pending_operation_cancel_and_delete() {
    let f = fixture().await;
    f.certs
        .create("v", "c", create("Unknown", None), None)
        .await
        .unwrap();
    let op = f.certs.cancel_operation("v", "c", None).await.unwrap();
    assert_eq!(op.status, OpStatus::Cancelled);
    assert!(op.cancellation_requested);
    // Not in progress any more: cancelling again is forbidden.
    assert!(matches!(
        f.certs.cancel_operation("v", "c", None).await.unwrap_err(),
        EngineError::Forbidden(_)
    ));
    f.certs.delete_operation("v", "c", None).await.unwrap();
    assert!(matches!(
        f.certs.get_operation("v", "c").await.unwrap_err(),
        EngineError::NotFound {
            kind: ObjectKind::CertificateOperation,
            ..
        }
    ));
}

#[tokio::test]
async fn auto_renew_makes_one_new_version_when_due() {
    let f = fixture().await;
    let mut req = create("Self", None);
    req.policy.x509_props.as_mut().unwrap().validity_months = Some(1);
    req.tags = Some([("app".to_owned(), "web".to_owned())].into());
    f.certs.create("v", "r", req, None).await.unwrap();
    let first = f.certs.get("v", "r", None).await.unwrap();
    // Default action: AutoRenew at 80 % of the lifetime.
    let due = first.nbf + (first.exp - first.nbf) * 80 / 100;
    assert_eq!(
        f.certs.run_lifetime_actions(due as u64 - 1).await.unwrap(),
        0
    );
    f.now.store(due as u64, Ordering::SeqCst);
    assert_eq!(f.certs.run_lifetime_actions(due as u64).await.unwrap(), 1);
    // Fired once: running again (or on another leader) renews nothing.
    assert_eq!(
        f.certs.run_lifetime_actions(due as u64 + 60).await.unwrap(),
        0
    );
    let second = f.certs.get("v", "r", None).await.unwrap();
    assert_ne!(second.version, first.version);
    assert_eq!(second.tags, first.tags);
    assert!(second.exp > first.exp);
    let versions = f.certs.list_versions("v", "r", None, None).await.unwrap();
    assert_eq!(versions.items.len(), 2);
    // A new key (reuse_key false), with its secret, at the same version.
    let k1 = f.keys.get("v", "r", Some(&first.version)).await.unwrap();
    let k2 = f.keys.get("v", "r", Some(&second.version)).await.unwrap();
    assert_ne!(k1.public, k2.public);
    assert!(x509::public_matches(&second.cer, &k2.public).unwrap());
    assert!(f.secrets.get("v", "r", Some(&second.version)).await.is_ok());
}

#[tokio::test]
async fn unknown_certificates_are_never_auto_renewed() {
    let f = fixture().await;
    let (pfx, _) = pfx_with("pw");
    let mut p = policy("Unknown", None);
    p.lifetime_actions = Some(vec![policy::LifetimeAction {
        trigger: policy::Trigger {
            lifetime_percentage: Some(1),
            days_before_expiry: None,
        },
        action: policy::Action {
            action_type: "AutoRenew".into(),
        },
    }]);
    let req = import_req(STANDARD.encode(&pfx), Some("pw"), Some(p));
    f.certs.import("v", "imp", req, None).await.unwrap();
    assert_eq!(
        f.certs
            .run_lifetime_actions(T0 + 400 * 86_400)
            .await
            .unwrap(),
        0
    );
}

#[path = "ca_tests.rs"]
mod ca_tests;
