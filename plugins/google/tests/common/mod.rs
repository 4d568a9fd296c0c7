//! Shared test support: fixtures, token minting, adapters built from TOML,
//! push bodies, a local HTTP stand-in (loopback, port 0) for Google's JWKS
//! endpoint, and the storehook-stand-ins one of the token endpoint and the
//! Play Developer API set up with the fixture service account.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use storehook_core::{
    FactoryContext, IncomingRequest, Outcome, StoreAdapter, VerifiedNotification,
};
// Not every test file uses every name.
#[allow(unused_imports)]
pub use storehook_stand_ins::google::{PlayStandIn, Route, ServiceAccount};
use warp::Filter;

pub const AUDIENCE: &str = "https://hooks.example.com/v1/notifications/google";
pub const PUSH_ACCOUNT: &str = "rtdn-push@storehook-test.iam.gserviceaccount.com";
pub const PUSH_TOKEN: &str = "push-secret-0123456789";
pub const PACKAGE: &str = "com.example.subscriptions";
/// 2026-01-01T00:00:00Z, the corpus vectors' clock.
pub const NOW_S: i64 = 1_767_225_600;
pub const NOW_MS: i64 = NOW_S * 1000;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures")).join(name)
}

pub fn corpus(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/corpus/google"
    ))
    .join(name)
}

pub fn read_json(path: PathBuf) -> Value {
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Builds the adapter through its registration, as the host does.
pub fn build(toml_text: &str) -> Box<dyn StoreAdapter> {
    try_build(toml_text).unwrap_or_else(|e| panic!("config refused: {e}"))
}

pub fn try_build(toml_text: &str) -> Result<Box<dyn StoreAdapter>, storehook_core::ConfigError> {
    storehook_google::link();
    let table: toml::Table = toml::from_str(toml_text).expect("test TOML parses");
    let registration = storehook_core::find_registration("google").expect("google is registered");
    fn no_env(_: &str) -> Option<String> {
        None
    }
    let ctx = FactoryContext {
        config_dir: fixture(""),
        env: &no_env,
    };
    (registration.build)(&table, &ctx)
}

/// Config with OIDC against a local JWKS file and the given leeway.
pub fn oidc_config(jwks_file: &str, leeway: u64) -> String {
    format!(
        "package_names = ['{PACKAGE}']\naudience = '{AUDIENCE}'\npush_service_account = '{PUSH_ACCOUNT}'\n\
         jwks_file = '{jwks_file}'\nclock_skew_seconds = {leeway}\n"
    )
}

pub fn push_token_config(packages: &[&str]) -> String {
    let list: Vec<String> = packages.iter().map(|p| format!("'{p}'")).collect();
    format!(
        "package_names = [{}]\npush_token = '{PUSH_TOKEN}'\n",
        list.join(", ")
    )
}

/// Valid push-token claims as Pub/Sub mints them (iat = now, exp = now + 1 h).
pub fn push_claims(now_s: i64) -> Value {
    json!({
        "aud": AUDIENCE,
        "azp": "113774264463038321964",
        "email": PUSH_ACCOUNT,
        "email_verified": true,
        "exp": now_s + 3600,
        "iat": now_s,
        "iss": "https://accounts.google.com",
        "sub": "113774264463038321964",
    })
}

/// Signs `claims` with a fixture key (`oidc_key_1.pem`…) under `kid`.
pub fn mint(key_file: &str, kid: Option<&str>, claims: &Value) -> String {
    let pem = std::fs::read(fixture(key_file)).expect("fixture key");
    let key = EncodingKey::from_rsa_pem(&pem).expect("RSA key");
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &key).expect("signs")
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A wrapped push body as Pub/Sub sends it.
pub fn push_body(data: &[u8], message_id: Option<&str>) -> Vec<u8> {
    let mut message = json!({
        "data": b64(data),
        "publishTime": "2026-01-01T00:00:00.123Z",
        "publish_time": "2026-01-01T00:00:00.123Z",
    });
    if let Some(id) = message_id {
        message["messageId"] = json!(id);
        message["message_id"] = json!(id);
    }
    serde_json::to_vec(&json!({"message": message, "subscription": "projects/p/subscriptions/s"}))
        .expect("serializes")
}

pub fn developer_notification(branch: &str, body: Value) -> Value {
    let mut n =
        json!({"version": "1.0", "packageName": PACKAGE, "eventTimeMillis": "1767225660000"});
    n[branch] = body;
    n
}

pub fn subscription_data(notification_type: i64) -> Vec<u8> {
    serde_json::to_vec(&developer_notification(
        "subscriptionNotification",
        json!({"version": "1.0", "notificationType": notification_type,
               "purchaseToken": "test-purchase-token.AO-J1Ox", "subscriptionId": "premium_monthly"}),
    ))
    .expect("serializes")
}

pub fn with_push_token(body: Vec<u8>) -> IncomingRequest {
    IncomingRequest::new(body, NOW_MS).with_query(format!("token={PUSH_TOKEN}"))
}

pub fn with_bearer(body: Vec<u8>, token: &str, now_ms: i64) -> IncomingRequest {
    IncomingRequest::new(body, now_ms).with_header("Authorization", format!("Bearer {token}"))
}

pub async fn expect_notification(
    adapter: &dyn StoreAdapter,
    req: &IncomingRequest,
) -> VerifiedNotification {
    match adapter.verify_and_decode(req).await {
        Ok(Outcome::Notification(n)) => *n,
        other => panic!("expected a notification, got {other:?}"),
    }
}

/// Asserts an acknowledged rejection with `code`; returns its notification id.
pub async fn expect_ack_rejection(
    adapter: &dyn StoreAdapter,
    req: &IncomingRequest,
    code: &str,
) -> Option<String> {
    match adapter.verify_and_decode(req).await {
        Ok(Outcome::AcknowledgedRejection {
            notification_id,
            code: got,
            message,
        }) => {
            assert_eq!(got, code, "{message}");
            assert!(!message.is_empty());
            notification_id
        }
        other => panic!("expected an acknowledged rejection {code}, got {other:?}"),
    }
}

pub async fn expect_error(
    adapter: &dyn StoreAdapter,
    req: &IncomingRequest,
    status: u16,
    code: &str,
) {
    storehook_core::conformance::expect_error(adapter, req, status, Some(code), code).await;
}

/// A loopback port that was just free: nothing listens there.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds loopback");
    listener.local_addr().expect("local addr").port()
}

