//! An example store plugin, discovered by the host through `inventory` alone.
//!
//! It is the smallest complete adapter — config → verify → decode → map —
//! and the host's end-to-end tests use it to drive every host behaviour
//! (tracking, ordering, duplicates, acknowledged rejections, background state
//! fetches) with notifications whose every field the test chooses.
//!
//! Wire format: `POST /v1/notifications/example` with header
//! `x-example-key: <key>` and a JSON body
//! `{"id", "type", "subscription"?, "at", "status"?, "expires_at"?,
//!   "auto_renew"?, "product"?, "user"?, "continues"?, "attention"?, "sandbox"?,
//!   "fetch"?, "garbage"?, "code"?, "message"?}`: with `"garbage": true` the
//! notification is an acknowledged rejection, with `code` and `message` if
//! given.

// Production code never unwraps: a panic on a request path is a dropped
// notification. Tests may (they are meant to stop at the first surprise).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod api;

use std::sync::atomic::{AtomicU32, Ordering};

use serde::Deserialize;
use storehook_core::{
    async_trait, inventory, parse_store_config, AckOutcome, AdapterError, ApiCapabilities,
    BackfillPage, BackfillRequest, CheckReport, ConfigError, Environment, EventDetails, EventType,
    FactoryContext, ImpliedState, IncomingRequest, Outcome, StateUpdate, StoreAdapter, StoreHelp,
    StoreHost, StoreRegistration, SubscriptionRef, SubscriptionStatus, VerifiedNotification,
};

/// Referenced by whoever links this crate, so the linker keeps it.
pub fn link() {}

// ---- config ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExampleConfig {
    /// The shared key senders put in `x-example-key` (env `EXAMPLE_KEY` wins).
    #[serde(default)]
    key: Option<String>,
    /// How many `fetch_state` calls fail before one succeeds (tests the
    /// host's retry of background fetches).
    #[serde(default)]
    fetch_failures: u32,
    /// The status `fetch_state` reports.
    #[serde(default)]
    fetched_status: Option<String>,
    /// Whether `fetch_state` says the purchase still needs acknowledging.
    #[serde(default)]
    fetched_ack_pending: bool,
    /// `[stores.example.api]`: the pull side (see `api.rs`).
    #[serde(default)]
    api: Option<api::ApiConfig>,
}

struct ExampleAdapter {
    key: String,
    fetch_failures: u32,
    fetch_calls: AtomicU32,
    fetched_status: Option<SubscriptionStatus>,
    fetched_ack_pending: bool,
    api: Option<api::ExampleApi>,
}

fn build(
    table: &toml::Table,
    ctx: &FactoryContext<'_>,
) -> Result<Box<dyn StoreAdapter>, ConfigError> {
    let config: ExampleConfig = parse_store_config("example", table)?;
    let key = ctx
        .env_var("EXAMPLE_KEY")
        .or(config.key)
        .ok_or_else(|| ConfigError::key("example", "key", "required (or env EXAMPLE_KEY)"))?;
    let fetched_status = match config.fetched_status.as_deref() {
        None => None,
        Some(s) => Some(SubscriptionStatus::parse(s).ok_or_else(|| {
            ConfigError::key("example", "fetched_status", format!("unknown status `{s}`"))
        })?),
    };
    let api = match config.api {
        None => None,
        Some(api) => Some(api::ExampleApi::new(api, |p| ctx.resolve_path(p))?),
    };
    Ok(Box::new(ExampleAdapter {
        key,
        fetch_failures: config.fetch_failures,
        fetch_calls: AtomicU32::new(0),
        fetched_status,
        fetched_ack_pending: config.fetched_ack_pending,
        api,
    }))
}

// ---- verify ----

