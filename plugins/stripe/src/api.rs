//! The Stripe API client of the pull side: `GET /v1/webhook_endpoints` and
//! `GET /v1/events`, authenticated with `Authorization: Bearer <key>` and
//! pinned with `Stripe-Version`. Stripe's error envelope
//! (`{"error":{"type","code","message"}}`) is kept, with anything that looks
//! like a key taken out of its message (Stripe echoes a masked key on 401).

use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;
use storehook_core::{AdapterError, Secret};

use crate::config::{ApiSettings, API_KEY_ENV};

/// A check or a backfill page waits at most this long for one answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Stripe's largest page.
pub const MAX_LIMIT: u32 = 100;

/// `{"error": {…}}`, the fields storehook reads. `message` is redacted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct StripeError {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub param: Option<String>,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: StripeError,
}

impl StripeError {
    fn from_body(body: &[u8]) -> Self {
        let mut error = serde_json::from_slice::<ErrorEnvelope>(body)
            .map(|e| e.error)
            .unwrap_or_default();
        error.message = error.message.map(|m| redact_keys(&m));
        error
    }

    /// `code`, else `type`, for a finding's raw value.
    pub fn raw_code(&self) -> Option<&str> {
        self.code.as_deref().or(self.kind.as_deref())
    }

    fn message_or<'a>(&'a self, fallback: &'a str) -> &'a str {
        self.message.as_deref().unwrap_or(fallback)
    }
}

/// What a request was for: says which restricted-key permission it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Events,
    WebhookEndpoints,
}

impl Resource {
    /// The permission as the Dashboard's restricted-key form names it.
    pub fn permission(self) -> &'static str {
        match self {
            Resource::Events => "Events: Read",
            Resource::WebhookEndpoints => "Webhook Endpoints: Read",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Resource::Events => "events",
            Resource::WebhookEndpoints => "webhook_endpoints",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 401: the key is not one Stripe knows (wrong, revoked, rolled).
    #[error("Stripe refused the API key (HTTP 401): the key is wrong or revoked ({})", .error.message_or("no message"))]
    Unauthorized { error: StripeError },
    /// 403: a restricted key without the permission this call needs.
    #[error("the restricted API key lacks a permission: add \"{permission}\" to it in the Stripe Dashboard › Developers › API keys ({})", .error.message_or("HTTP 403"))]
    PermissionDenied {
        /// In the Dashboard's words ("Events: Read").
        permission: String,
        error: StripeError,
    },
    /// 429: Stripe's rate limit; `retry_after` when it said how long.
    #[error("Stripe asked to slow down (HTTP 429)")]
    RateLimited {
        retry_after: Option<Duration>,
        error: StripeError,
    },
    /// Network failure, timeout, or 5xx: worth asking again later.
    #[error("Stripe's API could not be reached: {0}")]
    Unavailable(String),
    /// Any other 4xx: the request itself is wrong.
    #[error("Stripe refused the request (HTTP {status}): {}", .error.message_or("no message"))]
    Rejected { status: u16, error: StripeError },
    /// A 2xx whose body is not what Stripe sends.
    #[error("Stripe's answer could not be read: {0}")]
    BadResponse(String),
}

/// Stripe asked to slow down without saying for how long: ask again after
/// about a second (its limits are per second).
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

impl ApiError {
    /// For the host, which retries `Unavailable` and waits out `RateLimited`
    /// (until `now_ms` + Retry-After) and stops a job on anything else.
    pub fn into_adapter_error(self, now_ms: i64) -> AdapterError {
        let message = self.to_string();
        match self {
            ApiError::Unauthorized { .. } => AdapterError::unauthorized(
                "invalid_api_key",
                format!(
                    "{message}; set [stores.stripe.api] secret_key (or {API_KEY_ENV}) to a valid \
                     restricted key and restart"
                ),
            ),
            ApiError::PermissionDenied { .. } => {
                AdapterError::unauthorized("permission_denied", message)
            }
            ApiError::RateLimited { retry_after, .. } => {
                let wait = retry_after.unwrap_or(DEFAULT_RETRY_AFTER);
                let wait_ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
                AdapterError::RateLimited {
                    code: "rate_limit".into(),
                    message,
                    retry_at_ms: Some(now_ms.saturating_add(wait_ms)),
                }
            }
            ApiError::Unavailable(_) | ApiError::BadResponse(_) => {
                AdapterError::unavailable("stripe_unavailable", message)
            }
            ApiError::Rejected { error, .. } => AdapterError::malformed(
                error.raw_code().unwrap_or("stripe_rejected").to_owned(),
                message,
            ),
        }
    }
}

/// One page of a list (`{"object":"list","data":[…],"has_more":…}`).
#[derive(Debug, Clone)]
pub struct ListPage<T> {
    pub data: Vec<T>,
    pub has_more: bool,
}

#[derive(Deserialize)]
struct RawList<T> {
    #[serde(default = "Vec::new")]
    data: Vec<T>,
    #[serde(default)]
    has_more: bool,
}

/// A webhook endpoint, the fields the check reads (all lenient).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct WebhookEndpoint {
    pub id: String,
    #[serde(default)]
    pub url: Option<String>,
    /// `enabled` or `disabled`.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub enabled_events: Vec<String>,
    #[serde(default)]
    pub livemode: Option<bool>,
    /// `null`: the account's default version.
    #[serde(default)]
    pub api_version: Option<String>,
}

