//! storehook's storage. The only crate that speaks SQL.
//!
//! The host talks to storage through the [`Storage`] trait alone, so that a
//! PostgreSQL backend (several instances behind a load balancer) can sit
//! beside [`SqliteStorage`] later without touching the server.
//!
//! Every write goes through one writer thread that batches concurrent
//! requests into one transaction (group commit): with `synchronous=FULL`
//! each commit costs an fsync, and sharing it keeps durability from capping
//! throughput. A caller's future resolves only after its batch committed.

// Production code never unwraps: a panic on a request path is a dropped
// notification. Tests may (they are meant to stop at the first surprise).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod charts;
mod migrate;
mod open;
mod outbox;
mod postgres;
mod records;
mod rules;
mod sql_common;
mod sqlite;
mod store_api;
mod writer;

use serde::Serialize;
use storehook_core::{
    Environment, EventType, ImpliedState, StateUpdate, TrackedSubscription, VerifiedNotification,
};

pub use charts::{Chart, ChartBucket, ChartMetric, ChartQuery, ChartSeries, ChartUnit};
pub use migrate::{copy_sqlite_to_postgres, MigrateReport, TableSum};
pub use open::{open, DatabaseOptions, DatabaseUrl, DEFAULT_POSTGRES_WRITERS};
pub use outbox::{
    AttemptOutcome, AttemptResult, DeliveryRecord, DueDelivery, EndpointStats, EventFilter,
    EventRecord, EventRoute, ForwardRoute, OutboxConfig,
};
pub use postgres::MAX_WRITERS as MAX_POSTGRES_WRITERS;
pub use sqlite::{
    backup, integrity_check, restore, BackupReport, RestoreReport, SqliteOptions, SqliteStorage,
    Synchronous,
};
pub use store_api::{
    AckAttempt, AckStats, DueAcknowledgement, Job, JobKind, JobStatus, JobStep, NewJob, Overdue,
    Source, StoredCheck,
};

/// Storage failed. The host answers 503 so the store retries.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A statement failed (the backend's own words).
    #[error("database error: {0}")]
    Backend(String),
    #[error("database is unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// `[database]` names something that cannot be opened as asked.
    #[error("{0}")]
    Config(String),
}

/// What became of a notification handed to storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Stored and applied to a tracked subscription (or a store's test).
    Tracked,
    /// Stored; its subscription is not tracked (yet).
    Untracked,
    /// Already stored earlier (a store retry): nothing changed.
    Duplicate,
    /// Authenticated but unusable; stored as rejected.
    Rejected,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Tracked => "tracked",
            Verdict::Untracked => "untracked",
            Verdict::Duplicate => "duplicate",
            Verdict::Rejected => "rejected",
        }
    }
}

/// A notification to store, with what the host knows beside the adapter's output.
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub notification: VerifiedNotification,
    pub raw_body: Vec<u8>,
    pub received_at_ms: i64,
    /// Start tracking a subscription by itself when this notification starts a purchase.
    pub auto_track: bool,
    /// The store's request headers, kept for raw forwards (`[[forward]]`).
    pub forward_headers: Vec<(String, String)>,
    /// Pushed by the store, or recovered by a backfill (which does not
    /// count as "last received": it proves the API works, not the push).
    pub source: Source,
}

/// An authenticated request whose content was unusable (acknowledged, stored as rejected).
#[derive(Debug, Clone)]
pub struct RejectedNotification {
    pub store: String,
    pub notification_id: String,
    pub code: String,
    pub message: String,
    pub raw_body: Vec<u8>,
    pub received_at_ms: i64,
}

/// The outcome of storing one notification.
/// A state fetch still outstanding (resumed at start-up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingFetch {
    pub store: String,
    pub subscription_key: String,
    /// The app named by the subscription's newest notification.
    pub app_id: Option<String>,
    /// The product and the kind of purchase its newest notifications named.
    pub product_id: Option<String>,
    pub kind: Option<storehook_core::PurchaseKind>,
}

impl PendingFetch {
    /// What the adapter is asked about.
    pub fn purchase(&self) -> storehook_core::PurchaseRef {
        storehook_core::PurchaseRef {
            key: self.subscription_key.clone(),
            app_id: self.app_id.clone(),
            product_id: self.product_id.clone(),
            kind: self.kind,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub verdict: Verdict,
    /// The row id of the stored notification (of the earlier one for a duplicate).
    pub id: i64,
}

/// Per-store bookkeeping shown by `GET /v1/stores`. Times are Unix ms.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StoreStats {
    pub store: String,
    pub last_received_ms: Option<i64>,
    pub last_verified_ms: Option<i64>,
    pub last_rejected_ms: Option<i64>,
    pub last_rejection_reason: Option<String>,
    pub last_rejection_message: Option<String>,
    pub accepted: i64,
    pub untracked: i64,
    pub duplicates: i64,
    pub rejected: i64,
    /// Notifications a backfill recovered (new to storehook).
    pub recovered: i64,
}

/// Refused requests of one store since the last flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalTally {
    pub store: String,
    pub count: u64,
    /// The latest refusal's code, message and time.
    pub code: String,
    pub message: String,
    pub at_ms: i64,
}

