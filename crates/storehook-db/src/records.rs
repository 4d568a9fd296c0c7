//! Rows into records, once for every backend. Each backend selects the
//! columns in the order a decoder names and hands its row over as
//! [`Columns`]; what the columns mean is decided here.

use storehook_core::{
    Environment, EventDetails, EventType, ImpliedState, PurchaseKind, SubscriptionStatus,
    TrackedSubscription,
};

use crate::outbox::{AttemptRecord, DeliveryRecord, DueDelivery, EndpointStats, EventRecord};
use crate::rules::{from_json_opt, EventSource, HistoryEntry, SubscriptionView};
use crate::store_api::{job_kind, AckStats, DueAcknowledgement, Job, JobStatus, Overdue};
use crate::{
    DbError, PendingFetch, Source, StoreStats, StoredCheck, StoredNotification, Subscription,
    Verdict,
};

/// One result row, read by column index.
pub(crate) trait Columns {
    fn opt_i64(&self, i: usize) -> Result<Option<i64>, DbError>;
    fn opt_text(&self, i: usize) -> Result<Option<String>, DbError>;
    fn opt_bool(&self, i: usize) -> Result<Option<bool>, DbError>;
    fn opt_bytes(&self, i: usize) -> Result<Option<Vec<u8>>, DbError>;

    fn i64(&self, i: usize) -> Result<i64, DbError> {
        self.opt_i64(i)?.ok_or_else(|| null(i))
    }
    fn text(&self, i: usize) -> Result<String, DbError> {
        self.opt_text(i)?.ok_or_else(|| null(i))
    }
    fn boolean(&self, i: usize) -> Result<bool, DbError> {
        self.opt_bool(i)?.ok_or_else(|| null(i))
    }
    /// An HTTP status kept as an integer.
    fn opt_status(&self, i: usize) -> Result<Option<u16>, DbError> {
        Ok(self.opt_i64(i)?.and_then(|v| u16::try_from(v).ok()))
    }
}

fn null(i: usize) -> DbError {
    DbError::Corrupt(format!("column {i} is unexpectedly NULL"))
}

fn json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, DbError> {
    serde_json::from_str(text)
        .map_err(|e| DbError::Corrupt(format!("stored {what} unreadable: {e}")))
}

pub(crate) const SUBSCRIPTION_COLUMNS: &str =
    "store, subscription_key, app_user_id, environment, product_id, status,
    expires_at, auto_renew, last_event_type, last_event_at, continues_key, state_pending, attention,
    created_at, updated_at";

pub(crate) fn subscription(r: &dyn Columns) -> Result<Subscription, DbError> {
    Ok(Subscription {
        store: r.text(0)?,
        subscription_id: r.text(1)?,
        app_user_id: r.opt_text(2)?,
        environment: r.opt_text(3)?.as_deref().and_then(Environment::parse),
        product_id: r.opt_text(4)?,
        status: r
            .opt_text(5)?
            .as_deref()
            .and_then(SubscriptionStatus::parse),
        expires_at_ms: r.opt_i64(6)?,
        auto_renew: r.opt_bool(7)?,
        last_event_type: r.opt_text(8)?.as_deref().and_then(EventType::parse),
        last_event_at_ms: r.opt_i64(9)?,
        continues_subscription_id: r.opt_text(10)?,
        state_pending: r.boolean(11)?,
        attention: r.opt_text(12)?,
        created_at_ms: r.i64(13)?,
        updated_at_ms: r.i64(14)?,
    })
}

pub(crate) const NOTIFICATION_COLUMNS: &str = "id, store, notification_id, received_at, verdict, subscription_key,
    event_type, raw_type, environment, occurred_at, product_id, state_json, attention, rejection_code,
    rejection_message, source";

