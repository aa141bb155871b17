//! The lifecycle of a versioned object, written once: get, list, versions,
//! soft delete, recover, purge, purge of expired deletions, backup and
//! restore — the semantics Key Vault gives secrets, keys and certificates.
//!
//! A kind of object (secret, key, …) describes itself through [`Kind`]: its
//! tables, its version record, its public views, what a purge also removes
//! and what a backup also carries. [`Objects`] then offers the lifecycle
//! two ways: as whole operations (each one compare-and-set write with
//! request-id dedup, see [`super::cas`]), and as [`Fragment`]s that a caller
//! combines into one transaction acting on several objects (a certificate
//! deletes, recovers and purges its key and secret with it, atomically).
//!
//! Layout per kind: `{META_TABLE}/{vault}/{name_lower}` holds the
//! [`MetaRecord`]; `{VERSION_TABLE}/{vault}/{name_lower}/{version}` the
//! versions.

pub mod records;

use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use zeroize::Zeroizing;

pub use records::{BackupRecord, DeletedInfo, MetaRecord, NoExtra};

use super::cas::{decode, encode, write, Plan};
use super::clock::Clock;
use super::error::{EngineError, ObjectKind};
use super::names::{is_valid_object_name, is_valid_version};
use super::paging::{page_size, Page};
use super::store::{Mutation, Store, StoreError};
use super::validate::{check_name, normalize_vault};
use super::view::{Fragment, TableScan, VaultView};

/// Days a deleted object stays recoverable.
pub const RECOVERABLE_DAYS: u64 = 90;
/// The recovery level every object reports.
pub const RECOVERY_LEVEL: &str = "Recoverable+Purgeable";
/// Most versions a backup may hold.
pub const MAX_BACKUP_VERSIONS: usize = 500;

const DAY: u64 = 86_400;

/// What the lifecycle needs to know about one kind of versioned object.
pub trait Kind: Send + Sync + 'static {
    /// The stored record of one version.
    type Version: Serialize + DeserializeOwned + Clone + Send + Sync;
    /// What a backup carries besides name and versions.
    type Extra: Serialize + DeserializeOwned + Send + Sync;
    /// A version as listed.
    type Listed: Serialize + DeserializeOwned;
    /// A version as answered by update, recover and restore.
    type Shown: Serialize + DeserializeOwned;
    /// A deleted object as answered.
    type Deleted: Serialize + DeserializeOwned;

    /// "Secret", "Key": the name in messages.
    const LABEL: &'static str;
    /// The kind of a live object (not-found errors).
    const LIVE: ObjectKind;
    /// The kind of a deleted object.
    const DELETED: ObjectKind;
    /// Table of the name records.
    const META_TABLE: &'static str;
    /// Table of the version records.
    const VERSION_TABLE: &'static str;
    /// Format marker of backups.
    const BACKUP_FORMAT: &'static str;
    /// Purpose label (associated data) of backup blobs.
    const BACKUP_PURPOSE: &'static [u8];

    /// The version id of a record.
    fn version_id(v: &Self::Version) -> &str;
    /// The listed view of a version under the object's display name.
    fn listed(v: &Self::Version, name: &str) -> Self::Listed;
    /// The answered view of a version.
    fn shown(v: &Self::Version, name: &str) -> Self::Shown;
    /// The deleted view of the latest version.
    fn deleted(v: &Self::Version, name: &str, info: DeletedInfo) -> Self::Deleted;

    /// Mutations a purge adds for what the kind keeps besides name and
    /// versions.
    fn purge_also(_view: &VaultView<'_>, _lower: &str) -> Vec<Mutation> {
        Vec::new()
    }
    /// What a backup carries besides name and versions.
    fn backup_extra(view: &VaultView<'_>, lower: &str) -> Result<Self::Extra, EngineError>;
    /// Mutations a restore adds for the backup's `extra`.
    fn restore_extra(
        _view: &VaultView<'_>,
        _lower: &str,
        _extra: &Self::Extra,
    ) -> Result<Vec<Mutation>, EngineError> {
        Ok(Vec::new())
    }
}

/// A name record as read, with its revision.
#[derive(Clone, Debug)]
pub struct Meta {
    /// Revision of the record.
    pub revision: u64,
    /// The record.
    pub record: MetaRecord,
}

