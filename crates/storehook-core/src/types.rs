use serde::{Deserialize, Serialize};

/// Where a purchase happened: real money, or a store's test system
/// (Apple Sandbox/TestFlight/Xcode, Play license testers, Stripe test mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Production,
    Sandbox,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Production => "production",
            Environment::Sandbox => "sandbox",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "production" => Some(Environment::Production),
            "sandbox" => Some(Environment::Sandbox),
            _ => None,
        }
    }
}

/// The normalized event types every store's notifications map to. The names
/// follow RevenueCat's event types so operators' handlers port easily.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    /// The store's own test notification (App Store Connect "Request a Test
    /// Notification", Play Console "Send test notification", a Stripe CLI
    /// ping). Proves the connection works; changes no subscription.
    Test,
    /// The first purchase of a subscription (including a free trial start).
    InitialPurchase,
    /// A subscription renewed, was recovered from billing retry, or was
    /// re-subscribed after expiring.
    Renewal,
    /// Auto-renew was turned off: the subscription stays active until its
    /// expiry and then ends. Not a refund.
    Cancellation,
    /// Auto-renew was turned back on before the subscription expired.
    Uncancellation,
    /// A one-time (non-subscription) purchase.
    NonRenewingPurchase,
    /// A renewal charge failed; the store is retrying (billing retry, on hold,
    /// or a grace period with access).
    BillingIssue,
    /// The billing grace period ended without a successful charge.
    GracePeriodExpired,
    /// The customer changed product, plan or price (upgrade, downgrade,
    /// crossgrade).
    ProductChange,
    /// The subscription ended: access is over.
    Expiration,
    /// The subscription was paused (Google Play, Stripe).
    SubscriptionPaused,
    /// A paused subscription resumed.
    SubscriptionResumed,
    /// The store extended the subscription's expiry (Apple renewal date
    /// extension, Google deferred billing).
    SubscriptionExtended,
    /// A price increase was announced, consented to or updated.
    PriceIncrease,
    /// The store refunded a purchase.
    Refund,
    /// A refund was reversed; the purchase counts again.
    RefundReversed,
    /// Access was revoked (Family Sharing removal, Play revocation).
    Revoke,
    /// Anything else the store sent; the store's raw type is kept beside it.
    Other,
}

impl EventType {
    pub const ALL: [EventType; 18] = [
        EventType::Test,
        EventType::InitialPurchase,
        EventType::Renewal,
        EventType::Cancellation,
        EventType::Uncancellation,
        EventType::NonRenewingPurchase,
        EventType::BillingIssue,
        EventType::GracePeriodExpired,
        EventType::ProductChange,
        EventType::Expiration,
        EventType::SubscriptionPaused,
        EventType::SubscriptionResumed,
        EventType::SubscriptionExtended,
        EventType::PriceIncrease,
        EventType::Refund,
        EventType::RefundReversed,
        EventType::Revoke,
        EventType::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Test => "TEST",
            EventType::InitialPurchase => "INITIAL_PURCHASE",
            EventType::Renewal => "RENEWAL",
            EventType::Cancellation => "CANCELLATION",
            EventType::Uncancellation => "UNCANCELLATION",
            EventType::NonRenewingPurchase => "NON_RENEWING_PURCHASE",
            EventType::BillingIssue => "BILLING_ISSUE",
            EventType::GracePeriodExpired => "GRACE_PERIOD_EXPIRED",
            EventType::ProductChange => "PRODUCT_CHANGE",
            EventType::Expiration => "EXPIRATION",
            EventType::SubscriptionPaused => "SUBSCRIPTION_PAUSED",
            EventType::SubscriptionResumed => "SUBSCRIPTION_RESUMED",
            EventType::SubscriptionExtended => "SUBSCRIPTION_EXTENDED",
            EventType::PriceIncrease => "PRICE_INCREASE",
            EventType::Refund => "REFUND",
            EventType::RefundReversed => "REFUND_REVERSED",
            EventType::Revoke => "REVOKE",
            EventType::Other => "OTHER",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Whether this event begins a purchase (used by auto-tracking).
    pub fn starts_purchase(self) -> bool {
        matches!(
            self,
            EventType::InitialPurchase | EventType::NonRenewingPurchase
        )
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A subscription's entitlement state. `auto_renew` is kept separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    /// Paid (or in a free trial) and within its period.
    Active,
    /// A renewal failed but the store keeps access on while it retries.
    GracePeriod,
    /// A renewal failed and the store is retrying without access.
    BillingRetry,
    /// Paused by the customer (Google Play) or the merchant (Stripe).
    Paused,
    /// Ended.
    Expired,
    /// Refunded or revoked: access withdrawn.
    Revoked,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::GracePeriod => "grace_period",
            SubscriptionStatus::BillingRetry => "billing_retry",
            SubscriptionStatus::Paused => "paused",
            SubscriptionStatus::Expired => "expired",
            SubscriptionStatus::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            SubscriptionStatus::Active,
            SubscriptionStatus::GracePeriod,
            SubscriptionStatus::BillingRetry,
            SubscriptionStatus::Paused,
            SubscriptionStatus::Expired,
            SubscriptionStatus::Revoked,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// What was bought, where the store says: a subscription, or a one-time
/// product (consumable or not). A store whose API reads and acknowledges
/// the two through different calls (Play) needs it, with the product id,
/// to ask about a purchase after the notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PurchaseKind {
    Subscription,
    OneTime,
}

impl PurchaseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PurchaseKind::Subscription => "subscription",
            PurchaseKind::OneTime => "one_time",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [PurchaseKind::Subscription, PurchaseKind::OneTime]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// The subscription state a notification implies, where its payload says.
/// `None` means "this notification does not say", never "clear it".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImpliedState {
    pub status: Option<SubscriptionStatus>,
    /// Unix milliseconds.
    pub expires_at_ms: Option<i64>,
    pub auto_renew: Option<bool>,
    pub product_id: Option<String>,
}

impl ImpliedState {
    pub fn is_empty(&self) -> bool {
        self == &ImpliedState::default()
    }

