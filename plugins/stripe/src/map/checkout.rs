//! `checkout.session.*`: the purchase a Checkout session completes, a
//! subscription (mode `subscription`) or a one-off payment (mode `payment`).

use storehook_core::{EventDetails, EventType, ImpliedState, SubscriptionStatus};

use super::{id_of, money, seconds_to_ms, Event, MappedEvent, UnreadableObject};
use crate::decode::CheckoutSession;

pub(super) fn map(change: &str, event: &Event<'_>) -> Result<MappedEvent, UnreadableObject> {
    let session: CheckoutSession = event.read("checkout.session")?;
    let paid = matches!(
        session.payment_status.as_deref(),
        Some("paid" | "no_payment_required")
    );
    let payment_intent = id_of(&session.payment_intent);
    let subscription = id_of(&session.subscription);
    let mut state = ImpliedState::default();
    let (event_type, subscription_key) = match session.mode.as_deref() {
        Some("subscription") => {
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
            (event_type, subscription.clone())
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
    let (price, currency) = money(session.amount_total, session.currency.as_deref());
    Ok(MappedEvent {
        event_type,
        subscription_key,
        state,
        details: EventDetails {
            transaction_id: id_of(&session.invoice).or(payment_intent),
            original_transaction_id: subscription,
            purchased_at_ms: session.created.and_then(seconds_to_ms),
            price,
            currency,
            ..EventDetails::default()
        },
        app_user_id_hint: event.app_user_id_hint(&[session.metadata.as_ref()], &session.customer),
        ..MappedEvent::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::tests::map;
    use serde_json::{json, Value};

    #[test]
    fn checkout_sessions() {
        let session = |mode: &str, payment_status: &str| {
            json!({"id": "cs_1", "object": "checkout.session", "mode": mode, "payment_status": payment_status,
                "subscription": if mode == "subscription" { json!("sub_1") } else { Value::Null },
                "payment_intent": "pi_1", "customer": "cus_1", "amount_total": 2000, "currency": "usd"})
        };
        let completed = |mode: &str, payment_status: &str| {
            map(
                "checkout.session.completed",
                session(mode, payment_status),
                None,
            )
        };
        let m = completed("subscription", "paid");
        assert_eq!(m.event_type, EventType::InitialPurchase);
        assert_eq!(m.subscription_key.as_deref(), Some("sub_1"));
        assert_eq!(m.state.status, Some(SubscriptionStatus::Active));
        let m = completed("subscription", "unpaid");
        assert_eq!(m.event_type, EventType::InitialPurchase);
        assert_eq!(m.state.status, None);
        let m = completed("payment", "paid");
        assert_eq!(m.event_type, EventType::NonRenewingPurchase);
        assert_eq!(m.subscription_key.as_deref(), Some("pi_1"));
        let m = completed("payment", "unpaid");
        assert_eq!(m.event_type, EventType::Other);
        let m = map(
            "checkout.session.async_payment_succeeded",
            session("payment", "paid"),
            None,
        );
        assert_eq!(m.event_type, EventType::NonRenewingPurchase);
        let m = completed("setup", "no_payment_required");
        assert_eq!(m.event_type, EventType::Other);
        assert_eq!(m.subscription_key, None);
    }
}
