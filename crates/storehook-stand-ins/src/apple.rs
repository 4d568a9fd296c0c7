//! A stand-in of one App Store Server API host (Production or Sandbox):
//! Request a Test Notification, Get Test Notification Status and Get
//! Notification History, answered from `recorded/apple/`.
//!
//! Authentication is checked as Apple does: an `Authorization: Bearer`
//! ES256 JWT whose signature verifies with the public half of the key the
//! stand-in is given, header `kid` = the key id and `typ` = `JWT`, claims
//! `iss` = the issuer id, `aud` = `appstoreconnect-v1`, `bid` = one of the
//! stand-in's apps, `iat` and `exp` with `exp - iat` at most 20 minutes and
//! not expired. Anything else is a 401 with an empty body, as Apple sends
//! it. An app "not released in production yet" answers 401 to everything.
//!
//! A test scripts what Apple would say: the test notification's status
//! (404 `4040008` a number of times, then the send attempts and signed
//! payload it chooses), history pages (real JWS the test signs), "no URL
//! configured" (`4040007`) and one-off failures (429 with `Retry-After`
//! in Unix milliseconds, 500 `5000000`, any Apple error).
//!
//! [`signing`] makes chains shaped like Apple's and signs payloads with
//! them, for history and test-notification payloads storehook verifies
//! when it trusts the chain's root.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode};
use warp::reply::Reply;
use warp::Filter;

use crate::recorded_json;

pub const AUDIENCE: &str = "appstoreconnect-v1";
/// Longest token lifetime the stand-in accepts (storehook promises 20
/// minutes; Apple's own limit is 60).
pub const MAX_TOKEN_LIFETIME_S: i64 = 20 * 60;
/// Clock skew tolerated on `exp` and `iat`.
const LEEWAY_S: i64 = 60;
const DAY_MS: i64 = 86_400_000;

/// The API key the stand-in trusts: what App Store Connect knows of it.
#[derive(Debug, Clone)]
pub struct AppleApiKey {
    pub key_id: String,
    pub issuer_id: String,
    /// SPKI PEM (`-----BEGIN PUBLIC KEY-----`) of the P-256 key.
    pub public_key_pem: String,
}

/// One request as the stand-in saw it.
#[derive(Debug, Clone)]
pub struct ServedRequest {
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    pub body: Option<Value>,
    /// The bearer token as sent.
    pub bearer: Option<String>,
    /// The token's claims, when it verified.
    pub claims: Option<Value>,
    pub status: u16,
}

/// A one-off answer to the next authenticated request.
#[derive(Debug, Clone)]
pub enum Failure {
    /// 429 with the recorded body and this `Retry-After` value, as is.
    RateLimited { retry_after: String },
    /// 500 with the recorded `5000000` body.
    ServerError,
    /// Any status and body.
    Error { status: u16, body: Value },
}

/// One `sendAttempts` entry.
#[derive(Debug, Clone)]
pub struct SendAttempt {
    pub attempt_date: i64,
    pub result: String,
}

impl SendAttempt {
    pub fn new(attempt_date: i64, result: &str) -> Self {
        Self {
            attempt_date,
            result: result.to_owned(),
        }
    }

    fn to_json(&self) -> Value {
        json!({ "attemptDate": self.attempt_date, "sendAttemptResult": self.result })
    }
}

/// What Get Test Notification Status says for one app's test notifications.
#[derive(Debug, Clone)]
pub struct TestNotificationScript {
    /// How many status requests answer 404 `4040008` first, per token.
    pub not_ready: u32,
    pub send_attempts: Vec<SendAttempt>,
    pub signed_payload: String,
}

/// One record of the notification history.
#[derive(Debug, Clone)]
pub struct HistoryRecord {
    pub signed_payload: String,
    pub send_attempts: Vec<SendAttempt>,
}

impl HistoryRecord {
    pub fn new(signed_payload: impl Into<String>) -> Self {
        Self {
            signed_payload: signed_payload.into(),
            send_attempts: vec![SendAttempt::new(0, "NO_RESPONSE")],
        }
    }
}

struct IssuedTest {
    bundle_id: String,
    not_ready: u32,
}

struct IssuedPage {
    bundle_id: String,
    page: usize,
    /// The request body the listing started with: Apple wants it repeated.
    body: Value,
}

