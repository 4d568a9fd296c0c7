//! The pull side, host half: connection checks, backfill and catch-up jobs,
//! the acknowledgement queue, and the evidence that a store has gone quiet.
//! The adapters talk to their stores (`StoreAdapter::check_connection`,
//! `backfill_page`, `acknowledge`); everything durable is here and in
//! storage, so a restart resumes where it stopped.

mod acknowledge;
pub(crate) mod api;
mod check;
mod host;
mod jobs;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};

pub(crate) use check::{
    check_json, check_status, running_check, start_check, CheckRun, RunningCheck,
};
pub(crate) use jobs::{cancel_job, create_backfill, job_json, BackfillRequest};

use crate::config::StoreApisConfig;
use crate::AppState;

/// The clock the pull side reads (Unix ms); tests inject one.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Shared state of the pull side.
pub(crate) struct StoreApis {
    pub(crate) config: StoreApisConfig,
    pub(crate) clock: Clock,
    /// The running or last connection check of each store (progress lines
    /// live here; the result is also stored).
    checks: Mutex<HashMap<String, CheckRun>>,
    /// Wakes the job runner when a job is created.
    jobs_wake: Notify,
    /// Jobs whose cancellation was asked while they run.
    cancelled: Mutex<HashSet<i64>>,
    cancel_wake: Notify,
    shutdown: watch::Receiver<bool>,
}

impl StoreApis {
    pub(crate) fn new(
        config: StoreApisConfig,
        clock: Clock,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            config,
            clock,
            checks: Mutex::new(HashMap::new()),
            jobs_wake: Notify::new(),
            cancelled: Mutex::new(HashSet::new()),
            cancel_wake: Notify::new(),
            shutdown,
        }
    }

    pub(crate) fn now_ms(&self) -> i64 {
        (self.clock)()
    }

    fn is_cancelled(&self, job: i64) -> bool {
        self.cancelled
            .lock()
            .map(|c| c.contains(&job))
            .unwrap_or(false)
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Sleeps `duration`, or less when the server stops or `job` is
    /// cancelled; `false` then.
    async fn pause(&self, duration: Duration, job: Option<i64>) -> bool {
        let mut shutdown = self.shutdown.clone();
        if *shutdown.borrow() {
            return false;
        }
        let deadline = tokio::time::Instant::now() + duration;
        loop {
            if job.is_some_and(|id| self.is_cancelled(id)) {
                return false;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return true,
                _ = shutdown.changed() => return false,
                _ = self.cancel_wake.notified() => {}
            }
        }
    }
}

/// Starts the job runner, the catch-up scheduler and the acknowledgement
/// worker. They stop when the server shuts down.
pub(crate) fn spawn(state: Arc<AppState>) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        tokio::spawn(jobs::run(state.clone())),
        tokio::spawn(jobs::schedule_catch_ups(state.clone())),
        tokio::spawn(acknowledge::run(state)),
    ]
}
