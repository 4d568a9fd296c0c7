//! The write primitives in SQLite's dialect; the rules that use them are
//! in [`crate::rules`].

use rusqlite::{params, Connection, OptionalExtension};
use storehook_core::{PurchaseKind, StateUpdate};

use crate::records;
use crate::rules::{
    snapshot_details, to_json, EventSource, Folded, HistoryEntry, Ledger, NewDelivery, NewEvent,
    StateMerge, StatsDelta, SubscriptionView,
};
use crate::sqlite::{all, first, read, Cached};
use crate::{DbError, NewNotification, RejectedNotification, Subscription};

impl Ledger for Connection {
    fn insert_notification(&self, new: &NewNotification) -> Result<Option<i64>, DbError> {
        let n = &new.notification;
        let inserted = self.exec(
            "INSERT INTO notifications (store, notification_id, received_at, verdict, subscription_key,
                 event_type, raw_type, environment, occurred_at, product_id, app_id, app_user_id_hint,
                 continues_key, attention, state_json, details_json, decoded_json, raw_body, source,
                 purchase_kind)
             VALUES (?1, ?2, ?3, 'untracked', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
                 ?19)
             ON CONFLICT (store, notification_id) DO NOTHING",
            params![
                n.store,
                n.notification_id,
                new.received_at_ms,
                n.subscription_key,
                n.event_type.as_str(),
                n.raw_type,
                n.environment.as_str(),
                n.occurred_at_ms,
                n.product_id,
                n.app_id,
                n.app_user_id_hint,
                n.continues_subscription_key,
                n.attention,
                to_json(&n.state)?,
                to_json(&n.details)?,
                to_json(&n.decoded)?,
                new.raw_body,
                new.source.as_str(),
                n.purchase_kind.map(PurchaseKind::as_str),
            ],
        )?;
        Ok((inserted > 0).then(|| self.last_insert_rowid()))
    }

    fn insert_rejected(&self, r: &RejectedNotification) -> Result<Option<i64>, DbError> {
        let inserted = self.exec(
            "INSERT INTO notifications (store, notification_id, received_at, verdict, rejection_code,
                 rejection_message, raw_body)
             VALUES (?1, ?2, ?3, 'rejected', ?4, ?5, ?6)
             ON CONFLICT (store, notification_id) DO NOTHING",
            params![
                r.store,
                r.notification_id,
                r.received_at_ms,
                r.code,
                r.message,
                r.raw_body
            ],
        )?;
        Ok((inserted > 0).then(|| self.last_insert_rowid()))
    }

    fn notification_row(&self, store: &str, notification_id: &str) -> Result<i64, DbError> {
        Ok(self.row(
            "SELECT id FROM notifications WHERE store = ?1 AND notification_id = ?2",
            params![store, notification_id],
            |r| r.get(0),
        )?)
    }

    fn mark_tracked(&self, row: i64) -> Result<(), DbError> {
        self.run(
            "UPDATE notifications SET verdict = 'tracked' WHERE id = ?1",
            [row],
        )
    }

    fn adopt_untracked_rows(&self, store: &str, key: &str) -> Result<Vec<i64>, DbError> {
        let rows: Vec<i64> = self
            .prepare_cached(
                "SELECT id FROM notifications
                 WHERE store = ?1 AND subscription_key = ?2 AND verdict = 'untracked'
                 ORDER BY occurred_at, notification_id",
            )?
            .query_map(params![store, key], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        self.exec(
            "UPDATE notifications SET verdict = 'tracked'
             WHERE store = ?1 AND subscription_key = ?2 AND verdict = 'untracked'",
            params![store, key],
        )?;
        Ok(rows)
    }

    fn latest_user_hint(&self, store: &str, key: &str) -> Result<Option<String>, DbError> {
        Ok(self
            .row(
                "SELECT app_user_id_hint FROM notifications
                 WHERE store = ?1 AND subscription_key = ?2 AND app_user_id_hint IS NOT NULL
                 ORDER BY occurred_at DESC, id DESC LIMIT 1",
                params![store, key],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn event_source(&self, row: i64) -> Result<Option<EventSource>, DbError> {
        let source = first(
            self,
            "SELECT store, notification_id, subscription_key, event_type, raw_type, environment,
                 occurred_at, product_id, app_id, details_json
             FROM notifications WHERE id = ?1",
            [row],
            |r| records::event_source(row, r),
        )?;
        Ok(source.flatten())
    }

    fn history(&self, store: &str, key: &str) -> Result<Vec<HistoryEntry>, DbError> {
        let mut entries = all(
            self,
            "SELECT occurred_at, notification_id, state_json, product_id, event_type, environment
             FROM notifications WHERE store = ?1 AND subscription_key = ?2 AND verdict = 'tracked'",
            params![store, key],
            records::history_notification,
        )?;
        entries.extend(all(
            self,
            "SELECT as_of, id, state_json FROM state_snapshots WHERE store = ?1 AND subscription_key = ?2",
            params![store, key],
            records::history_snapshot,
        )?);
        Ok(entries)
    }

    fn subscription_user(&self, store: &str, key: &str) -> Result<Option<Option<String>>, DbError> {
        Ok(self
            .row(
                "SELECT app_user_id FROM subscriptions WHERE store = ?1 AND subscription_key = ?2",
                params![store, key],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn is_tracked(&self, store: &str, key: &str) -> Result<bool, DbError> {
        Ok(self
            .prepare_cached(
                "SELECT 1 FROM subscriptions WHERE store = ?1 AND subscription_key = ?2",
            )?
            .exists(params![store, key])?)
    }

    fn insert_subscription(
        &self,
        store: &str,
        key: &str,
        app_user_id: Option<&str>,
        continues: Option<&str>,
        now_ms: i64,
    ) -> Result<(), DbError> {
        self.run(
            "INSERT INTO subscriptions (store, subscription_key, app_user_id, continues_key, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT DO NOTHING",
            params![store, key, app_user_id, continues, now_ms],
        )
    }

    fn set_app_user_id(
        &self,
        store: &str,
        key: &str,
        user: &str,
        now_ms: i64,
    ) -> Result<(), DbError> {
        self.run(
            "UPDATE subscriptions SET app_user_id = ?3, updated_at = ?4
             WHERE store = ?1 AND subscription_key = ?2",
            params![store, key, user, now_ms],
        )
    }

    fn fill_app_user_id(&self, store: &str, key: &str, user: &str) -> Result<(), DbError> {
        self.run(
            "UPDATE subscriptions SET app_user_id = ?3
             WHERE store = ?1 AND subscription_key = ?2 AND app_user_id IS NULL",
            params![store, key, user],
        )
    }

    fn set_continues(&self, store: &str, key: &str, old: &str) -> Result<(), DbError> {
        self.run(
            "UPDATE subscriptions SET continues_key = ?3
             WHERE store = ?1 AND subscription_key = ?2 AND continues_key IS NULL",
            params![store, key, old],
        )
    }

    fn refresh_attention(&self, store: &str, key: &str) -> Result<(), DbError> {
        self.run(
            "UPDATE subscriptions SET attention = (SELECT attention FROM notifications
                 WHERE store = ?1 AND subscription_key = ?2 AND attention IS NOT NULL
                 ORDER BY occurred_at DESC, notification_id DESC LIMIT 1)
             WHERE store = ?1 AND subscription_key = ?2",
            params![store, key],
        )
    }

    fn refresh_state_pending(&self, store: &str, key: &str) -> Result<(), DbError> {
        self.run(
            "UPDATE subscriptions SET state_pending = EXISTS (SELECT 1 FROM pending_state_fetches
                 WHERE store = ?1 AND subscription_key = ?2)
             WHERE store = ?1 AND subscription_key = ?2",
            params![store, key],
        )
    }

    fn mark_state_pending(&self, store: &str, key: &str) -> Result<(), DbError> {
        self.run(
            "UPDATE subscriptions SET state_pending = 1 WHERE store = ?1 AND subscription_key = ?2",
            params![store, key],
        )
    }

    fn clear_state_pending(&self, store: &str, key: &str, now_ms: i64) -> Result<(), DbError> {
        self.run(
            "UPDATE subscriptions SET state_pending = 0, updated_at = ?3
             WHERE store = ?1 AND subscription_key = ?2",
            params![store, key, now_ms],
        )
    }

    fn merge_state(&self, store: &str, key: &str, m: &StateMerge<'_>) -> Result<bool, DbError> {
        let state = m.state;
        let changed = self.exec(
            "UPDATE subscriptions SET
                 status = coalesce(?3, status),
                 expires_at = coalesce(?4, expires_at),
                 auto_renew = coalesce(?5, auto_renew),
                 product_id = coalesce(?6, product_id),
                 last_event_type = coalesce(?7, last_event_type),
                 last_event_at = CASE WHEN ?7 IS NULL THEN last_event_at ELSE ?8 END,
                 environment = coalesce(?9, environment),
                 state_as_of = ?8,
                 updated_at = ?10
             WHERE store = ?1 AND subscription_key = ?2
               AND (state_as_of IS NULL OR state_as_of < ?8)",
            params![
                store,
                key,
                state.status.map(|s| s.as_str()),
                state.expires_at_ms,
                state.auto_renew,
                state.product_id,
                m.event.map(|(t, _)| t.as_str()),
                m.at_ms,
                m.event.map(|(_, env)| env),
                m.now_ms,
            ],
        )?;
        Ok(changed > 0)
    }

    fn write_folded(&self, store: &str, key: &str, f: &Folded, now_ms: i64) -> Result<(), DbError> {
        let event = f.last_event.as_ref();
        self.run(
            "UPDATE subscriptions SET status = ?3, expires_at = ?4, auto_renew = ?5, product_id = ?6,
                 last_event_type = ?7, last_event_at = ?8, environment = coalesce(?9, environment),
                 state_as_of = ?10, updated_at = ?11
             WHERE store = ?1 AND subscription_key = ?2",
            params![
                store,
                key,
                f.state.status.map(|s| s.as_str()),
                f.state.expires_at_ms,
                f.state.auto_renew,
                f.state.product_id,
                event.map(|(t, _, _)| t.as_str()),
                event.map(|(_, _, at)| *at),
                event.and_then(|(_, env, _)| env.as_deref()),
                f.as_of_ms,
                now_ms,
            ],
        )
    }

    fn subscription(&self, store: &str, key: &str) -> Result<Option<Subscription>, DbError> {
        read::subscription(self, store, key)
    }

    fn next_event_sequence(
        &self,
        store: &str,
        key: &str,
    ) -> Result<Option<SubscriptionView>, DbError> {
        self.exec(
            "UPDATE subscriptions SET event_sequence = event_sequence + 1
             WHERE store = ?1 AND subscription_key = ?2",
            params![store, key],
        )?;
        first(
            self,
            "SELECT app_user_id, status, expires_at, auto_renew, product_id, event_sequence
             FROM subscriptions WHERE store = ?1 AND subscription_key = ?2",
            params![store, key],
            records::subscription_view,
        )
    }

    fn add_pending_fetch(&self, store: &str, key: &str, since_ms: i64) -> Result<(), DbError> {
        self.run(
            "INSERT INTO pending_state_fetches (store, subscription_key, since) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
            params![store, key, since_ms],
        )
    }

    fn clear_pending_fetch(&self, store: &str, key: &str) -> Result<(), DbError> {
        self.run(
            "DELETE FROM pending_state_fetches WHERE store = ?1 AND subscription_key = ?2",
            params![store, key],
        )
    }

    fn insert_snapshot(
        &self,
        store: &str,
        key: &str,
        update: &StateUpdate,
        now_ms: i64,
    ) -> Result<i64, DbError> {
        self.run(
            "INSERT INTO state_snapshots (store, subscription_key, as_of, state_json, fetched_at,
                 details_json)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                store,
                key,
                update.as_of_ms,
                to_json(&update.state)?,
                now_ms,
                to_json(&snapshot_details(update))?
            ],
        )?;
        Ok(self.last_insert_rowid())
    }

    fn note_acknowledgement_state(
        &self,
        store: &str,
        key: &str,
        update: &StateUpdate,
        now_ms: i64,
    ) -> Result<(), DbError> {
        crate::sqlite::store_api::note_acknowledgement_state(self, store, key, update, now_ms)
    }

    fn add_store_stats(&self, store: &str, d: &StatsDelta) -> Result<(), DbError> {
        self.run(
            "INSERT INTO store_stats (store, last_received, last_verified, accepted, untracked, duplicates, recovered)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (store) DO UPDATE SET
                 last_received = CASE WHEN excluded.last_received IS NULL THEN last_received
                                      ELSE max(coalesce(last_received, 0), excluded.last_received) END,
                 last_verified = CASE WHEN excluded.last_verified IS NULL THEN last_verified
                                      ELSE max(coalesce(last_verified, 0), excluded.last_verified) END,
                 accepted = accepted + excluded.accepted,
                 untracked = untracked + excluded.untracked,
                 duplicates = duplicates + excluded.duplicates,
                 recovered = recovered + excluded.recovered",
            params![
                store,
                d.received_at_ms,
                d.verified_at_ms,
                d.accepted,
                d.untracked,
                d.duplicates,
                d.recovered
            ],
        )
    }

    fn add_rejections(
        &self,
        store: &str,
        count: u64,
        code: &str,
        message: &str,
        at_ms: i64,
    ) -> Result<(), DbError> {
        self.run(
            "INSERT INTO store_stats (store, last_rejected, last_rejection_reason, last_rejection_message, rejected)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (store) DO UPDATE SET
                 last_rejection_reason = CASE WHEN excluded.last_rejected >= coalesce(last_rejected, 0)
                     THEN excluded.last_rejection_reason ELSE last_rejection_reason END,
                 last_rejection_message = CASE WHEN excluded.last_rejected >= coalesce(last_rejected, 0)
                     THEN excluded.last_rejection_message ELSE last_rejection_message END,
                 last_rejected = max(coalesce(last_rejected, 0), excluded.last_rejected),
                 rejected = rejected + excluded.rejected",
            params![store, at_ms, code, message, count as i64],
        )
    }

    fn event_exists(&self, event_id: &str) -> Result<bool, DbError> {
        Ok(self
            .prepare_cached("SELECT 1 FROM events WHERE event_id = ?1")?
            .exists([event_id])?)
    }

    fn insert_event(&self, e: &NewEvent<'_>) -> Result<i64, DbError> {
        let src = e.source;
        self.exec(
            "INSERT INTO events (event_id, notification_row, store, subscription_key, event_type, environment,
                 app_id, app_user_id, sequence, created_at, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                e.event_id,
                src.row,
                src.store,
                src.subscription_key,
                src.event_type.as_str(),
                src.environment.as_str(),
                src.app_id,
                e.app_user_id,
                e.sequence,
                e.created_at_ms,
                e.body,
            ],
        )?;
        Ok(self.last_insert_rowid())
    }

    fn insert_delivery(&self, d: &NewDelivery<'_>) -> Result<(), DbError> {
        self.run(
            "INSERT INTO deliveries (endpoint, kind, event_seq, event_id, notification_row, order_key, status,
                 next_attempt_at, created_at, headers_json, payload)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7, ?8, ?9)",
            params![
                d.endpoint,
                d.kind.as_str(),
                d.event_seq,
                d.event_id,
                d.notification_row,
                d.order_key,
                d.due_at_ms,
                d.headers_json,
                d.payload,
            ],
        )
    }
}
