//! Issue 13, run as an operator would, against the real binary: the first
//! run's sign-in link and the generated admin token (kept across restarts,
//! printed and rotated by `storehook admin-token`), configuration errors
//! with `RUST_BACKTRACE=1`, `--version`, and an online backup under write
//! load that restores.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::BinaryServer;

const SECRET: &str = "whsec_operations_test";

fn storehook(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_storehook"));
    cmd.args(args)
        .env_remove("STOREHOOK_ADMIN_TOKEN")
        .env_remove("STOREHOOK_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run storehook")
}

/// A config without an admin token, Stripe enabled, the database in `dir`.
fn write_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[database]\npath = \"{}\"\n\n\
             [stores.stripe]\nenabled = true\nsigning_secrets = [\"{SECRET}\"]\n",
            dir.join("data/storehook.db").display()
        ),
    )
    .expect("config");
    path
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn token_file(dir: &Path) -> std::path::PathBuf {
    dir.join("data/admin-token")
}

/// Waits for a printed line containing `needle`.
fn printed(server: &BinaryServer, needle: &str, within: Duration) -> Option<String> {
    let start = Instant::now();
    loop {
        if let Some(line) = server
            .stdout
            .lock()
            .expect("lines")
            .iter()
            .find(|l| l.contains(needle))
        {
            return Some(line.clone());
        }
        if start.elapsed() > within {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn admin_status(base: &str, token: &str) -> u16 {
    client()
        .get(format!("{base}/v1/webhooks"))
        .bearer_auth(token)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_first_run_prints_a_sign_in_link_and_keeps_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let mut server = BinaryServer::start_with_config(dir.path(), &config, &[]);

    // The link works once and signs the browser in.
    let line = printed(&server, "/dashboard/login?code=", Duration::from_secs(5))
        .expect("a sign-in link on the console");
    let link = line.trim().to_owned();
    assert!(link.starts_with(&server.base), "{link}");
    let http = client();
    let r = http.get(&link).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 303, "{link}");
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let page = overview_with(&http, &server.base, &cookie).await;
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("Stripe"));
    let again = http.get(&link).send().await.unwrap();
    assert_eq!(again.status().as_u16(), 401, "a link works once");

    // The token: owner-only in the data folder, not in the link.
    let token = std::fs::read_to_string(token_file(dir.path())).unwrap();
    let token = token.trim().to_owned();
    assert!(token.len() >= 32);
    assert!(!link.contains(&token));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(token_file(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(admin_status(&server.base, &token).await, 200);

    // A restart keeps the token and prints no new link.
    server.kill();
    let server = BinaryServer::start_with_config(dir.path(), &config, &[]);
    assert_eq!(admin_status(&server.base, &token).await, 200);
    assert!(printed(
        &server,
        "/dashboard/login?code=",
        Duration::from_millis(500)
    )
    .is_none());
    let out = storehook(&["--config", config.to_str().unwrap(), "admin-token"], &[]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), token);

    // Rotation: the running server takes the new token within seconds.
    let out = storehook(
        &[
            "--config",
            config.to_str().unwrap(),
            "admin-token",
            "--rotate",
        ],
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    let rotated = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_ne!(rotated, token);
    let start = Instant::now();
    while admin_status(&server.base, &rotated).await != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "rotation not picked up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(admin_status(&server.base, &token).await, 401);
    let stale = overview_with(&http, &server.base, &cookie).await;
    assert_eq!(stale.status().as_u16(), 401, "sessions end with the token");
}

#[test]
fn configuration_errors_are_one_line_exit_2_and_no_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    for (text, key) in [
        (
            "[server]\nlisten = \"127.0.0.1:0\"\nmax_bdy_bytes = 5\n",
            "max_bdy_bytes",
        ),
        (
            "[stores.stripe]\nenabled = true\nsigning_secret = \"whsec_x\"\n",
            "signing_secret",
        ),
        ("[server]\nlisten = \"nowhere\"\n", "listen"),
    ] {
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        for command in ["serve", "check-config"] {
            let out = storehook(
                &["--config", path.to_str().unwrap(), command],
                &[("RUST_BACKTRACE", "1"), ("RUST_LIB_BACKTRACE", "1")],
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{command} {text}: {stderr}");
            let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
            assert_eq!(lines.len(), 1, "{command} {text}: one line, got:\n{stderr}");
            assert!(lines[0].starts_with("error: "), "{stderr}");
            assert!(lines[0].contains(key), "{stderr}");
            assert!(lines[0].contains("config.toml"), "names the file: {stderr}");
            assert!(!stderr.contains("backtrace"), "{stderr}");
        }
    }
    // A config file that cannot be read is one too.
    let out = storehook(
        &[
            "--config",
            dir.path().join("missing.toml").to_str().unwrap(),
            "check-config",
        ],
        &[("RUST_BACKTRACE", "1")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("missing.toml"), "{stderr}");
    assert!(!stderr.contains("backtrace"), "{stderr}");
}

#[test]
fn the_version_names_the_git_revision() {
    let out = storehook(&["--version"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.starts_with(&format!("storehook {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    let git = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    match git {
        Some(rev) => assert!(text.contains(&format!("(git {rev}")), "{text}"),
        None => assert!(text.contains("(git "), "{text}"),
    }
}

async fn send(client: &reqwest::Client, base: &str, id: &str) -> u16 {
    common::send_stripe(client, base, SECRET, common::stripe_event(id)).await
}

fn stored_ids(db: &Path) -> BTreeSet<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let verdict: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(verdict, "ok");
    let mut stmt = conn
        .prepare("SELECT notification_id FROM notifications WHERE store = 'stripe'")
        .unwrap();
    let ids = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    ids
}

/// `storehook --config <config> <command> <file>` (backup, restore).
fn on_file(config: &Path, command: &str, file: &Path) -> std::process::Output {
    storehook(
        &[
            "--config",
            config.to_str().unwrap(),
            command,
            file.to_str().unwrap(),
        ],
        &[],
    )
}

/// The dashboard's overview, asked for with the session `cookie`.
async fn overview_with(http: &reqwest::Client, base: &str, cookie: &str) -> reqwest::Response {
    http.get(format!("{base}/"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

fn restore(config: &Path, file: &Path) -> std::process::Output {
    on_file(config, "restore", file)
}

/// A backup taken while notifications keep arriving holds every one
/// acknowledged before it began, passes `integrity_check`, refuses to be
/// restored over the running server's database, and restores once it is
/// stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_backup_under_write_load_restores() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    if let Some(url) = common::postgres_url(dir.path()) {
        // PostgreSQL has its own tools: the command says so instead of
        // copying a file that is not the database.
        let out = storehook(
            &[
                "--config",
                &config.display().to_string(),
                "backup",
                &dir.path().join("copy.db").display().to_string(),
            ],
            &[("STOREHOOK_DATABASE_URL", &url)],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains("pg_dump"), "{stderr}");
        assert!(!dir.path().join("copy.db").exists());
        return;
    }
    let mut server = BinaryServer::start_with_config(dir.path(), &config, &[]);
    let base = server.base.clone();

    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (acknowledged, stop, base) = (acknowledged.clone(), stop.clone(), base.clone());
            tokio::spawn(async move {
                let http = client();
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let id = format!("evt_backup_{w}_{i}");
                    if send(&http, &base, &id).await == 200 {
                        acknowledged.lock().unwrap().push(id);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    while acknowledged.lock().unwrap().len() < 200 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let before: Vec<String> = acknowledged.lock().unwrap().clone();
    let backup = dir.path().join("backup.db");
    let out = tokio::task::spawn_blocking({
        let (config, backup) = (config.clone(), backup.clone());
        move || on_file(&config, "backup", &backup)
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("integrity_check ok"));
    // Writes went on during the backup.
    let during = acknowledged.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    assert!(
        acknowledged.lock().unwrap().len() > during,
        "the server kept serving"
    );

    let in_backup = stored_ids(&backup);
    for id in &before {
        assert!(
            in_backup.contains(id),
            "{id} was acknowledged before the backup began"
        );
    }

    // Not over a running server's database.
    let out = restore(&config, &backup);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("running"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Stopped: it restores, keeping the replaced database aside.
    server.kill();
    let out = restore(&config, &backup);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = dir.path().join("data/storehook.db");
    assert_eq!(stored_ids(&db), in_backup);
    assert!(std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().contains("before-restore")));
    let server = BinaryServer::start_with_config(dir.path(), &config, &[]);
    assert_eq!(
        send(&client(), &server.base, "evt_after_restore").await,
        200
    );

    // A file that is not a database is refused before anything is touched.
    drop(server);
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"not a database").unwrap();
    let out = restore(&config, &junk);
    assert!(!out.status.success());
    assert!(stored_ids(&db).contains("evt_after_restore"));
}
