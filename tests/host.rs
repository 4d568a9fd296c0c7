//! End-to-end tests of the host (issue 2) over real HTTP and a real SQLite
//! file, driven through the example plugin (`tests/plugin-example`), which
//! the host discovers through `inventory` alone.

mod common;

use std::time::Duration;

use common::{assert_answer, TestServer, ADMIN_TOKEN};
use serde_json::{json, Value};

const EXAMPLE: &str = "[stores.example]\nenabled = true\nkey = \"k\"\n";

async fn send(server: &TestServer, body: Value) -> (u16, Value) {
    server.send_example("k", &body).await
}

fn renewal(id: &str, sub: &str, at: i64, status: &str) -> Value {
    json!({"id": id, "type": "RENEWAL", "subscription": sub, "at": at, "status": status,
           "expires_at": at + 1000, "auto_renew": true, "product": "monthly"})
}

/// The example store, with `server` added to `[server]` (and so no
/// admin token unless it sets one).
async fn example_server_with(server: &str) -> TestServer {
    TestServer::start_with(|dir| {
        format!(
            "[database]\npath = \"{}\"\n[server]\nlisten = \"127.0.0.1:0\"\n{server}{EXAMPLE}",
            dir.join("db.sqlite").display()
        )
    })
    .await
}

#[tokio::test]
async fn a_plugin_is_discovered_through_inventory_alone() {
    let server = TestServer::start(EXAMPLE).await;
    let example = server.store_status("example").await;
    assert_eq!(example["name"], "Example Store");
    assert_eq!(example["supported"], true);
    assert_eq!(example["enabled"], true);
    // The bundled stores are listed too, disabled unless configured.
    for store in ["amazon", "apple", "google", "stripe"] {
        let s = server.store_status(store).await;
        assert_eq!(s["enabled"], false, "{s}");
    }
}

#[tokio::test]
async fn unknown_and_disabled_stores_answer_404() {
    let server = TestServer::start("").await;
    let (status, body) = server
        .post("/v1/notifications/nosuchstore", &[], "{}")
        .await;
    assert_answer((status, &body), 404, "error", "unknown_store");
    let (status, body) = server.post("/v1/notifications/example", &[], "{}").await;
    assert_answer((status, &body), 404, "error", "store_disabled");
    assert!(
        body["message"].as_str().unwrap().contains("enabled = true"),
        "{body}"
    );
}

#[tokio::test]
async fn amazon_answers_501_and_stores_nothing() {
    let server = TestServer::start("[stores.amazon]\nenabled = true\n").await;
    let (status, body) = server.post("/v1/notifications/amazon", &[], "{}").await;
    assert_eq!(status, 501, "{body}");
    assert_eq!(body["error"], "unsupported_store");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("not supported yet"),
        "{body}"
    );
    let amazon = server.store_status("amazon").await;
    assert_eq!(amazon["supported"], false);
    assert_eq!(amazon["counts"]["accepted"], 0);
    assert_eq!(amazon["last_received"], Value::Null);
}

#[tokio::test]
async fn rejections_are_answered_counted_and_visible() {
    let server = TestServer::start(EXAMPLE).await;
    let body = renewal("n1", "s1", 1, "active").to_string();

    let (status, err) = server
        .post("/v1/notifications/example", &[], body.clone())
        .await;
    assert_answer((status, &err), 401, "error", "missing_key");
    let (status, err) = server.send_example_raw("wrong", body.clone()).await;
    assert_answer((status, &err), 401, "error", "wrong_key");
    assert!(!err["message"].as_str().unwrap().is_empty());

    let (status, err) = server.send_example_raw("k", "not json").await;
    assert_answer((status, &err), 400, "error", "invalid_json");

    let huge = vec![b'x'; 300 * 1024];
    let (status, err) = server.send_example_raw("k", huge).await;
    assert_answer((status, &err), 413, "error", "payload_too_large");

    let s = server.store_status("example").await;
    assert_eq!(s["counts"]["rejected"], 4, "{s}");
    assert_eq!(s["last_rejection_reason"], "payload_too_large");
    assert!(s["last_rejected"].is_string());
    assert_eq!(s["last_received"], Value::Null);
    assert_eq!(s["last_verified"], Value::Null);
}

