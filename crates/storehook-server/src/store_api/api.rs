//! The pull side's admin API: `/v1/stores/{store}/check`,
//! `/v1/stores/{store}/backfill`, `/v1/jobs`.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

use super::jobs::{job_json, BackfillRequest};
use crate::auth::Credentials;
use crate::body::{self, BodyLimits, BodyStream};
use crate::error::ApiError;
use crate::handlers::{require_admin, require_admin_change};
use crate::routes::Headers;
use crate::AppState;

/// The most a backfill request's body may hold.
const REQUEST_BODY_BYTES: u64 = 4096;

fn answer(result: Result<(StatusCode, Value), ApiError>) -> Response {
    match result {
        Ok((status, value)) => {
            let mut r = warp::reply::json(&value).into_response();
            *r.status_mut() = status;
            r
        }
        Err(e) => e.into_response(),
    }
}

/// Whether a route reads or changes (a change made with a session cookie
/// must also be same-origin JSON).
#[derive(Clone, Copy)]
enum Access {
    Read,
    Change,
}

/// Checks the credentials, then answers with `status` and what `work` made.
async fn guarded<F>(
    state: &AppState,
    credentials: &Credentials,
    access: Access,
    status: StatusCode,
    work: F,
) -> Response
where
    F: std::future::Future<Output = Result<Value, ApiError>>,
{
    let allowed = match access {
        Access::Read => require_admin(state, credentials),
        Access::Change => require_admin_change(state, credentials),
    };
    answer(match allowed {
        Ok(()) => work.await.map(|v| (status, v)),
        Err(e) => Err(e),
    })
}

/// `POST /v1/stores/{store}/check`: 202 with the check's status.
pub(crate) async fn post_check(
    store: String,
    state: Arc<AppState>,
    credentials: Credentials,
) -> Response {
    let work = super::start_check(&state, &store);
    guarded(
        &state,
        &credentials,
        Access::Change,
        StatusCode::ACCEPTED,
        work,
    )
    .await
}

/// `GET /v1/stores/{store}/check`.
pub(crate) async fn get_check(
    store: String,
    state: Arc<AppState>,
    credentials: Credentials,
) -> Response {
    let work = super::check_status(&state, &store);
    guarded(&state, &credentials, Access::Read, StatusCode::OK, work).await
}

/// `POST /v1/stores/{store}/backfill {"since", "until", "only_failures"}`.
pub(crate) async fn post_backfill(
    store: String,
    state: Arc<AppState>,
    credentials: Credentials,
    headers: Headers,
    body: BodyStream,
) -> Response {
    answer(
        async {
            // Authenticate first: an anonymous client never gets to send a body.
            require_admin_change(&state, &credentials)?;
            let limits = BodyLimits {
                max_bytes: REQUEST_BODY_BYTES,
                deadline: state.body_timeout,
            };
            let body = body::read(&headers, body, limits, &state.body_budget).await?;
            let request: BackfillRequest = serde_json::from_slice(&body.bytes).map_err(|e| {
                ApiError::bad_request(
                    "invalid_json",
                    format!("expected {{\"since\": \"10d\", \"until\"?, \"only_failures\"?}}: {e}"),
                )
            })?;
            Ok((
                StatusCode::ACCEPTED,
                super::create_backfill(&state, &store, request).await?,
            ))
        }
        .await,
    )
}

/// `GET /v1/jobs?store=&limit=`: newest first.
pub(crate) async fn list_jobs(
    query: HashMap<String, String>,
    state: Arc<AppState>,
    credentials: Credentials,
) -> Response {
    let work = async {
        let limit = query
            .get("limit")
            .and_then(|l| l.parse::<u32>().ok())
            .unwrap_or(50)
            .clamp(1, 500);
        let jobs = state
            .storage
            .jobs(query.get("store").map(String::as_str), limit)
            .await?;
        let jobs: Vec<_> = jobs.iter().map(job_json).collect();
        Ok(json!({ "jobs": jobs }))
    };
    guarded(&state, &credentials, Access::Read, StatusCode::OK, work).await
}

/// `GET /v1/jobs/{id}`.
pub(crate) async fn get_job(id: i64, state: Arc<AppState>, credentials: Credentials) -> Response {
    let work = async {
        let job = state
            .storage
            .job(id)
            .await?
            .ok_or_else(|| ApiError::not_found("unknown_job", format!("no job {id}")))?;
        Ok(job_json(&job))
    };
    guarded(&state, &credentials, Access::Read, StatusCode::OK, work).await
}

/// `POST /v1/jobs/{id}/cancel`.
pub(crate) async fn post_cancel(
    id: i64,
    state: Arc<AppState>,
    credentials: Credentials,
) -> Response {
    let work = super::cancel_job(&state, id);
    guarded(&state, &credentials, Access::Change, StatusCode::OK, work).await
}
