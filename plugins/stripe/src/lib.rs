//! storehook's Stripe adapter: webhook events at `POST /v1/notifications/stripe`.
//!
//! The path of one request: [`verify`] checks the `Stripe-Signature` HMAC
//! over the raw body (before any parsing), [`decode`] reads the event,
//! [`map`] turns it into a normalized notification.
//!
//! Configuration (`[stores.stripe]`):
//! ```toml
//! signing_secrets = ["whsec_…"]   # or STOREHOOK_STRIPE_SIGNING_SECRETS=whsec_a,whsec_b (replaces the list)
//! tolerance_seconds = 300         # max signature age; 0 = unchecked
//! livemode = "both"               # "live" | "test" | "both"
//! app_user_id_metadata_key = "app_user_id"   # optional
//! ```
//! List both secrets while rolling one in the Dashboard; drop the old one
//! once it has expired.
//!
//! The pull side (optional, `[stores.stripe.api]`):
//! ```toml
//! [stores.stripe.api]
//! secret_key = "rk_live_…"        # or STOREHOOK_STRIPE_API_KEY (which alone enables it)
//! base_url = "https://api.stripe.com"
//! api_version = "2026-07-29.dahlia"   # sent as Stripe-Version
//! ```
//! A restricted key with Read access to Events and Webhook Endpoints is
//! enough. With it, [`check`] confirms the webhook endpoint that calls this
//! server and counts the events Stripe failed to deliver, and [`backfill`]
//! recovers a window's events (oldest first) through [`api`]; each goes
//! through [`decode`] and [`map`] as a pushed one does, without the
//! signature (the API call authenticated it), under its event id.
//!
//! Events to subscribe the endpoint to: `customer.subscription.*`,
//! `invoice.paid`, `invoice.payment_failed`, `invoice.payment_action_required`,
//! `charge.refunded`, `checkout.session.completed` and
//! `checkout.session.async_payment_*`. Anything else is acknowledged as OTHER.
//!
//! Normalization:
//!
//! | Stripe | event type | state |
//! |---|---|---|
//! | `customer.subscription.created` | INITIAL_PURCHASE | from the subscription |
//! | `customer.subscription.updated` | by `previous_attributes`: status → `past_due`/`unpaid` BILLING_ISSUE; `past_due`/`unpaid` → `active`/`trialing` RENEWAL; → `canceled` EXPIRATION; `cancel_at_period_end` (or `cancel_at`) set CANCELLATION, cleared UNCANCELLATION; price changed PRODUCT_CHANGE; else OTHER | from the subscription |
//! | `customer.subscription.deleted` | EXPIRATION | expired at `ended_at` |
//! | `customer.subscription.paused` / `.resumed` | SUBSCRIPTION_PAUSED / _RESUMED | from the subscription |
//! | other `customer.subscription.*` (`trial_will_end`…) | OTHER | from the subscription |
//! | `invoice.paid` | RENEWAL for `subscription_cycle`, else OTHER; NON_RENEWING_PURCHASE without a subscription | active until the subscription line's period end |
//! | `invoice.payment_failed` | BILLING_ISSUE (OTHER without a subscription) | billing_retry, except for a first payment |
//! | `invoice.payment_action_required` | OTHER, with `attention` | — |
//! | `charge.refunded` | REFUND | revoked for a one-off purchase refunded in full; a subscription's state is left alone |
//! | `checkout.session.completed` | INITIAL_PURCHASE (mode `subscription`), NON_RENEWING_PURCHASE (mode `payment`, paid) | active when paid |
//!
//! Status: `active`/`trialing` → active, `past_due` → billing_retry,
//! `unpaid`/`incomplete_expired`/`canceled` → expired, `paused` → paused.
//! `incomplete` (the first payment is pending, for at most 23 hours) implies
//! no status and no expiry: nothing is paid for, and nothing has ended; the
//! `updated` event to `active` or `incomplete_expired` settles it.
//! `expires_at` is the current period end (item-level since API 2025-03-31.basil,
//! subscription-level before), `cancel_at` when that comes first, and
//! `ended_at` once ended. `auto_renew` is false when `cancel_at_period_end`
//! or a `cancel_at` within the period says it will not renew.
//!
//! RENEWAL comes from `invoice.paid`: the `customer.subscription.updated` that
//! advances the period is sent when the renewal invoice is created, before
//! it is paid, and maps to OTHER (its state still applies).
//!
//! Stripe does not order deliveries: `occurred_at` is the event's `created`,
//! and the host keeps an older event from moving the state backwards.

