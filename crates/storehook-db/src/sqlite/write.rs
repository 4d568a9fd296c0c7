//! Every write, each run inside the writer's batch transaction.

use crate::sqlite::Cached;
use rusqlite::{params, Connection, OptionalExtension};
use storehook_core::{EventType, ImpliedState, PurchaseKind, StateUpdate, VerifiedNotification};

use crate::outbox::{self, EventSource, OutboxConfig};
use crate::sqlite::read;
use crate::{DbError, NewNotification, Recorded, RejectedNotification, Source, Tracked, Verdict};

pub(crate) fn record_notification(
    conn: &Connection,
    cfg: &OutboxConfig,
    new: &NewNotification,
) -> Result<Recorded, DbError> {
    let n = &new.notification;
    let at = new.received_at_ms;
    let inserted = conn.exec(
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
            at,
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
    if inserted == 0 {
        // A store retry: already stored, applied once. Still proof the
        // connection works.
        let id: i64 = conn.row(
            "SELECT id FROM notifications WHERE store = ?1 AND notification_id = ?2",
            params![n.store, n.notification_id],
            |r| r.get(0),
        )?;
        bump_stats(conn, &n.store, Verdict::Duplicate, new.source, at)?;
        return Ok(Recorded {
            verdict: Verdict::Duplicate,
            id,
        });
    }
    let id = conn.last_insert_rowid();

    let mut tracked = false;
    if let Some(key) = &n.subscription_key {
        tracked = is_tracked(conn, &n.store, key)?;
        if !tracked {
            if let Some(old) = &n.continues_subscription_key {
                tracked = carry_over_tracking(conn, cfg, &n.store, key, old, at)?;
            }
        }
        if !tracked && new.auto_track && n.event_type.starts_purchase() {
            insert_subscription(conn, &n.store, key, n.app_user_id_hint.as_deref(), None, at)?;
            // Anything that arrived for it before its purchase (stores do
            // not guarantee order) is adopted with it.
            adopt_untracked(conn, cfg, &n.store, key, at)?;
            tracked = true;
        }
        if n.state_fetch_pending {
            conn.exec(
                "INSERT INTO pending_state_fetches (store, subscription_key, since) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
                params![n.store, key, at],
            )?;
        }
        if tracked {
            conn.exec(
                "UPDATE notifications SET verdict = 'tracked' WHERE id = ?1",
                [id],
            )?;
            apply_notification(conn, n, at)?;
        }
    }
    let verdict = if tracked || n.event_type == EventType::Test {
        Verdict::Tracked
    } else {
        Verdict::Untracked
    };
    if verdict == Verdict::Tracked {
        outbox::emit_event(conn, cfg, &event_source(id, n), at)?;
    }
    outbox::emit_forwards(conn, cfg, id, new)?;
    bump_stats(conn, &n.store, verdict, new.source, at)?;
    Ok(Recorded { verdict, id })
}

fn event_source(row: i64, n: &VerifiedNotification) -> EventSource {
    EventSource {
        row,
        store: n.store.clone(),
        notification_id: n.notification_id.clone(),
        subscription_key: n.subscription_key.clone(),
        event_type: n.event_type,
        raw_type: n.raw_type.clone(),
        environment: n.environment,
        occurred_at_ms: n.occurred_at_ms,
        product_id: n.product_id.clone(),
        app_id: n.app_id.clone(),
        details: n.details.clone(),
    }
}

pub(crate) fn record_rejected_notification(
    conn: &Connection,
    r: &RejectedNotification,
) -> Result<Recorded, DbError> {
    let inserted = conn.exec(
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
    let id: i64 = conn.row(
        "SELECT id FROM notifications WHERE store = ?1 AND notification_id = ?2",
        params![r.store, r.notification_id],
        |row| row.get(0),
    )?;
    if inserted == 0 {
        bump_stats(
            conn,
            &r.store,
            Verdict::Duplicate,
            Source::Push,
            r.received_at_ms,
        )?;
        return Ok(Recorded {
            verdict: Verdict::Duplicate,
            id,
        });
    }
    record_rejection(conn, &r.store, 1, &r.code, &r.message, r.received_at_ms)?;
    Ok(Recorded {
        verdict: Verdict::Rejected,
        id,
    })
}

pub(crate) fn record_rejection(
    conn: &Connection,
    store: &str,
    count: u64,
    code: &str,
    message: &str,
    at: i64,
) -> Result<(), DbError> {
    // The reason follows the latest rejection, whatever order they are written in.
    conn.exec(
        "INSERT INTO store_stats (store, last_rejected, last_rejection_reason, last_rejection_message, rejected)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (store) DO UPDATE SET
             last_rejection_reason = CASE WHEN excluded.last_rejected >= coalesce(last_rejected, 0)
                 THEN excluded.last_rejection_reason ELSE last_rejection_reason END,
             last_rejection_message = CASE WHEN excluded.last_rejected >= coalesce(last_rejected, 0)
                 THEN excluded.last_rejection_message ELSE last_rejection_message END,
             last_rejected = max(coalesce(last_rejected, 0), excluded.last_rejected),
             rejected = rejected + excluded.rejected",
        params![store, at, code, message, count as i64],
    )?;
    Ok(())
}

pub(crate) fn track(
    conn: &Connection,
    cfg: &OutboxConfig,
    store: &str,
    key: &str,
    app_user_id: Option<&str>,
    now: i64,
) -> Result<Tracked, DbError> {
    let created = if is_tracked(conn, store, key)? {
        if let Some(user) = app_user_id {
            conn.exec(
                "UPDATE subscriptions SET app_user_id = ?3, updated_at = ?4
                 WHERE store = ?1 AND subscription_key = ?2 AND app_user_id IS NOT ?3",
                params![store, key, user, now],
            )?;
        }
        false
    } else {
        insert_subscription(conn, store, key, app_user_id, None, now)?;
        adopt_untracked(conn, cfg, store, key, now)?;
        true
    };
    let subscription = read::subscription(conn, store, key)?.ok_or_else(|| {
        DbError::Corrupt(format!(
            "subscription {store}/{key} vanished while tracking"
        ))
    })?;
    Ok(Tracked {
        created,
        subscription,
    })
}

pub(crate) fn apply_state_update(
    conn: &Connection,
    cfg: &OutboxConfig,
    store: &str,
    key: &str,
    update: &StateUpdate,
    now: i64,
) -> Result<(), DbError> {
    conn.exec(
        "INSERT INTO state_snapshots (store, subscription_key, as_of, state_json, fetched_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![store, key, update.as_of_ms, to_json(&update.state)?, now],
    )?;
    conn.exec(
        "DELETE FROM pending_state_fetches WHERE store = ?1 AND subscription_key = ?2",
        params![store, key],
    )?;
    crate::sqlite::store_api::note_acknowledgement_state(conn, store, key, update, now)?;
    let mut tracked = is_tracked(conn, store, key)?;
    if !tracked {
        if let Some(old) = &update.continues_subscription_key {
            tracked = carry_over_tracking(conn, cfg, store, key, old, now)?;
        }
    }
    if !tracked {
        return Ok(());
    }
    if let Some(old) = &update.continues_subscription_key {
        conn.exec(
            "UPDATE subscriptions SET continues_key = ?3 WHERE store = ?1 AND subscription_key = ?2 AND continues_key IS NULL",
            params![store, key, old],
        )?;
    }
    if let Some(user) = &update.app_user_id_hint {
        fill_app_user_id(conn, store, key, user)?;
    }
    conn.exec(
        "UPDATE subscriptions SET state_pending = 0, updated_at = ?3 WHERE store = ?1 AND subscription_key = ?2",
        params![store, key, now],
    )?;
    let as_of: Option<i64> = state_as_of(conn, store, key)?;
    if as_of.is_none_or(|t| update.as_of_ms > t) {
        merge_into_subscription(conn, store, key, &update.state, update.as_of_ms, None, now)
    } else {
        recompute_subscription(conn, store, key, now)
    }
}

/// Applies one notification to its tracked subscription: cheaply when it is
/// the newest thing seen, by refolding the whole history when it arrived out
/// of order (so that an older event never moves the state backwards, and
/// the result equals what in-order arrival would have given).
fn apply_notification(
    conn: &Connection,
    n: &VerifiedNotification,
    now: i64,
) -> Result<(), DbError> {
    let Some(key) = &n.subscription_key else {
        return Ok(());
    };
    if let Some(user) = &n.app_user_id_hint {
        fill_app_user_id(conn, &n.store, key, user)?;
    }
    if n.attention.is_some() {
        // The newest flag in store order, not the last to arrive: an older
        // request delivered late must not replace a newer one.
        conn.exec(
            "UPDATE subscriptions SET attention = (SELECT attention FROM notifications
                 WHERE store = ?1 AND subscription_key = ?2 AND attention IS NOT NULL
                 ORDER BY occurred_at DESC, notification_id DESC LIMIT 1)
             WHERE store = ?1 AND subscription_key = ?2",
            params![n.store, key],
        )?;
    }
    if n.state_fetch_pending {
        conn.exec(
            "UPDATE subscriptions SET state_pending = 1 WHERE store = ?1 AND subscription_key = ?2",
            params![n.store, key],
        )?;
    }
    let as_of = state_as_of(conn, &n.store, key)?;
    if as_of.is_none_or(|t| n.occurred_at_ms > t) {
        let mut state = n.state.clone();
        if state.product_id.is_none() {
            state.product_id.clone_from(&n.product_id);
        }
        let event = Some((n.event_type, n.environment.as_str()));
        merge_into_subscription(conn, &n.store, key, &state, n.occurred_at_ms, event, now)
    } else {
        recompute_subscription(conn, &n.store, key, now)
    }
}

fn merge_into_subscription(
    conn: &Connection,
    store: &str,
    key: &str,
    state: &ImpliedState,
    at: i64,
    event: Option<(EventType, &str)>,
    now: i64,
) -> Result<(), DbError> {
    conn.exec(
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
         WHERE store = ?1 AND subscription_key = ?2",
        params![
            store,
            key,
            state.status.map(|s| s.as_str()),
            state.expires_at_ms,
            state.auto_renew,
            state.product_id,
            event.map(|(t, _)| t.as_str()),
            at,
            event.map(|(_, env)| env),
            now,
        ],
    )?;
    Ok(())
}

/// One entry of a subscription's history, in fold order.
struct HistoryEntry {
    at: i64,
    /// Ties on `at` break on this, the same way whatever the arrival order.
    tiebreak: String,
    state: ImpliedState,
    event: Option<(EventType, String)>,
}

/// Recomputes a tracked subscription's state by folding its whole history
/// (applied notifications and fetched snapshots) in store order.
pub(crate) fn recompute_subscription(
    conn: &Connection,
    store: &str,
    key: &str,
    now: i64,
) -> Result<(), DbError> {
    let mut entries: Vec<HistoryEntry> = Vec::new();
    let mut stmt = conn.prepare_cached(
        "SELECT occurred_at, notification_id, state_json, product_id, event_type, environment
         FROM notifications WHERE store = ?1 AND subscription_key = ?2 AND verdict = 'tracked'",
    )?;
    let rows = stmt.query_map(params![store, key], |r| {
        Ok((
            r.get::<_, Option<i64>>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, Option<String>>(4)?,
            r.get::<_, Option<String>>(5)?,
        ))
    })?;
    for row in rows {
        let (at, nid, state_json, product, event_type, environment) = row?;
        let mut state: ImpliedState = from_json_opt(state_json.as_deref())?.unwrap_or_default();
        if state.product_id.is_none() {
            state.product_id = product;
        }
        let event = event_type
            .as_deref()
            .and_then(EventType::parse)
            .map(|t| (t, environment.unwrap_or_default()));
        entries.push(HistoryEntry {
            at: at.unwrap_or(0),
            tiebreak: format!("n:{nid}"),
            state,
            event,
        });
    }
    let mut stmt = conn.prepare_cached(
        "SELECT as_of, id, state_json FROM state_snapshots WHERE store = ?1 AND subscription_key = ?2",
    )?;
    let rows = stmt.query_map(params![store, key], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    for row in rows {
        let (at, id, state_json) = row?;
        entries.push(HistoryEntry {
            at,
            tiebreak: format!("s:{id:020}"),
            state: from_json_opt(Some(&state_json))?.unwrap_or_default(),
            event: None,
        });
    }
    entries.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.tiebreak.cmp(&b.tiebreak)));

    let mut state = ImpliedState::default();
    let mut last_event: Option<(EventType, String, i64)> = None;
    let mut as_of = None;
    for entry in &entries {
        state.merge(&entry.state);
        if let Some((t, env)) = &entry.event {
            last_event = Some((*t, env.clone(), entry.at));
        }
        as_of = Some(entry.at);
    }
    conn.exec(
        "UPDATE subscriptions SET status = ?3, expires_at = ?4, auto_renew = ?5, product_id = ?6,
             last_event_type = ?7, last_event_at = ?8, environment = coalesce(?9, environment),
             state_as_of = ?10, updated_at = ?11
         WHERE store = ?1 AND subscription_key = ?2",
        params![
            store,
            key,
            state.status.map(|s| s.as_str()),
            state.expires_at_ms,
            state.auto_renew,
            state.product_id,
            last_event.as_ref().map(|(t, _, _)| t.as_str()),
            last_event.as_ref().map(|(_, _, at)| *at),
            last_event
                .as_ref()
                .map(|(_, env, _)| env.as_str())
                .filter(|e| !e.is_empty()),
            as_of,
            now,
        ],
    )?;
    Ok(())
}

