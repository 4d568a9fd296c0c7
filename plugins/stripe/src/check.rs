//! "Check connection" for Stripe: the webhook endpoint that calls this
//! server exists, is enabled, is sent the events storehook maps, is in the
//! key's mode and on a known API version; and how many recent events Stripe
//! failed to deliver, which a backfill can recover.

use std::future::Future;
use std::time::Duration;

use storehook_core::{CheckReport, Finding, StoreHost};

use crate::api::{ApiError, EventQuery, StripeApi, WebhookEndpoint, MAX_LIMIT};
use crate::config::{AcceptedMode, ApiSettings, KeyMode, API_KEY_ENV};
use crate::map::MAPPED_EVENT_TYPES;

/// Stripe retries a live-mode event for up to 3 days: older failures are
/// for a backfill over a longer window.
const FAILURE_LOOKBACK_S: i64 = 3 * 86_400;
/// Pages of undelivered events counted before saying "more than".
const MAX_FAILURE_PAGES: usize = 20;
/// Stripe allows 16 endpoints per account; this only bounds a strange answer.
const MAX_ENDPOINT_PAGES: usize = 10;
/// Waits for a 429 during a check: a few, short (someone is watching).
const RATE_LIMIT_RETRIES: usize = 3;
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(10);

const WHERE_KEYS: &str = "the Stripe Dashboard › Developers › API keys";
const WHERE_WEBHOOKS: &str = "the Stripe Dashboard › Developers › Webhooks";

pub(crate) async fn check_connection(
    api: &StripeApi,
    settings: &ApiSettings,
    accepted: AcceptedMode,
    host: &dyn StoreHost,
) -> CheckReport {
    let mut findings = Vec::new();
    let key_mode = settings.key_mode();
    findings.extend(key_findings(settings, key_mode, accepted));

    host.progress("Listing the account's webhook endpoints…");
    match all_endpoints(api, host).await {
        Ok(endpoints) => findings.extend(endpoint_findings(
            &endpoints,
            host.notification_url().as_deref(),
            key_mode,
            api.api_version(),
        )),
        Err(ApiError::Unauthorized { error }) => {
            findings.push(
                Finding::error(
                    "Stripe refused the API key",
                    format!(
                        "Stripe answered 401: the key is wrong or revoked (rolled or deleted in \
                         {WHERE_KEYS}). Create a restricted key with Read access to Events and \
                         Webhook Endpoints, put it in {API_KEY_ENV} (or [stores.stripe.api] \
                         secret_key) and restart storehook."
                    ),
                )
                .with_code(error.code.unwrap_or_else(|| "invalid_api_key".to_owned())),
            );
            return CheckReport::from_findings(findings, false);
        }
        Err(ApiError::PermissionDenied { permission, error }) => {
            findings.push(permission_finding(
                "The API key may not read webhook endpoints",
                &permission,
                "so storehook cannot see whether an endpoint calls this server",
                error.raw_code(),
            ));
        }
        Err(e) => return unreachable_report(findings, e),
    }

    host.progress("Counting the events of the last 3 days that Stripe failed to deliver…");
    let mut recoverable = None;
    match count_undelivered(api, host).await {
        Ok(count) => {
            recoverable = Some(count.missing);
            findings.push(undelivered_finding(&count));
        }
        Err(ApiError::PermissionDenied { permission, error }) => {
            findings.push(permission_finding(
                "The API key may not read events",
                &permission,
                "so storehook can neither count nor recover the events Stripe failed to deliver",
                error.raw_code(),
            ));
        }
        Err(ApiError::Unauthorized { .. }) => {
            findings.push(Finding::error(
                "Stripe refused the API key when listing events",
                format!("The key is wrong or revoked; create a new one in {WHERE_KEYS}."),
            ));
        }
        Err(e) => return unreachable_report(findings, e),
    }
    let mut report = CheckReport::from_findings(findings, false);
    report.recoverable = recoverable;
    report
}

/// What the key itself says: its kind and whether its mode is accepted.
fn key_findings(
    settings: &ApiSettings,
    key_mode: Option<KeyMode>,
    accepted: AcceptedMode,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    if !settings.is_restricted() {
        findings.push(Finding::info(
            "A full secret key is configured",
            "A secret key (sk_…) can do anything on the account. A restricted key (rk_…) with \
             Read access to Events and Webhook Endpoints is all storehook needs; create one and \
             replace this one when you can.",
        ));
    }
    let refused = match (key_mode, accepted) {
        (Some(KeyMode::Test), AcceptedMode::Live) => Some(("test-mode", "live")),
        (Some(KeyMode::Live), AcceptedMode::Test) => Some(("live-mode", "test")),
        _ => None,
    };
    if let Some((key, accepted)) = refused {
        findings.push(Finding::error(
            format!(
                "The API key is a {key} key, but storehook accepts only {accepted}-mode events"
            ),
            format!(
                "[stores.stripe] livemode = \"{accepted}\", so every event this key can list \
                 would be refused. Use a {accepted}-mode key, or change livemode."
            ),
        ));
    }
    findings
}

