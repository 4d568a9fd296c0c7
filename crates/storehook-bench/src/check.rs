//! After a run: the database (the SQLite file, opened read-only, or the
//! PostgreSQL database every instance wrote) must hold every notification
//! that got a 200 exactly once (with the right verdict), none that was
//! refused, and nothing else of this workload.

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
    /// Rows storing a notification a second time.
    pub duplicate_rows: usize,
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

/// What the database holds of this workload: (store, notification id) →
/// verdict, and the subscriptions whose state a notification applied.
struct Stored {
    verdicts: HashMap<(String, String), String>,
    /// Rows with the same (store, notification id) as one before them.
    duplicate_rows: usize,
    applied: HashSet<(String, String)>,
}

impl Stored {
    fn new(
        rows: impl IntoIterator<Item = ((String, String), String)>,
        applied: HashSet<(String, String)>,
    ) -> Self {
        let mut verdicts = HashMap::new();
        let mut duplicate_rows = 0;
        for (key, verdict) in rows {
            if verdicts.insert(key, verdict).is_some() {
                duplicate_rows += 1;
            }
        }
        Self {
            verdicts,
            duplicate_rows,
            applied,
        }
    }
}

// Only this workload's ids: every id carries the workload's nonce
// (Google's numeric message ids start with it in decimal). UNIQUE (store,
// notification_id) in the schema already rules out a second row.
const ROWS_SQLITE: &str = "SELECT store, notification_id, verdict FROM notifications
     WHERE (store != 'google' AND notification_id LIKE ?1)
        OR (store = 'google' AND notification_id LIKE ?2)";
const ROWS_POSTGRES: &str = "SELECT store, notification_id, verdict FROM notifications
     WHERE (store != 'google' AND notification_id LIKE $1)
        OR (store = 'google' AND notification_id LIKE $2)";
const APPLIED: &str =
    "SELECT store, subscription_key FROM subscriptions WHERE last_event_at IS NOT NULL";

fn id_patterns(workload: &Workload) -> [String; 2] {
    let google_prefix = u32::from_str_radix(&workload.nonce, 16).unwrap_or(0);
    [format!("%{}%", workload.nonce), format!("{google_prefix}%")]
}

/// Checks a SQLite file, opened read-only.
pub fn check(db: &Path, workload: &Workload, samples: &[Sample]) -> Result<DbCheck> {
    let conn = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {} read-only", db.display()))?;
    let mut stmt = conn.prepare(ROWS_SQLITE)?;
    let rows: Vec<_> = stmt
        .query_map(id_patterns(workload), |r| {
            Ok(((r.get(0)?, r.get(1)?), r.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare(APPLIED)?;
    let applied = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(evaluate(&Stored::new(rows, applied), workload, samples))
}

/// Checks a PostgreSQL database (after its instances stopped).
pub async fn check_postgres(url: &str, workload: &Workload, samples: &[Sample]) -> Result<DbCheck> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("connecting to PostgreSQL for the check")?;
    let connection = tokio::spawn(connection);
    let [ids, google_ids] = id_patterns(workload);
    let rows: Vec<_> = client
        .query(ROWS_POSTGRES, &[&ids, &google_ids])
        .await?
        .iter()
        .map(|r| Ok(((r.try_get(0)?, r.try_get(1)?), r.try_get(2)?)))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    let applied = client
        .query(APPLIED, &[])
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    drop(client);
    let _ = connection.await;
    Ok(evaluate(&Stored::new(rows, applied), workload, samples))
}

fn evaluate(db: &Stored, workload: &Workload, samples: &[Sample]) -> DbCheck {
    let stored = &db.verdicts;
    let mut report = DbCheck {
        rows: stored.len() + db.duplicate_rows,
        duplicate_rows: db.duplicate_rows,
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

    report.tracked_not_applied = tracked_hit
        .iter()
        .filter(|(store, sub)| {
            !db.applied
                .contains(&(store.id().to_owned(), (*sub).to_owned()))
        })
        .count();
    report.ok = report.duplicate_rows == 0
        && report.acknowledged_missing == 0
        && report.wrong_verdict == 0
        && report.forged_stored == 0
        && report.unexplained_rows == 0
        && report.tracked_not_applied == 0;
    report
}
