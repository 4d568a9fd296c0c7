//! Read queries, run on pooled reader connections.

use rusqlite::{params, Connection, OptionalExtension, Row};
use storehook_core::{Environment, EventType, SubscriptionStatus};

use crate::sqlite::write::from_json_opt;
use crate::{
    DbError, NotificationFilter, PendingFetch, StoreStats, StoredNotification, Subscription,
    Verdict,
};

const SUBSCRIPTION_COLUMNS: &str =
    "store, subscription_key, app_user_id, environment, product_id, status,
    expires_at, auto_renew, last_event_type, last_event_at, continues_key, state_pending, attention,
    created_at, updated_at";

const NOTIFICATION_COLUMNS: &str = "id, store, notification_id, received_at, verdict, subscription_key,
    event_type, raw_type, environment, occurred_at, product_id, state_json, attention, rejection_code,
    rejection_message, source";

fn subscription_row(r: &Row<'_>) -> rusqlite::Result<Subscription> {
    Ok(Subscription {
        store: r.get(0)?,
        subscription_id: r.get(1)?,
        app_user_id: r.get(2)?,
        environment: r
            .get::<_, Option<String>>(3)?
            .as_deref()
            .and_then(Environment::parse),
        product_id: r.get(4)?,
        status: r
            .get::<_, Option<String>>(5)?
            .as_deref()
            .and_then(SubscriptionStatus::parse),
        expires_at_ms: r.get(6)?,
        auto_renew: r.get(7)?,
        last_event_type: r
            .get::<_, Option<String>>(8)?
            .as_deref()
            .and_then(EventType::parse),
        last_event_at_ms: r.get(9)?,
        continues_subscription_id: r.get(10)?,
        state_pending: r.get(11)?,
        attention: r.get(12)?,
        created_at_ms: r.get(13)?,
        updated_at_ms: r.get(14)?,
    })
}

fn notification_row(r: &Row<'_>) -> rusqlite::Result<(StoredNotification, Option<String>)> {
    let verdict = match r.get::<_, String>(4)?.as_str() {
        "tracked" => Verdict::Tracked,
        "rejected" => Verdict::Rejected,
        _ => Verdict::Untracked,
    };
    Ok((
        StoredNotification {
            id: r.get(0)?,
            store: r.get(1)?,
            notification_id: r.get(2)?,
            received_at_ms: r.get(3)?,
            verdict,
            subscription_id: r.get(5)?,
            event_type: r
                .get::<_, Option<String>>(6)?
                .as_deref()
                .and_then(EventType::parse),
            raw_type: r.get(7)?,
            environment: r
                .get::<_, Option<String>>(8)?
                .as_deref()
                .and_then(Environment::parse),
            occurred_at_ms: r.get(9)?,
            product_id: r.get(10)?,
            state: None,
            attention: r.get(12)?,
            rejection_code: r.get(13)?,
            rejection_message: r.get(14)?,
            source: crate::Source::parse(&r.get::<_, String>(15)?),
        },
        r.get(11)?,
    ))
}

fn with_state(
    (mut n, state_json): (StoredNotification, Option<String>),
) -> Result<StoredNotification, DbError> {
    n.state = from_json_opt(state_json.as_deref())?;
    Ok(n)
}