/// Every webhook endpoint of the account (in the key's mode).
async fn all_endpoints(
    api: &StripeApi,
    host: &dyn StoreHost,
) -> Result<Vec<WebhookEndpoint>, ApiError> {
    let mut endpoints: Vec<WebhookEndpoint> = Vec::new();
    for _ in 0..MAX_ENDPOINT_PAGES {
        let after = endpoints.last().map(|e| e.id.clone());
        let page = patiently(host, || api.webhook_endpoints(after.as_deref())).await?;
        let more = page.has_more && !page.data.is_empty();
        endpoints.extend(page.data);
        if !more {
            break;
        }
    }
    Ok(endpoints)
}

/// A URL as Stripe would call it: parsed (lower-case host, default port
/// dropped) and without a trailing slash.
fn normalized(url: &str) -> String {
    let text = match reqwest::Url::parse(url.trim()) {
        Ok(url) => url.to_string(),
        Err(_) => url.trim().to_owned(),
    };
    text.trim_end_matches('/').to_owned()
}

fn endpoint_findings(
    endpoints: &[WebhookEndpoint],
    notification_url: Option<&str>,
    key_mode: Option<KeyMode>,
    api_version: &str,
) -> Vec<Finding> {
    let listed = || {
        endpoints
            .iter()
            .map(|e| format!("{} ({})", e.url.as_deref().unwrap_or("no URL"), e.id))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(url) = notification_url else {
        let existing = if endpoints.is_empty() {
            "The account has no webhook endpoint yet.".to_owned()
        } else {
            format!("The account's endpoints call: {}.", listed())
        };
        return vec![Finding::error(
            "This server's public URL is not known",
            format!(
                "Set [server] public_url so that storehook knows the URL Stripe must call \
                 (…/v1/notifications/stripe) and can find that endpoint. {existing}"
            ),
        )];
    };
    let want = normalized(url);
    let here: Vec<&WebhookEndpoint> = endpoints
        .iter()
        .filter(|e| e.url.as_deref().map(normalized).as_deref() == Some(want.as_str()))
        .collect();
    if here.is_empty() {
        let detail = if endpoints.is_empty() {
            format!(
                "The account has no webhook endpoint, so Stripe sends storehook nothing. In \
                 {WHERE_WEBHOOKS}, add an endpoint with the URL {url} and select the events \
                 storehook maps."
            )
        } else {
            format!(
                "None of the account's {} webhook endpoint(s) calls {url}; they call: {}. In \
                 {WHERE_WEBHOOKS}, add an endpoint with that URL (or correct the one that was \
                 meant for storehook), or correct [server] public_url if this server is reached \
                 at another address.",
                endpoints.len(),
                listed()
            )
        };
        return vec![Finding::error(
            "No webhook endpoint calls this server",
            detail,
        )];
    }
    here.into_iter()
        .flat_map(|e| one_endpoint(e, url, key_mode, api_version))
        .collect()
}

fn one_endpoint(
    endpoint: &WebhookEndpoint,
    url: &str,
    key_mode: Option<KeyMode>,
    api_version: &str,
) -> Vec<Finding> {
    let id = &endpoint.id;
    let mut findings = vec![Finding::ok(
        format!("Webhook endpoint {id} calls this server"),
        format!("Stripe sends this endpoint's events to {url}."),
    )];
    match endpoint.status.as_deref() {
        Some("enabled") => {}
        Some("disabled") => findings.push(
            Finding::error(
                format!("Webhook endpoint {id} is disabled"),
                format!(
                    "Stripe sends it nothing. Stripe disables an endpoint that has failed for \
                     several days in a row (it emails a warning first), and stops retrying its \
                     events. Make sure this server answers, re-enable the endpoint in \
                     {WHERE_WEBHOOKS}, then recover what was missed with a backfill (POST \
                     /v1/stores/stripe/backfill)."
                ),
            )
            .with_code("disabled"),
        ),
        other => findings.push(
            Finding::warning(
                format!("Webhook endpoint {id} has an unknown status"),
                format!("Stripe says its status is {other:?}, not \"enabled\"; look at it in {WHERE_WEBHOOKS}."),
            )
            .with_code(other.unwrap_or("none").to_owned()),
        ),
    }

    let missing = missing_events(&endpoint.enabled_events);
    if missing.is_empty() {
        findings.push(Finding::ok(
            "The endpoint is sent every event type storehook maps",
            if endpoint.enabled_events.iter().any(|e| e == "*") {
                "It is subscribed to all events (*); storehook records the ones it does not map as OTHER."
            } else {
                "Its selected events include all the types storehook draws state from."
            },
        ));
    } else {
        findings.push(Finding::warning(
            format!(
                "The endpoint is not sent {} event type(s) storehook maps",
                missing.len()
            ),
            format!(
                "Stripe does not send {}, so those changes never reach storehook (and a backfill \
                 finds them only while Stripe keeps them, 30 days). In {WHERE_WEBHOOKS}, edit \
                 endpoint {id} › Select events and add them (or select all events).",
                missing.join(", ")
            ),
        ));
    }

    if let (Some(livemode), Some(mode)) = (endpoint.livemode, key_mode) {
        if livemode != mode.livemode() {
            let endpoint_mode = if livemode { "live" } else { "test" };
            findings.push(Finding::error(
                format!(
                    "Webhook endpoint {id} is in {endpoint_mode} mode but the API key is a {} key",
                    mode.as_str()
                ),
                format!(
                    "A key sees only its own mode's events, so a backfill would recover the \
                     wrong mode's events. Use a {endpoint_mode}-mode key in [stores.stripe.api] \
                     secret_key (or {API_KEY_ENV})."
                ),
            ));
        }
    }

    findings.push(match endpoint.api_version.as_deref() {
        Some(v) if v == api_version => Finding::ok(
            format!("The endpoint's events use API version {v}"),
            "The version storehook is configured for ([stores.stripe.api] api_version).",
        ),
        None => Finding::info(
            "The endpoint uses the account's default API version",
            format!(
                "Its events are rendered in whatever version the account defaults to. storehook \
                 reads the shapes before and after 2025-03-31.basil; to be sure of the shape, \
                 create the endpoint with API version {api_version} (the one storehook is \
                 configured for)."
            ),
        )
        .with_code("null"),
        Some(v) => Finding::warning(
            format!("The endpoint's events use API version {v}, not {api_version}"),
            format!(
                "storehook is configured for {api_version} ([stores.stripe.api] api_version). It \
                 reads the shapes before and after 2025-03-31.basil, but recovered events are \
                 rendered in the version of their creation, not the endpoint's. Set api_version \
                 = \"{v}\", or create the endpoint again with version {api_version}."
            ),
        )
        .with_code(v.to_owned()),
    });
    findings
}

/// The mapped types an endpoint's `enabled_events` leaves out (`*` covers
/// all; a `prefix.*` entry its family).
fn missing_events(enabled: &[String]) -> Vec<&'static str> {
    if enabled.iter().any(|e| e == "*") {
        return Vec::new();
    }
    MAPPED_EVENT_TYPES
        .iter()
        .copied()
        .filter(|t| {
            !enabled.iter().any(|e| {
                e == t
                    || e.strip_suffix('*')
                        .is_some_and(|prefix| prefix.ends_with('.') && t.starts_with(prefix))
            })
        })
        .collect()
}

