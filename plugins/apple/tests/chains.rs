//! Chains built here (rcgen, with Apple's OIDs) against every way the
//! verification must fail, and the cache.

mod support;

use serde_json::{json, Value};
use storehook_apple::AppleAdapter;
use storehook_core::{EventType, SubscriptionStatus};
use support::*;

/// A good chain whose leaf expired on 2025-01-01.
fn chain_expiring_2025() -> TestChain {
    TestChain::new(ChainOptions {
        leaf_validity: ((2020, 1, 1), (2025, 1, 1)),
        ..Default::default()
    })
}

fn adapter_trusting(chain: &TestChain) -> AppleAdapter {
    adapter(&[(BUNDLE, Some(APP_ID))], BOTH, vec![chain.root.clone()])
}

/// A good chain and an adapter trusting its root.
fn good_chain_and_adapter() -> (TestChain, AppleAdapter) {
    let chain = TestChain::good();
    let adapter = adapter_trusting(&chain);
    (chain, adapter)
}

/// A SUBSCRIBED notification from Sandbox, signed in June 2025 (when the
/// test chains are valid).
fn june_notification(chain: &TestChain) -> Value {
    subscribed_notification(chain, "Sandbox", JUNE_2025_MS)
}

#[test]
fn a_good_chain_verifies_and_decodes() {
    let (chain, adapter) = good_chain_and_adapter();
    let jws = chain.sign(&june_notification(&chain));
    let n = verify(&adapter, &jws).unwrap();
    assert_eq!(n.event_type, EventType::InitialPurchase);
    assert_eq!(n.raw_type, "SUBSCRIBED/INITIAL_BUY");
    assert_eq!(n.subscription_key.as_deref(), Some("2000000000000001"));
    assert_eq!(n.environment, storehook_core::Environment::Sandbox);
    assert_eq!(n.occurred_at_ms, JUNE_2025_MS);
    assert_eq!(n.state.status, Some(SubscriptionStatus::Active));
    assert_eq!(n.state.auto_renew, Some(true));
    assert_eq!(n.state.expires_at_ms, Some(JUNE_2025_MS + 30 * 86_400_000));
    assert_eq!(n.state.product_id.as_deref(), Some("pro.monthly"));
    assert_eq!(
        n.app_user_id_hint.as_deref(),
        Some("7e3fb20b-4cdb-47cc-936d-99d65f608138")
    );
    assert_eq!(n.details.price, Some(9.99));
    assert_eq!(n.details.currency.as_deref(), Some("EUR"));
    assert_eq!(
        n.details.transaction_id.as_deref(),
        Some("2000000000000002")
    );
    // Nested JWS are replaced by their decoded payloads.
    assert_eq!(
        n.decoded["data"]["signedTransactionInfo"]["productId"],
        "pro.monthly"
    );
    assert_eq!(n.decoded["data"]["signedRenewalInfo"]["autoRenewStatus"], 1);
}

#[test]
fn each_missing_oid_is_a_verification_failure() {
    for (options, what) in [
        (
            ChainOptions {
                leaf_oid: false,
                ..Default::default()
            },
            "receipt-signing",
        ),
        (
            ChainOptions {
                intermediate_oid: false,
                ..Default::default()
            },
            "WWDR",
        ),
    ] {
        let chain = TestChain::new(options);
        let adapter = adapter_trusting(&chain);
        let jws = chain.sign(&june_notification(&chain));
        let e = refuses(&adapter, &jws, "VERIFICATION_FAILURE");
        assert!(e.message().contains(what), "{}", e.message());
    }
}

#[test]
fn an_intermediate_that_is_not_a_ca_fails() {
    let chain = TestChain::new(ChainOptions {
        intermediate_is_ca: false,
        ..Default::default()
    });
    let adapter = adapter_trusting(&chain);
    let jws = chain.sign(&june_notification(&chain));
    refuses(&adapter, &jws, "VERIFICATION_FAILURE");
}

