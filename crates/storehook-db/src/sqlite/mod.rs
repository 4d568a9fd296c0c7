//! The SQLite backend: WAL, one writer thread with group commit, a small pool
//! of reader connections used from `spawn_blocking`.

mod backup;
mod charts;
mod delivery;
mod ledger;
mod migrations;
mod read;
mod retention;
mod store_api;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};

use crate::outbox::OutboxConfig;
use crate::writer::{BatchConnection, Writer};
use crate::{
    AttemptResult, CommitObserver, CommitStats, DatabaseSize, DbError, DeliveryRecord, DueDelivery,
    EndpointStats, EventFilter, EventRecord, NewNotification, NotificationFilter, PendingFetch,
    PruneBatch, PruneReport, Recorded, RefusalTally, RejectedNotification, Storage, StoreStats,
    StoredNotification, Subscription, Tracked,
};
use storehook_core::{StateUpdate, TrackedSubscription};

use crate::{AckAttempt, AckStats, DueAcknowledgement, Job, JobStep, NewJob, Overdue, StoredCheck};

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Backend(e.to_string())
    }
}

/// SQLite's `synchronous` setting. `Full` is the default: a 200 means the
/// notification survives power loss. `Normal`/`Off` exist for benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Synchronous {
    Full,
    Normal,
    Off,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
            Synchronous::Off => "OFF",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub path: PathBuf,
    pub synchronous: Synchronous,
    /// How long a statement waits on a lock held by another process.
    pub busy_timeout_ms: u64,
    /// The most writes one transaction commits together.
    pub max_batch: usize,
    /// Where events and forwards go.
    pub outbox: OutboxConfig,
}

impl SqliteOptions {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            synchronous: Synchronous::Full,
            busy_timeout_ms: 2_000,
            max_batch: 512,
            outbox: OutboxConfig::default(),
        }
    }
}

pub struct SqliteStorage {
    writer: Writer<Connection>,
    readers: Arc<Mutex<Vec<Connection>>>,
    options: SqliteOptions,
    outbox: Arc<OutboxConfig>,
    /// The one process on this file.
    instance: crate::Instance,
    /// Held shared while open, so that `storehook restore` can tell.
    _lock: Arc<std::fs::File>,
}

pub use backup::{backup, check as integrity_check, restore, BackupReport, RestoreReport};

impl SqliteStorage {
    /// Opens (creating the file and its folder if needed) and migrates the
    /// database, then starts the writer thread.
    pub fn open(options: SqliteOptions) -> Result<Self, DbError> {
        if let Some(dir) = options.path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    DbError::Unavailable(format!("cannot create folder {}: {e}", dir.display()))
                })?;
            }
        }
        let lock = backup::hold_shared(&options.path)?;
        let mut writer = open_connection(&options, false)?;
        retention::enable_incremental_vacuum(&writer)?;
        migrations::migrate(&mut writer)?;
        {
            // A migration that added chart tables asked for them to be
            // filled from the history already stored.
            let tx = writer.transaction()?;
            if crate::rules::rebuild_if_requested(&*tx)? {
                tracing::info!("chart tables built from the stored history");
            }
            tx.commit()?;
        }
        let writer = Writer::start("storehook-db-writer", writer, options.max_batch)?;
        Ok(Self {
            writer,
            instance: crate::Instance::this_process(storehook_core::time::now_ms()),
            readers: Arc::new(Mutex::new(Vec::new())),
            outbox: Arc::new(options.outbox.clone()),
            options,
            _lock: Arc::new(lock),
        })
    }

    pub fn path(&self) -> &Path {
        &self.options.path
    }

    /// Runs `f` in the writer's current batch; resolves after the commit.
    async fn write<R, F>(&self, f: F) -> Result<R, DbError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, DbError> + Send + 'static,
    {
        self.writer.write(f).await
    }

    /// Runs a read on a pooled reader connection off the executor.
    async fn read<R, F>(&self, f: F) -> Result<R, DbError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, DbError> + Send + 'static,
    {
        let readers = self.readers.clone();
        let options = self.options.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().ok().and_then(|mut p| p.pop());
            let conn = match pooled {
                Some(c) => c,
                None => open_connection(&options, true)?,
            };
            let result = f(&conn);
            if let Ok(mut pool) = readers.lock() {
                if pool.len() < 8 {
                    pool.push(conn);
                }
            }
            result
        })
        .await
        .map_err(|e| DbError::Unavailable(format!("read task failed: {e}")))?
    }
}

