//! Request handlers. Each returns a finished response; failures go through
//! `ApiError` so every error has the same shape.

use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;
use storehook_core::{percent_decode, AdapterError, IncomingRequest, Outcome};
use storehook_db::{NewNotification, RejectedNotification, Subscription};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

use crate::auth::{self, Credentials};
use crate::error::ApiError;
use crate::routes::Headers;
use crate::time_fmt::{rfc3339, rfc3339_opt};
use crate::{fetch, now_ms, AppState};

pub(crate) type BodyStream = Pin<Box<dyn Stream<Item = Result<bytes::Bytes, String>> + Send>>;

fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(|e| e.into_response())
}

fn json_response(status: StatusCode, value: serde_json::Value) -> Response {
    let mut r = warp::reply::json(&value).into_response();
    *r.status_mut() = status;
    r
}

/// `POST /v1/notifications/{store}`.
pub(crate) async fn receive_notification(
    store: String,
    state: Arc<AppState>,
    headers: Headers,
    query: String,
    body: BodyStream,
) -> Response {
    let started = Instant::now();
    let result = receive(&store, &state, headers, query, body).await;
    let latency = started.elapsed();
    let latency_ms = latency.as_secs_f64() * 1000.0;
    // Only registered ids become metric labels: the path is the sender's choice.
    let store_label = if state.registry.get(&store).is_some() {
        store.as_str()
    } else {
        "unknown"
    };
    match &result {
        Ok((_, verdict, id)) => {
            state.metrics.notification(store_label, verdict, latency);
            tracing::info!(store, notification_id = %id, verdict, latency_ms, "notification")
        }
        Err(e) => {
            state
                .metrics
                .notification_refused(store_label, &e.code, latency);
            tracing::info!(
                store,
                verdict = "refused",
                status = e.status.as_u16(),
                code = %e.code,
                latency_ms,
                "notification"
            )
        }
    }
    respond(result.map(|(r, _, _)| r))
}

async fn receive(
    store: &str,
    state: &Arc<AppState>,
    headers: Headers,
    query: String,
    body: BodyStream,
) -> Result<(Response, &'static str, String), ApiError> {
    let entry = state.registry.get(store).ok_or_else(|| {
        ApiError::not_found(
            "unknown_store",
            format!("no store with id `{store}` is registered"),
        )
    })?;
    let registration = entry.registration;
    if !registration.supported {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "unsupported_store",
            format!(
                "{} notifications are not supported yet by this version of storehook; nothing was stored",
                registration.name
            ),
        ));
    }
    let adapter = match (&entry.adapter, entry.enabled) {
        (Some(adapter), true) => adapter.clone(),
        _ => {
            return Err(ApiError::not_found(
                "store_disabled",
                format!(
                    "{} is not enabled on this server; set [stores.{}] enabled = true",
                    registration.name, registration.id
                ),
            ))
        }
    };

    let received_at_ms = now_ms();
    let body = match read_body(&headers, body, state).await {
        Ok(body) => body,
        Err(e) => {
            record_refusal(state, store, &e, received_at_ms).await;
            return Err(e);
        }
    };
    let request = IncomingRequest {
        headers: headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect(),
        query: (!query.is_empty()).then_some(query),
        body,
        received_at_ms,
    };

    match adapter.verify_and_decode(&request).await {
        Err(e) => {
            let error = ApiError::from(&e);
            if !matches!(e, AdapterError::Unavailable { .. }) {
                record_refusal(state, store, &error, received_at_ms).await;
            }
            Err(error)
        }
        Ok(Outcome::Notification(mut notification)) => {
            // The route decides the store, whatever the adapter wrote.
            notification.store = store.to_owned();
            let fetch = notification
                .state_fetch_pending
                .then(|| notification.subscription_key.clone())
                .flatten()
                .map(|key| (key, notification.app_id.clone()));
            let id = notification.notification_id.clone();
            let recorded = state
                .storage
                .record_notification(NewNotification {
                    notification: *notification,
                    raw_body: request.body,
                    received_at_ms,
                    auto_track: state.auto_track,
                    forward_headers: request
                        .headers
                        .iter()
                        .filter_map(|(n, v)| Some((n.clone(), String::from_utf8(v.clone()).ok()?)))
                        .collect(),
                })
                .await
                .map_err(|e| ApiError::storage(&e))?;
            if let Some((key, app_id)) = fetch {
                if recorded.verdict != storehook_db::Verdict::Duplicate {
                    fetch::schedule(state.clone(), store.to_owned(), key, app_id);
                }
            }
            if recorded.verdict != storehook_db::Verdict::Duplicate {
                state.delivery.wake();
            }
            let verdict = recorded.verdict.as_str();
            let body = json!({ "status": "ok", "verdict": verdict, "notification_id": id });
            Ok((json_response(StatusCode::OK, body), verdict, id))
        }
        Ok(Outcome::AcknowledgedRejection {
            notification_id,
            code,
            message,
        }) => {
            let id = notification_id.unwrap_or_else(|| body_fingerprint(&request.body));
            state
                .storage
                .record_rejected_notification(RejectedNotification {
                    store: store.to_owned(),
                    notification_id: id.clone(),
                    code: code.clone(),
                    message: message.clone(),
                    raw_body: request.body,
                    received_at_ms,
                })
                .await
                .map_err(|e| ApiError::storage(&e))?;
            // Acknowledged so the sender stops redelivering; the reason is
            // visible on the store's status.
            let body = json!({ "status": "rejected", "error": code, "message": message, "notification_id": id });
            Ok((json_response(StatusCode::OK, body), "rejected", id))
        }
    }
}