struct Undelivered {
    /// Events Stripe lists as not delivered.
    listed: u64,
    /// Of those, the ones storehook has no record of.
    missing: u64,
    /// More pages than counted.
    capped: bool,
}

async fn count_undelivered(api: &StripeApi, host: &dyn StoreHost) -> Result<Undelivered, ApiError> {
    let since = host.now_ms().div_euclid(1000) - FAILURE_LOOKBACK_S;
    let mut count = Undelivered {
        listed: 0,
        missing: 0,
        capped: false,
    };
    let mut after: Option<String> = None;
    for page_no in 0..=MAX_FAILURE_PAGES {
        if page_no == MAX_FAILURE_PAGES {
            count.capped = true;
            break;
        }
        let query = EventQuery {
            created_gte: Some(since),
            types: MAPPED_EVENT_TYPES,
            delivery_success: Some(false),
            limit: MAX_LIMIT,
            starting_after: after.as_deref(),
            ..EventQuery::default()
        };
        let page = patiently(host, || api.events(&query)).await?;
        for event in &page.data {
            count.listed += 1;
            // An event that failed at another endpoint may be here already;
            // when storage cannot say, count it as missing.
            if !host.has_notification(&event.id).await.unwrap_or(false) {
                count.missing += 1;
            }
        }
        match page.data.last() {
            Some(last) if page.has_more => after = Some(last.id.clone()),
            _ => break,
        }
    }
    Ok(count)
}

