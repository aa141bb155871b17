//! `KeyVaultBackupClient`: full backup (`POST /backup`), full restore
//! (`PUT /restore`), selective key restore (`PUT /keys/{name}/restore`),
//! their `pre…` checks and status polls, with Key Vault's long-running
//! operation shapes: 202, `Azure-AsyncOperation: https://{host}/…/{job}/pending`,
//! status `InProgress` → `Succeeded` | `Failed`.
//!
//! The storage target is a local directory: `storageResourceUri` is a
//! `file:///…` URI inside the node's `[server] backup_dir` (other schemes
//! are refused, as is any path outside that directory). The node that
//! accepts the request runs the job, writes to its own disk and answers its
//! status (the poll URL names that node's host); jobs live in the node's
//! memory.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::context::AkvCtx;
use super::errors::ApiError;
use super::extract::{JsonBody, PathParams};
use super::AkvState;
use crate::engine::backup::{BackupEngine, BackupError, BackupTarget};

/// Jobs kept for status polls (oldest finished ones are forgotten first).
const MAX_JOBS: usize = 256;

/// What a job does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JobKind {
    Backup,
    Restore,
}

/// One long-running operation, as its status poll shows it.
#[derive(Clone, Debug)]
struct Job {
    kind: JobKind,
    vault: String,
    status: &'static str,
    details: Option<String>,
    error: Option<(String, String)>,
    start: u64,
    end: Option<u64>,
    folder_uri: Option<String>,
}

/// Full backups and restores of this node, and their jobs.
pub struct BackupService {
    engine: BackupEngine,
    root: Option<PathBuf>,
    jobs: Mutex<HashMap<String, Job>>,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A folder on this node's disk.
struct LocalDir(PathBuf);

impl LocalDir {
    /// `rel` under the folder, if it is a plain relative path (the
    /// manifest read back from disk names files too: never trust it).
    fn path(&self, rel: &str) -> Result<PathBuf, String> {
        let plain = !rel.is_empty()
            && Path::new(rel)
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
            && rel
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'/'));
        if plain {
            Ok(self.0.join(rel))
        } else {
            Err(format!("{rel:?} is not a file name of a backup folder"))
        }
    }
}

impl BackupTarget for LocalDir {
    fn write(&self, rel: &str, bytes: &[u8]) -> Result<(), String> {
        let path = self.path(rel)?;
        if let Some(dir) = path.parent() {
            crate::files::create_private_dir(dir).map_err(|e| format!("{rel}: {e}"))?;
        }
        crate::files::write_private_file(&path, bytes).map_err(|e| format!("{rel}: {e}"))
    }

    fn read(&self, rel: &str) -> Result<Vec<u8>, String> {
        std::fs::read(self.path(rel)?).map_err(|e| format!("{rel}: {e}"))
    }
}

/// `storageResourceUri` and its companions (`token` is a SAS token for
/// Azure Storage: never logged, not used by a local target).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SasTokenParameters {
    storage_resource_uri: String,
    #[serde(default)]
    #[allow(dead_code)]
    token: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    use_managed_identity: Option<bool>,
}

/// `POST /backup` and `POST /prebackup` body.
pub type BackupBody = SasTokenParameters;

/// `PUT /restore` and `PUT /prerestore` body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreBody {
    sas_token_parameters: SasTokenParameters,
    folder_to_restore: String,
}

/// `PUT /keys/{name}/restore` body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRestoreBody {
    sas_token_parameters: SasTokenParameters,
    folder: String,
}

impl BackupService {
    /// The service over `engine`, with `root` the only directory targets
    /// may be in (`None`: backups refused).
    pub fn new(engine: BackupEngine, root: Option<PathBuf>) -> Self {
        Self {
            engine,
            root,
            jobs: Mutex::new(HashMap::new()),
        }
    }

    /// The local directory a `file://` URI names (joined with `folder`),
    /// checked to be inside the backup root. `create`: the directory is
    /// made (a new backup folder); otherwise it must exist.
    fn resolve(&self, uri: &str, folder: Option<&str>, create: bool) -> Result<PathBuf, ApiError> {
        let Some(root) = &self.root else {
            return Err(ApiError::bad_parameter(
                "This node has no backup directory: set [server] backup_dir to allow full \
                 backups to file:// targets",
            ));
        };
        let path = uri
            .strip_prefix("file://")
            .map(|rest| rest.strip_prefix("localhost").unwrap_or(rest))
            .filter(|p| p.starts_with('/'))
            .ok_or_else(|| {
                ApiError::bad_parameter(
                    "storageResourceUri must be a file:///… URI (Coffer writes backups to a local \
                     directory; Azure Blob Storage and S3 targets are not supported)",
                )
            })?;
        let mut path = PathBuf::from(path);
        if let Some(folder) = folder {
            let folder = folder.trim_matches('/');
            let plain = !folder.is_empty()
                && Path::new(folder)
                    .components()
                    .all(|c| matches!(c, Component::Normal(_)));
            if !plain {
                return Err(ApiError::bad_parameter("Invalid backup folder name"));
            }
            path.push(folder);
        }
        if create {
            crate::files::create_private_dir(&path).map_err(|_| outside())?;
        }
        let root = root.canonicalize().map_err(|_| outside())?;
        let path = path.canonicalize().map_err(|_| outside())?;
        if !path.starts_with(&root) || !path.is_dir() {
            return Err(outside());
        }
        Ok(path)
    }

