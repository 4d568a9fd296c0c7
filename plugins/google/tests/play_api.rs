//! `fetch_state` against a local stand-in of the Play Developer API and
//! Google's token endpoint: the real client, over loopback HTTP.

mod common;

use common::*;
use serde_json::json;
use storehook_core::{
    AdapterError, StateUpdate, StoreAdapter, SubscriptionRef, SubscriptionStatus,
};

/// The adapter's fetch of the state of `token`, a purchase in `PACKAGE`.
async fn fetch(
    adapter: &dyn StoreAdapter,
    token: &str,
) -> Result<Option<StateUpdate>, AdapterError> {
    adapter
        .fetch_state(SubscriptionRef::new(token, Some(PACKAGE)))
        .await
}

fn active_with_link() -> serde_json::Value {
    json!({
        "kind": "androidpublisher#subscriptionPurchaseV2",
        "startTime": "2026-01-01T00:00:00.000Z",
        "regionCode": "DE",
        "subscriptionState": "SUBSCRIPTION_STATE_ACTIVE",
        "linkedPurchaseToken": "old-purchase-token.AO-J1Ox",
        "acknowledgementState": "ACKNOWLEDGEMENT_STATE_ACKNOWLEDGED",
        "externalAccountIdentifiers": {"obfuscatedExternalAccountId": "user-42"},
        "lineItems": [
            {"productId": "premium_monthly", "expiryTime": "2026-02-01T00:00:00Z",
             "autoRenewingPlan": {"autoRenewEnabled": true,
                                  "recurringPrice": {"currencyCode": "EUR", "units": "6", "nanos": 990000000}}},
            {"productId": "addon_storage", "expiryTime": "2026-01-15T00:00:00.5Z",
             "autoRenewingPlan": {"autoRenewEnabled": false}}
        ]
    })
}

#[tokio::test]
async fn a_failing_fetch_then_success() {
    let play = play_stand_in(&[PACKAGE]).await;
    play.script(
        Route::SubscriptionGet,
        503,
        json!({"error": {"code": 503, "message": "backend error"}}).to_string(),
    );
    play.set_purchase("new-purchase-token.AO-J1Ox", active_with_link());
    let adapter = build(&play_config(&play, &[PACKAGE], ""));

    let e = fetch(adapter.as_ref(), "new-purchase-token.AO-J1Ox")
        .await
        .unwrap_err();
    assert_eq!(
        (e.http_status(), e.code()),
        (503, "play_api_unavailable"),
        "{}",
        e.message()
    );

    let update = fetch(adapter.as_ref(), "new-purchase-token.AO-J1Ox")
        .await
        .unwrap()
        .expect("state");
    assert_eq!(update.state.status, Some(SubscriptionStatus::Active));
    // The latest line item decides expiry and product; any item renewing
    // means auto-renew is on.
    assert_eq!(update.state.expires_at_ms, Some(1_769_904_000_000));
    assert_eq!(update.state.product_id.as_deref(), Some("premium_monthly"));
    assert_eq!(update.state.auto_renew, Some(true));
    assert_eq!(
        update.continues_subscription_key.as_deref(),
        Some("old-purchase-token.AO-J1Ox")
    );
    assert_eq!(update.app_user_id_hint.as_deref(), Some("user-42"));
    // startTime, for the host's count of hours left unacknowledged.
    assert_eq!(update.purchased_at_ms, Some(1_767_225_600_000));
    assert!(!update.acknowledgement_pending);

    assert!(play.complaints().is_empty(), "{:?}", play.complaints());
    assert_eq!(play.grants(), 1, "one access token for both calls");
    let call = (
        PACKAGE.to_string(),
        "new-purchase-token.AO-J1Ox".to_string(),
    );
    assert_eq!(play.subscription_gets(), vec![call.clone(), call]);
}

#[tokio::test]
async fn subscription_notifications_ask_for_the_fetch() {
    let play = play_stand_in(&[PACKAGE]).await;
    let adapter = build(&play_config(&play, &[PACKAGE], ""));
    let req = with_push_token(push_body(&subscription_data(4), Some("f1")));
    let n = expect_notification(adapter.as_ref(), &req).await;
    assert!(n.state_fetch_pending);
    assert!(play.served().is_empty(), "never during the push");
}

#[tokio::test]
async fn api_refusals_are_typed() {
    let play = play_stand_in(&[PACKAGE]).await;
    let adapter = build(&play_config(&play, &[PACKAGE], ""));
    for (answer, status, code) in [
        (
            Some((403, json!({"error": {"code": 403}}))),
            401,
            "play_api_forbidden",
        ),
        (None, 400, "purchase_token_not_found"),
        (
            Some((410, json!({"error": {"code": 410}}))),
            400,
            "purchase_token_not_found",
        ),
        (
            Some((400, json!({"error": {"code": 400}}))),
            400,
            "play_api_rejected",
        ),
        (
            Some((429, json!({"error": {"code": 429}}))),
            503,
            "play_api_rate_limited",
        ),
        (
            Some((200, json!(["not", "an", "object"]))),
            400,
            "play_api_bad_response",
        ),
    ] {
        if let Some((answer_status, body)) = &answer {
            play.script(Route::SubscriptionGet, *answer_status, body.to_string());
        }
        let e = fetch(adapter.as_ref(), "unknown-token").await.unwrap_err();
        assert_eq!(
            (e.http_status(), e.code()),
            (status, code),
            "{answer:?}: {}",
            e.message()
        );
    }
}