/// A tracked subscription's current state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Subscription {
    pub store: String,
    pub subscription_id: String,
    pub app_user_id: Option<String>,
    pub environment: Option<Environment>,
    pub product_id: Option<String>,
    pub status: Option<storehook_core::SubscriptionStatus>,
    pub expires_at_ms: Option<i64>,
    pub auto_renew: Option<bool>,
    pub last_event_type: Option<EventType>,
    pub last_event_at_ms: Option<i64>,
    /// The subscription this one continues (Google linkedPurchaseToken).
    pub continues_subscription_id: Option<String>,
    /// A state fetch from the store's API is outstanding.
    pub state_pending: bool,
    /// Something the operator must act on (e.g. Apple CONSUMPTION_REQUEST).
    pub attention: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// One stored notification, as listed in views.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredNotification {
    pub id: i64,
    pub store: String,
    pub notification_id: String,
    pub received_at_ms: i64,
    pub verdict: Verdict,
    pub subscription_id: Option<String>,
    pub event_type: Option<EventType>,
    pub raw_type: Option<String>,
    pub environment: Option<Environment>,
    pub occurred_at_ms: Option<i64>,
    pub product_id: Option<String>,
    pub state: Option<ImpliedState>,
    pub attention: Option<String>,
    pub rejection_code: Option<String>,
    pub rejection_message: Option<String>,
    pub source: Source,
}

/// Whether `track` created the subscription or found it.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracked {
    pub created: bool,
    pub subscription: Subscription,
}

/// A filter for listing recent notifications.
#[derive(Debug, Clone, Default)]
pub struct NotificationFilter {
    pub store: Option<String>,
    /// Only ids below this (cursor for the next page).
    pub before_id: Option<i64>,
    pub limit: u32,
}

impl NotificationFilter {
    pub(crate) fn page_size(&self) -> i64 {
        rules::page_size(self.limit, 50, 500)
    }
}

