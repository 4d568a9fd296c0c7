//! Prometheus metrics, served as text at `GET /metrics`.
//!
//! One [`Metrics`] per server (its own registry, so several servers in one
//! process — the tests — never share counters). The request path records
//! notifications and HTTP latencies; the delivery worker calls
//! [`Metrics::delivery_attempt`] and [`Metrics::set_outbox_depth`]; the
//! database's commit statistics are read at scrape time from a source the
//! server installs at start-up.
//!
//! `/metrics` is open on the listen address, like most exporters: it carries
//! counts, store ids and endpoint ids, never a payload, token or URL. Block it
//! at the reverse proxy if the listen address is public.
//!
//! Labels only ever take bounded values: a store label is a registered store
//! id or `unknown` (the path is the sender's choice), a route label is one of
//! a fixed list, a code is a short identifier or `other`.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The database's cumulative commit figures at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitSnapshot {
    pub commits: u64,
    pub writes: u64,
    pub failed_commits: u64,
    pub last_batch: u64,
    pub last_commit_micros: u64,
}

type CommitSource = Box<dyn Fn() -> CommitSnapshot + Send + Sync>;

/// Latency buckets in seconds: a notification is a verification plus an
/// fsync'd group commit, so most land between 1 ms and 100 ms.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Commit buckets in seconds: an fsync on an SSD takes 0.1–5 ms, on a
/// network disk tens of milliseconds.
const COMMIT_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Batch sizes: powers of two up to the writer's batch cap (512).
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

