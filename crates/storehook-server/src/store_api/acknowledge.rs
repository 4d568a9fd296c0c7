//! The acknowledgement queue's worker, and the pull side's periodic
//! bookkeeping: purchases left unacknowledged are flagged well before the
//! store refunds them, and per-store figures go to `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use storehook_db::{AckAttempt, DueAcknowledgement};

use crate::metrics::StoreApiSnapshot;
use crate::AppState;

/// How often the queue is looked at when nothing is due sooner.
const TICK: Duration = Duration::from_secs(30);
/// Backoff after a failed attempt: 30 s, doubling, at most an hour.
const FIRST_RETRY_MS: i64 = 30_000;
const LAST_RETRY_MS: i64 = 3_600_000;

pub(super) const UNACKNOWLEDGED_ATTENTION: &str = "This purchase is still not acknowledged, long after it was made: the store refunds purchases left unacknowledged (3 days after purchase). Check the store's API credentials and the acknowledgement queue on the dashboard.";

pub(super) async fn run(state: Arc<AppState>) {
    let apis = &state.store_apis;
    let tick = apis.config.queue_tick.unwrap_or(TICK);
    loop {
        acknowledge_due(&state).await;
        bookkeeping(&state).await;
        if !apis.pause(tick, None).await {
            return;
        }
    }
}

async fn acknowledge_due(state: &Arc<AppState>) {
    let now = state.store_apis.now_ms();
    let due = match state.storage.due_acknowledgements(now, 50).await {
        Ok(due) => due,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the acknowledgement queue");
            return;
        }
    };
    for item in due {
        let Some(adapter) = state
            .registry
            .get(&item.store)
            .filter(|e| e.enabled)
            .and_then(|e| e.adapter.clone())
            .filter(|a| a.api_capabilities().acknowledge)
        else {
            // Not ours to acknowledge (the app does it): only watched.
            continue;
        };
        // Several instances on one database: one of them acknowledges it.
        match state
            .storage
            .claim_acknowledgement(&item.store, &item.subscription_id, now)
            .await
        {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim an acknowledgement");
                continue;
            }
        }
        let result = adapter.acknowledge(item.purchase()).await;
        let attempt = match result {
            Ok(outcome) => {
                tracing::info!(store = %item.store, ?outcome, "purchase acknowledgement finished");
                AckAttempt::Finished(outcome)
            }
            Err(e) => {
                let at_ms = retry_at(state.store_apis.now_ms(), &item, &e);
                tracing::warn!(store = %item.store, error = %e.message(), retry_in_s = (at_ms - now) / 1000, "acknowledgement failed; will retry");
                AckAttempt::Retry {
                    at_ms,
                    error: format!("{}: {}", e.code(), e.message()),
                }
            }
        };
        if let Err(e) = state
            .storage
            .record_acknowledgement(
                &item.store,
                &item.subscription_id,
                attempt,
                state.store_apis.now_ms(),
            )
            .await
        {
            tracing::warn!(error = %e, "cannot record an acknowledgement attempt");
        }
    }
}

/// When to try again: the store's own hint for a rate limit, else backoff.
fn retry_at(now: i64, item: &DueAcknowledgement, error: &storehook_core::AdapterError) -> i64 {
    if let storehook_core::AdapterError::RateLimited {
        retry_at_ms: Some(at),
        ..
    } = error
    {
        return (*at).clamp(now + 1_000, now + LAST_RETRY_MS);
    }
    let shift = item.attempts.clamp(0, 16) as u32;
    now + FIRST_RETRY_MS.saturating_mul(1 << shift).min(LAST_RETRY_MS)
}

/// Flags overdue acknowledgements and refreshes the per-store gauges.
async fn bookkeeping(state: &Arc<AppState>) {
    let apis = &state.store_apis;
    let now = apis.now_ms();
    let warn_before = now - (apis.config.unacknowledged_warning_hours as i64) * 3_600_000;
    match state.storage.flag_unacknowledged(warn_before, UNACKNOWLEDGED_ATTENTION).await {
        Ok(0) => {}
        Ok(n) => tracing::error!(count = n, "purchases still unacknowledged past the warning threshold; the store refunds them at 3 days"),
        Err(e) => tracing::warn!(error = %e, "cannot flag unacknowledged purchases"),
    }
    let due_before = now - (apis.config.overdue_after_minutes as i64) * 60_000;
    let (Ok(stats), Ok(overdue), Ok(acks)) = (
        state.storage.store_stats().await,
        state.storage.overdue_subscriptions(due_before).await,
        state.storage.acknowledgement_stats().await,
    ) else {
        return;
    };
    for entry in state.registry.iter().filter(|e| e.enabled) {
        let id = entry.registration.id;
        let s = stats.iter().find(|s| s.store == id);
        let a = acks.iter().find(|a| a.store == id);
        state.metrics.set_store_api_snapshot(
            id,
            StoreApiSnapshot {
                last_received_ms: s.and_then(|s| s.last_received_ms),
                overdue: overdue
                    .iter()
                    .find(|o| o.store == id)
                    .map_or(0, |o| o.count),
                unacknowledged: a.map_or(0, |a| a.pending),
                unacknowledged_overdue: a.map_or(0, |a| a.overdue),
                recovered: s.map_or(0, |s| s.recovered),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_and_honour_the_store() {
        let item = |attempts| DueAcknowledgement {
            store: "s".into(),
            subscription_id: "k".into(),
            app_id: None,
            product_id: None,
            kind: None,
            attempts,
        };
        let busy = storehook_core::AdapterError::unavailable("busy", "409");
        assert_eq!(retry_at(0, &item(0), &busy), 30_000);
        assert_eq!(retry_at(0, &item(3), &busy), 240_000);
        assert_eq!(retry_at(0, &item(40), &busy), LAST_RETRY_MS);
        let limited = storehook_core::AdapterError::RateLimited {
            code: "rate".into(),
            message: "slow".into(),
            retry_at_ms: Some(5_000),
        };
        assert_eq!(retry_at(0, &item(0), &limited), 5_000);
    }
}
