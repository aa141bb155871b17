//! Scopes inside a vault: the vault itself (`/`), a collection (`/keys`,
//! `/secrets`, `/certificates`) or one object (`/keys/{name}`, …).

use crate::validate::check_name;

use super::AuthzError;

/// The collections a scope may name.
const COLLECTIONS: &[&str] = &["keys", "secrets", "certificates"];

/// A scope path, normalised to lower case (object names are
/// case-insensitive) without a trailing `/`, except the root `/`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ScopePath(String);

impl ScopePath {
    /// The whole vault.
    pub fn root() -> Self {
        Self("/".to_owned())
    }

    /// A scope that covers nothing (what an unreadable stored scope
    /// becomes, so it grants nothing).
    pub(crate) fn nothing() -> Self {
        Self("\0".to_owned())
    }

    /// A collection (`keys`, `secrets`, `certificates`).
    pub fn collection(collection: &str) -> Result<Self, AuthzError> {
        Self::parse(&format!("/{collection}"))
    }

    /// One object of a collection.
    pub fn object(collection: &str, name: &str) -> Result<Self, AuthzError> {
        Self::parse(&format!("/{collection}/{name}"))
    }

    /// Parses `/`, `/{collection}` or `/{collection}/{name}` (an empty
    /// string is the root too, as the SDKs send scope `/` unquoted in the
    /// path and it may be lost).
    pub fn parse(scope: &str) -> Result<Self, AuthzError> {
        let trimmed = scope.trim_matches('/');
        if trimmed.is_empty() {
            return Ok(Self::root());
        }
        let bad = || {
            AuthzError::BadRequest(format!(
                "The scope {scope:?} is invalid: use /, /keys, /secrets, /certificates or /{{collection}}/{{name}}"
            ))
        };
        let mut segs = trimmed.split('/');
        let collection = segs.next().unwrap_or_default().to_ascii_lowercase();
        if !COLLECTIONS.contains(&collection.as_str()) {
            return Err(bad());
        }
        match (segs.next(), segs.next()) {
            (None, _) => Ok(Self(format!("/{collection}"))),
            (Some(name), None) => {
                let name = check_name("Object", name).map_err(|_| bad())?;
                Ok(Self(format!("/{collection}/{name}")))
            }
            _ => Err(bad()),
        }
    }

    /// The normalised text (`/`, `/keys`, `/keys/name`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the whole vault.
    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// Whether an assignment at this scope applies at `inner` (the same
    /// scope or one below it).
    pub fn covers(&self, inner: &ScopePath) -> bool {
        self.is_root()
            || inner.0 == self.0
            || inner
                .0
                .strip_prefix(&self.0)
                .is_some_and(|rest| rest.starts_with('/'))
    }

    /// The `id` prefix of things at this scope (`""` for the root, so ids
    /// read `/providers/...`; `/keys` otherwise).
    pub fn id_prefix(&self) -> &str {
        if self.is_root() {
            ""
        } else {
            &self.0
        }
    }
}

impl std::fmt::Display for ScopePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
