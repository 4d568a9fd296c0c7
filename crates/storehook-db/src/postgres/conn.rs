//! The writer's PostgreSQL connection: the group-commit writer's thread
//! runs each statement to completion (it is not a runtime thread, so
//! blocking is its job), which lets the backend-neutral rules stay plain
//! synchronous code. The connection is the writer's own, driven by a
//! runtime on the writer thread itself: a statement costs one round trip
//! to PostgreSQL and no hop to another thread and back (measured: the
//! writer is bound by statement latency, not by CPU).

use std::cell::RefCell;
use std::collections::HashMap;

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
}

impl PgConn {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            rt: None,
            client: None,
            statements: RefCell::new(HashMap::new()),
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

    /// Runs one statement; returns the rows it changed.
    pub fn exec(&self, sql: &str, params: Params<'_>) -> Result<u64, DbError> {
        let (rt, client) = self.parts()?;
        rt.block_on(async {
            let stmt = self.prepared(client, sql).await?;
            Ok(client.execute(&stmt, params).await?)
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
            Ok(client.query(&stmt, params).await?)
        })
    }

    pub fn first(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>, DbError> {
        Ok(self.rows(sql, params)?.into_iter().next())
    }

    fn batch(&mut self, sql: &str) -> Result<(), String> {
        let (rt, client) = self.parts().map_err(|e| e.to_string())?;
        let result = rt.block_on(client.batch_execute(sql));
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
        self.client = Some(client);
        Ok(())
    }
}

impl BatchConnection for PgConn {
    fn begin(&mut self) -> Result<(), String> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = None;
            self.connect()?;
        }
        self.batch("BEGIN")
    }

    fn savepoint(&mut self) -> Result<(), String> {
        self.batch("SAVEPOINT job")
    }

    fn end_savepoint(&mut self, keep: bool) -> Result<(), String> {
        self.batch(if keep {
            "RELEASE SAVEPOINT job"
        } else {
            "ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job"
        })
    }

    fn commit(&mut self) -> Result<(), String> {
        self.batch("COMMIT")
    }

    fn rollback(&mut self) {
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
        .map_err(|e| e.to_string())
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
