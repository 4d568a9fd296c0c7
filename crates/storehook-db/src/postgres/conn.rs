//! The writer's PostgreSQL connection: the group-commit writer's thread
//! runs each statement to completion (it is not a runtime thread, so
//! blocking is its job), which lets the backend-neutral rules stay plain
//! synchronous code. The connection is the writer's own, driven by a
//! runtime on the writer thread itself: a statement costs one round trip
//! to PostgreSQL and no hop to another thread and back (measured: the
//! writer is bound by statement latency, not by CPU).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use tokio::runtime::Runtime;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, Row, Statement};

use crate::records::Columns;
use crate::writer::BatchConnection;
use crate::DbError;

pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

pub(crate) struct PgConn {
    config: Config,
    /// Made on the writer thread at the first batch (a runtime must not
    /// be dropped inside another one).
    rt: Option<Runtime>,
    /// Connected at the first batch; dropped after a failure so the next
    /// batch starts on a fresh connection.
    client: Option<Client>,
    /// Prepared statements of `client`, by their SQL.
    statements: RefCell<HashMap<String, Statement>>,
    /// Transaction control not sent yet (`BEGIN`, a write's `SAVEPOINT`,
    /// the previous write's `RELEASE`): it goes out pipelined with the
    /// next statement, or with `COMMIT`, instead of costing a round trip
    /// of its own (the writer is bound by round trips).
    pending: RefCell<String>,
    /// The current write's `SAVEPOINT` is still in `pending`: nothing ran
    /// since, so there is nothing to release or roll back.
    savepoint_unsent: Cell<bool>,
    /// The subscriptions (`store:key`, sorted) whose locks this batch took
    /// at its start: a write's own lock request for one of them would only
    /// cost a round trip.
    batch_locks: Vec<String>,
}

