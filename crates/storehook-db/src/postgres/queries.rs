//! PostgreSQL's reads (on pooled connections), the outbox's claims, and
//! the writes outside the notification path (run by the writer).

use deadpool_postgres::Object;
use storehook_core::TrackedSubscription;

use super::conn::{Params, PgConn};
use crate::outbox::delivery_page_size;
use crate::records::{
    self, Columns, ATTEMPT_COLUMNS, DELIVERY_COLUMNS, DUE_DELIVERY_COLUMNS, EVENT_COLUMNS,
    JOB_COLUMNS, NOTIFICATION_COLUMNS, STORE_STATS_COLUMNS, SUBSCRIPTION_COLUMNS,
};
use crate::sql_common;
use crate::store_api::ENDED_LONG_AGO_MS;
use crate::{
    AckAttempt, AckStats, AttemptResult, DatabaseSize, DbError, DeliveryRecord, DueAcknowledgement,
    DueDelivery, EndpointStats, EventFilter, EventRecord, Job, JobStatus, JobStep, NewJob,
    NotificationFilter, Overdue, PendingFetch, PruneBatch, PruneReport, StoreStats, StoredCheck,
    StoredNotification, Subscription,
};

/// How long a claimed delivery is an instance's before another may take
/// it over (its sender hung). Longer than any delivery attempt.
const DELIVERY_LEASE_MS: i64 = 120_000;
/// An instance not heard of for this long is gone (killed, cut off): its
/// claims are taken over at once, without waiting for their leases.
pub(super) const INSTANCE_GONE_MS: i64 = 15_000;

type Decode<T> = fn(&dyn Columns) -> Result<T, DbError>;

async fn all<T>(
    c: &Object,
    sql: &str,
    params: Params<'_>,
    decode: Decode<T>,
) -> Result<Vec<T>, DbError> {
    let stmt = c.prepare_cached(sql).await?;
    c.query(&stmt, params)
        .await?
        .iter()
        .map(|r| decode(r))
        .collect()
}

async fn first<T>(
    c: &Object,
    sql: &str,
    params: Params<'_>,
    decode: Decode<T>,
) -> Result<Option<T>, DbError> {
    let stmt = c.prepare_cached(sql).await?;
    c.query_opt(&stmt, params)
        .await?
        .map(|r| decode(&r))
        .transpose()
}

async fn scalar(c: &Object, sql: &str, params: Params<'_>) -> Result<Option<i64>, DbError> {
    Ok(first(c, sql, params, |r| r.opt_i64(0)).await?.flatten())
}

// ---- notifications and subscriptions ----

pub(super) async fn store_stats(c: &Object) -> Result<Vec<StoreStats>, DbError> {
    let sql = format!("SELECT {STORE_STATS_COLUMNS} FROM store_stats ORDER BY store");
    all(c, &sql, &[], records::store_stats).await
}

pub(super) async fn subscription(
    c: &Object,
    store: &str,
    key: &str,
) -> Result<Option<Subscription>, DbError> {
    let sql = format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE store = $1 AND subscription_key = $2"
    );
    first(c, &sql, &[&store, &key], records::subscription).await
}

pub(super) async fn subscriptions_of_user(
    c: &Object,
    user: &str,
) -> Result<Vec<Subscription>, DbError> {
    let sql = format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE app_user_id = $1 ORDER BY updated_at DESC"
    );
    all(c, &sql, &[&user], records::subscription).await
}

pub(super) async fn subscription_notifications(
    c: &Object,
    store: &str,
    key: &str,
    limit: u32,
) -> Result<Vec<StoredNotification>, DbError> {
    let sql = sql_common::chain_notifications("$1", "$2::text", "$3");
    all(
        c,
        &sql,
        &[&store, &key, &i64::from(limit)],
        records::notification,
    )
    .await
}

