//! The operator dashboard: `GET /` and `/dashboard/…`, server-rendered HTML
//! with its CSS and a little JavaScript embedded in the binary (no CDN;
//! works offline; readable without scripts — the script only refreshes the
//! live part of the overview).
//!
//! Access needs the admin token, either as `Authorization: Bearer` or as the
//! session cookie the sign-in form sets (HttpOnly, SameSite=Strict). Without
//! either, every page shows the sign-in form and no data. The POST forms
//! also refuse cross-origin requests (Origin / Sec-Fetch-Site), on top of
//! SameSite=Strict.
//!
//! Pages are maud templates, so every value is escaped by construction.
//! The data comes from `crate::queries`, as the JSON API's does; what a
//! page says about a store comes from its registration.
//!
//! Files: `html.rs` (times, page frame), `views.rs` (the views), `mask.rs`
//! (secrets in decoded payloads), `assets/` (CSS, JS, icon).

mod chart_svg;
mod charts_page;
mod html;
mod mask;
mod views;

use std::collections::HashMap;
use std::sync::Arc;

use maud::{html, Markup};
use storehook_core::{percent_decode, StoreHelp};
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::auth::{self, Credentials, SESSION_COOKIE};
use crate::error::ApiError;
use crate::routes::{body, first_of, route};
use crate::{now_ms, queries, AppState};
use html::Frame;
use views::StoreView;

const APP_CSS: &str = include_str!("assets/app.css");
const APP_JS: &str = include_str!("assets/app.js");
const ICON_SVG: &str = include_str!("assets/icon.svg");

/// How many notifications the overview lists.
const RECENT_LIMIT: u32 = 50;
/// Default seconds between refreshes of the overview's live part.
const DEFAULT_REFRESH_SECONDS: u64 = 5;

pub(crate) fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let credentials = state.auth.credentials();
    let with_state = warp::any().map(move || state.clone());
    let headers = warp::header::headers_cloned();
    let query = warp::query::<HashMap<String, String>>();
    // What nearly every route takes: the state and who is asking.
    let ctx = with_state.clone().and(credentials.clone());

    let overview = route!(get warp::path::end(), ctx.clone(), headers, query => overview_page);
    let live = route!(get warp::path!("dashboard" / "live"), ctx.clone(), headers => live_part);
    let detail = route!(get warp::path!("dashboard" / "notifications" / i64), ctx.clone() => notification_page);
    let lookup =
        route!(get warp::path!("dashboard" / "subscriptions"), ctx.clone(), query => lookup_page);
    let charts = route!(get warp::path!("dashboard" / "charts"), ctx.clone(), query => charts_page);

    let login =
        route!(post warp::path!("dashboard" / "login"), ctx.clone(), headers, body() => sign_in);
    // The first run's console link: a one-time code for a session.
    let login_link = warp::path!("dashboard" / "login")
        .and(warp::get())
        .and(with_state.clone())
        .and(headers)
        .and(query)
        .map(sign_in_with_code);
    let logout = warp::path!("dashboard" / "logout")
        .and(warp::post())
        .and(ctx.clone())
        .and(headers)
        .map(sign_out);

    let retry = route!(post warp::path!("dashboard" / "webhooks" / String / "deliveries" / i64 / "retry"), ctx.clone() => retry_delivery);
    let test_event = route!(post warp::path!("dashboard" / "webhooks" / String / "test"), ctx.clone() => send_test_event);
    let check = route!(post warp::path!("dashboard" / "stores" / String / "check"), ctx.clone() => check_connection);
    let backfill = route!(post warp::path!("dashboard" / "stores" / String / "backfill"), ctx.clone(), headers, body() => start_backfill);
    let cancel =
        route!(post warp::path!("dashboard" / "jobs" / i64 / "cancel"), ctx.clone() => cancel_job);

    let assets = warp::path!("dashboard" / "assets" / String)
        .and(warp::get())
        .map(asset);

    first_of!(
        overview, live, detail, lookup, charts, login, login_link, logout, retry, test_event,
        check, backfill, cancel, assets,
    )
}

