//! Storing a notification and what follows from it: de-duplication,
//! tracking (and adopting what arrived before it), applying it to its
//! subscription, its event and forwards, and its store's counts.

use storehook_core::{EventType, StateUpdate};

use super::events::{emit_event, emit_forwards, EventSource};
use super::{fold, Ledger, StateMerge, StatsDelta, Tally};
use crate::outbox::OutboxConfig;
use crate::{DbError, NewNotification, Recorded, RejectedNotification, Source, Tracked, Verdict};

pub(crate) fn record_notification<L: Ledger + ?Sized>(
    l: &L,
    cfg: &OutboxConfig,
    new: &NewNotification,
    tally: &mut Tally,
) -> Result<Recorded, DbError> {
    let n = &new.notification;
    let at = new.received_at_ms;
    let Some(inserted) = l.insert_notification_tracking(new)? else {
        // A store retry: already stored, applied once. Still proof the
        // connection works.
        let id = l.notification_row(&n.store, &n.notification_id)?;
        tally.add_stats(&n.store, StatsDelta::of(Verdict::Duplicate, new.source, at));
        return Ok(Recorded {
            verdict: Verdict::Duplicate,
            id,
        });
    };

    let id = inserted.id;
    let mut tracked = inserted.tracked;
    if let Some(key) = &n.subscription_key {
        if !tracked {
            if let Some(old) = &n.continues_subscription_key {
                tracked = carry_over_tracking(l, cfg, &n.store, key, old, at)?;
            }
        }
        if !tracked && new.auto_track && n.event_type.starts_purchase() {
            l.insert_subscription(&n.store, key, n.app_user_id_hint.as_deref(), None, at)?;
            // Anything that arrived for it before its purchase (stores do
            // not guarantee order) is adopted with it.
            adopt_untracked(l, cfg, &n.store, key, at)?;
            tracked = true;
        }
        if n.state_fetch_pending {
            l.add_pending_fetch(&n.store, key, at)?;
        }
        if tracked {
            if !inserted.tracked {
                l.mark_tracked(id)?;
            }
            apply_notification(l, new, key)?;
        }
    }
    let verdict = if tracked || n.event_type == EventType::Test {
        Verdict::Tracked
    } else {
        Verdict::Untracked
    };
    if verdict == Verdict::Tracked {
        emit_event(l, cfg, &EventSource::of(id, n), at)?;
    }
    emit_forwards(l, cfg, id, new)?;
    if !cfg.skip_chart_maintenance {
        super::charts::on_notification(l, new, tally)?;
    }
    tally.add_stats(&n.store, StatsDelta::of(verdict, new.source, at));
    Ok(Recorded { verdict, id })
}

pub(crate) fn record_rejected<L: Ledger + ?Sized>(
    l: &L,
    r: &RejectedNotification,
    tally: &mut Tally,
) -> Result<Recorded, DbError> {
    match l.insert_rejected(r)? {
        Some(id) => {
            l.add_rejections(&r.store, 1, &r.code, &r.message, r.received_at_ms)?;
            Ok(Recorded {
                verdict: Verdict::Rejected,
                id,
            })
        }
        None => {
            let id = l.notification_row(&r.store, &r.notification_id)?;
            tally.add_stats(
                &r.store,
                StatsDelta::of(Verdict::Duplicate, Source::Push, r.received_at_ms),
            );
            Ok(Recorded {
                verdict: Verdict::Duplicate,
                id,
            })
        }
    }
}

pub(crate) fn track<L: Ledger + ?Sized>(
    l: &L,
    cfg: &OutboxConfig,
    store: &str,
    key: &str,
    app_user_id: Option<&str>,
    now: i64,
) -> Result<Tracked, DbError> {
    l.lock_subscription(store, key)?;
    let created = match l.subscription_user(store, key)? {
        Some(current) => {
            if let Some(user) = app_user_id.filter(|u| current.as_deref() != Some(*u)) {
                l.set_app_user_id(store, key, user, now)?;
            }
            false
        }
        None => {
            l.insert_subscription(store, key, app_user_id, None, now)?;
            adopt_untracked(l, cfg, store, key, now)?;
            true
        }
    };
    let subscription = l.subscription(store, key)?.ok_or_else(|| {
        DbError::Corrupt(format!(
            "subscription {store}/{key} vanished while tracking"
        ))
    })?;
    Ok(Tracked {
        created,
        subscription,
    })
}

