//! End-to-end tests of the Google Play adapter over HTTP, against the real
//! server and a temporary SQLite file (`tests/common`), with real RTDN push
//! bodies and a local stand-in (loopback, port 0) for the Play Developer API.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use common::{assert_answer, TestServer};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PATH: &str = "/v1/notifications/google";
const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/google");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/plugins/google/tests/fixtures");
const PUSH_TOKEN: &str = "e2e-push-secret";
const PACKAGE: &str = "com.okmusician.android";
/// The purchase token of the okmusician SUBSCRIPTION_PURCHASED capture.
const NEW_TOKEN: &str = "oecmlmnfmejgbajnlfpiepdd.AO-J1OxD6rAoZZ1gm9A4gO1PhfhM9xnebdW75f3mCaedh1qX4-Y55LTfFRzB1ZiyZvehGGWe6inXpl-hJ8wSM-EK3DNGUflmMZQgo9hjuee43cdwsAY0P3hrRrc7qrr0bUtlDNivkCXw";
const OLD_TOKEN: &str = "old-purchase-token.AO-J1Ox-e2e";

fn push_body(name: &str) -> Vec<u8> {
    std::fs::read(format!("{CORPUS}/push_bodies/{name}.json")).expect("corpus file")
}

fn push_token_config(extra: &str) -> String {
    format!(
        "[stores.google]\nenabled = true\npackage_names = [\"{PACKAGE}\"]\npush_token = \"{PUSH_TOKEN}\"\n{extra}"
    )
}

async fn post(
    server: &TestServer,
    query: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, Value) {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    server.post(&format!("{PATH}{query}"), &all, body).await
}

async fn push(server: &TestServer, body: Vec<u8>) -> (u16, Value) {
    post(server, &format!("?token={PUSH_TOKEN}"), &[], body).await
}

/// Pushes the TEST notification through the OIDC path, with `authorization`.
async fn push_test_notification(server: &TestServer, authorization: Option<&str>) -> (u16, Value) {
    let headers: Vec<_> = authorization
        .map(|a| ("authorization", a))
        .into_iter()
        .collect();
    post(
        server,
        "",
        &headers,
        push_body("okmusician_2019_test_notification"),
    )
    .await
}

/// [`assert_answer`], naming the push `what` on failure.
fn assert_answered_in(
    what: &str,
    (status, body): (u16, &Value),
    expected: u16,
    field: &str,
    value: &str,
) {
    assert_eq!(
        (status, body[field].as_str()),
        (expected, Some(value)),
        "{what}: {body}"
    );
}

#[tokio::test]
async fn a_redelivered_message_is_a_duplicate() {
    let server = TestServer::start(&push_token_config("")).await;
    let (status, first) = push(&server, push_body("okmusician_2019_subscription_purchased")).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["notification_id"], "611283052513650");
    assert_ne!(first["verdict"], "duplicate", "{first}");
    // Pub/Sub redelivers the same message (same messageId) after a lost ack.
    let (status, again) = push(&server, push_body("okmusician_2019_subscription_purchased")).await;
    assert_answer((status, &again), 200, "verdict", "duplicate");
    assert_eq!(
        server.store_status("google").await["counts"]["duplicates"],
        1
    );
    // Another message about the same purchase is not.
    let (_, other) = push(&server, push_body("okmusician_2019_subscription_canceled")).await;
    assert_ne!(other["verdict"], "duplicate", "{other}");
}

#[tokio::test]
async fn authenticated_but_unusable_messages_are_acknowledged() {
    let server = TestServer::start(&push_token_config("")).await;
    for (file, code) in [
        ("laravel_iap_2020_garbage_data", "malformed_data"),
        ("docs_pubsub_push_hello", "malformed_data"),
        ("aitubo_2025_subscription_canceled", "wrong_package"),
    ] {
        let (status, body) = push(&server, push_body(file)).await;
        assert_answered_in(file, (status, &body), 200, "error", code);
        let s = server.store_status("google").await;
        assert_eq!(s["last_rejection_reason"], code, "{s}");
    }
    // Not a push at all, or not authenticated: refused, so not acknowledged.
    let (status, body) = push(&server, b"{\"not\":\"a push\"}".to_vec()).await;
    assert_answer((status, &body), 400, "error", "not_a_push_envelope");
    let (status, body) = post(
        &server,
        "?token=wrong",
        &[],
        push_body("okmusician_2019_test_notification"),
    )
    .await;
    assert_answer((status, &body), 401, "error", "bad_push_token");
}

