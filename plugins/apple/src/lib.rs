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
//!
//! With `[stores.apple.api]` credentials the adapter also talks to the App
//! Store Server API ([`api`]): "Check connection" asks Apple for a test
//! notification and explains how its delivery went ([`check`]), and a
//! backfill recovers what Apple failed to deliver from Get Notification
//! History, through the same verification as a pushed notification
//! ([`backfill`]).

// Production code never unwraps: a panic on a request path is a dropped
// notification. Tests may (they are meant to stop at the first surprise).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod api;
mod backfill;
pub mod chain;
mod check;
pub mod config;
pub mod decode;
pub mod help;
pub mod map;
pub mod verify;

use serde_json::{Map, Value};
use storehook_core::{
    AdapterError, ApiCapabilities, BackfillPage, BackfillRequest, CheckReport, IncomingRequest,
    Outcome, StoreAdapter, StoreHost, VerifiedNotification,
};

pub use api::ApiClient;
pub use check::UNAUTHORIZED_DETAIL;
pub use config::{ApiSettings, App, AppleEnvironment, AppleSettings, APPLE_ROOT_CA_G3};
use decode::{
    structure, AppIdentity, AppTransaction, NotificationPayload, RenewalInfo, TransactionInfo,
};
pub use verify::{SignedDataVerifier, VerificationError, VerificationStatus};

/// Called by the binary so that the linker keeps this crate's registration.
pub fn link() {}

storehook_core::inventory::submit! {
    storehook_core::StoreRegistration {
        help: help::HELP,
        masking: help::MASKING,
        ..storehook_core::StoreRegistration::new(
            config::STORE_ID,
            "App Store",
            "APP_STORE",
            // The factory's signature is `AdapterFactory`'s.
            |table, ctx| Ok(Box::new(AppleAdapter::new(AppleSettings::from_table(table, ctx)?))),
        )
    }
}

/// The App Store adapter: configuration plus the verifier and its caches,
/// and the App Store Server API client when credentials are configured.
pub struct AppleAdapter {
    settings: AppleSettings,
    verifier: SignedDataVerifier,
    api: Option<ApiClient>,
    /// Why the API client could not be made from the configured credentials.
    api_problem: Option<String>,
}

impl std::fmt::Debug for AppleAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppleAdapter")
            .field("settings", &self.settings)
            .field("api", &self.api)
            .field("api_problem", &self.api_problem)
            .finish_non_exhaustive()
    }
}

impl AppleAdapter {
    pub fn new(settings: AppleSettings) -> Self {
        let verifier = SignedDataVerifier::new(settings.root_certificates.clone());
        let (api, api_problem) = match settings.api.as_ref().map(ApiClient::new) {
            None => (None, None),
            Some(Ok(client)) => (Some(client), None),
            Some(Err(e)) => (None, Some(e.to_string())),
        };
        Self {
            settings,
            verifier,
            api,
            api_problem,
        }
    }

    pub fn settings(&self) -> &AppleSettings {
        &self.settings
    }

    pub fn verifier(&self) -> &SignedDataVerifier {
        &self.verifier
    }

