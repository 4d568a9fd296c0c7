//! Which Play Developer API resource a purchase is read and acknowledged
//! through: `subscriptionsv2` (and `subscriptions/{productId}` to
//! acknowledge) for a subscription, `products/{productId}` for a one-time
//! product. The purchase's notifications said which (subscription or
//! one-time product notification) and named the product; the host hands
//! both back in the `SubscriptionRef`.

use storehook_core::{AdapterError, PurchaseKind, StateUpdate, SubscriptionRef};

use crate::map;
use crate::play_api::{PlayApiClient, PlayApiError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlayPurchase<'a> {
    Subscription { token: &'a str },
    Product { product_id: &'a str, token: &'a str },
}

impl<'a> PlayPurchase<'a> {
    /// A purchase whose notifications did not say what it is (stored before
    /// storehook kept it) is taken for a subscription, as it always was.
    pub(crate) fn of(purchase: SubscriptionRef<'a>) -> Result<Self, AdapterError> {
        let token = purchase.key;
        match purchase.kind {
            Some(PurchaseKind::OneTime) => match purchase.product_id.filter(|p| !p.is_empty()) {
                Some(product_id) => Ok(PlayPurchase::Product { product_id, token }),
                None => Err(AdapterError::malformed(
                    "product_unknown",
                    "a one-time purchase whose notifications named no product (sku): \
                     purchases.products.get cannot be asked about it",
                )),
            },
            Some(PurchaseKind::Subscription) | None => Ok(PlayPurchase::Subscription { token }),
        }
    }

    /// The purchase's state as Play reports it now.
    pub(crate) async fn read_state(
        &self,
        client: &PlayApiClient,
        package: &str,
        now_ms: i64,
    ) -> Result<StateUpdate, PlayApiError> {
        match *self {
            PlayPurchase::Subscription { token } => {
                let purchase = client.get_subscription(package, token).await?;
                Ok(map::state_update(&purchase, now_ms))
            }
            PlayPurchase::Product { product_id, token } => {
                let purchase = client.get_product(package, product_id, token).await?;
                Ok(map::product_state_update(&purchase, product_id, now_ms))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_and_the_product_choose_the_resource() {
        let r = SubscriptionRef::new("tok", Some("com.example"));
        assert_eq!(
            PlayPurchase::of(r).unwrap(),
            PlayPurchase::Subscription { token: "tok" }
        );
        assert_eq!(
            PlayPurchase::of(r.with_product(Some("sku"), Some(PurchaseKind::Subscription)))
                .unwrap(),
            PlayPurchase::Subscription { token: "tok" }
        );
        assert_eq!(
            PlayPurchase::of(r.with_product(Some("coins_100"), Some(PurchaseKind::OneTime)))
                .unwrap(),
            PlayPurchase::Product {
                product_id: "coins_100",
                token: "tok"
            }
        );
        for product in [None, Some("")] {
            let e =
                PlayPurchase::of(r.with_product(product, Some(PurchaseKind::OneTime))).unwrap_err();
            assert_eq!(e.code(), "product_unknown");
        }
    }
}
