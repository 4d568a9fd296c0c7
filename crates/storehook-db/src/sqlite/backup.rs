//! `storehook backup` and `storehook restore`, and the lock that tells a
//! restore a server has the database open.
//!
//! The backup uses SQLite's online backup API in a single step: one read
//! transaction copies every page, so the copy is the database as of one
//! instant, and in WAL mode that reader does not stop the server's writer
//! (a stepwise backup would restart whenever the server commits, and might
//! never finish under load). The copy is written beside the target and
//! renamed into place only after `integrity_check` passed.

use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use crate::DbError;

/// What a backup wrote.
#[derive(Debug, Clone)]
pub struct BackupReport {
    pub bytes: u64,
    pub notifications: i64,
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    pub notifications: i64,
    /// Where the database that was replaced now is.
    pub previous: Option<PathBuf>,
}

/// The lock file of a database: servers hold it shared while the database
/// is open; a restore needs it exclusively.
fn lock_path(db: &Path) -> PathBuf {
    super::suffixed(db, ".lock")
}

fn open_lock(db: &Path) -> Result<File, DbError> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).truncate(false).write(true);
    // Owner-only like the database beside it.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(lock_path(db))
        .map_err(|e| DbError::Unavailable(format!("cannot open {}: {e}", lock_path(db).display())))
}

/// Held by an open [`crate::SqliteStorage`] for its lifetime.
pub(crate) fn hold_shared(db: &Path) -> Result<File, DbError> {
    let lock = open_lock(db)?;
    lock.lock_shared().map_err(|e| {
        DbError::Unavailable(format!("cannot lock {}: {e}", lock_path(db).display()))
    })?;
    Ok(lock)
}

/// Copies the database at `db` to `dest` while it may be in use.
pub fn backup(db: &Path, dest: &Path) -> Result<BackupReport, DbError> {
    if !db.exists() {
        return Err(DbError::Unavailable(format!(
            "there is no database at {}",
            db.display()
        )));
    }
    if same_file(db, dest) {
        return Err(DbError::Unavailable(
            "the backup file cannot be the database itself".into(),
        ));
    }
    let source = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    source.busy_timeout(std::time::Duration::from_secs(10))?;
    let partial = sibling(dest, "partial");
    let _ = std::fs::remove_file(&partial);
    {
        let mut target = Connection::open(&partial)?;
        let backup = rusqlite::backup::Backup::new(&source, &mut target)?;
        // -1: every page in one step (one consistent read transaction).
        match backup.step(-1)? {
            rusqlite::backup::StepResult::Done => {}
            other => {
                return Err(DbError::Unavailable(format!(
                    "the backup did not complete ({other:?}); try again"
                )))
            }
        }
    }
    let notifications = check(&partial)?;
    std::fs::rename(&partial, dest).map_err(|e| {
        DbError::Unavailable(format!("cannot move the backup to {}: {e}", dest.display()))
    })?;
    restrict(dest);
    let bytes = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
    Ok(BackupReport {
        bytes,
        notifications,
    })
}

/// Replaces the database at `db` with the backup `from`, which must pass
/// `integrity_check`. Refuses while a server holds the database open. The
/// replaced database (if any) is renamed `<db>.before-restore-<unix time>`.
pub fn restore(from: &Path, db: &Path) -> Result<RestoreReport, DbError> {
    let notifications = check(from)?;
    let lock = open_lock(db)?;
    if lock.try_lock().is_err() {
        return Err(DbError::Unavailable(format!(
            "{} is open in a running storehook; stop it before restoring",
            db.display()
        )));
    }
    let incoming = sibling(db, "restoring");
    std::fs::copy(from, &incoming)
        .and_then(|_| File::open(&incoming).and_then(|f| f.sync_all()))
        .map_err(|e| DbError::Unavailable(format!("cannot copy {}: {e}", from.display())))?;
    restrict(&incoming);
    let previous = if db.exists() {
        // Fold the old WAL into its database first, so the kept copy is whole.
        if let Ok(old) = Connection::open(db) {
            let _ = old.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let kept = sibling(db, &format!("before-restore-{stamp}"));
        std::fs::rename(db, &kept).map_err(|e| {
            DbError::Unavailable(format!("cannot move {} aside: {e}", db.display()))
        })?;
        Some(kept)
    } else {
        None
    };
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(super::suffixed(db, suffix));
    }
    std::fs::rename(&incoming, db).map_err(|e| {
        DbError::Unavailable(format!("cannot move the backup into {}: {e}", db.display()))
    })?;
    drop(lock);
    Ok(RestoreReport {
        notifications,
        previous,
    })
}

/// `PRAGMA integrity_check` on `path`; returns its notification count.
pub fn check(path: &Path) -> Result<i64, DbError> {
    if !path.exists() {
        return Err(DbError::Unavailable(format!(
            "{} does not exist",
            path.display()
        )));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let verdict: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| {
            DbError::Corrupt(format!("{} is not a SQLite database: {e}", path.display()))
        })?;
    if verdict != "ok" {
        return Err(DbError::Corrupt(format!(
            "{} fails integrity_check: {verdict}",
            path.display()
        )));
    }
    conn.query_row("SELECT count(*) FROM notifications", [], |r| r.get(0))
        .map_err(|e| {
            DbError::Corrupt(format!(
                "{} is not a storehook database: {e}",
                path.display()
            ))
        })
}

fn sibling(path: &Path, extension: &str) -> PathBuf {
    super::suffixed(path, &format!(".{extension}"))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Backups hold everything the database does: owner-only.
fn restrict(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    #[cfg(not(unix))]
    let _ = path;
}
