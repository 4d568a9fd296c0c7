//! End-to-end tests of the Stripe adapter over HTTP, against the real server
//! and a temporary SQLite file (`tests/common`).

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{assert_answer, BinaryServer, TestServer, ADMIN_TOKEN};
use serde_json::{json, Value};
use storehook_stripe::signature_header;

const PATH: &str = "/v1/notifications/stripe";
const SECRET: &str = "whsec_e2e_current";
const OLD_SECRET: &str = "whsec_e2e_previous";
const SUB: &str = "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw";
const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/stripe");

fn stripe_config(extra: &str) -> String {
    format!("[stores.stripe]\nenabled = true\nsigning_secrets = [\"{SECRET}\"]\n{extra}")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn fixture(name: &str) -> Value {
    let text =
        std::fs::read_to_string(format!("{CORPUS}/events_openapi/{name}.json")).expect("fixture");
    serde_json::from_str(&text).expect("fixture JSON")
}

/// Posts `body` signed with `secrets` at `t` (one `v1` per secret).
async fn post_signed(server: &TestServer, body: &[u8], secrets: &[&str], t: i64) -> (u16, Value) {
    let header = signature_header(secrets.iter().copied(), t, body);
    server
        .post(
            PATH,
            &[("Stripe-Signature", header.as_str())],
            body.to_vec(),
        )
        .await
}

async fn send(server: &TestServer, event: &Value) -> (u16, Value) {
    post_signed(server, event.to_string().as_bytes(), &[SECRET], now()).await
}

/// A `customer.subscription.updated` for `SUB`, created at `created`.
fn update_event(id: &str, created: i64, cancel_at_period_end: bool) -> Value {
    let mut event = fixture("customer.subscription.updated");
    event["id"] = json!(id);
    event["created"] = json!(created);
    event["data"]["object"]["cancel_at_period_end"] = json!(cancel_at_period_end);
    if !cancel_at_period_end {
        event["data"]["object"]["cancel_at"] = Value::Null;
    }
    event["data"]["previous_attributes"] = json!({"cancel_at_period_end": !cancel_at_period_end});
    event
}

#[tokio::test]
async fn a_validly_signed_event_is_stored_and_applied() {
    let server = TestServer::start(&stripe_config("")).await;
    assert_eq!(server.store_status("stripe").await["enabled"], true);
    let (status, body) = server.track("stripe", SUB, "user-42").await;
    assert_eq!(status, 201, "{body}");

    let event = fixture("customer.subscription.updated");
    let (status, body) = send(&server, &event).await;
    assert_answer((status, &body), 200, "verdict", "tracked");
    assert_eq!(body["notification_id"], "evt_1Pgc76B7WZ01zgkWwyRHS102");

    let (status, sub) = server.subscription("stripe", SUB).await;
    assert_eq!(status, 200, "{sub}");
    assert_eq!(sub["status"], "active", "{sub}");
    assert_eq!(sub["auto_renew"], false, "scheduled cancellation");
    assert_eq!(sub["product_id"], "price_1PgafmB7WZ01zgkW6dKueIc5");
    assert_eq!(sub["environment"], "sandbox");
    assert_eq!(sub["expires_at"], "2026-02-01T00:00:00.000Z");
    assert_eq!(sub["last_event"]["type"], "CANCELLATION");
    assert_eq!(sub["notifications"].as_array().map(Vec::len), Some(1));

    let s = server.store_status("stripe").await;
    assert_eq!(s["counts"]["accepted"], 1, "{s}");
    assert!(s["last_received"].is_string(), "{s}");
}

#[tokio::test]
async fn every_rejection_answers_with_its_code_and_is_recorded() {
    let server = TestServer::start(&stripe_config("livemode = \"test\"")).await;
    let body = fixture("invoice.paid").to_string().into_bytes();
    let t = now();
    let good = storehook_stripe::verify::compute_v1_signature(SECRET.as_bytes(), t, &body);
    let mut live = fixture("invoice.paid");
    live["livemode"] = json!(true);
    let live = live.to_string().into_bytes();

    let cases: Vec<(Option<String>, Vec<u8>, u16, &str)> = vec![
        (None, body.clone(), 401, "missing_header"),
        (
            Some("garbage".into()),
            body.clone(),
            401,
            "malformed_header",
        ),
        (
            Some(format!("v1={good}")),
            body.clone(),
            401,
            "malformed_header",
        ),
        (
            Some(format!("t={t},v0={good}")),
            body.clone(),
            401,
            "no_v1_signature",
        ),
        (
            Some(signature_header(["whsec_someone_else"], t, &body)),
            body.clone(),
            401,
            "no_matching_signature",
        ),
        (
            Some(signature_header([SECRET], t - 301, &body)),
            body.clone(),
            401,
            "timestamp_outside_tolerance",
        ),
        (
            Some(signature_header([SECRET], t, &live)),
            live.clone(),
            401,
            "livemode_not_accepted",
        ),
        (
            Some(signature_header([SECRET], t, b"not json")),
            b"not json".to_vec(),
            400,
            "invalid_json",
        ),
        (
            Some(signature_header([SECRET], t, b"[1]")),
            b"[1]".to_vec(),
            400,
            "malformed_event",
        ),
    ];
    for (i, (header, body, status, code)) in cases.into_iter().enumerate() {
        let headers: Vec<(&str, &str)> = header
            .as_deref()
            .map(|h| vec![("Stripe-Signature", h)])
            .unwrap_or_default();
        let (got, err) = server.post(PATH, &headers, body).await;
        assert_eq!(
            (got, err["error"].as_str()),
            (status, Some(code)),
            "case {i}: {err}"
        );
        assert!(
            !err["message"].as_str().unwrap_or_default().is_empty(),
            "{err}"
        );
        assert!(
            !err.to_string().contains(SECRET),
            "case {i}: the secret leaked: {err}"
        );
        let s = server.store_status("stripe").await;
        assert_eq!(s["last_rejection_reason"], code, "case {i}: {s}");
    }
    let s = server.store_status("stripe").await;
    assert_eq!(s["counts"]["rejected"], 9, "{s}");
    assert_eq!(s["counts"]["accepted"], 0, "{s}");
    assert_eq!(s["last_verified"], Value::Null, "{s}");
}

#[tokio::test]
async fn both_secrets_are_accepted_while_rotating() {
    let server = TestServer::start(&format!(
        "[stores.stripe]\nenabled = true\nsigning_secrets = [\"{SECRET}\", \"{OLD_SECRET}\"]\n"
    ))
    .await;
    let t = now();
    for (i, secrets) in [
        vec![OLD_SECRET],
        vec![SECRET],
        vec![OLD_SECRET, SECRET],
        vec!["whsec_unrelated", SECRET],
    ]
    .into_iter()
    .enumerate()
    {
        let mut event = fixture("invoice.paid");
        event["id"] = json!(format!("evt_rotation_{i}"));
        let (status, body) = post_signed(&server, event.to_string().as_bytes(), &secrets, t).await;
        assert_eq!(status, 200, "secrets {secrets:?}: {body}");
    }
    // Once the old secret is dropped from the config, it no longer passes.
    let server = TestServer::start(&stripe_config("")).await;
    let event = fixture("invoice.paid");
    let (status, body) = post_signed(&server, event.to_string().as_bytes(), &[OLD_SECRET], t).await;
    assert_answer((status, &body), 401, "error", "no_matching_signature");
}

#[tokio::test]
async fn a_duplicate_event_is_applied_once() {
    let server = TestServer::start(&stripe_config("")).await;
    server.track("stripe", SUB, "user-42").await;
    let event = fixture("invoice.paid");
    let (s1, b1) = send(&server, &event).await;
    // Stripe's retry carries a fresh timestamp and signature.
    let (s2, b2) = post_signed(&server, event.to_string().as_bytes(), &[SECRET], now() - 5).await;
    assert_eq!((s1, b1["verdict"].as_str()), (200, Some("tracked")), "{b1}");
    assert_eq!(
        (s2, b2["verdict"].as_str()),
        (200, Some("duplicate")),
        "{b2}"
    );
    let (_, sub) = server.subscription("stripe", SUB).await;
    assert_eq!(
        sub["notifications"].as_array().map(Vec::len),
        Some(1),
        "{sub}"
    );
    assert_eq!(sub["last_event"]["type"], "RENEWAL");
    assert_eq!(sub["expires_at"], "2026-03-01T00:00:00.000Z");
    assert_eq!(
        server.store_status("stripe").await["counts"]["duplicates"],
        1
    );
}

#[tokio::test]
async fn out_of_order_updates_leave_the_newest_state() {
    let server = TestServer::start(&stripe_config("")).await;
    server.track("stripe", SUB, "user-42").await;
    let newer = update_event("evt_newer", 1_767_400_000, false);
    let older = update_event("evt_older", 1_767_312_000, true);
    let (status, body) = send(&server, &newer).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(&server, &older).await;
    assert_eq!(status, 200, "{body}");
    let (_, sub) = server.subscription("stripe", SUB).await;
    assert_eq!(
        sub["auto_renew"], true,
        "the older cancellation must not win: {sub}"
    );
    assert_eq!(sub["last_event"]["type"], "UNCANCELLATION", "{sub}");
    assert_eq!(
        sub["notifications"].as_array().map(Vec::len),
        Some(2),
        "both stored"
    );
    // A still newer one applies.
    let newest = update_event("evt_newest", 1_767_500_000, true);
    send(&server, &newest).await;
    let (_, sub) = server.subscription("stripe", SUB).await;
    assert_eq!(sub["auto_renew"], false, "{sub}");
    assert_eq!(sub["last_event"]["type"], "CANCELLATION");
}

#[tokio::test]
async fn an_unknown_event_type_is_acknowledged() {
    let server = TestServer::start(&stripe_config("")).await;
    let event = json!({
        "id": "evt_unknown_1", "object": "event", "type": "radar.early_fraud_warning.created",
        "created": now(), "livemode": false,
        "data": {"object": {"id": "issfr_1", "object": "radar.early_fraud_warning"}}
    });
    let (status, body) = send(&server, &event).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok", "{body}");
    // So is a v2 thin event.
    let thin = json!({"id": "evt_thin_1", "object": "v2.core.event",
        "type": "v1.billing.meter.error_report_triggered", "created": "2026-01-02T00:00:00.000Z", "livemode": false});
    let (status, body) = send(&server, &thin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.store_status("stripe").await["counts"]["accepted"], 2);
}

#[tokio::test]
async fn an_unreadable_object_is_acknowledged_as_rejected() {
    let server = TestServer::start(&stripe_config("")).await;
    let event = json!({"id": "evt_odd", "object": "event", "type": "invoice.paid", "created": now(),
        "livemode": false, "data": {"object": {"object": "invoice", "amount_paid": "lots"}}});
    let (status, body) = send(&server, &event).await;
    assert_answer((status, &body), 200, "status", "rejected");
    let s = server.store_status("stripe").await;
    assert_eq!(s["last_rejection_reason"], "unreadable_object", "{s}");
}

#[tokio::test]
async fn auto_tracking_uses_the_metadata_user_id() {
    let server = TestServer::start(&format!(
        "[tracking]\nauto_track = true\n{}",
        stripe_config("app_user_id_metadata_key = \"app_user_id\"")
    ))
    .await;
    let mut event = fixture("checkout.session.completed");
    event["data"]["object"]["metadata"] = json!({"app_user_id": "user_42"});
    let (status, body) = send(&server, &event).await;
    assert_answer((status, &body), 200, "verdict", "tracked");
    let (status, user) = server.get_admin("/v1/subscribers/user_42").await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["subscriptions"][0]["subscription_id"], SUB, "{user}");
}

#[tokio::test]
async fn the_binary_takes_secrets_from_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_token = \"{ADMIN_TOKEN}\"\n\n[database]\npath = \"{}\"\n\n\
             [stores.stripe]\nenabled = true\n",
            dir.path().join("storehook.db").display()
        ),
    )
    .expect("config");
    let server = BinaryServer::start_with_config(
        dir.path(),
        &config,
        &[(
            "STOREHOOK_STRIPE_SIGNING_SECRETS",
            &format!("{OLD_SECRET},{SECRET}"),
        )],
    );
    let client = reqwest::Client::new();
    let body = fixture("invoice.paid").to_string();
    for (i, secret) in [OLD_SECRET, SECRET].into_iter().enumerate() {
        let mut event: Value = serde_json::from_str(&body).expect("json");
        event["id"] = json!(format!("evt_env_{i}"));
        let body = event.to_string();
        let resp = client
            .post(format!("{}{PATH}", server.base))
            .header(
                "Stripe-Signature",
                signature_header([secret], now(), body.as_bytes()),
            )
            .body(body)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), 200, "{secret}");
    }
}
