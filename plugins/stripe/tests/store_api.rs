//! The pull side against the Stripe stand-in over loopback HTTP: the real
//! client, the connection check's findings, and the backfill's order,
//! resumption and filters.

use std::time::Duration;

use serde_json::Value;
use storehook_core::{
    AdapterError, BackfillPage, BackfillWindow, CheckReport, CheckVerdict, EventType,
    FactoryContext, Finding, FindingLevel, Outcome, Recovered, StoreAdapter,
};
use storehook_stand_ins::host::FakeHost;
use storehook_stand_ins::stripe::{
    event_copy, recorded_event, recorded_events, webhook_endpoint, Route, Scripted, StripeStandIn,
};
use storehook_stripe::{
    AcceptedMode, ApiSettings, StripeAdapter, StripeConfig, API_KEY_ENV, DEFAULT_API_VERSION,
    MAPPED_EVENT_TYPES,
};

const KEY: &str = "rk_test_51StandInKeyForStorehook0123456789";
const PUBLIC_URL: &str = "https://hooks.example.com/v1/notifications/stripe";
/// 2026-02-07T00:00:00Z: the recorded events run from 2026-01-01 to 02-06.
const NOW_S: i64 = 1_770_422_400;
const DAY_S: i64 = 86_400;

/// The host on the tests' clock ([`NOW_S`]), with the notification URL.
fn fake_host() -> FakeHost {
    FakeHost::new(PUBLIC_URL).with_now_ms(NOW_S * 1000)
}

/// An adapter with `key` on the API at `base_url`, its config and API
/// settings changed by `adjust` first.
fn adapter_adjusted(
    base_url: String,
    key: &str,
    adjust: impl FnOnce(&mut StripeConfig, &mut ApiSettings),
) -> StripeAdapter {
    let mut config = StripeConfig::with_secrets(["whsec_store_api"]);
    let mut api = ApiSettings::new(key);
    api.base_url = base_url;
    adjust(&mut config, &mut api);
    config.api = Some(api);
    StripeAdapter::new(config).expect("valid config")
}

fn adapter_with_key(stand_in: &StripeStandIn, key: &str) -> StripeAdapter {
    adapter_adjusted(stand_in.base_url(), key, |_, _| {})
}

fn adapter(stand_in: &StripeStandIn) -> StripeAdapter {
    adapter_with_key(stand_in, KEY)
}

fn endpoint(url: &str, events: &[&str]) -> Value {
    webhook_endpoint(
        "we_storehook",
        url,
        "enabled",
        events,
        false,
        Some(DEFAULT_API_VERSION),
    )
}

/// Our endpoint, sent every event type.
fn our_endpoint() -> Value {
    endpoint(PUBLIC_URL, &["*"])
}

/// A stand-in whose one webhook endpoint is ours.
async fn stand_in_calling_storehook() -> StripeStandIn {
    let stand_in = StripeStandIn::start(KEY).await;
    stand_in.set_webhook_endpoints(vec![our_endpoint()]);
    stand_in
}

/// The report is a problem, and the finding titled `title_part` an error.
fn error_finding<'a>(report: &'a CheckReport, title_part: &str) -> &'a Finding {
    assert_eq!(report.verdict, CheckVerdict::Problem, "{report:#?}");
    let f = finding(report, title_part);
    assert_eq!(f.level, FindingLevel::Error);
    f
}

fn finding<'a>(report: &'a CheckReport, title_part: &str) -> &'a Finding {
    report
        .findings
        .iter()
        .find(|f| f.title.contains(title_part))
        .unwrap_or_else(|| panic!("no finding {title_part:?} in {:#?}", report.findings))
}

/// `finding`'s detail says `words`.
fn assert_says(finding: &Finding, words: &str) {
    assert!(
        finding.detail.contains(words),
        "{words:?} not in {}",
        finding.detail
    );
}

fn no_finding(report: &CheckReport, level: FindingLevel) {
    let found: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.level == level)
        .collect();
    assert!(found.is_empty(), "{found:#?}");
}

async fn check(stand_in: &StripeStandIn, host: &FakeHost) -> CheckReport {
    adapter(stand_in)
        .check_connection(host)
        .await
        .expect("the check runs")
}

// ----- connection check ----------------------------------------------------

