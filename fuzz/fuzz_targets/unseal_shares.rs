//! Unseal shares: share text parsing and combination against a real seal
//! (5 shares, threshold 3, made once per process).
//!
//! Input: an optional first line `{"shares":N,"threshold":K}` (the stored
//! seal config; when it parses and validates it replaces the real one, as a
//! damaged or hostile `sys/seal-config` would), then one share per line,
//! submitted in order to a fresh `SealManager`. The shares of the real seal
//! differ per process, so a line `#i` stands for real share `i % 5`, with an
//! optional suffix: `u` upper-cases it, `^n` flips a bit of byte `n`, any
//! other suffix is appended as is.
//!
//! Invariants beyond "no panic":
//! - a share that parses prints back as the same lowercase hex and parses
//!   to itself; its index is never 0;
//! - errors never show 12 characters of a submitted line (confirmed with
//!   the line scrambled);
//! - the node unseals only when at least 3 distinct real shares (some
//!   perhaps altered) were submitted, and then its barrier opens what the
//!   real one sealed: never a wrong key. (Altered shares can still unseal:
//!   Shamir sharing is linear, so the same bit flipped in shares 1 and 2
//!   cancels out when combined with share 3, whose Lagrange coefficient is
//!   1 in GF(2^8). The library authenticates the result, so such a set
//!   yields the true secret: a property, not a bug.)
//! - progress never exceeds the threshold.
#![no_main]

use std::collections::BTreeSet;
use std::sync::OnceLock;

use coffer::seal::shamir::Share;
use coffer::seal::{initialize, InitMaterial, SealConfig, SealManager, StoredSeal};
use coffer_fuzz::leak::{echoed, scramble};
use libfuzzer_sys::fuzz_target;

const PROBE_AAD: &[u8] = b"fuzz/probe";

struct Real {
    init: InitMaterial,
    probe: Vec<u8>,
}

fn real() -> &'static Real {
    static R: OnceLock<Real> = OnceLock::new();
    R.get_or_init(|| {
        let init = initialize(5, 3).expect("real seal");
        let probe = init
            .barrier
            .encrypt(PROBE_AAD, b"unsealed")
            .expect("probe encryption");
        Real { init, probe }
    })
}

/// A submitted line: its text and, if it is derived from a real share,
/// that share's index.
fn expand(line: &str) -> (String, Option<usize>) {
    let r = real();
    let Some(rest) = line.strip_prefix('#') else {
        return (line.to_owned(), None);
    };
    let mut chars = rest.chars();
    let Some(i) = chars.next().and_then(|c| c.to_digit(10)) else {
        return (line.to_owned(), None);
    };
    let i = i as usize % r.init.shares.len();
    let text: &str = &r.init.shares[i];
    let suffix = chars.as_str();
    if suffix.is_empty() {
        return (text.to_owned(), Some(i));
    }
    if suffix == "u" {
        return (text.to_uppercase(), Some(i));
    }
    if let Some(n) = suffix
        .strip_prefix('^')
        .and_then(|n| n.parse::<usize>().ok())
    {
        let mut bytes = hex::decode(text).expect("real share is hex");
        let at = n % bytes.len();
        bytes[at] ^= 1;
        return (hex::encode(bytes), Some(i));
    }
    // Surrounding whitespace is ignored by the parser; the share stays real.
    let real_share = suffix.trim().is_empty();
    (format!("{text}{suffix}"), real_share.then_some(i))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let r = real();
    let mut lines = text.split('\n').peekable();
    let mut stored: StoredSeal = r.init.stored.clone();
    if let Some(first) = lines.peek() {
        if first.starts_with('{') {
            if let Ok(c) = SealConfig::from_json(first.as_bytes()) {
                stored.config = c;
            }
            lines.next();
        }
    }
    let manager = SealManager::new();
    let mut real_seen = BTreeSet::new();
    for line in lines {
        let (share, real_index) = expand(line);
        parse_roundtrip(&share);
        match manager.submit_share(&share, &stored) {
            Ok(status) => {
                assert!(
                    status.progress <= stored.config.threshold,
                    "progress beyond the threshold"
                );
                if let Some(i) = real_index {
                    real_seen.insert(i);
                }
            }
            Err(e) => no_echo(&e.to_string(), &share, &stored),
        }
        if !manager.is_sealed() {
            assert!(
                real_seen.len() >= 3,
                "unsealed with only {} real shares",
                real_seen.len()
            );
            let barrier = manager.barrier().expect("unsealed has a barrier");
            let plain = barrier
                .decrypt(PROBE_AAD, &r.probe)
                .expect("unsealed barrier opens the real data");
            assert_eq!(plain.as_slice(), b"unsealed");
            return;
        }
    }
});

fn parse_roundtrip(text: &str) {
    let Ok(share) = Share::parse(text) else {
        return;
    };
    assert_ne!(share.index(), 0, "share index 0 accepted");
    let printed = share.to_text();
    assert_eq!(
        printed.as_str(),
        text.trim().to_ascii_lowercase(),
        "share prints differently"
    );
    let back = Share::parse(&printed).expect("printed share parses");
    assert!(back == share, "share text round trip changed it");
}

fn no_echo(msg: &str, share: &str, stored: &StoredSeal) {
    let Some(piece) = echoed(msg, share) else {
        return;
    };
    let again = SealManager::new()
        .submit_share(&scramble(share), stored)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        !again.contains(&scramble(piece)),
        "unseal error echoes the share: {msg:?}"
    );
}
