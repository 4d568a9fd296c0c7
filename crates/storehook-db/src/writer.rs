//! The group-commit writer both backends use: one thread takes every write
//! waiting (up to a batch), runs them in one transaction, each inside a
//! savepoint so one failing write does not undo its neighbours, writes the
//! counters its writes added up (a [`Tally`]) once, commits once, then
//! answers every caller. A durable commit costs a flush;
//! sharing it keeps durability from capping throughput. A caller's future
//! resolves only after its batch committed.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use storehook_core::StateUpdate;

use crate::outbox::OutboxConfig;
use crate::rules::{self, Ledger, Tally};
use crate::{
    CommitObserver, CommitStats, DbError, NewNotification, Recorded, RefusalTally,
    RejectedNotification, Tracked,
};

/// A connection the writer can batch on. `C` is what a write job is given.
pub(crate) trait BatchConnection: Send + 'static {
    /// Begins the batch's transaction.
    fn begin(&mut self) -> Result<(), String>;
    fn savepoint(&mut self) -> Result<(), String>;
    /// Releases the savepoint, or rolls back to it first when the job failed.
    fn end_savepoint(&mut self, keep: bool) -> Result<(), String>;
    fn commit(&mut self) -> Result<(), String>;
    fn rollback(&mut self);
    /// Takes, right after `begin`, the locks of every subscription the
    /// batch writes (`store:key`, sorted): writers of several instances
    /// then always lock in the same order and never deadlock each other.
    /// Nothing to do for a database with one writer.
    fn lock_subscriptions(&mut self, _keys: &[String]) -> Result<(), String> {
        Ok(())
    }
}

/// Told whether the batch committed; answers the caller.
type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;
/// `None` means the batch's transaction could not begin: the job must not
/// write, only hand back its completion.
type Run<C> = Box<dyn FnOnce(Option<&C>, &mut Tally) -> (bool, Completion) + Send>;

struct WriteJob<C> {
    /// The subscriptions this write locks (`store:key`).
    locks: Vec<String>,
    run: Run<C>,
}

/// The handle write calls go through.
pub(crate) struct Writer<C> {
    jobs: mpsc::Sender<WriteJob<C>>,
    stats: Arc<Mutex<CommitStats>>,
    observer: Arc<OnceLock<CommitObserver>>,
}

impl<C: BatchConnection + Ledger> Writer<C> {
    /// Starts the writer thread on `conn`.
    pub fn start(name: &str, conn: C, max_batch: usize) -> Result<Self, DbError> {
        let (jobs, rx) = mpsc::channel::<WriteJob<C>>(max_batch * 4);
        let stats = Arc::new(Mutex::new(CommitStats::default()));
        let observer = Arc::new(OnceLock::new());
        let (thread_stats, thread_observer) = (stats.clone(), observer.clone());
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || run(conn, rx, max_batch, thread_stats, thread_observer))
            .map_err(|e| DbError::Unavailable(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            jobs,
            stats,
            observer,
        })
    }

    /// Runs `f` in the writer's current batch; resolves after the commit.
    pub async fn write<R, F>(&self, f: F) -> Result<R, DbError>
    where
        R: Send + 'static,
        F: FnOnce(&C) -> Result<R, DbError> + Send + 'static,
    {
        self.write_locking(Vec::new(), move |c, _| f(c)).await
    }

    /// `write` of a job that locks these subscriptions (`(store, key)`)
    /// and may add to the batch's counters.
    pub async fn write_locking<R, F>(
        &self,
        subscriptions: Vec<(&str, &str)>,
        f: F,
    ) -> Result<R, DbError>
    where
        R: Send + 'static,
        F: FnOnce(&C, &mut Tally) -> Result<R, DbError> + Send + 'static,
    {
        let locks = subscriptions
            .into_iter()
            .map(|(store, key)| rules::lock_key(store, key))
            .collect();
        let (tx, rx) = oneshot::channel::<Result<R, DbError>>();
        let run: Run<C> = Box::new(move |conn, tally| {
            let result = match conn {
                Some(conn) => f(conn, tally),
                None => Err(DbError::Unavailable("no transaction".into())),
            };
            let ok = result.is_ok();
            let completion: Completion = Box::new(move |commit| {
                let answer = match commit {
                    Ok(()) => result,
                    Err(e) => Err(DbError::Unavailable(e)),
                };
                let _ = tx.send(answer);
            });
            (ok, completion)
        });
        self.jobs
            .send(WriteJob { locks, run })
            .await
            .map_err(|_| DbError::Unavailable("the database writer has stopped".into()))?;
        rx.await
            .map_err(|_| DbError::Unavailable("the database writer dropped a write".into()))?
    }

    pub fn commit_stats(&self) -> CommitStats {
        self.stats.lock().map(|s| *s).unwrap_or_default()
    }

    pub fn observe_commits(&self, observer: CommitObserver) {
        let _ = self.observer.set(observer);
    }
}

