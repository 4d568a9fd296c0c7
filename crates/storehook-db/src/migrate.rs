//! `storehook migrate-db`: copies an SQLite database into PostgreSQL.
//!
//! Every table the server keeps (notifications, subscriptions, snapshots,
//! events, deliveries and their attempts, statistics, checks, jobs,
//! acknowledgements) is copied in batches, each its own transaction with
//! `ON CONFLICT DO NOTHING`, so a copy that was interrupted is simply run
//! again. At the end every table's row count and a checksum of its rows (a
//! sum of per-row SHA-256 digests, so order and collation do not matter)
//! must agree on both sides; identity sequences continue after the copied
//! ids.

use std::path::Path;

use rusqlite::types::ValueRef;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls};

use crate::DbError;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Text,
    Bool,
    Bytes,
}

use Kind::{Bool, Bytes, Int, Text};

struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Kind)],
    /// The conflict target: the primary key.
    key: &'static str,
    /// The identity column whose sequence must continue after the copy.
    identity: Option<&'static str>,
}

/// In foreign-key order.
const TABLES: &[Table] = &[
    Table {
        name: "notifications",
        columns: &[
            ("id", Int),
            ("store", Text),
            ("notification_id", Text),
            ("received_at", Int),
            ("verdict", Text),
            ("subscription_key", Text),
            ("event_type", Text),
            ("raw_type", Text),
            ("environment", Text),
            ("occurred_at", Int),
            ("product_id", Text),
            ("app_id", Text),
            ("app_user_id_hint", Text),
            ("continues_key", Text),
            ("attention", Text),
            ("state_json", Text),
            ("details_json", Text),
            ("decoded_json", Text),
            ("rejection_code", Text),
            ("rejection_message", Text),
            ("raw_body", Bytes),
            ("source", Text),
            ("purchase_kind", Text),
        ],
        key: "id",
        identity: Some("id"),
    },
    Table {
        name: "subscriptions",
        columns: &[
            ("store", Text),
            ("subscription_key", Text),
            ("app_user_id", Text),
            ("environment", Text),
            ("product_id", Text),
            ("status", Text),
            ("expires_at", Int),
            ("auto_renew", Bool),
            ("last_event_type", Text),
            ("last_event_at", Int),
            ("state_as_of", Int),
            ("continues_key", Text),
            ("state_pending", Bool),
            ("attention", Text),
            ("created_at", Int),
            ("updated_at", Int),
            ("event_sequence", Int),
        ],
        key: "store, subscription_key",
        identity: None,
    },
    Table {
        name: "state_snapshots",
        columns: &[
            ("id", Int),
            ("store", Text),
            ("subscription_key", Text),
            ("as_of", Int),
            ("state_json", Text),
            ("fetched_at", Int),
            ("details_json", Text),
        ],
        key: "id",
        identity: Some("id"),
    },
    Table {
        name: "pending_state_fetches",
        columns: &[("store", Text), ("subscription_key", Text), ("since", Int)],
        key: "store, subscription_key",
        identity: None,
    },
    Table {
        name: "store_stats",
        columns: &[
            ("store", Text),
            ("last_received", Int),
            ("last_verified", Int),
            ("last_rejected", Int),
            ("last_rejection_reason", Text),
            ("last_rejection_message", Text),
            ("accepted", Int),
            ("untracked", Int),
            ("duplicates", Int),
            ("rejected", Int),
            ("recovered", Int),
        ],
        key: "store",
        identity: None,
    },
    Table {
        name: "events",
        columns: &[
            ("seq", Int),
            ("event_id", Text),
            ("notification_row", Int),
            ("store", Text),
            ("subscription_key", Text),
            ("event_type", Text),
            ("environment", Text),
            ("app_id", Text),
            ("app_user_id", Text),
            ("sequence", Int),
            ("created_at", Int),
            ("body", Text),
        ],
        key: "seq",
        identity: Some("seq"),
    },
    Table {
        name: "deliveries",
        columns: &[
            ("id", Int),
            ("endpoint", Text),
            ("kind", Text),
            ("event_seq", Int),
            ("event_id", Text),
            ("notification_row", Int),
            ("order_key", Text),
            ("status", Text),
            ("attempts", Int),
            ("next_attempt_at", Int),
            ("created_at", Int),
            ("last_attempt_at", Int),
            ("last_status", Int),
            ("last_error", Text),
            ("delivered_at", Int),
            ("headers_json", Text),
            ("payload", Bytes),
        ],
        key: "id",
        identity: Some("id"),
    },
    Table {
        name: "delivery_attempts",
        columns: &[
            ("id", Int),
            ("delivery_id", Int),
            ("at", Int),
            ("status_code", Int),
            ("error", Text),
            ("duration_ms", Int),
            ("response", Text),
        ],
        key: "id",
        identity: Some("id"),
    },
    Table {
        name: "store_checks",
        columns: &[
            ("store", Text),
            ("checked_at", Int),
            ("verdict", Text),
            ("report_json", Text),
        ],
        key: "store",
        identity: None,
    },
    Table {
        name: "store_jobs",
        columns: &[
            ("id", Int),
            ("store", Text),
            ("kind", Text),
            ("since_ms", Int),
            ("until_ms", Int),
            ("only_failures", Bool),
            ("status", Text),
            ("cursor", Text),
            ("pages", Int),
            ("scanned", Int),
            ("recovered", Int),
            ("duplicates", Int),
            ("skipped", Int),
            ("progress", Text),
            ("error", Text),
            ("created_at", Int),
            ("updated_at", Int),
            ("finished_at", Int),
        ],
        key: "id",
        identity: Some("id"),
    },
    Table {
        name: "acknowledgements",
        columns: &[
            ("store", Text),
            ("subscription_key", Text),
            ("app_id", Text),
            ("product_id", Text),
            ("purchase_kind", Text),
            ("status", Text),
            ("purchased_at", Int),
            ("attempts", Int),
            ("next_attempt_at", Int),
            ("last_error", Text),
            ("flagged", Bool),
            ("created_at", Int),
            ("updated_at", Int),
        ],
        key: "store, subscription_key",
        identity: None,
    },
];

