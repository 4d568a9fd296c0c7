//! `[retention]` end to end (issue 13): raw bodies older than the limit
//! and delivered outbox rows older than theirs are pruned in the
//! background, nothing else changes (subscriptions, events, what the API
//! answers), and the database file shrinks.
//!
//! A forward of an old notification, dead until retried after its raw body
//! was pruned, still replays the body as received: forwards keep their own
//! copy.
//!
//! Time is simulated on the stored data: after real notifications and
//! deliveries, the test moves half of the rows 40 days into the past in the
//! database (with the server stopped), as time would have.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::receiver::Receiver;
use common::ADMIN_TOKEN;
use serde_json::{json, Value};

const NOTIFICATIONS: usize = 120;
const DAY_MS: i64 = 86_400_000;

fn write_config(dir: &Path, receiver: &str, retention: &str) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_token = \"{ADMIN_TOKEN}\"\n\n\
             [database]\npath = \"{}\"\n\n\
             [stores.example]\nenabled = true\nkey = \"k\"\n\n\
             [delivery]\nallow_loopback = true\nretry_schedule_seconds = [0.1]\n\n\
             [[webhooks]]\nname = \"main\"\nurl = \"{receiver}/hook\"\n\
             secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n\n\
             [[forward]]\nname = \"raw\"\nurl = \"{receiver}/raw\"\nmax_attempts = 1\n\n\
             [retention]\n{retention}\n",
            dir.join("storehook.db").display()
        ),
    )
    .expect("config");
    path
}

async fn start(config: &Path) -> (storehook_server::Running, String) {
    common::link_plugins();
    let config = storehook_server::Config::load(config).expect("config");
    let running = storehook_server::start(config, &|_| None)
        .await
        .expect("server starts");
    let base = format!("http://{}", running.addr);
    (running, base)
}

async fn get(base: &str, path: &str) -> Value {
    let r = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.expect("json")
}

