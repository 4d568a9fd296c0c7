//! Envelope and notification handling through the adapter: every
//! subscription type number, one-time, voided and test notifications,
//! package mismatch, malformed data, and what is refused with 400.

mod common;

use common::*;
use serde_json::json;
use storehook_core::{EventType, IncomingRequest, StoreAdapter, SubscriptionStatus};

fn adapter() -> Box<dyn StoreAdapter> {
    build(&push_token_config(&[PACKAGE]))
}

#[tokio::test]
async fn every_subscription_type_number() {
    use EventType as E;
    use SubscriptionStatus as S;
    let adapter = adapter();
    // Each type's name, without the `SUBSCRIPTION_` every one starts with.
    let cases = [
        (1, E::Renewal, Some(S::Active), "RECOVERED"),
        (2, E::Renewal, Some(S::Active), "RENEWED"),
        (3, E::Cancellation, None, "CANCELED"),
        (4, E::InitialPurchase, Some(S::Active), "PURCHASED"),
        (5, E::BillingIssue, Some(S::BillingRetry), "ON_HOLD"),
        (6, E::BillingIssue, Some(S::GracePeriod), "IN_GRACE_PERIOD"),
        (7, E::Uncancellation, Some(S::Active), "RESTARTED"),
        (8, E::PriceIncrease, None, "PRICE_CHANGE_CONFIRMED"),
        (9, E::SubscriptionExtended, None, "DEFERRED"),
        (10, E::SubscriptionPaused, Some(S::Paused), "PAUSED"),
        (11, E::Other, None, "PAUSE_SCHEDULE_CHANGED"),
        (12, E::Revoke, Some(S::Revoked), "REVOKED"),
        (13, E::Expiration, Some(S::Expired), "EXPIRED"),
        (14, E::Other, None, "UNKNOWN"),
        (15, E::Other, None, "UNKNOWN"),
        (16, E::Other, None, "UNKNOWN"),
        (17, E::ProductChange, None, "ITEMS_CHANGED"),
        (18, E::Cancellation, None, "CANCELLATION_SCHEDULED"),
        (19, E::PriceIncrease, None, "PRICE_CHANGE_UPDATED"),
        (20, E::Other, None, "PENDING_PURCHASE_CANCELED"),
        (21, E::Other, None, "UNKNOWN"),
        (22, E::PriceIncrease, None, "PRICE_STEP_UP_CONSENT_UPDATED"),
        (99, E::Other, None, "UNKNOWN"),
    ];
    for (number, event, status, name) in cases {
        let id = format!("msg-{number}");
        let req = with_push_token(push_body(&subscription_data(number), Some(&id)));
        let n = expect_notification(adapter.as_ref(), &req).await;
        assert_eq!(n.store, "google");
        assert_eq!(n.notification_id, id);
        assert_eq!(n.event_type, event, "type {number}");
        assert_eq!(n.state.status, status, "type {number}");
        assert_eq!(n.raw_type, format!("SUBSCRIPTION_{name} ({number})"));
        assert_eq!(
            n.subscription_key.as_deref(),
            Some("test-purchase-token.AO-J1Ox")
        );
        assert_eq!(n.product_id.as_deref(), Some("premium_monthly"));
        assert_eq!(n.app_id.as_deref(), Some(PACKAGE));
        assert_eq!(n.occurred_at_ms, 1_767_225_660_000);
        assert_eq!(n.continues_subscription_key, None);
        assert!(!n.state_fetch_pending, "no play_api configured");
        let auto_renew = match number {
            3 | 18 => Some(false),
            7 => Some(true),
            _ => None,
        };
        assert_eq!(n.state.auto_renew, auto_renew, "type {number}");
    }
}

#[tokio::test]
async fn decoded_shows_the_envelope_with_masked_tokens() {
    let adapter = adapter();
    let req = with_push_token(push_body(&subscription_data(2), Some("m1")));
    let n = expect_notification(adapter.as_ref(), &req).await;
    let data = &n.decoded["message"]["data"];
    assert_eq!(data["subscriptionNotification"]["notificationType"], 2);
    assert_eq!(
        data["subscriptionNotification"]["purchaseToken"],
        "test-p•••"
    );
    assert_eq!(n.decoded["message"]["messageId"], "m1");
    assert_eq!(n.decoded["subscription"], "projects/p/subscriptions/s");
    assert!(!n.decoded.to_string().contains("test-purchase-token"));
}