// ---- responses ----

/// An HTML response with the dashboard's security headers: scripts, styles
/// and requests only from this origin; no framing; no caching of data.
fn html_response(status: StatusCode, body: Markup) -> Response {
    let mut r = warp::reply::html(body.into_string()).into_response();
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    r
}

/// The sign-in form (`views::login`) as a page.
fn sign_in_page(
    status: StatusCode,
    message: Option<&str>,
    next: &str,
    admin_configured: bool,
) -> Response {
    page(
        status,
        "Sign in",
        "",
        false,
        views::login(message, next, admin_configured),
    )
}

fn page(status: StatusCode, title: &str, section: &str, signed_in: bool, body: Markup) -> Response {
    html_response(
        status,
        html::page(
            &Frame {
                title,
                signed_in,
                section,
            },
            body,
        ),
    )
}

fn error_page(e: &ApiError) -> Response {
    page(
        e.status,
        "Error",
        "",
        true,
        html! { section { h2 { "Something went wrong" } p { (e.message) } } },
    )
}

fn redirect(to: &str) -> Response {
    let mut r = warp::reply::reply().into_response();
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert("location", v);
    }
    r
}

// ---- access ----

/// `None` when the request may see data; otherwise the sign-in page (401),
/// or a closed page (403) when no admin token is configured.
fn denied(state: &AppState, credentials: &Credentials, next: &str) -> Option<Response> {
    match crate::handlers::require_admin(state, credentials) {
        Ok(()) => None,
        Err(e) => {
            let configured = e.status != StatusCode::FORBIDDEN;
            let status = if configured {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::FORBIDDEN
            };
            let message = credentials
                .session
                .as_ref()
                .map(|_| "Your session has ended (the admin token changed?). Sign in again.");
            Some(sign_in_page(status, message, next, configured))
        }
    }
}

/// Whether the browser reaches us over HTTPS (then the cookie is `Secure`).
fn over_https(state: &AppState, headers: &HeaderMap) -> bool {
    state
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"))
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// The value of one `application/x-www-form-urlencoded` field.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    std::str::from_utf8(body).ok()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(&v.replace('+', " ")))
    })
}

/// Where to go after signing in: a local path only (no open redirect).
fn local_path(next: Option<String>) -> String {
    next.filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.contains('\\'))
        .filter(|n| n.bytes().all(|b| (0x21..0x7f).contains(&b)))
        .unwrap_or_else(|| "/".to_owned())
}

/// The most a dashboard form's body (sign-in, Recover) may hold.
const FORM_BODY_BYTES: u64 = 8 * 1024;

/// A dashboard form's body, within the form limits.
async fn read_form(
    state: &AppState,
    headers: &HeaderMap,
    body: crate::body::BodyStream,
) -> Result<Vec<u8>, Box<Response>> {
    let limits = crate::body::BodyLimits {
        max_bytes: FORM_BODY_BYTES,
        deadline: state.body_timeout,
    };
    match crate::body::read(headers, body, limits, &state.body_budget).await {
        Ok(body) => Ok(body.bytes),
        Err(e) => Err(Box::new(e.into_response())),
    }
}