/// Marks a subscription's stored untracked notifications as tracked and
/// folds them in, so nothing received before tracking is lost.
fn adopt_untracked(
    conn: &Connection,
    cfg: &OutboxConfig,
    store: &str,
    key: &str,
    now: i64,
) -> Result<(), DbError> {
    let adopted: Vec<i64> = conn
        .prepare_cached(
            "SELECT id FROM notifications
             WHERE store = ?1 AND subscription_key = ?2 AND verdict = 'untracked'
             ORDER BY occurred_at, notification_id",
        )?
        .query_map(params![store, key], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    conn.exec(
        "UPDATE notifications SET verdict = 'tracked'
         WHERE store = ?1 AND subscription_key = ?2 AND verdict = 'untracked'",
        params![store, key],
    )?;
    // The latest hint and attention flag among them, if any.
    let hint: Option<String> = conn
        .row(
            "SELECT app_user_id_hint FROM notifications
             WHERE store = ?1 AND subscription_key = ?2 AND app_user_id_hint IS NOT NULL
             ORDER BY occurred_at DESC, id DESC LIMIT 1",
            params![store, key],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(hint) = hint {
        fill_app_user_id(conn, store, key, &hint)?;
    }
    conn.exec(
        "UPDATE subscriptions SET
             attention = (SELECT attention FROM notifications
                          WHERE store = ?1 AND subscription_key = ?2 AND attention IS NOT NULL
                          ORDER BY occurred_at DESC, notification_id DESC LIMIT 1),
             state_pending = EXISTS (SELECT 1 FROM pending_state_fetches
                                     WHERE store = ?1 AND subscription_key = ?2)
         WHERE store = ?1 AND subscription_key = ?2",
        params![store, key],
    )?;
    recompute_subscription(conn, store, key, now)?;
    // Their events go out now, in store order, as if they had just arrived.
    for row in adopted {
        if let Some(src) = outbox::source_of_row(conn, row)? {
            outbox::emit_event(conn, cfg, &src, now)?;
        }
    }
    Ok(())
}

/// A new subscription key that continues a tracked one (Google's
/// linkedPurchaseToken): tracking and app user carry over. Returns whether
/// the new key is now tracked.
fn carry_over_tracking(
    conn: &Connection,
    cfg: &OutboxConfig,
    store: &str,
    key: &str,
    old: &str,
    now: i64,
) -> Result<bool, DbError> {
    if old == key {
        return Ok(false);
    }
    let user: Option<Option<String>> = conn
        .row(
            "SELECT app_user_id FROM subscriptions WHERE store = ?1 AND subscription_key = ?2",
            params![store, old],
            |r| r.get(0),
        )
        .optional()?;
    let Some(user) = user else {
        return Ok(false);
    };
    insert_subscription(conn, store, key, user.as_deref(), Some(old), now)?;
    adopt_untracked(conn, cfg, store, key, now)?;
    Ok(true)
}

fn insert_subscription(
    conn: &Connection,
    store: &str,
    key: &str,
    app_user_id: Option<&str>,
    continues: Option<&str>,
    now: i64,
) -> Result<(), DbError> {
    conn.exec(
        "INSERT INTO subscriptions (store, subscription_key, app_user_id, continues_key, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT DO NOTHING",
        params![store, key, app_user_id, continues, now],
    )?;
    Ok(())
}

fn fill_app_user_id(conn: &Connection, store: &str, key: &str, user: &str) -> Result<(), DbError> {
    conn.exec(
        "UPDATE subscriptions SET app_user_id = ?3
         WHERE store = ?1 AND subscription_key = ?2 AND app_user_id IS NULL",
        params![store, key, user],
    )?;
    Ok(())
}

fn is_tracked(conn: &Connection, store: &str, key: &str) -> Result<bool, DbError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM subscriptions WHERE store = ?1 AND subscription_key = ?2")?
        .exists(params![store, key])?)
}

