//! The pull side against the stand-in of Google's token endpoint and the
//! Play Developer API (storehook-stand-ins), over loopback HTTP, with a
//! fake host: the connection check, backfill (voided purchases, re-read
//! states) and acknowledgement.

mod common;

use common::*;
use serde_json::{json, Value};
use storehook_core::{
    AckOutcome, AdapterError, BackfillPage, BackfillWindow, CheckVerdict, EventType, FindingLevel,
    Outcome, PurchaseKind, Recovered, StoreAdapter, SubscriptionRef, SubscriptionStatus,
};
use storehook_stand_ins::google::{
    CONCURRENT_UPDATE, INVALID_PURCHASE_STATE, VOIDED_DOCS_EXAMPLE, VOIDED_EDX,
};
use storehook_stand_ins::host::FakeHost;

/// 2023-03-01T19:46:40Z: the recorded edx voids (2023-03-01) are within
/// Google's 30 days of it, the docs example's (2016) are not.
const NOW: i64 = 1_677_700_000_000;
const DAY: i64 = 86_400_000;
const OTHER: &str = "com.example.other";

/// The host on the tests' clock ([`NOW`]), with the notification URL.
fn fake_host() -> FakeHost {
    FakeHost::new(AUDIENCE).with_now_ms(NOW)
}

/// A `SubscriptionPurchaseV2` bought 2023-02-28T12:00:00Z.
fn purchase(state: &str, ack: &str) -> Value {
    json!({
        "kind": "androidpublisher#subscriptionPurchaseV2",
        "startTime": "2023-02-28T12:00:00.000Z",
        "regionCode": "DE",
        "subscriptionState": state,
        "acknowledgementState": ack,
        "lineItems": [{"productId": "premium_monthly", "expiryTime": "2023-03-28T12:00:00Z",
                       "autoRenewingPlan": {"autoRenewEnabled": true}}]
    })
}

const PURCHASED_AT: i64 = 1_677_585_600_000;
const ACTIVE: &str = "SUBSCRIPTION_STATE_ACTIVE";
const PENDING_ACK: &str = "ACKNOWLEDGEMENT_STATE_PENDING";
const ACKNOWLEDGED: &str = "ACKNOWLEDGEMENT_STATE_ACKNOWLEDGED";

async fn stand_in(packages: &[&str]) -> PlayStandIn {
    let play = play_stand_in(packages).await;
    play.set_now_ms(NOW);
    play
}

fn window(since: i64, until: i64) -> BackfillWindow {
    BackfillWindow {
        since_ms: since,
        until_ms: until,
        only_failures: false,
    }
}

/// Asks for pages as the host does, from `cursor` until the window is done.
async fn backfill(
    adapter: &dyn StoreAdapter,
    window: &BackfillWindow,
    mut cursor: Option<String>,
    host: &FakeHost,
) -> Vec<BackfillPage> {
    let mut pages = Vec::new();
    loop {
        let page = adapter
            .backfill_page(host.backfill(window, cursor.as_deref()))
            .await
            .unwrap_or_else(|e| panic!("page {}: {} {}", pages.len(), e.code(), e.message()));
        cursor = page.next_cursor.clone();
        pages.push(page);
        if cursor.is_none() || pages.len() > 50 {
            return pages;
        }
    }
}

fn notifications(pages: &[BackfillPage]) -> Vec<(storehook_core::VerifiedNotification, Vec<u8>)> {
    pages
        .iter()
        .flat_map(|p| &p.recovered)
        .filter_map(|r| match r {
            Recovered::Notification {
                outcome: Outcome::Notification(n),
                raw_body,
            } => Some(((**n).clone(), raw_body.clone())),
            _ => None,
        })
        .collect()
}

fn states(pages: &[BackfillPage]) -> Vec<(String, storehook_core::StateUpdate)> {
    pages
        .iter()
        .flat_map(|p| &p.recovered)
        .filter_map(|r| match r {
            Recovered::State { key, update } => Some((key.clone(), update.clone())),
            _ => None,
        })
        .collect()
}

fn finding<'a>(
    report: &'a storehook_core::CheckReport,
    title_part: &str,
) -> &'a storehook_core::Finding {
    report
        .findings
        .iter()
        .find(|f| f.title.contains(title_part))
        .unwrap_or_else(|| panic!("no finding {title_part:?} in {:#?}", report.findings))
}

// ---- capabilities ----

#[tokio::test]
async fn capabilities_follow_the_configuration() {
    let play = stand_in(&[PACKAGE]).await;
    let caps = build(&play_config(&play, &[PACKAGE], "")).api_capabilities();
    assert!(caps.check && caps.backfill && !caps.acknowledge, "{caps:?}");
    let caps = build(&play_config(&play, &[PACKAGE], "acknowledge = true")).api_capabilities();
    assert!(caps.check && caps.backfill && caps.acknowledge, "{caps:?}");
    let caps = build(&push_token_config(&[PACKAGE])).api_capabilities();
    assert_eq!(caps, storehook_core::ApiCapabilities::default());

    let report = build(&push_token_config(&[PACKAGE]))
        .check_connection(&fake_host())
        .await
        .unwrap();
    assert_eq!(report.verdict, CheckVerdict::NotConfigured);
    assert!(
        report.findings[0]
            .detail
            .contains("[stores.google.play_api]"),
        "{report:?}"
    );
}