/// `POST /dashboard/login`.
async fn sign_in(
    state: Arc<AppState>,
    credentials: Credentials,
    headers: HeaderMap,
    body: crate::body::BodyStream,
) -> Response {
    let body = match read_form(&state, &headers, body).await {
        Ok(body) => body,
        Err(refused) => return *refused,
    };
    let next = local_path(form_field(&body, "next"));
    if !credentials.same_origin {
        return sign_in_page(
            StatusCode::FORBIDDEN,
            Some("Cross-site sign-in refused."),
            &next,
            true,
        );
    }
    let given = form_field(&body, "token").unwrap_or_default();
    let session = match state.auth.sign_in(credentials.client, &given) {
        Ok(session) => session,
        Err(auth::SignInError::Disabled) => {
            return sign_in_page(StatusCode::FORBIDDEN, None, &next, false)
        }
        Err(auth::SignInError::Wrong) => {
            // A pause slows a single guesser; the per-address throttle
            // stops parallel ones.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            return sign_in_page(
                StatusCode::UNAUTHORIZED,
                Some("That is not the admin token."),
                &next,
                true,
            );
        }
        Err(auth::SignInError::Throttled(wait)) => {
            let seconds = wait.as_secs().max(1);
            let mut r = sign_in_page(
                StatusCode::TOO_MANY_REQUESTS,
                Some(&format!(
                    "Too many wrong tokens from this address. Try again in {seconds} s."
                )),
                &next,
                true,
            );
            r.headers_mut()
                .insert("retry-after", HeaderValue::from(seconds));
            return r;
        }
    };
    signed_in(&state, &headers, &session, &next)
}

/// A redirect to `next` that sets the session cookie.
fn signed_in(state: &AppState, headers: &HeaderMap, session: &str, next: &str) -> Response {
    let mut r = redirect(next);
    let cookie = format!(
        "{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        state.auth.session_max_age().as_secs(),
        if over_https(state, headers) {
            "; Secure"
        } else {
            ""
        }
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert("set-cookie", v);
    }
    r
}

/// `GET /dashboard/login?code=…`: the first run's one-time link. The page
/// is a redirect with a cookie; without a usable code, the sign-in form.
fn sign_in_with_code(
    state: Arc<AppState>,
    headers: HeaderMap,
    query: HashMap<String, String>,
) -> Response {
    let code = query.get("code").map(String::as_str).unwrap_or_default();
    match state.auth.redeem_sign_in_code(code) {
        Some(session) => signed_in(&state, &headers, &session, "/"),
        None => sign_in_page(
            StatusCode::UNAUTHORIZED,
            Some(
                "This sign-in link has been used or has expired. Sign in with the admin token \
                 (`storehook admin-token` prints it).",
            ),
            "/",
            state.auth.configured(),
        ),
    }
}

/// `POST /dashboard/logout`: the session ends on the server too.
fn sign_out(state: Arc<AppState>, credentials: Credentials, headers: HeaderMap) -> Response {
    if !credentials.same_origin {
        return html_response(
            StatusCode::FORBIDDEN,
            html! { "cross-site request refused" },
        );
    }
    if let Some(session) = &credentials.session {
        state.auth.sign_out(session);
    }
    let mut r = redirect("/");
    let cookie = format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if over_https(&state, &headers) {
            "; Secure"
        } else {
            ""
        }
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert("set-cookie", v);
    }
    r
}

// ---- data ----

/// The address stores reach this server at: `[server] public_url`, or this
/// request's own scheme and Host. The flag says which.
fn public_base(state: &AppState, headers: &HeaderMap) -> (String, bool) {
    if let Some(url) = state.public_url.as_deref().filter(|u| !u.is_empty()) {
        return (url.trim_end_matches('/').to_owned(), true);
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let host = header("host")
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        })
        .unwrap_or("localhost");
    let scheme = match header("x-forwarded-proto") {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    (format!("{scheme}://{host}"), false)
}

fn store_name(state: &AppState, id: &str) -> String {
    state
        .registry
        .get(id)
        .map(|e| e.registration.name.to_owned())
        .unwrap_or_else(|| id.to_owned())
}

/// The plugin's help for a store id (generic for one no longer registered).
fn store_help(state: &AppState, id: &str) -> &'static StoreHelp {
    state
        .registry
        .get(id)
        .map_or(&StoreHelp::DEFAULT, |e| &e.registration.help)
}