// Production code never unwraps: a panic on a request path is a dropped
// notification. Tests may (they are meant to stop at the first surprise).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod api;
pub mod backfill;
pub mod check;
pub mod config;
pub mod decode;
pub mod help;
pub mod map;
pub mod verify;

use storehook_core::{
    AdapterError, ApiCapabilities, BackfillPage, BackfillRequest, CheckReport, ConfigError,
    Environment, IncomingRequest, Outcome, StoreAdapter, StoreHost, VerifiedNotification,
};

pub use config::{
    AcceptedMode, ApiSettings, KeyMode, StripeConfig, API_KEY_ENV, DEFAULT_API_BASE_URL,
    DEFAULT_API_VERSION, SIGNING_SECRETS_ENV,
};
pub use map::MAPPED_EVENT_TYPES;
pub use verify::{signature_header, SignatureError, SigningKeys};

use config::STORE_ID;
use decode::{Created, DecodeError};
use map::{MapOptions, UnreadableObject};

/// The header Stripe signs every delivery with.
pub const SIGNATURE_HEADER: &str = "stripe-signature";

/// The binary calls this so that the linker keeps the crate, and with it the
/// `inventory` registration below.
pub fn link() {}

storehook_core::inventory::submit! {
    storehook_core::StoreRegistration {
        help: help::HELP,
        // A forward's receiver verifies the signature over the body itself.
        forward_headers: &[SIGNATURE_HEADER],
        masking: help::MASKING,
        ..storehook_core::StoreRegistration::new(STORE_ID, "Stripe", "STRIPE", |table, ctx| {
            Ok(Box::new(StripeAdapter::new(StripeConfig::from_table(table, ctx)?)?))
        })
    }
}

/// Verifies and decodes Stripe webhook deliveries.
#[derive(Debug)]
pub struct StripeAdapter {
    config: StripeConfig,
    keys: SigningKeys,
    /// The API client, when `[stores.stripe.api]` has a key.
    api: Option<api::StripeApi>,
}

impl StripeAdapter {
    pub fn new(config: StripeConfig) -> Result<Self, ConfigError> {
        config.validate("signing_secrets")?;
        let keys = SigningKeys::new(
            config
                .signing_secrets
                .iter()
                .map(storehook_core::Secret::expose),
        );
        let api = match &config.api {
            Some(settings) => {
                settings.validate("the configuration")?;
                Some(
                    api::StripeApi::new(settings)
                        .map_err(|e| ConfigError::key(STORE_ID, "api.base_url", e))?,
                )
            }
            None => None,
        };
        Ok(StripeAdapter { config, keys, api })
    }

    pub fn config(&self) -> &StripeConfig {
        &self.config
    }

    /// The whole check, synchronously (the trait method calls it; the
    /// benchmark measures it).
    pub fn verify_and_map(&self, request: &IncomingRequest) -> Result<Outcome, AdapterError> {
        let header = signature_header_value(request)?;
        let now_unix = request.received_at_ms.div_euclid(1000);
        verify::verify_signed_payload(
            header,
            &request.body,
            &self.keys,
            self.config.tolerance_seconds,
            now_unix,
        )
        .map_err(|e| AdapterError::unauthorized(e.code(), e.to_string()))?;
        self.map_event_body(&request.body, request.received_at_ms)
    }

    /// Decodes and maps an event that is already authenticated: by its
    /// signature (a push), or by the API call that listed it (a backfill).
    /// `received_at_ms` stands in for an event without a Unix `created`.
    pub fn map_event_body(
        &self,
        body: &[u8],
        received_at_ms: i64,
    ) -> Result<Outcome, AdapterError> {
        let event = decode::parse_event(body)
            .map_err(|e: DecodeError| AdapterError::malformed(e.code(), e.to_string()))?;
        let envelope = &event.envelope;

        // A missing `livemode` (only in hand-made payloads) counts as test
        // mode, the side where a mistake costs nothing.
        let environment = if envelope.livemode == Some(true) {
            Environment::Production
        } else {
            Environment::Sandbox
        };
        if !self.config.livemode.accepts(environment) {
            return Err(AdapterError::unauthorized(
                "livemode_not_accepted",
                format!(
                    "a {} event was received, but stores.stripe.livemode is {:?}",
                    if environment == Environment::Production {
                        "live-mode"
                    } else {
                        "test-mode"
                    },
                    self.config.livemode.as_str()
                ),
            ));
        }

        let raw_type = envelope
            .event_type
            .clone()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "unknown".to_string());
        let options = MapOptions {
            app_user_id_metadata_key: self.config.app_user_id_metadata_key.as_deref(),
        };
        let mapped = match map::map_event(
            &raw_type,
            event.object(),
            event.previous_attributes(),
            &options,
        ) {
            Ok(mapped) => mapped,
            // Genuine (signed) but unusable: acknowledge, so that Stripe does
            // not retry for days and disable the endpoint, and let the host
            // show it as rejected.
            Err(e @ UnreadableObject { .. }) => {
                return Ok(Outcome::AcknowledgedRejection {
                    notification_id: Some(envelope.id.clone()),
                    code: "unreadable_object".to_string(),
                    message: e.to_string(),
                })
            }
        };