#[tokio::test]
async fn a_revoked_access_token_is_replaced() {
    let play = play_stand_in(&[PACKAGE]).await;
    play.set_purchase("t1", active_with_link());
    let adapter = build(&play_config(&play, &[PACKAGE], ""));
    fetch(adapter.as_ref(), "t1").await.unwrap();
    // The stand-in forgets the token it issued: the API answers 401.
    play.revoke_access_tokens();
    let e = fetch(adapter.as_ref(), "t1").await.unwrap_err();
    assert_eq!(e.code(), "play_api_forbidden");
    // The next attempt mints a new access token and succeeds.
    fetch(adapter.as_ref(), "t1").await.unwrap().expect("state");
    assert_eq!(play.grants(), 2);
}

#[tokio::test]
async fn rejected_credentials() {
    let play = play_stand_in(&[PACKAGE]).await;
    // A key file signed with a key the token endpoint does not know.
    let (_dir, adapter) = adapter_with_unknown_key(&play, PACKAGE);
    let e = fetch(adapter.as_ref(), "t1").await.unwrap_err();
    assert_eq!(
        (e.http_status(), e.code()),
        (401, "play_api_credentials_rejected")
    );
    assert!(e.message().contains("invalid_grant"), "{}", e.message());
    assert!(!e.message().contains("PRIVATE KEY"));
    assert_eq!(
        play.complaints(),
        vec!["token endpoint: invalid_grant: Invalid JWT Signature.".to_owned()]
    );
    assert_eq!(play.grants(), 0);
    assert!(play.served_on(Route::SubscriptionGet).is_empty());
}

#[tokio::test]
async fn unreachable_api_is_retryable() {
    let port = closed_port();
    let adapter = build(&format!(
        "package_names = ['{PACKAGE}']\npush_token = 'x'\n[play_api]\n\
         service_account_key_file = 'service_account.json'\nbase_url = 'http://127.0.0.1:{port}'\n\
         token_url = 'http://127.0.0.1:{port}/token'\n"
    ));
    let e = fetch(adapter.as_ref(), "t1").await.unwrap_err();
    assert_eq!((e.http_status(), e.code()), (503, "play_api_unavailable"));
}

#[tokio::test]
async fn without_play_api_there_is_nothing_to_fetch() {
    let adapter = build(&push_token_config(&[PACKAGE]));
    assert_eq!(fetch(adapter.as_ref(), "t1").await.unwrap(), None);
    let req = with_push_token(push_body(&subscription_data(4), Some("f1")));
    assert!(
        !expect_notification(adapter.as_ref(), &req)
            .await
            .state_fetch_pending
    );
}

#[tokio::test]
async fn play_api_config_errors() {
    let err = try_build(
        "package_names = ['a']\npush_token = 'x'\n[play_api]\nservice_account_key_file = 'jwks_key_1.json'\n",
    )
    .err()
    .expect("refused");
    assert!(err.0.contains("service_account_key_file"), "{err}");
    let err = try_build(
        "package_names = ['a']\npush_token = 'x'\n[play_api]\nservice_account_key_file = 'service_account.json'\nbase_url = 'nope'\n",
    )
    .err()
    .expect("refused");
    assert!(err.0.contains("base_url"), "{err}");
}

/// Several apps under one Play account: each fetch asks about the package
/// its notification named; a package that is not configured, or an unknown
/// one with several configured, is refused without calling the API.
#[tokio::test]
async fn each_package_is_asked_about_its_own_subscriptions() {
    let play = play_stand_in(&["com.example.a", "com.example.b"]).await;
    play.set_purchase("token-a", active_with_link());
    play.set_purchase("token-b", active_with_link());
    let adapter = build(&play_config(&play, &["com.example.a", "com.example.b"], ""));
    for (token, package) in [("token-a", "com.example.a"), ("token-b", "com.example.b")] {
        adapter
            .fetch_state(SubscriptionRef::new(token, Some(package)))
            .await
            .unwrap_or_else(|e| panic!("{token}: {} {}", e.code(), e.message()))
            .expect("state");
    }
    for app in [Some("com.other.app"), None] {
        let e = adapter
            .fetch_state(SubscriptionRef::new("token-a", app))
            .await
            .unwrap_err();
        assert_eq!(
            (e.http_status(), e.code()),
            (400, "unknown_package"),
            "{app:?}"
        );
    }
    assert_eq!(
        play.subscription_gets(),
        vec![
            ("com.example.a".to_owned(), "token-a".to_owned()),
            ("com.example.b".to_owned(), "token-b".to_owned()),
        ]
    );
    assert!(play.complaints().is_empty(), "{:?}", play.complaints());
}

/// A row stored without its package, with one package configured: that one.
#[tokio::test]
async fn without_a_package_the_only_configured_one_is_used() {
    let play = play_stand_in(&[PACKAGE]).await;
    play.set_purchase("t1", active_with_link());
    let adapter = build(&play_config(&play, &[PACKAGE], ""));
    adapter
        .fetch_state(SubscriptionRef::new("t1", None))
        .await
        .unwrap()
        .expect("state");
    assert_eq!(
        play.subscription_gets(),
        vec![(PACKAGE.to_owned(), "t1".to_owned())]
    );
}