/// `execute` and `query_row` through the connection's statement cache. The
/// write path runs the same few dozen statements for every notification;
/// re-parsing their SQL each time was about 6 % of the server's CPU under
/// load (perf, Stripe traffic).
pub(crate) trait Cached {
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    /// `exec` for a statement whose row count does not matter.
    fn run<P: rusqlite::Params>(&self, sql: &str, params: P) -> Result<(), DbError> {
        self.exec(sql, params)?;
        Ok(())
    }
    fn row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>;
}

/// Every row of a query, decoded by a [`crate::records`] decoder.
pub(crate) fn all<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    decode: impl Fn(&dyn crate::records::Columns) -> Result<T, DbError>,
) -> Result<Vec<T>, DbError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(decode(row)?);
    }
    Ok(out)
}

/// The first row of a query, if any, decoded.
pub(crate) fn first<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    decode: impl FnOnce(&dyn crate::records::Columns) -> Result<T, DbError>,
) -> Result<Option<T>, DbError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    rows.next()?.map(|row| decode(row)).transpose()
}

impl crate::records::Columns for rusqlite::Row<'_> {
    fn opt_i64(&self, i: usize) -> Result<Option<i64>, DbError> {
        Ok(self.get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, DbError> {
        Ok(self.get(i)?)
    }
    fn opt_bool(&self, i: usize) -> Result<Option<bool>, DbError> {
        Ok(self.get(i)?)
    }
    fn opt_bytes(&self, i: usize) -> Result<Option<Vec<u8>>, DbError> {
        Ok(self.get(i)?)
    }
}

impl Cached for Connection {
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

/// Enough for every statement of the write and read paths.
const STATEMENT_CACHE: usize = 128;

/// `path` with `suffix` appended to its file name: the database's companion
/// files (`-wal`, `-shm`, `.lock`, a backup's `.partial`…).
fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// What the write-ahead log is cut back to after a checkpoint.
const WAL_SIZE_LIMIT_BYTES: i64 = 16 * 1024 * 1024;

fn open_connection(options: &SqliteOptions, read_only: bool) -> Result<Connection, DbError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(&options.path, flags)?;
    conn.busy_timeout(std::time::Duration::from_millis(options.busy_timeout_ms))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    if !read_only {
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(DbError::Unavailable(format!(
                "cannot switch to WAL (journal_mode={mode})"
            )));
        }
        conn.pragma_update(None, "synchronous", options.synchronous.pragma())?;
        // After a burst the log is cut back to this at the next checkpoint
        // instead of keeping its largest size for good.
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT_BYTES)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
    }
    Ok(conn)
}

impl BatchConnection for Connection {
    fn begin(&mut self) -> Result<(), String> {
        self.execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| e.to_string())
    }

    fn savepoint(&mut self) -> Result<(), String> {
        self.execute_batch("SAVEPOINT job")
            .map_err(|e| e.to_string())
    }

    fn end_savepoint(&mut self, keep: bool) -> Result<(), String> {
        let sql = if keep {
            "RELEASE job"
        } else {
            "ROLLBACK TO job; RELEASE job"
        };
        self.execute_batch(sql).map_err(|e| e.to_string())
    }

    fn commit(&mut self) -> Result<(), String> {
        self.execute_batch("COMMIT").map_err(|e| e.to_string())
    }

    fn rollback(&mut self) {
        let _ = self.execute_batch("ROLLBACK");
    }
}

#[async_trait::async_trait]
impl Storage for SqliteStorage {
    fn commit_stats(&self) -> CommitStats {
        self.writer.commit_stats()
    }

    fn observe_commits(&self, observer: CommitObserver) {
        self.writer.observe_commits(observer);
    }

    async fn record_notification(&self, new: NewNotification) -> Result<Recorded, DbError> {
        self.writer.record_notification(&self.outbox, new).await
    }

    async fn record_rejected_notification(
        &self,
        rejected: RejectedNotification,
    ) -> Result<Recorded, DbError> {
        self.writer.record_rejected(rejected).await
    }

    async fn record_refusals(&self, tallies: Vec<RefusalTally>) -> Result<(), DbError> {
        self.writer.record_refusals(tallies).await
    }

    async fn track(
        &self,
        store: &str,
        subscription_id: &str,
        app_user_id: Option<&str>,
        now_ms: i64,
    ) -> Result<Tracked, DbError> {
        let key = (store, subscription_id);
        self.writer
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
        self.writer
            .apply_state_update(&self.outbox, key, update, now_ms)
            .await
    }

