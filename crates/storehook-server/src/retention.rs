//! `[retention]`: prunes raw bodies and delivered outbox rows in small
//! batches in the background, gives the space back to the file system, and
//! keeps the database size current for `/metrics` and the dashboard.

use std::sync::Arc;
use std::time::Duration;

use storehook_db::{PruneBatch, PruneReport, Storage};
use tokio::sync::watch;

use crate::config::RetentionConfig;
use crate::metrics::Metrics;

const DAY_MS: i64 = 86_400_000;
/// The first run waits a little, so that a start is not slowed by it.
const FIRST_RUN_AFTER: Duration = Duration::from_secs(60);
/// Between two batches: notifications waiting for the writer go first.
const PAUSE_BETWEEN_BATCHES: Duration = Duration::from_millis(20);
/// Free pages given back per transaction.
const RECLAIM_PAGES: u32 = 2_000;
/// How often the size is measured between pruning runs.
const SIZE_EVERY: Duration = Duration::from_secs(60);

/// The cutoffs for a run at `now_ms` (`None`: that kind is kept forever).
pub fn batch_at(config: &RetentionConfig, now_ms: i64) -> PruneBatch {
    let cutoff = |days: u32| (days > 0).then(|| now_ms - i64::from(days) * DAY_MS);
    PruneBatch {
        raw_body_before_ms: cutoff(config.raw_body_days),
        deliveries_before_ms: cutoff(config.deliveries_days),
        limit: config.batch_rows.max(1),
    }
}

/// One whole pruning run: batches until none is full, then the space back.
pub async fn run_once(
    storage: &dyn Storage,
    config: &RetentionConfig,
    metrics: &Metrics,
    now_ms: i64,
) -> Result<PruneReport, storehook_db::DbError> {
    let batch = batch_at(config, now_ms);
    let mut total = PruneReport::default();
    if batch.raw_body_before_ms.is_none() && batch.deliveries_before_ms.is_none() {
        return Ok(total);
    }
    loop {
        let report = storage.prune(batch).await?;
        metrics.pruned(report);
        total.raw_bodies += report.raw_bodies;
        total.deliveries += report.deliveries;
        total.attempts += report.attempts;
        let limit = u64::from(batch.limit);
        if report.raw_bodies < limit && report.deliveries < limit {
            break;
        }
        tokio::time::sleep(PAUSE_BETWEEN_BATCHES).await;
    }
    if total != PruneReport::default() {
        while storage.reclaim_space(RECLAIM_PAGES).await? > 0 {
            tokio::time::sleep(PAUSE_BETWEEN_BATCHES).await;
        }
        tracing::info!(
            raw_bodies = total.raw_bodies,
            deliveries = total.deliveries,
            attempts = total.attempts,
            "retention: pruned"
        );
    }
    Ok(total)
}

/// Prunes every `prune_interval_seconds` (first after a minute) and
/// measures the size every minute, until `shutdown`.
pub fn spawn(
    storage: Arc<dyn Storage>,
    config: RetentionConfig,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let interval = Duration::from_secs(config.prune_interval_seconds.max(1));
        let first = FIRST_RUN_AFTER.min(interval);
        let mut next_prune = tokio::time::Instant::now() + first;
        let mut size_tick = tokio::time::interval(SIZE_EVERY.min(interval));
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = size_tick.tick() => {}
                _ = tokio::time::sleep_until(next_prune) => {
                    if let Err(e) = run_once(storage.as_ref(), &config, &metrics, crate::now_ms()).await {
                        tracing::warn!(error = %e, "retention: pruning failed; retried at the next run");
                    }
                    next_prune = tokio::time::Instant::now() + interval;
                }
            }
            if let Ok(size) = storage.database_size().await {
                metrics.set_database_size(size);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_days_keep_forever() {
        let mut c = RetentionConfig::default();
        let b = batch_at(&c, 100 * DAY_MS);
        assert_eq!(b.raw_body_before_ms, Some(70 * DAY_MS));
        assert_eq!(b.deliveries_before_ms, Some(70 * DAY_MS));
        c.raw_body_days = 0;
        c.deliveries_days = 0;
        let b = batch_at(&c, 100 * DAY_MS);
        assert_eq!((b.raw_body_before_ms, b.deliveries_before_ms), (None, None));
    }
}