/// The overview's live part (store cards and recent notifications).
async fn render_live(state: &AppState, headers: &HeaderMap) -> Result<Markup, ApiError> {
    let overview = queries::store_overview(state).await?;
    let recent = queries::recent_notifications(state, RECENT_LIMIT).await?;
    let endpoints = endpoint_views(state).await?;
    let (base, configured) = public_base(state, headers);
    let mut trends = Vec::with_capacity(overview.len());
    for store in &overview {
        let r = store.registration;
        trends.push(if store.enabled && r.supported {
            store_trends(state, r.id).await
        } else {
            None
        });
    }
    let stores: Vec<StoreView<'_>> = overview
        .into_iter()
        .zip(trends)
        .map(|(store, trends)| {
            let r = store.registration;
            StoreView {
                id: r.id,
                name: r.name,
                help: &r.help,
                enabled: store.enabled,
                supported: r.supported,
                stats: store.stats,
                url: format!("{base}/v1/notifications/{}", r.id),
                url_configured: configured,
                pull: views::PullView {
                    capabilities: store.capabilities,
                    last_check: store.last_check,
                    running_check: store.running_check,
                    overdue: store.overdue,
                    stale: store.stale,
                    acknowledgements: store.acknowledgements,
                    latest_job: store.latest_job,
                },
                trends,
            }
        })
        .collect();
    let size = state.storage.database_size().await.unwrap_or_default();
    let storage = views::StorageView {
        file_bytes: size.file_bytes,
        raw_body_days: state.retention.raw_body_days,
        deliveries_days: state.retention.deliveries_days,
        instances: state.storage.instances().await.unwrap_or_default(),
    };
    Ok(views::overview_live(
        now_ms(),
        &stores,
        &recent,
        &endpoints,
        &storage,
        &|id| store_name(state, id),
    ))
}

/// Days a store card's sparklines cover (today included).
const TREND_DAYS: i64 = 30;

/// A store's sparklines, by day over [`TREND_DAYS`]; `None` (and a line in
/// the log) when storage cannot answer, so that the card still shows.
async fn store_trends(state: &AppState, store: &str) -> Option<views::Trends> {
    let now = state.store_apis.now_ms();
    let query = |metric| storehook_db::ChartQuery {
        store: Some(store.to_owned()),
        ..storehook_db::ChartQuery::unfiltered(
            metric,
            storehook_db::ChartBucket::Day,
            now - (TREND_DAYS - 1) * 86_400_000,
            now,
            now,
        )
    };
    let active = queries::chart(state, query(storehook_db::ChartMetric::ActiveSubscriptions)).await;
    let lag = queries::chart(state, query(storehook_db::ChartMetric::Lag)).await;
    match (active, lag) {
        (Ok(active), Ok(lag)) => Some(views::Trends {
            active: active.chart,
            lag: lag.chart,
        }),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(store, error = %e.message, "a store card's charts are unavailable");
            None
        }
    }
}

/// Dead deliveries listed (with a retry button) per endpoint.
const DEAD_LISTED: u32 = 5;

async fn endpoint_views(state: &AppState) -> Result<Vec<views::EndpointView>, ApiError> {
    let endpoints = queries::endpoints_with_stats(state).await?;
    let mut views = Vec::with_capacity(endpoints.len());
    for (ep, stats) in endpoints {
        let dead = if stats.dead > 0 {
            queries::deliveries(state, &ep.name, Some("dead"), DEAD_LISTED).await?
        } else {
            Vec::new()
        };
        views.push(views::EndpointView {
            name: ep.name.clone(),
            kind: ep.kind,
            url: crate::delivery::redacted_url(&ep.url),
            stats,
            dead,
        });
    }
    Ok(views)
}

/// (id, name) of the stores the lookup form offers.
fn lookup_stores(state: &AppState) -> Vec<(&'static str, &'static str)> {
    queries::lookup_stores(state)
        .into_iter()
        .map(|r| (r.id, r.name))
        .collect()
}

// ---- pages ----

