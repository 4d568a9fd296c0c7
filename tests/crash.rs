//! Crash and storage-fault tests (issue 8): what storehook acknowledged is
//! stored, applied once and delivered, whatever happens to the process or
//! the disk.
//!
//! Every test drives the real `storehook` binary over HTTP with correctly
//! signed Stripe events (a real event from the corpus, re-keyed per
//! request) and then reads the SQLite file itself, read-only.
//!
//! - `kill -9` at random moments under load, several times: every 200 is
//!   present exactly once after each restart, nothing is applied twice
//!   (one event per notification, per-subscription sequences without gaps),
//!   and the outbox delivers every event to a loopback webhook receiver, in
//!   order per subscription.
//! - A full disk, a read-only database, a database locked by another
//!   process: requests answer 503 (never a 200 for something not stored,
//!   never a stored half), and the service recovers by itself when the
//!   fault clears.
//!
//! How each fault is produced, and the fallback when the machine does not
//! allow it, is written beside each test. `STOREHOOK_FAULTS=inject` forces
//! the fallbacks; `CRASH_SEED=<n>` replays a kill schedule.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::db::Probe;
use common::load::*;
use common::receiver::Receiver;
use common::{BinaryServer, Rng};

// ------------------------------------------------------------- the server

/// Starts the binary with `config`; when `ignore_sigxfsz`, through `sh` with
/// SIGXFSZ ignored (inherited across `exec`), so that a file-size limit
/// makes writes fail with EFBIG instead of killing the process.
fn start(dir: &Path, config: &Path, ignore_sigxfsz: bool) -> BinaryServer {
    if !ignore_sigxfsz {
        return BinaryServer::start_with_config(dir, config, &[]);
    }
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("trap '' XFSZ; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_storehook"))
        .arg("--config")
        .arg(config)
        .args(["serve", "--listen", "127.0.0.1:0"]);
    BinaryServer::spawn(cmd, dir)
}

// ------------------------------------------------------- the database file

fn open_read_only(db: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the database read-only")
}

fn integrity_ok(db: &Path) {
    let conn = open_read_only(db);
    let result: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(result, "ok", "integrity_check");
}

