//! From Play's wire types to storehook's normalized notification and state.

use serde_json::Value;
use storehook_core::{
    mask_secrets, Environment, EventDetails, EventType, ImpliedState, PurchaseKind, StateUpdate,
    SubscriptionStatus, VerifiedNotification,
};

use crate::config::STORE_ID;
use crate::decode::{
    rfc3339_to_ms, DecodedData, Money, NotificationKind, ProductPurchase, PushEnvelope,
    SubscriptionPurchaseV2, VoidedPurchase, VoidedPurchaseNotification,
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
    let (name, event_type) = match number {
        1 => ("SUBSCRIPTION_RECOVERED", E::Renewal),
        2 => ("SUBSCRIPTION_RENEWED", E::Renewal),
        3 => ("SUBSCRIPTION_CANCELED", E::Cancellation),
        4 => ("SUBSCRIPTION_PURCHASED", E::InitialPurchase),
        5 => ("SUBSCRIPTION_ON_HOLD", E::BillingIssue),
        6 => ("SUBSCRIPTION_IN_GRACE_PERIOD", E::BillingIssue),
        7 => ("SUBSCRIPTION_RESTARTED", E::Uncancellation),
        8 => ("SUBSCRIPTION_PRICE_CHANGE_CONFIRMED", E::PriceIncrease),
        9 => ("SUBSCRIPTION_DEFERRED", E::SubscriptionExtended),
        10 => ("SUBSCRIPTION_PAUSED", E::SubscriptionPaused),
        11 => ("SUBSCRIPTION_PAUSE_SCHEDULE_CHANGED", E::Other),
        12 => ("SUBSCRIPTION_REVOKED", E::Revoke),
        13 => ("SUBSCRIPTION_EXPIRED", E::Expiration),
        17 => ("SUBSCRIPTION_ITEMS_CHANGED", E::ProductChange),
        // Installment plans: ends at the end of the commitment.
        18 => ("SUBSCRIPTION_CANCELLATION_SCHEDULED", E::Cancellation),
        19 => ("SUBSCRIPTION_PRICE_CHANGE_UPDATED", E::PriceIncrease),
        20 => ("SUBSCRIPTION_PENDING_PURCHASE_CANCELED", E::Other),
        22 => (
            "SUBSCRIPTION_PRICE_STEP_UP_CONSENT_UPDATED",
            E::PriceIncrease,
        ),
        _ => ("SUBSCRIPTION_UNKNOWN", E::Other),
    };
    SubscriptionType {
        name,
        event_type,
        status: implied_status(number),
        auto_renew: implied_auto_renew(number),
    }
}

/// The status a notification type alone implies (most imply none).
fn implied_status(number: i64) -> Option<SubscriptionStatus> {
    use SubscriptionStatus as S;
    match number {
        1 | 2 | 4 | 7 => Some(S::Active),
        5 => Some(S::BillingRetry),
        6 => Some(S::GracePeriod),
        10 => Some(S::Paused),
        12 => Some(S::Revoked),
        13 => Some(S::Expired),
        _ => None,
    }
}