/// `GET /`.
async fn overview_page(
    state: Arc<AppState>,
    credentials: Credentials,
    headers: HeaderMap,
    query: HashMap<String, String>,
) -> Response {
    let refresh = query
        .get("refresh")
        .and_then(|r| r.parse::<u64>().ok())
        .map(|r| r.clamp(1, 3_600));
    let next = refresh.map_or_else(|| "/".to_owned(), |r| format!("/?refresh={r}"));
    if let Some(denied) = denied(&state, &credentials, &next) {
        return denied;
    }
    let live = match render_live(&state, &headers).await {
        Ok(live) => live,
        Err(e) => return error_page(&e),
    };
    let refresh = refresh.unwrap_or(DEFAULT_REFRESH_SECONDS);
    let body = html! {
        div #live data-src="/dashboard/live" data-interval=(refresh) aria-live="polite" { (live) }
        section #lookup aria-labelledby="lookup-h" {
            h2 #lookup-h { "Subscription lookup" }
            (views::lookup_form(&lookup_stores(&state), None, ""))
        }
    };
    page(StatusCode::OK, "Stores", "stores", true, body)
}

/// `GET /dashboard/live`: the overview's live part alone, for the refresh.
async fn live_part(state: Arc<AppState>, credentials: Credentials, headers: HeaderMap) -> Response {
    if crate::handlers::require_admin(&state, &credentials).is_err() {
        return html_response(StatusCode::UNAUTHORIZED, html! {});
    }
    match render_live(&state, &headers).await {
        Ok(live) => html_response(StatusCode::OK, live),
        Err(e) => html_response(e.status, html! {}),
    }
}

/// `GET /dashboard/notifications/{id}`.
async fn notification_page(id: i64, state: Arc<AppState>, credentials: Credentials) -> Response {
    if let Some(denied) = denied(
        &state,
        &credentials,
        &format!("/dashboard/notifications/{id}"),
    ) {
        return denied;
    }
    let found = match queries::notification_decoded(&state, id).await {
        Ok(found) => found,
        Err(e) => return error_page(&e),
    };
    let Some((notification, decoded)) = found else {
        return page(
            StatusCode::NOT_FOUND,
            "Not found",
            "notifications",
            true,
            html! {
                section {
                    h2 { "No such notification" }
                    p { a href="/#recent" { "Recent notifications" } }
                }
            },
        );
    };
    let hints = mask::Hints::of(state.registry.iter().map(|e| e.registration));
    let body = views::notification_detail(
        now_ms(),
        &notification,
        &store_name(&state, &notification.store),
        store_help(&state, &notification.store),
        &mask::mask(&decoded, &hints),
    );
    page(StatusCode::OK, "Notification", "notifications", true, body)
}

/// `GET /dashboard/subscriptions?store=&q=`: by subscription id (in one
/// store, or every store) or by app user id.
async fn lookup_page(
    state: Arc<AppState>,
    credentials: Credentials,
    query: HashMap<String, String>,
) -> Response {
    let q = query.get("q").map(|q| q.trim()).unwrap_or("");
    let store = query
        .get("store")
        .map(String::as_str)
        .filter(|s| state.registry.get(s).is_some());
    let next = format!(
        "/dashboard/subscriptions?store={}&q={}",
        html::url_component(store.unwrap_or("")),
        html::url_component(q)
    );
    if let Some(denied) = denied(&state, &credentials, &next) {
        return denied;
    }
    let results = if q.is_empty() {
        None
    } else {
        match lookup(&state, store, q).await {
            Ok(found) => Some(found),
            Err(e) => return error_page(&e),
        }
    };
    let body = html! {
        section {
            h2 { "Subscription lookup" }
            (views::lookup_form(&lookup_stores(&state), store, q))
        }
        @if let Some(found) = &results {
            (views::lookup_results(now_ms(), q, found, &|id| store_name(&state, id)))
        }
    };
    page(StatusCode::OK, "Subscription lookup", "lookup", true, body)
}

