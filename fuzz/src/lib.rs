//! Shared harness of Coffer's fuzz targets.
//!
//! Everything here drives the real code: the Key Vault router and engines
//! over the engine's in-memory store, whose values and backup blobs go
//! through the real barrier layer (AES-256-GCM-SIV, `term | nonce |
//! ct+tag`) under a fixed test key, so seeds made once stay valid. Nothing
//! is mocked except the Raft layer below the raw store.

pub mod app;
pub mod keyring;
pub mod leak;

use std::future::Future;
use std::sync::OnceLock;

/// One current-thread runtime per process: the engines' `spawn_blocking`
/// crypto runs on its blocking pool.
pub fn block_on<F: Future>(f: F) -> F::Output {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime for the fuzz harness")
    })
    .block_on(f)
}

/// Splits fuzz input at the first `\n`: a small header (route, mode or
/// key choice, readable in corpus files) and the payload.
pub fn split_header(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&[], data),
    }
}
