//! From Play's wire types to storehook's normalized notification and state.

use serde_json::Value;
use storehook_core::{
    mask_secrets, Environment, EventDetails, EventType, ImpliedState, StateUpdate,
    SubscriptionStatus, VerifiedNotification,
};

use crate::config::STORE_ID;
use crate::decode::{
    rfc3339_to_ms, DecodedData, NotificationKind, PushEnvelope, SubscriptionPurchaseV2,
};

/// What one `subscriptionNotification.notificationType` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionType {
    pub name: &'static str,
    pub event_type: EventType,
    /// The status the type alone implies.
    pub status: Option<SubscriptionStatus>,
    /// The auto-renew setting the type alone implies.
    pub auto_renew: Option<bool>,
}

/// Every number the RTDN reference lists (14–16 and 21 are unassigned).
pub fn subscription_type(number: i64) -> SubscriptionType {
    use EventType as E;
    use SubscriptionStatus as S;
    let (name, event_type, status, auto_renew) = match number {
        1 => ("SUBSCRIPTION_RECOVERED", E::Renewal, Some(S::Active), None),
        2 => ("SUBSCRIPTION_RENEWED", E::Renewal, Some(S::Active), None),
        3 => ("SUBSCRIPTION_CANCELED", E::Cancellation, None, Some(false)),
        4 => (
            "SUBSCRIPTION_PURCHASED",
            E::InitialPurchase,
            Some(S::Active),
            None,
        ),
        5 => (
            "SUBSCRIPTION_ON_HOLD",
            E::BillingIssue,
            Some(S::BillingRetry),
            None,
        ),
        6 => (
            "SUBSCRIPTION_IN_GRACE_PERIOD",
            E::BillingIssue,
            Some(S::GracePeriod),
            None,
        ),
        7 => (
            "SUBSCRIPTION_RESTARTED",
            E::Uncancellation,
            Some(S::Active),
            Some(true),
        ),
        8 => (
            "SUBSCRIPTION_PRICE_CHANGE_CONFIRMED",
            E::PriceIncrease,
            None,
            None,
        ),
        9 => ("SUBSCRIPTION_DEFERRED", E::SubscriptionExtended, None, None),
        10 => (
            "SUBSCRIPTION_PAUSED",
            E::SubscriptionPaused,
            Some(S::Paused),
            None,
        ),
        11 => ("SUBSCRIPTION_PAUSE_SCHEDULE_CHANGED", E::Other, None, None),
        12 => ("SUBSCRIPTION_REVOKED", E::Revoke, Some(S::Revoked), None),
        13 => (
            "SUBSCRIPTION_EXPIRED",
            E::Expiration,
            Some(S::Expired),
            None,
        ),
        17 => ("SUBSCRIPTION_ITEMS_CHANGED", E::ProductChange, None, None),
        // Installment plans: ends at the end of the commitment.
        18 => (
            "SUBSCRIPTION_CANCELLATION_SCHEDULED",
            E::Cancellation,
            None,
            Some(false),
        ),
        19 => (
            "SUBSCRIPTION_PRICE_CHANGE_UPDATED",
            E::PriceIncrease,
            None,
            None,
        ),
        20 => (
            "SUBSCRIPTION_PENDING_PURCHASE_CANCELED",
            E::Other,
            None,
            None,
        ),
        22 => (
            "SUBSCRIPTION_PRICE_STEP_UP_CONSENT_UPDATED",
            E::PriceIncrease,
            None,
            None,
        ),
        _ => ("SUBSCRIPTION_UNKNOWN", E::Other, None, None),
    };
    SubscriptionType {
        name,
        event_type,
        status,
        auto_renew,
    }
}

fn one_time_type(number: i64) -> (&'static str, EventType) {
    match number {
        1 => ("ONE_TIME_PRODUCT_PURCHASED", EventType::NonRenewingPurchase),
        // A pending purchase was canceled: nothing was bought.
        2 => ("ONE_TIME_PRODUCT_CANCELED", EventType::Other),
        _ => ("ONE_TIME_PRODUCT_UNKNOWN", EventType::Other),
    }
}