#[tokio::test]
async fn a_wrong_key_is_refused_in_words() {
    let stand_in = StripeStandIn::start(KEY).await;
    let wrong = "rk_test_51WrongKeyWrongKeyWrongKey9876";
    let a = adapter_with_key(&stand_in, wrong);
    let host = fake_host();
    let report = a.check_connection(&host).await.expect("runs");
    assert_eq!(report.verdict, CheckVerdict::Problem);
    assert_eq!(report.summary, "Stripe refused the API key");
    let f = finding(&report, "refused the API key");
    assert_eq!(f.level, FindingLevel::Error);
    assert_says(f, "wrong or revoked");
    assert_says(f, API_KEY_ENV);
    assert_eq!(f.code.as_deref(), Some("invalid_api_key"));
    let everything = serde_json::to_string(&report).unwrap();
    assert!(!everything.contains("WrongKey"), "{everything}");

    let served = stand_in.requests();
    assert_eq!(served.len(), 1, "stops at the refusal: {served:?}");
    assert_eq!(served[0].status, 401);
    assert!(!served[0].authenticated);

    // A backfill with that key stops with the same words, without the key.
    let err = a
        .backfill_page(host.backfill(&window(NOW_S - DAY_S, NOW_S, false), None))
        .await
        .unwrap_err();
    assert_eq!((err.http_status(), err.code()), (401, "invalid_api_key"));
    assert!(err.message().contains("wrong or revoked"), "{err}");
    assert!(!err.message().contains("WrongKey"), "{err}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn the_stand_in_checks_keys_as_stripe_does() {
    let stand_in = StripeStandIn::start(KEY).await;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/webhook_endpoints", stand_in.base_url());
    // Basic auth with the key as the user name is accepted.
    let ok = http
        .get(&url)
        .basic_auth(KEY, Some(""))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["url"], "/v1/webhook_endpoints");
    // No key, and a wrong one: 401 in Stripe's shape, the key masked.
    let none = http.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let body: Value = none.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("You did not provide an API key"));
    let wrong = http
        .get(&url)
        .bearer_auth("sk_test_000000000000S8wL")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "Invalid API Key provided: sk_test_************S8wL"
    );
    // An unknown parameter and a bad version are refused.
    let odd = http
        .get(format!("{url}?limit=5&colour=blue"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(odd.status(), 400);
    let bad_version = http
        .get(&url)
        .bearer_auth(KEY)
        .header("Stripe-Version", "latest")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_version.status(), 400);
}

#[tokio::test]
async fn every_request_carries_the_key_and_the_pinned_version() {
    let stand_in = stand_in_calling_storehook().await;
    let report = check(&stand_in, &fake_host()).await;
    assert_eq!(report.verdict, CheckVerdict::Connected, "{report:#?}");
    let served = stand_in.requests();
    assert_eq!(served.len(), 2, "{served:?}");
    for r in &served {
        assert!(r.authenticated, "{r:?}");
        assert_eq!(r.stripe_version.as_deref(), Some(DEFAULT_API_VERSION));
    }
    assert_eq!(served[0].path, "/v1/webhook_endpoints");
    assert_eq!(served[0].param("limit"), Some("100"));
    assert_eq!(served[1].path, "/v1/events");
}

#[tokio::test]
async fn no_endpoint_here_lists_the_ones_that_exist() {
    let stand_in = StripeStandIn::start(KEY).await;
    let mut other = endpoint("https://old.example.com/stripe/webhook", &["*"]);
    other["id"] = "we_old".into();
    other["created"] = 1_700_000_000.into();
    let mut second = endpoint("https://crm.example.com/hooks", &["*"]);
    second["id"] = "we_crm".into();
    stand_in.set_webhook_endpoints(vec![other, second]);
    let report = check(&stand_in, &fake_host()).await;
    let f = error_finding(&report, "No webhook endpoint calls this server");
    assert_says(f, PUBLIC_URL);
    assert_says(f, "https://old.example.com/stripe/webhook (we_old)");
    assert_says(f, "https://crm.example.com/hooks (we_crm)");

    // No endpoint at all says so.
    stand_in.set_webhook_endpoints(Vec::new());
    let report = check(&stand_in, &fake_host()).await;
    let f = finding(&report, "No webhook endpoint calls this server");
    assert_says(f, "no webhook endpoint");
}