/// Reads the body up to the configured limit and within the body timeout.
async fn read_body(
    headers: &Headers,
    mut body: BodyStream,
    state: &AppState,
) -> Result<Vec<u8>, ApiError> {
    let limit = state.max_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body exceeds the limit of {limit} bytes ([server] max_body_bytes)"),
        )
    };
    let declared = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let collect = async {
        let mut buf = Vec::with_capacity(declared.unwrap_or(4096).min(limit) as usize);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::bad_request("bad_body", format!("cannot read the body: {e}"))
            })?;
            if buf.len() as u64 + chunk.len() as u64 > limit {
                return Err(too_large());
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf)
    };
    tokio::time::timeout(state.body_timeout, collect)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "the body did not arrive in time",
            )
        })?
}

/// Counts a refused request on its store so the operator sees it.
async fn record_refusal(state: &AppState, store: &str, e: &ApiError, at: i64) {
    if let Err(db) = state
        .storage
        .record_rejection(store, &e.code, &e.message, at)
        .await
    {
        tracing::error!(error = %db, "cannot record a rejection");
    }
}

/// A stable id for an acknowledged rejection that carries none.
fn body_fingerprint(body: &[u8]) -> String {
    // SipHash with fixed keys: stable across restarts, so a redelivery of the
    // same bytes is recognised as a duplicate. Not a security boundary.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut h);
    format!("body-{:016x}-{}", h.finish(), body.len())
}

/// `GET /v1/stores`.
pub(crate) async fn list_stores(state: Arc<AppState>) -> Response {
    respond(
        stores_json(&state)
            .await
            .map(|v| json_response(StatusCode::OK, v)),
    )
}

pub(crate) async fn stores_json(state: &AppState) -> Result<serde_json::Value, ApiError> {
    let stats = state
        .storage
        .store_stats()
        .await
        .map_err(|e| ApiError::storage(&e))?;
    let stores: Vec<_> = state
        .registry
        .iter()
        .map(|entry| {
            let r = entry.registration;
            let s = stats
                .iter()
                .find(|s| s.store == r.id)
                .cloned()
                .unwrap_or_default();
            json!({
                "store": r.id,
                "name": r.name,
                "supported": r.supported,
                "enabled": entry.enabled,
                "last_received": rfc3339_opt(s.last_received_ms),
                "last_verified": rfc3339_opt(s.last_verified_ms),
                "last_rejected": rfc3339_opt(s.last_rejected_ms),
                "last_rejection_reason": s.last_rejection_reason,
                "last_rejection_message": s.last_rejection_message,
                "counts": {
                    "accepted": s.accepted,
                    "untracked": s.untracked,
                    "duplicates": s.duplicates,
                    "rejected": s.rejected,
                },
            })
        })
        .collect();
    Ok(json!({ "stores": stores }))
}

