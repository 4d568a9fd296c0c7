//! After a run: the SQLite file, opened read-only, must hold every
//! notification that got a 200 exactly once (with the right verdict), none
//! that was refused, and nothing else of this workload.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::load::{Kind, Sample};
use crate::traffic::{Store, Workload};

#[derive(Debug, Default, Serialize)]
pub struct DbCheck {
    /// Rows of this workload found in `notifications`.
    pub rows: usize,
    /// Fresh notifications answered 200 (each must be stored once).
    pub acknowledged: usize,
    pub acknowledged_missing: usize,
    pub wrong_verdict: usize,
    /// Forged requests (each must be absent).
    pub forged: usize,
    pub forged_stored: usize,
    /// Fresh notifications without a 200 (no answer): stored or not, both allowed.
    pub unacknowledged: usize,
    pub unacknowledged_stored: usize,
    /// Rows with this workload's ids that no request explains.
    pub unexplained_rows: usize,
    /// Tracked subscriptions that got an acknowledged notification but whose
    /// state was not applied.
    pub tracked_not_applied: usize,
    pub ok: bool,
}

pub fn check(db: &Path, workload: &Workload, samples: &[Sample]) -> Result<DbCheck> {
    let conn = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {} read-only", db.display()))?;

    // (store, notification id) → verdict, for this workload's ids only:
    // every id carries the workload's nonce (Google's numeric message ids
    // start with it in decimal). UNIQUE (store, notification_id) in the
    // schema already rules out a second row.
    let google_prefix = u32::from_str_radix(&workload.nonce, 16).unwrap_or(0);
    let mut stored: HashMap<(String, String), String> = HashMap::new();
    {
        let mut stmt = conn.prepare(
            "SELECT store, notification_id, verdict FROM notifications
             WHERE (store != 'google' AND notification_id LIKE ?1)
                OR (store = 'google' AND notification_id LIKE ?2)",
        )?;
        let rows = stmt.query_map(
            [format!("%{}%", workload.nonce), format!("{google_prefix}%")],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            },
        )?;
        for row in rows {
            let (store, id, verdict) = row?;
            stored.insert((store, id), verdict);
        }
    }
    let mut report = DbCheck {
        rows: stored.len(),
        ..DbCheck::default()
    };

    let mut acked: HashSet<usize> = HashSet::new();
    let mut answered_fresh: HashSet<usize> = HashSet::new();
    let mut forged: HashSet<usize> = HashSet::new();
    for s in samples {
        match s.kind {
            Kind::Fresh => {
                answered_fresh.insert(s.index);
                if s.status == 200 {
                    acked.insert(s.index);
                }
            }
            Kind::Duplicate => {}
            Kind::Invalid => {
                forged.insert(s.index);
            }
        }
    }
    let mut explained = HashSet::new();
    let mut tracked_hit: HashSet<(Store, &str)> = HashSet::new();
    for &i in &answered_fresh {
        let r = &workload.fresh[i];
        let key = (r.store.id().to_owned(), r.notification_id.clone());
        let row = stored.get(&key);
        explained.insert(key.clone());
        if acked.contains(&i) {
            report.acknowledged += 1;
            match row {
                None => report.acknowledged_missing += 1,
                Some(v) => {
                    let want = if r.tracked { "tracked" } else { "untracked" };
                    if v != want {
                        report.wrong_verdict += 1;
                    }
                    if r.tracked {
                        tracked_hit.insert((r.store, r.subscription.as_str()));
                    }
                }
            }
        } else {
            report.unacknowledged += 1;
            if row.is_some() {
                report.unacknowledged_stored += 1;
            }
        }
    }
    for &i in &forged {
        let r = &workload.invalid[i];
        report.forged += 1;
        let key = (r.store.id().to_owned(), r.notification_id.clone());
        if stored.contains_key(&key) {
            report.forged_stored += 1;
        }
        explained.insert(key);
    }
    report.unexplained_rows = stored.keys().filter(|k| !explained.contains(*k)).count();

    let mut stmt = conn.prepare(
        "SELECT last_event_at IS NOT NULL FROM subscriptions WHERE store = ?1 AND subscription_key = ?2",
    )?;
    for (store, sub) in &tracked_hit {
        let applied: bool = stmt
            .query_row([store.id(), sub], |r| r.get(0))
            .unwrap_or(false);
        if !applied {
            report.tracked_not_applied += 1;
        }
    }
    report.ok = report.acknowledged_missing == 0
        && report.wrong_verdict == 0
        && report.forged_stored == 0
        && report.unexplained_rows == 0
        && report.tracked_not_applied == 0;
    Ok(report)
}
