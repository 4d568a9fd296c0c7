//! The Google Play Developer API client, authenticated as a service account
//! through the OAuth2 JWT-bearer grant (RFC 7523), with the access token
//! cached until shortly before it expires. Calls: `subscriptionsv2.get`
//! and `products.get` (state fetches, backfill, acknowledgement),
//! `voidedpurchases.list` (check, backfill), `subscriptions.acknowledge`
//! and `products.acknowledge`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use storehook_core::AdapterError;

use crate::config::PlayApiSettings;
use crate::decode::{parse_voided_page, ProductPurchase, SubscriptionPurchaseV2, VoidedPage};

pub const ANDROIDPUBLISHER_SCOPE: &str = "https://www.googleapis.com/auth/androidpublisher";
/// The state fetch runs in the background, after the push was answered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Lifetime asked for the assertion (Google's maximum).
const ASSERTION_LIFETIME_S: u64 = 3600;
/// A cached access token is renewed this long before it expires.
const TOKEN_RENEW_MARGIN: Duration = Duration::from_secs(60);
/// A 429 without `Retry-After` is asked again after this long: the Play
/// API's quotas are per minute (the voided purchases' per 30 s).
const DEFAULT_RETRY_AFTER_S: u64 = 60;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlayApiError {
    #[error("{0}: network error: {1}")]
    Network(&'static str, String),
    #[error("{0}: HTTP {1}")]
    ServerError(&'static str, u16),
    #[error("{what}: Google asked to slow down (HTTP 429); retrying in {retry_after_s} s")]
    RateLimited {
        what: &'static str,
        retry_after_s: u64,
    },
    #[error("the token endpoint refused the service account: HTTP {0} {1}")]
    CredentialsRejected(u16, String),
    #[error("{what}: the Play API refused access (HTTP {status} {reason}): does the service account have Play Console access to the app?")]
    Forbidden {
        what: &'static str,
        status: u16,
        reason: String,
    },
    #[error("{what}: the Play API does not know this app or purchase (HTTP {status} {reason})")]
    NotFound {
        what: &'static str,
        status: u16,
        reason: String,
    },
    #[error(
        "{what}: another change to this purchase is in progress (HTTP 409 {reason}); retry later"
    )]
    Conflict { what: &'static str, reason: String },
    #[error("{what}: the Play API refused the request: HTTP {status} {reason}")]
    Rejected {
        what: &'static str,
        status: u16,
        reason: String,
    },
    #[error("{0}: unexpected response: {1}")]
    BadResponse(&'static str, String),
    #[error("cannot sign the token request: {0}")]
    Signing(String),
}

impl PlayApiError {
    /// Google's `errors[0].reason` (`permissionDenied`, `invalidPurchaseState`…).
    pub fn reason(&self) -> Option<&str> {
        match self {
            PlayApiError::Forbidden { reason, .. }
            | PlayApiError::NotFound { reason, .. }
            | PlayApiError::Conflict { reason, .. }
            | PlayApiError::Rejected { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// Worth asking again as it is, later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            PlayApiError::Network(..)
                | PlayApiError::ServerError(..)
                | PlayApiError::RateLimited { .. }
                | PlayApiError::Conflict { .. }
        )
    }

    /// The host's error; `now_ms` places a rate limit's retry time.
    pub fn into_adapter_error(self, now_ms: i64) -> AdapterError {
        let message = self.to_string();
        match self {
            PlayApiError::Network(..) | PlayApiError::ServerError(..) => {
                AdapterError::unavailable("play_api_unavailable", message)
            }
            PlayApiError::RateLimited { retry_after_s, .. } => AdapterError::RateLimited {
                code: "play_api_rate_limited".into(),
                message,
                retry_at_ms: Some(now_ms.saturating_add(
                    i64::try_from(retry_after_s.saturating_mul(1000)).unwrap_or(i64::MAX),
                )),
            },
            // "Retry the request with exponential backoff" (Google's table).
            PlayApiError::Conflict { .. } => {
                AdapterError::unavailable("play_api_concurrent_update", message)
            }
            PlayApiError::CredentialsRejected(..) => {
                AdapterError::unauthorized("play_api_credentials_rejected", message)
            }
            PlayApiError::Forbidden { .. } => {
                AdapterError::unauthorized("play_api_forbidden", message)
            }
            PlayApiError::NotFound { reason, .. } if reason == "applicationNotFound" => {
                AdapterError::malformed("package_not_found", message)
            }
            PlayApiError::NotFound { .. } => {
                AdapterError::malformed("purchase_token_not_found", message)
            }
            PlayApiError::Rejected { reason, .. } if reason == "invalidPurchaseState" => {
                AdapterError::malformed("play_api_invalid_purchase_state", message)
            }
            PlayApiError::Rejected { .. } => AdapterError::malformed("play_api_rejected", message),
            PlayApiError::BadResponse(..) => {
                AdapterError::malformed("play_api_bad_response", message)
            }
            PlayApiError::Signing(_) => {
                AdapterError::unauthorized("play_api_signing_failed", message)
            }
        }
    }
}

impl From<PlayApiError> for AdapterError {
    fn from(e: PlayApiError) -> Self {
        e.into_adapter_error(storehook_core::time::now_ms())
    }
}

/// The filters of one `voidedpurchases.list` call. Always `type=1`
/// (subscriptions too), so that entries are orders, keyed by `orderId`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VoidedQuery {
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub max_results: u32,
    /// `tokenPagination.nextPageToken` of the previous page.
    pub page_token: Option<String>,
}

struct CachedToken {
    value: String,
    renew_at: Instant,
}

/// Which of Google's purchase collections a purchase is in: auto-renewing
/// subscriptions, or one-time products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurchaseCollection {
    Subscriptions,
    Products,
}

/// A transport failure of `what`, told without the request's URL.
fn network(what: &'static str) -> impl Fn(reqwest::Error) -> PlayApiError {
    move |e| PlayApiError::Network(what, e.without_url().to_string())
}

pub struct PlayApiClient {
    http: reqwest::Client,
    base_url: reqwest::Url,
    token_url: String,
    client_email: String,
    key_id: Option<String>,
    signing_key: EncodingKey,
    token: tokio::sync::Mutex<Option<CachedToken>>,
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl PlayApiClient {
    pub fn new(settings: &PlayApiSettings) -> Result<Self, String> {
        let signing_key =
            EncodingKey::from_rsa_pem(settings.key.private_key.expose().as_bytes())
                .map_err(|e| format!("the service account's private_key is not an RSA key: {e}"))?;
        let base_url = reqwest::Url::parse(&settings.base_url)
            .map_err(|e| format!("{:?} is not a URL: {e}", settings.base_url))?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(PlayApiClient {
            http,
            base_url,
            token_url: settings.token_url.clone(),
            client_email: settings.key.client_email.clone(),
            key_id: settings.key.private_key_id.clone(),
            signing_key,
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// The service account's email, as the operator invites it in Play Console.
    pub fn client_email(&self) -> &str {
        &self.client_email
    }

    /// Asks the token endpoint for a new access token (and keeps it): the
    /// connection check must see the grant work now, not an hour ago.
    pub async fn fresh_access_token(&self) -> Result<(), PlayApiError> {
        let mut cached = self.token.lock().await;
        *cached = Some(self.request_access_token().await?);
        Ok(())
    }

    /// `GET …/applications/{package}/purchases/subscriptionsv2/tokens/{token}`.
    pub async fn get_subscription(
        &self,
        package_name: &str,
        purchase_token: &str,
    ) -> Result<SubscriptionPurchaseV2, PlayApiError> {
        self.get_json(
            "purchases.subscriptionsv2.get",
            package_name,
            &["purchases", "subscriptionsv2", "tokens", purchase_token],
        )
        .await
    }

    /// `GET …/applications/{package}/purchases/voidedpurchases?type=1…`: one
    /// page, and how many entries it had (readable or not).
    pub async fn list_voided(
        &self,
        package_name: &str,
        query: &VoidedQuery,
    ) -> Result<(VoidedPage, usize), PlayApiError> {
        const WHAT: &str = "purchases.voidedpurchases.list";
        let mut url = self.api_url(package_name, &["purchases", "voidedpurchases"])?;
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("type", "1");
            pairs.append_pair("maxResults", &query.max_results.clamp(1, 1000).to_string());
            if let Some(start) = query.start_ms {
                pairs.append_pair("startTime", &start.to_string());
            }
            if let Some(end) = query.end_ms {
                pairs.append_pair("endTime", &end.to_string());
            }
            if let Some(token) = &query.page_token {
                pairs.append_pair("token", token);
            }
        }
        let body = self.call(WHAT, |http| http.get(url.clone())).await?;
        parse_voided_page(&body).map_err(|e| PlayApiError::BadResponse(WHAT, e))
    }

    /// `GET …/applications/{package}/purchases/products/{productId}/tokens/{token}`:
    /// a one-time product's purchase.
    pub async fn get_product(
        &self,
        package_name: &str,
        product_id: &str,
        purchase_token: &str,
    ) -> Result<ProductPurchase, PlayApiError> {
        self.get_json(
            "purchases.products.get",
            package_name,
            &[
                "purchases",
                "products",
                product_id,
                "tokens",
                purchase_token,
            ],
        )
        .await
    }

    /// `GET` of one resource of `package_name`, its JSON answer read as `T`.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        package_name: &str,
        rest: &[&str],
    ) -> Result<T, PlayApiError> {
        let url = self.api_url(package_name, rest)?;
        let body = self.call(what, |http| http.get(url.clone())).await?;
        serde_json::from_slice(&body).map_err(|e| PlayApiError::BadResponse(what, e.to_string()))
    }

    /// `POST …/purchases/{subscriptions|products}/{productId}/tokens/{token}:acknowledge`
    /// with an empty request (`{}`); Google answers with an empty body.
    pub async fn acknowledge(
        &self,
        collection: PurchaseCollection,
        package_name: &str,
        product_id: &str,
        purchase_token: &str,
    ) -> Result<(), PlayApiError> {
        let (what, resource) = match collection {
            PurchaseCollection::Subscriptions => {
                ("purchases.subscriptions.acknowledge", "subscriptions")
            }
            PurchaseCollection::Products => ("purchases.products.acknowledge", "products"),
        };
        let last = format!("{purchase_token}:acknowledge");
        let url = self.api_url(
            package_name,
            &["purchases", resource, product_id, "tokens", &last],
        )?;
        self.call(what, |http| {
            http.post(url.clone())
                .json(&Value::Object(serde_json::Map::new()))
        })
        .await
        .map(|_| ())
    }

    fn api_url(&self, package_name: &str, rest: &[&str]) -> Result<reqwest::Url, PlayApiError> {
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .map_err(|_| PlayApiError::BadResponse("base_url", "cannot hold a path".into()))?
            .pop_if_empty()
            .extend(["androidpublisher", "v3", "applications", package_name])
            .extend(rest);
        Ok(url)
    }

    /// Sends one authenticated request; the body of a 2xx answer.
    async fn call(
        &self,
        what: &'static str,
        request: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, PlayApiError> {
        let access_token = self.access_token().await?;
        let response = request(&self.http)
            .bearer_auth(&access_token)
            .send()
            .await
            .map_err(network(what))?;
        let status = response.status().as_u16();
        let retry_after_s = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = response.bytes().await.map_err(network(what))?;
        let reason = || google_reason(&body);
        match status {
            200..=299 => Ok(body.to_vec()),
            401 | 403 => {
                if status == 401 {
                    // The cached token may have been revoked: mint a new one next time.
                    *self.token.lock().await = None;
                }
                Err(PlayApiError::Forbidden {
                    what,
                    status,
                    reason: reason(),
                })
            }
            404 | 410 => Err(PlayApiError::NotFound {
                what,
                status,
                reason: reason(),
            }),
            409 => Err(PlayApiError::Conflict {
                what,
                reason: reason(),
            }),
            429 => Err(PlayApiError::RateLimited {
                what,
                retry_after_s: retry_after_s.unwrap_or(DEFAULT_RETRY_AFTER_S).min(3600),
            }),
            408 | 500..=599 => Err(PlayApiError::ServerError(what, status)),
            _ => Err(PlayApiError::Rejected {
                what,
                status,
                reason: reason(),
            }),
        }
    }

    /// A valid access token, from the cache or freshly minted.
    async fn access_token(&self) -> Result<String, PlayApiError> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref() {
            if Instant::now() < token.renew_at {
                return Ok(token.value.clone());
            }
        }
        let fresh = self.request_access_token().await?;
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }

    async fn request_access_token(&self) -> Result<CachedToken, PlayApiError> {
        const WHAT: &str = "token endpoint";
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let claims = AssertionClaims {
            iss: &self.client_email,
            scope: ANDROIDPUBLISHER_SCOPE,
            aud: &self.token_url,
            iat: now,
            exp: now + ASSERTION_LIFETIME_S,
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid.clone_from(&self.key_id);
        let assertion = jsonwebtoken::encode(&header, &claims, &self.signing_key)
            .map_err(|e| PlayApiError::Signing(e.to_string()))?;

        let requested_at = Instant::now();
        let response = self
            .http
            .post(&self.token_url)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(network(WHAT))?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(network(WHAT))?;
        match status {
            200..=299 => {}
            408 | 429 | 500..=599 => return Err(PlayApiError::ServerError(WHAT, status)),
            _ => {
                return Err(PlayApiError::CredentialsRejected(
                    status,
                    oauth_error(&body),
                ))
            }
        }
        let token: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| PlayApiError::BadResponse(WHAT, e.to_string()))?;
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(ASSERTION_LIFETIME_S));
        Ok(CachedToken {
            value: token.access_token,
            renew_at: requested_at + lifetime.saturating_sub(TOKEN_RENEW_MARGIN),
        })
    }
}

/// Keeps a code from a response short and plain (it goes into messages).
fn plain_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(64)
        .collect()
}

/// The OAuth2 error code of a token endpoint's refusal (`invalid_grant`…),
/// never the rest of the body.
fn oauth_error(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct OAuthError {
        error: String,
    }
    serde_json::from_slice::<OAuthError>(body)
        .map(|e| plain_code(&e.error))
        .unwrap_or_default()
}

/// `error.errors[0].reason` of Google's error envelope (or the newer
/// `error.status`), never the rest of the body.
fn google_reason(body: &[u8]) -> String {
    let Ok(json) = serde_json::from_slice::<Value>(body) else {
        return String::new();
    };
    let error = &json["error"];
    error["errors"][0]["reason"]
        .as_str()
        .or_else(|| error["status"].as_str())
        .map(plain_code)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_error_keeps_only_the_code() {
        assert_eq!(
            oauth_error(br#"{"error":"invalid_grant","error_description":"Invalid JWT"}"#),
            "invalid_grant"
        );
        assert_eq!(oauth_error(b"<html>"), "");
        assert_eq!(oauth_error(br#"{"error":"a b\nc"}"#), "abc");
    }

    #[test]
    fn google_reason_keeps_only_the_reason() {
        let body = br#"{ "error": { "errors": [ { "domain": "androidpublisher", "reason": "permissionDenied", "message": "The current user has insufficient permissions to perform the requested operation." } ], "code": 401, "message": "x" } }"#;
        assert_eq!(google_reason(body), "permissionDenied");
        assert_eq!(
            google_reason(br#"{"error":{"code":403,"status":"PERMISSION_DENIED"}}"#),
            "PERMISSION_DENIED"
        );
        assert_eq!(google_reason(b"busy"), "");
    }

    #[test]
    fn errors_map_to_retryable_or_not() {
        let e: AdapterError = PlayApiError::ServerError("x", 503).into();
        assert_eq!(e.http_status(), 503);
        let e: AdapterError = PlayApiError::Network("x", "reset".into()).into();
        assert_eq!(e.http_status(), 503);
        let not_found = |reason: &str| PlayApiError::NotFound {
            what: "x",
            status: 404,
            reason: reason.into(),
        };
        assert_eq!(
            AdapterError::from(not_found("notFound")).code(),
            "purchase_token_not_found"
        );
        assert_eq!(
            AdapterError::from(not_found("applicationNotFound")).code(),
            "package_not_found"
        );
        let e: AdapterError = PlayApiError::Forbidden {
            what: "x",
            status: 403,
            reason: String::new(),
        }
        .into();
        assert_eq!(e.code(), "play_api_forbidden");
        let e = PlayApiError::Conflict {
            what: "x",
            reason: "concurrentUpdate".into(),
        }
        .into_adapter_error(0);
        assert!(e.is_transient());
        let e = PlayApiError::RateLimited {
            what: "x",
            retry_after_s: 30,
        }
        .into_adapter_error(1_000);
        assert!(matches!(
            e,
            AdapterError::RateLimited {
                retry_at_ms: Some(31_000),
                ..
            }
        ));
    }
}
