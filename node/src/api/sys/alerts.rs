//! `/v1/sys/alerts/…`: alert rules and receivers (replicated
//! configuration), dry runs and test notifications, and the firings with
//! the delivery state of each notification. Receivers are always shown
//! with their secrets redacted.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{bad_json, SysError};
use crate::alerts::Sender;
use crate::engine::alerts::{AlertsEngine, Firing, MonitorCondition, Receiver, ReceiverKind, Rule};
use crate::engine::clock::{now_ms, now_secs};

/// Firings listed at most.
const FIRINGS_MAX: usize = 1000;

/// What the alert routes need.
#[derive(Clone)]
pub struct AlertsState {
    /// Rules, receivers, firings.
    pub alerts: Arc<AlertsEngine>,
    /// Sends test notifications.
    pub sender: Sender,
}

/// The alert routes (the caller layers authentication on).
pub fn router(state: AlertsState) -> Router {
    Router::new()
        .route("/v1/sys/alerts/rules", get(list_rules))
        .route(
            "/v1/sys/alerts/rules/{name}",
            get(get_rule).put(put_rule).delete(delete_rule),
        )
        .route("/v1/sys/alerts/rules/{name}/test", post(test_rule))
        .route("/v1/sys/alerts/receivers", get(list_receivers))
        .route(
            "/v1/sys/alerts/receivers/{name}",
            get(get_receiver).put(put_receiver).delete(delete_receiver),
        )
        .route("/v1/sys/alerts/receivers/{name}/test", post(test_receiver))
        .route("/v1/sys/alerts/firings", get(list_firings))
        .route("/v1/sys/alerts/firings/{id}", get(get_firing))
        .with_state(state)
}

async fn list_rules(State(s): State<AlertsState>) -> Result<Json<Value>, SysError> {
    Ok(Json(json!({ "rules": s.alerts.rules().await? })))
}

async fn get_rule(
    State(s): State<AlertsState>,
    Path(name): Path<String>,
) -> Result<Json<Rule>, SysError> {
    Ok(Json(s.alerts.rule(&name).await?))
}

async fn put_rule(
    State(s): State<AlertsState>,
    Path(name): Path<String>,
    body: Result<Json<Rule>, JsonRejection>,
) -> Result<Json<Rule>, SysError> {
    let Json(mut rule) = body.map_err(bad_json)?;
    rule.name = name;
    Ok(Json(s.alerts.put_rule(rule).await?))
}

async fn delete_rule(
    State(s): State<AlertsState>,
    Path(name): Path<String>,
) -> Result<StatusCode, SysError> {
    s.alerts.delete_rule(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST …/rules/{name}/test`: what the rule counts in its window now,
/// per group, and which groups reach the threshold. Nothing fires.
async fn test_rule(
    State(s): State<AlertsState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, SysError> {
    let rule = s.alerts.rule(&name).await?;
    let groups: Vec<Value> = s
        .alerts
        .dry_run(&rule, now_ms())
        .await?
        .into_iter()
        .map(|(group, count, fires)| json!({ "group": group, "count": count, "fires": fires }))
        .collect();
    Ok(Json(json!({
        "rule": rule.name,
        "window_secs": rule.condition.window_secs,
        "threshold": rule.condition.threshold,
        "groups": groups,
    })))
}

async fn list_receivers(State(s): State<AlertsState>) -> Result<Json<Value>, SysError> {
    Ok(Json(json!({ "receivers": s.alerts.receivers().await? })))
}

async fn get_receiver(
    State(s): State<AlertsState>,
    Path(name): Path<String>,
) -> Result<Json<Receiver>, SysError> {
    Ok(Json(s.alerts.receiver_shown(&name).await?))
}

async fn put_receiver(
    State(s): State<AlertsState>,
    Path(name): Path<String>,
    body: Result<Json<Receiver>, JsonRejection>,
) -> Result<Json<Receiver>, SysError> {
    let Json(mut receiver) = body.map_err(bad_json)?;
    receiver.name = name;
    Ok(Json(s.alerts.put_receiver(receiver).await?))
}

async fn delete_receiver(
    State(s): State<AlertsState>,
    Path(name): Path<String>,
) -> Result<StatusCode, SysError> {
    s.alerts.delete_receiver(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST …/receivers/{name}/test`: sends a test notification from this
/// node now (not recorded as a firing); 502 with the reason when the
/// receiver did not take it.
async fn test_receiver(
    State(s): State<AlertsState>,
    Path(name): Path<String>,
) -> Result<Response, SysError> {
    let _ = s.alerts.receiver_shown(&name).await?;
    let receiver = s.alerts.receiver(&name)?;
    let firing = test_firing(&name);
    // An Event Grid subscriber gets the validation handshake first, as
    // before any event (not recorded: the leader's first delivery does).
    let validated = match receiver.kind {
        ReceiverKind::EventGrid { .. } => s.sender.validate_subscription(&receiver).await,
        _ => Ok(()),
    };
    let sent = match validated {
        Ok(()) => {
            s.sender
                .send(&receiver, &firing, MonitorCondition::Fired)
                .await
        }
        Err(e) => Err(e),
    };
    match sent {
        Ok(()) => Ok(
            Json(json!({ "receiver": name, "delivered": true, "alert_id": firing.id }))
                .into_response(),
        ),
        Err(e) => Err(SysError::new(
            StatusCode::BAD_GATEWAY,
            format!("receiver {name} did not take the test notification: {e}"),
        )),
    }
}

/// A synthetic firing for a receiver test.
fn test_firing(receiver: &str) -> Firing {
    let now = crate::engine::audit::record::now();
    Firing {
        id: format!("test-{}", uuid::Uuid::new_v4().simple()),
        rule: "coffer-receiver-test".into(),
        description: format!("Test notification to receiver {receiver}"),
        severity: 4,
        signal: crate::engine::alerts::Signal::Any,
        group_by: crate::engine::alerts::GroupBy::None,
        group: "*".into(),
        threshold: 1,
        window_secs: 60,
        count: 1,
        requests: None,
        fired_seq: 0,
        fired_at: now.clone(),
        window_start: now,
        state: MonitorCondition::Fired,
        resolved_at: None,
        deliveries: vec![crate::engine::alerts::Delivery::pending(
            receiver,
            MonitorCondition::Fired,
            now_secs(),
        )],
        event: None,
    }
}

#[derive(Deserialize)]
struct FiringArgs {
    rule: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/sys/alerts/firings?rule&limit`: newest first.
async fn list_firings(
    State(s): State<AlertsState>,
    Query(args): Query<FiringArgs>,
) -> Result<Json<Value>, SysError> {
    let limit = args.limit.unwrap_or(100).clamp(1, FIRINGS_MAX);
    Ok(Json(json!({
        "firings": s.alerts.firings(args.rule.as_deref(), limit).await?
    })))
}

async fn get_firing(
    State(s): State<AlertsState>,
    Path(id): Path<String>,
) -> Result<Json<Firing>, SysError> {
    Ok(Json(s.alerts.firing(&id).await?))
}