fn product_type_name(number: Option<i64>) -> &'static str {
    match number {
        Some(1) => "PRODUCT_TYPE_SUBSCRIPTION",
        Some(2) => "PRODUCT_TYPE_ONE_TIME",
        _ => "PRODUCT_TYPE_UNSPECIFIED",
    }
}

fn refund_type_name(number: Option<i64>) -> &'static str {
    match number {
        Some(1) => "REFUND_TYPE_FULL_REFUND",
        Some(2) => "REFUND_TYPE_QUANTITY_BASED_PARTIAL_REFUND",
        _ => "REFUND_TYPE_UNSPECIFIED",
    }
}

/// The notification id: Pub/Sub's message id, stable across redeliveries;
/// without one, a digest of the data (the same message has the same data).
pub fn notification_id(envelope: &PushEnvelope) -> String {
    match &envelope.message_id {
        Some(id) => id.clone(),
        None => {
            let d = ring::digest::digest(&ring::digest::SHA256, envelope.data.as_bytes());
            format!("data-sha256-{}", hex::encode(&d.as_ref()[..16]))
        }
    }
}

/// Maps an authenticated push of a known package to the normalized
/// notification. `fetch_state` says whether the adapter will fetch the
/// subscription's full state afterwards.
pub fn verified_notification(
    envelope: &PushEnvelope,
    decoded: &DecodedData,
    kind: NotificationKind<'_>,
    fetch_state: bool,
) -> VerifiedNotification {
    let n = &decoded.notification;
    let mut out = VerifiedNotification {
        store: STORE_ID.to_string(),
        // RTDN does not say; `testPurchase` in the Play API response does.
        environment: Environment::Production,
        notification_id: notification_id(envelope),
        subscription_key: None,
        event_type: EventType::Other,
        raw_type: String::new(),
        occurred_at_ms: n.event_time_millis,
        product_id: None,
        app_id: Some(n.package_name.clone()),
        state: ImpliedState::default(),
        app_user_id_hint: None,
        continues_subscription_key: None,
        attention: None,
        state_fetch_pending: false,
        details: EventDetails::default(),
        decoded: decoded_for_display(envelope, &decoded.json),
    };

    match kind {
        NotificationKind::Subscription(s) => {
            let t = subscription_type(s.notification_type);
            out.event_type = t.event_type;
            out.raw_type = format!("{} ({})", t.name, s.notification_type);
            out.subscription_key = Some(s.purchase_token.clone());
            out.product_id = s.subscription_id.clone();
            out.state = ImpliedState {
                status: t.status,
                expires_at_ms: None,
                auto_renew: t.auto_renew,
                product_id: s.subscription_id.clone(),
            };
            // Every subscription notification is a prompt to re-read the
            // state (the RTDN carries no expiry), unknown types included.
            out.state_fetch_pending = fetch_state;
        }
        NotificationKind::OneTimeProduct(p) => {
            let (name, event_type) = one_time_type(p.notification_type);
            out.event_type = event_type;
            out.raw_type = format!("{name} ({})", p.notification_type);
            out.subscription_key = Some(p.purchase_token.clone());
            out.product_id = p.sku.clone();
            if p.notification_type == 1 {
                out.state = ImpliedState {
                    status: Some(SubscriptionStatus::Active),
                    product_id: p.sku.clone(),
                    ..ImpliedState::default()
                };
            }
        }
        NotificationKind::VoidedPurchase(v) => {
            let refund = refund_type_name(v.refund_type);
            out.event_type = EventType::Refund;
            out.raw_type = format!(
                "VOIDED_PURCHASE ({}, {refund})",
                product_type_name(v.product_type)
            );
            out.subscription_key = Some(v.purchase_token.clone());
            out.details.transaction_id = v.order_id.clone();
            out.details.cancel_reason = Some(refund.to_string());
            // The void is authoritative: subscriptionsv2 has been seen to
            // answer ACTIVE after one, so no state fetch follows it. A
            // quantity-based partial refund leaves the purchase in place.
            if v.refund_type != Some(2) {
                out.state.status = Some(SubscriptionStatus::Revoked);
            }
        }
        NotificationKind::Test(_) => {
            out.event_type = EventType::Test;
            out.raw_type = "TEST_NOTIFICATION".to_string();
        }
        NotificationKind::Other(key) => {
            out.raw_type = key.to_string();
            if key == "pendingRefundReviewNotification" {
                out.attention = Some(
                    "Google Play asks for a refund review: answer within 24 hours through the ReviewRefund API"
                        .to_string(),
                );
            }
        }
    }
    out
}