        // Thin (v2) events carry an RFC 3339 `created` and no subscription;
        // receipt time orders them well enough.
        let occurred_at_ms = match envelope.created {
            Some(Created::Unix(seconds)) => seconds.checked_mul(1000).unwrap_or(received_at_ms),
            _ => received_at_ms,
        };

        Ok(Outcome::Notification(Box::new(VerifiedNotification {
            store: STORE_ID.to_string(),
            environment,
            notification_id: envelope.id.clone(),
            subscription_key: mapped.subscription_key,
            event_type: mapped.event_type,
            raw_type,
            occurred_at_ms,
            product_id: mapped.product_id,
            purchase_kind: None,
            app_id: envelope.account.clone().filter(|a| !a.is_empty()),
            state: mapped.state,
            app_user_id_hint: mapped.app_user_id_hint,
            continues_subscription_key: None,
            attention: mapped.attention,
            state_fetch_pending: false,
            details: mapped.details,
            // Event bodies carry no secrets: kept whole for the operator.
            decoded: event.json,
        })))
    }
}

/// The `Stripe-Signature` value: `Ok(None)` when absent, an error when it is
/// not text.
fn signature_header_value(request: &IncomingRequest) -> Result<Option<&str>, AdapterError> {
    let Some((_, raw)) = request
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(SIGNATURE_HEADER))
    else {
        return Ok(None);
    };
    std::str::from_utf8(raw).map(Some).map_err(|_| {
        let e = SignatureError::MalformedHeader("the header is not text");
        AdapterError::unauthorized(e.code(), e.to_string())
    })
}

#[storehook_core::async_trait]
impl StoreAdapter for StripeAdapter {
    async fn verify_and_decode(&self, request: &IncomingRequest) -> Result<Outcome, AdapterError> {
        self.verify_and_map(request)
    }

    fn api_capabilities(&self) -> ApiCapabilities {
        ApiCapabilities::without_acknowledgement(self.api.is_some())
    }

    async fn check_connection(&self, host: &dyn StoreHost) -> Result<CheckReport, AdapterError> {
        let (Some(api), Some(settings)) = (&self.api, &self.config.api) else {
            return Ok(CheckReport::not_configured(format!(
                "Set [stores.stripe.api] secret_key (or the environment variable {API_KEY_ENV}) \
                 to a restricted key (rk_…) with Read access to Events and Webhook Endpoints, \
                 created in the Stripe Dashboard › Developers › API keys, and restart. storehook \
                 then checks the webhook endpoint that calls this server and recovers the events \
                 Stripe failed to deliver."
            )));
        };
        Ok(check::check_connection(api, settings, self.config.livemode, host).await)
    }

    async fn backfill_page(&self, req: BackfillRequest<'_>) -> Result<BackfillPage, AdapterError> {
        let Some(api) = &self.api else {
            return Err(AdapterError::Unsupported {
                message: format!(
                    "no Stripe API key is configured: set [stores.stripe.api] secret_key or {API_KEY_ENV}"
                ),
            });
        };
        backfill::page(self, api, req).await
    }