#[tokio::test]
async fn the_url_matches_with_or_without_a_trailing_slash_and_public_url_is_needed() {
    let stand_in = StripeStandIn::start(KEY).await;
    stand_in.set_webhook_endpoints(vec![endpoint(
        "https://HOOKS.example.com/v1/notifications/stripe/",
        &["*"],
    )]);
    let report = check(&stand_in, &fake_host()).await;
    assert_eq!(report.verdict, CheckVerdict::Connected, "{report:#?}");
    assert_eq!(
        finding(&report, "we_storehook calls this server").level,
        FindingLevel::Ok
    );

    let host = fake_host().without_notification_url();
    let report = check(&stand_in, &host).await;
    assert_eq!(report.verdict, CheckVerdict::Problem);
    let f = finding(&report, "public URL is not known");
    assert_says(f, "[server] public_url");
    assert_says(f, "https://HOOKS.example.com/v1/notifications/stripe/");
}

#[tokio::test]
async fn a_disabled_endpoint_is_an_error_with_what_to_do() {
    let stand_in = StripeStandIn::start(KEY).await;
    let mut disabled =
        storehook_stand_ins::recorded_json("stripe/webhook_endpoint.disabled.derived.json");
    disabled["url"] = PUBLIC_URL.into();
    stand_in.set_webhook_endpoints(vec![disabled]);
    let report = check(&stand_in, &fake_host()).await;
    let f = error_finding(&report, "is disabled");
    assert_eq!(f.code.as_deref(), Some("disabled"));
    assert!(
        f.title.contains("we_1Pgc6yB7WZ01zgkWzAudq4eU"),
        "{}",
        f.title
    );
    for words in ["re-enable", "backfill", "several days"] {
        assert_says(f, words);
    }
    assert_eq!(report.summary, f.title);
}

#[tokio::test]
async fn missing_event_types_are_warned_and_star_is_accepted() {
    let stand_in = StripeStandIn::start(KEY).await;
    // The recorded endpoint's own selection: charge.failed, charge.succeeded.
    let mut recorded = storehook_stand_ins::recorded_json("stripe/webhook_endpoint.json");
    recorded["url"] = PUBLIC_URL.into();
    recorded["api_version"] = DEFAULT_API_VERSION.into();
    recorded["enabled_events"] = serde_json::json!([
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "invoice.paid",
        "charge.succeeded"
    ]);
    stand_in.set_webhook_endpoints(vec![recorded]);
    let report = check(&stand_in, &fake_host()).await;
    assert_eq!(report.verdict, CheckVerdict::Connected, "{report:#?}");
    assert_eq!(report.summary, "Connected, with 1 warning.");
    let f = finding(&report, "is not sent 8 event type(s)");
    assert_eq!(f.level, FindingLevel::Warning);
    for missing in [
        "customer.subscription.paused",
        "invoice.payment_failed",
        "charge.refunded",
        "checkout.session.completed",
    ] {
        assert_says(f, missing);
    }
    assert!(!f.detail.contains("invoice.paid,"), "{}", f.detail);
    assert!(
        !f.detail.contains("customer.subscription.created"),
        "{}",
        f.detail
    );

    stand_in.set_webhook_endpoints(vec![our_endpoint()]);
    let report = check(&stand_in, &fake_host()).await;
    no_finding(&report, FindingLevel::Warning);
    no_finding(&report, FindingLevel::Error);
    assert!(finding(&report, "every event type").detail.contains("(*)"));
}

#[tokio::test]
async fn a_livemode_mismatch_is_an_error() {
    let stand_in = StripeStandIn::start(KEY).await;
    let mut live = our_endpoint();
    live["livemode"] = true.into();
    stand_in.set_webhook_endpoints(vec![live]);
    let report = check(&stand_in, &fake_host()).await;
    let f = error_finding(&report, "is in live mode but the API key is a test key");
    assert_says(f, "live-mode key");

    // A test-mode key where [stores.stripe] livemode accepts live only.
    stand_in.set_webhook_endpoints(vec![our_endpoint()]);
    let report = adapter_adjusted(stand_in.base_url(), KEY, |config, _| {
        config.livemode = AcceptedMode::Live
    })
    .check_connection(&fake_host())
    .await
    .unwrap();
    assert_eq!(report.verdict, CheckVerdict::Problem);
    let f = finding(&report, "accepts only live-mode events");
    assert_says(f, "livemode = \"live\"");
}

