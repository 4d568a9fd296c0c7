//! Google's OAuth 2.0 token endpoint and the Play Developer API
//! (`androidpublisher/v3`), as far as storehook calls them:
//! `purchases.subscriptionsv2.get`, `purchases.subscriptions.acknowledge`,
//! `purchases.products.get`, `purchases.products.acknowledge` and
//! `purchases.voidedpurchases.list`.
//!
//! Authentication is checked as Google does it: the token endpoint takes a
//! JWT-bearer grant whose RS256 assertion must verify against the service
//! account's public key and carry its claims (`iss` = the account's email,
//! `aud` = the token URL, the androidpublisher `scope`, at most an hour
//! between `iat` and `exp`); every Play API call needs
//! `Authorization: Bearer <a token this endpoint issued>`. Refusals use
//! Google's shapes: `{"error": "invalid_grant", "error_description": …}`
//! from the token endpoint, the `{"error": {"code", "message", "errors":
//! [{"domain", "reason", "message"}]}}` envelope from the API.
//!
//! Voided purchases are filtered for real (the `startTime`/`endTime` window
//! on `voidedTimeMillis`, `type`, the 30-day limit against the stand-in's
//! clock, partial refunds only on request) and paged with continuation
//! tokens. Acknowledgements change the purchase the stand-in holds, so a
//! second one is refused as Google refuses it. Subscriptions and one-time
//! products are held apart, by token: asking `subscriptionsv2` about a
//! one-time product's token (or `products` about a subscription's) is
//! answered 404 and noted as a complaint.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};
use warp::http::Response;
use warp::Filter;

use crate::{recorded, recorded_json, serve};

pub const ANDROIDPUBLISHER_SCOPE: &str = "https://www.googleapis.com/auth/androidpublisher";
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Google's limit on how far back `voidedpurchases.list` looks.
pub const VOIDED_LOOKBACK_MS: i64 = 30 * 24 * 3_600_000;

/// The recorded error bodies, by what they mean.
pub const PERMISSION_DENIED: &str = "google/error.permissionDenied.401.json";
pub const CONCURRENT_UPDATE: &str = "google/error.concurrentUpdate.409.reconstructed.json";
pub const INVALID_PURCHASE_STATE: &str = "google/error.invalidPurchaseState.400.reconstructed.json";
/// Recorded pages of `voidedpurchases.list` whose entries seed the stand-in.
pub const VOIDED_DOCS_EXAMPLE: &str =
    "google/voidedPurchasesList.googleDocsExample.normalized.json";
pub const VOIDED_EDX: &str = "google/voidedPurchasesList.edx-ecommerce.derived.json";

/// Which endpoint a request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Route {
    Token,
    SubscriptionGet,
    Acknowledge,
    /// `purchases.products.get`.
    ProductGet,
    /// `purchases.products.acknowledge`.
    ProductAcknowledge,
    VoidedList,
    /// Anything else (answered 404 as Google does).
    Unknown,
}

/// One request the stand-in served.
#[derive(Debug, Clone, PartialEq)]
pub struct Served {
    pub route: Route,
    pub method: String,
    /// Percent-decoded path segments after `/androidpublisher/v3/applications/`
    /// for API routes (`[package, "purchases", …]`), the whole path otherwise.
    pub segments: Vec<String>,
    pub query: BTreeMap<String, String>,
    pub body: Vec<u8>,
    /// The status it answered.
    pub status: u16,
}

impl Served {
    pub fn package(&self) -> Option<&str> {
        match self.route {
            Route::SubscriptionGet
            | Route::Acknowledge
            | Route::ProductGet
            | Route::ProductAcknowledge
            | Route::VoidedList => self.segments.first().map(String::as_str),
            _ => None,
        }
    }
}

/// One `:acknowledge` call that got past authentication and the
/// permission check (or met a scripted answer), whatever it answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Acknowledgement {
    /// [`Route::Acknowledge`] (a subscription) or [`Route::ProductAcknowledge`].
    pub route: Route,
    pub package: String,
    pub product_id: String,
    pub token: String,
    pub body: Value,
    pub status: u16,
}

/// The email of the test service account whose key file is
/// `plugins/google/tests/fixtures/service_account.json`.
pub const FIXTURE_ACCOUNT_EMAIL: &str = "play-api@storehook-test.iam.gserviceaccount.com";

/// The folder of the Google plugin's test fixtures (keys, JWKS).
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../plugins/google/tests/fixtures")
}

/// The test service account's key file, for `service_account_key_file`.
pub fn fixture_key_file() -> PathBuf {
    fixtures_dir().join("service_account.json")
}

