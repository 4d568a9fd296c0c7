//! Acknowledging a subscription purchase (`acknowledge = true`): Google
//! refunds a purchase nobody acknowledged within 3 days. The state is read
//! first, so that a purchase the app already acknowledged, or one that is
//! over, costs no write; a refusal because of the purchase's state is
//! answered by reading it again.

use storehook_core::{AckOutcome, AdapterError, SubscriptionRef};

use crate::map::{acknowledgeable, acknowledged, awaits_acknowledgement};
use crate::play_api::PlayApiError;
use crate::GoogleAdapter;

pub(crate) async fn acknowledge(
    adapter: &GoogleAdapter,
    purchase: SubscriptionRef<'_>,
) -> Result<AckOutcome, AdapterError> {
    let (Some(client), Some(true)) = (
        &adapter.play_api,
        adapter.settings.play_api.as_ref().map(|a| a.acknowledge),
    ) else {
        return Err(AdapterError::Unsupported {
            message: "[stores.google.play_api] acknowledge is not enabled".to_owned(),
        });
    };
    let package = adapter.package_for(purchase.app_id)?;
    let token = purchase.key;

    let current = client.get_subscription(package, token).await?;
    if acknowledged(&current) {
        return Ok(AckOutcome::AlreadyAcknowledged);
    }
    if !awaits_acknowledgement(&current) {
        return Ok(AckOutcome::NotNeeded);
    }
    // The path still names a product; Google takes any of the purchase's
    // (and, since 2025-05, ignores it).
    let Some(product_id) = current
        .line_items
        .iter()
        .find_map(|item| item.product_id.as_deref().filter(|p| !p.is_empty()))
    else {
        return Err(AdapterError::malformed(
            "play_api_bad_response",
            "purchases.subscriptionsv2.get: the purchase names no product to acknowledge",
        ));
    };

    match client
        .acknowledge_subscription(package, product_id, token)
        .await
    {
        Ok(()) => Ok(AckOutcome::Acknowledged),
        Err(e @ PlayApiError::Rejected { .. }) if e.reason() == Some("invalidPurchaseState") => {
            // Acknowledged meanwhile (by the app), or over: the state says.
            let again = client.get_subscription(package, token).await?;
            if acknowledged(&again) {
                Ok(AckOutcome::AlreadyAcknowledged)
            } else if !acknowledgeable(&again) {
                Ok(AckOutcome::NotNeeded)
            } else {
                Err(e.into())
            }
        }
        Err(e) => Err(e.into()),
    }
}
