//! The App Store Server API side against the stand-in over loopback HTTP:
//! the real client, its ES256 tokens checked as Apple checks them, "Check
//! connection" through a test notification, and backfill from Get
//! Notification History with real JWS signed by the tests' chain.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384};
use serde_json::{json, Value};
use storehook_apple::config::PRIVATE_KEY_ENV;
use storehook_apple::{AppleAdapter, AppleSettings};
use storehook_core::{
    AdapterError, ApiCapabilities, BackfillPage, BackfillWindow, CheckReport, CheckVerdict,
    ConfigError, FactoryContext, Finding, FindingLevel, Outcome, Recovered, StoreAdapter,
};
use storehook_stand_ins::apple::{
    AppleApiKey, AppleStandIn, Failure, HistoryRecord, SendAttempt, TestNotificationScript,
};
use storehook_stand_ins::host::FakeHost;
use support::*;

const KEY_ID: &str = "2X9R4HXF34";
const ISSUER_ID: &str = "57246542-96fe-1a63-e053-0824d011072a";
const HOOK_URL: &str = "https://hooks.example.com/v1/notifications/apple";
const DAY_MS: i64 = 86_400_000;
const UNAUTHORIZED_WORDS: &str =
    "wrong key id, issuer id or bundle id, or the app is not released in production yet";

// ---------------------------------------------------------------- the host

/// The host as an adapter sees it, on the wall clock: a notification log,
/// progress lines and pauses that return at once but are remembered.
fn fake_host() -> FakeHost {
    FakeHost::new(HOOK_URL)
}

// ------------------------------------------------------------- the set-up

/// A fresh ES256 API key: the private PEM for storehook, the public half
/// for the stand-in.
struct ApiKey {
    private_pem: String,
    public_pem: String,
}

impl ApiKey {
    fn generate() -> Self {
        let pair = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        Self {
            private_pem: pair.serialize_pem(),
            public_pem: pair.public_key_pem(),
        }
    }

    fn trusted(&self) -> AppleApiKey {
        AppleApiKey {
            key_id: KEY_ID.to_owned(),
            issuer_id: ISSUER_ID.to_owned(),
            public_key_pem: self.public_pem.clone(),
        }
    }
}

fn context<'a>(env: &'a (dyn Fn(&str) -> Option<String> + Sync)) -> FactoryContext<'a> {
    FactoryContext {
        config_dir: std::env::temp_dir(),
        env,
    }
}