/// A JWKS endpoint whose document and `Cache-Control` the test changes.
pub struct JwksServer {
    pub url: String,
    pub state: Arc<Mutex<JwksState>>,
}

pub struct JwksState {
    pub document: Value,
    pub cache_control: Option<String>,
    pub status: u16,
    pub hits: usize,
}

impl JwksServer {
    pub async fn start(document: Value, cache_control: Option<&str>) -> Self {
        let state = Arc::new(Mutex::new(JwksState {
            document,
            cache_control: cache_control.map(str::to_string),
            status: 200,
            hits: 0,
        }));
        let shared = state.clone();
        let route = warp::get()
            .and(warp::path!("oauth2" / "v3" / "certs"))
            .map(move || {
                let mut s = shared.lock().expect("lock");
                s.hits += 1;
                let mut response = warp::http::Response::builder()
                    .status(s.status)
                    .header("content-type", "application/json");
                if let Some(cc) = &s.cache_control {
                    response = response.header("cache-control", cc.as_str());
                }
                response.body(s.document.to_string()).expect("response")
            });
        let addr = storehook_stand_ins::serve(route).await;
        JwksServer {
            url: format!("http://{addr}/oauth2/v3/certs"),
            state,
        }
    }

    pub fn hits(&self) -> usize {
        self.state.lock().expect("lock").hits
    }

    pub fn set_document(&self, document: Value) {
        self.state.lock().expect("lock").document = document;
    }
}

/// The service account of `fixtures/service_account.json`.
pub const SA_EMAIL: &str = storehook_stand_ins::google::FIXTURE_ACCOUNT_EMAIL;

/// The stand-in of Google's token endpoint and the Play Developer API
/// (storehook-stand-ins), accepting the fixture service account's
/// assertions and knowing `packages`.
pub async fn play_stand_in(packages: &[&str]) -> PlayStandIn {
    PlayStandIn::start(storehook_stand_ins::google::fixture_account(), packages).await
}

/// An adapter whose service-account key file holds a private key the token
/// endpoint does not know (a revoked or replaced key); the folder holding
/// the file lives as long as the returned guard.
pub fn adapter_with_unknown_key(
    stand_in: &PlayStandIn,
    package: &str,
) -> (tempfile::TempDir, Box<dyn StoreAdapter>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut key = read_json(fixture("service_account.json"));
    key["private_key"] =
        json!(std::fs::read_to_string(fixture("oidc_key_1.pem")).expect("fixture key"));
    let path = dir.path().join("revoked.json");
    std::fs::write(&path, key.to_string()).expect("write key file");
    let adapter = build(&format!(
        "package_names = ['{package}']\npush_token = 'x'\n[play_api]\nservice_account_key_file = '{}'\n\
         base_url = '{}'\ntoken_url = '{}'\n",
        path.display(),
        stand_in.base_url,
        stand_in.token_url
    ));
    (dir, adapter)
}

/// `[stores.google]` with the Play API pointed at `stand_in`; `extra` goes
/// into `[play_api]`.
pub fn play_config(stand_in: &PlayStandIn, packages: &[&str], extra: &str) -> String {
    let list: Vec<String> = packages.iter().map(|p| format!("'{p}'")).collect();
    format!(
        "package_names = [{}]\npush_token = '{PUSH_TOKEN}'\n[play_api]\n\
         service_account_key_file = 'service_account.json'\nbase_url = '{}'\ntoken_url = '{}'\n{extra}\n",
        list.join(", "),
        stand_in.base_url,
        stand_in.token_url
    )
}
