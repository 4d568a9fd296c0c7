//! Issue 12's attacks on the adapters, replayed against the real server on
//! loopback: refusal messages that would quote what an anonymous sender
//! wrote (item 7), forged Google pushes that would each cost a fetch of
//! Google's keys (item 8), and a forged Apple body that would be parsed
//! before its signature is checked (item 9).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::Engine;
use common::{assert_answer, TestServer};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MARKER: &str = "MARKER<b>call +1-555-0100</b>";
const APPLE_CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/apple");
const GOOGLE_FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/plugins/google/tests/fixtures");
const PACKAGE: &str = "com.okmusician.android";

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An unsigned JWT with the given header (the signature is junk).
fn forged_jwt(header: &Value) -> String {
    format!(
        "{}.{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(
            json!({"iss": MARKER, "aud": MARKER, "email": MARKER})
                .to_string()
                .as_bytes()
        ),
        b64url(MARKER.as_bytes())
    )
}

/// Extra request headers of one case.
type Headers = Vec<(&'static str, String)>;

fn google_config(key_source: &str) -> String {
    format!(
        "[stores.google]\nenabled = true\npackage_names = [\"{PACKAGE}\"]\n\
         audience = \"https://storehook.test/v1/notifications/google\"\n\
         push_service_account = \"rtdn-push@storehook-test.iam.gserviceaccount.com\"\n\
         {key_source}\n"
    )
}

#[tokio::test]
async fn refusal_messages_never_quote_what_the_sender_wrote() {
    let server = TestServer::start(&format!(
        "[stores.apple]\nenabled = true\napps = [{{ bundle_id = \"com.example\" }}]\n\n\
         [stores.stripe]\nenabled = true\nsigning_secrets = [\"whsec_adapters_test\"]\n\n{}",
        google_config(&format!(
            "jwks_file = \"{GOOGLE_FIXTURES}/jwks_key_1.json\""
        ))
    ))
    .await;
    let marker_b64 = b64url(MARKER.as_bytes());
    let jws_with = |header: Value| {
        json!({"signedPayload": format!("{}.{marker_b64}.{marker_b64}", b64url(header.to_string().as_bytes()))})
            .to_string()
    };
    let forged_bearer = |header: Value| -> Headers {
        vec![("authorization", format!("Bearer {}", forged_jwt(&header)))]
    };
    let stripe_body = json!({"id": MARKER, "object": "event", "type": MARKER}).to_string();
    let cases: Vec<(&str, Headers, String)> = vec![
        (
            "apple",
            vec![],
            jws_with(json!({"alg": "ES256", "kid": MARKER, "x5c": [MARKER, MARKER, MARKER]})),
        ),
        (
            "apple",
            vec![],
            jws_with(json!({"alg": MARKER, "x5c": [MARKER]})),
        ),
        (
            "apple",
            vec![],
            json!({"signedPayload": MARKER}).to_string(),
        ),
        (
            "google",
            forged_bearer(json!({"alg": MARKER, "kid": MARKER})),
            "{}".into(),
        ),
        (
            "google",
            forged_bearer(json!({"alg": "RS256", "kid": MARKER})),
            "{}".into(),
        ),
        (
            "google",
            forged_bearer(json!({"alg": "RS256", "kid": "test-key-1"})),
            "{}".into(),
        ),
        (
            "google",
            vec![("authorization", format!("{MARKER} x"))],
            "{}".into(),
        ),
        (
            "stripe",
            vec![("stripe-signature", format!("t=1,v1={MARKER}"))],
            stripe_body.clone(),
        ),
        (
            "stripe",
            vec![("stripe-signature", MARKER.to_string())],
            stripe_body.clone(),
        ),
        (
            "stripe",
            vec![("stripe-signature", format!("t={MARKER},v1=00"))],
            stripe_body,
        ),
    ];
    for (i, (store, headers, body)) in cases.into_iter().enumerate() {
        let mut all: Vec<(&str, &str)> = vec![("content-type", "application/json")];
        all.extend(headers.iter().map(|(k, v)| (*k, v.as_str())));
        let (status, answer) = server
            .post(&format!("/v1/notifications/{store}"), &all, body)
            .await;
        assert!((400..500).contains(&status), "case {i}: {status} {answer}");
        assert!(!answer.to_string().contains("MARKER"), "case {i}: {answer}");
        let s = server.store_status(store).await;
        let message = s["last_rejection_message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "case {i}: {s}");
        assert!(!message.contains("MARKER"), "case {i}: {message}");
    }
}

/// A stand-in for Google's JWKS endpoint that counts its requests and
/// answers 500, as during an outage.
async fn failing_jwks_endpoint() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/oauth2/v3/certs",
        listener.local_addr().expect("addr")
    );
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (url, hits)
}

/// While Google's keys cannot be loaded, 100 forged pushes (50 of them at
/// once) cost at most a few fetches: loads are single-flight and back off
/// from one second after a failure, in every state.
#[tokio::test]
async fn forged_pushes_cannot_turn_into_key_fetches() {
    let (url, hits) = failing_jwks_endpoint().await;
    let server =
        Arc::new(TestServer::start(&google_config(&format!("jwks_url = \"{url}\""))).await);
    let push = |i: usize| {
        let server = server.clone();
        async move {
            let bearer = format!(
                "Bearer {}",
                forged_jwt(&json!({"alg": "RS256", "kid": format!("forged-{i}")}))
            );
            server
                .post(
                    "/v1/notifications/google",
                    &[("authorization", bearer.as_str())],
                    "{}",
                )
                .await
        }
    };
    let started = std::time::Instant::now();
    let at_once: Vec<_> = (0..50).map(|i| tokio::spawn(push(i))).collect();
    for task in at_once {
        let (status, answer) = task.await.expect("task");
        assert_answer((status, &answer), 503, "error", "jwks_unavailable");
    }
    for i in 50..100 {
        let (status, answer) = push(i).await;
        assert_answer((status, &answer), 503, "error", "jwks_unavailable");
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    let fetches = hits.load(Ordering::SeqCst);
    // One load at the first push, then one after 1 s, 3 s, 7 s… of failures.
    let allowed = 1 + (elapsed_s + 1.0).log2().floor() as usize;
    assert!(fetches >= 1, "the keys were never asked for");
    assert!(
        fetches <= allowed,
        "{fetches} fetches for 100 forged pushes in {elapsed_s:.1} s (at most {allowed})"
    );
}

/// A forged Apple body with a genuine header and 150 KB of payload that is
/// not even base64 is refused for its signature: the payload is not decoded
/// before the signature over it verified.
#[tokio::test]
async fn a_forged_apple_payload_is_not_decoded_before_its_signature() {
    let server = TestServer::start(
        "[stores.apple]\nenabled = true\napps = [{ bundle_id = \"com.loki-project.loki-messenger\" }]\n",
    )
    .await;
    let real: Value = serde_json::from_slice(
        &std::fs::read(format!("{APPLE_CORPUS}/real-4.json")).expect("corpus"),
    )
    .expect("json");
    let genuine = real["signedPayload"].as_str().expect("signedPayload");
    let header = genuine.split('.').next().expect("header");
    let forged = format!("{header}.{}.{}", "!".repeat(150_000), b64url(&[7u8; 64]));
    let (status, answer) = server
        .post(
            "/v1/notifications/apple",
            &[("content-type", "application/json")],
            json!({ "signedPayload": forged }).to_string(),
        )
        .await;
    assert_answer((status, &answer), 401, "error", "VERIFICATION_FAILURE");
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(message.contains("signature does not verify"), "{answer}");
}
