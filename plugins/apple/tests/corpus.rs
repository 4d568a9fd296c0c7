//! The 13 real Apple-signed notifications: each answers what
//! `expectations.json` (checked against Apple's library) says, and decodes
//! to the fields listed there; the negative checks of MANIFEST.md; the
//! real-3…real-11 subscription sequence.

mod support;

use serde_json::{json, Value};
use storehook_apple::{AppleAdapter, AppleEnvironment, APPLE_ROOT_CA_G3};
use storehook_core::{
    Environment, EventType, ImpliedState, SubscriptionStatus, VerifiedNotification,
};
use support::*;

fn expectations() -> Vec<Value> {
    corpus_json("expectations.json")["notifications"]
        .as_array()
        .unwrap()
        .clone()
}

fn entry(file: &str) -> Value {
    expectations()
        .into_iter()
        .find(|e| e["file"] == file)
        .unwrap()
}

fn environment_of(e: &Value) -> AppleEnvironment {
    AppleEnvironment::parse(e["environment"].as_str().unwrap()).unwrap()
}

/// The adapter as the manifest configures the official verifier for `e`.
fn adapter_for(e: &Value) -> AppleAdapter {
    adapter(
        &[(e["bundleId"].as_str().unwrap(), e["appAppleId"].as_i64())],
        &[environment_of(e)],
        vec![APPLE_ROOT_CA_G3.to_vec()],
    )
}

fn real_body(e: &Value) -> Vec<u8> {
    corpus(e["file"].as_str().unwrap())
}

fn opt_i64(v: &Value) -> Option<i64> {
    v.as_i64()
}

fn opt_str(v: &Value) -> Option<&str> {
    v.as_str()
}

fn check_decoded(e: &Value, n: &VerifiedNotification) {
    let file = e["file"].as_str().unwrap();
    let t = e["notificationType"].as_str().unwrap();
    let raw = match e["subtype"].as_str() {
        Some(s) => format!("{t}/{s}"),
        None => t.to_owned(),
    };
    assert_eq!(n.store, "apple", "{file}");
    assert_eq!(n.raw_type, raw, "{file}");
    assert_eq!(
        n.notification_id,
        e["notificationUUID"].as_str().unwrap(),
        "{file}"
    );
    assert_eq!(n.app_id.as_deref(), e["bundleId"].as_str(), "{file}");
    assert_eq!(
        n.environment,
        match environment_of(e) {
            AppleEnvironment::Production => Environment::Production,
            AppleEnvironment::Sandbox => Environment::Sandbox,
        },
        "{file}"
    );
    assert_eq!(
        n.occurred_at_ms,
        e["signedDateMs"].as_i64().unwrap(),
        "{file}"
    );
    assert_eq!(
        n.state.status,
        opt_i64(&e["dataStatus"]).map(|s| storehook_apple::map::status(s).unwrap()),
        "{file}"
    );
    assert_eq!(n.attention.is_some(), t == "CONSUMPTION_REQUEST", "{file}");
    if let Some(tx) = e.get("transaction") {
        assert_eq!(
            n.subscription_key.as_deref(),
            opt_str(&tx["originalTransactionId"]),
            "{file}"
        );
        assert_eq!(
            n.details.transaction_id.as_deref(),
            opt_str(&tx["transactionId"]),
            "{file}"
        );
        assert_eq!(
            n.details.original_transaction_id.as_deref(),
            opt_str(&tx["originalTransactionId"]),
            "{file}"
        );
        assert_eq!(n.product_id.as_deref(), opt_str(&tx["productId"]), "{file}");
        assert_eq!(
            n.details.purchased_at_ms,
            opt_i64(&tx["purchaseDate"]),
            "{file}"
        );
        let past = matches!(t, "REFUND" | "CONSUMPTION_REQUEST");
        if !past {
            assert_eq!(n.state.expires_at_ms, opt_i64(&tx["expiresDate"]), "{file}");
            assert_eq!(
                n.state.product_id.as_deref(),
                opt_str(&tx["productId"]),
                "{file}"
            );
        } else {
            // The current period, from the renewal info (none for a consumable).
            let renewal = &n.decoded["data"]["signedRenewalInfo"];
            assert_eq!(
                n.state.expires_at_ms,
                renewal["renewalDate"].as_i64(),
                "{file}"
            );
            assert_eq!(
                n.state.product_id.as_deref(),
                renewal["productId"].as_str(),
                "{file}"
            );
        }
        assert_eq!(
            n.details.cancel_reason.is_some(),
            !tx["revocationReason"].is_null(),
            "{file}"
        );
        assert_decoded_as(
            &n.decoded["data"]["signedTransactionInfo"],
            tx,
            &[
                "transactionId",
                "originalTransactionId",
                "productId",
                "type",
                "purchaseDate",
                "signedDate",
            ],
            &format!("{file} transaction"),
        );
    }
    if let Some(r) = e.get("renewalInfo") {
        assert_eq!(
            n.state.auto_renew,
            opt_i64(&r["autoRenewStatus"]).map(|s| s == 1),
            "{file}"
        );
        assert_decoded_as(
            &n.decoded["data"]["signedRenewalInfo"],
            r,
            &[
                "autoRenewStatus",
                "autoRenewProductId",
                "productId",
                "expirationIntent",
                "signedDate",
            ],
            &format!("{file} renewal"),
        );
    } else {
        assert_eq!(n.state.auto_renew, None, "{file}");
        assert!(
            n.decoded["data"].get("signedRenewalInfo").is_none(),
            "{file}"
        );
    }
}