pub(super) async fn recent_notifications(
    c: &Object,
    f: &NotificationFilter,
) -> Result<Vec<StoredNotification>, DbError> {
    let sql = format!(
        "SELECT {NOTIFICATION_COLUMNS} FROM notifications
         WHERE ($1::text IS NULL OR store = $1) AND ($2::bigint IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3"
    );
    all(
        c,
        &sql,
        &[&f.store, &f.before_id, &f.page_size()],
        records::notification,
    )
    .await
}

pub(super) async fn notification_decoded(
    c: &Object,
    id: i64,
) -> Result<Option<(StoredNotification, serde_json::Value)>, DbError> {
    let sql =
        format!("SELECT {NOTIFICATION_COLUMNS}, decoded_json FROM notifications WHERE id = $1");
    first(c, &sql, &[&id], records::notification_decoded).await
}

pub(super) async fn pending_state_fetches(c: &Object) -> Result<Vec<PendingFetch>, DbError> {
    let sql = sql_common::pending_state_fetches();
    all(c, &sql, &[], records::pending_fetch).await
}

/// How long a claimed state fetch is an instance's without a new claim:
/// longer than the fetcher's longest wait between attempts (ten minutes),
/// since it claims again before each one.
const FETCH_LEASE_MS: i64 = 900_000;

/// Makes an outstanding state fetch this instance's: `false` when it is no
/// longer pending or another live instance holds it (its lease running).
pub(super) async fn claim_state_fetch(
    c: &Object,
    instance: &str,
    (store, key): (&str, &str),
    now: i64,
) -> Result<bool, DbError> {
    let stmt = c
        .prepare_cached(
            "UPDATE pending_state_fetches SET claimed_by = $3, lease_until = $4 + $5
             WHERE store = $1 AND subscription_key = $2
               AND (claimed_by IS NULL OR claimed_by = $3 OR lease_until <= $4
                    OR NOT EXISTS (SELECT 1 FROM instances i
                                    WHERE i.id = pending_state_fetches.claimed_by
                                      AND i.last_seen > $4 - $6))",
        )
        .await?;
    let claimed = c
        .execute(
            &stmt,
            &[
                &store,
                &key,
                &instance,
                &now,
                &FETCH_LEASE_MS,
                &INSTANCE_GONE_MS,
            ],
        )
        .await?;
    Ok(claimed > 0)
}

// ---- the outbox ----

/// Claims the deliveries due now, at most one per endpoint and order key
/// (the oldest pending: strict order per subscription, across instances),
/// skipping rows another instance is claiming this moment; each is this
/// instance's for a lease. An instance may take back its own claims (its
/// delivery worker knows what it is sending; an attempt whose result could
/// not be written, the database being down, is simply due again), and
/// those of an instance whose heartbeat stopped.
pub(super) async fn claim_due_deliveries(
    c: &Object,
    instance: &str,
    now: i64,
    limit: u32,
) -> Result<Vec<DueDelivery>, DbError> {
    let claim = claim_id()?;
    let sql = format!(
        "WITH due AS (
             SELECT d.id FROM deliveries d
             WHERE d.status = 'pending' AND d.next_attempt_at <= $1
               AND (d.lease_until IS NULL OR d.lease_until <= $1 OR d.claimed_by = $5
                    OR NOT EXISTS (SELECT 1 FROM instances i
                                    WHERE i.id = d.claimed_by AND i.last_seen > $1 - $6))
               AND (d.order_key IS NULL OR NOT EXISTS (
                    SELECT 1 FROM deliveries e
                    WHERE e.endpoint = d.endpoint AND e.order_key = d.order_key
                      AND e.status = 'pending' AND e.id < d.id))
             ORDER BY d.next_attempt_at, d.id
             LIMIT $2
             FOR UPDATE SKIP LOCKED)
         UPDATE deliveries d SET claim_id = $3, lease_until = $1 + $4, claimed_by = $5
         FROM due WHERE d.id = due.id
         RETURNING {DUE_DELIVERY_COLUMNS}"
    );
    let mut due = all(
        c,
        &sql,
        &[
            &now,
            &i64::from(limit),
            &claim,
            &DELIVERY_LEASE_MS,
            &instance,
            &INSTANCE_GONE_MS,
        ],
        records::due_delivery,
    )
    .await?;
    due.sort_by_key(|d| d.id);
    Ok(due)
}

fn claim_id() -> Result<String, DbError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| DbError::Unavailable("no randomness for a claim id".into()))?;
    Ok(hex::encode(bytes))
}

