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

/// One route: `method` on `path`, then each filter in `with` (what the
/// handler takes after the path's parameters), then `handler`. One line a
/// route keeps the tables below readable as tables.
macro_rules! route {
    ($method:ident $path:expr, $($with:expr),+ => $handler:expr) => {
        $path.and(warp::$method())$(.and($with))+.then($handler)
    };
}
pub(crate) use route;

/// The first of several routes that matches (`a.or(b).unify()…`).
macro_rules! first_of {
    ($first:expr $(, $rest:expr)* $(,)?) => {
        $first$(.or($rest).unify())*
    };
}
pub(crate) use first_of;

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

/// The request body as a stream, read as the handler consumes it.
pub(crate) fn body() -> impl Filter<Extract = (BodyStream,), Error = warp::Rejection> + Clone {
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

    first_of!(notifications, stores, healthz(state)).boxed()
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

    // What nearly every route takes: the state and who is asking. The body
    // is read only after the credentials are checked.
    let ctx = with_state.clone().and(state.auth.credentials());
    let headers = warp::header::headers_cloned;
    let query = warp::query::<std::collections::HashMap<String, String>>()
        .or(warp::any().map(std::collections::HashMap::new))
        .unify();

    let track = route!(post warp::path!("v1" / "subscriptions"), ctx.clone(), headers(), body() => handlers::track_subscription);
    let subscription = route!(get warp::path!("v1" / "subscriptions" / String / String), ctx.clone() => handlers::get_subscription);
    let subscriber = route!(get warp::path!("v1" / "subscribers" / String), ctx.clone() => handlers::get_subscriber);

    let events =
        route!(get warp::path!("v1" / "events"), query, ctx.clone() => webhooks::list_events);
    let list_webhooks =
        route!(get warp::path!("v1" / "webhooks"), ctx.clone() => webhooks::list_webhooks);
    let deliveries = route!(get warp::path!("v1" / "webhooks" / String / "deliveries"), query, ctx.clone() => webhooks::list_deliveries);
    let retry = route!(post warp::path!("v1" / "webhooks" / String / "deliveries" / i64 / "retry"), ctx.clone() => webhooks::retry_delivery);
    let test_event = route!(post warp::path!("v1" / "webhooks" / String / "test"), ctx.clone() => webhooks::send_test);

    let stores = route!(get warp::path!("v1" / "stores"), ctx.clone() => handlers::list_stores);
    let charts = route!(get warp::path!("v1" / "charts" / String), query, ctx.clone() => crate::charts::get_chart);

    let instances =
        route!(get warp::path!("v1" / "instances"), ctx.clone() => handlers::list_instances);

    // The pull side: connection checks, backfills and their jobs.
    let post_check = route!(post warp::path!("v1" / "stores" / String / "check"), ctx.clone() => api::post_check);
    let get_check =
        route!(get warp::path!("v1" / "stores" / String / "check"), ctx.clone() => api::get_check);
    let backfill = route!(post warp::path!("v1" / "stores" / String / "backfill"), ctx.clone(), headers(), body() => api::post_backfill);
    let jobs = route!(get warp::path!("v1" / "jobs"), query, ctx.clone() => api::list_jobs);
    let job = route!(get warp::path!("v1" / "jobs" / i64), ctx.clone() => api::get_job);
    let cancel =
        route!(post warp::path!("v1" / "jobs" / i64 / "cancel"), ctx.clone() => api::post_cancel);
    let store_api = first_of!(post_check, get_check, backfill, jobs, job, cancel).boxed();

    first_of!(
        metrics,
        stores,
        instances,
        healthz(state.clone()),
        track,
        subscription,
        subscriber,
        events,
        list_webhooks,
        deliveries,
        retry,
        test_event,
        store_api,
        charts,
        crate::dashboard::routes(state.clone()),
    )
    .boxed()
}

fn into_bytes_stream(
    s: impl Stream<Item = Result<impl Buf, warp::Error>> + Send + 'static,
) -> impl Stream<Item = Result<bytes::Bytes, String>> + Send + 'static {
    s.map_ok(|mut buf| buf.copy_to_bytes(buf.remaining()))
        .map_err(|e| e.to_string())
}

pub(crate) type Headers = HeaderMap;