// ---- check connection ----

#[tokio::test]
async fn check_connected() {
    let play = stand_in(&[PACKAGE, OTHER]).await;
    let adapter = build(&play_config(&play, &[PACKAGE, OTHER], ""));
    let host = fake_host();
    let report = adapter.check_connection(&host).await.unwrap();
    assert_eq!(report.verdict, CheckVerdict::Connected, "{report:#?}");
    assert_eq!(report.summary, "Connected.");
    assert_eq!(
        finding(&report, "Service-account key accepted").level,
        FindingLevel::Ok
    );
    for package in [PACKAGE, OTHER] {
        let f = finding(
            &report,
            &format!("{package}: the Play Developer API answers"),
        );
        assert_eq!(f.level, FindingLevel::Ok);
    }
    // Where Pub/Sub must push, and how to send a test notification.
    let push = finding(&report, "Where Pub/Sub must push");
    assert!(push.detail.contains(AUDIENCE), "{}", push.detail);
    assert!(push.detail.contains("?token="), "{}", push.detail);
    assert!(!push.detail.contains(PUSH_TOKEN), "{}", push.detail);
    let test = finding(&report, "Test notification");
    assert!(
        test.detail.contains("Send test notification")
            && test.detail.contains("Real-time developer notifications"),
        "{}",
        test.detail
    );
    assert!(finding(&report, "does not acknowledge")
        .detail
        .contains("within 3 days"));

    // A fresh grant, then one cheap read per package.
    assert_eq!(play.grants(), 1);
    let reads = play.served_on(Route::VoidedList);
    assert_eq!(reads.len(), 2);
    for (read, package) in reads.iter().zip([PACKAGE, OTHER]) {
        assert_eq!(read.package(), Some(package));
        assert_eq!(read.status, 200);
        assert_eq!(read.query.get("maxResults").map(String::as_str), Some("1"));
        assert_eq!(read.query.get("type").map(String::as_str), Some("1"));
    }
    assert!(play.complaints().is_empty(), "{:?}", play.complaints());
    let progress = host.progress_lines();
    assert!(
        progress[0].contains("access token") && progress[0].contains(SA_EMAIL),
        "{progress:?}"
    );
    assert_eq!(progress.len(), 3, "{progress:?}");
}

#[tokio::test]
async fn check_with_a_wrong_key_says_so() {
    let play = stand_in(&[PACKAGE]).await;
    // A key file whose private key is not the service account's.
    let (_dir, adapter) = adapter_with_unknown_key(&play, PACKAGE);
    let report = adapter.check_connection(&fake_host()).await.unwrap();
    assert_eq!(report.verdict, CheckVerdict::Problem, "{report:#?}");
    assert_eq!(report.summary, "Google refused the service account's key");
    let f = finding(&report, "refused the service account's key");
    assert_eq!(f.level, FindingLevel::Error);
    assert_eq!(f.code.as_deref(), Some("invalid_grant"));
    for words in [
        "wrong, or was deleted or revoked",
        SA_EMAIL,
        "revoked.json",
        "Create a new JSON key",
    ] {
        assert!(f.detail.contains(words), "{words:?} in {}", f.detail);
    }
    // No API call without a token, and no key in the report.
    assert!(play.served_on(Route::VoidedList).is_empty());
    let json = serde_json::to_string(&report).unwrap();
    assert!(!json.contains("PRIVATE KEY"), "{json}");
}

#[tokio::test]
async fn check_permission_denied_in_words() {
    let play = stand_in(&[PACKAGE, OTHER]).await;
    play.deny_package(OTHER);
    let adapter = build(&play_config(&play, &[PACKAGE, OTHER], ""));
    let report = adapter.check_connection(&fake_host()).await.unwrap();
    assert_eq!(report.verdict, CheckVerdict::Problem, "{report:#?}");
    assert_eq!(
        finding(
            &report,
            &format!("{PACKAGE}: the Play Developer API answers")
        )
        .level,
        FindingLevel::Ok
    );
    let f = finding(
        &report,
        &format!("{OTHER}: the service account may not read"),
    );
    assert_eq!(f.level, FindingLevel::Error);
    assert_eq!(f.code.as_deref(), Some("permissionDenied"));
    let expected = format!(
        "Invite the service account {SA_EMAIL} in Play Console (Users and permissions) with \
         'View financial data' and 'Manage orders and subscriptions'"
    );
    assert!(f.detail.contains(&expected), "{}", f.detail);
    assert!(f.detail.contains("up to 48 h"), "{}", f.detail);
    assert_eq!(report.summary, f.title);
    // The stand-in answered with the recorded permissionDenied body.
    let denied = play.served_on(Route::VoidedList);
    assert_eq!(
        denied.iter().map(|s| s.status).collect::<Vec<_>>(),
        vec![200, 401]
    );
}