/// A nested JWS, decoded, has the `fields` Apple's library reported (a
/// missing one is null on both sides).
fn assert_decoded_as(decoded: &Value, expected: &Value, fields: &[&str], what: &str) {
    for field in fields {
        assert_eq!(decoded[field], expected[field], "{what} {field}");
    }
}

/// Every entry of expectations.json answers as Apple's library 3.1.2 did.
#[test]
fn every_real_notification_answers_as_apples_library() {
    let entries = expectations();
    assert_eq!(entries.len(), 13);
    for e in &entries {
        let file = e["file"].as_str().unwrap();
        let result = adapter_for(e).verify_body(&real_body(e), NOW_2026_MS);
        match e["expected"].as_str().unwrap() {
            "accept" => {
                let n =
                    result.unwrap_or_else(|err| panic!("{file}: {} {}", err.code(), err.message()));
                check_decoded(e, &n);
            }
            "reject" => {
                assert!(
                    e["officialLibrary_3_1_2"]
                        .as_str()
                        .unwrap()
                        .contains("VERIFICATION_FAILURE"),
                    "{file}"
                );
                let err = assert_refused(result, "VERIFICATION_FAILURE");
                assert!(
                    err.message().contains("not valid at"),
                    "{file}: {}",
                    err.message()
                );
            }
            other => panic!("{file}: unknown expectation {other}"),
        }
    }
}

/// real-13 verifies at its nested signedDate (2022): with the clock set
/// there, as the manifest says the official library then accepts it.
#[test]
fn real_13_verifies_when_now_is_2022() {
    let e = entry("real-13.json");
    let n = adapter_for(&e)
        .verify_body(&real_body(&e), 1_646_387_008_254 + 60_000)
        .unwrap();
    assert_eq!(n.raw_type, "DID_RENEW");
    assert_eq!(n.subscription_key.as_deref(), Some("2000000000842607"));
    assert_eq!(n.occurred_at_ms, 1_646_387_008_254 + 60_000);
}

/// What charts read from real notifications: none is a free trial (no
/// offer, a price), each carries its price and currency, and none is in a
/// billing grace period.
#[test]
fn real_notifications_say_what_charts_need() {
    for (file, price, currency) in [
        ("real-2.json", 32.99, "USD"),
        ("real-4.json", 1.99, "AUD"),
        ("real-10.json", 1.99, "AUD"),
    ] {
        let e = entry(file);
        let n = adapter_for(&e)
            .verify_body(&real_body(&e), NOW_2026_MS)
            .unwrap();
        assert_eq!(n.details.is_trial, Some(false), "{file}");
        assert_eq!(n.details.price, Some(price), "{file}");
        assert_eq!(n.details.currency.as_deref(), Some(currency), "{file}");
        assert_eq!(n.details.grace_period_expires_at_ms, None, "{file}");
    }
    // real-13's transaction says neither its price nor an offer: unknown.
    let e = entry("real-13.json");
    let n = adapter_for(&e)
        .verify_body(&real_body(&e), 1_646_387_008_254 + 60_000)
        .unwrap();
    assert_eq!(n.details.is_trial, None);
}

