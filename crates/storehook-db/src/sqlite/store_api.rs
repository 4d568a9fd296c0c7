//! The pull side's tables: connection checks, backfill jobs, the
//! acknowledgement queue, and the reads a check or a backfill asks of the
//! host (is this notification here, which subscriptions are tracked, which
//! are overdue).

use rusqlite::{params, Connection, OptionalExtension};
use storehook_core::{StateUpdate, TrackedSubscription};

use crate::records::{self, JOB_COLUMNS};
use crate::sqlite::Cached;
use crate::sqlite::{all, first};
use crate::store_api::{
    AckAttempt, AckStats, DueAcknowledgement, Job, JobStatus, JobStep, NewJob, Overdue,
    StoredCheck, ENDED_LONG_AGO_MS,
};
use crate::{sql_common, DbError};

pub(crate) fn notification_exists(
    conn: &Connection,
    store: &str,
    notification_id: &str,
) -> Result<bool, DbError> {
    Ok(conn
        .row(
            "SELECT 1 FROM notifications WHERE store = ?1 AND notification_id = ?2",
            params![store, notification_id],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// When the store's newest test notification arrived.
pub(crate) fn last_test_notification(
    conn: &Connection,
    store: &str,
) -> Result<Option<i64>, DbError> {
    Ok(conn.row(
        "SELECT max(received_at) FROM notifications WHERE store = ?1 AND event_type = 'TEST'",
        [store],
        |r| r.get(0),
    )?)
}

pub(crate) fn tracked_subscriptions(
    conn: &Connection,
    store: &str,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<TrackedSubscription>, DbError> {
    let said = |column| sql_common::newest_said(column, "s.store", "s.subscription_key");
    let sql = format!(
        "SELECT s.subscription_key, {}, coalesce(s.product_id, {}), {}
           FROM subscriptions s
          WHERE s.store = ?1 AND (?2 IS NULL OR s.subscription_key > ?2)
            AND coalesce(s.status, '') <> 'revoked'
            AND NOT (coalesce(s.status, '') = 'expired' AND coalesce(s.expires_at, 0) < ?4)
          ORDER BY s.subscription_key LIMIT ?3",
        said("app_id"),
        said("product_id"),
        said("purchase_kind"),
    );
    let ended_before = storehook_core::time::now_ms() - ENDED_LONG_AGO_MS;
    all(
        conn,
        &sql,
        params![store, after, limit, ended_before],
        records::tracked_subscription,
    )
}

// ---- connection checks ----

pub(crate) fn save_check(conn: &Connection, check: &StoredCheck) -> Result<(), DbError> {
    let json = serde_json::to_string(&check.report)
        .map_err(|e| DbError::Corrupt(format!("cannot serialize a check: {e}")))?;
    conn.exec(
        "INSERT INTO store_checks (store, checked_at, verdict, report_json) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (store) DO UPDATE SET checked_at = excluded.checked_at,
             verdict = excluded.verdict, report_json = excluded.report_json",
        params![
            check.store,
            check.checked_at_ms,
            check.report.verdict.as_str(),
            json
        ],
    )?;
    Ok(())
}

pub(crate) fn checks(conn: &Connection) -> Result<Vec<StoredCheck>, DbError> {
    all(conn, sql_common::CHECKS, [], records::check)
}

// ---- backfill jobs ----

pub(crate) fn create_job(conn: &Connection, new: &NewJob) -> Result<Job, DbError> {
    conn.exec(
        "INSERT INTO store_jobs (store, kind, since_ms, until_ms, only_failures, status, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?6)",
        params![
            new.store,
            new.kind.as_str(),
            new.window.since_ms,
            new.window.until_ms,
            new.window.only_failures,
            new.created_at_ms
        ],
    )?;
    job(conn, conn.last_insert_rowid())?
        .ok_or_else(|| DbError::Corrupt("a new job vanished".into()))
}

pub(crate) fn job(conn: &Connection, id: i64) -> Result<Option<Job>, DbError> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM store_jobs WHERE id = ?1");
    first(conn, &sql, [id], records::job)
}

/// The newest jobs first; of one store, or all.
pub(crate) fn jobs(
    conn: &Connection,
    store: Option<&str>,
    limit: u32,
) -> Result<Vec<Job>, DbError> {
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM store_jobs WHERE (?1 IS NULL OR store = ?1) ORDER BY id DESC LIMIT ?2"
    );
    all(conn, &sql, params![store, limit], records::job)
}

/// Queued and running jobs, oldest first (what a start resumes).
pub(crate) fn unfinished_jobs(conn: &Connection) -> Result<Vec<Job>, DbError> {
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM store_jobs WHERE status IN ('queued', 'running') ORDER BY id"
    );
    all(conn, &sql, [], records::job)
}

/// Applies one step; a finished job is never changed again (so a cancel
/// that lands while a page is in flight wins). Returns the job as it is now.
pub(crate) fn update_job(
    conn: &Connection,
    id: i64,
    step: &JobStep,
) -> Result<Option<Job>, DbError> {
    let (set_cursor, cursor) = match &step.cursor {
        Some(c) => (true, c.clone()),
        None => (false, None),
    };
    let status = step.status.map(JobStatus::as_str);
    let finished = step.status.filter(|s| s.is_finished()).map(|_| step.at_ms);
    conn.exec(
        "UPDATE store_jobs SET
             status = coalesce(?2, status),
             cursor = CASE WHEN ?3 THEN ?4 ELSE cursor END,
             pages = pages + ?5, scanned = scanned + ?6, recovered = recovered + ?7,
             duplicates = duplicates + ?8, skipped = skipped + ?13,
             progress = coalesce(?9, progress), error = coalesce(?10, error),
             updated_at = ?11, finished_at = coalesce(?12, finished_at)
         WHERE id = ?1 AND status IN ('queued', 'running')",
        params![
            id,
            status,
            set_cursor,
            cursor,
            step.pages,
            step.scanned,
            step.recovered,
            step.duplicates,
            step.progress,
            step.error,
            step.at_ms,
            finished,
            step.skipped
        ],
    )?;
    job(conn, id)
}

// ---- acknowledgements ----

/// Keeps the queue in step with what the store said of a purchase, in the
/// state update's own transaction: pending → queued once (due now); no
/// longer pending → whoever acknowledged it, it is done.
pub(crate) fn note_acknowledgement_state(
    conn: &Connection,
    store: &str,
    key: &str,
    update: &StateUpdate,
    now: i64,
) -> Result<(), DbError> {
    if update.acknowledgement_pending {
        let said = |column| sql_common::newest_said(column, "?1", "?2");
        let sql = format!(
            "INSERT INTO acknowledgements (store, subscription_key, app_id, product_id, purchase_kind,
                 status, purchased_at, next_attempt_at, created_at, updated_at)
             VALUES (?1, ?2, {}, coalesce(?5, {}), {}, 'pending', ?3, ?4, ?4, ?4)
             ON CONFLICT (store, subscription_key) DO UPDATE SET
                 -- Once acknowledged, it stays so: a state re-read that lags
                 -- behind the acknowledgement must not queue a second one.
                 status = CASE WHEN status IN ('acknowledged', 'already') THEN status
                               ELSE 'pending' END,
                 app_id = coalesce(excluded.app_id, app_id),
                 product_id = coalesce(excluded.product_id, product_id),
                 purchase_kind = coalesce(excluded.purchase_kind, purchase_kind),
                 purchased_at = coalesce(purchased_at, excluded.purchased_at),
                 updated_at = excluded.updated_at",
            said("app_id"),
            said("product_id"),
            said("purchase_kind"),
        );
        conn.exec(
            &sql,
            params![
                store,
                key,
                update.purchased_at_ms,
                now,
                update.state.product_id
            ],
        )?;
    } else {
        conn.exec(
            "UPDATE acknowledgements SET status = 'elsewhere', updated_at = ?3
             WHERE store = ?1 AND subscription_key = ?2 AND status = 'pending'",
            params![store, key, now],
        )?;
    }
    Ok(())
}