#[tokio::test]
async fn check_unknown_package_and_unreachable_google() {
    let play = stand_in(&[PACKAGE]).await;
    let adapter = build(&play_config(&play, &[PACKAGE, OTHER], ""));
    let report = adapter.check_connection(&fake_host()).await.unwrap();
    let f = finding(&report, &format!("{OTHER}: unknown to this Play account"));
    assert_eq!(f.level, FindingLevel::Error);
    assert!(f.detail.contains("package_names"), "{}", f.detail);
    assert_eq!(f.code.as_deref(), Some("applicationNotFound"));
    assert_eq!(report.verdict, CheckVerdict::Problem);

    // Nothing listens: Google is unreachable, not misconfigured.
    let port = closed_port();
    let adapter = build(&format!(
        "package_names = ['{PACKAGE}']\npush_token = 'x'\n[play_api]\n\
         service_account_key_file = 'service_account.json'\nbase_url = 'http://127.0.0.1:{port}'\n\
         token_url = 'http://127.0.0.1:{port}/token'\n"
    ));
    let host = fake_host().without_notification_url();
    let report = adapter.check_connection(&host).await.unwrap();
    assert_eq!(report.verdict, CheckVerdict::Unavailable, "{report:#?}");
    finding(&report, "token endpoint could not be reached");
    assert!(finding(&report, "public URL is not set")
        .detail
        .contains("public_url"));
}

// ---- backfill: voided purchases ----

#[tokio::test]
async fn backfill_recovers_voids_with_stable_ids() {
    let play = stand_in(&[PACKAGE]).await;
    // Subscription voids (listed only with type=1), two orders of one token.
    let recorded = play.add_recorded_voided(PACKAGE, VOIDED_EDX, true);
    // Seven years old: outside what Google keeps.
    play.add_recorded_voided(PACKAGE, VOIDED_DOCS_EXAMPLE, false);
    play.set_page_size(1);
    let adapter = build(&play_config(&play, &[PACKAGE], ""));
    let host = fake_host();
    let w = window(NOW - 10 * DAY, NOW);

    let pages = backfill(adapter.as_ref(), &w, None, &host).await;
    let recovered = notifications(&pages);
    let ids: Vec<&str> = recovered
        .iter()
        .map(|(n, _)| n.notification_id.as_str())
        .collect();
    // Oldest first, keyed by the order.
    assert_eq!(ids, vec!["voided:1234", "voided:5678"]);
    for ((n, raw), entry) in recovered.iter().zip(&recorded) {
        assert_eq!(n.event_type, EventType::Refund);
        assert_eq!(n.state.status, Some(SubscriptionStatus::Revoked));
        assert_eq!(n.subscription_key.as_deref(), Some("purchase_token"));
        assert_eq!(n.app_id.as_deref(), Some(PACKAGE));
        assert_eq!(
            n.details.transaction_id.as_deref(),
            entry["orderId"].as_str()
        );
        assert_eq!(
            n.occurred_at_ms.to_string(),
            entry["voidedTimeMillis"].as_str().unwrap()
        );
        assert!(!n.state_fetch_pending);
        // The stored raw body is the voided purchase as Google listed it.
        assert_eq!(&serde_json::from_slice::<Value>(raw).unwrap(), entry);
    }
    // Two pages of voids (page size 1), then the (empty) states phase.
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert_eq!(
        pages.iter().map(|p| p.scanned).collect::<Vec<_>>(),
        vec![1, 1, 0]
    );
    let lists = play.served_on(Route::VoidedList);
    assert_eq!(lists.len(), 2);
    let first = &lists[0].query;
    assert_eq!(first.get("type").map(String::as_str), Some("1"));
    assert_eq!(first.get("maxResults").map(String::as_str), Some("1000"));
    assert_eq!(first.get("startTime"), Some(&(NOW - 10 * DAY).to_string()));
    assert_eq!(first.get("endTime"), None, "up to Google's now");
    assert_eq!(first.get("token"), None);
    assert!(lists[1].query.contains_key("token"), "{:?}", lists[1].query);
    assert!(play.complaints().is_empty(), "{:?}", play.complaints());

    // A second backfill yields the same ids: the host stores duplicates.
    let again = backfill(adapter.as_ref(), &w, None, &host).await;
    let again_ids: Vec<String> = notifications(&again)
        .into_iter()
        .map(|(n, _)| n.notification_id)
        .collect();
    assert_eq!(again_ids, ids);

    // And the RTDN Google pushes for the same void has that id too, whatever
    // its Pub/Sub message id.
    let pushed = serde_json::to_vec(&developer_notification(
        "voidedPurchaseNotification",
        json!({"purchaseToken": "purchase_token", "orderId": "1234", "productType": 1, "refundType": 1}),
    ))
    .unwrap();
    let n = expect_notification(
        adapter.as_ref(),
        &with_push_token(push_body(&pushed, Some("4242"))),
    )
    .await;
    assert_eq!(n.notification_id, "voided:1234");
    assert_eq!(
        (n.event_type, n.state.status, n.subscription_key.as_deref()),
        (
            recovered[0].0.event_type,
            recovered[0].0.state.status,
            recovered[0].0.subscription_key.as_deref()
        )
    );
}

