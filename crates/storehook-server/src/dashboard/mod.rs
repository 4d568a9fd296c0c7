//! The operator dashboard (`GET /`): embedded HTML/CSS/JS and its JSON calls.
//! Placeholder until the dashboard lands: it only claims `GET /`.

use std::sync::Arc;

use warp::Filter;

use crate::AppState;

pub(crate) fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let _ = state;
    warp::path::end().and(warp::get()).map(|| {
        use warp::Reply;
        warp::reply::html("<!doctype html><title>storehook</title><p>storehook is running.</p>").into_response()
    })
}