fn verify_key(request: &IncomingRequest, expected: &str) -> Result<(), AdapterError> {
    let given = request.header("x-example-key").ok_or_else(|| {
        AdapterError::unauthorized("missing_key", "the x-example-key header is missing")
    })?;
    if storehook_core::Secret::new(expected).matches(given) {
        Ok(())
    } else {
        Err(AdapterError::unauthorized(
            "wrong_key",
            "x-example-key does not match the configured key",
        ))
    }
}

// ---- decode ----

#[derive(Deserialize)]
struct WireNotification {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    subscription: Option<String>,
    at: i64,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    expires_at: Option<i64>,
    #[serde(default)]
    auto_renew: Option<bool>,
    #[serde(default)]
    product: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    continues: Option<String>,
    #[serde(default)]
    sandbox: bool,
    #[serde(default)]
    fetch: bool,
    #[serde(default)]
    attention: Option<String>,
    /// Set to simulate an authenticated sender with unusable content.
    #[serde(default)]
    garbage: bool,
    /// The rejection's code and message (with `garbage`).
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

// ---- map ----

fn map_notification(
    wire: WireNotification,
    decoded: serde_json::Value,
) -> Result<Outcome, AdapterError> {
    if wire.garbage {
        return Ok(Outcome::AcknowledgedRejection {
            notification_id: Some(wire.id),
            code: wire.code.unwrap_or_else(|| "malformed_data".into()),
            message: wire.message.unwrap_or_else(|| {
                "the sender is authenticated but the content is unusable".into()
            }),
        });
    }
    let event_type = EventType::parse(&wire.kind).unwrap_or(EventType::Other);
    let status = match wire.status.as_deref() {
        None => None,
        Some(s) => Some(SubscriptionStatus::parse(s).ok_or_else(|| {
            AdapterError::malformed("bad_status", format!("unknown status `{s}`"))
        })?),
    };
    Ok(Outcome::Notification(Box::new(VerifiedNotification {
        store: "example".into(),
        environment: if wire.sandbox {
            Environment::Sandbox
        } else {
            Environment::Production
        },
        notification_id: wire.id,
        subscription_key: wire.subscription,
        event_type,
        raw_type: wire.kind,
        occurred_at_ms: wire.at,
        product_id: wire.product.clone(),
        purchase_kind: None,
        app_id: Some("com.example.app".into()),
        state: ImpliedState {
            status,
            expires_at_ms: wire.expires_at,
            auto_renew: wire.auto_renew,
            product_id: wire.product,
        },
        app_user_id_hint: wire.user,
        continues_subscription_key: wire.continues,
        attention: wire.attention,
        state_fetch_pending: wire.fetch,
        details: EventDetails::default(),
        decoded,
    })))
}

/// Decodes and maps an example notification (already authenticated).
fn decode_and_map(request: &IncomingRequest) -> Result<Outcome, AdapterError> {
    let decoded: serde_json::Value = serde_json::from_slice(&request.body).map_err(|e| {
        AdapterError::malformed("invalid_json", format!("the body is not JSON: {e}"))
    })?;
    let wire: WireNotification = serde_json::from_value(decoded.clone()).map_err(|e| {
        AdapterError::malformed(
            "malformed_notification",
            format!("not an example notification: {e}"),
        )
    })?;
    map_notification(wire, decoded)
}

#[async_trait]
impl StoreAdapter for ExampleAdapter {
    async fn verify_and_decode(&self, request: &IncomingRequest) -> Result<Outcome, AdapterError> {
        verify_key(request, &self.key)?;
        decode_and_map(request)
    }

    fn api_capabilities(&self) -> ApiCapabilities {
        self.api
            .as_ref()
            .map(api::ExampleApi::capabilities)
            .unwrap_or_default()
    }

    async fn check_connection(&self, host: &dyn StoreHost) -> Result<CheckReport, AdapterError> {
        Ok(match &self.api {
            Some(api) => api.check(host).await,
            None => CheckReport::not_configured("Set [stores.example.api] history_file."),
        })
    }

