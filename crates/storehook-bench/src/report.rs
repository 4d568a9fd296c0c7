//! Figures of one run: throughput, latency percentiles, the server's CPU and
//! memory, the answers that were not the expected ones, the database check.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::check::DbCheck;
use crate::load::{Kind, RunOutput, Sample};
use crate::traffic::{Store, Workload};
use crate::wire::Sender;

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    fn of(mut us: Vec<u32>) -> Option<Self> {
        if us.is_empty() {
            return None;
        }
        us.sort_unstable();
        let at = |q: f64| {
            let rank = ((q * us.len() as f64).ceil() as usize).clamp(1, us.len());
            f64::from(us[rank - 1]) / 1000.0
        };
        let mean = us.iter().map(|&u| f64::from(u)).sum::<f64>() / us.len() as f64 / 1000.0;
        Some(Latency {
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            max_ms: at(1.0),
            mean_ms: mean,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StoreFigures {
    pub requests: usize,
    pub throughput_rps: f64,
    pub latency: Option<Latency>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerUse {
    pub cpu_s: Option<f64>,
    /// CPU seconds per wall second (1.0 = one core busy all along).
    pub cpu_cores: Option<f64>,
    pub cpu_us_per_request: Option<f64>,
    pub rss_max_mib: Option<f64>,
    pub rss_peak_mib: Option<f64>,
    /// PostgreSQL's own CPU (its postmaster and backends), when it runs here.
    pub database_cpu_us_per_request: Option<f64>,
}

/// What sending cost the load generator (its own process).
#[derive(Debug, Clone, Serialize)]
pub struct SenderUse {
    /// `http` or `raw`.
    pub kind: Sender,
    pub cpu_us_per_request: Option<f64>,
    /// CPU seconds per wall second.
    pub cpu_cores: Option<f64>,
}

/// The instances' group-commit writers during the measured run (from
/// their `/metrics`): how many writes one commit carried.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct WriterFigures {
    pub commits: u64,
    pub writes: u64,
    pub writes_per_commit: f64,
    pub commits_per_second: f64,
}

impl WriterFigures {
    pub fn between(before: (u64, u64), after: (u64, u64), secs: f64) -> Self {
        let commits = after.0.saturating_sub(before.0);
        let writes = after.1.saturating_sub(before.1);
        Self {
            commits,
            writes,
            writes_per_commit: writes as f64 / commits.max(1) as f64,
            commits_per_second: commits as f64 / secs.max(1e-9),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub label: String,
    /// `sqlite` or `postgres`.
    pub database: String,
    /// Server instances sharing the database (and the load).
    pub instances: usize,
    pub synchronous: String,
    pub concurrency: usize,
    pub rate_limit_rps: Option<f64>,
    pub requests: usize,
    pub as_expected: usize,
    /// `<kind>:<status>` of the answers that were not the expected ones.
    pub unexpected: BTreeMap<String, usize>,
    pub elapsed_s: f64,
    pub throughput_rps: f64,
    pub latency: Option<Latency>,
    pub per_store: BTreeMap<Store, StoreFigures>,
    pub server: ServerUse,
    pub sender: SenderUse,
    pub writer: Option<WriterFigures>,
    pub db_check: Option<DbCheck>,
}

pub struct Context<'a> {
    pub label: &'a str,
    pub database: &'a str,
    pub instances: usize,
    pub synchronous: &'a str,
    pub concurrency: usize,
    pub rate: Option<f64>,
    pub sender: Sender,
}

pub fn summarize(
    ctx: &Context<'_>,
    workload: &Workload,
    out: &RunOutput,
    db_check: Option<DbCheck>,
) -> Summary {
    let secs = out.elapsed.as_secs_f64().max(1e-9);
    let mut unexpected = BTreeMap::new();
    let mut as_expected = 0;
    for s in &out.samples {
        let request = match s.kind {
            Kind::Invalid => &workload.invalid[s.index],
            _ => &workload.fresh[s.index],
        };
        if s.as_expected(request) {
            as_expected += 1;
        } else {
            let kind = match s.kind {
                Kind::Fresh => "fresh",
                Kind::Duplicate => "duplicate",
                Kind::Invalid => "forged",
            };
            *unexpected
                .entry(format!("{kind}:{}:{:?}", s.status, s.verdict))
                .or_insert(0) += 1;
        }
    }
    let mut per_store = BTreeMap::new();
    for store in Store::ALL {
        let lat: Vec<u32> = samples_of(&out.samples, store)
            .map(|s| s.latency_us)
            .collect();
        if lat.is_empty() {
            continue;
        }
        per_store.insert(
            store,
            StoreFigures {
                requests: lat.len(),
                throughput_rps: lat.len() as f64 / secs,
                latency: Latency::of(lat),
            },
        );
    }
    let n = out.samples.len();
    Summary {
        label: ctx.label.to_owned(),
        database: ctx.database.to_owned(),
        instances: ctx.instances,
        synchronous: ctx.synchronous.to_owned(),
        concurrency: ctx.concurrency,
        rate_limit_rps: ctx.rate,
        requests: n,
        as_expected,
        unexpected,
        elapsed_s: secs,
        throughput_rps: n as f64 / secs,
        latency: Latency::of(out.samples.iter().map(|s| s.latency_us).collect()),
        per_store,
        server: ServerUse {
            cpu_s: out.server_cpu_s,
            cpu_cores: out.server_cpu_s.map(|c| c / secs),
            cpu_us_per_request: out.server_cpu_s.map(|c| c * 1e6 / n.max(1) as f64),
            rss_max_mib: out.rss_max_kib.map(|k| k as f64 / 1024.0),
            rss_peak_mib: out.rss_peak_kib.map(|k| k as f64 / 1024.0),
            database_cpu_us_per_request: None,
        },
        sender: SenderUse {
            kind: ctx.sender,
            cpu_us_per_request: out.sender_cpu_s.map(|c| c * 1e6 / n.max(1) as f64),
            cpu_cores: out.sender_cpu_s.map(|c| c / secs),
        },
        writer: None,
        db_check,
    }
}

fn samples_of(samples: &[Sample], store: Store) -> impl Iterator<Item = &Sample> {
    samples.iter().filter(move |s| s.store == store)
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.digits$}"))
}

pub fn print(s: &Summary) {
    println!(
        "{}: {} requests in {:.2} s = {:.0} req/s ({}{}, synchronous={}, concurrency {}{})",
        s.label,
        s.requests,
        s.elapsed_s,
        s.throughput_rps,
        s.database,
        if s.instances > 1 {
            format!(" ×{} instances", s.instances)
        } else {
            String::new()
        },
        s.synchronous,
        s.concurrency,
        s.rate_limit_rps
            .map(|r| format!(", paced at {r:.0}/s"))
            .unwrap_or_default()
    );
    if let Some(l) = &s.latency {
        println!(
            "  latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
            l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
        );
    }
    for (store, f) in &s.per_store {
        let p99 = f.latency.as_ref().map(|l| l.p99_ms);
        println!(
            "  {:<7} {:>7} requests {:>8.0} req/s  p99 {} ms",
            store.id(),
            f.requests,
            f.throughput_rps,
            opt(p99, 2)
        );
    }
    println!(
        "  server: {} cores, {} µs CPU/request, RSS max {} MiB (peak {} MiB)",
        opt(s.server.cpu_cores, 2),
        opt(s.server.cpu_us_per_request, 0),
        opt(s.server.rss_max_mib, 1),
        opt(s.server.rss_peak_mib, 1)
    );
    println!(
        "  sender ({}): {} cores, {} µs CPU/request",
        s.sender.kind.name(),
        opt(s.sender.cpu_cores, 2),
        opt(s.sender.cpu_us_per_request, 0)
    );
    if let Some(w) = &s.writer {
        println!(
            "  writers: {} commits ({:.0}/s), {:.2} writes per commit{}",
            w.commits,
            w.commits_per_second,
            w.writes_per_commit,
            s.server
                .database_cpu_us_per_request
                .map(|c| format!("; PostgreSQL {c:.0} µs CPU/request"))
                .unwrap_or_default()
        );
    }
    if s.unexpected.is_empty() {
        println!("  answers: all {} as expected", s.as_expected);
    } else {
        println!(
            "  answers: {} as expected; UNEXPECTED {:?}",
            s.as_expected, s.unexpected
        );
    }
    match &s.db_check {
        Some(c) => println!(
            "  database: {} — {} acknowledged stored once ({} missing, {} wrong verdict), {} forged absent ({} stored), {} unexplained rows, {} tracked not applied",
            if c.ok { "ok" } else { "FAILED" },
            c.acknowledged - c.acknowledged_missing,
            c.acknowledged_missing,
            c.wrong_verdict,
            c.forged - c.forged_stored,
            c.forged_stored,
            c.unexplained_rows,
            c.tracked_not_applied
        ),
        None => println!("  database: not checked (no --db)"),
    }
}
