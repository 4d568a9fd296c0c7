//! Google Play Real-Time Developer Notifications, pushed by Cloud Pub/Sub to
//! `POST /v1/notifications/google`.
//!
//! Path of one request: `verify` (OIDC push token and/or `?token=` secret) →
//! `decode` (push envelope, then `message.data` as a DeveloperNotification)
//! → `map` (normalized notification). Pub/Sub redelivers anything not
//! answered 2xx for days, so once a request is authenticated every message
//! is acknowledged: unusable data becomes `Outcome::AcknowledgedRejection`.
//! With `[stores.google.play_api]`, `fetch_state` reads the purchase's
//! full state (`purchases.subscriptionsv2.get` for a subscription,
//! `purchases.products.get` for a one-time product: `purchase.rs`), and
//! the pull side works:
//! `check_connection` (`check.rs`), `backfill_page` (voided purchases and
//! re-read states, `backfill.rs`) and, with `acknowledge = true`,
//! `acknowledge` (`acknowledge.rs`); all through `play_api.rs`.

// Production code never unwraps: a panic on a request path is a dropped
// notification. Tests may (they are meant to stop at the first surprise).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod acknowledge;
pub mod backfill;
pub mod check;
pub mod config;
pub mod decode;
pub mod help;
pub mod jwks;
pub mod map;
pub mod play_api;
mod purchase;
pub mod token_cache;
pub mod verify;

use storehook_core::{
    AckOutcome, AdapterError, ApiCapabilities, BackfillPage, BackfillRequest, CheckReport,
    ConfigError, FactoryContext, IncomingRequest, Outcome, StateUpdate, StoreAdapter, StoreHost,
    SubscriptionRef,
};

use crate::config::{Settings, STORE_ID};
use crate::decode::{parse_developer_notification, parse_push_envelope};
use crate::play_api::PlayApiClient;
use crate::purchase::PlayPurchase;
use crate::verify::PushAuthenticator;

/// Called by the binary so that the linker keeps this crate's registration.
pub fn link() {}

storehook_core::inventory::submit! {
    storehook_core::StoreRegistration {
        help: help::HELP,
        ..storehook_core::StoreRegistration::new(STORE_ID, "Google Play", "PLAY_STORE", build_adapter)
    }
}

/// The registered constructor: `[stores.google]` → adapter.
pub fn build_adapter(
    table: &toml::Table,
    ctx: &FactoryContext<'_>,
) -> Result<Box<dyn StoreAdapter>, ConfigError> {
    let settings = Settings::from_table(table, ctx)?;
    Ok(Box::new(GoogleAdapter::new(settings)?))
}

pub struct GoogleAdapter {
    settings: Settings,
    auth: PushAuthenticator,
    play_api: Option<PlayApiClient>,
}

impl GoogleAdapter {
    pub fn new(settings: Settings) -> Result<Self, ConfigError> {
        let auth = PushAuthenticator::new(&settings).map_err(|e| {
            let key = match settings.oidc.as_ref().map(|o| &o.key_source) {
                Some(config::KeySource::File(_)) => "jwks_file",
                _ => "jwks_url",
            };
            ConfigError::key(STORE_ID, key, e)
        })?;
        let play_api = settings
            .play_api
            .as_ref()
            .map(PlayApiClient::new)
            .transpose()
            .map_err(|e| ConfigError::key(STORE_ID, "play_api.service_account_key_file", e))?;
        Ok(GoogleAdapter {
            settings,
            auth,
            play_api,
        })
    }

    /// The package to ask the Play API about: the one the notification
    /// named (always one of `package_names`, which verification enforces),
    /// or, for a row stored without it, the only configured package.
    pub(crate) fn package_for(&self, app_id: Option<&str>) -> Result<&str, AdapterError> {
        let configured = &self.settings.package_names;
        match app_id {
            Some(app) => configured
                .iter()
                .find(|p| p.as_str() == app)
                .map(String::as_str)
                .ok_or_else(|| {
                    AdapterError::malformed(
                        "unknown_package",
                        format!("package {app:?} is not in package_names"),
                    )
                }),
            None => match configured.as_slice() {
                [only] => Ok(only.as_str()),
                _ => Err(AdapterError::malformed(
                    "unknown_package",
                    "the subscription's package is not known and several package_names are configured",
                )),
            },
        }
    }

    fn acknowledged_rejection(notification_id: String, code: &str, message: String) -> Outcome {
        Outcome::AcknowledgedRejection {
            notification_id: Some(notification_id),
            code: code.to_string(),
            message,
        }
    }
}

#[storehook_core::async_trait]
impl StoreAdapter for GoogleAdapter {
    async fn verify_and_decode(&self, request: &IncomingRequest) -> Result<Outcome, AdapterError> {
        self.auth.authenticate(request).await?;

        let envelope = parse_push_envelope(&request.body)
            .map_err(|e| AdapterError::malformed("not_a_push_envelope", e.to_string()))?;
        let notification_id = map::notification_id(&envelope);

        let decoded = match parse_developer_notification(&envelope.data) {
            Ok(decoded) => decoded,
            Err(e) => {
                return Ok(Self::acknowledged_rejection(
                    notification_id,
                    "malformed_data",
                    e.to_string(),
                ))
            }
        };
        let package = &decoded.notification.package_name;
        if !self.settings.package_names.iter().any(|p| p == package) {
            let shown: String = package.chars().take(200).collect();
            return Ok(Self::acknowledged_rejection(
                notification_id,
                "wrong_package",
                format!("package {shown:?} is not in package_names"),
            ));
        }
        let kind = match decoded.notification.kind(&decoded.json) {
            Ok(kind) => kind,
            Err(e) => {
                return Ok(Self::acknowledged_rejection(
                    notification_id,
                    "malformed_data",
                    e.to_string(),
                ))
            }
        };
        let notification =
            map::verified_notification(&envelope, &decoded, kind, self.play_api.is_some());
        Ok(Outcome::Notification(Box::new(notification)))
    }

    async fn fetch_state(
        &self,
        subscription: SubscriptionRef<'_>,
    ) -> Result<Option<StateUpdate>, AdapterError> {
        let Some(client) = &self.play_api else {
            return Ok(None);
        };
        let package = self.package_for(subscription.app_id)?;
        let update = PlayPurchase::of(subscription)?
            .read_state(client, package, storehook_core::time::now_ms())
            .await?;
        Ok(Some(update))
    }

    fn api_capabilities(&self) -> ApiCapabilities {
        let api = self.play_api.is_some();
        ApiCapabilities {
            check: api,
            backfill: api,
            acknowledge: api
                && self
                    .settings
                    .play_api
                    .as_ref()
                    .is_some_and(|a| a.acknowledge),
        }
    }

    async fn check_connection(&self, host: &dyn StoreHost) -> Result<CheckReport, AdapterError> {
        check::check_connection(self, host).await
    }

    async fn backfill_page(&self, req: BackfillRequest<'_>) -> Result<BackfillPage, AdapterError> {
        backfill::backfill_page(self, req).await
    }

    async fn acknowledge(&self, purchase: SubscriptionRef<'_>) -> Result<AckOutcome, AdapterError> {
        acknowledge::acknowledge(self, purchase).await
    }

    fn startup_warnings(&self) -> Vec<String> {
        if self.settings.is_unauthenticated() {
            vec![format!(
                "[stores.{STORE_ID}] allow_unauthenticated = true: anyone who can reach \
                 POST /v1/notifications/{STORE_ID} can submit notifications; configure OIDC push \
                 authentication (audience, push_service_account) or push_token"
            )]
        } else {
            Vec::new()
        }
    }
}