pub(super) async fn next_delivery_due(c: &Object) -> Result<Option<i64>, DbError> {
    scalar(
        c,
        "SELECT min(CASE WHEN lease_until IS NULL THEN next_attempt_at
                         ELSE GREATEST(next_attempt_at, lease_until) END)
         FROM deliveries WHERE status = 'pending'",
        &[],
    )
    .await
}

/// Records one attempt (see the SQLite backend): the history row always,
/// the delivery's new state only while it is pending; the lease ends.
pub(super) fn record_attempt(c: &PgConn, a: &AttemptResult) -> Result<(), DbError> {
    let status_code = a.status_code.map(i64::from);
    c.run(
        "INSERT INTO delivery_attempts (delivery_id, at, status_code, error, duration_ms, response)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &a.delivery_id,
            &a.at_ms,
            &status_code,
            &a.error,
            &a.duration_ms,
            &a.response_excerpt,
        ],
    )?;
    let (status, next, delivered_at) = a.delivery_update();
    c.run(
        "UPDATE deliveries SET status = $2, attempts = attempts + 1,
             next_attempt_at = coalesce($3, next_attempt_at), last_attempt_at = $4, last_status = $5,
             last_error = $6, delivered_at = coalesce($7, delivered_at),
             claim_id = NULL, claimed_by = NULL, lease_until = NULL
         WHERE id = $1 AND status = 'pending'",
        &[
            &a.delivery_id,
            &status,
            &next,
            &a.at_ms,
            &status_code,
            &a.error,
            &delivered_at,
        ],
    )
}

pub(super) fn retry_delivery(
    c: &PgConn,
    endpoint: &str,
    id: i64,
    now: i64,
) -> Result<bool, DbError> {
    let changed = c.exec(
        "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = $3,
             claim_id = NULL, claimed_by = NULL, lease_until = NULL
         WHERE id = $1 AND endpoint = $2 AND status IN ('dead', 'pending')",
        &[&id, &endpoint, &now],
    )?;
    Ok(changed > 0)
}

pub(super) fn enqueue_test_event(c: &PgConn, endpoint: &str, now: i64) -> Result<i64, DbError> {
    let id = c
        .first(
            "INSERT INTO deliveries (endpoint, kind, event_id, status, next_attempt_at, created_at, payload)
             VALUES ($1, 'test', '', 'pending', $2, $2, '') RETURNING id",
            &[&endpoint, &now],
        )?
        .ok_or_else(|| DbError::Corrupt("an inserted delivery returned no id".into()))?
        .i64(0)?;
    let (event_id, body) = crate::outbox::test_event(id, now);
    c.run(
        "UPDATE deliveries SET event_id = $2, payload = $3 WHERE id = $1",
        &[&id, &event_id, &body.as_bytes()],
    )?;
    Ok(id)
}

pub(super) async fn events(c: &Object, f: &EventFilter) -> Result<Vec<EventRecord>, DbError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events
         WHERE ($1::text IS NULL OR store = $1) AND ($2::text IS NULL OR event_type = $2)
           AND ($3::text IS NULL OR app_user_id = $3) AND seq > coalesce($4::bigint, 0)
         ORDER BY seq LIMIT $5"
    );
    all(
        c,
        &sql,
        &[
            &f.store,
            &f.event_type,
            &f.app_user_id,
            &f.after,
            &f.page_size(),
        ],
        records::event,
    )
    .await
}

pub(super) async fn endpoint_stats(c: &Object) -> Result<Vec<EndpointStats>, DbError> {
    let mut out = all(
        c,
        "SELECT endpoint, count(*) FILTER (WHERE status = 'pending'),
             count(*) FILTER (WHERE status = 'delivered'), count(*) FILTER (WHERE status = 'dead'),
             max(delivered_at)
         FROM deliveries GROUP BY endpoint ORDER BY endpoint",
        &[],
        records::endpoint_stats,
    )
    .await?;
    let stmt = c
        .prepare_cached(
            "SELECT a.at, a.status_code, a.error, a.response FROM delivery_attempts a
             JOIN deliveries d ON d.id = a.delivery_id
             WHERE d.endpoint = $1 AND (a.status_code IS NULL OR a.status_code < 200 OR a.status_code > 299)
             ORDER BY a.id DESC LIMIT 1",
        )
        .await?;
    for s in &mut out {
        if let Some(row) = c.query_opt(&stmt, &[&s.endpoint]).await? {
            records::add_last_failure(s, &row)?;
        }
    }
    Ok(out)
}

