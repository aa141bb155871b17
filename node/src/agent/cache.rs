//! The agent's optional read cache for secrets (off by default).
//!
//! Only successful `GET /secrets/{name}[/{version}]` answers are kept, for
//! `ttl`, keyed by the vault (`Host`), the path and query, the calling
//! application and a hash of its `Authorization` — a cached value is only
//! ever served to the caller, with the token, that read it. Any write
//! through the agent under `/secrets/{name}` or `/deletedsecrets/{name}`
//! (a new version, an update, a delete, a recover, a restore) drops every
//! entry of that name at once, so a reader behind the same agent sees its
//! own writes. Writes elsewhere (another agent, the CLI) are seen only when
//! the entry expires: the README says when that is acceptable. Values are
//! zeroized when an entry is dropped.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use bytes::Bytes;
use zeroize::Zeroizing;

/// Most entries kept; the oldest goes first when full.
const MAX_ENTRIES: usize = 10_000;

/// What a cached answer is found by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// Secret name, lower-cased (Key Vault names are case-insensitive).
    name: String,
    host: String,
    path_and_query: String,
    app: String,
    /// SHA-256 of the `Authorization` value (the token is not kept twice).
    auth: [u8; 32],
}

/// A cached `200` answer.
pub struct Cached {
    /// `Content-Type` of the answer.
    pub content_type: Option<HeaderValue>,
    /// The body (the secret bundle), zeroized on drop.
    pub body: Zeroizing<Vec<u8>>,
    stored: Instant,
}

/// The cache; shared by every request of the agent.
pub struct ReadCache {
    ttl: Duration,
    entries: Mutex<HashMap<CacheKey, Cached>>,
}

/// The secret name a Key Vault path is about, for `/secrets/{name}…` and
/// `/deletedsecrets/{name}…`, with whether the path reads one version
/// (`/secrets/{name}` or `/secrets/{name}/{version}`).
fn secret_of(path: &str) -> Option<(String, bool)> {
    let path = path.split('?').next().unwrap_or(path);
    let mut parts = path.trim_start_matches('/').split('/');
    let collection = parts.next()?;
    if collection != "secrets" && collection != "deletedsecrets" {
        return None;
    }
    let name = parts.next().filter(|n| !n.is_empty())?.to_ascii_lowercase();
    let rest: Vec<&str> = parts.collect();
    let one_version = collection == "secrets"
        && match rest.as_slice() {
            [] | [""] => true,
            [v] => *v != "versions" && *v != "backup",
            _ => false,
        };
    Some((name, one_version))
}

