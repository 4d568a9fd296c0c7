//! The pull side, end to end through the real server on loopback and a
//! real SQLite file: connection checks, backfills (recovery equals pushing,
//! twice changes nothing, a restart resumes), the acknowledgement queue
//! (exactly once through conflicts and a restart) and its 48 h flag. The
//! example plugin plays the store; its "API" answers what each test wrote.
//! The bundled stores' clients are tested against their stand-ins in their
//! own crates; here, one of them end to end through the host: a one-time
//! Google Play purchase, pushed, is read back and acknowledged once.

mod common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::receiver::Receiver;
use common::{
    assert_attention_mentions, comparable_events, eventually, make_comparable, TestServer,
    ADMIN_TOKEN,
};
use serde_json::{json, Value};

const DAY_MS: i64 = 86_400_000;

fn now_ms() -> i64 {
    common::now_s() * 1000
}

/// `[stores.example]` with its API reading `history.jsonl` in the test's folder.
fn example_with_api(api: &str) -> String {
    format!(
        "[stores.example]\nenabled = true\nkey = \"k\"\n\n[stores.example.api]\nhistory_file = \"history.jsonl\"\n{api}\n"
    )
}

fn write_history(server: &TestServer, notifications: &[Value]) {
    let lines: Vec<String> = notifications.iter().map(Value::to_string).collect();
    std::fs::write(
        server.dir.path().join("history.jsonl"),
        lines.join("\n") + "\n",
    )
    .expect("write history");
}

async fn post_admin(server: &TestServer, path: &str, body: Value) -> (u16, Value) {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    server
        .post(
            path,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body.to_string(),
        )
        .await
}

/// Ten days of two subscriptions' lives, oldest first, ending an hour ago.
fn ten_days() -> Vec<Value> {
    let start = now_ms() - 10 * DAY_MS;
    let at = |day: i64| start + day * DAY_MS;
    // Subscription a is monthly, b yearly: the id's letter says which.
    let entry =
        |id: &str, kind: &str, when: i64, status: &str, expires_at: i64, auto_renew: bool| {
            let (subscription, product) = if id.starts_with('a') {
                ("sub-a", "monthly")
            } else {
                ("sub-b", "yearly")
            };
            json!({"id": id, "type": kind, "subscription": subscription, "at": when,
               "status": status, "expires_at": expires_at, "auto_renew": auto_renew,
               "product": product})
        };
    vec![
        entry("a1", "INITIAL_PURCHASE", at(0), "active", at(3), true),
        entry("b1", "INITIAL_PURCHASE", at(1), "active", at(4), true),
        entry("a2", "RENEWAL", at(3), "active", at(6), true),
        entry("b2", "CANCELLATION", at(3) + 5, "active", at(4), false),
        entry("b3", "EXPIRATION", at(4), "expired", at(4), false),
        entry("a3", "RENEWAL", at(6), "active", at(9), true),
        entry("a4", "REFUND", at(8), "revoked", at(8), false),
    ]
}

/// What a subscription's state and its events say, without the bookkeeping
/// times that differ between two servers.
async fn observable(server: &TestServer) -> (Vec<Value>, Vec<Value>) {
    let mut subs = Vec::new();
    for id in ["sub-a", "sub-b"] {
        let (status, mut sub) = server.subscription("example", id).await;
        assert_eq!(status, 200, "{sub}");
        // How it arrived is the one difference (checked on its own).
        make_comparable(&mut sub, &["received_at", "source"]);
        subs.push(sub);
    }
    let (status, events) = server.get_admin("/v1/events?limit=1000").await;
    assert_eq!(status, 200, "{events}");
    (subs, comparable_events(&events))
}

async fn wait_for_job(server: &TestServer, id: i64) -> Value {
    eventually(30, "the backfill job to finish", || async move {
        let (_, job) = server.get_admin(&format!("/v1/jobs/{id}")).await;
        match job["status"].as_str() {
            Some("done" | "failed" | "cancelled") => Ok(job),
            _ => Err(job),
        }
    })
    .await
}

/// Starts a backfill of the example store; the job's id.
async fn start_backfill(server: &TestServer, since: &str) -> i64 {
    let (status, job) = post_admin(
        server,
        "/v1/stores/example/backfill",
        json!({ "since": since }),
    )
    .await;
    assert_eq!(status, 202, "{job}");
    job["id"].as_i64().expect("job id")
}