fn undelivered_finding(count: &Undelivered) -> Finding {
    let more = if count.capped { "more than " } else { "" };
    if count.listed == 0 {
        return Finding::ok(
            "No undelivered events",
            "Stripe reports no event of the types storehook maps that it failed to deliver in \
             the last 3 days.",
        );
    }
    if count.missing == 0 {
        return Finding::info(
            format!(
                "Stripe reports {more}{} undelivered event(s), all recorded here",
                count.listed
            ),
            "They failed at another of the account's endpoints (Stripe's delivery_success \
             counts every endpoint); storehook has them all, so there is nothing to recover.",
        );
    }
    Finding::warning(
        format!(
            "{more}{} event(s) that Stripe failed to deliver can be recovered",
            count.missing
        ),
        format!(
            "In the last 3 days Stripe failed to deliver {more}{} event(s) of the types storehook \
             maps (it may still be retrying them), and storehook has no record of {}. Recover \
             them now: POST /v1/stores/stripe/backfill with {{\"since\": \"3d\", \
             \"only_failures\": true}} (or the card's backfill action). Events already recorded \
             are skipped as duplicates.",
            count.listed, count.missing
        ),
    )
    .with_code("delivery_success=false")
}

fn permission_finding(
    title: &str,
    permission: &str,
    consequence: &str,
    code: Option<&str>,
) -> Finding {
    let finding = Finding::error(
        title,
        format!(
            "Stripe answered 403: the restricted key lacks \"{permission}\", {consequence}. In \
             {WHERE_KEYS}, edit the key and give it \"{permission}\" (storehook needs Events: \
             Read and Webhook Endpoints: Read)."
        ),
    );
    match code {
        Some(code) => finding.with_code(code.to_owned()),
        None => finding.with_code("permission_denied"),
    }
}

/// Stripe could not be asked (network, 5xx, rate limit after waiting).
fn unreachable_report(mut findings: Vec<Finding>, error: ApiError) -> CheckReport {
    let transient = matches!(
        error,
        ApiError::Unavailable(_) | ApiError::RateLimited { .. } | ApiError::BadResponse(_)
    );
    let code = match &error {
        ApiError::RateLimited { .. } => "rate_limit".to_owned(),
        ApiError::Rejected { error: e, .. } => e.raw_code().unwrap_or("rejected").to_owned(),
        _ => "unavailable".to_owned(),
    };
    let (title, what_to_do) = if transient {
        (
            "Stripe's API could not be reached",
            "Try the check again in a few minutes; if it keeps failing, make sure this server \
             can reach api.stripe.com (or [stores.stripe.api] base_url).",
        )
    } else {
        (
            "Stripe refused storehook's request",
            "This is unexpected; check [stores.stripe.api] base_url and api_version.",
        )
    };
    findings.push(Finding::error(title, format!("{error}. {what_to_do}")).with_code(code));
    CheckReport::from_findings(findings, transient)
}

/// Runs `call`, waiting out a few 429s (through the host, so a cancelled
/// check stops waiting).
async fn patiently<T, F, Fut>(host: &dyn StoreHost, mut call: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let mut waits = 0;
    loop {
        match call().await {
            Err(ApiError::RateLimited { retry_after, .. }) if waits < RATE_LIMIT_RETRIES => {
                waits += 1;
                let wait = retry_after
                    .unwrap_or(crate::api::DEFAULT_RETRY_AFTER)
                    .min(MAX_RATE_LIMIT_WAIT);
                host.progress(&format!(
                    "Stripe asked to slow down; asking again in {} s",
                    wait.as_secs().max(1)
                ));
                if !host.pause(wait).await {
                    return Err(ApiError::Unavailable("the check was cancelled".to_owned()));
                }
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_compare_as_stripe_calls_them() {
        assert_eq!(
            normalized("https://Hooks.Example.com:443/v1/notifications/stripe/"),
            "https://hooks.example.com/v1/notifications/stripe"
        );
        assert_eq!(normalized(" not a url/ "), "not a url");
    }

    #[test]
    fn star_and_families_cover_mapped_events() {
        assert!(missing_events(&["*".to_owned()]).is_empty());
        let all: Vec<String> = MAPPED_EVENT_TYPES.iter().map(|t| t.to_string()).collect();
        assert!(missing_events(&all).is_empty());
        let some = vec![
            "customer.subscription.*".to_owned(),
            "invoice.paid".to_owned(),
            "charge.*".to_owned(),
        ];
        let missing = missing_events(&some);
        assert!(missing.contains(&"invoice.payment_failed"), "{missing:?}");
        assert!(!missing.contains(&"customer.subscription.updated"));
        assert!(!missing.contains(&"charge.refunded"));
        // "*" only as a whole entry or after a dot.
        assert_eq!(
            missing_events(&["invoice*".to_owned()]).len(),
            MAPPED_EVENT_TYPES.len()
        );
    }
}
