//! The server under test: the `storehook` binary started with the bench's
//! config (or a server already running), and its CPU time and memory read
//! from `/proc/<pid>`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub struct Server {
    pub base: String,
    pub pid: Option<u32>,
    child: Option<Child>,
}

impl Server {
    /// Starts `bin --config <config> serve --listen 127.0.0.1:0` and waits
    /// for its "storehook listening on http://ADDR" line. `database_url`
    /// (`STOREHOOK_DATABASE_URL`) points it at a PostgreSQL database
    /// instead of the config's SQLite file.
    pub fn start(bin: &Path, config: &Path, database_url: Option<&str>) -> Result<Self> {
        let mut command = Command::new(bin);
        command
            .arg("--config")
            .arg(config)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env_remove("STOREHOOK_ADMIN_TOKEN")
            .env_remove("STOREHOOK_DATABASE_URL");
        if let Some(url) = database_url {
            command.env("STOREHOOK_DATABASE_URL", url);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("storehook listening on ") {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(base) => Ok(Server {
                base,
                pid: Some(child.id()),
                child: Some(child),
            }),
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                bail!(
                    "{} did not print its address (exit status {status:?}); try `{} --config {} check-config`",
                    bin.display(),
                    bin.display(),
                    config.display()
                )
            }
        }
    }

    /// A server someone else runs.
    pub fn running(base: &str, pid: Option<u32>) -> Self {
        Server {
            base: base.trim_end_matches('/').to_owned(),
            pid,
            child: None,
        }
    }

    /// SIGTERM (graceful: in-flight requests finish), SIGKILL after 15 s.
    pub fn stop(mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // SAFETY: kill(2) on our own child's pid, which we have not reaped.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill()?;
        child.wait()?;
        bail!("the server did not stop within 15 s of SIGTERM")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// CPU time (user + system, all threads) of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces: count after its ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ')'.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    Some((utime + stime) / ticks)
}

/// CPU time of a PostgreSQL server on this machine listening on `port`:
/// its postmaster (found by the `-p PORT` on its command line) and every
/// process it started (the connections' backends, the WAL writer…). `None`
/// when no such server runs here (a remote database).
pub fn postgres_cpu_seconds(port: u16) -> Option<f64> {
    let port = port.to_string();
    let pids: Vec<u32> = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let postmaster = pids.iter().copied().find(|pid| {
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            return false;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        args.first().is_some_and(|a| a.ends_with(b"postgres"))
            && args
                .windows(2)
                .any(|w| w[0] == b"-p" && w[1] == port.as_bytes())
    })?;
    let children = pids
        .iter()
        .copied()
        .filter(|&pid| parent_pid(pid) == Some(postmaster));
    Some(
        std::iter::once(postmaster)
            .chain(children)
            .filter_map(cpu_seconds)
            .sum(),
    )
}

fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 4, the second after the command name's ')'.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The database writer's commits and the writes they carried, from one
/// server's `/metrics` (`None` when it does not answer).
pub async fn commit_counts(client: &reqwest::Client, base: &str) -> Option<(u64, u64)> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
    };
    Some((
        value("storehook_db_commits_total")?,
        value("storehook_db_commit_writes_total")?,
    ))
}

/// A `/proc/<pid>/status` memory line (`VmRSS`, `VmHWM`), in KiB.
pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// What the machine is, for the result file.
pub fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned());
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mem_total_kib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok());
    serde_json::json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": model,
        "mem_total_mib": mem_total_kib.map(|k| k / 1024),
        "loadavg_at_start": loadavg.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
    })
}