    /// The official verifier for one configured app and environment, if
    /// this server has it (Production needs the app's Apple id).
    pub fn scoped(
        &self,
        bundle_id: &str,
        environment: AppleEnvironment,
    ) -> Option<ScopedVerifier<'_>> {
        self.verifiers()
            .find(|v| v.app.bundle_id == bundle_id && v.environment == environment)
    }

    /// One official verifier per (app, environment) this server accepts.
    fn verifiers(&self) -> impl Iterator<Item = ScopedVerifier<'_>> {
        self.settings.apps.iter().flat_map(move |app| {
            self.settings
                .environments
                .iter()
                .filter(move |env| {
                    **env != AppleEnvironment::Production || app.app_apple_id.is_some()
                })
                .map(move |&environment| ScopedVerifier {
                    verifier: &self.verifier,
                    app,
                    environment,
                })
        })
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
            .accepting_verifier(&payload.identity())
            .map_err(|e| refusal("signedPayload", e))?;

        // The nested JWS, each verified on its own and checked by the same
        // official verifier that accepted the notification.
        let data = payload.data.as_ref();
        let transaction = data
            .and_then(|d| d.signed_transaction_info())
            .map(|jws| accepted.verify_and_decode_signed_transaction(jws, now_ms))
            .transpose()
            .map_err(|e| refusal("data.signedTransactionInfo", e))?;
        let renewal = data
            .and_then(|d| d.signed_renewal_info())
            .map(|jws| accepted.verify_and_decode_renewal_info(jws, now_ms))
            .transpose()
            .map_err(|e| refusal("data.signedRenewalInfo", e))?;
        let app_transaction = payload
            .app_data
            .as_ref()
            .and_then(|a| a.signed_app_transaction_info())
            .map(|jws| accepted.verify_and_decode_app_transaction(jws, now_ms))
            .transpose()
            .map_err(|e| refusal("appData.signedAppTransactionInfo", e))?;

        let (transaction, transaction_json) = transaction.unzip();
        let (renewal, renewal_json) = renewal.unzip();
        let app_transaction_json = app_transaction.map(|(_, json)| json);
        replace_nested(
            &mut payload_json,
            "data",
            "signedTransactionInfo",
            transaction_json,
        );
        replace_nested(&mut payload_json, "data", "signedRenewalInfo", renewal_json);
        replace_nested(
            &mut payload_json,
            "appData",
            "signedAppTransactionInfo",
            app_transaction_json,
        );

        let fallback_notification_id = if payload.notification_uuid().is_some_and(|u| !u.is_empty())
        {
            String::new()
        } else {
            let digest = ring::digest::digest(&ring::digest::SHA256, signed_payload.as_bytes());
            format!("sha256:{}", hex::encode(digest.as_ref()))
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

    /// Apple's checks after decoding, as the official verifier for the
    /// payload's app and environment answers them. When this server has no
    /// verifier for that environment (not configured, or Production without
    /// the app's Apple id), the app's other verifiers answer:
    /// INVALID_ENVIRONMENT if one passed the app check, else
    /// INVALID_APP_IDENTIFIER. An unknown bundle id is INVALID_APP_IDENTIFIER.
    fn accepting_verifier(
        &self,
        identity: &AppIdentity<'_>,
    ) -> Result<ScopedVerifier<'_>, VerificationError> {
        let candidates: Vec<ScopedVerifier<'_>> = self
            .verifiers()
            .filter(|v| identity.bundle_id == Some(v.app.bundle_id.as_str()))
            .collect();
        if let Some(own) = candidates
            .iter()
            .find(|v| identity.environment == Some(v.environment.as_str()))
        {
            return own.check_notification(identity).map(|()| *own);
        }
        let mut refusal = None;
        for verifier in &candidates {
            if let Err(e) = verifier.check_notification(identity) {
                if refusal.is_none() || e.status == VerificationStatus::InvalidEnvironment {
                    refusal = Some(e);
                }
            }
        }
        Err(refusal.unwrap_or_else(|| {
            VerificationError::new(
                VerificationStatus::InvalidAppIdentifier,
                format!(
                    "bundle id {} is not a configured app",
                    describe(identity.bundle_id)
                ),
            )
        }))
    }
}

/// The equivalent of one official
/// `SignedDataVerifier(root_certificates, False, environment, bundle_id, app_apple_id)`.
#[derive(Clone, Copy)]
pub struct ScopedVerifier<'a> {
    verifier: &'a SignedDataVerifier,
    pub app: &'a App,
    pub environment: AppleEnvironment,
}