struct State {
    key: AppleApiKey,
    decoding_key: DecodingKey,
    bundle_ids: Vec<String>,
    history_days: i64,
    released: bool,
    notification_url_set: bool,
    test_scripts: HashMap<String, TestNotificationScript>,
    issued_tests: HashMap<String, IssuedTest>,
    history: HashMap<String, Vec<Vec<HistoryRecord>>>,
    issued_pages: HashMap<String, IssuedPage>,
    /// One-off answers, each for any request or for a method and path prefix.
    failures: VecDeque<(Option<(String, String)>, Failure)>,
    requests: Vec<ServedRequest>,
    counter: u64,
    /// The instant history limits are measured from, if not the system clock.
    clock_ms: Option<i64>,
}

/// One App Store Server API host on loopback.
#[derive(Clone)]
pub struct AppleStandIn {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl AppleStandIn {
    /// The Production host: 180 days of history.
    pub async fn production(key: AppleApiKey, bundle_ids: &[&str]) -> Self {
        Self::start(key, bundle_ids, 180).await
    }

    /// The Sandbox host: 30 days of history.
    pub async fn sandbox(key: AppleApiKey, bundle_ids: &[&str]) -> Self {
        Self::start(key, bundle_ids, 30).await
    }

    async fn start(key: AppleApiKey, bundle_ids: &[&str], history_days: i64) -> Self {
        let decoding_key = DecodingKey::from_ec_pem(key.public_key_pem.as_bytes())
            .expect("the stand-in's public key is an EC PEM");
        let state = Arc::new(Mutex::new(State {
            key,
            decoding_key,
            bundle_ids: bundle_ids.iter().map(|b| (*b).to_owned()).collect(),
            history_days,
            released: true,
            notification_url_set: true,
            test_scripts: HashMap::new(),
            issued_tests: HashMap::new(),
            history: HashMap::new(),
            issued_pages: HashMap::new(),
            failures: VecDeque::new(),
            requests: Vec::new(),
            counter: 0,
            clock_ms: None,
        }));
        let shared = state.clone();
        let routes = warp::method()
            .and(warp::path::full())
            .and(warp::query::<HashMap<String, String>>())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .map(
                move |method: Method,
                      path: warp::path::FullPath,
                      query: HashMap<String, String>,
                      headers: HeaderMap,
                      body: bytes::Bytes| {
                    let mut state = shared.lock().unwrap_or_else(|e| e.into_inner());
                    state.serve(&method, path.as_str(), query, &headers, &body)
                },
            );
        let addr = crate::serve(routes).await;
        Self { addr, state }
    }

    /// The base URL to configure as `production_url` / `sandbox_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every request served, oldest first.
    pub fn requests(&self) -> Vec<ServedRequest> {
        self.state().requests.clone()
    }

    /// `false`: the app has had no production release, and Apple answers
    /// 401 to every request.
    pub fn set_released(&self, released: bool) {
        self.state().released = released;
    }

    /// `false`: no notification URL in App Store Connect for this
    /// environment (Request a Test Notification answers 404 `4040007`).
    pub fn set_notification_url(&self, set: bool) {
        self.state().notification_url_set = set;
    }

    pub fn script_test_notification(&self, bundle_id: &str, script: TestNotificationScript) {
        self.state()
            .test_scripts
            .insert(bundle_id.to_owned(), script);
    }

    /// The history of one app, page by page, in the order Apple lists it.
    pub fn script_history(&self, bundle_id: &str, pages: Vec<Vec<HistoryRecord>>) {
        self.state().history.insert(bundle_id.to_owned(), pages);
    }

    /// The instant the history's 180 / 30 days are counted back from, for a
    /// host running on an injected clock (default: the system clock).
    /// Tokens are always checked against the system clock, which storehook
    /// signs them with.
    pub fn set_clock_ms(&self, now_ms: Option<i64>) {
        self.state().clock_ms = now_ms;
    }

    /// The next authenticated request gets this answer instead.
    pub fn fail_next(&self, failure: Failure) {
        self.state().failures.push_back((None, failure));
    }