/// The test service account as the token endpoint knows it.
pub fn fixture_account() -> ServiceAccount {
    let public = fixtures_dir().join("service_account_public.pem");
    ServiceAccount {
        client_email: FIXTURE_ACCOUNT_EMAIL.to_owned(),
        public_key_pem: std::fs::read(&public)
            .unwrap_or_else(|e| panic!("{}: {e}", public.display())),
    }
}

/// The service account whose assertions the token endpoint accepts.
pub struct ServiceAccount {
    pub client_email: String,
    /// Its public key, PEM (`-----BEGIN PUBLIC KEY-----`).
    pub public_key_pem: Vec<u8>,
}

struct VoidedRecord {
    package: String,
    purchase: Value,
    /// Only listed with `type=1` (in-app products and subscriptions).
    subscription: bool,
}

#[derive(Clone)]
struct VoidedQuery {
    package: String,
    start_ms: i64,
    end_ms: i64,
    subscriptions: bool,
    partial: bool,
    offset: usize,
}

struct State {
    token_url: String,
    account_email: String,
    account_key: DecodingKey,
    /// The Play API's clock (the voided purchases' 30-day window); the token
    /// endpoint runs on the wall clock, as the client signs with it.
    now_ms: Option<i64>,
    packages: BTreeSet<String>,
    denied: BTreeSet<String>,
    deny_all: bool,
    issued: Vec<String>,
    grants: usize,
    purchases: HashMap<String, Value>,
    /// One-time products' purchases by token: (product id, `ProductPurchase`).
    products: HashMap<String, (String, Value)>,
    voided: Vec<VoidedRecord>,
    page_size: usize,
    page_tokens: HashMap<String, VoidedQuery>,
    scripted: HashMap<Route, VecDeque<(u16, String)>>,
    served: Vec<Served>,
    acknowledgements: Vec<Acknowledgement>,
    complaints: Vec<String>,
}

/// A running stand-in. Every method takes `&self`; the state is shared
/// with the server task.
pub struct PlayStandIn {
    /// What `[stores.google.play_api] base_url` points at.
    pub base_url: String,
    /// What `token_url` points at (`{base_url}/token`).
    pub token_url: String,
    state: Arc<Mutex<State>>,
}