/// An event as listed: what ordering and cursors need, and its bytes as
/// Stripe sent them (stored as the recovered notification's body).
#[derive(Debug, Clone)]
pub struct ListedEvent {
    pub id: String,
    /// Unix seconds.
    pub created: i64,
    pub raw: Box<RawValue>,
}

#[derive(Deserialize)]
struct EventHead {
    id: String,
    #[serde(default)]
    created: Option<i64>,
}

impl ListedEvent {
    fn from_raw(raw: Box<RawValue>) -> Result<Self, ApiError> {
        let head: EventHead = serde_json::from_str(raw.get())
            .map_err(|e| ApiError::BadResponse(format!("an event without an id: {e}")))?;
        Ok(ListedEvent {
            id: head.id,
            created: head.created.unwrap_or(0),
            raw,
        })
    }

    pub fn bytes(&self) -> &[u8] {
        self.raw.get().as_bytes()
    }
}

/// `GET /v1/events` parameters.
#[derive(Debug, Clone, Default)]
pub struct EventQuery<'a> {
    pub created_gte: Option<i64>,
    pub created_lte: Option<i64>,
    /// `types[]`, at most 20.
    pub types: &'a [&'a str],
    pub delivery_success: Option<bool>,
    pub limit: u32,
    pub starting_after: Option<&'a str>,
    pub ending_before: Option<&'a str>,
}

impl EventQuery<'_> {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        if let Some(gte) = self.created_gte {
            pairs.push(("created[gte]", gte.to_string()));
        }
        if let Some(lte) = self.created_lte {
            pairs.push(("created[lte]", lte.to_string()));
        }
        for t in self.types {
            pairs.push(("types[]", (*t).to_owned()));
        }
        if let Some(ok) = self.delivery_success {
            pairs.push(("delivery_success", ok.to_string()));
        }
        pairs.push(("limit", self.limit.clamp(1, MAX_LIMIT).to_string()));
        if let Some(id) = self.starting_after {
            pairs.push(("starting_after", id.to_owned()));
        }
        if let Some(id) = self.ending_before {
            pairs.push(("ending_before", id.to_owned()));
        }
        pairs
    }
}

pub struct StripeApi {
    http: reqwest::Client,
    base_url: reqwest::Url,
    key: Secret,
    api_version: String,
}

impl std::fmt::Debug for StripeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeApi")
            .field("base_url", &self.base_url.as_str())
            .field("api_version", &self.api_version)
            .finish_non_exhaustive()
    }
}

impl StripeApi {
    pub fn new(settings: &ApiSettings) -> Result<Self, String> {
        let base_url = reqwest::Url::parse(&settings.base_url)
            .map_err(|e| format!("{:?} is not a URL: {e}", settings.base_url))?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("storehook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(StripeApi {
            http,
            base_url,
            key: settings.secret_key.clone(),
            api_version: settings.api_version.clone(),
        })
    }

    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    /// One page of `GET /v1/webhook_endpoints`, newest first.
    pub async fn webhook_endpoints(
        &self,
        starting_after: Option<&str>,
    ) -> Result<ListPage<WebhookEndpoint>, ApiError> {
        let mut query = vec![("limit", MAX_LIMIT.to_string())];
        if let Some(id) = starting_after {
            query.push(("starting_after", id.to_owned()));
        }
        let body = self.get(Resource::WebhookEndpoints, &query).await?;
        let list: RawList<WebhookEndpoint> = serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadResponse(format!("webhook endpoints: {e}")))?;
        Ok(ListPage {
            data: list.data,
            has_more: list.has_more,
        })
    }

    /// One page of `GET /v1/events`, newest first (also with `ending_before`).
    pub async fn events(&self, query: &EventQuery<'_>) -> Result<ListPage<ListedEvent>, ApiError> {
        let body = self.get(Resource::Events, &query.pairs()).await?;
        let list: RawList<Box<RawValue>> = serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadResponse(format!("events: {e}")))?;
        let data = list
            .data
            .into_iter()
            .map(ListedEvent::from_raw)
            .collect::<Result<_, _>>()?;
        Ok(ListPage {
            data,
            has_more: list.has_more,
        })
    }

    async fn get(&self, resource: Resource, query: &[(&str, String)]) -> Result<Vec<u8>, ApiError> {
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .map_err(|_| ApiError::BadResponse("base_url cannot hold a path".into()))?
            .pop_if_empty()
            .extend(["v1", resource.path()]);
        let response = self
            .http
            .get(url)
            .query(query)
            .bearer_auth(self.key.expose())
            .header("Stripe-Version", &self.api_version)
            .send()
            .await
            .map_err(|e| ApiError::Unavailable(e.without_url().to_string()))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response
            .bytes()
            .await
            .map_err(|e| ApiError::Unavailable(e.without_url().to_string()))?
            .to_vec();
        match status {
            200..=299 => Ok(body),
            401 => Err(ApiError::Unauthorized {
                error: StripeError::from_body(&body),
            }),
            403 => {
                let error = StripeError::from_body(&body);
                let permission = error
                    .message
                    .as_deref()
                    .and_then(permission_in_message)
                    .unwrap_or_else(|| resource.permission().to_owned());
                Err(ApiError::PermissionDenied { permission, error })
            }
            429 => Err(ApiError::RateLimited {
                retry_after,
                error: StripeError::from_body(&body),
            }),
            // 409: a lock held by a concurrent request; Stripe says to retry.
            408 | 409 | 500..=599 => Err(ApiError::Unavailable(format!(
                "HTTP {status}{}",
                StripeError::from_body(&body)
                    .message
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ))),
            _ => Err(ApiError::Rejected {
                status,
                error: StripeError::from_body(&body),
            }),
        }
    }
}

