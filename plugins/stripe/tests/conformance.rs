//! storehook's adapter behaviour suite, run against the Stripe adapter with
//! every corpus fixture as a valid request.

use storehook_core::conformance::Suite;
use storehook_core::IncomingRequest;
use storehook_stripe::{signature_header, AcceptedMode, StripeAdapter, StripeConfig};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/corpus/stripe");
const SECRET: &str = "whsec_conformance";
const NOW: i64 = 1_780_000_000;

fn signed(body: &[u8], secret: &str, t: i64) -> IncomingRequest {
    IncomingRequest::new(body, NOW * 1000)
        .with_header("Stripe-Signature", signature_header([secret], t, body))
}

fn fixtures() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for dir in ["events_openapi", "events_ruby_mock"] {
        let mut paths: Vec<_> = std::fs::read_dir(format!("{CORPUS}/{dir}"))
            .expect("corpus dir")
            .map(|e| e.expect("entry").path())
            .collect();
        paths.sort();
        for path in paths {
            out.push(std::fs::read(path).expect("fixture"));
        }
    }
    out
}

#[tokio::test]
async fn stripe_adapter_conforms() {
    let adapter = StripeAdapter::new(StripeConfig::with_secrets([SECRET])).expect("config");
    let fixtures = fixtures();
    assert_eq!(fixtures.len(), 21);
    let body = fixtures[0].clone();
    let valid: Vec<_> = fixtures.iter().map(|b| signed(b, SECRET, NOW)).collect();

    let malformed = vec![
        (
            signed(b"this is not valid JSON", SECRET, NOW),
            Some("invalid_json"),
        ),
        (signed(b"", SECRET, NOW), Some("invalid_json")),
        (signed(b"[]", SECRET, NOW), Some("malformed_event")),
        (
            signed(b"{\"type\":\"invoice.paid\"}", SECRET, NOW),
            Some("malformed_event"),
        ),
        (
            signed(
                b"{\"id\":\"sub_1\",\"object\":\"subscription\"}",
                SECRET,
                NOW,
            ),
            Some("malformed_event"),
        ),
    ];

    let sig = storehook_stripe::verify::compute_v1_signature(SECRET.as_bytes(), NOW, &body);
    let with_header =
        |h: &str| IncomingRequest::new(body.clone(), NOW * 1000).with_header("Stripe-Signature", h);
    let forged = vec![
        (
            IncomingRequest::new(body.clone(), NOW * 1000),
            Some("missing_header"),
        ),
        (with_header(""), Some("missing_header")),
        (with_header("garbage"), Some("malformed_header")),
        (with_header(&format!("v1={sig}")), Some("malformed_header")),
        (
            with_header(&format!("t={NOW},v0={sig}")),
            Some("no_v1_signature"),
        ),
        (
            signed(&body, "whsec_other", NOW),
            Some("no_matching_signature"),
        ),
        (
            with_header(&format!("t={NOW},v1={}", sig.to_ascii_uppercase())),
            Some("no_matching_signature"),
        ),
        (
            signed(&body, SECRET, NOW - 301),
            Some("timestamp_outside_tolerance"),
        ),
    ];

    Suite {
        store: "stripe",
        adapter: &adapter,
        valid,
        malformed,
        forged,
        body_is_signed: true,
    }
    .run()
    .await;
}

#[tokio::test]
async fn live_only_endpoint_refuses_test_events() {
    let mut config = StripeConfig::with_secrets([SECRET]);
    config.livemode = AcceptedMode::Live;
    let adapter = StripeAdapter::new(config).expect("config");
    let body = fixtures().remove(0);
    let live = {
        let mut json: serde_json::Value = serde_json::from_slice(&body).expect("json");
        json["livemode"] = serde_json::Value::Bool(true);
        serde_json::to_vec(&json).expect("json")
    };
    Suite {
        store: "stripe",
        adapter: &adapter,
        valid: vec![signed(&live, SECRET, NOW)],
        malformed: vec![],
        forged: vec![(signed(&body, SECRET, NOW), Some("livemode_not_accepted"))],
        body_is_signed: true,
    }
    .run()
    .await;
}
