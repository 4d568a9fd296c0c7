//! Background state fetches: some stores send a thin signal and expect the
//! server to fetch the full state. The notification is committed and
//! acknowledged first; the fetch runs here and is retried with backoff,
//! across restarts (pending fetches are stored), until it succeeds. With
//! several instances on one database, a fetch is claimed by one of them.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use storehook_core::{AdapterError, PurchaseRef};

use crate::{now_ms, AppState};

pub(crate) struct StateFetcher {
    in_flight: Mutex<HashSet<(String, String)>>,
    permits: Arc<tokio::sync::Semaphore>,
}

impl StateFetcher {
    pub(crate) fn new() -> Self {
        Self {
            in_flight: Mutex::new(HashSet::new()),
            permits: Arc::new(tokio::sync::Semaphore::new(4)),
        }
    }
}

/// Re-schedules the fetches a previous run left pending.
pub(crate) async fn resume_pending(state: Arc<AppState>) {
    match state.storage.pending_state_fetches().await {
        Ok(pending) => {
            for p in pending {
                let purchase = p.purchase();
                schedule(state.clone(), p.store, purchase);
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot list pending state fetches"),
    }
}

/// Fetches one subscription's state in the background, retrying until done.
pub(crate) fn schedule(state: Arc<AppState>, store: String, purchase: PurchaseRef) {
    let key = purchase.key.clone();
    let Some(adapter) = state.registry.get(&store).and_then(|e| e.adapter.clone()) else {
        return;
    };
    {
        let Ok(mut in_flight) = state.fetcher.in_flight.lock() else {
            return;
        };
        if !in_flight.insert((store.clone(), key.clone())) {
            return;
        }
    }
    tokio::spawn(async move {
        let mut delay = Duration::from_secs(1);
        // A store that is down is retried until it answers; an answer that
        // says "no" (token unknown, credentials refused) is retried a few
        // times only, then left pending (and logged) until the next restart.
        let mut refusals_left = 3u32;
        loop {
            // Claimed before every attempt: of several instances (all
            // resuming the same pending fetches at start-up, or each told
            // by a notification) only one reads the store's API; and a
            // fetch applied meanwhile is not pending any more.
            match state
                .storage
                .claim_state_fetch(&store, &key, now_ms())
                .await
            {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(store, error = %e, retry_in_s = delay.as_secs(), "cannot claim a state fetch; will retry");
                    back_off(&mut delay).await;
                    continue;
                }
            }
            let permit = state.fetcher.permits.clone().acquire_owned().await;
            let fetched = adapter.fetch_state(purchase.subscription_ref()).await;
            drop(permit);
            let outcome = match fetched {
                Ok(update) => {
                    let update = update.unwrap_or_else(|| storehook_core::StateUpdate {
                        as_of_ms: now_ms(),
                        ..Default::default()
                    });
                    state
                        .storage
                        .apply_state_update(&store, &key, update, now_ms())
                        .await
                        .map_err(|e| (true, e.to_string()))
                }
                Err(e) => Err((
                    matches!(e, AdapterError::Unavailable { .. }),
                    format!("{}: {}", e.code(), e.message()),
                )),
            };
            match outcome {
                Ok(()) => {
                    tracing::info!(store, "subscription state fetched");
                    break;
                }
                Err((transient, error)) => {
                    if !transient {
                        refusals_left = refusals_left.saturating_sub(1);
                        if refusals_left == 0 {
                            tracing::error!(store, %error, "state fetch refused by the store; giving up until restart");
                            break;
                        }
                    }
                    tracing::warn!(store, %error, retry_in_s = delay.as_secs(), "state fetch failed; will retry");
                    back_off(&mut delay).await;
                }
            }
        }
        if let Ok(mut in_flight) = state.fetcher.in_flight.lock() {
            in_flight.remove(&(store, key));
        }
    });
}

/// Waits `delay`, then doubles it (up to ten minutes) for the next time.
async fn back_off(delay: &mut Duration) {
    tokio::time::sleep(*delay).await;
    *delay = (*delay * 2).min(Duration::from_secs(600));
}