/// A notification as views list it (`NOTIFICATION_COLUMNS`).
pub(crate) fn notification(r: &dyn Columns) -> Result<StoredNotification, DbError> {
    let verdict = match r.text(4)?.as_str() {
        "tracked" => Verdict::Tracked,
        "rejected" => Verdict::Rejected,
        _ => Verdict::Untracked,
    };
    Ok(StoredNotification {
        id: r.i64(0)?,
        store: r.text(1)?,
        notification_id: r.text(2)?,
        received_at_ms: r.i64(3)?,
        verdict,
        subscription_id: r.opt_text(5)?,
        event_type: r.opt_text(6)?.as_deref().and_then(EventType::parse),
        raw_type: r.opt_text(7)?,
        environment: r.opt_text(8)?.as_deref().and_then(Environment::parse),
        occurred_at_ms: r.opt_i64(9)?,
        product_id: r.opt_text(10)?,
        state: from_json_opt(r.opt_text(11)?.as_deref())?,
        attention: r.opt_text(12)?,
        rejection_code: r.opt_text(13)?,
        rejection_message: r.opt_text(14)?,
        source: Source::parse(&r.text(15)?),
    })
}

/// `NOTIFICATION_COLUMNS, decoded_json`.
pub(crate) fn notification_decoded(
    r: &dyn Columns,
) -> Result<(StoredNotification, serde_json::Value), DbError> {
    let decoded = from_json_opt(r.opt_text(16)?.as_deref())?.unwrap_or(serde_json::Value::Null);
    Ok((notification(r)?, decoded))
}

pub(crate) const STORE_STATS_COLUMNS: &str =
    "store, last_received, last_verified, last_rejected, last_rejection_reason,
    last_rejection_message, accepted, untracked, duplicates, rejected, recovered";

pub(crate) fn store_stats(r: &dyn Columns) -> Result<StoreStats, DbError> {
    Ok(StoreStats {
        store: r.text(0)?,
        last_received_ms: r.opt_i64(1)?,
        last_verified_ms: r.opt_i64(2)?,
        last_rejected_ms: r.opt_i64(3)?,
        last_rejection_reason: r.opt_text(4)?,
        last_rejection_message: r.opt_text(5)?,
        accepted: r.i64(6)?,
        untracked: r.i64(7)?,
        duplicates: r.i64(8)?,
        rejected: r.i64(9)?,
        recovered: r.i64(10)?,
    })
}

fn purchase_kind(r: &dyn Columns, i: usize) -> Result<Option<PurchaseKind>, DbError> {
    Ok(r.opt_text(i)?.as_deref().and_then(PurchaseKind::parse))
}

/// `store, subscription_key, app_id, product_id, purchase_kind`.
pub(crate) fn pending_fetch(r: &dyn Columns) -> Result<PendingFetch, DbError> {
    Ok(PendingFetch {
        store: r.text(0)?,
        subscription_key: r.text(1)?,
        app_id: r.opt_text(2)?,
        product_id: r.opt_text(3)?,
        kind: purchase_kind(r, 4)?,
    })
}

/// `subscription_key, app_id, product_id, purchase_kind`.
pub(crate) fn tracked_subscription(r: &dyn Columns) -> Result<TrackedSubscription, DbError> {
    Ok(TrackedSubscription {
        key: r.text(0)?,
        app_id: r.opt_text(1)?,
        product_id: r.opt_text(2)?,
        kind: purchase_kind(r, 3)?,
    })
}

// ---- the outbox ----

pub(crate) const DUE_DELIVERY_COLUMNS: &str =
    "d.id, d.endpoint, d.kind, d.event_id, d.attempts, d.payload, d.headers_json";

pub(crate) fn due_delivery(r: &dyn Columns) -> Result<DueDelivery, DbError> {
    let headers = match r.opt_text(6)? {
        Some(h) => json(&h, "forward headers")?,
        None => Vec::new(),
    };
    Ok(DueDelivery {
        id: r.i64(0)?,
        endpoint: r.text(1)?,
        kind: r.text(2)?,
        event_id: r.text(3)?,
        attempts: r.i64(4)?,
        payload: r.opt_bytes(5)?.unwrap_or_default(),
        headers,
    })
}

pub(crate) const EVENT_COLUMNS: &str =
    "seq, event_id, store, subscription_key, event_type, environment,
    app_id, app_user_id, sequence, created_at, body";

pub(crate) fn event(r: &dyn Columns) -> Result<EventRecord, DbError> {
    Ok(EventRecord {
        seq: r.i64(0)?,
        event_id: r.text(1)?,
        store: r.text(2)?,
        subscription_id: r.opt_text(3)?,
        event_type: r.text(4)?,
        environment: r.text(5)?,
        app_id: r.opt_text(6)?,
        app_user_id: r.opt_text(7)?,
        sequence: r.i64(8)?,
        created_at_ms: r.i64(9)?,
        body: json(&r.text(10)?, "event body")?,
    })
}