/// `GET /dashboard/charts?metric=&store=&app=&product=&environment=&from=&to=&bucket=`.
async fn charts_page(
    state: Arc<AppState>,
    credentials: Credentials,
    query: HashMap<String, String>,
) -> Response {
    if let Some(denied) = denied(&state, &credentials, "/dashboard/charts") {
        return denied;
    }
    let stores = lookup_stores(&state);
    let now = state.store_apis.now_ms();
    let metric = query
        .get("metric")
        .map(String::as_str)
        .filter(|m| !m.is_empty())
        .unwrap_or(storehook_db::ChartMetric::ActiveSubscriptions.as_str());
    let request = match crate::charts::parse_request(metric, &query, now) {
        Ok(request) => request,
        Err(e) => {
            let defaults = crate::charts::parse_request(
                storehook_db::ChartMetric::ActiveSubscriptions.as_str(),
                &HashMap::new(),
                now,
            );
            return match defaults {
                Ok(d) => page(
                    e.status,
                    "Charts",
                    "charts",
                    true,
                    charts_page::charts_error(&e.message, &d.query, &stores),
                ),
                Err(_) => error_page(&e),
            };
        }
    };
    let store_label = request
        .query
        .store
        .as_deref()
        .map(|id| store_name(&state, id))
        .unwrap_or_default();
    match queries::chart(&state, request.query).await {
        Ok(answer) => page(
            StatusCode::OK,
            "Charts",
            "charts",
            true,
            charts_page::charts_body(&answer, &stores, &store_label),
        ),
        Err(e) => error_page(&e),
    }
}

/// The subscriptions found for `q`, each with its history.
async fn lookup(
    state: &AppState,
    store: Option<&str>,
    q: &str,
) -> Result<
    Vec<(
        storehook_db::Subscription,
        Vec<storehook_db::StoredNotification>,
    )>,
    ApiError,
> {
    let mut found = Vec::new();
    for sub in queries::find_subscriptions(state, store, q).await? {
        let history =
            queries::subscription_history(state, &sub.store, &sub.subscription_id, 100).await?;
        found.push((sub, history));
    }
    Ok(found)
}

/// Checks a dashboard button's POST: same origin, signed in, a known
/// endpoint. `Ok` carries the endpoint's name, `Err` the page to answer.
fn button_post(
    state: &AppState,
    credentials: &Credentials,
    endpoint: &str,
) -> Result<String, Box<Response>> {
    if let Some(refused) = button_refusal(state, credentials, "/#webhooks") {
        return Err(Box::new(refused));
    }
    let name = percent_decode(endpoint);
    if state.delivery.endpoint(&name).is_none() {
        return Err(Box::new(page(
            StatusCode::NOT_FOUND,
            "Not found",
            "",
            true,
            html! {
                section {
                    h2 { "No endpoint named “" (name) "”" }
                    p { a href="/#webhooks" { "Webhook endpoints" } }
                }
            },
        )));
    }
    Ok(name)
}

/// `POST /dashboard/webhooks/{name}/deliveries/{id}/retry`: the Retry button.
async fn retry_delivery(
    endpoint: String,
    id: i64,
    state: Arc<AppState>,
    credentials: Credentials,
) -> Response {
    delivery_button(&state, &credentials, &endpoint, async |name| {
        state.storage.retry_delivery(name, id, now_ms()).await
    })
    .await
}

/// `POST /dashboard/webhooks/{name}/test`: the Send test event button.
async fn send_test_event(
    endpoint: String,
    state: Arc<AppState>,
    credentials: Credentials,
) -> Response {
    delivery_button(&state, &credentials, &endpoint, async |name| {
        state.storage.enqueue_test_event(name, now_ms()).await
    })
    .await
}

/// A delivery button: checked by [`button_post`], then `queue` for the
/// endpoint's name (what it returns is not shown); on success it wakes the
/// worker and goes back to the list.
async fn delivery_button<T>(
    state: &AppState,
    credentials: &Credentials,
    endpoint: &str,
    queue: impl AsyncFnOnce(&str) -> Result<T, storehook_db::DbError>,
) -> Response {
    let name = match button_post(state, credentials, endpoint) {
        Ok(name) => name,
        Err(r) => return *r,
    };
    match queue(&name).await {
        Ok(_) => {
            state.delivery.wake();
            redirect("/#webhooks")
        }
        Err(e) => error_page(&ApiError::from(e)),
    }
}