impl PlayStandIn {
    /// Starts the stand-in for `account`, knowing the apps in `packages`.
    pub async fn start(account: ServiceAccount, packages: &[&str]) -> Self {
        let account_key =
            DecodingKey::from_rsa_pem(&account.public_key_pem).expect("an RSA public key (PEM)");
        let state = Arc::new(Mutex::new(State {
            token_url: String::new(),
            account_email: account.client_email,
            account_key,
            now_ms: None,
            packages: packages.iter().map(|p| (*p).to_owned()).collect(),
            denied: BTreeSet::new(),
            deny_all: false,
            issued: Vec::new(),
            grants: 0,
            purchases: HashMap::new(),
            products: HashMap::new(),
            voided: Vec::new(),
            page_size: 1000,
            page_tokens: HashMap::new(),
            scripted: HashMap::new(),
            served: Vec::new(),
            acknowledgements: Vec::new(),
            complaints: Vec::new(),
        }));
        let shared = state.clone();
        let routes = warp::method()
            .and(warp::path::full())
            .and(warp::query::<Vec<(String, String)>>())
            .and(warp::header::optional::<String>("authorization"))
            .and(warp::body::bytes())
            .map(
                move |method: warp::http::Method,
                      path: warp::path::FullPath,
                      query: Vec<(String, String)>,
                      auth: Option<String>,
                      body: bytes::Bytes| {
                    let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
                    handle(
                        &mut s,
                        method.as_str(),
                        path.as_str(),
                        query,
                        auth.as_deref(),
                        &body,
                    )
                },
            );
        let addr = serve(routes).await;
        let base_url = format!("http://{addr}");
        let token_url = format!("{base_url}/token");
        state.lock().expect("lock").token_url = token_url.clone();
        PlayStandIn {
            base_url,
            token_url,
            state,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the Play API's clock (Unix ms); by default the wall clock.
    pub fn set_now_ms(&self, now_ms: i64) {
        self.state().now_ms = Some(now_ms);
    }

    /// The purchase `subscriptionsv2.get` answers for `token` (any package
    /// the stand-in knows), as a `SubscriptionPurchaseV2`.
    pub fn set_purchase(&self, token: &str, purchase: Value) {
        self.state().purchases.insert(token.to_owned(), purchase);
    }

    /// The purchase as the stand-in holds it now (acknowledgements change it).
    pub fn purchase(&self, token: &str) -> Option<Value> {
        self.state().purchases.get(token).cloned()
    }

    /// The one-time purchase of `product_id` that `products.get` answers
    /// for `token`, as a `ProductPurchase`.
    pub fn set_product_purchase(&self, token: &str, product_id: &str, purchase: Value) {
        self.state()
            .products
            .insert(token.to_owned(), (product_id.to_owned(), purchase));
    }

    /// The one-time purchase as the stand-in holds it now.
    pub fn product_purchase(&self, token: &str) -> Option<Value> {
        self.state().products.get(token).map(|(_, p)| p.clone())
    }

    /// Adds one voided purchase (a `VoidedPurchase` object) of `package`.
    /// `subscription` purchases are only listed with `type=1`.
    pub fn add_voided(&self, package: &str, purchase: Value, subscription: bool) {
        self.state().voided.push(VoidedRecord {
            package: package.to_owned(),
            purchase,
            subscription,
        });
    }

    /// Adds every entry of a recorded `voidedpurchases.list` page.
    pub fn add_recorded_voided(&self, package: &str, rel: &str, subscription: bool) -> Vec<Value> {
        let page = recorded_json(rel);
        let entries = page["voidedPurchases"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("recorded/{rel} has no voidedPurchases"));
        for entry in &entries {
            self.add_voided(package, entry.clone(), subscription);
        }
        entries
    }

    /// At most this many voided purchases per page, whatever `maxResults` asks.
    pub fn set_page_size(&self, size: usize) {
        self.state().page_size = size.max(1);
    }

    /// The Play API answers permissionDenied (401, recorded) for `package`.
    pub fn deny_package(&self, package: &str) {
        self.state().denied.insert(package.to_owned());
    }

    /// The Play API answers permissionDenied (401, recorded) for every package.
    pub fn deny_all(&self) {
        self.state().deny_all = true;
    }

    /// The next request to `route` (after authentication) gets this answer
    /// instead of the normal one; answers queue up, each used once.
    pub fn script(&self, route: Route, status: u16, body: impl Into<String>) {
        self.state()
            .scripted
            .entry(route)
            .or_default()
            .push_back((status, body.into()));
    }

    /// Queues a recorded file as the next answer to `route`.
    pub fn script_recorded(&self, route: Route, status: u16, rel: &str) {
        let body = String::from_utf8(recorded(rel)).expect("UTF-8");
        self.script(route, status, body);
    }

    /// Forgets every access token issued (as if they expired or were revoked).
    pub fn revoke_access_tokens(&self) {
        self.state().issued.clear();
    }

    /// Access tokens issued so far.
    pub fn grants(&self) -> usize {
        self.state().grants
    }

    /// Every request served, in order.
    pub fn served(&self) -> Vec<Served> {
        self.state().served.clone()
    }

    /// The requests served for one route, in order.
    pub fn served_on(&self, route: Route) -> Vec<Served> {
        self.state()
            .served
            .iter()
            .filter(|s| s.route == route)
            .cloned()
            .collect()
    }

    /// `(package, token)` of every `subscriptionsv2.get`, in order.
    pub fn subscription_gets(&self) -> Vec<(String, String)> {
        self.served_on(Route::SubscriptionGet)
            .into_iter()
            .filter_map(|s| Some((s.segments.first()?.clone(), s.segments.last()?.clone())))
            .collect()
    }

    /// `(package, productId, token)` of every `products.get`, in order.
    pub fn product_gets(&self) -> Vec<(String, String, String)> {
        self.served_on(Route::ProductGet)
            .into_iter()
            .filter_map(|s| {
                Some((
                    s.segments.first()?.clone(),
                    s.segments.get(3)?.clone(),
                    s.segments.last()?.clone(),
                ))
            })
            .collect()
    }

    /// Every `:acknowledge` (subscriptions and one-time products), in order.
    pub fn acknowledgements(&self) -> Vec<Acknowledgement> {
        self.state().acknowledgements.clone()
    }

    /// What the stand-in refused and why, for a test's failure message.
    pub fn complaints(&self) -> Vec<String> {
        self.state().complaints.clone()
    }
}

fn wall_clock_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn respond(status: u16, body: String) -> Response<String> {
    let mut builder = Response::builder().status(status);
    if !body.is_empty() {
        builder = builder.header("content-type", "application/json; charset=UTF-8");
    }
    builder.body(body).expect("a valid response")
}

/// Google's API error envelope.
fn api_error(code: u16, domain: &str, reason: &str, message: &str) -> String {
    json!({"error": {"code": code, "message": message,
                     "errors": [{"message": message, "domain": domain, "reason": reason}]}})
    .to_string()
}

fn oauth_error(error: &str, description: &str) -> String {
    json!({"error": error, "error_description": description}).to_string()
}

fn decode_segment(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

fn handle(
    s: &mut State,
    method: &str,
    path: &str,
    query: Vec<(String, String)>,
    auth: Option<&str>,
    body: &[u8],
) -> Response<String> {
    let query: BTreeMap<String, String> = query.into_iter().collect();
    let (route, segments) = route_of(method, path);
    let (status, answer) = match route {
        Route::Token => token(s, body),
        Route::Unknown => (404, api_error(404, "global", "notFound", "Not Found")),
        _ => play_api(s, route, &segments, &query, auth, body),
    };
    s.served.push(Served {
        route,
        method: method.to_owned(),
        segments,
        query,
        body: body.to_vec(),
        status,
    });
    respond(status, answer)
}

fn route_of(method: &str, path: &str) -> (Route, Vec<String>) {
    if path == "/token" && method == "POST" {
        return (Route::Token, vec!["token".to_owned()]);
    }
    let Some(rest) = path.strip_prefix("/androidpublisher/v3/applications/") else {
        return (Route::Unknown, vec![path.to_owned()]);
    };
    let segments: Vec<String> = rest.split('/').map(decode_segment).collect();
    let shape: Vec<&str> = segments.iter().map(String::as_str).collect();
    let route = match (method, shape.as_slice()) {
        ("GET", [_, "purchases", "subscriptionsv2", "tokens", _]) => Route::SubscriptionGet,
        ("POST", [_, "purchases", "subscriptions", _, "tokens", last])
            if last.ends_with(":acknowledge") =>
        {
            Route::Acknowledge
        }
        ("GET", [_, "purchases", "products", _, "tokens", _]) => Route::ProductGet,
        ("POST", [_, "purchases", "products", _, "tokens", last])
            if last.ends_with(":acknowledge") =>
        {
            Route::ProductAcknowledge
        }
        ("GET", [_, "purchases", "voidedpurchases"]) => Route::VoidedList,
        _ => Route::Unknown,
    };
    (route, segments)
}

/// `POST /token`: the JWT-bearer grant (RFC 7523), checked as Google does.
fn token(s: &mut State, body: &[u8]) -> (u16, String) {
    if let Some(answer) = s
        .scripted
        .get_mut(&Route::Token)
        .and_then(VecDeque::pop_front)
    {
        return answer;
    }
    let form: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
    match check_grant(s, &form) {
        Ok(()) => {
            s.grants += 1;
            let mut answer = recorded_json("google/oauth2.token.response.reconstructed.json");
            let access = format!("ya29.c.stand-in-access-token-{}", s.grants);
            answer["access_token"] = json!(access);
            s.issued.push(access);
            (200, answer.to_string())
        }
        Err((error, description)) => {
            s.complaints
                .push(format!("token endpoint: {error}: {description}"));
            (400, oauth_error(error, &description))
        }
    }
}

fn check_grant(s: &State, form: &HashMap<String, String>) -> Result<(), (&'static str, String)> {
    let grant_type = form.get("grant_type").map(String::as_str).unwrap_or("");
    if grant_type != JWT_BEARER {
        return Err((
            "unsupported_grant_type",
            format!("Invalid grant_type: {grant_type}"),
        ));
    }
    let assertion = form.get("assertion").ok_or((
        "invalid_request",
        "Missing required parameter: assertion".to_owned(),
    ))?;
    let mut validation = Validation::new(Algorithm::RS256);
    // The claims are checked below, against this endpoint's own rules.
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<Value>(assertion, &s.account_key, &validation)
        .map_err(|_| ("invalid_grant", "Invalid JWT Signature.".to_owned()))?;
    let claims = data.claims;
    if claims["iss"].as_str() != Some(s.account_email.as_str()) {
        return Err((
            "invalid_grant",
            "Invalid grant: account not found".to_owned(),
        ));
    }
    if claims["aud"].as_str() != Some(s.token_url.as_str()) {
        return Err((
            "invalid_grant",
            format!(
                "Invalid JWT: Failed audience check. The right audience is {}",
                s.token_url
            ),
        ));
    }
    let scopes = claims["scope"].as_str().unwrap_or("");
    if !scopes.split(' ').any(|sc| sc == ANDROIDPUBLISHER_SCOPE) {
        return Err((
            "invalid_scope",
            "Invalid OAuth scope or ID token audience provided.".to_owned(),
        ));
    }
    let short_lived = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a \
                       reasonable timeframe. Check your iat and exp values in the JWT claim.";
    let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
        return Err(("invalid_grant", short_lived.to_owned()));
    };
    let now = wall_clock_s();
    if exp <= iat || exp - iat > 3600 || exp <= now || iat > now + 60 {
        return Err(("invalid_grant", short_lived.to_owned()));
    }
    Ok(())
}

fn play_api(
    s: &mut State,
    route: Route,
    segments: &[String],
    query: &BTreeMap<String, String>,
    auth: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    let Some(bearer) = auth.and_then(|a| a.strip_prefix("Bearer ")) else {
        s.complaints
            .push(format!("{route:?} without an access token"));
        return (
            401,
            api_error(
                401,
                "global",
                "required",
                "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            ),
        );
    };
    if !s.issued.iter().any(|t| t == bearer) {
        s.complaints.push(format!(
            "{route:?} with an access token the endpoint did not issue"
        ));
        return (
            401,
            api_error(
                401,
                "global",
                "authError",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            ),
        );
    }
    let package = segments.first().cloned().unwrap_or_default();
    if let Some(answer) = s.scripted.get_mut(&route).and_then(VecDeque::pop_front) {
        if matches!(route, Route::Acknowledge | Route::ProductAcknowledge) {
            let (product_id, token) = ack_target(segments);
            s.acknowledgements.push(Acknowledgement {
                route,
                package,
                product_id,
                token,
                body: serde_json::from_slice(body).unwrap_or(Value::Null),
                status: answer.0,
            });
        }
        return answer;
    }
    if !s.packages.contains(&package) {
        return (
            404,
            api_error(
                404,
                "global",
                "applicationNotFound",
                "No application was found for the given package name.",
            ),
        );
    }
    if s.deny_all || s.denied.contains(&package) {
        let body = String::from_utf8(recorded(PERMISSION_DENIED)).expect("UTF-8");
        return (401, body);
    }
    match route {
        Route::SubscriptionGet => {
            let token = segments.last().cloned().unwrap_or_default();
            match s.purchases.get(&token) {
                Some(purchase) => (200, purchase.to_string()),
                None => {
                    if s.products.contains_key(&token) {
                        s.complaints.push(format!(
                            "subscriptionsv2.get with the token of a one-time product: {token}"
                        ));
                    }
                    not_found()
                }
            }
        }
        Route::ProductGet => {
            let (product_id, token) = product_target(segments);
            match s.products.get(&token) {
                Some((held, purchase)) if *held == product_id => (200, purchase.to_string()),
                Some((held, _)) => {
                    s.complaints.push(format!(
                        "products.get names product {product_id:?}, the purchase is of {held:?}"
                    ));
                    invalid_value("The product ID does not match the purchase token.")
                }
                None => {
                    if s.purchases.contains_key(&token) {
                        s.complaints.push(format!(
                            "products.get with the token of a subscription: {token}"
                        ));
                    }
                    not_found()
                }
            }
        }
        Route::Acknowledge | Route::ProductAcknowledge => {
            acknowledge(s, route, &package, segments, body)
        }
        Route::VoidedList => voided_list(s, &package, query),
        Route::Token | Route::Unknown => not_found(),
    }
}

fn not_found() -> (u16, String) {
    (
        404,
        api_error(
            404,
            "global",
            "notFound",
            "The purchase token was not found.",
        ),
    )
}

fn invalid_value(message: &str) -> (u16, String) {
    (400, api_error(400, "global", "invalid", message))
}

/// `(productId, token)` of `[package, "purchases", "products", productId, "tokens", token]`.
fn product_target(segments: &[String]) -> (String, String) {
    (
        segments.get(3).cloned().unwrap_or_default(),
        segments.get(5).cloned().unwrap_or_default(),
    )
}

/// `(productId, token)` of `[package, "purchases", "subscriptions" | "products", productId, "tokens", "<token>:acknowledge"]`.
fn ack_target(segments: &[String]) -> (String, String) {
    let product_id = segments.get(3).cloned().unwrap_or_default();
    let token = segments
        .get(5)
        .and_then(|t| t.strip_suffix(":acknowledge"))
        .unwrap_or_default()
        .to_owned();
    (product_id, token)
}

fn acknowledge(
    s: &mut State,
    route: Route,
    package: &str,
    segments: &[String],
    body: &[u8],
) -> (u16, String) {
    let (product_id, token) = ack_target(segments);
    // The request body is a SubscriptionPurchasesAcknowledgeRequest (or a
    // ProductPurchasesAcknowledgeRequest); empty is `{}`.
    let parsed = if body.is_empty() {
        Ok(json!({}))
    } else {
        serde_json::from_slice::<Value>(body)
    };
    let (status, answer, body) = match parsed {
        Err(_) | Ok(Value::Array(_) | Value::String(_) | Value::Number(_) | Value::Bool(_)) => {
            s.complaints
                .push("acknowledge with a body that is not a JSON object".into());
            let (st, a) = invalid_value("Invalid JSON payload received.");
            (st, a, Value::Null)
        }
        Ok(body) => {
            let (st, a) = if route == Route::ProductAcknowledge {
                acknowledge_product(s, &product_id, &token)
            } else {
                acknowledge_purchase(s, &product_id, &token)
            };
            (st, a, body)
        }
    };
    s.acknowledgements.push(Acknowledgement {
        route,
        package: package.to_owned(),
        product_id,
        token,
        body,
        status,
    });
    (status, answer)
}

fn acknowledge_purchase(s: &mut State, product_id: &str, token: &str) -> (u16, String) {
    let Some(purchase) = s.purchases.get_mut(token) else {
        return not_found();
    };
    let products: Vec<&str> = purchase["lineItems"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["productId"].as_str())
                .collect()
        })
        .unwrap_or_default();
    if !products.contains(&product_id) {
        s.complaints.push(format!(
            "acknowledge names product {product_id:?}, the purchase has {products:?}"
        ));
        return invalid_value("The subscription ID does not match the purchase token.");
    }
    let acknowledged =
        purchase["acknowledgementState"].as_str() == Some("ACKNOWLEDGEMENT_STATE_ACKNOWLEDGED");
    let state = purchase["subscriptionState"].as_str().unwrap_or("");
    let settled = matches!(
        state,
        "SUBSCRIPTION_STATE_EXPIRED"
            | "SUBSCRIPTION_STATE_PENDING"
            | "SUBSCRIPTION_STATE_PENDING_PURCHASE_CANCELED"
    );
    if acknowledged || settled {
        let body = String::from_utf8(recorded(INVALID_PURCHASE_STATE)).expect("UTF-8");
        return (400, body);
    }
    purchase["acknowledgementState"] = json!("ACKNOWLEDGEMENT_STATE_ACKNOWLEDGED");
    let body =
        String::from_utf8(recorded("google/acknowledge.success.empty-body.txt")).expect("UTF-8");
    (200, body)
}

/// A one-time product's acknowledgement: refused when it names another
/// product, and (invalidPurchaseState) when the purchase is acknowledged
/// or consumed already, canceled or not paid yet.
fn acknowledge_product(s: &mut State, product_id: &str, token: &str) -> (u16, String) {
    let Some((held, purchase)) = s.products.get_mut(token) else {
        if s.purchases.contains_key(token) {
            s.complaints.push(format!(
                "products.acknowledge with the token of a subscription: {token}"
            ));
        }
        return not_found();
    };
    if held != product_id {
        s.complaints.push(format!(
            "products.acknowledge names product {product_id:?}, the purchase is of {held:?}"
        ));
        return invalid_value("The product ID does not match the purchase token.");
    }
    let state = |key: &str| purchase[key].as_i64();
    let done = state("acknowledgementState") == Some(1) || state("consumptionState") == Some(1);
    if done || matches!(state("purchaseState"), Some(1 | 2)) {
        let body = String::from_utf8(recorded(INVALID_PURCHASE_STATE)).expect("UTF-8");
        return (400, body);
    }
    purchase["acknowledgementState"] = json!(1);
    let body =
        String::from_utf8(recorded("google/acknowledge.success.empty-body.txt")).expect("UTF-8");
    (200, body)
}

/// A query parameter under its REST name or its gRPC-transcoded one.
fn param<'a>(query: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    query
        .get(name)
        .or_else(|| query.get(&format!("pageSelection.{name}")))
        .map(String::as_str)
}