/// MANIFEST.md's negative checks, on every accepted real file.
#[test]
fn wrong_bundle_id_and_wrong_environment_are_refused() {
    for e in expectations() {
        let file = e["file"].as_str().unwrap();
        let bundle = e["bundleId"].as_str().unwrap();
        let env = environment_of(&e);
        let other_env = match env {
            AppleEnvironment::Production => AppleEnvironment::Sandbox,
            AppleEnvironment::Sandbox => AppleEnvironment::Production,
        };
        let id = e["appAppleId"].as_i64();
        let roots = vec![APPLE_ROOT_CA_G3.to_vec()];
        let body = real_body(&e);
        if e["expected"] == "reject" {
            // The chain check fails first, whatever the configuration.
            let wrong = adapter(&[(&format!("{bundle}x"), id)], &[env], roots.clone());
            assert_refused(
                wrong.verify_body(&body, NOW_2026_MS),
                "VERIFICATION_FAILURE",
            );
            continue;
        }
        let wrong_bundle = adapter(
            &[(&format!("{bundle}x"), id.or(Some(1)))],
            &[env],
            roots.clone(),
        );
        assert_refused(
            wrong_bundle.verify_body(&body, NOW_2026_MS),
            "INVALID_APP_IDENTIFIER",
        );
        let other = adapter(&[(bundle, id.or(Some(1)))], &[other_env], roots.clone());
        let expected = if file == "real-1.json" {
            // Production configured: the missing appAppleId is compared first.
            "INVALID_APP_IDENTIFIER"
        } else {
            "INVALID_ENVIRONMENT"
        };
        let err = assert_refused(other.verify_body(&body, NOW_2026_MS), expected);
        assert!(
            err.message().starts_with("signedPayload"),
            "{file}: {}",
            err.message()
        );
    }
}

/// The Production sample needs its app Apple id.
#[test]
fn production_needs_the_app_apple_id() {
    let e = entry("real-12.json");
    let wrong = adapter(
        &[("com.jrjj.keysns", Some(1))],
        PRODUCTION,
        vec![APPLE_ROOT_CA_G3.to_vec()],
    );
    assert_refused(
        wrong.verify_body(&real_body(&e), NOW_2026_MS),
        "INVALID_APP_IDENTIFIER",
    );
}

fn real_4_parts() -> (Value, String, String) {
    let jws = real_signed_payload(4);
    let mut parts = jws.split('.');
    let header = segment_json(parts.next().unwrap());
    let rest_payload = parts.next().unwrap().to_owned();
    let sig = parts.next().unwrap().to_owned();
    (header, rest_payload, sig)
}

#[test]
fn real_4_with_a_flipped_signature_bit_fails() {
    let e = entry("real-4.json");
    let jws = real_signed_payload(4);
    let (head, sig) = jws.rsplit_once('.').unwrap();
    let mut raw =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig).unwrap();
    raw[10] ^= 0x01;
    let flipped = format!("{head}.{}", b64url(&raw));
    refuses(&adapter_for(&e), &flipped, "VERIFICATION_FAILURE");
}

#[test]
fn real_4_without_x5c_2_has_the_wrong_chain_length() {
    let e = entry("real-4.json");
    let (mut header, payload, sig) = real_4_parts();
    header["x5c"].as_array_mut().unwrap().pop();
    let jws = format!("{}.{payload}.{sig}", b64url(header.to_string().as_bytes()));
    refuses(&adapter_for(&e), &jws, "INVALID_CHAIN_LENGTH");
}

#[test]
fn real_4_with_alg_es384_fails() {
    let e = entry("real-4.json");
    let (mut header, payload, sig) = real_4_parts();
    header["alg"] = json!("ES384");
    let jws = format!("{}.{payload}.{sig}", b64url(header.to_string().as_bytes()));
    refuses(&adapter_for(&e), &jws, "VERIFICATION_FAILURE");
}

