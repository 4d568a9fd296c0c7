//! Events and raw forwards: what the outbox gets for a stored notification,
//! written in the notification's own transaction.

use serde_json::json;
use storehook_core::{Environment, EventDetails, EventType};

use super::Ledger;
use crate::outbox::{EventRoute, ForwardRoute, OutboxConfig};
use crate::{DbError, NewNotification};

/// What an event is made from: a stored notification.
#[derive(Debug, Clone)]
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

impl EventSource {
    pub fn of(row: i64, n: &storehook_core::VerifiedNotification) -> Self {
        Self {
            row,
            store: n.store.clone(),
            notification_id: n.notification_id.clone(),
            subscription_key: n.subscription_key.clone(),
            event_type: n.event_type,
            raw_type: n.raw_type.clone(),
            environment: n.environment,
            occurred_at_ms: n.occurred_at_ms,
            product_id: n.product_id.clone(),
            app_id: n.app_id.clone(),
            details: n.details.clone(),
        }
    }
}

/// The subscription as an event shows it (after the notification).
#[derive(Debug, Clone, Default)]
pub(crate) struct SubscriptionView {
    pub app_user_id: Option<String>,
    pub status: Option<String>,
    pub expires_at_ms: Option<i64>,
    pub auto_renew: Option<bool>,
    pub product_id: Option<String>,
    /// This event's number among the subscription's events, from 1.
    pub sequence: i64,
}

/// An event row.
#[derive(Debug)]
pub(crate) struct NewEvent<'a> {
    pub event_id: &'a str,
    pub source: &'a EventSource,
    pub app_user_id: Option<&'a str>,
    pub sequence: i64,
    pub created_at_ms: i64,
    pub body: &'a str,
}

/// A delivery row: an event to a webhook, or a raw forward.
#[derive(Debug)]
pub(crate) struct NewDelivery<'a> {
    pub endpoint: &'a str,
    pub kind: DeliveryKind,
    /// The event's global sequence (events only).
    pub event_seq: Option<i64>,
    /// The event id, or the notification id for a forward.
    pub event_id: &'a str,
    pub notification_row: i64,
    pub order_key: Option<&'a str>,
    pub due_at_ms: i64,
    /// Request headers kept for a forward, as JSON.
    pub headers_json: Option<&'a str>,
    pub payload: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeliveryKind {
    Event,
    Forward,
}

impl DeliveryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryKind::Event => "event",
            DeliveryKind::Forward => "forward",
        }
    }
}

/// A stable event id derived from the notification it comes from, so a
/// rebuilt outbox (or another backend) names the same event the same way.
pub(crate) fn event_id(store: &str, notification_id: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(store.as_bytes());
    ctx.update(&[0]);
    ctx.update(notification_id.as_bytes());
    let digest = ctx.finish();
    format!("evt_{}", hex::encode(&digest.as_ref()[..16]))
}

/// Deliveries of one subscription go out in order; other subscriptions'
/// are not held back by them.
fn order_key(store: &str, subscription_key: Option<&String>) -> Option<String> {
    subscription_key.map(|k| format!("{store}:{k}"))
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

impl ForwardRoute {
    fn wants(&self, store: &str) -> bool {
        self.stores.is_empty() || self.stores.iter().any(|s| s == store)
    }
}

/// The body every webhook receives (RevenueCat's names where they exist).
fn event_body(cfg: &OutboxConfig, id: &str, src: &EventSource, sub: &SubscriptionView) -> String {
    let label = cfg
        .store_labels
        .get(&src.store)
        .cloned()
        .unwrap_or_else(|| src.store.to_uppercase());
    let d = &src.details;
    json!({
        "api_version": "1.0",
        "event": {
            "id": id,
            "type": src.event_type,
            "store_event_type": src.raw_type,
            "store": label,
            "environment": src.environment.as_str().to_uppercase(),
            "app_id": src.app_id,
            "app_user_id": sub.app_user_id,
            "subscription_id": src.subscription_key,
            "product_id": sub.product_id.clone().or_else(|| src.product_id.clone()),
            "event_timestamp_ms": src.occurred_at_ms,
            "purchased_at_ms": d.purchased_at_ms,
            "expiration_at_ms": sub.expires_at_ms,
            "status": sub.status,
            "auto_renew": sub.auto_renew,
            "transaction_id": d.transaction_id,
            "original_transaction_id": d.original_transaction_id,
            "cancel_reason": d.cancel_reason,
            "expiration_reason": d.expiration_reason,
            "price": d.price,
            "currency": d.currency,
            "store_notification_id": src.notification_id,
            "sequence": sub.sequence,
        }
    })
    .to_string()
}

/// Writes the event for one applied notification and a delivery per
/// endpoint that wants it; once per notification, however often asked.
pub(crate) fn emit_event<L: Ledger + ?Sized>(
    l: &L,
    cfg: &OutboxConfig,
    src: &EventSource,
    now_ms: i64,
) -> Result<(), DbError> {
    let routes: Vec<&EventRoute> = cfg.routes.iter().filter(|r| r.wants(src)).collect();
    if routes.is_empty() {
        return Ok(());
    }
    let id = event_id(&src.store, &src.notification_id);
    if l.event_exists(&id)? {
        return Ok(());
    }
    let sub = match &src.subscription_key {
        Some(key) => l.next_event_sequence(&src.store, key)?,
        None => None,
    }
    .unwrap_or(SubscriptionView {
        sequence: 1,
        ..SubscriptionView::default()
    });
    let body = event_body(cfg, &id, src, &sub);
    let seq = l.insert_event(&NewEvent {
        event_id: &id,
        source: src,
        app_user_id: sub.app_user_id.as_deref(),
        sequence: sub.sequence,
        created_at_ms: now_ms,
        body: &body,
    })?;
    let order_key = order_key(&src.store, src.subscription_key.as_ref());
    for route in routes {
        l.insert_delivery(&NewDelivery {
            endpoint: &route.endpoint,
            kind: DeliveryKind::Event,
            event_seq: Some(seq),
            event_id: &id,
            notification_row: src.row,
            order_key: order_key.as_deref(),
            due_at_ms: now_ms,
            headers_json: None,
            payload: body.as_bytes(),
        })?;
    }
    Ok(())
}

/// Queues raw forwards of one stored notification (row `row`).
pub(crate) fn emit_forwards<L: Ledger + ?Sized>(
    l: &L,
    cfg: &OutboxConfig,
    row: i64,
    new: &NewNotification,
) -> Result<(), DbError> {
    let n = &new.notification;
    let wanted: Vec<&ForwardRoute> = cfg.forwards.iter().filter(|f| f.wants(&n.store)).collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let headers_json = super::to_json(&new.forward_headers)?;
    let order_key = order_key(&n.store, n.subscription_key.as_ref());
    for f in wanted {
        l.insert_delivery(&NewDelivery {
            endpoint: &f.name,
            kind: DeliveryKind::Forward,
            event_seq: None,
            event_id: &n.notification_id,
            notification_row: row,
            order_key: order_key.as_deref(),
            due_at_ms: new.received_at_ms,
            headers_json: Some(&headers_json),
            payload: &new.raw_body,
        })?;
    }
    Ok(())
}
