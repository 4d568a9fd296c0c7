//! storehook-core's behaviour suite, run against the Google adapter with
//! both authentication methods.

mod common;

use common::*;
use storehook_core::conformance::Suite;
use storehook_core::IncomingRequest;

fn corpus_push_bodies() -> Vec<Vec<u8>> {
    [
        "okmusician_2019_subscription_purchased.json",
        "okmusician_2019_test_notification.json",
        "aitubo_2025_subscription_canceled.json",
        "edufox_2023_subscription_renewed.json",
    ]
    .iter()
    .map(|f| std::fs::read(corpus(&format!("push_bodies/{f}"))).unwrap())
    .collect()
}

#[tokio::test]
async fn conformance_with_push_token() {
    let adapter = build(&push_token_config(&[
        "com.okmusician.android",
        "com.aitubo.image.creator",
        "com.edufox",
    ]));
    let valid: Vec<IncomingRequest> = corpus_push_bodies()
        .into_iter()
        .map(with_push_token)
        .collect();
    let body = || corpus_push_bodies().remove(0);
    Suite {
        store: "google",
        adapter: adapter.as_ref(),
        valid,
        malformed: vec![
            (
                with_push_token(b"not json".to_vec()),
                Some("not_a_push_envelope"),
            ),
            (with_push_token(b"{}".to_vec()), Some("not_a_push_envelope")),
            (
                with_push_token(br#"{"message":{"messageId":"1"}}"#.to_vec()),
                Some("not_a_push_envelope"),
            ),
        ],
        forged: vec![
            (
                IncomingRequest::new(body(), NOW_MS),
                Some("missing_push_token"),
            ),
            (
                IncomingRequest::new(body(), NOW_MS).with_query("token=guess"),
                Some("bad_push_token"),
            ),
        ],
        // The push token authenticates the sender, not the body.
        body_is_signed: false,
    }
    .run()
    .await;
}

#[tokio::test]
async fn conformance_with_oidc() {
    let adapter = build(&format!(
        "package_names = ['com.okmusician.android']\naudience = '{AUDIENCE}'\n\
         push_service_account = '{PUSH_ACCOUNT}'\njwks_file = 'jwks_key_1.json'\n"
    ));
    let token = mint("oidc_key_1.pem", Some("test-key-1"), &push_claims(NOW_S));
    let body = corpus_push_bodies().remove(0);
    let mut wrong = push_claims(NOW_S);
    wrong["aud"] = serde_json::json!("https://elsewhere.example");
    Suite {
        store: "google",
        adapter: adapter.as_ref(),
        valid: vec![with_bearer(body.clone(), &token, NOW_MS)],
        malformed: vec![(
            with_bearer(b"[]".to_vec(), &token, NOW_MS),
            Some("not_a_push_envelope"),
        )],
        forged: vec![
            (
                IncomingRequest::new(body.clone(), NOW_MS),
                Some("missing_token"),
            ),
            (
                with_bearer(
                    body.clone(),
                    &mint("oidc_key_2.pem", Some("test-key-1"), &push_claims(NOW_S)),
                    NOW_MS,
                ),
                Some("bad_signature"),
            ),
            (
                with_bearer(
                    body.clone(),
                    &mint("oidc_key_1.pem", Some("test-key-1"), &wrong),
                    NOW_MS,
                ),
                Some("wrong_audience"),
            ),
            (
                with_bearer(body, &token, NOW_MS + 7_200_000),
                Some("expired"),
            ),
        ],
        body_is_signed: false,
    }
    .run()
    .await;
}
