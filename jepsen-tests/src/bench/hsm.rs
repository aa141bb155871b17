//! The raw HSM ceiling: plain cryptoki `C_Sign` calls on the same SoftHSM2
//! token a Coffer node uses, with the mechanisms Coffer uses (CKM_RSA_PKCS
//! over DigestInfo + SHA-256 digest for RS256, CKM_ECDSA over the digest for
//! ES256), one session per thread.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use coffer_client::load::{Latencies, LoadReport};
use cryptoki::context::{CInitializeArgs, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use super::procs;
use crate::cluster::HsmToken;

/// Name prefix of the benchmark threads (for CPU accounting).
const THREAD_NAME: &str = "raw-pkcs11";

/// DER DigestInfo header of SHA-256 (RFC 8017 §9.2 note 1).
const SHA256_DIGEST_INFO: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// DER OID of P-256 (CKA_EC_PARAMS).
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// The HSM rows' operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HsmOp {
    /// RS256 with a 2048-bit RSA key: CKM_RSA_PKCS on DigestInfo + digest.
    Rsa2048Sign,
    /// ES256: CKM_ECDSA on a 32-byte digest with a P-256 key.
    Es256Sign,
}

impl HsmOp {
    fn mechanism(self) -> Mechanism<'static> {
        match self {
            Self::Rsa2048Sign => Mechanism::RsaPkcs,
            Self::Es256Sign => Mechanism::Ecdsa,
        }
    }

    fn input(self) -> Vec<u8> {
        match self {
            Self::Rsa2048Sign => [SHA256_DIGEST_INFO, &[7u8; 32]].concat(),
            Self::Es256Sign => vec![7u8; 32],
        }
    }

    /// A session-object key pair, private half sensitive like Coffer's.
    fn generate(self, s: &Session) -> cryptoki::error::Result<ObjectHandle> {
        let private = [
            Attribute::Token(false),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Sign(true),
        ];
        let (_, key) = match self {
            Self::Rsa2048Sign => s.generate_key_pair(
                &Mechanism::RsaPkcsKeyPairGen,
                &[
                    Attribute::Token(false),
                    Attribute::ModulusBits(2048u64.into()),
                    Attribute::PublicExponent(vec![1, 0, 1]),
                    Attribute::Verify(true),
                ],
                &private,
            )?,
            Self::Es256Sign => s.generate_key_pair(
                &Mechanism::EccKeyPairGen,
                &[
                    Attribute::Token(false),
                    Attribute::EcParams(P256_PARAMS.to_vec()),
                    Attribute::Verify(true),
                ],
                &private,
            )?,
        };
        Ok(key)
    }
}

fn find_slot(ctx: &Pkcs11, label: &str) -> anyhow::Result<Slot> {
    for slot in ctx.get_slots_with_initialized_token()? {
        if ctx.get_token_info(slot)?.label().trim_end() == label {
            return Ok(slot);
        }
    }
    Err(anyhow!("no token labelled {label:?}"))
}

/// Runs `op` on `token` from `threads` threads for `duration`; returns the
/// report and the CPU seconds the threads used (SoftHSM2 runs in-process,
/// so that is the whole cost).
pub fn run(
    token: &HsmToken,
    op: HsmOp,
    threads: usize,
    duration: Duration,
) -> anyhow::Result<(LoadReport, f64)> {
    // SoftHSM2 reads SOFTHSM2_CONF in C_Initialize; the nodes get the same
    // value, so setting it process-wide changes nothing for them.
    std::env::set_var("SOFTHSM2_CONF", &token.conf);
    let ctx = Pkcs11::new(&token.module).context("loading the PKCS#11 module")?;
    ctx.initialize(CInitializeArgs::OsThreads)?;
    let slot = find_slot(&ctx, &token.label)?;
    let main = ctx.open_rw_session(slot)?;
    main.login(UserType::User, Some(&AuthPin::new(token.pin.clone())))?;
    let key = op
        .generate(&main)
        .context("generating the key on the token")?;
    let input = op.input();
    // Every thread opens its own session up front (login state is per
    // application, session objects are visible to all its sessions).
    let sessions = (0..threads.max(1))
        .map(|_| ctx.open_ro_session(slot))
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now();
    let deadline = start + duration;
    let results = std::thread::scope(|scope| {
        let handles: Vec<_> = sessions
            .into_iter()
            .map(|s| {
                let input = &input;
                std::thread::Builder::new()
                    .name(THREAD_NAME.into())
                    .spawn_scoped(scope, move || sign_loop(&s, op, key, input, deadline))
            })
            .collect::<Result<_, _>>()?;
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow!("pkcs11 thread panicked")))
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    let elapsed = start.elapsed();
    let (mut lat, mut errors, mut cpu) = (Latencies::default(), 0, 0.0);
    for (l, e, c) in results {
        lat.merge(l);
        errors += e;
        cpu += c;
    }
    drop(main);
    let report = LoadReport::from_samples(threads.max(1), lat, errors, elapsed, None);
    Ok((report, cpu))
}

fn sign_loop(
    s: &Session,
    op: HsmOp,
    key: ObjectHandle,
    input: &[u8],
    deadline: Instant,
) -> (Latencies, u64, f64) {
    let mech = op.mechanism();
    let mut lat = Latencies::default();
    let mut errors = 0u64;
    loop {
        let t0 = Instant::now();
        if t0 >= deadline {
            break;
        }
        match s.sign(&mech, key, input) {
            Ok(_) => lat.record(t0.elapsed()),
            Err(_) => errors += 1,
        }
    }
    (lat, errors, procs::own_thread_cpu_seconds())
}