#[test]
fn chains_of_one_two_and_four_have_the_wrong_length() {
    let (chain, adapter) = good_chain_and_adapter();
    let payload = june_notification(&chain);
    let x5c = chain.x5c();
    for certs in [
        vec![x5c[0].clone()],
        vec![x5c[0].clone(), x5c[1].clone()],
        vec![
            x5c[0].clone(),
            x5c[1].clone(),
            x5c[2].clone(),
            x5c[2].clone(),
        ],
    ] {
        let jws = chain.sign_with_header(&json!({"alg": "ES256", "x5c": certs}), &payload);
        refuses(&adapter, &jws, "INVALID_CHAIN_LENGTH");
    }
}

#[test]
fn a_chain_to_another_root_fails() {
    let chain = TestChain::good();
    let other = TestChain::good();
    // Pinned: another CA (and Apple's real root).
    let adapter = adapter(
        &[(BUNDLE, Some(APP_ID))],
        BOTH,
        vec![
            other.root.clone(),
            storehook_apple::APPLE_ROOT_CA_G3.to_vec(),
        ],
    );
    let jws = chain.sign(&june_notification(&chain));
    refuses(&adapter, &jws, "VERIFICATION_FAILURE");
    // x5c[2] claiming to be the pinned root changes nothing: it is never used.
    let mut x5c = chain.x5c();
    x5c[2] = b64(&other.root);
    let jws = chain.sign_with_header(
        &json!({"alg": "ES256", "x5c": x5c}),
        &june_notification(&chain),
    );
    refuses(&adapter, &jws, "VERIFICATION_FAILURE");
}

#[test]
fn x5c_2_is_never_used() {
    let (chain, adapter) = good_chain_and_adapter();
    let mut x5c = chain.x5c();
    x5c[2] = "not a certificate at all!".into();
    let jws = chain.sign_with_header(
        &json!({"alg": "ES256", "x5c": x5c}),
        &json!({"notificationType": "TEST", "notificationUUID": "u", "signedDate": JUNE_2025_MS,
                "data": {"bundleId": BUNDLE, "environment": "Sandbox"}}),
    );
    assert_eq!(verify(&adapter, &jws).unwrap().event_type, EventType::Test);
}

#[test]
fn validity_is_checked_at_each_payloads_signed_date() {
    // The leaf expired on 2025-01-01.
    let chain = chain_expiring_2025();
    let adapter = adapter_trusting(&chain);
    let before = 1_704_067_200_000; // 2024-01-01
    let n = verify(
        &adapter,
        &chain.sign(&subscribed_notification(&chain, "Sandbox", before)),
    );
    assert!(n.is_ok(), "{n:?}");
    // Same chain, cached now; a payload signed after expiry fails.
    let e = refuses(
        &adapter,
        &chain.sign(&june_notification(&chain)),
        "VERIFICATION_FAILURE",
    );
    assert!(e.message().contains("not valid at"), "{}", e.message());
    // Not yet valid: signed before the leaf's notBefore.
    let e = refuses(
        &adapter,
        &chain.sign(&subscribed_notification(
            &chain,
            "Sandbox",
            1_500_000_000_000,
        )),
        "VERIFICATION_FAILURE",
    );
    assert!(e.message().contains("not valid at"), "{}", e.message());
    assert_eq!(adapter.verifier().chain_verifier().full_verifications(), 1);
}

#[test]
fn a_nested_jws_is_checked_at_its_own_signed_date() {
    let chain = chain_expiring_2025();
    let adapter = adapter_trusting(&chain);
    let before = 1_704_067_200_000; // 2024-01-01, valid
    let mut payload = subscribed_notification(&chain, "Sandbox", before);
    // The transaction says it was signed after the leaf expired.
    payload["data"]["signedTransactionInfo"] =
        Value::String(chain.sign(&transaction_payload("Sandbox", JUNE_2025_MS)));
    refuses_nested(
        &adapter,
        &chain.sign(&payload),
        "data.signedTransactionInfo",
    );
}

#[test]
fn without_signed_date_validity_is_checked_now() {
    let chain = chain_expiring_2025();
    let adapter = adapter_trusting(&chain);
    let payload = json!({"notificationType": "TEST", "notificationUUID": "u",
                         "data": {"bundleId": BUNDLE, "environment": "Sandbox"}});
    let jws = chain.sign(&payload);
    let in_2024 = 1_704_067_200_000;
    let n = adapter.verify_body(&body(&jws), in_2024).unwrap();
    assert_eq!(n.occurred_at_ms, in_2024);
    assert_refused(
        adapter.verify_body(&body(&jws), NOW_2026_MS),
        "VERIFICATION_FAILURE",
    );
}

