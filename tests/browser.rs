//! The dashboard in a real browser (issue 7): Debian's headless Chromium,
//! driven through chromedriver with fantoccini. The operator signs in,
//! watches a store's card change state as notifications arrive (the page
//! refreshes by itself), opens a notification's detail and looks up a
//! subscription. Screenshots are kept under `target/tmp/browser/`.
//!
//! Chromium and chromedriver are required (`.ci/run` installs Debian's
//! `chromium` and `chromium-driver`); without them these tests fail, loudly.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{assert_answer, TestServer, ADMIN_TOKEN};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

const EXAMPLE: &str =
    "[stores.example]\nenabled = true\nkey = \"k\"\n\n[stores.amazon]\nenabled = true\n";
const WAIT: Duration = Duration::from_secs(20);

/// A program from `PATH` or one of the usual places.
fn program(name: &str, usual: &[&str]) -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    usual
        .iter()
        .map(PathBuf::from)
        .chain(from_path)
        .find(|p| p.is_file())
}

/// Chromedriver (a child of this test) and a Chromium session; the profile
/// is a fresh temporary folder. Dropping it ends chromedriver.
struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

async fn start_browser() -> Browser {
    let chromium = program("chromium", &["/usr/bin/chromium"]).unwrap_or_else(|| {
        panic!(
            "Chromium is not installed, so the dashboard's browser tests cannot run. \
             Install Debian's packages: apt-get install chromium chromium-driver (.ci/run does)"
        )
    });
    let chromedriver = program("chromedriver", &["/usr/bin/chromedriver"]).unwrap_or_else(|| {
        panic!(
            "chromedriver is not installed, so the dashboard's browser tests cannot run. \
             Install Debian's packages: apt-get install chromium chromium-driver (.ci/run does)"
        )
    });
    let mut driver = Command::new(&chromedriver)
        .arg("--port=0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
    let stdout = driver.stdout.take().expect("chromedriver stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(port) = line
                .split("started successfully on port ")
                .nth(1)
                .and_then(|p| p.trim().trim_end_matches('.').parse::<u16>().ok())
            {
                let _ = tx.send(port);
            }
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("chromedriver said which port it listens on");

    let profile = tempfile::tempdir().expect("profile dir");
    let args = vec![
        "--headless".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--window-size=1280,1000".to_owned(),
        format!("--user-data-dir={}", profile.path().display()),
    ];
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        json!({ "binary": chromium.display().to_string(), "args": args }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .unwrap_or_else(|e| panic!("chromedriver could not start Chromium: {e}"));
    Browser {
        client,
        driver,
        _profile: profile,
    }
}

/// Runs `scenario` in the browser and always ends the session (even when the
/// scenario panics), so no Chromium outlives the test.
async fn with_browser<F, Fut>(scenario: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let browser = start_browser().await;
    let outcome = tokio::spawn(scenario(browser.client.clone())).await;
    let _ = browser.client.clone().close().await;
    drop(browser);
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    let path = screenshot_dir().join(name);
    std::fs::write(&path, png).expect("write screenshot");
    eprintln!("screenshot: {}", path.display());
}

async fn wait_for(client: &Client, css: &str) -> fantoccini::elements::Element {
    match client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
    {
        Ok(e) => e,
        Err(e) => {
            let source = client.source().await.unwrap_or_default();
            panic!("`{css}` did not appear within {WAIT:?}: {e}\n{source}");
        }
    }
}

async fn text_of(client: &Client, css: &str) -> String {
    wait_for(client, css).await.text().await.expect("text")
}

async fn click(client: &Client, css: &str) {
    wait_for(client, css)
        .await
        .click()
        .await
        .unwrap_or_else(|e| panic!("cannot click `{css}`: {e}"));
}

/// Types `token` into the sign-in form and submits it.
/// Types a token into the sign-in form and submits it.
async fn submit_token(client: &Client, token: &str) {
    wait_for(client, "#login #token")
        .await
        .send_keys(token)
        .await
        .expect("type the token");
    click(client, "#login button").await;
}

/// Signs in and waits for the signed-in page (its sign-out form), so that
/// the form's own navigation cannot land after the caller's next `goto`.
async fn sign_in(client: &Client, token: &str) {
    submit_token(client, token).await;
    wait_for(client, "form[action='/dashboard/logout']").await;
}

async fn send(server: &TestServer, key: &str, body: Value) -> u16 {
    server.send_example(key, &body).await.0
}

fn notification(id: &str, sub: &str) -> Value {
    json!({"id": id, "type": "RENEWAL", "subscription": sub, "at": 1_700_000_000_000_i64,
           "status": "active", "expires_at": 1_900_000_000_000_i64, "auto_renew": true,
           "product": "monthly", "purchaseToken": "tok-secret-0123456789abcdef"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_watches_a_store_connect_and_inspects_what_arrived() {
    let server = TestServer::start(EXAMPLE).await;
    let base = server.base.clone();
    with_browser(move |c| async move {
        // Signed out: the sign-in form and no data.
        c.goto(&format!("{base}/?refresh=1")).await.expect("goto");
        wait_for(&c, "#login #token").await;
        let source = c.source().await.expect("source");
        assert!(!source.contains("data-store"), "data before sign-in");

        submit_token(&c, "not-the-token").await;
        let alert = text_of(&c, "[role=alert]").await;
        assert!(alert.contains("not the admin token"), "{alert}");

        sign_in(&c, ADMIN_TOKEN).await;

        // Signed in: the example store waits for its first notification.
        wait_for(&c, "#store-example[data-state=waiting]").await;
        let amazon = text_of(&c, "#store-amazon").await;
        assert!(amazon.contains("not supported yet"), "{amazon}");
        let url = text_of(&c, "#store-example code.url").await;
        assert_eq!(url, format!("{base}/v1/notifications/example"));

        // Each change shows up without reloading: the page refreshes by itself.
        assert_eq!(
            send(&server, "k", notification("n1", "sub-untracked")).await,
            200
        );
        wait_for(&c, "#store-example[data-state=untracked]").await;
        let state = text_of(&c, "#store-example .state").await;
        assert_eq!(state, "only untracked notifications so far");

        assert_eq!(server.track("example", "sub-2", "user-2").await.0, 201);
        assert_eq!(send(&server, "k", notification("n2", "sub-2")).await, 200);
        wait_for(&c, "#store-example[data-state=connected]").await;
        let received = wait_for(&c, "#store-example .last-received time").await;
        let relative = received.text().await.expect("text");
        assert!(
            relative == "just now" || relative.ends_with("seconds ago"),
            "{relative}"
        );
        let exact = received
            .attr("title")
            .await
            .expect("title")
            .unwrap_or_default();
        assert!(exact.ends_with(" UTC"), "exact time on hover: {exact}");

        // A refused request after genuine ones warns, it does not turn the
        // card red (anyone can send one; issue 12).
        assert_eq!(send(&server, "bad", notification("n3", "sub-2")).await, 401);
        wait_for(&c, "#store-example[data-state=refusing-some]").await;
        let reason = text_of(&c, "#store-example .explain .reason").await;
        assert!(
            reason.contains("x-example-key does not match the configured key"),
            "{reason}"
        );
        c.set_window_size(1280, 1500).await.expect("resize");
        screenshot(&c, "overview-refusing-some.png").await;

        assert_eq!(send(&server, "k", notification("n4", "sub-2")).await, 200);
        wait_for(&c, "#store-example[data-state=connected]").await;
        screenshot(&c, "dashboard.png").await;

        // The newest notification's detail: decoded, masked, what it changed.
        let newest = wait_for(&c, "#recent tbody tr:first-child a.detail").await;
        assert_eq!(newest.text().await.expect("text"), "RENEWAL");
        newest.click().await.expect("open detail");
        let changed = text_of(&c, "p.changed").await;
        assert!(
            changed.contains("Applied to the tracked subscription"),
            "{changed}"
        );
        let payload = text_of(&c, "pre.payload").await;
        assert!(payload.contains("\"product\": \"monthly\""), "{payload}");
        assert!(
            !payload.contains("tok-secret-0123456789abcdef"),
            "{payload}"
        );
        assert!(payload.contains("tok-…cdef"), "{payload}");
        screenshot(&c, "notification.png").await;

        // Look the subscription up by its app user id.
        c.goto(&format!("{base}/")).await.expect("goto");
        let q = wait_for(&c, "form.lookup input[name=q]").await;
        q.send_keys("user-2").await.expect("type");
        click(&c, "form.lookup button").await;
        let found = text_of(&c, "[data-subscription=\"sub-2\"]").await;
        assert!(found.contains("active"), "{found}");
        assert!(
            found.contains("Auto-renew\non") || found.contains("Auto-renew on"),
            "{found}"
        );
        assert!(found.contains("2030-03-17 17:46:40 UTC"), "{found}");
        assert!(found.contains("RENEWAL"), "history: {found}");
        screenshot(&c, "lookup.png").await;

        // Signing out ends the session.
        click(&c, "form[action=\"/dashboard/logout\"] button").await;
        wait_for(&c, "#login #token").await;
    })
    .await;
}

// ---- the bundled stores (the README's screenshot) ----

const STRIPE_SECRET: &str = "whsec_dashboard_readme";
const STRIPE_SUB: &str = "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw";
const GOOGLE_PUSH_TOKEN: &str = "dashboard-push-secret";
const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus");

fn stripe_signature(secret: &str, t: u64, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(tag.as_ref()))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Apple waiting for its first notification, Google connected by the Play
/// Console's test notification, Stripe refusing a bad signature after a
/// tracked event (a warning, since genuine events still arrive): each card
/// in its state, in plain words. The screenshot is
/// the README's (`docs/dashboard.png` is a copy of `target/tmp/browser/readme.png`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundled_stores_show_their_states_in_plain_words() {
    common::link_plugins();
    let registered = storehook_core::registrations();
    let missing: Vec<_> = ["apple", "google", "stripe"]
        .into_iter()
        .filter(|id| !registered.iter().any(|r| r.id == *id))
        .collect();
    if !missing.is_empty() {
        // Only in a build with placeholder store crates (never in the workspace).
        eprintln!("skipping: stores {missing:?} are not linked");
        return;
    }
    let config = format!(
        "[stores.apple]\nenabled = true\napps = [{{ bundle_id = \"com.example.app\", app_apple_id = 1234567890 }}]\n\n\
         [stores.google]\nenabled = true\npackage_names = [\"com.okmusician.android\"]\npush_token = \"{GOOGLE_PUSH_TOKEN}\"\n\n\
         [stores.stripe]\nenabled = true\nsigning_secrets = [\"{STRIPE_SECRET}\"]\n\n\
         [stores.amazon]\nenabled = true\n"
    );
    let server = TestServer::start(&config).await;

    // Google: the Play Console's "Send test notification", then an untracked purchase.
    for body in [
        "okmusician_2019_test_notification",
        "okmusician_2019_subscription_purchased",
    ] {
        let body =
            std::fs::read(format!("{CORPUS}/google/push_bodies/{body}.json")).expect("corpus");
        let (status, answer) = server
            .post(
                &format!("/v1/notifications/google?token={GOOGLE_PUSH_TOKEN}"),
                &[("content-type", "application/json")],
                body,
            )
            .await;
        assert_eq!(status, 200, "{answer}");
    }

    // Stripe: a tracked subscription's update, then a delivery signed with another secret.
    assert_eq!(server.track("stripe", STRIPE_SUB, "user-42").await.0, 201);
    let text = std::fs::read_to_string(format!(
        "{CORPUS}/stripe/events_openapi/customer.subscription.updated.json"
    ))
    .expect("corpus");
    let mut event: Value = serde_json::from_str(&text).expect("event");
    let now = unix_now();
    event["id"] = json!("evt_dashboard_1");
    event["created"] = json!(now);
    let body = event.to_string();
    let good = stripe_signature(STRIPE_SECRET, now, &body);
    let (status, answer) = server
        .post(
            "/v1/notifications/stripe",
            &[("stripe-signature", &good)],
            body.clone(),
        )
        .await;
    assert_answer((status, &answer), 200, "verdict", "tracked");
    let bad = stripe_signature("whsec_not_the_configured_one", now, &body);
    let (status, _) = server
        .post(
            "/v1/notifications/stripe",
            &[("stripe-signature", &bad)],
            body,
        )
        .await;
    assert_eq!(status, 401);

    let base = server.base.clone();
    with_browser(move |c| async move {
        c.goto(&format!("{base}/")).await.expect("goto");
        sign_in(&c, ADMIN_TOKEN).await;

        wait_for(&c, "#store-apple[data-state=waiting]").await;
        let apple = text_of(&c, "#store-apple details").await;
        assert!(apple.contains("Version 2 Notifications"), "{apple}");
        assert!(
            apple.contains(&format!("{base}/v1/notifications/apple")),
            "{apple}"
        );

        wait_for(&c, "#store-google[data-state=connected]").await;
        let google = text_of(&c, "#store-google .last-received").await;
        assert!(
            google == "just now" || google.ends_with("seconds ago"),
            "{google}"
        );

        wait_for(&c, "#store-stripe[data-state=refusing-some]").await;
        let reason = text_of(&c, "#store-stripe .explain .reason").await;
        assert_eq!(
            reason,
            "signature did not match any configured Stripe signing secret"
        );

        let recent = text_of(&c, "#recent").await;
        assert!(recent.contains("store test"), "{recent}");

        let amazon = text_of(&c, "#store-amazon .state").await;
        assert_eq!(amazon, "not supported yet");

        c.set_window_size(1280, 1750).await.expect("resize");
        screenshot(&c, "readme.png").await;
    })
    .await;
}

/// The pull side from the store card: Check connection shows its progress
/// and then what it found; Recover runs a backfill whose job and recovered
/// count the card follows (issue 15).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_checks_a_store_and_recovers_what_it_missed() {
    let server = TestServer::start(
        "[stores.example]\nenabled = true\nkey = \"k\"\n\n[stores.example.api]\n\
         history_file = \"history.jsonl\"\ncheck_seconds = 3\npage_size = 1\npage_delay_ms = 300\n\
         \n[store_apis]\ncatch_up_interval_hours = 0\n",
    )
    .await;
    let now = common::now_s() * 1000;
    let history: Vec<String> = (0..3)
        .map(|i| {
            json!({"id": format!("missed-{i}"), "type": "RENEWAL", "subscription": "sub-9",
                   "at": now - (5 - i) * 86_400_000, "status": "active",
                   "expires_at": now + 86_400_000, "product": "monthly"})
            .to_string()
        })
        .collect();
    std::fs::write(server.dir.path().join("history.jsonl"), history.join("\n")).expect("history");
    assert_eq!(server.track("example", "sub-9", "user-9").await.0, 201);
    let base = server.base.clone();
    with_browser(move |c| async move {
        c.goto(&format!("{base}/?refresh=1")).await.expect("goto");
        sign_in(&c, ADMIN_TOKEN).await;
        let never = text_of(&c, "#store-example .check-never").await;
        assert!(never.contains("not been checked"), "{never}");

        click(&c, "#store-example button.check-connection").await;
        // While it runs, the card shows the check's own words as they come.
        let progress = text_of(&c, "#store-example ol.progress").await;
        assert!(progress.contains("asking the example store"), "{progress}");
        wait_for(&c, "#store-example .check-result[data-verdict=connected]").await;
        let result = text_of(&c, "#store-example .check-result").await;
        assert!(result.contains("Connected"), "{result}");
        let findings = text_of(&c, "#store-example details.findings").await;
        assert!(findings.contains("What the check found"), "{findings}");

        // Recover the last 10 days: the job runs, the card counts.
        let select = wait_for(&c, "#store-example form.recover select[name=since]").await;
        select.select_by_value("10d").await.expect("choose 10 days");
        click(&c, "#store-example form.recover button.backfill").await;
        wait_for(&c, "#store-example .job[data-status=done]").await;
        let job = text_of(&c, "#store-example .job").await;
        assert!(job.contains("3 recovered"), "{job}");
        let recovered = text_of(&c, "#store-example li.recovered").await;
        assert!(recovered.starts_with('3'), "{recovered}");
        c.set_window_size(1280, 1400).await.expect("resize");
        screenshot(&c, "store-api.png").await;
        // The recovered notifications are marked in the list.
        let badge = text_of(&c, "#recent tbody tr:first-child .badge.recovered").await;
        assert_eq!(badge, "recovered");
    })
    .await;
}

/// The source of the page once `needle` is in it (the page's SVG titles
/// are not rendered text, so they are looked for in the source).
async fn source_with(client: &Client, needle: &str) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let source = client.source().await.unwrap_or_default();
        if source.contains(needle) {
            return source;
        }
        if std::time::Instant::now() > deadline {
            panic!("`{needle}` did not appear within {WAIT:?}:\n{source}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The Charts page (issue 17): production by default, a filter changes
/// what is drawn, and every bar's title holds its exact value and bucket.
/// With `STOREHOOK_UPDATE_SCREENSHOTS=1` the README's docs/charts.png is
/// written again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_reads_the_charts_and_changes_a_filter() {
    let server = TestServer::start(EXAMPLE).await;
    let now = unix_now() as i64 * 1000;
    let today = utc_date(now);
    for (id, sandbox) in [("c1", false), ("c2", false), ("c3", false), ("c4", true)] {
        let mut body = notification(id, &format!("sub-{id}"));
        body["at"] = json!(now - 1_500);
        body["sandbox"] = json!(sandbox);
        assert_eq!(send(&server, "k", body).await, 200);
    }
    let history = TestServer::start(EXAMPLE).await;
    let (weekly, active_tonight) = weekly_subscriptions(now);
    for body in weekly {
        assert_eq!(send(&history, "k", body).await, 200);
    }
    let (base, history_base) = (server.base.clone(), history.base.clone());
    with_browser(move |c| async move {
        c.goto(&format!("{base}/dashboard/charts?metric=events"))
            .await
            .expect("goto");
        sign_in(&c, ADMIN_TOKEN).await;
        c.goto(&format!("{base}/dashboard/charts?metric=events"))
            .await
            .expect("goto");
        let production = format!("{today} · example: 3 (incomplete: this day is still running)");
        source_with(&c, &production).await;
        let nav = text_of(&c, "header.top nav a[aria-current=page]").await;
        assert_eq!(nav, "Charts");
        let definition = text_of(&c, "aside.definition").await;
        assert!(
            definition.contains("Notifications stored, per store."),
            "{definition}"
        );

        // The sandbox toggle: its own world, never mixed in.
        click(&c, "#chart-filters input[value=sandbox]").await;
        click(&c, "#chart-filters button[type=submit]").await;
        let sandbox = format!("{today} · example: 1 (incomplete: this day is still running)");
        let source = source_with(&c, &sandbox).await;
        assert!(
            !source.contains(&production),
            "sandbox mixed with production"
        );
        let url = c.current_url().await.expect("url");
        assert!(url.as_str().contains("environment=sandbox"), "{url}");

        // Back to production, by week: one bucket, the week of today.
        click(&c, "#chart-filters input[value=production]").await;
        let bucket = wait_for(&c, "#chart-filters select[name=bucket]").await;
        bucket.select_by_value("week").await.expect("select week");
        click(&c, "#chart-filters button[type=submit]").await;
        source_with(&c, "· example: 3 (incomplete: this week is still running)").await;
        let legend = text_of(&c, "ul.legend").await;
        assert!(legend.contains("example"), "{legend}");
        assert!(
            legend.contains("incomplete: the current week is still running"),
            "{legend}"
        );

        // Active subscriptions day by day over a month of weekly
        // subscriptions (a server of its own), for the picture in the
        // README: 15 of the 20 renew every week until now, the other 5
        // lapse after their first week (a renewal due later today has not
        // come yet, so today may count fewer than 15).
        c.goto(&format!("{history_base}/dashboard/charts"))
            .await
            .expect("goto");
        sign_in(&c, ADMIN_TOKEN).await;
        c.goto(&format!(
            "{history_base}/dashboard/charts?metric=active_subscriptions"
        ))
        .await
        .expect("goto");
        wait_for(&c, "svg.chart").await;
        let tonight =
            format!("{today} · all: {active_tonight} (incomplete: this day is still running)");
        source_with(&c, &tonight).await;
        let source = c.source().await.expect("source");
        assert!(source.matches("<title>").count() >= 28, "a month of days");
        c.set_window_size(1280, 1000).await.expect("resize");
        screenshot(&c, "charts.png").await;
        if std::env::var_os("STOREHOOK_UPDATE_SCREENSHOTS").is_some() {
            let png = c.screenshot().await.expect("screenshot");
            let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/charts.png");
            std::fs::write(docs, png).expect("write docs/charts.png");
        }
    })
    .await;
}

/// Twenty weekly subscriptions, the first started 27 days before `now_ms`
/// and one more each day; those numbered 0, 4, 8, … never renew, the
/// others renew every 7 days until now. Also how many are active at the
/// end of today (UTC): those whose last paid week ends on a later day.
fn weekly_subscriptions(now_ms: i64) -> (Vec<Value>, usize) {
    const DAY: i64 = 86_400_000;
    let mut out = Vec::new();
    let mut active_tonight = 0;
    for i in 0..20_i64 {
        let start = now_ms - (27 - i) * DAY;
        let mut at = start;
        let mut kind = "INITIAL_PURCHASE";
        let mut paid_until = start;
        while at < now_ms {
            out.push(json!({"id": format!("w{i}-{at}"), "type": kind,
                "subscription": format!("weekly-{i}"), "at": at, "status": "active",
                "expires_at": at + 7 * DAY, "auto_renew": i % 4 != 0, "product": "weekly"}));
            paid_until = at + 7 * DAY;
            if i % 4 == 0 {
                break;
            }
            kind = "RENEWAL";
            at += 7 * DAY;
        }
        if paid_until.div_euclid(DAY) > now_ms.div_euclid(DAY) {
            active_tonight += 1;
        }
    }
    (out, active_tonight)
}

/// `2026-12-03`: the UTC date of Unix ms (the page's bucket names).
fn utc_date(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).expect("a time");
    t.date()
        .format(time::macros::format_description!("[year]-[month]-[day]"))
        .expect("a date")
}
