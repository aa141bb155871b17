//! Bearer tokens (`engine/identity/signing.rs`): what every request with an
//! `Authorization: Bearer …` header goes through before anything else.
//!
//! Input: a mode line, then the payload.
//! - `raw`: the payload is the token as a client sends it. The fuzzer never
//!   holds the fixture's signing key, so it must always be refused with a
//!   [`Rejected`] reason (never accepted, never "store unavailable").
//! - `signed`: the payload is `header\nclaims`, any bytes, which the harness
//!   signs with the cluster's current key after filling in the fixture's
//!   values for the placeholders `{KID}`, `{TID}`, `{OID}`, `{CID}`,
//!   `{CRED}` and `{NOW}`; so the checks after the signature (algorithm,
//!   key id, times, audience, tenant, issuer, principal, credential) see
//!   arbitrary content. An accepted token must satisfy each of them, checked
//!   here independently of the engine.
//!
//! In both modes, no refusal message shows 12 characters of the token
//! (a hit is confirmed by re-running with the token scrambled, since a
//! token may spell part of a fixed message by chance).
#![no_main]

use std::sync::{Arc, OnceLock};

use coffer::engine::identity::principals::template;
use coffer::engine::identity::signing::LEEWAY_SECS;
use coffer::engine::identity::{Audience, IdentityEngine, Kind, VerifyError};
use coffer::engine::mem_store::MemStore;
use coffer_fuzz::leak::{echoed, scramble};
use coffer_fuzz::{block_on, split_header};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// The engine's clock, fixed: times in seeds stay meaningful.
const NOW: u64 = 1_700_000_000;
/// The resource this "cluster" accepts.
const AUD: &str = "https://vault.azure.net";

struct Resource;
impl Audience for Resource {
    fn accepts(&self, aud: &str) -> bool {
        aud == AUD
    }
}

struct Fixture {
    id: IdentityEngine,
    kid: String,
    tenant: String,
    app_oid: String,
    client_id: String,
    cred: String,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        block_on(async {
            let store = Arc::new(MemStore::new());
            let id = IdentityEngine::with_clock(store, "contoso", Arc::new(|| NOW));
            let tenant = id.ensure_tenant().await.expect("fixture tenant").id;
            let kid = id.ensure_signing_key().await.expect("fixture signing key");
            let app = id
                .create_principal(template(Kind::App, "app"))
                .await
                .expect("fixture app");
            let client_id = app.app.as_ref().expect("an app").client_id.clone();
            let cred = id
                .add_app_secret("app", Some(30))
                .await
                .expect("fixture app secret")
                .id;
            Fixture {
                id,
                kid,
                tenant,
                app_oid: app.object_id,
                client_id,
                cred,
            }
        })
    })
}

/// `text` with the placeholders replaced by the fixture's values (text
/// that is not UTF-8 is signed as it is).
fn fill(f: &Fixture, text: &[u8]) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(text) else {
        return text.to_vec();
    };
    let now = NOW.to_string();
    let mut s = text.to_owned();
    for (from, to) in [
        ("{KID}", f.kid.as_str()),
        ("{TID}", f.tenant.as_str()),
        ("{OID}", f.app_oid.as_str()),
        ("{CID}", f.client_id.as_str()),
        ("{CRED}", f.cred.as_str()),
        ("{NOW}", now.as_str()),
    ] {
        s = s.replace(from, to);
    }
    s.into_bytes()
}

/// What an accepted token must satisfy, checked on its own parts.
fn check_accepted(f: &Fixture, token: &str) {
    let mut parts = token.split('.');
    let (Some(h), Some(c)) = (parts.next(), parts.next()) else {
        panic!("an accepted token has three parts");
    };
    let decode = |p: &str| -> Value {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .expect("accepted parts are base64url");
        serde_json::from_slice(&bytes).expect("accepted parts are JSON")
    };
    let (header, claims) = (decode(h), decode(c));
    assert_eq!(header["alg"], "RS256", "only RS256 is accepted");
    assert_eq!(
        header["kid"].as_str(),
        Some(f.kid.as_str()),
        "signed by the key it names"
    );
    assert_eq!(claims["aud"], AUD, "audience");
    assert_eq!(claims["tid"].as_str(), Some(f.tenant.as_str()), "tenant");
    // `https://{host}/{tid}/v2.0` or `https://{host}/{tid}` (Entra's v2 and
    // v1 issuers), the tenant in any case.
    let iss = claims["iss"].as_str().expect("an issuer");
    let url = url::Url::parse(iss).expect("the issuer is a URL");
    let path = url.path().trim_end_matches('/').to_ascii_lowercase();
    let tid = f.tenant.to_ascii_lowercase();
    assert!(
        url.scheme() == "https" && (path == format!("/{tid}/v2.0") || path == format!("/{tid}")),
        "the issuer names the tenant: {iss}"
    );
    assert_eq!(
        claims["oid"].as_str(),
        Some(f.app_oid.as_str()),
        "the fixture app"
    );
    assert_eq!(claims["idtyp"], "app");
    assert!(
        claims["azp"]
            .as_str()
            .is_some_and(|a| a.eq_ignore_ascii_case(&f.client_id)),
        "obtained by the app itself"
    );
    assert_eq!(
        claims["xms_coffer_cred"].as_str(),
        Some(f.cred.as_str()),
        "a credential it holds"
    );
    let exp = claims["exp"].as_u64().expect("exp is a whole number");
    assert!(exp.saturating_add(LEEWAY_SECS) >= NOW, "not expired");
    if let Some(nbf) = claims.get("nbf") {
        assert!(nbf.as_u64().expect("nbf is a whole number") <= NOW + LEEWAY_SECS);
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let (mode, payload) = split_header(data);
    let token = match mode {
        b"signed" => {
            let (header, claims) = split_header(payload);
            let signed =
                f.id.sign_raw(&fill(f, header), &fill(f, claims))
                    .expect("the fixture key signs anything");
            signed.to_string()
        }
        _ => String::from_utf8_lossy(payload).into_owned(),
    };
    match f.id.verify_local(&token, &Resource) {
        Ok(verified) => {
            assert!(
                mode == b"signed",
                "a token the fuzzer could not sign was accepted"
            );
            check_accepted(f, &token);
            assert_eq!(verified.claims.oid, f.app_oid);
        }
        Err(VerifyError::Rejected(reason)) => {
            let message = reason.to_string();
            if let Some(piece) = echoed(&message, &token) {
                // Chance (the token spells part of a fixed message) unless
                // the message follows the token when it is scrambled.
                let scrambled = scramble(&token);
                if let Err(VerifyError::Rejected(again)) = f.id.verify_local(&scrambled, &Resource)
                {
                    let again = again.to_string();
                    assert!(
                        !again.contains(&scramble(piece)),
                        "the refusal {again:?} shows the token"
                    );
                }
            }
        }
        Err(VerifyError::Unavailable(e)) => {
            panic!("a token made the in-memory store unavailable: {e}")
        }
    }
});
