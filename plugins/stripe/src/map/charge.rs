//! `charge.refunded`: a REFUND, keyed by the subscription when the charge
//! says which one, else by the one-off payment.

use storehook_core::{EventDetails, EventType, ImpliedState, SubscriptionStatus};

use super::{id_of, money, seconds_to_ms, Event, MappedEvent, UnreadableObject};
use crate::decode::{Charge, Expandable, Invoice};

pub(super) fn map(change: &str, event: &Event<'_>) -> Result<MappedEvent, UnreadableObject> {
    if change != "refunded" {
        return Ok(MappedEvent::other());
    }
    let charge: Charge = event.read("charge")?;
    // A webhook carries `charge.invoice` as an id unless the endpoint expands
    // it; only an expanded invoice says which subscription was refunded.
    let subscription = charge
        .invoice
        .as_ref()
        .and_then(Expandable::object)
        .and_then(Invoice::subscription_id)
        .map(str::to_owned);
    let one_off_key = id_of(&charge.payment_intent).or_else(|| charge.id.clone());
    let fully_refunded = charge.refunded == Some(true)
        || matches!((charge.amount_refunded, charge.amount), (Some(r), Some(a)) if a > 0 && r >= a);
    // A refund does not end a subscription (Stripe cancels it separately, if
    // at all); a one-off purchase refunded in full is no longer owned.
    let status = (subscription.is_none() && fully_refunded).then_some(SubscriptionStatus::Revoked);
    let (price, currency) = money(charge.amount_refunded, charge.currency.as_deref());
    Ok(MappedEvent {
        event_type: EventType::Refund,
        subscription_key: subscription.clone().or(one_off_key),
        state: ImpliedState {
            status,
            ..ImpliedState::default()
        },
        details: EventDetails {
            transaction_id: charge.id.clone(),
            original_transaction_id: subscription,
            purchased_at_ms: charge.created.and_then(seconds_to_ms),
            price,
            currency,
            ..EventDetails::default()
        },
        app_user_id_hint: event.app_user_id_hint(&[charge.metadata.as_ref()], &charge.customer),
        ..MappedEvent::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::tests::map;
    use serde_json::json;

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
}
