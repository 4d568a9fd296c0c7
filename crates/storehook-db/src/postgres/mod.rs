//! The PostgreSQL backend: several storehook instances on one database.
//!
//! Writes of the notification path go through the same group-commit
//! writer as SQLite's, on one connection per instance, the writer's own
//! outside the pool (PostgreSQL groups the flushes of concurrent instances
//! by itself); the rules they apply
//! are [`crate::rules`], and a subscription's writers serialize on an
//! advisory lock. Reads and the outbox's claims run on a pool. Commits
//! are synchronous (`synchronous_commit = on`): a 200 only after COMMIT.

mod charts;
mod conn;
mod ledger;
mod migrations;
mod queries;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use storehook_core::{StateUpdate, TrackedSubscription};

use crate::outbox::OutboxConfig;
use crate::writer::Writer;
use crate::{
    AckAttempt, AckStats, AttemptResult, CommitObserver, CommitStats, DatabaseSize, DbError,
    DeliveryRecord, DueAcknowledgement, DueDelivery, EndpointStats, EventFilter, EventRecord, Job,
    JobStep, NewJob, NewNotification, NotificationFilter, Overdue, PendingFetch, PruneBatch,
    PruneReport, Recorded, RefusalTally, RejectedNotification, Storage, StoreStats, StoredCheck,
    StoredNotification, Subscription, Tracked,
};

pub(crate) use charts::request_chart_rebuild;
use conn::PgConn;
pub(crate) use migrations::migrate;

/// Pooled connections per instance (the readers' and the claims'; the
/// writer has its own).
const POOL_SIZE: usize = 16;
/// How long a pooled connection may take to come.
const POOL_WAIT: Duration = Duration::from_secs(5);
/// The most writes one transaction commits together.
const MAX_BATCH: usize = 256;
/// The most writer connections an instance opens (`[database] writers`).
pub const MAX_WRITERS: usize = 16;

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        // Connection trouble (the server restarting, the network) is
        // "unavailable": the host answers 503 and the store retries.
        let unavailable = e.is_closed()
            || e.code().is_some_and(|c| {
                let class = &c.code()[..2];
                matches!(class, "08" | "53" | "57")
            })
            || e.as_db_error().is_none();
        let message = match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => e.to_string(),
        };
        if unavailable {
            DbError::Unavailable(message)
        } else {
            DbError::Backend(message)
        }
    }
}

impl From<deadpool_postgres::PoolError> for DbError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => DbError::Unavailable(format!("no database connection: {other}")),
        }
    }
}

pub(crate) struct PostgresStorage {
    pool: Pool,
    /// The group-commit writers, each on a connection of its own; a
    /// subscription's writes always go to the same one (see `writer_for`).
    writers: Vec<Writer<PgConn>>,
    outbox: Arc<OutboxConfig>,
    instance: crate::Instance,
    /// Stops the heartbeat when the storage is dropped.
    heartbeat: tokio::task::JoinHandle<()>,
}

/// How often an instance says it is alive.
const HEARTBEAT: Duration = Duration::from_secs(3);

/// Keeps this instance's row fresh; its claims stay its own only while it
/// does (see `queries::claim_due_deliveries`).
async fn beat(pool: Pool, id: String) {
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        let now = storehook_core::time::now_ms();
        match pool.get().await {
            Ok(client) => {
                if let Err(e) = queries::heartbeat(&client, &id, now).await {
                    tracing::warn!(error = %e, "instance heartbeat failed");
                }
            }
            Err(e) => {
                tracing::warn!(error = %DbError::from(e), "instance heartbeat: no connection")
            }
        }
    }
}