    /// Overlays `newer` on `self`: what `newer` says wins, the rest stays.
    pub fn merge(&mut self, newer: &ImpliedState) {
        if newer.status.is_some() {
            self.status = newer.status;
        }
        if newer.expires_at_ms.is_some() {
            self.expires_at_ms = newer.expires_at_ms;
        }
        if newer.auto_renew.is_some() {
            self.auto_renew = newer.auto_renew;
        }
        if newer.product_id.is_some() {
            self.product_id.clone_from(&newer.product_id);
        }
    }
}

/// Fields an operator's webhook handler wants beside the state, where the
/// store says them (RevenueCat's event body has the same names).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventDetails {
    pub transaction_id: Option<String>,
    pub original_transaction_id: Option<String>,
    pub purchased_at_ms: Option<i64>,
    pub cancel_reason: Option<String>,
    pub expiration_reason: Option<String>,
    /// Price in the currency's standard unit (e.g. 9.99).
    pub price: Option<f64>,
    pub currency: Option<String>,
    /// The purchase is a free trial (Apple offerDiscountType FREE_TRIAL,
    /// Stripe status `trialing`), where the store says. Charts count a
    /// trial period apart from paid ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_trial: Option<bool>,
    /// When the billing grace period (access kept while the store retries
    /// a failed renewal) ends, where the store says (Apple
    /// gracePeriodExpiresDate). Charts keep the subscription active until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period_expires_at_ms: Option<i64>,
}

