//! The storage rules that are not SQL, written once for every backend.
//!
//! A backend opens a write transaction and hands it to these functions as a
//! [`Ledger`]: a few dozen small primitives (insert this row, read that
//! column), each one statement in the backend's own dialect. What to do
//! with them — de-duplication's consequences, tracking and adopting
//! untracked notifications, the fold of a subscription's history, event
//! bodies with their per-subscription `sequence` and order keys, the
//! per-store counts — lives here, so a second backend implements the
//! primitives and never copies a rule.
//!
//! The primitives are synchronous: each backend runs its write
//! transactions on a writer thread of its own (group commit), where a
//! blocking call is the cheap and simple thing.

mod charts;
mod events;
mod fold;
mod ingest;
mod stats;
mod tally;

pub(crate) use charts::shapes_periods;
pub(crate) use charts::{
    build_chart, day_range, lag_day_range, reads, rebuild, rebuild_if_requested, ChartFact,
    ChartFactColumns, ChartLedger, DeltaKey, DeltaRead, DeltaRow, LagKey, LagRow,
    NotificationTimes, Period, SeriesBy,
};
pub(crate) use events::{EventSource, NewDelivery, NewEvent, SubscriptionView};
pub(crate) use fold::{fold, Folded, HistoryEntry};
pub(crate) use ingest::{apply_state_update, record_notification, record_rejected, track};
pub(crate) use stats::StatsDelta;
pub(crate) use tally::{apply_tally, Tally};

use storehook_core::{EventDetails, ImpliedState, StateUpdate};

use crate::{DbError, NewNotification, RejectedNotification, Subscription};

/// What a fetched state says about the period it reports, kept beside the
/// state so charts can read a fetch as they read a notification.
pub(crate) fn snapshot_details(u: &StateUpdate) -> EventDetails {
    EventDetails {
        purchased_at_ms: u.purchased_at_ms,
        price: u.price,
        currency: u.currency.clone(),
        is_trial: u.is_trial,
        ..EventDetails::default()
    }
}

/// The newest state a notification or a fetch brings, merged over the
/// subscription's columns (each `None` keeps what is there).
#[derive(Debug, Clone)]
pub(crate) struct StateMerge<'a> {
    pub state: &'a ImpliedState,
    /// Store time of what brought it (becomes `state_as_of`).
    pub at_ms: i64,
    /// The event and environment, for a notification (a fetch has none).
    pub event: Option<(storehook_core::EventType, &'a str)>,
    pub now_ms: i64,
}

/// What a subscription's lock is named by (see [`Ledger::lock_subscription`]).
pub(crate) fn lock_key(store: &str, key: &str) -> String {
    format!("{store}:{key}")
}

/// A newly stored notification's row, and whether its subscription was
/// tracked when it was stored (its row then says so already).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Inserted {
    pub id: i64,
    pub tracked: bool,
}

/// [`Ledger::insert_notification_tracking`] as separate statements.
pub(crate) fn insert_then_check<L: Ledger + ?Sized>(
    l: &L,
    new: &NewNotification,
) -> Result<Option<Inserted>, DbError> {
    let Some(id) = l.insert_notification(new)? else {
        return Ok(None);
    };
    let n = &new.notification;
    let mut tracked = false;
    if let Some(key) = &n.subscription_key {
        l.lock_subscription(&n.store, key)?;
        tracked = l.is_tracked(&n.store, key)?;
        if tracked {
            l.mark_tracked(id)?;
        }
    }
    Ok(Some(Inserted { id, tracked }))
}

/// One write transaction's primitives. Every method is one statement (or a
/// few) of the backend's dialect, with no decision of its own.
pub(crate) trait Ledger: ChartLedger {
    /// Holds off every other writer of this subscription until the
    /// transaction ends. A single writer (SQLite) has nothing to do; with
    /// several instances on one database, this is what keeps two of them
    /// from folding the same subscription at once.
    fn lock_subscription(&self, _store: &str, _key: &str) -> Result<(), DbError> {
        Ok(())
    }

    // ---- notifications ----

    /// Inserts a verified notification as untracked; `None` when the store
    /// and notification id are stored already.
    fn insert_notification(&self, new: &NewNotification) -> Result<Option<i64>, DbError>;
    /// Inserts a verified notification (`None` when stored already), takes
    /// its subscription's lock and says whether that is tracked, marking
    /// the row tracked if so. A backend may do it in one statement.
    fn insert_notification_tracking(
        &self,
        new: &NewNotification,
    ) -> Result<Option<Inserted>, DbError> {
        insert_then_check(self, new)
    }
    /// Inserts a rejected notification; `None` when already stored.
    fn insert_rejected(&self, rejected: &RejectedNotification) -> Result<Option<i64>, DbError>;
    /// The row id of a stored notification.
    fn notification_row(&self, store: &str, notification_id: &str) -> Result<i64, DbError>;
    fn mark_tracked(&self, row: i64) -> Result<(), DbError>;
    /// Marks a subscription's untracked notifications tracked; returns
    /// their rows in store order (`occurred_at`, then notification id).
    fn adopt_untracked_rows(&self, store: &str, key: &str) -> Result<Vec<i64>, DbError>;
    /// The newest app-user hint among a subscription's notifications.
    fn latest_user_hint(&self, store: &str, key: &str) -> Result<Option<String>, DbError>;
    /// What an event is made from, for a stored notification (`None` when
    /// the row is missing or carries no event).
    fn event_source(&self, row: i64) -> Result<Option<EventSource>, DbError>;
    /// A tracked subscription's applied notifications and fetched
    /// snapshots, in any order (the fold sorts them).
    fn history(&self, store: &str, key: &str) -> Result<Vec<HistoryEntry>, DbError>;

