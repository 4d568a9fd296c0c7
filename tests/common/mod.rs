//! Test harness: starts the real storehook server on a loopback port with a
//! temporary SQLite file and talks HTTP to it. With
//! `STOREHOOK_TEST_BACKEND=postgres` (scripts/test's second pass) every
//! server uses a throwaway PostgreSQL database instead, whatever its config
//! says (`STOREHOOK_DATABASE_URL`, as an operator would set it).
//!
//! Two ways to run it:
//! - [`TestServer`]: in this test process, through `storehook_server::start`
//!   (the same code the binary runs). Every plugin linked into the test
//!   binary is registered, the example plugin included; restarts are cheap.
//! - [`BinaryServer`]: the compiled `storehook` binary as a child process,
//!   for what only a process can show (the CLI, kill -9).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub mod db;
pub mod load;
pub mod receiver;

pub const ADMIN_TOKEN: &str = "test-admin-token";

/// Makes sure every bundled plugin (and the example plugin) is linked into
/// the test binary, so `inventory` finds them.
pub fn link_plugins() {
    storehook_amazon::link();
    storehook_apple::link();
    storehook_google::link();
    storehook_stripe::link();
    storehook_plugin_example::link();
}

/// Whether this run's servers use PostgreSQL (`STOREHOOK_TEST_BACKEND=postgres`).
pub fn on_postgres() -> bool {
    std::env::var("STOREHOOK_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

/// On the PostgreSQL pass, the database the servers of the test whose
/// folder is `dir` use: created at the first ask, the same after restarts.
pub fn postgres_url(dir: &Path) -> Option<String> {
    if !on_postgres() {
        return None;
    }
    let file = dir.join("postgres-url");
    if let Ok(url) = std::fs::read_to_string(&file) {
        return Some(url);
    }
    let url = storehook_test_postgres::database().expect("a throwaway PostgreSQL");
    std::fs::write(&file, &url).expect("keep the database url");
    Some(url)
}

/// True (and says so) on the PostgreSQL pass, for a test of what only an
/// SQLite file does (a lock held by another process, a full disk): its
/// PostgreSQL counterparts are in tests/postgres.rs.
pub fn sqlite_only(what: &str) -> bool {
    if on_postgres() {
        eprintln!("SQLite only, not run on the PostgreSQL pass: {what}");
    }
    on_postgres()
}

/// The config a test passes, plus the server, database and admin sections
/// the harness fills in.
fn full_config(dir: &Path, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_token = \"{ADMIN_TOKEN}\"\n\n[database]\npath = \"{}\"\n\n{extra}\n",
        dir.join("storehook.db").display()
    )
}

/// What a test changes in the loaded config at every boot.
pub type ConfigAdjust = Box<dyn Fn(&mut storehook_server::Config) + Send + Sync>;

pub struct TestServer {
    pub base: String,
    pub dir: tempfile::TempDir,
    pub client: reqwest::Client,
    config_text: String,
    /// Applied to the loaded config at every boot (an injected clock…).
    adjust: Option<ConfigAdjust>,
    running: Option<storehook_server::Running>,
}

impl TestServer {
    /// Starts a server with `stores_config` (TOML: `[stores.x]` tables,
    /// `[tracking]`…) and a fresh temporary database.
    pub async fn start(stores_config: &str) -> Self {
        Self::start_with(|dir| full_config(dir, stores_config)).await
    }

    /// Starts a server with a whole config of the test's own, given the
    /// temporary folder (put the database in it).
    pub async fn start_with(config: impl FnOnce(&Path) -> String) -> Self {
        Self::start_adjusted(config, None).await
    }

    /// Like [`TestServer::start`], with `adjust` applied to the loaded
    /// config at every boot (what a file cannot say: an injected clock).
    pub async fn start_tuned(
        stores_config: &str,
        adjust: impl Fn(&mut storehook_server::Config) + Send + Sync + 'static,
    ) -> Self {
        Self::start_adjusted(
            |dir| full_config(dir, stores_config),
            Some(Box::new(adjust)),
        )
        .await
    }

    async fn start_adjusted(
        config: impl FnOnce(&Path) -> String,
        adjust: Option<ConfigAdjust>,
    ) -> Self {
        link_plugins();
        let dir = tempfile::tempdir().expect("tempdir");
        let config_text = config(dir.path());
        let mut server = TestServer {
            base: String::new(),
            dir,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            config_text,
            adjust,
            running: None,
        };
        server.boot().await;
        server
    }

    async fn boot(&mut self) {
        let path = self.dir.path().join("config.toml");
        std::fs::write(&path, &self.config_text).expect("write config");
        let mut config = storehook_server::Config::load(&path).expect("config");
        if let Some(adjust) = &self.adjust {
            adjust(&mut config);
        }
        let database = postgres_url(self.dir.path());
        let env = move |name: &str| {
            (name == "STOREHOOK_DATABASE_URL")
                .then(|| database.clone())
                .flatten()
        };
        let running = storehook_server::start(config, &env)
            .await
            .expect("server starts");
        self.base = format!("http://{}", running.addr);
        self.running = Some(running);
    }

    /// Stops the server (gracefully) and starts it again on the same database.
    pub async fn restart(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        self.boot().await;
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("storehook.db")
    }

    pub async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let mut req = self.client.post(format!("{}{path}", self.base)).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        into_json(req.send().await.expect("request")).await
    }

    /// Posts a notification to the example plugin, authenticated with `key`
    /// (the test configs use `k`).
    pub async fn send_example(&self, key: &str, body: &Value) -> (u16, Value) {
        self.send_example_raw(key, body.to_string()).await
    }

    /// [`TestServer::send_example`] with a body as it is (not JSON, say).
    pub async fn send_example_raw(
        &self,
        key: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        self.post("/v1/notifications/example", &[("x-example-key", key)], body)
            .await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        into_json(
            self.client
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    /// A page or other text the admin sees (the dashboard, `/metrics`).
    pub async fn get_admin_text(&self, path: &str) -> (u16, String) {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request");
        (resp.status().as_u16(), resp.text().await.expect("body"))
    }

    pub async fn get_admin(&self, path: &str) -> (u16, Value) {
        let req = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN);
        into_json(req.send().await.expect("request")).await
    }

    /// Starts tracking a subscription through the management API.
    pub async fn track(
        &self,
        store: &str,
        subscription_id: &str,
        app_user_id: &str,
    ) -> (u16, Value) {
        let body = serde_json::json!({ "store": store, "subscription_id": subscription_id, "app_user_id": app_user_id });
        let req = self
            .client
            .post(format!("{}/v1/subscriptions", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body);
        into_json(req.send().await.expect("request")).await
    }

    /// The `GET /v1/stores` entry of one store, as the admin sees it
    /// (without the token it lists only ids and whether each is enabled).
    pub async fn store_status(&self, store: &str) -> Value {
        let (status, body) = self.get_admin("/v1/stores").await;
        assert_eq!(status, 200, "{body}");
        store_entry(&body, store)
    }

    pub async fn subscription(&self, store: &str, id: &str) -> (u16, Value) {
        self.get_admin(&format!("/v1/subscriptions/{store}/{id}"))
            .await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            drop(r);
        }
    }
}

/// `GET {base}/metrics` (open on its listener, no token): the exposition text.
pub async fn metrics_text(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

/// `field` of each entry of the JSON array `list`, in order.
pub fn field_of_each(list: &Value, field: &str) -> Vec<Value> {
    let entries = list
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"));
    entries.iter().map(|entry| entry[field].clone()).collect()
}

/// One store's entry in a `GET /v1/stores` answer.
pub fn store_entry(stores: &Value, store: &str) -> Value {
    stores["stores"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["store"] == store))
        .cloned()
        .unwrap_or_else(|| panic!("store {store} not listed: {stores}"))
}

/// `GET url` (a whole URL, for servers other than [`TestServer`]) with the
/// admin token.
pub async fn get_admin_response(url: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("request")
}

/// [`get_admin_response`]'s body as JSON.
pub async fn get_admin_json(url: &str) -> Value {
    get_admin_response(url).await.json().await.expect("json")
}

/// `/v1/events`' events without what differs between two servers doing
/// the same work (ids, cursors, times).
pub fn comparable_events(answer: &Value) -> Vec<Value> {
    let mut events = answer["events"].as_array().cloned().unwrap_or_default();
    for e in &mut events {
        for volatile in ["id", "created_at", "cursor", "received_at"] {
            e.as_object_mut().map(|o| o.remove(volatile));
        }
    }
    events
}

/// A subscription's answer without its times, and without
/// `notification_fields` in each of its notifications.
pub fn make_comparable(sub: &mut Value, notification_fields: &[&str]) {
    for volatile in ["created_at", "updated_at", "tracked_since"] {
        sub.as_object_mut().map(|o| o.remove(volatile));
    }
    for n in sub["notifications"].as_array_mut().into_iter().flatten() {
        if let Some(o) = n.as_object_mut() {
            for field in notification_fields {
                o.remove(*field);
            }
        }
    }
}

/// Asserts that a subscription's (or a notification's) `attention` is set
/// and mentions `words`.
pub fn assert_attention_mentions(record: &Value, words: &str) {
    assert!(
        record["attention"]
            .as_str()
            .is_some_and(|a| a.contains(words)),
        "{record}"
    );
}

/// Asserts an answer's status and what its `field` ("error", "verdict",
/// "status") says, showing the whole body when either differs.
pub fn assert_answer((status, body): (u16, &Value), expected: u16, field: &str, says: &str) {
    assert_eq!(
        (status, body[field].as_str()),
        (expected, Some(says)),
        "{body}"
    );
}

pub async fn into_json(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// The `storehook` binary as a child process.
pub struct BinaryServer {
    pub base: String,
    pub child: Child,
    pub dir: PathBuf,
    /// Every line the binary printed on stdout so far.
    pub stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl BinaryServer {
    /// Starts the binary with `config.toml` written into `dir` (port 0).
    pub fn start(dir: &Path, stores_config: &str) -> Self {
        let config = dir.join("config.toml");
        std::fs::write(&config, full_config(dir, stores_config)).expect("write config");
        Self::start_with_config(dir, &config, &[])
    }

    pub fn start_with_config(dir: &Path, config: &Path, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_storehook"));
        cmd.arg("--config")
            .arg(config)
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::spawn(cmd, dir)
    }

    /// Spawns `cmd` (the binary, or a wrapper that execs it) and waits for
    /// the `storehook listening on` line it prints once it serves.
    pub fn spawn(mut cmd: Command, dir: &Path) -> Self {
        // A database the test chose itself wins over the pass's.
        let chosen = cmd
            .get_envs()
            .any(|(k, v)| k == "STOREHOOK_DATABASE_URL" && v.is_some());
        if let Some(url) = postgres_url(dir).filter(|_| !chosen) {
            cmd.env("STOREHOOK_DATABASE_URL", url);
        }
        cmd.env_remove("STOREHOOK_ADMIN_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("spawn storehook");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("storehook listening on ") {
                    let _ = tx.send(addr.to_owned());
                }
                seen.lock().expect("lines").push(line);
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the server printed its address");
        BinaryServer {
            base,
            child,
            dir: dir.to_owned(),
            stdout: lines,
        }
    }

    /// SIGKILL: no chance to flush or finish anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BinaryServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Unix time in seconds.
pub fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A process's resident memory in KiB, from `/proc`.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("/proc status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// How many files this process may open (`/proc/self/limits`); a server it
/// starts inherits the same limit.
pub fn open_files_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        })
        .unwrap_or(1024)
}

/// A small deterministic generator (xorshift64*) for kill schedules and
/// fuzz mutations: seeded from the environment variable `var` to replay a
/// run, else from the clock. [`Rng::seed`] is what to set `var` to.
pub struct Rng {
    state: u64,
    seed: u64,
}

impl Rng {
    pub fn from_env(var: &str) -> Self {
        let seed = std::env::var(var)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            })
            | 1;
        Rng { state: seed, seed }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn next(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// In `lo..hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// The Stripe corpus's `invoice.paid` event with its id replaced.
pub fn stripe_event(id: &str) -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/corpus/stripe/events_openapi/invoice.paid.json"
    );
    let mut event: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("Stripe fixture"))
            .expect("fixture JSON");
    event["id"] = serde_json::json!(id);
    event.to_string()
}

