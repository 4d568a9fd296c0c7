//! SQL text that is the same in both backends' dialects, written once.
//! Only what is identical to the letter lives here (no placeholders, no
//! casts, no dialect functions); everything else stays in `sqlite/` and
//! `postgres/`.

/// SQL for the newest non-null `column` that a notification of the purchase
/// (`store`, `key`: SQL expressions) said: what the store said last of it.
pub(crate) fn newest_said(column: &str, store: &str, key: &str) -> String {
    format!(
        "(SELECT n.{column} FROM notifications n
           WHERE n.store = {store} AND n.subscription_key = {key} AND n.{column} IS NOT NULL
           ORDER BY n.occurred_at DESC, n.id DESC LIMIT 1)"
    )
}

/// The outstanding state fetches, oldest first, in the columns of
/// [`crate::records::pending_fetch`]. The app, product and kind come from
/// the subscription's newest notifications: what the store said last about
/// it.
pub(crate) fn pending_state_fetches() -> String {
    let said = |column| newest_said(column, "p.store", "p.subscription_key");
    format!(
        "SELECT p.store, p.subscription_key, {}, {}, {}
           FROM pending_state_fetches p ORDER BY p.since",
        said("app_id"),
        said("product_id"),
        said("purchase_kind"),
    )
}

/// Acknowledgements per store, in the columns of [`crate::records::ack_stats`].
pub(crate) const ACKNOWLEDGEMENT_STATS: &str = "SELECT store,
        count(*) FILTER (WHERE status = 'pending'),
        count(*) FILTER (WHERE status = 'pending' AND flagged),
        count(*) FILTER (WHERE status = 'acknowledged')
   FROM acknowledgements GROUP BY store ORDER BY store";

/// When the next pending acknowledgement falls due.
pub(crate) const NEXT_ACKNOWLEDGEMENT_DUE: &str =
    "SELECT min(next_attempt_at) FROM acknowledgements WHERE status = 'pending'";

/// Every store's latest connection check, in the columns of
/// [`crate::records::check`].
pub(crate) const CHECKS: &str =
    "SELECT store, checked_at, report_json FROM store_checks ORDER BY store";

/// A subscription's notifications with those of the subscriptions it
/// continues (a store's renamed purchases), at most 32 back, newest first,
/// in the columns of [`crate::records::notification`]. The arguments are
/// the dialect's placeholders for the store, the key (typed where the
/// dialect wants it) and the limit.
pub(crate) fn chain_notifications(store: &str, key: &str, limit: &str) -> String {
    let columns = crate::records::NOTIFICATION_COLUMNS;
    format!(
        "WITH RECURSIVE chain (key, depth) AS (
             SELECT {key}, 1
             UNION
             SELECT s.continues_key, chain.depth + 1 FROM subscriptions s
               JOIN chain ON s.store = {store} AND s.subscription_key = chain.key
              WHERE s.continues_key IS NOT NULL AND chain.depth < 32)
         SELECT {columns} FROM notifications
         WHERE store = {store} AND subscription_key IN (SELECT key FROM chain)
         ORDER BY occurred_at DESC, id DESC LIMIT {limit}"
    )
}

/// A subscription's chart facts, in the columns of
/// [`crate::rules::ChartFactColumns`]: its stored notifications of the
/// types that can shape a period (the others change nothing, see
/// [`crate::rules::shapes_periods`], so they are neither read nor parsed),
/// then its fetched states (a fetch tells the expiry and price that some
/// stores' notifications leave out). `store`, `key`: the dialect's
/// placeholders.
pub(crate) fn chart_facts(store: &str, key: &str) -> String {
    let shaping: Vec<String> = storehook_core::EventType::ALL
        .into_iter()
        .filter(|e| crate::rules::shapes_periods(*e))
        .map(|e| format!("'{}'", e.as_str()))
        .collect();
    let shaping = shaping.join(", ");
    format!(
        "SELECT notification_id, occurred_at, event_type, environment, app_id, product_id,
                state_json, details_json, FALSE
           FROM notifications
          WHERE store = {store} AND subscription_key = {key} AND verdict <> 'rejected'
            AND event_type IN ({shaping})
         UNION ALL
         SELECT 'fetch:' || id, as_of, NULL, NULL, NULL, NULL, state_json, details_json, TRUE
           FROM state_snapshots
          WHERE store = {store} AND subscription_key = {key}"
    )
}