/// `[stores.apple]` with `[api]` pointing at the stand-ins.
fn config_text(environments: &[&str], production_url: &str, sandbox_url: &str) -> String {
    format!(
        "apps = [{{ bundle_id = '{BUNDLE}', app_apple_id = {APP_ID} }}]\n\
         environments = [{}]\n\
         [api]\n\
         key_id = '{KEY_ID}'\n\
         issuer_id = '{ISSUER_ID}'\n\
         production_url = '{production_url}'\n\
         sandbox_url = '{sandbox_url}/'\n",
        environments
            .iter()
            .map(|e| format!("'{e}'"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn settings_with_env_key(text: &str, pem: &str) -> Result<AppleSettings, ConfigError> {
    let table: toml::Table = toml::from_str(text).unwrap();
    let pem = pem.to_owned();
    let env = move |name: &str| (name == PRIVATE_KEY_ENV).then(|| pem.clone());
    AppleSettings::from_table(&table, &context(&env))
}

/// One app, on the given stand-ins, trusting `chain`, signing with `pem`.
fn adapter(
    environments: &[&str],
    production: &AppleStandIn,
    sandbox: &AppleStandIn,
    chain: &TestChain,
    pem: &str,
) -> AppleAdapter {
    let mut settings = settings_with_env_key(
        &config_text(environments, &production.url(), &sandbox.url()),
        pem,
    )
    .unwrap();
    settings.root_certificates = vec![chain.root.clone()];
    AppleAdapter::new(settings)
}

struct World {
    chain: TestChain,
    key: ApiKey,
    production: AppleStandIn,
    sandbox: AppleStandIn,
}

impl World {
    async fn start() -> Self {
        let key = ApiKey::generate();
        let production = AppleStandIn::production(key.trusted(), &[BUNDLE]).await;
        let sandbox = AppleStandIn::sandbox(key.trusted(), &[BUNDLE]).await;
        Self {
            chain: TestChain::good(),
            key,
            production,
            sandbox,
        }
    }

    fn adapter(&self, environments: &[&str]) -> AppleAdapter {
        adapter(
            environments,
            &self.production,
            &self.sandbox,
            &self.chain,
            &self.key.private_pem,
        )
    }

    /// Sandbox's next test notification: `attempts` as Apple reports them
    /// after `not_ready` status polls, its payload signed by `signer`.
    fn script_sandbox_test(
        &self,
        attempts: &[&str],
        signer: &TestChain,
        uuid: &str,
        not_ready: u32,
    ) {
        self.sandbox.script_test_notification(
            BUNDLE,
            script(
                attempts,
                test_notification(signer, "Sandbox", uuid),
                not_ready,
            ),
        );
    }

    /// "Check connection" of a Sandbox-only app.
    async fn check_sandbox(&self, host: &FakeHost) -> CheckReport {
        self.adapter(&["Sandbox"])
            .check_connection(host)
            .await
            .unwrap()
    }
}

fn now_ms() -> i64 {
    storehook_core::time::now_ms()
}

/// Apple's TEST notification, signed by `chain`.
fn test_notification(chain: &TestChain, environment: &str, uuid: &str) -> String {
    chain.sign(&json!({
        "notificationType": "TEST",
        "notificationUUID": uuid,
        "data": { "appAppleId": APP_ID, "bundleId": BUNDLE, "environment": environment },
        "version": "2.0",
        "signedDate": now_ms() - 5_000
    }))
}

/// A SUBSCRIBED notification with its own UUID, signed by `chain`.
fn notification(chain: &TestChain, environment: &str, uuid: &str, signed_date: i64) -> String {
    let mut payload = subscribed_notification(chain, environment, signed_date);
    payload["notificationUUID"] = Value::String(uuid.to_owned());
    chain.sign(&payload)
}

fn script(attempts: &[&str], signed_payload: String, not_ready: u32) -> TestNotificationScript {
    TestNotificationScript {
        not_ready,
        send_attempts: attempts
            .iter()
            .enumerate()
            .map(|(i, r)| SendAttempt::new(1_698_148_900_000 + i as i64 * 3_600_000, r))
            .collect(),
        signed_payload,
    }
}

fn finding<'a>(report: &'a CheckReport, title_part: &str) -> &'a Finding {
    report
        .findings
        .iter()
        .find(|f| f.title.contains(title_part))
        .unwrap_or_else(|| panic!("no finding {title_part:?} in {report:#?}"))
}

fn jwt_header(token: &str) -> Value {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

// ------------------------------------------------------------- the check

#[tokio::test]
async fn the_check_confirms_a_recorded_test_notification_with_one_reused_token() {
    let world = World::start().await;
    let uuid = "5a2b7c3e-0d6f-4a8e-9b1c-2d3e4f5a6b7c";
    world.script_sandbox_test(&["SUCCESS"], &world.chain, uuid, 2);
    let adapter = world.adapter(&["Sandbox"]);
    assert_eq!(
        adapter.api_capabilities(),
        ApiCapabilities {
            check: true,
            backfill: true,
            acknowledge: false
        }
    );
    let host = fake_host();
    host.record(uuid);

    let report = adapter.check_connection(&host).await.unwrap();

    assert_eq!(report.verdict, CheckVerdict::Connected, "{report:#?}");
    assert!(finding(&report, "notification URL")
        .detail
        .contains(HOOK_URL));
    let attempt = finding(&report, "Sandbox: attempt 1 at 2023-10-24T12:01:40Z");
    assert_eq!(
        (attempt.level, attempt.code.as_deref()),
        (FindingLevel::Ok, Some("SUCCESS"))
    );
    let recorded = finding(&report, "storehook recorded the test notification");
    assert_eq!(recorded.level, FindingLevel::Ok);
    assert!(recorded.detail.contains(uuid));

    // One POST, then status requests: 4040008 twice, then the attempts.
    let requests = world.sandbox.requests();
    let served: Vec<(&str, &str, u16)> = requests
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str(), r.status))
        .collect();
    let token_path = "/inApps/v1/notifications/test/ce3af791-365e-4c60-841b-1674b43c1609";
    assert_eq!(
        served,
        vec![
            ("POST", "/inApps/v1/notifications/test", 200),
            ("GET", token_path, 404),
            ("GET", token_path, 404),
            ("GET", token_path, 200),
        ]
    );
    assert!(world.production.requests().is_empty());
    // The same token for all four, with the claims Apple wants.
    let bearers: HashSet<_> = requests.iter().map(|r| r.bearer.clone().unwrap()).collect();
    assert_eq!(bearers.len(), 1, "one token, reused");
    let token = bearers.into_iter().next().unwrap();
    assert_eq!(
        jwt_header(&token),
        json!({ "alg": "ES256", "kid": KEY_ID, "typ": "JWT" })
    );
    let claims = requests[0].claims.clone().unwrap();
    assert_eq!(claims["iss"], ISSUER_ID);
    assert_eq!(claims["aud"], "appstoreconnect-v1");
    assert_eq!(claims["bid"], BUNDLE);
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert_eq!(exp - iat, 15 * 60);
    assert!((iat - now_ms() / 1000).abs() < 60);

    // Each status request waited a second first (Apple allows one a second).
    assert_eq!(host.pauses(), vec![Duration::from_secs(1); 3]);
    assert_eq!(
        host.progress_lines()[0],
        "Sandbox: asked Apple for a test notification"
    );
}

#[tokio::test]
async fn a_key_apple_does_not_know_is_a_401_in_words() {
    let world = World::start().await;
    let stranger = ApiKey::generate();
    let adapter = adapter(
        &["Sandbox"],
        &world.production,
        &world.sandbox,
        &world.chain,
        &stranger.private_pem,
    );
    let report = adapter.check_connection(&fake_host()).await.unwrap();
    assert_eq!(report.verdict, CheckVerdict::Problem);
    let refused = finding(&report, "Sandbox: Apple refused storehook's API key");
    assert_eq!(refused.code.as_deref(), Some("401"));
    assert!(
        refused.detail.contains(UNAUTHORIZED_WORDS),
        "{}",
        refused.detail
    );
    assert_eq!(report.summary, refused.title);
    // Refused once, not polled; the stand-in saw a well-formed token.
    let requests = world.sandbox.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].status, 401);
    assert!(requests[0].claims.is_none());
    assert_eq!(
        jwt_header(requests[0].bearer.as_deref().unwrap())["kid"],
        KEY_ID
    );
}