/// POSTs `body` to the Stripe endpoint signed with `secret` as Stripe
/// would now; the status (0 when the request failed).
pub async fn send_stripe(client: &reqwest::Client, base: &str, secret: &str, body: String) -> u16 {
    client
        .post(format!("{base}/v1/notifications/stripe"))
        .header(
            "Stripe-Signature",
            storehook_stripe::signature_header([secret], now_s(), body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Polls `probe` every 25 ms until it returns `Some`, for at most `secs`
/// seconds; then fails naming `what` and the last value seen.
pub async fn eventually<T, E: std::fmt::Debug, F, Fut>(secs: u64, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) if std::time::Instant::now() > deadline => {
                panic!("timed out waiting for {what}; last seen: {last:?}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

impl TestServer {
    /// POSTs nothing to `url` (a whole URL) with the admin token; the status.
    pub async fn post_admin_status(&self, url: &str) -> u16 {
        self.client
            .post(url)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request")
            .status()
            .as_u16()
    }

    /// The endpoint's deliveries with `status`, once there is at least one.
    pub async fn wait_for_deliveries(&self, endpoint: &str, status: &str) -> Value {
        let path = format!("/v1/webhooks/{endpoint}/deliveries?status={status}");
        eventually(
            10,
            &format!("a {status} delivery to {endpoint}"),
            || async {
                let (_, d) = self.get_admin(&path).await;
                if d["deliveries"].as_array().is_some_and(|a| !a.is_empty()) {
                    Ok(d)
                } else {
                    Err(d)
                }
            },
        )
        .await
    }
}

/// The id in the first `/dashboard/notifications/<id>` link of a page.
pub fn first_notification_id(html: &str) -> i64 {
    let at = html
        .find("/dashboard/notifications/")
        .expect("a detail link")
        + "/dashboard/notifications/".len();
    html[at..]
        .split('"')
        .next()
        .and_then(|id| id.parse().ok())
        .expect("an id")
}

/// The HTML of one store's card on the overview.
pub fn card<'a>(html: &'a str, store: &str) -> &'a str {
    let start = html
        .find(&format!("id=\"store-{store}\""))
        .unwrap_or_else(|| panic!("no card for {store}: {html}"));
    let end = html[start..]
        .find("</article>")
        .map_or(html.len(), |e| start + e);
    &html[start..end]
}

/// A Pub/Sub push (wrapped format) of one Play developer notification about
/// `package`, as Google sent it at `at_ms`: `branch` is the notification's
/// key (`oneTimeProductNotification`…) and `body` its object.
pub fn play_push(package: &str, message_id: &str, at_ms: i64, branch: &str, body: Value) -> String {
    use base64::Engine;
    let data = serde_json::json!({"version": "1.0", "packageName": package,
                                  "eventTimeMillis": at_ms.to_string(), branch: body});
    serde_json::json!({
        "message": {"data": base64::engine::general_purpose::STANDARD.encode(data.to_string()),
                    "messageId": message_id},
        "subscription": "projects/p/subscriptions/s"
    })
    .to_string()
}
