//! Transaction fragments of the lifecycle: what a new version, an update,
//! a delete, a recover, a purge or a restore writes, for a caller to
//! combine into one compare-and-set transaction (a certificate acts on its
//! key and secret in the same one).

use super::*;

impl<K: Kind> Objects<K> {
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
}
