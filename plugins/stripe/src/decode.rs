//! Stripe's wire types: the event envelope and the few objects whose fields
//! the mapping reads. Lenient on purpose: every field is optional, unknown
//! fields and unknown enum values (kept as strings) pass, and both API shapes
//! are modelled: before 2025-03-31.basil (`subscription.current_period_end`,
//! `invoice.subscription`) and after (`items.data[].current_period_end`,
//! `invoice.parent.subscription_details.subscription`). The endpoint's API
//! version decides the shape and is pinned on Stripe's side.

use serde::Deserialize;
use serde_json::{Map, Value};

/// The body is not a Stripe event: 400 with one of these codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the body is not JSON: {0}")]
    InvalidJson(String),
    #[error("the body is not a Stripe event: {0}")]
    MalformedEvent(String),
}

impl DecodeError {
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::InvalidJson(_) => "invalid_json",
            DecodeError::MalformedEvent(_) => "malformed_event",
        }
    }
}

/// A parsed event: the whole JSON (kept for the operator) and its envelope.
#[derive(Debug, Clone)]
pub struct ParsedEvent {
    pub json: Value,
    pub envelope: EventEnvelope,
}

impl ParsedEvent {
    /// `data.object`, the resource the event is about.
    pub fn object(&self) -> Option<&Value> {
        self.json.get("data")?.get("object")
    }

    /// `data.previous_attributes`, the old values of what an `*.updated`
    /// event changed.
    pub fn previous_attributes(&self) -> Option<&Map<String, Value>> {
        self.json
            .get("data")?
            .get("previous_attributes")?
            .as_object()
    }
}

/// The event envelope, all optional but `id`: an authenticated body that
/// has an id can be de-duplicated and acknowledged, whatever else it lacks
/// (Stripe's own libraries accept `{"id":…,"object":"event"}`).
#[derive(Debug, Clone, Deserialize)]
pub struct EventEnvelope {
    pub id: String,
    pub object: Option<String>,
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    pub created: Option<Created>,
    pub livemode: Option<bool>,
    /// The connected account, for Connect events.
    pub account: Option<String>,
    pub api_version: Option<String>,
}

/// `created`: Unix seconds on snapshot events, an RFC 3339 string on v2
/// "thin" events.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Created {
    Unix(i64),
    Text(String),
}

/// The objects an event's `object` field names.
pub const SNAPSHOT_EVENT: &str = "event";
pub const THIN_EVENT: &str = "v2.core.event";

/// Parses the verified body. Not JSON → `invalid_json`; JSON that is not an
/// event (not an object, no string `id`, another `object`) → `malformed_event`.
pub fn parse_event(body: &[u8]) -> Result<ParsedEvent, DecodeError> {
    let json: Value =
        serde_json::from_slice(body).map_err(|e| DecodeError::InvalidJson(e.to_string()))?;
    if !json.is_object() {
        return Err(DecodeError::MalformedEvent(
            "the JSON is not an object".into(),
        ));
    }
    let envelope = EventEnvelope::deserialize(&json)
        .map_err(|e| DecodeError::MalformedEvent(e.to_string()))?;
    if envelope.id.is_empty() {
        return Err(DecodeError::MalformedEvent("the event id is empty".into()));
    }
    match envelope.object.as_deref() {
        None | Some(SNAPSHOT_EVENT) | Some(THIN_EVENT) => {}
        Some(other) => {
            return Err(DecodeError::MalformedEvent(format!(
                "`object` is {other:?}, not \"event\""
            )))
        }
    }
    Ok(ParsedEvent { json, envelope })
}

/// A field that is an id, or the object itself when expanded.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Expandable<T> {
    Id(String),
    Object(Box<T>),
}

/// What every expandable object has.
pub trait HasId {
    fn id(&self) -> Option<&str>;
}

impl<T: HasId> Expandable<T> {
    pub fn id(&self) -> Option<&str> {
        let id = match self {
            Expandable::Id(id) => Some(id.as_str()),
            Expandable::Object(object) => object.id(),
        };
        id.filter(|id| !id.is_empty())
    }