/// The narrow interface the host uses. Every method is async and never blocks
/// the executor; writes resolve only once committed durably.
#[async_trait::async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Stores a verified notification once (de-duplicated on store +
    /// notification id), applies it to its subscription if tracked, and does
    /// the store's bookkeeping — all in one transaction.
    async fn record_notification(&self, new: NewNotification) -> Result<Recorded, DbError>;
    /// Stores an authenticated but unusable notification as rejected.
    async fn record_rejected_notification(
        &self,
        rejected: RejectedNotification,
    ) -> Result<Recorded, DbError>;
    /// Adds refused requests (4xx: failed verification, malformed…) to their
    /// stores' counts and keeps each store's latest reason, all in one
    /// transaction. The host tallies refusals in memory and calls this
    /// periodically, so anonymous traffic does not cost a commit a request.
    async fn record_refusals(&self, tallies: Vec<RefusalTally>) -> Result<(), DbError>;
    /// Starts tracking a subscription (idempotent) and applies the
    /// notifications stored for it while untracked, in store order.
    async fn track(
        &self,
        store: &str,
        subscription_id: &str,
        app_user_id: Option<&str>,
        now_ms: i64,
    ) -> Result<Tracked, DbError>;
    /// Applies state fetched from the store's API; clears the pending mark.
    async fn apply_state_update(
        &self,
        store: &str,
        subscription_id: &str,
        update: StateUpdate,
        now_ms: i64,
    ) -> Result<(), DbError>;
    /// Subscriptions whose state fetch is still outstanding (resumed at start-up).
    async fn pending_state_fetches(&self) -> Result<Vec<PendingFetch>, DbError>;
    /// Makes an outstanding state fetch this instance's before an attempt
    /// (again before each retry, which keeps it): `false` when it is no
    /// longer pending, or another live instance holds it, so several
    /// instances never read the store's API for the same subscription. A
    /// claim of an instance whose heartbeat stopped is taken over.
    async fn claim_state_fetch(
        &self,
        store: &str,
        subscription_id: &str,
        now_ms: i64,
    ) -> Result<bool, DbError>;

    async fn store_stats(&self) -> Result<Vec<StoreStats>, DbError>;
    /// One chart, from the chart tables kept up to date by every stored
    /// notification (never a scan of the notification log).
    async fn chart(&self, query: ChartQuery) -> Result<Chart, DbError>;
    /// Builds the chart tables again from every stored notification (a
    /// migration does it for an existing install; the write path keeps
    /// them current after that).
    async fn rebuild_charts(&self) -> Result<(), DbError>;
    async fn subscription(
        &self,
        store: &str,
        subscription_id: &str,
    ) -> Result<Option<Subscription>, DbError>;
    /// Notifications of one subscription (and of the one it continues), newest first.
    async fn subscription_notifications(
        &self,
        store: &str,
        subscription_id: &str,
        limit: u32,
    ) -> Result<Vec<StoredNotification>, DbError>;
    async fn subscriptions_of_user(&self, app_user_id: &str) -> Result<Vec<Subscription>, DbError>;
    async fn recent_notifications(
        &self,
        filter: NotificationFilter,
    ) -> Result<Vec<StoredNotification>, DbError>;
    /// The decoded payload of one notification (for the detail view).
    async fn notification_decoded(
        &self,
        id: i64,
    ) -> Result<Option<(StoredNotification, serde_json::Value)>, DbError>;
    /// Answers when the database does (health check).
    async fn ping(&self) -> Result<(), DbError>;
    /// The storehook processes using this database, newest first: only
    /// this one for an embedded database; every instance whose heartbeat
    /// was seen in the last day for a shared one.
    async fn instances(&self) -> Result<Vec<Instance>, DbError>;
    /// This instance stops (a graceful shutdown, after its work ended): what
    /// it had claimed is free for the others at once, instead of after its
    /// heartbeat goes stale. Nothing to do for an embedded database.
    async fn leave(&self) -> Result<(), DbError> {
        Ok(())
    }
    /// Write transactions so far, for `/metrics`.
    fn commit_stats(&self) -> CommitStats {
        CommitStats::default()
    }
    /// Installs (once) a callback told of every committed write batch with
    /// how long it took and how many writes it carried. It runs on the
    /// writer, so it must be quick.
    fn observe_commits(&self, _observer: CommitObserver) {}

    // ---- the outbox (outgoing webhooks and forwards) ----

    /// Pending deliveries whose time has come, at most one per endpoint and
    /// order key (the oldest: a failing delivery holds back its successors
    /// for that subscription only).
    async fn due_deliveries(&self, now_ms: i64, limit: u32) -> Result<Vec<DueDelivery>, DbError>;
    /// When the next pending delivery falls due, if any.
    async fn next_delivery_due(&self) -> Result<Option<i64>, DbError>;
    /// Records one attempt and its consequence.
    async fn record_attempt(&self, result: AttemptResult) -> Result<(), DbError>;
    /// Makes a delivery pending again, due now. `false` if there is no such delivery.
    async fn retry_delivery(&self, endpoint: &str, id: i64, now_ms: i64) -> Result<bool, DbError>;
    /// Queues a TEST event to one endpoint, due now; returns the delivery id.
    async fn enqueue_test_event(&self, endpoint: &str, now_ms: i64) -> Result<i64, DbError>;
    async fn events(&self, filter: EventFilter) -> Result<Vec<EventRecord>, DbError>;
    async fn endpoint_stats(&self) -> Result<Vec<EndpointStats>, DbError>;
    async fn deliveries(
        &self,
        endpoint: &str,
        status: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, DbError>;
    /// Pending deliveries, all endpoints.
    async fn outbox_depth(&self) -> Result<i64, DbError>;

    // ---- the pull side (store APIs) ----

    async fn notification_exists(
        &self,
        store: &str,
        notification_id: &str,
    ) -> Result<bool, DbError>;
    /// When the store's newest test notification arrived.
    async fn last_test_notification(&self, store: &str) -> Result<Option<i64>, DbError>;
    /// Tracked subscriptions of one store in key order, after `after`;
    /// those that expired or were revoked more than 60 days ago are left
    /// out (nothing about them can change any more).
    async fn tracked_subscriptions(
        &self,
        store: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TrackedSubscription>, DbError>;
    /// Keeps a store's latest connection check (replacing the one before).
    async fn save_check(&self, check: StoredCheck) -> Result<(), DbError>;
    async fn checks(&self) -> Result<Vec<StoredCheck>, DbError>;
    async fn create_job(&self, job: NewJob) -> Result<Job, DbError>;
    async fn job(&self, id: i64) -> Result<Option<Job>, DbError>;
    /// Newest first; of one store, or all.
    async fn jobs(&self, store: Option<&str>, limit: u32) -> Result<Vec<Job>, DbError>;
    /// Queued and running jobs, oldest first.
    async fn unfinished_jobs(&self) -> Result<Vec<Job>, DbError>;
    /// Makes an unfinished job this instance's to run, for a while; `false`
    /// when another live instance runs it. Called again before every page,
    /// which keeps the claim (leases run on the wall clock, as heartbeats
    /// do). One instance (SQLite) always may.
    async fn claim_job(&self, _id: i64) -> Result<bool, DbError> {
        Ok(true)
    }
    /// Applies a step to a job that is not finished; returns it as it is now.
    async fn update_job(&self, id: i64, step: JobStep) -> Result<Option<Job>, DbError>;
    async fn due_acknowledgements(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<DueAcknowledgement>, DbError>;
    /// Takes a due acknowledgement for this instance before attempting it;
    /// `false` when another instance took it first. One instance (SQLite)
    /// always may.
    async fn claim_acknowledgement(
        &self,
        _store: &str,
        _subscription_id: &str,
        _now_ms: i64,
    ) -> Result<bool, DbError> {
        Ok(true)
    }
    async fn next_acknowledgement_due(&self) -> Result<Option<i64>, DbError>;
    async fn record_acknowledgement(
        &self,
        store: &str,
        subscription_id: &str,
        attempt: AckAttempt,
        now_ms: i64,
    ) -> Result<(), DbError>;
    /// Flags purchases still unacknowledged that were made before
    /// `before_ms`; returns how many were newly flagged.
    async fn flag_unacknowledged(&self, before_ms: i64, attention: &str) -> Result<u64, DbError>;
    async fn acknowledgement_stats(&self) -> Result<Vec<AckStats>, DbError>;
    /// Per store, tracked subscriptions whose expiry passed before
    /// `due_before_ms` without a notification since.
    async fn overdue_subscriptions(&self, due_before_ms: i64) -> Result<Vec<Overdue>, DbError>;

    // ---- retention ----

    /// One small batch of pruning (see [`PruneBatch`]); the caller repeats
    /// it until a batch prunes less than its limit, so the writer is never
    /// held for long.
    async fn prune(&self, batch: PruneBatch) -> Result<PruneReport, DbError>;
    /// Gives up to `max_pages` free pages back to the file system; returns
    /// how many it did.
    async fn reclaim_space(&self, max_pages: u32) -> Result<u64, DbError>;
    /// The database's size on disk.
    async fn database_size(&self) -> Result<DatabaseSize, DbError>;
}

/// One storehook process on the database, as its heartbeat says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance {
    pub id: String,
    pub host: String,
    pub pid: i64,
    pub version: String,
    pub started_at_ms: i64,
    pub last_seen_ms: i64,
    /// This process.
    pub this: bool,
}

impl Instance {
    /// This process, as it introduces itself.
    pub fn this_process(now_ms: i64) -> Self {
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "localhost".to_owned());
        let pid = i64::from(std::process::id());
        Self {
            id: format!("{host}-{pid}-{now_ms}"),
            host,
            pid,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at_ms: now_ms,
            last_seen_ms: now_ms,
            this: true,
        }
    }
}