/// One value, as both sides agree on it.
#[derive(Debug, Clone)]
enum Value {
    Null,
    Int(i64),
    Text(String),
    Bool(bool),
    Bytes(Vec<u8>),
}

impl Value {
    /// Feeds the checksum: a tag and the value, so `NULL`, `''` and `0` differ.
    fn digest_into(&self, ctx: &mut ring::digest::Context) {
        match self {
            Value::Null => ctx.update(b"n"),
            Value::Int(v) => {
                ctx.update(b"i");
                ctx.update(&v.to_le_bytes());
            }
            Value::Text(v) => {
                ctx.update(b"t");
                ctx.update(&(v.len() as u64).to_le_bytes());
                ctx.update(v.as_bytes());
            }
            Value::Bool(v) => ctx.update(if *v { b"b1" } else { b"b0" }),
            Value::Bytes(v) => {
                ctx.update(b"x");
                ctx.update(&(v.len() as u64).to_le_bytes());
                ctx.update(v);
            }
        }
    }

    /// As a parameter of a `kind` column (a NULL of the column's type).
    fn to_sql(&self, kind: Kind) -> &(dyn ToSql + Sync) {
        const NULL_INT: Option<i64> = None;
        const NULL_TEXT: Option<&str> = None;
        const NULL_BOOL: Option<bool> = None;
        const NULL_BYTES: Option<&[u8]> = None;
        match (self, kind) {
            (Value::Null, Int) => &NULL_INT,
            (Value::Null, Text) => &NULL_TEXT,
            (Value::Null, Bool) => &NULL_BOOL,
            (Value::Null, Bytes) => &NULL_BYTES,
            (Value::Int(v), _) => v,
            (Value::Text(v), _) => v,
            (Value::Bool(v), _) => v,
            (Value::Bytes(v), _) => v,
        }
    }
}

