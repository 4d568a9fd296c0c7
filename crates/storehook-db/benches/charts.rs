//! Charts at scale (issue 17), on SQLite:
//!
//! 1. The write path's cost of keeping the chart tables: the same
//!    notifications recorded through `Storage::record_notification` into
//!    two fresh databases, one with chart maintenance and one without
//!    (`OutboxConfig::skip_chart_maintenance`), in the same run. The ratio
//!    is printed. `synchronous = OFF`, so commits cost no fsync and the
//!    ratio is the CPU cost alone (a worst case: with fsync per commit the
//!    share is smaller).
//! 2. Every chart query on a generated history of 1,000,000 notifications
//!    (written straight into the notifications table in one transaction,
//!    then charted by `rebuild_charts`, the path an existing install takes
//!    when it migrates): criterion timings, and a summary of medians.
//!
//! `cargo bench -p storehook-db --bench charts`. `STOREHOOK_CHART_BENCH_N`
//! changes the history's size (default 1,000,000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use storehook_core::{
    Environment, EventDetails, EventType, ImpliedState, SubscriptionStatus, VerifiedNotification,
};
use storehook_db::{
    ChartBucket, ChartMetric, ChartQuery, NewNotification, OutboxConfig, SqliteOptions,
    SqliteStorage, Storage, Synchronous,
};

const DAY: i64 = 86_400_000;
/// 2024-01-01: the history spans two years from here.
const START: i64 = 19_723 * DAY;
const PRODUCTS: [(&str, f64, &str, i64); 4] = [
    ("pro.monthly", 9.99, "USD", 30),
    ("pro.yearly", 59.99, "USD", 365),
    ("team.monthly", 19.0, "EUR", 30),
    ("lite.weekly", 1.99, "EUR", 7),
];

/// xorshift64*: a deterministic history without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One subscription's notifications, in store order: maybe a trial, paid
/// periods, now and then a billing issue, a refund, an expiry.
fn subscription(rng: &mut Rng, index: u64, count: usize) -> Vec<NewNotification> {
    let (product, price, currency, days) = PRODUCTS[rng.below(4) as usize];
    let store = if index.is_multiple_of(3) {
        "stripe"
    } else {
        "apple"
    };
    let env = if index.is_multiple_of(20) {
        Environment::Sandbox
    } else {
        Environment::Production
    };
    let key = format!("sub-{index}");
    let mut at = START + rng.below(700) as i64 * DAY + rng.below(DAY as u64) as i64;
    let mut out = Vec::with_capacity(count);
    let trial = rng.below(3) == 0;
    for n in 0..count {
        let (event, status, period, is_trial) = if n == 0 {
            let length = if trial { 7 * DAY } else { days * DAY };
            (
                EventType::InitialPurchase,
                SubscriptionStatus::Active,
                length,
                trial,
            )
        } else if n + 1 == count {
            (EventType::Expiration, SubscriptionStatus::Expired, 0, false)
        } else if rng.below(25) == 0 {
            (
                EventType::BillingIssue,
                SubscriptionStatus::BillingRetry,
                0,
                false,
            )
        } else if rng.below(50) == 0 {
            (EventType::Refund, SubscriptionStatus::Revoked, 0, false)
        } else {
            (
                EventType::Renewal,
                SubscriptionStatus::Active,
                days * DAY,
                false,
            )
        };
        let paid = period > 0 && !is_trial;
        out.push(NewNotification {
            notification: VerifiedNotification {
                store: store.into(),
                environment: env,
                notification_id: format!("{key}-{n}"),
                subscription_key: Some(key.clone()),
                event_type: event,
                raw_type: event.as_str().into(),
                occurred_at_ms: at,
                product_id: Some(product.into()),
                purchase_kind: None,
                app_id: Some("com.example".into()),
                state: ImpliedState {
                    status: Some(status),
                    expires_at_ms: (period > 0).then_some(at + period),
                    auto_renew: Some(true),
                    product_id: Some(product.into()),
                },
                app_user_id_hint: None,
                continues_subscription_key: None,
                attention: None,
                state_fetch_pending: false,
                details: EventDetails {
                    purchased_at_ms: Some(at),
                    price: paid.then_some(price),
                    currency: paid.then(|| currency.to_owned()),
                    is_trial: Some(is_trial),
                    ..EventDetails::default()
                },
                decoded: serde_json::json!({ "n": n }),
            },
            raw_body: Vec::new(),
            received_at_ms: at + 200 + rng.below(5_000) as i64,
            auto_track: true,
            forward_headers: Vec::new(),
            source: storehook_db::Source::Push,
        });
        at += if period > 0 { period } else { DAY };
    }
    out
}

fn open(path: &std::path::Path, skip_charts: bool) -> Arc<dyn Storage> {
    let mut options = SqliteOptions::new(path);
    options.synchronous = Synchronous::Off;
    options.outbox = OutboxConfig {
        skip_chart_maintenance: skip_charts,
        ..OutboxConfig::default()
    };
    Arc::new(SqliteStorage::open(options).expect("open"))
}

