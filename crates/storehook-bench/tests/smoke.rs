//! The load generator works from a fresh clone: a small mixed run against
//! the real `storehook` binary (with each sender), a FULL-vs-OFF
//! comparison, a mixed run on a (throwaway) PostgreSQL with two instances
//! on few subscriptions (their writers contend for the same rows: a
//! deadlock would be a 503, which the bench counts as a broken promise),
//! and SQLite against PostgreSQL, all ending with the database check.
//! Figures are not asserted (they are benchmarks, see the README); the
//! promises are: every 200 stored once, every forged request refused and
//! absent.
//!
//! The server binary is the workspace's `storehook`, which `cargo test
//! --workspace` builds beside this package's binary.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn server_bin() -> PathBuf {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_storehook-bench"));
    let server = bench.with_file_name(format!("storehook{}", std::env::consts::EXE_SUFFIX));
    assert!(
        server.is_file(),
        "{} is missing: run the workspace's tests (`cargo test --workspace`), which build it",
        server.display()
    );
    server
}

/// Runs `storehook-bench <args>` with a fresh work folder and the
/// workspace's server, and returns its JSON result.
fn bench(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("result.json");
    let server = server_bin();
    let server_flag = if args[0] == "compare" {
        "--a-bin"
    } else {
        "--server"
    };
    let mut command = Command::new(env!("CARGO_BIN_EXE_storehook-bench"));
    // The PostgreSQL server of the test run (scripts/test), if there is
    // one; otherwise the bench starts a throwaway one itself.
    if args.iter().any(|a| a.contains("postgres") || *a == "scale") {
        if let Ok(url) = std::env::var("STOREHOOK_TEST_POSTGRES_URL") {
            command.args(["--database-url", &url]);
        }
    }
    let status = command
        .args(args)
        .args(["--no-progress", "--workdir"])
        .arg(dir.path())
        .arg(server_flag)
        .arg(server)
        .arg("--out")
        .arg(&out)
        .status()
        .expect("run storehook-bench");
    assert!(
        status.success(),
        "storehook-bench {args:?} failed: {status}"
    );
    serde_json::from_slice(&std::fs::read(&out).expect("result file")).expect("JSON")
}

fn assert_promises_kept(run: &Value) {
    let check = &run["db_check"];
    assert_eq!(check["ok"], true, "{check}");
    assert!(check["acknowledged"].as_u64().unwrap_or(0) > 100, "{check}");
    assert!(check["forged"].as_u64().unwrap_or(0) > 5, "{check}");
    assert_eq!(check["forged_stored"], 0, "{check}");
    assert_eq!(check["acknowledged_missing"], 0, "{check}");
    assert!(run["throughput_rps"].as_f64().unwrap_or(0.0) > 0.0, "{run}");
    assert!(run["latency"]["p99_ms"].as_f64().is_some(), "{run}");
}

/// A small run of all three stores with retries and forgeries, plus `extra`.
fn mixed_run(extra: &[&str]) -> Value {
    let mut args = vec![
        "run",
        "--stores",
        "apple=1,google=1,stripe=1",
        "--requests",
        "600",
        "--concurrency",
        "8",
        "--subscriptions",
        "50",
        "--duplicates",
        "0.1",
        "--invalid",
        "0.1",
    ];
    args.extend_from_slice(extra);
    bench(&args)
}

#[test]
fn a_mixed_run_stores_every_acknowledged_notification_once_and_no_forged_one() {
    let result = mixed_run(&[]);
    assert_promises_kept(&result["result"]);
    assert!(result["machine"].is_object(), "{result}");
    assert_eq!(result["result"]["sender"]["kind"], "http", "{result}");
}

#[test]
fn the_raw_sender_keeps_the_same_promises() {
    let result = mixed_run(&["--sender", "raw"]);
    let run = &result["result"];
    assert_promises_kept(run);
    assert!(
        run["unexpected"].as_object().is_some_and(|u| u.is_empty()),
        "{run}"
    );
    assert_eq!(run["sender"]["kind"], "raw", "{run}");
    assert!(
        run["sender"]["cpu_us_per_request"].as_f64().unwrap_or(0.0) > 0.0,
        "{run}"
    );
}

#[test]
fn compare_runs_both_configs_alternately_and_reports_the_ratio() {
    let result = bench(&[
        "compare",
        "--stores",
        "stripe",
        "--requests",
        "300",
        "--concurrency",
        "8",
        "--subscriptions",
        "20",
        "--a-sync",
        "FULL",
        "--b-sync",
        "OFF",
        "--rounds",
        "2",
    ]);
    let rounds = result["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 2, "{result}");
    for round in rounds {
        assert_promises_kept(&round["a"]);
        assert_promises_kept(&round["b"]);
        assert_eq!(round["a"]["synchronous"], "FULL", "{round}");
        assert_eq!(round["b"]["synchronous"], "OFF", "{round}");
    }
    let ratio = result["median_ratio_b_over_a"]["throughput"]
        .as_f64()
        .expect("a ratio");
    assert!(ratio.is_finite() && ratio > 0.0, "{result}");
}

fn assert_postgres_run(run: &Value, instances: u64) {
    assert_promises_kept(run);
    assert_eq!(run["database"], "postgres", "{run}");
    assert_eq!(run["instances"], instances, "{run}");
    let writer = &run["writer"];
    assert!(writer["commits"].as_u64().unwrap_or(0) > 0, "{run}");
    assert!(
        writer["writes_per_commit"].as_f64().unwrap_or(0.0) >= 1.0,
        "{run}"
    );
}

#[test]
fn a_run_on_postgres_checks_the_database_the_instances_wrote() {
    let result = bench(&[
        "run",
        "--stores",
        "apple=1,google=1,stripe=1",
        "--requests",
        "400",
        "--concurrency",
        "8",
        "--subscriptions",
        "10",
        "--duplicates",
        "0.1",
        "--invalid",
        "0.1",
        "--backend",
        "postgres:2",
    ]);
    assert_postgres_run(&result["result"], 2);
}

#[test]
fn scale_runs_sqlite_and_postgres_instances_and_reports_ratios_to_sqlite() {
    let result = bench(&[
        "scale",
        "--stores",
        "stripe",
        "--requests",
        "300",
        "--concurrency",
        "8",
        "--subscriptions",
        "20",
        "--instances",
        "1",
        "--rounds",
        "2",
    ]);
    let rounds = result["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 2, "{result}");
    for round in rounds {
        let runs = round.as_array().expect("runs");
        assert_eq!(runs.len(), 2, "{result}");
        assert_promises_kept(&runs[0]);
        assert_eq!(runs[0]["database"], "sqlite", "{result}");
        assert_postgres_run(&runs[1], 1);
    }
    for label in ["sqlite", "pg×1"] {
        let ratio = result["median_ratio_to_sqlite"][label]["throughput"]
            .as_f64()
            .expect("a ratio");
        assert!(ratio.is_finite() && ratio > 0.0, "{label}: {result}");
    }
}