    async fn pending_state_fetches(&self) -> Result<Vec<PendingFetch>, DbError> {
        self.read(read::pending_state_fetches).await
    }

    async fn claim_state_fetch(
        &self,
        store: &str,
        subscription_id: &str,
        _now_ms: i64,
    ) -> Result<bool, DbError> {
        // One instance: the fetch is this one's while it is pending.
        let (store, key) = (store.to_owned(), subscription_id.to_owned());
        self.read(move |c| read::state_fetch_pending(c, &store, &key))
            .await
    }

    async fn store_stats(&self) -> Result<Vec<StoreStats>, DbError> {
        self.read(read::store_stats).await
    }

    async fn chart(&self, query: crate::ChartQuery) -> Result<crate::Chart, DbError> {
        self.read(move |conn| charts::chart(conn, &query)).await
    }

    async fn rebuild_charts(&self) -> Result<(), DbError> {
        self.write(crate::rules::rebuild).await
    }

    async fn subscription(
        &self,
        store: &str,
        subscription_id: &str,
    ) -> Result<Option<Subscription>, DbError> {
        let (store, key) = (store.to_owned(), subscription_id.to_owned());
        self.read(move |conn| read::subscription(conn, &store, &key))
            .await
    }

    async fn subscription_notifications(
        &self,
        store: &str,
        subscription_id: &str,
        limit: u32,
    ) -> Result<Vec<StoredNotification>, DbError> {
        let (store, key) = (store.to_owned(), subscription_id.to_owned());
        self.read(move |conn| read::subscription_notifications(conn, &store, &key, limit))
            .await
    }

    async fn subscriptions_of_user(&self, app_user_id: &str) -> Result<Vec<Subscription>, DbError> {
        let user = app_user_id.to_owned();
        self.read(move |conn| read::subscriptions_of_user(conn, &user))
            .await
    }

    async fn recent_notifications(
        &self,
        filter: NotificationFilter,
    ) -> Result<Vec<StoredNotification>, DbError> {
        self.read(move |conn| read::recent_notifications(conn, &filter))
            .await
    }

    async fn notification_decoded(
        &self,
        id: i64,
    ) -> Result<Option<(StoredNotification, serde_json::Value)>, DbError> {
        self.read(move |conn| read::notification_decoded(conn, id))
            .await
    }

    async fn due_deliveries(&self, now_ms: i64, limit: u32) -> Result<Vec<DueDelivery>, DbError> {
        self.read(move |conn| delivery::due_deliveries(conn, now_ms, limit))
            .await
    }

    async fn next_delivery_due(&self) -> Result<Option<i64>, DbError> {
        self.read(delivery::next_due).await
    }

    async fn record_attempt(&self, result: AttemptResult) -> Result<(), DbError> {
        self.write(move |conn| delivery::record_attempt(conn, &result))
            .await
    }

    async fn retry_delivery(&self, endpoint: &str, id: i64, now_ms: i64) -> Result<bool, DbError> {
        let endpoint = endpoint.to_owned();
        self.write(move |conn| delivery::retry_delivery(conn, &endpoint, id, now_ms))
            .await
    }

    async fn enqueue_test_event(&self, endpoint: &str, now_ms: i64) -> Result<i64, DbError> {
        let endpoint = endpoint.to_owned();
        self.write(move |conn| delivery::enqueue_test_event(conn, &endpoint, now_ms))
            .await
    }

    async fn events(&self, filter: EventFilter) -> Result<Vec<EventRecord>, DbError> {
        self.read(move |conn| delivery::events(conn, &filter)).await
    }

    async fn endpoint_stats(&self) -> Result<Vec<EndpointStats>, DbError> {
        self.read(delivery::endpoint_stats).await
    }

