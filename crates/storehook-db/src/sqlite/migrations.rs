//! Versioned schema migrations. Each entry runs once, in order, inside a
//! transaction; `schema_info.version` records how far a database has come.
//! Never edit a released migration: append a new one.

use rusqlite::Connection;

use crate::DbError;

const MIGRATIONS: &[&str] = &[
    // 1: notifications, subscriptions, per-store bookkeeping.
    r#"
    CREATE TABLE notifications (
        id                INTEGER PRIMARY KEY,
        store             TEXT NOT NULL,
        notification_id   TEXT NOT NULL,
        received_at       INTEGER NOT NULL,
        verdict           TEXT NOT NULL CHECK (verdict IN ('tracked', 'untracked', 'rejected')),
        subscription_key  TEXT,
        event_type        TEXT,
        raw_type          TEXT,
        environment       TEXT,
        occurred_at       INTEGER,
        product_id        TEXT,
        app_id            TEXT,
        app_user_id_hint  TEXT,
        continues_key     TEXT,
        attention         TEXT,
        state_json        TEXT,
        details_json      TEXT,
        decoded_json      TEXT,
        rejection_code    TEXT,
        rejection_message TEXT,
        raw_body          BLOB NOT NULL,
        UNIQUE (store, notification_id)
    );
    CREATE INDEX notifications_by_subscription ON notifications (store, subscription_key, occurred_at);

    CREATE TABLE subscriptions (
        store            TEXT NOT NULL,
        subscription_key TEXT NOT NULL,
        app_user_id      TEXT,
        environment      TEXT,
        product_id       TEXT,
        status           TEXT,
        expires_at       INTEGER,
        auto_renew       INTEGER,
        last_event_type  TEXT,
        last_event_at    INTEGER,
        -- The newest time folded into the state (notification or snapshot):
        -- anything older is folded in by recomputing from history.
        state_as_of      INTEGER,
        continues_key    TEXT,
        state_pending    INTEGER NOT NULL DEFAULT 0,
        attention        TEXT,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL,
        PRIMARY KEY (store, subscription_key)
    );
    CREATE INDEX subscriptions_by_user ON subscriptions (app_user_id);

    -- State fetched from a store's API after the fact (Google Play), folded
    -- into a subscription's history by its as-of time like a notification.
    CREATE TABLE state_snapshots (
        id               INTEGER PRIMARY KEY,
        store            TEXT NOT NULL,
        subscription_key TEXT NOT NULL,
        as_of            INTEGER NOT NULL,
        state_json       TEXT NOT NULL,
        fetched_at       INTEGER NOT NULL
    );
    CREATE INDEX state_snapshots_by_subscription ON state_snapshots (store, subscription_key);

    -- Subscriptions whose full state still has to be fetched.
    CREATE TABLE pending_state_fetches (
        store            TEXT NOT NULL,
        subscription_key TEXT NOT NULL,
        since            INTEGER NOT NULL,
        PRIMARY KEY (store, subscription_key)
    );

    CREATE TABLE store_stats (
        store                  TEXT PRIMARY KEY,
        last_received          INTEGER,
        last_verified          INTEGER,
        last_rejected          INTEGER,
        last_rejection_reason  TEXT,
        last_rejection_message TEXT,
        accepted               INTEGER NOT NULL DEFAULT 0,
        untracked              INTEGER NOT NULL DEFAULT 0,
        duplicates             INTEGER NOT NULL DEFAULT 0,
        rejected               INTEGER NOT NULL DEFAULT 0
    );
    "#,
    // 2: the transactional outbox: normalized events, deliveries to the
    // operator's endpoints (and raw forwards), and every attempt.
    r#"
    ALTER TABLE subscriptions ADD COLUMN event_sequence INTEGER NOT NULL DEFAULT 0;

    CREATE TABLE events (
        seq              INTEGER PRIMARY KEY,
        event_id         TEXT NOT NULL UNIQUE,
        notification_row INTEGER NOT NULL REFERENCES notifications (id),
        store            TEXT NOT NULL,
        subscription_key TEXT,
        event_type       TEXT NOT NULL,
        environment      TEXT NOT NULL,
        app_id           TEXT,
        app_user_id      TEXT,
        sequence         INTEGER NOT NULL,
        created_at       INTEGER NOT NULL,
        body             TEXT NOT NULL
    );
    CREATE INDEX events_by_store ON events (store, seq);
    CREATE INDEX events_by_user ON events (app_user_id, seq);

    CREATE TABLE deliveries (
        id               INTEGER PRIMARY KEY,
        endpoint         TEXT NOT NULL,
        kind             TEXT NOT NULL CHECK (kind IN ('event', 'forward', 'test')),
        event_seq        INTEGER REFERENCES events (seq),
        event_id         TEXT NOT NULL,
        notification_row INTEGER,
        -- Deliveries of one endpoint with the same key go out in id order.
        order_key        TEXT,
        status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
        attempts         INTEGER NOT NULL DEFAULT 0,
        next_attempt_at  INTEGER NOT NULL,
        created_at       INTEGER NOT NULL,
        last_attempt_at  INTEGER,
        last_status      INTEGER,
        last_error       TEXT,
        delivered_at     INTEGER,
        headers_json     TEXT,
        payload          BLOB NOT NULL
    );
    CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
    CREATE INDEX deliveries_order ON deliveries (endpoint, order_key, status, id);

    CREATE TABLE delivery_attempts (
        id           INTEGER PRIMARY KEY,
        delivery_id  INTEGER NOT NULL REFERENCES deliveries (id),
        at           INTEGER NOT NULL,
        status_code  INTEGER,
        error        TEXT,
        duration_ms  INTEGER NOT NULL,
        response     TEXT
    );
    CREATE INDEX delivery_attempts_by_delivery ON delivery_attempts (delivery_id);
    "#,
    // 3: retention finds what it may prune without scanning: raw bodies
    // still kept, oldest first, and delivered rows by delivery time.
    r#"
    CREATE INDEX notifications_raw_kept ON notifications (received_at) WHERE length(raw_body) > 0;
    CREATE INDEX deliveries_delivered ON deliveries (delivered_at) WHERE status = 'delivered';
    "#,
    // 4: the pull side. Where each notification came from and how many a
    // backfill recovered; each store's last connection check; backfill jobs
    // with the cursor a restart resumes from; purchases to acknowledge.
    r#"
    ALTER TABLE notifications ADD COLUMN source TEXT NOT NULL DEFAULT 'push';
    ALTER TABLE store_stats ADD COLUMN recovered INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX subscriptions_by_expiry ON subscriptions (store, expires_at);

    CREATE TABLE store_checks (
        store       TEXT PRIMARY KEY,
        checked_at  INTEGER NOT NULL,
        verdict     TEXT NOT NULL,
        report_json TEXT NOT NULL
    );

    CREATE TABLE store_jobs (
        id            INTEGER PRIMARY KEY,
        store         TEXT NOT NULL,
        kind          TEXT NOT NULL CHECK (kind IN ('backfill', 'catch_up')),
        since_ms      INTEGER NOT NULL,
        until_ms      INTEGER NOT NULL,
        only_failures INTEGER NOT NULL,
        status        TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
        cursor        TEXT,
        pages         INTEGER NOT NULL DEFAULT 0,
        scanned       INTEGER NOT NULL DEFAULT 0,
        recovered     INTEGER NOT NULL DEFAULT 0,
        duplicates    INTEGER NOT NULL DEFAULT 0,
        progress      TEXT,
        error         TEXT,
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL,
        finished_at   INTEGER
    );
    CREATE INDEX store_jobs_by_store ON store_jobs (store, id);
    CREATE INDEX store_jobs_unfinished ON store_jobs (id) WHERE status IN ('queued', 'running');

    CREATE TABLE acknowledgements (
        store            TEXT NOT NULL,
        subscription_key TEXT NOT NULL,
        app_id           TEXT,
        -- pending: the store says not acknowledged; acknowledged: by us;
        -- already / elsewhere: the store says it was (by the app, or
        -- before); not_needed: nothing to acknowledge.
        status           TEXT NOT NULL CHECK (status IN ('pending', 'acknowledged', 'already', 'elsewhere', 'not_needed')),
        purchased_at     INTEGER,
        attempts         INTEGER NOT NULL DEFAULT 0,
        next_attempt_at  INTEGER NOT NULL,
        last_error       TEXT,
        flagged          INTEGER NOT NULL DEFAULT 0,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL,
        PRIMARY KEY (store, subscription_key)
    );
    CREATE INDEX acknowledgements_due ON acknowledgements (next_attempt_at) WHERE status = 'pending';
    "#,
    // 5: records a backfill could not use (did not verify, unreadable).
    r#"
    ALTER TABLE store_jobs ADD COLUMN skipped INTEGER NOT NULL DEFAULT 0;
    "#,
    // 6: what a notification says was bought (a subscription or a one-time
    // product), and the product and kind of each queued acknowledgement: a
    // store may read and acknowledge the two through different calls, by
    // product id.
    r#"
    ALTER TABLE notifications ADD COLUMN purchase_kind TEXT;
    ALTER TABLE acknowledgements ADD COLUMN product_id TEXT;
    ALTER TABLE acknowledgements ADD COLUMN purchase_kind TEXT;
    "#,
    // 7: charts. One row per billing period, per-day deltas (stocks as
    // +1/-1 and ±MRR at a period's start and end day, flows as counters),
    // and a per-day, per-store histogram of notification lag. Filled from
    // the history already stored by the rebuild this asks for, at once
    // after the migration.
    r#"
    CREATE TABLE chart_periods (
        store            TEXT NOT NULL,
        subscription_key TEXT NOT NULL,
        start_at         INTEGER NOT NULL,
        end_at           INTEGER NOT NULL,
        nominal_end_at   INTEGER NOT NULL,
        environment      TEXT NOT NULL,
        app_id           TEXT NOT NULL,
        product_id       TEXT NOT NULL,
        is_trial         INTEGER NOT NULL,
        renewal_number   INTEGER NOT NULL,
        kind             TEXT NOT NULL,
        price_micros     INTEGER,
        currency         TEXT NOT NULL,
        mrr_micros       INTEGER,
        refunded_at      INTEGER,
        churned          INTEGER NOT NULL,
        PRIMARY KEY (store, subscription_key, start_at)
    ) WITHOUT ROWID;
    CREATE TABLE chart_deltas (
        metric      TEXT NOT NULL,
        environment TEXT NOT NULL,
        day         INTEGER NOT NULL,
        store       TEXT NOT NULL,
        app_id      TEXT NOT NULL,
        product_id  TEXT NOT NULL,
        currency    TEXT NOT NULL,
        value       INTEGER NOT NULL,
        PRIMARY KEY (metric, environment, day, store, app_id, product_id, currency)
    ) WITHOUT ROWID;
    CREATE TABLE chart_lag (
        environment TEXT NOT NULL,
        store       TEXT NOT NULL,
        day         INTEGER NOT NULL,
        bin         INTEGER NOT NULL,
        count       INTEGER NOT NULL,
        PRIMARY KEY (environment, store, day, bin)
    ) WITHOUT ROWID;
    CREATE TABLE chart_rebuild (requested INTEGER NOT NULL);
    INSERT INTO chart_rebuild (requested) VALUES (1);
    "#,
    // 8: what a fetched state says the period costs (price, currency, a
    // free trial), for the charts of a store whose notifications carry no
    // price (Google Play).
    // The fetches already stored (their expiries) join the charts by a rebuild.
    r#"
    ALTER TABLE state_snapshots ADD COLUMN details_json TEXT;
    UPDATE chart_rebuild SET requested = 1;
    "#,
    // 9: the lag histogram per app and product too, so the lag chart
    // honours those filters; the per-store table stays as small as it was
    // for the unfiltered reads. Filled by a rebuild.
    r#"
    CREATE TABLE chart_lag_products (
        environment TEXT NOT NULL,
        store       TEXT NOT NULL,
        app_id      TEXT NOT NULL,
        product_id  TEXT NOT NULL,
        day         INTEGER NOT NULL,
        bin         INTEGER NOT NULL,
        count       INTEGER NOT NULL,
        PRIMARY KEY (environment, day, bin, store, app_id, product_id)
    ) WITHOUT ROWID;
    UPDATE chart_rebuild SET requested = 1;
    "#,
];

pub(crate) fn migrate(conn: &mut Connection) -> Result<(), DbError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_info (version INTEGER NOT NULL)")?;
    let current: i64 = conn.query_row(
        "SELECT coalesce(max(version), 0) FROM schema_info",
        [],
        |r| r.get(0),
    )?;
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(DbError::Corrupt(format!(
            "the database is at schema version {current}, newer than this build knows ({known}); \
             run a newer storehook"
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as i64 + 1;
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute("DELETE FROM schema_info", [])?;
        tx.execute("INSERT INTO schema_info (version) VALUES (?1)", [version])?;
        tx.commit()?;
        tracing::info!(version, "database migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrating_twice_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn
            .query_row("SELECT version FROM schema_info", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        conn.execute("UPDATE schema_info SET version = 99", [])
            .unwrap();
        assert!(matches!(migrate(&mut conn), Err(DbError::Corrupt(_))));
    }
}
