//! `invoice.*`: renewals (`invoice.paid` for a `subscription_cycle`), billing
//! issues, one-off invoices, and payments that need the customer.

use storehook_core::{EventDetails, EventType, ImpliedState, SubscriptionStatus};

use super::{id_of, money, seconds_to_ms, Event, MappedEvent, UnreadableObject};
use crate::decode::{Invoice, InvoiceLine};

pub(super) fn map(change: &str, event: &Event<'_>) -> Result<MappedEvent, UnreadableObject> {
    let invoice: Invoice = event.read("invoice")?;
    let subscription = invoice.subscription_id().map(str::to_owned);
    let billing_reason = invoice.billing_reason.as_deref().unwrap_or_default();
    let subscription_lines = subscription
        .as_deref()
        .map(|sub| subscription_lines(&invoice, sub))
        .unwrap_or_default();
    let mut state = ImpliedState {
        product_id: subscription_lines
            .iter()
            .find_map(|l| l.price_id())
            .map(str::to_owned),
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
    let subscription_key = subscription
        .clone()
        .or_else(|| id_of(&invoice.payment_intent).or_else(|| invoice.id.clone()));
    let (amount, purchased_at) = if change == "paid" {
        let paid_at = invoice.status_transitions.as_ref().and_then(|t| t.paid_at);
        (invoice.amount_paid, paid_at.or(invoice.created))
    } else {
        (invoice.amount_due, invoice.created)
    };
    let (price, currency) = money(amount, invoice.currency.as_deref());
    Ok(MappedEvent {
        event_type,
        subscription_key,
        product_id: state.product_id.clone(),
        state,
        details: EventDetails {
            transaction_id: invoice.id.clone(),
            original_transaction_id: subscription,
            purchased_at_ms: purchased_at.and_then(seconds_to_ms),
            price,
            currency,
            ..EventDetails::default()
        },
        app_user_id_hint: event.app_user_id_hint(&invoice.metadata_sources(), &invoice.customer),
        attention,
    })
}

/// The invoice's lines that bill the subscription's own period (not
/// prorations, not one-off items).
fn subscription_lines<'i>(invoice: &'i Invoice, subscription: &str) -> Vec<&'i InvoiceLine> {
    invoice
        .lines()
        .filter(|line| line.is_for_subscription(subscription) && !line.is_proration())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::tests::map;
    use serde_json::json;

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
}
