//! The `storehook` binary: its CLI, the shipped `config.toml`, and a clean
//! shutdown on SIGTERM.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::BinaryServer;

fn storehook(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_storehook"))
        .args(args)
        .env_remove("STOREHOOK_ADMIN_TOKEN")
        .env_remove("STOREHOOK_CONFIG")
        .output()
        .expect("run storehook")
}

fn shipped_config() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml").to_owned()
}

/// What a run printed: stdout, then stderr.
fn printed(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `storehook --config <the shipped config> <command>`, which must succeed:
/// what it printed on stdout.
fn shipped_config_says(command: &str) -> String {
    let out = storehook(&["--config", &shipped_config(), command]);
    assert!(out.status.success(), "{}", printed(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn stores_lists_every_bundled_plugin() {
    let text = shipped_config_says("stores");
    for line in ["amazon", "apple", "google", "stripe"] {
        assert!(
            text.lines().any(|l| l.starts_with(line)),
            "{line} missing:\n{text}"
        );
    }
    let amazon = text.lines().find(|l| l.starts_with("amazon")).unwrap();
    assert!(amazon.contains("not yet"), "{amazon}");
    let apple = text.lines().find(|l| l.starts_with("apple")).unwrap();
    assert!(
        apple.contains("yes"),
        "the shipped config enables Apple: {apple}"
    );
    // The example plugin is a test-only crate: the binary does not link it.
    assert!(!text.contains("example"), "{text}");
}

#[test]
fn the_shipped_config_is_valid() {
    assert!(shipped_config_says("check-config").contains("ok"));
}

fn check(dir: &Path, text: &str) -> (bool, String) {
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    let out = storehook(&["--config", path.to_str().unwrap(), "check-config"]);
    (out.status.success(), printed(&out))
}

#[test]
fn bad_configs_stop_with_a_message_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, named) in [
        (
            "[server]\nlisten = \"127.0.0.1:1\"\nmax_body = 5\n",
            "max_body",
        ),
        ("[stores.nosuchstore]\nenabled = true\n", "nosuchstore"),
        (
            "[stores.stripe]\nenabled = true\nsigning_secret = \"whsec_x\"\n",
            "signing_secret",
        ),
        ("[stores.stripe]\nenabled = true\n", "signing_secrets"),
        ("[stores.apple]\nenabled = true\napps = []\n", "apps"),
        (
            "[stores.apple]\nenabled = \"yes\"\n",
            "stores.apple.enabled",
        ),
    ] {
        let (ok, msg) = check(dir.path(), text);
        assert!(!ok, "accepted: {text}");
        assert!(
            msg.contains(named),
            "{text}: message does not name `{named}`: {msg}"
        );
    }
    // A disabled store's keys are not checked, an enabled Amazon only warns.
    let (ok, msg) = check(dir.path(), "[stores.amazon]\nenabled = true\n");
    assert!(ok, "{msg}");
    assert!(msg.contains("not support"), "{msg}");
}

#[test]
fn serves_with_the_shipped_config_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    // The shipped file, in a folder of its own (the database goes next to it).
    let config = dir.path().join("config.toml");
    std::fs::copy(shipped_config(), &config).unwrap();
    let mut server = BinaryServer::start_with_config(dir.path(), &config, &[]);
    let body: serde_json::Value = http::get_json(&format!("{}/healthz", server.base));
    assert_eq!(body["status"], "ok");
    let stores: serde_json::Value = http::get_json(&format!("{}/v1/stores", server.base));
    let apple = stores["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["store"] == "apple")
        .unwrap();
    assert_eq!(apple["enabled"], true);
    assert!(
        dir.path().join("data/storehook.db").exists(),
        "database created beside the config"
    );

    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = server.child.wait().unwrap();
    assert!(status.success(), "graceful exit on SIGTERM: {status}");
}

/// A tiny blocking GET for tests that have no runtime.
mod http {
    pub fn get_json(url: &str) -> serde_json::Value {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let resp = reqwest::get(url).await.expect("GET");
            resp.json().await.expect("JSON")
        })
    }
}

/// `storehook check` and `storehook backfill` ask a running server (here
/// one in this process, playing the example store) through its admin API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_backfill_ask_the_running_server() {
    let server = common::TestServer::start(
        "[stores.example]\nenabled = true\nkey = \"k\"\n\n[stores.example.api]\n\
         history_file = \"history.jsonl\"\ncheck_seconds = 1\n\n[store_apis]\ncatch_up_interval_hours = 0\n",
    )
    .await;
    let now = common::now_s() * 1000;
    std::fs::write(
        server.dir.path().join("history.jsonl"),
        format!(
            "{{\"id\":\"m1\",\"type\":\"RENEWAL\",\"subscription\":\"s1\",\"at\":{}}}\n",
            now - 86_400_000
        ),
    )
    .expect("history");
    // The CLI reads only the admin token from its config.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("cli.toml");
    std::fs::write(
        &config,
        format!("[server]\nadmin_token = \"{}\"\n", common::ADMIN_TOKEN),
    )
    .expect("config");
    let wrong = dir.path().join("wrong.toml");
    std::fs::write(
        &wrong,
        "[server]\nadmin_token = \"not-the-right-token-at-all\"\n",
    )
    .expect("config");
    // Exit code, stdout, stderr of `storehook --config C <rest> --url U`.
    let run = |config: &Path, rest: &[&str], url: &str| {
        let mut args = vec!["--config".to_owned(), config.display().to_string()];
        args.extend(rest.iter().map(|s| s.to_string()));
        args.extend(["--url".to_owned(), url.to_owned()]);
        async move {
            let out = tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                storehook(&args)
            })
            .await
            .expect("join");
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    let base = server.base.clone();

    let (code, stdout, stderr) = run(&config, &["check", "example"], &base).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("… asking the example store's API"),
        "{stdout}"
    );
    assert!(stdout.contains("example: connected"), "{stdout}");
    assert!(stdout.contains("ok   Notification URL"), "{stdout}");

    let (code, stdout, stderr) =
        run(&config, &["backfill", "example", "--since", "3d"], &base).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("done: 1 read, 1 recovered"), "{stdout}");

    let (code, _, stderr) = run(&wrong, &["check", "example"], &base).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("HTTP 401"), "{stderr}");
    assert!(
        !stderr.contains("not-the-right-token-at-all"),
        "no token in messages: {stderr}"
    );

    let (code, _, stderr) = run(&config, &["check", "nosuchstore"], &base).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("unknown_store"), "{stderr}");

    // A store whose check finds a problem: exit 3.
    let problem = common::TestServer::start(
        "[stores.example]\nenabled = true\nkey = \"k\"\n\n[stores.example.api]\n\
         history_file = \"history.jsonl\"\ncheck = \"problem\"\n",
    )
    .await;
    let (code, stdout, _) = run(&config, &["check", "example"], &problem.base).await;
    assert_eq!(code, Some(3), "{stdout}");
    assert!(
        stdout.contains("FAIL The example store has no notification URL [NO_URL]"),
        "{stdout}"
    );
}