pub(crate) fn apply_state_update<L: Ledger + ?Sized>(
    l: &L,
    cfg: &OutboxConfig,
    store: &str,
    key: &str,
    update: &StateUpdate,
    now: i64,
    tally: &mut Tally,
) -> Result<(), DbError> {
    l.lock_subscription(store, key)?;
    let snapshot = l.insert_snapshot(store, key, update, now)?;
    if !cfg.skip_chart_maintenance {
        super::charts::on_state_fetch(l, store, key, snapshot, tally)?;
    }
    l.clear_pending_fetch(store, key)?;
    l.note_acknowledgement_state(store, key, update, now)?;
    let mut tracked = l.is_tracked(store, key)?;
    if !tracked {
        if let Some(old) = &update.continues_subscription_key {
            tracked = carry_over_tracking(l, cfg, store, key, old, now)?;
        }
    }
    if !tracked {
        return Ok(());
    }
    if let Some(old) = &update.continues_subscription_key {
        l.set_continues(store, key, old)?;
    }
    if let Some(user) = &update.app_user_id_hint {
        l.fill_app_user_id(store, key, user)?;
    }
    l.clear_state_pending(store, key, now)?;
    let merged = l.merge_state(
        store,
        key,
        &StateMerge {
            state: &update.state,
            at_ms: update.as_of_ms,
            event: None,
            now_ms: now,
        },
    )?;
    if merged {
        Ok(())
    } else {
        recompute(l, store, key, now)
    }
}

/// Applies one notification to its tracked subscription: cheaply when it is
/// the newest thing seen, by refolding the whole history when it arrived out
/// of order (so that an older event never moves the state backwards, and
/// the result equals what in-order arrival would have given).
fn apply_notification<L: Ledger + ?Sized>(
    l: &L,
    new: &NewNotification,
    key: &str,
) -> Result<(), DbError> {
    let n = &new.notification;
    let now = new.received_at_ms;
    if let Some(user) = &n.app_user_id_hint {
        l.fill_app_user_id(&n.store, key, user)?;
    }
    if n.attention.is_some() {
        // The newest flag in store order, not the last to arrive: an older
        // request delivered late must not replace a newer one.
        l.refresh_attention(&n.store, key)?;
    }
    if n.state_fetch_pending {
        l.mark_state_pending(&n.store, key)?;
    }
    let mut state = n.state.clone();
    if state.product_id.is_none() {
        state.product_id.clone_from(&n.product_id);
    }
    let merged = l.merge_state(
        &n.store,
        key,
        &StateMerge {
            state: &state,
            at_ms: n.occurred_at_ms,
            event: Some((n.event_type, n.environment.as_str())),
            now_ms: now,
        },
    )?;
    if merged {
        Ok(())
    } else {
        recompute(l, &n.store, key, now)
    }
}

/// Recomputes a tracked subscription's state by folding its whole history.
pub(crate) fn recompute<L: Ledger + ?Sized>(
    l: &L,
    store: &str,
    key: &str,
    now: i64,
) -> Result<(), DbError> {
    let folded = fold(l.history(store, key)?);
    l.write_folded(store, key, &folded, now)
}

/// Marks a subscription's stored untracked notifications as tracked and
/// folds them in, so nothing received before tracking is lost.
fn adopt_untracked<L: Ledger + ?Sized>(
    l: &L,
    cfg: &OutboxConfig,
    store: &str,
    key: &str,
    now: i64,
) -> Result<(), DbError> {
    let adopted = l.adopt_untracked_rows(store, key)?;
    if let Some(hint) = l.latest_user_hint(store, key)? {
        l.fill_app_user_id(store, key, &hint)?;
    }
    l.refresh_attention(store, key)?;
    l.refresh_state_pending(store, key)?;
    recompute(l, store, key, now)?;
    // Their events go out now, in store order, as if they had just arrived.
    for row in adopted {
        if let Some(src) = l.event_source(row)? {
            emit_event(l, cfg, &src, now)?;
        }
    }
    Ok(())
}

/// A new subscription key that continues a tracked one (a store's renamed
/// purchase): tracking and app user carry over. Returns whether the new key
/// is now tracked.
fn carry_over_tracking<L: Ledger + ?Sized>(
    l: &L,
    cfg: &OutboxConfig,
    store: &str,
    key: &str,
    old: &str,
    now: i64,
) -> Result<bool, DbError> {
    if old == key {
        return Ok(false);
    }
    let Some(user) = l.subscription_user(store, old)? else {
        return Ok(false);
    };
    l.insert_subscription(store, key, user.as_deref(), Some(old), now)?;
    adopt_untracked(l, cfg, store, key, now)?;
    Ok(true)
}
