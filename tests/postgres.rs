//! Several storehook instances on one PostgreSQL database, through the real
//! binary: senders spread over three instances, the same notification sent
//! to two at once, `kill -9` of one under load, PostgreSQL itself restarted
//! under load. Each test has a throwaway PostgreSQL database (the last, a
//! server of its own).

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::db::Probe;
use common::load::*;
use common::receiver::Receiver;
use common::{BinaryServer, ADMIN_TOKEN};

/// `n` instances of the binary on the PostgreSQL database `url`, all
/// delivering to `receiver`.
fn instances(dir: &Path, url: &str, receiver: &Receiver, n: usize) -> Vec<BinaryServer> {
    (0..n)
        .map(|i| {
            let folder = dir.join(format!("instance-{i}"));
            std::fs::create_dir_all(&folder).expect("folder");
            let config = folder.join("config.toml");
            std::fs::write(
                &config,
                config_with_hook(&folder.join("unused.db"), &receiver.url("/hook")),
            )
            .expect("config");
            BinaryServer::start_with_config(&folder, &config, &[("STOREHOOK_DATABASE_URL", url)])
        })
        .collect()
}

/// `n` instances on a throwaway PostgreSQL database, delivering to one
/// receiver, every subscription of the load tracked.
struct Cluster {
    receiver: Receiver,
    servers: Vec<BinaryServer>,
    probe: Probe,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start(n: usize) -> Self {
        let receiver = Receiver::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let url = storehook_test_postgres::database().expect("a throwaway PostgreSQL");
        let servers = instances(dir.path(), &url, &receiver, n);
        track_all(&servers[0].base).await;
        Self {
            receiver,
            servers,
            probe: Probe::Postgres(url),
            _dir: dir,
        }
    }
}

fn bases(servers: &[BinaryServer]) -> Vec<String> {
    servers.iter().map(|s| s.base.clone()).collect()
}

/// Runs the load over `bases` for `run`, then stops it.
async fn load_for(bases: &[String], load: &Load, run: Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let workers = spawn_load(bases, load, &stop, 12);
    tokio::time::sleep(run).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker");
    }
}

/// Every acknowledged notification stored once, none applied twice (one
/// event each, per subscription the sequence numbers 1..=n), every event
/// delivered and, per subscription, first delivered in sequence order.
/// Returns how many deliveries were repeats.
async fn assert_whole(probe: &Probe, load: &Load, receiver: &Receiver) -> usize {
    let stored = probe.stored_ids("stripe").await;
    let sequences = probe
        .pairs("SELECT subscription_key, sequence FROM events")
        .await;
    let sent = {
        let l = load.ledger.lock().expect("ledger");
        assert_acked_stored_once(&stored, &l, "at the end");
        assert_eq!(
            stored.len(),
            l.sent.len(),
            "nothing stored that was not sent"
        );
        assert!(l.acked.len() > 50, "too little traffic: {}", l.acked.len());
        l.sent.len()
    };
    let per_sub = assert_sequences_whole(sequences);
    assert_eq!(per_sub.values().sum::<i64>(), sent as i64);

    wait_until_delivered(probe).await;
    assert_delivered_in_order(&receiver.delivered(), sent)
}