    /// The next authenticated request with this method and a path starting
    /// with `path_prefix` gets this answer instead.
    pub fn fail_next_on(&self, method: &str, path_prefix: &str, failure: Failure) {
        self.state()
            .failures
            .push_back((Some((method.to_owned(), path_prefix.to_owned())), failure));
    }
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn respond(status: u16, body: Option<Value>) -> warp::reply::Response {
    let mut response = match body {
        Some(body) => warp::reply::json(&body).into_response(),
        None => warp::reply::Response::default(),
    };
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
}

fn apple_error(rel: &str) -> Value {
    recorded_json(&format!("apple/{rel}"))
}

fn error_body(code: i64, message: &str) -> Value {
    json!({ "errorCode": code, "errorMessage": message })
}

impl State {
    fn serve(
        &mut self,
        method: &Method,
        path: &str,
        query: HashMap<String, String>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> warp::reply::Response {
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        let body_json: Option<Value> = serde_json::from_slice(body).ok();
        let claims = bearer.as_deref().and_then(|t| self.verify(t));
        let (status, response) = match &claims {
            None => (401, respond(401, None)),
            Some(claims) => {
                let bid = claims["bid"].as_str().unwrap_or_default().to_owned();
                self.answer(method, path, &query, body_json.as_ref(), &bid)
            }
        };
        self.requests.push(ServedRequest {
            method: method.to_string(),
            path: path.to_owned(),
            query,
            body: body_json,
            bearer,
            claims,
            status,
        });
        response
    }

    /// The token's claims if Apple would accept it.
    fn verify(&self, token: &str) -> Option<Value> {
        if !self.released {
            return None;
        }
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != Algorithm::ES256
            || header.kid.as_deref() != Some(self.key.key_id.as_str())
            || header.typ.as_deref() != Some("JWT")
        {
            return None;
        }
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[self.key.issuer_id.as_str()]);
        validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
        validation.leeway = LEEWAY_S as u64;
        let data = jsonwebtoken::decode::<Value>(token, &self.decoding_key, &validation).ok()?;
        let claims = data.claims;
        let bid = claims["bid"].as_str()?;
        let (iat, exp) = (claims["iat"].as_i64()?, claims["exp"].as_i64()?);
        let ok = self.bundle_ids.iter().any(|b| b == bid)
            && exp - iat <= MAX_TOKEN_LIFETIME_S
            && exp > iat
            && iat <= now_s() + LEEWAY_S;
        ok.then_some(claims)
    }

    fn answer(
        &mut self,
        method: &Method,
        path: &str,
        query: &HashMap<String, String>,
        body: Option<&Value>,
        bid: &str,
    ) -> (u16, warp::reply::Response) {
        let due = self.failures.iter().position(|(route, _)| {
            route
                .as_ref()
                .is_none_or(|(m, prefix)| m == method.as_str() && path.starts_with(prefix.as_str()))
        });
        if let Some((_, failure)) = due.and_then(|i| self.failures.remove(i)) {
            return match failure {
                Failure::RateLimited { retry_after } => {
                    let mut response =
                        respond(429, Some(apple_error("apiTooManyRequestsException.json")));
                    if let Ok(value) = HeaderValue::from_str(&retry_after) {
                        response.headers_mut().insert("retry-after", value);
                    }
                    (429, response)
                }
                Failure::ServerError => (500, respond(500, Some(apple_error("apiException.json")))),
                Failure::Error { status, body } => (status, respond(status, Some(body))),
            };
        }
        let (status, body) = match (method.as_str(), path) {
            ("POST", "/inApps/v1/notifications/test") => self.request_test(bid),
            ("GET", p) if p.starts_with("/inApps/v1/notifications/test/") => {
                self.test_status(bid, &p["/inApps/v1/notifications/test/".len()..])
            }
            ("POST", "/inApps/v1/notifications/history") => {
                self.history_page(bid, query.get("paginationToken"), body)
            }
            _ => (404, None),
        };
        (status, respond(status, body))
    }

    fn request_test(&mut self, bid: &str) -> (u16, Option<Value>) {
        if !self.notification_url_set {
            return (
                404,
                Some(apple_error(
                    "serverNotificationURLNotFoundError.reconstructed.json",
                )),
            );
        }
        let mut response = recorded_json("apple/requestTestNotificationResponse.json");
        self.counter += 1;
        // The first token is the recorded one; later ones differ from it.
        let token = match (self.counter, response["testNotificationToken"].as_str()) {
            (1, Some(recorded)) => recorded.to_owned(),
            (n, recorded) => format!("{}-{n}", recorded.unwrap_or("token")),
        };
        let not_ready = self.test_scripts.get(bid).map_or(u32::MAX, |s| s.not_ready);
        self.issued_tests.insert(
            token.clone(),
            IssuedTest {
                bundle_id: bid.to_owned(),
                not_ready,
            },
        );
        response["testNotificationToken"] = Value::String(token);
        (200, Some(response))
    }

