//! A blocking facade for callers without an async runtime: each call runs
//! the async [`Client`](crate::Client) on a runtime the facade owns.
//!
//! The common secret and key calls have blocking twins here; any other
//! call of the async API runs through [`Client::block_on`]. Do not use the
//! facade from inside an async task (blocking there would stall it; Tokio
//! refuses with a panic).
//!
//! ```
//! # fn main() -> Result<(), coffer_client::ClientError> {
//! # let ca_pem = rcgen::generate_simple_self_signed(vec!["localhost".into()])
//! #     .unwrap().cert.pem().into_bytes();
//! use std::time::Duration;
//! use coffer_client::{blocking, ClientConfig, ClientError};
//!
//! // Nothing listens on port 1: the call fails over, then gives up.
//! let client = blocking::Client::new(ClientConfig {
//!     endpoints: coffer_client::parse_endpoints("127.0.0.1:1")?,
//!     ca_pem: Some(ca_pem),
//!     timeout: Duration::from_millis(500),
//!     max_attempts: 2,
//!     ..ClientConfig::default()
//! })?;
//! let err = client.secrets().get("db-password", None).unwrap_err();
//! assert!(matches!(err, ClientError::Connect { .. }), "{err}");
//! // Anything else of the async API:
//! let health = client.block_on(client.inner().sys().health());
//! assert!(health.is_err());
//! # Ok(()) }
//! ```

use std::future::Future;

use crate::keys::{CipherParams, CreateKeyOptions, KeyBundle, KeyItem, KeyOperationResult};
use crate::secrets::{SecretBundle, SecretItem, SetOptions};
use crate::{ClientConfig, ClientError};

/// The blocking client: the async client and a runtime to drive it.
///
/// ```no_run
/// # fn main() -> Result<(), coffer_client::ClientError> {
/// let client = coffer_client::blocking::Client::from_env()?;
/// let secret = client.secrets().get("db-password", None)?;
/// // Calls without a blocking twin run through `block_on`.
/// let peers = client.block_on(client.inner().sys().peers())?;
/// # let _ = (secret, peers); Ok(()) }
/// ```
#[derive(Debug)]
pub struct Client {
    runtime: tokio::runtime::Runtime,
    inner: crate::Client,
}

impl Client {
    /// Builds the client and its runtime (one thread, the caller's).
    pub fn new(cfg: ClientConfig) -> Result<Self, ClientError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClientError::Config(format!("cannot start a runtime: {e}")))?;
        // Building the async client spawns nothing; no runtime is needed yet.
        let inner = crate::Client::new(cfg)?;
        Ok(Self { runtime, inner })
    }

    /// Builds a client from `COFFER_ADDR`, `COFFER_TOKEN` and `COFFER_CACERT`.
    pub fn from_env() -> Result<Self, ClientError> {
        Self::new(ClientConfig::from_env()?)
    }

    /// The async client (for [`Client::block_on`]).
    pub fn inner(&self) -> &crate::Client {
        &self.inner
    }

    /// Runs `future` (a call of the async API) to completion.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// The secrets API, blocking.
    pub fn secrets(&self) -> Secrets<'_> {
        Secrets { client: self }
    }

    /// The keys API, blocking.
    pub fn keys(&self) -> Keys<'_> {
        Keys { client: self }
    }
}

/// Blocking secrets calls; see [`crate::Secrets`] for what each does.
///
/// ```no_run
/// # fn demo(client: coffer_client::blocking::Client) -> Result<(), coffer_client::ClientError> {
/// use coffer_client::secrets::SetOptions;
///
/// let secrets = client.secrets();
/// secrets.set("db-password", "hunter2", &SetOptions::default())?;
/// let names: Vec<String> = secrets
///     .list(Some(25))?
///     .iter()
///     .filter_map(|item| item.name().map(str::to_owned))
///     .collect();
/// assert!(names.iter().any(|n| n == "db-password"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Secrets<'a> {
    client: &'a Client,
}