async fn metric(base: &str, name_and_labels: &str) -> f64 {
    let text = common::metrics_text(base).await;
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// What the API answers about the data (it must not change by pruning).
async fn snapshot(base: &str) -> Value {
    json!({
        "subscription": get(base, "/v1/subscriptions/example/s1").await,
        "events": get(base, "/v1/events?limit=1000").await,
        "subscriber": get(base, "/v1/subscribers/user-1").await,
    })
}

fn db_bytes(dir: &Path) -> u64 {
    ["storehook.db", "storehook.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_old_raw_bodies_and_deliveries_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    // The forward endpoint is down (every forward goes dead) until retried.
    let forward_up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let up = forward_up.clone();
    rx.answer_with(move |r, _| {
        if r.path == "/raw" && !up.load(std::sync::atomic::Ordering::SeqCst) {
            500
        } else {
            200
        }
    });
    let keep_forever = "raw_body_days = 0\ndeliveries_days = 0\n";
    let config = write_config(dir.path(), &rx.url(""), keep_forever);

    // Real traffic: notifications with 8 KB bodies, each an event delivered.
    let (running, base) = start(&config).await;
    let http = reqwest::Client::new();
    let tracked = http
        .post(format!("{base}/v1/subscriptions"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"store": "example", "subscription_id": "s1", "app_user_id": "user-1"}))
        .send()
        .await
        .unwrap();
    assert!(tracked.status().is_success(), "{}", tracked.status());
    for i in 0..NOTIFICATIONS {
        let kind = if i == 0 {
            "INITIAL_PURCHASE"
        } else {
            "RENEWAL"
        };
        let body = json!({"id": format!("n{i}"), "type": kind, "subscription": "s1",
            "at": 1_000 + i as i64, "status": "active", "expires_at": 10_000 + i as i64,
            "auto_renew": true, "product": "monthly", "padding": "x".repeat(8_000)});
        let r = http
            .post(format!("{base}/v1/notifications/example"))
            .header("x-example-key", "k")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    rx.wait_for(30, "every event delivered and every forward tried", |l| {
        l.len() >= 2 * NOTIFICATIONS
    })
    .await;
    let start_wait = Instant::now();
    while metric(&base, "storehook_outbox_depth ").await > 0.0 {
        assert!(
            start_wait.elapsed() < Duration::from_secs(30),
            "outbox drained"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.shutdown().await;

    // 40 days pass for the first half of the rows.
    let half = (NOTIFICATIONS / 2) as i64;
    let (old_ids, old_deliveries, deliveries_before) = {
        let conn = rusqlite::Connection::open(dir.path().join("storehook.db")).unwrap();
        conn.execute(
            "UPDATE notifications SET received_at = received_at - ?1 WHERE id <= ?2",
            rusqlite::params![40 * DAY_MS, half + 1],
        )
        .unwrap();
        conn.execute(
            "UPDATE deliveries SET delivered_at = delivered_at - ?1 WHERE id <= ?2",
            rusqlite::params![40 * DAY_MS, half],
        )
        .unwrap();
        let ids: Vec<i64> = conn
            .prepare("SELECT id FROM notifications WHERE id <= ?1 ORDER BY id")
            .unwrap()
            .query_map([half + 1], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let old: Vec<i64> = conn
            .prepare(
                "SELECT id FROM deliveries WHERE id <= ?1 AND status = 'delivered' ORDER BY id",
            )
            .unwrap()
            .query_map([half], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let total: i64 = conn
            .query_row("SELECT count(*) FROM deliveries", [], |r| r.get(0))
            .unwrap();
        (ids, old, total)
    };
    assert_eq!(old_ids.len() as i64, half + 1);
    assert!(!old_deliveries.is_empty());
    assert_eq!(
        deliveries_before,
        2 * NOTIFICATIONS as i64,
        "an event and a forward each"
    );

    // What the API answers, before pruning.
    let (running, base) = start(&config).await;
    let before = snapshot(&base).await;
    running.shutdown().await;
    let bytes_before = db_bytes(dir.path());

    // Retention on: 30 days, pruning every second in batches of 16.
    write_config(
        dir.path(),
        &rx.url(""),
        "raw_body_days = 30\ndeliveries_days = 30\nprune_interval_seconds = 1\nbatch_rows = 16\n",
    );
    let (running, base) = start(&config).await;
    let waited = Instant::now();
    while metric(&base, "storehook_retention_pruned_total{kind=\"raw_body\"}").await
        < old_ids.len() as f64
        || metric(&base, "storehook_retention_pruned_total{kind=\"delivery\"}").await
            < old_deliveries.len() as f64
    {
        assert!(waited.elapsed() < Duration::from_secs(30), "pruning ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Exactly the old rows, and no more on the following runs.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        metric(&base, "storehook_retention_pruned_total{kind=\"raw_body\"}").await,
        old_ids.len() as f64
    );
    assert_eq!(
        metric(&base, "storehook_retention_pruned_total{kind=\"delivery\"}").await,
        old_deliveries.len() as f64
    );
    assert!(metric(&base, "storehook_database_size_bytes ").await > 0.0);
    let after = snapshot(&base).await;
    assert_eq!(after, before, "pruning changes nothing the API answers");
    let page = reqwest::Client::new()
        .get(format!("{base}/dashboard/live"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"database-size\""), "{page}");
    assert!(page.contains("raw request bodies kept 30 days"), "{page}");

    // The oldest notification's forward, dead, retried now that its raw body
    // is gone: the receiver gets the body as the store sent it.
    let dead_forward: i64 = rusqlite::Connection::open(dir.path().join("storehook.db"))
        .unwrap()
        .query_row(
            "SELECT id FROM deliveries WHERE kind = 'forward' AND status = 'dead'
             AND notification_row = ?1",
            [old_ids[0]],
            |r| r.get(0),
        )
        .unwrap();
    forward_up.store(true, std::sync::atomic::Ordering::SeqCst);
    let retried = reqwest::Client::new()
        .post(format!(
            "{base}/v1/webhooks/raw/deliveries/{dead_forward}/retry"
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(retried.status().is_success(), "{}", retried.status());
    let log = rx
        .wait_for(10, "the retried forward", |l| {
            l.iter().any(|r| r.path == "/raw" && r.answered == 200)
        })
        .await;
    let replayed = log
        .iter()
        .find(|r| r.path == "/raw" && r.answered == 200)
        .expect("replayed");
    assert_eq!(replayed.json()["id"], "n0");
    assert_eq!(
        replayed.json()["padding"].as_str().map(str::len),
        Some(8_000)
    );
    running.shutdown().await;

    let conn = rusqlite::Connection::open(dir.path().join("storehook.db")).unwrap();
    let emptied: Vec<i64> = conn
        .prepare("SELECT id FROM notifications WHERE length(raw_body) = 0 ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(emptied, old_ids, "only the old raw bodies went");
    let deliveries: i64 = conn
        .query_row("SELECT count(*) FROM deliveries", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        deliveries,
        deliveries_before - old_deliveries.len() as i64,
        "only the old delivered rows went"
    );
    for id in &old_deliveries {
        let attempts: i64 = conn
            .query_row(
                "SELECT count(*) FROM delivery_attempts WHERE delivery_id = ?1",
                [id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(attempts, 0, "their attempts with them");
    }
    let events: i64 = conn
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(events, NOTIFICATIONS as i64, "events stay");
    drop(conn);
    let bytes_after = db_bytes(dir.path());
    assert!(
        bytes_after < bytes_before,
        "the file shrinks: {bytes_before} → {bytes_after} bytes"
    );
}