    async fn deliveries(
        &self,
        endpoint: &str,
        status: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, DbError> {
        let endpoint = endpoint.to_owned();
        let status = status.map(str::to_owned);
        self.read(move |conn| delivery::deliveries(conn, &endpoint, status.as_deref(), limit))
            .await
    }

    async fn outbox_depth(&self) -> Result<i64, DbError> {
        self.read(delivery::outbox_depth).await
    }

    async fn prune(&self, batch: PruneBatch) -> Result<PruneReport, DbError> {
        self.write(move |conn| retention::prune(conn, batch)).await
    }

    async fn reclaim_space(&self, max_pages: u32) -> Result<u64, DbError> {
        let freed = self
            .write(move |conn| retention::reclaim(conn, max_pages))
            .await?;
        if freed == 0 {
            // The pages given back are in the write-ahead log until a
            // checkpoint, and the log keeps its size: fold it in and empty
            // it (outside the writer's transaction, on a connection of its
            // own, waiting for readers as SQLite requires).
            let options = self.options.clone();
            tokio::task::spawn_blocking(move || {
                let conn = open_connection(&options, false)?;
                retention::checkpoint(&conn)
            })
            .await
            .map_err(|e| DbError::Unavailable(e.to_string()))??;
        }
        Ok(freed)
    }

    async fn database_size(&self) -> Result<DatabaseSize, DbError> {
        let path = self.options.path.clone();
        self.read(move |conn| retention::size(conn, &path)).await
    }

    async fn notification_exists(
        &self,
        store: &str,
        notification_id: &str,
    ) -> Result<bool, DbError> {
        let (store, id) = (store.to_owned(), notification_id.to_owned());
        self.read(move |conn| store_api::notification_exists(conn, &store, &id))
            .await
    }

    async fn last_test_notification(&self, store: &str) -> Result<Option<i64>, DbError> {
        let store = store.to_owned();
        self.read(move |conn| store_api::last_test_notification(conn, &store))
            .await
    }

    async fn tracked_subscriptions(
        &self,
        store: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TrackedSubscription>, DbError> {
        let (store, after) = (store.to_owned(), after.map(str::to_owned));
        self.read(move |conn| {
            store_api::tracked_subscriptions(conn, &store, after.as_deref(), limit)
        })
        .await
    }

    async fn save_check(&self, check: StoredCheck) -> Result<(), DbError> {
        self.write(move |conn| store_api::save_check(conn, &check))
            .await
    }

    async fn checks(&self) -> Result<Vec<StoredCheck>, DbError> {
        self.read(store_api::checks).await
    }

    async fn create_job(&self, job: NewJob) -> Result<Job, DbError> {
        self.write(move |conn| store_api::create_job(conn, &job))
            .await
    }

    async fn job(&self, id: i64) -> Result<Option<Job>, DbError> {
        self.read(move |conn| store_api::job(conn, id)).await
    }

    async fn jobs(&self, store: Option<&str>, limit: u32) -> Result<Vec<Job>, DbError> {
        let store = store.map(str::to_owned);
        self.read(move |conn| store_api::jobs(conn, store.as_deref(), limit))
            .await
    }

    async fn unfinished_jobs(&self) -> Result<Vec<Job>, DbError> {
        self.read(store_api::unfinished_jobs).await
    }

    async fn update_job(&self, id: i64, step: JobStep) -> Result<Option<Job>, DbError> {
        self.write(move |conn| store_api::update_job(conn, id, &step))
            .await
    }

    async fn due_acknowledgements(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<DueAcknowledgement>, DbError> {
        self.read(move |conn| store_api::due_acknowledgements(conn, now_ms, limit))
            .await
    }

    async fn next_acknowledgement_due(&self) -> Result<Option<i64>, DbError> {
        self.read(store_api::next_acknowledgement_due).await
    }

    async fn record_acknowledgement(
        &self,
        store: &str,
        subscription_id: &str,
        attempt: AckAttempt,
        now_ms: i64,
    ) -> Result<(), DbError> {
        let (store, key) = (store.to_owned(), subscription_id.to_owned());
        self.write(move |conn| {
            store_api::record_acknowledgement(conn, &store, &key, &attempt, now_ms)
        })
        .await
    }

    async fn flag_unacknowledged(&self, before_ms: i64, attention: &str) -> Result<u64, DbError> {
        let attention = attention.to_owned();
        self.write(move |conn| store_api::flag_unacknowledged(conn, before_ms, &attention))
            .await
    }

    async fn acknowledgement_stats(&self) -> Result<Vec<AckStats>, DbError> {
        self.read(store_api::acknowledgement_stats).await
    }

    async fn overdue_subscriptions(&self, due_before_ms: i64) -> Result<Vec<Overdue>, DbError> {
        self.read(move |conn| store_api::overdue_subscriptions(conn, due_before_ms))
            .await
    }

    async fn instances(&self) -> Result<Vec<crate::Instance>, DbError> {
        let mut this = self.instance.clone();
        this.last_seen_ms = storehook_core::time::now_ms();
        Ok(vec![this])
    }

    async fn ping(&self) -> Result<(), DbError> {
        self.read(|conn| {
            conn.query_row("SELECT count(*) FROM schema_info", [], |r| {
                r.get::<_, i64>(0)
            })?;
            Ok(())
        })
        .await
    }
}