pub(super) async fn deliveries(
    c: &Object,
    endpoint: &str,
    status: Option<&str>,
    limit: u32,
) -> Result<Vec<DeliveryRecord>, DbError> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE endpoint = $1 AND ($2::text IS NULL OR status = $2)
         ORDER BY id DESC LIMIT $3"
    );
    let mut out = all(
        c,
        &sql,
        &[&endpoint, &status, &delivery_page_size(limit)],
        records::delivery,
    )
    .await?;
    let sql = format!(
        "SELECT {ATTEMPT_COLUMNS} FROM delivery_attempts WHERE delivery_id = $1 ORDER BY id"
    );
    for d in &mut out {
        d.history = all(c, &sql, &[&d.id], records::attempt).await?;
    }
    Ok(out)
}

pub(super) async fn outbox_depth(c: &Object) -> Result<i64, DbError> {
    Ok(scalar(
        c,
        "SELECT count(*) FROM deliveries WHERE status = 'pending'",
        &[],
    )
    .await?
    .unwrap_or(0))
}

// ---- the pull side ----

pub(super) async fn notification_exists(
    c: &Object,
    store: &str,
    notification_id: &str,
) -> Result<bool, DbError> {
    Ok(scalar(
        c,
        "SELECT 1::bigint FROM notifications WHERE store = $1 AND notification_id = $2",
        &[&store, &notification_id],
    )
    .await?
    .is_some())
}

pub(super) async fn last_test_notification(
    c: &Object,
    store: &str,
) -> Result<Option<i64>, DbError> {
    scalar(
        c,
        "SELECT max(received_at) FROM notifications WHERE store = $1 AND event_type = 'TEST'",
        &[&store],
    )
    .await
}

pub(super) async fn tracked_subscriptions(
    c: &Object,
    store: &str,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<TrackedSubscription>, DbError> {
    let said = |column| sql_common::newest_said(column, "s.store", "s.subscription_key");
    let sql = format!(
        "SELECT s.subscription_key, {}, coalesce(s.product_id, {}), {}
           FROM subscriptions s
          WHERE s.store = $1 AND ($2::text IS NULL OR s.subscription_key > $2)
            AND coalesce(s.status, '') <> 'revoked'
            AND NOT (coalesce(s.status, '') = 'expired' AND coalesce(s.expires_at, 0) < $4)
          ORDER BY s.subscription_key LIMIT $3",
        said("app_id"),
        said("product_id"),
        said("purchase_kind"),
    );
    let ended_before = storehook_core::time::now_ms() - ENDED_LONG_AGO_MS;
    all(
        c,
        &sql,
        &[&store, &after, &i64::from(limit), &ended_before],
        records::tracked_subscription,
    )
    .await
}

pub(super) fn save_check(c: &PgConn, check: &StoredCheck) -> Result<(), DbError> {
    let json = crate::rules::to_json(&check.report)?;
    c.run(
        "INSERT INTO store_checks (store, checked_at, verdict, report_json) VALUES ($1, $2, $3, $4)
         ON CONFLICT (store) DO UPDATE SET checked_at = excluded.checked_at,
             verdict = excluded.verdict, report_json = excluded.report_json",
        &[
            &check.store,
            &check.checked_at_ms,
            &check.report.verdict.as_str(),
            &json,
        ],
    )
}

pub(super) async fn checks(c: &Object) -> Result<Vec<StoredCheck>, DbError> {
    all(c, sql_common::CHECKS, &[], records::check).await
}

pub(super) fn create_job(c: &PgConn, new: &NewJob) -> Result<Job, DbError> {
    // A catch-up already queued or running for the store (another instance
    // queued it at the same moment) is the one: it covers this one.
    let sql = format!(
        "INSERT INTO store_jobs (store, kind, since_ms, until_ms, only_failures, status, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, 'queued', $6, $6)
         ON CONFLICT (store) WHERE kind = 'catch_up' AND status IN ('queued', 'running') DO NOTHING
         RETURNING {JOB_COLUMNS}"
    );
    let inserted = c.first(
        &sql,
        &[
            &new.store,
            &new.kind.as_str(),
            &new.window.since_ms,
            &new.window.until_ms,
            &new.window.only_failures,
            &new.created_at_ms,
        ],
    )?;
    let row = match inserted {
        Some(row) => row,
        None => c
            .first(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM store_jobs
                     WHERE store = $1 AND kind = 'catch_up' AND status IN ('queued', 'running')"
                ),
                &[&new.store],
            )?
            .ok_or_else(|| DbError::Corrupt("a new job vanished".into()))?,
    };
    records::job(&row)
}

