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
//! ```text
//! storehook-bench run --stores stripe --requests 40000 --concurrency 32
//! storehook-bench compare --a-sync FULL --b-sync OFF --rounds 3
//! storehook-bench setup --workdir bench   # keys + config for a server you start yourself
//! ```

mod check;
mod keys;
mod load;
mod report;
mod server;
mod traffic;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::keys::Keys;
use crate::report::Summary;
use crate::server::Server;
use crate::traffic::{Mix, Store, Workload};

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
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long)]
        out: Option<PathBuf>,
    },
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

/// Where and how one run starts its server.
struct Target<'a> {
    label: &'a str,
    bin: &'a Path,
    synchronous: &'a str,
}

/// Starts a fresh server with a fresh database, tracks, drives, stops,
/// checks the database.
async fn run_fresh(
    keys: &Keys,
    workload: &mut Arc<Workload>,
    args: &WorkloadArgs,
    target: &Target<'_>,
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
    let server = Server::start(target.bin, &config)?;
    load::track(&server.base, workload, args.concurrency).await?;
    let options = load::Options {
        concurrency: args.concurrency,
        rate: args.rate,
        progress: !args.no_progress,
    };
    let out = load::run(&server.base, server.pid, workload.clone(), &options).await;
    server.stop()?;
    let db_check = check::check(&db, workload, &out.samples)?;
    if !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(report::summarize(
        &report::Context {
            label: target.label,
            synchronous: target.synchronous,
            concurrency: args.concurrency,
            rate: args.rate,
        },
        workload,
        &out,
        Some(db_check),
    ))
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
            target,
            db,
            pid,
            out,
        } => {
            let keys = Keys::load_or_create(&args.workdir)?;
            let mut workload = Arc::new(args.generate(&keys)?);
            let summary = match target {
                Some(base) => {
                    let server = Server::running(&base, pid);
                    load::track(&server.base, &workload, args.concurrency).await?;
                    let options = load::Options {
                        concurrency: args.concurrency,
                        rate: args.rate,
                        progress: !args.no_progress,
                    };
                    let output =
                        load::run(&server.base, server.pid, workload.clone(), &options).await;
                    let db_check = match &db {
                        Some(db) => Some(check::check(db, &workload, &output.samples)?),
                        None => None,
                    };
                    report::summarize(
                        &report::Context {
                            label: "target",
                            synchronous: "as configured",
                            concurrency: args.concurrency,
                            rate: args.rate,
                        },
                        &workload,
                        &output,
                        db_check,
                    )
                }
                None => {
                    let bin = server_bin(server)?;
                    let target = Target {
                        label: "run",
                        bin: &bin,
                        synchronous: &synchronous,
                    };
                    run_fresh(&keys, &mut workload, &args, &target).await?
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
            rounds,
            out,
        } => {
            let keys = Keys::load_or_create(&args.workdir)?;
            let mut workload = Arc::new(args.generate(&keys)?);
            let a_bin = server_bin(a_bin)?;
            let b_bin = b_bin.unwrap_or_else(|| a_bin.clone());
            let a = Target {
                label: "A",
                bin: &a_bin,
                synchronous: &a_sync,
            };
            let b = Target {
                label: "B",
                bin: &b_bin,
                synchronous: &b_sync,
            };
            eprintln!(
                "A = {} synchronous={a_sync}\nB = {} synchronous={b_sync}",
                a_bin.display(),
                b_bin.display()
            );
            let machine = server::machine();
            let mut results: Vec<(Summary, Summary)> = Vec::new();
            for round in 0..rounds {
                // A B, then B A: drift in the machine's load hits both.
                let (first, second) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
                let s1 = run_fresh(&keys, &mut workload, &args, first).await?;
                report::print(&s1);
                let s2 = run_fresh(&keys, &mut workload, &args, second).await?;
                report::print(&s2);
                results.push(if round % 2 == 0 { (s1, s2) } else { (s2, s1) });
            }
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
                    "a": {"bin": a_bin, "synchronous": a_sync},
                    "b": {"bin": b_bin, "synchronous": b_sync},
                    "rounds": results.iter().map(|(a, b)| serde_json::json!({"a": a, "b": b})).collect::<Vec<_>>(),
                    "median_ratio_b_over_a": {"throughput": throughput, "p99": p99, "cpu_per_request": cpu},
                }),
            )?;
            if failed {
                bail!("a run broke a promise (see above)");
            }
            Ok(())
        }
    }
}