#[tokio::test]
async fn one_time_product_notifications() {
    let adapter = adapter();
    for (number, event, raw) in [
        (
            1,
            EventType::NonRenewingPurchase,
            "ONE_TIME_PRODUCT_PURCHASED (1)",
        ),
        (2, EventType::Other, "ONE_TIME_PRODUCT_CANCELED (2)"),
        (3, EventType::Other, "ONE_TIME_PRODUCT_UNKNOWN (3)"),
    ] {
        let data = developer_notification(
            "oneTimeProductNotification",
            json!({"version": "1.0", "notificationType": number, "purchaseToken": "otp-token-0001", "sku": "coins_100"}),
        );
        let req = with_push_token(push_body(data.to_string().as_bytes(), Some("o1")));
        let n = expect_notification(adapter.as_ref(), &req).await;
        assert_eq!((n.event_type, n.raw_type.as_str()), (event, raw));
        assert_eq!(n.subscription_key.as_deref(), Some("otp-token-0001"));
        assert_eq!(n.product_id.as_deref(), Some("coins_100"));
        assert!(!n.state_fetch_pending);
    }
}

#[tokio::test]
async fn voided_purchases_are_refunds_keyed_by_token() {
    let adapter = adapter();
    for (product_type, refund_type, status, raw) in [
        (
            1,
            1,
            Some(SubscriptionStatus::Revoked),
            "VOIDED_PURCHASE (PRODUCT_TYPE_SUBSCRIPTION, REFUND_TYPE_FULL_REFUND)",
        ),
        (
            2,
            1,
            Some(SubscriptionStatus::Revoked),
            "VOIDED_PURCHASE (PRODUCT_TYPE_ONE_TIME, REFUND_TYPE_FULL_REFUND)",
        ),
        (
            2,
            2,
            None,
            "VOIDED_PURCHASE (PRODUCT_TYPE_ONE_TIME, REFUND_TYPE_QUANTITY_BASED_PARTIAL_REFUND)",
        ),
    ] {
        let data = developer_notification(
            "voidedPurchaseNotification",
            json!({"purchaseToken": "voided-token-0001", "orderId": "GPA.1234-5678-9012-34567",
                   "productType": product_type, "refundType": refund_type}),
        );
        let req = with_push_token(push_body(data.to_string().as_bytes(), Some("v1")));
        let n = expect_notification(adapter.as_ref(), &req).await;
        assert_eq!(n.event_type, EventType::Refund);
        assert_eq!(n.raw_type, raw);
        assert_eq!(n.subscription_key.as_deref(), Some("voided-token-0001"));
        assert_eq!(
            n.details.transaction_id.as_deref(),
            Some("GPA.1234-5678-9012-34567")
        );
        let refund = if refund_type == 1 {
            "REFUND_TYPE_FULL_REFUND"
        } else {
            "REFUND_TYPE_QUANTITY_BASED_PARTIAL_REFUND"
        };
        assert_eq!(n.details.cancel_reason.as_deref(), Some(refund));
        assert_eq!(n.state.status, status);
        assert_eq!(
            n.decoded["message"]["data"]["voidedPurchaseNotification"]["refundType"],
            refund_type
        );
    }
}

#[tokio::test]
async fn test_notification_has_no_subscription() {
    let adapter = adapter();
    let data = developer_notification("testNotification", json!({"version": "1.0"}));
    let req = with_push_token(push_body(data.to_string().as_bytes(), Some("t1")));
    let n = expect_notification(adapter.as_ref(), &req).await;
    assert_eq!(n.event_type, EventType::Test);
    assert_eq!(n.subscription_key, None);
    assert!(n.state.is_empty());
    assert!(!n.state_fetch_pending);
}

#[tokio::test]
async fn a_newer_notification_kind_is_kept_as_other() {
    let adapter = adapter();
    let data = developer_notification(
        "pendingRefundReviewNotification",
        json!({"version": "1.0", "pendingRefundToken": "pending-refund-token-1", "orderId": "GPA.1"}),
    );
    let req = with_push_token(push_body(data.to_string().as_bytes(), Some("p1")));
    let n = expect_notification(adapter.as_ref(), &req).await;
    assert_eq!(n.event_type, EventType::Other);
    assert_eq!(n.raw_type, "pendingRefundReviewNotification");
    assert!(n.attention.is_some());
    assert!(!n.decoded.to_string().contains("pending-refund-token-1"));
}