    fn startup_warnings(&self) -> Vec<String> {
        self.config.warnings()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storehook_core::EventType;

    const SECRET: &str = "whsec_unit";
    const NOW: i64 = 1_767_312_000;

    fn adapter(config: StripeConfig) -> StripeAdapter {
        StripeAdapter::new(config).expect("valid config")
    }

    fn signed(body: &str) -> IncomingRequest {
        IncomingRequest::new(body, NOW * 1000).with_header(
            "Stripe-Signature",
            signature_header([SECRET], NOW, body.as_bytes()),
        )
    }

    fn notification(outcome: Outcome) -> VerifiedNotification {
        match outcome {
            Outcome::Notification(n) => *n,
            other => panic!("expected a notification, got {other:?}"),
        }
    }

    #[test]
    fn registered_as_stripe() {
        let reg = storehook_core::find_registration("stripe").expect("registered");
        assert_eq!(reg.name, "Stripe");
        assert_eq!(reg.store_label, "STRIPE");
        assert!(reg.supported);
        let env = |_: &str| None;
        let ctx = storehook_core::FactoryContext {
            config_dir: std::path::PathBuf::from("/"),
            env: &env,
        };
        let err = (reg.build)(&toml::Table::new(), &ctx)
            .err()
            .expect("no secret is an error");
        assert!(err.0.contains("signing_secrets"), "{err}");
        let table: toml::Table = toml::from_str("signing_secrets = ['whsec_a']").expect("toml");
        assert!((reg.build)(&table, &ctx).is_ok());
    }

    #[test]
    fn envelope_fields() {
        let a = adapter(StripeConfig::with_secrets([SECRET]));
        let body = r#"{"id":"evt_1","object":"event","type":"customer.created","created":1767312000,"livemode":true,"account":"acct_9","data":{"object":{"id":"cus_1","object":"customer"}}}"#;
        let n = notification(a.verify_and_map(&signed(body)).expect("ok"));
        assert_eq!(n.store, "stripe");
        assert_eq!(n.notification_id, "evt_1");
        assert_eq!(n.environment, Environment::Production);
        assert_eq!(n.event_type, EventType::Other);
        assert_eq!(n.raw_type, "customer.created");
        assert_eq!(n.occurred_at_ms, 1_767_312_000_000);
        assert_eq!(n.app_id.as_deref(), Some("acct_9"));
        assert_eq!(n.subscription_key, None);
        assert_eq!(n.decoded["account"], "acct_9");
    }

    #[test]
    fn livemode_filter() {
        let live = r#"{"id":"evt_1","object":"event","type":"x","created":1,"livemode":true}"#;
        let test = r#"{"id":"evt_2","object":"event","type":"x","created":1,"livemode":false}"#;
        let mut config = StripeConfig::with_secrets([SECRET]);
        config.livemode = AcceptedMode::Live;
        let a = adapter(config.clone());
        assert!(a.verify_and_map(&signed(live)).is_ok());
        let err = a.verify_and_map(&signed(test)).unwrap_err();
        assert_eq!(
            (err.http_status(), err.code()),
            (401, "livemode_not_accepted")
        );
        config.livemode = AcceptedMode::Test;
        let a = adapter(config);
        assert!(a.verify_and_map(&signed(test)).is_ok());
        let err = a.verify_and_map(&signed(live)).unwrap_err();
        assert_eq!(err.code(), "livemode_not_accepted");
    }

    #[test]
    fn thin_and_untyped_events_are_acknowledged() {
        let a = adapter(StripeConfig::with_secrets([SECRET]));
        let thin = r#"{"id":"evt_thin","object":"v2.core.event","type":"v1.billing.meter.no_meter_found","created":"2026-01-02T00:00:00.000Z","livemode":false}"#;
        let n = notification(a.verify_and_map(&signed(thin)).expect("ok"));
        assert_eq!(n.event_type, EventType::Other);
        assert_eq!(n.occurred_at_ms, NOW * 1000);
        let n = notification(
            a.verify_and_map(&signed(r#"{"id":"evt_x","object":"event"}"#))
                .expect("ok"),
        );
        assert_eq!(n.raw_type, "unknown");
    }

    #[test]
    fn unreadable_objects_are_acknowledged_rejections() {
        let a = adapter(StripeConfig::with_secrets([SECRET]));
        let body = r#"{"id":"evt_bad","object":"event","type":"invoice.paid","created":1,"data":{"object":{"object":"invoice","amount_paid":"lots"}}}"#;
        match a.verify_and_map(&signed(body)).expect("acknowledged") {
            Outcome::AcknowledgedRejection {
                notification_id,
                code,
                message,
            } => {
                assert_eq!(notification_id.as_deref(), Some("evt_bad"));
                assert_eq!(code, "unreadable_object");
                assert!(message.contains("invoice"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn non_text_header_is_malformed() {
        let a = adapter(StripeConfig::with_secrets([SECRET]));
        let req = IncomingRequest::new("{}", NOW * 1000)
            .with_header("stripe-signature", vec![0xff, 0xfe]);
        let err = a.verify_and_map(&req).unwrap_err();
        assert_eq!((err.http_status(), err.code()), (401, "malformed_header"));
    }

    #[test]
    fn errors_never_show_a_secret() {
        let a = adapter(StripeConfig::with_secrets([SECRET]));
        let body = r#"{"id":"evt_1"}"#;
        let req = IncomingRequest::new(body, NOW * 1000).with_header(
            "stripe-signature",
            format!("t={NOW},v1={}", "ab".repeat(32)),
        );
        let err = a.verify_and_map(&req).unwrap_err();
        assert!(!err.message().contains(SECRET));
        assert!(!format!("{a:?}").contains(SECRET));
    }
}