async fn backfill(server: &TestServer, since: &str) -> Value {
    let id = start_backfill(server, since).await;
    wait_for_job(server, id).await
}

/// Starts a connection check and waits for its end; the check's status.
async fn finished_check(server: &TestServer) -> Value {
    let (status, started) = post_admin(server, "/v1/stores/example/check", json!({})).await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["state"], "running", "{started}");
    eventually(20, "the check to finish", || async {
        let (_, check) = server.get_admin("/v1/stores/example/check").await;
        if check["state"] == "done" {
            Ok(check)
        } else {
            Err(check)
        }
    })
    .await
}

async fn track_both(server: &TestServer) {
    for (sub, user) in [("sub-a", "user-a"), ("sub-b", "user-b")] {
        let (status, body) = server.track("example", sub, user).await;
        assert!(status == 200 || status == 201, "{body}");
    }
}

#[tokio::test]
async fn a_backfill_recovers_an_outage_exactly_as_if_pushed_and_twice_changes_nothing() {
    // No catch-up of its own: the test starts each backfill. Each server
    // delivers its events to a receiver of its own.
    let config = |receiver: &Receiver| {
        example_with_api("")
            + "\n[store_apis]\ncatch_up_interval_hours = 0\n[delivery]\nallow_loopback = true\n"
            + &format!(
                "[[webhooks]]\nname = \"app\"\nurl = \"{}\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n",
                receiver.url("/hook")
            )
    };
    let pushed_to = Receiver::start().await;
    let recovered_to = Receiver::start().await;
    let pushed = TestServer::start(&config(&pushed_to)).await;
    let recovered = TestServer::start(&config(&recovered_to)).await;
    track_both(&pushed).await;
    track_both(&recovered).await;
    let history = ten_days();

    // One server got every notification pushed, in order…
    for n in &history {
        let (status, body) = pushed.send_example("k", n).await;
        assert_eq!(status, 200, "{body}");
    }
    // …the other was unreachable for the ten days: the store has them all.
    write_history(&recovered, &history);
    let job = backfill(&recovered, "11d").await;
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(job["recovered"], 7, "{job}");
    assert_eq!(job["duplicates"], 0, "{job}");

    let (subs_pushed, events_pushed) = observable(&pushed).await;
    let (subs_recovered, events_recovered) = observable(&recovered).await;
    assert_eq!(subs_recovered, subs_pushed, "the same states");
    assert_eq!(subs_recovered[0]["status"], "revoked");
    assert_eq!(subs_recovered[1]["status"], "expired");
    assert_eq!(events_recovered.len(), 7, "{events_recovered:?}");
    assert_eq!(
        events_recovered, events_pushed,
        "the same events, in the same order"
    );

    let store = recovered.store_status("example").await;
    assert_eq!(store["counts"]["recovered"], 7, "{store}");
    assert_eq!(
        store["last_received"],
        Value::Null,
        "a recovered notification is not a push: {store}"
    );
    assert_eq!(store["latest_job"]["status"], "done", "{store}");
    let mut sources = Vec::new();
    for id in ["sub-a", "sub-b"] {
        let (_, sub) = recovered.subscription("example", id).await;
        for n in sub["notifications"].as_array().into_iter().flatten() {
            sources.push(n["source"].clone());
        }
    }
    assert!(
        sources.len() == 7 && sources.iter().all(|s| s == "backfill"),
        "{sources:?}"
    );

    // Again: everything is a duplicate, nothing changes.
    let again = backfill(&recovered, "11d").await;
    assert_eq!(again["status"], "done", "{again}");
    assert_eq!(again["recovered"], 0, "{again}");
    assert_eq!(again["duplicates"], 7, "{again}");
    assert_eq!(observable(&recovered).await, (subs_pushed, events_pushed));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(recovered_to.delivered().len(), 7, "nothing delivered twice");
    assert_eq!(
        recovered.store_status("example").await["counts"]["recovered"],
        7
    );
}