#[tokio::test]
async fn a_production_app_not_released_yet_is_a_401_in_the_same_words() {
    let world = World::start().await;
    world.production.set_released(false);
    let adapter = world.adapter(&["Production"]);
    let report = adapter.check_connection(&fake_host()).await.unwrap();
    let refused = finding(&report, "Production: Apple refused storehook's API key");
    assert!(refused.detail.contains(UNAUTHORIZED_WORDS));
    assert!(refused.detail.contains("first release"));
}

#[tokio::test]
async fn every_send_attempt_is_reported_with_what_to_do() {
    let world = World::start().await;
    let uuid = "7d1e2f3a-4b5c-4d6e-8f9a-0b1c2d3e4f5a";
    world.script_sandbox_test(
        &[
            "TLS_ISSUE",
            "UNSUCCESSFUL_HTTP_RESPONSE_CODE",
            "CARRIER_PIGEON_LOST",
            "SUCCESS",
        ],
        &world.chain,
        uuid,
        0,
    );
    let host = fake_host();
    host.record(uuid);
    let report = world.check_sandbox(&host).await;

    let tls = finding(&report, "attempt 1");
    assert_eq!(tls.code.as_deref(), Some("TLS_ISSUE"));
    assert!(tls.detail.contains("certificate chain"), "{}", tls.detail);
    assert!(tls.detail.contains("publicly trusted"), "{}", tls.detail);
    assert!(tls.detail.contains(HOOK_URL));
    let http = finding(&report, "attempt 2");
    assert_eq!(
        http.code.as_deref(),
        Some("UNSUCCESSFUL_HTTP_RESPONSE_CODE")
    );
    assert!(http
        .title
        .contains("storehook or its proxy answered a non-2xx status"));
    let unknown = finding(&report, "attempt 3");
    assert_eq!(unknown.code.as_deref(), Some("CARRIER_PIGEON_LOST"));
    assert!(unknown.detail.contains("\"CARRIER_PIGEON_LOST\""));
    let success = finding(&report, "attempt 4");
    assert_eq!(success.code.as_deref(), Some("SUCCESS"));
    // Apple got through in the end: the failures before are warnings.
    assert_eq!(
        [tls.level, http.level, unknown.level, success.level],
        [
            FindingLevel::Warning,
            FindingLevel::Warning,
            FindingLevel::Warning,
            FindingLevel::Ok
        ]
    );
    assert_eq!(report.verdict, CheckVerdict::Connected);
    assert_eq!(report.summary, "Connected, with 3 warnings.");
}

#[tokio::test]
async fn failed_attempts_without_success_are_problems() {
    let world = World::start().await;
    let uuid = "0a0b0c0d-1e1f-4a2b-8c3d-4e5f6a7b8c9d";
    world.script_sandbox_test(&["TLS_ISSUE"], &world.chain, uuid, 1);
    let report = world.check_sandbox(&fake_host()).await;
    assert_eq!(report.verdict, CheckVerdict::Problem);
    let tls = finding(&report, "attempt 1");
    assert_eq!(tls.level, FindingLevel::Error);
    assert!(report.summary.contains("TLS"), "{}", report.summary);
    let missing = finding(&report, "storehook has no record of the test notification");
    assert_eq!(missing.level, FindingLevel::Info);
}

