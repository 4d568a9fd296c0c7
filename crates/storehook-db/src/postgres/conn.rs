//! The writer's PostgreSQL connection: the group-commit writer's thread
//! runs each statement to completion on the runtime (it is not a runtime
//! thread, so blocking is its job), which lets the backend-neutral rules
//! stay plain synchronous code.

use deadpool_postgres::{Object, Pool};
use tokio::runtime::Handle;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::records::Columns;
use crate::writer::BatchConnection;
use crate::DbError;

pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

pub(crate) struct PgConn {
    rt: Handle,
    pool: Pool,
    /// Taken from the pool at the first batch and kept; dropped after a
    /// failure so the next batch starts on a fresh connection.
    client: Option<Object>,
}

impl PgConn {
    pub fn new(rt: Handle, pool: Pool) -> Self {
        Self {
            rt,
            pool,
            client: None,
        }
    }

    fn client(&self) -> Result<&Object, DbError> {
        self.client
            .as_ref()
            .ok_or_else(|| DbError::Unavailable("no database connection".into()))
    }

    /// Runs one statement; returns the rows it changed.
    pub fn exec(&self, sql: &str, params: Params<'_>) -> Result<u64, DbError> {
        let client = self.client()?;
        self.rt.block_on(async {
            let stmt = client.prepare_cached(sql).await?;
            Ok(client.execute(&stmt, params).await?)
        })
    }

    /// `exec` for a statement whose row count does not matter.
    pub fn run(&self, sql: &str, params: Params<'_>) -> Result<(), DbError> {
        self.exec(sql, params).map(drop)
    }

    pub fn rows(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, DbError> {
        let client = self.client()?;
        self.rt.block_on(async {
            let stmt = client.prepare_cached(sql).await?;
            Ok(client.query(&stmt, params).await?)
        })
    }

    pub fn first(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>, DbError> {
        Ok(self.rows(sql, params)?.into_iter().next())
    }

    fn batch(&mut self, sql: &str) -> Result<(), String> {
        let Some(client) = self.client.as_ref() else {
            return Err("no database connection".into());
        };
        let result = self.rt.block_on(client.batch_execute(sql));
        let closed = client.is_closed();
        result.map_err(|e| {
            if closed {
                self.client = None;
            }
            DbError::from(e).to_string()
        })
    }
}

impl BatchConnection for PgConn {
    fn begin(&mut self) -> Result<(), String> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            let pool = self.pool.clone();
            let client = self
                .rt
                .block_on(pool.get())
                .map_err(|e| DbError::from(e).to_string())?;
            self.client = Some(client);
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