/// The notification path's writes, the same for every backend: the
/// shared rules run inside the batch on the backend's [`Ledger`].
impl<C: BatchConnection + Ledger> Writer<C> {
    pub async fn record_notification(
        &self,
        cfg: &Arc<OutboxConfig>,
        new: NewNotification,
    ) -> Result<Recorded, DbError> {
        let cfg = cfg.clone();
        let n = &new.notification;
        let store = n.store.clone();
        let keys: Vec<String> = [&n.subscription_key, &n.continues_subscription_key]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        let locks = keys.iter().map(|k| (store.as_str(), k.as_str())).collect();
        self.write_locking(locks, move |c, t| {
            rules::record_notification(c, &cfg, &new, t)
        })
        .await
    }

    pub async fn record_rejected(
        &self,
        rejected: RejectedNotification,
    ) -> Result<Recorded, DbError> {
        self.write_locking(Vec::new(), move |c, t| {
            rules::record_rejected(c, &rejected, t)
        })
        .await
    }

    pub async fn record_refusals(&self, tallies: Vec<RefusalTally>) -> Result<(), DbError> {
        if tallies.is_empty() {
            return Ok(());
        }
        self.write(move |c| {
            for t in &tallies {
                c.add_rejections(&t.store, t.count, &t.code, &t.message, t.at_ms)?;
            }
            Ok(())
        })
        .await
    }

    pub async fn track(
        &self,
        cfg: &Arc<OutboxConfig>,
        (store, key): (&str, &str),
        app_user_id: Option<&str>,
        now_ms: i64,
    ) -> Result<Tracked, DbError> {
        let (cfg, store, key) = (cfg.clone(), store.to_owned(), key.to_owned());
        let user = app_user_id.map(str::to_owned);
        let locks = vec![(store.as_str(), key.as_str())];
        let job = {
            let (store, key) = (store.clone(), key.clone());
            move |c: &C, _: &mut Tally| rules::track(c, &cfg, &store, &key, user.as_deref(), now_ms)
        };
        self.write_locking(locks, job).await
    }

    pub async fn apply_state_update(
        &self,
        cfg: &Arc<OutboxConfig>,
        (store, key): (&str, &str),
        update: StateUpdate,
        now_ms: i64,
    ) -> Result<(), DbError> {
        let locks = vec![(store, key)];
        let (cfg, store, key) = (cfg.clone(), store.to_owned(), key.to_owned());
        self.write_locking(locks, move |c, tally| {
            rules::apply_state_update(c, &cfg, &store, &key, &update, now_ms, tally)
        })
        .await
    }
}

fn run<C: BatchConnection + Ledger>(
    mut conn: C,
    mut rx: mpsc::Receiver<WriteJob<C>>,
    max_batch: usize,
    stats: Arc<Mutex<CommitStats>>,
    observer: Arc<OnceLock<CommitObserver>>,
) {
    let mut batch: Vec<WriteJob<C>> = Vec::with_capacity(max_batch);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let size = batch.len();
        let mut completions: Vec<Completion> = Vec::with_capacity(size);
        let mut locks: Vec<String> = batch.iter().flat_map(|j| j.locks.clone()).collect();
        locks.sort_unstable();
        locks.dedup();
        let begun = conn.begin().and_then(|()| {
            conn.lock_subscriptions(&locks)
                .inspect_err(|_| conn.rollback())
        });
        if let Err(message) = begun {
            tracing::error!(error = %message, "database write transaction could not start");
            for job in batch.drain(..) {
                let (_, completion) = (job.run)(None, &mut Tally::default());
                completion(Err(message.clone()));
            }
            bump_failed(&stats);
            continue;
        }
        let mut counters = Tally::default();
        for job in batch.drain(..) {
            let savepoint = conn.savepoint();
            let mut tally = Tally::default();
            let (ok, completion) = (job.run)(Some(&conn), &mut tally);
            if savepoint.is_ok() {
                if let Err(e) = conn.end_savepoint(ok) {
                    tracing::error!(error = %e, "savepoint could not be closed");
                }
            }
            // A failed write was rolled back: its counts must not stay.
            if ok {
                counters.merge(tally);
            }
            completions.push(completion);
        }
        let committed = if counters.is_empty() {
            Ok(())
        } else {
            conn.apply_tally(&counters).map_err(|e| e.to_string())
        }
        .and_then(|()| conn.commit());
        if let Err(e) = &committed {
            tracing::error!(error = %e, batch = size, "database commit failed; answering 503");
            conn.rollback();
            bump_failed(&stats);
        } else {
            let took = started.elapsed();
            if let Ok(mut s) = stats.lock() {
                s.commits += 1;
                s.writes += size as u64;
                s.last_batch = size;
                s.last_commit_micros = took.as_micros() as u64;
            }
            if let Some(observe) = observer.get() {
                observe(took, size);
            }
        }
        for completion in completions {
            completion(committed.clone());
        }
    }
}

fn bump_failed(stats: &Arc<Mutex<CommitStats>>) {
    if let Ok(mut s) = stats.lock() {
        s.failed_commits += 1;
    }
}