#[tokio::test]
async fn untracked_is_stored_without_touching_last_received() {
    let server = TestServer::start(EXAMPLE).await;
    let (status, body) = send(&server, renewal("n1", "s1", 10, "active")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["verdict"], "untracked");
    let s = server.store_status("example").await;
    assert_eq!(s["last_received"], Value::Null, "{s}");
    assert!(s["last_verified"].is_string(), "{s}");
    assert_eq!(s["counts"]["accepted"], 1);
    assert_eq!(s["counts"]["untracked"], 1);
    let (status, _) = server.subscription("example", "s1").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn tracked_sets_last_received_and_state() {
    let server = TestServer::start(EXAMPLE).await;
    let (status, body) = server.track("example", "s1", "user-1").await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = server.track("example", "s1", "user-1").await;
    assert_eq!(status, 200, "tracking is idempotent: {body}");

    let (status, body) = send(&server, renewal("n1", "s1", 10, "active")).await;
    assert_answer((status, &body), 200, "verdict", "tracked");
    let s = server.store_status("example").await;
    assert!(s["last_received"].is_string(), "{s}");

    let (status, sub) = server.subscription("example", "s1").await;
    assert_eq!(status, 200, "{sub}");
    assert_eq!(sub["status"], "active");
    assert_eq!(sub["auto_renew"], true);
    assert_eq!(sub["product_id"], "monthly");
    assert_eq!(sub["app_user_id"], "user-1");
    assert_eq!(sub["environment"], "production");
    assert_eq!(sub["last_event"]["type"], "RENEWAL");
    assert_eq!(sub["expires_at"], "1970-01-01T00:00:01.010Z");
    assert_eq!(sub["notifications"].as_array().unwrap().len(), 1);

    let (status, user) = server.get_admin("/v1/subscribers/user-1").await;
    assert_eq!(status, 200);
    assert_eq!(user["subscriptions"][0]["subscription_id"], "s1");
}

#[tokio::test]
async fn a_store_test_notification_sets_last_received() {
    let server = TestServer::start(EXAMPLE).await;
    let (status, body) = send(&server, json!({"id": "t1", "type": "TEST", "at": 1})).await;
    assert_eq!(status, 200, "{body}");
    assert!(server.store_status("example").await["last_received"].is_string());
}

#[tokio::test]
async fn tracking_later_applies_earlier_notifications_in_store_order() {
    let server = TestServer::start(EXAMPLE).await;
    // Arrive out of order, before tracking: the newer one first.
    send(&server, renewal("n2", "s1", 20, "active")).await;
    send(
        &server,
        json!({"id": "n1", "type": "BILLING_ISSUE", "subscription": "s1", "at": 10,
                         "status": "billing_retry", "auto_renew": false, "user": "hinted"}),
    )
    .await;
    assert_eq!(
        server.store_status("example").await["last_received"],
        Value::Null
    );

    let (status, sub) = server.track("example", "s1", "user-9").await;
    assert_eq!(status, 201, "{sub}");
    assert_eq!(
        sub["status"], "active",
        "the newest notification wins: {sub}"
    );
    assert_eq!(sub["auto_renew"], true);
    assert_eq!(sub["last_event"]["type"], "RENEWAL");
    let (_, sub) = server.subscription("example", "s1").await;
    let kinds = common::field_of_each(&sub["notifications"], "verdict");
    assert_eq!(kinds, vec![json!("tracked"), json!("tracked")]);
}

#[tokio::test]
async fn an_older_notification_does_not_move_state_backwards() {
    let server = TestServer::start(EXAMPLE).await;
    server.track("example", "s1", "u").await;
    send(&server, renewal("n2", "s1", 20, "active")).await;
    send(&server, json!({"id": "n1", "type": "EXPIRATION", "subscription": "s1", "at": 10, "status": "expired"})).await;
    let (_, sub) = server.subscription("example", "s1").await;
    assert_eq!(sub["status"], "active", "{sub}");
    assert_eq!(sub["last_event"]["type"], "RENEWAL");
    // A newer one still applies.
    send(&server, json!({"id": "n3", "type": "EXPIRATION", "subscription": "s1", "at": 30, "status": "expired"})).await;
    let (_, sub) = server.subscription("example", "s1").await;
    assert_eq!(sub["status"], "expired", "{sub}");
}

#[tokio::test]
async fn a_duplicate_is_acknowledged_and_applied_once() {
    let server = TestServer::start(EXAMPLE).await;
    server.track("example", "s1", "u").await;
    let n = renewal("n1", "s1", 10, "active");
    let (s1, b1) = send(&server, n.clone()).await;
    let (s2, b2) = send(&server, n.clone()).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(b1["verdict"], "tracked");
    assert_eq!(b2["verdict"], "duplicate", "{b2}");
    let s = server.store_status("example").await;
    assert_eq!(s["counts"]["accepted"], 1);
    assert_eq!(s["counts"]["duplicates"], 1);
    let (_, sub) = server.subscription("example", "s1").await;
    assert_eq!(sub["notifications"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn concurrent_duplicates_are_stored_once() {
    let server = TestServer::start(EXAMPLE).await;
    server.track("example", "s1", "u").await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let body = renewal(
            &format!("n{}", i % 10),
            "s1",
            10 + (i % 10) as i64,
            "active",
        )
        .to_string();
        let client = server.client.clone();
        let url = format!("{}/v1/notifications/example", server.base);
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .header("x-example-key", "k")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let s = server.store_status("example").await;
    assert_eq!(s["counts"]["accepted"], 10, "{s}");
    assert_eq!(s["counts"]["duplicates"], 30, "{s}");
}

#[tokio::test]
async fn state_survives_a_restart() {
    let mut server = TestServer::start(EXAMPLE).await;
    server.track("example", "s1", "u").await;
    send(&server, renewal("n1", "s1", 10, "active")).await;
    let before = server.store_status("example").await;
    server.restart().await;
    let after = server.store_status("example").await;
    assert_eq!(before, after);
    let (status, sub) = server.subscription("example", "s1").await;
    assert_answer((status, &sub), 200, "status", "active");
    // And the de-duplication memory survived too.
    let (_, again) = send(&server, renewal("n1", "s1", 10, "active")).await;
    assert_eq!(again["verdict"], "duplicate");
}

#[tokio::test]
async fn admin_routes_require_the_token() {
    let server = TestServer::start(EXAMPLE).await;
    let url = format!("{}/v1/subscriptions/example/s1", server.base);
    let none = server.client.get(&url).send().await.unwrap();
    assert_eq!(none.status().as_u16(), 401);
    let wrong = server
        .client
        .get(&url)
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let (status, body) = common::into_json(
        server
            .client
            .post(format!("{}/v1/subscriptions", server.base))
            .json(&json!({"store": "example", "subscription_id": "s1"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_answer((status, &body), 401, "error", "unauthorized");
    let right = server
        .client
        .get(&url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(right.status().as_u16(), 404, "authorized, but not tracked");
}

/// Without a configured token the data folder's generated one is the
/// admin token (issue 13: a first run lets its operator in).
#[tokio::test]
async fn without_a_configured_token_admin_routes_take_the_generated_one() {
    let server = example_server_with("").await;
    let (status, body) = server.get_admin("/v1/subscribers/u").await;
    assert_eq!(
        status, 401,
        "the test token is not the generated one: {body}"
    );
    let token = std::fs::read_to_string(server.dir.path().join("admin-token")).unwrap();
    let r = server
        .client
        .get(format!("{}/v1/subscribers/u", server.base))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        200,
        "authorized (no subscriptions yet)"
    );
}

#[tokio::test]
async fn bad_management_requests_get_clear_errors() {
    let server = TestServer::start(EXAMPLE).await;
    let post = |body: String| {
        server
            .client
            .post(format!("{}/v1/subscriptions", server.base))
            .bearer_auth(ADMIN_TOKEN)
            .body(body)
            .send()
    };
    for (request, status, error) in [
        ("nope".to_owned(), 400, "invalid_json"),
        (
            json!({"store": "nosuch", "subscription_id": "x"}).to_string(),
            404,
            "unknown_store",
        ),
        (
            json!({"store": "amazon", "subscription_id": "x"}).to_string(),
            501,
            "unsupported_store",
        ),
    ] {
        let (got, body) = common::into_json(post(request).await.unwrap()).await;
        assert_answer((got, &body), status, "error", error);
    }
    let (status, body) = server.get("/v1/nothing-here").await;
    assert_answer((status, &body), 404, "error", "not_found");
}

#[tokio::test]
async fn an_authenticated_but_unusable_notification_is_acknowledged_as_rejected() {
    let server = TestServer::start(EXAMPLE).await;
    let garbage = json!({"id": "g1", "type": "RENEWAL", "at": 1, "garbage": true});
    let (status, body) = send(&server, garbage.clone()).await;
    assert_answer((status, &body), 200, "status", "rejected");
    let (status, _) = send(&server, garbage).await;
    assert_eq!(status, 200);
    let s = server.store_status("example").await;
    assert_eq!(s["counts"]["rejected"], 1, "{s}");
    assert_eq!(s["counts"]["duplicates"], 1, "{s}");
    assert_eq!(s["last_rejection_reason"], "malformed_data");
}

#[tokio::test]
async fn auto_tracking_starts_with_the_stores_user_id() {
    let server = TestServer::start(&format!("[tracking]\nauto_track = true\n{EXAMPLE}")).await;
    let (status, body) = send(
        &server,
        json!({"id": "p1", "type": "INITIAL_PURCHASE", "subscription": "s7", "at": 5, "status": "active", "user": "app-user-7"}),
    )
    .await;
    assert_answer((status, &body), 200, "verdict", "tracked");
    let (_, user) = server.get_admin("/v1/subscribers/app-user-7").await;
    assert_eq!(user["subscriptions"][0]["subscription_id"], "s7", "{user}");
    // A renewal alone does not start tracking.
    let (_, body) = send(&server, renewal("r1", "s8", 5, "active")).await;
    assert_eq!(body["verdict"], "untracked");
}

#[tokio::test]
async fn a_continued_subscription_carries_tracking_and_history_over() {
    let server = TestServer::start(EXAMPLE).await;
    server.track("example", "old-token", "user-5").await;
    send(&server, renewal("n1", "old-token", 10, "active")).await;
    let (_, body) = send(
        &server,
        json!({"id": "n2", "type": "PRODUCT_CHANGE", "subscription": "new-token", "continues": "old-token",
               "at": 20, "status": "active", "product": "yearly"}),
    )
    .await;
    assert_eq!(body["verdict"], "tracked", "{body}");
    let (status, sub) = server.subscription("example", "new-token").await;
    assert_eq!(status, 200, "{sub}");
    assert_eq!(sub["app_user_id"], "user-5");
    assert_eq!(sub["continues_subscription_id"], "old-token");
    assert_eq!(sub["product_id"], "yearly");
    assert_eq!(
        sub["notifications"].as_array().unwrap().len(),
        2,
        "history carries over: {sub}"
    );
}

#[tokio::test]
async fn a_failed_state_fetch_is_retried_in_the_background() {
    let server = TestServer::start(
        "[stores.example]\nenabled = true\nkey = \"k\"\nfetch_failures = 1\nfetched_status = \"paused\"\n",
    )
    .await;
    server.track("example", "s1", "u").await;
    let (status, _) = send(
        &server,
        json!({"id": "n1", "type": "RENEWAL", "subscription": "s1", "at": 10, "status": "active", "fetch": true}),
    )
    .await;
    assert_eq!(status, 200, "acknowledged before the fetch");
    common::eventually(10, "the fetched state", || async {
        let (_, sub) = server.subscription("example", "s1").await;
        if sub["status"] == "paused" && sub["state_pending"] == false {
            Ok(())
        } else {
            Err(sub)
        }
    })
    .await;
}

#[tokio::test]
async fn a_locked_database_answers_503_and_recovers() {
    if common::sqlite_only("an SQLite file locked by another process") {
        return;
    }
    let server = TestServer::start(EXAMPLE).await;
    let locker = rusqlite::Connection::open(server.db_path()).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let (status, body) = send(&server, renewal("n1", "s1", 10, "active")).await;
    assert_answer((status, &body), 503, "error", "storage_unavailable");
    locker.execute_batch("COMMIT").unwrap();
    drop(locker);
    // The store retries; now it is stored, once.
    let (status, body) = send(&server, renewal("n1", "s1", 10, "active")).await;
    assert_answer((status, &body), 200, "verdict", "untracked");
    let s = server.store_status("example").await;
    assert_eq!(s["counts"]["accepted"], 1, "{s}");
}

#[tokio::test]
async fn healthz_answers_when_the_database_does() {
    let server = TestServer::start("").await;
    let (status, body) = server.get("/healthz").await;
    assert_answer((status, &body), 200, "status", "ok");
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_cut_off_while_others_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = example_server_with("header_timeout_seconds = 1\n").await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"POST /v1/notifications/example HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Others are served meanwhile.
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, 200);
    // The slow client is disconnected after the header timeout.
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf)).await;
    match read {
        Ok(Ok(n)) => assert!(
            n == 0 || String::from_utf8_lossy(&buf[..n]).contains("408"),
            "unexpected answer: {}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Ok(Err(_)) => {}
        Err(_) => panic!("the server kept a connection with unfinished headers open"),
    }
}