#[test]
fn a_tampered_payload_fails() {
    let (chain, adapter) = good_chain_and_adapter();
    let jws = chain.sign(&june_notification(&chain));
    let mut parts: Vec<String> = jws.split('.').map(str::to_owned).collect();
    let mut payload = segment_json(&parts[1]);
    payload["data"]["status"] = json!(5);
    parts[1] = b64url(payload.to_string().as_bytes());
    refuses(&adapter, &parts.join("."), "VERIFICATION_FAILURE");
    // A signature from another key over the same bytes.
    let other = TestChain::good();
    let resigned = sign_raw(
        &chain.header().to_string(),
        &payload.to_string(),
        &other.leaf_key,
    );
    refuses(&adapter, &resigned, "VERIFICATION_FAILURE");
}

#[test]
fn only_es256_is_accepted() {
    let (chain, adapter) = good_chain_and_adapter();
    let payload = june_notification(&chain);
    for alg in [
        json!("ES384"),
        json!("none"),
        json!("HS256"),
        json!("es256"),
        json!(null),
        json!(256),
    ] {
        let jws = chain.sign_with_header(&json!({"alg": alg, "x5c": chain.x5c()}), &payload);
        refuses(&adapter, &jws, "VERIFICATION_FAILURE");
    }
    let jws = chain.sign_with_header(&json!({"x5c": chain.x5c()}), &payload);
    refuses(&adapter, &jws, "VERIFICATION_FAILURE");
}

#[test]
fn a_jws_must_have_three_parts() {
    let (chain, adapter) = good_chain_and_adapter();
    let jws = chain.sign(&june_notification(&chain));
    let parts: Vec<&str> = jws.split('.').collect();
    for bad in [
        parts[..2].join("."),
        format!("{jws}.{}", parts[2]),
        format!("{}.{}..{}", parts[0], parts[1], parts[2]),
        parts[0].to_owned(),
        String::new(),
        "a.b.c".into(),
        "a.b.c.d".into(),
    ] {
        refuses(&adapter, &bad, "VERIFICATION_FAILURE");
    }
}

#[test]
fn bad_base64_in_x5c_is_an_invalid_certificate() {
    let (chain, adapter) = good_chain_and_adapter();
    let payload = june_notification(&chain);
    let x5c = chain.x5c();
    let mut cases = vec![
        ("%%%".to_owned(), x5c[1].clone()),
        (x5c[0].clone(), "abc".to_owned()),
        (format!("{} ", x5c[0]), x5c[1].clone()),
        (b64(b"abc"), x5c[1].clone()),
        (x5c[0].clone(), b64(&chain.leaf[..100])),
        (String::new(), x5c[1].clone()),
    ];
    // Variants that differ from the original only where it has such characters.
    for variant in [
        x5c[0].trim_end_matches('=').to_owned(),
        x5c[0].replace('+', "-").replace('/', "_"),
    ] {
        if variant != x5c[0] {
            cases.push((variant, x5c[1].clone()));
        }
    }
    for (leaf, intermediate) in cases {
        let header = json!({"alg": "ES256", "x5c": [leaf, intermediate, x5c[2]]});
        let jws = chain.sign_with_header(&header, &payload);
        refuses(&adapter, &jws, "INVALID_CERTIFICATE");
    }
    // Entries that are not strings.
    let header = json!({"alg": "ES256", "x5c": [1, 2, 3]});
    refuses(
        &adapter,
        &chain.sign_with_header(&header, &payload),
        "INVALID_CERTIFICATE",
    );
    // x5c a 3-character string or a 3-key object: Python's len() is 3.
    let header = json!({"alg": "ES256", "x5c": "abc"});
    refuses(
        &adapter,
        &chain.sign_with_header(&header, &payload),
        "INVALID_CERTIFICATE",
    );
    let header = json!({"alg": "ES256", "x5c": {"a": 1, "b": 2, "c": 3}});
    refuses(
        &adapter,
        &chain.sign_with_header(&header, &payload),
        "INVALID_CERTIFICATE",
    );
}

