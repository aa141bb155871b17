//! `/v1/sys/audit/…`: the replicated trail, read from any node (root
//! token). `trail` pages the chain lines as stored, for `coffer audit
//! verify`; `query` filters records for `coffer audit query`.

use axum::extract::{Query as QueryParams, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::SysError;
use crate::engine::audit::{Query, Trail};

/// Lines per `trail` page at most.
const PAGE_MAX: usize = 5_000;

/// The audit routes (the caller layers authentication on).
pub fn router(trail: Trail) -> Router {
    Router::new()
        .route("/v1/sys/audit/trail", get(lines))
        .route("/v1/sys/audit/query", get(query))
        .with_state(trail)
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
}

fn unavailable(e: impl std::fmt::Display) -> SysError {
    SysError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the audit trail cannot be read: {e}"),
    )
}

/// `GET /v1/sys/audit/trail?after=N&limit=M`: `{"head", "checkpoint",
/// "lines": [...]}` (`checkpoint`: where the retained trail starts, null
/// when nothing was pruned).
async fn lines(
    State(trail): State<Trail>,
    QueryParams(page): QueryParams<Page>,
) -> Result<Json<Value>, SysError> {
    trail.fence().await.map_err(unavailable)?;
    let head = trail.head().map_err(unavailable)?;
    let checkpoint = trail.checkpoint().map_err(unavailable)?;
    let limit = page.limit.unwrap_or(PAGE_MAX).clamp(1, PAGE_MAX);
    let lines: Vec<String> = trail
        .lines(page.after, limit)
        .map_err(unavailable)?
        .into_iter()
        .map(|l| String::from_utf8_lossy(&l).into_owned())
        .collect();
    Ok(Json(
        json!({ "head": head, "checkpoint": checkpoint, "lines": lines }),
    ))
}

#[derive(Deserialize)]
struct QueryArgs {
    since: Option<String>,
    until: Option<String>,
    principal: Option<String>,
    operation: Option<String>,
    status: Option<String>,
    vault: Option<String>,
    #[serde(default)]
    after: u64,
}

/// `GET /v1/sys/audit/query?since&until&principal&operation&status&vault&after`:
/// `{"records": [...], "next": seq|null}` (scan on from `next`).
async fn query(
    State(trail): State<Trail>,
    QueryParams(args): QueryParams<QueryArgs>,
) -> Result<Json<Value>, SysError> {
    trail.fence().await.map_err(unavailable)?;
    let filter = Query {
        since: args.since,
        until: args.until,
        principal: args.principal,
        operation: args.operation,
        status: args.status,
        vault: args.vault,
    };
    let (records, last) = trail
        .query(&filter, args.after, PAGE_MAX)
        .map_err(unavailable)?;
    let head = trail.head().map_err(unavailable)?;
    let next = (last < head.seq).then_some(last);
    Ok(Json(json!({ "records": records, "next": next })))
}
