//! The route table. Handlers live in `handlers.rs`; errors become responses
//! in `error.rs`.

use std::sync::Arc;

use bytes::Buf;
use futures_util::{Stream, TryStreamExt};
use warp::http::HeaderMap;
use warp::{Filter, Reply};

use crate::auth::Credentials;
use crate::body::BodyStream;
use crate::error::recover;
use crate::store_api::api;
use crate::AppState;
use crate::{handlers, webhooks};

/// Which routes a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// One listener for everything (no `admin_listen`).
    All,
    /// The store endpoints, `/healthz` and the public part of `/v1/stores`.
    Public,
    /// The dashboard, the admin API, `/metrics`, `/healthz`.
    Admin,
}

type Routes = warp::filters::BoxedFilter<(warp::reply::Response,)>;

pub fn routes(state: Arc<AppState>, surface: Surface) -> Routes {
    let inner = match surface {
        Surface::All => public(state.clone(), false)
            .or(admin(state.clone()))
            .unify()
            .boxed(),
        Surface::Public => public(state.clone(), true),
        Surface::Admin => admin(state.clone()),
    };
    inner
        .recover(recover)
        .unify()
        .map(|r: warp::reply::Response| r.into_response())
        .with(warp::log::custom(move |info| {
            state
                .metrics
                .http_request(info.path(), info.status().as_u16(), info.elapsed())
        }))
        .map(Reply::into_response)
        .boxed()
}

fn body() -> impl Filter<Extract = (BodyStream,), Error = warp::Rejection> + Clone {
    warp::body::stream().map(|s| Box::pin(into_bytes_stream(s)) as BodyStream)
}

type Partial = warp::filters::BoxedFilter<(warp::reply::Response,)>;

/// What the stores (and health checks) reach. With the admin surface on
/// its own address, no credential is even looked at here.
fn public(state: Arc<AppState>, admin_elsewhere: bool) -> Partial {
    let with_state = {
        let state = state.clone();
        warp::any().map(move || state.clone())
    };
    let raw_query = warp::query::raw().or(warp::any().map(String::new)).unify();
    let notifications = warp::path!("v1" / "notifications" / String)
        .and(warp::post())
        .and(with_state.clone())
        .and(warp::header::headers_cloned())
        .and(raw_query)
        .and(body())
        .then(handlers::receive_notification);

    let stores = warp::path!("v1" / "stores")
        .and(warp::get())
        .and(with_state.clone())
        .and(state.auth.credentials().map(move |c| {
            if admin_elsewhere {
                Credentials::default()
            } else {
                c
            }
        }))
        .then(handlers::list_stores);

    notifications
        .or(stores)
        .unify()
        .or(healthz(state))
        .unify()
        .boxed()
}

fn healthz(
    state: Arc<AppState>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::path!("healthz")
        .and(warp::get())
        .and(warp::any().map(move || state.clone()))
        .then(handlers::healthz)
}

