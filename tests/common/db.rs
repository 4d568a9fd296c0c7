//! Reading what a server stored, beside it (as an operator's SQL would):
//! its SQLite file, or its PostgreSQL database on the PostgreSQL pass.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub enum Probe {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Probe {
    /// The database of the test in `dir` whose SQLite file would be `file`.
    pub fn new(dir: &Path, file: &Path) -> Self {
        match super::postgres_url(dir) {
            Some(url) => Probe::Postgres(url),
            None => Probe::Sqlite(file.to_owned()),
        }
    }

    /// Rows of `(text, count)`; the SQL is the same in both dialects.
    pub async fn pairs(&self, sql: &str) -> Vec<(String, i64)> {
        match self {
            Probe::Sqlite(path) => {
                let conn = rusqlite::Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )
                .expect("open the database read-only");
                let mut stmt = conn.prepare(sql).expect("prepare");
                let rows = stmt
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .expect("query");
                rows.collect::<Result<_, _>>().expect("rows")
            }
            Probe::Postgres(url) => {
                let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .expect("connect to PostgreSQL");
                tokio::spawn(connection);
                client
                    .query(sql, &[])
                    .await
                    .expect("query")
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect()
            }
        }
    }

    /// One count.
    pub async fn count(&self, sql: &str) -> i64 {
        let wrapped = format!("SELECT 'n', ({sql})");
        self.pairs(&wrapped).await.first().map_or(0, |(_, n)| *n)
    }

    /// Notification id → how many rows of `store` carry it.
    pub async fn stored_ids(&self, store: &str) -> HashMap<String, i64> {
        self.pairs(&format!(
            "SELECT notification_id, count(*) FROM notifications WHERE store = '{store}' GROUP BY notification_id"
        ))
        .await
        .into_iter()
        .collect()
    }
}