fn state_as_of(conn: &Connection, store: &str, key: &str) -> Result<Option<i64>, DbError> {
    Ok(conn
        .prepare_cached(
            "SELECT state_as_of FROM subscriptions WHERE store = ?1 AND subscription_key = ?2",
        )?
        .query_row(params![store, key], |r| r.get::<_, Option<i64>>(0))
        .optional()?
        .flatten())
}

fn bump_stats(
    conn: &Connection,
    store: &str,
    verdict: Verdict,
    source: Source,
    at: i64,
) -> Result<(), DbError> {
    let (accepted, untracked, duplicates) = match verdict {
        Verdict::Tracked => (1, 0, 0),
        Verdict::Untracked => (1, 1, 0),
        Verdict::Duplicate => (0, 0, 1),
        Verdict::Rejected => (0, 0, 0),
    };
    // "Last received" and "last verified" say the push works: a backfill
    // proves only that the API does.
    let pushed = source == Source::Push;
    let received = (pushed && verdict == Verdict::Tracked).then_some(at);
    let verified = pushed.then_some(at);
    let recovered = i64::from(!pushed && verdict != Verdict::Duplicate);
    conn.exec(
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
        params![store, received, verified, accepted, untracked, duplicates, recovered],
    )?;
    Ok(())
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, DbError> {
    serde_json::to_string(value).map_err(|e| DbError::Corrupt(format!("cannot serialize: {e}")))
}

pub(crate) fn from_json_opt<T: serde::de::DeserializeOwned>(
    text: Option<&str>,
) -> Result<Option<T>, DbError> {
    text.map(|t| {
        serde_json::from_str(t)
            .map_err(|e| DbError::Corrupt(format!("stored JSON unreadable: {e}")))
    })
    .transpose()
}
