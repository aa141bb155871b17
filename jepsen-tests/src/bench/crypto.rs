//! The in-process crypto ceiling: the same operations Coffer's software keys
//! perform, called directly on aws-lc-rs from `threads` OS threads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{
    KeySize, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey,
    OAEP_SHA256_MGF1SHA256,
};
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair as _, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
};
use coffer_client::load::{Latencies, LoadReport};

use super::procs;

/// Name prefix of the benchmark threads (for CPU accounting).
const THREAD_NAME: &str = "raw-crypto";

/// The operations of the crypto rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptoOp {
    /// RS256 (RSA-2048 PKCS#1 v1.5 with SHA-256) over a 32-byte digest input.
    Rsa2048Sign,
    /// ES256 (P-256 ECDSA with SHA-256).
    Es256Sign,
    /// A256GCM encryption of 4 KiB.
    A256GcmEncrypt4k,
    /// RSA-OAEP-256 decryption with a 2048-bit key.
    RsaOaep256Decrypt,
}

type OpFn = Arc<dyn Fn() -> bool + Send + Sync>;

fn prepare(op: CryptoOp) -> anyhow::Result<OpFn> {
    let err = |_| anyhow!("aws-lc-rs setup failed");
    Ok(match op {
        CryptoOp::Rsa2048Sign => {
            let key = RsaKeyPair::generate(KeySize::Rsa2048).map_err(err)?;
            let rng = SystemRandom::new();
            Arc::new(move || {
                let mut sig = vec![0u8; key.public_modulus_len()];
                key.sign(&RSA_PKCS1_SHA256, &rng, &[7u8; 32], &mut sig)
                    .is_ok()
            })
        }
        CryptoOp::Es256Sign => {
            let rng = SystemRandom::new();
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(err)?;
            let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
                .map_err(|_| anyhow!("ecdsa key"))?;
            let _ = key.public_key();
            Arc::new(move || key.sign(&rng, &[7u8; 32]).is_ok())
        }
        CryptoOp::A256GcmEncrypt4k => {
            let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[9u8; 32]).map_err(err)?);
            Arc::new(move || {
                let mut buf = vec![0u8; 4096];
                let nonce = Nonce::assume_unique_for_key([1u8; 12]);
                key.seal_in_place_append_tag(nonce, Aad::empty(), &mut buf)
                    .is_ok()
            })
        }
        CryptoOp::RsaOaep256Decrypt => {
            let key = PrivateDecryptingKey::generate(KeySize::Rsa2048).map_err(err)?;
            let public = OaepPublicEncryptingKey::new(key.public_key()).map_err(err)?;
            let mut ct = vec![0u8; public.ciphertext_size()];
            let ct_len = public
                .encrypt(&OAEP_SHA256_MGF1SHA256, &[5u8; 32], &mut ct, None)
                .map_err(err)?
                .len();
            ct.truncate(ct_len);
            let private = OaepPrivateDecryptingKey::new(key).map_err(err)?;
            Arc::new(move || {
                let mut out = vec![0u8; private.min_output_size()];
                private
                    .decrypt(&OAEP_SHA256_MGF1SHA256, &ct, &mut out, None)
                    .is_ok()
            })
        }
    })
}

/// Runs `op` from `threads` threads for `duration`; returns the report and
/// the CPU seconds the threads used.
pub fn run(op: CryptoOp, threads: usize, duration: Duration) -> anyhow::Result<(LoadReport, f64)> {
    let f = prepare(op)?;
    let start = Instant::now();
    let deadline = start + duration;
    let handles = (0..threads.max(1))
        .map(|_| {
            let f = f.clone();
            std::thread::Builder::new()
                .name(THREAD_NAME.into())
                .spawn(move || {
                    let mut lat = Latencies::default();
                    let mut errors = 0u64;
                    loop {
                        let t0 = Instant::now();
                        if t0 >= deadline {
                            break;
                        }
                        if f() {
                            lat.record(t0.elapsed());
                        } else {
                            errors += 1;
                        }
                    }
                    let cpu = procs::own_thread_cpu_seconds();
                    (lat, errors, cpu)
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut lat = Latencies::default();
    let mut errors = 0;
    let mut cpu_total = 0.0;
    for h in handles {
        let (l, e, cpu) = h.join().map_err(|_| anyhow!("crypto thread panicked"))?;
        lat.merge(l);
        errors += e;
        cpu_total += cpu;
    }
    let report = LoadReport::from_samples(threads.max(1), lat, errors, start.elapsed(), None);
    Ok((report, cpu_total))
}
