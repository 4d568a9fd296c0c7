//! A stand-in for Stripe's API (`GET /v1/events`, `GET /v1/webhook_endpoints`).
//!
//! - Authentication as Stripe does it: `Authorization: Bearer <key>`, or
//!   HTTP Basic with the key as the user name (`curl -u "<key>:"`). Anything
//!   else is a 401 in the shape of `recorded/stripe/error.invalid_api_key.401.json`,
//!   with the refused key masked as Stripe masks it.
//! - `Stripe-Version` is recorded, and refused (400) when it is not a version.
//! - Lists are newest first, as Stripe's are (`created` descending; among
//!   events of one second, the one added later is newer), with `limit`
//!   (1–100, default 10), `starting_after` / `ending_before` (one of them;
//!   an unknown id is a 404 `resource_missing`) and `has_more`; `ending_before`
//!   returns the `limit` objects just newer than the cursor, still newest
//!   first. `/v1/events` filters on `created` (`gte`/`gt`/`lte`/`lt` or exact),
//!   `type` (a trailing `*` is a wildcard) or `types[]` (at most 20, not both)
//!   and `delivery_success`. Unknown parameters are refused, as Stripe does.
//! - A test scripts errors for the next matching requests (429 with or
//!   without `Retry-After`, a restricted key's 403, a 500) and reads back
//!   every request served.
//!
//! Event objects are the real events of `recorded/stripe/events/` (the
//! webhook corpus), or copies of them with another id and `created`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine as _;
use serde_json::{json, Value};
use warp::http::StatusCode;
use warp::Filter;

use crate::{recorded_dir, recorded_json, serve};

/// Stripe's largest `limit`, and the most `types[]` one request may name.
const MAX_LIMIT: usize = 100;
const MAX_TYPES: usize = 20;

/// Which requests a scripted error applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Events,
    WebhookEndpoints,
    Any,
}

impl Route {
    fn matches(self, path: &str) -> bool {
        match self {
            Route::Events => path == "/v1/events",
            Route::WebhookEndpoints => path == "/v1/webhook_endpoints",
            Route::Any => true,
        }
    }
}

/// An error the stand-in answers instead of the next matching request
/// (after authentication, as Stripe checks the key first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scripted {
    /// 429 `rate_limit`; `Retry-After: <seconds>` when given.
    RateLimited { retry_after_s: Option<u64> },
    /// 403: a restricted key without `slug` (`rak_event_read`…).
    MissingPermission { slug: String },
    /// 500 `api_error`.
    ServerError,
}

/// One request as the stand-in saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedRequest {
    pub path: String,
    /// Decoded query pairs, in order (`types[]` repeated).
    pub query: Vec<(String, String)>,
    pub stripe_version: Option<String>,
    /// The key was right.
    pub authenticated: bool,
    pub status: u16,
}

