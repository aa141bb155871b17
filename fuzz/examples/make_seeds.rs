//! Writes the seeds that need Coffer itself to make them: backup blobs
//! sealed by the fixed test barrier (valid on every run), keyring records,
//! and hand-written bodies for every route the SDK capture may miss.
//!
//! `cargo run --example make_seeds [corpus dir]` (default `corpus`), then
//! `cargo fuzz cmin` per target (see README.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use coffer::crypto::{Curve, KeyType};
use coffer::engine::keys::{self, CreateKey, KeyAttributes};
use coffer::engine::rotation::RotationPolicy;
use coffer::engine::secrets::{self, SetSecret};
use coffer_fuzz::app::{App, VAULT};
use coffer_fuzz::block_on;
use coffer_fuzz::keyring::{test_barrier, test_keyring_plain, test_keyring_record};

fn write(dir: &Path, target: &str, label: &str, data: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).expect("corpus dir");
    std::fs::write(d.join(format!("seed-{label}")), data).expect("write seed");
}

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));
    block_on(backups(&dir));
    keyrings(&dir);
    json_bodies(&dir);
    unseal(&dir);
    durations(&dir);
    jwks(&dir);
    println!("seeds written under {}", dir.display());
}

async fn backups(dir: &Path) {
    let app = App::fresh().await;
    for (i, value) in ["first value", "second value of the backup"]
        .iter()
        .enumerate()
    {
        let tags = (i == 1).then(|| BTreeMap::from([("k".to_owned(), "v".to_owned())]));
        app.secrets
            .set(
                VAULT,
                "bk-secret",
                SetSecret {
                    value: (*value).into(),
                    content_type: Some("text/plain".into()),
                    enabled: None,
                    nbf: Some(1_700_000_000),
                    exp: Some(4_000_000_000),
                    tags,
                },
                None,
            )
            .await
            .expect("secret");
    }
    let blob = app
        .secrets
        .backup(VAULT, "bk-secret")
        .await
        .expect("backup");
    let plain = test_barrier()
        .decrypt(secrets::BACKUP_PURPOSE, &blob)
        .expect("open own backup");
    write(
        dir,
        "backup_blob",
        "secret-sealed",
        &[b"sealed secret\n", &plain[..]].concat(),
    );
    write(
        dir,
        "backup_blob",
        "secret-raw",
        &[b"raw secret\n", &blob[..]].concat(),
    );
    body(
        dir,
        "restore-secret",
        "new latest",
        &serde_json::json!({"value": URL_SAFE_NO_PAD.encode(&blob)}),
    );

    let kinds: &[(&str, KeyType, Option<u32>, Option<Curve>)] = &[
        ("bk-ec", KeyType::Ec, None, Some(Curve::P384)),
        ("bk-oct", KeyType::Oct, Some(256), None),
        ("bk-rsa", KeyType::Rsa, Some(2048), None),
    ];
    let policy: RotationPolicy = serde_json::from_str(
        r#"{"lifetimeActions":[{"trigger":{"timeAfterCreate":"P30D"},"action":{"type":"Rotate"}}],
            "attributes":{"expiryTime":"P90D"}}"#,
    )
    .expect("policy");
    for (name, kty, size, curve) in kinds {
        let create = || CreateKey {
            kty: *kty,
            key_size: *size,
            curve: *curve,
            public_exponent: None,
            attributes: KeyAttributes::default(),
        };
        app.keys
            .create(VAULT, name, create(), None)
            .await
            .expect("key");
        app.keys
            .create(VAULT, name, create(), None)
            .await
            .expect("second version");
        app.keys
            .set_rotation_policy(VAULT, name, policy.clone(), None)
            .await
            .expect("policy");
        let blob = app.keys.backup(VAULT, name).await.expect("key backup");
        let plain = test_barrier()
            .decrypt(keys::BACKUP_PURPOSE, &blob)
            .expect("open own key backup");
        write(
            dir,
            "backup_blob",
            &format!("{name}-sealed"),
            &[b"sealed key\n", &plain[..]].concat(),
        );
        write(
            dir,
            "backup_blob",
            &format!("{name}-raw"),
            &[b"raw key\n", &blob[..]].concat(),
        );
        body(
            dir,
            "restore-key",
            "new latest",
            &serde_json::json!({"value": URL_SAFE_NO_PAD.encode(&blob)}),
        );
    }
}

