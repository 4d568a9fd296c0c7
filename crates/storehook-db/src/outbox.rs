//! The transactional outbox: the normalized events a notification produces
//! are written in the same transaction as the notification itself, with one
//! delivery row per endpoint that wants them. An acknowledged notification
//! can never lose its events; a crash can never send an event for a
//! notification that was not stored. The rows are written by
//! [`crate::rules`]; this module holds the outbox's configuration and the
//! records read back from it.

use std::collections::BTreeMap;

use serde::Serialize;
use storehook_core::{Environment, EventType};

/// Where events go, fixed at start-up from `[[webhooks]]` and `[[forward]]`.
#[derive(Debug, Clone, Default)]
pub struct OutboxConfig {
    pub routes: Vec<EventRoute>,
    pub forwards: Vec<ForwardRoute>,
    /// Store id → the label events carry (`apple` → `APP_STORE`).
    pub store_labels: BTreeMap<String, String>,
    /// Leaves the chart tables alone on the write path. Only for the
    /// benchmark that measures what maintaining them costs: charts are
    /// wrong until `rebuild_charts`.
    pub skip_chart_maintenance: bool,
}

/// One webhook endpoint's filters; an empty list means "all".
#[derive(Debug, Clone, Default)]
pub struct EventRoute {
    pub endpoint: String,
    pub stores: Vec<String>,
    pub environments: Vec<Environment>,
    pub event_types: Vec<EventType>,
    pub apps: Vec<String>,
}

/// A raw forward: every verified notification of these stores (all when
/// empty), byte for byte with the store's headers.
#[derive(Debug, Clone, Default)]
pub struct ForwardRoute {
    pub name: String,
    pub stores: Vec<String>,
}

// ---- delivery records ----

/// A delivery ready to be attempted.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub id: i64,
    pub endpoint: String,
    /// `event`, `forward` or `test`.
    pub kind: String,
    /// The event id (`webhook-id`), or the store's notification id for a forward.
    pub event_id: String,
    pub attempts: i64,
    pub payload: Vec<u8>,
    /// For forwards: the store's original headers.
    pub headers: Vec<(String, String)>,
}

/// What one attempt led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    RetryAt(i64),
    Dead,
}

#[derive(Debug, Clone)]
pub struct AttemptResult {
    pub delivery_id: i64,
    pub at_ms: i64,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: i64,
    /// The first bytes of the receiver's answer, for the operator.
    pub response_excerpt: Option<String>,
    pub outcome: AttemptOutcome,
}

impl AttemptResult {
    /// What the attempt makes of its delivery's row: the new `status`, the
    /// next attempt's time and the delivery time (each `None` keeps the
    /// column as it is).
    pub(crate) fn delivery_update(&self) -> (&'static str, Option<i64>, Option<i64>) {
        match self.outcome {
            AttemptOutcome::Delivered => ("delivered", None, Some(self.at_ms)),
            AttemptOutcome::RetryAt(t) => ("pending", Some(t), None),
            AttemptOutcome::Dead => ("dead", None, None),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct EventRecord {
    pub seq: i64,
    pub event_id: String,
    pub store: String,
    pub subscription_id: Option<String>,
    pub event_type: String,
    pub environment: String,
    pub app_id: Option<String>,
    pub app_user_id: Option<String>,
    pub sequence: i64,
    pub created_at_ms: i64,
    pub body: serde_json::Value,
}

#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub store: Option<String>,
    pub event_type: Option<String>,
    pub app_user_id: Option<String>,
    /// Cursor: only events after this sequence number.
    pub after: Option<i64>,
    pub limit: u32,
}

/// The id and body of a TEST event queued for delivery `id`.
pub(crate) fn test_event(id: i64, now_ms: i64) -> (String, String) {
    let event_id = format!("evt_test_{id}");
    let body = serde_json::json!({
        "api_version": "1.0",
        "event": {
            "id": event_id,
            "type": "TEST",
            "store": null,
            "environment": "SANDBOX",
            "event_timestamp_ms": now_ms,
            "sequence": 0,
        }
    })
    .to_string();
    (event_id, body)
}

impl EventFilter {
    pub(crate) fn page_size(&self) -> i64 {
        crate::rules::page_size(self.limit, 100, 1000)
    }
}

/// A page of one endpoint's deliveries.
pub(crate) fn delivery_page_size(limit: u32) -> i64 {
    crate::rules::page_size(limit, 100, 1000)
}

#[derive(Debug, Clone, Serialize)]
pub struct AttemptRecord {
    pub at_ms: i64,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub response: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRecord {
    pub id: i64,
    pub endpoint: String,
    pub kind: String,
    pub event_id: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at_ms: Option<i64>,
    pub created_at_ms: i64,
    pub delivered_at_ms: Option<i64>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub history: Vec<AttemptRecord>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct EndpointStats {
    pub endpoint: String,
    pub pending: i64,
    pub delivered: i64,
    pub dead: i64,
    pub last_success_ms: Option<i64>,
    pub last_failure_ms: Option<i64>,
    pub last_failure_status: Option<u16>,
    pub last_failure_error: Option<String>,
    pub last_failure_response: Option<String>,
}