impl ServedRequest {
    /// The first value of a query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated parameter (`types[]`).
    pub fn params(&self, name: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

struct StoredEvent {
    json: Value,
    delivered: bool,
    seq: u64,
}

struct State {
    key: String,
    endpoints: Vec<(Value, u64)>,
    events: Vec<StoredEvent>,
    next_seq: u64,
    script: VecDeque<(Route, Scripted)>,
    requests: Vec<ServedRequest>,
}

/// A running stand-in. Cheap to clone; all clones share the state.
#[derive(Clone)]
pub struct StripeStandIn {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

type Reply = warp::reply::WithStatus<warp::reply::WithHeader<warp::reply::Json>>;

impl StripeStandIn {
    /// Starts a stand-in that accepts exactly `key`.
    pub async fn start(key: &str) -> Self {
        let state = Arc::new(Mutex::new(State {
            key: key.to_owned(),
            endpoints: Vec::new(),
            events: Vec::new(),
            next_seq: 0,
            script: VecDeque::new(),
            requests: Vec::new(),
        }));
        let shared = state.clone();
        let routes = warp::get()
            .and(warp::path::full())
            .and(warp::query::<Vec<(String, String)>>())
            .and(warp::header::optional::<String>("authorization"))
            .and(warp::header::optional::<String>("stripe-version"))
            .map(
                move |path: warp::path::FullPath,
                      query: Vec<(String, String)>,
                      authorization: Option<String>,
                      version: Option<String>| {
                    handle(&shared, path.as_str(), query, authorization, version)
                },
            );
        let addr = serve(routes).await;
        StripeStandIn { addr, state }
    }

    /// What `[stores.stripe.api] base_url` must be.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The account's webhook endpoints (listed newest first by `created`).
    pub fn set_webhook_endpoints(&self, endpoints: Vec<Value>) {
        let mut state = self.lock();
        state.endpoints = endpoints
            .into_iter()
            .enumerate()
            .map(|(i, e)| (e, i as u64))
            .collect();
    }

    /// Adds an event; `delivered` is what `delivery_success` filters on.
    pub fn add_event(&self, event: Value, delivered: bool) {
        let mut state = self.lock();
        let seq = state.next_seq;
        state.next_seq += 1;
        state.events.push(StoredEvent {
            json: event,
            delivered,
            seq,
        });
    }

    /// Removes an event, as Stripe drops events older than 30 days.
    pub fn remove_event(&self, id: &str) {
        self.lock().events.retain(|e| e.json["id"] != id);
    }

    /// Answers the next request matching `route` with `error`; several
    /// queue up in order.
    pub fn script(&self, route: Route, error: Scripted) {
        self.lock().script.push_back((route, error));
    }

    /// Every request served so far, in order.
    pub fn requests(&self) -> Vec<ServedRequest> {
        self.lock().requests.clone()
    }

    /// The requests to one path (`/v1/events`).
    pub fn requests_to(&self, path: &str) -> Vec<ServedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }
}

/// `recorded/stripe/webhook_endpoint.json` with another id, URL, status,
/// events, mode and API version.
pub fn webhook_endpoint(
    id: &str,
    url: &str,
    status: &str,
    enabled_events: &[&str],
    livemode: bool,
    api_version: Option<&str>,
) -> Value {
    let mut endpoint = recorded_json("stripe/webhook_endpoint.json");
    endpoint["id"] = json!(id);
    endpoint["url"] = json!(url);
    endpoint["status"] = json!(status);
    endpoint["enabled_events"] = json!(enabled_events);
    endpoint["livemode"] = json!(livemode);
    endpoint["api_version"] = json!(api_version);
    endpoint
}

/// The real events of `recorded/stripe/events/`, oldest first (by
/// `created`, then id).
pub fn recorded_events() -> Vec<Value> {
    let dir = recorded_dir().join("stripe/events");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".json"))
        .collect();
    names.sort();
    let mut events: Vec<Value> = names
        .iter()
        .map(|name| recorded_json(&format!("stripe/events/{name}")))
        .collect();
    events.sort_by(|a, b| {
        (a["created"].as_i64(), a["id"].as_str()).cmp(&(b["created"].as_i64(), b["id"].as_str()))
    });
    events
}

/// One recorded event by its type (`invoice.paid`).
pub fn recorded_event(event_type: &str) -> Value {
    recorded_json(&format!("stripe/events/{event_type}.json"))
}

/// A copy of `template` with another id and `created`.
pub fn event_copy(template: &Value, id: &str, created: i64) -> Value {
    let mut event = template.clone();
    event["id"] = json!(id);
    event["created"] = json!(created);
    event
}