/// The operator's: the admin API, the dashboard, `/metrics`.
fn admin(state: Arc<AppState>) -> Partial {
    let with_state = {
        let state = state.clone();
        warp::any().map(move || state.clone())
    };

    // Open on the listen address, like most exporters (see metrics.rs).
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(with_state.clone())
        .map(|state: Arc<AppState>| crate::metrics::response(&state.metrics));

    let auth = state.auth.credentials();

    // The body is read only after the credentials are checked.
    let track = warp::path!("v1" / "subscriptions")
        .and(warp::post())
        .and(with_state.clone())
        .and(auth.clone())
        .and(warp::header::headers_cloned())
        .and(body())
        .then(handlers::track_subscription);

    let subscription = warp::path!("v1" / "subscriptions" / String / String)
        .and(warp::get())
        .and(with_state.clone())
        .and(auth.clone())
        .then(handlers::get_subscription);

    let subscriber = warp::path!("v1" / "subscribers" / String)
        .and(warp::get())
        .and(with_state.clone())
        .and(auth.clone())
        .then(handlers::get_subscriber);

    let query = warp::query::<std::collections::HashMap<String, String>>()
        .or(warp::any().map(std::collections::HashMap::new))
        .unify();
    let events = warp::path!("v1" / "events")
        .and(warp::get())
        .and(query)
        .and(with_state.clone())
        .and(auth.clone())
        .then(webhooks::list_events);
    let list_webhooks = warp::path!("v1" / "webhooks")
        .and(warp::get())
        .and(with_state.clone())
        .and(auth.clone())
        .then(webhooks::list_webhooks);
    let deliveries = warp::path!("v1" / "webhooks" / String / "deliveries")
        .and(warp::get())
        .and(query)
        .and(with_state.clone())
        .and(auth.clone())
        .then(webhooks::list_deliveries);
    let retry = warp::path!("v1" / "webhooks" / String / "deliveries" / i64 / "retry")
        .and(warp::post())
        .and(with_state.clone())
        .and(auth.clone())
        .then(webhooks::retry_delivery);
    let test_event = warp::path!("v1" / "webhooks" / String / "test")
        .and(warp::post())
        .and(with_state.clone())
        .and(auth.clone())
        .then(webhooks::send_test);

    let stores = warp::path!("v1" / "stores")
        .and(warp::get())
        .and(with_state.clone())
        .and(auth.clone())
        .then(handlers::list_stores);

    let instances = warp::path!("v1" / "instances")
        .and(warp::get())
        .and(with_state.clone())
        .and(auth.clone())
        .then(handlers::list_instances);

    // The pull side: connection checks, backfills and their jobs.
    let post_check = warp::path!("v1" / "stores" / String / "check")
        .and(warp::post())
        .and(with_state.clone())
        .and(auth.clone())
        .then(api::post_check);
    let get_check = warp::path!("v1" / "stores" / String / "check")
        .and(warp::get())
        .and(with_state.clone())
        .and(auth.clone())
        .then(api::get_check);
    let backfill = warp::path!("v1" / "stores" / String / "backfill")
        .and(warp::post())
        .and(with_state.clone())
        .and(auth.clone())
        .and(warp::header::headers_cloned())
        .and(body())
        .then(api::post_backfill);
    let jobs = warp::path!("v1" / "jobs")
        .and(warp::get())
        .and(query)
        .and(with_state.clone())
        .and(auth.clone())
        .then(api::list_jobs);
    let job = warp::path!("v1" / "jobs" / i64)
        .and(warp::get())
        .and(with_state.clone())
        .and(auth.clone())
        .then(api::get_job);
    let cancel = warp::path!("v1" / "jobs" / i64 / "cancel")
        .and(warp::post())
        .and(with_state.clone())
        .and(auth.clone())
        .then(api::post_cancel);
    let store_api = post_check
        .or(get_check)
        .unify()
        .or(backfill)
        .unify()
        .or(jobs)
        .unify()
        .or(job)
        .unify()
        .or(cancel)
        .unify()
        .boxed();

    metrics
        .or(stores)
        .unify()
        .or(instances)
        .unify()
        .or(healthz(state.clone()))
        .unify()
        .or(track)
        .unify()
        .or(subscription)
        .unify()
        .or(subscriber)
        .unify()
        .or(events)
        .unify()
        .or(list_webhooks)
        .unify()
        .or(deliveries)
        .unify()
        .or(retry)
        .unify()
        .or(test_event)
        .unify()
        .or(store_api)
        .unify()
        .or(crate::dashboard::routes(state.clone()))
        .unify()
        .boxed()
}

pub(crate) fn into_bytes_stream(
    s: impl Stream<Item = Result<impl Buf, warp::Error>> + Send + 'static,
) -> impl Stream<Item = Result<bytes::Bytes, String>> + Send + 'static {
    s.map_ok(|mut buf| buf.copy_to_bytes(buf.remaining()))
        .map_err(|e| e.to_string())
}

pub(crate) type Headers = HeaderMap;