/// The auto-renew setting a notification type alone implies: off once
/// canceled (3) or a cancellation is scheduled (18), on again when restarted (7).
fn implied_auto_renew(number: i64) -> Option<bool> {
    match number {
        3 | 18 => Some(false),
        7 => Some(true),
        _ => None,
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

/// A notification about `package` with nothing mapped yet: the callers
/// fill in what their kind of notification says.
fn of_package(
    package: &str,
    notification_id: String,
    occurred_at_ms: i64,
    decoded: Value,
) -> VerifiedNotification {
    VerifiedNotification {
        store: STORE_ID.to_string(),
        // RTDN does not say; `testPurchase` in the Play API response does.
        environment: Environment::Production,
        notification_id,
        subscription_key: None,
        event_type: EventType::Other,
        raw_type: String::new(),
        occurred_at_ms,
        product_id: None,
        purchase_kind: None,
        app_id: Some(package.to_owned()),
        state: ImpliedState::default(),
        app_user_id_hint: None,
        continues_subscription_key: None,
        attention: None,
        state_fetch_pending: false,
        details: EventDetails::default(),
        decoded,
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
    let mut out = of_package(
        &n.package_name,
        notification_id(envelope),
        n.event_time_millis,
        decoded_for_display(envelope, &decoded.json),
    );

    match kind {
        NotificationKind::Subscription(s) => {
            let t = subscription_type(s.notification_type);
            out.event_type = t.event_type;
            out.raw_type = format!("{} ({})", t.name, s.notification_type);
            out.subscription_key = Some(s.purchase_token.clone());
            out.product_id = s.subscription_id.clone();
            out.purchase_kind = Some(PurchaseKind::Subscription);
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
            out.purchase_kind = Some(PurchaseKind::OneTime);
            if p.notification_type == 1 {
                out.state = ImpliedState {
                    status: Some(SubscriptionStatus::Active),
                    product_id: p.sku.clone(),
                    ..ImpliedState::default()
                };
            }
            // Read back through `products.get` (by the sku): whether the
            // purchase still needs acknowledging, and by whom it is bought.
            out.state_fetch_pending = fetch_state;
        }
        NotificationKind::VoidedPurchase(v) => {
            apply_void(&mut out, v);
            // Keyed by the order, like a void recovered from the Play API,
            // so that a backfill after the push is a duplicate.
            if let Some(id) =
                voided_notification_id(v.order_id.as_deref(), v.refund_type == Some(2))
            {
                out.notification_id = id;
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

/// What a void means, pushed or recovered: a refund of the order, and for
/// anything but a quantity-based partial refund the end of the purchase.
fn apply_void(out: &mut VerifiedNotification, v: &VoidedPurchaseNotification) {
    let refund = refund_type_name(v.refund_type);
    out.event_type = EventType::Refund;
    out.raw_type = format!(
        "VOIDED_PURCHASE ({}, {refund})",
        product_type_name(v.product_type)
    );
    out.subscription_key = Some(v.purchase_token.clone());
    out.purchase_kind = match v.product_type {
        Some(1) => Some(PurchaseKind::Subscription),
        Some(2) => Some(PurchaseKind::OneTime),
        _ => None,
    };
    out.details.transaction_id = v.order_id.clone();
    out.details.cancel_reason = Some(refund.to_string());
    // The void is authoritative: subscriptionsv2 has been seen to
    // answer ACTIVE after one, so no state fetch follows it. A
    // quantity-based partial refund leaves the purchase in place.
    if v.refund_type != Some(2) {
        out.state.status = Some(SubscriptionStatus::Revoked);
    }
}

/// The id of a void of a whole order: `voided:<orderId>`. Google's order
/// ids are unique and a void ends its order, so the id is the same
/// whether the RTDN pushed it (whatever its Pub/Sub message id) or a
/// backfill read it from `voidedpurchases.list`, and any number of
/// backfills over it are duplicates. A partial refund is not the end of
/// its order (there may be several), so it keeps the delivery's own id.
pub fn voided_notification_id(order_id: Option<&str>, partial: bool) -> Option<String> {
    let order = order_id.map(str::trim).filter(|o| !o.is_empty())?;
    if partial {
        return None;
    }
    Some(format!(
        "voided:{}",
        order.chars().take(200).collect::<String>()
    ))
}

/// The id of a void read from `voidedpurchases.list`: the same as pushed
/// for a whole order; a partial refund (or an entry without an order id,
/// which Google does not send) is told apart by its time, which does not
/// change between two reads of the list.
fn recovered_void_id(v: &VoidedPurchase, token: &str, voided_at_ms: i64) -> String {
    let partial = v.voided_quantity.is_some();
    if let Some(id) = voided_notification_id(v.order_id.as_deref(), partial) {
        return id;
    }
    match v
        .order_id
        .as_deref()
        .map(str::trim)
        .filter(|o| !o.is_empty())
    {
        Some(order) => format!(
            "voided:{}:partial:{voided_at_ms}",
            order.chars().take(200).collect::<String>()
        ),
        None => {
            let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
            format!(
                "voided-token-sha256-{}:{voided_at_ms}",
                hex::encode(&d.as_ref()[..16])
            )
        }
    }
}

fn voided_source_name(number: Option<i64>) -> &'static str {
    match number {
        Some(0) => "User",
        Some(1) => "Developer",
        Some(2) => "Google",
        _ => "Unknown",
    }
}

fn voided_reason_name(number: Option<i64>) -> &'static str {
    match number {
        Some(0) => "Other",
        Some(1) => "Remorse",
        Some(2) => "Not_received",
        Some(3) => "Defective",
        Some(4) => "Accidental_purchase",
        Some(5) => "Fraud",
        Some(6) => "Friendly_fraud",
        Some(7) => "Chargeback",
        Some(8) => "Unacknowledged_purchase",
        _ => "Unknown",
    }
}

/// A void read from `voidedpurchases.list` of `package`, as the
/// notification a pushed voided-purchase RTDN of it maps to (`None` for an
/// entry without a purchase token or a time, which Google does not send).
/// The list does not say whether the order was a subscription's.
pub fn recovered_void(
    package: &str,
    v: &VoidedPurchase,
    raw: &Value,
) -> Option<VerifiedNotification> {
    let token = v.purchase_token.clone().filter(|t| !t.is_empty())?;
    let voided_at_ms = v.voided_time_millis?;
    let partial = v.voided_quantity.is_some();
    let as_pushed = VoidedPurchaseNotification {
        purchase_token: token.clone(),
        order_id: v.order_id.clone(),
        product_type: None,
        refund_type: Some(if partial { 2 } else { 1 }),
    };
    let mut shown = raw.clone();
    mask_tokens(&mut shown);
    let mut out = of_package(
        package,
        recovered_void_id(v, &token, voided_at_ms),
        voided_at_ms,
        serde_json::json!({
        "recoveredFrom": "purchases.voidedpurchases.list",
        "packageName": package,
        "voidedPurchase": shown,
        "voidedSourceName": voided_source_name(v.voided_source),
        "voidedReasonName": voided_reason_name(v.voided_reason),
        }),
    );
    apply_void(&mut out, &as_pushed);
    out.details.purchased_at_ms = v.purchase_time_millis;
    if v.voided_reason == Some(8) {
        out.attention = Some(
            "Google Play refunded this purchase because nobody acknowledged it within 3 days: make sure \
             purchases are acknowledged (by the app, or by storehook with [stores.google.play_api] \
             acknowledge = true)"
                .to_string(),
        );
    }
    Some(out)
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

    // A free trial charges nothing now; the recurring price is what its
    // renewal will charge, which the trial period's chart row keeps apart.
    let recurring = latest
        .and_then(|(_, item)| item.auto_renewing_plan.as_ref())
        .and_then(|plan| plan.recurring_price.as_ref());

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
        acknowledgement_pending: awaits_acknowledgement(purchase),
        purchased_at_ms: purchase.start_time.as_deref().and_then(rfc3339_to_ms),
        price: recurring.and_then(Money::amount),
        currency: recurring
            .and_then(|m| m.currency_code.clone())
            .filter(|c| !c.is_empty()),
        is_trial: latest
            .and_then(|(_, item)| item.offer_phase.as_ref())
            .map(|phase| phase.free_trial.is_some()),
    }
}

/// Whether the purchase is one that can be acknowledged: bought (payment
/// not pending) and not over. A state Google adds later counts as bought,
/// so that it is tried rather than refunded.
pub fn acknowledgeable(purchase: &SubscriptionPurchaseV2) -> bool {
    !matches!(
        purchase.subscription_state.as_deref(),
        Some(
            "SUBSCRIPTION_STATE_PENDING"
                | "SUBSCRIPTION_STATE_EXPIRED"
                | "SUBSCRIPTION_STATE_PENDING_PURCHASE_CANCELED"
        )
    )
}

/// Whether the purchase needs acknowledging now: Play says it is not
/// acknowledged yet and it can be (a pending payment is acknowledged once
/// paid, when Play sends SUBSCRIPTION_PURCHASED and the state is re-read).
pub fn awaits_acknowledgement(purchase: &SubscriptionPurchaseV2) -> bool {
    purchase.acknowledgement_state.as_deref() == Some("ACKNOWLEDGEMENT_STATE_PENDING")
        && acknowledgeable(purchase)
}

/// Whether Play says the purchase is acknowledged.
pub fn acknowledged(purchase: &SubscriptionPurchaseV2) -> bool {
    purchase.acknowledgement_state.as_deref() == Some("ACKNOWLEDGEMENT_STATE_ACKNOWLEDGED")
}

/// Maps a `products.get` response (a one-time product's purchase of
/// `product_id`) to the state update the host applies. Bought means active;
/// a canceled one says nothing of the status (the void, pushed or listed,
/// is what revokes it), nor does one whose payment is pending.
pub fn product_state_update(
    purchase: &ProductPurchase,
    product_id: &str,
    as_of_ms: i64,
) -> StateUpdate {
    StateUpdate {
        state: ImpliedState {
            status: (purchase.purchase_state == Some(0)).then_some(SubscriptionStatus::Active),
            expires_at_ms: None,
            auto_renew: None,
            product_id: Some(
                purchase
                    .product_id
                    .clone()
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| product_id.to_owned()),
            ),
        },
        as_of_ms,
        app_user_id_hint: purchase.obfuscated_external_account_id.clone(),
        continues_subscription_key: None,
        acknowledgement_pending: product_awaits_acknowledgement(purchase),
        purchased_at_ms: purchase.purchase_time_millis,
        ..StateUpdate::default()
    }
}

/// Whether a one-time purchase can be acknowledged: bought, not canceled
/// and not waiting for its payment (a `purchaseState` Google adds later
/// counts as bought, as for subscriptions).
pub fn product_acknowledgeable(purchase: &ProductPurchase) -> bool {
    !matches!(purchase.purchase_state, Some(1 | 2))
}

/// Whether Play says the one-time purchase is acknowledged; consuming a
/// consumable acknowledges it too.
pub fn product_acknowledged(purchase: &ProductPurchase) -> bool {
    purchase.acknowledgement_state == Some(1) || purchase.consumption_state == Some(1)
}

/// Whether the one-time purchase needs acknowledging now.
pub fn product_awaits_acknowledgement(purchase: &ProductPurchase) -> bool {
    purchase.acknowledgement_state == Some(0)
        && !product_acknowledged(purchase)
        && product_acknowledgeable(purchase)
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
    fn price_currency_and_trial_come_from_the_latest_line_item() {
        let item = |expiry: &str, units: &str, nanos: i64, phase: &str| {
            serde_json::json!({
                "productId": "premium",
                "expiryTime": expiry,
                "autoRenewingPlan": {
                    "autoRenewEnabled": true,
                    "recurringPrice": {"currencyCode": "JPY", "units": units, "nanos": nanos}
                },
                "offerPhase": {phase: {}}
            })
        };
        let purchase: SubscriptionPurchaseV2 = serde_json::from_value(serde_json::json!({
            "subscriptionState": "SUBSCRIPTION_STATE_ACTIVE",
            "lineItems": [
                item("2026-01-01T00:00:00Z", "100", 0, "basePrice"),
                item("2026-02-01T00:00:00Z", "6", 990_000_000, "freeTrial"),
            ]
        }))
        .unwrap();
        let update = state_update(&purchase, 5);
        assert_eq!(update.price, Some(6.99));
        assert_eq!(update.currency.as_deref(), Some("JPY"));
        assert_eq!(update.is_trial, Some(true));

        let money = |units: Option<&str>, nanos| Money {
            currency_code: Some("EUR".into()),
            units: units.map(str::to_owned),
            nanos,
        };
        // Nanos carry the sign of the units; an absent units field is zero.
        assert_eq!(money(Some("-1"), Some(-750_000_000)).amount(), Some(-1.75));
        assert_eq!(money(None, Some(500_000_000)).amount(), Some(0.5));
        assert_eq!(money(Some("twelve"), None).amount(), None);
    }

    #[test]
    fn acknowledgement_is_pending_only_for_a_bought_purchase() {
        let purchase = |state: &str, ack: &str| SubscriptionPurchaseV2 {
            subscription_state: Some(state.to_string()),
            acknowledgement_state: Some(ack.to_string()),
            start_time: Some("2026-01-01T00:00:00.250Z".to_string()),
            ..Default::default()
        };
        let pending = "ACKNOWLEDGEMENT_STATE_PENDING";
        for (state, expected) in [
            ("SUBSCRIPTION_STATE_ACTIVE", true),
            ("SUBSCRIPTION_STATE_CANCELED", true),
            ("SUBSCRIPTION_STATE_IN_GRACE_PERIOD", true),
            ("SUBSCRIPTION_STATE_ON_HOLD", true),
            ("SUBSCRIPTION_STATE_PAUSED", true),
            ("SUBSCRIPTION_STATE_SOMETHING_NEW", true),
            ("SUBSCRIPTION_STATE_PENDING", false),
            ("SUBSCRIPTION_STATE_EXPIRED", false),
            ("SUBSCRIPTION_STATE_PENDING_PURCHASE_CANCELED", false),
        ] {
            let update = state_update(&purchase(state, pending), 5);
            assert_eq!(update.acknowledgement_pending, expected, "{state}");
            assert_eq!(update.purchased_at_ms, Some(1_767_225_600_250), "{state}");
        }
        let done = purchase(
            "SUBSCRIPTION_STATE_ACTIVE",
            "ACKNOWLEDGEMENT_STATE_ACKNOWLEDGED",
        );
        assert!(!state_update(&done, 5).acknowledgement_pending);
        assert!(acknowledged(&done));
        assert_eq!(
            state_update(&SubscriptionPurchaseV2::default(), 5).purchased_at_ms,
            None
        );
    }

    #[test]
    fn voids_of_whole_orders_are_keyed_by_the_order() {
        assert_eq!(
            voided_notification_id(Some("GPA.1234-5678"), false).as_deref(),
            Some("voided:GPA.1234-5678")
        );
        assert_eq!(voided_notification_id(Some("GPA.1234-5678"), true), None);
        assert_eq!(voided_notification_id(Some(" "), false), None);
        assert_eq!(voided_notification_id(None, false), None);

        let raw = serde_json::json!({"purchaseToken": "purchase_token_0123", "orderId": "1234",
            "purchaseTimeMillis": "1677275637963", "voidedTimeMillis": "1677650787656",
            "voidedSource": 1, "voidedReason": 8});
        let v: VoidedPurchase = serde_json::from_value(raw.clone()).unwrap();
        let n = recovered_void("com.example", &v, &raw).unwrap();
        assert_eq!(n.notification_id, "voided:1234");
        assert_eq!(n.event_type, EventType::Refund);
        assert_eq!(n.state.status, Some(SubscriptionStatus::Revoked));
        assert_eq!(n.subscription_key.as_deref(), Some("purchase_token_0123"));
        assert_eq!(n.occurred_at_ms, 1_677_650_787_656);
        assert_eq!(n.details.purchased_at_ms, Some(1_677_275_637_963));
        assert!(n.attention.is_some(), "reason 8 is the operator's to fix");
        assert!(!n.decoded.to_string().contains("purchase_token_0123"));
        assert_eq!(n.decoded["voidedReasonName"], "Unacknowledged_purchase");

        let partial: VoidedPurchase = serde_json::from_value(serde_json::json!({
            "purchaseToken": "t", "orderId": "1234", "voidedTimeMillis": "7", "voidedQuantity": 1}))
        .unwrap();
        let n = recovered_void("com.example", &partial, &serde_json::json!({})).unwrap();
        assert_eq!(n.notification_id, "voided:1234:partial:7");
        assert_eq!(n.state.status, None);
        let anonymous: VoidedPurchase = serde_json::from_value(
            serde_json::json!({"purchaseToken": "t", "voidedTimeMillis": 7}),
        )
        .unwrap();
        let n = recovered_void("com.example", &anonymous, &serde_json::json!({})).unwrap();
        assert!(
            n.notification_id.starts_with("voided-token-sha256-"),
            "{}",
            n.notification_id
        );
        assert!(recovered_void("p", &VoidedPurchase::default(), &serde_json::json!({})).is_none());
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