#[tokio::test]
async fn the_endpoints_api_version_is_reported() {
    let stand_in = StripeStandIn::start(KEY).await;
    let mut account_default = our_endpoint();
    account_default["api_version"] = Value::Null;
    stand_in.set_webhook_endpoints(vec![account_default]);
    let report = check(&stand_in, &fake_host()).await;
    let f = finding(&report, "account's default API version");
    assert_eq!(f.level, FindingLevel::Info);
    assert_says(f, DEFAULT_API_VERSION);
    assert_eq!(report.verdict, CheckVerdict::Connected);

    let mut older = our_endpoint();
    older["api_version"] = "2020-08-27".into();
    stand_in.set_webhook_endpoints(vec![older]);
    let report = check(&stand_in, &fake_host()).await;
    let f = finding(&report, "use API version 2020-08-27");
    assert_eq!(f.level, FindingLevel::Warning);
    assert_eq!(f.code.as_deref(), Some("2020-08-27"));
    assert_says(f, "api_version");

    stand_in.set_webhook_endpoints(vec![our_endpoint()]);
    let report = check(&stand_in, &fake_host()).await;
    assert_eq!(
        finding(&report, &format!("use API version {DEFAULT_API_VERSION}")).level,
        FindingLevel::Ok
    );
}

#[tokio::test]
async fn undelivered_events_of_the_last_3_days_are_counted_as_recoverable() {
    let stand_in = stand_in_calling_storehook().await;
    let paid = recorded_event("invoice.paid");
    // Three undelivered in the last 3 days, one of them already recorded
    // here (it failed at another endpoint); one delivered; one undelivered
    // but older; one undelivered of a type storehook does not map.
    stand_in.add_event(event_copy(&paid, "evt_fail_1", NOW_S - DAY_S), false);
    stand_in.add_event(event_copy(&paid, "evt_fail_2", NOW_S - 2 * DAY_S), false);
    stand_in.add_event(event_copy(&paid, "evt_fail_seen", NOW_S - 3600), false);
    stand_in.add_event(event_copy(&paid, "evt_delivered", NOW_S - 3600), true);
    stand_in.add_event(event_copy(&paid, "evt_fail_old", NOW_S - 4 * DAY_S), false);
    let plan = storehook_stand_ins::recorded_json("stripe/event.json");
    stand_in.add_event(event_copy(&plan, "evt_plan", NOW_S - 60), false);
    let host = fake_host().with_notification("evt_fail_seen");

    let report = check(&stand_in, &host).await;
    assert_eq!(report.recoverable, Some(2), "{report:#?}");
    let f = finding(&report, "can be recovered");
    assert_eq!(f.level, FindingLevel::Warning);
    assert_eq!(
        f.title,
        "2 event(s) that Stripe failed to deliver can be recovered"
    );
    assert_says(f, "failed to deliver 3 event(s)");
    assert_says(f, "\"only_failures\": true");
    assert_says(f, "/v1/stores/stripe/backfill");

    let events = stand_in.requests_to("/v1/events");
    assert_eq!(events.len(), 1);
    let r = &events[0];
    assert_eq!(r.param("delivery_success"), Some("false"));
    let since = (NOW_S - 3 * DAY_S).to_string();
    assert_eq!(r.param("created[gte]"), Some(since.as_str()));
    assert_eq!(r.params("types[]"), MAPPED_EVENT_TYPES);
    assert!(host
        .progress_lines()
        .iter()
        .any(|l| l.contains("failed to deliver")));

    // Nothing undelivered: no recoverable event, said plainly.
    let clean = stand_in_calling_storehook().await;
    let report = check(&clean, &fake_host()).await;
    assert_eq!(report.recoverable, Some(0));
    assert_eq!(
        finding(&report, "No undelivered events").level,
        FindingLevel::Ok
    );
}

fn missing_permission(slug: &str) -> Scripted {
    Scripted::MissingPermission { slug: slug.into() }
}