/// Records `subs` subscriptions of 12 notifications through the write
/// path, 64 subscriptions at a time (as concurrent requests would).
async fn write_path(storage: Arc<dyn Storage>, subs: u64) -> Duration {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for lane in 0..64u64 {
        let storage = storage.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (lane + 1));
            for i in (lane..subs).step_by(64) {
                for n in subscription(&mut rng, i, 12) {
                    storage.record_notification(n).await.expect("record");
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("lane");
    }
    started.elapsed()
}

/// Writes `total` notifications straight into the notifications table in
/// one transaction (the chart tables stay empty until the rebuild).
fn generate_history(path: &std::path::Path, total: usize) {
    let mut conn = rusqlite::Connection::open(path).expect("open");
    let tx = conn.transaction().expect("tx");
    {
        let mut stmt = tx
            .prepare(
                "INSERT INTO notifications (store, notification_id, received_at, verdict,
                     subscription_key, event_type, raw_type, environment, occurred_at, product_id,
                     app_id, state_json, details_json, decoded_json, raw_body, source)
                 VALUES (?1, ?2, ?3, 'tracked', ?4, ?5, ?5, ?6, ?7, ?8, ?9, ?10, ?11, '{}', x'', 'push')",
            )
            .expect("prepare");
        let mut rng = Rng(42);
        let (mut written, mut index) = (0, 0u64);
        while written < total {
            let count = (total - written).min(12);
            for new in subscription(&mut rng, index, count) {
                let n = &new.notification;
                stmt.execute(rusqlite::params![
                    n.store,
                    n.notification_id,
                    new.received_at_ms,
                    n.subscription_key,
                    n.event_type.as_str(),
                    n.environment.as_str(),
                    n.occurred_at_ms,
                    n.product_id,
                    n.app_id,
                    serde_json::to_string(&n.state).expect("json"),
                    serde_json::to_string(&n.details).expect("json"),
                ])
                .expect("insert");
            }
            written += count;
            index += 1;
        }
    }
    tx.commit().expect("commit");
}

fn queries() -> Vec<(String, ChartQuery)> {
    let mut out = Vec::new();
    let end = START + 730 * DAY;
    for metric in ChartMetric::ALL {
        for (bucket, from) in [
            (ChartBucket::Day, end - 365 * DAY),
            (ChartBucket::Week, START),
            (ChartBucket::Month, START),
        ] {
            out.push((
                format!("{}/{}", metric.as_str(), bucket.as_str()),
                ChartQuery::unfiltered(metric, bucket, from, end, end),
            ));
        }
    }
    let mut filtered = out[0].1.clone();
    filtered.store = Some("apple".into());
    filtered.product = Some("pro.monthly".into());
    out.push((
        "active_subscriptions/day, apple pro.monthly".into(),
        filtered,
    ));
    let lag_day = out
        .iter()
        .find(|(name, _)| name == "lag/day")
        .map(|(_, q)| q.clone());
    if let Some(mut lag) = lag_day {
        lag.product = Some("pro.monthly".into());
        out.push(("lag/day, pro.monthly".into(), lag));
    }
    out
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let total: usize = std::env::var("STOREHOOK_CHART_BENCH_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);

    // 1. The write path, with and without chart maintenance, same run.
    let subs = 5_000; // 60,000 notifications each way
    let (with, without) = rt.block_on(async {
        let without = write_path(open(&dir.path().join("plain.db"), true), subs).await;
        let with = write_path(open(&dir.path().join("charts.db"), false), subs).await;
        (with, without)
    });
    let per = |d: Duration| d.as_secs_f64() * 1e6 / (subs as f64 * 12.0);

    // 2. A big history, charted by the rebuild.
    let path = dir.path().join("history.db");
    drop(open(&path, false));
    let started = Instant::now();
    generate_history(&path, total);
    let generated = started.elapsed();
    let storage = open(&path, false);
    let started = Instant::now();
    rt.block_on(storage.rebuild_charts()).expect("rebuild");
    let rebuilt = started.elapsed();

    let mut summary = Vec::new();
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    for (name, q) in queries() {
        let mut times: Vec<Duration> = (0..7)
            .map(|_| {
                let started = Instant::now();
                rt.block_on(storage.chart(q.clone())).expect("chart");
                started.elapsed()
            })
            .collect();
        times.sort();
        summary.push((name.clone(), times[3], times[6]));
        c.bench_function(&format!("chart {name}"), |b| {
            b.iter(|| rt.block_on(storage.chart(q.clone())).expect("chart"))
        });
    }

    println!("\n== charts benchmark summary ==");
    println!(
        "write path, {} notifications each: with charts {:.2?} ({:.1} µs/notification), without {:.2?} ({:.1} µs); ratio {:.2}",
        subs * 12,
        with,
        per(with),
        without,
        per(without),
        with.as_secs_f64() / without.as_secs_f64()
    );
    println!(
        "history: {total} notifications generated in {generated:.2?}; chart tables rebuilt in {rebuilt:.2?}"
    );
    println!("chart queries (median / max of 7):");
    for (name, median, max) in summary {
        let mark = if median > Duration::from_millis(50) {
            "  OVER 50 ms"
        } else {
            ""
        };
        println!("  {name:50} {median:>10.2?} {max:>10.2?}{mark}");
    }
}
