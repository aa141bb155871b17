//! Backup and restore of one object with every version: a blob sealed by
//! the cluster, so only this cluster can open it.

use super::*;

impl<K: Kind> Objects<K> {
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