    pub fn object(&self) -> Option<&T> {
        match self {
            Expandable::Id(_) => None,
            Expandable::Object(object) => Some(object),
        }
    }
}

/// An expanded object read only for its id (customer, payment intent…).
#[derive(Debug, Clone, Deserialize)]
pub struct IdOnly {
    pub id: Option<String>,
}

impl HasId for IdOnly {
    fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }
}

/// Stripe's metadata (string values; anything else is ignored when read).
pub type Metadata = Map<String, Value>;

#[derive(Debug, Clone, Deserialize)]
pub struct List<T> {
    #[serde(default = "Vec::new")]
    pub data: Vec<T>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Price {
    pub id: Option<String>,
    pub unit_amount: Option<i64>,
    pub currency: Option<String>,
}

/// The pre-Prices object (`plan`), still sent beside `price`.
#[derive(Debug, Clone, Deserialize)]
pub struct Plan {
    pub id: Option<String>,
    pub amount: Option<i64>,
    pub currency: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CancellationDetails {
    /// `cancellation_requested`, `payment_failed`, `payment_disputed`.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Subscription {
    pub id: Option<String>,
    /// `incomplete`, `incomplete_expired`, `trialing`, `active`, `past_due`,
    /// `canceled`, `unpaid`, `paused`.
    pub status: Option<String>,
    pub customer: Option<Expandable<IdOnly>>,
    pub cancel_at_period_end: Option<bool>,
    pub cancel_at: Option<i64>,
    pub canceled_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub start_date: Option<i64>,
    /// Before 2025-03-31.basil only.
    pub current_period_start: Option<i64>,
    /// Before 2025-03-31.basil only.
    pub current_period_end: Option<i64>,
    pub items: Option<List<SubscriptionItem>>,
    /// Legacy single-plan subscriptions.
    pub plan: Option<Plan>,
    pub latest_invoice: Option<Expandable<IdOnly>>,
    pub currency: Option<String>,
    pub metadata: Option<Metadata>,
    pub cancellation_details: Option<CancellationDetails>,
}

impl HasId for Subscription {
    fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct SubscriptionItem {
    pub id: Option<String>,
    pub price: Option<Price>,
    pub plan: Option<Plan>,
    pub quantity: Option<i64>,
    /// 2025-03-31.basil and later.
    pub current_period_start: Option<i64>,
    /// 2025-03-31.basil and later.
    pub current_period_end: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Invoice {
    /// Absent on `invoice.upcoming`.
    pub id: Option<String>,
    pub status: Option<String>,
    /// `subscription_cycle`, `subscription_create`, `subscription_update`,
    /// `manual`, …
    pub billing_reason: Option<String>,
    /// Before 2025-03-31.basil.
    pub subscription: Option<Expandable<Subscription>>,
    /// 2025-03-31.basil and later.
    pub parent: Option<InvoiceParent>,
    /// 2022–2025: carries the subscription's metadata.
    pub subscription_details: Option<SubscriptionDetails>,
    pub customer: Option<Expandable<IdOnly>>,
    /// Before 2025-03-31.basil.
    pub payment_intent: Option<Expandable<IdOnly>>,
    pub amount_paid: Option<i64>,
    pub amount_due: Option<i64>,
    pub currency: Option<String>,
    pub created: Option<i64>,
    pub status_transitions: Option<InvoiceStatusTransitions>,
    pub lines: Option<List<InvoiceLine>>,
    pub hosted_invoice_url: Option<String>,
    pub metadata: Option<Metadata>,
}

impl HasId for Invoice {
    fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct InvoiceParent {
    pub subscription_details: Option<SubscriptionDetails>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SubscriptionDetails {
    /// Only under `parent` (2025-03-31.basil and later).
    pub subscription: Option<Expandable<Subscription>>,
    pub metadata: Option<Metadata>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InvoiceStatusTransitions {
    pub paid_at: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InvoiceLine {
    /// Before basil: `subscription` or `invoiceitem`.
    #[serde(rename = "type")]
    pub line_type: Option<String>,
    /// Before basil.
    pub subscription: Option<Expandable<IdOnly>>,
    pub proration: Option<bool>,
    pub period: Option<Period>,
    pub price: Option<Price>,
    pub plan: Option<Plan>,
    /// 2025-03-31.basil and later.
    pub parent: Option<InvoiceLineParent>,
    /// 2025-03-31.basil and later.
    pub pricing: Option<InvoiceLinePricing>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Period {
    pub start: Option<i64>,
    pub end: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InvoiceLineParent {
    pub subscription_item_details: Option<SubscriptionItemDetails>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SubscriptionItemDetails {
    pub subscription: Option<String>,
    pub proration: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InvoiceLinePricing {
    pub price_details: Option<PriceDetails>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PriceDetails {
    pub price: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Charge {
    pub id: Option<String>,
    pub amount: Option<i64>,
    pub amount_refunded: Option<i64>,
    pub refunded: Option<bool>,
    pub currency: Option<String>,
    pub created: Option<i64>,
    pub customer: Option<Expandable<IdOnly>>,
    pub payment_intent: Option<Expandable<IdOnly>>,
    /// Before basil, and only an id unless the endpoint expands it.
    pub invoice: Option<Expandable<Invoice>>,
    pub metadata: Option<Metadata>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CheckoutSession {
    pub id: Option<String>,
    /// `payment`, `subscription`, `setup`.
    pub mode: Option<String>,
    /// `paid`, `unpaid`, `no_payment_required`.
    pub payment_status: Option<String>,
    pub subscription: Option<Expandable<Subscription>>,
    pub payment_intent: Option<Expandable<IdOnly>>,
    pub invoice: Option<Expandable<IdOnly>>,
    pub customer: Option<Expandable<IdOnly>>,
    pub amount_total: Option<i64>,
    pub currency: Option<String>,
    pub created: Option<i64>,
    pub metadata: Option<Metadata>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_event_errors() {
        assert_eq!(
            parse_event(b"this is not valid JSON").unwrap_err().code(),
            "invalid_json"
        );
        assert_eq!(parse_event(b"").unwrap_err().code(), "invalid_json");
        for body in [
            &b"[]"[..],
            b"null",
            b"42",
            b"{}",
            b"{\"id\":42}",
            b"{\"id\":\"\"}",
            b"{\"id\":\"sub_1\",\"object\":\"subscription\"}",
            b"{\"id\":\"evt_1\",\"object\":7}",
        ] {
            assert_eq!(
                parse_event(body).unwrap_err().code(),
                "malformed_event",
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn minimal_events_parse() {
        let e = parse_event(b"{\"id\":\"evt_1\",\"object\":\"event\"}").expect("event");
        assert_eq!(e.envelope.id, "evt_1");
        assert!(e.envelope.event_type.is_none());
        assert!(e.object().is_none());
        let thin = parse_event(
            b"{\"id\":\"evt_2\",\"object\":\"v2.core.event\",\"type\":\"v1.billing.meter.no_meter_found\",\"created\":\"2024-09-17T06:20:52.246Z\",\"livemode\":false}",
        )
        .expect("thin event");
        assert!(matches!(thin.envelope.created, Some(Created::Text(_))));
    }

    #[test]
    fn expandable_fields_take_ids_or_objects() {
        let c: Charge = serde_json::from_str(
            r#"{"id":"ch_1","customer":{"id":"cus_1","object":"customer"},"invoice":"in_1","payment_intent":null}"#,
        )
        .expect("charge");
        assert_eq!(c.customer.as_ref().and_then(Expandable::id), Some("cus_1"));
        assert_eq!(c.invoice.as_ref().and_then(Expandable::id), Some("in_1"));
        assert!(c.invoice.as_ref().and_then(Expandable::object).is_none());
        assert!(c.payment_intent.is_none());
    }
}
