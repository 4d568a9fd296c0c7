//! Refused requests, counted in memory and written in one transaction every
//! few seconds.
//!
//! A refusal (a forged signature, a malformed body…) is usually anonymous
//! traffic: committing each one would let anyone make the server fsync at
//! will, and logging each one would let them fill the disk. So refusals are
//! tallied per store here, merged into the store's status whenever it is
//! read (so the counts shown are exact at once), flushed periodically and
//! at shutdown; logging is aggregated the same way: the first refusal of
//! each code per interval gets a line, the rest a summary at the flush.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use storehook_db::{RefusalTally, Storage, StoreStats};

/// How often the tallies are written.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Pending {
    tallies: BTreeMap<String, RefusalTally>,
    /// (store, code) already logged in this interval.
    logged: HashSet<(String, String)>,
    /// Refusals not logged individually in this interval, per store.
    unlogged: BTreeMap<String, u64>,
}

#[derive(Default)]
pub struct Refusals {
    pending: Mutex<Pending>,
    /// Held for writing by a flush from taking the tallies out until they
    /// are committed, and for reading by [`Refusals::stats`] across the
    /// storage read and the merge: without it a read in between would see
    /// the counts neither in memory nor in the database.
    flushing: tokio::sync::RwLock<()>,
}

impl Refusals {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one refusal. Returns whether it should be logged on its own
    /// (the first of its store and code in this interval).
    pub fn record(&self, store: &str, code: &str, message: &str, at_ms: i64) -> bool {
        let mut p = self.lock();
        let tally = p
            .tallies
            .entry(store.to_owned())
            .or_insert_with(|| RefusalTally {
                store: store.to_owned(),
                count: 0,
                code: String::new(),
                message: String::new(),
                at_ms: 0,
            });
        tally.count += 1;
        if at_ms >= tally.at_ms {
            tally.at_ms = at_ms;
            code.clone_into(&mut tally.code);
            message.clone_into(&mut tally.message);
        }
        let first = p.logged.insert((store.to_owned(), code.to_owned()));
        if !first {
            *p.unlogged.entry(store.to_owned()).or_default() += 1;
        }
        first
    }

    /// The stored statistics with the refusals not yet written added in,
    /// never between a flush's taking and its commit.
    pub async fn stats(
        &self,
        storage: &dyn Storage,
    ) -> Result<Vec<StoreStats>, storehook_db::DbError> {
        let _no_flush_half_done = self.flushing.read().await;
        let mut stats = storage.store_stats().await?;
        self.merge_into(&mut stats);
        Ok(stats)
    }

    fn merge_into(&self, stats: &mut Vec<StoreStats>) {
        let p = self.lock();
        for tally in p.tallies.values() {
            let s = match stats.iter_mut().find(|s| s.store == tally.store) {
                Some(s) => s,
                None => {
                    stats.push(StoreStats {
                        store: tally.store.clone(),
                        ..StoreStats::default()
                    });
                    let last = stats.len() - 1;
                    &mut stats[last]
                }
            };
            s.rejected += tally.count as i64;
            if s.last_rejected_ms.is_none_or(|t| tally.at_ms >= t) {
                s.last_rejected_ms = Some(tally.at_ms);
                s.last_rejection_reason = Some(tally.code.clone());
                s.last_rejection_message = Some(tally.message.clone());
            }
        }
    }

    /// Writes what has been counted; on failure the counts go back, to be
    /// written with the next flush.
    pub async fn flush(&self, storage: &dyn Storage) {
        let _one_at_a_time = self.flushing.write().await;
        let (tallies, unlogged) = {
            let mut p = self.lock();
            p.logged.clear();
            (
                std::mem::take(&mut p.tallies),
                std::mem::take(&mut p.unlogged),
            )
        };
        for (store, n) in &unlogged {
            tracing::info!(
                store,
                refused = n,
                "more notifications refused in the last few seconds (each first reason was logged)"
            );
        }
        if tallies.is_empty() {
            return;
        }
        let list: Vec<RefusalTally> = tallies.values().cloned().collect();
        if let Err(e) = storage.record_refusals(list).await {
            tracing::error!(error = %e, "cannot record refused requests; will retry");
            let mut p = self.lock();
            for (store, old) in tallies {
                match p.tallies.get_mut(&store) {
                    Some(newer) => {
                        newer.count += old.count;
                        if old.at_ms > newer.at_ms {
                            newer.at_ms = old.at_ms;
                            newer.code = old.code;
                            newer.message = old.message;
                        }
                    }
                    None => {
                        p.tallies.insert(store, old);
                    }
                }
            }
        }
    }
}

/// Flushes every [`FLUSH_INTERVAL`] until `shutdown` fires, then once more.
pub fn spawn_flusher(
    refusals: Arc<Refusals>,
    storage: Arc<dyn Storage>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(FLUSH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => refusals.flush(storage.as_ref()).await,
                _ = shutdown.changed() => break,
            }
        }
        refusals.flush(storage.as_ref()).await;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_merge_into_stored_stats_and_keep_the_latest_reason() {
        let r = Refusals::default();
        assert!(r.record("acme", "bad_signature", "first", 10));
        assert!(!r.record("acme", "bad_signature", "second", 30));
        assert!(r.record("acme", "bad_json", "older", 20));
        let mut stats = vec![StoreStats {
            store: "acme".into(),
            rejected: 4,
            last_rejected_ms: Some(5),
            ..StoreStats::default()
        }];
        r.merge_into(&mut stats);
        assert_eq!(stats[0].rejected, 7);
        assert_eq!(stats[0].last_rejected_ms, Some(30));
        assert_eq!(stats[0].last_rejection_message.as_deref(), Some("second"));
    }

    /// Every read during flushes sees each refusal exactly once: neither
    /// lost between the taking and the commit nor counted twice after it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_during_flushes_count_each_refusal_once() {
        let dir = tempfile::tempdir().unwrap();
        let url = storehook_db::DatabaseUrl::sqlite(std::path::Path::new("t.sqlite3"), dir.path());
        let storage = storehook_db::open(storehook_db::DatabaseOptions::new(url))
            .await
            .unwrap();
        let refusals = Arc::new(Refusals::default());
        let mut recorded = 0i64;
        for round in 0..40 {
            refusals.record("acme", "bad_signature", "m", round);
            recorded += 1;
            let (r, s) = (refusals.clone(), storage.clone());
            let flush = tokio::spawn(async move { r.flush(s.as_ref()).await });
            while !flush.is_finished() {
                let seen = refusals.stats(storage.as_ref()).await.unwrap();
                let rejected: i64 = seen.iter().map(|s| s.rejected).sum();
                assert_eq!(rejected, recorded, "round {round}");
            }
            flush.await.unwrap();
        }
        let seen = refusals.stats(storage.as_ref()).await.unwrap();
        assert_eq!(seen.iter().map(|s| s.rejected).sum::<i64>(), recorded);
    }
}
