//! Outbox queries: due deliveries, attempts, the event log, endpoint stats.

use crate::sqlite::Cached;
use rusqlite::{params, Connection};

use crate::outbox::{
    delivery_page_size, DeliveryRecord, DueDelivery, EndpointStats, EventFilter, EventRecord,
};
use crate::records::{
    self, ATTEMPT_COLUMNS, DELIVERY_COLUMNS, DUE_DELIVERY_COLUMNS, EVENT_COLUMNS,
};
use crate::sqlite::{all, first};
use crate::{AttemptResult, DbError};

pub(crate) fn due_deliveries(
    conn: &Connection,
    now: i64,
    limit: u32,
) -> Result<Vec<DueDelivery>, DbError> {
    // The oldest pending delivery per (endpoint, order key) only: a failing
    // delivery holds back its successors for that subscription and endpoint,
    // never anyone else's. Deliveries without an order key are independent.
    let sql = format!(
        "SELECT {DUE_DELIVERY_COLUMNS}
         FROM deliveries d
         WHERE d.status = 'pending' AND d.next_attempt_at <= ?1
           AND (d.order_key IS NULL OR NOT EXISTS (
                SELECT 1 FROM deliveries e
                WHERE e.endpoint = d.endpoint AND e.order_key = d.order_key
                  AND e.status = 'pending' AND e.id < d.id))
         ORDER BY d.next_attempt_at, d.id
         LIMIT ?2"
    );
    all(conn, &sql, params![now, limit], records::due_delivery)
}

pub(crate) fn next_due(conn: &Connection) -> Result<Option<i64>, DbError> {
    Ok(conn
        .prepare_cached("SELECT min(next_attempt_at) FROM deliveries WHERE status = 'pending'")?
        .query_row([], |r| r.get::<_, Option<i64>>(0))?)
}

/// Records one attempt: its history row always (it happened), the
/// delivery's new state only while the delivery is pending. An attempt
/// result for a delivery already delivered or dead (a duplicate attempt)
/// cannot bring it back to pending or count against it.
pub(crate) fn record_attempt(conn: &Connection, a: &AttemptResult) -> Result<(), DbError> {
    conn.exec(
        "INSERT INTO delivery_attempts (delivery_id, at, status_code, error, duration_ms, response)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            a.delivery_id,
            a.at_ms,
            a.status_code,
            a.error,
            a.duration_ms,
            a.response_excerpt
        ],
    )?;
    let (status, next, delivered_at) = a.delivery_update();
    conn.exec(
        "UPDATE deliveries SET status = ?2, attempts = attempts + 1,
             next_attempt_at = coalesce(?3, next_attempt_at), last_attempt_at = ?4, last_status = ?5,
             last_error = ?6, delivered_at = coalesce(?7, delivered_at)
         WHERE id = ?1 AND status = 'pending'",
        params![a.delivery_id, status, next, a.at_ms, a.status_code, a.error, delivered_at],
    )?;
    Ok(())
}

pub(crate) fn retry_delivery(
    conn: &Connection,
    endpoint: &str,
    id: i64,
    now: i64,
) -> Result<bool, DbError> {
    let changed = conn.exec(
        "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?3
         WHERE id = ?1 AND endpoint = ?2 AND status IN ('dead', 'pending')",
        params![id, endpoint, now],
    )?;
    Ok(changed > 0)
}

pub(crate) fn enqueue_test_event(
    conn: &Connection,
    endpoint: &str,
    now: i64,
) -> Result<i64, DbError> {
    conn.exec(
        "INSERT INTO deliveries (endpoint, kind, event_id, status, next_attempt_at, created_at, payload)
         VALUES (?1, 'test', '', 'pending', ?2, ?2, x'')",
        params![endpoint, now],
    )?;
    let id = conn.last_insert_rowid();
    let (event_id, body) = crate::outbox::test_event(id, now);
    conn.exec(
        "UPDATE deliveries SET event_id = ?2, payload = ?3 WHERE id = ?1",
        params![id, event_id, body.as_bytes()],
    )?;
    Ok(id)
}