#[tokio::test]
async fn backfill_asks_only_for_what_google_keeps() {
    let play = stand_in(&[PACKAGE, OTHER]).await;
    play.add_recorded_voided(OTHER, VOIDED_EDX, true);
    let adapter = build(&play_config(&play, &[PACKAGE, OTHER], ""));
    let host = fake_host();

    // 90 days back: Google's own 30 days (a startTime that old is refused).
    let pages = backfill(adapter.as_ref(), &window(NOW - 90 * DAY, NOW), None, &host).await;
    assert_eq!(notifications(&pages).len(), 2);
    let lists = play.served_on(Route::VoidedList);
    assert_eq!(
        lists.iter().map(|s| s.package()).collect::<Vec<_>>(),
        vec![Some(PACKAGE), Some(OTHER)]
    );
    assert!(lists
        .iter()
        .all(|s| s.status == 200 && !s.query.contains_key("startTime")));

    // A window that ended 40 days ago: nothing Google can say.
    let before = play.served_on(Route::VoidedList).len();
    let pages = backfill(
        adapter.as_ref(),
        &window(NOW - 60 * DAY, NOW - 40 * DAY),
        None,
        &host,
    )
    .await;
    assert!(notifications(&pages).is_empty());
    assert_eq!(play.served_on(Route::VoidedList).len(), before);
    assert!(host.progress_lines().iter().any(|l| l.contains("30 days")));
}

#[tokio::test]
async fn backfill_waits_out_a_rate_limit() {
    let play = stand_in(&[PACKAGE]).await;
    play.add_recorded_voided(PACKAGE, VOIDED_EDX, true);
    play.script(
        Route::VoidedList,
        429,
        json!({"error": {"code": 429, "message": "Quota exceeded", "errors": [
            {"message": "Quota exceeded", "domain": "usageLimits", "reason": "rateLimitExceeded"}]}})
        .to_string(),
    );
    let adapter = build(&play_config(&play, &[PACKAGE], ""));
    let host = fake_host();
    let w = window(NOW - DAY, NOW);
    match adapter.backfill_page(host.backfill(&w, None)).await {
        Err(AdapterError::RateLimited { retry_at_ms, .. }) => {
            assert_eq!(retry_at_ms, Some(NOW + 60_000));
        }
        other => panic!("expected a rate limit, got {other:?}"),
    }
    // The host asks again for the same page.
    let page = adapter
        .backfill_page(host.backfill(&w, None))
        .await
        .unwrap();
    assert_eq!(page.recovered.len(), 2);
}

#[tokio::test]
async fn backfill_stops_when_permission_is_denied() {
    let play = stand_in(&[PACKAGE]).await;
    play.deny_all();
    let adapter = build(&play_config(&play, &[PACKAGE], ""));
    let e = adapter
        .backfill_page(fake_host().backfill(&window(NOW - DAY, NOW), None))
        .await
        .unwrap_err();
    assert!(!e.is_transient(), "{e:?}");
    assert_eq!(e.code(), "play_api_forbidden");
    assert!(e.message().contains("permissionDenied"), "{}", e.message());
}

// ---- backfill: states ----