// ------------------------------------------------------------------ kill -9

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_acknowledged_and_applies_nothing_twice() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("storehook.db");
    // The file, or on the PostgreSQL pass the database the server uses.
    let probe = Probe::new(dir.path(), &db);
    let config = dir.path().join("config.toml");
    std::fs::write(&config, config_with_hook(&db, &receiver.url("/hook"))).expect("config");

    let load = Load::new();
    let ledger = &load.ledger;
    let mut rng = Rng::from_env("CRASH_SEED");
    eprintln!("kill schedule seed: CRASH_SEED={}", rng.seed());
    let started = Instant::now();

    let mut server = start(dir.path(), &config, false);
    track_all(&server.base).await;
    const KILLS: usize = 5;
    for round in 0..KILLS {
        let stop = Arc::new(AtomicBool::new(false));
        let workers = spawn_load(std::slice::from_ref(&server.base), &load, &stop, 12);
        // A random moment: sometimes right after start-up, sometimes deep
        // into the load.
        tokio::time::sleep(Duration::from_millis(rng.between(30, 900))).await;
        server.kill();
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.await.expect("worker");
        }
        server = start(dir.path(), &config, false);
        let stored = probe.stored_ids("stripe").await;
        let l = ledger.lock().expect("ledger");
        assert_acked_stored_once(&stored, &l, &format!("after kill {}", round + 1));
        eprintln!(
            "kill {}: {} sent, {} acknowledged, {} without an answer",
            round + 1,
            l.sent.len(),
            l.acked.len(),
            l.no_answer
        );
    }

    // Before any store retry, the outbox delivers exactly what was
    // committed: every acknowledged notification's event, plus those of
    // notifications committed just before a kill whose answer was lost
    // (stored, so rightly delivered; the store's retry will be a
    // duplicate) — and nothing for a notification that is not stored.
    wait_until_delivered(&probe).await;
    let stored = probe.stored_ids("stripe").await;
    let delivered_for: HashSet<String> = receiver
        .delivered()
        .iter()
        .filter_map(|r| {
            r.json()["event"]["store_notification_id"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    {
        let l = ledger.lock().expect("ledger");
        for id in &l.acked {
            assert!(
                delivered_for.contains(id),
                "acknowledged {id} was never delivered"
            );
        }
    }
    for id in &delivered_for {
        assert!(stored.contains_key(id), "delivered {id} is not stored");
    }
    assert_eq!(
        delivered_for.len(),
        stored.len(),
        "every stored notification's event delivered"
    );

    // The store retries everything it has no 200 for.
    let unacked = ledger.lock().expect("ledger").unacked();
    for sent in &unacked {
        retry_until_acked(&server.base, sent, ledger, 10).await;
    }
    // What the database says, read before the ledger is locked for the
    // synchronous checks.
    let stored = probe.stored_ids("stripe").await;
    let event_rows = probe
        .pairs("SELECT 'events', count(*) FROM events UNION ALL SELECT 'notifications', count(DISTINCT notification_row) FROM events")
        .await;
    let sequences = probe
        .pairs("SELECT subscription_key, sequence FROM events")
        .await;
    let counters: HashMap<String, i64> = probe
        .pairs("SELECT subscription_key, event_sequence FROM subscriptions WHERE store = 'stripe'")
        .await
        .into_iter()
        .collect();
    // -1: unknown (NULL); 0 / 1: off / on, the same in both dialects.
    let auto_renews: HashMap<String, i64> = probe
        .pairs(
            "SELECT subscription_key, CASE WHEN auto_renew IS NULL THEN CAST(-1 AS BIGINT)
                 WHEN auto_renew THEN CAST(1 AS BIGINT) ELSE CAST(0 AS BIGINT) END
             FROM subscriptions WHERE store = 'stripe'",
        )
        .await
        .into_iter()
        .collect();
    let sent_count = {
        let l = ledger.lock().expect("ledger");
        assert!(
            l.acked.len() > 50,
            "too little traffic got through to test anything: {}",
            l.acked.len()
        );
        let statuses: Vec<_> = l.statuses.keys().copied().collect();
        assert_eq!(
            statuses,
            vec![200],
            "only 200s were expected: {:?}",
            l.statuses
        );
        assert_acked_stored_once(&stored, &l, "at the end");
        assert_eq!(
            stored.len(),
            l.sent.len(),
            "nothing stored that was not sent"
        );

        // Applied once: one event per notification, and per subscription the
        // sequence numbers 1..=n, each once.
        let n = l.sent.len() as i64;
        assert_eq!(
            event_rows,
            vec![("events".to_owned(), n), ("notifications".to_owned(), n)]
        );
        for (sub, n) in &assert_sequences_whole(sequences) {
            assert_eq!(counters.get(sub), Some(n), "{sub}: event counter");
        }

        // Each subscription ends in the state of its newest event.
        let mut newest: HashMap<&str, &Sent> = HashMap::new();
        for s in l.sent.values() {
            let e = newest.entry(s.subscription.as_str()).or_insert(s);
            if s.created > e.created {
                *e = s;
            }
        }
        for (sub, s) in &newest {
            assert_eq!(
                auto_renews.get(*sub),
                Some(&i64::from(!s.cancel_at_period_end)),
                "{sub}: the newest event ({}) decides",
                s.id
            );
        }
        if let Probe::Sqlite(file) = &probe {
            integrity_ok(file);
        }
        l.sent.len()
    };

    // Deliveries resume after every restart: every event reaches the
    // receiver (at least once), and per subscription their first arrivals
    // are in sequence order.
    wait_until_delivered(&probe).await;
    let repeats = assert_delivered_in_order(&receiver.delivered(), sent_count);
    eprintln!(
        "{KILLS} kills in {:.1} s: {sent_count} notifications stored once each, \
         {sent_count} events delivered ({repeats} redelivered after a kill)",
        started.elapsed().as_secs_f64(),
    );
}

// ---------------------------------------------------------- storage faults

/// Whether to skip the real mechanisms (mount, chattr) and use the
/// injected fallback.
fn forced_injection() -> bool {
    std::env::var("STOREHOOK_FAULTS").is_ok_and(|v| v == "inject")
}

fn run(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Lowers (or lifts, with `None`) the soft file-size limit of a running
/// process (`prlimit(1)`, util-linux; the hard limit stays, so lifting it
/// needs no privilege). Writes past the limit then fail with EFBIG.
fn set_file_size_limit(pid: u32, bytes: Option<u64>) {
    let value = bytes.map_or("unlimited".to_owned(), |b| b.to_string());
    let pid = pid.to_string();
    assert!(
        run("prlimit", &["--pid", &pid, &format!("--fsize={value}:")]),
        "prlimit failed"
    );
}

fn have_prlimit() -> bool {
    run("prlimit", &["--version"])
}

/// Sends fresh events one by one (plus a few concurrent ones) until the
/// server answers 503, at most `limit` of them. Every answer must be 200 or
/// 503 `storage_unavailable`.
async fn send_until_refused(base: &str, load: &Load, limit: usize) -> usize {
    let Load {
        traffic,
        next,
        ledger,
    } = load;
    let client = client();
    let mut refused = 0;
    for _ in 0..limit {
        let sent = traffic.event(next.fetch_add(1, Ordering::Relaxed));
        let answer = post(&client, base, &sent).await;
        match &answer {
            Ok((200, _)) => {}
            Ok((503, body)) => {
                assert_eq!(body["error"], "storage_unavailable", "{body}");
                refused += 1;
            }
            other => panic!("unexpected answer during a storage fault: {other:?}"),
        }
        ledger.lock().expect("ledger").record(&sent, &answer);
        if refused >= 5 {
            break;
        }
    }
    refused
}

/// After a fault cleared: the service answers again by itself (no
/// restart), every refused notification is then stored exactly once, and
/// the file is sound.
async fn assert_recovers(base: &str, probe: &Probe, ledger: &Mutex<Ledger>) {
    let stored = probe.stored_ids("stripe").await;
    let refused: Vec<Sent> = {
        let l = ledger.lock().expect("ledger");
        assert_acked_stored_once(&stored, &l, "during the fault");
        l.refused
            .iter()
            .filter_map(|id| l.sent.get(id).cloned())
            .collect()
    };
    assert!(!refused.is_empty());
    let recovered = Instant::now();
    for sent in &refused {
        let body = retry_until_acked(base, sent, ledger, 15).await;
        assert_ne!(
            body["verdict"], "duplicate",
            "{} was answered 503 yet had been stored: {body}",
            sent.id
        );
    }
    eprintln!(
        "recovered: {} refused notifications stored after {:.2} s",
        refused.len(),
        recovered.elapsed().as_secs_f64()
    );
    let stored = probe.stored_ids("stripe").await;
    {
        let l = ledger.lock().expect("ledger");
        assert_acked_stored_once(&stored, &l, "after recovery");
        assert!(l.refused.is_empty());
    }
    if let Probe::Sqlite(file) = probe {
        integrity_ok(file);
    }
    assert_eq!(get_status(base, "/healthz").await, 200);
}

/// Unmounts on drop (before the temporary folder is removed).
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = run("umount", &["-l", &self.0.display().to_string()]);
    }
}

/// A full disk. Preferred: the database on a 4 MiB tmpfs, filled to the
/// last byte by another file (real ENOSPC). Fallback where mounting is not
/// allowed (an unprivileged container): the server's file-size limit
/// lowered to what its files use now (`prlimit`), so that growing any file
/// fails (EFBIG, the same write error at the same places, while rewriting
/// pages in place still works, as on a full disk).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_and_recovers_when_space_is_freed() {
    if common::sqlite_only("a full disk under the SQLite file") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = dir.path().join("disk");
    std::fs::create_dir(&disk).expect("mkdir");
    let mounted = (!forced_injection()
        && run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                "size=4m",
                "tmpfs",
                &disk.display().to_string(),
            ],
        ))
    .then(|| Mounted(disk.clone()));
    if mounted.is_none() && !have_prlimit() {
        // A skipped fault test would pass without testing anything.
        panic!("neither mount nor prlimit (util-linux) is available: install util-linux");
    }
    eprintln!(
        "disk full by: {}",
        if mounted.is_some() {
            "a full 4 MiB tmpfs (ENOSPC)"
        } else {
            "a lowered file-size limit (EFBIG, injected)"
        }
    );
    let db = disk.join("storehook.db");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, config_text(&db, "")).expect("config");
    let server = start(dir.path(), &config, mounted.is_none());
    let load = Load::new();
    let ledger = &load.ledger;
    assert_eq!(
        send_until_refused(&server.base, &load, 20).await,
        0,
        "a healthy disk"
    );

    let filler = disk.join("filler");
    if mounted.is_some() {
        let mut f = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    } else {
        let used = ["storehook.db", "storehook.db-wal"]
            .iter()
            .filter_map(|f| std::fs::metadata(disk.join(f)).ok())
            .map(|m| m.len())
            .max()
            .unwrap_or(0);
        set_file_size_limit(server.child.id(), Some(used));
    }
    let refused = send_until_refused(&server.base, &load, 2_000).await;
    assert!(refused > 0, "the full disk was never noticed");
    // Reads still work while writes fail.
    assert_eq!(get_status(&server.base, "/v1/stores").await, 200);

    if mounted.is_some() {
        std::fs::remove_file(&filler).expect("free the space");
    } else {
        set_file_size_limit(server.child.id(), None);
    }
    assert_recovers(&server.base, &Probe::Sqlite(db.clone()), ledger).await;
    drop(server);
    drop(mounted);
}