pub(crate) fn events(conn: &Connection, f: &EventFilter) -> Result<Vec<EventRecord>, DbError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events
         WHERE (?1 IS NULL OR store = ?1) AND (?2 IS NULL OR event_type = ?2)
           AND (?3 IS NULL OR app_user_id = ?3) AND seq > coalesce(?4, 0)
         ORDER BY seq LIMIT ?5"
    );
    all(
        conn,
        &sql,
        params![f.store, f.event_type, f.app_user_id, f.after, f.page_size()],
        records::event,
    )
}

pub(crate) fn endpoint_stats(conn: &Connection) -> Result<Vec<EndpointStats>, DbError> {
    let mut out = all(
        conn,
        "SELECT endpoint, count(*) FILTER (WHERE status = 'pending'),
             count(*) FILTER (WHERE status = 'delivered'), count(*) FILTER (WHERE status = 'dead'),
             max(delivered_at)
         FROM deliveries GROUP BY endpoint ORDER BY endpoint",
        [],
        records::endpoint_stats,
    )?;
    for s in &mut out {
        let endpoint = s.endpoint.clone();
        first(
            conn,
            "SELECT a.at, a.status_code, a.error, a.response FROM delivery_attempts a
             JOIN deliveries d ON d.id = a.delivery_id
             WHERE d.endpoint = ?1 AND (a.status_code IS NULL OR a.status_code < 200 OR a.status_code > 299)
             ORDER BY a.id DESC LIMIT 1",
            [&endpoint],
            |r| records::add_last_failure(s, r),
        )?;
    }
    Ok(out)
}

pub(crate) fn deliveries(
    conn: &Connection,
    endpoint: &str,
    status: Option<&str>,
    limit: u32,
) -> Result<Vec<DeliveryRecord>, DbError> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE endpoint = ?1 AND (?2 IS NULL OR status = ?2)
         ORDER BY id DESC LIMIT ?3"
    );
    let mut out = all(
        conn,
        &sql,
        params![endpoint, status, delivery_page_size(limit)],
        records::delivery,
    )?;
    let sql = format!(
        "SELECT {ATTEMPT_COLUMNS} FROM delivery_attempts WHERE delivery_id = ?1 ORDER BY id"
    );
    for d in &mut out {
        d.history = all(conn, &sql, [d.id], records::attempt)?;
    }
    Ok(out)
}

pub(crate) fn outbox_depth(conn: &Connection) -> Result<i64, DbError> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM deliveries WHERE status = 'pending'")?
        .query_row([], |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AttemptOutcome;

    fn attempt(id: i64, at_ms: i64, outcome: AttemptOutcome) -> AttemptResult {
        AttemptResult {
            delivery_id: id,
            at_ms,
            status_code: Some(500),
            error: Some("HTTP 500".into()),
            duration_ms: 1,
            response_excerpt: None,
            outcome,
        }
    }

    #[test]
    fn a_second_result_for_a_finished_delivery_changes_nothing() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::migrations::migrate(&mut conn).unwrap();
        let id = enqueue_test_event(&conn, "main", 1).unwrap();
        let due = due_deliveries(&conn, 1, 10).unwrap();
        assert_eq!(due.iter().map(|d| d.id).collect::<Vec<_>>(), vec![id]);

        record_attempt(&conn, &attempt(id, 2, AttemptOutcome::Dead)).unwrap();
        // A stale duplicate of the attempt (what a stale due list produced)
        // must not bring the dead delivery back or count twice.
        record_attempt(&conn, &attempt(id, 3, AttemptOutcome::RetryAt(4))).unwrap();
        assert!(due_deliveries(&conn, 10, 10).unwrap().is_empty());
        let d = deliveries(&conn, "main", None, 10).unwrap();
        assert_eq!((d[0].status.as_str(), d[0].attempts), ("dead", 1));
        assert_eq!(d[0].history.len(), 2, "both attempts are in the history");

        // The retry API still brings it back, and the next result counts.
        assert!(retry_delivery(&conn, "main", id, 5).unwrap());
        record_attempt(&conn, &attempt(id, 6, AttemptOutcome::Delivered)).unwrap();
        let d = deliveries(&conn, "main", None, 10).unwrap();
        assert_eq!((d[0].status.as_str(), d[0].attempts), ("delivered", 1));
    }
}
