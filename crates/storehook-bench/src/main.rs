//! `storehook-bench`: a load generator for storehook.
//!
//! It signs realistic traffic for each store with its own test keys (an
//! Apple-like CA chain with Apple's OIDs, an RSA key served as a JWKS file
//! for Google, a Stripe secret), writes the matching config, starts the
//! server (or targets a running one), drives it over loopback at a chosen
//! concurrency and mix, reports throughput, latency percentiles and the
//! server's CPU and memory, writes a JSON result file, and then checks the
//! database: every request that got a 200 is stored exactly once, every
//! refused one is absent.
//!
//! It runs against SQLite (the default) or PostgreSQL (a throwaway server,
//! or `--database-url`), with one or several instances sharing the
//! database and the load.
//!
//! ```text
//! storehook-bench run --stores stripe --requests 40000 --concurrency 32
//! storehook-bench run --stores stripe --backend postgres:3   # three instances, one database
//! storehook-bench compare --a-sync FULL --b-sync OFF --rounds 3
//! storehook-bench compare --a-backend sqlite --b-backend postgres --rounds 4
//! storehook-bench scale --stores stripe --instances 1,2,3 --rounds 3
//! storehook-bench setup --workdir bench   # keys + config for a server you start yourself
//! ```

mod check;
mod keys;
mod load;
mod postgres;
mod report;
mod server;
mod traffic;
mod wire;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::keys::Keys;
use crate::postgres::PgServer;
use crate::report::{Summary, WriterFigures};
use crate::server::Server;
use crate::traffic::{Mix, Store, Workload};
use crate::wire::Sender;

#[derive(Parser)]
#[command(name = "storehook-bench", about = "Load generator for storehook")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes the keys and a server config into the work folder, for a
    /// server you start yourself (then `run --target`).
    Setup {
        #[arg(long, default_value_os_t = default_workdir())]
        workdir: PathBuf,
        #[arg(long, default_value = "FULL")]
        synchronous: String,
    },
    /// One run: start the server (or target a running one), drive it, report.
    Run {
        #[command(flatten)]
        workload: WorkloadArgs,
        /// The storehook binary (default: `storehook` beside this one).
        #[arg(long)]
        server: Option<PathBuf>,
        /// `[database] synchronous` of the started server: FULL, NORMAL or OFF.
        #[arg(long, default_value = "FULL")]
        synchronous: String,
        /// The database of the started servers: `sqlite`, or `postgres[:N]`
        /// (N instances on one PostgreSQL database, the load spread over them).
        #[arg(long, default_value = "sqlite")]
        backend: DbKind,
        #[command(flatten)]
        postgres: PostgresArgs,
        /// Target a running server (configured by `setup`) instead of starting one.
        #[arg(long)]
        target: Option<String>,
        /// With --target: its database file, checked afterwards.
        #[arg(long)]
        db: Option<PathBuf>,
        /// With --target: its pid, for CPU and memory figures.
        #[arg(long)]
        pid: Option<u32>,
        /// Where to write the JSON result.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The same workload against two builds or two configs, alternately
    /// (A B, B A, …), with the ratio B/A per round and its median.
    Compare {
        #[command(flatten)]
        workload: WorkloadArgs,
        #[arg(long)]
        a_bin: Option<PathBuf>,
        #[arg(long)]
        b_bin: Option<PathBuf>,
        #[arg(long, default_value = "FULL")]
        a_sync: String,
        #[arg(long, default_value = "FULL")]
        b_sync: String,
        /// A's database: `sqlite`, or `postgres[:N]` (N instances).
        #[arg(long, default_value = "sqlite")]
        a_backend: DbKind,
        #[arg(long, default_value = "sqlite")]
        b_backend: DbKind,
        /// A's sender (default: --sender).
        #[arg(long)]
        a_sender: Option<Sender>,
        /// B's sender (default: --sender).
        #[arg(long)]
        b_sender: Option<Sender>,
        #[command(flatten)]
        postgres: PostgresArgs,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// SQLite (the baseline) and PostgreSQL with 1, 2, 3… instances, in
    /// turn within each round (the order rotating), each as a ratio to the
    /// SQLite run of its round, with the medians.
    Scale {
        #[command(flatten)]
        workload: WorkloadArgs,
        #[arg(long)]
        server: Option<PathBuf>,
        /// Instance counts to run on PostgreSQL, e.g. `1,2,3`.
        #[arg(long, default_value = "1,2,3", value_delimiter = ',')]
        instances: Vec<usize>,
        #[command(flatten)]
        postgres: PostgresArgs,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Args, Clone)]
struct PostgresArgs {
    /// A PostgreSQL server to run against (its user may create databases;
    /// each run gets a fresh one, dropped afterwards). Default: a throwaway
    /// server (Debian's postgresql package) started for the bench.
    #[arg(long)]
    database_url: Option<String>,
}

/// Which database the started servers share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DbKind {
    Sqlite,
    /// This many instances on one PostgreSQL database.
    Postgres(usize),
}