fn voided_list(s: &mut State, package: &str, query: &BTreeMap<String, String>) -> (u16, String) {
    let now = s
        .now_ms
        .unwrap_or_else(|| wall_clock_s().saturating_mul(1000));
    let number = |name: &str| -> Result<Option<i64>, (u16, String)> {
        match query.get(name) {
            None => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| invalid_value(&format!("Invalid value for {name}: {v}"))),
        }
    };
    let max_results = match param(query, "maxResults").map(str::parse::<usize>) {
        None => 1000,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => return invalid_value("maxResults must be between 1 and 1000."),
    };
    let page_len = max_results.min(s.page_size);
    // With a continuation token, the other filters are those of the first page.
    let mut q = match param(query, "token") {
        Some(token) => match s.page_tokens.get(token) {
            Some(q) if q.package == package => q.clone(),
            _ => return invalid_value("The pagination token is invalid."),
        },
        None => {
            let start = match number("startTime") {
                Ok(v) => v.unwrap_or(now - VOIDED_LOOKBACK_MS),
                Err(e) => return e,
            };
            let end = match number("endTime") {
                Ok(v) => v.unwrap_or(now),
                Err(e) => return e,
            };
            if start < now - VOIDED_LOOKBACK_MS {
                return invalid_value("startTime cannot be older than 30 days.");
            }
            if end > now {
                return invalid_value("endTime cannot be in the future.");
            }
            if start > end {
                return invalid_value("startTime must not be after endTime.");
            }
            let subscriptions = match query.get("type").map(String::as_str) {
                None | Some("0") => false,
                Some("1") => true,
                Some(_) => return invalid_value("type must be 0 or 1."),
            };
            VoidedQuery {
                package: package.to_owned(),
                start_ms: start,
                end_ms: end,
                subscriptions,
                partial: query
                    .get("includeQuantityBasedPartialRefund")
                    .map(String::as_str)
                    == Some("true"),
                offset: 0,
            }
        }
    };
    let millis = |v: &Value, key: &str| -> Option<i64> {
        match &v[key] {
            Value::String(s) => s.parse().ok(),
            Value::Number(n) => n.as_i64(),
            _ => None,
        }
    };
    let mut matching: Vec<&Value> = s
        .voided
        .iter()
        .filter(|r| r.package == q.package && (q.subscriptions || !r.subscription))
        .filter(|r| q.partial || r.purchase.get("voidedQuantity").is_none())
        .map(|r| &r.purchase)
        .filter(|p| {
            millis(p, "voidedTimeMillis").is_some_and(|t| (q.start_ms..=q.end_ms).contains(&t))
        })
        .collect();
    // "The first result in the list shows the oldest voided purchase."
    matching.sort_by_key(|p| millis(p, "voidedTimeMillis"));
    let page: Vec<Value> = matching
        .iter()
        .skip(q.offset)
        .take(page_len)
        .map(|p| (*p).clone())
        .collect();
    let mut answer = json!({});
    if !page.is_empty() {
        answer["voidedPurchases"] = json!(page);
    }
    let next = q.offset + page.len();
    if next < matching.len() {
        let token = format!("stand-in-page-{}", s.page_tokens.len() + 1);
        q.offset = next;
        s.page_tokens.insert(token.clone(), q);
        answer["tokenPagination"] = json!({"nextPageToken": token});
    }
    (200, answer.to_string())
}

