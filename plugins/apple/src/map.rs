//! From Apple's decoded notification to storehook's normalized one.

use serde_json::{Map, Value};
use storehook_core::{
    Environment, EventDetails, EventType, ImpliedState, SubscriptionStatus, VerifiedNotification,
};

use crate::config::{AppleEnvironment, STORE_ID};
use crate::decode::{NotificationPayload, RenewalInfo, TransactionInfo};

/// A verified notification with its verified nested payloads.
pub struct DecodedNotification<'a> {
    pub payload: &'a NotificationPayload,
    pub transaction: Option<&'a TransactionInfo>,
    pub renewal: Option<&'a RenewalInfo>,
    pub environment: AppleEnvironment,
    pub bundle_id: &'a str,
    /// Used when the payload has no notificationUUID (never seen from Apple).
    pub fallback_notification_id: String,
    /// Used when the payload has no signedDate (old 2022 payloads).
    pub received_at_ms: i64,
    /// The decoded payload with its nested JWS replaced by their payloads.
    pub decoded: Map<String, Value>,
}

/// The normalized event for a notification type and subtype.
pub fn event_type(notification_type: Option<&str>, subtype: Option<&str>) -> EventType {
    match (notification_type.unwrap_or(""), subtype) {
        ("SUBSCRIBED", Some("INITIAL_BUY")) => EventType::InitialPurchase,
        ("SUBSCRIBED", Some("RESUBSCRIBE")) => EventType::Renewal,
        ("DID_RENEW", None | Some("BILLING_RECOVERY")) => EventType::Renewal,
        ("DID_CHANGE_RENEWAL_STATUS", Some("AUTO_RENEW_DISABLED")) => EventType::Cancellation,
        ("DID_CHANGE_RENEWAL_STATUS", Some("AUTO_RENEW_ENABLED")) => EventType::Uncancellation,
        ("DID_CHANGE_RENEWAL_PREF", None | Some("UPGRADE" | "DOWNGRADE")) => {
            EventType::ProductChange
        }
        ("OFFER_REDEEMED", Some("UPGRADE" | "DOWNGRADE")) => EventType::ProductChange,
        ("EXPIRED", _) => EventType::Expiration,
        ("DID_FAIL_TO_RENEW", _) => EventType::BillingIssue,
        ("GRACE_PERIOD_EXPIRED", _) => EventType::GracePeriodExpired,
        ("PRICE_INCREASE", _) => EventType::PriceIncrease,
        ("REFUND", _) => EventType::Refund,
        ("REFUND_REVERSED", _) => EventType::RefundReversed,
        ("REVOKE", _) => EventType::Revoke,
        ("RENEWAL_EXTENDED", _) => EventType::SubscriptionExtended,
        ("ONE_TIME_CHARGE", _) => EventType::NonRenewingPurchase,
        ("TEST", _) => EventType::Test,
        _ => EventType::Other,
    }
}

/// `TYPE` or `TYPE/SUBTYPE`, as Apple wrote them.
pub fn raw_type(notification_type: Option<&str>, subtype: Option<&str>) -> String {
    let t = notification_type
        .filter(|t| !t.is_empty())
        .unwrap_or("UNKNOWN");
    match subtype.filter(|s| !s.is_empty()) {
        Some(s) => format!("{t}/{s}"),
        None => t.to_owned(),
    }
}

/// `data.status`.
pub fn status(code: i64) -> Option<SubscriptionStatus> {
    match code {
        1 => Some(SubscriptionStatus::Active),
        2 => Some(SubscriptionStatus::Expired),
        3 => Some(SubscriptionStatus::BillingRetry),
        4 => Some(SubscriptionStatus::GracePeriod),
        5 => Some(SubscriptionStatus::Revoked),
        _ => None,
    }
}

fn revocation_reason(code: i64) -> String {
    match code {
        0 => "REFUNDED_FOR_OTHER_REASON".into(),
        1 => "REFUNDED_DUE_TO_ISSUE".into(),
        other => other.to_string(),
    }
}

fn expiration_intent(code: i64) -> String {
    match code {
        1 => "CUSTOMER_CANCELLED".into(),
        2 => "BILLING_ERROR".into(),
        3 => "CUSTOMER_DID_NOT_CONSENT_TO_PRICE_INCREASE".into(),
        4 => "PRODUCT_NOT_AVAILABLE".into(),
        5 => "OTHER".into(),
        other => other.to_string(),
    }
}

