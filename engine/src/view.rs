//! A vault-scoped view of the store (as Vault's `BarrierView`): engines
//! address records by table and name, the view puts them under the vault
//! (`{table}/{vault}/{suffix}`), and every transaction built through it
//! also checks that the vault is still the one that was read, so a write
//! cannot land in a vault deleted (or deleted and re-created) meanwhile.
//!
//! Writes are assembled from [`Fragment`]s (comparisons + mutations), so
//! one compare-and-set transaction can act on several objects.

use super::error::EngineError;
use super::names::vault_key;
use super::paging::{collect_page, Page};
use super::store::{Compare, Entry, Mutation, Store, Txn};
use super::validate::normalize_vault;

/// Part of a transaction: what must still hold and what to change.
#[derive(Debug, Default)]
pub struct Fragment {
    /// Comparisons that must all hold.
    pub compare: Vec<Compare>,
    /// Mutations applied if they do.
    pub mutations: Vec<Mutation>,
}

impl Fragment {
    /// Both fragments in one (for a transaction over several objects).
    pub fn and(mut self, other: Fragment) -> Fragment {
        self.compare.extend(other.compare);
        self.mutations.extend(other.mutations);
        self
    }
}

/// One vault's part of the store.
pub struct VaultView<'a> {
    store: &'a dyn Store,
    vault: String,
    /// Revision of the vault record as read; `None` for background work that
    /// does not depend on the vault record (purging, policies).
    revision: Option<u64>,
}

impl<'a> VaultView<'a> {
    /// The view of `vault` in local state, unfenced (for write plans, which
    /// are checked at commit time): `VaultNotFound` if it does not exist.
    pub fn open(store: &'a dyn Store, vault: &str) -> Result<Self, EngineError> {
        let vault = normalize_vault(vault)?;
        match store.get(&vault_key(&vault))? {
            Some(e) => Ok(Self {
                store,
                vault,
                revision: Some(e.revision),
            }),
            None => Err(EngineError::VaultNotFound(vault)),
        }
    }

    /// The view of `vault` after a read fence (for reads).
    pub async fn fenced(store: &'a dyn Store, vault: &str) -> Result<Self, EngineError> {
        let name = normalize_vault(vault)?;
        store.read_fence().await?;
        Self::open(store, &name)
    }

    /// Fails when the vault does not exist, before expensive work such as
    /// making key material. Optimistic like writes: only "not found" pays
    /// for a fence, so it is never answered from a lagging replica.
    pub async fn check(store: &'a dyn Store, vault: &str) -> Result<(), EngineError> {
        let name = normalize_vault(vault)?;
        if Self::open(store, &name).is_ok() {
            return Ok(());
        }
        store.read_fence().await?;
        Self::open(store, &name).map(|_| ())
    }

    /// The view of an already normalised `vault` without reading or
    /// checking its record (background work over every vault).
    pub fn unchecked(store: &'a dyn Store, vault: &str) -> Self {
        Self {
            store,
            vault: vault.to_owned(),
            revision: None,
        }
    }

    /// The (lower-case) vault name.
    pub fn vault(&self) -> &str {
        &self.vault
    }

    /// The store below.
    pub fn store(&self) -> &'a dyn Store {
        self.store
    }

    /// `{table}/{vault}/{suffix}`.
    pub fn key(&self, table: &str, suffix: &str) -> Vec<u8> {
        format!("{table}/{}/{suffix}", self.vault).into_bytes()
    }

    /// Reads `{table}/{vault}/{suffix}` from local state.
    pub fn get(&self, table: &str, suffix: &str) -> Result<Option<Entry>, EngineError> {
        Ok(self.store.get(&self.key(table, suffix))?)
    }

    /// A page of the records under `{table}/{vault}/{under}`; `pick` gets
    /// each record's key suffix (after that prefix) and may skip it.
    pub fn page<T>(
        &self,
        table: &str,
        under: &str,
        size: usize,
        skiptoken: Option<&str>,
        pick: impl FnMut(&str, &Entry) -> Result<Option<T>, EngineError>,
    ) -> Result<Page<T>, EngineError> {
        collect_page(self.store, &self.key(table, under), size, skiptoken, pick)
    }

    /// "`{table}/{vault}/{suffix}` is still at `revision`" (0: still absent).
    pub fn unchanged(&self, table: &str, suffix: &str, revision: u64) -> Compare {
        Compare::Revision {
            key: self.key(table, suffix),
            revision,
        }
    }

    /// Put `value` at `{table}/{vault}/{suffix}`.
    pub fn put(&self, table: &str, suffix: &str, value: Vec<u8>) -> Mutation {
        Mutation::Put {
            key: self.key(table, suffix),
            value,
        }
    }

    /// Delete `{table}/{vault}/{suffix}`.
    pub fn delete(&self, table: &str, suffix: &str) -> Mutation {
        Mutation::Delete {
            key: self.key(table, suffix),
        }
    }

    /// Delete everything under `{table}/{vault}/{under}`.
    pub fn delete_under(&self, table: &str, under: &str) -> Mutation {
        Mutation::DeletePrefix {
            prefix: self.key(table, under),
        }
    }

    /// The transaction of `fragment` with `result` as its answer; it also
    /// requires the vault record to be unchanged since the view was opened.
    pub fn txn(&self, fragment: Fragment, result: Vec<u8>) -> Txn {
        let mut compare = Vec::with_capacity(fragment.compare.len() + 1);
        if let Some(revision) = self.revision {
            compare.push(Compare::Revision {
                key: vault_key(&self.vault),
                revision,
            });
        }
        compare.extend(fragment.compare);
        Txn {
            compare,
            mutations: fragment.mutations,
            result,
        }
    }
}

/// One record found by a [`TableScan`]: vault, key suffix and entry.
pub type TableRecord = (String, String, Entry);

/// Every record of one table in every vault, in batches, for background
/// work (purging, rotation policies) that must not hold all of it at once.
pub struct TableScan<'a> {
    store: &'a dyn Store,
    prefix: Vec<u8>,
    cursor: Option<Vec<u8>>,
    done: bool,
}

impl<'a> TableScan<'a> {
    const BATCH: usize = 256;

    /// A scan of `{table}/` (every vault).
    pub fn new(store: &'a dyn Store, table: &str) -> Self {
        Self {
            store,
            prefix: format!("{table}/").into_bytes(),
            cursor: None,
            done: false,
        }
    }

    /// The next batch as `(vault, suffix, entry)`; `None` when done.
    pub fn next_batch(&mut self) -> Result<Option<Vec<TableRecord>>, EngineError> {
        if self.done {
            return Ok(None);
        }
        let batch = self
            .store
            .scan(&self.prefix, self.cursor.as_deref(), Self::BATCH)?;
        self.done = batch.len() < Self::BATCH;
        self.cursor = batch.last().map(|(k, _)| k.clone());
        let items = batch
            .into_iter()
            .filter_map(|(key, entry)| {
                let rest = String::from_utf8_lossy(&key[self.prefix.len()..]).into_owned();
                let (vault, suffix) = rest.split_once('/')?;
                Some((vault.to_owned(), suffix.to_owned(), entry))
            })
            .collect();
        Ok(Some(items))
    }
}