/// A version as read: the object's name record, the version and their
/// revisions.
#[derive(Clone, Debug)]
pub struct Found<V> {
    /// The name record.
    pub meta: Meta,
    /// Revision of the version record.
    pub revision: u64,
    /// The version record.
    pub version: V,
}

/// The lifecycle of one kind's objects in every vault.
pub struct Objects<K> {
    store: Arc<dyn Store>,
    clock: Clock,
    kind: PhantomData<fn() -> K>,
}

impl<K: Kind> Objects<K> {
    /// The lifecycle over `store`, with `clock` for delete dates.
    pub fn new(store: Arc<dyn Store>, clock: Clock) -> Self {
        Self {
            store,
            clock,
            kind: PhantomData,
        }
    }

    /// The store below.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The clock's current time (Unix seconds).
    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    // ---- reading (local state; inside plans or after a fence) ----

    /// The name record of `lower`, live or deleted.
    pub fn meta(&self, view: &VaultView<'_>, lower: &str) -> Result<Option<Meta>, EngineError> {
        match view.get(K::META_TABLE, lower)? {
            Some(e) => Ok(Some(Meta {
                revision: e.revision,
                record: decode(&e.value)?,
            })),
            None => Ok(None),
        }
    }

    /// The name record of a live object (`name` as asked, for the error).
    pub fn live(&self, view: &VaultView<'_>, lower: &str, name: &str) -> Result<Meta, EngineError> {
        match self.meta(view, lower)? {
            Some(m) if m.record.deleted.is_none() => Ok(m),
            _ => Err(not_found(K::LIVE, name.to_owned())),
        }
    }

    /// The name record of a deleted object and its deletion dates.
    pub fn deleted(
        &self,
        view: &VaultView<'_>,
        lower: &str,
        name: &str,
    ) -> Result<(Meta, DeletedInfo), EngineError> {
        match self.meta(view, lower)? {
            Some(m) => match m.record.deleted {
                Some(info) => Ok((m, info)),
                None => Err(not_found(K::DELETED, name.to_owned())),
            },
            None => Err(not_found(K::DELETED, name.to_owned())),
        }
    }

    /// A version record by id, with its revision.
    pub fn version_record(
        &self,
        view: &VaultView<'_>,
        lower: &str,
        version: &str,
    ) -> Result<Option<(u64, K::Version)>, EngineError> {
        match view.get(K::VERSION_TABLE, &format!("{lower}/{version}"))? {
            Some(e) => Ok(Some((e.revision, decode(&e.value)?))),
            None => Ok(None),
        }
    }

    /// The requested version (`None`/empty: the latest) with its revision.
    pub fn version(
        &self,
        view: &VaultView<'_>,
        lower: &str,
        meta: &MetaRecord,
        name: &str,
        version: Option<&str>,
    ) -> Result<(u64, K::Version), EngineError> {
        let wanted = version.filter(|v| !v.is_empty());
        let id = wanted.map_or_else(|| meta.latest.clone(), str::to_ascii_lowercase);
        let missing = || {
            let shown = wanted.map_or_else(|| name.to_owned(), |v| format!("{name}/{v}"));
            not_found(K::LIVE, shown)
        };
        if !is_valid_version(&id) {
            return Err(missing());
        }
        self.version_record(view, lower, &id)?.ok_or_else(missing)
    }