/// `endpoint, pending, delivered, dead, last delivered_at`.
pub(crate) fn endpoint_stats(r: &dyn Columns) -> Result<EndpointStats, DbError> {
    Ok(EndpointStats {
        endpoint: r.text(0)?,
        pending: r.i64(1)?,
        delivered: r.i64(2)?,
        dead: r.i64(3)?,
        last_success_ms: r.opt_i64(4)?,
        ..EndpointStats::default()
    })
}

/// `at, status_code, error, response` of an endpoint's latest failure.
pub(crate) fn add_last_failure(s: &mut EndpointStats, r: &dyn Columns) -> Result<(), DbError> {
    s.last_failure_ms = Some(r.i64(0)?);
    s.last_failure_status = r.opt_status(1)?;
    s.last_failure_error = r.opt_text(2)?;
    s.last_failure_response = r.opt_text(3)?;
    Ok(())
}

pub(crate) const DELIVERY_COLUMNS: &str =
    "id, endpoint, kind, event_id, status, attempts, next_attempt_at, created_at, delivered_at,
    last_status, last_error";

pub(crate) fn delivery(r: &dyn Columns) -> Result<DeliveryRecord, DbError> {
    let status = r.text(4)?;
    let next = r.i64(6)?;
    Ok(DeliveryRecord {
        id: r.i64(0)?,
        endpoint: r.text(1)?,
        kind: r.text(2)?,
        event_id: r.text(3)?,
        next_attempt_at_ms: (status == "pending").then_some(next),
        status,
        attempts: r.i64(5)?,
        created_at_ms: r.i64(7)?,
        delivered_at_ms: r.opt_i64(8)?,
        last_status: r.opt_status(9)?,
        last_error: r.opt_text(10)?,
        history: Vec::new(),
    })
}

pub(crate) const ATTEMPT_COLUMNS: &str = "at, status_code, error, duration_ms, response";

pub(crate) fn attempt(r: &dyn Columns) -> Result<AttemptRecord, DbError> {
    Ok(AttemptRecord {
        at_ms: r.i64(0)?,
        status_code: r.opt_status(1)?,
        error: r.opt_text(2)?,
        duration_ms: r.i64(3)?,
        response: r.opt_text(4)?,
    })
}

// ---- the pull side ----

/// `store, checked_at, report_json`.
pub(crate) fn check(r: &dyn Columns) -> Result<StoredCheck, DbError> {
    Ok(StoredCheck {
        store: r.text(0)?,
        checked_at_ms: r.i64(1)?,
        report: json(&r.text(2)?, "check")?,
    })
}

pub(crate) const JOB_COLUMNS: &str =
    "id, store, kind, since_ms, until_ms, only_failures, status, cursor, pages,
    scanned, recovered, duplicates, progress, error, created_at, updated_at, finished_at, skipped";

pub(crate) fn job(r: &dyn Columns) -> Result<Job, DbError> {
    Ok(Job {
        id: r.i64(0)?,
        store: r.text(1)?,
        kind: job_kind(&r.text(2)?),
        since_ms: r.i64(3)?,
        until_ms: r.i64(4)?,
        only_failures: r.boolean(5)?,
        status: JobStatus::parse(&r.text(6)?),
        cursor: r.opt_text(7)?,
        pages: r.i64(8)?,
        scanned: r.i64(9)?,
        recovered: r.i64(10)?,
        duplicates: r.i64(11)?,
        progress: r.opt_text(12)?,
        error: r.opt_text(13)?,
        created_at_ms: r.i64(14)?,
        updated_at_ms: r.i64(15)?,
        finished_at_ms: r.opt_i64(16)?,
        skipped: r.i64(17)?,
    })
}

/// `store, subscription_key, app_id, attempts, product_id, purchase_kind`.
pub(crate) fn due_acknowledgement(r: &dyn Columns) -> Result<DueAcknowledgement, DbError> {
    Ok(DueAcknowledgement {
        store: r.text(0)?,
        subscription_id: r.text(1)?,
        app_id: r.opt_text(2)?,
        attempts: r.i64(3)?,
        product_id: r.opt_text(4)?,
        kind: purchase_kind(r, 5)?,
    })
}

