//! Shared by the integration tests: corpus access, request bodies, and the
//! test certificate chains and JWS signing, which live in the stand-ins
//! crate so that its App Store stand-in (and the host's end-to-end tests)
//! serve payloads signed the same way.
#![allow(dead_code)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use storehook_apple::{App, AppleAdapter, AppleEnvironment, AppleSettings};
use storehook_core::{AdapterError, VerifiedNotification};
pub use storehook_stand_ins::apple::signing::*;

pub const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/corpus/apple");

/// 2026-06-01T00:00:00Z: "now" for tests on real notifications (after every
/// expired leaf of the corpus, before the current one's notAfter).
pub const NOW_2026_MS: i64 = 1_780_272_000_000;
/// 2025-11-01T02:09:35Z, the instant Apple's chain tests use.
pub const NOV_2025_S: i64 = 1_761_962_975;

pub fn corpus(rel: &str) -> Vec<u8> {
    std::fs::read(format!("{CORPUS}/{rel}")).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

pub fn corpus_text(rel: &str) -> String {
    String::from_utf8(corpus(rel)).unwrap()
}

pub fn corpus_json(rel: &str) -> Value {
    serde_json::from_slice(&corpus(rel)).unwrap()
}

/// The DER of the (first) certificate in a PEM file of the corpus.
pub fn corpus_pem_der(rel: &str) -> Vec<u8> {
    let bytes = corpus(rel);
    let pem = x509_parser::pem::Pem::iter_from_buffer(&bytes)
        .next()
        .unwrap()
        .unwrap();
    pem.contents
}

/// A P-256 signing key from a PKCS#8 PEM file of the corpus.
pub fn corpus_p256_key(rel: &str) -> EcdsaKeyPair {
    let bytes = corpus(rel);
    let pem = x509_parser::pem::Pem::iter_from_buffer(&bytes)
        .next()
        .unwrap()
        .unwrap();
    EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &pem.contents,
        &SystemRandom::new(),
    )
    .unwrap()
}

/// The signedPayload of `real-<n>.json`.
pub fn real_signed_payload(n: u32) -> String {
    corpus_json(&format!("real-{n}.json"))["signedPayload"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub fn body(jws: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "signedPayload": jws })).unwrap()
}

/// Decodes one JWS segment as JSON.
pub fn segment_json(segment: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
}

/// Replaces the header of a JWS, keeping its payload and signature.
pub fn with_header(jws: &str, header: &Value) -> String {
    let (_, rest) = jws.split_once('.').unwrap();
    format!("{}.{rest}", b64url(header.to_string().as_bytes()))
}

/// An adapter for the given apps and environments, trusting `roots`.
pub fn adapter(
    apps: &[(&str, Option<i64>)],
    environments: &[AppleEnvironment],
    roots: Vec<Vec<u8>>,
) -> AppleAdapter {
    let mut settings = AppleSettings::new(
        apps.iter()
            .map(|(bundle_id, app_apple_id)| App {
                bundle_id: (*bundle_id).to_owned(),
                app_apple_id: *app_apple_id,
            })
            .collect(),
        environments.to_vec(),
    );
    settings.root_certificates = roots;
    AppleAdapter::new(settings)
}

pub const BOTH: &[AppleEnvironment] = &[AppleEnvironment::Production, AppleEnvironment::Sandbox];
pub const SANDBOX: &[AppleEnvironment] = &[AppleEnvironment::Sandbox];
pub const PRODUCTION: &[AppleEnvironment] = &[AppleEnvironment::Production];

/// `jws` as the body of a notification, verified by `adapter` in 2026.
pub fn verify(adapter: &AppleAdapter, jws: &str) -> Result<VerifiedNotification, AdapterError> {
    adapter.verify_body(&body(jws), NOW_2026_MS)
}

/// Asserts `adapter` refuses `jws` with Apple's status `code`.
#[track_caller]
pub fn refuses(adapter: &AppleAdapter, jws: &str, code: &str) -> AdapterError {
    assert_refused(verify(adapter, jws), code)
}

/// Asserts `adapter` refuses `jws` for the JWS nested in its `field`.
#[track_caller]
pub fn refuses_nested(adapter: &AppleAdapter, jws: &str, field: &str) {
    assert_refused_in(verify(adapter, jws), "VERIFICATION_FAILURE", field);
}

/// Asserts a 401 with Apple's status `code`.
#[track_caller]
pub fn assert_refused<T: std::fmt::Debug>(
    result: Result<T, AdapterError>,
    code: &str,
) -> AdapterError {
    match result {
        Ok(v) => panic!("expected 401 {code}, got {v:?}"),
        Err(e) => {
            assert_eq!((e.http_status(), e.code()), (401, code), "{}", e.message());
            e
        }
    }
}

/// Asserts a 401 with Apple's status `code` about the JWS in `field`.
#[track_caller]
pub fn assert_refused_in<T: std::fmt::Debug>(
    result: Result<T, AdapterError>,
    code: &str,
    field: &str,
) {
    let e = assert_refused(result, code);
    assert!(e.message().starts_with(field), "{}", e.message());
}

/// 2025-06-01T00:00:00Z in ms.
pub const JUNE_2025_MS: i64 = 1_748_736_000_000;

pub const BUNDLE: &str = "com.example.app";
pub const APP_ID: i64 = 1_234_567_890;

/// A signed transaction payload for [`BUNDLE`].
pub fn transaction_payload(environment: &str, signed_date: i64) -> Value {
    json!({
        "transactionId": "2000000000000002",
        "originalTransactionId": "2000000000000001",
        "bundleId": BUNDLE,
        "productId": "pro.monthly",
        "purchaseDate": signed_date - 60_000,
        "originalPurchaseDate": signed_date - 60_000,
        "expiresDate": signed_date + 30 * 86_400_000,
        "type": "Auto-Renewable Subscription",
        "appAccountToken": "7e3fb20b-4cdb-47cc-936d-99d65f608138",
        "inAppOwnershipType": "PURCHASED",
        "signedDate": signed_date,
        "environment": environment,
        "transactionReason": "PURCHASE",
        "price": 9990,
        "currency": "EUR"
    })
}

pub fn renewal_payload(environment: &str, signed_date: i64) -> Value {
    json!({
        "originalTransactionId": "2000000000000001",
        "autoRenewProductId": "pro.monthly",
        "productId": "pro.monthly",
        "autoRenewStatus": 1,
        "signedDate": signed_date,
        "environment": environment,
        "renewalDate": signed_date + 30 * 86_400_000
    })
}

/// A SUBSCRIBED/INITIAL_BUY notification whose nested JWS are signed by
/// `chain` too.
pub fn subscribed_notification(chain: &TestChain, environment: &str, signed_date: i64) -> Value {
    json!({
        "notificationType": "SUBSCRIBED",
        "subtype": "INITIAL_BUY",
        "notificationUUID": "0b1b9f52-6d1a-4a36-9a5c-0e2f6f6a4f11",
        "data": {
            "appAppleId": APP_ID,
            "bundleId": BUNDLE,
            "bundleVersion": "1",
            "environment": environment,
            "signedTransactionInfo": chain.sign(&transaction_payload(environment, signed_date)),
            "signedRenewalInfo": chain.sign(&renewal_payload(environment, signed_date)),
            "status": 1
        },
        "version": "2.0",
        "signedDate": signed_date
    })
}