impl std::str::FromStr for DbKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, count) = s.split_once(':').unwrap_or((s, "1"));
        match name {
            "sqlite" if count == "1" => Ok(Self::Sqlite),
            "postgres" | "pg" => match count.parse::<usize>() {
                Ok(n) if n > 0 => Ok(Self::Postgres(n)),
                _ => Err(format!(
                    "`{count}`: the instance count must be a positive number"
                )),
            },
            _ => Err(format!("`{s}`: sqlite, postgres or postgres:N")),
        }
    }
}

impl DbKind {
    fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    fn instances(self) -> usize {
        match self {
            Self::Sqlite => 1,
            Self::Postgres(n) => n,
        }
    }

    fn label(self) -> String {
        match self {
            Self::Sqlite => "sqlite".into(),
            Self::Postgres(n) => format!("pg×{n}"),
        }
    }
}

/// The PostgreSQL server, started once if any target needs it.
fn postgres_for(kinds: &[DbKind], args: &PostgresArgs) -> Result<Option<PgServer>> {
    kinds
        .iter()
        .any(|k| matches!(k, DbKind::Postgres(_)))
        .then(|| PgServer::start(args.database_url.as_deref()))
        .transpose()
}

#[derive(Args, Clone)]
struct WorkloadArgs {
    /// Store weights, e.g. `stripe`, `apple=1,stripe=3`.
    #[arg(long, default_value = "apple=1,google=1,stripe=1")]
    stores: String,
    /// Requests per run.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Requests in flight at once (closed loop).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Pace at this many requests per second overall (open loop) instead
    /// of as fast as answers come.
    #[arg(long)]
    rate: Option<f64>,
    /// How requests are sent: `http` (a full HTTP client, reqwest) or
    /// `raw` (pre-serialized bytes over keep-alive connections, so that
    /// sending costs little and the server gets nearly all the cores).
    #[arg(long, default_value = "http")]
    sender: Sender,
    /// Share of notifications about a subscription tracked beforehand.
    #[arg(long, default_value_t = 0.5)]
    tracked: f64,
    /// Share of requests that re-send an acknowledged notification.
    #[arg(long, default_value_t = 0.05)]
    duplicates: f64,
    /// Share of requests with a forged signature (must get 401).
    #[arg(long, default_value_t = 0.05)]
    invalid: f64,
    /// Subscriptions per store.
    #[arg(long, default_value_t = 1_000)]
    subscriptions: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_os_t = default_workdir())]
    workdir: PathBuf,
    /// Keep each run's database (removed by default).
    #[arg(long)]
    keep: bool,
    #[arg(long)]
    no_progress: bool,
}

fn default_workdir() -> PathBuf {
    std::env::temp_dir().join("storehook-bench")
}

fn parse_stores(s: &str) -> Result<Vec<(Store, u32)>> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|part| {
            let (name, weight) = part.split_once('=').unwrap_or((part, "1"));
            let store = Store::parse(name.trim())
                .with_context(|| format!("unknown store `{name}` (apple, google, stripe)"))?;
            Ok((store, weight.trim().parse().context("store weight")?))
        })
        .collect()
}

impl WorkloadArgs {
    fn mix(&self) -> Result<Mix> {
        anyhow::ensure!(
            self.duplicates + self.invalid < 1.0,
            "--duplicates + --invalid must stay below 1"
        );
        anyhow::ensure!(self.subscriptions > 0, "--subscriptions must be positive");
        Ok(Mix {
            stores: parse_stores(&self.stores)?,
            tracked: self.tracked.clamp(0.0, 1.0),
            duplicates: self.duplicates,
            invalid: self.invalid,
            subscriptions: self.subscriptions,
        })
    }