#[tokio::test]
async fn backfill_rereads_states_page_by_page() {
    let play = stand_in(&[PACKAGE]).await;
    let keys: Vec<String> = (0..120).map(|i| format!("tok-{i:03}.AO-J1Ox")).collect();
    for (i, key) in keys.iter().enumerate() {
        // Two tokens Google no longer knows (expired long ago).
        if i == 7 || i == 77 {
            continue;
        }
        let ack = if i % 2 == 0 {
            PENDING_ACK
        } else {
            ACKNOWLEDGED
        };
        play.set_purchase(key, purchase(ACTIVE, ack));
    }
    let adapter = build(&play_config(&play, &[PACKAGE], ""));
    let host = fake_host().tracking(keys.clone(), Some(PACKAGE));
    let w = window(NOW - DAY, NOW);

    // The voided purchases' page (none), then the first 50 states.
    let first = adapter
        .backfill_page(host.backfill(&w, None))
        .await
        .unwrap();
    assert!(first.recovered.is_empty());
    let second = adapter
        .backfill_page(host.backfill(&w, first.next_cursor.as_deref()))
        .await
        .unwrap();
    assert_eq!(second.scanned, 50);
    assert_eq!(states(std::slice::from_ref(&second)).len(), 49);
    let cursor = second.next_cursor.clone().expect("more to come");

    // A restart resumes from the stored cursor, with a new adapter.
    let restarted = build(&play_config(&play, &[PACKAGE], ""));
    let rest = backfill(restarted.as_ref(), &w, Some(cursor), &host).await;
    assert_eq!(
        rest.iter().map(|p| p.scanned).collect::<Vec<_>>(),
        vec![50, 20]
    );
    let mut all = states(std::slice::from_ref(&second));
    all.extend(states(&rest));
    let expected: Vec<&String> = keys
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 7 && *i != 77)
        .map(|(_, k)| k)
        .collect();
    assert_eq!(all.iter().map(|(k, _)| k).collect::<Vec<_>>(), expected);
    for (key, update) in &all {
        let i: usize = key[4..7].parse().unwrap();
        assert_eq!(update.state.status, Some(SubscriptionStatus::Active));
        assert_eq!(update.state.product_id.as_deref(), Some("premium_monthly"));
        assert_eq!(update.purchased_at_ms, Some(PURCHASED_AT), "{key}");
        assert_eq!(update.acknowledgement_pending, i.is_multiple_of(2), "{key}");
        assert_eq!(update.as_of_ms, NOW);
    }
    assert_eq!(
        host.listed(),
        vec![
            (None, 50),
            (Some(keys[49].clone()), 50),
            (Some(keys[99].clone()), 50),
        ]
    );
    // Every tracked token asked once, each about its own package.
    assert_eq!(play.subscription_gets().len(), 120);
    assert!(play.complaints().is_empty(), "{:?}", play.complaints());
}

#[tokio::test]
async fn a_failure_mid_page_keeps_what_was_read() {
    let play = stand_in(&[PACKAGE]).await;
    let keys: Vec<String> = (0..5).map(|i| format!("tok-{i}")).collect();
    for key in &keys {
        play.set_purchase(key, purchase(ACTIVE, ACKNOWLEDGED));
    }
    let adapter = build(&play_config(&play, &[PACKAGE], ""));
    let host = fake_host().tracking(keys.clone(), Some(PACKAGE));
    let w = window(NOW - DAY, NOW);
    let voids = adapter
        .backfill_page(host.backfill(&w, None))
        .await
        .unwrap();
    let states_cursor = voids.next_cursor.unwrap();

    // Google fails on the first read: nothing kept, the host retries the page.
    play.script(Route::SubscriptionGet, 503, "{}");
    let e = adapter
        .backfill_page(host.backfill(&w, Some(&states_cursor)))
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e:?}");

    // Google fails on the third read: the first two are kept, and the
    // next page starts at the third.
    play.script(
        Route::SubscriptionGet,
        200,
        purchase(ACTIVE, ACKNOWLEDGED).to_string(),
    );
    play.script(
        Route::SubscriptionGet,
        200,
        purchase(ACTIVE, ACKNOWLEDGED).to_string(),
    );
    play.script(Route::SubscriptionGet, 500, "{}");
    let partial = adapter
        .backfill_page(host.backfill(&w, Some(&states_cursor)))
        .await
        .unwrap();
    let read: Vec<String> = states(std::slice::from_ref(&partial))
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(read, vec!["tok-0", "tok-1"]);
    let rest = backfill(adapter.as_ref(), &w, partial.next_cursor, &host).await;
    let read: Vec<String> = states(&rest).into_iter().map(|(k, _)| k).collect();
    assert_eq!(read, vec!["tok-2", "tok-3", "tok-4"]);
}

// ---- acknowledgement ----

fn ack_config(play: &PlayStandIn) -> Box<dyn StoreAdapter> {
    build(&play_config(play, &[PACKAGE], "acknowledge = true"))
}

async fn ack(adapter: &dyn StoreAdapter, token: &str) -> Result<AckOutcome, AdapterError> {
    adapter
        .acknowledge(SubscriptionRef::new(token, Some(PACKAGE)))
        .await
}

#[tokio::test]
async fn acknowledge_once() {
    let play = stand_in(&[PACKAGE]).await;
    play.set_purchase("t1", purchase(ACTIVE, PENDING_ACK));
    let adapter = ack_config(&play);
    assert_eq!(
        ack(adapter.as_ref(), "t1").await.unwrap(),
        AckOutcome::Acknowledged
    );
    let acks = play.acknowledgements();
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(
        (
            acks[0].package.as_str(),
            acks[0].product_id.as_str(),
            acks[0].token.as_str(),
            acks[0].status
        ),
        (PACKAGE, "premium_monthly", "t1", 200)
    );
    assert_eq!(acks[0].body, json!({}));
    assert_eq!(
        play.purchase("t1").unwrap()["acknowledgementState"],
        ACKNOWLEDGED
    );

    // Asked again (a retry after a lost answer): read, not written.
    assert_eq!(
        ack(adapter.as_ref(), "t1").await.unwrap(),
        AckOutcome::AlreadyAcknowledged
    );
    assert_eq!(play.acknowledgements().len(), 1);
    assert!(play.complaints().is_empty(), "{:?}", play.complaints());
}