/// Types whose transaction is the purchase refunded or disputed, not
/// necessarily the subscription's latest.
fn about_a_past_purchase(notification_type: Option<&str>) -> bool {
    matches!(
        notification_type,
        Some("REFUND" | "REFUND_DECLINED" | "REFUND_REVERSED" | "CONSUMPTION_REQUEST")
    )
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(str::to_owned)
}

pub fn to_verified_notification(n: DecodedNotification<'_>) -> VerifiedNotification {
    let p = n.payload;
    let notification_type = p.notification_type();
    let subtype = p.subtype();
    let event_type = event_type(notification_type, subtype);
    let tx = n.transaction;
    let renewal = n.renewal;
    let data = p.data.as_ref();

    let subscription_key = non_empty(tx.and_then(TransactionInfo::original_transaction_id))
        .or_else(|| non_empty(renewal.and_then(RenewalInfo::original_transaction_id)));
    let product_id = non_empty(tx.and_then(TransactionInfo::product_id))
        .or_else(|| non_empty(renewal.and_then(RenewalInfo::product_id)))
        .or_else(|| {
            non_empty(
                p.summary
                    .as_ref()
                    .and_then(|s| s.product_id.as_ref())
                    .map(|t| t.0.as_str()),
            )
        });
    // A refund or consumption request is about one past purchase, whose
    // expiry and product say nothing about the subscription now (real-10:
    // the refunded period ended days before the active one); the renewal
    // info still describes the current period.
    let (expires_at_ms, state_product) = if about_a_past_purchase(notification_type) {
        (
            renewal.and_then(RenewalInfo::renewal_date),
            non_empty(renewal.and_then(RenewalInfo::product_id)),
        )
    } else {
        (
            tx.and_then(TransactionInfo::expires_date),
            non_empty(tx.and_then(TransactionInfo::product_id)),
        )
    };
    let state = ImpliedState {
        status: data.and_then(|d| d.status()).and_then(status),
        expires_at_ms,
        auto_renew: renewal
            .and_then(RenewalInfo::auto_renew_status)
            .and_then(|s| match s {
                0 => Some(false),
                1 => Some(true),
                _ => None,
            }),
        product_id: state_product,
    };

    let expiration_reason = if event_type == EventType::Expiration && subtype.is_some() {
        non_empty(subtype)
    } else {
        renewal
            .and_then(RenewalInfo::expiration_intent)
            .map(expiration_intent)
    };
    let details = EventDetails {
        transaction_id: non_empty(tx.and_then(TransactionInfo::transaction_id)),
        original_transaction_id: non_empty(tx.and_then(TransactionInfo::original_transaction_id)),
        purchased_at_ms: tx.and_then(TransactionInfo::purchase_date),
        cancel_reason: tx
            .and_then(TransactionInfo::revocation_reason)
            .map(revocation_reason),
        expiration_reason,
        price: tx
            .and_then(TransactionInfo::price)
            .map(|m| m as f64 / 1000.0),
        currency: non_empty(tx.and_then(TransactionInfo::currency)),
        is_trial: tx.and_then(TransactionInfo::is_free_trial),
        grace_period_expires_at_ms: renewal.and_then(RenewalInfo::grace_period_expires_date),
    };

    let attention = (notification_type == Some("CONSUMPTION_REQUEST")).then(|| {
        let reason = data
            .and_then(|d| d.consumption_request_reason())
            .map(|r| format!(" (reason: {r})"))
            .unwrap_or_default();
        format!(
            "Apple asks for consumption information about transaction {}{reason}: answer with the App Store Server API's Send Consumption Information within 12 hours, or Apple decides the refund without it",
            details.transaction_id.as_deref().unwrap_or("(unknown)")
        )
    });

    VerifiedNotification {
        store: STORE_ID.to_owned(),
        environment: match n.environment {
            AppleEnvironment::Production => Environment::Production,
            AppleEnvironment::Sandbox => Environment::Sandbox,
        },
        notification_id: non_empty(p.notification_uuid()).unwrap_or(n.fallback_notification_id),
        subscription_key,
        event_type,
        raw_type: raw_type(notification_type, subtype),
        occurred_at_ms: p.signed_date().unwrap_or(n.received_at_ms),
        product_id,
        purchase_kind: None,
        app_id: Some(n.bundle_id.to_owned()),
        state,
        app_user_id_hint: non_empty(tx.and_then(TransactionInfo::app_account_token))
            .or_else(|| non_empty(renewal.and_then(RenewalInfo::app_account_token))),
        continues_subscription_key: None,
        attention,
        state_fetch_pending: false,
        details,
        decoded: Value::Object(n.decoded),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_follow_the_table() {
        let cases = [
            (
                "SUBSCRIBED",
                Some("INITIAL_BUY"),
                EventType::InitialPurchase,
            ),
            ("SUBSCRIBED", Some("RESUBSCRIBE"), EventType::Renewal),
            ("DID_RENEW", None, EventType::Renewal),
            ("DID_RENEW", Some("BILLING_RECOVERY"), EventType::Renewal),
            (
                "DID_CHANGE_RENEWAL_STATUS",
                Some("AUTO_RENEW_DISABLED"),
                EventType::Cancellation,
            ),
            (
                "DID_CHANGE_RENEWAL_STATUS",
                Some("AUTO_RENEW_ENABLED"),
                EventType::Uncancellation,
            ),
            (
                "DID_CHANGE_RENEWAL_PREF",
                Some("UPGRADE"),
                EventType::ProductChange,
            ),
            (
                "DID_CHANGE_RENEWAL_PREF",
                Some("DOWNGRADE"),
                EventType::ProductChange,
            ),
            ("DID_CHANGE_RENEWAL_PREF", None, EventType::ProductChange),
            ("OFFER_REDEEMED", Some("UPGRADE"), EventType::ProductChange),
            (
                "OFFER_REDEEMED",
                Some("DOWNGRADE"),
                EventType::ProductChange,
            ),
            ("OFFER_REDEEMED", Some("INITIAL_BUY"), EventType::Other),
            ("EXPIRED", Some("VOLUNTARY"), EventType::Expiration),
            ("EXPIRED", None, EventType::Expiration),
            (
                "DID_FAIL_TO_RENEW",
                Some("GRACE_PERIOD"),
                EventType::BillingIssue,
            ),
            ("DID_FAIL_TO_RENEW", None, EventType::BillingIssue),
            ("GRACE_PERIOD_EXPIRED", None, EventType::GracePeriodExpired),
            ("PRICE_INCREASE", Some("PENDING"), EventType::PriceIncrease),
            ("REFUND", None, EventType::Refund),
            ("REFUND_REVERSED", None, EventType::RefundReversed),
            ("REVOKE", None, EventType::Revoke),
            ("RENEWAL_EXTENDED", None, EventType::SubscriptionExtended),
            ("ONE_TIME_CHARGE", None, EventType::NonRenewingPurchase),
            ("TEST", None, EventType::Test),
            ("CONSUMPTION_REQUEST", None, EventType::Other),
            ("RENEWAL_EXTENSION", Some("SUMMARY"), EventType::Other),
            ("REFUND_DECLINED", None, EventType::Other),
            (
                "EXTERNAL_PURCHASE_TOKEN",
                Some("UNREPORTED"),
                EventType::Other,
            ),
            ("RESCIND_CONSENT", None, EventType::Other),
            ("METADATA_UPDATE", None, EventType::Other),
            (
                "BRAND_NEW_TYPE",
                Some("BRAND_NEW_SUBTYPE"),
                EventType::Other,
            ),
        ];
        for (t, s, expected) in cases {
            assert_eq!(event_type(Some(t), s), expected, "{t}/{s:?}");
        }
        assert_eq!(event_type(None, None), EventType::Other);
    }

    #[test]
    fn raw_types_keep_apples_words() {
        assert_eq!(
            raw_type(Some("DID_RENEW"), Some("BILLING_RECOVERY")),
            "DID_RENEW/BILLING_RECOVERY"
        );
        assert_eq!(raw_type(Some("TEST"), None), "TEST");
        assert_eq!(raw_type(None, None), "UNKNOWN");
    }

    #[test]
    fn statuses_map() {
        assert_eq!(status(1), Some(SubscriptionStatus::Active));
        assert_eq!(status(2), Some(SubscriptionStatus::Expired));
        assert_eq!(status(3), Some(SubscriptionStatus::BillingRetry));
        assert_eq!(status(4), Some(SubscriptionStatus::GracePeriod));
        assert_eq!(status(5), Some(SubscriptionStatus::Revoked));
        assert_eq!(status(9), None);
    }
}