#[tokio::test]
async fn delivered_but_not_recorded_means_something_else_answered() {
    let world = World::start().await;
    let uuid = "9f8e7d6c-5b4a-4392-8a1b-0c9d8e7f6a5b";
    world.script_sandbox_test(&["SUCCESS"], &world.chain, uuid, 0);
    // The host recorded some other notification, not this one.
    let host = fake_host();
    host.record("another-uuid");
    let report = world.check_sandbox(&host).await;
    assert_eq!(report.verdict, CheckVerdict::Problem);
    let missing = finding(&report, "storehook has no record of it");
    assert_eq!(missing.level, FindingLevel::Error);
    assert_eq!(missing.code.as_deref(), Some(uuid));
    assert!(missing.detail.contains("proxy"), "{}", missing.detail);
    assert!(missing.detail.contains(HOOK_URL));
}

#[tokio::test]
async fn a_test_notification_signed_by_another_chain_is_not_taken_for_apple_s() {
    let world = World::start().await;
    let impostor = TestChain::good();
    world.script_sandbox_test(
        &["SUCCESS"],
        &impostor,
        "1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e",
        0,
    );
    let report = world.check_sandbox(&fake_host()).await;
    let refused = finding(&report, "did not verify");
    assert_eq!(refused.level, FindingLevel::Error);
    assert_eq!(refused.code.as_deref(), Some("VERIFICATION_FAILURE"));
}

#[tokio::test]
async fn each_environment_is_checked_and_a_missing_url_says_what_to_paste() {
    let world = World::start().await;
    world.production.set_notification_url(false);
    let uuid = "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f";
    world.script_sandbox_test(&["SUCCESS"], &world.chain, uuid, 0);
    let host = fake_host();
    host.record(uuid);
    let report = world
        .adapter(&["Production", "Sandbox"])
        .check_connection(&host)
        .await
        .unwrap();

    assert_eq!(report.verdict, CheckVerdict::Problem);
    let missing = finding(
        &report,
        "Production: no notification URL in App Store Connect",
    );
    assert_eq!(missing.code.as_deref(), Some("4040007"));
    assert!(
        missing.detail.contains(&format!(
            "No notification URL is set in App Store Connect for Production: paste {HOOK_URL}"
        )),
        "{}",
        missing.detail
    );
    assert_eq!(
        finding(&report, "Sandbox: storehook recorded").level,
        FindingLevel::Ok
    );
    assert_eq!(world.production.requests().len(), 1);
}

#[tokio::test]
async fn apple_never_sending_the_status_ends_after_about_a_minute() {
    let world = World::start().await;
    world.script_sandbox_test(&["SUCCESS"], &world.chain, "x", u32::MAX);
    let host = fake_host();
    let report = world.check_sandbox(&host).await;
    let late = finding(
        &report,
        "Apple did not report sending the test notification",
    );
    assert_eq!(late.code.as_deref(), Some("4040008"));
    assert_eq!(report.verdict, CheckVerdict::Problem);
    let pauses = host.pauses();
    assert_eq!(pauses.iter().sum::<Duration>(), Duration::from_secs(60));
    assert!(pauses.iter().all(|p| *p >= Duration::from_secs(1)));
    // 60 status requests after the one POST: never more than one a second.
    assert_eq!(world.sandbox.requests().len(), 61);
    let progress = host.progress_lines();
    assert!(progress.contains(&"Sandbox: waiting for Apple… 5 s".to_owned()));
    assert!(progress.contains(&"Sandbox: waiting for Apple… 60 s".to_owned()));
}

#[tokio::test]
async fn a_rate_limit_during_polling_is_waited_out() {
    let world = World::start().await;
    let uuid = "3d4e5f6a-7b8c-4d9e-8f0a-1b2c3d4e5f6a";
    world.script_sandbox_test(&["SUCCESS"], &world.chain, uuid, 0);
    let retry_at = now_ms() + 5_000;
    world.sandbox.fail_next_on(
        "GET",
        "/inApps/v1/notifications/test/",
        Failure::RateLimited {
            retry_after: retry_at.to_string(),
        },
    );
    let host = fake_host();
    host.record(uuid);
    let report = world.check_sandbox(&host).await;
    assert_eq!(report.verdict, CheckVerdict::Connected, "{report:#?}");
    let statuses: Vec<u16> = world.sandbox.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 429, 200]);
    // The wait after the 429 follows Retry-After (about 5 s, not 1 s).
    let pauses = host.pauses();
    assert_eq!(pauses.len(), 2, "{pauses:?}");
    assert_eq!(pauses[0], Duration::from_secs(1));
    assert!(
        pauses[1] > Duration::from_secs(3) && pauses[1] <= Duration::from_secs(5),
        "{pauses:?}"
    );
}

