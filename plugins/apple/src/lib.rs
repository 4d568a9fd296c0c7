//! App Store Server Notifications V2 for storehook.
//!
//! Apple POSTs `{"signedPayload": "<JWS>"}` to `/v1/notifications/apple`.
//! The adapter answers what Apple's official library answers (offline mode)
//! on every input: [`verify`] checks the JWS and its certificate chain
//! ([`chain`]) exactly as `SignedDataVerifier` does, [`decode`] reads the
//! payload as the library's models do, the app checks follow the library's
//! order, and [`map`] turns the result into storehook's normalized
//! notification. Nested `signedTransactionInfo`, `signedRenewalInfo` and
//! `signedAppTransactionInfo` are verified the same way, each at its own
//! `signedDate`.

pub mod chain;
pub mod config;
pub mod decode;
pub mod map;
pub mod verify;

use serde_json::{Map, Value};
use storehook_core::{
    AdapterError, ConfigError, FactoryContext, IncomingRequest, Outcome, StoreAdapter,
    VerifiedNotification,
};

pub use config::{App, AppleEnvironment, AppleSettings, APPLE_ROOT_CA_G3};
use decode::{structure, AppIdentity, AppTransaction, NotificationPayload, RenewalInfo, TransactionInfo};
pub use verify::{SignedDataVerifier, VerificationError, VerificationStatus};

/// Called by the binary so that the linker keeps this crate's registration.
pub fn link() {}

storehook_core::inventory::submit! {
    storehook_core::StoreRegistration {
        id: config::STORE_ID,
        name: "App Store",
        store_label: "APP_STORE",
        supported: true,
        build: build_adapter,
    }
}

fn build_adapter(
    table: &toml::Table,
    ctx: &FactoryContext<'_>,
) -> Result<Box<dyn StoreAdapter>, ConfigError> {
    Ok(Box::new(AppleAdapter::new(AppleSettings::from_table(table, ctx)?)))
}

/// The App Store adapter: configuration plus the verifier and its caches.
pub struct AppleAdapter {
    settings: AppleSettings,
    verifier: SignedDataVerifier,
}

/// The app and environment a notification was accepted for: the
/// equivalent of the one official `SignedDataVerifier` that accepted it.
#[derive(Debug, Clone, Copy)]
struct Accepted<'a> {
    app: &'a App,
    environment: AppleEnvironment,
}

impl AppleAdapter {
    pub fn new(settings: AppleSettings) -> Self {
        let verifier = SignedDataVerifier::new(settings.root_certificates.clone());
        Self { settings, verifier }
    }

    pub fn verifier(&self) -> &SignedDataVerifier {
        &self.verifier
    }

    /// Verifies and decodes one request body; `now_ms` is the receive time.
    pub fn verify_body(
        &self,
        body: &[u8],
        now_ms: i64,
    ) -> Result<VerifiedNotification, AdapterError> {
        let signed_payload = signed_payload_of(body)?;
        let mut payload_json = self
            .verifier
            .verify_signed_object(&signed_payload, now_ms)
            .map_err(|e| refusal("signedPayload", e))?;
        let payload: NotificationPayload =
            structure(&payload_json).map_err(|e| refusal("signedPayload", schema_error(e)))?;
        let accepted = self
            .check_app(&payload.identity())
            .map_err(|e| refusal("signedPayload", e))?;

        // The nested JWS, each verified on its own and checked against the
        // same app and environment, as the library's
        // verify_and_decode_signed_transaction / _renewal_info /
        // _app_transaction would.
        let data = payload.data.as_ref();
        let transaction = data
            .and_then(|d| d.signed_transaction_info())
            .map(|jws| self.verify_transaction(jws, accepted, now_ms))
            .transpose()
            .map_err(|e| refusal("data.signedTransactionInfo", e))?;
        let renewal = data
            .and_then(|d| d.signed_renewal_info())
            .map(|jws| self.verify_renewal(jws, accepted, now_ms))
            .transpose()
            .map_err(|e| refusal("data.signedRenewalInfo", e))?;
        let app_transaction = payload
            .app_data
            .as_ref()
            .and_then(|a| a.signed_app_transaction_info())
            .map(|jws| self.verify_app_transaction(jws, accepted, now_ms))
            .transpose()
            .map_err(|e| refusal("appData.signedAppTransactionInfo", e))?;

        let (transaction, transaction_json) = transaction.unzip();
        let (renewal, renewal_json) = renewal.unzip();
        replace_nested(&mut payload_json, "data", "signedTransactionInfo", transaction_json);
        replace_nested(&mut payload_json, "data", "signedRenewalInfo", renewal_json);
        replace_nested(
            &mut payload_json,
            "appData",
            "signedAppTransactionInfo",
            app_transaction,
        );

        let fallback_notification_id = if payload.notification_uuid().is_some_and(|u| !u.is_empty()) {
            String::new()
        } else {
            let digest = ring::digest::digest(&ring::digest::SHA256, signed_payload.as_bytes());
            let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
            format!("sha256:{hex}")
        };
        Ok(map::to_verified_notification(map::DecodedNotification {
            payload: &payload,
            transaction: transaction.as_ref(),
            renewal: renewal.as_ref(),
            environment: accepted.environment,
            bundle_id: &accepted.app.bundle_id,
            fallback_notification_id,
            received_at_ms: now_ms,
            decoded: payload_json,
        }))
    }