/// Every nested JWS of the real corpus also verifies on its own, through
/// the library-equivalent calls (23 in all, with real-13's two at 2022).
#[test]
fn every_real_nested_jws_verifies() {
    let mut count = 0;
    for e in expectations() {
        let file = e["file"].as_str().unwrap();
        let adapter = adapter_for(&e);
        let scoped = adapter
            .scoped(e["bundleId"].as_str().unwrap(), environment_of(&e))
            .unwrap();
        let jws = corpus_json(file)["signedPayload"]
            .as_str()
            .unwrap()
            .to_owned();
        let payload = segment_json(jws.split('.').nth(1).unwrap());
        // Each nested JWS has its own signedDate, so "now" does not matter,
        // real-13's included.
        let now = NOW_2026_MS;
        if let Some(jws) = payload["data"]["signedTransactionInfo"].as_str() {
            let (tx, _) = scoped
                .verify_and_decode_signed_transaction(jws, now)
                .unwrap();
            assert_eq!(
                tx.transaction_id(),
                e["transaction"]["transactionId"].as_str(),
                "{file}"
            );
            count += 1;
        }
        if let Some(jws) = payload["data"]["signedRenewalInfo"].as_str() {
            scoped.verify_and_decode_renewal_info(jws, now).unwrap();
            count += 1;
        }
    }
    assert_eq!(count, 23);
}

/// One sandbox subscription, in the order Apple sent it: each notification
/// decodes to the expected key, type and state, and the state folded the
/// way the host folds it (newer wins, field by field) ends where the last
/// notification says.
#[test]
fn the_real_subscription_sequence_ends_in_the_last_stated_status() {
    let sequence = [
        (4, EventType::Renewal),
        (5, EventType::Cancellation),
        (9, EventType::Expiration),
        (6, EventType::ProductChange),
        (7, EventType::ProductChange),
        (8, EventType::ProductChange),
        (3, EventType::Renewal),
        (11, EventType::Other),
        (10, EventType::Refund),
    ];
    let adapter = adapter(
        &[("com.loki-project.loki-messenger", Some(1_470_168_868))],
        BOTH,
        vec![APPLE_ROOT_CA_G3.to_vec()],
    );
    let mut state = ImpliedState::default();
    let mut last_at = 0;
    for (n, event) in sequence {
        let v = adapter
            .verify_body(&corpus(&format!("real-{n}.json")), NOW_2026_MS)
            .unwrap_or_else(|e| panic!("real-{n}: {}", e.message()));
        assert_eq!(
            v.subscription_key.as_deref(),
            Some("2000001024993299"),
            "real-{n}"
        );
        assert_eq!(v.event_type, event, "real-{n}");
        assert!(v.occurred_at_ms > last_at, "real-{n} is out of order");
        last_at = v.occurred_at_ms;
        state.merge(&v.state);
        match n {
            5 => assert_eq!(state.auto_renew, Some(false)),
            9 => {
                assert_eq!(state.status, Some(SubscriptionStatus::Expired));
                assert_eq!(v.details.expiration_reason.as_deref(), Some("VOLUNTARY"));
            }
            3 => {
                assert_eq!(state.status, Some(SubscriptionStatus::Active));
                assert_eq!(
                    state.product_id.as_deref(),
                    Some("com.getsession.org.pro_sub_3_months")
                );
            }
            11 => assert!(v
                .attention
                .as_deref()
                .unwrap()
                .contains("UNINTENDED_PURCHASE")),
            10 => assert_eq!(
                v.details.cancel_reason.as_deref(),
                Some("REFUNDED_FOR_OTHER_REASON")
            ),
            _ => {}
        }
    }
    assert_eq!(
        state,
        ImpliedState {
            status: Some(SubscriptionStatus::Active),
            expires_at_ms: Some(1_760_592_314_000),
            auto_renew: Some(true),
            product_id: Some("com.getsession.org.pro_sub_3_months".into()),
        }
    );
    // One chain for all of them, verified once.
    assert_eq!(adapter.verifier().chain_verifier().full_verifications(), 1);
}
