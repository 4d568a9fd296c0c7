//! End-to-end tests of the App Store adapter over HTTP, against the real
//! server and a temporary SQLite file (`tests/common`), with real
//! Apple-signed notifications.

mod common;

use common::{assert_answer, assert_attention_mentions, TestServer};
use serde_json::{json, Value};

const PATH: &str = "/v1/notifications/apple";
const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/apple");
/// The Session Pro sandbox subscription of real-3 … real-11.
const SUB: &str = "2000001024993299";

const LOKI: &str = r#"
[stores.apple]
enabled = true
apps = [{ bundle_id = "com.loki-project.loki-messenger", app_apple_id = 1470168868 }]
"#;

fn real(n: u32) -> Vec<u8> {
    std::fs::read(format!("{CORPUS}/real-{n}.json")).expect("corpus file")
}

async fn post(server: &TestServer, body: Vec<u8>) -> (u16, Value) {
    server
        .post(PATH, &[("content-type", "application/json")], body)
        .await
}

/// real-4 → 5 → 9 → 6/7/8 → 3 → 11 → 10, as Apple sent them: the tracked
/// subscription ends in the state the last notification states.
#[tokio::test]
async fn the_real_sequence_drives_a_tracked_subscription() {
    let server = TestServer::start(LOKI).await;
    let (status, body) = server.track("apple", SUB, "user-7").await;
    assert_eq!(status, 201, "{body}");

    for n in [4, 5, 9, 6, 7, 8, 3, 11, 10] {
        let (status, body) = post(&server, real(n)).await;
        assert_eq!(
            (status, body["verdict"].as_str()),
            (200, Some("tracked")),
            "real-{n}: {body}"
        );
    }

    let (status, sub) = server.subscription("apple", SUB).await;
    assert_eq!(status, 200, "{sub}");
    assert_eq!(sub["status"], "active", "{sub}");
    assert_eq!(sub["auto_renew"], true, "{sub}");
    assert_eq!(
        sub["product_id"], "com.getsession.org.pro_sub_3_months",
        "{sub}"
    );
    assert_eq!(sub["expires_at"], "2025-10-16T05:25:14.000Z", "{sub}");
    assert_eq!(sub["environment"], "sandbox", "{sub}");
    assert_eq!(sub["last_event"]["type"], "REFUND", "{sub}");
    let notifications = sub["notifications"].as_array().expect("notifications");
    assert_eq!(notifications.len(), 9, "{sub}");
    let consumption = notifications
        .iter()
        .find(|n| n["raw_type"] == "CONSUMPTION_REQUEST")
        .expect("the consumption request is listed");
    assert_attention_mentions(consumption, "12 hours");

    let store = server.store_status("apple").await;
    assert_eq!(store["counts"]["accepted"], 9, "{store}");
}

/// An older notification arriving last does not move the state back.
#[tokio::test]
async fn an_older_notification_does_not_undo_a_newer_one() {
    let server = TestServer::start(LOKI).await;
    server.track("apple", SUB, "user-7").await;
    // real-9 (EXPIRED, 10-02 07:10) before real-5 (auto-renew off, 10-02 07:07).
    for n in [9, 5] {
        let (status, body) = post(&server, real(n)).await;
        assert_eq!(status, 200, "real-{n}: {body}");
    }
    let (_, sub) = server.subscription("apple", SUB).await;
    assert_eq!(sub["status"], "expired", "{sub}");
    assert_eq!(sub["last_event"]["type"], "EXPIRATION", "{sub}");
}

#[tokio::test]
async fn a_retried_notification_is_a_duplicate() {
    let server = TestServer::start(LOKI).await;
    let (status, first) = post(&server, real(4)).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        first["notification_id"],
        "1a7cdc3d-9360-49c3-ae37-0423e4c6e7c7"
    );
    let (status, again) = post(&server, real(4)).await;
    assert_answer((status, &again), 200, "verdict", "duplicate");
}

#[tokio::test]
async fn refusals_answer_with_apples_status_names() {
    let server = TestServer::start(LOKI).await;
    let v1 = json!({"notification_type": "DID_RENEW", "unified_receipt": {"status": 0}});
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        // Genuine, but without signedDate: its leaf expired in 2023.
        (real(13), 401, "VERIFICATION_FAILURE"),
        // Another app.
        (real(2), 401, "INVALID_APP_IDENTIFIER"),
        (b"not json".to_vec(), 400, "malformed_body"),
        (b"{}".to_vec(), 400, "missing_signed_payload"),
        (v1.to_string().into_bytes(), 400, "apple_v1_notification"),
        (
            json!({"signedPayload": "a.b.c"}).to_string().into_bytes(),
            401,
            "VERIFICATION_FAILURE",
        ),
    ];
    for (i, (body, status, code)) in cases.into_iter().enumerate() {
        let (got, err) = post(&server, body).await;
        assert_eq!(
            (got, err["error"].as_str()),
            (status, Some(code)),
            "case {i}: {err}"
        );
        let s = server.store_status("apple").await;
        assert_eq!(s["last_rejection_reason"], code, "case {i}: {s}");
    }
}

/// `root_certificates` replaces the built-in Apple root: Apple's own test
/// CA accepts Apple's test notification, and real notifications are then
/// refused.
#[tokio::test]
async fn configured_roots_replace_apples() {
    let config = format!(
        "[stores.apple]\nenabled = true\napps = [{{ bundle_id = \"com.example\" }}]\nenvironments = [\"Sandbox\"]\nroot_certificates = [\"{CORPUS}/official-vectors/certs/testCA.der\"]\n"
    );
    let server = TestServer::start(&config).await;
    let jws = std::fs::read_to_string(format!(
        "{CORPUS}/official-vectors/mock_signed_data/testNotification"
    ))
    .expect("vector");
    let (status, body) = post(
        &server,
        json!({"signedPayload": jws.trim()})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(&server, real(1)).await;
    assert_answer((status, &body), 401, "error", "VERIFICATION_FAILURE");
}