    fn generate(&self, keys: &Keys) -> Result<Workload> {
        let started = Instant::now();
        let workload = Workload::generate(keys, self.mix()?, self.requests, self.seed)?;
        eprintln!(
            "generated {} signed requests ({} fresh, {} forged) in {:.1} s",
            workload.plan.len(),
            workload.fresh.len(),
            workload.invalid.len(),
            started.elapsed().as_secs_f64()
        );
        Ok(workload)
    }
}

/// The server binary given on the command line, else the one built next to
/// this one.
fn server_bin(given: Option<PathBuf>) -> Result<PathBuf> {
    given.map_or_else(default_server_bin, Ok)
}

fn default_server_bin() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("storehook");
    if !bin.exists() {
        bail!(
            "{} not found: build it (`cargo build --release -p storehook`) or pass --server",
            bin.display()
        );
    }
    Ok(bin)
}

/// Where and how one run starts its server(s).
struct Target<'a> {
    label: String,
    bin: &'a Path,
    synchronous: &'a str,
    db: DbKind,
    sender: Sender,
}

/// Starts fresh servers on a fresh database, tracks, drives, stops,
/// checks the database.
async fn run_fresh(
    keys: &Keys,
    workload: &mut Arc<Workload>,
    args: &WorkloadArgs,
    target: &Target<'_>,
    pg: Option<&PgServer>,
) -> Result<Summary> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let dir = args
        .workdir
        .join("runs")
        .join(format!("{}-{stamp}", target.label));
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("storehook.db");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        traffic::server_config(keys, &db, target.synchronous),
    )?;
    if let Some(w) = Arc::get_mut(workload) {
        w.refresh(keys);
    }
    let postgres = match (target.db, pg) {
        (DbKind::Sqlite, _) => None,
        (DbKind::Postgres(_), Some(pg)) => {
            let name = postgres::database_name(&target.label, stamp);
            let url = pg.create_database(&name).await?;
            Some((pg, name, url))
        }
        (DbKind::Postgres(_), None) => bail!("no PostgreSQL server for {}", target.label),
    };
    let url = postgres.as_ref().map(|(_, _, url)| url.as_str());
    // One at a time: each migrates (or finds the schema done) under a lock.
    let servers = (0..target.db.instances())
        .map(|_| Server::start(target.bin, &config, url))
        .collect::<Result<Vec<_>>>()?;
    let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
    let pids: Vec<u32> = servers.iter().filter_map(|s| s.pid).collect();
    load::track(&bases[0], workload, args.concurrency).await?;
    let options = load::Options {
        concurrency: args.concurrency,
        rate: args.rate,
        progress: !args.no_progress,
        sender: target.sender,
    };
    let metrics = load::client(1);
    let commits_before = commit_counts(&metrics, &bases).await;
    let pg_port = postgres.as_ref().and_then(|(pg, _, _)| pg.local_port());
    let pg_cpu_before = pg_port.and_then(server::postgres_cpu_seconds);
    let out = load::run(&bases, &pids, workload.clone(), &options).await;
    let pg_cpu = pg_port
        .and_then(server::postgres_cpu_seconds)
        .zip(pg_cpu_before)
        .map(|(after, before)| after - before);
    let commits_after = commit_counts(&metrics, &bases).await;
    for server in servers {
        server.stop()?;
    }
    let db_check = match &postgres {
        None => check::check(&db, workload, &out.samples)?,
        Some((_, _, url)) => check::check_postgres(url, workload, &out.samples).await?,
    };
    if !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
        if let Some((pg, name, _)) = &postgres {
            pg.drop_database(name).await?;
        }
    }
    let mut summary = report::summarize(
        &report::Context {
            label: &target.label,
            database: target.db.name(),
            instances: target.db.instances(),
            synchronous: if postgres.is_some() {
                "on (synchronous_commit)"
            } else {
                target.synchronous
            },
            concurrency: args.concurrency,
            rate: args.rate,
            sender: target.sender,
        },
        workload,
        &out,
        Some(db_check),
    );
    summary.writer = commits_before
        .zip(commits_after)
        .map(|(b, a)| WriterFigures::between(b, a, out.elapsed.as_secs_f64()));
    summary.server.database_cpu_us_per_request =
        pg_cpu.map(|c| c * 1e6 / out.samples.len().max(1) as f64);
    Ok(summary)
}

