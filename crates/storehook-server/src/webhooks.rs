//! The outbox API (admin token): the event log, endpoint health, deliveries,
//! manual retry and test events.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use serde_json::json;
use storehook_db::EventFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

use crate::auth::Credentials;
use crate::delivery::redacted_url;
use crate::error::ApiError;
use crate::handlers::{require_admin, require_admin_change};
use crate::time_fmt::rfc3339_opt;
use crate::{now_ms, AppState};

fn json_response(status: StatusCode, value: serde_json::Value) -> Response {
    let mut r = warp::reply::json(&value).into_response();
    *r.status_mut() = status;
    r
}

/// Every handler's frame: `allowed` (the token's check, then the endpoint's)
/// before `body` runs; an error of either becomes its JSON response.
async fn answer(
    allowed: Result<(), ApiError>,
    body: impl Future<Output = Result<Response, ApiError>>,
) -> Response {
    let result = match allowed {
        Ok(()) => body.await,
        Err(e) => Err(e),
    };
    result.unwrap_or_else(|e| e.into_response())
}

/// `GET /v1/events?store=&type=&app_user_id=&after=&limit=`.
pub(crate) async fn list_events(
    query: HashMap<String, String>,
    state: Arc<AppState>,
    credentials: Credentials,
) -> Response {
    answer(require_admin(&state, &credentials), async {
        let number = |key: &str| -> Result<Option<i64>, ApiError> {
            query
                .get(key)
                .map(|v| {
                    v.parse::<i64>().map_err(|_| {
                        ApiError::bad_request("bad_query", format!("{key} must be a number"))
                    })
                })
                .transpose()
        };
        let limit = number("limit")?.unwrap_or(100).clamp(1, 1000) as u32;
        let filter = EventFilter {
            store: query.get("store").cloned(),
            event_type: query.get("type").map(|t| t.to_ascii_uppercase()),
            app_user_id: query.get("app_user_id").cloned(),
            after: number("after")?,
            limit,
        };
        let events = state.storage.events(filter).await?;
        let next = (events.len() as u32 == limit)
            .then(|| events.last().map(|e| e.seq))
            .flatten();
        let list: Vec<_> = events
            .iter()
            .map(|e| {
                let mut body = e.body.get("event").cloned().unwrap_or_default();
                body["cursor"] = json!(e.seq);
                body
            })
            .collect();
        Ok(json_response(
            StatusCode::OK,
            json!({ "events": list, "next_cursor": next }),
        ))
    })
    .await
}

/// `GET /v1/webhooks`.
pub(crate) async fn list_webhooks(state: Arc<AppState>, credentials: Credentials) -> Response {
    answer(require_admin(&state, &credentials), async {
        let list: Vec<_> = crate::queries::endpoints_with_stats(&state)
            .await?
            .into_iter()
            .map(|(ep, s)| {
                json!({
                    "name": ep.name,
                    "kind": ep.kind.as_str(),
                    "url": redacted_url(&ep.url),
                    "max_attempts": ep.max_attempts,
                    "pending": s.pending,
                    "delivered": s.delivered,
                    "dead": s.dead,
                    "last_success": rfc3339_opt(s.last_success_ms),
                    "last_failure": s.last_failure_ms.map(|at| json!({
                        "at": rfc3339_opt(Some(at)),
                        "status": s.last_failure_status,
                        "error": s.last_failure_error,
                        "body_excerpt": s.last_failure_response,
                    })),
                })
            })
            .collect();
        Ok(json_response(StatusCode::OK, json!({ "webhooks": list })))
    })
    .await
}

fn known_endpoint(state: &AppState, name: &str) -> Result<(), ApiError> {
    state.delivery.endpoint(name).map(|_| ()).ok_or_else(|| {
        ApiError::not_found(
            "unknown_webhook",
            format!("no webhook or forward named `{name}`"),
        )
    })
}

/// The token may change the outbox, and `name` is a webhook or forward.
fn may_change_endpoint(
    state: &AppState,
    credentials: &Credentials,
    name: &str,
) -> Result<(), ApiError> {
    require_admin_change(state, credentials)?;
    known_endpoint(state, name)
}

/// `GET /v1/webhooks/{name}/deliveries?status=&limit=`.
pub(crate) async fn list_deliveries(
    name: String,
    query: HashMap<String, String>,
    state: Arc<AppState>,
    credentials: Credentials,
) -> Response {
    answer(
        require_admin(&state, &credentials).and_then(|()| known_endpoint(&state, &name)),
        async {
            let status = query.get("status").map(String::as_str);
            if let Some(s) = status {
                if !matches!(s, "pending" | "delivered" | "dead") {
                    return Err(ApiError::bad_request(
                        "bad_query",
                        "status is pending, delivered or dead",
                    ));
                }
            }
            let limit = query
                .get("limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(100);
            let list = crate::queries::deliveries(&state, &name, status, limit).await?;
            let list: Vec<_> = list
                .iter()
                .map(|d| {
                    json!({
                        "id": d.id,
                        "kind": d.kind,
                        "event_id": d.event_id,
                        "status": d.status,
                        "attempts": d.attempts,
                        "next_attempt_at": rfc3339_opt(d.next_attempt_at_ms),
                        "created_at": rfc3339_opt(Some(d.created_at_ms)),
                        "delivered_at": rfc3339_opt(d.delivered_at_ms),
                        "last_status": d.last_status,
                        "last_error": d.last_error,
                        "history": d.history.iter().map(|a| json!({
                            "at": rfc3339_opt(Some(a.at_ms)),
                            "status": a.status_code,
                            "error": a.error,
                            "duration_ms": a.duration_ms,
                            "body_excerpt": a.response,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            Ok(json_response(StatusCode::OK, json!({ "deliveries": list })))
        },
    )
    .await
}

/// `POST /v1/webhooks/{name}/deliveries/{id}/retry`.
pub(crate) async fn retry_delivery(
    name: String,
    id: i64,
    state: Arc<AppState>,
    credentials: Credentials,
) -> Response {
    answer(may_change_endpoint(&state, &credentials, &name), async {
        let found = state.storage.retry_delivery(&name, id, now_ms()).await?;
        if !found {
            return Err(ApiError::not_found(
                "unknown_delivery",
                format!("no pending or dead delivery {id} for `{name}`"),
            ));
        }
        state.delivery.wake();
        Ok(json_response(
            StatusCode::ACCEPTED,
            json!({ "id": id, "status": "pending" }),
        ))
    })
    .await
}

/// `POST /v1/webhooks/{name}/test`: sends a TEST event now.
pub(crate) async fn send_test(
    name: String,
    state: Arc<AppState>,
    credentials: Credentials,
) -> Response {
    answer(may_change_endpoint(&state, &credentials, &name), async {
        let id = state.storage.enqueue_test_event(&name, now_ms()).await?;
        state.delivery.wake();
        Ok(json_response(
            StatusCode::ACCEPTED,
            json!({ "delivery_id": id, "status": "pending" }),
        ))
    })
    .await
}
