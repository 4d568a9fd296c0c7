//! From a Stripe event to storehook's normalized event: which subscription it
//! is about, what happened, and the state it implies.
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

use serde::Deserialize;
use serde_json::{Map, Value};
use storehook_core::{EventDetails, EventType, ImpliedState, SubscriptionStatus};

use crate::decode::{
    Charge, CheckoutSession, Expandable, HasId, IdOnly, Invoice, InvoiceLine, Metadata,
    Subscription,
};

/// What the mapping needs from the configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct MapOptions<'a> {
    /// The metadata key holding the operator's user id, if configured.
    pub app_user_id_metadata_key: Option<&'a str>,
}

/// The normalized content of one event.
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

impl MappedEvent {
    /// An event this adapter records but draws nothing from.
    fn other() -> Self {
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

/// A known event type whose `data.object` is not the object that type
/// carries, or cannot be read as it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {expected} in this {event_type} event cannot be read: {reason}")]
pub struct UnreadableObject {
    pub event_type: String,
    pub expected: &'static str,
    pub reason: String,
}

/// Maps one event. Unknown event types are OTHER; a known type whose object
/// cannot be read is an [`UnreadableObject`].
pub fn map_event(
    event_type: &str,
    object: Option<&Value>,
    previous_attributes: Option<&Map<String, Value>>,
    options: &MapOptions<'_>,
) -> Result<MappedEvent, UnreadableObject> {
    if let Some(change) = event_type.strip_prefix("customer.subscription.") {
        let sub: Subscription = read_object(event_type, object, "subscription")?;
        if sub.id().is_none() {
            return Err(unreadable(event_type, "subscription", "it has no id"));
        }
        return Ok(map_subscription_event(
            change,
            &sub,
            previous_attributes,
            options,
        ));
    }
    if let Some(change) = event_type.strip_prefix("invoice.") {
        let invoice: Invoice = read_object(event_type, object, "invoice")?;
        return Ok(map_invoice_event(change, &invoice, options));
    }
    if event_type == "charge.refunded" {
        let charge: Charge = read_object(event_type, object, "charge")?;
        return Ok(map_charge_refunded(&charge, options));
    }
    if let Some(change) = event_type.strip_prefix("checkout.session.") {
        let session: CheckoutSession = read_object(event_type, object, "checkout.session")?;
        return Ok(map_checkout_session_event(change, &session, options));
    }
    Ok(MappedEvent::other())
}

fn unreadable(
    event_type: &str,
    expected: &'static str,
    reason: impl Into<String>,
) -> UnreadableObject {
    UnreadableObject {
        event_type: event_type.to_string(),
        expected,
        reason: reason.into(),
    }
}

/// Reads `data.object` as `T`, after checking it is a `kind` object (when it
/// says what it is).
fn read_object<'v, T: Deserialize<'v>>(
    event_type: &str,
    object: Option<&'v Value>,
    kind: &'static str,
) -> Result<T, UnreadableObject> {
    let Some(object) = object.filter(|o| o.is_object()) else {
        return Err(unreadable(event_type, kind, "data.object is missing"));
    };
    if let Some(actual) = object.get("object").and_then(Value::as_str) {
        if actual != kind {
            return Err(unreadable(
                event_type,
                kind,
                format!("data.object is a {actual:?}"),
            ));
        }
    }
    T::deserialize(object).map_err(|e| unreadable(event_type, kind, e.to_string()))
}

// ---------------------------------------------------------------------------
// customer.subscription.*

/// Stripe's subscription status as storehook's. `incomplete` (and any status
/// Stripe may add) says nothing: see the module docs.
pub fn subscription_status(status: &str) -> Option<SubscriptionStatus> {
    match status {
        "active" | "trialing" => Some(SubscriptionStatus::Active),
        "past_due" => Some(SubscriptionStatus::BillingRetry),
        "unpaid" | "incomplete_expired" | "canceled" => Some(SubscriptionStatus::Expired),
        "paused" => Some(SubscriptionStatus::Paused),
        _ => None,
    }
}

fn has_ended(status: Option<&str>) -> bool {
    matches!(status, Some("canceled" | "incomplete_expired"))
}

fn map_subscription_event(
    change: &str,
    sub: &Subscription,
    previous: Option<&Map<String, Value>>,
    options: &MapOptions<'_>,
) -> MappedEvent {
    let event_type = match change {
        "created" => EventType::InitialPurchase,
        "updated" => classify_subscription_update(sub, previous),
        "deleted" => EventType::Expiration,
        "paused" => EventType::SubscriptionPaused,
        "resumed" => EventType::SubscriptionResumed,
        // trial_will_end (a reminder), pending_update_applied/expired, and
        // whatever Stripe adds: the state below still applies.
        _ => EventType::Other,
    };
    let state = subscription_state(sub);
    let reason = sub
        .cancellation_details
        .as_ref()
        .and_then(|d| d.reason.clone());
    let (price, currency) = subscription_price(sub);
    let details = EventDetails {
        transaction_id: sub.latest_invoice.as_ref().and_then(id_of),
        original_transaction_id: sub.id.clone(),
        purchased_at_ms: period_start(sub).and_then(seconds_to_ms),
        cancel_reason: if event_type == EventType::Cancellation {
            reason.clone()
        } else {
            None
        },
        expiration_reason: if event_type == EventType::Expiration {
            reason.or_else(|| sub.status.clone().filter(|s| s == "incomplete_expired"))
        } else {
            None
        },
        price,
        currency,
    };
    MappedEvent {
        event_type,
        subscription_key: sub.id.clone(),
        product_id: state.product_id.clone(),
        state,
        details,
        app_user_id_hint: app_user_id_hint(options, &[sub.metadata.as_ref()], &sub.customer),
        attention: None,
    }
}

/// What a `customer.subscription.updated` was, from `previous_attributes`
/// (the old values of exactly the fields that changed).
fn classify_subscription_update(
    sub: &Subscription,
    previous: Option<&Map<String, Value>>,
) -> EventType {
    let Some(previous) = previous else {
        return EventType::Other;
    };
    if let Some(old) = previous.get("status").and_then(Value::as_str) {
        let new = sub.status.as_deref().unwrap_or_default();
        if old != new {
            match new {
                "past_due" | "unpaid" => return EventType::BillingIssue,
                "active" | "trialing" if matches!(old, "past_due" | "unpaid") => {
                    return EventType::Renewal
                }
                "canceled" | "incomplete_expired" => return EventType::Expiration,
                // trialing→active and incomplete→active come with an
                // invoice.paid; paused↔active with .paused/.resumed.
                _ => {}
            }
        }
    }
    if let Some(old) = previous
        .get("cancel_at_period_end")
        .and_then(Value::as_bool)
    {
        match (old, sub.cancel_at_period_end) {
            (false, Some(true)) => return EventType::Cancellation,
            (true, Some(false)) => return EventType::Uncancellation,
            _ => {}
        }
    } else if let Some(old) = previous.get("cancel_at") {
        // Newer ways to cancel set `cancel_at` (a date, possibly the period
        // end) without `cancel_at_period_end`.
        match (old.as_i64(), sub.cancel_at) {
            (None, Some(_)) => return EventType::Cancellation,
            (Some(_), None) => return EventType::Uncancellation,
            _ => {}
        }
    }
    if price_changed(sub, previous) {
        return EventType::ProductChange;
    }
    EventType::Other
}

fn price_changed(sub: &Subscription, previous: &Map<String, Value>) -> bool {
    if let Some(old_items) = previous.get("items") {
        let mut old: Vec<&str> = old_items
            .get("data")
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(price_id_in_json_item).collect())
            .unwrap_or_default();
        if !old.is_empty() {
            let mut new: Vec<&str> = sub
                .items
                .iter()
                .flat_map(|l| &l.data)
                .filter_map(|item| {
                    item.price
                        .as_ref()
                        .and_then(|p| p.id.as_deref())
                        .or_else(|| item.plan.as_ref().and_then(|p| p.id.as_deref()))
                })
                .collect();
            old.sort_unstable();
            new.sort_unstable();
            if old != new {
                return true;
            }
        }
    }
    if let Some(old_plan) = previous
        .get("plan")
        .and_then(|p| p.get("id"))
        .and_then(Value::as_str)
    {
        return sub.plan.as_ref().and_then(|p| p.id.as_deref()) != Some(old_plan);
    }
    false
}

fn price_id_in_json_item(item: &Value) -> Option<&str> {
    item.get("price")
        .and_then(|p| p.get("id"))
        .or_else(|| item.get("plan").and_then(|p| p.get("id")))
        .and_then(Value::as_str)
}

/// The state a subscription object implies.
pub fn subscription_state(sub: &Subscription) -> ImpliedState {
    let raw_status = sub.status.as_deref();
    let status = raw_status.and_then(subscription_status);
    let period_end = period_end(sub);
    let ended = has_ended(raw_status);
    // The date `cancel_at` ends it, if that comes before the period renews.
    let cancels_before_renewal = match (sub.cancel_at, period_end) {
        (Some(at), Some(end)) => at <= end,
        (Some(_), None) => true,
        _ => false,
    };
    let expires_at = if status.is_none() {
        // `incomplete`: the period is not paid for, so it expires nothing.
        None
    } else if ended {
        sub.ended_at.or(period_end)
    } else if cancels_before_renewal {
        sub.cancel_at
    } else {
        period_end
    };
    let auto_renew = if ended {
        Some(false)
    } else {
        sub.cancel_at_period_end
            .map(|at_period_end| !at_period_end && !cancels_before_renewal)
    };
    ImpliedState {
        status,
        expires_at_ms: expires_at.and_then(seconds_to_ms),
        auto_renew,
        product_id: subscription_product_id(sub),
    }
}

/// The period end: item-level since 2025-03-31.basil (the latest, should
/// items differ), subscription-level before.
fn period_end(sub: &Subscription) -> Option<i64> {
    sub.items
        .iter()
        .flat_map(|l| &l.data)
        .filter_map(|item| item.current_period_end)
        .max()
        .or(sub.current_period_end)
}

fn period_start(sub: &Subscription) -> Option<i64> {
    sub.items
        .iter()
        .flat_map(|l| &l.data)
        .filter_map(|item| item.current_period_start)
        .max()
        .or(sub.current_period_start)
        .or(sub.start_date)
}

/// The first item's price id (the plan id on legacy objects). A price, not a
/// product: monthly and yearly prices of one product are what an app store
/// would call two products.
fn subscription_product_id(sub: &Subscription) -> Option<String> {
    let first = sub.items.as_ref().and_then(|l| l.data.first());
    first
        .and_then(|item| {
            item.price
                .as_ref()
                .and_then(|p| p.id.clone())
                .or_else(|| item.plan.as_ref().and_then(|p| p.id.clone()))
        })
        .or_else(|| sub.plan.as_ref().and_then(|p| p.id.clone()))
        .filter(|id| !id.is_empty())
}

/// The recurring amount (Σ unit amount × quantity) in major units, if every
/// item has a unit amount (tiered and metered prices have none).
fn subscription_price(sub: &Subscription) -> (Option<f64>, Option<String>) {
    let items: Vec<_> = sub.items.iter().flat_map(|l| &l.data).collect();
    let currency = items
        .iter()
        .find_map(|item| item.price.as_ref().and_then(|p| p.currency.clone()))
        .or_else(|| sub.currency.clone())
        .or_else(|| sub.plan.as_ref().and_then(|p| p.currency.clone()));
    let mut total: Option<i64> = if items.is_empty() {
        sub.plan.as_ref().and_then(|p| p.amount)
    } else {
        Some(0)
    };
    for item in &items {
        let unit = item
            .price
            .as_ref()
            .and_then(|p| p.unit_amount)
            .or_else(|| item.plan.as_ref().and_then(|p| p.amount));
        total = match (total, unit) {
            (Some(t), Some(u)) => u
                .checked_mul(item.quantity.unwrap_or(1))
                .and_then(|v| t.checked_add(v)),
            _ => None,
        };
    }
    money(total, currency)
}

// ---------------------------------------------------------------------------
// invoice.*

/// The invoice's subscription: `invoice.subscription` before basil,
/// `invoice.parent.subscription_details.subscription` since.
pub fn invoice_subscription_id(invoice: &Invoice) -> Option<String> {
    invoice.subscription.as_ref().and_then(id_of).or_else(|| {
        invoice
            .parent
            .as_ref()?
            .subscription_details
            .as_ref()?
            .subscription
            .as_ref()
            .and_then(id_of)
    })
}

fn map_invoice_event(change: &str, invoice: &Invoice, options: &MapOptions<'_>) -> MappedEvent {
    let subscription = invoice_subscription_id(invoice);
    let billing_reason = invoice.billing_reason.as_deref().unwrap_or_default();
    let subscription_lines = subscription
        .as_deref()
        .map(|sub| subscription_lines(invoice, sub))
        .unwrap_or_default();
    let mut state = ImpliedState {
        product_id: subscription_lines.iter().find_map(|l| line_price_id(l)),
        ..ImpliedState::default()
    };
    let paid_for_a_period = matches!(
        billing_reason,
        "subscription_cycle" | "subscription_create" | "subscription_update"
    );
    let mut attention = None;
    let event_type = match (change, &subscription) {
        ("paid", Some(_)) => {
            if paid_for_a_period {
                state.status = Some(SubscriptionStatus::Active);
                state.expires_at_ms = subscription_lines
                    .iter()
                    .filter_map(|l| l.period.as_ref()?.end)
                    .max()
                    .and_then(seconds_to_ms);
            }
            if billing_reason == "subscription_cycle" {
                EventType::Renewal
            } else {
                // subscription_create: customer.subscription.created is the
                // INITIAL_PURCHASE; the others are not renewals.
                EventType::Other
            }
        }
        ("paid", None) => {
            state.status = Some(SubscriptionStatus::Active);
            EventType::NonRenewingPurchase
        }
        ("payment_failed", Some(_)) => {
            // A failed renewal puts the subscription in past_due; a failed
            // first payment leaves it incomplete (no status yet).
            if billing_reason != "subscription_create" {
                state.status = Some(SubscriptionStatus::BillingRetry);
            }
            EventType::BillingIssue
        }
        ("payment_action_required", _) => {
            attention = Some(format!(
                "Invoice {} needs the customer to authenticate the payment (3-D Secure/SCA){}",
                invoice.id.as_deref().unwrap_or("(no id)"),
                invoice
                    .hosted_invoice_url
                    .as_deref()
                    .map(|url| format!(": {url}"))
                    .unwrap_or_default()
            ));
            EventType::Other
        }
        _ => EventType::Other,
    };
    let subscription_key = subscription.clone().or_else(|| {
        invoice
            .payment_intent
            .as_ref()
            .and_then(id_of)
            .or_else(|| invoice.id.clone())
    });
    let amount = if change == "paid" {
        invoice.amount_paid
    } else {
        invoice.amount_due
    };
    let (price, currency) = money(amount, invoice.currency.clone());
    let purchased_at = if change == "paid" {
        invoice
            .status_transitions
            .as_ref()
            .and_then(|t| t.paid_at)
            .or(invoice.created)
    } else {
        invoice.created
    };
    let expanded_subscription = invoice.subscription.as_ref().and_then(Expandable::object);
    let metadata = [
        invoice.metadata.as_ref(),
        invoice
            .parent
            .as_ref()
            .and_then(|p| p.subscription_details.as_ref())
            .and_then(|d| d.metadata.as_ref()),
        invoice
            .subscription_details
            .as_ref()
            .and_then(|d| d.metadata.as_ref()),
        expanded_subscription.and_then(|s| s.metadata.as_ref()),
    ];
    MappedEvent {
        event_type,
        subscription_key,
        product_id: state.product_id.clone(),
        state,
        details: EventDetails {
            transaction_id: invoice.id.clone(),
            original_transaction_id: subscription,
            purchased_at_ms: purchased_at.and_then(seconds_to_ms),
            cancel_reason: None,
            expiration_reason: None,
            price,
            currency,
        },
        app_user_id_hint: app_user_id_hint(options, &metadata, &invoice.customer),
        attention,
    }
}

/// The invoice's lines that bill the subscription's own period (not
/// prorations, not one-off items).
fn subscription_lines<'i>(invoice: &'i Invoice, subscription: &str) -> Vec<&'i InvoiceLine> {
    invoice
        .lines
        .iter()
        .flat_map(|l| &l.data)
        .filter(|line| {
            let details = line
                .parent
                .as_ref()
                .and_then(|p| p.subscription_item_details.as_ref());
            let of_subscription = details
                .and_then(|d| d.subscription.as_deref())
                .map(|s| s == subscription)
                .or_else(|| {
                    line.subscription
                        .as_ref()
                        .and_then(|s| s.id())
                        .map(|s| s == subscription)
                })
                .unwrap_or(line.line_type.as_deref() == Some("subscription"));
            let proration = line.proration.unwrap_or(false)
                || details.and_then(|d| d.proration).unwrap_or(false);
            of_subscription && !proration
        })
        .collect()
}