    /// Apple's checks after decoding, over every (app, environment) this
    /// server is configured for — one official verifier each. A verifier
    /// passes the app check when the bundle id matches and, for Production,
    /// the app Apple id too; it then passes when the environment matches.
    /// Refused: INVALID_ENVIRONMENT if some verifier passed the app check,
    /// else INVALID_APP_IDENTIFIER.
    fn check_app(&self, identity: &AppIdentity<'_>) -> Result<Accepted<'_>, VerificationError> {
        let mut app_matched = false;
        for app in &self.settings.apps {
            for &environment in &self.settings.environments {
                let production = environment == AppleEnvironment::Production;
                if production && app.app_apple_id.is_none() {
                    continue; // the library cannot build this verifier
                }
                if identity.bundle_id != Some(app.bundle_id.as_str())
                    || (production && identity.app_apple_id != app.app_apple_id)
                {
                    continue;
                }
                if identity.environment == Some(environment.as_str()) {
                    return Ok(Accepted { app, environment });
                }
                app_matched = true;
            }
        }
        if app_matched {
            Err(VerificationError::new(
                VerificationStatus::InvalidEnvironment,
                format!(
                    "environment {} is not one this server accepts for {}",
                    describe(identity.environment),
                    describe(identity.bundle_id)
                ),
            ))
        } else {
            Err(VerificationError::new(
                VerificationStatus::InvalidAppIdentifier,
                format!(
                    "bundle id {} (app Apple id {}, environment {}) is not a configured app",
                    describe(identity.bundle_id),
                    identity
                        .app_apple_id
                        .map_or_else(|| "none".to_owned(), |i| i.to_string()),
                    describe(identity.environment)
                ),
            ))
        }
    }

    fn verify_transaction(
        &self,
        jws: &str,
        accepted: Accepted<'_>,
        now_ms: i64,
    ) -> Result<(TransactionInfo, Map<String, Value>), VerificationError> {
        let json = self.verifier.verify_signed_object(jws, now_ms)?;
        let tx: TransactionInfo = structure(&json).map_err(schema_error)?;
        if tx.bundle_id() != Some(accepted.app.bundle_id.as_str()) {
            return Err(VerificationError::new(
                VerificationStatus::InvalidAppIdentifier,
                format!(
                    "the transaction's bundle id {} is not {}",
                    describe(tx.bundle_id()),
                    accepted.app.bundle_id
                ),
            ));
        }
        check_environment(tx.environment(), accepted, "transaction")?;
        Ok((tx, json))
    }

    fn verify_renewal(
        &self,
        jws: &str,
        accepted: Accepted<'_>,
        now_ms: i64,
    ) -> Result<(RenewalInfo, Map<String, Value>), VerificationError> {
        let json = self.verifier.verify_signed_object(jws, now_ms)?;
        let renewal: RenewalInfo = structure(&json).map_err(schema_error)?;
        check_environment(renewal.environment(), accepted, "renewal info")?;
        Ok((renewal, json))
    }

    fn verify_app_transaction(
        &self,
        jws: &str,
        accepted: Accepted<'_>,
        now_ms: i64,
    ) -> Result<Map<String, Value>, VerificationError> {
        let json = self.verifier.verify_signed_object(jws, now_ms)?;
        let app_tx: AppTransaction = structure(&json).map_err(schema_error)?;
        let production = accepted.environment == AppleEnvironment::Production;
        if app_tx.bundle_id() != Some(accepted.app.bundle_id.as_str())
            || (production && app_tx.app_apple_id() != accepted.app.app_apple_id)
        {
            return Err(VerificationError::new(
                VerificationStatus::InvalidAppIdentifier,
                format!(
                    "the app transaction's bundle id {} is not {}",
                    describe(app_tx.bundle_id()),
                    accepted.app.bundle_id
                ),
            ));
        }
        check_environment(app_tx.receipt_type(), accepted, "app transaction")?;
        Ok(json)
    }
}

#[storehook_core::async_trait]
impl StoreAdapter for AppleAdapter {
    async fn verify_and_decode(&self, request: &IncomingRequest) -> Result<Outcome, AdapterError> {
        self.verify_body(&request.body, request.received_at_ms)
            .map(|n| Outcome::Notification(Box::new(n)))
    }

