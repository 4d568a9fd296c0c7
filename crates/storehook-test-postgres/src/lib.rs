//! Throwaway PostgreSQL servers for storehook's tests.
//!
//! A server is Debian's `postgresql` package run from a temporary folder:
//! `initdb` and `pg_ctl` (as the `postgres` user when the tests run as
//! root, since PostgreSQL refuses to), listening on a free loopback port,
//! trust authentication, no network. Each test gets a database of its own
//! on one server shared by its test binary ([`database`]); a test that
//! stops or restarts PostgreSQL starts a server of its own ([`Postgres::start`]).
//!
//! `STOREHOOK_TEST_POSTGRES_URL` (a server's URL, e.g. one `scripts/test`
//! started for the whole run) makes [`database`] create its databases
//! there instead of starting a server.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Starting or using a throwaway server failed.
#[derive(Debug, thiserror::Error)]
pub enum TestPostgresError {
    #[error(
        "PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin): \
         `apt-get install postgresql` (scripts/test does it)"
    )]
    NotInstalled,
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("cannot prepare the server's folder: {0}")]
    Io(#[from] std::io::Error),
}

/// A running throwaway server; stopped and removed when dropped.
pub struct Postgres {
    port: u16,
    data: PathBuf,
    bin: PathBuf,
    // Last: removed after the server stopped.
    _dir: tempfile::TempDir,
}

impl Postgres {
    /// Initializes and starts a server on a free loopback port. `fsync` is
    /// on: tests of durability and throughput measure the real thing.
    pub fn start() -> Result<Self, TestPostgresError> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new().prefix("storehook-pg-").tempdir()?;
        give_to_postgres(dir.path())?;
        let data = dir.path().join("data");
        run(
            "initdb",
            as_postgres(&bin.join("initdb"))
                .args([
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                    "-E",
                    "UTF8",
                    "-D",
                ])
                .arg(&data),
        )?;
        let mut last = None;
        // The free port may be taken between finding and binding it: retry.
        for _ in 0..5 {
            let port = free_port()?;
            match pg_ctl_start(&bin, &data, port, dir.path()) {
                Ok(()) => {
                    return Ok(Self {
                        port,
                        data,
                        bin,
                        _dir: dir,
                    })
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(TestPostgresError::NotInstalled))
    }

    /// The server's URL (its `postgres` database, superuser, no password).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates an empty database; returns its URL.
    pub fn create_database(&self) -> Result<String, TestPostgresError> {
        create_database_at(&self.bin, "127.0.0.1", self.port)
    }

    /// Stops the server at once (as a crash would), keeping its data.
    pub fn stop(&self) -> Result<(), TestPostgresError> {
        run(
            "pg_ctl stop",
            as_postgres(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "stop"]),
        )
    }

    /// Starts a stopped server again on the same port.
    pub fn restart(&self) -> Result<(), TestPostgresError> {
        let socket_dir = self
            .data
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(std::env::temp_dir);
        pg_ctl_start(&self.bin, &self.data, self.port, &socket_dir)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// A new empty database for one test, on the shared server of this test
/// binary (started at the first call, stopped when the binary exits) or
/// on the one `STOREHOOK_TEST_POSTGRES_URL` names. Returns its URL.
pub fn database() -> Result<String, TestPostgresError> {
    let server = shared()?;
    let bin = bin_dir()?;
    create_database_at(&bin, &server.host, server.port)
}

struct Shared {
    host: String,
    port: u16,
}

fn shared() -> Result<&'static Shared, TestPostgresError> {
    static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| start_shared().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| TestPostgresError::Command {
            what: "the shared test PostgreSQL".into(),
            detail: e.clone(),
        })
}