/// How long a claimed job is an instance's without a new claim (each page
/// renews it).
const JOB_LEASE_MS: i64 = 120_000;

pub(super) async fn claim_job(
    c: &Object,
    instance: &str,
    id: i64,
    now: i64,
) -> Result<bool, DbError> {
    let stmt = c
        .prepare_cached(
            "UPDATE store_jobs SET claimed_by = $2, lease_until = $3 + $4
             WHERE id = $1 AND status IN ('queued', 'running')
               AND (claimed_by IS NULL OR claimed_by = $2 OR lease_until <= $3
                    OR NOT EXISTS (SELECT 1 FROM instances i
                                    WHERE i.id = store_jobs.claimed_by AND i.last_seen > $3 - $5))",
        )
        .await?;
    let claimed = c
        .execute(
            &stmt,
            &[&id, &instance, &now, &JOB_LEASE_MS, &INSTANCE_GONE_MS],
        )
        .await?;
    Ok(claimed > 0)
}

pub(super) async fn job(c: &Object, id: i64) -> Result<Option<Job>, DbError> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM store_jobs WHERE id = $1");
    first(c, &sql, &[&id], records::job).await
}

pub(super) async fn jobs(c: &Object, store: Option<&str>, limit: u32) -> Result<Vec<Job>, DbError> {
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM store_jobs WHERE ($1::text IS NULL OR store = $1) ORDER BY id DESC LIMIT $2"
    );
    all(c, &sql, &[&store, &i64::from(limit)], records::job).await
}

pub(super) async fn unfinished_jobs(c: &Object) -> Result<Vec<Job>, DbError> {
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM store_jobs WHERE status IN ('queued', 'running') ORDER BY id"
    );
    all(c, &sql, &[], records::job).await
}

/// Applies one step; a finished job never changes again.
pub(super) fn update_job(c: &PgConn, id: i64, step: &JobStep) -> Result<Option<Job>, DbError> {
    let (set_cursor, cursor) = match &step.cursor {
        Some(cursor) => (true, cursor.clone()),
        None => (false, None),
    };
    let status = step.status.map(JobStatus::as_str);
    let finished = step.status.filter(|s| s.is_finished()).map(|_| step.at_ms);
    c.run(
        "UPDATE store_jobs SET
             status = coalesce($2, status),
             cursor = CASE WHEN $3 THEN $4 ELSE cursor END,
             pages = pages + $5, scanned = scanned + $6, recovered = recovered + $7,
             duplicates = duplicates + $8, skipped = skipped + $13,
             progress = coalesce($9, progress), error = coalesce($10, error),
             updated_at = $11, finished_at = coalesce($12, finished_at)
         WHERE id = $1 AND status IN ('queued', 'running')",
        &[
            &id,
            &status,
            &set_cursor,
            &cursor,
            &step.pages,
            &step.scanned,
            &step.recovered,
            &step.duplicates,
            &step.progress,
            &step.error,
            &step.at_ms,
            &finished,
            &step.skipped,
        ],
    )?;
    let sql = format!("SELECT {JOB_COLUMNS} FROM store_jobs WHERE id = $1");
    c.first(&sql, &[&id])?.map(|r| records::job(&r)).transpose()
}

pub(super) async fn due_acknowledgements(
    c: &Object,
    now: i64,
    limit: u32,
) -> Result<Vec<DueAcknowledgement>, DbError> {
    all(
        c,
        "SELECT store, subscription_key, app_id, attempts, product_id, purchase_kind
         FROM acknowledgements
         WHERE status = 'pending' AND next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT $2",
        &[&now, &i64::from(limit)],
        records::due_acknowledgement,
    )
    .await
}