/// The store retries whatever got no 200, against `base`.
async fn retry_unacked(base: &str, load: &Load) {
    let unacked = load.ledger.lock().expect("ledger").unacked();
    for sent in &unacked {
        retry_until_acked(base, sent, &load.ledger, 20).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_the_work_and_list_each_other() {
    let Cluster {
        receiver,
        servers,
        probe,
        _dir,
    } = Cluster::start(3).await;

    let (status, listed) = common::into_json(
        client()
            .get(format!("{}/v1/instances", servers[1].base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("instances"),
    )
    .await;
    assert_eq!(status, 200, "{listed}");
    let listed = listed["instances"].as_array().cloned().unwrap_or_default();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert_eq!(listed.iter().filter(|i| i["this"] == true).count(), 1);
    // The dashboard lists them too.
    let page = client()
        .get(format!("{}/dashboard/live", servers[0].base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("dashboard")
        .text()
        .await
        .expect("page");
    assert!(page.contains("3 instances on this database"), "{page}");
    assert_eq!(page.matches("(this one)").count(), 1);

    let load = Load::new();
    load_for(&bases(&servers), &load, Duration::from_secs(3)).await;
    retry_unacked(&servers[2].base, &load).await;
    let repeats = assert_whole(&probe, &load, &receiver).await;
    eprintln!(
        "three instances: {} notifications, {repeats} redeliveries",
        load.ledger.lock().expect("ledger").sent.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_notification_sent_to_two_instances_at_once_is_stored_once() {
    let cluster = Cluster::start(2).await;
    let (servers, probe) = (&cluster.servers, &cluster.probe);
    let traffic = Traffic::new();
    let client = client();
    for n in 0..40 {
        let sent = traffic.event(n);
        let (a, b) = tokio::join!(
            post(&client, &servers[0].base, &sent),
            post(&client, &servers[1].base, &sent)
        );
        let (a, b) = (a.expect("answer"), b.expect("answer"));
        assert_eq!((a.0, b.0), (200, 200), "{}: {a:?} {b:?}", sent.id);
        let verdicts = [a.1["verdict"].clone(), b.1["verdict"].clone()];
        assert_eq!(
            verdicts.iter().filter(|v| *v == "duplicate").count(),
            1,
            "{}: one stores it, the other finds it stored: {verdicts:?}",
            sent.id
        );
    }
    let stored = probe.stored_ids("stripe").await;
    assert_eq!(stored.len(), 40);
    assert!(stored.values().all(|n| *n == 1), "{stored:?}");
    assert_eq!(probe.count("SELECT count(*) FROM events").await, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_one_instance_under_load_loses_nothing() {
    let Cluster {
        receiver,
        mut servers,
        probe,
        _dir,
    } = Cluster::start(3).await;

    let load = Load::new();
    let stop = Arc::new(AtomicBool::new(false));
    let workers = spawn_load(&bases(&servers), &load, &stop, 12);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    servers[1].kill();
    let killed_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker");
    }
    // The survivors take the store's retries; the dead instance's claimed
    // deliveries are taken over once its heartbeat is old.
    retry_unacked(&servers[0].base, &load).await;
    let repeats = assert_whole(&probe, &load, &receiver).await;
    let l = load.ledger.lock().expect("ledger");
    eprintln!(
        "kill -9 of one of three: {} sent, {} acknowledged, {} without an answer, {repeats} redeliveries, all delivered {:.1} s after the kill",
        l.sent.len(),
        l.acked.len(),
        l.no_answer,
        killed_at.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_restarted_under_load_answers_503_then_recovers() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = storehook_test_postgres::Postgres::start().expect("a PostgreSQL of its own");
    let url = postgres.create_database().expect("database");
    let servers = instances(dir.path(), &url, &receiver, 1);
    let probe = Probe::Postgres(url);
    track_all(&servers[0].base).await;

    let load = Load::new();
    let stop = Arc::new(AtomicBool::new(false));
    let workers = spawn_load(&bases(&servers), &load, &stop, 8);
    tokio::time::sleep(Duration::from_millis(800)).await;
    postgres.stop().expect("stop PostgreSQL");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let refused_while_down = load
        .ledger
        .lock()
        .expect("ledger")
        .statuses
        .get(&503)
        .copied();
    postgres.restart().expect("restart PostgreSQL");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker");
    }
    assert!(
        refused_while_down.unwrap_or(0) > 0,
        "no 503 while PostgreSQL was down: {:?}",
        load.ledger.lock().expect("ledger").statuses
    );
    assert_eq!(
        common::load::get_status(&servers[0].base, "/healthz").await,
        200,
        "healthy again"
    );
    retry_unacked(&servers[0].base, &load).await;
    assert_whole(&probe, &load, &receiver).await;
    let statuses: Vec<u16> = load
        .ledger
        .lock()
        .expect("ledger")
        .statuses
        .keys()
        .copied()
        .collect();
    assert!(
        statuses.iter().all(|s| [200, 503].contains(s)),
        "{statuses:?}"
    );
}

/// `storehook migrate-db` on a database the real server wrote: interrupted
/// once, run again to the end; then a server on PostgreSQL answers as the
/// SQLite one did and goes on from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_db_copies_a_real_servers_database_and_finishes_after_an_interruption() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("storehook.db");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, config_with_hook(&db, &receiver.url("/hook"))).expect("config");
    let sqlite = BinaryServer::start_with_config(dir.path(), &config, &[]);
    track_all(&sqlite.base).await;
    let load = Load::new();
    load_for(
        std::slice::from_ref(&sqlite.base),
        &load,
        Duration::from_millis(1500),
    )
    .await;
    retry_unacked(&sqlite.base, &load).await;
    let on_sqlite = Probe::Sqlite(db.clone());
    wait_until_delivered(&on_sqlite).await;
    let subscription = |base: String| async move {
        common::into_json(
            client()
                .get(format!("{base}/v1/subscriptions/stripe/sub_crash_03"))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .expect("subscription"),
        )
        .await
    };
    let before = subscription(sqlite.base.clone()).await;
    assert_eq!(before.0, 200, "{:?}", before.1);
    drop(sqlite);

    let url = storehook_test_postgres::database().expect("a throwaway PostgreSQL");
    let migrate = |batch: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_storehook"));
        cmd.arg("--config")
            .arg(&config)
            .args(["migrate-db", "--to", &url, "--batch-rows", batch])
            .env_remove("STOREHOOK_DATABASE_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    };
    // Interrupted after a few committed batches.
    let mut first = migrate("20").spawn().expect("migrate-db");
    let stdout = first.stdout.take().expect("stdout");
    let copied = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .filter(|l| l.contains("copied up to row"))
        .take(3)
        .count();
    first.kill().expect("kill");
    let _ = first.wait();
    assert_eq!(copied, 3, "the copy reported its batches");
    let on_postgres = Probe::Postgres(url.clone());
    let partial = on_postgres
        .count("SELECT count(*) FROM notifications")
        .await;
    let total = on_sqlite.count("SELECT count(*) FROM notifications").await;
    assert!(
        partial > 0 && partial < total,
        "interrupted midway: {partial} of {total}"
    );

    let second = migrate("500").output().expect("migrate-db again");
    let out = String::from_utf8_lossy(&second.stdout);
    assert!(
        second.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(out.contains("equal on both sides"), "{out}");
    assert_eq!(
        on_postgres.stored_ids("stripe").await,
        on_sqlite.stored_ids("stripe").await
    );
    let sequences = "SELECT event_id, sequence FROM events";
    let (mut a, mut b) = (
        on_sqlite.pairs(sequences).await,
        on_postgres.pairs(sequences).await,
    );
    a.sort();
    b.sort();
    assert_eq!(a, b);

    // A server on the copy answers the same and goes on: new rows get new ids.
    let folder = dir.path().join("on-postgres");
    std::fs::create_dir_all(&folder).expect("folder");
    let pg = BinaryServer::start_with_config(&folder, &config, &[("STOREHOOK_DATABASE_URL", &url)]);
    let after = subscription(pg.base.clone()).await;
    assert_eq!(after, before);
    let fresh = Traffic::new().event(1_000_000);
    let answer = post(&client(), &pg.base, &fresh).await.expect("answer");
    assert_eq!(answer.0, 200, "{:?}", answer.1);
    assert_eq!(answer.1["verdict"], "tracked", "{:?}", answer.1);
    assert_eq!(
        on_postgres
            .count("SELECT count(*) FROM notifications")
            .await,
        total + 1
    );
}