fn line_price_id(line: &InvoiceLine) -> Option<String> {
    line.pricing
        .as_ref()
        .and_then(|p| p.price_details.as_ref())
        .and_then(|d| d.price.clone())
        .or_else(|| line.price.as_ref().and_then(|p| p.id.clone()))
        .or_else(|| line.plan.as_ref().and_then(|p| p.id.clone()))
        .filter(|id| !id.is_empty())
}

// ---------------------------------------------------------------------------
// charge.refunded

fn map_charge_refunded(charge: &Charge, options: &MapOptions<'_>) -> MappedEvent {
    // A webhook carries `charge.invoice` as an id unless the endpoint expands
    // it; only an expanded invoice says which subscription was refunded.
    let subscription = charge
        .invoice
        .as_ref()
        .and_then(Expandable::object)
        .and_then(invoice_subscription_id);
    let one_off_key = charge
        .payment_intent
        .as_ref()
        .and_then(id_of)
        .or_else(|| charge.id.clone());
    let fully_refunded = charge.refunded == Some(true)
        || matches!((charge.amount_refunded, charge.amount), (Some(r), Some(a)) if a > 0 && r >= a);
    // A refund does not end a subscription (Stripe cancels it separately, if
    // at all); a one-off purchase refunded in full is no longer owned.
    let status = (subscription.is_none() && fully_refunded).then_some(SubscriptionStatus::Revoked);
    let (price, currency) = money(charge.amount_refunded, charge.currency.clone());
    MappedEvent {
        event_type: EventType::Refund,
        subscription_key: subscription.clone().or(one_off_key),
        state: ImpliedState {
            status,
            ..ImpliedState::default()
        },
        product_id: None,
        details: EventDetails {
            transaction_id: charge.id.clone(),
            original_transaction_id: subscription,
            purchased_at_ms: charge.created.and_then(seconds_to_ms),
            cancel_reason: None,
            expiration_reason: None,
            price,
            currency,
        },
        app_user_id_hint: app_user_id_hint(options, &[charge.metadata.as_ref()], &charge.customer),
        attention: None,
    }
}