#[tokio::test]
async fn wrong_package_is_acknowledged_and_rejected() {
    let adapter = build(&push_token_config(&[
        "com.example.other",
        "com.example.third",
    ]));
    let req = with_push_token(push_body(&subscription_data(4), Some("w1")));
    let id = expect_ack_rejection(adapter.as_ref(), &req, "wrong_package").await;
    assert_eq!(id.as_deref(), Some("w1"));
    // Several packages: each is accepted.
    let adapter = build(&push_token_config(&["com.example.other", PACKAGE]));
    expect_notification(adapter.as_ref(), &req).await;
}

#[tokio::test]
async fn malformed_data_is_acknowledged_and_rejected() {
    let adapter = adapter();
    let cases: Vec<(&str, String)> = vec![
        ("not base64", "%%%not base64%%%".to_string()),
        ("not JSON", b64(b"fsdfsdfsd")),
        ("JSON array", b64(b"[1,2]")),
        ("no packageName", b64(br#"{"eventTimeMillis":"1","testNotification":{}}"#)),
        ("no eventTimeMillis", b64(br#"{"packageName":"com.example.subscriptions","testNotification":{}}"#)),
        ("no notification", b64(br#"{"packageName":"com.example.subscriptions","eventTimeMillis":"1"}"#)),
        (
            "two notifications",
            b64(br#"{"packageName":"com.example.subscriptions","eventTimeMillis":"1","testNotification":{},"oneTimeProductNotification":{"notificationType":1,"purchaseToken":"t"}}"#),
        ),
        (
            "subscription without purchaseToken",
            b64(br#"{"packageName":"com.example.subscriptions","eventTimeMillis":"1","subscriptionNotification":{"notificationType":4}}"#),
        ),
        (
            "subscription without notificationType",
            b64(br#"{"packageName":"com.example.subscriptions","eventTimeMillis":"1","subscriptionNotification":{"purchaseToken":"t"}}"#),
        ),
        ("empty data", String::new()),
    ];
    for (label, data) in cases {
        let body =
            serde_json::to_vec(&json!({"message": {"data": data, "messageId": "x1"}})).unwrap();
        let id =
            expect_ack_rejection(adapter.as_ref(), &with_push_token(body), "malformed_data").await;
        assert_eq!(id.as_deref(), Some("x1"), "{label}");
    }
}

#[tokio::test]
async fn what_is_not_a_push_is_400() {
    let adapter = adapter();
    for body in [
        &b""[..],
        b"not json",
        b"{}",
        b"[]",
        br#"{"message":null}"#,
        br#"{"message":{"messageId":"1"}}"#,
        br#"{"message":{"data":12}}"#,
        br#"{"subscription":"projects/p/subscriptions/s"}"#,
    ] {
        let req = with_push_token(body.to_vec());
        expect_error(adapter.as_ref(), &req, 400, "not_a_push_envelope").await;
    }
    // Authentication comes first: a forged garbage body is 401, not 400.
    expect_error(
        adapter.as_ref(),
        &IncomingRequest::new(b"{}".to_vec(), NOW_MS),
        401,
        "missing_push_token",
    )
    .await;
}

#[tokio::test]
async fn message_id_spellings_and_derived_ids() {
    let adapter = adapter();
    let data = b64(&subscription_data(2));
    let snake =
        serde_json::to_vec(&json!({"message": {"data": data, "message_id": "snake-1"}})).unwrap();
    let n = expect_notification(adapter.as_ref(), &with_push_token(snake)).await;
    assert_eq!(n.notification_id, "snake-1");

    let bare = serde_json::to_vec(&json!({"message": {"data": data}})).unwrap();
    let first = expect_notification(adapter.as_ref(), &with_push_token(bare.clone())).await;
    let again = expect_notification(adapter.as_ref(), &with_push_token(bare)).await;
    assert_eq!(
        first.notification_id, again.notification_id,
        "stable across redeliveries"
    );
    assert!(first.notification_id.starts_with("data-sha256-"));
    let other =
        serde_json::to_vec(&json!({"message": {"data": b64(&subscription_data(3))}})).unwrap();
    let other = expect_notification(adapter.as_ref(), &with_push_token(other)).await;
    assert_ne!(first.notification_id, other.notification_id);
}

#[tokio::test]
async fn event_time_as_number_and_url_safe_data() {
    let adapter = adapter();
    let mut n = developer_notification("testNotification", json!({}));
    n["eventTimeMillis"] = json!(1_767_225_660_123_i64);
    let data = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        n.to_string(),
    );
    let body = serde_json::to_vec(&json!({"message": {"data": data, "messageId": "u1"}})).unwrap();
    let got = expect_notification(adapter.as_ref(), &with_push_token(body)).await;
    assert_eq!(got.occurred_at_ms, 1_767_225_660_123);
}
