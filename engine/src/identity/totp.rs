//! TOTP second factor (RFC 6238: SHA-1, 6 digits, 30 s steps, one step of
//! skew), with single use: a code is accepted only for a time step later
//! than the last one accepted.

use totp_rs::{Algorithm, Secret, TOTP};
use zeroize::Zeroizing;

use super::IdentityError;

/// Seconds per step.
pub const STEP: u64 = 30;
const DIGITS: usize = 6;
/// Seed length in bytes (160 bits, as RFC 4226 recommends).
const SEED_BYTES: usize = 20;

/// A new random seed, base32 (no padding).
pub fn new_secret() -> Zeroizing<String> {
    let bytes: [u8; SEED_BYTES] = rand::random();
    Zeroizing::new(Secret::Raw(bytes.to_vec()).to_encoded().to_string())
}

fn totp(secret_b32: &str, issuer: &str, account: &str) -> Result<TOTP, IdentityError> {
    let bad = || IdentityError::BadRequest("invalid TOTP enrolment".into());
    let bytes = Secret::Encoded(secret_b32.to_owned())
        .to_bytes()
        .map_err(|_| bad())?;
    // The otpauth label may not contain ':'.
    TOTP::new(
        Algorithm::SHA1,
        DIGITS,
        1,
        STEP,
        bytes,
        Some(issuer.replace(':', "")),
        account.replace(':', ""),
    )
    .map_err(|_| bad())
}

/// The `otpauth://totp/…` URI authenticator apps enrol from.
pub fn uri(secret_b32: &str, issuer: &str, account: &str) -> Result<String, IdentityError> {
    Ok(totp(secret_b32, issuer, account)?.get_url())
}

/// The code for Unix time `now` (tests and the device page's tests).
pub fn code_at(secret_b32: &str, now: u64) -> Result<String, IdentityError> {
    Ok(totp(secret_b32, "coffer", "user")?.generate(now))
}

/// The time step whose code `code` is, within one step of `now`, if it is
/// later than `last_step` (single use). Digits only; spaces are ignored.
pub fn accept(secret_b32: &str, code: &str, now: u64, last_step: u64) -> Option<u64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let t = totp(secret_b32, "coffer", "user").ok()?;
    let current = now / STEP;
    [current.saturating_sub(1), current, current + 1]
        .into_iter()
        .filter(|step| *step > last_step)
        .find(|step| {
            let expected = t.generate(step * STEP);
            subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), code.as_bytes()).into()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_accepted_once_and_only_near_its_time() {
        let secret = new_secret();
        let now = 1_700_000_000;
        let code = code_at(&secret, now).unwrap();
        let step = accept(&secret, &code, now, 0).expect("valid code");
        assert_eq!(step, now / STEP);
        assert_eq!(accept(&secret, &code, now, step), None, "reused code");
        assert_eq!(
            accept(&secret, &code, now + 10 * STEP, 0),
            None,
            "stale code"
        );
        assert_eq!(accept(&secret, "12345", now, 0), None);
        let uri = uri(&secret, "coffer", "alice@example.com").unwrap();
        assert!(uri.starts_with("otpauth://totp/"), "{uri}");
        assert!(uri.contains(&format!("secret={}", secret.as_str())));
    }
}