fn start_shared() -> Result<Shared, TestPostgresError> {
    if let Ok(url) = std::env::var("STOREHOOK_TEST_POSTGRES_URL") {
        return parse_host_port(&url)
            .map(|(host, port)| Shared { host, port })
            .ok_or_else(|| TestPostgresError::Command {
                what: "STOREHOOK_TEST_POSTGRES_URL".into(),
                detail: format!("{url:?} is not postgres://user@host:port/…"),
            });
    }
    let server = Postgres::start()?;
    let shared = Shared {
        host: "127.0.0.1".into(),
        port: server.port,
    };
    // Statics are never dropped: a watcher stops the server and removes
    // its folder once this test process has exited.
    let pg_ctl = server.bin.join("pg_ctl");
    let stop = as_postgres_line(&format!(
        "{} -D {} -m immediate stop",
        pg_ctl.display(),
        server.data.display()
    ));
    let dir = server._dir.path().to_path_buf();
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        dir = dir.display(),
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    // The watcher owns it now.
    std::mem::forget(server);
    Ok(shared)
}

fn parse_host_port(url: &str) -> Option<(String, u16)> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) => (h.to_owned(), p.parse().ok()?),
        None => (host_port.to_owned(), 5432),
    };
    Some((host, port))
}

fn create_database_at(bin: &Path, host: &str, port: u16) -> Result<String, TestPostgresError> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "t_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    run(
        "createdb",
        Command::new(bin.join("createdb"))
            .args(["-h", host, "-p", &port.to_string(), "-U", "postgres"])
            .arg(&name),
    )?;
    Ok(format!("postgres://postgres@{host}:{port}/{name}"))
}

/// The newest installed PostgreSQL's binaries.
fn bin_dir() -> Result<PathBuf, TestPostgresError> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| TestPostgresError::NotInstalled)?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, bin)| bin)
        .ok_or(TestPostgresError::NotInstalled)
}

fn is_root() -> bool {
    // Without libc: root's home is /root and `id -u` says 0.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn as_postgres_line(line: &str) -> String {
    if is_root() {
        format!("runuser -u postgres -- {line}")
    } else {
        line.to_owned()
    }
}

/// As root, the folder must belong to `postgres`, who runs the server.
fn give_to_postgres(dir: &Path) -> Result<(), TestPostgresError> {
    if is_root() {
        run(
            "chown postgres",
            Command::new("chown").arg("postgres").arg(dir),
        )?;
    }
    Ok(())
}

fn pg_ctl_start(
    bin: &Path,
    data: &Path,
    port: u16,
    socket_dir: &Path,
) -> Result<(), TestPostgresError> {
    let options = format!(
        "-c listen_addresses=127.0.0.1 -p {port} -k {} -c max_connections=200 -c shared_buffers=32MB",
        socket_dir.display()
    );
    run(
        "pg_ctl start",
        as_postgres(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(data)
            .arg("-l")
            .arg(socket_dir.join("log"))
            .args(["-w", "-t", "30", "-o", &options, "start"]),
    )
}

fn free_port() -> Result<u16, TestPostgresError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn run(what: &str, command: &mut Command) -> Result<(), TestPostgresError> {
    let started = Instant::now();
    let out = command.stdin(Stdio::null()).output()?;
    if out.status.success() {
        return Ok(());
    }
    let mut detail = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if detail.is_empty() {
        detail = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    }
    Err(TestPostgresError::Command {
        what: what.to_owned(),
        detail: format!(
            "{detail} ({}, after {:?})",
            out.status,
            started.elapsed().min(Duration::from_secs(3600))
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_and_port() {
        assert_eq!(
            parse_host_port("postgres://postgres@127.0.0.1:5433/postgres"),
            Some(("127.0.0.1".into(), 5433))
        );
        assert_eq!(
            parse_host_port("postgres://db/x"),
            Some(("db".into(), 5432))
        );
        assert_eq!(parse_host_port("nonsense"), None);
    }

    #[test]
    fn a_server_starts_serves_databases_and_restarts() {
        let server = Postgres::start().expect("start");
        let url = server.create_database().expect("createdb");
        assert!(url.starts_with(&format!(
            "postgres://postgres@127.0.0.1:{}/t_",
            server.port()
        )));
        server.stop().expect("stop");
        server.restart().expect("restart");
        server.create_database().expect("createdb after restart");
        // Each call gives a new database on the shared server.
        assert_ne!(database().expect("db"), database().expect("db"));
    }
}