pub(crate) fn store_stats(conn: &Connection) -> Result<Vec<StoreStats>, DbError> {
    let mut stmt = conn.prepare_cached(
        "SELECT store, last_received, last_verified, last_rejected, last_rejection_reason,
             last_rejection_message, accepted, untracked, duplicates, rejected, recovered
         FROM store_stats ORDER BY store",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(StoreStats {
            store: r.get(0)?,
            last_received_ms: r.get(1)?,
            last_verified_ms: r.get(2)?,
            last_rejected_ms: r.get(3)?,
            last_rejection_reason: r.get(4)?,
            last_rejection_message: r.get(5)?,
            accepted: r.get(6)?,
            untracked: r.get(7)?,
            duplicates: r.get(8)?,
            rejected: r.get(9)?,
            recovered: r.get(10)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn subscription(
    conn: &Connection,
    store: &str,
    key: &str,
) -> Result<Option<Subscription>, DbError> {
    let sql = format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE store = ?1 AND subscription_key = ?2");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![store, key], subscription_row)
        .optional()?)
}

pub(crate) fn subscriptions_of_user(
    conn: &Connection,
    user: &str,
) -> Result<Vec<Subscription>, DbError> {
    let sql = format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE app_user_id = ?1 ORDER BY updated_at DESC"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([user], subscription_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn subscription_notifications(
    conn: &Connection,
    store: &str,
    key: &str,
    limit: u32,
) -> Result<Vec<StoredNotification>, DbError> {
    // The history of a continued subscription (Google linked purchase
    // tokens) includes its predecessors'.
    let mut keys = vec![key.to_owned()];
    let mut current = key.to_owned();
    while keys.len() < 32 {
        let previous: Option<String> = conn
            .prepare_cached("SELECT continues_key FROM subscriptions WHERE store = ?1 AND subscription_key = ?2")?
            .query_row(params![store, current], |r| r.get(0))
            .optional()?
            .flatten();
        match previous {
            Some(p) if !keys.contains(&p) => {
                keys.push(p.clone());
                current = p;
            }
            _ => break,
        }
    }
    let keys_json = serde_json::to_string(&keys).map_err(|e| DbError::Corrupt(e.to_string()))?;
    let sql = format!(
        "SELECT {NOTIFICATION_COLUMNS} FROM notifications
         WHERE store = ?1 AND subscription_key IN (SELECT value FROM json_each(?2))
         ORDER BY occurred_at DESC, id DESC LIMIT ?3"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![store, keys_json, limit], notification_row)?;
    rows.map(|r| with_state(r?)).collect()
}

pub(crate) fn recent_notifications(
    conn: &Connection,
    f: &NotificationFilter,
) -> Result<Vec<StoredNotification>, DbError> {
    let sql = format!(
        "SELECT {NOTIFICATION_COLUMNS} FROM notifications
         WHERE (?1 IS NULL OR store = ?1) AND (?2 IS NULL OR id < ?2)
         ORDER BY id DESC LIMIT ?3"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let limit = if f.limit == 0 { 50 } else { f.limit.min(500) };
    let rows = stmt.query_map(params![f.store, f.before_id, limit], notification_row)?;
    rows.map(|r| with_state(r?)).collect()
}

pub(crate) fn notification_decoded(
    conn: &Connection,
    id: i64,
) -> Result<Option<(StoredNotification, serde_json::Value)>, DbError> {
    let sql =
        format!("SELECT {NOTIFICATION_COLUMNS}, decoded_json FROM notifications WHERE id = ?1");
    let found = conn
        .prepare_cached(&sql)?
        .query_row([id], |r| {
            // decoded_json follows the shared columns (the last is index 15).
            Ok((notification_row(r)?, r.get::<_, Option<String>>(16)?))
        })
        .optional()?;
    let Some((row, decoded)) = found else {
        return Ok(None);
    };
    let decoded = from_json_opt(decoded.as_deref())?.unwrap_or(serde_json::Value::Null);
    Ok(Some((with_state(row)?, decoded)))
}

pub(crate) fn pending_state_fetches(conn: &Connection) -> Result<Vec<PendingFetch>, DbError> {
    // The app, product and kind come from the subscription's newest
    // notifications: what the store said last about it.
    let said =
        |column| crate::sqlite::store_api::newest_said(column, "p.store", "p.subscription_key");
    let sql = format!(
        "SELECT p.store, p.subscription_key, {}, {}, {}
           FROM pending_state_fetches p ORDER BY p.since",
        said("app_id"),
        said("product_id"),
        said("purchase_kind"),
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([], |r| {
        Ok(PendingFetch {
            store: r.get(0)?,
            subscription_key: r.get(1)?,
            app_id: r.get(2)?,
            product_id: r.get(3)?,
            kind: crate::sqlite::store_api::purchase_kind(r.get(4)?),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
