//! The App Store Server API client: the test-notification endpoints and
//! Get Notification History, authenticated with an ES256 bearer token per
//! app (bundle id), cached until shortly before it expires.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use storehook_core::{AdapterError, Secret};

use crate::config::{ApiSettings, AppleEnvironment};

/// Apple's `aud` for every App Store Server API token.
pub const AUDIENCE: &str = "appstoreconnect-v1";
/// Apple refuses tokens living longer than 60 minutes; its libraries use 5.
/// 15 stays well inside the 20 storehook promises.
const TOKEN_LIFETIME_S: u64 = 15 * 60;
/// A cached token is replaced this long before it expires, so that one in
/// flight never arrives expired.
const TOKEN_RENEW_MARGIN_S: u64 = 60;
/// Apple's libraries wait 30 s for an answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Apple's error bodies are a few dozen bytes; anything longer is quoted cut.
const QUOTED_BODY_LIMIT: usize = 300;

/// `{errorCode, errorMessage}`, as Apple sent it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppleError {
    #[serde(default)]
    pub error_code: Option<i64>,
    #[serde(default)]
    pub error_message: Option<String>,
}

impl std::fmt::Display for AppleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.error_code, &self.error_message) {
            (Some(code), Some(message)) => write!(f, "{code} {message}"),
            (Some(code), None) => write!(f, "{code}"),
            (None, Some(message)) => f.write_str(message),
            (None, None) => f.write_str("no error code"),
        }
    }
}

/// When Apple's `Retry-After` says to ask again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// An instant, Unix milliseconds (what Apple documents and sends).
    At(i64),
    /// A delay, milliseconds (the HTTP standard's delta-seconds form).
    In(i64),
}

impl RetryAfter {
    /// Apple sends Unix milliseconds; Unix seconds and HTTP's delay in
    /// seconds are tolerated, told apart by their size.
    pub fn parse(value: &str) -> Option<Self> {
        let n: i64 = value.trim().parse().ok()?;
        if n < 0 {
            return None;
        }
        Some(if n >= 100_000_000_000 {
            RetryAfter::At(n)
        } else if n >= 1_000_000_000 {
            RetryAfter::At(n.saturating_mul(1000))
        } else {
            RetryAfter::In(n.saturating_mul(1000))
        })
    }

    pub fn at_ms(self, now_ms: i64) -> i64 {
        match self {
            RetryAfter::At(ms) => ms,
            RetryAfter::In(ms) => now_ms.saturating_add(ms),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 401, no body: Apple does not say which part it refused.
    #[error("Apple answered 401 (not authorized): wrong key id, issuer id or bundle id, or the app is not released in production yet")]
    Unauthorized,
    #[error("Apple asked to slow down (HTTP 429{})", .apple.as_ref().map(|a| format!(", {a}")).unwrap_or_default())]
    RateLimited {
        retry_after: Option<RetryAfter>,
        apple: Option<AppleError>,
    },
    /// 5xx, or no answer at all: worth asking again later.
    #[error("{0}")]
    Unavailable(String),
    /// Another 4xx, with Apple's error as sent.
    #[error("Apple refused the request: HTTP {status}, {}", .apple.as_ref().map(ToString::to_string).unwrap_or_else(|| .body.clone()))]
    Refused {
        status: u16,
        apple: Option<AppleError>,
        /// The body, cut, when it is not Apple's error object.
        body: String,
    },
    #[error("Apple's answer is not what its documentation describes: {0}")]
    BadResponse(String),
    #[error("cannot sign the API token: {0}")]
    Signing(String),
}

impl ApiError {
    /// Apple's `errorCode`, when it sent one.
    pub fn apple_code(&self) -> Option<i64> {
        match self {
            ApiError::RateLimited { apple, .. } | ApiError::Refused { apple, .. } => {
                apple.as_ref().and_then(|a| a.error_code)
            }
            _ => None,
        }
    }

    /// The host's error, with `now_ms` to place a relative `Retry-After`.
    pub fn into_adapter_error(self, now_ms: i64) -> AdapterError {
        let message = self.to_string();
        match self {
            ApiError::Unauthorized => AdapterError::unauthorized("apple_api_unauthorized", message),
            ApiError::RateLimited { retry_after, .. } => AdapterError::RateLimited {
                code: "apple_api_rate_limited".into(),
                message,
                retry_at_ms: retry_after.map(|r| r.at_ms(now_ms)),
            },
            ApiError::Unavailable(_) => AdapterError::unavailable("apple_api_unavailable", message),
            ApiError::Refused { status, apple, .. } => AdapterError::malformed(
                apple
                    .and_then(|a| a.error_code)
                    .map_or_else(|| format!("http_{status}"), |c| c.to_string()),
                message,
            ),
            ApiError::BadResponse(_) => AdapterError::malformed("apple_api_bad_response", message),
            ApiError::Signing(_) => AdapterError::unauthorized("apple_api_signing_failed", message),
        }
    }
}

/// `POST /inApps/v1/notifications/test` → `SendTestNotificationResponse`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendTestNotificationResponse {
    test_notification_token: String,
}

/// One delivery attempt, as Apple reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendAttempt {
    #[serde(default)]
    pub attempt_date: Option<i64>,
    /// Kept raw: Apple may add values.
    #[serde(default)]
    pub send_attempt_result: Option<String>,
}

