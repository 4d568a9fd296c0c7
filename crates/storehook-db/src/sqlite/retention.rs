//! Pruning in small batches, giving the space back, and the file's size.

use std::path::Path;

use rusqlite::{params, Connection};

use crate::{DatabaseSize, DbError, PruneBatch, PruneReport};

pub(crate) fn prune(conn: &Connection, batch: PruneBatch) -> Result<PruneReport, DbError> {
    let mut report = PruneReport::default();
    let limit = i64::from(batch.limit.max(1));
    if let Some(cutoff) = batch.raw_body_before_ms {
        // An empty blob, not NULL: the column stays NOT NULL, and the
        // partial index `notifications_raw_kept` drops the row.
        report.raw_bodies = conn.execute(
            "UPDATE notifications SET raw_body = X'' WHERE id IN (
                 SELECT id FROM notifications
                 WHERE length(raw_body) > 0 AND received_at < ?1
                 ORDER BY received_at LIMIT ?2)",
            params![cutoff, limit],
        )? as u64;
    }
    if let Some(cutoff) = batch.deliveries_before_ms {
        let ids: Vec<i64> = conn
            .prepare_cached(
                "SELECT id FROM deliveries
                 WHERE status = 'delivered' AND delivered_at < ?1
                 ORDER BY delivered_at LIMIT ?2",
            )?
            .query_map(params![cutoff, limit], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut attempts =
            conn.prepare_cached("DELETE FROM delivery_attempts WHERE delivery_id = ?1")?;
        let mut delivery = conn.prepare_cached("DELETE FROM deliveries WHERE id = ?1")?;
        for id in ids {
            report.attempts += attempts.execute([id])? as u64;
            report.deliveries += delivery.execute([id])? as u64;
        }
    }
    Ok(report)
}

/// `PRAGMA incremental_vacuum`: moves up to `max_pages` free pages to the
/// end of the file and truncates them off.
pub(crate) fn reclaim(conn: &Connection, max_pages: u32) -> Result<u64, DbError> {
    let before: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    // Each step of this pragma frees one page (as a row without columns):
    // it must be stepped to the end, not executed once.
    let mut stmt = conn.prepare(&format!("PRAGMA incremental_vacuum({})", max_pages.max(1)))?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    drop(rows);
    let after: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    Ok(before.saturating_sub(after).max(0) as u64)
}

/// `PRAGMA wal_checkpoint(TRUNCATE)`: the log folded into the database and
/// emptied. Busy (a reader still on an older snapshot) is not an error: the
/// next run tries again.
pub(crate) fn checkpoint(conn: &Connection) -> Result<(), DbError> {
    let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
    if busy != 0 {
        tracing::debug!("retention: checkpoint busy; the log is emptied at a later run");
    }
    Ok(())
}

pub(crate) fn size(conn: &Connection, path: &Path) -> Result<DatabaseSize, DbError> {
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let file = |suffix: &str| {
        std::fs::metadata(super::suffixed(path, suffix))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    Ok(DatabaseSize {
        file_bytes: file("") + file("-wal"),
        free_bytes: (page_size.max(0) as u64) * (free.max(0) as u64),
    })
}

/// Makes the database able to shrink (`auto_vacuum = INCREMENTAL`). A new
/// database only needs the setting; an existing one is rebuilt once with
/// VACUUM (logged: on a large database it takes a while and needs free
/// space of the database's size). A failure leaves the database as it was,
/// able to reuse freed pages but not to shrink.
pub(crate) fn enable_incremental_vacuum(conn: &Connection) -> Result<(), DbError> {
    let mode: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
    if mode == 2 {
        return Ok(());
    }
    conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL")?;
    let mode: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
    if mode == 2 {
        return Ok(());
    }
    // A new database (no tables yet) only needs the VACUUM to apply the
    // setting; an existing one is worth a line, since it takes a while.
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
    if tables > 0 {
        tracing::info!(
            "rebuilding the database once so that pruned space can be given back (VACUUM)"
        );
    }
    if let Err(e) = conn.execute_batch("VACUUM") {
        tracing::warn!(error = %e, "VACUUM failed; pruned space is reused but the file will not shrink");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One call gives back up to `max_pages` pages, not one.
    #[test]
    fn reclaim_frees_up_to_the_pages_asked_for_in_one_call() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL")
            .unwrap();
        conn.execute_batch(
            "CREATE TABLE t (b BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
             INSERT INTO t SELECT zeroblob(4000) FROM n;
             DELETE FROM t;",
        )
        .unwrap();
        let free: i64 = conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))
            .unwrap();
        assert!(free >= 150, "{free}");
        assert_eq!(reclaim(&conn, 100).unwrap(), 100);
        assert_eq!(reclaim(&conn, 10_000).unwrap(), free as u64 - 100);
        assert_eq!(reclaim(&conn, 10_000).unwrap(), 0);
    }
}
