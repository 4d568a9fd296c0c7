//! Request handlers. Each returns a finished response; failures go through
//! `ApiError` so every error has the same shape.

use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;
use serde_json::json;
use storehook_core::{percent_decode, AdapterError, IncomingRequest, LogSafe};
use storehook_db::{Source, Subscription};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

use crate::auth::{Access, Credentials};
use crate::body::{self, BodyLimits, BodyStream};
use crate::error::ApiError;
use crate::routes::Headers;
use crate::time_fmt::{rfc3339, rfc3339_opt};
use crate::{ingest, now_ms, AppState};

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
            // The id is signed by the store, not safe: it may hold a line break.
            tracing::info!(store, notification_id = %LogSafe(id), verdict, latency_ms, "notification")
        }
        Err(Refused { error: e, log }) => {
            state
                .metrics
                .notification_refused(store_label, &e.code, latency);
            // Anonymous traffic decides how often this runs: refusals are
            // logged once per store and reason per flush interval.
            if *log {
                tracing::info!(
                    store = %LogSafe(store_label),
                    verdict = "refused",
                    status = e.status.as_u16(),
                    code = %e.code,
                    latency_ms,
                    "notification"
                )
            }
        }
    }
    respond(result.map(|(r, _, _)| r).map_err(|r| r.error))
}

/// A refused notification, and whether it still needs its log line.
struct Refused {
    error: ApiError,
    log: bool,
}

impl From<ApiError> for Refused {
    fn from(error: ApiError) -> Self {
        // Unknown and disabled stores are not counted on any store's status;
        // they are not logged one by one either (the metric counts them).
        let log = error.status.is_server_error();
        Self { error, log }
    }
}

async fn receive(
    store: &str,
    state: &Arc<AppState>,
    headers: Headers,
    query: String,
    body: BodyStream,
) -> Result<(Response, &'static str, String), Refused> {
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
        )
        .into());
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
            )
            .into())
        }
    };

    let received_at_ms = now_ms();
    let limits = BodyLimits {
        max_bytes: state.max_body_bytes,
        deadline: state.body_timeout,
    };
    let held = match body::read(&headers, body, limits, &state.body_budget).await {
        Ok(body) => body,
        Err(e) if e.status.is_server_error() => return Err(e.into()),
        Err(e) => return Err(refusal(state, store, e, received_at_ms)),
    };
    let request = IncomingRequest {
        headers: headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect(),
        query: (!query.is_empty()).then_some(query),
        // The budget stays charged by `held` until the answer is sent.
        body: held.bytes.clone(),
        received_at_ms,
    };
    let _charged = held;

    match adapter.verify_and_decode(&request).await {
        Err(e) => {
            let error = ApiError::from(&e);
            if matches!(e, AdapterError::Unavailable { .. }) {
                return Err(error.into());
            }
            Err(refusal(state, store, error, received_at_ms))
        }
        Ok(outcome) => {
            // Only the allow-listed headers are kept (and so replayed by
            // forwards): never a credential such as a push token.
            let forward_headers = request
                .headers
                .iter()
                .filter(|(n, _)| state.forward_headers.contains(n.as_str()))
                .filter_map(|(n, v)| Some((n.clone(), String::from_utf8(v.clone()).ok()?)))
                .collect();
            let stored = ingest::store_outcome(
                state,
                store,
                outcome,
                request.body,
                forward_headers,
                received_at_ms,
                Source::Push,
            )
            .await
            .map_err(|e| Refused::from(ApiError::storage(&e)))?;
            let id = stored.notification_id;
            match stored.rejection {
                None => {
                    let verdict = stored.verdict.as_str();
                    let body = json!({ "status": "ok", "verdict": verdict, "notification_id": id });
                    Ok((json_response(StatusCode::OK, body), verdict, id))
                }
                // Acknowledged so the sender stops redelivering; the reason
                // is visible on the store's status.
                Some((code, message)) => {
                    let body = json!({ "status": "rejected", "error": code, "message": message, "notification_id": id });
                    Ok((json_response(StatusCode::OK, body), "rejected", id))
                }
            }
        }
    }
}

/// Counts a refused request on its store (in memory; see `refusals.rs`).
fn refusal(state: &AppState, store: &str, error: ApiError, at: i64) -> Refused {
    let log = state
        .refusals
        .record(store, &error.code, &error.message, at);
    Refused { error, log }
}