/// The writers' commits and writes so far, summed over the instances.
async fn commit_counts(client: &reqwest::Client, bases: &[String]) -> Option<(u64, u64)> {
    let mut total = (0, 0);
    for base in bases {
        let (commits, writes) = server::commit_counts(client, base).await?;
        total = (total.0 + commits, total.1 + writes);
    }
    Some(total)
}

fn write_json(path: Option<&Path>, value: &serde_json::Value) -> Result<()> {
    if let Some(path) = path {
        std::fs::write(path, serde_json::to_vec_pretty(value)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async_main(cli))
}

async fn async_main(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Setup {
            workdir,
            synchronous,
        } => {
            let keys = Keys::load_or_create(&workdir)?;
            let config = workdir.join("config.toml");
            let db = workdir.join("data").join("storehook.db");
            std::fs::write(&config, traffic::server_config(&keys, &db, &synchronous))?;
            println!("keys in {}", keys.dir.display());
            println!(
                "start the server:  storehook --config {} serve",
                config.display()
            );
            println!(
                "then:              storehook-bench run --workdir {} --target http://ADDR --db {} [--pid PID]",
                workdir.display(),
                db.display()
            );
            Ok(())
        }
        Command::Run {
            workload: args,
            server,
            synchronous,
            backend,
            postgres,
            target,
            db,
            pid,
            out,
        } => {
            let keys = Keys::load_or_create(&args.workdir)?;
            let mut workload = Arc::new(args.generate(&keys)?);
            let summary = match target {
                Some(base) => {
                    if args.sender == Sender::Raw {
                        wire::authority(&base)?;
                    }
                    let server = Server::running(&base, pid);
                    load::track(&server.base, &workload, args.concurrency).await?;
                    let options = load::Options {
                        concurrency: args.concurrency,
                        rate: args.rate,
                        progress: !args.no_progress,
                        sender: args.sender,
                    };
                    let pids: Vec<u32> = server.pid.into_iter().collect();
                    let output = load::run(
                        std::slice::from_ref(&server.base),
                        &pids,
                        workload.clone(),
                        &options,
                    )
                    .await;
                    let db_check = match &db {
                        Some(db) => Some(check::check(db, &workload, &output.samples)?),
                        None => None,
                    };
                    report::summarize(
                        &report::Context {
                            label: "target",
                            database: "as configured",
                            instances: 1,
                            synchronous: "as configured",
                            concurrency: args.concurrency,
                            rate: args.rate,
                            sender: args.sender,
                        },
                        &workload,
                        &output,
                        db_check,
                    )
                }
                None => {
                    let bin = server_bin(server)?;
                    let pg = postgres_for(&[backend], &postgres)?;
                    let target = Target {
                        label: backend.label(),
                        bin: &bin,
                        synchronous: &synchronous,
                        db: backend,
                        sender: args.sender,
                    };
                    run_fresh(&keys, &mut workload, &args, &target, pg.as_ref()).await?
                }
            };
            report::print(&summary);
            write_json(
                out.as_deref(),
                &serde_json::json!({
                    "machine": server::machine(),
                    "mix": workload.mix,
                    "result": summary,
                }),
            )?;
            if summary.db_check.as_ref().is_some_and(|c| !c.ok) || !summary.unexpected.is_empty() {
                bail!("the run broke a promise (see above)");
            }
            Ok(())
        }
        Command::Compare {
            workload: args,
            a_bin,
            b_bin,
            a_sync,
            b_sync,
            a_backend,
            b_backend,
            a_sender,
            b_sender,
            postgres,
            rounds,
            out,
        } => {
            let (a_sender, b_sender) = (
                a_sender.unwrap_or(args.sender),
                b_sender.unwrap_or(args.sender),
            );
            let keys = Keys::load_or_create(&args.workdir)?;
            let mut workload = Arc::new(args.generate(&keys)?);
            let a_bin = server_bin(a_bin)?;
            let b_bin = b_bin.unwrap_or_else(|| a_bin.clone());
            let pg = postgres_for(&[a_backend, b_backend], &postgres)?;
            let targets = [
                Target {
                    label: "A".into(),
                    bin: &a_bin,
                    synchronous: &a_sync,
                    db: a_backend,
                    sender: a_sender,
                },
                Target {
                    label: "B".into(),
                    bin: &b_bin,
                    synchronous: &b_sync,
                    db: b_backend,
                    sender: b_sender,
                },
            ];
            eprintln!(
                "A = {} {} synchronous={a_sync} sender={}\nB = {} {} synchronous={b_sync} sender={}",
                a_bin.display(),
                a_backend.label(),
                a_sender.name(),
                b_bin.display(),
                b_backend.label(),
                b_sender.name()
            );
            let machine = server::machine();
            let results: Vec<(Summary, Summary)> =
                alternate(&keys, &mut workload, &args, &targets, rounds, pg.as_ref())
                    .await?
                    .into_iter()
                    .filter_map(|round| {
                        let mut round = round.into_iter();
                        Some((round.next()?, round.next()?))
                    })
                    .collect();
            println!("\nround   A req/s   B req/s   B/A   A p99 ms  B p99 ms  A µs CPU/req  B µs CPU/req");
            let ratio = |f: &dyn Fn(&Summary) -> Option<f64>| {
                median(
                    results
                        .iter()
                        .filter_map(|(a, b)| Some(f(b)? / f(a)?))
                        .collect(),
                )
            };
            for (i, (ra, rb)) in results.iter().enumerate() {
                let p99 = |s: &Summary| s.latency.as_ref().map_or(f64::NAN, |l| l.p99_ms);
                let cpu = |s: &Summary| s.server.cpu_us_per_request.unwrap_or(f64::NAN);
                println!(
                    "{:>5} {:>9.0} {:>9.0} {:>6.3} {:>9.2} {:>9.2} {:>13.0} {:>13.0}",
                    i + 1,
                    ra.throughput_rps,
                    rb.throughput_rps,
                    rb.throughput_rps / ra.throughput_rps,
                    p99(ra),
                    p99(rb),
                    cpu(ra),
                    cpu(rb)
                );
            }
            let throughput = ratio(&|s| Some(s.throughput_rps));
            let p99 = ratio(&|s| s.latency.as_ref().map(|l| l.p99_ms));
            let cpu = ratio(&|s| s.server.cpu_us_per_request);
            println!(
                "median B/A: throughput {throughput:.3}, p99 {p99:.3}, CPU per request {cpu:.3}"
            );
            let failed = results
                .iter()
                .flat_map(|(a, b)| [a, b])
                .any(|s| s.db_check.as_ref().is_some_and(|c| !c.ok) || !s.unexpected.is_empty());
            write_json(
                out.as_deref(),
                &serde_json::json!({
                    "machine": machine,
                    "mix": workload.mix,
                    "a": {"bin": a_bin, "synchronous": a_sync, "backend": a_backend.label(), "sender": a_sender},
                    "b": {"bin": b_bin, "synchronous": b_sync, "backend": b_backend.label(), "sender": b_sender},
                    "rounds": results.iter().map(|(a, b)| serde_json::json!({"a": a, "b": b})).collect::<Vec<_>>(),
                    "median_ratio_b_over_a": {"throughput": throughput, "p99": p99, "cpu_per_request": cpu},
                }),
            )?;
            if failed {
                bail!("a run broke a promise (see above)");
            }
            Ok(())
        }
        Command::Scale {
            workload: args,
            server,
            instances,
            postgres,
            rounds,
            out,
        } => {
            let keys = Keys::load_or_create(&args.workdir)?;
            let mut workload = Arc::new(args.generate(&keys)?);
            let bin = server_bin(server)?;
            anyhow::ensure!(
                instances.iter().all(|&n| n > 0),
                "--instances: positive counts"
            );
            let kinds: Vec<DbKind> = std::iter::once(DbKind::Sqlite)
                .chain(instances.iter().map(|&n| DbKind::Postgres(n)))
                .collect();
            let pg = postgres_for(&kinds, &postgres)?;
            let targets: Vec<Target> = kinds
                .iter()
                .map(|&db| Target {
                    label: db.label(),
                    bin: &bin,
                    synchronous: "FULL",
                    db,
                    sender: args.sender,
                })
                .collect();
            let machine = server::machine();
            let results =
                alternate(&keys, &mut workload, &args, &targets, rounds, pg.as_ref()).await?;
            let ratios = scale_table(&targets, &results);
            let failed = results
                .iter()
                .flatten()
                .any(|s| s.db_check.as_ref().is_some_and(|c| !c.ok) || !s.unexpected.is_empty());
            write_json(
                out.as_deref(),
                &serde_json::json!({
                    "machine": machine,
                    "mix": workload.mix,
                    "bin": bin,
                    "rounds": results,
                    "median_ratio_to_sqlite": ratios,
                }),
            )?;
            if failed {
                bail!("a run broke a promise (see above)");
            }
            Ok(())
        }
    }
}