fn keyrings(dir: &Path) {
    let plain = test_keyring_plain();
    write(
        dir,
        "backup_blob",
        "keyring-sealed",
        &[b"sealed keyring\n", &plain[..]].concat(),
    );
    let record = test_keyring_record(&plain);
    write(
        dir,
        "backup_blob",
        "keyring-raw",
        &[b"raw keyring\n", &record[..]].concat(),
    );
}

fn body(dir: &Path, route: &str, rest: &str, v: &serde_json::Value) {
    let data = format!("{route} {rest}\n{v}");
    let label = format!("{route}-{:08x}", fxhash(data.as_bytes()));
    write(dir, "json_bodies", &label, data.as_bytes());
}

fn fxhash(b: &[u8]) -> u32 {
    b.iter().fold(0x811c_9dc5u32, |h, &x| {
        (h ^ u32::from(x)).wrapping_mul(0x0100_0193)
    })
}

fn json_bodies(dir: &Path) {
    use serde_json::json;
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    body(
        dir,
        "set-secret",
        "new latest",
        &json!({"value": "hunter2-but-longer-than-twelve",
        "contentType": "text/plain", "attributes": {"enabled": true, "nbf": 1_700_000_000, "exp": 4_000_000_000_i64},
        "tags": {"env": "prod", "owner": "team"}}),
    );
    body(dir, "set-secret", "new latest", &json!({"value": ""}));
    body(
        dir,
        "update-secret",
        "new fixture",
        &json!({"contentType": "application/json",
        "attributes": {"enabled": false, "exp": 1}, "tags": {}}),
    );
    body(
        dir,
        "update-secret",
        "new latest",
        &json!({"tags": {"a": "b"}}),
    );
    for (kty, extra) in [
        ("EC", json!({"crv": "P-256"})),
        ("EC", json!({"crv": "P-521", "key_ops": ["sign"]})),
        ("EC-HSM", json!({"crv": "P-384"})),
        ("RSA", json!({"key_size": 2048, "public_exponent": 65537})),
        ("RSA", json!({"key_size": 1024})),
        ("oct", json!({"key_size": 128})),
        ("oct-HSM", json!({"key_size": 256})),
    ] {
        let mut b = extra;
        b["kty"] = json!(kty);
        b["attributes"] = json!({"enabled": true, "exportable": false});
        b["tags"] = json!({"purpose": "fuzz"});
        body(dir, "create-key", "new latest", &b);
    }
    body(
        dir,
        "create-key",
        "new latest",
        &json!({"kty": "EC", "release_policy": {"data": "x"}}),
    );
    body(
        dir,
        "import-key",
        "new latest",
        &json!({"key": {"kty": "oct", "k": b64(&[7u8; 32]),
        "key_ops": ["encrypt", "decrypt", "wrapKey", "unwrapKey"]}, "attributes": {"enabled": true}, "tags": {"t": "v"}}),
    );
    body(
        dir,
        "import-key",
        "new latest",
        &json!({"key": {"kty": "oct-HSM", "k": b64(&[7u8; 16])}, "Hsm": true}),
    );
    body(
        dir,
        "update-key",
        "ec fixture",
        &json!({"key_ops": ["sign", "verify"],
        "attributes": {"enabled": true, "nbf": 1_000, "exp": 4_000_000_000_i64}, "tags": {"x": "y"}}),
    );
    body(
        dir,
        "update-key",
        "oct latest",
        &json!({"attributes": {"exportable": true}}),
    );
    for (op, key, alg, extra) in [
        ("encrypt", "oct", "A256GCM", json!({"aad": b64(b"context")})),
        (
            "encrypt",
            "oct",
            "A256CBCPAD",
            json!({"iv": b64(&[1u8; 16])}),
        ),
        (
            "encrypt",
            "oct128",
            "A128CBC",
            json!({"iv": b64(&[1u8; 16])}),
        ),
        ("encrypt", "rsa", "RSA-OAEP-256", json!({})),
        ("encrypt", "rsa", "RSA1_5", json!({})),
        (
            "decrypt",
            "oct",
            "A256GCM",
            json!({"iv": b64(&[0u8; 12]), "tag": b64(&[0u8; 16])}),
        ),
        ("decrypt", "rsa", "RSA-OAEP", json!({})),
        ("wrapkey", "oct", "A256KW", json!({})),
        ("wrapkey", "oct192", "CKM_AES_KEY_WRAP_PAD", json!({})),
        ("wrapkey", "rsa", "RSA-OAEP", json!({})),
        ("unwrapkey", "oct", "A256KW", json!({})),
        ("unwrapkey", "oct128", "CKM_AES_KEY_WRAP", json!({})),
    ] {
        let mut b = extra;
        b["alg"] = json!(alg);
        b["value"] = json!(b64(b"sixteen byte key0123456789abcdef"));
        body(dir, op, &format!("{key} latest"), &b);
    }
    for (key, alg, len) in [
        ("rsa", "RS256", 32),
        ("rsa", "PS512", 64),
        ("ec", "ES256", 32),
        ("ec384", "ES384", 48),
        ("ec521", "ES512", 64),
        ("ec256k", "ES256K", 32),
    ] {
        let digest = b64(&vec![9u8; len]);
        body(
            dir,
            "sign",
            &format!("{key} fixture"),
            &json!({"alg": alg, "value": digest}),
        );
        body(
            dir,
            "verify",
            &format!("{key} latest"),
            &json!({"alg": alg, "digest": digest, "value": b64(&[1u8; 64])}),
        );
    }
    body(
        dir,
        "rotation-policy",
        "ec latest",
        &json!({"lifetimeActions": [
        {"trigger": {"timeAfterCreate": "P90D"}, "action": {"type": "Rotate"}},
        {"trigger": {"timeBeforeExpiry": "P30D"}, "action": {"type": "notify"}}],
        "attributes": {"expiryTime": "P1Y2M3W4DT5H6M7S"}}),
    );
    body(
        dir,
        "rotation-policy",
        "oct latest",
        &json!({"lifetimeActions": [], "attributes": {}}),
    );
    body(dir, "restore-key", "new latest", &json!({"value": "AAAA"}));
    body(dir, "rng", "new latest", &json!({"count": 16}));
    body(dir, "rng", "new latest", &json!({"count": -1}));
}

