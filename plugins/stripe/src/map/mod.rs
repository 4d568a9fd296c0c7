//! From a Stripe event to storehook's normalized event: which subscription it
//! is about, what happened, and the state it implies. One module per event
//! family; [`decode`](crate::decode) hides the API versions, so each reads one
//! shape.
//!
//! Decisions worth knowing (the crate docs list them all):
//! - The subscription key is the `sub_…` id. An event about a one-off payment
//!   is keyed by its payment intent (or, when the API version no longer
//!   carries one, the invoice, charge or session id).
//! - `incomplete` (first payment pending, at most 23 hours) implies no status
//!   and no expiry: nothing has been paid, but nothing has ended either;
//!   `active`/`trialing` or `incomplete_expired` follow.
//! - A renewal shows as `invoice.paid` with `billing_reason=subscription_cycle`
//!   (the money came in). The `customer.subscription.updated` that moves the
//!   period forward is sent when the renewal invoice is created, before it is
//!   paid, so it maps to OTHER (its state still applies); only a recovery from
//!   `past_due`/`unpaid` is a RENEWAL there.

mod charge;
mod checkout;
mod invoice;
mod subscription;

use serde::Deserialize;
use serde_json::{Map, Value};
use storehook_core::{EventDetails, EventType, ImpliedState};

use crate::decode::{Expandable, HasId, IdOnly, Metadata};

pub use subscription::{subscription_state, subscription_status};

/// What the mapping needs from the configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct MapOptions<'a> {
    /// The metadata key holding the operator's user id, if configured.
    pub app_user_id_metadata_key: Option<&'a str>,
}

/// The normalized content of one event. The default is an event this adapter
/// records but draws nothing from (OTHER).
#[derive(Debug, Clone, PartialEq)]
pub struct MappedEvent {
    pub event_type: EventType,
    pub subscription_key: Option<String>,
    pub state: ImpliedState,
    pub product_id: Option<String>,
    pub details: EventDetails,
    pub app_user_id_hint: Option<String>,
    pub attention: Option<String>,
}

impl Default for MappedEvent {
    fn default() -> Self {
        MappedEvent {
            event_type: EventType::Other,
            subscription_key: None,
            state: ImpliedState::default(),
            product_id: None,
            details: EventDetails::default(),
            app_user_id_hint: None,
            attention: None,
        }
    }
}

impl MappedEvent {
    /// An event this adapter records but draws nothing from.
    fn other() -> Self {
        MappedEvent::default()
    }
}

/// A known event type whose `data.object` is not the object that type
/// carries, or cannot be read as it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {expected} in this {event_type} event cannot be read: {reason}")]
pub struct UnreadableObject {
    pub event_type: String,
    pub expected: &'static str,
    pub reason: String,
}

/// One event as a family's mapping sees it.
struct Event<'a> {
    event_type: &'a str,
    object: Option<&'a Value>,
    previous_attributes: Option<&'a Map<String, Value>>,
    options: &'a MapOptions<'a>,
}

/// Maps the rest of the event type after the family's prefix (`updated` for
/// `customer.subscription.updated`).
type FamilyMapper = fn(&str, &Event<'_>) -> Result<MappedEvent, UnreadableObject>;

/// The event types this mapping draws something from: what the webhook
/// endpoint must be subscribed to (the connection check compares its
/// `enabled_events`), and what a backfill asks `/v1/events` for (at most 20
/// `types[]`, Stripe's limit). `customer.subscription.trial_will_end` and
/// the `pending_update_*` types are left out: they only repeat the state the
/// `updated` events carry.
pub const MAPPED_EVENT_TYPES: &[&str] = &[
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "invoice.paid",
    "invoice.payment_failed",
    "invoice.payment_action_required",
    "charge.refunded",
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
];

/// The event families by type prefix; any other type is OTHER.
const FAMILIES: &[(&str, FamilyMapper)] = &[
    ("customer.subscription.", subscription::map),
    ("invoice.", invoice::map),
    ("charge.", charge::map),
    ("checkout.session.", checkout::map),
];

/// Maps one event. Unknown event types are OTHER; a known type whose object
/// cannot be read is an [`UnreadableObject`].
pub fn map_event(
    event_type: &str,
    object: Option<&Value>,
    previous_attributes: Option<&Map<String, Value>>,
    options: &MapOptions<'_>,
) -> Result<MappedEvent, UnreadableObject> {
    let event = Event {
        event_type,
        object,
        previous_attributes,
        options,
    };
    FAMILIES
        .iter()
        .find_map(|(prefix, map)| Some(map(event_type.strip_prefix(prefix)?, &event)))
        .unwrap_or_else(|| Ok(MappedEvent::other()))
}

impl<'a> Event<'a> {
    fn unreadable(&self, expected: &'static str, reason: impl Into<String>) -> UnreadableObject {
        UnreadableObject {
            event_type: self.event_type.to_string(),
            expected,
            reason: reason.into(),
        }
    }

    /// Reads `data.object` as `T`, after checking it is a `kind` object (when
    /// it says what it is).
    fn read<T: Deserialize<'a>>(&self, kind: &'static str) -> Result<T, UnreadableObject> {
        let Some(object) = self.object.filter(|o| o.is_object()) else {
            return Err(self.unreadable(kind, "data.object is missing"));
        };
        if let Some(actual) = object.get("object").and_then(Value::as_str) {
            if actual != kind {
                return Err(self.unreadable(kind, format!("data.object is a {actual:?}")));
            }
        }
        T::deserialize(object).map_err(|e| self.unreadable(kind, e.to_string()))
    }

    /// The configured metadata value when present (first of `metadata` in
    /// order), else the customer id.
    fn app_user_id_hint(
        &self,
        metadata: &[Option<&Metadata>],
        customer: &Option<Expandable<IdOnly>>,
    ) -> Option<String> {
        self.options
            .app_user_id_metadata_key
            .and_then(|key| {
                metadata
                    .iter()
                    .flatten()
                    .find_map(|m| m.get(key).and_then(Value::as_str).filter(|v| !v.is_empty()))
            })
            .map(str::to_owned)
            .or_else(|| id_of(customer))
    }
}