/// Sets or clears the immutable attribute (`chattr +i`: even a descriptor
/// opened earlier can no longer write; root included).
fn immutable(path: &Path, on: bool) -> bool {
    run(
        "chattr",
        &[if on { "+i" } else { "-i" }, &path.display().to_string()],
    )
}

/// Clears the immutable attribute on drop, so that a failing test does not
/// leave undeletable files behind.
struct Immutable(Vec<PathBuf>);

impl Drop for Immutable {
    fn drop(&mut self) {
        for p in &self.0 {
            immutable(p, false);
        }
    }
}

/// A read-only database. `chmod` does not affect the writer's open
/// descriptor (and root ignores it), and a read-only remount is refused
/// while files are open for writing, so the preferred mechanism is the
/// immutable attribute (`chattr +i`, which does stop writes through open
/// descriptors). First the main file alone: commits still succeed, because
/// with WAL they go to the `-wal` file (checkpoints fail and retry later).
/// Then the `-wal` file too: every write fails with EPERM. Fallback where
/// `chattr` is unavailable (no CAP_LINUX_IMMUTABLE, tmpfs/overlay): a
/// file-size limit of one byte, so that every write fails with EFBIG.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_answers_503_and_recovers() {
    if common::sqlite_only("a read-only SQLite file") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let probe = dir.path().join("probe");
    std::fs::write(&probe, b"x").expect("probe");
    let chattr = !forced_injection() && immutable(&probe, true) && immutable(&probe, false);
    if !chattr && !have_prlimit() {
        // A skipped fault test would pass without testing anything.
        panic!("neither chattr nor prlimit (util-linux) is available: install util-linux");
    }
    eprintln!(
        "read-only by: {}",
        if chattr {
            "chattr +i on the database files (EPERM)"
        } else {
            "a file-size limit of 1 byte (EFBIG, injected)"
        }
    );
    let db = dir.path().join("storehook.db");
    let wal = dir.path().join("storehook.db-wal");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, config_text(&db, "")).expect("config");
    let server = start(dir.path(), &config, !chattr);
    let load = Load::new();
    let ledger = &load.ledger;
    assert_eq!(send_until_refused(&server.base, &load, 10).await, 0);

    let guard = Immutable(vec![db.clone(), wal.clone()]);
    if chattr {
        assert!(immutable(&db, true));
        assert_eq!(
            send_until_refused(&server.base, &load, 30).await,
            0,
            "with only the main file read-only, commits still go to the WAL"
        );
        assert!(immutable(&wal, true));
    } else {
        set_file_size_limit(server.child.id(), Some(1));
    }
    let refused = send_until_refused(&server.base, &load, 200).await;
    assert!(refused > 0, "the read-only database was never noticed");

    if chattr {
        drop(guard);
    } else {
        set_file_size_limit(server.child.id(), None);
        drop(guard);
    }
    assert_recovers(&server.base, &Probe::Sqlite(db.clone()), ledger).await;
}