    /// A version (`None`/empty: the latest) of a live object.
    pub fn live_version(
        &self,
        view: &VaultView<'_>,
        lower: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<Found<K::Version>, EngineError> {
        let meta = self.live(view, lower, name)?;
        let (revision, record) = self.version(view, lower, &meta.record, name, version)?;
        Ok(Found {
            meta,
            revision,
            version: record,
        })
    }

    /// The latest version of a deleted object and its deletion dates.
    pub fn deleted_latest(
        &self,
        view: &VaultView<'_>,
        lower: &str,
        name: &str,
    ) -> Result<(Found<K::Version>, DeletedInfo), EngineError> {
        let (meta, info) = self.deleted(view, lower, name)?;
        let (revision, record) = self.version(view, lower, &meta.record, name, None)?;
        let found = Found {
            meta,
            revision,
            version: record,
        };
        Ok((found, info))
    }

    // ---- fragments ----

    /// Adds `record` as the newest version of `lower` (`meta`: the name
    /// record as read, `None` for a new object named `display`).
    pub fn new_version_fragment(
        &self,
        view: &VaultView<'_>,
        lower: &str,
        meta: Option<&Meta>,
        display: &str,
        record: &K::Version,
    ) -> Result<Fragment, EngineError> {
        let managed = meta.is_some_and(|m| m.record.managed);
        self.version_fragment(view, lower, meta, display, record, managed)
    }

    /// Adds `record` as the newest version of an object whose lifetime a
    /// certificate manages (its key or secret), marking the name managed.
    pub fn managed_version_fragment(
        &self,
        view: &VaultView<'_>,
        lower: &str,
        meta: Option<&Meta>,
        display: &str,
        record: &K::Version,
    ) -> Result<Fragment, EngineError> {
        self.version_fragment(view, lower, meta, display, record, true)
    }

    fn version_fragment(
        &self,
        view: &VaultView<'_>,
        lower: &str,
        meta: Option<&Meta>,
        display: &str,
        record: &K::Version,
        managed: bool,
    ) -> Result<Fragment, EngineError> {
        let version = K::version_id(record);
        let new_meta = MetaRecord {
            name: display.to_owned(),
            latest: version.to_owned(),
            deleted: None,
            managed,
        };
        let vsuffix = format!("{lower}/{version}");
        Ok(Fragment {
            compare: vec![
                view.unchanged(K::META_TABLE, lower, meta.map_or(0, |m| m.revision)),
                view.unchanged(K::VERSION_TABLE, &vsuffix, 0),
            ],
            mutations: vec![
                view.put(K::META_TABLE, lower, encode(&new_meta)?),
                view.put(K::VERSION_TABLE, &vsuffix, encode(record)?),
            ],
        })
    }

    /// Replaces the version `found` with `record` (same id).
    pub fn update_fragment(
        &self,
        view: &VaultView<'_>,
        lower: &str,
        found: &Found<K::Version>,
        record: &K::Version,
    ) -> Result<Fragment, EngineError> {
        let vsuffix = format!("{lower}/{}", K::version_id(record));
        Ok(Fragment {
            compare: vec![
                view.unchanged(K::META_TABLE, lower, found.meta.revision),
                view.unchanged(K::VERSION_TABLE, &vsuffix, found.revision),
            ],
            mutations: vec![view.put(K::VERSION_TABLE, &vsuffix, encode(record)?)],
        })
    }

    /// Sets the deleted state of the object whose latest version is
    /// `latest` (`Some`: soft-delete, `None`: recover). The latest version
    /// must be current too, since the answer shows it.
    pub fn deleted_state_fragment(
        &self,
        view: &VaultView<'_>,
        lower: &str,
        latest: &Found<K::Version>,
        deleted: Option<DeletedInfo>,
    ) -> Result<Fragment, EngineError> {
        let new_meta = MetaRecord {
            deleted,
            ..latest.meta.record.clone()
        };
        let vsuffix = format!("{lower}/{}", K::version_id(&latest.version));
        Ok(Fragment {
            compare: vec![
                view.unchanged(K::META_TABLE, lower, latest.meta.revision),
                view.unchanged(K::VERSION_TABLE, &vsuffix, latest.revision),
            ],
            mutations: vec![view.put(K::META_TABLE, lower, encode(&new_meta)?)],
        })
    }

    /// Removes the object (name record at `meta_revision`), its versions
    /// and what the kind keeps with it.
    pub fn purge_fragment(
        &self,
        view: &VaultView<'_>,
        lower: &str,
        meta_revision: u64,
    ) -> Fragment {
        let mut mutations = vec![view.delete_under(K::VERSION_TABLE, &format!("{lower}/"))];
        mutations.extend(K::purge_also(view, lower));
        mutations.push(view.delete(K::META_TABLE, lower));
        Fragment {
            compare: vec![view.unchanged(K::META_TABLE, lower, meta_revision)],
            mutations,
        }
    }

    /// Writes a backup's object, which must not exist yet.
    pub fn restore_fragment(
        &self,
        view: &VaultView<'_>,
        lower: &str,
        backup: &BackupRecord<K::Version, K::Extra>,
    ) -> Result<Fragment, EngineError> {
        let meta = MetaRecord {
            name: backup.name.clone(),
            latest: backup.latest.clone(),
            deleted: None,
            managed: backup.managed,
        };
        let mut mutations = vec![view.put(K::META_TABLE, lower, encode(&meta)?)];
        for v in &backup.versions {
            let vsuffix = format!("{lower}/{}", K::version_id(v));
            mutations.push(view.put(K::VERSION_TABLE, &vsuffix, encode(v)?));
        }
        mutations.extend(K::restore_extra(view, lower, &backup.extra)?);
        Ok(Fragment {
            compare: vec![view.unchanged(K::META_TABLE, lower, 0)],
            mutations,
        })
    }

    // ---- whole operations ----

    /// Adds a version made by `make(version id, now)` to `name`, creating
    /// the object if needed (refused while the name is deleted). With
    /// `must_exist`, an absent object is refused instead (rotation).
    /// The answer is `render(record, display name)`.
    pub async fn add_version<T, F, R>(
        &self,
        at: (&str, &str),
        must_exist: bool,
        request_id: Option<&str>,
        make: F,
        render: R,
    ) -> Result<T, EngineError>
    where
        T: Serialize + DeserializeOwned,
        F: Fn(String, u64) -> K::Version,
        R: Fn(&K::Version, &str) -> T,
    {
        let (vault, name) = at;
        let lower = check_name(K::LABEL, name)?;
        let vault = normalize_vault(vault)?;
        write(self.store(), request_id, || {
            let view = VaultView::open(self.store(), &vault)?;
            let meta = if must_exist {
                match self.live(&view, &lower, name) {
                    Ok(m) => Some(m),
                    Err(e) => return Ok(Plan::Refuse(e)),
                }
            } else {
                let meta = self.meta(&view, &lower)?;
                if meta.as_ref().is_some_and(|m| m.record.deleted.is_some()) {
                    return Ok(Plan::Refuse(self.deleted_but_recoverable(name)));
                }
                meta
            };
            if let Some(refused) = meta
                .as_ref()
                .and_then(|m| refuse_managed::<K>(&m.record, "set"))
            {
                return Ok(Plan::Refuse(refused));
            }
            let version = uuid::Uuid::new_v4().simple().to_string();
            let record = make(version, self.now());
            let display = meta.as_ref().map_or(name, |m| m.record.name.as_str());
            let frag = self.new_version_fragment(&view, &lower, meta.as_ref(), display, &record)?;
            let result = encode(&render(&record, display))?;
            Ok(Plan::Commit(view.txn(frag, result)))
        })
        .await
    }

    /// Reads a version (`None` or empty: the latest) of a live object.
    pub async fn get(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<Found<K::Version>, EngineError> {
        let lower = check_name(K::LABEL, name)?;
        let view = VaultView::fenced(self.store(), vault).await?;
        self.live_version(&view, &lower, name, version)
    }

    /// Changes a version (`None` or empty: the latest) with `patch(record, now)`.
    pub async fn update(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
        request_id: Option<&str>,
        patch: impl Fn(&mut K::Version, u64),
    ) -> Result<K::Shown, EngineError> {
        let lower = check_name(K::LABEL, name)?;
        let vault = normalize_vault(vault)?;
        write(self.store(), request_id, || {
            let view = VaultView::open(self.store(), &vault)?;
            let found = match self.live_version(&view, &lower, name, version) {
                Ok(f) => f,
                Err(e) => return Ok(Plan::Refuse(e)),
            };
            if let Some(refused) = refuse_managed::<K>(&found.meta.record, "update") {
                return Ok(Plan::Refuse(refused));
            }
            let mut record = found.version.clone();
            patch(&mut record, self.now());
            let frag = self.update_fragment(&view, &lower, &found, &record)?;
            let result = encode(&K::shown(&record, &found.meta.record.name))?;
            Ok(Plan::Commit(view.txn(frag, result)))
        })
        .await
    }

    /// Live objects (latest version), ordered by lower-case name.
    pub async fn list(
        &self,
        vault: &str,
        maxresults: Option<u32>,
        skiptoken: Option<&str>,
    ) -> Result<Page<K::Listed>, EngineError> {
        let size = page_size(maxresults)?;
        let view = VaultView::fenced(self.store(), vault).await?;
        view.page(K::META_TABLE, "", size, skiptoken, |lower, e| {
            let meta: MetaRecord = decode(&e.value)?;
            if meta.deleted.is_some() {
                return Ok(None);
            }
            Ok(self
                .version_record(&view, lower, &meta.latest)?
                .map(|(_, r)| K::listed(&r, &meta.name)))
        })
    }

    /// Versions of a live object; empty when it does not exist (as Key Vault).
    pub async fn list_versions(
        &self,
        vault: &str,
        name: &str,
        maxresults: Option<u32>,
        skiptoken: Option<&str>,
    ) -> Result<Page<K::Listed>, EngineError> {
        let lower = check_name(K::LABEL, name)?;
        let size = page_size(maxresults)?;
        let view = VaultView::fenced(self.store(), vault).await?;
        let display = match self.meta(&view, &lower)? {
            Some(m) if m.record.deleted.is_none() => m.record.name,
            _ => {
                return Ok(Page {
                    items: Vec::new(),
                    skiptoken: None,
                })
            }
        };
        let under = format!("{lower}/");
        view.page(K::VERSION_TABLE, &under, size, skiptoken, |_, e| {
            let record: K::Version = decode(&e.value)?;
            Ok(Some(K::listed(&record, &display)))
        })
    }

    /// Soft-deletes an object: every version stays, the name is reserved
    /// until it is recovered or purged.
    pub async fn delete(
        &self,
        vault: &str,
        name: &str,
        request_id: Option<&str>,
    ) -> Result<K::Deleted, EngineError> {
        let lower = check_name(K::LABEL, name)?;
        let vault = normalize_vault(vault)?;
        write(self.store(), request_id, || {
            let view = VaultView::open(self.store(), &vault)?;
            let latest = match self.live_version(&view, &lower, name, None) {
                Ok(f) => f,
                Err(e) => return Ok(Plan::Refuse(e)),
            };
            if let Some(refused) = refuse_managed::<K>(&latest.meta.record, "delete") {
                return Ok(Plan::Refuse(refused));
            }
            let now = self.now();
            let info = DeletedInfo {
                deleted_date: now,
                scheduled_purge_date: now + RECOVERABLE_DAYS * DAY,
            };
            let frag = self.deleted_state_fragment(&view, &lower, &latest, Some(info))?;
            let result = encode(&K::deleted(&latest.version, &latest.meta.record.name, info))?;
            Ok(Plan::Commit(view.txn(frag, result)))
        })
        .await
    }

    /// A soft-deleted object.
    pub async fn get_deleted(&self, vault: &str, name: &str) -> Result<K::Deleted, EngineError> {
        let lower = check_name(K::LABEL, name)?;
        let view = VaultView::fenced(self.store(), vault).await?;
        let (latest, info) = self.deleted_latest(&view, &lower, name)?;
        Ok(K::deleted(&latest.version, &latest.meta.record.name, info))
    }

    /// Soft-deleted objects, ordered by lower-case name.
    pub async fn list_deleted(
        &self,
        vault: &str,
        maxresults: Option<u32>,
        skiptoken: Option<&str>,
    ) -> Result<Page<K::Deleted>, EngineError> {
        let size = page_size(maxresults)?;
        let view = VaultView::fenced(self.store(), vault).await?;
        view.page(K::META_TABLE, "", size, skiptoken, |lower, e| {
            let meta: MetaRecord = decode(&e.value)?;
            // Key Vault lists a certificate's deleted key and secret only
            // with the certificate (GET by name still finds them).
            let Some(info) = meta.deleted.filter(|_| !meta.managed) else {
                return Ok(None);
            };
            Ok(self
                .version_record(&view, lower, &meta.latest)?
                .map(|(_, r)| K::deleted(&r, &meta.name, info)))
        })
    }

    /// Brings a soft-deleted object back; answers its latest version.
    pub async fn recover(
        &self,
        vault: &str,
        name: &str,
        request_id: Option<&str>,
    ) -> Result<K::Shown, EngineError> {
        let lower = check_name(K::LABEL, name)?;
        let vault = normalize_vault(vault)?;
        write(self.store(), request_id, || {
            let view = VaultView::open(self.store(), &vault)?;
            let latest = match self.deleted_latest(&view, &lower, name) {
                Ok((f, _)) => f,
                Err(e) => return Ok(Plan::Refuse(e)),
            };
            if let Some(refused) = refuse_managed::<K>(&latest.meta.record, "recover") {
                return Ok(Plan::Refuse(refused));
            }
            let frag = self.deleted_state_fragment(&view, &lower, &latest, None)?;
            let result = encode(&K::shown(&latest.version, &latest.meta.record.name))?;
            Ok(Plan::Commit(view.txn(frag, result)))
        })
        .await
    }

    /// Removes a soft-deleted object and everything it holds for good.
    pub async fn purge(
        &self,
        vault: &str,
        name: &str,
        request_id: Option<&str>,
    ) -> Result<(), EngineError> {
        let lower = check_name(K::LABEL, name)?;
        let vault = normalize_vault(vault)?;
        write(self.store(), request_id, || {
            let view = VaultView::open(self.store(), &vault)?;
            let meta = match self.deleted(&view, &lower, name) {
                Ok((meta, _)) => meta,
                Err(e) => return Ok(Plan::Refuse(e)),
            };
            if let Some(refused) = refuse_managed::<K>(&meta.record, "purge") {
                return Ok(Plan::Refuse(refused));
            }
            let frag = self.purge_fragment(&view, &lower, meta.revision);
            Ok(Plan::Commit(view.txn(frag, b"null".to_vec())))
        })
        .await
    }

    /// Purges every deleted object (of every vault) whose scheduled purge
    /// date is at or before `now` (Unix seconds). Returns how many.
    pub async fn purge_expired(&self, now: u64) -> Result<usize, EngineError> {
        let store = self.store();
        store.read_fence().await?;
        let mut purged = 0;
        let mut scan = TableScan::new(store, K::META_TABLE);
        while let Some(batch) = scan.next_batch()? {
            for (vault, lower, entry) in batch {
                // A managed object is purged with its certificate, in the
                // certificate's transaction.
                let due = decode::<MetaRecord>(&entry.value).is_ok_and(|m| {
                    !m.managed && m.deleted.is_some_and(|d| d.scheduled_purge_date <= now)
                });
                if !due {
                    continue;
                }
                let view = VaultView::unchecked(store, &vault);
                let frag = self.purge_fragment(&view, &lower, entry.revision);
                let txn = view.txn(frag, b"null".to_vec());
                // A lost race means someone recovered or purged it meanwhile.
                purged += usize::from(store.commit(None, txn).await?.succeeded);
            }
        }
        Ok(purged)
    }

    /// An opaque blob holding every version of a live object (and the
    /// kind's extra records); only this cluster can open it.
    pub async fn backup(&self, vault: &str, name: &str) -> Result<Vec<u8>, EngineError> {
        let lower = check_name(K::LABEL, name)?;
        let view = VaultView::fenced(self.store(), vault).await?;
        let backup = self.backup_record(&view, &lower, name)?;
        let plain = Zeroizing::new(encode(&backup)?);
        Ok(self.store().seal_blob(K::BACKUP_PURPOSE, &plain)?)
    }

    /// What a backup of the live object `lower` holds (before sealing):
    /// a certificate's backup carries its key's and secret's.
    pub fn backup_record(
        &self,
        view: &VaultView<'_>,
        lower: &str,
        name: &str,
    ) -> Result<BackupRecord<K::Version, K::Extra>, EngineError> {
        let meta = self.live(view, lower, name)?;
        let prefix = view.key(K::VERSION_TABLE, &format!("{lower}/"));
        let entries = self.store().scan(&prefix, None, MAX_BACKUP_VERSIONS + 1)?;
        if entries.len() > MAX_BACKUP_VERSIONS {
            return Err(EngineError::BadParameter(format!(
                "Backup of {} {name} failed: it has more than {MAX_BACKUP_VERSIONS} versions",
                K::LIVE
            )));
        }
        let versions = entries
            .iter()
            .map(|(_, e)| decode(&e.value))
            .collect::<Result<Vec<K::Version>, _>>()?;
        Ok(BackupRecord {
            format: K::BACKUP_FORMAT.to_owned(),
            name: meta.record.name,
            latest: meta.record.latest,
            versions,
            managed: meta.record.managed,
            extra: K::backup_extra(view, lower)?,
        })
    }

    /// Restores a backup made by [`Objects::backup`] (of any vault of this
    /// cluster) under its original name and version ids.
    pub async fn restore(
        &self,
        vault: &str,
        blob: &[u8],
        request_id: Option<&str>,
    ) -> Result<K::Shown, EngineError> {
        let backup = self.open_backup(blob)?;
        if backup.managed {
            // Only the certificate's restore brings a managed object back.
            return Err(EngineError::Managed {
                kind: K::LIVE,
                op: "restore",
            });
        }
        let lower = backup.name.to_ascii_lowercase();
        let latest = backup
            .versions
            .iter()
            .find(|v| K::version_id(v) == backup.latest)
            .ok_or(EngineError::MalformedBackup)?;
        let answer = encode(&K::shown(latest, &backup.name))?;
        let vault = normalize_vault(vault)?;
        write(self.store(), request_id, || {
            let view = VaultView::open(self.store(), &vault)?;
            if let Some(meta) = self.meta(&view, &lower)? {
                let err = if meta.record.deleted.is_some() {
                    self.deleted_but_recoverable(&backup.name)
                } else {
                    EngineError::Conflict(format!("{} {} already exists", K::LABEL, backup.name))
                };
                return Ok(Plan::Refuse(err));
            }
            let frag = self.restore_fragment(&view, &lower, &backup)?;
            Ok(Plan::Commit(view.txn(frag, answer.clone())))
        })
        .await
    }

    /// Opens and checks a backup blob: anything a client could have altered
    /// is refused as malformed (never an internal error, never marks the
    /// node damaged); a sealed or unreachable store is reported as such.
    fn open_backup(&self, blob: &[u8]) -> Result<BackupRecord<K::Version, K::Extra>, EngineError> {
        let plain = self.open_blob(K::BACKUP_PURPOSE, blob)?;
        let backup: BackupRecord<K::Version, K::Extra> =
            serde_json::from_slice(&plain).map_err(|_| EngineError::MalformedBackup)?;
        self.checked_backup(backup)
    }

    /// Opens a sealed blob of `purpose`; anything a client could have
    /// altered is malformed.
    pub fn open_blob(
        &self,
        purpose: &[u8],
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, EngineError> {
        match self.store().open_blob(purpose, blob) {
            Ok(p) => Ok(p),
            Err(
                e @ (StoreError::Sealed | StoreError::NotInitialized | StoreError::Unavailable(_)),
            ) => Err(EngineError::Store(e)),
            Err(_) => Err(EngineError::MalformedBackup),
        }
    }

    /// Checks a decoded backup record (names, version ids).
    pub fn checked_backup(
        &self,
        backup: BackupRecord<K::Version, K::Extra>,
    ) -> Result<BackupRecord<K::Version, K::Extra>, EngineError> {
        // Version ids must also be distinct: with one id twice, restore
        // would store one record and answer with the other (found by the
        // `backup_blob` fuzzer).
        let mut seen = std::collections::HashSet::new();
        let sane = backup.format == K::BACKUP_FORMAT
            && is_valid_object_name(&backup.name)
            && !backup.versions.is_empty()
            && backup.versions.len() <= MAX_BACKUP_VERSIONS
            && backup.versions.iter().all(|v| {
                let id = K::version_id(v);
                is_valid_version(id) && seen.insert(id)
            });
        if sane {
            Ok(backup)
        } else {
            Err(EngineError::MalformedBackup)
        }
    }

    /// "The name is held by a deleted object" for this kind.
    pub fn deleted_but_recoverable(&self, name: &str) -> EngineError {
        EngineError::DeletedButRecoverable {
            kind: K::LIVE,
            name: name.to_owned(),
        }
    }
}

/// The refusal of a direct `op` on an object a certificate manages.
fn refuse_managed<K: Kind>(meta: &MetaRecord, op: &'static str) -> Option<EngineError> {
    meta.managed
        .then_some(EngineError::Managed { kind: K::LIVE, op })
}

fn not_found(kind: ObjectKind, name: String) -> EngineError {
    EngineError::NotFound { kind, name }
}

/// A backup blob `blob` (sealed for `purpose`) re-sealed with its second
/// version's record repeated under the first version's id: what the
/// `backup_blob` fuzzer found restore accepting.
#[cfg(test)]
pub(crate) fn with_repeated_version(store: &dyn Store, purpose: &[u8], blob: &[u8]) -> Vec<u8> {
    let plain = store.open_blob(purpose, blob).unwrap();
    let mut doc: serde_json::Value = serde_json::from_slice(&plain).unwrap();
    let versions = doc["versions"].as_array_mut().unwrap();
    let mut twin = versions[1].clone();
    twin["version"] = versions[0]["version"].clone();
    versions.push(twin);
    store
        .seal_blob(purpose, &serde_json::to_vec(&doc).unwrap())
        .unwrap()
}