/// A notification that passed verification, decoded and normalized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifiedNotification {
    /// The store's id as registered (`"apple"`).
    pub store: String,
    pub environment: Environment,
    /// The store's own id of this delivery, stable across its retries
    /// (Apple notificationUUID, Pub/Sub messageId, Stripe event id).
    pub notification_id: String,
    /// The subscription this is about (Apple originalTransactionId, Google
    /// purchaseToken, Stripe subscription id). `None` for a store's test
    /// notification and other notifications about no purchase.
    pub subscription_key: Option<String>,
    pub event_type: EventType,
    /// The store's own name for the notification, e.g. `DID_RENEW/BILLING_RECOVERY`,
    /// `SUBSCRIPTION_RENEWED (2)`, `invoice.paid`.
    pub raw_type: String,
    /// When the store says it happened, Unix milliseconds. Orders notifications
    /// of one subscription: an older one never moves the state backwards.
    pub occurred_at_ms: i64,
    pub product_id: Option<String>,
    /// Whether the purchase is a subscription or a one-time product, where
    /// the store says (kept per notification; the newest that says wins).
    #[serde(default)]
    pub purchase_kind: Option<PurchaseKind>,
    /// Bundle id, package name, or Stripe account.
    pub app_id: Option<String>,
    /// The state this notification implies.
    pub state: ImpliedState,
    /// The operator's user id if the store carries one (Apple appAccountToken,
    /// Google obfuscatedExternalAccountId, Stripe customer or metadata key).
    pub app_user_id_hint: Option<String>,
    /// A subscription this one continues (Google linkedPurchaseToken):
    /// tracking, app user and history carry over from it.
    pub continues_subscription_key: Option<String>,
    /// Something the operator must act on, shown prominently (for example
    /// Apple CONSUMPTION_REQUEST: the app has 12 hours to answer).
    pub attention: Option<String>,
    /// The adapter will fetch the full state from the store's API after the
    /// notification is stored ([`StoreAdapter::fetch_state`](crate::StoreAdapter::fetch_state)).
    pub state_fetch_pending: bool,
    pub details: EventDetails,
    /// The decoded payload for the operator's eyes (dashboard detail view),
    /// with secrets and tokens masked by the adapter.
    pub decoded: serde_json::Value,
}

/// What the adapter made of one authenticated request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Verified and decoded.
    Notification(Box<VerifiedNotification>),
    /// Authenticated, but its content is unusable (Pub/Sub data that is not a
    /// DeveloperNotification, a package name not configured…). The host stores
    /// it as rejected, counts it, shows `code` as the store's last rejection
    /// reason, and answers 200: the sender is genuine and retrying would not
    /// help (Pub/Sub redelivers for days anything not acknowledged).
    AcknowledgedRejection {
        notification_id: Option<String>,
        code: String,
        message: String,
    },
}

/// The state an adapter fetched from the store's API after the fact.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateUpdate {
    pub state: ImpliedState,
    /// As of when the store reported it, Unix milliseconds.
    pub as_of_ms: i64,
    pub app_user_id_hint: Option<String>,
    pub continues_subscription_key: Option<String>,
    /// The store says the purchase is not acknowledged yet (Google's
    /// `ACKNOWLEDGEMENT_STATE_PENDING`): the host queues
    /// [`StoreAdapter::acknowledge`](crate::StoreAdapter::acknowledge) when
    /// the adapter's capabilities include it, and flags the subscription
    /// when it is still pending long after `purchased_at_ms`.
    pub acknowledgement_pending: bool,
    /// When the purchase was made, Unix milliseconds, when the store says.
    pub purchased_at_ms: Option<i64>,
    /// What the current period costs, where the store says: its price in
    /// the currency's standard unit (e.g. 6.99), the currency, and whether
    /// the period is a free trial. Charts take a store's prices from here
    /// when its notifications carry none (Google Play).
    pub price: Option<f64>,
    pub currency: Option<String>,
    pub is_trial: Option<bool>,
}

/// Masks a secret-like string for display: keeps a short prefix so two
/// values can be told apart, hides the rest.
pub fn mask_secrets(value: &str) -> String {
    let visible: String = value.chars().take(6).collect();
    if value.chars().count() <= 8 {
        "•••".to_string()
    } else {
        format!("{visible}•••")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_type_names_round_trip() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
        }
        assert_eq!(EventType::parse("NOPE"), None);
    }

    #[test]
    fn merge_keeps_what_newer_does_not_say() {
        let mut s = ImpliedState {
            status: Some(SubscriptionStatus::Active),
            expires_at_ms: Some(10),
            auto_renew: Some(true),
            product_id: Some("a".into()),
        };
        s.merge(&ImpliedState {
            auto_renew: Some(false),
            ..Default::default()
        });
        assert_eq!(s.status, Some(SubscriptionStatus::Active));
        assert_eq!(s.expires_at_ms, Some(10));
        assert_eq!(s.auto_renew, Some(false));
    }

    #[test]
    fn masking_hides_the_tail() {
        assert_eq!(mask_secrets("short"), "•••");
        assert_eq!(mask_secrets("purchase-token-123456"), "purcha•••");
    }
}
