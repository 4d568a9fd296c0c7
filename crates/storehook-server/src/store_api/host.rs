//! What an adapter may ask of the host during a check or a backfill.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use storehook_core::{AdapterError, StoreHost, TrackedSubscription};

use crate::AppState;

/// The host, as one store's adapter sees it during one check or job.
pub(super) struct Host {
    pub(super) state: Arc<AppState>,
    pub(super) store: String,
    /// The job this is for (cancellation), if any.
    pub(super) job: Option<i64>,
    /// Progress lines, newest last (a check shows them all; a job keeps the last).
    pub(super) progress: Arc<Mutex<Vec<String>>>,
}

fn storage_error(e: storehook_db::DbError) -> AdapterError {
    AdapterError::unavailable("storage_unavailable", e.to_string())
}

#[storehook_core::async_trait]
impl StoreHost for Host {
    fn notification_url(&self) -> Option<String> {
        let base = self.state.public_url.as_deref()?;
        Some(format!(
            "{}/v1/notifications/{}",
            base.trim_end_matches('/'),
            self.store
        ))
    }

    fn now_ms(&self) -> i64 {
        self.state.store_apis.now_ms()
    }

    async fn has_notification(&self, notification_id: &str) -> Result<bool, AdapterError> {
        self.state
            .storage
            .notification_exists(&self.store, notification_id)
            .await
            .map_err(storage_error)
    }

    async fn tracked_subscriptions(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TrackedSubscription>, AdapterError> {
        self.state
            .storage
            .tracked_subscriptions(&self.store, after, limit.min(1000))
            .await
            .map_err(storage_error)
    }

    fn progress(&self, line: &str) {
        tracing::info!(store = %self.store, job = self.job, "{line}");
        if let Ok(mut lines) = self.progress.lock() {
            // A check shows every line; bounded all the same.
            if lines.len() < 200 {
                lines.push(line.to_owned());
            }
        }
    }

    async fn pause(&self, duration: Duration) -> bool {
        self.state.store_apis.pause(duration, self.job).await
    }
}