    async fn backfill_page(&self, req: BackfillRequest<'_>) -> Result<BackfillPage, AdapterError> {
        match &self.api {
            // The API call authenticates what it returns: no key to check.
            Some(api) => api.backfill_page(req, decode_and_map).await,
            None => Err(AdapterError::Unsupported {
                message: "no [stores.example.api] configured".into(),
            }),
        }
    }

    async fn acknowledge(&self, purchase: SubscriptionRef<'_>) -> Result<AckOutcome, AdapterError> {
        match &self.api {
            Some(api) => api.acknowledge(purchase).await,
            None => Ok(AckOutcome::NotNeeded),
        }
    }

    async fn fetch_state(
        &self,
        _subscription: SubscriptionRef<'_>,
    ) -> Result<Option<StateUpdate>, AdapterError> {
        let call = self.fetch_calls.fetch_add(1, Ordering::SeqCst);
        if call < self.fetch_failures {
            return Err(AdapterError::unavailable(
                "api_unavailable",
                "the example store's API failed (simulated)",
            ));
        }
        Ok(Some(StateUpdate {
            state: ImpliedState {
                status: self.fetched_status,
                ..Default::default()
            },
            as_of_ms: i64::MAX / 4,
            acknowledgement_pending: self.fetched_ack_pending,
            ..Default::default()
        }))
    }
}

// ---- registration ----

/// The dashboard card's help: a plugin brings its own, the host names no
/// store. `wrong_key` is left out on purpose: a code without a meaning shows
/// the adapter's own message, and the host's tests watch that path.
pub const HELP: StoreHelp = StoreHelp {
    console: "the example store's sender",
    setup: &[
        "Point the sender at `{url}`: it **POST**s one JSON notification per request.",
        "Give it the shared key in the `x-example-key` header, and storehook the same key in \
         `[stores.example] key` (or the environment variable `EXAMPLE_KEY`); restart storehook.",
    ],
    test: Some(
        "Send a notification with `\"type\": \"TEST\"`: this card shows **only untracked \
         notifications so far** with **Last verified delivery** just now.",
    ),
    codes: &[
        (
            &["missing_key"],
            "the request had no x-example-key header (not sent by the example sender?)",
        ),
        (
            &["malformed_notification", "bad_status"],
            "the body is JSON but not an example notification",
        ),
        (
            &["malformed_data"],
            "the sender is authenticated, but the notification's content is unusable (kept as rejected)",
        ),
    ],
};

inventory::submit! {
    StoreRegistration {
        help: HELP,
        ..StoreRegistration::new("example", "Example Store", "EXAMPLE", build)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storehook_core::conformance::Suite;

    fn adapter() -> ExampleAdapter {
        ExampleAdapter {
            key: "k".into(),
            fetch_failures: 0,
            fetch_calls: AtomicU32::new(0),
            fetched_status: None,
            fetched_ack_pending: false,
            api: None,
        }
    }

    #[tokio::test]
    async fn passes_the_conformance_suite() {
        let a = adapter();
        let body = r#"{"id":"n1","type":"RENEWAL","subscription":"s1","at":5,"status":"active"}"#;
        let valid = IncomingRequest::new(body, 0).with_header("x-example-key", "k");
        Suite {
            store: "example",
            adapter: &a,
            valid: vec![valid.clone()],
            malformed: vec![
                (
                    IncomingRequest::new("nope", 0).with_header("x-example-key", "k"),
                    Some("invalid_json"),
                ),
                (
                    IncomingRequest::new("{}", 0).with_header("x-example-key", "k"),
                    Some("malformed_notification"),
                ),
            ],
            forged: vec![
                (IncomingRequest::new(body, 0), Some("missing_key")),
                (
                    IncomingRequest::new(body, 0).with_header("x-example-key", "K"),
                    Some("wrong_key"),
                ),
            ],
            // A shared key authenticates the sender, not the body.
            body_is_signed: false,
        }
        .run()
        .await;
    }
}