fn reply(status: StatusCode, body: Value, headers: &[(&'static str, String)]) -> Reply {
    // warp's WithHeader nests per header; one optional header is all we need.
    let (name, value) = headers
        .first()
        .cloned()
        .unwrap_or(("request-id", "req_standin".to_owned()));
    warp::reply::with_status(
        warp::reply::with_header(warp::reply::json(&body), name, value),
        status,
    )
}

fn error_body(kind: &str, message: &str, code: Option<&str>, param: Option<&str>) -> Value {
    let mut error = json!({"type": kind, "message": message});
    if let Some(code) = code {
        error["code"] = json!(code);
    }
    if let Some(param) = param {
        error["param"] = json!(param);
    }
    json!({ "error": error })
}

fn invalid(message: &str, param: Option<&str>) -> (StatusCode, Value) {
    (
        StatusCode::BAD_REQUEST,
        error_body("invalid_request_error", message, None, param),
    )
}

/// Stripe's masking of a refused key: its kind, asterisks, the last four.
fn masked(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 12 {
        return "*".repeat(chars.len());
    }
    let prefix: String = chars[..8].iter().collect();
    let suffix: String = chars[chars.len() - 4..].iter().collect();
    format!("{prefix}{}{suffix}", "*".repeat(chars.len() - 12))
}

/// The key an `Authorization` header carries: Bearer, or Basic `key:`.
fn presented_key(authorization: &str) -> Option<String> {
    let (scheme, value) = authorization.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(value.trim().to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        // The key is the user name; the password is empty.
        return Some(
            text.split_once(':')
                .map_or(text.as_str(), |(user, _)| user)
                .to_owned(),
        );
    }
    None
}

fn is_api_version(v: &str) -> bool {
    let (date, name) = v.split_once('.').unwrap_or((v, "x"));
    let b = date.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
        && !name.is_empty()
        && name.bytes().all(|c| c.is_ascii_lowercase())
}

fn handle(
    state: &Mutex<State>,
    path: &str,
    query: Vec<(String, String)>,
    authorization: Option<String>,
    version: Option<String>,
) -> Reply {
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    let (status, body, headers) = answer(&mut state, path, &query, authorization, &version);
    let authenticated = status != StatusCode::UNAUTHORIZED;
    state.requests.push(ServedRequest {
        path: path.to_owned(),
        query,
        stripe_version: version,
        authenticated,
        status: status.as_u16(),
    });
    reply(status, body, &headers)
}

fn answer(
    state: &mut State,
    path: &str,
    query: &[(String, String)],
    authorization: Option<String>,
    version: &Option<String>,
) -> (StatusCode, Value, Vec<(&'static str, String)>) {
    let unauthorized = |body: Value| {
        (
            StatusCode::UNAUTHORIZED,
            body,
            vec![("www-authenticate", "Basic realm=\"Stripe\"".to_owned())],
        )
    };
    let Some(authorization) = authorization else {
        return unauthorized(error_body(
            "invalid_request_error",
            "You did not provide an API key. You need to provide your API key in the \
             Authorization header, using Bearer auth (e.g. 'Authorization: Bearer \
             YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or we \
             can help at https://support.stripe.com/.",
            None,
            None,
        ));
    };
    match presented_key(&authorization) {
        Some(key) if key == state.key => {}
        presented => {
            let mut body = recorded_json("stripe/error.invalid_api_key.401.json");
            body["error"]["message"] = json!(format!(
                "Invalid API Key provided: {}",
                masked(presented.as_deref().unwrap_or_default())
            ));
            return unauthorized(body);
        }
    }
    if let Some(v) = version {
        if !is_api_version(v) {
            let (status, body) = invalid(&format!("Invalid Stripe API version: {v}"), None);
            return (status, body, Vec::new());
        }
    }
    if let Some(i) = state
        .script
        .iter()
        .position(|(route, _)| route.matches(path))
    {
        if let Some((_, scripted)) = state.script.remove(i) {
            return scripted_answer(&state.key, scripted);
        }
    }
    let listed = match path {
        "/v1/events" => list_events(state, query),
        "/v1/webhook_endpoints" => list_endpoints(state, query),
        _ => Err((
            StatusCode::NOT_FOUND,
            error_body(
                "invalid_request_error",
                &format!("Unrecognized request URL (GET: {path})."),
                None,
                None,
            ),
        )),
    };
    match listed {
        Ok(body) => (StatusCode::OK, body, Vec::new()),
        Err((status, body)) => (status, body, Vec::new()),
    }
}

fn scripted_answer(
    key: &str,
    scripted: Scripted,
) -> (StatusCode, Value, Vec<(&'static str, String)>) {
    match scripted {
        Scripted::RateLimited { retry_after_s } => (
            StatusCode::TOO_MANY_REQUESTS,
            recorded_json("stripe/error.rate_limit.429.reconstructed.json"),
            retry_after_s
                .map(|s| vec![("retry-after", s.to_string())])
                .unwrap_or_default(),
        ),
        Scripted::MissingPermission { slug } => {
            let mut body =
                recorded_json("stripe/error.restricted_key_permission.403.reconstructed.json");
            let message = body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .replace("rak_subscription_read", &slug)
                // Stripe quotes the start of the key it refused.
                .replace("rk_test_Cb3gph", &key.chars().take(14).collect::<String>());
            body["error"]["message"] = json!(message);
            (StatusCode::FORBIDDEN, body, Vec::new())
        }
        Scripted::ServerError => (
            StatusCode::INTERNAL_SERVER_ERROR,
            error_body("api_error", "An unknown error occurred", None, None),
            Vec::new(),
        ),
    }
}

type Refusal = (StatusCode, Value);

/// Refuses parameters Stripe does not know for this list.
fn known_params(query: &[(String, String)], known: &[&str]) -> Result<(), Refusal> {
    for (name, _) in query {
        let base = name.split('[').next().unwrap_or(name);
        if !known.contains(&base) {
            return Err(invalid(
                &format!("Received unknown parameter: {name}"),
                Some(name),
            ));
        }
    }
    Ok(())
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn integer(query: &[(String, String)], name: &str) -> Result<Option<i64>, Refusal> {
    match param(query, name) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| invalid(&format!("Invalid integer: {v}"), Some(name))),
    }
}

/// A page of `items` (newest first), by `limit` and the cursors. `key`
/// finds an object's id.
fn paginate(
    items: &[(&Value, (i64, u64))],
    all: &[(String, (i64, u64))],
    query: &[(String, String)],
    url: &str,
    what: &str,
) -> Result<Value, Refusal> {
    let limit = match integer(query, "limit")? {
        None => 10,
        Some(n) if (1..=MAX_LIMIT as i64).contains(&n) => n as usize,
        Some(n) if n < 1 => {
            return Err(invalid(
                "This value must be greater than or equal to 1.",
                Some("limit"),
            ))
        }
        Some(_) => {
            return Err(invalid(
                "This value must be less than or equal to 100.",
                Some("limit"),
            ))
        }
    };
    let after = param(query, "starting_after");
    let before = param(query, "ending_before");
    if after.is_some() && before.is_some() {
        return Err(invalid(
            "You may only specify one of these parameters: ending_before, starting_after.",
            None,
        ));
    }
    let position = |id: &str, name: &str| -> Result<(i64, u64), Refusal> {
        all.iter()
            .find(|(other, _)| other == id)
            .map(|(_, key)| *key)
            .ok_or_else(|| {
                let mut body =
                    recorded_json("stripe/error.resource_missing.404.reconstructed.json");
                body["error"]["message"] = json!(format!("No such {what}: '{id}'"));
                body["error"]["param"] = json!(name);
                (StatusCode::NOT_FOUND, body)
            })
    };
    let (page, has_more): (Vec<&Value>, bool) = if let Some(id) = after {
        let at = position(id, "starting_after")?;
        let older: Vec<&Value> = items
            .iter()
            .filter(|(_, k)| *k < at)
            .map(|(v, _)| *v)
            .collect();
        let more = older.len() > limit;
        (older.into_iter().take(limit).collect(), more)
    } else if let Some(id) = before {
        let at = position(id, "ending_before")?;
        let newer: Vec<&Value> = items
            .iter()
            .filter(|(_, k)| *k > at)
            .map(|(v, _)| *v)
            .collect();
        let more = newer.len() > limit;
        let skip = newer.len().saturating_sub(limit);
        (newer.into_iter().skip(skip).collect(), more)
    } else {
        (
            items.iter().take(limit).map(|(v, _)| *v).collect(),
            items.len() > limit,
        )
    };
    let mut list = recorded_json(match url {
        "/v1/events" => "stripe/events_list.derived.json",
        _ => "stripe/webhook_endpoints_list.derived.json",
    });
    list["data"] = json!(page);
    list["has_more"] = json!(has_more);
    list["url"] = json!(url);
    Ok(list)
}

fn sort_key(object: &Value, seq: u64) -> (i64, u64) {
    (object["created"].as_i64().unwrap_or(0), seq)
}

fn list_endpoints(state: &State, query: &[(String, String)]) -> Result<Value, Refusal> {
    known_params(
        query,
        &["limit", "starting_after", "ending_before", "expand"],
    )?;
    let mut items: Vec<(&Value, (i64, u64))> = state
        .endpoints
        .iter()
        .map(|(e, seq)| (e, sort_key(e, *seq)))
        .collect();
    items.sort_by_key(|item| std::cmp::Reverse(item.1));
    let all: Vec<(String, (i64, u64))> = items
        .iter()
        .map(|(e, k)| (e["id"].as_str().unwrap_or_default().to_owned(), *k))
        .collect();
    paginate(
        &items,
        &all,
        query,
        "/v1/webhook_endpoints",
        "webhook endpoint",
    )
}

fn list_events(state: &State, query: &[(String, String)]) -> Result<Value, Refusal> {
    known_params(
        query,
        &[
            "created",
            "type",
            "types",
            "delivery_success",
            "limit",
            "starting_after",
            "ending_before",
            "expand",
        ],
    )?;
    let types: Vec<&str> = query
        .iter()
        .filter(|(k, _)| k == "types[]")
        .map(|(_, v)| v.as_str())
        .collect();
    let single = param(query, "type");
    if single.is_some() && !types.is_empty() {
        return Err(invalid(
            "You may pass either `type` or `types`, but not both.",
            Some("types"),
        ));
    }
    if types.len() > MAX_TYPES {
        return Err(invalid(
            "You may pass at most 20 event types in `types`.",
            Some("types"),
        ));
    }
    let exact = integer(query, "created")?;
    let gte = integer(query, "created[gte]")?;
    let gt = integer(query, "created[gt]")?;
    let lte = integer(query, "created[lte]")?;
    let lt = integer(query, "created[lt]")?;
    let delivery = match param(query, "delivery_success") {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(v) => {
            return Err(invalid(
                &format!("Invalid boolean: {v}"),
                Some("delivery_success"),
            ))
        }
    };
    let type_matches = |t: &str| match single {
        Some(pattern) => match pattern.strip_suffix('*') {
            Some(prefix) => t.starts_with(prefix),
            None => t == pattern,
        },
        None => types.is_empty() || types.contains(&t),
    };
    let mut all: Vec<(String, (i64, u64))> = Vec::new();
    let mut items: Vec<(&Value, (i64, u64))> = Vec::new();
    for event in &state.events {
        let key = sort_key(&event.json, event.seq);
        all.push((
            event.json["id"].as_str().unwrap_or_default().to_owned(),
            key,
        ));
        let created = key.0;
        let keep = exact.is_none_or(|v| created == v)
            && gte.is_none_or(|v| created >= v)
            && gt.is_none_or(|v| created > v)
            && lte.is_none_or(|v| created <= v)
            && lt.is_none_or(|v| created < v)
            && delivery.is_none_or(|d| event.delivered == d)
            && type_matches(event.json["type"].as_str().unwrap_or_default());
        if keep {
            items.push((&event.json, key));
        }
    }
    items.sort_by_key(|item| std::cmp::Reverse(item.1));
    paginate(&items, &all, query, "/v1/events", "event")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_masked_as_stripe_masks_them() {
        assert_eq!(masked("sk_test_1234567890S8wL"), "sk_test_**********S8wL");
        assert_eq!(masked("short"), "*****");
    }

    #[test]
    fn basic_and_bearer_carry_the_key() {
        assert_eq!(
            presented_key("Bearer rk_test_a").as_deref(),
            Some("rk_test_a")
        );
        let basic = base64::engine::general_purpose::STANDARD.encode("rk_test_a:");
        assert_eq!(
            presented_key(&format!("Basic {basic}")).as_deref(),
            Some("rk_test_a")
        );
        assert_eq!(presented_key("Token x"), None);
    }

    #[test]
    fn api_versions() {
        assert!(is_api_version("2026-07-29.dahlia"));
        assert!(is_api_version("2020-08-27"));
        assert!(!is_api_version("latest"));
        assert!(!is_api_version("2026-07-29.Dahlia"));
    }

    #[test]
    fn recorded_events_are_oldest_first_with_distinct_ids() {
        let events = recorded_events();
        assert_eq!(events.len(), 11);
        let mut ids: Vec<_> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
        ids.dedup();
        assert_eq!(ids.len(), 11);
        assert!(events
            .windows(2)
            .all(|w| w[0]["created"].as_i64() <= w[1]["created"].as_i64()));
    }
}