#[test]
fn missing_or_empty_x5c_and_bad_header_fields_fail() {
    let (chain, adapter) = good_chain_and_adapter();
    let payload = june_notification(&chain);
    for header in [
        json!({"alg": "ES256"}),
        json!({"alg": "ES256", "x5c": null}),
        json!({"alg": "ES256", "x5c": []}),
        json!({"alg": "ES256", "x5c": ""}),
        json!({"alg": "ES256", "x5c": 3}),
        json!({"alg": "ES256", "x5cwrong": chain.x5c()}),
        json!({"alg": "ES256", "x5c": chain.x5c(), "kid": 1}),
        json!({"alg": "ES256", "x5c": chain.x5c(), "b64": false}),
        json!(["ES256"]),
    ] {
        let jws = chain.sign_with_header(&header, &payload);
        refuses(&adapter, &jws, "VERIFICATION_FAILURE");
    }
    // A string kid is fine (PyJWT only checks its type).
    let jws = chain.sign_with_header(
        &json!({"alg": "ES256", "x5c": chain.x5c(), "kid": "k"}),
        &payload,
    );
    assert!(verify(&adapter, &jws).is_ok());
}

#[test]
fn a_nested_jws_signed_by_another_key_fails() {
    let (chain, adapter) = good_chain_and_adapter();
    let stranger = TestChain::good();
    let mut payload = june_notification(&chain);
    // Carries our chain but is signed by another key.
    payload["data"]["signedRenewalInfo"] = Value::String(sign(
        &chain.header(),
        &renewal_payload("Sandbox", JUNE_2025_MS),
        &stranger.leaf_key,
    ));
    refuses_nested(&adapter, &chain.sign(&payload), "data.signedRenewalInfo");
    // Signed by an untrusted chain altogether.
    payload["data"]["signedRenewalInfo"] =
        Value::String(stranger.sign(&renewal_payload("Sandbox", JUNE_2025_MS)));
    refuses_nested(&adapter, &chain.sign(&payload), "data.signedRenewalInfo");
    // Not a JWS at all.
    payload["data"]["signedTransactionInfo"] = json!("signed_transaction_info_value");
    refuses_nested(
        &adapter,
        &chain.sign(&payload),
        "data.signedTransactionInfo",
    );
}

#[test]
fn nested_payloads_are_checked_like_the_library_does() {
    let (chain, adapter) = good_chain_and_adapter();
    // Transaction of another app.
    let mut payload = june_notification(&chain);
    let mut tx = transaction_payload("Sandbox", JUNE_2025_MS);
    tx["bundleId"] = json!("com.other");
    payload["data"]["signedTransactionInfo"] = Value::String(chain.sign(&tx));
    refuses(&adapter, &chain.sign(&payload), "INVALID_APP_IDENTIFIER");
    // Transaction from another environment.
    payload["data"]["signedTransactionInfo"] =
        Value::String(chain.sign(&transaction_payload("Production", JUNE_2025_MS)));
    refuses(&adapter, &chain.sign(&payload), "INVALID_ENVIRONMENT");
    // Renewal info: only the environment is checked.
    let mut payload = june_notification(&chain);
    payload["data"]["signedRenewalInfo"] =
        Value::String(chain.sign(&renewal_payload("Production", JUNE_2025_MS)));
    refuses(&adapter, &chain.sign(&payload), "INVALID_ENVIRONMENT");
}