    fn start(&self, kind: JobKind, vault: &str) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let job = Job {
            kind,
            vault: vault.to_owned(),
            status: "InProgress",
            details: None,
            error: None,
            start: now(),
            end: None,
            folder_uri: None,
        };
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if jobs.len() >= MAX_JOBS {
            let oldest = jobs
                .iter()
                .filter(|(_, j)| j.end.is_some())
                .min_by_key(|(_, j)| j.start)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                jobs.remove(&k);
            }
        }
        jobs.insert(id.clone(), job);
        id
    }

    fn finish(&self, id: &str, outcome: Result<(String, Option<String>), (String, String)>) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(job) = jobs.get_mut(id) {
            job.end = Some(now());
            match outcome {
                Ok((details, folder)) => {
                    job.status = "Succeeded";
                    job.details = Some(details);
                    if folder.is_some() {
                        job.folder_uri = folder;
                    }
                }
                Err((code, message)) => {
                    job.status = "Failed";
                    job.details = Some(message.clone());
                    job.error = Some((code, message));
                }
            }
        }
    }

    fn job(&self, id: &str, vault: &str, kind: JobKind) -> Option<Job> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.get(id)
            .filter(|j| j.vault == vault && j.kind == kind)
            .cloned()
    }
}

fn outside() -> ApiError {
    ApiError::bad_parameter(
        "storageResourceUri must name an existing directory inside the node's backup directory",
    )
}

fn failure(e: &BackupError) -> (String, String) {
    let code = match e {
        BackupError::Engine(_) => "RestoreFailed",
        BackupError::Target(_) => "StorageError",
        BackupError::Invalid(_) => "InvalidBackup",
    };
    (code.to_owned(), e.to_string())
}

/// The status body of a job (both kinds; backups add the folder URI).
fn status_body(id: &str, job: &Job) -> Value {
    let error = job
        .error
        .as_ref()
        .map(|(code, message)| json!({"code": code, "message": message, "innererror": null}));
    let mut body = json!({
        "status": job.status,
        "statusDetails": job.details,
        "error": error,
        "startTime": job.start,
        "endTime": job.end,
        "jobId": id,
    });
    if job.kind == JobKind::Backup {
        body["azureStorageBlobContainerUri"] = json!(job.folder_uri);
    }
    body
}