#[tokio::test]
async fn a_restart_mid_backfill_resumes_from_the_last_committed_page() {
    let config = example_with_api("page_size = 1\npage_delay_ms = 400\n")
        + "\n[store_apis]\ncatch_up_interval_hours = 0\n";
    let mut server = TestServer::start(&config).await;
    track_both(&server).await;
    // The store's history also holds an entry that does not decode.
    let mut history = ten_days();
    history.insert(3, json!({"id": "broken", "type": "RENEWAL"}));
    write_history(&server, &history);
    let id = start_backfill(&server, "11d").await;
    eventually(20, "two pages committed", || async {
        let (_, job) = server.get_admin(&format!("/v1/jobs/{id}")).await;
        if job["pages"].as_i64().unwrap_or(0) >= 2 {
            Ok(())
        } else {
            Err(job)
        }
    })
    .await;
    server.restart().await;
    let (_, resumed) = server.get_admin(&format!("/v1/jobs/{id}")).await;
    assert!(
        resumed["status"] == "queued" || resumed["status"] == "running",
        "the job survives the restart unfinished: {resumed}"
    );
    let done = wait_for_job(&server, id).await;
    assert_eq!(done["status"], "done", "{done}");
    // Every entry read once: the pages before the restart were not read again.
    assert_eq!(done["scanned"], 8, "{done}");
    assert_eq!(done["recovered"], 7, "{done}");
    assert_eq!(done["skipped"], 1, "the broken entry is counted: {done}");
    assert_eq!(done["duplicates"], 0, "{done}");
    let (_, sub) = server.subscription("example", "sub-a").await;
    assert_eq!(sub["status"], "revoked", "{sub}");
}

#[tokio::test]
async fn a_backfill_can_be_cancelled_and_bad_requests_are_explained() {
    let config = example_with_api("page_size = 1\npage_delay_ms = 2000\n")
        + "\n[store_apis]\ncatch_up_interval_hours = 0\n";
    let server = TestServer::start(&config).await;
    write_history(&server, &ten_days());
    let (status, err) = post_admin(
        &server,
        "/v1/stores/example/backfill",
        json!({ "since": "yesterday" }),
    )
    .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("bad_since")),
        "{err}"
    );
    let (status, err) = post_admin(
        &server,
        "/v1/stores/apple/backfill",
        json!({ "since": "1d" }),
    )
    .await;
    assert_eq!(status, 400, "a disabled store: {err}");
    let id = start_backfill(&server, "11d").await;
    let (status, cancelled) =
        post_admin(&server, &format!("/v1/jobs/{id}/cancel"), json!({})).await;
    assert_eq!(status, 200, "{cancelled}");
    let job = wait_for_job(&server, id).await;
    assert_eq!(job["status"], "cancelled", "{job}");
    assert!(
        job["recovered"].as_i64().unwrap_or(0) < 7,
        "stopped early: {job}"
    );
    let (status, again) = post_admin(&server, &format!("/v1/jobs/{id}/cancel"), json!({})).await;
    assert_eq!(
        (status, again["error"].as_str()),
        (409, Some("job_finished")),
        "{again}"
    );
}