#[test]
fn app_checks_follow_apples_order() {
    let chain = TestChain::good();
    let roots = vec![chain.root.clone()];
    let sandbox = june_notification(&chain);
    let production = subscribed_notification(&chain, "Production", JUNE_2025_MS);

    // Several apps on one server.
    let many = adapter(
        &[("com.a", Some(1)), (BUNDLE, Some(APP_ID))],
        BOTH,
        roots.clone(),
    );
    assert!(verify(&many, &chain.sign(&sandbox)).is_ok());
    assert!(verify(&many, &chain.sign(&production)).is_ok());

    // Unknown bundle id.
    let other = adapter(&[("com.a", Some(1))], BOTH, roots.clone());
    refuses(&other, &chain.sign(&sandbox), "INVALID_APP_IDENTIFIER");
    // Production with the wrong app Apple id.
    let wrong_id = adapter(&[(BUNDLE, Some(APP_ID + 1))], BOTH, roots.clone());
    refuses(
        &wrong_id,
        &chain.sign(&production),
        "INVALID_APP_IDENTIFIER",
    );
    // ... which Sandbox does not check.
    assert!(verify(&wrong_id, &chain.sign(&sandbox)).is_ok());
    // Environment not accepted.
    let only_production = adapter(&[(BUNDLE, Some(APP_ID))], PRODUCTION, roots.clone());
    refuses(
        &only_production,
        &chain.sign(&sandbox),
        "INVALID_ENVIRONMENT",
    );
    let only_sandbox = adapter(&[(BUNDLE, Some(APP_ID))], SANDBOX, roots.clone());
    refuses(
        &only_sandbox,
        &chain.sign(&production),
        "INVALID_ENVIRONMENT",
    );
    // An app without app_apple_id cannot accept Production (the library
    // cannot even be configured so); its Sandbox verifier answers.
    let no_id = adapter(&[(BUNDLE, None)], BOTH, roots.clone());
    assert!(verify(&no_id, &chain.sign(&sandbox)).is_ok());
    refuses(&no_id, &chain.sign(&production), "INVALID_ENVIRONMENT");
    // App identifier is checked before the environment: a Sandbox payload
    // without appAppleId against Production answers INVALID_APP_IDENTIFIER.
    let test = json!({"notificationType": "TEST", "notificationUUID": "u", "signedDate": JUNE_2025_MS,
                      "data": {"bundleId": BUNDLE, "environment": "Sandbox"}});
    refuses(
        &only_production,
        &chain.sign(&test),
        "INVALID_APP_IDENTIFIER",
    );
    // No identity at all.
    let empty =
        json!({"notificationType": "TEST", "notificationUUID": "u", "signedDate": JUNE_2025_MS});
    refuses(&many, &chain.sign(&empty), "INVALID_APP_IDENTIFIER");
}

#[test]
fn a_verified_chain_is_not_verified_again() {
    let (chain, adapter) = good_chain_and_adapter();
    for i in 0..5 {
        let jws = chain.sign(&subscribed_notification(
            &chain,
            "Sandbox",
            JUNE_2025_MS + i,
        ));
        verify(&adapter, &jws).unwrap();
    }
    // Another header over the same leaf+intermediate (a kid, another x5c[2]).
    let mut x5c = chain.x5c();
    x5c[2] = "ignored".into();
    let header = json!({"alg": "ES256", "x5c": x5c, "kid": "x"});
    let jws = chain.sign_with_header(&header, &june_notification(&chain));
    verify(&adapter, &jws).unwrap();
    assert_eq!(adapter.verifier().chain_verifier().full_verifications(), 1);
}

#[test]
fn a_forged_signature_does_not_poison_the_cache() {
    let (chain, adapter) = good_chain_and_adapter();
    let stranger = TestChain::good();
    let payload = june_notification(&chain);
    let forged = sign(&chain.header(), &payload, &stranger.leaf_key);
    refuses(&adapter, &forged, "VERIFICATION_FAILURE");
    refuses(&adapter, &forged, "VERIFICATION_FAILURE");
    assert!(verify(&adapter, &chain.sign(&payload)).is_ok());
    refuses(&adapter, &forged, "VERIFICATION_FAILURE");
}

#[test]
fn pyjwt_registered_claims_are_enforced() {
    let (chain, adapter) = good_chain_and_adapter();
    let now_s = NOW_2026_MS / 1000;
    for (claim, value, ok) in [
        ("exp", json!(now_s + 60), true),
        ("exp", json!(now_s - 60), false),
        ("nbf", json!(now_s + 60), false),
        ("iat", json!(now_s + 60), false),
        ("iat", json!(now_s - 60), true),
        ("aud", json!("someone"), false),
        ("sub", json!(42), false),
    ] {
        let mut payload = june_notification(&chain);
        payload[claim] = value;
        let result = verify(&adapter, &chain.sign(&payload));
        if ok {
            assert!(result.is_ok(), "{claim}: {result:?}");
        } else {
            assert_refused(result, "VERIFICATION_FAILURE");
        }
    }
}