/// How long an acknowledgement being attempted is an instance's: it is
/// due again after this unless its result was recorded first.
const ACK_LEASE_MS: i64 = 60_000;

/// Takes a due acknowledgement for this instance: only one of several
/// instances gets it (the row is due no longer, for a lease).
pub(super) async fn claim_acknowledgement(
    c: &Object,
    store: &str,
    key: &str,
    now: i64,
) -> Result<bool, DbError> {
    let stmt = c
        .prepare_cached(
            "UPDATE acknowledgements SET next_attempt_at = $3 + $4
             WHERE store = $1 AND subscription_key = $2 AND status = 'pending'
               AND next_attempt_at <= $3",
        )
        .await?;
    Ok(c.execute(&stmt, &[&store, &key, &now, &ACK_LEASE_MS])
        .await?
        > 0)
}

pub(super) async fn next_acknowledgement_due(c: &Object) -> Result<Option<i64>, DbError> {
    scalar(c, sql_common::NEXT_ACKNOWLEDGEMENT_DUE, &[]).await
}

pub(super) fn record_acknowledgement(
    c: &PgConn,
    store: &str,
    key: &str,
    attempt: &AckAttempt,
    now: i64,
) -> Result<(), DbError> {
    match attempt {
        AckAttempt::Finished(outcome) => {
            let status = crate::store_api::ack_status(outcome);
            c.run(
                "UPDATE acknowledgements SET status = $3, attempts = attempts + 1, last_error = NULL,
                     updated_at = $4
                 WHERE store = $1 AND subscription_key = $2 AND status = 'pending'",
                &[&store, &key, &status, &now],
            )?;
            c.run(
                "UPDATE subscriptions SET attention = NULL
                 WHERE store = $1 AND subscription_key = $2
                   AND EXISTS (SELECT 1 FROM acknowledgements a WHERE a.store = $1
                               AND a.subscription_key = $2 AND a.flagged)",
                &[&store, &key],
            )
        }
        AckAttempt::Retry { at_ms, error } => c.run(
            "UPDATE acknowledgements SET attempts = attempts + 1, next_attempt_at = $3,
                 last_error = $4, updated_at = $5
             WHERE store = $1 AND subscription_key = $2 AND status = 'pending'",
            &[&store, &key, at_ms, error, &now],
        ),
    }
}

pub(super) fn flag_unacknowledged(
    c: &PgConn,
    before_ms: i64,
    attention: &str,
) -> Result<u64, DbError> {
    let flagged = c.rows(
        "UPDATE acknowledgements SET flagged = TRUE
         WHERE status = 'pending' AND NOT flagged AND coalesce(purchased_at, created_at) < $1
         RETURNING store, subscription_key",
        &[&before_ms],
    )?;
    for row in &flagged {
        c.run(
            "UPDATE subscriptions SET attention = $3 WHERE store = $1 AND subscription_key = $2",
            &[&row.text(0)?, &row.text(1)?, &attention],
        )?;
    }
    Ok(flagged.len() as u64)
}

pub(super) async fn acknowledgement_stats(c: &Object) -> Result<Vec<AckStats>, DbError> {
    all(
        c,
        sql_common::ACKNOWLEDGEMENT_STATS,
        &[],
        records::ack_stats,
    )
    .await
}

pub(super) async fn overdue_subscriptions(
    c: &Object,
    due_before_ms: i64,
) -> Result<Vec<Overdue>, DbError> {
    // The oldest overdue subscription of each store beside the count.
    all(
        c,
        "WITH overdue AS (
             SELECT s.store, s.subscription_key, s.expires_at
               FROM subscriptions s
              WHERE s.expires_at IS NOT NULL AND s.expires_at < $1
                AND s.status IN ('active', 'grace_period', 'billing_retry')
                AND NOT EXISTS (SELECT 1 FROM notifications n
                                 WHERE n.store = s.store AND n.subscription_key = s.subscription_key
                                   AND n.received_at >= s.expires_at)
                AND NOT EXISTS (SELECT 1 FROM state_snapshots p
                                 WHERE p.store = s.store AND p.subscription_key = s.subscription_key
                                   AND p.fetched_at >= s.expires_at))
         SELECT store, count(*), min(expires_at),
                (array_agg(subscription_key ORDER BY expires_at, subscription_key))[1]
           FROM overdue GROUP BY store ORDER BY store",
        &[&due_before_ms],
        records::overdue,
    )
    .await
}

