//! Acknowledging a purchase (`acknowledge = true`), a subscription or a
//! one-time product: Google refunds a purchase nobody acknowledged within
//! 3 days. The state is read first, so that a purchase the app already
//! acknowledged (or consumed), or one that is over, costs no write; a
//! refusal because of the purchase's state is answered by reading it again.

use storehook_core::{AckOutcome, AdapterError, SubscriptionRef};

use crate::map::{
    acknowledgeable, acknowledged, awaits_acknowledgement, product_acknowledgeable,
    product_acknowledged, product_awaits_acknowledgement,
};
use crate::play_api::{PlayApiClient, PlayApiError, PurchaseCollection};
use crate::purchase::PlayPurchase;
use crate::GoogleAdapter;

/// What a read of the purchase says about acknowledging it.
struct AckState {
    acknowledged: bool,
    /// Not acknowledged, and can be now.
    awaits: bool,
    /// Bought and not over (whether acknowledged or not).
    acknowledgeable: bool,
    /// The product the acknowledgement's path names.
    product_id: Option<String>,
}

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
    let purchase = PlayPurchase::of(purchase)?;

    let current = read(client, package, purchase).await?;
    if current.acknowledged {
        return Ok(AckOutcome::AlreadyAcknowledged);
    }
    if !current.awaits {
        return Ok(AckOutcome::NotNeeded);
    }
    let Some(product_id) = current.product_id else {
        return Err(AdapterError::malformed(
            "play_api_bad_response",
            "purchases.subscriptionsv2.get: the purchase names no product to acknowledge",
        ));
    };

    let (collection, token) = match purchase {
        PlayPurchase::Subscription { token } => (PurchaseCollection::Subscriptions, token),
        PlayPurchase::Product { token, .. } => (PurchaseCollection::Products, token),
    };
    let posted = client
        .acknowledge(collection, package, &product_id, token)
        .await;
    match posted {
        Ok(()) => Ok(AckOutcome::Acknowledged),
        Err(e @ PlayApiError::Rejected { .. }) if e.reason() == Some("invalidPurchaseState") => {
            // Acknowledged meanwhile (by the app), or over: the state says.
            let again = read(client, package, purchase).await?;
            if again.acknowledged {
                Ok(AckOutcome::AlreadyAcknowledged)
            } else if !again.acknowledgeable {
                Ok(AckOutcome::NotNeeded)
            } else {
                Err(e.into())
            }
        }
        Err(e) => Err(e.into()),
    }
}

async fn read(
    client: &PlayApiClient,
    package: &str,
    purchase: PlayPurchase<'_>,
) -> Result<AckState, PlayApiError> {
    match purchase {
        PlayPurchase::Subscription { token } => {
            let p = client.get_subscription(package, token).await?;
            Ok(AckState {
                acknowledged: acknowledged(&p),
                awaits: awaits_acknowledgement(&p),
                acknowledgeable: acknowledgeable(&p),
                // The path still names a product; Google takes any of the
                // purchase's (and, since 2025-05, ignores it).
                product_id: p
                    .line_items
                    .iter()
                    .find_map(|item| item.product_id.clone().filter(|p| !p.is_empty())),
            })
        }
        PlayPurchase::Product { product_id, token } => {
            let p = client.get_product(package, product_id, token).await?;
            Ok(AckState {
                acknowledged: product_acknowledged(&p),
                awaits: product_awaits_acknowledgement(&p),
                acknowledgeable: product_acknowledgeable(&p),
                product_id: Some(product_id.to_owned()),
            })
        }
    }
}