/// A notification with Apple's record of sending it. Apple gives both
/// `CheckTestNotificationResponse` (`GET /inApps/v1/notifications/test/{token}`)
/// and each item of a `NotificationHistoryResponse` these same two fields.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationRecord {
    #[serde(default)]
    pub signed_payload: Option<String>,
    #[serde(default)]
    pub send_attempts: Vec<SendAttempt>,
}

/// `NotificationHistoryRequest`: the same body on every page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryRequest {
    pub start_date: i64,
    pub end_date: i64,
    pub only_failures: bool,
}

/// `NotificationHistoryResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryResponse {
    #[serde(default)]
    pub pagination_token: Option<String>,
    #[serde(default)]
    pub has_more: bool,
    #[serde(default)]
    pub notification_history: Vec<NotificationRecord>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: u64,
    exp: u64,
    aud: &'static str,
    bid: &'a str,
}

struct CachedToken {
    value: Secret,
    renew_at_s: u64,
}

/// The App Store Server API for one key, any of the configured apps.
pub struct ApiClient {
    http: reqwest::Client,
    key_id: String,
    issuer_id: String,
    signing_key: EncodingKey,
    production_url: String,
    sandbox_url: String,
    /// One token per bundle id (`bid` is a claim).
    tokens: Mutex<HashMap<String, CachedToken>>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("key_id", &self.key_id)
            .field("issuer_id", &self.issuer_id)
            .field("signing_key", &"***")
            .field("production_url", &self.production_url)
            .field("sandbox_url", &self.sandbox_url)
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    pub fn new(settings: &ApiSettings) -> Result<Self, ApiError> {
        let signing_key = EncodingKey::from_ec_pem(settings.private_key.expose().as_bytes())
            .map_err(|e| ApiError::Signing(format!("the key is not an EC P-256 PEM key: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("storehook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ApiError::Unavailable(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            key_id: settings.key_id.clone(),
            issuer_id: settings.issuer_id.clone(),
            signing_key,
            production_url: settings.production_url.clone(),
            sandbox_url: settings.sandbox_url.clone(),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    fn base_url(&self, environment: AppleEnvironment) -> &str {
        match environment {
            AppleEnvironment::Production => &self.production_url,
            AppleEnvironment::Sandbox => &self.sandbox_url,
        }
    }

    /// Request a Test Notification: Apple sends a TEST notification to the
    /// URL set for this environment; the token asks how that went.
    pub async fn request_test_notification(
        &self,
        environment: AppleEnvironment,
        bundle_id: &str,
    ) -> Result<String, ApiError> {
        let url = format!(
            "{}/inApps/v1/notifications/test",
            self.base_url(environment)
        );
        let response: SendTestNotificationResponse = self
            .send(
                self.http.post(url),
                bundle_id,
                "Request a Test Notification",
            )
            .await?;
        Ok(response.test_notification_token)
    }

    /// Get Test Notification Status. Apple answers 404 `4040008` until it
    /// has tried to send it.
    pub async fn test_notification_status(
        &self,
        environment: AppleEnvironment,
        bundle_id: &str,
        token: &str,
    ) -> Result<NotificationRecord, ApiError> {
        let mut url = reqwest::Url::parse(&format!(
            "{}/inApps/v1/notifications/test",
            self.base_url(environment)
        ))
        .map_err(|e| ApiError::BadResponse(format!("the API URL: {e}")))?;
        url.path_segments_mut()
            .map_err(|()| ApiError::BadResponse("the API URL cannot hold a path".into()))?
            .push(token);
        self.send(
            self.http.get(url),
            bundle_id,
            "Get Test Notification Status",
        )
        .await
    }

    /// One page of Get Notification History.
    pub async fn notification_history(
        &self,
        environment: AppleEnvironment,
        bundle_id: &str,
        request: &HistoryRequest,
        pagination_token: Option<&str>,
    ) -> Result<HistoryResponse, ApiError> {
        let mut url = reqwest::Url::parse(&format!(
            "{}/inApps/v1/notifications/history",
            self.base_url(environment)
        ))
        .map_err(|e| ApiError::BadResponse(format!("the API URL: {e}")))?;
        if let Some(token) = pagination_token {
            url.query_pairs_mut().append_pair("paginationToken", token);
        }
        self.send(
            self.http.post(url).json(request),
            bundle_id,
            "Get Notification History",
        )
        .await
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        bundle_id: &str,
        what: &str,
    ) -> Result<T, ApiError> {
        let token = self.token(bundle_id)?;
        let response = request
            .bearer_auth(token.expose())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| network_error(what, e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(RetryAfter::parse);
        let body = response.bytes().await.map_err(|e| network_error(what, e))?;
        match status {
            200..=299 => serde_json::from_slice(&body)
                .map_err(|e| ApiError::BadResponse(format!("{what}: {e}"))),
            401 => {
                // The next attempt signs afresh, in case the refusal was the token's.
                self.forget_token(bundle_id);
                Err(ApiError::Unauthorized)
            }
            429 => Err(ApiError::RateLimited {
                retry_after,
                apple: serde_json::from_slice(&body).ok(),
            }),
            500..=599 => {
                let apple: Option<AppleError> = serde_json::from_slice(&body).ok();
                Err(ApiError::Unavailable(format!(
                    "{what}: Apple answered HTTP {status}{}; try again later",
                    apple.map(|a| format!(" ({a})")).unwrap_or_default()
                )))
            }
            _ => Err(ApiError::Refused {
                status,
                apple: serde_json::from_slice(&body).ok(),
                body: quoted(&body),
            }),
        }
    }

    /// The bearer token for one app, reused until a minute before it expires.
    fn token(&self, bundle_id: &str) -> Result<Secret, ApiError> {
        let now = unix_now_s();
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cached) = tokens.get(bundle_id) {
            if now < cached.renew_at_s {
                return Ok(cached.value.clone());
            }
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        header.typ = Some("JWT".to_owned());
        let claims = Claims {
            iss: &self.issuer_id,
            iat: now,
            exp: now + TOKEN_LIFETIME_S,
            aud: AUDIENCE,
            bid: bundle_id,
        };
        let value = Secret::new(
            jsonwebtoken::encode(&header, &claims, &self.signing_key)
                .map_err(|e| ApiError::Signing(e.to_string()))?,
        );
        tokens.insert(
            bundle_id.to_owned(),
            CachedToken {
                value: value.clone(),
                renew_at_s: now + TOKEN_LIFETIME_S - TOKEN_RENEW_MARGIN_S,
            },
        );
        Ok(value)
    }

    fn forget_token(&self, bundle_id: &str) {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(bundle_id);
    }
}

fn network_error(what: &str, e: reqwest::Error) -> ApiError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "network error"
    };
    ApiError::Unavailable(format!(
        "{what}: {kind} ({}); Apple's API could not be reached, try again later",
        e.without_url()
    ))
}

fn quoted(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "no body".to_owned();
    }
    let cut: String = text.chars().take(QUOTED_BODY_LIMIT).collect();
    if cut.len() < text.len() {
        format!("body {cut:?}…")
    } else {
        format!("body {cut:?}")
    }
}

fn unix_now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_milliseconds_and_tolerates_seconds() {
        assert_eq!(
            RetryAfter::parse("1700000123456"),
            Some(RetryAfter::At(1_700_000_123_456))
        );
        assert_eq!(
            RetryAfter::parse("1700000123"),
            Some(RetryAfter::At(1_700_000_123_000))
        );
        assert_eq!(RetryAfter::parse(" 30 "), Some(RetryAfter::In(30_000)));
        assert_eq!(RetryAfter::In(30_000).at_ms(1_000), 31_000);
        assert_eq!(RetryAfter::parse("soon"), None);
        assert_eq!(RetryAfter::parse("-5"), None);
    }

    #[test]
    fn refusals_keep_apple_s_code_raw() {
        let e = ApiError::Refused {
            status: 400,
            apple: Some(AppleError {
                error_code: Some(9_990_000),
                error_message: Some("Testing error.".into()),
            }),
            body: String::new(),
        };
        assert_eq!(e.apple_code(), Some(9_990_000));
        let adapter = e.into_adapter_error(0);
        assert_eq!(adapter.code(), "9990000");
        assert!(adapter.message().contains("Testing error."), "{adapter}");
    }
}