// ---------------------------------------------------------------------------
// checkout.session.*

fn map_checkout_session_event(
    change: &str,
    session: &CheckoutSession,
    options: &MapOptions<'_>,
) -> MappedEvent {
    let paid = matches!(
        session.payment_status.as_deref(),
        Some("paid" | "no_payment_required")
    );
    let payment_intent = session.payment_intent.as_ref().and_then(id_of);
    let mut state = ImpliedState::default();
    let (event_type, subscription_key) = match session.mode.as_deref() {
        Some("subscription") => {
            let subscription = session.subscription.as_ref().and_then(id_of);
            let granted = subscription.is_some()
                && ((change == "completed" && paid) || change == "async_payment_succeeded");
            if granted {
                state.status = Some(SubscriptionStatus::Active);
            }
            let event_type = if change == "completed" && subscription.is_some() {
                EventType::InitialPurchase
            } else {
                EventType::Other
            };
            (event_type, subscription)
        }
        Some("payment") => {
            let key = payment_intent.clone().or_else(|| session.id.clone());
            let purchased = (change == "completed" && paid) || change == "async_payment_succeeded";
            if purchased {
                state.status = Some(SubscriptionStatus::Active);
                (EventType::NonRenewingPurchase, key)
            } else {
                // unpaid: a delayed payment method; async_payment_* follows.
                (EventType::Other, key)
            }
        }
        _ => (EventType::Other, None),
    };
    let (price, currency) = money(session.amount_total, session.currency.clone());
    MappedEvent {
        event_type,
        subscription_key,
        state,
        product_id: None,
        details: EventDetails {
            transaction_id: session.invoice.as_ref().and_then(id_of).or(payment_intent),
            original_transaction_id: session.subscription.as_ref().and_then(id_of),
            purchased_at_ms: session.created.and_then(seconds_to_ms),
            cancel_reason: None,
            expiration_reason: None,
            price,
            currency,
        },
        app_user_id_hint: app_user_id_hint(
            options,
            &[session.metadata.as_ref()],
            &session.customer,
        ),
        attention: None,
    }
}