#[tokio::test]
async fn concurrent_updates_are_transient_then_it_succeeds() {
    let play = stand_in(&[PACKAGE]).await;
    play.set_purchase("t1", purchase(ACTIVE, PENDING_ACK));
    play.script_recorded(Route::Acknowledge, 409, CONCURRENT_UPDATE);
    play.script_recorded(Route::Acknowledge, 409, CONCURRENT_UPDATE);
    let adapter = ack_config(&play);
    for _ in 0..2 {
        let e = ack(adapter.as_ref(), "t1").await.unwrap_err();
        assert!(e.is_transient(), "{e:?}");
        assert_eq!(e.code(), "play_api_concurrent_update");
        assert!(e.message().contains("concurrentUpdate"), "{}", e.message());
    }
    assert_eq!(
        ack(adapter.as_ref(), "t1").await.unwrap(),
        AckOutcome::Acknowledged
    );
    assert_eq!(
        play.acknowledgements()
            .iter()
            .map(|a| a.status)
            .collect::<Vec<_>>(),
        vec![409, 409, 200]
    );
}

#[tokio::test]
async fn nothing_to_post_when_acknowledged_or_over() {
    let play = stand_in(&[PACKAGE]).await;
    play.set_purchase("done", purchase(ACTIVE, ACKNOWLEDGED));
    play.set_purchase(
        "expired",
        purchase("SUBSCRIPTION_STATE_EXPIRED", PENDING_ACK),
    );
    play.set_purchase(
        "unpaid",
        purchase("SUBSCRIPTION_STATE_PENDING", PENDING_ACK),
    );
    let adapter = ack_config(&play);
    assert_eq!(
        ack(adapter.as_ref(), "done").await.unwrap(),
        AckOutcome::AlreadyAcknowledged
    );
    assert_eq!(
        ack(adapter.as_ref(), "expired").await.unwrap(),
        AckOutcome::NotNeeded
    );
    assert_eq!(
        ack(adapter.as_ref(), "unpaid").await.unwrap(),
        AckOutcome::NotNeeded
    );
    assert!(play.acknowledgements().is_empty());
    assert_eq!(play.subscription_gets().len(), 3);
}

#[tokio::test]
async fn invalid_purchase_state_is_answered_by_reading_again() {
    let play = stand_in(&[PACKAGE]).await;
    // The app acknowledged it between storehook's read and its write: the
    // first read (scripted) still says pending, Google refuses the write.
    play.set_purchase("t1", purchase(ACTIVE, ACKNOWLEDGED));
    play.script(
        Route::SubscriptionGet,
        200,
        purchase(ACTIVE, PENDING_ACK).to_string(),
    );
    let adapter = ack_config(&play);
    assert_eq!(
        ack(adapter.as_ref(), "t1").await.unwrap(),
        AckOutcome::AlreadyAcknowledged
    );
    let acks = play.acknowledgements();
    assert_eq!(acks.iter().map(|a| a.status).collect::<Vec<_>>(), vec![400]);
    assert_eq!(play.subscription_gets().len(), 2, "read, write, read again");

    // Refused while the state still says pending: not something a retry fixes.
    play.set_purchase("t2", purchase(ACTIVE, PENDING_ACK));
    play.script_recorded(Route::Acknowledge, 400, INVALID_PURCHASE_STATE);
    let e = ack(adapter.as_ref(), "t2").await.unwrap_err();
    assert!(!e.is_transient(), "{e:?}");
    assert_eq!(e.code(), "play_api_invalid_purchase_state");
    assert_eq!(play.subscription_gets().len(), 4);
}

#[tokio::test]
async fn acknowledge_refusals() {
    let play = stand_in(&[PACKAGE]).await;
    play.set_purchase("t1", purchase(ACTIVE, PENDING_ACK));
    // Not enabled: the host never asks, and nothing is sent if it did.
    let off = build(&play_config(&play, &[PACKAGE], ""));
    assert!(matches!(
        ack(off.as_ref(), "t1").await,
        Err(AdapterError::Unsupported { .. })
    ));
    assert!(play.served().is_empty());

    // Without the permission: an error the operator must fix.
    play.deny_all();
    let e = ack(ack_config(&play).as_ref(), "t1").await.unwrap_err();
    assert!(!e.is_transient(), "{e:?}");
    assert_eq!(e.code(), "play_api_forbidden");
    assert!(play.acknowledgements().is_empty());
}

// ---- one-time products ----