// ---- instances ----

pub(super) async fn register(c: &Object, i: &crate::Instance) -> Result<(), DbError> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO instances (id, host, pid, version, started_at, last_seen)
             VALUES ($1, $2, $3, $4, $5, $5)
             ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen",
        )
        .await?;
    c.execute(
        &stmt,
        &[&i.id, &i.host, &i.pid, &i.version, &i.started_at_ms],
    )
    .await?;
    Ok(())
}

pub(super) async fn heartbeat(c: &Object, id: &str, now: i64) -> Result<(), DbError> {
    let stmt = c
        .prepare_cached("UPDATE instances SET last_seen = $2 WHERE id = $1")
        .await?;
    c.execute(&stmt, &[&id, &now]).await?;
    // Instances gone for a day are forgotten.
    let stmt = c
        .prepare_cached("DELETE FROM instances WHERE last_seen < $1")
        .await?;
    c.execute(&stmt, &[&(now - 86_400_000)]).await?;
    Ok(())
}

/// Forgets the instance and frees its claims (a graceful stop).
pub(super) async fn leave(c: &Object, id: &str) -> Result<(), DbError> {
    for sql in [
        "UPDATE deliveries SET claim_id = NULL, claimed_by = NULL, lease_until = NULL
         WHERE claimed_by = $1 AND status = 'pending'",
        "UPDATE store_jobs SET claimed_by = NULL, lease_until = NULL WHERE claimed_by = $1",
        "UPDATE pending_state_fetches SET claimed_by = NULL, lease_until = NULL
         WHERE claimed_by = $1",
        "DELETE FROM instances WHERE id = $1",
    ] {
        let stmt = c.prepare_cached(sql).await?;
        c.execute(&stmt, &[&id]).await?;
    }
    Ok(())
}

pub(super) async fn instances(c: &Object, this: &str) -> Result<Vec<crate::Instance>, DbError> {
    let mut instances = all(
        c,
        "SELECT id, host, pid, version, started_at, last_seen FROM instances
         ORDER BY started_at DESC, id",
        &[],
        records::instance,
    )
    .await?;
    for instance in &mut instances {
        instance.this = instance.id == this;
    }
    Ok(instances)
}

// ---- retention ----

pub(super) fn prune(c: &PgConn, batch: PruneBatch) -> Result<PruneReport, DbError> {
    let mut report = PruneReport::default();
    let limit = i64::from(batch.limit.max(1));
    if let Some(cutoff) = batch.raw_body_before_ms {
        report.raw_bodies = c.exec(
            "UPDATE notifications SET raw_body = '' WHERE id IN (
                 SELECT id FROM notifications
                 WHERE length(raw_body) > 0 AND received_at < $1
                 ORDER BY received_at LIMIT $2)",
            &[&cutoff, &limit],
        )?;
    }
    if let Some(cutoff) = batch.deliveries_before_ms {
        let ids: Vec<i64> = c
            .rows(
                "SELECT id FROM deliveries
                 WHERE status = 'delivered' AND delivered_at < $1
                 ORDER BY delivered_at LIMIT $2",
                &[&cutoff, &limit],
            )?
            .iter()
            .map(|r| r.i64(0))
            .collect::<Result<_, _>>()?;
        report.attempts = c.exec(
            "DELETE FROM delivery_attempts WHERE delivery_id = ANY($1)",
            &[&ids],
        )?;
        report.deliveries = c.exec("DELETE FROM deliveries WHERE id = ANY($1)", &[&ids])?;
    }
    Ok(report)
}

pub(super) async fn database_size(c: &Object) -> Result<DatabaseSize, DbError> {
    let bytes = scalar(c, "SELECT pg_database_size(current_database())", &[]).await?;
    Ok(DatabaseSize {
        file_bytes: bytes.unwrap_or(0).max(0) as u64,
        free_bytes: 0,
    })
}