impl PgConn {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            rt: None,
            client: None,
            statements: RefCell::new(HashMap::new()),
            pending: RefCell::new(String::new()),
            savepoint_unsent: Cell::new(false),
            batch_locks: Vec::new(),
        }
    }

    fn parts(&self) -> Result<(&Runtime, &Client), DbError> {
        self.rt
            .as_ref()
            .zip(self.client.as_ref())
            .ok_or_else(|| DbError::Unavailable("no database connection".into()))
    }

    async fn prepared(&self, client: &Client, sql: &str) -> Result<Statement, DbError> {
        if let Some(stmt) = self.statements.borrow().get(sql) {
            return Ok(stmt.clone());
        }
        let stmt = client.prepare(sql).await?;
        self.statements
            .borrow_mut()
            .insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }

    /// Whether this batch already holds the lock of `lock_key`.
    pub fn holds_lock(&self, lock_key: &str) -> bool {
        self.batch_locks
            .binary_search_by(|k| k.as_str().cmp(lock_key))
            .is_ok()
    }

    /// Runs `request` after the pending transaction control, in one round
    /// trip: tokio-postgres sends a request when its future is first
    /// polled and runs requests in that order, and `biased` polls the
    /// pending text first.
    async fn after_pending<T>(
        &self,
        client: &Client,
        request: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, DbError> {
        let pending = self.pending.take();
        self.savepoint_unsent.set(false);
        if pending.is_empty() {
            return Ok(request.await?);
        }
        let (control, answer) = tokio::join!(biased; client.batch_execute(&pending), request);
        control?;
        Ok(answer?)
    }

    /// Runs one statement; returns the rows it changed.
    pub fn exec(&self, sql: &str, params: Params<'_>) -> Result<u64, DbError> {
        let (rt, client) = self.parts()?;
        rt.block_on(async {
            let stmt = self.prepared(client, sql).await?;
            self.after_pending(client, client.execute(&stmt, params))
                .await
        })
    }

    /// Runs statements pipelined, in the order given: every request is sent
    /// before any answer is awaited, so they cost one round trip together.
    pub fn run_all(&self, statements: &[(&str, Vec<&(dyn ToSql + Sync)>)]) -> Result<(), DbError> {
        if statements.is_empty() {
            return Ok(());
        }
        let (rt, client) = self.parts()?;
        rt.block_on(async {
            let mut prepared = Vec::with_capacity(statements.len());
            for (sql, _) in statements {
                prepared.push(self.prepared(client, sql).await?);
            }
            let requests = statements
                .iter()
                .zip(&prepared)
                .map(|((_, params), stmt)| client.execute(stmt, &params[..]))
                .collect();
            self.after_pending(client, in_order(requests)).await
        })
    }

    /// `exec` for a statement whose row count does not matter.
    pub fn run(&self, sql: &str, params: Params<'_>) -> Result<(), DbError> {
        self.exec(sql, params).map(drop)
    }

    pub fn rows(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, DbError> {
        let (rt, client) = self.parts()?;
        rt.block_on(async {
            let stmt = self.prepared(client, sql).await?;
            self.after_pending(client, client.query(&stmt, params))
                .await
        })
    }

    pub fn first(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>, DbError> {
        Ok(self.rows(sql, params)?.into_iter().next())
    }

    /// Sends the pending transaction control and then `sql` (simple
    /// queries, one round trip).
    fn batch(&mut self, sql: &str) -> Result<(), String> {
        let text = std::mem::take(self.pending.get_mut()) + sql;
        self.savepoint_unsent.set(false);
        let (rt, client) = self.parts().map_err(|e| e.to_string())?;
        let result = rt.block_on(client.batch_execute(&text));
        let closed = client.is_closed();
        result.map_err(|e| {
            if closed {
                self.client = None;
            }
            DbError::from(e).to_string()
        })
    }

    fn connect(&mut self) -> Result<(), String> {
        if self.rt.is_none() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the writer's runtime: {e}"))?;
            self.rt = Some(rt);
        }
        let Some(rt) = self.rt.as_ref() else {
            return Err("no runtime".into());
        };
        let (client, connection) = rt
            .block_on(self.config.connect(tokio_postgres::NoTls))
            .map_err(|e| DbError::from(e).to_string())?;
        // Driven whenever the writer waits on a statement (block_on runs
        // this runtime's tasks); ends when the client is dropped.
        rt.spawn(connection);
        self.statements.borrow_mut().clear();
        self.pending.get_mut().clear();
        self.client = Some(client);
        Ok(())
    }
}

/// Drives every future to its end, polling them in the order given each
/// time: tokio-postgres sends a request when its future is first polled
/// and runs requests in the order sent. The first error, if any.
async fn in_order<F>(requests: Vec<F>) -> Result<(), tokio_postgres::Error>
where
    F: Future<Output = Result<u64, tokio_postgres::Error>>,
{
    let mut requests: Vec<Option<Pin<Box<F>>>> =
        requests.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut first_error = None;
    std::future::poll_fn(|cx| {
        let mut waiting = false;
        for slot in &mut requests {
            if let Some(request) = slot {
                match request.as_mut().poll(cx) {
                    Poll::Ready(result) => {
                        if let Err(e) = result {
                            first_error.get_or_insert(e);
                        }
                        *slot = None;
                    }
                    Poll::Pending => waiting = true,
                }
            }
        }
        if waiting {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    first_error.map_or(Ok(()), Err)
}

impl BatchConnection for PgConn {
    fn begin(&mut self) -> Result<(), String> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = None;
            self.connect()?;
        }
        // Sent with the batch's first statement (its locks, usually).
        let pending = self.pending.get_mut();
        pending.clear();
        pending.push_str("BEGIN;");
        self.savepoint_unsent.set(false);
        self.batch_locks.clear();
        Ok(())
    }

    fn savepoint(&mut self) -> Result<(), String> {
        self.pending.get_mut().push_str("SAVEPOINT job;");
        self.savepoint_unsent.set(true);
        Ok(())
    }

    fn end_savepoint(&mut self, keep: bool) -> Result<(), String> {
        if self.savepoint_unsent.replace(false) {
            // The write sent no statement: its savepoint need not exist.
            let pending = self.pending.get_mut();
            if let Some(rest) = pending.strip_suffix("SAVEPOINT job;") {
                pending.truncate(rest.len());
                return Ok(());
            }
        }
        if keep {
            self.pending.get_mut().push_str("RELEASE SAVEPOINT job;");
            Ok(())
        } else {
            self.batch("ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job")
        }
    }

    fn commit(&mut self) -> Result<(), String> {
        self.batch_locks.clear();
        self.batch("COMMIT")
    }

    fn rollback(&mut self) {
        self.batch_locks.clear();
        self.pending.get_mut().clear();
        self.savepoint_unsent.set(false);
        if self.batch("ROLLBACK").is_err() {
            // The connection's state is unknown: start afresh.
            self.client = None;
        }
    }

    fn lock_subscriptions(&mut self, keys: &[String]) -> Result<(), String> {
        if keys.is_empty() {
            return Ok(());
        }
        // The same locks as `Ledger::lock_subscription`, all in one round
        // trip, in the order given (sorted by the writer).
        self.run(
            "SELECT pg_advisory_xact_lock(hashtextextended(k, 0))
               FROM unnest($1::text[]) WITH ORDINALITY AS t(k, n) ORDER BY n",
            &[&keys],
        )
        .map_err(|e| e.to_string())?;
        let mut held = keys.to_vec();
        held.sort_unstable();
        self.batch_locks = held;
        Ok(())
    }
}

impl Columns for Row {
    fn opt_i64(&self, i: usize) -> Result<Option<i64>, DbError> {
        Ok(self.try_get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, DbError> {
        Ok(self.try_get(i)?)
    }
    fn opt_bool(&self, i: usize) -> Result<Option<bool>, DbError> {
        Ok(self.try_get(i)?)
    }
    fn opt_bytes(&self, i: usize) -> Result<Option<Vec<u8>>, DbError> {
        Ok(self.try_get(i)?)
    }
}