/// A dashboard button that changes state: refused unless it comes from the
/// dashboard's own pages and the visitor is signed in (`back` is where the
/// sign-in form returns to). Delivery and store-card buttons alike.
fn button_refusal(state: &AppState, credentials: &Credentials, back: &str) -> Option<Response> {
    if !credentials.same_origin {
        return Some(html_response(
            StatusCode::FORBIDDEN,
            html! { "cross-site request refused" },
        ));
    }
    denied(state, credentials, back)
}

/// `POST /dashboard/stores/{id}/check`: the Check connection button. The
/// check runs in the background; the card shows its progress.
async fn check_connection(
    store: String,
    state: Arc<AppState>,
    credentials: Credentials,
) -> Response {
    let store = percent_decode(&store);
    let back = format!("/#store-{store}");
    if let Some(refused) = button_refusal(&state, &credentials, &back) {
        return refused;
    }
    match crate::store_api::start_check(&state, &store).await {
        Ok(_) => redirect(&back),
        Err(e) => error_page(&e),
    }
}

/// `POST /dashboard/stores/{id}/backfill` (form: `since`, `only_failures`).
async fn start_backfill(
    store: String,
    state: Arc<AppState>,
    credentials: Credentials,
    headers: HeaderMap,
    body: crate::body::BodyStream,
) -> Response {
    let store = percent_decode(&store);
    let back = format!("/#store-{store}");
    if let Some(refused) = button_refusal(&state, &credentials, &back) {
        return refused;
    }
    let body = match read_form(&state, &headers, body).await {
        Ok(body) => body,
        Err(refused) => return *refused,
    };
    let request = crate::store_api::BackfillRequest {
        since: form_field(&body, "since").unwrap_or_else(|| "3d".to_owned()),
        until: None,
        only_failures: form_field(&body, "only_failures").is_some_and(|v| v == "true"),
    };
    match crate::store_api::create_backfill(&state, &store, request).await {
        Ok(_) => redirect(&back),
        Err(e) => error_page(&e),
    }
}

/// `POST /dashboard/jobs/{id}/cancel`.
async fn cancel_job(id: i64, state: Arc<AppState>, credentials: Credentials) -> Response {
    if let Some(refused) = button_refusal(&state, &credentials, "/") {
        return refused;
    }
    let store = match state.storage.job(id).await {
        Ok(Some(job)) => job.store,
        Ok(None) => return error_page(&ApiError::not_found("unknown_job", format!("no job {id}"))),
        Err(e) => return error_page(&ApiError::from(e)),
    };
    match crate::store_api::cancel_job(&state, id).await {
        Ok(_) => redirect(&format!("/#store-{store}")),
        Err(e) => error_page(&e),
    }
}

/// `GET /dashboard/assets/{name}`: embedded, no data, no sign-in needed.
fn asset(name: String) -> Response {
    let (body, content_type) = match name.as_str() {
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "icon.svg" => (ICON_SVG, "image/svg+xml"),
        _ => {
            return ApiError::not_found("not_found", "no such asset").into_response();
        }
    };
    let mut r = warp::reply::with_header(body, "content-type", content_type).into_response();
    let h = r.headers_mut();
    h.insert(
        "cache-control",
        HeaderValue::from_static("public, max-age=300"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(
            local_path(Some("/dashboard/notifications/3".into())),
            "/dashboard/notifications/3"
        );
        assert_eq!(local_path(Some("//evil.example".into())), "/");
        assert_eq!(local_path(Some("https://evil.example".into())), "/");
        assert_eq!(local_path(Some("/\\evil".into())), "/");
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn form_fields_are_decoded() {
        let body = b"next=%2Fdashboard%2Fsubscriptions%3Fq%3Da&token=s%2Bcr+t";
        assert_eq!(form_field(body, "token").as_deref(), Some("s+cr t"));
        assert_eq!(
            form_field(body, "next").as_deref(),
            Some("/dashboard/subscriptions?q=a")
        );
        assert_eq!(form_field(body, "other"), None);
    }
}