/// The permission a 403 names ("Having the 'rak_event_read' permission
/// would allow this request…"), in the Dashboard's words when known.
fn permission_in_message(message: &str) -> Option<String> {
    let start = message.find("Having the '")? + "Having the '".len();
    let len = message[start..].find('\'')?;
    let slug = &message[start..start + len];
    Some(match slug {
        "rak_event_read" => "Events: Read".to_owned(),
        "rak_webhook_read" | "rak_webhook_endpoint_read" => "Webhook Endpoints: Read".to_owned(),
        "rak_subscription_read" => "Subscriptions: Read".to_owned(),
        other => format!("the permission Stripe calls {other}"),
    })
}

/// Replaces anything shaped like a Stripe key (`sk_…`, `rk_…`, `pk_…`,
/// `whsec_…`) with its kind: Stripe's messages quote the key they refused.
pub fn redact_keys(text: &str) -> String {
    fn is_word(c: char) -> bool {
        c.is_ascii_alphanumeric() || c == '_' || c == '*'
    }
    fn redacted(word: &str) -> String {
        for prefix in ["sk_", "rk_", "pk_", "whsec_"] {
            if let Some(rest) = word.strip_prefix(prefix) {
                let mode = ["live_", "test_"]
                    .into_iter()
                    .find(|m| rest.starts_with(m))
                    .unwrap_or("");
                return format!("{prefix}{mode}…");
            }
        }
        word.to_owned()
    }
    let mut out = String::with_capacity(text.len());
    let mut word_start = None;
    for (i, c) in text.char_indices() {
        if is_word(c) {
            word_start.get_or_insert(i);
        } else {
            if let Some(start) = word_start.take() {
                out.push_str(&redacted(&text[start..i]));
            }
            out.push(c);
        }
    }
    if let Some(start) = word_start {
        out.push_str(&redacted(&text[start..]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_taken_out_of_messages() {
        for (message, redacted) in [
            (
                "Invalid API Key provided: sk_test_************S8wL",
                "Invalid API Key provided: sk_test_…",
            ),
            (
                "The provided key 'rk_test_Cb3gph' does not have",
                "The provided key 'rk_test_…' does not have",
            ),
            ("whsec_abc, pk_live_x.", "whsec_…, pk_live_…."),
            // Only at a word's start.
            ("desk_top risk_x", "desk_top risk_x"),
            ("näive sk_", "näive sk_…"),
        ] {
            assert_eq!(redact_keys(message), redacted, "{message}");
        }
    }

    #[test]
    fn permissions_in_dashboard_words() {
        let m = "… Having the 'rak_event_read' permission would allow this request to continue.";
        assert_eq!(permission_in_message(m).as_deref(), Some("Events: Read"));
        let m = "Having the 'rak_foo_read' permission would allow";
        assert_eq!(
            permission_in_message(m).as_deref(),
            Some("the permission Stripe calls rak_foo_read")
        );
        assert_eq!(permission_in_message("no slug here"), None);
    }

    #[test]
    fn event_query_pairs() {
        let types = ["invoice.paid", "charge.refunded"];
        let q = EventQuery {
            created_gte: Some(1),
            created_lte: Some(2),
            types: &types,
            delivery_success: Some(false),
            limit: 500,
            starting_after: Some("evt_1"),
            ending_before: None,
        };
        let pairs = q.pairs();
        assert_eq!(
            pairs,
            vec![
                ("created[gte]", "1".to_owned()),
                ("created[lte]", "2".to_owned()),
                ("types[]", "invoice.paid".to_owned()),
                ("types[]", "charge.refunded".to_owned()),
                ("delivery_success", "false".to_owned()),
                ("limit", "100".to_owned()),
                ("starting_after", "evt_1".to_owned()),
            ]
        );
    }
}
