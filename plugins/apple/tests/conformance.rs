//! storehook's behaviour suite, run against the App Store adapter with the
//! real corpus.

mod support;

use serde_json::json;
use storehook_core::conformance::Suite;
use storehook_core::{find_registration, FactoryContext, IncomingRequest};
use support::*;

fn request(body: Vec<u8>) -> IncomingRequest {
    IncomingRequest::new(body, NOW_2026_MS).with_header("content-type", "application/json")
}

#[tokio::test]
async fn conformance_suite() {
    storehook_apple::link();
    let registration = find_registration("apple").expect("apple is registered");
    assert_eq!(
        (
            registration.name,
            registration.store_label,
            registration.supported
        ),
        ("App Store", "APP_STORE", true)
    );
    let table: toml::Table = toml::from_str(
        r#"
        apps = [
            { bundle_id = "GeniusParentingAI" },
            { bundle_id = "cn.soulmate.elf", app_apple_id = 6473983973 },
            { bundle_id = "com.loki-project.loki-messenger", app_apple_id = 1470168868 },
            { bundle_id = "com.jrjj.keysns", app_apple_id = 1601830814 },
            { bundle_id = "com.audaos.audarecorder" },
        ]
        "#,
    )
    .unwrap();
    let ctx = FactoryContext {
        config_dir: std::path::PathBuf::from(CORPUS),
        env: &|_| None,
    };
    let adapter = (registration.build)(&table, &ctx).unwrap();
    assert_eq!(
        adapter.startup_warnings().len(),
        1,
        "two apps lack app_apple_id"
    );

    let valid = (1..=12)
        .map(|n| request(corpus(&format!("real-{n}.json"))))
        .collect();

    let v1 = json!({
        "notification_type": "DID_RENEW",
        "password": "x",
        "environment": "PROD",
        "unified_receipt": {"status": 0, "latest_receipt_info": []}
    });
    let malformed = vec![
        (request(b"not json".to_vec()), Some("malformed_body")),
        (request(b"[\"eyJ\"]".to_vec()), Some("malformed_body")),
        (
            request(b"{\"signedPayload\": 5}".to_vec()),
            Some("malformed_body"),
        ),
        (request(b"{}".to_vec()), Some("missing_signed_payload")),
        (
            request(b"{\"signedPayload\": null}".to_vec()),
            Some("missing_signed_payload"),
        ),
        (
            request(serde_json::to_vec(&v1).unwrap()),
            Some("apple_v1_notification"),
        ),
    ];

    let real_4 = real_signed_payload(4);
    let (head, sig) = real_4.rsplit_once('.').unwrap();
    let mut sig_bytes =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig).unwrap();
    sig_bytes[0] ^= 0x80;
    let mut header = segment_json(real_4.split('.').next().unwrap());
    header["x5c"].as_array_mut().unwrap().pop();
    let forged = vec![
        (
            request(body(&format!("{head}.{}", b64url(&sig_bytes)))),
            Some("VERIFICATION_FAILURE"),
        ),
        (
            request(corpus("real-13.json")),
            Some("VERIFICATION_FAILURE"),
        ),
        (
            request(body(&with_header(&real_4, &header))),
            Some("INVALID_CHAIN_LENGTH"),
        ),
        (request(body("a.b.c")), Some("VERIFICATION_FAILURE")),
    ];

    Suite {
        store: "apple",
        adapter: adapter.as_ref(),
        valid,
        malformed,
        forged,
        body_is_signed: true,
    }
    .run()
    .await;

    // The V1 message says how to switch.
    let e = adapter
        .verify_and_decode(&request(serde_json::to_vec(&v1).unwrap()))
        .await
        .unwrap_err();
    assert!(e.message().contains("Version 2"), "{}", e.message());
    assert!(e.message().contains("App Store Connect"), "{}", e.message());
}