/// The envelope with `message.data` decoded and every purchase token masked.
fn decoded_for_display(envelope: &PushEnvelope, data: &Value) -> Value {
    let mut shown = envelope.body.clone();
    let mut data = data.clone();
    mask_tokens(&mut data);
    if let Some(message) = shown.get_mut("message").and_then(Value::as_object_mut) {
        message.insert("data".to_string(), data);
    }
    shown
}

/// Masks the values of token fields anywhere in `value`: a purchase token is
/// a bearer credential for the Play API.
pub fn mask_tokens(value: &mut Value) {
    const TOKEN_KEYS: [&str; 3] = ["purchaseToken", "linkedPurchaseToken", "pendingRefundToken"];
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v {
                    Value::String(s) if TOKEN_KEYS.contains(&key.as_str()) => {
                        *s = mask_secrets(s);
                    }
                    _ => mask_tokens(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_tokens),
        _ => {}
    }
}

/// Maps a `subscriptionsv2.get` response to the state update the host applies.
pub fn state_update(purchase: &SubscriptionPurchaseV2, as_of_ms: i64) -> StateUpdate {
    use SubscriptionStatus as S;
    let status = match purchase.subscription_state.as_deref() {
        Some("SUBSCRIPTION_STATE_ACTIVE") => Some(S::Active),
        // Canceled keeps access until the expiry (then Play says EXPIRED).
        Some("SUBSCRIPTION_STATE_CANCELED") => Some(S::Active),
        Some("SUBSCRIPTION_STATE_IN_GRACE_PERIOD") => Some(S::GracePeriod),
        Some("SUBSCRIPTION_STATE_ON_HOLD") => Some(S::BillingRetry),
        Some("SUBSCRIPTION_STATE_PAUSED") => Some(S::Paused),
        Some("SUBSCRIPTION_STATE_EXPIRED") => Some(S::Expired),
        Some("SUBSCRIPTION_STATE_PENDING_PURCHASE_CANCELED") => Some(S::Expired),
        // PENDING (payment not done yet), UNSPECIFIED, or a newer state.
        _ => None,
    };

    // The latest line item decides the expiry and the product.
    let latest = purchase
        .line_items
        .iter()
        .filter_map(|item| Some((rfc3339_to_ms(item.expiry_time.as_deref()?)?, item)))
        .max_by_key(|(at, _)| *at);
    let product_id = latest
        .and_then(|(_, item)| item.product_id.clone())
        .or_else(|| {
            purchase
                .line_items
                .iter()
                .find_map(|i| i.product_id.clone())
        });
    let auto_renew = (!purchase.line_items.is_empty()).then(|| {
        purchase.line_items.iter().any(|item| {
            item.auto_renewing_plan
                .as_ref()
                .and_then(|p| p.auto_renew_enabled)
                .unwrap_or(false)
        })
    });

    StateUpdate {
        state: ImpliedState {
            status,
            expires_at_ms: latest.map(|(at, _)| at),
            auto_renew,
            product_id,
        },
        as_of_ms,
        app_user_id_hint: purchase
            .external_account_identifiers
            .as_ref()
            .and_then(|ids| ids.obfuscated_external_account_id.clone()),
        continues_subscription_key: purchase.linked_purchase_token.clone(),
        acknowledgement_pending: purchase.acknowledgement_state.as_deref()
            == Some("ACKNOWLEDGEMENT_STATE_PENDING"),
        purchased_at_ms: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::parse_push_envelope;

    #[test]
    fn every_documented_subscription_type() {
        use EventType as E;
        use SubscriptionStatus as S;
        let expected = [
            (1, E::Renewal, Some(S::Active)),
            (2, E::Renewal, Some(S::Active)),
            (3, E::Cancellation, None),
            (4, E::InitialPurchase, Some(S::Active)),
            (5, E::BillingIssue, Some(S::BillingRetry)),
            (6, E::BillingIssue, Some(S::GracePeriod)),
            (7, E::Uncancellation, Some(S::Active)),
            (8, E::PriceIncrease, None),
            (9, E::SubscriptionExtended, None),
            (10, E::SubscriptionPaused, Some(S::Paused)),
            (11, E::Other, None),
            (12, E::Revoke, Some(S::Revoked)),
            (13, E::Expiration, Some(S::Expired)),
            (14, E::Other, None),
            (15, E::Other, None),
            (16, E::Other, None),
            (17, E::ProductChange, None),
            (18, E::Cancellation, None),
            (19, E::PriceIncrease, None),
            (20, E::Other, None),
            (21, E::Other, None),
            (22, E::PriceIncrease, None),
            (99, E::Other, None),
            (-1, E::Other, None),
        ];
        for (n, event, status) in expected {
            let t = subscription_type(n);
            assert_eq!((t.event_type, t.status), (event, status), "type {n}");
            let known = !matches!(n, 14..=16 | 21 | 99 | -1);
            assert_eq!(t.name != "SUBSCRIPTION_UNKNOWN", known, "type {n}");
        }
    }

    #[test]
    fn message_id_or_a_digest_of_the_data() {
        let with = parse_push_envelope(br#"{"message":{"data":"e30=","message_id":"7"}}"#).unwrap();
        assert_eq!(notification_id(&with), "7");
        let a = parse_push_envelope(br#"{"message":{"data":"e30="}}"#).unwrap();
        let b = parse_push_envelope(br#"{"message":{"data":"e30="},"subscription":"s"}"#).unwrap();
        let c = parse_push_envelope(br#"{"message":{"data":"e31="}}"#).unwrap();
        assert_eq!(notification_id(&a), notification_id(&b));
        assert_ne!(notification_id(&a), notification_id(&c));
        assert!(notification_id(&a).starts_with("data-sha256-"));
    }

    #[test]
    fn every_subscription_state() {
        use SubscriptionStatus as S;
        for (state, status) in [
            ("SUBSCRIPTION_STATE_ACTIVE", Some(S::Active)),
            ("SUBSCRIPTION_STATE_CANCELED", Some(S::Active)),
            ("SUBSCRIPTION_STATE_IN_GRACE_PERIOD", Some(S::GracePeriod)),
            ("SUBSCRIPTION_STATE_ON_HOLD", Some(S::BillingRetry)),
            ("SUBSCRIPTION_STATE_PAUSED", Some(S::Paused)),
            ("SUBSCRIPTION_STATE_EXPIRED", Some(S::Expired)),
            (
                "SUBSCRIPTION_STATE_PENDING_PURCHASE_CANCELED",
                Some(S::Expired),
            ),
            ("SUBSCRIPTION_STATE_PENDING", None),
            ("SUBSCRIPTION_STATE_UNSPECIFIED", None),
            ("SUBSCRIPTION_STATE_SOMETHING_NEW", None),
        ] {
            let purchase = SubscriptionPurchaseV2 {
                subscription_state: Some(state.to_string()),
                ..Default::default()
            };
            let update = state_update(&purchase, 5);
            assert_eq!(update.state.status, status, "{state}");
            assert_eq!(update.as_of_ms, 5);
            // No line items: nothing said about expiry, renewal or product.
            assert_eq!(update.state.expires_at_ms, None);
            assert_eq!(update.state.auto_renew, None);
        }
    }

    #[test]
    fn tokens_are_masked_anywhere() {
        let mut v = serde_json::json!({
            "subscriptionNotification": {"purchaseToken": "abcdefghijklmnop", "subscriptionId": "sub"},
            "list": [{"linkedPurchaseToken": "qrstuvwxyz012345"}],
        });
        mask_tokens(&mut v);
        let text = v.to_string();
        assert!(
            !text.contains("abcdefghijklmnop") && !text.contains("qrstuvwxyz012345"),
            "{text}"
        );
        assert!(
            text.contains("abcdef•••") && text.contains("\"sub\""),
            "{text}"
        );
    }
}