#[tokio::test]
async fn without_credentials_nothing_is_offered_and_the_check_says_what_to_set() {
    let settings = AppleSettings::from_table(
        &toml::from_str(&format!(
            "apps = [{{ bundle_id = '{BUNDLE}', app_apple_id = {APP_ID} }}]"
        ))
        .unwrap(),
        &context(&|_| None),
    )
    .unwrap();
    let adapter = AppleAdapter::new(settings);
    assert_eq!(adapter.api_capabilities(), ApiCapabilities::default());
    let report = adapter.check_connection(&fake_host()).await.unwrap();
    assert_eq!(report.verdict, CheckVerdict::NotConfigured);
    let what = &report.findings[0].detail;
    for key in [
        "[stores.apple.api]",
        "key_id",
        "issuer_id",
        "private_key_file",
        PRIVATE_KEY_ENV,
    ] {
        assert!(what.contains(key), "{what}");
    }
    let window = backfill_window(0, 1, false);
    let e = adapter
        .backfill_page(fake_host().backfill(&window, None))
        .await
        .unwrap_err();
    assert_eq!(e.http_status(), 501);
}

// ------------------------------------------------------------ backfill

fn backfill_window(since_ms: i64, until_ms: i64, only_failures: bool) -> BackfillWindow {
    BackfillWindow {
        since_ms,
        until_ms,
        only_failures,
    }
}

fn ids(page: &BackfillPage) -> Vec<String> {
    page.recovered
        .iter()
        .map(|r| match r {
            Recovered::Notification {
                outcome: Outcome::Notification(n),
                raw_body,
            } => {
                // Stored as Apple would have pushed it.
                let body: Value = serde_json::from_slice(raw_body).unwrap();
                assert!(body["signedPayload"].as_str().unwrap().starts_with("eyJ"));
                assert_eq!(body.as_object().unwrap().len(), 1);
                assert_eq!(n.raw_type, "SUBSCRIBED/INITIAL_BUY");
                n.notification_id.clone()
            }
            other => panic!("not a verified notification: {other:?}"),
        })
        .collect()
}

fn history_requests(stand_in: &AppleStandIn) -> Vec<storehook_stand_ins::apple::ServedRequest> {
    stand_in
        .requests()
        .into_iter()
        .filter(|r| r.path == "/inApps/v1/notifications/history")
        .collect()
}

#[tokio::test]
async fn backfill_walks_every_page_of_each_environment_in_order_and_resumes_from_a_cursor() {
    let world = World::start().await;
    let chain = &world.chain;
    let t = now_ms() - 10 * DAY_MS;
    let impostor = TestChain::good();
    world.production.script_history(
        BUNDLE,
        vec![
            vec![
                HistoryRecord::new(notification(chain, "Production", "p-1", t)),
                HistoryRecord::new(notification(&impostor, "Production", "forged", t)),
                HistoryRecord::new(notification(chain, "Production", "p-2", t + 1000)),
            ],
            vec![
                HistoryRecord::new(notification(chain, "Production", "p-3", t + 2000)),
                HistoryRecord::new(notification(chain, "Production", "p-4", t + 3000)),
            ],
        ],
    );
    world.sandbox.script_history(
        BUNDLE,
        vec![vec![HistoryRecord::new(notification(
            chain, "Sandbox", "s-1", t,
        ))]],
    );
    let adapter = world.adapter(&["Production", "Sandbox"]);
    let host = fake_host();
    let window = backfill_window(now_ms() - 14 * DAY_MS, now_ms(), true);

    let first = adapter
        .backfill_page(host.backfill(&window, None))
        .await
        .unwrap();
    assert_eq!(ids(&first), ["p-1", "p-2"]);
    assert_eq!(first.scanned, 3);
    let cursor = first.next_cursor.clone().unwrap();
    assert!(
        host.progress_lines()
            .iter()
            .any(|l| l.contains("1 did not verify") && l.contains("VERIFICATION_FAILURE")),
        "{:?}",
        host.progress_lines()
    );

    // A restart: a new adapter resumes from the stored cursor.
    let restarted = world.adapter(&["Production", "Sandbox"]);
    let second = restarted
        .backfill_page(host.backfill(&window, Some(&cursor)))
        .await
        .unwrap();
    assert_eq!(ids(&second), ["p-3", "p-4"]);
    let third = restarted
        .backfill_page(host.backfill(&window, second.next_cursor.as_deref()))
        .await
        .unwrap();
    assert_eq!(ids(&third), ["s-1"]);
    assert_eq!(third.next_cursor, None);

    // Apple saw the same body on both pages, the token on the second.
    let production = history_requests(&world.production);
    assert_eq!(production.len(), 2);
    assert!(production.iter().all(|r| r.status == 200));
    assert_eq!(production[0].body, production[1].body);
    let body = production[0].body.clone().unwrap();
    assert_eq!(body["startDate"], window.since_ms);
    assert_eq!(body["endDate"], window.until_ms);
    assert_eq!(body["onlyFailures"], true);
    assert!(!production[0].query.contains_key("paginationToken"));
    assert!(production[1].query["paginationToken"].starts_with("57715481-805a-4283-8499-"));
    let sandbox = history_requests(&world.sandbox);
    assert_eq!(sandbox.len(), 1);
    assert_eq!(sandbox[0].claims.as_ref().unwrap()["bid"], BUNDLE);
    // The pages after the first waited for Apple's rate.
    assert!(host.pauses().iter().all(|p| *p > Duration::ZERO));
    assert_eq!(host.pauses().len(), 2);
}