impl Drop for PostgresStorage {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

impl PostgresStorage {
    /// Connects, migrates (instances starting together take turns) and
    /// starts the writer.
    pub(crate) async fn open(
        url: &str,
        outbox: OutboxConfig,
        writers: usize,
    ) -> Result<Self, DbError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| DbError::Config(format!("the PostgreSQL URL does not parse: {e}")))?;
        config.application_name("storehook");
        // A dead peer is noticed instead of waited on for ever.
        config.connect_timeout(Duration::from_secs(5));
        config.keepalives_idle(Duration::from_secs(30));
        config.options("-c synchronous_commit=on");
        let writer_config = config.clone();
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(POOL_WAIT))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| DbError::Config(format!("cannot build the connection pool: {e}")))?;
        let instance = crate::Instance::this_process(storehook_core::time::now_ms());
        {
            let mut client = pool.get().await?;
            migrations::migrate(&mut client).await?;
            queries::register(&client, &instance).await?;
        }
        let heartbeat = tokio::spawn(beat(pool.clone(), instance.id.clone()));
        let writers = (0..writers.clamp(1, MAX_WRITERS))
            .map(|i| {
                let name = format!("storehook-db-writer-{i}");
                Writer::start(&name, PgConn::new(writer_config.clone()), MAX_BATCH)
            })
            .collect::<Result<Vec<_>, DbError>>()?;
        // A migration that added chart tables asked for them to be filled
        // from the history already stored.
        if writers[0].write(crate::rules::rebuild_if_requested).await? {
            tracing::info!("chart tables built from the stored history");
        }
        Ok(Self {
            pool,
            writers,
            outbox: Arc::new(outbox),
            instance,
            heartbeat,
        })
    }

    /// The writer of a subscription's writes: always the same one, so an
    /// instance applies them in the order they came, as one writer would.
    /// Writers of different subscriptions run side by side, each waiting
    /// on its own statements; they serialize on the shared counter rows
    /// only for the moment of their commits (written last, in one order,
    /// like the writers of several instances).
    fn writer_for(&self, store: &str, key: Option<&str>) -> &Writer<PgConn> {
        let index = key.map_or(0, |key| {
            let mut h = std::hash::DefaultHasher::new();
            std::hash::Hash::hash(&crate::rules::lock_key(store, key), &mut h);
            std::hash::Hasher::finish(&h) as usize % self.writers.len()
        });
        &self.writers[index]
    }

    /// The writer of writes that belong to no subscription.
    fn first_writer(&self) -> &Writer<PgConn> {
        &self.writers[0]
    }

    async fn write<R, F>(&self, f: F) -> Result<R, DbError>
    where
        R: Send + 'static,
        F: FnOnce(&PgConn) -> Result<R, DbError> + Send + 'static,
    {
        self.first_writer().write(f).await
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, DbError> {
        Ok(self.pool.get().await?)
    }
}

#[async_trait::async_trait]
impl Storage for PostgresStorage {
    fn commit_stats(&self) -> CommitStats {
        self.writers
            .iter()
            .map(Writer::commit_stats)
            .fold(CommitStats::default(), |sum, w| CommitStats {
                commits: sum.commits + w.commits,
                writes: sum.writes + w.writes,
                failed_commits: sum.failed_commits + w.failed_commits,
                last_batch: sum.last_batch.max(w.last_batch),
                last_commit_micros: sum.last_commit_micros.max(w.last_commit_micros),
            })
    }

    fn observe_commits(&self, observer: CommitObserver) {
        let observer = Arc::new(observer);
        for writer in &self.writers {
            let observer = observer.clone();
            writer.observe_commits(Box::new(move |took, size| observer(took, size)));
        }
    }

    async fn record_notification(&self, new: NewNotification) -> Result<Recorded, DbError> {
        let n = &new.notification;
        let writer = self.writer_for(&n.store, n.subscription_key.as_deref());
        writer.record_notification(&self.outbox, new).await
    }

    async fn record_rejected_notification(
        &self,
        rejected: RejectedNotification,
    ) -> Result<Recorded, DbError> {
        self.first_writer().record_rejected(rejected).await
    }

    async fn record_refusals(&self, tallies: Vec<RefusalTally>) -> Result<(), DbError> {
        self.first_writer().record_refusals(tallies).await
    }

    async fn track(
        &self,
        store: &str,
        subscription_id: &str,
        app_user_id: Option<&str>,
        now_ms: i64,
    ) -> Result<Tracked, DbError> {
        let key = (store, subscription_id);
        self.writer_for(store, Some(subscription_id))
            .track(&self.outbox, key, app_user_id, now_ms)
            .await
    }