const COINS: &str = "coins_100";

/// A `ProductPurchase` of [`COINS`] bought at [`PURCHASED_AT`], with Play's
/// integer states (`purchaseState` 0 purchased, 1 canceled, 2 pending).
fn product_purchase(purchase_state: i64, acknowledgement_state: i64) -> Value {
    json!({
        "kind": "androidpublisher#productPurchase",
        "purchaseTimeMillis": PURCHASED_AT.to_string(),
        "purchaseState": purchase_state,
        "consumptionState": 0,
        "orderId": "GPA.3341-0022-1234-56789",
        "purchaseType": 0,
        "acknowledgementState": acknowledgement_state,
        "productId": COINS,
        "quantity": 1,
        "obfuscatedExternalAccountId": "user-42",
        "regionCode": "DE"
    })
}

/// A one-time purchase of [`COINS`] as the host hands it back.
fn one_time(token: &str) -> SubscriptionRef<'_> {
    SubscriptionRef::new(token, Some(PACKAGE))
        .with_product(Some(COINS), Some(PurchaseKind::OneTime))
}

#[tokio::test]
async fn a_pushed_one_time_purchase_is_read_through_products_get() {
    let play = stand_in(&[PACKAGE]).await;
    play.set_product_purchase("otp-1", COINS, product_purchase(0, 0));
    let adapter = ack_config(&play);
    let pushed = serde_json::to_vec(&developer_notification(
        "oneTimeProductNotification",
        json!({"version": "1.0", "notificationType": 1, "purchaseToken": "otp-1", "sku": COINS}),
    ))
    .unwrap();
    let n = expect_notification(
        adapter.as_ref(),
        &with_push_token(push_body(&pushed, Some("7"))),
    )
    .await;
    assert!(n.state_fetch_pending, "the state is read back");
    assert_eq!(n.purchase_kind, Some(PurchaseKind::OneTime));
    assert_eq!(n.product_id.as_deref(), Some(COINS));

    // The host asks with what the notification said.
    let key = n.subscription_key.as_deref().unwrap();
    let reference = SubscriptionRef::new(key, n.app_id.as_deref())
        .with_product(n.product_id.as_deref(), n.purchase_kind);
    let update = adapter
        .fetch_state(reference)
        .await
        .unwrap()
        .expect("a state");
    assert!(update.acknowledgement_pending, "{update:?}");
    assert_eq!(update.purchased_at_ms, Some(PURCHASED_AT));
    assert_eq!(update.state.status, Some(SubscriptionStatus::Active));
    assert_eq!(update.state.product_id.as_deref(), Some(COINS));
    assert_eq!(update.app_user_id_hint.as_deref(), Some("user-42"));
    assert_eq!(
        play.product_gets(),
        vec![(PACKAGE.to_owned(), COINS.to_owned(), "otp-1".to_owned())]
    );
    assert!(
        play.subscription_gets().is_empty(),
        "never subscriptionsv2.get"
    );
    assert!(play.complaints().is_empty(), "{:?}", play.complaints());

    // Acknowledged, consumed, canceled or unpaid: nothing pending.
    for (state, ack, consumed) in [(0, 1, 0), (0, 0, 1), (1, 0, 0), (2, 0, 0)] {
        let mut p = product_purchase(state, ack);
        p["consumptionState"] = json!(consumed);
        play.set_product_purchase("otp-1", COINS, p);
        let update = adapter
            .fetch_state(one_time("otp-1"))
            .await
            .unwrap()
            .unwrap();
        assert!(
            !update.acknowledgement_pending,
            "{state}/{ack}/{consumed}: {update:?}"
        );
        let active = (state == 0).then_some(SubscriptionStatus::Active);
        assert_eq!(update.state.status, active, "{state}");
    }
    // Without the sku there is nothing to ask Play.
    let e = adapter
        .fetch_state(
            SubscriptionRef::new("otp-1", Some(PACKAGE))
                .with_product(None, Some(PurchaseKind::OneTime)),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "product_unknown");
}

