//! `customer.subscription.*`: the event type from the change (for `updated`,
//! from `previous_attributes`), the state from the subscription object.

use serde::Deserialize;
use serde_json::{Map, Value};
use storehook_core::{EventDetails, EventType, ImpliedState, SubscriptionStatus};

use super::{id_of, money, seconds_to_ms, Event, MappedEvent, UnreadableObject};
use crate::decode::{Subscription, SubscriptionItem};

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

pub(super) fn map(change: &str, event: &Event<'_>) -> Result<MappedEvent, UnreadableObject> {
    let sub: Subscription = event.read("subscription")?;
    if sub.id.is_none() {
        return Err(event.unreadable("subscription", "it has no id"));
    }
    let event_type = match change {
        "created" => EventType::InitialPurchase,
        "updated" => classify_update(&sub, event.previous_attributes),
        "deleted" => EventType::Expiration,
        "paused" => EventType::SubscriptionPaused,
        "resumed" => EventType::SubscriptionResumed,
        // trial_will_end (a reminder), pending_update_applied/expired, and
        // whatever Stripe adds: the state below still applies.
        _ => EventType::Other,
    };
    let state = subscription_state(&sub);
    let reason = sub
        .cancellation_details
        .as_ref()
        .and_then(|d| d.reason.clone());
    let (amount, currency) = sub.recurring_amount();
    let (price, currency) = money(amount, currency);
    let details = EventDetails {
        transaction_id: id_of(&sub.latest_invoice),
        original_transaction_id: sub.id.clone(),
        purchased_at_ms: sub
            .period_start()
            .or(sub.start_date)
            .and_then(seconds_to_ms),
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
        // A trialing subscription's current period is its free trial.
        is_trial: sub.status.as_deref().map(|s| s == "trialing"),
        ..EventDetails::default()
    };
    Ok(MappedEvent {
        event_type,
        subscription_key: sub.id.clone(),
        product_id: state.product_id.clone(),
        state,
        details,
        app_user_id_hint: event.app_user_id_hint(&[sub.metadata.as_ref()], &sub.customer),
        ..MappedEvent::default()
    })
}

/// What a `customer.subscription.updated` was, from `previous_attributes`
/// (the old values of exactly the fields that changed).
fn classify_update(sub: &Subscription, previous: Option<&Map<String, Value>>) -> EventType {
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

/// Whether the items' prices (or the legacy plan) differ from the old ones.
/// A renewal changes the items' periods, not their prices.
fn price_changed(sub: &Subscription, previous: &Map<String, Value>) -> bool {
    if let Some(old_items) = previous.get("items") {
        // Each old item is read on its own: one odd item hides no other.
        let old_items: Vec<SubscriptionItem> = old_items
            .get("data")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| SubscriptionItem::deserialize(item).ok())
                    .collect()
            })
            .unwrap_or_default();
        let mut old: Vec<&str> = old_items
            .iter()
            .filter_map(SubscriptionItem::price_id)
            .collect();
        if !old.is_empty() {
            let mut new: Vec<&str> = sub.items().filter_map(SubscriptionItem::price_id).collect();
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

/// The state a subscription object implies. The product is the price id (the
/// plan id on legacy objects): a price, not a product, because monthly and
/// yearly prices of one product are what an app store would call two
/// products.
pub fn subscription_state(sub: &Subscription) -> ImpliedState {
    let raw_status = sub.status.as_deref();
    let status = raw_status.and_then(subscription_status);
    let period_end = sub.period_end();
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
        product_id: sub.price_id().map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::tests::map;
    use crate::map::{map_event, MapOptions};
    use serde_json::json;

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
        let status = |s: &str| json!({ "status": s });
        // (fields now, previous_attributes, expected)
        let cases = [
            (status("past_due"), status("active"), BillingIssue),
            (status("unpaid"), status("past_due"), BillingIssue),
            (status("active"), status("past_due"), Renewal),
            (status("active"), status("trialing"), Other),
            (status("active"), status("incomplete"), Other),
            (status("canceled"), status("active"), Expiration),
            (
                json!({"cancel_at_period_end": true}),
                json!({"cancel_at_period_end": false}),
                Cancellation,
            ),
            (
                json!({"cancel_at_period_end": false}),
                json!({"cancel_at_period_end": true}),
                Uncancellation,
            ),
            (
                json!({"cancel_at": 1769904000}),
                json!({"cancel_at": null}),
                Cancellation,
            ),
            (json!({}), json!({"cancel_at": 1769904000}), Uncancellation),
            (
                json!({}),
                json!({"items": {"data": [{"id": "si_1", "price": {"id": "price_year"}}]}}),
                ProductChange,
            ),
            // A renewal moves the item period; the price is unchanged.
            (
                json!({}),
                json!({"items": {"data": [{"id": "si_1", "price": {"id": "price_month"}, "current_period_end": 1}]}}),
                Other,
            ),
            (
                json!({"plan": {"id": "plan_b"}}),
                json!({"plan": {"id": "plan_a"}}),
                ProductChange,
            ),
            (json!({}), json!({"schedule": "sub_sched_1"}), Other),
            (
                json!({}),
                json!({"current_period_end": 1, "latest_invoice": "in_0"}),
                Other,
            ),
        ];
        for (i, (now, prev, expected)) in cases.into_iter().enumerate() {
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
}
