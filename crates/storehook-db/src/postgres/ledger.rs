//! The write primitives in PostgreSQL's dialect; the rules that use them
//! are in [`crate::rules`].

use storehook_core::{PurchaseKind, StateUpdate};
use tokio_postgres::types::ToSql;

use super::charts::{chart_delta_params, chart_lag_statement, ADD_CHART_DELTA};
use super::conn::PgConn;
use crate::records::{self, Columns, SUBSCRIPTION_COLUMNS};
use crate::rules::{
    insert_then_check, snapshot_details, to_json, EventSource, Folded, HistoryEntry, Inserted,
    Ledger, NewDelivery, NewEvent, StateMerge, StatsDelta, SubscriptionView, Tally,
};
use crate::{DbError, NewNotification, RejectedNotification, Subscription};

impl Ledger for PgConn {
    fn lock_subscription(&self, store: &str, key: &str) -> Result<(), DbError> {
        // Until the batch commits, no other instance works on this
        // subscription: its fold, tracking and event sequence stay whole.
        // Usually the batch took it at its start, before any savepoint.
        let lock_key = crate::rules::lock_key(store, key);
        if self.holds_lock(&lock_key) {
            return Ok(());
        }
        self.run(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&lock_key],
        )
    }

    fn insert_notification(&self, new: &NewNotification) -> Result<Option<i64>, DbError> {
        let row = self.insert_notification_row(new, INSERT_UNTRACKED)?;
        row.map(|r| r.i64(0)).transpose()
    }

    fn insert_notification_tracking(
        &self,
        new: &NewNotification,
    ) -> Result<Option<Inserted>, DbError> {
        let n = &new.notification;
        let locked = n
            .subscription_key
            .as_ref()
            .is_none_or(|key| self.holds_lock(&crate::rules::lock_key(&n.store, key)));
        if !locked {
            return insert_then_check(self, new);
        }
        // Under the batch's lock: the insert reads whether the subscription
        // is tracked and stores the row's verdict with it, one round trip
        // instead of three.
        let Some(row) = self.insert_notification_row(new, INSERT_TRACKING)? else {
            return Ok(None);
        };
        Ok(Some(Inserted {
            id: row.i64(0)?,
            tracked: row.opt_bool(1)?.unwrap_or(false),
        }))
    }

    fn insert_rejected(&self, r: &RejectedNotification) -> Result<Option<i64>, DbError> {
        let row = self.first(
            "INSERT INTO notifications (store, notification_id, received_at, verdict, rejection_code,
                 rejection_message, raw_body)
             VALUES ($1, $2, $3, 'rejected', $4, $5, $6)
             ON CONFLICT (store, notification_id) DO NOTHING RETURNING id",
            &[
                &r.store,
                &r.notification_id,
                &r.received_at_ms,
                &r.code,
                &r.message,
                &r.raw_body,
            ],
        )?;
        row.map(|r| r.i64(0)).transpose()
    }

    fn notification_row(&self, store: &str, notification_id: &str) -> Result<i64, DbError> {
        self.first(
            "SELECT id FROM notifications WHERE store = $1 AND notification_id = $2",
            &[&store, &notification_id],
        )?
        .ok_or_else(|| {
            DbError::Corrupt(format!("notification {store}/{notification_id} vanished"))
        })?
        .i64(0)
    }

    fn mark_tracked(&self, row: i64) -> Result<(), DbError> {
        self.run(
            "UPDATE notifications SET verdict = 'tracked' WHERE id = $1",
            &[&row],
        )
    }

    fn adopt_untracked_rows(&self, store: &str, key: &str) -> Result<Vec<i64>, DbError> {
        let rows = self.rows(
            "SELECT id FROM notifications
             WHERE store = $1 AND subscription_key = $2 AND verdict = 'untracked'
             ORDER BY occurred_at, notification_id",
            &[&store, &key],
        )?;
        self.run(
            "UPDATE notifications SET verdict = 'tracked'
             WHERE store = $1 AND subscription_key = $2 AND verdict = 'untracked'",
            &[&store, &key],
        )?;
        rows.iter().map(|r| r.i64(0)).collect()
    }

    fn latest_user_hint(&self, store: &str, key: &str) -> Result<Option<String>, DbError> {
        self.first(
            "SELECT app_user_id_hint FROM notifications
             WHERE store = $1 AND subscription_key = $2 AND app_user_id_hint IS NOT NULL
             ORDER BY occurred_at DESC, id DESC LIMIT 1",
            &[&store, &key],
        )?
        .map(|r| r.text(0))
        .transpose()
    }

    fn event_source(&self, row: i64) -> Result<Option<EventSource>, DbError> {
        self.first(
            "SELECT store, notification_id, subscription_key, event_type, raw_type, environment,
                 occurred_at, product_id, app_id, details_json
             FROM notifications WHERE id = $1",
            &[&row],
        )?
        .map_or(Ok(None), |r| records::event_source(row, &r))
    }

    fn history(&self, store: &str, key: &str) -> Result<Vec<HistoryEntry>, DbError> {
        let notifications = self.rows(
            "SELECT occurred_at, notification_id, state_json, product_id, event_type, environment
             FROM notifications WHERE store = $1 AND subscription_key = $2 AND verdict = 'tracked'",
            &[&store, &key],
        )?;
        let snapshots = self.rows(
            "SELECT as_of, id, state_json FROM state_snapshots WHERE store = $1 AND subscription_key = $2",
            &[&store, &key],
        )?;
        let notifications = notifications
            .iter()
            .map(|r| records::history_notification(r));
        let snapshots = snapshots.iter().map(|r| records::history_snapshot(r));
        notifications.chain(snapshots).collect()
    }

    fn subscription_user(&self, store: &str, key: &str) -> Result<Option<Option<String>>, DbError> {
        self.first(
            "SELECT app_user_id FROM subscriptions WHERE store = $1 AND subscription_key = $2",
            &[&store, &key],
        )?
        .map(|r| r.opt_text(0))
        .transpose()
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
             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT DO NOTHING",
            &[&store, &key, &app_user_id, &continues, &now_ms],
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
            "UPDATE subscriptions SET app_user_id = $3, updated_at = $4
             WHERE store = $1 AND subscription_key = $2",
            &[&store, &key, &user, &now_ms],
        )
    }

    fn fill_app_user_id(&self, store: &str, key: &str, user: &str) -> Result<(), DbError> {
        self.run(
            "UPDATE subscriptions SET app_user_id = $3
             WHERE store = $1 AND subscription_key = $2 AND app_user_id IS NULL",
            &[&store, &key, &user],
        )
    }

    fn set_continues(&self, store: &str, key: &str, old: &str) -> Result<(), DbError> {
        self.run(
            "UPDATE subscriptions SET continues_key = $3
             WHERE store = $1 AND subscription_key = $2 AND continues_key IS NULL",
            &[&store, &key, &old],
        )
    }

    fn refresh_attention(&self, store: &str, key: &str) -> Result<(), DbError> {
        self.run(
            "UPDATE subscriptions SET attention = (SELECT attention FROM notifications
                 WHERE store = $1 AND subscription_key = $2 AND attention IS NOT NULL
                 ORDER BY occurred_at DESC, notification_id DESC LIMIT 1)
             WHERE store = $1 AND subscription_key = $2",
            &[&store, &key],
        )
    }

    fn refresh_state_pending(&self, store: &str, key: &str) -> Result<(), DbError> {
        self.run(
            "UPDATE subscriptions SET state_pending = EXISTS (SELECT 1 FROM pending_state_fetches
                 WHERE store = $1 AND subscription_key = $2)
             WHERE store = $1 AND subscription_key = $2",
            &[&store, &key],
        )
    }

    fn mark_state_pending(&self, store: &str, key: &str) -> Result<(), DbError> {
        self.run(
            "UPDATE subscriptions SET state_pending = TRUE WHERE store = $1 AND subscription_key = $2",
            &[&store, &key],
        )
    }

    fn clear_state_pending(&self, store: &str, key: &str, now_ms: i64) -> Result<(), DbError> {
        self.run(
            "UPDATE subscriptions SET state_pending = FALSE, updated_at = $3
             WHERE store = $1 AND subscription_key = $2",
            &[&store, &key, &now_ms],
        )
    }

    fn merge_state(&self, store: &str, key: &str, m: &StateMerge<'_>) -> Result<bool, DbError> {
        let state = m.state;
        let changed = self.exec(
            "UPDATE subscriptions SET
                 status = coalesce($3, status),
                 expires_at = coalesce($4, expires_at),
                 auto_renew = coalesce($5, auto_renew),
                 product_id = coalesce($6, product_id),
                 last_event_type = coalesce($7, last_event_type),
                 last_event_at = CASE WHEN $7::text IS NULL THEN last_event_at ELSE $8 END,
                 environment = coalesce($9, environment),
                 state_as_of = $8,
                 updated_at = $10
             WHERE store = $1 AND subscription_key = $2
               AND (state_as_of IS NULL OR state_as_of < $8)",
            &[
                &store,
                &key,
                &state.status.map(|s| s.as_str()),
                &state.expires_at_ms,
                &state.auto_renew,
                &state.product_id,
                &m.event.map(|(t, _)| t.as_str()),
                &m.at_ms,
                &m.event.map(|(_, env)| env),
                &m.now_ms,
            ],
        )?;
        Ok(changed > 0)
    }

    fn write_folded(&self, store: &str, key: &str, f: &Folded, now_ms: i64) -> Result<(), DbError> {
        let event = f.last_event.as_ref();
        self.run(
            "UPDATE subscriptions SET status = $3, expires_at = $4, auto_renew = $5, product_id = $6,
                 last_event_type = $7, last_event_at = $8, environment = coalesce($9, environment),
                 state_as_of = $10, updated_at = $11
             WHERE store = $1 AND subscription_key = $2",
            &[
                &store,
                &key,
                &f.state.status.map(|s| s.as_str()),
                &f.state.expires_at_ms,
                &f.state.auto_renew,
                &f.state.product_id,
                &event.map(|(t, _, _)| t.as_str()),
                &event.map(|(_, _, at)| *at),
                &event.and_then(|(_, env, _)| env.as_deref()),
                &f.as_of_ms,
                &now_ms,
            ],
        )
    }

    fn subscription(&self, store: &str, key: &str) -> Result<Option<Subscription>, DbError> {
        let sql = format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE store = $1 AND subscription_key = $2"
        );
        self.first(&sql, &[&store, &key])?
            .map(|r| records::subscription(&r))
            .transpose()
    }

    fn next_event_sequence(
        &self,
        store: &str,
        key: &str,
    ) -> Result<Option<SubscriptionView>, DbError> {
        self.first(
            "UPDATE subscriptions SET event_sequence = event_sequence + 1
             WHERE store = $1 AND subscription_key = $2
             RETURNING app_user_id, status, expires_at, auto_renew, product_id, event_sequence",
            &[&store, &key],
        )?
        .map(|r| records::subscription_view(&r))
        .transpose()
    }

    fn add_pending_fetch(&self, store: &str, key: &str, since_ms: i64) -> Result<(), DbError> {
        self.run(
            "INSERT INTO pending_state_fetches (store, subscription_key, since) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
            &[&store, &key, &since_ms],
        )
    }

    fn clear_pending_fetch(&self, store: &str, key: &str) -> Result<(), DbError> {
        self.run(
            "DELETE FROM pending_state_fetches WHERE store = $1 AND subscription_key = $2",
            &[&store, &key],
        )
    }

    fn insert_snapshot(
        &self,
        store: &str,
        key: &str,
        update: &StateUpdate,
        now_ms: i64,
    ) -> Result<i64, DbError> {
        let row = self.rows(
            "INSERT INTO state_snapshots (store, subscription_key, as_of, state_json, fetched_at,
                 details_json)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            &[
                &store,
                &key,
                &update.as_of_ms,
                &to_json(&update.state)?,
                &now_ms,
                &to_json(&snapshot_details(update))?,
            ],
        )?;
        let id = row.first().map(|r| r.try_get::<_, i64>(0)).transpose()?;
        id.ok_or_else(|| DbError::Corrupt("a state snapshot's insert returned no row".into()))
    }

    fn note_acknowledgement_state(
        &self,
        store: &str,
        key: &str,
        update: &StateUpdate,
        now_ms: i64,
    ) -> Result<(), DbError> {
        if update.acknowledgement_pending {
            let said = |column| crate::sql_common::newest_said(column, "$1", "$2");
            let sql = format!(
                "INSERT INTO acknowledgements (store, subscription_key, app_id, product_id, purchase_kind,
                     status, purchased_at, next_attempt_at, created_at, updated_at)
                 VALUES ($1, $2, {}, coalesce($5, {}), {}, 'pending', $3, $4, $4, $4)
                 ON CONFLICT (store, subscription_key) DO UPDATE SET
                     status = CASE WHEN acknowledgements.status IN ('acknowledged', 'already')
                                   THEN acknowledgements.status ELSE 'pending' END,
                     app_id = coalesce(excluded.app_id, acknowledgements.app_id),
                     product_id = coalesce(excluded.product_id, acknowledgements.product_id),
                     purchase_kind = coalesce(excluded.purchase_kind, acknowledgements.purchase_kind),
                     purchased_at = coalesce(acknowledgements.purchased_at, excluded.purchased_at),
                     updated_at = excluded.updated_at",
                said("app_id"),
                said("product_id"),
                said("purchase_kind"),
            );
            self.run(
                &sql,
                &[
                    &store,
                    &key,
                    &update.purchased_at_ms,
                    &now_ms,
                    &update.state.product_id,
                ],
            )
        } else {
            self.run(
                "UPDATE acknowledgements SET status = 'elsewhere', updated_at = $3
                 WHERE store = $1 AND subscription_key = $2 AND status = 'pending'",
                &[&store, &key, &now_ms],
            )
        }
    }

    fn add_store_stats(&self, store: &str, d: &StatsDelta) -> Result<(), DbError> {
        self.run(ADD_STORE_STATS, &store_stats_params(&store, d))
    }

    fn apply_tally(&self, tally: &Tally) -> Result<(), DbError> {
        // Every counter row of the batch in one round trip, in the tally's
        // order (the lock order instances share).
        let mut statements: Vec<(&str, Vec<&(dyn ToSql + Sync)>)> = Vec::new();
        for (store, d) in tally.stats() {
            statements.push((ADD_STORE_STATS, store_stats_params(store, d)));
        }
        for (k, v) in tally.deltas() {
            statements.push((ADD_CHART_DELTA, chart_delta_params(k, v)));
        }
        for (k, c) in tally.lag() {
            statements.push(chart_lag_statement(k, c));
        }
        self.run_all(&statements)
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
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (store) DO UPDATE SET
                 last_rejection_reason = CASE WHEN excluded.last_rejected >= coalesce(store_stats.last_rejected, 0)
                     THEN excluded.last_rejection_reason ELSE store_stats.last_rejection_reason END,
                 last_rejection_message = CASE WHEN excluded.last_rejected >= coalesce(store_stats.last_rejected, 0)
                     THEN excluded.last_rejection_message ELSE store_stats.last_rejection_message END,
                 last_rejected = GREATEST(store_stats.last_rejected, excluded.last_rejected),
                 rejected = store_stats.rejected + excluded.rejected",
            &[&store, &at_ms, &code, &message, &(count as i64)],
        )
    }

    fn event_exists(&self, event_id: &str) -> Result<bool, DbError> {
        Ok(self
            .first("SELECT 1 FROM events WHERE event_id = $1", &[&event_id])?
            .is_some())
    }

    fn insert_event(&self, e: &NewEvent<'_>) -> Result<i64, DbError> {
        let src = e.source;
        self.first(
            "INSERT INTO events (event_id, notification_row, store, subscription_key, event_type, environment,
                 app_id, app_user_id, sequence, created_at, body)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING seq",
            &[
                &e.event_id,
                &src.row,
                &src.store,
                &src.subscription_key,
                &src.event_type.as_str(),
                &src.environment.as_str(),
                &src.app_id,
                &e.app_user_id,
                &e.sequence,
                &e.created_at_ms,
                &e.body,
            ],
        )?
        .ok_or_else(|| DbError::Corrupt("an inserted event returned no sequence".into()))?
        .i64(0)
    }

    fn insert_delivery(&self, d: &NewDelivery<'_>) -> Result<(), DbError> {
        self.run(
            "INSERT INTO deliveries (endpoint, kind, event_seq, event_id, notification_row, order_key, status,
                 next_attempt_at, created_at, headers_json, payload)
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $7, $8, $9)",
            &[
                &d.endpoint,
                &d.kind.as_str(),
                &d.event_seq,
                &d.event_id,
                &d.notification_row,
                &d.order_key,
                &d.due_at_ms,
                &d.headers_json,
                &d.payload,
            ],
        )
    }
}