/// Another process holds the write lock (`BEGIN EXCLUSIVE` from this test
/// process, against the binary's file) while eight clients keep sending:
/// each request waits at most the busy timeout and answers 503, reads keep
/// answering, and once the lock is released the service recovers alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_locked_by_another_process_answers_503_under_load_and_recovers() {
    if common::sqlite_only("an SQLite file locked by another process") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("storehook.db");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, config_text(&db, "")).expect("config");
    let server = start(dir.path(), &config, false);
    let load = Load::new();
    let ledger = &load.ledger;
    assert_eq!(send_until_refused(&server.base, &load, 10).await, 0);

    let locker = rusqlite::Connection::open(&db).expect("open");
    locker.execute_batch("BEGIN EXCLUSIVE").expect("lock");
    let stop = Arc::new(AtomicBool::new(false));
    let lock_started = Instant::now();
    let workers = spawn_load(std::slice::from_ref(&server.base), &load, &stop, 8);
    // Reads are not blocked by the writer's lock (WAL).
    let health = Instant::now();
    assert_eq!(get_status(&server.base, "/v1/stores").await, 200);
    assert!(health.elapsed() < Duration::from_secs(2));
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker");
    }
    let held = lock_started.elapsed();
    locker.execute_batch("COMMIT").expect("unlock");
    drop(locker);
    {
        let l = ledger.lock().expect("ledger");
        eprintln!("while locked for {held:?}: {:?}", l.statuses);
        assert_eq!(l.acked.len(), 10, "nothing acknowledged while locked");
        assert!(!l.refused.is_empty());
        assert_eq!(l.no_answer, 0, "every request got an answer");
        assert_eq!(
            l.statuses.keys().copied().collect::<Vec<_>>(),
            vec![200, 503]
        );
    }
    assert_recovers(&server.base, &Probe::Sqlite(db.clone()), ledger).await;
}