/// `GET /v1/stores`: with the admin token, every store's statistics;
/// without it, only what a health check needs (the store ids and whether
/// each is enabled), since counts reveal sales volume and messages describe
/// what senders tried.
pub(crate) async fn list_stores(state: Arc<AppState>, credentials: Credentials) -> Response {
    let presented = credentials.bearer.is_some() || credentials.session.is_some();
    if !presented {
        let stores: Vec<_> = state
            .registry
            .iter()
            .map(|entry| {
                json!({
                    "store": entry.registration.id,
                    "name": entry.registration.name,
                    "supported": entry.registration.supported,
                    "enabled": entry.enabled,
                })
            })
            .collect();
        return json_response(StatusCode::OK, json!({ "stores": stores }));
    }
    respond(
        async {
            require_admin(&state, &credentials)?;
            stores_json(&state)
                .await
                .map(|v| json_response(StatusCode::OK, v))
        }
        .await,
    )
}

/// `GET /v1/instances`: the storehook processes sharing the database, with
/// their heartbeats (one for an embedded database).
pub(crate) async fn list_instances(state: Arc<AppState>, credentials: Credentials) -> Response {
    respond(
        async {
            require_admin(&state, &credentials)?;
            let instances: Vec<_> = state
                .storage
                .instances()
                .await?
                .iter()
                .map(|i| {
                    json!({
                        "id": i.id,
                        "host": i.host,
                        "pid": i.pid,
                        "version": i.version,
                        "started_at": rfc3339(i.started_at_ms),
                        "last_seen": rfc3339(i.last_seen_ms),
                        "last_seen_ms": i.last_seen_ms,
                        "this": i.this,
                    })
                })
                .collect();
            Ok(json_response(
                StatusCode::OK,
                json!({ "instances": instances }),
            ))
        }
        .await,
    )
}

pub(crate) async fn stores_json(state: &AppState) -> Result<serde_json::Value, ApiError> {
    let stores: Vec<_> = crate::queries::store_overview(state)
        .await?
        .into_iter()
        .map(|store| {
            let r = store.registration;
            let s = &store.stats;
            json!({
                "store": r.id,
                "name": r.name,
                "supported": r.supported,
                "enabled": store.enabled,
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
                    "recovered": s.recovered,
                },
                "api": store.capabilities,
                "last_check": store.last_check.as_ref().map(crate::store_api::check_json),
                "check_running": store.running_check.is_some(),
                "stale": store.stale,
                "overdue": store.overdue.as_ref().map(|o| json!({
                    "count": o.count,
                    "oldest_subscription_id": o.oldest_subscription_id,
                    "oldest_due_at": rfc3339(o.oldest_due_ms),
                })),
                "acknowledgements": store.acknowledgements.as_ref().map(|a| json!({
                    "pending": a.pending,
                    "overdue": a.overdue,
                    "acknowledged": a.acknowledged,
                })),
                "latest_job": store.latest_job.as_ref().map(crate::store_api::job_json),
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
    headers: Headers,
    body: BodyStream,
) -> Response {
    respond(track(&state, &credentials, &headers, body).await)
}

/// The most a management request's body may hold.
const MANAGEMENT_BODY_BYTES: u64 = 64 * 1024;

async fn track(
    state: &AppState,
    credentials: &Credentials,
    headers: &Headers,
    body: BodyStream,
) -> Result<Response, ApiError> {
    // Authenticate first: an anonymous client never gets to send a body.
    require_admin_change(state, credentials)?;
    let limits = BodyLimits {
        max_bytes: MANAGEMENT_BODY_BYTES,
        deadline: state.body_timeout,
    };
    let body = body::read(headers, body, limits, &state.body_budget).await?;
    let req: TrackRequest = serde_json::from_slice(&body.bytes).map_err(|e| {
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
        .await?;
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
    let sub = crate::queries::subscription(state, store, key)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "not_tracked",
                format!("subscription {store}/{key} is not tracked"),
            )
        })?;
    let notifications = crate::queries::subscription_history(state, store, key, 200).await?;
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
                "source": n.source.as_str(),
            })
        })
        .collect();
    Ok(json_response(StatusCode::OK, body))
}

/// Admin routes that read: the bearer token or a dashboard session.
pub(crate) fn require_admin(state: &AppState, credentials: &Credentials) -> Result<(), ApiError> {
    state.auth.check(credentials, Access::Read)
}

/// Admin API routes that change state. A dashboard session must also come
/// from the dashboard's own pages and send JSON, which a cross-origin page
/// cannot do without a CORS preflight (never granted): a `text/plain`
/// no-cors POST from another port of the same host is refused.
pub(crate) fn require_admin_change(
    state: &AppState,
    credentials: &Credentials,
) -> Result<(), ApiError> {
    state.auth.check(credentials, Access::Change)?;
    if credentials.bearer.is_none() && !credentials.json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "json_required",
            "send Content-Type: application/json (or use the Bearer token)",
        ));
    }
    Ok(())
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
            let subs = crate::queries::subscriptions_of_user(&state, &user).await?;
            let list: Vec<_> = subs.iter().map(subscription_json).collect();
            Ok(json_response(
                StatusCode::OK,
                json!({ "app_user_id": user, "subscriptions": list }),
            ))
        }
        .await,
    )
}