#[tokio::test]
async fn a_restricted_key_without_a_permission_is_told_which_to_add() {
    let stand_in = stand_in_calling_storehook().await;
    stand_in.script(
        Route::WebhookEndpoints,
        missing_permission("rak_webhook_read"),
    );
    stand_in.script(Route::Events, missing_permission("rak_event_read"));
    let report = check(&stand_in, &fake_host()).await;
    assert_eq!(report.verdict, CheckVerdict::Problem);
    let f = finding(&report, "may not read webhook endpoints");
    assert_says(f, "\"Webhook Endpoints: Read\"");
    assert_says(f, "API keys");
    let f = finding(&report, "may not read events");
    assert_says(f, "\"Events: Read\"");
    assert_eq!(report.recoverable, None);
    let everything = serde_json::to_string(&report).unwrap();
    assert!(!everything.contains("51StandIn"), "{everything}");

    // In a backfill, the permission is named in the job's error.
    stand_in.script(Route::Events, missing_permission("rak_event_read"));
    let err = adapter(&stand_in)
        .backfill_page(fake_host().backfill(&window(NOW_S - DAY_S, NOW_S, false), None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "permission_denied");
    assert!(err.message().contains("Events: Read"), "{err}");
    assert!(!err.message().contains("51StandIn"), "{err}");
}

#[tokio::test]
async fn the_check_waits_out_a_429_and_reports_stripe_down_as_unavailable() {
    let stand_in = stand_in_calling_storehook().await;
    stand_in.script(
        Route::WebhookEndpoints,
        Scripted::RateLimited {
            retry_after_s: Some(2),
        },
    );
    let host = fake_host();
    let report = check(&stand_in, &host).await;
    assert_eq!(report.verdict, CheckVerdict::Connected, "{report:#?}");
    assert_eq!(host.pauses(), vec![Duration::from_secs(2)]);
    let served: Vec<u16> = stand_in.requests().iter().map(|r| r.status).collect();
    assert_eq!(served, vec![429, 200, 200]);

    stand_in.script(Route::Any, Scripted::ServerError);
    let report = check(&stand_in, &fake_host()).await;
    assert_eq!(report.verdict, CheckVerdict::Unavailable);
    assert_eq!(report.summary, "Stripe's API could not be reached");
}

#[tokio::test]
async fn a_version_stripe_refuses_is_a_problem_naming_api_version() {
    let stand_in = StripeStandIn::start(KEY).await;
    let report = adapter_adjusted(stand_in.base_url(), KEY, |_, api| {
        api.api_version = "latest".into()
    })
    .check_connection(&fake_host())
    .await
    .unwrap();
    assert_eq!(report.verdict, CheckVerdict::Problem);
    assert_eq!(report.summary, "Stripe refused storehook's request");
    let f = finding(&report, "refused storehook's request");
    assert_says(f, "Invalid Stripe API version: latest");
    assert_says(f, "api_version");
    assert_eq!(
        stand_in.requests()[0].stripe_version.as_deref(),
        Some("latest")
    );
}

#[tokio::test]
async fn without_a_key_nothing_is_offered_and_the_check_says_what_to_set() {
    let a = StripeAdapter::new(StripeConfig::with_secrets(["whsec_a"])).unwrap();
    let caps = a.api_capabilities();
    assert!(!caps.check && !caps.backfill && !caps.acknowledge);
    let report = a.check_connection(&fake_host()).await.unwrap();
    assert_eq!(report.verdict, CheckVerdict::NotConfigured);
    let detail = &report.findings[0].detail;
    assert!(
        detail.contains("[stores.stripe.api] secret_key"),
        "{detail}"
    );
    assert!(detail.contains(API_KEY_ENV), "{detail}");
    assert!(detail.contains("Events"), "{detail}");
    let err = a
        .backfill_page(fake_host().backfill(&window(0, 1, false), None))
        .await
        .unwrap_err();
    assert_eq!(err.http_status(), 501);

    let stand_in = StripeStandIn::start(KEY).await;
    let caps = adapter(&stand_in).api_capabilities();
    assert!(caps.check && caps.backfill && !caps.acknowledge);
}

#[test]
fn config_debug_hides_the_key_and_a_bad_prefix_names_it() {
    let mut config = StripeConfig::with_secrets(["whsec_a"]);
    config.api = Some(ApiSettings::new(KEY));
    let a = StripeAdapter::new(config.clone()).unwrap();
    for shown in [format!("{config:?}"), format!("{a:?}")] {
        assert!(!shown.contains("51StandIn"), "{shown}");
        assert!(shown.contains("restricted test-mode key"), "{shown}");
    }

    let reg = storehook_core::find_registration("stripe").unwrap();
    let env = |_: &str| None;
    let ctx = FactoryContext {
        config_dir: std::path::PathBuf::from("/"),
        env: &env,
    };
    let table: toml::Table = toml::from_str(
        "signing_secrets = ['whsec_a']\n[api]\nsecret_key = 'pk_test_PublishableXyz'",
    )
    .unwrap();
    let err = (reg.build)(&table, &ctx).err().expect("refused");
    assert!(err.0.contains("stores.stripe.api.secret_key"), "{err}");
    assert!(err.0.contains("sk_ or rk_"), "{err}");
    assert!(!err.0.contains("PublishableXyz"), "{err}");
    // Built programmatically, the same check applies.
    let mut config = StripeConfig::with_secrets(["whsec_a"]);
    config.api = Some(ApiSettings::new("whsec_notakey"));
    let err = StripeAdapter::new(config).unwrap_err();
    assert!(err.0.contains("stores.stripe.api.secret_key"), "{err}");
}

// ----- backfill ------------------------------------------------------------

fn window(since_s: i64, until_s: i64, only_failures: bool) -> BackfillWindow {
    BackfillWindow {
        since_ms: since_s * 1000,
        until_ms: until_s * 1000,
        only_failures,
    }
}

/// Runs a backfill from `cursor` to its end (or `max_pages` pages): the
/// recovered events' ids in order, the pages, and the last cursor.
async fn run(
    a: &StripeAdapter,
    w: &BackfillWindow,
    mut cursor: Option<String>,
    host: &FakeHost,
    max_pages: usize,
) -> (Vec<Recovered>, Vec<BackfillPage>, Option<String>) {
    let mut recovered = Vec::new();
    let mut pages = Vec::new();
    for _ in 0..max_pages {
        let page = a
            .backfill_page(host.backfill(w, cursor.as_deref()))
            .await
            .expect("a page");
        recovered.extend(page.recovered.clone());
        cursor = page.next_cursor.clone();
        pages.push(page);
        if cursor.is_none() {
            break;
        }
    }
    (recovered, pages, cursor)
}

fn ids(recovered: &[Recovered]) -> Vec<String> {
    recovered
        .iter()
        .map(|r| match r {
            Recovered::Notification {
                outcome: Outcome::Notification(n),
                ..
            } => n.notification_id.clone(),
            other => panic!("not a notification: {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn the_recorded_events_are_recovered_oldest_first_as_pushed_ones() {
    let stand_in = StripeStandIn::start(KEY).await;
    for event in recorded_events() {
        stand_in.add_event(event, false);
    }
    let host = fake_host();
    let a = adapter(&stand_in);
    // Since New Year: Stripe keeps 30 days, so the window starts 2026-01-08.
    let w = window(1_767_225_600, NOW_S, false);
    let (recovered, pages, cursor) = run(&a, &w, None, &host, 100).await;
    assert_eq!(cursor, None);
    assert_eq!(
        ids(&recovered),
        vec![
            "evt_1Pgc76B7WZ01zgkWwyRHS104", // paused, 2026-01-08
            "evt_1Pgc76B7WZ01zgkWwyRHS105", // resumed, 01-10
            // trial_will_end (01-12) is not a mapped type
            "evt_1Pgc76B7WZ01zgkWwyRHS103", // deleted, 02-01 00:00
            "evt_1Pgc76B7WZ01zgkWwyRHS107", // invoice.paid, 02-01 01:00
            "evt_1Pgc76B7WZ01zgkWwyRHS108", // invoice.payment_failed, same second
            "evt_1Pgc76B7WZ01zgkWwyRHS109", // invoice.payment_action_required, same second
            "evt_1Pgc76B7WZ01zgkWwyRHS110", // charge.refunded, 02-06
        ]
    );
    assert_eq!(
        pages.iter().map(|p| p.scanned).sum::<u64>(),
        recovered.len() as u64
    );
    assert!(host
        .progress_lines()
        .iter()
        .any(|l| l.contains("last 30 days only") && l.contains("2026-01-08")));

    // Each is the event as pushed: its id, its mapping, its bytes.
    for r in &recovered {
        let Recovered::Notification {
            outcome: Outcome::Notification(n),
            raw_body,
        } = r
        else {
            unreachable!()
        };
        let raw: Value = serde_json::from_slice(raw_body).unwrap();
        assert_eq!(
            raw,
            recorded_event(raw["type"].as_str().unwrap()),
            "the stored body is Stripe's event"
        );
        assert_eq!(n.raw_type, raw["type"]);
        assert_eq!(n.occurred_at_ms, raw["created"].as_i64().unwrap() * 1000);
        let expected = match n.raw_type.as_str() {
            "customer.subscription.paused" => EventType::SubscriptionPaused,
            "customer.subscription.resumed" => EventType::SubscriptionResumed,
            "customer.subscription.deleted" => EventType::Expiration,
            "invoice.paid" => EventType::Renewal,
            "invoice.payment_failed" => EventType::BillingIssue,
            "charge.refunded" => EventType::Refund,
            _ => EventType::Other,
        };
        assert_eq!(n.event_type, expected, "{}", n.raw_type);
        assert_eq!(n.store, "stripe");
    }

    let requests = stand_in.requests_to("/v1/events");
    for r in &requests {
        assert_eq!(r.params("types[]"), MAPPED_EVENT_TYPES);
        assert_eq!(r.param("limit"), Some("100"));
        assert_eq!(r.param("delivery_success"), None);
        assert!(r.param("created[gte]").is_some() && r.param("created[lte]").is_some());
    }
    // Sparse: a handful of requests for 30 days, not one per hour.
    assert!(requests.len() < 15, "{} requests", requests.len());
}

/// 300 events two minutes apart, with a burst of 150 in one second in the
/// middle: slices that fit one page, and one that must be walked.
fn many_events(stand_in: &StripeStandIn, base: i64) -> Vec<String> {
    let templates: Vec<Value> = recorded_events()
        .into_iter()
        .filter(|e| MAPPED_EVENT_TYPES.contains(&e["type"].as_str().unwrap()))
        .collect();
    let mut expected = Vec::new();
    let mut add = |i: usize, created: i64| {
        let id = format!("evt_many_{i:04}");
        stand_in.add_event(
            event_copy(&templates[i % templates.len()], &id, created),
            true,
        );
        expected.push(id);
    };
    let mut i = 0;
    for n in 0..300 {
        add(i, base + n * 120);
        i += 1;
        if n == 150 {
            for _ in 0..150 {
                add(i, base + n * 120 + 60);
                i += 1;
            }
        }
    }
    expected
}

#[tokio::test]
async fn many_pages_come_oldest_first_even_within_one_second() {
    let stand_in = StripeStandIn::start(KEY).await;
    let base = NOW_S - 2 * DAY_S;
    let expected = many_events(&stand_in, base);
    assert_eq!(expected.len(), 450);
    let host = fake_host();
    let (recovered, pages, cursor) = run(
        &adapter(&stand_in),
        &window(base, NOW_S, false),
        None,
        &host,
        500,
    )
    .await;
    assert_eq!(cursor, None);
    assert_eq!(ids(&recovered), expected);
    let emitting = pages.iter().filter(|p| !p.recovered.is_empty()).count();
    assert!(emitting > 3, "{emitting} pages with events");
    assert_eq!(pages.iter().map(|p| p.scanned).sum::<u64>(), 450);
    // The burst was walked down then up.
    let requests = stand_in.requests_to("/v1/events");
    assert!(requests.iter().any(|r| r.param("starting_after").is_some()));
    assert!(requests.iter().any(|r| r.param("ending_before").is_some()));
    assert!(host
        .progress_lines()
        .iter()
        .any(|l| l.contains("more than 100 events")));
    // Bounded: far fewer requests than one per page of a naive double walk
    // over 450 events plus one per slice.
    assert!(requests.len() < 40, "{} requests", requests.len());
}

#[tokio::test]
async fn a_backfill_resumes_from_its_cursor_after_a_restart() {
    let stand_in = StripeStandIn::start(KEY).await;
    let base = NOW_S - 2 * DAY_S;
    let expected = many_events(&stand_in, base);
    let w = window(base, NOW_S, false);
    let host = fake_host();
    // Stop in the middle of the burst's walk and at a slice boundary.
    for stop_after in [3, 9] {
        let (first, _, cursor) = run(&adapter(&stand_in), &w, None, &host, stop_after).await;
        let cursor = cursor.expect("not done yet");
        assert!(cursor.starts_with("v1."), "{cursor}");
        // A new adapter, as after a restart, from the stored cursor.
        let (rest, _, end) = run(&adapter(&stand_in), &w, Some(cursor), &host, 500).await;
        assert_eq!(end, None);
        let mut all = ids(&first);
        all.extend(ids(&rest));
        assert_eq!(all, expected, "stopped after {stop_after} pages");
    }

    let err = adapter(&stand_in)
        .backfill_page(host.backfill(&w, Some("page=3")))
        .await
        .unwrap_err();
    assert_eq!((err.http_status(), err.code()), (400, "bad_cursor"));
}

#[tokio::test]
async fn a_walk_whose_cursor_event_aged_out_starts_its_slice_again() {
    let stand_in = StripeStandIn::start(KEY).await;
    let paid = recorded_event("invoice.paid");
    let t = NOW_S - DAY_S;
    let expected: Vec<String> = (0..150).map(|i| format!("evt_burst_{i:03}")).collect();
    for id in &expected {
        stand_in.add_event(event_copy(&paid, id, t), false);
    }
    let host = fake_host();
    let a = adapter(&stand_in);
    let w = window(t - 10, t + 10, false);
    // The first page overflows: the walk down starts after the 100th newest.
    let (first, _, cursor) = run(&a, &w, None, &host, 1).await;
    assert!(first.is_empty());
    stand_in.remove_event(&expected[50]);
    let (rest, _, end) = run(&a, &w, cursor, &host, 50).await;
    assert_eq!(end, None);
    let mut left = expected.clone();
    left.remove(50);
    assert_eq!(ids(&rest), left);
    assert!(host
        .progress_lines()
        .iter()
        .any(|l| l.contains("no longer listed")));
    let statuses: Vec<u16> = stand_in
        .requests_to("/v1/events")
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses[1], 404, "{statuses:?}");
}

#[tokio::test]
async fn only_failures_and_the_types_filter_what_is_recovered() {
    let stand_in = StripeStandIn::start(KEY).await;
    let paid = recorded_event("invoice.paid");
    let trial = recorded_event("customer.subscription.trial_will_end");
    let plan = storehook_stand_ins::recorded_json("stripe/event.json");
    let t = NOW_S - DAY_S;
    stand_in.add_event(event_copy(&paid, "evt_failed_a", t), false);
    stand_in.add_event(event_copy(&paid, "evt_delivered", t + 10), true);
    stand_in.add_event(event_copy(&trial, "evt_trial", t + 20), false);
    stand_in.add_event(event_copy(&plan, "evt_plan", t + 30), false);
    stand_in.add_event(event_copy(&paid, "evt_failed_b", t + 40), false);
    let host = fake_host();
    let a = adapter(&stand_in);

    let (recovered, _, _) = run(&a, &window(t - 60, NOW_S, true), None, &host, 50).await;
    assert_eq!(ids(&recovered), vec!["evt_failed_a", "evt_failed_b"]);
    for r in stand_in.requests_to("/v1/events") {
        assert_eq!(r.param("delivery_success"), Some("false"));
    }

    let (recovered, _, _) = run(&a, &window(t - 60, NOW_S, false), None, &host, 50).await;
    assert_eq!(
        ids(&recovered),
        vec!["evt_failed_a", "evt_delivered", "evt_failed_b"]
    );

    // The window's ends hold: events outside it are not recovered.
    let (recovered, _, _) = run(&a, &window(t + 5, t + 39, false), None, &host, 50).await;
    assert_eq!(ids(&recovered), vec!["evt_delivered"]);
}

#[tokio::test]
async fn rate_limits_and_outages_are_handed_to_the_host() {
    let stand_in = StripeStandIn::start(KEY).await;
    stand_in.add_event(
        event_copy(&recorded_event("invoice.paid"), "evt_1", NOW_S - 60),
        false,
    );
    let host = fake_host();
    let a = adapter(&stand_in);
    let w = window(NOW_S - 3600, NOW_S, false);

    stand_in.script(
        Route::Events,
        Scripted::RateLimited {
            retry_after_s: Some(7),
        },
    );
    match a.backfill_page(host.backfill(&w, None)).await.unwrap_err() {
        AdapterError::RateLimited {
            code, retry_at_ms, ..
        } => {
            assert_eq!(code, "rate_limit");
            assert_eq!(retry_at_ms, Some(NOW_S * 1000 + 7000));
        }
        other => panic!("{other:?}"),
    }
    stand_in.script(
        Route::Events,
        Scripted::RateLimited {
            retry_after_s: None,
        },
    );
    match a.backfill_page(host.backfill(&w, None)).await.unwrap_err() {
        AdapterError::RateLimited { retry_at_ms, .. } => {
            assert_eq!(retry_at_ms, Some(NOW_S * 1000 + 1000));
        }
        other => panic!("{other:?}"),
    }
    stand_in.script(Route::Events, Scripted::ServerError);
    let err = a.backfill_page(host.backfill(&w, None)).await.unwrap_err();
    assert!(matches!(err, AdapterError::Unavailable { .. }), "{err:?}");
    assert!(err.is_transient());

    // Asked again, the same page comes, and the backfill goes on.
    let page = a.backfill_page(host.backfill(&w, None)).await.unwrap();
    assert_eq!(ids(&page.recovered), vec!["evt_1"]);
    let (rest, _, end) = run(&a, &w, page.next_cursor, &host, 10).await;
    assert!(rest.is_empty() && end.is_none(), "{rest:?}");

    // Stripe unreachable altogether is transient too.
    let err = adapter_adjusted("http://127.0.0.1:9".into(), KEY, |_, _| {})
        .backfill_page(host.backfill(&w, None))
        .await
        .unwrap_err();
    assert!(matches!(err, AdapterError::Unavailable { .. }), "{err:?}");
}
