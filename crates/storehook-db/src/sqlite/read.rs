//! Read queries, run on pooled reader connections.

use rusqlite::{params, Connection};

use crate::records::{self, NOTIFICATION_COLUMNS, STORE_STATS_COLUMNS, SUBSCRIPTION_COLUMNS};
use crate::sql_common;
use crate::sqlite::{all, first};
use crate::{
    DbError, NotificationFilter, PendingFetch, StoreStats, StoredNotification, Subscription,
};

pub(crate) fn store_stats(conn: &Connection) -> Result<Vec<StoreStats>, DbError> {
    let sql = format!("SELECT {STORE_STATS_COLUMNS} FROM store_stats ORDER BY store");
    all(conn, &sql, [], records::store_stats)
}

pub(crate) fn subscription(
    conn: &Connection,
    store: &str,
    key: &str,
) -> Result<Option<Subscription>, DbError> {
    let sql = format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE store = ?1 AND subscription_key = ?2");
    first(conn, &sql, params![store, key], records::subscription)
}

pub(crate) fn subscriptions_of_user(
    conn: &Connection,
    user: &str,
) -> Result<Vec<Subscription>, DbError> {
    let sql = format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE app_user_id = ?1 ORDER BY updated_at DESC"
    );
    all(conn, &sql, [user], records::subscription)
}

pub(crate) fn subscription_notifications(
    conn: &Connection,
    store: &str,
    key: &str,
    limit: u32,
) -> Result<Vec<StoredNotification>, DbError> {
    let sql = sql_common::chain_notifications("?1", "?2", "?3");
    all(
        conn,
        &sql,
        params![store, key, limit],
        records::notification,
    )
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
    all(
        conn,
        &sql,
        params![f.store, f.before_id, f.page_size()],
        records::notification,
    )
}

pub(crate) fn notification_decoded(
    conn: &Connection,
    id: i64,
) -> Result<Option<(StoredNotification, serde_json::Value)>, DbError> {
    let sql =
        format!("SELECT {NOTIFICATION_COLUMNS}, decoded_json FROM notifications WHERE id = ?1");
    first(conn, &sql, [id], records::notification_decoded)
}

pub(crate) fn state_fetch_pending(
    conn: &Connection,
    store: &str,
    key: &str,
) -> Result<bool, DbError> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM pending_state_fetches
                             WHERE store = ?1 AND subscription_key = ?2)",
        )?
        .query_row([store, key], |r| r.get(0))?)
}

pub(crate) fn pending_state_fetches(conn: &Connection) -> Result<Vec<PendingFetch>, DbError> {
    let sql = sql_common::pending_state_fetches();
    all(conn, &sql, [], records::pending_fetch)
}