/// The id of a field that may be expanded (never empty).
fn id_of<T: HasId>(field: &Option<Expandable<T>>) -> Option<String> {
    field.as_ref()?.id().map(str::to_owned)
}

fn seconds_to_ms(seconds: i64) -> Option<i64> {
    seconds.checked_mul(1000)
}

/// An amount in minor units as (major units, upper-case ISO code).
fn money(amount: Option<i64>, currency: Option<&str>) -> (Option<f64>, Option<String>) {
    let currency = currency
        .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()))
        .map(|c| c.to_ascii_uppercase());
    let price = match (amount, &currency) {
        (Some(amount), Some(code)) => Some(amount as f64 / 10f64.powi(minor_unit_digits(code))),
        _ => None,
    };
    (price, currency)
}

/// Decimal digits of Stripe's amounts per currency (docs.stripe.com/currencies):
/// zero-decimal currencies are sent in major units, three-decimal ones in
/// thousandths, the rest (ISK and HUF included, which Stripe keeps
/// two-decimal for compatibility) in hundredths.
fn minor_unit_digits(code: &str) -> i32 {
    match code {
        "BIF" | "CLP" | "DJF" | "GNF" | "JPY" | "KMF" | "KRW" | "MGA" | "PYG" | "RWF" | "UGX"
        | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "JOD" | "KWD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Maps one event with the default options.
    pub(super) fn map(event_type: &str, object: Value, previous: Option<Value>) -> MappedEvent {
        let previous = previous.and_then(|p| p.as_object().cloned());
        map_event(
            event_type,
            Some(&object),
            previous.as_ref(),
            &MapOptions::default(),
        )
        .expect("maps")
    }

    #[test]
    fn unknown_types_are_other_and_known_ones_need_their_object() {
        let m = map(
            "customer.created",
            json!({"id": "cus_1", "object": "customer"}),
            None,
        );
        assert_eq!(m, MappedEvent::other());
        let err = map_event(
            "customer.subscription.updated",
            Some(&json!({"id": "in_1", "object": "invoice"})),
            None,
            &MapOptions::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("\"invoice\""), "{err}");
        assert!(map_event("invoice.paid", None, None, &MapOptions::default()).is_err());
        assert!(map_event(
            "invoice.paid",
            Some(&json!({"object": "invoice", "amount_paid": "lots"})),
            None,
            &MapOptions::default()
        )
        .is_err());
    }

    #[test]
    fn mapped_types_belong_to_a_family_and_fit_one_events_request() {
        assert!(MAPPED_EVENT_TYPES.len() <= 20);
        for t in MAPPED_EVENT_TYPES {
            assert!(
                FAMILIES.iter().any(|(prefix, _)| t.starts_with(prefix)),
                "{t}"
            );
        }
    }

    #[test]
    fn currencies_and_minor_units() {
        assert_eq!(
            money(Some(999), Some("usd")),
            (Some(9.99), Some("USD".into()))
        );
        assert_eq!(
            money(Some(500), Some("jpy")),
            (Some(500.0), Some("JPY".into()))
        );
        assert_eq!(
            money(Some(1230), Some("kwd")),
            (Some(1.23), Some("KWD".into()))
        );
        assert_eq!(money(Some(1), Some("currency")), (None, None));
        assert_eq!(money(None, Some("usd")), (None, Some("USD".into())));
    }
}