/// The columns a verified notification is inserted with, `$1`…`$19`.
macro_rules! notification_columns {
    () => {
        "store, notification_id, received_at, verdict, subscription_key,
         event_type, raw_type, environment, occurred_at, product_id, app_id, app_user_id_hint,
         continues_key, attention, state_json, details_json, decoded_json, raw_body, source,
         purchase_kind"
    };
}

const INSERT_UNTRACKED: &str = concat!(
    "INSERT INTO notifications (",
    notification_columns!(),
    ") VALUES ($1, $2, $3, 'untracked', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
         $16, $17, $18, $19)
     ON CONFLICT (store, notification_id) DO NOTHING RETURNING id"
);

/// Stored as tracked when its subscription is (`subscription_key = NULL`
/// never is).
const INSERT_TRACKING: &str = concat!(
    "INSERT INTO notifications (",
    notification_columns!(),
    ") SELECT $1, $2, $3,
         CASE WHEN EXISTS (SELECT 1 FROM subscriptions WHERE store = $1 AND subscription_key = $4)
              THEN 'tracked' ELSE 'untracked' END,
         $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19
     ON CONFLICT (store, notification_id) DO NOTHING RETURNING id, verdict = 'tracked'"
);

impl PgConn {
    fn insert_notification_row(
        &self,
        new: &NewNotification,
        sql: &str,
    ) -> Result<Option<tokio_postgres::Row>, DbError> {
        let n = &new.notification;
        let (state, details, decoded) = (
            to_json(&n.state)?,
            to_json(&n.details)?,
            to_json(&n.decoded)?,
        );
        self.first(
            sql,
            &[
                &n.store,
                &n.notification_id,
                &new.received_at_ms,
                &n.subscription_key,
                &n.event_type.as_str(),
                &n.raw_type,
                &n.environment.as_str(),
                &n.occurred_at_ms,
                &n.product_id,
                &n.app_id,
                &n.app_user_id_hint,
                &n.continues_subscription_key,
                &n.attention,
                &state,
                &details,
                &decoded,
                &new.raw_body,
                &new.source.as_str(),
                &n.purchase_kind.map(PurchaseKind::as_str),
            ],
        )
    }
}

const ADD_STORE_STATS: &str =
    "INSERT INTO store_stats (store, last_received, last_verified, accepted, untracked, duplicates, recovered)
     VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT (store) DO UPDATE SET
         last_received = GREATEST(store_stats.last_received, excluded.last_received),
         last_verified = GREATEST(store_stats.last_verified, excluded.last_verified),
         accepted = store_stats.accepted + excluded.accepted,
         untracked = store_stats.untracked + excluded.untracked,
         duplicates = store_stats.duplicates + excluded.duplicates,
         recovered = store_stats.recovered + excluded.recovered";

fn store_stats_params<'a>(
    store: &'a (dyn ToSql + Sync),
    d: &'a StatsDelta,
) -> Vec<&'a (dyn ToSql + Sync)> {
    vec![
        store,
        &d.received_at_ms,
        &d.verified_at_ms,
        &d.accepted,
        &d.untracked,
        &d.duplicates,
        &d.recovered,
    ]
}