// ---------------------------------------------------------------------------
// shared

fn id_of<T: HasId>(field: &Expandable<T>) -> Option<String> {
    field.id().map(str::to_owned)
}

/// The configured metadata value when present (first of `metadata` in
/// order), else the customer id.
fn app_user_id_hint(
    options: &MapOptions<'_>,
    metadata: &[Option<&Metadata>],
    customer: &Option<Expandable<IdOnly>>,
) -> Option<String> {
    options
        .app_user_id_metadata_key
        .and_then(|key| {
            metadata
                .iter()
                .flatten()
                .find_map(|m| m.get(key).and_then(Value::as_str).filter(|v| !v.is_empty()))
        })
        .map(str::to_owned)
        .or_else(|| customer.as_ref().and_then(id_of))
}

fn seconds_to_ms(seconds: i64) -> Option<i64> {
    seconds.checked_mul(1000)
}

/// An amount in minor units as (major units, upper-case ISO code).
fn money(amount: Option<i64>, currency: Option<String>) -> (Option<f64>, Option<String>) {
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

    fn map(event_type: &str, object: Value, previous: Option<Value>) -> MappedEvent {
        let previous = previous.and_then(|p| p.as_object().cloned());
        map_event(
            event_type,
            Some(&object),
            previous.as_ref(),
            &MapOptions::default(),
        )
        .expect("maps")
    }

    fn subscription(extra: Value) -> Value {
        let mut base = json!({
            "id": "sub_1", "object": "subscription", "status": "active", "customer": "cus_1",
            "cancel_at_period_end": false, "cancel_at": null, "ended_at": null,
            "items": {"object": "list", "data": [{
                "id": "si_1", "quantity": 1,
                "price": {"id": "price_month", "unit_amount": 999, "currency": "usd"},
                "current_period_start": 1_767_225_600, "current_period_end": 1_769_904_000
            }]},
            "latest_invoice": "in_1", "metadata": {"uid": "user_7"}
        });
        if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        base
    }

    #[test]
    fn status_table() {
        use SubscriptionStatus::*;
        for (stripe, ours) in [
            ("active", Some(Active)),
            ("trialing", Some(Active)),
            ("past_due", Some(BillingRetry)),
            ("unpaid", Some(Expired)),
            ("incomplete_expired", Some(Expired)),
            ("canceled", Some(Expired)),
            ("paused", Some(Paused)),
            ("incomplete", None),
            ("something_new", None),
        ] {
            assert_eq!(subscription_status(stripe), ours, "{stripe}");
        }
    }

    #[test]
    fn updated_is_classified_by_previous_attributes() {
        use EventType::*;
        // (fields now, previous_attributes, expected)
        let cases = [
            (
                r#"{"status":"past_due"}"#,
                r#"{"status":"active"}"#,
                BillingIssue,
            ),
            (
                r#"{"status":"unpaid"}"#,
                r#"{"status":"past_due"}"#,
                BillingIssue,
            ),
            (
                r#"{"status":"active"}"#,
                r#"{"status":"past_due"}"#,
                Renewal,
            ),
            (r#"{"status":"active"}"#, r#"{"status":"trialing"}"#, Other),
            (
                r#"{"status":"active"}"#,
                r#"{"status":"incomplete"}"#,
                Other,
            ),
            (
                r#"{"status":"canceled"}"#,
                r#"{"status":"active"}"#,
                Expiration,
            ),
            (
                r#"{"cancel_at_period_end":true}"#,
                r#"{"cancel_at_period_end":false}"#,
                Cancellation,
            ),
            (
                r#"{"cancel_at_period_end":false}"#,
                r#"{"cancel_at_period_end":true}"#,
                Uncancellation,
            ),
            (
                r#"{"cancel_at":1769904000}"#,
                r#"{"cancel_at":null}"#,
                Cancellation,
            ),
            ("{}", r#"{"cancel_at":1769904000}"#, Uncancellation),
            (
                "{}",
                r#"{"items":{"data":[{"id":"si_1","price":{"id":"price_year"}}]}}"#,
                ProductChange,
            ),
            // A renewal moves the item period; the price is unchanged.
            (
                "{}",
                r#"{"items":{"data":[{"id":"si_1","price":{"id":"price_month"},"current_period_end":1}]}}"#,
                Other,
            ),
            (
                r#"{"plan":{"id":"plan_b"}}"#,
                r#"{"plan":{"id":"plan_a"}}"#,
                ProductChange,
            ),
            ("{}", r#"{"schedule":"sub_sched_1"}"#, Other),
            (
                "{}",
                r#"{"current_period_end":1,"latest_invoice":"in_0"}"#,
                Other,
            ),
        ];
        for (i, (now, prev, expected)) in cases.into_iter().enumerate() {
            let now: Value = serde_json::from_str(now).expect("case JSON");
            let prev: Value = serde_json::from_str(prev).expect("case JSON");
            let m = map(
                "customer.subscription.updated",
                subscription(now),
                Some(prev),
            );
            assert_eq!(m.event_type, expected, "case {i}");
        }
        let m = map(
            "customer.subscription.updated",
            subscription(json!({})),
            None,
        );
        assert_eq!(m.event_type, Other);
    }

    #[test]
    fn state_from_a_subscription() {
        let m = map(
            "customer.subscription.created",
            subscription(json!({})),
            None,
        );
        assert_eq!(m.event_type, EventType::InitialPurchase);
        assert_eq!(m.subscription_key.as_deref(), Some("sub_1"));
        assert_eq!(m.state.status, Some(SubscriptionStatus::Active));
        assert_eq!(m.state.expires_at_ms, Some(1_769_904_000_000));
        assert_eq!(m.state.auto_renew, Some(true));
        assert_eq!(m.product_id.as_deref(), Some("price_month"));
        assert_eq!(m.details.price, Some(9.99));
        assert_eq!(m.details.currency.as_deref(), Some("USD"));
        assert_eq!(m.details.transaction_id.as_deref(), Some("in_1"));
        assert_eq!(m.details.purchased_at_ms, Some(1_767_225_600_000));
        assert_eq!(m.app_user_id_hint.as_deref(), Some("cus_1"));

        // Pre-basil: the period lives on the subscription.
        let old = json!({"id": "sub_2", "object": "subscription", "status": "trialing",
            "current_period_end": 1_650_998_510, "cancel_at_period_end": true,
            "plan": {"id": "plan_old", "amount": 500, "currency": "eur"}});
        let m = map("customer.subscription.updated", old, None);
        assert_eq!(m.state.expires_at_ms, Some(1_650_998_510_000));
        assert_eq!(m.state.auto_renew, Some(false));
        assert_eq!(m.product_id.as_deref(), Some("plan_old"));
        assert_eq!(m.details.price, Some(5.0));
    }

    #[test]
    fn incomplete_implies_no_status_and_no_expiry() {
        let m = map(
            "customer.subscription.created",
            subscription(json!({"status": "incomplete"})),
            None,
        );
        assert_eq!(m.event_type, EventType::InitialPurchase);
        assert_eq!(m.state.status, None);
        assert_eq!(m.state.expires_at_ms, None);
        assert_eq!(m.state.auto_renew, Some(true));
    }

    #[test]
    fn ended_subscriptions_expire_at_ended_at() {
        let m = map(
            "customer.subscription.deleted",
            subscription(json!({"status": "canceled", "ended_at": 1_768_000_000,
                "cancellation_details": {"reason": "payment_failed"}})),
            None,
        );
        assert_eq!(m.event_type, EventType::Expiration);
        assert_eq!(m.state.status, Some(SubscriptionStatus::Expired));
        assert_eq!(m.state.expires_at_ms, Some(1_768_000_000_000));
        assert_eq!(m.state.auto_renew, Some(false));
        assert_eq!(
            m.details.expiration_reason.as_deref(),
            Some("payment_failed")
        );
    }

    #[test]
    fn cancel_at_before_period_end_ends_the_subscription_then() {
        let m = map(
            "customer.subscription.updated",
            subscription(json!({"cancel_at": 1_768_000_000})),
            Some(json!({"cancel_at": null})),
        );
        assert_eq!(m.event_type, EventType::Cancellation);
        assert_eq!(m.state.expires_at_ms, Some(1_768_000_000_000));
        assert_eq!(m.state.auto_renew, Some(false));
        // Cancelling later than this period: it still renews now.
        let m = map(
            "customer.subscription.updated",
            subscription(json!({"cancel_at": 1_800_000_000})),
            Some(json!({"cancel_at": null})),
        );
        assert_eq!(m.state.auto_renew, Some(true));
        assert_eq!(m.state.expires_at_ms, Some(1_769_904_000_000));
    }

    #[test]
    fn metadata_hint_when_configured() {
        let object = subscription(json!({}));
        for (key, hint) in [
            (Some("uid"), "user_7"),
            (Some("absent"), "cus_1"),
            (None, "cus_1"),
        ] {
            let options = MapOptions {
                app_user_id_metadata_key: key,
            };
            let m = map_event(
                "customer.subscription.created",
                Some(&object),
                None,
                &options,
            )
            .expect("maps");
            assert_eq!(m.app_user_id_hint.as_deref(), Some(hint), "{key:?}");
        }
    }

    #[test]
    fn invoice_subscription_in_both_shapes() {
        let old = json!({"id": "in_1", "object": "invoice", "subscription": "sub_old"});
        let new = json!({"id": "in_2", "object": "invoice", "subscription": null,
            "parent": {"type": "subscription_details", "subscription_details": {"subscription": "sub_new"}}});
        assert_eq!(
            map("invoice.finalized", old, None)
                .subscription_key
                .as_deref(),
            Some("sub_old")
        );
        assert_eq!(
            map("invoice.finalized", new, None)
                .subscription_key
                .as_deref(),
            Some("sub_new")
        );
    }

    #[test]
    fn invoice_paid_renews_only_for_a_cycle() {
        let invoice = |reason: &str| {
            json!({"id": "in_1", "object": "invoice", "billing_reason": reason, "subscription": "sub_1",
            "amount_paid": 1500, "currency": "jpy", "status_transitions": {"paid_at": 100},
            "lines": {"data": [
                {"type": "subscription", "subscription": "sub_1", "period": {"start": 1, "end": 2_000},
                 "price": {"id": "price_a"}},
                {"type": "subscription", "subscription": "sub_1", "proration": true, "period": {"start": 1, "end": 9_000}},
                {"type": "invoiceitem", "period": {"start": 1, "end": 8_000}}
            ]}})
        };
        let m = map("invoice.paid", invoice("subscription_cycle"), None);
        assert_eq!(m.event_type, EventType::Renewal);
        assert_eq!(m.state.status, Some(SubscriptionStatus::Active));
        assert_eq!(m.state.expires_at_ms, Some(2_000_000));
        assert_eq!(m.product_id.as_deref(), Some("price_a"));
        assert_eq!(m.details.price, Some(1500.0));
        assert_eq!(m.details.purchased_at_ms, Some(100_000));
        let m = map("invoice.paid", invoice("subscription_create"), None);
        assert_eq!(m.event_type, EventType::Other);
        assert_eq!(m.state.status, Some(SubscriptionStatus::Active));
        let m = map("invoice.paid", invoice("subscription_threshold"), None);
        assert_eq!(m.event_type, EventType::Other);
        assert_eq!(m.state.status, None);
        let m = map(
            "invoice.payment_failed",
            invoice("subscription_cycle"),
            None,
        );
        assert_eq!(m.event_type, EventType::BillingIssue);
        assert_eq!(m.state.status, Some(SubscriptionStatus::BillingRetry));
        let m = map(
            "invoice.payment_failed",
            invoice("subscription_create"),
            None,
        );
        assert_eq!(m.event_type, EventType::BillingIssue);
        assert_eq!(m.state.status, None);
    }

    #[test]
    fn refunds() {
        let m = map(
            "charge.refunded",
            json!({"id": "ch_1", "object": "charge", "amount": 2000, "amount_refunded": 500,
                "refunded": false, "currency": "kwd", "payment_intent": "pi_1", "customer": "cus_1"}),
            None,
        );
        assert_eq!(m.event_type, EventType::Refund);
        assert_eq!(m.subscription_key.as_deref(), Some("pi_1"));
        assert_eq!(m.state.status, None);
        assert_eq!(m.details.price, Some(0.5));
        let m = map(
            "charge.refunded",
            json!({"id": "ch_1", "object": "charge", "amount": 2000, "amount_refunded": 2000,
                "refunded": true, "currency": "usd",
                "invoice": {"id": "in_1", "object": "invoice", "subscription": "sub_9"}}),
            None,
        );
        assert_eq!(m.subscription_key.as_deref(), Some("sub_9"));
        assert_eq!(m.state.status, None, "a refund does not end a subscription");
        let m = map(
            "charge.refunded",
            json!({"id": "ch_2", "object": "charge", "amount": 2000, "amount_refunded": 2000, "refunded": true}),
            None,
        );
        assert_eq!(m.subscription_key.as_deref(), Some("ch_2"));
        assert_eq!(m.state.status, Some(SubscriptionStatus::Revoked));
    }

    #[test]
    fn checkout_sessions() {
        let session = |mode: &str, payment_status: &str| {
            json!({"id": "cs_1", "object": "checkout.session", "mode": mode, "payment_status": payment_status,
                "subscription": if mode == "subscription" { json!("sub_1") } else { Value::Null },
                "payment_intent": "pi_1", "customer": "cus_1", "amount_total": 2000, "currency": "usd"})
        };
        let m = map(
            "checkout.session.completed",
            session("subscription", "paid"),
            None,
        );
        assert_eq!(m.event_type, EventType::InitialPurchase);
        assert_eq!(m.subscription_key.as_deref(), Some("sub_1"));
        assert_eq!(m.state.status, Some(SubscriptionStatus::Active));
        let m = map(
            "checkout.session.completed",
            session("subscription", "unpaid"),
            None,
        );
        assert_eq!(m.event_type, EventType::InitialPurchase);
        assert_eq!(m.state.status, None);
        let m = map(
            "checkout.session.completed",
            session("payment", "paid"),
            None,
        );
        assert_eq!(m.event_type, EventType::NonRenewingPurchase);
        assert_eq!(m.subscription_key.as_deref(), Some("pi_1"));
        let m = map(
            "checkout.session.completed",
            session("payment", "unpaid"),
            None,
        );
        assert_eq!(m.event_type, EventType::Other);
        let m = map(
            "checkout.session.async_payment_succeeded",
            session("payment", "paid"),
            None,
        );
        assert_eq!(m.event_type, EventType::NonRenewingPurchase);
        let m = map(
            "checkout.session.completed",
            session("setup", "no_payment_required"),
            None,
        );
        assert_eq!(m.event_type, EventType::Other);
        assert_eq!(m.subscription_key, None);
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
    fn currencies_and_minor_units() {
        assert_eq!(
            money(Some(999), Some("usd".into())),
            (Some(9.99), Some("USD".into()))
        );
        assert_eq!(
            money(Some(500), Some("jpy".into())),
            (Some(500.0), Some("JPY".into()))
        );
        assert_eq!(
            money(Some(1230), Some("kwd".into())),
            (Some(1.23), Some("KWD".into()))
        );
        assert_eq!(money(Some(1), Some("currency".into())), (None, None));
        assert_eq!(money(None, Some("usd".into())), (None, Some("USD".into())));
    }
}
