//! Read queries, run on pooled reader connections.

use rusqlite::{params, Connection};

use crate::records::{self, NOTIFICATION_COLUMNS, STORE_STATS_COLUMNS, SUBSCRIPTION_COLUMNS};
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
    // With the notifications of the subscriptions it continues (a store's
    // renamed purchases), at most 32 back.
    let sql = format!(
        "WITH RECURSIVE chain (key, depth) AS (
             SELECT ?2, 1
             UNION
             SELECT s.continues_key, chain.depth + 1 FROM subscriptions s
               JOIN chain ON s.store = ?1 AND s.subscription_key = chain.key
              WHERE s.continues_key IS NOT NULL AND chain.depth < 32)
         SELECT {NOTIFICATION_COLUMNS} FROM notifications
         WHERE store = ?1 AND subscription_key IN (SELECT key FROM chain)
         ORDER BY occurred_at DESC, id DESC LIMIT ?3"
    );
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
    all(conn, &sql, [], records::pending_fetch)
}