/// `GET /healthz`.
pub(crate) async fn healthz(state: Arc<AppState>) -> Response {
    match state.storage.ping().await {
        Ok(()) => json_response(StatusCode::OK, json!({ "status": "ok" })),
        Err(e) => {
            tracing::error!(error = %e, "health check failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "the database does not answer",
            )
            .into_response()
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrackRequest {
    store: String,
    subscription_id: String,
    #[serde(default)]
    app_user_id: Option<String>,
}

/// `POST /v1/subscriptions`.
pub(crate) async fn track_subscription(
    state: Arc<AppState>,
    credentials: Credentials,
    body: bytes::Bytes,
) -> Response {
    respond(track(&state, &credentials, &body).await)
}

async fn track(
    state: &AppState,
    credentials: &Credentials,
    body: &[u8],
) -> Result<Response, ApiError> {
    require_admin(state, credentials)?;
    let req: TrackRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("expected {{\"store\", \"subscription_id\", \"app_user_id\"}}: {e}"),
        )
    })?;
    let entry = state.registry.get(&req.store).ok_or_else(|| {
        ApiError::not_found("unknown_store", format!("no store with id `{}`", req.store))
    })?;
    if !entry.registration.supported {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "unsupported_store",
            format!("{} is not supported yet", entry.registration.name),
        ));
    }
    if req.subscription_id.is_empty() || req.subscription_id.len() > 512 {
        return Err(ApiError::bad_request(
            "invalid_subscription_id",
            "subscription_id must be 1 to 512 characters",
        ));
    }
    if req
        .app_user_id
        .as_ref()
        .is_some_and(|u| u.is_empty() || u.len() > 512)
    {
        return Err(ApiError::bad_request(
            "invalid_app_user_id",
            "app_user_id must be 1 to 512 characters",
        ));
    }
    let tracked = state
        .storage
        .track(
            &req.store,
            &req.subscription_id,
            req.app_user_id.as_deref(),
            now_ms(),
        )
        .await
        .map_err(|e| ApiError::storage(&e))?;
    if tracked.created {
        // Adopted notifications may have produced events.
        state.delivery.wake();
    }
    let status = if tracked.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json_response(
        status,
        subscription_json(&tracked.subscription),
    ))
}

pub(crate) fn subscription_json(s: &Subscription) -> serde_json::Value {
    json!({
        "store": s.store,
        "subscription_id": s.subscription_id,
        "app_user_id": s.app_user_id,
        "environment": s.environment,
        "product_id": s.product_id,
        "status": s.status,
        "expires_at": rfc3339_opt(s.expires_at_ms),
        "auto_renew": s.auto_renew,
        "last_event": s.last_event_type.map(|t| json!({
            "type": t,
            "at": rfc3339_opt(s.last_event_at_ms),
        })),
        "continues_subscription_id": s.continues_subscription_id,
        "state_pending": s.state_pending,
        "attention": s.attention,
        "tracked_since": rfc3339(s.created_at_ms),
        "updated_at": rfc3339(s.updated_at_ms),
    })
}

/// `GET /v1/subscriptions/{store}/{subscription_id}`.
pub(crate) async fn get_subscription(
    store: String,
    key: String,
    state: Arc<AppState>,
    credentials: Credentials,
) -> Response {
    respond(
        subscription_view(
            &state,
            &credentials,
            &path_segment(&store),
            &path_segment(&key),
        )
        .await,
    )
}

async fn subscription_view(
    state: &AppState,
    credentials: &Credentials,
    store: &str,
    key: &str,
) -> Result<Response, ApiError> {
    require_admin(state, credentials)?;
    let sub = state
        .storage
        .subscription(store, key)
        .await
        .map_err(|e| ApiError::storage(&e))?
        .ok_or_else(|| {
            ApiError::not_found(
                "not_tracked",
                format!("subscription {store}/{key} is not tracked"),
            )
        })?;
    let notifications = state
        .storage
        .subscription_notifications(store, key, 200)
        .await
        .map_err(|e| ApiError::storage(&e))?;
    let mut body = subscription_json(&sub);
    body["notifications"] = notifications
        .iter()
        .map(|n| {
            json!({
                "id": n.id,
                "notification_id": n.notification_id,
                "subscription_id": n.subscription_id,
                "type": n.event_type,
                "raw_type": n.raw_type,
                "verdict": n.verdict,
                "environment": n.environment,
                "occurred_at": rfc3339_opt(n.occurred_at_ms),
                "received_at": rfc3339(n.received_at_ms),
                "state": n.state,
                "attention": n.attention,
            })
        })
        .collect();
    Ok(json_response(StatusCode::OK, body))
}

/// Admin routes: the bearer token or the dashboard session.
pub(crate) fn require_admin(state: &AppState, credentials: &Credentials) -> Result<(), ApiError> {
    auth::require_admin(state.admin_token.as_deref(), credentials)
}

/// Decodes a URL path segment (`+` is a literal plus in a path).
fn path_segment(raw: &str) -> String {
    percent_decode(&raw.replace('+', "%2B"))
}

/// `GET /v1/subscribers/{app_user_id}`.
pub(crate) async fn get_subscriber(
    user: String,
    state: Arc<AppState>,
    credentials: Credentials,
) -> Response {
    let user = path_segment(&user);
    respond(
        async {
            require_admin(&state, &credentials)?;
            let subs = state
                .storage
                .subscriptions_of_user(&user)
                .await
                .map_err(|e| ApiError::storage(&e))?;
            let list: Vec<_> = subs.iter().map(subscription_json).collect();
            Ok(json_response(
                StatusCode::OK,
                json!({ "app_user_id": user, "subscriptions": list }),
            ))
        }
        .await,
    )
}