impl ReadCache {
    /// A cache keeping answers for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Cached>> {
        // Every update is one insert or remove: a panic elsewhere cannot
        // leave the map inconsistent.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The key of a cacheable request (a `GET` of one secret version), else
    /// `None`.
    pub fn key(
        method: &Method,
        path_and_query: &str,
        headers: &HeaderMap,
        app: &str,
    ) -> Option<CacheKey> {
        if method != Method::GET {
            return None;
        }
        let (name, one_version) = secret_of(path_and_query)?;
        if !one_version {
            return None;
        }
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let auth = headers
            .get(axum::http::header::AUTHORIZATION)
            .map_or(&[][..], HeaderValue::as_bytes);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, auth);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(digest.as_ref());
        Some(CacheKey {
            name,
            host,
            path_and_query: path_and_query.to_owned(),
            app: app.to_owned(),
            auth: hash,
        })
    }

    /// The fresh answer for `key`, if any.
    pub fn get(&self, key: &CacheKey) -> Option<(Option<HeaderValue>, Bytes)> {
        let mut entries = self.entries();
        let fresh = entries.get(key).map(|c| c.stored.elapsed() < self.ttl)?;
        if !fresh {
            entries.remove(key);
            return None;
        }
        let c = entries.get(key)?;
        Some((c.content_type.clone(), Bytes::copy_from_slice(&c.body)))
    }

    /// Keeps a `200` answer for `key`.
    pub fn put(&self, key: CacheKey, status: StatusCode, headers: &HeaderMap, body: &[u8]) {
        if status != StatusCode::OK {
            return;
        }
        let mut entries = self.entries();
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, c| c.stored.elapsed() < self.ttl);
            if entries.len() >= MAX_ENTRIES {
                if let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, c)| c.stored)
                    .map(|(k, _)| k.clone())
                {
                    entries.remove(&oldest);
                }
            }
        }
        entries.insert(
            key,
            Cached {
                content_type: headers.get(axum::http::header::CONTENT_TYPE).cloned(),
                body: Zeroizing::new(body.to_vec()),
                stored: Instant::now(),
            },
        );
    }

    /// A request went through the agent: a write about a secret drops every
    /// cached answer of that secret (in every vault, for every caller).
    pub fn saw(&self, method: &Method, path_and_query: &str) {
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            return;
        }
        // `POST /secrets/restore` names no secret: drop everything.
        if path_and_query.starts_with("/secrets/restore") {
            self.entries().clear();
            return;
        }
        if let Some((name, _)) = secret_of(path_and_query) {
            self.entries().retain(|k, _| k.name != name);
        }
    }

    /// Entries held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("v1.vault.test"));
        h.insert("authorization", HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn only_reads_of_one_version_are_cacheable() {
        let h = headers("Bearer a");
        let get = |p: &str| ReadCache::key(&Method::GET, p, &h, "app").is_some();
        assert!(get("/secrets/db?api-version=7.4"));
        assert!(get("/secrets/db/?api-version=7.4"));
        assert!(get("/secrets/db/0123abcd?api-version=7.4"));
        assert!(!get("/secrets/db/versions?api-version=7.4"));
        assert!(!get("/secrets?api-version=7.4"));
        assert!(!get("/deletedsecrets/db?api-version=7.4"));
        assert!(!get("/keys/k?api-version=7.4"));
        assert!(ReadCache::key(&Method::PUT, "/secrets/db", &h, "app").is_none());
    }

    #[test]
    fn entries_are_per_caller_expire_and_drop_on_writes() {
        let cache = ReadCache::new(Duration::from_millis(200));
        let path = "/secrets/DB?api-version=7.4";
        let k1 = ReadCache::key(&Method::GET, path, &headers("Bearer a"), "app").unwrap();
        let k2 = ReadCache::key(&Method::GET, path, &headers("Bearer b"), "app").unwrap();
        let k3 = ReadCache::key(&Method::GET, path, &headers("Bearer a"), "other").unwrap();
        cache.put(
            k1.clone(),
            StatusCode::OK,
            &HeaderMap::new(),
            b"{\"value\":\"v1\"}",
        );
        cache.put(k2.clone(), StatusCode::NOT_FOUND, &HeaderMap::new(), b"{}");
        assert_eq!(
            cache.get(&k1).unwrap().1,
            Bytes::from_static(b"{\"value\":\"v1\"}")
        );
        assert!(
            cache.get(&k2).is_none(),
            "another token, and errors are not kept"
        );
        assert!(cache.get(&k3).is_none(), "another application");
        // A new version through the agent: gone at once (names ignore case).
        cache.saw(&Method::GET, "/secrets/db");
        assert_eq!(cache.len(), 1);
        cache.saw(&Method::PUT, "/secrets/db?api-version=7.4");
        assert!(cache.get(&k1).is_none());
        // Another secret's write leaves it; the TTL does not.
        cache.put(k1.clone(), StatusCode::OK, &HeaderMap::new(), b"{}");
        cache.saw(&Method::PUT, "/secrets/other");
        cache.saw(&Method::POST, "/keys/db/create");
        assert!(cache.get(&k1).is_some());
        std::thread::sleep(Duration::from_millis(250));
        assert!(cache.get(&k1).is_none());
        assert!(cache.is_empty());
        // Deletes and restores drop entries too.
        cache.put(k1.clone(), StatusCode::OK, &HeaderMap::new(), b"{}");
        cache.saw(&Method::POST, "/deletedsecrets/db/recover");
        assert_eq!(cache.len(), 0);
        cache.put(k1.clone(), StatusCode::OK, &HeaderMap::new(), b"{}");
        cache.saw(&Method::POST, "/secrets/restore?api-version=7.4");
        assert_eq!(cache.len(), 0);
    }
}