#[tokio::test]
async fn the_window_is_clamped_to_what_apple_keeps() {
    let world = World::start().await;
    let adapter = world.adapter(&["Production", "Sandbox"]);
    let host = fake_host();
    let now = now_ms();
    let window = backfill_window(now - 400 * DAY_MS, now + DAY_MS, false);
    let mut cursor = None;
    loop {
        let page = adapter
            .backfill_page(host.backfill(&window, cursor.as_deref()))
            .await
            .unwrap();
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    // The stand-ins refuse a start older than 180 / 30 days (4000012): both
    // accepted, so the clamp holds; the end is never in the future.
    for (stand_in, days) in [(&world.production, 180), (&world.sandbox, 30)] {
        let requests = history_requests(stand_in);
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].status, 200);
        let body = requests[0].body.clone().unwrap();
        let start = body["startDate"].as_i64().unwrap();
        assert!(
            start > now - days * DAY_MS && start < now - (days - 1) * DAY_MS,
            "{body}"
        );
        assert!(body["endDate"].as_i64().unwrap() <= now_ms());
        assert_eq!(body["onlyFailures"], false);
    }

    // A window wholly older than Sandbox's 30 days asks Sandbox nothing.
    let old = backfill_window(now - 60 * DAY_MS, now - 40 * DAY_MS, false);
    let sandbox_only = world.adapter(&["Sandbox"]);
    let page = sandbox_only
        .backfill_page(host.backfill(&old, None))
        .await
        .unwrap();
    assert_eq!((page.recovered.len(), page.next_cursor), (0, None));
    assert_eq!(history_requests(&world.sandbox).len(), 1);
    assert!(host
        .progress_lines()
        .iter()
        .any(|l| l.contains("older than Apple's history (30 days)")));
}

/// When a page refused as rate limited may be asked for again.
fn rate_limited_until(page: Result<BackfillPage, AdapterError>) -> Option<i64> {
    match page {
        Err(AdapterError::RateLimited { retry_at_ms, .. }) => retry_at_ms,
        other => panic!("expected RateLimited, got {other:?}"),
    }
}

#[tokio::test]
async fn a_429_is_rate_limited_until_retry_after_and_a_500_is_unavailable() {
    let world = World::start().await;
    world.sandbox.script_history(
        BUNDLE,
        vec![vec![HistoryRecord::new(notification(
            &world.chain,
            "Sandbox",
            "s-1",
            now_ms() - DAY_MS,
        ))]],
    );
    let adapter = world.adapter(&["Sandbox"]);
    let host = fake_host();
    let window = backfill_window(now_ms() - 2 * DAY_MS, now_ms(), true);

    let retry_at = now_ms() + 42_000;
    world.sandbox.fail_next(Failure::RateLimited {
        retry_after: retry_at.to_string(),
    });
    assert_eq!(
        rate_limited_until(adapter.backfill_page(host.backfill(&window, None)).await),
        Some(retry_at)
    );
    // Seconds are tolerated.
    world.sandbox.fail_next(Failure::RateLimited {
        retry_after: (retry_at / 1000).to_string(),
    });
    assert_eq!(
        rate_limited_until(adapter.backfill_page(host.backfill(&window, None)).await),
        Some(retry_at / 1000 * 1000)
    );
    world.sandbox.fail_next(Failure::ServerError);
    let e = adapter
        .backfill_page(host.backfill(&window, None))
        .await
        .unwrap_err();
    assert!(
        matches!(e, AdapterError::Unavailable { .. }) && e.message().contains("5000000"),
        "{e:?}"
    );
    // Then Apple answers, with the same token as before.
    let page = adapter
        .backfill_page(host.backfill(&window, None))
        .await
        .unwrap();
    assert_eq!(ids(&page), ["s-1"]);
    let requests = history_requests(&world.sandbox);
    assert_eq!(
        requests.iter().map(|r| r.status).collect::<Vec<_>>(),
        [429, 429, 500, 200]
    );
    let bearers: HashSet<_> = requests.iter().map(|r| r.bearer.clone()).collect();
    assert_eq!(bearers.len(), 1);
}