#[cfg(test)]
mod tests {
    //! The stand-in refuses what Google refuses: a client that signs or
    //! sends its credentials wrongly must fail here.

    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    const FIXTURES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../plugins/google/tests/fixtures"
    );
    const PACKAGE: &str = "com.example.app";

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}/{name}")).expect("fixture")
    }

    fn account() -> (String, EncodingKey) {
        let key: Value = serde_json::from_slice(&fixture("service_account.json")).expect("JSON");
        let email = key["client_email"].as_str().expect("email").to_owned();
        let pem = key["private_key"].as_str().expect("key").to_owned();
        (
            email,
            EncodingKey::from_rsa_pem(pem.as_bytes()).expect("RSA"),
        )
    }

    async fn start() -> PlayStandIn {
        let (email, _) = account();
        PlayStandIn::start(
            ServiceAccount {
                client_email: email,
                public_key_pem: fixture("service_account_public.pem"),
            },
            &[PACKAGE],
        )
        .await
    }

    fn assertion(key: &EncodingKey, claims: &Value) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, key).expect("signs")
    }

    fn claims(play: &PlayStandIn) -> Value {
        let now = wall_clock_s();
        json!({"iss": account().0, "scope": ANDROIDPUBLISHER_SCOPE, "aud": play.token_url,
               "iat": now, "exp": now + 3600})
    }

    async fn grant(play: &PlayStandIn, grant_type: &str, assertion: &str) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(&play.token_url)
            .form(&[("grant_type", grant_type), ("assertion", assertion)])
            .send()
            .await
            .expect("answers");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON"))
    }

    #[tokio::test]
    async fn the_token_endpoint_checks_the_assertion() {
        let play = start().await;
        let (_, key) = account();
        let (status, body) = grant(&play, JWT_BEARER, &assertion(&key, &claims(&play))).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3599);
        assert!(body["access_token"].as_str().unwrap().starts_with("ya29."));

        let other_key = EncodingKey::from_rsa_pem(&fixture("oidc_key_1.pem")).expect("RSA");
        let mut refusals = vec![(
            assertion(&other_key, &claims(&play)),
            JWT_BEARER,
            "invalid_grant",
            "Signature",
        )];
        let now = wall_clock_s();
        for (field, value, error, words) in [
            (
                "iss",
                json!("someone@else.iam.gserviceaccount.com"),
                "invalid_grant",
                "account not found",
            ),
            (
                "aud",
                json!("https://oauth2.googleapis.com/token"),
                "invalid_grant",
                "audience",
            ),
            (
                "scope",
                json!("https://www.googleapis.com/auth/cloud-platform"),
                "invalid_scope",
                "scope",
            ),
            ("exp", json!(now + 7200), "invalid_grant", "short-lived"),
            ("iat", json!(now + 600), "invalid_grant", "short-lived"),
        ] {
            let mut c = claims(&play);
            c[field] = value;
            refusals.push((assertion(&key, &c), JWT_BEARER, error, words));
        }
        let mut expired = claims(&play);
        expired["iat"] = json!(now - 7200);
        expired["exp"] = json!(now - 3600);
        refusals.push((
            assertion(&key, &expired),
            JWT_BEARER,
            "invalid_grant",
            "short-lived",
        ));
        refusals.push((
            assertion(&key, &claims(&play)),
            "client_credentials",
            "unsupported_grant_type",
            "grant_type",
        ));
        for (jwt, grant_type, error, words) in refusals {
            let (status, body) = grant(&play, grant_type, &jwt).await;
            assert_eq!(
                (status, body["error"].as_str()),
                (400, Some(error)),
                "{body}"
            );
            let description = body["error_description"].as_str().unwrap();
            assert!(description.contains(words), "{words:?}: {description}");
        }
        assert_eq!(play.grants(), 1);
    }

    #[tokio::test]
    async fn the_api_wants_an_issued_token_and_filters_voids() {
        let play = start().await;
        let now = 1_700_000_000_000_i64;
        play.set_now_ms(now);
        for (order, days_ago, subscription) in [
            ("a", 40, false),
            ("b", 20, true),
            ("c", 10, false),
            ("d", 5, false),
        ] {
            play.add_voided(
                PACKAGE,
                json!({"orderId": order, "purchaseToken": "t",
                       "voidedTimeMillis": (now - days_ago * 86_400_000).to_string()}),
                subscription,
            );
        }
        let url = format!(
            "{}/androidpublisher/v3/applications/{PACKAGE}/purchases/voidedpurchases",
            play.base_url
        );
        let http = reqwest::Client::new();
        let get = |query: Vec<(&'static str, String)>, bearer: Option<String>| {
            let mut request = http.get(&url).query(&query);
            if let Some(b) = bearer {
                request = request.bearer_auth(b);
            }
            async move {
                let response = request.send().await.expect("answers");
                let status = response.status().as_u16();
                (
                    status,
                    response.json::<Value>().await.unwrap_or(Value::Null),
                )
            }
        };
        let (status, body) = get(vec![], None).await;
        assert_eq!((status, body["error"]["code"].as_i64()), (401, Some(401)));
        let (status, _) = get(vec![], Some("ya29.made-up".into())).await;
        assert_eq!(status, 401);

        let (_, key) = account();
        let (_, token) = grant(&play, JWT_BEARER, &assertion(&key, &claims(&play))).await;
        let bearer = token["access_token"].as_str().unwrap().to_owned();
        let orders = |body: &Value| -> Vec<String> {
            body["voidedPurchases"]
                .as_array()
                .map(|v| {
                    v.iter()
                        .map(|p| p["orderId"].as_str().unwrap().to_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        // Default: in-app products only, the last 30 days.
        let (status, body) = get(vec![], Some(bearer.clone())).await;
        assert_eq!(
            (status, orders(&body)),
            (200, vec!["c".to_owned(), "d".to_owned()])
        );
        // type=1, one per page: oldest first, with continuation tokens.
        let mut seen = Vec::new();
        let mut query = vec![("type", "1".to_owned()), ("maxResults", "1".to_owned())];
        loop {
            let (status, body) = get(query.clone(), Some(bearer.clone())).await;
            assert_eq!(status, 200, "{body}");
            seen.extend(orders(&body));
            match body["tokenPagination"]["nextPageToken"].as_str() {
                Some(next) => query = vec![("token", next.to_owned())],
                None => break,
            }
        }
        assert_eq!(seen, vec!["b", "c", "d"]);
        // A window, and what Google refuses.
        let (_, body) = get(
            vec![
                ("type", "1".into()),
                ("startTime", (now - 15 * 86_400_000).to_string()),
                ("endTime", (now - 6 * 86_400_000).to_string()),
            ],
            Some(bearer.clone()),
        )
        .await;
        assert_eq!(orders(&body), vec!["c"]);
        for query in [
            vec![("startTime", (now - 31 * 86_400_000).to_string())],
            vec![("endTime", (now + 60_000).to_string())],
            vec![("maxResults", "1001".to_owned())],
            vec![("token", "forged".to_owned())],
        ] {
            let (status, body) = get(query.clone(), Some(bearer.clone())).await;
            assert_eq!(status, 400, "{query:?}: {body}");
            assert_eq!(body["error"]["code"], 400);
        }
        play.deny_all();
        let (status, body) = get(vec![], Some(bearer)).await;
        assert_eq!(status, 401);
        assert_eq!(body["error"]["errors"][0]["reason"], "permissionDenied");
    }
}