pub struct Metrics {
    registry: Registry,
    notifications: IntCounterVec,
    refusals: IntCounterVec,
    notification_seconds: HistogramVec,
    http_seconds: HistogramVec,
    outbox_depth: IntGauge,
    delivery_attempts: IntCounterVec,
    admin_auth_failures: IntCounterVec,
    admin_auth_throttled: IntCounter,
    db_commits: IntCounter,
    db_writes: IntCounter,
    db_failed_commits: IntCounter,
    db_last_batch: IntGauge,
    db_last_commit_micros: IntGauge,
    db_commit_seconds: Histogram,
    db_batch_size: Histogram,
    db_size_bytes: IntGauge,
    last_verified: IntGaugeVec,
    store_api: StoreApiGauges,
    db_free_bytes: IntGauge,
    pruned: IntCounterVec,
    commit_source: OnceLock<CommitSource>,
    /// Serialises the scrape-time sync of the database counters.
    commit_sync: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    #[allow(
        clippy::expect_used,
        reason = "the metric definitions are constants: one that does not register is a programming error every test would hit at start-up"
    )]
    pub fn new() -> Self {
        let registry = Registry::new();
        let notifications = counter_vec(
            "storehook_notifications_total",
            "Notifications received, by store and verdict \
             (tracked, untracked, duplicate, rejected = acknowledged but unusable, refused = answered 4xx/5xx)",
            &["store", "verdict"],
        );
        let refusals = counter_vec(
            "storehook_notification_refusals_total",
            "Notifications refused (4xx/5xx), by store and error code",
            &["store", "code"],
        );
        let notification_seconds = histogram_vec(
            "storehook_notification_duration_seconds",
            "Time from a notification's arrival to its answer (verify, decode, store, commit)",
            LATENCY_BUCKETS,
            &["store"],
        );
        let http_seconds = histogram_vec(
            "storehook_http_request_duration_seconds",
            "HTTP request latency, by route and status code",
            LATENCY_BUCKETS,
            &["route", "status"],
        );
        let outbox_depth = gauge(
            "storehook_outbox_depth",
            "Deliveries waiting in the outbox (all endpoints)",
        );
        let last_verified = gauge_vec("storehook_store_last_verified_timestamp_seconds", "When the store's last verified notification arrived (Unix seconds; absent before the first)", &["store"]);
        let store_api = StoreApiGauges::new();
        let db_size_bytes = gauge(
            "storehook_database_size_bytes",
            "Size of the database files on disk (database and write-ahead log)",
        );
        let db_free_bytes = gauge(
            "storehook_database_free_bytes",
            "Free space inside the database file, reused before it grows",
        );
        let pruned = counter_vec(
            "storehook_retention_pruned_total",
            "Rows pruned by [retention], by kind (raw_body, delivery, attempt)",
            &["kind"],
        );
        let delivery_attempts = counter_vec(
            "storehook_delivery_attempts_total",
            "Outgoing delivery attempts, by endpoint id and result",
            &["endpoint", "result"],
        );
        let admin_auth_failures = counter_vec(
            "storehook_admin_auth_failures_total",
            "Wrong admin tokens, by how they were presented (bearer, sign_in)",
            &["kind"],
        );
        let admin_auth_throttled = counter(
            "storehook_admin_auth_throttled_total",
            "Admin requests answered 429 because their address made too many wrong attempts",
        );
        let db_commits = counter(
            "storehook_db_commits_total",
            "Write transactions committed by the database writer (one per group-commit batch)",
        );
        let db_writes = counter(
            "storehook_db_commit_writes_total",
            "Writes committed; divided by storehook_db_commits_total, the mean batch size",
        );
        let db_failed_commits = counter(
            "storehook_db_commit_failures_total",
            "Write transactions that failed to begin or commit",
        );
        let db_last_batch = gauge(
            "storehook_db_last_commit_batch_size",
            "Writes in the most recent committed batch",
        );
        let db_last_commit_micros = gauge(
            "storehook_db_last_commit_duration_microseconds",
            "Duration of the most recent committed batch (begin to commit, fsync included)",
        );
        let db_commit_seconds = histogram(
            "storehook_db_commit_duration_seconds",
            "Duration of each committed write batch (begin to commit, fsync included)",
            COMMIT_BUCKETS,
        );
        let db_batch_size = histogram(
            "storehook_db_commit_batch_size",
            "Writes carried by each committed batch (group commit)",
            BATCH_BUCKETS,
        );
        let build_info = defined(IntGauge::with_opts(
            Opts::new("storehook_build_info", "Always 1; the version is a label")
                .const_label("version", env!("CARGO_PKG_VERSION")),
        ));
        build_info.set(1);

        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(notifications.clone()),
            Box::new(refusals.clone()),
            Box::new(notification_seconds.clone()),
            Box::new(http_seconds.clone()),
            Box::new(outbox_depth.clone()),
            Box::new(delivery_attempts.clone()),
            Box::new(admin_auth_failures.clone()),
            Box::new(admin_auth_throttled.clone()),
            Box::new(db_commits.clone()),
            Box::new(db_writes.clone()),
            Box::new(db_failed_commits.clone()),
            Box::new(db_last_batch.clone()),
            Box::new(db_last_commit_micros.clone()),
            Box::new(db_commit_seconds.clone()),
            Box::new(db_batch_size.clone()),
            Box::new(db_size_bytes.clone()),
            Box::new(last_verified.clone()),
            Box::new(store_api.last_received.clone()),
            Box::new(store_api.overdue.clone()),
            Box::new(store_api.unacknowledged.clone()),
            Box::new(store_api.recovered.clone()),
            Box::new(db_free_bytes.clone()),
            Box::new(pruned.clone()),
            Box::new(build_info),
        ];
        for c in collectors {
            registry.register(c).expect("metric names are unique");
        }
        Self {
            registry,
            notifications,
            refusals,
            notification_seconds,
            http_seconds,
            outbox_depth,
            delivery_attempts,
            admin_auth_failures,
            admin_auth_throttled,
            db_commits,
            db_writes,
            db_failed_commits,
            db_last_batch,
            db_last_commit_micros,
            db_commit_seconds,
            db_batch_size,
            db_size_bytes,
            last_verified,
            store_api,
            db_free_bytes,
            pruned,
            commit_source: OnceLock::new(),
            commit_sync: Mutex::new(()),
        }
    }

    /// A wrong admin token (`kind`: `bearer` or `sign_in`).
    pub fn admin_auth_failure(&self, kind: &'static str) {
        self.admin_auth_failures.with_label_values(&[kind]).inc();
    }

    /// An admin request refused unchecked because its address is blocked.
    pub fn admin_auth_throttled(&self) {
        self.admin_auth_throttled.inc();
    }

    /// Where the database's commit figures come from (set once, at start-up).
    pub fn set_commit_source(&self, source: impl Fn() -> CommitSnapshot + Send + Sync + 'static) {
        let _ = self.commit_source.set(Box::new(source));
    }

    /// For the database writer: one batch committed, how long it took and
    /// how many writes it carried.
    pub fn commit(&self, took: Duration, batch: usize) {
        self.db_commit_seconds.observe(took.as_secs_f64());
        self.db_batch_size.observe(batch as f64);
    }

    /// A stored (or de-duplicated, or acknowledged-but-rejected) notification.
    /// `store` must be a registered store id.
    pub fn notification(&self, store: &str, verdict: &str, latency: Duration) {
        self.notifications
            .with_label_values(&[store, verdict])
            .inc();
        self.set_last_verified(store, crate::now_ms());
        self.notification_seconds
            .with_label_values(&[store])
            .observe(latency.as_secs_f64());
    }

    /// A notification answered with an error. `store` must be a registered
    /// store id or `unknown`.
    pub fn notification_refused(&self, store: &str, code: &str, latency: Duration) {
        self.notifications
            .with_label_values(&[store, "refused"])
            .inc();
        self.refusals
            .with_label_values(&[store, bounded_code(code)])
            .inc();
        self.notification_seconds
            .with_label_values(&[store])
            .observe(latency.as_secs_f64());
    }

    /// One HTTP request answered (from the route table's wrapper).
    pub fn http_request(&self, path: &str, status: u16, latency: Duration) {
        let status = status_label(status);
        self.http_seconds
            .with_label_values(&[route_label(path), status])
            .observe(latency.as_secs_f64());
    }

    /// For the delivery worker: one attempt to deliver to `endpoint` (its
    /// configured id, never its URL) ended as `result` (`delivered`,
    /// `http_error` or `network_error`: the label is the enum's, so the
    /// emitted values and these docs cannot drift apart).
    pub fn delivery_attempt(&self, endpoint: &str, result: crate::delivery::policy::AttemptLabel) {
        self.delivery_attempts
            .with_label_values(&[endpoint, result.as_str()])
            .inc();
    }

    /// A verified notification of `store` arrived at `at_ms` (also set at
    /// start-up from the stored statistics, so the gauge survives restarts).
    pub fn set_last_verified(&self, store: &str, at_ms: i64) {
        let gauge = self.last_verified.with_label_values(&[store]);
        let seconds = at_ms.div_euclid(1000);
        if seconds > gauge.get() {
            gauge.set(seconds);
        }
    }

    /// What the store-API maintenance tick measured of one store.
    pub fn set_store_api_snapshot(&self, store: &str, snapshot: StoreApiSnapshot) {
        let g = &self.store_api;
        if let Some(at) = snapshot.last_received_ms {
            g.last_received
                .with_label_values(&[store])
                .set(at.div_euclid(1000));
        }
        g.overdue.with_label_values(&[store]).set(snapshot.overdue);
        g.unacknowledged
            .with_label_values(&[store, "pending"])
            .set(snapshot.unacknowledged);
        g.unacknowledged
            .with_label_values(&[store, "overdue"])
            .set(snapshot.unacknowledged_overdue);
        g.recovered
            .with_label_values(&[store])
            .set(snapshot.recovered);
    }

    /// The database's size, as last measured.
    pub fn set_database_size(&self, size: storehook_db::DatabaseSize) {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.db_size_bytes.set(clamp(size.file_bytes));
        self.db_free_bytes.set(clamp(size.free_bytes));
    }

    /// The database's size in bytes, as last measured (0 before the first).
    pub fn database_size_bytes(&self) -> u64 {
        u64::try_from(self.db_size_bytes.get()).unwrap_or(0)
    }

    /// Rows a pruning batch removed.
    pub fn pruned(&self, report: storehook_db::PruneReport) {
        for (kind, n) in [
            ("raw_body", report.raw_bodies),
            ("delivery", report.deliveries),
            ("attempt", report.attempts),
        ] {
            self.pruned.with_label_values(&[kind]).inc_by(n);
        }
    }

    /// For the delivery worker: deliveries waiting, all endpoints.
    pub fn set_outbox_depth(&self, n: i64) {
        self.outbox_depth.set(n);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.sync_commit_stats();
        let mut buf = Vec::new();
        // Encoding into a Vec only fails on a malformed family, which the
        // registry's checks rule out; an empty answer is the fallback.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Brings the database counters up to the source's cumulative figures.
    fn sync_commit_stats(&self) {
        let Some(source) = self.commit_source.get() else {
            return;
        };
        let _guard = self.commit_sync.lock();
        let now = source();
        let catch_up = |counter: &IntCounter, total: u64| {
            counter.inc_by(total.saturating_sub(counter.get()));
        };
        catch_up(&self.db_commits, now.commits);
        catch_up(&self.db_writes, now.writes);
        catch_up(&self.db_failed_commits, now.failed_commits);
        self.db_last_batch
            .set(i64::try_from(now.last_batch).unwrap_or(i64::MAX));
        self.db_last_commit_micros
            .set(i64::try_from(now.last_commit_micros).unwrap_or(i64::MAX));
    }
}

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`.
/// One store's pull-side figures, for alerting.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreApiSnapshot {
    pub last_received_ms: Option<i64>,
    pub overdue: i64,
    pub unacknowledged: i64,
    pub unacknowledged_overdue: i64,
    pub recovered: i64,
}

struct StoreApiGauges {
    last_received: IntGaugeVec,
    overdue: IntGaugeVec,
    unacknowledged: IntGaugeVec,
    recovered: IntGaugeVec,
}

impl StoreApiGauges {
    fn new() -> Self {
        Self {
            last_received: gauge_vec(
                "storehook_store_last_received_timestamp_seconds",
                "When the store last pushed a notification storehook applied (Unix seconds; absent before the first)",
                &["store"],
            ),
            overdue: gauge_vec(
                "storehook_store_overdue_subscriptions",
                "Tracked subscriptions whose renewal or expiry passed with no notification since (evidence of a broken connection)",
                &["store"],
            ),
            unacknowledged: gauge_vec(
                "storehook_unacknowledged_purchases",
                "Purchases the store says are not acknowledged (state=pending), and of those past the warning threshold (state=overdue)",
                &["store", "state"],
            ),
            recovered: gauge_vec(
                "storehook_store_recovered_notifications",
                "Notifications a backfill or catch-up recovered from the store's API (new to storehook), since the database was created",
                &["store"],
            ),
        }
    }
}

/// A metric as defined. The definitions are constants: one that does not
/// build is a programming error every test run would hit at start-up.
#[allow(
    clippy::expect_used,
    reason = "the metric definitions are constants (see above)"
)]
fn defined<M>(metric: prometheus::Result<M>) -> M {
    metric.expect("metric definition")
}

fn counter(name: &str, help: &str) -> IntCounter {
    defined(IntCounter::new(name, help))
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    defined(IntCounterVec::new(Opts::new(name, help), labels))
}

fn gauge(name: &str, help: &str) -> IntGauge {
    defined(IntGauge::new(name, help))
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    defined(IntGaugeVec::new(Opts::new(name, help), labels))
}

fn histogram(name: &str, help: &str, buckets: &[f64]) -> Histogram {
    defined(Histogram::with_opts(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
    ))
}

fn histogram_vec(name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
    defined(HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    ))
}

pub(crate) fn response(metrics: &Metrics) -> warp::reply::Response {
    use warp::Reply;
    warp::reply::with_header(metrics.render(), "content-type", CONTENT_TYPE).into_response()
}

/// A request path reduced to its route, so ids in paths never become labels.
fn route_label(path: &str) -> &'static str {
    let mut parts = path.trim_start_matches('/').split('/');
    match (parts.next(), parts.next()) {
        (Some("v1"), Some("notifications")) => "notifications",
        (Some("v1"), Some("subscriptions")) => "subscriptions",
        (Some("v1"), Some("subscribers")) => "subscribers",
        (Some("v1"), Some("stores")) => "stores",
        (Some("v1"), Some("webhooks")) => "webhooks",
        (Some("v1"), Some("events")) => "events",
        (Some("v1"), Some(_)) => "api_other",
        (Some("healthz"), _) => "healthz",
        (Some("metrics"), _) => "metrics",
        (Some(""), _) | (Some("dashboard"), _) => "dashboard",
        _ => "other",
    }
}

fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        201 => "201",
        204 => "204",
        303 => "303",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        408 => "408",
        413 => "413",
        415 => "415",
        500 => "500",
        501 => "501",
        503 => "503",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}

/// Error codes and results are identifiers; anything else (or anything
/// long) is `other`, so a plugin's dynamic text cannot grow the label set.
fn bounded_code(code: &str) -> &str {
    let ok = !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        code
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value_of(text: &str, line_start: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn counters_and_histograms_render() {
        let m = Metrics::new();
        m.notification("example", "tracked", Duration::from_millis(3));
        m.notification("example", "tracked", Duration::from_millis(4));
        m.notification_refused("acme", "no_matching_signature", Duration::from_millis(1));
        m.delivery_attempt("billing", crate::delivery::policy::AttemptLabel::Delivered);
        m.set_outbox_depth(7);
        m.http_request(
            "/v1/subscriptions/example/123",
            404,
            Duration::from_millis(2),
        );
        let text = m.render();
        assert_eq!(
            value_of(
                &text,
                "storehook_notifications_total{store=\"example\",verdict=\"tracked\"}"
            ),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            value_of(&text, "storehook_notification_refusals_total{code=\"no_matching_signature\",store=\"acme\"}"),
            Some(1.0),
            "{text}"
        );
        assert_eq!(value_of(&text, "storehook_outbox_depth"), Some(7.0));
        assert!(text.contains("route=\"subscriptions\""), "{text}");
        assert!(!text.contains("123"), "ids in paths never become labels");
        assert!(text.contains("storehook_notification_duration_seconds_bucket"));
    }

    #[test]
    fn commit_counters_follow_the_source() {
        let m = Metrics::new();
        let figures = std::sync::Arc::new(Mutex::new(CommitSnapshot::default()));
        let source = figures.clone();
        m.set_commit_source(move || source.lock().map(|s| *s).unwrap_or_default());
        if let Ok(mut f) = figures.lock() {
            *f = CommitSnapshot {
                commits: 3,
                writes: 10,
                failed_commits: 0,
                last_batch: 4,
                last_commit_micros: 900,
            };
        }
        let text = m.render();
        assert_eq!(value_of(&text, "storehook_db_commits_total"), Some(3.0));
        assert_eq!(
            value_of(&text, "storehook_db_commit_writes_total"),
            Some(10.0)
        );
        assert_eq!(
            value_of(&text, "storehook_db_last_commit_batch_size"),
            Some(4.0)
        );
        if let Ok(mut f) = figures.lock() {
            f.commits = 5;
            f.writes = 12;
        }
        let text = m.render();
        assert_eq!(value_of(&text, "storehook_db_commits_total"), Some(5.0));
        assert_eq!(
            value_of(&text, "storehook_db_commit_writes_total"),
            Some(12.0)
        );
    }

    #[test]
    fn labels_stay_bounded() {
        assert_eq!(route_label("/"), "dashboard");
        assert_eq!(route_label("/dashboard/notifications/5"), "dashboard");
        assert_eq!(route_label("/v1/notifications/whatever"), "notifications");
        assert_eq!(route_label("/wp-admin/x.php"), "other");
        assert_eq!(status_label(418), "4xx");
        assert_eq!(
            bounded_code("no_matching_signature"),
            "no_matching_signature"
        );
        assert_eq!(bounded_code("a message with spaces"), "other");
        assert_eq!(bounded_code(&"x".repeat(65)), "other");
    }
}