impl Secrets<'_> {
    /// [`crate::Secrets::get`].
    pub fn get(&self, name: &str, version: Option<&str>) -> Result<SecretBundle, ClientError> {
        let c = self.client;
        c.block_on(c.inner.secrets().get(name, version))
    }

    /// [`crate::Secrets::set`].
    pub fn set(
        &self,
        name: &str,
        value: &str,
        opts: &SetOptions,
    ) -> Result<SecretBundle, ClientError> {
        let c = self.client;
        c.block_on(c.inner.secrets().set(name, value, opts))
    }

    /// [`crate::Secrets::list`].
    pub fn list(&self, max_results: Option<u32>) -> Result<Vec<SecretItem>, ClientError> {
        let c = self.client;
        c.block_on(c.inner.secrets().list(max_results))
    }

    /// [`crate::Secrets::delete`].
    pub fn delete(&self, name: &str) -> Result<(), ClientError> {
        let c = self.client;
        c.block_on(c.inner.secrets().delete(name)).map(drop)
    }
}

/// Blocking keys calls; see [`crate::Keys`] for what each does.
///
/// ```no_run
/// # fn demo(client: coffer_client::blocking::Client) -> Result<(), coffer_client::ClientError> {
/// use coffer_client::keys::{CipherParams, CreateKeyOptions};
///
/// let keys = client.keys();
/// let key = keys.create("wrapping", &CreateKeyOptions::rsa())?;
/// let none = CipherParams::default();
/// let sealed = keys.encrypt("wrapping", key.version(), "RSA-OAEP-256", b"data key", &none)?;
/// let plain = keys.decrypt("wrapping", key.version(), "RSA-OAEP-256", &sealed.value, &none)?;
/// assert_eq!(plain.value, b"data key");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Keys<'a> {
    client: &'a Client,
}

impl Keys<'_> {
    /// [`crate::Keys::create`].
    pub fn create(&self, name: &str, opts: &CreateKeyOptions) -> Result<KeyBundle, ClientError> {
        let c = self.client;
        c.block_on(c.inner.keys().create(name, opts))
    }

    /// [`crate::Keys::get`].
    pub fn get(&self, name: &str, version: Option<&str>) -> Result<KeyBundle, ClientError> {
        let c = self.client;
        c.block_on(c.inner.keys().get(name, version))
    }

    /// [`crate::Keys::list`].
    pub fn list(&self, max_results: Option<u32>) -> Result<Vec<KeyItem>, ClientError> {
        let c = self.client;
        c.block_on(c.inner.keys().list(max_results))
    }

    /// [`crate::Keys::rotate`].
    pub fn rotate(&self, name: &str) -> Result<KeyBundle, ClientError> {
        let c = self.client;
        c.block_on(c.inner.keys().rotate(name))
    }

    /// [`crate::Keys::sign`].
    pub fn sign(
        &self,
        name: &str,
        version: Option<&str>,
        alg: &str,
        digest: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        let c = self.client;
        c.block_on(c.inner.keys().sign(name, version, alg, digest))
    }

    /// [`crate::Keys::verify`].
    pub fn verify(
        &self,
        name: &str,
        version: Option<&str>,
        alg: &str,
        digest: &[u8],
        signature: &[u8],
    ) -> Result<bool, ClientError> {
        let c = self.client;
        c.block_on(c.inner.keys().verify(name, version, alg, digest, signature))
    }

    /// [`crate::Keys::encrypt`].
    pub fn encrypt(
        &self,
        name: &str,
        version: Option<&str>,
        alg: &str,
        plaintext: &[u8],
        params: &CipherParams,
    ) -> Result<KeyOperationResult, ClientError> {
        let c = self.client;
        c.block_on(
            c.inner
                .keys()
                .encrypt(name, version, alg, plaintext, params),
        )
    }

    /// [`crate::Keys::decrypt`].
    pub fn decrypt(
        &self,
        name: &str,
        version: Option<&str>,
        alg: &str,
        ciphertext: &[u8],
        params: &CipherParams,
    ) -> Result<KeyOperationResult, ClientError> {
        let c = self.client;
        c.block_on(
            c.inner
                .keys()
                .decrypt(name, version, alg, ciphertext, params),
        )
    }

    /// [`crate::Keys::delete`].
    pub fn delete(&self, name: &str) -> Result<(), ClientError> {
        let c = self.client;
        c.block_on(c.inner.keys().delete(name)).map(drop)
    }
}