/// 202 with the poll URL of job `id`.
fn accepted(ctx: &AkvCtx, svc: &BackupService, id: &str, kind: JobKind) -> Response {
    let path = match kind {
        JobKind::Backup => "backup",
        JobKind::Restore => "restore",
    };
    let body = svc
        .job(id, &ctx.vault, kind)
        .map(|j| status_body(id, &j))
        .unwrap_or(Value::Null);
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    // The SDK polls this URL verbatim, and every Key Vault route here
    // requires an api-version: the poll carries the request's own.
    let url = format!(
        "{}/{path}/{id}/pending?api-version={}",
        ctx.base_url, ctx.api_version
    );
    if let Ok(v) = HeaderValue::from_str(&url) {
        response.headers_mut().insert("azure-asyncoperation", v);
    }
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// `POST /backup`: a new folder `{vault}-{unix seconds}-{id}` in the target,
/// filled in the background.
pub async fn backup(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    JsonBody(body): JsonBody<BackupBody>,
) -> Result<Response, ApiError> {
    let svc = st.backup.clone();
    let base = svc.resolve(&body.storage_resource_uri, None, false)?;
    let id = svc.start(JobKind::Backup, &ctx.vault);
    let folder = format!("{}-{}-{}", ctx.vault, now(), &id[..8]);
    let folder_uri = format!(
        "{}/{folder}",
        body.storage_resource_uri.trim_end_matches('/')
    );
    let dir = base.join(&folder);
    let (vault, job) = (ctx.vault.clone(), id.clone());
    let task = svc.clone();
    tokio::spawn(async move {
        let target = LocalDir(dir);
        let outcome = match task.engine.backup(&vault, now(), &target).await {
            Ok(m) => Ok((format!("{} objects backed up", m.len()), Some(folder_uri))),
            Err(e) => Err(failure(&e)),
        };
        if let Err((_, message)) = &outcome {
            tracing::warn!(vault, job, error = %message, "full backup failed");
        }
        task.finish(&job, outcome);
    });
    Ok(accepted(&ctx, &svc, &id, JobKind::Backup))
}

/// `POST /prebackup`: checks that a backup could be written there.
pub async fn pre_backup(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    JsonBody(body): JsonBody<BackupBody>,
) -> Result<Response, ApiError> {
    let svc = st.backup.clone();
    svc.resolve(&body.storage_resource_uri, None, false)?;
    let id = svc.start(JobKind::Backup, &ctx.vault);
    svc.finish(&id, Ok(("The storage target is usable".into(), None)));
    Ok(accepted(&ctx, &svc, &id, JobKind::Backup))
}

/// Runs a restore of `dir` into the request's vault in the background.
fn spawn_restore(st: &AkvState, ctx: &AkvCtx, dir: PathBuf, only_key: Option<String>) -> Response {
    let svc = st.backup.clone();
    let id = svc.start(JobKind::Restore, &ctx.vault);
    let (vault, job, request_id) = (ctx.vault.clone(), id.clone(), ctx.write_id("restore", &id));
    let task = svc.clone();
    tokio::spawn(async move {
        let target = LocalDir(dir);
        let done = task
            .engine
            .restore(&vault, &target, only_key.as_deref(), &request_id)
            .await;
        let outcome = match done {
            Ok(r) if r.failed.is_empty() => Ok((format!("{} objects restored", r.restored), None)),
            Ok(r) => Err((
                "RestoreFailed".to_owned(),
                format!(
                    "{} objects restored, {} not: {}",
                    r.restored,
                    r.failed.len(),
                    r.failed.join("; ")
                ),
            )),
            Err(e) => Err(failure(&e)),
        };
        if let Err((_, message)) = &outcome {
            tracing::warn!(vault, job, error = %message, "restore failed");
        }
        task.finish(&job, outcome);
    });
    accepted(ctx, &svc, &id, JobKind::Restore)
}

/// `PUT /restore`: every object of the folder back into the vault.
pub async fn restore(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    JsonBody(body): JsonBody<RestoreBody>,
) -> Result<Response, ApiError> {
    let dir = st.backup.resolve(
        &body.sas_token_parameters.storage_resource_uri,
        Some(&body.folder_to_restore),
        false,
    )?;
    Ok(spawn_restore(&st, &ctx, dir, None))
}

/// `PUT /prerestore`: checks that the folder is a backup this cluster reads.
pub async fn pre_restore(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    JsonBody(body): JsonBody<RestoreBody>,
) -> Result<Response, ApiError> {
    let svc = st.backup.clone();
    let dir = svc.resolve(
        &body.sas_token_parameters.storage_resource_uri,
        Some(&body.folder_to_restore),
        false,
    )?;
    let id = svc.start(JobKind::Restore, &ctx.vault);
    let outcome = match svc.engine.manifest(&LocalDir(dir)) {
        Ok(m) => Ok((format!("The folder holds {} objects", m.len()), None)),
        Err(e) => Err(failure(&e)),
    };
    svc.finish(&id, outcome);
    Ok(accepted(&ctx, &svc, &id, JobKind::Restore))
}

/// `PUT /keys/{name}/restore`: one key from a full backup's folder.
pub async fn restore_key(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
    JsonBody(body): JsonBody<KeyRestoreBody>,
) -> Result<Response, ApiError> {
    let dir = st.backup.resolve(
        &body.sas_token_parameters.storage_resource_uri,
        Some(&body.folder),
        false,
    )?;
    Ok(spawn_restore(&st, &ctx, dir, Some(name)))
}

fn status(st: &AkvState, ctx: &AkvCtx, id: &str, kind: JobKind) -> Result<Json<Value>, ApiError> {
    match st.backup.job(id, &ctx.vault, kind) {
        Some(job) => Ok(Json(status_body(id, &job))),
        None => Err(ApiError::with_status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("No job {id} on this node for this vault"),
        )),
    }
}

/// `GET /backup/{job}/pending`.
pub async fn backup_status(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(id): PathParams<String>,
) -> Result<Json<Value>, ApiError> {
    status(&st, &ctx, &id, JobKind::Backup)
}

/// `GET /restore/{job}/pending`.
pub async fn restore_status(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(id): PathParams<String>,
) -> Result<Json<Value>, ApiError> {
    status(&st, &ctx, &id, JobKind::Restore)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_dirs_take_plain_relative_names_only() {
        let dir = LocalDir(PathBuf::from("/backups/f"));
        assert_eq!(
            dir.path("keys/k1.blob").unwrap(),
            PathBuf::from("/backups/f/keys/k1.blob")
        );
        for bad in ["../x", "/etc/passwd", "keys/../../x", "", "a b"] {
            assert!(dir.path(bad).is_err(), "{bad}");
        }
    }
}