/// Order-independent: a sum of per-row digests, and the row count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableSum {
    pub rows: u64,
    pub checksum: u64,
}

impl TableSum {
    fn add(&mut self, row: &[Value]) {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for v in row {
            v.digest_into(&mut ctx);
        }
        let digest = ctx.finish();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest.as_ref()[..8]);
        self.rows += 1;
        self.checksum = self.checksum.wrapping_add(u64::from_le_bytes(first));
    }
}

/// What a copy did, per table.
#[derive(Debug, Clone, Default)]
pub struct MigrateReport {
    pub tables: Vec<(String, TableSum)>,
    /// Rows newly written by this run (a rerun writes only what is missing).
    pub written: u64,
}

/// Copies the SQLite database at `sqlite` into the PostgreSQL database at
/// `url` (migrated first), `batch_rows` rows per transaction; `progress`
/// hears of every committed batch. Fails unless both sides end equal.
pub async fn copy_sqlite_to_postgres(
    sqlite: &Path,
    url: &str,
    batch_rows: usize,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<MigrateReport, DbError> {
    if !sqlite.exists() {
        return Err(DbError::Config(format!(
            "{} does not exist: nothing to copy",
            sqlite.display()
        )));
    }
    let (mut client, connection) = tokio_postgres::connect(url, NoTls).await?;
    let connection = tokio::spawn(connection);
    crate::postgres::migrate(&mut client).await?;
    // The source is brought to this build's schema first (a no-op when the
    // server ran this version).
    {
        let path = sqlite.to_owned();
        tokio::task::spawn_blocking(move || {
            crate::sqlite::SqliteStorage::open(crate::sqlite::SqliteOptions::new(path)).map(drop)
        })
        .await
        .map_err(|e| DbError::Unavailable(e.to_string()))??;
    }
    let batch_rows = batch_rows.max(1);
    let mut report = MigrateReport::default();
    for table in TABLES {
        let mut after: i64 = 0;
        // The source's sum comes from the rows as they are copied: one read.
        let mut source = TableSum::default();
        loop {
            let (rows, last) = read_sqlite_batch(sqlite, table, after, batch_rows).await?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                source.add(row);
            }
            report.written += write_batch(&mut client, table, &rows).await?;
            after = last;
            progress(&format!(
                "{}: copied up to row {after} ({} rows written so far)",
                table.name, report.written
            ));
        }
        if let Some(column) = table.identity {
            client
                .execute(
                    &format!(
                        "SELECT setval(pg_get_serial_sequence('{0}', '{column}'),
                                       GREATEST((SELECT max({column}) FROM {0}), 1))",
                        table.name
                    ),
                    &[],
                )
                .await?;
        }
        let target = sum_postgres(&client, table).await?;
        if source != target {
            return Err(DbError::Corrupt(format!(
                "{}: {} rows (checksum {:016x}) in SQLite, {} rows (checksum {:016x}) in PostgreSQL; \
                 the target must start empty",
                table.name, source.rows, source.checksum, target.rows, target.checksum
            )));
        }
        progress(&format!(
            "{}: {} rows, checksum {:016x} on both sides",
            table.name, source.rows, source.checksum
        ));
        report.tables.push((table.name.to_owned(), source));
    }
    // The chart tables are derived: the server's next start builds them
    // from the copied history.
    crate::postgres::request_chart_rebuild(&client).await?;
    drop(client);
    let _ = connection.await;
    Ok(report)
}

fn column_list(table: &Table) -> String {
    table
        .columns
        .iter()
        .map(|(c, _)| *c)
        .collect::<Vec<_>>()
        .join(", ")
}