pub(crate) fn due_acknowledgements(
    conn: &Connection,
    now: i64,
    limit: u32,
) -> Result<Vec<DueAcknowledgement>, DbError> {
    all(
        conn,
        "SELECT store, subscription_key, app_id, attempts, product_id, purchase_kind
         FROM acknowledgements
         WHERE status = 'pending' AND next_attempt_at <= ?1 ORDER BY next_attempt_at LIMIT ?2",
        params![now, limit],
        records::due_acknowledgement,
    )
}

pub(crate) fn next_acknowledgement_due(conn: &Connection) -> Result<Option<i64>, DbError> {
    Ok(conn.row(sql_common::NEXT_ACKNOWLEDGEMENT_DUE, [], |r| r.get(0))?)
}

pub(crate) fn record_acknowledgement(
    conn: &Connection,
    store: &str,
    key: &str,
    attempt: &AckAttempt,
    now: i64,
) -> Result<(), DbError> {
    match attempt {
        AckAttempt::Finished(outcome) => {
            let status = crate::store_api::ack_status(outcome);
            conn.exec(
                "UPDATE acknowledgements SET status = ?3, attempts = attempts + 1, last_error = NULL,
                     updated_at = ?4
                 WHERE store = ?1 AND subscription_key = ?2 AND status = 'pending'",
                params![store, key, status, now],
            )?;
            // The warning on the subscription goes with the reason for it.
            conn.exec(
                "UPDATE subscriptions SET attention = NULL
                 WHERE store = ?1 AND subscription_key = ?2
                   AND EXISTS (SELECT 1 FROM acknowledgements a WHERE a.store = ?1
                               AND a.subscription_key = ?2 AND a.flagged = 1)",
                params![store, key],
            )?;
        }
        AckAttempt::Retry { at_ms, error } => {
            conn.exec(
                "UPDATE acknowledgements SET attempts = attempts + 1, next_attempt_at = ?3,
                     last_error = ?4, updated_at = ?5
                 WHERE store = ?1 AND subscription_key = ?2 AND status = 'pending'",
                params![store, key, at_ms, error, now],
            )?;
        }
    }
    Ok(())
}