    async fn apply_state_update(
        &self,
        store: &str,
        subscription_id: &str,
        update: StateUpdate,
        now_ms: i64,
    ) -> Result<(), DbError> {
        let key = (store, subscription_id);
        self.writer_for(store, Some(subscription_id))
            .apply_state_update(&self.outbox, key, update, now_ms)
            .await
    }

    async fn pending_state_fetches(&self) -> Result<Vec<PendingFetch>, DbError> {
        queries::pending_state_fetches(&self.client().await?).await
    }

    async fn claim_state_fetch(
        &self,
        store: &str,
        subscription_id: &str,
        now_ms: i64,
    ) -> Result<bool, DbError> {
        let client = self.client().await?;
        let key = (store, subscription_id);
        queries::claim_state_fetch(&client, &self.instance.id, key, now_ms).await
    }

    async fn store_stats(&self) -> Result<Vec<StoreStats>, DbError> {
        queries::store_stats(&self.client().await?).await
    }

    async fn chart(&self, query: crate::ChartQuery) -> Result<crate::Chart, DbError> {
        charts::chart(&self.client().await?, &query).await
    }

    async fn rebuild_charts(&self) -> Result<(), DbError> {
        self.write(crate::rules::rebuild).await
    }

    async fn subscription(
        &self,
        store: &str,
        subscription_id: &str,
    ) -> Result<Option<Subscription>, DbError> {
        queries::subscription(&self.client().await?, store, subscription_id).await
    }

    async fn subscription_notifications(
        &self,
        store: &str,
        subscription_id: &str,
        limit: u32,
    ) -> Result<Vec<StoredNotification>, DbError> {
        queries::subscription_notifications(&self.client().await?, store, subscription_id, limit)
            .await
    }

    async fn subscriptions_of_user(&self, app_user_id: &str) -> Result<Vec<Subscription>, DbError> {
        queries::subscriptions_of_user(&self.client().await?, app_user_id).await
    }

    async fn recent_notifications(
        &self,
        filter: NotificationFilter,
    ) -> Result<Vec<StoredNotification>, DbError> {
        queries::recent_notifications(&self.client().await?, &filter).await
    }

    async fn notification_decoded(
        &self,
        id: i64,
    ) -> Result<Option<(StoredNotification, serde_json::Value)>, DbError> {
        queries::notification_decoded(&self.client().await?, id).await
    }

    async fn leave(&self) -> Result<(), DbError> {
        self.heartbeat.abort();
        queries::leave(&self.client().await?, &self.instance.id).await
    }

    async fn instances(&self) -> Result<Vec<crate::Instance>, DbError> {
        queries::instances(&self.client().await?, &self.instance.id).await
    }

    async fn ping(&self) -> Result<(), DbError> {
        self.client().await?.simple_query("SELECT 1").await?;
        Ok(())
    }

    async fn due_deliveries(&self, now_ms: i64, limit: u32) -> Result<Vec<DueDelivery>, DbError> {
        queries::claim_due_deliveries(&self.client().await?, &self.instance.id, now_ms, limit).await
    }

    async fn next_delivery_due(&self) -> Result<Option<i64>, DbError> {
        queries::next_delivery_due(&self.client().await?).await
    }

    async fn record_attempt(&self, result: AttemptResult) -> Result<(), DbError> {
        self.write(move |c| queries::record_attempt(c, &result))
            .await
    }

    async fn retry_delivery(&self, endpoint: &str, id: i64, now_ms: i64) -> Result<bool, DbError> {
        let endpoint = endpoint.to_owned();
        self.write(move |c| queries::retry_delivery(c, &endpoint, id, now_ms))
            .await
    }

    async fn enqueue_test_event(&self, endpoint: &str, now_ms: i64) -> Result<i64, DbError> {
        let endpoint = endpoint.to_owned();
        self.write(move |c| queries::enqueue_test_event(c, &endpoint, now_ms))
            .await
    }

    async fn events(&self, filter: EventFilter) -> Result<Vec<EventRecord>, DbError> {
        queries::events(&self.client().await?, &filter).await
    }

    async fn endpoint_stats(&self) -> Result<Vec<EndpointStats>, DbError> {
        queries::endpoint_stats(&self.client().await?).await
    }