fn unseal(dir: &Path) {
    let seeds: &[(&str, &str)] = &[
        ("threshold", "#0\n#1\n#2"),
        ("any-three", "#4\n#2u\n#0 \n"),
        ("duplicate", "#1\n#1\n#1u\n#3\n#4"),
        ("tampered", "#0\n#1^5\n#2\n#3^100\n#4"),
        ("config-lower", "{\"shares\":5,\"threshold\":1}\n#3"),
        ("config-higher", "{\"shares\":9,\"threshold\":4}\n#0\n#1\n#2\n#3"),
        ("config-invalid", "{\"shares\":2,\"threshold\":3}\n#0\n#1\n#2"),
        ("garbage", "not a share\n\n00\nzz"),
        ("index-zero", "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"),
    ];
    for (label, s) in seeds {
        write(dir, "unseal_shares", label, s.as_bytes());
    }
}

fn durations(dir: &Path) {
    for s in [
        "P90D",
        "P1Y",
        "P3M",
        "P2W",
        "PT48H",
        "P1Y10D",
        "P1DT1H1M1S",
        "PT10S",
        "P1Y2M3W4DT5H6M7S",
        "P",
        "PT",
        "P1DT",
        "P0D",
        "p1d",
        "P1.5D",
        "P-1D",
        "P99999999999999999999Y",
        "P18446744073709551615S",
        "PT18446744073709551615S",
        "P7D",
    ] {
        write(dir, "rotation_duration", &s.replace('/', "_"), s.as_bytes());
    }
}

fn jwks(dir: &Path) {
    use serde_json::json;
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    for (label, v) in [
        ("oct256", json!({"kty": "oct", "k": b64(&[3u8; 32])})),
        (
            "oct128",
            json!({"kty": "oct", "k": b64(&[3u8; 16]), "key_ops": ["encrypt"]}),
        ),
        ("oct-bad-size", json!({"kty": "oct", "k": b64(&[3u8; 20])})),
        (
            "ec-missing",
            json!({"kty": "EC", "crv": "P-256", "x": b64(&[1u8; 32])}),
        ),
        (
            "rsa-missing",
            json!({"kty": "RSA", "n": b64(&[1u8]), "e": "AQAB"}),
        ),
    ] {
        write(dir, "jwk_import", label, v.to_string().as_bytes());
    }
}