#[test]
fn a_signed_date_that_is_not_a_number_fails() {
    let (chain, adapter) = good_chain_and_adapter();
    let mut payload = june_notification(&chain);
    payload["signedDate"] = json!("yesterday");
    refuses(&adapter, &chain.sign(&payload), "VERIFICATION_FAILURE");
    // A numeric string is what Python's int() takes.
    payload["signedDate"] = json!(JUNE_2025_MS.to_string());
    assert!(verify(&adapter, &chain.sign(&payload)).is_ok());
}

#[test]
fn unknown_types_are_kept_raw() {
    let (chain, adapter) = good_chain_and_adapter();
    let mut payload = june_notification(&chain);
    payload["notificationType"] = json!("SOMETHING_NEW");
    payload["subtype"] = json!("BRAND_NEW");
    let n = verify(&adapter, &chain.sign(&payload)).unwrap();
    assert_eq!(n.event_type, EventType::Other);
    assert_eq!(n.raw_type, "SOMETHING_NEW/BRAND_NEW");
}

#[test]
fn a_payload_off_apples_schema_is_refused() {
    let (chain, adapter) = good_chain_and_adapter();
    let mut payload = june_notification(&chain);
    payload["data"]["status"] = json!({"not": "a number"});
    let e = refuses(&adapter, &chain.sign(&payload), "VERIFICATION_FAILURE");
    assert!(e.message().contains("schema"), "{}", e.message());
}

#[test]
fn a_notification_without_uuid_gets_a_stable_id() {
    let (chain, adapter) = good_chain_and_adapter();
    let mut payload = june_notification(&chain);
    payload.as_object_mut().unwrap().remove("notificationUUID");
    let jws = chain.sign(&payload);
    let a = verify(&adapter, &jws).unwrap();
    let b = verify(&adapter, &jws).unwrap();
    assert!(a.notification_id.starts_with("sha256:"));
    assert_eq!(a.notification_id, b.notification_id);
}

/// A refusal never quotes a certificate's names: until the chain verifies
/// they are anyone's text (issue 12, item 7).
#[test]
fn refusals_do_not_quote_certificate_names() {
    const MARKER: &str = " MARKER <b>visit evil.example</b>";
    let forged = TestChain::new(ChainOptions {
        names_suffix: MARKER,
        ..Default::default()
    });
    let genuine = TestChain::good();
    let adapter = adapter_trusting(&genuine);
    let payload = subscribed_notification(&forged, "Sandbox", JUNE_2025_MS);
    // A chain to a root that is not pinned.
    let e = refuses(&adapter, &forged.sign(&payload), "VERIFICATION_FAILURE");
    assert!(!e.message().contains("MARKER"), "{}", e.message());
    // A leaf whose issuer is not the intermediate it is sent with.
    let mut x5c = genuine.x5c();
    x5c[0] = b64(&forged.leaf);
    let jws = forged.sign_with_header(&json!({"alg": "ES256", "x5c": x5c}), &payload);
    let e = refuses(&adapter, &jws, "VERIFICATION_FAILURE");
    assert!(!e.message().contains("MARKER"), "{}", e.message());
}

/// The payload is not decoded before the signature over it verified: a
/// forged JWS with a genuine header and an undecodable payload is refused
/// for its signature, and a signed payload that is not JSON is still named
/// as such (issue 12, item 9).
#[test]
fn the_signature_is_checked_before_the_payload_is_decoded() {
    let (chain, adapter) = good_chain_and_adapter();
    let genuine = chain.sign(&june_notification(&chain));
    let header = genuine.split('.').next().unwrap();
    let garbage_payload = "!".repeat(200_000);
    let forged = format!("{header}.{garbage_payload}.{}", b64url(&[7u8; 64]));
    let e = refuses(&adapter, &forged, "VERIFICATION_FAILURE");
    assert!(e.message().contains("signature"), "{}", e.message());

    let not_json = sign_raw(&chain.header().to_string(), "not json", &chain.leaf_key);
    let e = refuses(&adapter, &not_json, "VERIFICATION_FAILURE");
    assert!(e.message().contains("not JSON"), "{}", e.message());
}