#[tokio::test]
async fn oidc_push_authentication_over_http() {
    let server = TestServer::start(&format!(
        "[stores.google]\nenabled = true\npackage_names = [\"{PACKAGE}\"]\n\
         audience = \"https://storehook.test/v1/notifications/google\"\n\
         push_service_account = \"rtdn-push@storehook-test.iam.gserviceaccount.com\"\n\
         jwks_file = \"{FIXTURES}/jwks_key_1.json\"\n"
    ))
    .await;
    let token =
        std::fs::read_to_string(format!("{FIXTURES}/long_lived_push_token.jwt")).expect("token");
    let bearer = format!("Bearer {}", token.trim());
    let (status, body) = push_test_notification(&server, Some(&bearer)).await;
    assert_answer((status, &body), 200, "verdict", "tracked");

    let (status, body) = push_test_notification(&server, None).await;
    assert_answer((status, &body), 401, "error", "missing_token");
    // One character of the claims changed: the signature no longer covers them.
    let mut segments: Vec<String> = bearer.split('.').map(str::to_string).collect();
    let claims = &mut segments[1];
    let flipped = if claims.as_bytes()[10] == b'A' {
        "B"
    } else {
        "A"
    };
    claims.replace_range(10..11, flipped);
    let forged = segments.join(".");
    let (status, body) = push_test_notification(&server, Some(&forged)).await;
    assert_answer((status, &body), 401, "error", "bad_signature");
}

/// A subscription bought as an upgrade: the Play API reports the new
/// token's `linkedPurchaseToken`, and the host carries the old token's
/// tracking (user, history) over. The first state fetch fails; the host
/// retries.
#[tokio::test]
async fn a_linked_purchase_token_hands_tracking_over() {
    let api = PlayApiStandIn::start(vec![
        (503, json!({"error": {"code": 503, "message": "backend error"}})),
        (
            200,
            json!({
                "kind": "androidpublisher#subscriptionPurchaseV2",
                "subscriptionState": "SUBSCRIPTION_STATE_ACTIVE",
                "linkedPurchaseToken": OLD_TOKEN,
                "acknowledgementState": "ACKNOWLEDGEMENT_STATE_ACKNOWLEDGED",
                "lineItems": [{"productId": "okmusician.yearly.guitar", "expiryTime": "2099-07-10T06:10:35.838Z",
                               "autoRenewingPlan": {"autoRenewEnabled": true}}]
            }),
        ),
    ])
    .await;
    // Two apps under one Play account: the fetch must ask about the package
    // the notification named.
    let server = TestServer::start(&format!(
        "[stores.google]\nenabled = true\npackage_names = [\"com.example.another.app\", \"{PACKAGE}\"]\n\
         push_token = \"{PUSH_TOKEN}\"\n\
         [stores.google.play_api]\nservice_account_key_file = \"{FIXTURES}/service_account.json\"\n\
         base_url = \"{base}\"\ntoken_url = \"{base}/token\"\n",
        base = api.base
    ))
    .await;
    let (status, body) = server.track("google", OLD_TOKEN, "user-1").await;
    assert_eq!(status, 201, "{body}");

    let (status, body) = push(&server, push_body("okmusician_2019_subscription_purchased")).await;
    assert_eq!(status, 200, "{body}");

    // The fetch runs in the background (first try fails, retried after 1 s).
    let sub = common::eventually(10, "the fetched state", || async {
        let (status, body) = server.subscription("google", NEW_TOKEN).await;
        if status == 200 && body["state_pending"] == false && body["status"] == "active" {
            Ok(body)
        } else {
            Err(body)
        }
    })
    .await;
    assert_eq!(sub["app_user_id"], "user-1", "{sub}");
    assert_eq!(sub["continues_subscription_id"], OLD_TOKEN, "{sub}");
    assert_eq!(sub["auto_renew"], true, "{sub}");
    assert_eq!(sub["product_id"], "okmusician.yearly.guitar", "{sub}");
    assert!(
        sub["expires_at"]
            .as_str()
            .is_some_and(|t| t.starts_with("2099-07-10")),
        "{sub}"
    );

    let calls = api.calls.lock().expect("lock").clone();
    let fetches: Vec<_> = calls.iter().filter(|c| c.starts_with("GET ")).collect();
    assert_eq!(fetches.len(), 2, "{calls:?}");
    assert!(
        fetches[0].contains(&format!(
            "/applications/{PACKAGE}/purchases/subscriptionsv2/tokens/{NEW_TOKEN}"
        )),
        "{calls:?}"
    );
}

/// A minimal HTTP/1.1 stand-in for Google's token endpoint and
/// `purchases.subscriptionsv2.get`, answering the queued responses in order
/// (the last one repeats).
struct PlayApiStandIn {
    base: String,
    calls: Arc<Mutex<Vec<String>>>,
}

impl PlayApiStandIn {
    async fn start(responses: Vec<(u16, Value)>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let queue = Arc::new(Mutex::new(VecDeque::from(responses)));
        let seen = calls.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (seen, queue) = (seen.clone(), queue.clone());
                tokio::spawn(async move {
                    let Some(request_line) = read_request(&mut stream).await else {
                        return;
                    };
                    seen.lock().expect("lock").push(request_line.clone());
                    let (status, body) = if request_line.starts_with("POST /token ") {
                        (
                            200,
                            json!({"access_token": "e2e-access-token", "expires_in": 3599, "token_type": "Bearer"}),
                        )
                    } else {
                        let mut q = queue.lock().expect("lock");
                        if q.len() > 1 {
                            q.pop_front().expect("queued")
                        } else {
                            q.front().cloned().unwrap_or((404, json!({})))
                        }
                    };
                    let body = body.to_string();
                    let response = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        PlayApiStandIn { base, calls }
    }
}

/// Reads one request (head and `content-length` body); returns its request line.
async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    head.lines().next().map(str::to_string)
}