/// Runs every target once per round, the order rotating from round to
/// round (A B, B A for two) so drift in the machine's load hits all.
/// Each round's summaries come back in the targets' order.
async fn alternate(
    keys: &Keys,
    workload: &mut Arc<Workload>,
    args: &WorkloadArgs,
    targets: &[Target<'_>],
    rounds: usize,
    pg: Option<&PgServer>,
) -> Result<Vec<Vec<Summary>>> {
    let n = targets.len();
    let mut results = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let mut row: Vec<Option<Summary>> = (0..n).map(|_| None).collect();
        for step in 0..n {
            let i = (step + round) % n;
            let summary = run_fresh(keys, workload, args, &targets[i], pg).await?;
            report::print(&summary);
            row[i] = Some(summary);
        }
        results.push(row.into_iter().flatten().collect());
    }
    Ok(results)
}

/// Prints each target's figures as ratios to the first (SQLite) of the
/// same round, and returns their medians by label.
fn scale_table(targets: &[Target<'_>], results: &[Vec<Summary>]) -> serde_json::Value {
    let p99 = |s: &Summary| s.latency.as_ref().map(|l| l.p99_ms);
    let cpu = |s: &Summary| s.server.cpu_us_per_request;
    let per_commit = |s: &Summary| s.writer.map(|w| w.writes_per_commit);
    println!("\nround  target     req/s   ×SQLite   p99 ms  ×SQLite  µs CPU/req  writes/commit");
    for (round, row) in results.iter().enumerate() {
        let Some(base) = row.first() else { continue };
        for s in row {
            println!(
                "{:>5}  {:<8} {:>8.0} {:>8.3} {:>8.2} {:>8.3} {:>11.0} {:>14.2}",
                round + 1,
                s.label,
                s.throughput_rps,
                s.throughput_rps / base.throughput_rps,
                p99(s).unwrap_or(f64::NAN),
                p99(s).zip(p99(base)).map_or(f64::NAN, |(a, b)| a / b),
                cpu(s).unwrap_or(f64::NAN),
                per_commit(s).unwrap_or(f64::NAN)
            );
        }
    }
    let mut medians = serde_json::Map::new();
    println!("\nmedian ratio to SQLite of the same round:");
    for (i, target) in targets.iter().enumerate() {
        let ratio = |f: &dyn Fn(&Summary) -> Option<f64>| {
            median(
                results
                    .iter()
                    .filter_map(|row| Some(f(row.get(i)?)? / f(row.first()?)?))
                    .collect(),
            )
        };
        let throughput = ratio(&|s| Some(s.throughput_rps));
        let p99_ratio = ratio(&p99);
        let cpu_ratio = ratio(&cpu);
        let writes_per_commit = median(
            results
                .iter()
                .filter_map(|row| per_commit(row.get(i)?))
                .collect(),
        );
        println!(
            "  {:<8} throughput {throughput:.3}, p99 {p99_ratio:.3}, CPU per request {cpu_ratio:.3}, writes per commit {writes_per_commit:.2}",
            target.label
        );
        medians.insert(
            target.label.clone(),
            serde_json::json!({
                "throughput": throughput,
                "p99": p99_ratio,
                "cpu_per_request": cpu_ratio,
                "writes_per_commit": writes_per_commit,
            }),
        );
    }
    serde_json::Value::Object(medians)
}