/// Commit statistics, for metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct CommitStats {
    pub commits: u64,
    pub writes: u64,
    pub failed_commits: u64,
    pub last_batch: usize,
    pub last_commit_micros: u64,
}

/// Told after each committed write batch how long it took (begin to
/// commit, the flush included) and how many writes it carried.
pub type CommitObserver = Box<dyn Fn(std::time::Duration, usize) + Send + Sync>;

/// What one pruning batch may remove: raw request bodies of notifications
/// received before `raw_body_before_ms` (the normalized row, its decoded
/// payload, its events and everything folds and charts read stay), and
/// delivered outbox rows (with their attempts) delivered before
/// `deliveries_before_ms`. Pending and dead deliveries always stay.
#[derive(Debug, Clone, Copy)]
pub struct PruneBatch {
    pub raw_body_before_ms: Option<i64>,
    pub deliveries_before_ms: Option<i64>,
    /// The most rows of each kind in this batch.
    pub limit: u32,
}

/// What a pruning batch removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub raw_bodies: u64,
    pub deliveries: u64,
    pub attempts: u64,
}

/// The database's size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DatabaseSize {
    /// The files on disk (the database and its write-ahead log).
    pub file_bytes: u64,
    /// Pages inside the file that are free (reused before the file grows).
    pub free_bytes: u64,
}
