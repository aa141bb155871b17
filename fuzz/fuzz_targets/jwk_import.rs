//! JWK import: the `key` object of `PUT /keys/{name}` parsed as the handler
//! does (`JwkIn` → `private_key()`), then validated and converted by the
//! software key importer (RSA components, EC scalar + point, AES bytes).
//!
//! Invariants beyond "no panic":
//! - errors (API and crypto) never show a private field (`d p q dp dq qi k`),
//!   confirmed by re-running with the field scrambled;
//! - an accepted key's public half is the one sent (up to leading zeros),
//!   RSA keys are 2048-4096 bits, and the key works: it signs what its
//!   public half verifies (RSA, EC) or decrypts what it encrypts (oct);
//! - the stored form (`SoftwareKey` JSON, as version records hold it)
//!   round-trips to a key that still works the same.
#![no_main]

use axum::response::IntoResponse;
use coffer::api::akv::key_models::JwkIn;
use coffer::crypto::software::{self, LoadedKey, SoftwareKey};
use coffer::crypto::{Curve, EncAlg, PrivateKey, PublicKey, SignAlg, SymParams};
use coffer_fuzz::block_on;
use coffer_fuzz::leak::{echoed, scramble};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const PRIVATE: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "k"];

/// The error text a client or log would see, or the imported key.
fn import(json: &[u8]) -> Result<(PrivateKey, SoftwareKey), String> {
    let jwk: JwkIn = serde_json::from_slice(json).map_err(|_| String::new())?;
    let key = jwk.private_key().map_err(|e| {
        let resp = e.into_response();
        let body =
            block_on(axum::body::to_bytes(resp.into_body(), usize::MAX)).expect("error body");
        String::from_utf8_lossy(&body).into_owned()
    })?;
    let sw = software::import(&key).map_err(|e| format!("{e} {e:?}"))?;
    Ok((key, sw))
}

fuzz_target!(|data: &[u8]| {
    match import(data) {
        Err(msg) => no_echo(data, &msg),
        Ok((key, sw)) => {
            public_matches(&key, &sw.public);
            works(&sw);
            let stored = serde_json::to_vec(&sw).expect("serialise SoftwareKey");
            let back: SoftwareKey = serde_json::from_slice(&stored).expect("stored key parses");
            assert_eq!(back.public, sw.public, "stored key changed its public half");
            assert_eq!(
                (back.kty, back.bits),
                (sw.kty, sw.bits),
                "stored key changed"
            );
            assert!(
                LoadedKey::new(back.clone()).loaded_from(&sw),
                "stored key changed its private material"
            );
        }
    }
});

fn no_echo(data: &[u8], msg: &str) {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    for f in PRIVATE {
        let Some(secret) = v.get(f).and_then(Value::as_str) else {
            continue;
        };
        let Some(piece) = echoed(msg, secret) else {
            continue;
        };
        let mut other = v.clone();
        other[*f] = Value::String(scramble(secret));
        let again = import(&serde_json::to_vec(&other).expect("serialise")).err();
        assert!(
            !again.unwrap_or_default().contains(&scramble(piece)),
            "import error echoes the private field {f}: {msg:?}"
        );
    }
}

fn strip(b: &[u8]) -> &[u8] {
    let i = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[i..]
}

fn public_matches(key: &PrivateKey, public: &PublicKey) {
    match (key, public) {
        (PrivateKey::Rsa { n, e, .. }, PublicKey::Rsa { n: pn, e: pe }) => {
            assert_eq!(strip(n), strip(pn), "RSA modulus differs");
            assert_eq!(strip(e), strip(pe), "RSA exponent differs");
            let bits = strip(pn).len() * 8;
            assert!(
                (2041..=4096).contains(&bits),
                "RSA key of {bits} bits accepted"
            );
        }
        (
            PrivateKey::Ec { curve, x, y, .. },
            PublicKey::Ec {
                curve: c,
                x: px,
                y: py,
            },
        ) => {
            assert_eq!(curve, c, "curve differs");
            assert_eq!(strip(x), strip(px), "EC x differs");
            assert_eq!(strip(y), strip(py), "EC y differs");
        }
        (PrivateKey::Oct { .. }, PublicKey::Oct) => {}
        _ => panic!("imported key changed its type"),
    }
}

fn works(sw: &SoftwareKey) {
    let loaded = LoadedKey::new(sw.clone());
    let (alg, len) = match &sw.public {
        PublicKey::Rsa { .. } => (SignAlg::RS256, 32),
        PublicKey::Ec { curve, .. } => match curve {
            Curve::P256 => (SignAlg::ES256, 32),
            Curve::P256K => (SignAlg::ES256K, 32),
            Curve::P384 => (SignAlg::ES384, 48),
            Curve::P521 => (SignAlg::ES512, 64),
        },
        PublicKey::Oct => {
            let alg = match sw.bits {
                128 => EncAlg::A128GCM,
                192 => EncAlg::A192GCM,
                _ => EncAlg::A256GCM,
            };
            let ct = loaded
                .encrypt(alg, b"fuzz plaintext", &SymParams::default())
                .expect("imported AES key encrypts");
            let params = SymParams {
                iv: ct.iv.clone(),
                aad: None,
                tag: ct.tag.clone(),
            };
            let pt = loaded
                .decrypt(alg, &ct.value, &params)
                .expect("imported AES key decrypts its own output");
            assert_eq!(pt.as_slice(), b"fuzz plaintext");
            return;
        }
    };
    let digest = vec![0x5au8; len];
    let sig = loaded.sign(alg, &digest).expect("imported key signs");
    assert!(
        software::verify(&sw.public, alg, &digest, &sig).expect("verify runs"),
        "imported key's signature does not verify under its public half"
    );
}