fn sqlite_value(v: ValueRef<'_>, kind: Kind) -> Result<Value, DbError> {
    Ok(match (v, kind) {
        (ValueRef::Null, _) => Value::Null,
        (ValueRef::Integer(i), Kind::Bool) => Value::Bool(i != 0),
        (ValueRef::Integer(i), _) => Value::Int(i),
        (ValueRef::Text(t), Kind::Bytes) | (ValueRef::Blob(t), Kind::Bytes) => {
            Value::Bytes(t.to_vec())
        }
        (ValueRef::Text(t), _) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        (ValueRef::Blob(b), Kind::Text) => Value::Text(String::from_utf8_lossy(b).into_owned()),
        (other, kind) => {
            return Err(DbError::Corrupt(format!(
                "unexpected SQLite value {other:?} for a {} column",
                match kind {
                    Int => "integer",
                    Text => "text",
                    Bool => "boolean",
                    Bytes => "bytes",
                }
            )))
        }
    })
}

/// Rows after SQLite rowid `after`, in rowid order; the last rowid read.
async fn read_sqlite_batch(
    path: &Path,
    table: &'static Table,
    after: i64,
    limit: usize,
) -> Result<(Vec<Vec<Value>>, i64), DbError> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        let sql = format!(
            "SELECT rowid, {} FROM {} WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
            column_list(table),
            table.name
        );
        let mut stmt = conn.prepare(&sql)?;
        let mut rows = stmt.query(rusqlite::params![after, limit as i64])?;
        let mut out = Vec::new();
        let mut last = after;
        while let Some(row) = rows.next()? {
            last = row.get(0)?;
            let mut values = Vec::with_capacity(table.columns.len());
            for (i, (_, kind)) in table.columns.iter().enumerate() {
                values.push(sqlite_value(row.get_ref(i + 1)?, *kind)?);
            }
            out.push(values);
        }
        Ok((out, last))
    })
    .await
    .map_err(|e| DbError::Unavailable(e.to_string()))?
}

/// Inserts a batch in one transaction; returns how many rows were new.
async fn write_batch(
    client: &mut Client,
    table: &Table,
    rows: &[Vec<Value>],
) -> Result<u64, DbError> {
    let placeholders: Vec<String> = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| match kind {
            // A NULL parameter needs its type said.
            Int => format!("${}::bigint", i + 1),
            Text => format!("${}::text", i + 1),
            Bool => format!("${}::boolean", i + 1),
            Bytes => format!("${}::bytea", i + 1),
        })
        .collect();
    let sql = format!(
        "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE VALUES ({}) ON CONFLICT ({}) DO NOTHING",
        table.name,
        column_list(table),
        placeholders.join(", "),
        table.key
    );
    let tx = client.transaction().await?;
    let stmt = tx.prepare(&sql).await?;
    let mut written = 0;
    for row in rows {
        let params: Vec<&(dyn ToSql + Sync)> = row
            .iter()
            .zip(table.columns)
            .map(|(v, (_, kind))| v.to_sql(*kind))
            .collect();
        written += tx.execute(&stmt, &params).await?;
    }
    tx.commit().await?;
    Ok(written)
}

async fn sum_postgres(client: &Client, table: &Table) -> Result<TableSum, DbError> {
    let mut sum = TableSum::default();
    let rows = client
        .query(
            &format!("SELECT {} FROM {}", column_list(table), table.name),
            &[],
        )
        .await?;
    for row in &rows {
        let mut values = Vec::with_capacity(table.columns.len());
        for (i, (_, kind)) in table.columns.iter().enumerate() {
            values.push(
                match kind {
                    Int => row.try_get::<_, Option<i64>>(i)?.map(Value::Int),
                    Text => row.try_get::<_, Option<String>>(i)?.map(Value::Text),
                    Bool => row.try_get::<_, Option<bool>>(i)?.map(Value::Bool),
                    Bytes => row.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Bytes),
                }
                .unwrap_or(Value::Null),
            );
        }
        sum.add(&values);
    }
    Ok(sum)
}
