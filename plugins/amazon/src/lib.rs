//! Amazon Appstore. Amazon's Real-time Notifications (SNS) are not
//! implemented yet; the store is registered anyway so that operators see it
//! in `storehook stores` and `GET /v1/stores` with `supported: false`, and so
//! that a notification sent to it gets a clear 501 instead of a 404.
//!
//! The host answers 501 for an unsupported store before the adapter is ever
//! asked; the adapter below says the same thing, so the answer holds even if
//! it is called directly.

// Production code never unwraps: a panic on a request path is a dropped
// notification. Tests may (they are meant to stop at the first surprise).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use storehook_core::{
    async_trait, inventory, AdapterError, ConfigError, FactoryContext, IncomingRequest, Outcome,
    StoreAdapter, StoreHelp, StoreRegistration,
};

/// Call from the binary so the linker keeps this crate's registration.
pub fn link() {}

struct AmazonAdapter;

#[async_trait]
impl StoreAdapter for AmazonAdapter {
    async fn verify_and_decode(&self, _request: &IncomingRequest) -> Result<Outcome, AdapterError> {
        Err(AdapterError::Unsupported {
            message: "Amazon Appstore notifications are not supported yet".into(),
        })
    }
}

fn build(
    _config: &toml::Table,
    _ctx: &FactoryContext<'_>,
) -> Result<Box<dyn StoreAdapter>, ConfigError> {
    Ok(Box::new(AmazonAdapter))
}

inventory::submit! {
    StoreRegistration {
        supported: false,
        help: StoreHelp {
            console: "Amazon Appstore",
            setup: &[
                "storehook does not support Amazon Appstore notifications yet: there is nothing to set up.",
            ],
            ..StoreHelp::DEFAULT
        },
        ..StoreRegistration::new("amazon", "Amazon Appstore", "AMAZON", build)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_as_unsupported() {
        let r = storehook_core::find_registration("amazon").expect("amazon is registered");
        assert!(!r.supported);
        assert_eq!(r.name, "Amazon Appstore");
    }

    #[tokio::test]
    async fn answers_501() {
        let adapter = AmazonAdapter;
        let err = adapter
            .verify_and_decode(&IncomingRequest::new("{}", 0))
            .await
            .unwrap_err();
        assert_eq!(err.http_status(), 501);
        assert_eq!(err.code(), "unsupported_store");
    }
}