/// Flags purchases still pending `older_than_ms` after they were made (or
/// first seen): `attention` on their subscription. Returns how many were
/// newly flagged.
pub(crate) fn flag_unacknowledged(
    conn: &Connection,
    before_ms: i64,
    attention: &str,
) -> Result<u64, DbError> {
    let keys: Vec<(String, String)> = {
        let mut stmt = conn.prepare_cached(
            "SELECT store, subscription_key FROM acknowledgements
             WHERE status = 'pending' AND flagged = 0 AND coalesce(purchased_at, created_at) < ?1",
        )?;
        let rows = stmt.query_map([before_ms], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (store, key) in &keys {
        conn.exec(
            "UPDATE acknowledgements SET flagged = 1 WHERE store = ?1 AND subscription_key = ?2",
            params![store, key],
        )?;
        conn.exec(
            "UPDATE subscriptions SET attention = ?3 WHERE store = ?1 AND subscription_key = ?2",
            params![store, key, attention],
        )?;
    }
    Ok(keys.len() as u64)
}

pub(crate) fn acknowledgement_stats(conn: &Connection) -> Result<Vec<AckStats>, DbError> {
    all(
        conn,
        sql_common::ACKNOWLEDGEMENT_STATS,
        [],
        records::ack_stats,
    )
}

// ---- stale detection ----

/// Per store, tracked subscriptions still in a state where the store owes a
/// notification (active, grace, billing retry) whose expiry passed before
/// `due_before_ms` with no notification received and no state read since.
pub(crate) fn overdue_subscriptions(
    conn: &Connection,
    due_before_ms: i64,
) -> Result<Vec<Overdue>, DbError> {
    // SQLite returns the bare column of the row that holds min().
    let mut stmt = conn.prepare_cached(
        "SELECT s.store, count(*), min(s.expires_at), s.subscription_key
           FROM subscriptions s
          WHERE s.expires_at IS NOT NULL AND s.expires_at < ?1
            AND s.status IN ('active', 'grace_period', 'billing_retry')
            AND NOT EXISTS (SELECT 1 FROM notifications n
                             WHERE n.store = s.store AND n.subscription_key = s.subscription_key
                               AND n.received_at >= s.expires_at)
            AND NOT EXISTS (SELECT 1 FROM state_snapshots p
                             WHERE p.store = s.store AND p.subscription_key = s.subscription_key
                               AND p.fetched_at >= s.expires_at)
          GROUP BY s.store ORDER BY s.store",
    )?;
    let mut out = Vec::new();
    let mut rows = stmt.query([due_before_ms])?;
    while let Some(row) = rows.next()? {
        out.push(records::overdue(row)?);
    }
    Ok(out)
}