impl ScopedVerifier<'_> {
    fn production(&self) -> bool {
        self.environment == AppleEnvironment::Production
    }

    /// `verify_and_decode_notification`.
    pub fn verify_and_decode_notification(
        &self,
        jws: &str,
        now_ms: i64,
    ) -> Result<(NotificationPayload, Map<String, Value>), VerificationError> {
        let (payload, json): (NotificationPayload, _) = self.verify_object(jws, now_ms)?;
        self.check_notification(&payload.identity())?;
        Ok((payload, json))
    }

    /// The library's `_verify_notification`: bundle id (and, for
    /// Production, app Apple id) first, then the environment.
    fn check_notification(&self, identity: &AppIdentity<'_>) -> Result<(), VerificationError> {
        if identity.bundle_id != Some(self.app.bundle_id.as_str())
            || (self.production() && identity.app_apple_id != self.app.app_apple_id)
        {
            return Err(VerificationError::new(
                VerificationStatus::InvalidAppIdentifier,
                format!(
                    "bundle id {} (app Apple id {}) is not a configured app",
                    describe(identity.bundle_id),
                    identity
                        .app_apple_id
                        .map_or_else(|| "none".to_owned(), |i| i.to_string()),
                ),
            ));
        }
        self.check_environment(identity.environment, "notification")
    }

    /// `verify_and_decode_signed_transaction`: bundle id, then environment.
    pub fn verify_and_decode_signed_transaction(
        &self,
        jws: &str,
        now_ms: i64,
    ) -> Result<(TransactionInfo, Map<String, Value>), VerificationError> {
        let (tx, json): (TransactionInfo, _) = self.verify_object(jws, now_ms)?;
        self.check_app_of("transaction", tx.bundle_id(), None)?;
        self.check_environment(tx.environment(), "transaction")?;
        Ok((tx, json))
    }

    /// `verify_and_decode_renewal_info`: environment only.
    pub fn verify_and_decode_renewal_info(
        &self,
        jws: &str,
        now_ms: i64,
    ) -> Result<(RenewalInfo, Map<String, Value>), VerificationError> {
        let (renewal, json): (RenewalInfo, _) = self.verify_object(jws, now_ms)?;
        self.check_environment(renewal.environment(), "renewal info")?;
        Ok((renewal, json))
    }

    /// `verify_and_decode_app_transaction`: bundle id (and app Apple id in
    /// Production), then `receiptType` as the environment.
    pub fn verify_and_decode_app_transaction(
        &self,
        jws: &str,
        now_ms: i64,
    ) -> Result<(AppTransaction, Map<String, Value>), VerificationError> {
        let (app_tx, json): (AppTransaction, _) = self.verify_object(jws, now_ms)?;
        self.check_app_of(
            "app transaction",
            app_tx.bundle_id(),
            Some(app_tx.app_apple_id()),
        )?;
        self.check_environment(app_tx.receipt_type(), "app transaction")?;
        Ok((app_tx, json))
    }

    /// Verifies `jws` and reads its payload in Apple's schema, keeping the
    /// JSON too.
    fn verify_object<T: serde::de::DeserializeOwned>(
        &self,
        jws: &str,
        now_ms: i64,
    ) -> Result<(T, Map<String, Value>), VerificationError> {
        let json = self.verifier.verify_signed_object(jws, now_ms)?;
        let object = structure(&json).map_err(schema_error)?;
        Ok((object, json))
    }

    /// `what` names this app: its bundle id, and in Production its app
    /// Apple id when one is given (`Some`: the payload carries the field).
    fn check_app_of(
        &self,
        what: &str,
        bundle_id: Option<&str>,
        app_apple_id: Option<Option<i64>>,
    ) -> Result<(), VerificationError> {
        let other_app =
            app_apple_id.is_some_and(|id| self.production() && id != self.app.app_apple_id);
        if bundle_id != Some(self.app.bundle_id.as_str()) || other_app {
            return Err(VerificationError::new(
                VerificationStatus::InvalidAppIdentifier,
                format!(
                    "the {what}'s bundle id {} is not {}",
                    describe(bundle_id),
                    self.app.bundle_id
                ),
            ));
        }
        Ok(())
    }

    fn check_environment(
        &self,
        environment: Option<&str>,
        what: &str,
    ) -> Result<(), VerificationError> {
        if environment == Some(self.environment.as_str()) {
            return Ok(());
        }
        Err(VerificationError::new(
            VerificationStatus::InvalidEnvironment,
            format!(
                "the {what}'s environment {} is not {}",
                describe(environment),
                self.environment.as_str()
            ),
        ))
    }
}

#[storehook_core::async_trait]
impl StoreAdapter for AppleAdapter {
    async fn verify_and_decode(&self, request: &IncomingRequest) -> Result<Outcome, AdapterError> {
        self.verify_body(&request.body, request.received_at_ms)
            .map(|n| Outcome::Notification(Box::new(n)))
    }

    fn api_capabilities(&self) -> ApiCapabilities {
        ApiCapabilities::without_acknowledgement(self.api.is_some())
    }

    async fn check_connection(&self, host: &dyn StoreHost) -> Result<CheckReport, AdapterError> {
        check::check_connection(self, host).await
    }

    async fn backfill_page(&self, req: BackfillRequest<'_>) -> Result<BackfillPage, AdapterError> {
        backfill::backfill_page(self, req).await
    }

    fn startup_warnings(&self) -> Vec<String> {
        let mut warnings = self.settings.warnings.clone();
        if let Some(problem) = &self.api_problem {
            warnings.push(format!(
                "App Store: the App Store Server API client could not start ({problem}); check \
                 connection and backfill are off"
            ));
        }
        warnings
    }
}

/// The body Apple POSTs for a notification, `{"signedPayload":"…"}`: what a
/// signed payload from the API is verified and stored as.
pub(crate) fn signed_payload_body(signed_payload: &str) -> Vec<u8> {
    let mut object = Map::new();
    object.insert(
        "signedPayload".to_owned(),
        Value::String(signed_payload.to_owned()),
    );
    // Serializing a map of one string cannot fail.
    serde_json::to_vec(&Value::Object(object)).unwrap_or_default()
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
