//! Outgoing webhooks (issue 6) end to end: real receivers on loopback, the
//! real server with a real SQLite file, notifications from the example plugin.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::receiver::{signature_valid, Received, Receiver};
use common::TestServer;
use serde_json::{json, Value};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const EXAMPLE: &str = "[stores.example]\nenabled = true\nkey = \"k\"\n";

fn delivery(schedule: &str) -> String {
    format!("[delivery]\nallow_loopback = true\nretry_schedule_seconds = {schedule}\n")
}

fn webhook(name: &str, url: &str, extra: &str) -> String {
    format!("[[webhooks]]\nname = \"{name}\"\nurl = \"{url}\"\nsecret = \"{SECRET}\"\n{extra}\n")
}

/// The example store, and one webhook, "main", at `url`.
async fn server_with_main_webhook(url: &str, retry_schedule: &str, extra: &str) -> TestServer {
    TestServer::start(&format!(
        "{EXAMPLE}{}{}",
        delivery(retry_schedule),
        webhook("main", url, extra)
    ))
    .await
}

/// The store's notification id an event delivery carries.
fn notification_id(r: &Received) -> String {
    r.json()["event"]["store_notification_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn send(server: &TestServer, body: Value) -> (u16, Value) {
    server.send_example("k", &body).await
}

fn note(id: &str, kind: &str, sub: &str, at: i64) -> Value {
    json!({"id": id, "type": kind, "subscription": sub, "at": at, "status": "active",
           "expires_at": at + 1000, "auto_renew": true, "product": "monthly"})
}

#[tokio::test]
async fn every_event_is_delivered_signed_with_the_event_body() {
    let rx = Receiver::start().await;
    let server = server_with_main_webhook(
        &rx.url("/hook"),
        "[0.1]",
        "authorization = \"Bearer op-token\"",
    )
    .await;
    server.track("example", "s1", "user-1").await;
    for (i, kind) in ["INITIAL_PURCHASE", "RENEWAL", "CANCELLATION"]
        .iter()
        .enumerate()
    {
        let (status, _) = send(&server, note(&format!("n{i}"), kind, "s1", 10 + i as i64)).await;
        assert_eq!(status, 200);
    }
    let got = rx.wait_for(10, "three events", |l| l.len() >= 3).await;
    assert_eq!(got.len(), 3, "each event once");
    for (i, r) in got.iter().enumerate() {
        assert!(
            signature_valid(SECRET, r),
            "bad signature on {:?}",
            r.headers
        );
        assert_eq!(r.headers["authorization"], "Bearer op-token");
        assert_eq!(r.headers["content-type"], "application/json");
        let body = r.json();
        assert_eq!(body["api_version"], "1.0");
        let e = &body["event"];
        assert_eq!(r.headers["webhook-id"], e["id"].as_str().unwrap());
        assert_eq!(e["store"], "EXAMPLE");
        assert_eq!(e["environment"], "PRODUCTION");
        assert_eq!(e["app_user_id"], "user-1");
        assert_eq!(e["subscription_id"], "s1");
        assert_eq!(e["product_id"], "monthly");
        assert_eq!(e["store_notification_id"], format!("n{i}"));
        assert_eq!(e["sequence"], i as i64 + 1, "per-subscription sequence");
        assert_eq!(e["event_timestamp_ms"], 10 + i as i64);
    }
    let kinds: Vec<_> = got
        .iter()
        .map(|r| r.json()["event"]["type"].clone())
        .collect();
    assert_eq!(
        kinds,
        vec![
            json!("INITIAL_PURCHASE"),
            json!("RENEWAL"),
            json!("CANCELLATION")
        ]
    );

    // The event log shows the same events.
    let (status, log) = server.get_admin("/v1/events?store=example").await;
    assert_eq!(status, 200, "{log}");
    assert_eq!(log["events"].as_array().unwrap().len(), 3);
    let (_, page) = server.get_admin("/v1/events?limit=2").await;
    let cursor = page["next_cursor"]
        .as_i64()
        .expect("a cursor when the page is full");
    let (_, rest) = server
        .get_admin(&format!("/v1/events?after={cursor}"))
        .await;
    assert_eq!(rest["events"].as_array().unwrap().len(), 1);
    assert_eq!(rest["events"][0]["type"], "CANCELLATION");
    let (_, by_user) = server
        .get_admin("/v1/events?app_user_id=user-1&type=renewal")
        .await;
    assert_eq!(by_user["events"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_receiver_that_fails_twice_gets_the_event_on_the_third_attempt() {
    let rx = Receiver::start().await;
    rx.answer_with(|_, n| if n < 2 { 500 } else { 200 });
    let server = server_with_main_webhook(&rx.url("/"), "[0.1, 0.1, 0.1]", "").await;
    server.track("example", "s1", "u").await;
    send(&server, note("n1", "RENEWAL", "s1", 10)).await;
    let log = rx
        .wait_for(10, "a delivered event", |l| {
            l.iter().any(|r| r.answered == 200)
        })
        .await;
    assert_eq!(log.len(), 3);
    let ids: Vec<_> = log
        .iter()
        .map(|r| r.headers["webhook-id"].clone())
        .collect();
    assert!(
        ids.iter().all(|i| i == &ids[0]),
        "the event id is stable across retries"
    );
    // The API shows the history.
    let delivered = server.wait_for_deliveries("main", "delivered").await;
    let d = &delivered["deliveries"][0];
    assert_eq!(d["attempts"], 3, "{delivered}");
    let statuses = common::field_of_each(&d["history"], "status");
    assert_eq!(statuses, vec![json!(500), json!(500), json!(200)]);
    let (_, hooks) = server.get_admin("/v1/webhooks").await;
    assert_eq!(hooks["webhooks"][0]["delivered"], 1, "{hooks}");
    assert_eq!(hooks["webhooks"][0]["last_failure"]["status"], 500);
    assert_eq!(
        hooks["webhooks"][0]["last_failure"]["body_excerpt"],
        "answered 500"
    );
}

#[tokio::test]
async fn a_failing_subscription_holds_back_only_its_own_events() {
    let rx = Receiver::start().await;
    let block_a = Arc::new(AtomicBool::new(true));
    let flag = block_a.clone();
    rx.answer_with(move |r, _| {
        if flag.load(Ordering::SeqCst) && r.json()["event"]["subscription_id"] == "A" {
            503
        } else {
            200
        }
    });
    let server = server_with_main_webhook(&rx.url("/"), "[0.05]", "max_attempts = 1000").await;
    server.track("example", "A", "ua").await;
    server.track("example", "B", "ub").await;
    send(&server, note("a1", "INITIAL_PURCHASE", "A", 1)).await;
    send(&server, note("a2", "RENEWAL", "A", 2)).await;
    send(&server, note("b1", "INITIAL_PURCHASE", "B", 1)).await;
    send(&server, note("b2", "RENEWAL", "B", 2)).await;
    let log = rx
        .wait_for(10, "B's events and retries of A", |l| {
            l.iter().filter(|r| r.answered == 200).count() == 2
                && l.iter().filter(|r| r.answered == 503).count() >= 3
        })
        .await;
    assert!(
        log.iter()
            .filter(|r| r.answered == 503)
            .all(|r| notification_id(r) == "a1"),
        "a2 must wait behind a1"
    );
    block_a.store(false, Ordering::SeqCst);
    let log = rx
        .wait_for(10, "A's events", |l| {
            l.iter().filter(|r| r.answered == 200).count() == 4
        })
        .await;
    let delivered: Vec<_> = log
        .iter()
        .filter(|r| r.answered == 200)
        .map(notification_id)
        .collect();
    // Each subscription's notifications ("a…" and "b…") in their order.
    let order_of = |subscription: char| -> Vec<&str> {
        delivered
            .iter()
            .filter(|n| n.starts_with(subscription))
            .map(String::as_str)
            .collect()
    };
    assert_eq!(order_of('a'), vec!["a1", "a2"]);
    assert_eq!(order_of('b'), vec!["b1", "b2"]);
}

#[tokio::test]
async fn dead_deliveries_are_listed_and_can_be_retried() {
    let rx = Receiver::start().await;
    rx.answer_with(|_, _| 500);
    let server = server_with_main_webhook(&rx.url("/"), "[0.05]", "max_attempts = 2").await;
    server.track("example", "s1", "u").await;
    send(&server, note("n1", "RENEWAL", "s1", 10)).await;
    let dead = server.wait_for_deliveries("main", "dead").await;
    let id = dead["deliveries"][0]["id"]
        .as_i64()
        .expect("a dead delivery");
    assert_eq!(dead["deliveries"][0]["attempts"], 2);
    assert_eq!(rx.received().len(), 2, "no attempt after max_attempts");
    let (_, hooks) = server.get_admin("/v1/webhooks").await;
    assert_eq!(hooks["webhooks"][0]["dead"], 1);

    rx.answer_with(|_, _| 200);
    let url = format!("{}/v1/webhooks/main/deliveries/{id}/retry", server.base);
    assert_eq!(server.post_admin_status(&url).await, 202);
    rx.wait_for(10, "the retried delivery", |l| {
        l.iter().any(|r| r.answered == 200)
    })
    .await;
    let missing = format!("{}/v1/webhooks/main/deliveries/999999/retry", server.base);
    assert_eq!(server.post_admin_status(&missing).await, 404);
    let unauth = server.client.post(&url).send().await.unwrap();
    assert_eq!(unauth.status().as_u16(), 401);
}

#[tokio::test]
async fn a_test_event_can_be_sent_on_demand() {
    let rx = Receiver::start().await;
    let server = server_with_main_webhook(&rx.url("/"), "[0.1]", "").await;
    let url = format!("{}/v1/webhooks/main/test", server.base);
    assert_eq!(server.post_admin_status(&url).await, 202);
    let log = rx.wait_for(10, "the test event", |l| !l.is_empty()).await;
    assert_eq!(log[0].json()["event"]["type"], "TEST");
    assert!(signature_valid(SECRET, &log[0]));
    let other = format!("{}/v1/webhooks/nope/test", server.base);
    assert_eq!(server.post_admin_status(&other).await, 404);
}

#[tokio::test]
async fn forwards_pass_the_raw_body_and_store_headers_byte_for_byte() {
    let rx = Receiver::start().await;
    // Only allow-listed headers are kept and forwarded: the example store's
    // key is a credential and must not reach a third party (issue 12).
    let server = TestServer::start(&format!(
        "{EXAMPLE}{}forward_headers = [\"Content-Type\", \"x-store-extra\"]\n\
         [[forward]]\nname = \"legacy\"\nurl = \"{}\"\nstores = [\"example\"]\n",
        delivery("[0.1]"),
        rx.url("/raw")
    ))
    .await;
    // Odd spacing and key order: a re-serialized body would differ.
    let raw =
        "{ \"type\":\"RENEWAL\" ,\"id\":\"n1\",  \"subscription\":\"untracked-sub\",\"at\":5 }\n";
    let (status, _) = server
        .post(
            "/v1/notifications/example",
            &[("x-example-key", "k"), ("x-store-extra", "kept")],
            raw,
        )
        .await;
    assert_eq!(status, 200);
    let log = rx.wait_for(10, "the forward", |l| !l.is_empty()).await;
    assert_eq!(
        log[0].body,
        raw.as_bytes(),
        "untracked notifications are forwarded too, byte for byte"
    );
    assert_eq!(log[0].path, "/raw");
    assert_eq!(log[0].headers["x-store-extra"], "kept");
    assert!(
        !log[0].headers.contains_key("x-example-key"),
        "a credential header was forwarded: {:?}",
        log[0].headers
    );
    // A duplicate is not forwarded twice.
    server.send_example_raw("k", raw).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(rx.received().len(), 1);
}

#[tokio::test]
async fn filters_route_by_store_environment_and_type() {
    let renewals = Receiver::start().await;
    let sandbox = Receiver::start().await;
    let server = TestServer::start(&format!(
        "{EXAMPLE}{}{}{}",
        delivery("[0.1]"),
        webhook(
            "renewals",
            &renewals.url("/"),
            "stores = [\"example\"]\nevent_types = [\"RENEWAL\"]"
        ),
        webhook(
            "sandbox",
            &sandbox.url("/"),
            "environments = [\"sandbox\"]\napps = [\"com.example.app\"]"
        ),
    ))
    .await;
    server.track("example", "s1", "u").await;
    send(&server, note("p1", "RENEWAL", "s1", 1)).await;
    let mut sb = note("p2", "EXPIRATION", "s1", 2);
    sb["sandbox"] = json!(true);
    send(&server, sb).await;
    let mut sb_renewal = note("p3", "RENEWAL", "s1", 3);
    sb_renewal["sandbox"] = json!(true);
    send(&server, sb_renewal).await;
    let r = renewals.wait_for(10, "renewals", |l| l.len() >= 2).await;
    let s = sandbox
        .wait_for(10, "sandbox events", |l| l.len() >= 2)
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let ids = |l: &[Received]| -> Vec<String> {
        let mut v: Vec<String> = l.iter().map(notification_id).collect();
        v.sort();
        v
    };
    assert_eq!(ids(&renewals.received()), vec!["p1", "p3"], "{r:?}");
    assert_eq!(ids(&sandbox.received()), vec!["p2", "p3"], "{s:?}");
}

#[tokio::test]
async fn events_of_notifications_received_before_tracking_go_out_when_tracking_starts() {
    let rx = Receiver::start().await;
    let server = server_with_main_webhook(&rx.url("/"), "[0.1]", "").await;
    send(&server, note("n2", "RENEWAL", "s1", 20)).await;
    send(&server, note("n1", "INITIAL_PURCHASE", "s1", 10)).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(rx.received().is_empty(), "untracked: no events");
    server.track("example", "s1", "late-user").await;
    let log = rx.wait_for(10, "two events", |l| l.len() >= 2).await;
    let order: Vec<_> = log
        .iter()
        .map(|r| r.json()["event"]["store_notification_id"].clone())
        .collect();
    assert_eq!(order, vec![json!("n1"), json!("n2")], "in store order");
    assert_eq!(log[0].json()["event"]["app_user_id"], "late-user");
}

#[tokio::test]
async fn endpoints_pointing_at_internal_addresses_are_refused_at_start() {
    for (url, loopback) in [
        ("http://169.254.169.254/latest/meta-data", true),
        ("http://[fe80::1]/x", true),
        ("http://127.0.0.1:9/x", false),
        ("http://localhost:9/x", false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[database]\npath = \"{}\"\n[delivery]\nallow_loopback = {loopback}\n{}",
            dir.path().join("db").display(),
            webhook("x", url, "")
        );
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        let config = storehook_server::Config::load(&path).unwrap();
        common::link_plugins();
        let err = storehook_server::prepare(&config, &|_| None)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("webhooks[0]"), "{url}: {err}");
    }
}