    // ---- subscriptions ----

    /// `None` when the subscription is not tracked; else its app user.
    fn subscription_user(&self, store: &str, key: &str) -> Result<Option<Option<String>>, DbError>;
    fn is_tracked(&self, store: &str, key: &str) -> Result<bool, DbError> {
        Ok(self.subscription_user(store, key)?.is_some())
    }
    /// Starts tracking (no-op when tracked already).
    fn insert_subscription(
        &self,
        store: &str,
        key: &str,
        app_user_id: Option<&str>,
        continues: Option<&str>,
        now_ms: i64,
    ) -> Result<(), DbError>;
    /// Sets the app user (the operator said whose it is).
    fn set_app_user_id(
        &self,
        store: &str,
        key: &str,
        user: &str,
        now_ms: i64,
    ) -> Result<(), DbError>;
    /// Sets the app user only where none is known.
    fn fill_app_user_id(&self, store: &str, key: &str, user: &str) -> Result<(), DbError>;
    /// Records the subscription this one continues, where none is recorded.
    fn set_continues(&self, store: &str, key: &str, old: &str) -> Result<(), DbError>;
    /// Copies the attention flag of the newest notification (in store
    /// order) that carries one.
    fn refresh_attention(&self, store: &str, key: &str) -> Result<(), DbError>;
    /// Sets `state_pending` from whether a state fetch is outstanding.
    fn refresh_state_pending(&self, store: &str, key: &str) -> Result<(), DbError>;
    /// Marks a state fetch outstanding on the subscription.
    fn mark_state_pending(&self, store: &str, key: &str) -> Result<(), DbError>;
    /// Clears the mark after a fetch.
    fn clear_state_pending(&self, store: &str, key: &str, now_ms: i64) -> Result<(), DbError>;
    /// Merges a state over the columns if it is newer (by store time) than
    /// every history entry applied so far (`state_as_of`); returns whether
    /// it was. One statement: the check and the write cannot drift apart.
    fn merge_state(&self, store: &str, key: &str, merge: &StateMerge<'_>) -> Result<bool, DbError>;
    /// Replaces the columns with a refold's result.
    fn write_folded(
        &self,
        store: &str,
        key: &str,
        folded: &Folded,
        now_ms: i64,
    ) -> Result<(), DbError>;
    fn subscription(&self, store: &str, key: &str) -> Result<Option<Subscription>, DbError>;
    /// Counts one more event for the subscription; returns it as events show it.
    fn next_event_sequence(
        &self,
        store: &str,
        key: &str,
    ) -> Result<Option<SubscriptionView>, DbError>;

    // ---- state fetches ----

    fn add_pending_fetch(&self, store: &str, key: &str, since_ms: i64) -> Result<(), DbError>;
    fn clear_pending_fetch(&self, store: &str, key: &str) -> Result<(), DbError>;
    /// Stores a fetched state; returns its row.
    fn insert_snapshot(
        &self,
        store: &str,
        key: &str,
        update: &StateUpdate,
        now_ms: i64,
    ) -> Result<i64, DbError>;
    /// Keeps the acknowledgement queue in step with a fetched state:
    /// pending → queued once; not pending → done, whoever acknowledged it.
    /// An acknowledged purchase stays acknowledged (a lagging read must not
    /// queue it again).
    fn note_acknowledgement_state(
        &self,
        store: &str,
        key: &str,
        update: &StateUpdate,
        now_ms: i64,
    ) -> Result<(), DbError>;

    // ---- per-store counts ----

    fn add_store_stats(&self, store: &str, delta: &StatsDelta) -> Result<(), DbError>;
    /// Writes a batch's counters, in the order [`Tally`]'s iterators give
    /// (a backend may send them all at once, as long as they run in it).
    fn apply_tally(&self, tally: &Tally) -> Result<(), DbError> {
        apply_tally(self, tally)
    }
    /// Adds rejections; the latest reason is the newest by time, whatever
    /// order they are written in.
    fn add_rejections(
        &self,
        store: &str,
        count: u64,
        code: &str,
        message: &str,
        at_ms: i64,
    ) -> Result<(), DbError>;

    // ---- the outbox ----

    fn event_exists(&self, event_id: &str) -> Result<bool, DbError>;
    /// Inserts an event; returns its global sequence (delivery order).
    fn insert_event(&self, event: &NewEvent<'_>) -> Result<i64, DbError>;
    fn insert_delivery(&self, delivery: &NewDelivery<'_>) -> Result<(), DbError>;
}

/// A list's page size: `default` when 0 was asked for, never above `max`.
pub(crate) fn page_size(asked: u32, default: u32, max: u32) -> i64 {
    i64::from(if asked == 0 { default } else { asked.min(max) })
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<String, DbError> {
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
