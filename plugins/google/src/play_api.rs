//! The Google Play Developer API client for `purchases.subscriptionsv2.get`,
//! authenticated as a service account through the OAuth2 JWT-bearer grant
//! (RFC 7523), with the access token cached until shortly before it expires.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use storehook_core::AdapterError;

use crate::config::PlayApiSettings;
use crate::decode::SubscriptionPurchaseV2;

pub const ANDROIDPUBLISHER_SCOPE: &str = "https://www.googleapis.com/auth/androidpublisher";
/// The state fetch runs in the background, after the push was answered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Lifetime asked for the assertion (Google's maximum).
const ASSERTION_LIFETIME_S: u64 = 3600;
/// A cached access token is renewed this long before it expires.
const TOKEN_RENEW_MARGIN: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlayApiError {
    #[error("{0}: network error: {1}")]
    Network(&'static str, String),
    #[error("{0}: HTTP {1}")]
    ServerError(&'static str, u16),
    #[error("the token endpoint refused the service account: HTTP {0} {1}")]
    CredentialsRejected(u16, String),
    #[error("the Play API refused access (HTTP {0}): does the service account have Play Console access to the app's financial data?")]
    Forbidden(u16),
    #[error("the Play API does not know this purchase token (HTTP {0})")]
    NotFound(u16),
    #[error("the Play API refused the request: HTTP {0}")]
    Rejected(u16),
    #[error("{0}: unexpected response: {1}")]
    BadResponse(&'static str, String),
    #[error("cannot sign the token request: {0}")]
    Signing(String),
}

impl From<PlayApiError> for AdapterError {
    fn from(e: PlayApiError) -> Self {
        let message = e.to_string();
        match e {
            // Worth retrying as it is.
            PlayApiError::Network(..) | PlayApiError::ServerError(..) => {
                AdapterError::unavailable("play_api_unavailable", message)
            }
            PlayApiError::CredentialsRejected(..) => {
                AdapterError::unauthorized("play_api_credentials_rejected", message)
            }
            PlayApiError::Forbidden(_) => AdapterError::unauthorized("play_api_forbidden", message),
            PlayApiError::NotFound(_) => {
                AdapterError::malformed("purchase_token_not_found", message)
            }
            PlayApiError::Rejected(_) => AdapterError::malformed("play_api_rejected", message),
            PlayApiError::BadResponse(..) => {
                AdapterError::malformed("play_api_bad_response", message)
            }
            PlayApiError::Signing(_) => {
                AdapterError::unauthorized("play_api_signing_failed", message)
            }
        }
    }
}

struct CachedToken {
    value: String,
    renew_at: Instant,
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
        let signing_key = EncodingKey::from_rsa_pem(settings.key.private_key.as_bytes())
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

    /// `GET …/applications/{package}/purchases/subscriptionsv2/tokens/{token}`.
    pub async fn get_subscription(
        &self,
        package_name: &str,
        purchase_token: &str,
    ) -> Result<SubscriptionPurchaseV2, PlayApiError> {
        const WHAT: &str = "purchases.subscriptionsv2.get";
        let access_token = self.access_token().await?;
        let url = self.subscription_url(package_name, purchase_token)?;
        let response = self
            .http
            .get(url)
            .bearer_auth(&access_token)
            .send()
            .await
            .map_err(|e| PlayApiError::Network(WHAT, e.without_url().to_string()))?;
        let status = response.status().as_u16();
        match status {
            200..=299 => {}
            401 | 403 => {
                if status == 401 {
                    // The cached token may have been revoked: mint a new one next time.
                    *self.token.lock().await = None;
                }
                return Err(PlayApiError::Forbidden(status));
            }
            404 | 410 => return Err(PlayApiError::NotFound(status)),
            408 | 429 | 500..=599 => return Err(PlayApiError::ServerError(WHAT, status)),
            _ => return Err(PlayApiError::Rejected(status)),
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| PlayApiError::Network(WHAT, e.without_url().to_string()))?;
        serde_json::from_slice(&body).map_err(|e| PlayApiError::BadResponse(WHAT, e.to_string()))
    }

    fn subscription_url(
        &self,
        package_name: &str,
        purchase_token: &str,
    ) -> Result<reqwest::Url, PlayApiError> {
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .map_err(|_| PlayApiError::BadResponse("base_url", "cannot hold a path".into()))?
            .pop_if_empty()
            .extend([
                "androidpublisher",
                "v3",
                "applications",
                package_name,
                "purchases",
                "subscriptionsv2",
                "tokens",
                purchase_token,
            ]);
        Ok(url)
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
            .map_err(|e| PlayApiError::Network(WHAT, e.without_url().to_string()))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| PlayApiError::Network(WHAT, e.without_url().to_string()))?;
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

/// The OAuth2 error code of a token endpoint's refusal (`invalid_grant`…),
/// never the rest of the body.
fn oauth_error(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct OAuthError {
        error: String,
    }
    serde_json::from_slice::<OAuthError>(body)
        .map(|e| e.error.chars().take(64).collect())
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
    }

    #[test]
    fn errors_map_to_retryable_or_not() {
        let e: AdapterError = PlayApiError::ServerError("x", 503).into();
        assert_eq!(e.http_status(), 503);
        let e: AdapterError = PlayApiError::Network("x", "reset".into()).into();
        assert_eq!(e.http_status(), 503);
        let e: AdapterError = PlayApiError::NotFound(404).into();
        assert_eq!(e.code(), "purchase_token_not_found");
        let e: AdapterError = PlayApiError::Forbidden(403).into();
        assert_eq!(e.code(), "play_api_forbidden");
    }
}
