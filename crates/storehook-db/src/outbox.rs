//! The transactional outbox: the normalized events a notification produces
//! are written in the same transaction as the notification itself, with one
//! delivery row per endpoint that wants them. An acknowledged notification
//! can never lose its events; a crash can never send an event for a
//! notification that was not stored.

use crate::sqlite::Cached;
use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use serde_json::json;
use storehook_core::{Environment, EventDetails, EventType};

use crate::DbError;

/// Where events go, fixed at start-up from `[[webhooks]]` and `[[forward]]`.
#[derive(Debug, Clone, Default)]
pub struct OutboxConfig {
    pub routes: Vec<EventRoute>,
    pub forwards: Vec<ForwardRoute>,
    /// Store id → the label events carry (`apple` → `APP_STORE`).
    pub store_labels: BTreeMap<String, String>,
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

impl EventRoute {
    fn wants(&self, e: &EventSource) -> bool {
        fn ok<T: PartialEq>(list: &[T], v: Option<&T>) -> bool {
            list.is_empty() || v.is_some_and(|v| list.contains(v))
        }
        ok(&self.stores, Some(&e.store))
            && ok(&self.environments, Some(&e.environment))
            && ok(&self.event_types, Some(&e.event_type))
            && ok(&self.apps, e.app_id.as_ref())
    }
}

/// A raw forward: every verified notification of these stores (all when
/// empty), byte for byte with the store's headers.
#[derive(Debug, Clone, Default)]
pub struct ForwardRoute {
    pub name: String,
    pub stores: Vec<String>,
}

/// What an event is made from: a stored notification.
pub(crate) struct EventSource {
    pub row: i64,
    pub store: String,
    pub notification_id: String,
    pub subscription_key: Option<String>,
    pub event_type: EventType,
    pub raw_type: String,
    pub environment: Environment,
    pub occurred_at_ms: i64,
    pub product_id: Option<String>,
    pub app_id: Option<String>,
    pub details: EventDetails,
}

/// A stable event id derived from the notification it comes from, so a
/// rebuilt outbox would name the same event the same way.
fn event_id(store: &str, notification_id: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(store.as_bytes());
    ctx.update(&[0]);
    ctx.update(notification_id.as_bytes());
    let digest = ctx.finish();
    format!("evt_{}", hex::encode(&digest.as_ref()[..16]))
}

/// Writes the event for one applied notification and its deliveries.
pub(crate) fn emit_event(
    conn: &Connection,
    cfg: &OutboxConfig,
    src: &EventSource,
    now: i64,
) -> Result<(), DbError> {
    let routes: Vec<&EventRoute> = cfg.routes.iter().filter(|r| r.wants(src)).collect();
    if routes.is_empty() {
        return Ok(());
    }
    let id = event_id(&src.store, &src.notification_id);
    let exists = conn
        .prepare_cached("SELECT 1 FROM events WHERE event_id = ?1")?
        .exists([&id])?;
    if exists {
        return Ok(());
    }
    // The subscription as it stands now (after this notification).
    let sub = match &src.subscription_key {
        Some(key) => {
            conn.exec(
                "UPDATE subscriptions SET event_sequence = event_sequence + 1 WHERE store = ?1 AND subscription_key = ?2",
                params![src.store, key],
            )?;
            conn.prepare_cached(
                "SELECT app_user_id, status, expires_at, auto_renew, product_id, event_sequence
                 FROM subscriptions WHERE store = ?1 AND subscription_key = ?2",
            )?
            .query_row(params![src.store, key], |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, Option<bool>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })
            .optional()?
        }
        None => None,
    };
    let (app_user_id, status, expires, auto_renew, product, sequence) =
        sub.unwrap_or((None, None, None, None, None, 1));
    let label = cfg
        .store_labels
        .get(&src.store)
        .cloned()
        .unwrap_or_else(|| src.store.to_uppercase());
    let d = &src.details;
    let body = json!({
        "api_version": "1.0",
        "event": {
            "id": id,
            "type": src.event_type,
            "store_event_type": src.raw_type,
            "store": label,
            "environment": src.environment.as_str().to_uppercase(),
            "app_id": src.app_id,
            "app_user_id": app_user_id,
            "subscription_id": src.subscription_key,
            "product_id": product.or_else(|| src.product_id.clone()),
            "event_timestamp_ms": src.occurred_at_ms,
            "purchased_at_ms": d.purchased_at_ms,
            "expiration_at_ms": expires,
            "status": status,
            "auto_renew": auto_renew,
            "transaction_id": d.transaction_id,
            "original_transaction_id": d.original_transaction_id,
            "cancel_reason": d.cancel_reason,
            "expiration_reason": d.expiration_reason,
            "price": d.price,
            "currency": d.currency,
            "store_notification_id": src.notification_id,
            "sequence": sequence,
        }
    });
    let body_text = body.to_string();
    conn.exec(
        "INSERT INTO events (event_id, notification_row, store, subscription_key, event_type, environment,
             app_id, app_user_id, sequence, created_at, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            id,
            src.row,
            src.store,
            src.subscription_key,
            src.event_type.as_str(),
            src.environment.as_str(),
            src.app_id,
            app_user_id,
            sequence,
            now,
            body_text,
        ],
    )?;
    let seq = conn.last_insert_rowid();
    let order_key = src
        .subscription_key
        .as_ref()
        .map(|k| format!("{}:{k}", src.store));
    for route in routes {
        conn.exec(
            "INSERT INTO deliveries (endpoint, kind, event_seq, event_id, notification_row, order_key, status,
                 next_attempt_at, created_at, payload)
             VALUES (?1, 'event', ?2, ?3, ?4, ?5, 'pending', ?6, ?6, ?7)",
            params![route.endpoint, seq, id, src.row, order_key, now, body_text.as_bytes()],
        )?;
    }
    Ok(())
}