#[tokio::test]
async fn an_apple_error_in_backfill_keeps_its_code_and_a_401_its_words() {
    let world = World::start().await;
    let adapter = world.adapter(&["Sandbox"]);
    let host = fake_host();
    let window = backfill_window(now_ms() - DAY_MS, now_ms(), false);
    world.sandbox.fail_next(Failure::Error {
        status: 400,
        body: storehook_stand_ins::recorded_json(
            "apple/invalidPaginationTokenError.reconstructed.json",
        ),
    });
    let e = adapter
        .backfill_page(host.backfill(&window, None))
        .await
        .unwrap_err();
    assert_eq!((e.http_status(), e.code()), (400, "4000014"));
    world.sandbox.set_released(false);
    let e = adapter
        .backfill_page(host.backfill(&window, None))
        .await
        .unwrap_err();
    assert_eq!(e.http_status(), 401);
    assert!(e.message().contains(UNAUTHORIZED_WORDS), "{e}");
}

// ------------------------------------------------------ configuration

#[test]
fn a_bad_or_missing_key_file_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let p384 = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)
        .unwrap()
        .serialize_pem();
    std::fs::write(dir.path().join("p384.p8"), &p384).unwrap();
    std::fs::write(dir.path().join("garbage.p8"), "not a key at all").unwrap();
    let good = ApiKey::generate();
    std::fs::write(dir.path().join("good.p8"), &good.private_pem).unwrap();
    let config_dir = dir.path().to_path_buf();
    let parse = |file: &str, env: Option<&str>| {
        let text = format!(
            "apps = [{{ bundle_id = '{BUNDLE}', app_apple_id = {APP_ID} }}]\n\
             [api]\nkey_id = '{KEY_ID}'\nissuer_id = '{ISSUER_ID}'\n{file}"
        );
        let env = env.map(str::to_owned);
        let lookup = move |name: &str| (name == PRIVATE_KEY_ENV).then(|| env.clone()).flatten();
        let ctx = FactoryContext {
            config_dir: config_dir.clone(),
            env: &lookup,
        };
        AppleSettings::from_table(&toml::from_str(&text).unwrap(), &ctx)
    };

    for (file, env, says) in [
        ("private_key_file = 'missing.p8'", None, "cannot read"),
        (
            "private_key_file = 'garbage.p8'",
            None,
            "not an In-App Purchase key",
        ),
        (
            "private_key_file = 'p384.p8'",
            None,
            "not an In-App Purchase key",
        ),
        ("", None, PRIVATE_KEY_ENV),
        (
            "private_key_file = 'good.p8'",
            Some("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
            PRIVATE_KEY_ENV,
        ),
    ] {
        let e = parse(file, env).unwrap_err();
        assert!(
            e.0.starts_with("stores.apple.api.private_key_file: "),
            "{file}: {e}"
        );
        assert!(e.0.contains(says), "{file}: {e}");
        assert!(!e.0.contains("AAAA"), "the error quotes the key: {e}");
        assert!(
            !e.0.contains(&p384[40..80]),
            "the error quotes the key: {e}"
        );
    }
    // Relative to the config file's folder; the env wins over the file.
    let settings = parse("private_key_file = 'good.p8'", None).unwrap();
    assert_eq!(settings.api.unwrap().private_key.expose(), good.private_pem);
    let settings = parse("private_key_file = 'garbage.p8'", Some(&good.private_pem)).unwrap();
    assert_eq!(settings.api.unwrap().private_key.expose(), good.private_pem);

    // The other keys are checked too, by name.
    let e = AppleSettings::from_table(
        &toml::from_str(&format!(
            "apps = [{{ bundle_id = '{BUNDLE}', app_apple_id = {APP_ID} }}]\n\
             [api]\nkey_id = '{KEY_ID}'\nissuer_id = ''"
        ))
        .unwrap(),
        &context(&|_| Some(good.private_pem.clone())),
    )
    .unwrap_err();
    assert!(e.0.starts_with("stores.apple.api.issuer_id"), "{e}");
    let e = settings_with_env_key(
        &config_text(&["Sandbox"], "ftp://example.com", "http://127.0.0.1:1"),
        &good.private_pem,
    )
    .unwrap_err();
    assert!(e.0.starts_with("stores.apple.api.production_url"), "{e}");
}