#[tokio::test]
async fn a_check_shows_its_progress_and_stores_what_it_found() {
    let server = TestServer::start(&example_with_api("check_seconds = 2\n")).await;
    let done = finished_check(&server).await;
    let progress: Vec<_> = done["progress"].as_array().expect("progress").clone();
    assert!(
        progress
            .iter()
            .any(|l| l == "waiting for the example store… 2 s"),
        "{done}"
    );
    let result = &done["result"];
    assert_eq!(result["verdict"], "connected", "{done}");
    assert_eq!(result["connected"], true);
    let titles: Vec<_> = result["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| f["title"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        titles.contains(&"Notification URL".to_owned()),
        "{titles:?}"
    );
    // The host adds what it knows itself.
    assert!(
        titles.contains(&"Last notification pushed by the store".to_owned()),
        "{titles:?}"
    );
    let store = server.store_status("example").await;
    assert_eq!(store["last_check"]["verdict"], "connected", "{store}");
    assert_eq!(store["api"]["backfill"], true, "{store}");

    // A store without credentials says what to set; a problem is a problem.
    let bare = TestServer::start("[stores.example]\nenabled = true\nkey = \"k\"\n").await;
    let check = finished_check(&bare).await;
    assert_eq!(check["result"]["verdict"], "not_configured", "{check}");
    let problem = TestServer::start(&example_with_api("check = \"problem\"\n")).await;
    let check = finished_check(&problem).await;
    assert_eq!(check["result"]["verdict"], "problem", "{check}");
    assert_eq!(
        check["result"]["summary"],
        "The example store has no notification URL"
    );
    assert!(
        check["result"]["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .any(|f| f["code"] == "NO_URL"),
        "{check}"
    );
}

/// A clock the test moves: real time plus an offset.
fn movable_clock(offset: Arc<AtomicI64>) -> impl Fn(&mut storehook_server::Config) + Send + Sync {
    move |config: &mut storehook_server::Config| {
        let offset = offset.clone();
        config.clock = Some(storehook_server::config::ClockOverride(Arc::new(
            move || now_ms() + offset.load(Ordering::SeqCst),
        )));
        config.store_apis.queue_tick = Some(Duration::from_millis(50));
    }
}

/// A notification of `sub-a` whose state the example store then says is
/// not acknowledged yet (with `fetched_ack_pending`).
fn purchase(id: &str, kind: &str, at: i64, expires: i64) -> Value {
    json!({"id": id, "type": kind, "subscription": "sub-a", "at": at, "status": "active",
           "expires_at": expires, "fetch": true})
}

/// Waits until the store's acknowledgement count `field` is `value`; the
/// store's status then.
async fn acknowledgements_reach(server: &TestServer, field: &str, value: i64) -> Value {
    store_acknowledgements_reach(server, "example", field, value).await
}

async fn store_acknowledgements_reach(
    server: &TestServer,
    store: &str,
    field: &str,
    value: i64,
) -> Value {
    eventually(
        10,
        &format!("{store} acknowledgements.{field} = {value}"),
        || async {
            let store = server.store_status(store).await;
            if store["acknowledgements"][field] == value {
                Ok(store)
            } else {
                Err(store)
            }
        },
    )
    .await
}

fn ack_lines(server: &TestServer) -> Vec<String> {
    std::fs::read_to_string(server.dir.path().join("acks.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_purchase_is_acknowledged_exactly_once_through_conflicts_and_a_restart() {
    let offset = Arc::new(AtomicI64::new(0));
    let config =
        example_with_api("acknowledge = true\nack_log = \"acks.log\"\nack_conflicts = 2\n")
            .replace("key = \"k\"\n", "key = \"k\"\nfetched_ack_pending = true\n");
    let mut server = TestServer::start_tuned(&config, movable_clock(offset.clone())).await;
    server.track("example", "sub-a", "user-a").await;
    let (status, body) = server
        .send_example(
            "k",
            &purchase("p1", "INITIAL_PURCHASE", now_ms(), now_ms() + DAY_MS),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Two conflicts: each retry waits its backoff (30 s, then 60 s of the
    // store API's clock), which the test moves along.
    eventually(20, "the acknowledgement", || async {
        offset.fetch_add(45_000, Ordering::SeqCst);
        let lines = ack_lines(&server);
        if lines.is_empty() {
            Err(())
        } else {
            Ok(())
        }
    })
    .await;
    let store = acknowledgements_reach(&server, "acknowledged", 1).await;
    assert_eq!(store["acknowledgements"]["pending"], 0, "{store}");

    // The same state again (a redelivery, a restart, a re-read) does not
    // acknowledge twice.
    server
        .send_example(
            "k",
            &purchase("p2", "RENEWAL", now_ms() + 1, now_ms() + DAY_MS),
        )
        .await;
    server.restart().await;
    for _ in 0..20 {
        offset.fetch_add(3_600_000, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ack_lines(&server), vec!["sub-a".to_owned()], "exactly once");
    let store = server.store_status("example").await;
    assert_eq!(store["acknowledgements"]["acknowledged"], 1, "{store}");
}

#[tokio::test]
async fn a_purchase_left_unacknowledged_is_flagged_after_48_hours() {
    let offset = Arc::new(AtomicI64::new(0));
    // The app acknowledges (storehook only watches): no `acknowledge`.
    let config =
        example_with_api("").replace("key = \"k\"\n", "key = \"k\"\nfetched_ack_pending = true\n");
    let server = TestServer::start_tuned(&config, movable_clock(offset.clone())).await;
    server.track("example", "sub-a", "user-a").await;
    server
        .send_example(
            "k",
            &purchase("p1", "INITIAL_PURCHASE", now_ms(), now_ms() + 30 * DAY_MS),
        )
        .await;
    let store = acknowledgements_reach(&server, "pending", 1).await;
    assert_eq!(store["acknowledgements"]["overdue"], 0, "not yet: {store}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, sub) = server.subscription("example", "sub-a").await;
    assert!(sub["attention"].is_null(), "47 h is fine: {sub}");

    offset.store(49 * 3_600_000, Ordering::SeqCst);
    let sub = eventually(10, "the flag", || async {
        let (_, sub) = server.subscription("example", "sub-a").await;
        if sub["attention"].is_string() {
            Ok(sub)
        } else {
            Err(sub)
        }
    })
    .await;
    assert_attention_mentions(&sub, "not acknowledged");
    let store = server.store_status("example").await;
    assert_eq!(store["acknowledgements"]["overdue"], 1, "{store}");
    let (_, metrics) = server.get_admin_text("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("storehook_unacknowledged_purchases{")
                && l.contains("example")
                && l.contains("overdue")
                && l.ends_with(" 1")),
        "{metrics}"
    );
    let (_, page) = server.get_admin_text("/dashboard/live").await;
    assert!(
        common::card(&page, "example").contains("still not acknowledged"),
        "{page}"
    );
}

#[tokio::test]
async fn a_pushed_one_time_google_purchase_is_acknowledged_exactly_once() {
    use storehook_stand_ins::google::{fixture_account, fixture_key_file, PlayStandIn, Route};
    const PACKAGE: &str = "com.example.game";
    const TOKEN: &str = "otp-token.AO-J1Ox-e2e";
    let play = PlayStandIn::start(fixture_account(), &[PACKAGE]).await;
    play.set_product_purchase(
        TOKEN,
        "coins_100",
        json!({"kind": "androidpublisher#productPurchase",
               "purchaseTimeMillis": now_ms().to_string(), "purchaseState": 0,
               "consumptionState": 0, "acknowledgementState": 0, "productId": "coins_100",
               "orderId": "GPA.1234-5678-9012-34567", "quantity": 1}),
    );
    let config = format!(
        "[stores.google]\nenabled = true\npackage_names = [\"{PACKAGE}\"]\npush_token = \"p\"\n\
         [stores.google.play_api]\nservice_account_key_file = \"{}\"\nbase_url = \"{}\"\n\
         token_url = \"{}\"\nacknowledge = true\n\n[store_apis]\ncatch_up_interval_hours = 0\n",
        fixture_key_file().display(),
        play.base_url,
        play.token_url
    );
    let mut server = TestServer::start_tuned(&config, |c: &mut storehook_server::Config| {
        c.store_apis.queue_tick = Some(Duration::from_millis(50));
    })
    .await;
    let bought = json!({"version": "1.0", "notificationType": 1, "purchaseToken": TOKEN,
                        "sku": "coins_100"});
    let push = |id: &str| {
        common::play_push(
            PACKAGE,
            id,
            now_ms(),
            "oneTimeProductNotification",
            bought.clone(),
        )
    };
    let headers = [("content-type", "application/json")];
    let path = "/v1/notifications/google?token=p";
    let (status, body) = server.post(path, &headers, push("m-1")).await;
    assert_eq!(status, 200, "{body}");

    let store = store_acknowledgements_reach(&server, "google", "acknowledged", 1).await;
    assert_eq!(store["acknowledgements"]["pending"], 0, "{store}");
    let acks = play.acknowledgements();
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(
        (
            acks[0].route,
            acks[0].product_id.as_str(),
            acks[0].token.as_str(),
            acks[0].status
        ),
        (Route::ProductAcknowledge, "coins_100", TOKEN, 200)
    );
    assert_eq!(
        play.product_purchase(TOKEN).unwrap()["acknowledgementState"],
        1
    );

    // Pub/Sub redelivers it, Google sends it again under another message
    // id, the server restarts: read again, never acknowledged again.
    let reads_before = play.product_gets().len();
    server.post(path, &headers, push("m-1")).await;
    server.post(path, &headers, push("m-2")).await;
    server.restart().await;
    eventually(10, "the second push read back", || async {
        let reads = play.product_gets().len();
        if reads > reads_before {
            Ok(())
        } else {
            Err(reads)
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(play.acknowledgements().len(), 1, "exactly once");
    assert!(
        play.subscription_gets().is_empty(),
        "never subscriptionsv2.get"
    );
    assert!(play.complaints().is_empty(), "{:?}", play.complaints());
    let store = server.store_status("google").await;
    assert_eq!(store["acknowledgements"]["acknowledged"], 1, "{store}");
    assert_eq!(store["acknowledgements"]["pending"], 0, "{store}");
}