    fn test_status(&mut self, bid: &str, token: &str) -> (u16, Option<Value>) {
        let not_found = || {
            (
                404,
                Some(apple_error(
                    "testNotificationNotFoundError.reconstructed.json",
                )),
            )
        };
        let Some(issued) = self
            .issued_tests
            .get_mut(token)
            .filter(|t| t.bundle_id == bid)
        else {
            return not_found();
        };
        if issued.not_ready > 0 {
            issued.not_ready -= 1;
            return not_found();
        }
        let Some(script) = self.test_scripts.get(bid) else {
            return not_found();
        };
        let mut response = recorded_json("apple/getTestNotificationStatusResponse.json");
        response["signedPayload"] = Value::String(script.signed_payload.clone());
        response["sendAttempts"] = script
            .send_attempts
            .iter()
            .map(SendAttempt::to_json)
            .collect();
        (200, Some(response))
    }

    fn history_page(
        &mut self,
        bid: &str,
        pagination_token: Option<&String>,
        body: Option<&Value>,
    ) -> (u16, Option<Value>) {
        let Some(body) = body.filter(|b| b.is_object()) else {
            return (400, Some(error_body(4_000_000, "Invalid request.")));
        };
        let (Some(start), Some(end)) = (body["startDate"].as_i64(), body["endDate"].as_i64())
        else {
            return (400, Some(error_body(4_000_015, "Invalid request. The start date is not a timestamp value represented in milliseconds.")));
        };
        let now_ms = self.clock_ms.unwrap_or_else(|| now_s() * 1000);
        if start < now_ms - self.history_days * DAY_MS {
            return (
                400,
                Some(apple_error("startDateTooFarInPastError.reconstructed.json")),
            );
        }
        if end <= start {
            return (400, Some(error_body(4_000_013, "Invalid request. The end date precedes the start date or the dates are the same.")));
        }
        let page = match pagination_token {
            None => 0,
            Some(token) => match self.issued_pages.get(token) {
                Some(issued) if issued.bundle_id == bid && issued.body == *body => issued.page,
                _ => {
                    return (
                        400,
                        Some(apple_error(
                            "invalidPaginationTokenError.reconstructed.json",
                        )),
                    )
                }
            },
        };
        let pages = self.history.get(bid).map(Vec::as_slice).unwrap_or_default();
        let records = pages.get(page).cloned().unwrap_or_default();
        self.counter += 1;
        let next_token = format!("57715481-805a-4283-8499-{:012x}", self.counter);
        self.issued_pages.insert(
            next_token.clone(),
            IssuedPage {
                bundle_id: bid.to_owned(),
                page: page + 1,
                body: body.clone(),
            },
        );
        let mut response = recorded_json("apple/getNotificationHistoryResponse.json");
        response["paginationToken"] = Value::String(next_token);
        response["hasMore"] = Value::Bool(page + 1 < pages.len());
        response["notificationHistory"] = records
            .iter()
            .map(|r| {
                json!({
                    "sendAttempts": r.send_attempts.iter().map(SendAttempt::to_json).collect::<Vec<_>>(),
                    "signedPayload": r.signed_payload,
                })
            })
            .collect();
        (200, Some(response))
    }
}

/// Test certificate chains shaped like Apple's (rcgen, with Apple's OIDs)
/// and JWS signing (ring), so that a stand-in's signed payloads are real
/// JWS that storehook verifies when it trusts the chain's root.
pub mod signing {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine;
    use rcgen::{
        BasicConstraints, CertificateParams, CustomExtension, DnType, IsCa, Issuer, KeyPair,
        KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
    };
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use serde_json::{json, Value};

    pub const LEAF_OID: &[u64] = &[1, 2, 840, 113635, 100, 6, 11, 1];
    pub const INTERMEDIATE_OID: &[u64] = &[1, 2, 840, 113635, 100, 6, 2, 1];

    pub fn b64(der: &[u8]) -> String {
        STANDARD.encode(der)
    }

    pub fn b64url(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Signs `header.payload` (both given as JSON text, used byte for byte).
    pub fn sign_raw(header: &str, payload: &str, key: &EcdsaKeyPair) -> String {
        let input = format!(
            "{}.{}",
            b64url(header.as_bytes()),
            b64url(payload.as_bytes())
        );
        let sig = key.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", b64url(sig.as_ref()))
    }

    pub fn sign(header: &Value, payload: &Value, key: &EcdsaKeyPair) -> String {
        sign_raw(&header.to_string(), &payload.to_string(), key)
    }

    /// How a test chain deviates from a good one.
    #[derive(Clone)]
    pub struct ChainOptions {
        pub leaf_oid: bool,
        pub intermediate_oid: bool,
        pub intermediate_is_ca: bool,
        /// (year, month, day) of the leaf's notBefore and notAfter.
        pub leaf_validity: ((i32, u8, u8), (i32, u8, u8)),
        /// Appended to every certificate's common name.
        pub names_suffix: &'static str,
    }

    impl Default for ChainOptions {
        fn default() -> Self {
            Self {
                leaf_oid: true,
                intermediate_oid: true,
                intermediate_is_ca: true,
                leaf_validity: ((2020, 1, 1), (2030, 1, 1)),
                names_suffix: "",
            }
        }
    }

    /// A root (P-384), an intermediate (P-384, ecdsa-with-SHA384) and a leaf
    /// (P-256) shaped like Apple's, made with rcgen.
    pub struct TestChain {
        pub root: Vec<u8>,
        pub intermediate: Vec<u8>,
        pub leaf: Vec<u8>,
        pub leaf_key: EcdsaKeyPair,
    }

    fn name(params: &mut CertificateParams, cn: &str) {
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "storehook tests");
    }

