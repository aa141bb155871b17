//! The lifecycle as whole operations: each one compare-and-set write with
//! request-id dedup (see [`crate::cas`]), built from the fragments.

use super::*;

impl<K: Kind> Objects<K> {
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

    /// The version `version` of `name` that a write of this request made,
    /// from this node's state without a fence: writes return only once this
    /// node has applied them. Not found once the version is purged.
    pub fn written_version(
        &self,
        vault: &str,
        name: &str,
        version: &str,
    ) -> Result<K::Version, EngineError> {
        let lower = check_name(K::LABEL, name)?;
        let view = VaultView::open(self.store(), vault)?;
        match self.version_record(&view, &lower, version)? {
            Some((_, record)) => Ok(record),
            None => Err(not_found(K::LIVE, format!("{name}/{version}"))),
        }
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
        self.recover_with(vault, name, request_id, |_, _, latest| {
            let answer = encode(&K::shown(&latest.version, &latest.meta.record.name))?;
            Ok((Fragment::default(), answer))
        })
        .await
    }

    /// [`Self::recover`] with `also` (view, lowercase name, the latest
    /// version as found) giving what the same transaction also restores
    /// and the encoded answer: a certificate brings back its key and secret
    /// and answers with its policy.
    pub async fn recover_with<T, F>(
        &self,
        vault: &str,
        name: &str,
        request_id: Option<&str>,
        also: F,
    ) -> Result<T, EngineError>
    where
        T: serde::de::DeserializeOwned,
        F: Fn(&VaultView<'_>, &str, &Found<K::Version>) -> Result<(Fragment, Vec<u8>), EngineError>
            + Send
            + Sync,
    {
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
            let (extra, answer) = also(&view, &lower, &latest)?;
            let frag = self
                .deleted_state_fragment(&view, &lower, &latest, None)?
                .and(extra);
            Ok(Plan::Commit(view.txn(frag, answer)))
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
        self.purge_with(vault, name, request_id, |view, lower, revision| {
            Ok(self.purge_fragment(view, lower, revision))
        })
        .await
    }

    /// [`Self::purge`] with what the purge removes given by `fragment`
    /// (view, lowercase name, name record revision): a certificate's purge
    /// removes its key and secret in the same transaction.
    pub async fn purge_with<F>(
        &self,
        vault: &str,
        name: &str,
        request_id: Option<&str>,
        fragment: F,
    ) -> Result<(), EngineError>
    where
        F: Fn(&VaultView<'_>, &str, u64) -> Result<Fragment, EngineError> + Send + Sync,
    {
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
            let frag = fragment(&view, &lower, meta.revision)?;
            Ok(Plan::Commit(view.txn(frag, b"null".to_vec())))
        })
        .await
    }

    /// Purges every deleted object (of every vault) whose scheduled purge
    /// date is at or before `now` (Unix seconds). Returns how many.
    pub async fn purge_expired(&self, now: u64) -> Result<usize, EngineError> {
        self.purge_expired_with(now, |view, lower, revision| {
            Ok(self.purge_fragment(view, lower, revision))
        })
        .await
    }

    /// [`Self::purge_expired`] with each purge's fragment given by
    /// `fragment`, as for [`Self::purge_with`].
    pub async fn purge_expired_with<F>(&self, now: u64, fragment: F) -> Result<usize, EngineError>
    where
        F: Fn(&VaultView<'_>, &str, u64) -> Result<Fragment, EngineError> + Send + Sync,
    {
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
                let frag = fragment(&view, &lower, entry.revision)?;
                let txn = view.txn(frag, b"null".to_vec());
                // A lost race means someone recovered or purged it meanwhile.
                purged += usize::from(store.commit(None, txn).await?.succeeded);
            }
        }
        Ok(purged)
    }
}
