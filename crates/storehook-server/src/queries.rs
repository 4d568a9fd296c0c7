//! The reads that the JSON API and the dashboard share. Each view of the
//! data is put together once, here, and both surfaces only format it: a
//! page and its API cannot disagree about what a store's status or an
//! endpoint's counts are.

use storehook_core::{ApiCapabilities, StoreRegistration};
use storehook_db::{
    AckStats, DeliveryRecord, EndpointStats, Job, NotificationFilter, Overdue, StoreStats,
    StoredCheck, StoredNotification, Subscription,
};

use crate::charts::ChartAnswer;
use crate::delivery::Endpoint;
use crate::error::ApiError;
use crate::AppState;

/// One registered store with its statistics (zero for one that has none).
pub(crate) struct StoreOverview {
    pub registration: &'static StoreRegistration,
    pub enabled: bool,
    pub stats: StoreStats,
    /// What the store's API credentials allow (nothing without them).
    pub capabilities: ApiCapabilities,
    pub last_check: Option<StoredCheck>,
    /// Tracked subscriptions due with no notification since.
    pub overdue: Option<Overdue>,
    /// Enough overdue subscriptions to say the store has gone quiet.
    pub stale: bool,
    pub acknowledgements: Option<AckStats>,
    pub latest_job: Option<Job>,
    /// A connection check running now, with its progress so far.
    pub running_check: Option<crate::store_api::RunningCheck>,
}

/// Every registered store, by id, with its statistics: stored ones merged
/// with the refusals tallied in memory and not yet flushed. `GET /v1/stores`
/// and the dashboard's cards.
pub(crate) async fn store_overview(state: &AppState) -> Result<Vec<StoreOverview>, ApiError> {
    let stats = state.refusals.stats(state.storage.as_ref()).await?;
    let checks = state.storage.checks().await?;
    let apis = &state.store_apis;
    let due_before = apis.now_ms() - (apis.config.overdue_after_minutes as i64) * 60_000;
    let overdue = state.storage.overdue_subscriptions(due_before).await?;
    let acks = state.storage.acknowledgement_stats().await?;
    let jobs = state.storage.jobs(None, 50).await?;
    Ok(state
        .registry
        .iter()
        .map(|entry| {
            let id = entry.registration.id;
            let overdue = overdue.iter().find(|o| o.store == id).cloned();
            StoreOverview {
                registration: entry.registration,
                enabled: entry.enabled,
                stats: stats
                    .iter()
                    .find(|s| s.store == id)
                    .cloned()
                    .unwrap_or_default(),
                capabilities: entry
                    .adapter
                    .as_ref()
                    .filter(|_| entry.enabled)
                    .map(|a| a.api_capabilities())
                    .unwrap_or_default(),
                last_check: checks.iter().find(|c| c.store == id).cloned(),
                stale: overdue
                    .as_ref()
                    .is_some_and(|o| o.count as u64 >= apis.config.stale_threshold.max(1)),
                overdue,
                acknowledgements: acks.iter().find(|a| a.store == id).cloned(),
                latest_job: jobs.iter().find(|j| j.store == id).cloned(),
                running_check: crate::store_api::running_check(state, id),
            }
        })
        .collect())
}

/// Every configured endpoint (webhook or forward) by name, with its
/// delivery counts (zero for one that has none yet). `GET /v1/webhooks` and
/// the dashboard's endpoint list.
pub(crate) async fn endpoints_with_stats(
    state: &AppState,
) -> Result<Vec<(&Endpoint, EndpointStats)>, ApiError> {
    let stats = state.storage.endpoint_stats().await?;
    let mut endpoints: Vec<_> = state
        .delivery
        .endpoints()
        .map(|ep| {
            let s = stats
                .iter()
                .find(|s| s.endpoint == ep.name)
                .cloned()
                .unwrap_or_default();
            (ep, s)
        })
        .collect();
    endpoints.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    Ok(endpoints)
}

/// One endpoint's deliveries, newest first, optionally of one status.
pub(crate) async fn deliveries(
    state: &AppState,
    endpoint: &str,
    status: Option<&str>,
    limit: u32,
) -> Result<Vec<DeliveryRecord>, ApiError> {
    Ok(state.storage.deliveries(endpoint, status, limit).await?)
}

/// The newest notifications of every store.
pub(crate) async fn recent_notifications(
    state: &AppState,
    limit: u32,
) -> Result<Vec<StoredNotification>, ApiError> {
    Ok(state
        .storage
        .recent_notifications(NotificationFilter {
            store: None,
            before_id: None,
            limit,
        })
        .await?)
}

/// One tracked subscription.
pub(crate) async fn subscription(
    state: &AppState,
    store: &str,
    subscription_id: &str,
) -> Result<Option<Subscription>, ApiError> {
    Ok(state.storage.subscription(store, subscription_id).await?)
}

/// A subscription's notifications (and those of the one it continues),
/// newest first.
pub(crate) async fn subscription_history(
    state: &AppState,
    store: &str,
    subscription_id: &str,
    limit: u32,
) -> Result<Vec<StoredNotification>, ApiError> {
    Ok(state
        .storage
        .subscription_notifications(store, subscription_id, limit)
        .await?)
}

/// The subscriptions of one app user id, every store.
pub(crate) async fn subscriptions_of_user(
    state: &AppState,
    app_user_id: &str,
) -> Result<Vec<Subscription>, ApiError> {
    Ok(state.storage.subscriptions_of_user(app_user_id).await?)
}

/// The registered stores one can look a subscription up in (the supported ones).
pub(crate) fn lookup_stores(state: &AppState) -> Vec<&'static StoreRegistration> {
    state
        .registry
        .iter()
        .map(|e| e.registration)
        .filter(|r| r.supported)
        .collect()
}

/// Subscriptions whose id is `q` (in `store`, or in every supported store),
/// then those whose app user id is `q`, each once.
pub(crate) async fn find_subscriptions(
    state: &AppState,
    store: Option<&str>,
    q: &str,
) -> Result<Vec<Subscription>, ApiError> {
    let mut found: Vec<Subscription> = Vec::new();
    let candidates: Vec<&str> = match store {
        Some(s) => vec![s],
        None => lookup_stores(state).into_iter().map(|r| r.id).collect(),
    };
    for s in candidates {
        if let Some(sub) = subscription(state, s, q).await? {
            found.push(sub);
        }
    }
    for sub in subscriptions_of_user(state, q).await? {
        let same =
            |f: &Subscription| f.store == sub.store && f.subscription_id == sub.subscription_id;
        let in_store = store.is_none() || store == Some(sub.store.as_str());
        if in_store && !found.iter().any(same) {
            found.push(sub);
        }
    }
    Ok(found)
}

/// One notification with its decoded payload (unmasked: the caller masks).
pub(crate) async fn notification_decoded(
    state: &AppState,
    id: i64,
) -> Result<Option<(StoredNotification, serde_json::Value)>, ApiError> {
    Ok(state.storage.notification_decoded(id).await?)
}

/// One chart, with the operator's converted total when `[charts] rates`
/// has any (`GET /v1/charts/{metric}`, the Charts page, the store cards).
pub(crate) async fn chart(
    state: &AppState,
    query: storehook_db::ChartQuery,
) -> Result<ChartAnswer, ApiError> {
    let chart = state.storage.chart(query.clone()).await?;
    Ok(ChartAnswer::new(chart, query, state.chart_rates.as_ref()))
}