    async fn deliveries(
        &self,
        endpoint: &str,
        status: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, DbError> {
        queries::deliveries(&self.client().await?, endpoint, status, limit).await
    }

    async fn outbox_depth(&self) -> Result<i64, DbError> {
        queries::outbox_depth(&self.client().await?).await
    }

    async fn notification_exists(
        &self,
        store: &str,
        notification_id: &str,
    ) -> Result<bool, DbError> {
        queries::notification_exists(&self.client().await?, store, notification_id).await
    }

    async fn last_test_notification(&self, store: &str) -> Result<Option<i64>, DbError> {
        queries::last_test_notification(&self.client().await?, store).await
    }

    async fn tracked_subscriptions(
        &self,
        store: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TrackedSubscription>, DbError> {
        queries::tracked_subscriptions(&self.client().await?, store, after, limit).await
    }

    async fn save_check(&self, check: StoredCheck) -> Result<(), DbError> {
        self.write(move |c| queries::save_check(c, &check)).await
    }

    async fn checks(&self) -> Result<Vec<StoredCheck>, DbError> {
        queries::checks(&self.client().await?).await
    }

    async fn create_job(&self, job: NewJob) -> Result<Job, DbError> {
        self.write(move |c| queries::create_job(c, &job)).await
    }

    async fn job(&self, id: i64) -> Result<Option<Job>, DbError> {
        queries::job(&self.client().await?, id).await
    }

    async fn jobs(&self, store: Option<&str>, limit: u32) -> Result<Vec<Job>, DbError> {
        queries::jobs(&self.client().await?, store, limit).await
    }

    async fn unfinished_jobs(&self) -> Result<Vec<Job>, DbError> {
        queries::unfinished_jobs(&self.client().await?).await
    }

    async fn claim_job(&self, id: i64) -> Result<bool, DbError> {
        let now = storehook_core::time::now_ms();
        queries::claim_job(&self.client().await?, &self.instance.id, id, now).await
    }

    async fn update_job(&self, id: i64, step: JobStep) -> Result<Option<Job>, DbError> {
        self.write(move |c| queries::update_job(c, id, &step)).await
    }

    async fn due_acknowledgements(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<DueAcknowledgement>, DbError> {
        queries::due_acknowledgements(&self.client().await?, now_ms, limit).await
    }

    async fn claim_acknowledgement(
        &self,
        store: &str,
        subscription_id: &str,
        now_ms: i64,
    ) -> Result<bool, DbError> {
        let client = self.client().await?;
        queries::claim_acknowledgement(&client, store, subscription_id, now_ms).await
    }

    async fn next_acknowledgement_due(&self) -> Result<Option<i64>, DbError> {
        queries::next_acknowledgement_due(&self.client().await?).await
    }

    async fn record_acknowledgement(
        &self,
        store: &str,
        subscription_id: &str,
        attempt: AckAttempt,
        now_ms: i64,
    ) -> Result<(), DbError> {
        let (store, key) = (store.to_owned(), subscription_id.to_owned());
        self.write(move |c| queries::record_acknowledgement(c, &store, &key, &attempt, now_ms))
            .await
    }

    async fn flag_unacknowledged(&self, before_ms: i64, attention: &str) -> Result<u64, DbError> {
        let attention = attention.to_owned();
        self.write(move |c| queries::flag_unacknowledged(c, before_ms, &attention))
            .await
    }

    async fn acknowledgement_stats(&self) -> Result<Vec<AckStats>, DbError> {
        queries::acknowledgement_stats(&self.client().await?).await
    }

    async fn overdue_subscriptions(&self, due_before_ms: i64) -> Result<Vec<Overdue>, DbError> {
        queries::overdue_subscriptions(&self.client().await?, due_before_ms).await
    }

    async fn prune(&self, batch: PruneBatch) -> Result<PruneReport, DbError> {
        self.write(move |c| queries::prune(c, batch)).await
    }

    async fn reclaim_space(&self, _max_pages: u32) -> Result<u64, DbError> {
        // PostgreSQL's autovacuum makes pruned rows' space reusable; giving
        // it back to the file system (VACUUM FULL) locks tables, which is
        // the operator's call, not a background task's.
        Ok(0)
    }

    async fn database_size(&self) -> Result<DatabaseSize, DbError> {
        queries::database_size(&self.client().await?).await
    }
}