/// Queues raw forwards of one stored notification (row `row`).
pub(crate) fn emit_forwards(
    conn: &Connection,
    cfg: &OutboxConfig,
    row: i64,
    new: &crate::NewNotification,
) -> Result<(), DbError> {
    let n = &new.notification;
    let store = n.store.as_str();
    let wanted: Vec<&ForwardRoute> = cfg
        .forwards
        .iter()
        .filter(|f| f.stores.is_empty() || f.stores.iter().any(|s| s == store))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let headers_json =
        serde_json::to_string(&new.forward_headers).map_err(|e| DbError::Corrupt(e.to_string()))?;
    let order_key = n.subscription_key.as_ref().map(|k| format!("{store}:{k}"));
    for f in wanted {
        conn.exec(
            "INSERT INTO deliveries (endpoint, kind, event_id, notification_row, order_key, status,
                 next_attempt_at, created_at, headers_json, payload)
             VALUES (?1, 'forward', ?2, ?3, ?4, 'pending', ?5, ?5, ?6, ?7)",
            params![
                f.name,
                n.notification_id,
                row,
                order_key,
                new.received_at_ms,
                headers_json,
                new.raw_body
            ],
        )?;
    }
    Ok(())
}

/// Builds the event source of a stored notification (for notifications
/// adopted when their subscription becomes tracked).
pub(crate) fn source_of_row(conn: &Connection, row: i64) -> Result<Option<EventSource>, DbError> {
    let found = conn
        .prepare_cached(
            "SELECT store, notification_id, subscription_key, event_type, raw_type, environment, occurred_at,
                 product_id, app_id, details_json
             FROM notifications WHERE id = ?1",
        )?
        .query_row([row], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<i64>>(6)?,
                r.get::<_, Option<String>>(7)?,
                r.get::<_, Option<String>>(8)?,
                r.get::<_, Option<String>>(9)?,
            ))
        })
        .optional()?;
    let Some((store, nid, key, event_type, raw_type, env, at, product, app, details)) = found
    else {
        return Ok(None);
    };
    let (Some(event_type), Some(environment)) = (
        event_type.as_deref().and_then(EventType::parse),
        env.as_deref().and_then(Environment::parse),
    ) else {
        return Ok(None);
    };
    let details = match details {
        Some(text) => serde_json::from_str(&text).map_err(|e| DbError::Corrupt(e.to_string()))?,
        None => EventDetails::default(),
    };
    Ok(Some(EventSource {
        row,
        store,
        notification_id: nid,
        subscription_key: key,
        event_type,
        raw_type: raw_type.unwrap_or_default(),
        environment,
        occurred_at_ms: at.unwrap_or(0),
        product_id: product,
        app_id: app,
        details,
    }))
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