#[test]
fn debug_output_shows_no_key_material() {
    let key = ApiKey::generate();
    let settings = settings_with_env_key(
        &config_text(&["Sandbox"], "http://127.0.0.1:1", "http://127.0.0.1:2"),
        &key.private_pem,
    )
    .unwrap();
    let api = settings.api.clone().unwrap();
    assert_eq!(api.sandbox_url, "http://127.0.0.1:2");
    assert_eq!(api.production_url, "http://127.0.0.1:1");
    let adapter = AppleAdapter::new(settings.clone());
    let key_body: String = key
        .private_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for shown in [
        format!("{settings:?}"),
        format!("{api:?}"),
        format!("{adapter:?}"),
        format!("{adapter:#?}"),
    ] {
        assert!(shown.contains("***"), "{shown}");
        assert!(shown.contains(KEY_ID));
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        for chunk in key_body.as_bytes().chunks(16) {
            assert!(
                !shown.contains(std::str::from_utf8(chunk).unwrap()),
                "{shown}"
            );
        }
    }
}

// ------------------------------------------------------ the stand-in

/// The stand-in is only worth its tests if it refuses what Apple refuses.
#[tokio::test]
async fn the_stand_in_refuses_tokens_apple_would_refuse() {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let world = World::start().await;
    let key = EncodingKey::from_ec_pem(world.key.private_pem.as_bytes()).unwrap();
    let stranger = ApiKey::generate();
    let stranger_key = EncodingKey::from_ec_pem(stranger.private_pem.as_bytes()).unwrap();
    let now = now_ms() / 1000;
    let header = |kid: &str, typ: Option<&str>| {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(kid.to_owned());
        h.typ = typ.map(str::to_owned);
        h
    };
    let good = json!({
        "iss": ISSUER_ID, "aud": "appstoreconnect-v1", "bid": BUNDLE, "iat": now, "exp": now + 900
    });
    // The good claims but for `changes`.
    let good_but = |changes: &[(&str, Value)]| {
        let mut claims = good.clone();
        for (name, value) in changes {
            claims[*name] = value.clone();
        }
        claims
    };
    let jwt = header(KEY_ID, Some("JWT"));
    let cases = [
        ("good", jwt.clone(), good.clone(), &key, 200),
        ("other key", jwt.clone(), good.clone(), &stranger_key, 401),
        (
            "wrong kid",
            header("OTHERKEY99", Some("JWT")),
            good.clone(),
            &key,
            401,
        ),
        ("no typ", header(KEY_ID, None), good.clone(), &key, 401),
        (
            "wrong aud",
            jwt.clone(),
            good_but(&[("aud", json!("appstoreconnect-v2"))]),
            &key,
            401,
        ),
        (
            "wrong iss",
            jwt.clone(),
            good_but(&[("iss", json!("69a6de7e-0000-47e3-e053-5b8c7c11a4d1"))]),
            &key,
            401,
        ),
        (
            "other app",
            jwt.clone(),
            good_but(&[("bid", json!("com.example.other"))]),
            &key,
            401,
        ),
        (
            "lives 30 min",
            jwt.clone(),
            good_but(&[("exp", json!(now + 1800))]),
            &key,
            401,
        ),
        (
            "expired",
            jwt.clone(),
            good_but(&[("iat", json!(now - 1200)), ("exp", json!(now - 300))]),
            &key,
            401,
        ),
        (
            "no iat",
            jwt.clone(),
            json!({ "iss": ISSUER_ID, "aud": "appstoreconnect-v1", "bid": BUNDLE, "exp": now + 300 }),
            &key,
            401,
        ),
    ];
    let http = reqwest::Client::new();
    let test_url = format!("{}/inApps/v1/notifications/test", world.sandbox.url());
    for (what, header, claims, key, expected) in cases {
        let token = encode(&header, &claims, key).unwrap();
        let response = http
            .post(&test_url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap();
        assert_eq!(status, expected, "{what}");
        if expected == 401 {
            assert!(body.is_empty(), "{what}: Apple's 401 has no body");
        }
    }
    let response = http.post(&test_url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401, "no token");
}