#[tokio::test]
async fn a_one_time_purchase_is_acknowledged_once() {
    let play = stand_in(&[PACKAGE]).await;
    play.set_product_purchase("otp-1", COINS, product_purchase(0, 0));
    let adapter = ack_config(&play);
    assert_eq!(
        adapter.acknowledge(one_time("otp-1")).await.unwrap(),
        AckOutcome::Acknowledged
    );
    let acks = play.acknowledgements();
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(
        (
            acks[0].route,
            acks[0].package.as_str(),
            acks[0].product_id.as_str(),
            acks[0].token.as_str(),
            acks[0].status
        ),
        (Route::ProductAcknowledge, PACKAGE, COINS, "otp-1", 200)
    );
    assert_eq!(acks[0].body, json!({}));
    assert_eq!(
        play.product_purchase("otp-1").unwrap()["acknowledgementState"],
        1
    );
    // Asked again: read, not written.
    assert_eq!(
        adapter.acknowledge(one_time("otp-1")).await.unwrap(),
        AckOutcome::AlreadyAcknowledged
    );
    assert_eq!(play.acknowledgements().len(), 1);
    assert_eq!(play.product_gets().len(), 2);
    assert!(play.subscription_gets().is_empty());
    assert!(play.complaints().is_empty(), "{:?}", play.complaints());

    // Consumed by the app (which acknowledges it), canceled, not paid yet:
    // nothing to post.
    let mut consumed = product_purchase(0, 0);
    consumed["consumptionState"] = json!(1);
    play.set_product_purchase("consumed", COINS, consumed);
    play.set_product_purchase("canceled", COINS, product_purchase(1, 0));
    play.set_product_purchase("unpaid", COINS, product_purchase(2, 0));
    for (token, expected) in [
        ("consumed", AckOutcome::AlreadyAcknowledged),
        ("canceled", AckOutcome::NotNeeded),
        ("unpaid", AckOutcome::NotNeeded),
    ] {
        assert_eq!(
            adapter.acknowledge(one_time(token)).await.unwrap(),
            expected,
            "{token}"
        );
    }
    assert_eq!(play.acknowledgements().len(), 1);
}

#[tokio::test]
async fn a_one_time_purchase_conflict_is_retried_then_succeeds() {
    let play = stand_in(&[PACKAGE]).await;
    play.set_product_purchase("otp-1", COINS, product_purchase(0, 0));
    play.script_recorded(Route::ProductAcknowledge, 409, CONCURRENT_UPDATE);
    let adapter = ack_config(&play);
    let e = adapter.acknowledge(one_time("otp-1")).await.unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    assert_eq!(e.code(), "play_api_concurrent_update");
    assert_eq!(
        adapter.acknowledge(one_time("otp-1")).await.unwrap(),
        AckOutcome::Acknowledged
    );
    assert_eq!(
        play.acknowledgements()
            .iter()
            .map(|a| (a.route, a.status))
            .collect::<Vec<_>>(),
        vec![
            (Route::ProductAcknowledge, 409),
            (Route::ProductAcknowledge, 200)
        ]
    );
}

#[tokio::test]
async fn a_one_time_invalid_purchase_state_is_answered_by_reading_again() {
    let play = stand_in(&[PACKAGE]).await;
    // The app acknowledged it between storehook's read and its write.
    play.set_product_purchase("otp-1", COINS, product_purchase(0, 1));
    play.script(Route::ProductGet, 200, product_purchase(0, 0).to_string());
    let adapter = ack_config(&play);
    assert_eq!(
        adapter.acknowledge(one_time("otp-1")).await.unwrap(),
        AckOutcome::AlreadyAcknowledged
    );
    let acks = play.acknowledgements();
    assert_eq!(acks.iter().map(|a| a.status).collect::<Vec<_>>(), vec![400]);
    assert_eq!(play.product_gets().len(), 2, "read, write, read again");

    // Refused while the state still says pending: not something a retry fixes.
    play.set_product_purchase("otp-2", COINS, product_purchase(0, 0));
    play.script_recorded(Route::ProductAcknowledge, 400, INVALID_PURCHASE_STATE);
    let e = adapter.acknowledge(one_time("otp-2")).await.unwrap_err();
    assert!(!e.is_transient(), "{e:?}");
    assert_eq!(e.code(), "play_api_invalid_purchase_state");
    assert!(play.subscription_gets().is_empty());
}

#[tokio::test]
async fn backfill_rereads_one_time_purchases_through_products_get() {
    let play = stand_in(&[PACKAGE]).await;
    play.set_purchase("sub-1", purchase(ACTIVE, ACKNOWLEDGED));
    play.set_product_purchase("otp-1", COINS, product_purchase(0, 0));
    let adapter = build(&play_config(&play, &[PACKAGE], ""));
    let otp = storehook_core::TrackedSubscription {
        key: "otp-1".into(),
        app_id: Some(PACKAGE.into()),
        product_id: Some(COINS.into()),
        kind: Some(PurchaseKind::OneTime),
    };
    let host = fake_host()
        .tracking(["sub-1".to_owned()], Some(PACKAGE))
        .tracking_purchase(otp);
    let pages = backfill(adapter.as_ref(), &window(NOW - DAY, NOW), None, &host).await;
    let read = states(&pages);
    assert_eq!(
        read.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        vec!["otp-1", "sub-1"]
    );
    assert!(read[0].1.acknowledgement_pending);
    assert_eq!(read[0].1.state.product_id.as_deref(), Some(COINS));
    assert_eq!(play.product_gets().len(), 1);
    assert_eq!(
        play.subscription_gets(),
        vec![(PACKAGE.to_owned(), "sub-1".to_owned())]
    );
    assert!(play.complaints().is_empty(), "{:?}", play.complaints());
}