/// `store, pending, overdue, acknowledged`.
pub(crate) fn ack_stats(r: &dyn Columns) -> Result<AckStats, DbError> {
    Ok(AckStats {
        store: r.text(0)?,
        pending: r.i64(1)?,
        overdue: r.i64(2)?,
        acknowledged: r.i64(3)?,
    })
}

/// `store, count, oldest due, oldest subscription`.
pub(crate) fn overdue(r: &dyn Columns) -> Result<Overdue, DbError> {
    Ok(Overdue {
        store: r.text(0)?,
        count: r.i64(1)?,
        oldest_due_ms: r.i64(2)?,
        oldest_subscription_id: r.text(3)?,
    })
}

/// `id, host, pid, version, started_at, last_seen`; `this` is for the
/// caller to set (whether the row is its own instance).
pub(crate) fn instance(r: &dyn Columns) -> Result<crate::Instance, DbError> {
    Ok(crate::Instance {
        this: false,
        id: r.text(0)?,
        host: r.text(1)?,
        pid: r.i64(2)?,
        version: r.text(3)?,
        started_at_ms: r.i64(4)?,
        last_seen_ms: r.i64(5)?,
    })
}

// ---- the write path's reads (see `rules::Ledger`) ----

/// `store, notification_id, subscription_key, event_type, raw_type,
/// environment, occurred_at, product_id, app_id, details_json` of row
/// `row`: what an event is made from; `None` when it carries no event.
pub(crate) fn event_source(row: i64, r: &dyn Columns) -> Result<Option<EventSource>, DbError> {
    let (Some(event_type), Some(environment)) = (
        r.opt_text(3)?.as_deref().and_then(EventType::parse),
        r.opt_text(5)?.as_deref().and_then(Environment::parse),
    ) else {
        return Ok(None);
    };
    let details: EventDetails = from_json_opt(r.opt_text(9)?.as_deref())?.unwrap_or_default();
    Ok(Some(EventSource {
        row,
        store: r.text(0)?,
        notification_id: r.text(1)?,
        subscription_key: r.opt_text(2)?,
        event_type,
        raw_type: r.opt_text(4)?.unwrap_or_default(),
        environment,
        occurred_at_ms: r.opt_i64(6)?.unwrap_or(0),
        product_id: r.opt_text(7)?,
        app_id: r.opt_text(8)?,
        details,
    }))
}

/// `occurred_at, notification_id, state_json, product_id, event_type,
/// environment` of an applied notification, as the fold reads it.
pub(crate) fn history_notification(r: &dyn Columns) -> Result<HistoryEntry, DbError> {
    let mut state: ImpliedState = from_json_opt(r.opt_text(2)?.as_deref())?.unwrap_or_default();
    if state.product_id.is_none() {
        state.product_id = r.opt_text(3)?;
    }
    let event = r
        .opt_text(4)?
        .as_deref()
        .and_then(EventType::parse)
        .map(|t| Ok::<_, DbError>((t, r.opt_text(5)?.unwrap_or_default())))
        .transpose()?;
    Ok(HistoryEntry::notification(
        r.opt_i64(0)?.unwrap_or(0),
        &r.text(1)?,
        state,
        event,
    ))
}

/// `as_of, id, state_json` of a fetched snapshot, as the fold reads it.
pub(crate) fn history_snapshot(r: &dyn Columns) -> Result<HistoryEntry, DbError> {
    let state = from_json_opt(Some(&r.text(2)?))?.unwrap_or_default();
    Ok(HistoryEntry::snapshot(r.i64(0)?, r.i64(1)?, state))
}

/// `app_user_id, status, expires_at, auto_renew, product_id, event_sequence`.
pub(crate) fn subscription_view(r: &dyn Columns) -> Result<SubscriptionView, DbError> {
    Ok(SubscriptionView {
        app_user_id: r.opt_text(0)?,
        status: r.opt_text(1)?,
        expires_at_ms: r.opt_i64(2)?,
        auto_renew: r.opt_bool(3)?,
        product_id: r.opt_text(4)?,
        sequence: r.i64(5)?,
    })
}