    /// (year, month, day) of notBefore and notAfter.
    type Validity = ((i32, u8, u8), (i32, u8, u8));

    /// A certificate issued by its parent (the intermediate or the leaf):
    /// it names its issuer's key, and carries Apple's marker extension
    /// `marker_oid` unless the chain leaves it out.
    fn issued_params(
        common_name: &str,
        is_ca: IsCa,
        key_usages: Vec<KeyUsagePurpose>,
        ((y0, m0, d0), (y1, m1, d1)): Validity,
        marker_oid: Option<&[u64]>,
    ) -> CertificateParams {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        name(&mut params, common_name);
        params.is_ca = is_ca;
        params.key_usages = key_usages;
        params.not_before = rcgen::date_time_ymd(y0, m0, d0);
        params.not_after = rcgen::date_time_ymd(y1, m1, d1);
        params.use_authority_key_identifier_extension = true;
        if let Some(oid) = marker_oid {
            params
                .custom_extensions
                .push(CustomExtension::from_oid_content(oid, vec![0x05, 0x00]));
        }
        params
    }

    impl TestChain {
        pub fn new(options: ChainOptions) -> Self {
            let root_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
            let mut root_params = CertificateParams::new(Vec::<String>::new()).unwrap();
            name(
                &mut root_params,
                &format!("Test Root CA{}", options.names_suffix),
            );
            root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            root_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            root_params.not_before = rcgen::date_time_ymd(2015, 1, 1);
            root_params.not_after = rcgen::date_time_ymd(2040, 1, 1);
            let root = root_params.self_signed(&root_key).unwrap();
            let root_issuer = Issuer::from_params(&root_params, &root_key);

            let intermediate_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
            let intermediate_params = issued_params(
                &format!("Test WWDR Intermediate{}", options.names_suffix),
                if options.intermediate_is_ca {
                    IsCa::Ca(BasicConstraints::Unconstrained)
                } else {
                    IsCa::ExplicitNoCa
                },
                vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign],
                ((2016, 1, 1), (2038, 1, 1)),
                options.intermediate_oid.then_some(INTERMEDIATE_OID),
            );
            let intermediate = intermediate_params
                .signed_by(&intermediate_key, &root_issuer)
                .unwrap();
            let intermediate_issuer = Issuer::from_params(&intermediate_params, &intermediate_key);

            let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
            let leaf_params = issued_params(
                &format!("Test Receipt Signing{}", options.names_suffix),
                IsCa::ExplicitNoCa,
                vec![KeyUsagePurpose::DigitalSignature],
                options.leaf_validity,
                options.leaf_oid.then_some(LEAF_OID),
            );
            let leaf = leaf_params
                .signed_by(&leaf_key, &intermediate_issuer)
                .unwrap();

            Self {
                root: root.der().to_vec(),
                intermediate: intermediate.der().to_vec(),
                leaf: leaf.der().to_vec(),
                leaf_key: EcdsaKeyPair::from_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    &leaf_key.serialize_der(),
                    &SystemRandom::new(),
                )
                .unwrap(),
            }
        }

        pub fn good() -> Self {
            Self::new(ChainOptions::default())
        }

        /// x5c as Apple sends it: leaf, intermediate, root.
        pub fn x5c(&self) -> Vec<String> {
            vec![b64(&self.leaf), b64(&self.intermediate), b64(&self.root)]
        }

        pub fn header(&self) -> Value {
            json!({ "alg": "ES256", "x5c": self.x5c() })
        }

        pub fn sign(&self, payload: &Value) -> String {
            sign(&self.header(), payload, &self.leaf_key)
        }

        pub fn sign_with_header(&self, header: &Value, payload: &Value) -> String {
            sign(header, payload, &self.leaf_key)
        }
    }
}