    fn startup_warnings(&self) -> Vec<String> {
        self.settings.warnings.clone()
    }
}

/// The `signedPayload` of a body, or why the body is not one (400).
fn signed_payload_of(body: &[u8]) -> Result<std::borrow::Cow<'_, str>, AdapterError> {
    let starts_as_object = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    let envelope: Option<decode::Envelope<'_>> = if starts_as_object {
        serde_json::from_slice(body).ok()
    } else {
        None
    };
    let Some(envelope) = envelope else {
        return Err(AdapterError::malformed(
            "malformed_body",
            "the body is not a JSON object {\"signedPayload\": \"<JWS>\"} (or signedPayload is not a string)",
        ));
    };
    if let Some(signed_payload) = envelope.signed_payload {
        return Ok(signed_payload);
    }
    if envelope.notification_type.is_some() && envelope.unified_receipt.is_some() {
        return Err(AdapterError::malformed(
            "apple_v1_notification",
            "this is an App Store Server Notifications V1 body; Apple has deprecated Version 1 and storehook accepts only Version 2. \
             In App Store Connect, open your app, then App Information > App Store Server Notifications, and set the \
             Production and Sandbox Server URLs with \"Version 2 Notifications\" selected",
        ));
    }
    Err(AdapterError::malformed(
        "missing_signed_payload",
        "the body has no signedPayload",
    ))
}

fn check_environment(
    environment: Option<&str>,
    accepted: Accepted<'_>,
    what: &str,
) -> Result<(), VerificationError> {
    if environment == Some(accepted.environment.as_str()) {
        Ok(())
    } else {
        Err(VerificationError::new(
            VerificationStatus::InvalidEnvironment,
            format!(
                "the {what}'s environment {} is not the notification's {}",
                describe(environment),
                accepted.environment.as_str()
            ),
        ))
    }
}

fn schema_error(e: String) -> VerificationError {
    VerificationError::new(
        VerificationStatus::VerificationFailure,
        format!("the payload does not match Apple's schema: {e}"),
    )
}

fn refusal(field: &str, e: VerificationError) -> AdapterError {
    AdapterError::unauthorized(e.status.as_str(), format!("{field}: {}", e.reason))
}

fn describe(value: Option<&str>) -> String {
    value.map_or_else(|| "(none)".to_owned(), |v| format!("\"{v}\""))
}

/// Puts a nested payload's decoded JSON where its JWS was.
fn replace_nested(
    payload: &mut Map<String, Value>,
    container: &str,
    field: &str,
    decoded: Option<Map<String, Value>>,
) {
    if let (Some(decoded), Some(Value::Object(c))) = (decoded, payload.get_mut(container)) {
        c.insert(field.to_owned(), Value::Object(decoded));
    }
}
