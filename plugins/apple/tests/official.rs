//! Apple's own test vectors (`official-vectors/`), each with the outcome
//! MANIFEST.md records for the official library (strict X.509 checks off, as
//! Apple's tests run it).

mod support;

use ring::signature::EcdsaKeyPair;
use serde_json::{json, Value};
use storehook_apple::{AppleAdapter, AppleEnvironment, VerificationStatus, APPLE_ROOT_CA_G3};
use storehook_core::{Environment, EventType, SubscriptionStatus};
use support::*;

const CERTS: &str = "official-vectors/certs";

fn test_ca() -> Vec<u8> {
    corpus(&format!("{CERTS}/testCA.der"))
}

fn pem(name: &str) -> Vec<u8> {
    corpus_pem_der(&format!("{CERTS}/{name}.pem"))
}

fn mock(name: &str) -> String {
    corpus_text(&format!("official-vectors/mock_signed_data/{name}"))
        .trim()
        .to_owned()
}

fn official(apps: &[(&str, Option<i64>)], environments: &[AppleEnvironment]) -> AppleAdapter {
    adapter(apps, environments, vec![test_ca()])
}

fn chain_status(adapter: &AppleAdapter, x5c: Value, at: i64) -> Result<(), VerificationStatus> {
    adapter
        .verifier()
        .verify_chain(&x5c, at)
        .map(|_| ())
        .map_err(|e| e.status)
}

/// The chain table of MANIFEST.md (`tests/test_x509_verifiction.py`).
#[test]
fn chain_vectors() {
    use VerificationStatus::*;
    let test = official(&[("com.example", Some(1))], BOTH);
    let apple = adapter(
        &[("com.example", Some(1))],
        BOTH,
        vec![APPLE_ROOT_CA_G3.to_vec()],
    );
    let leaf = b64(&pem("testLeaf"));
    let intermediate = b64(&pem("testIntermediate"));
    let root = b64(&test_ca());

    assert_eq!(
        chain_status(&test, json!([leaf, intermediate, root]), NOV_2025_S),
        Ok(())
    );
    assert_eq!(
        chain_status(
            &test,
            json!([
                b64(&pem("testInvalidIntermediateLeaf")),
                b64(&pem("testInvalidOIDIntermediate")),
                root
            ]),
            NOV_2025_S
        ),
        Err(VerificationFailure)
    );
    assert_eq!(
        chain_status(
            &test,
            json!([b64(&pem("testInvalidOIDLeaf")), intermediate, root]),
            NOV_2025_S
        ),
        Err(VerificationFailure)
    );
    assert_eq!(
        chain_status(&test, json!([intermediate, root]), NOV_2025_S),
        Err(InvalidChainLength)
    );
    for bad_leaf in ["abc".to_owned(), b64(b"abc")] {
        assert_eq!(
            chain_status(&test, json!([bad_leaf, intermediate, root]), NOV_2025_S),
            Err(InvalidCertificate)
        );
    }
    // 2042-04-12T20:20:46Z: expired.
    assert_eq!(
        chain_status(&test, json!([leaf, intermediate, root]), 2_280_946_846),
        Err(VerificationFailure)
    );
    // Trusting Apple's root instead of the test CA.
    assert_eq!(
        chain_status(&apple, json!([leaf, intermediate, root]), NOV_2025_S),
        Err(VerificationFailure)
    );
    // The real chain, whatever x5c[2] holds.
    let real_leaf = b64(&corpus(&format!("{CERTS}/realAppleReceiptSigningLeaf.der")));
    let real_intermediate = b64(&corpus(&format!("{CERTS}/realAppleWWDRG6Intermediate.der")));
    for anything in ["", "anything", root.as_str()] {
        assert_eq!(
            chain_status(
                &apple,
                json!([real_leaf, real_intermediate, anything]),
                NOV_2025_S
            ),
            Ok(())
        );
    }
    // 2025-09-01: before the leaf's notBefore.
    assert_eq!(
        chain_status(
            &apple,
            json!([real_leaf, real_intermediate, ""]),
            1_756_684_800
        ),
        Err(VerificationFailure)
    );
}

#[test]
fn test_notification() {
    let jws = mock("testNotification");
    // Its x5c[2] differs from the pinned testCA.der: it is ignored.
    let header = segment_json(jws.split('.').next().unwrap());
    assert_ne!(header["x5c"][2].as_str().unwrap(), b64(&test_ca()));

    let sandbox = official(&[("com.example", None)], SANDBOX);
    let n = verify(&sandbox, &jws).unwrap();
    assert_eq!(n.event_type, EventType::Test);
    assert_eq!(n.raw_type, "TEST");
    assert_eq!(n.subscription_key, None);
    assert_eq!(n.environment, Environment::Sandbox);
    // And through the library-equivalent call.
    let scoped = sandbox
        .scoped("com.example", AppleEnvironment::Sandbox)
        .unwrap();
    let (payload, _) = scoped
        .verify_and_decode_notification(&jws, NOW_2026_MS)
        .unwrap();
    assert_eq!(payload.notification_type(), Some("TEST"));

    let production = official(&[("com.example", Some(1234))], PRODUCTION);
    refuses(&production, &jws, "INVALID_ENVIRONMENT");
    let wrong_id = official(&[("com.example", Some(1235))], PRODUCTION);
    refuses(&wrong_id, &jws, "INVALID_APP_IDENTIFIER");
    let apple_root = adapter(
        &[("com.example", None)],
        SANDBOX,
        vec![APPLE_ROOT_CA_G3.to_vec()],
    );
    refuses(&apple_root, &jws, "VERIFICATION_FAILURE");
}

#[test]
fn transaction_info() {
    let jws = mock("transactionInfo");
    let ok = official(&[("com.example", None)], SANDBOX);
    let scoped = ok.scoped("com.example", AppleEnvironment::Sandbox).unwrap();
    let (tx, _) = scoped
        .verify_and_decode_signed_transaction(&jws, NOW_2026_MS)
        .unwrap();
    assert_eq!(tx.bundle_id(), Some("com.example"));
    let other = official(&[("com.example.x", None)], SANDBOX);
    let scoped = other
        .scoped("com.example.x", AppleEnvironment::Sandbox)
        .unwrap();
    let err = scoped
        .verify_and_decode_signed_transaction(&jws, NOW_2026_MS)
        .unwrap_err();
    assert_eq!(err.status, VerificationStatus::InvalidAppIdentifier);
}

#[test]
fn renewal_info() {
    let jws = mock("renewalInfo");
    let sandbox = official(&[("com.example", None)], SANDBOX);
    let scoped = sandbox
        .scoped("com.example", AppleEnvironment::Sandbox)
        .unwrap();
    let (renewal, _) = scoped
        .verify_and_decode_renewal_info(&jws, NOW_2026_MS)
        .unwrap();
    assert_eq!(renewal.environment(), Some("Sandbox"));
    let production = official(&[("com.example", Some(1))], PRODUCTION);
    let scoped = production
        .scoped("com.example", AppleEnvironment::Production)
        .unwrap();
    let err = scoped
        .verify_and_decode_renewal_info(&jws, NOW_2026_MS)
        .unwrap_err();
    assert_eq!(err.status, VerificationStatus::InvalidEnvironment);
}

#[test]
fn wrong_bundle_id() {
    // No signedDate: validity at now (the test certificates last until 2033).
    let jws = mock("wrongBundleId");
    for configured in ["com.examplex", "com.example"] {
        let a = official(&[(configured, None)], SANDBOX);
        refuses(&a, &jws, "INVALID_APP_IDENTIFIER");
    }
    // The right bundle id, but the payload has no environment.
    let a = official(&[("com.example.wrong", None)], SANDBOX);
    refuses(&a, &jws, "INVALID_ENVIRONMENT");
}

#[test]
fn missing_x5c_header_claim() {
    let a = official(&[("com.example", None)], SANDBOX);
    refuses(&a, &mock("missingX5CHeaderClaim"), "VERIFICATION_FAILURE");
}

#[test]
fn malformed_jws_strings() {
    let a = official(&[("com.example", None)], SANDBOX);
    for jws in ["a.b.c.d", "a.b.c", mock("legacyTransaction").as_str()] {
        refuses(&a, jws, "VERIFICATION_FAILURE");
    }
}

/// Xcode-signed data carries a one-certificate x5c: refused with
/// INVALID_CHAIN_LENGTH (storehook never runs in the Xcode environment,
/// where the library would skip verification).
#[test]
fn xcode_signed_data_is_refused() {
    let a = official(
        &[("com.example.naturelab.backyardbirds.example", None)],
        SANDBOX,
    );
    for name in [
        "xcode-signed-app-transaction",
        "xcode-signed-renewal-info",
        "xcode-signed-transaction",
    ] {
        let jws = corpus_text(&format!("official-vectors/xcode/{name}"));
        let err = a
            .verifier()
            .verify_signed_object(jws.trim(), NOW_2026_MS)
            .unwrap_err();
        assert_eq!(err.status, VerificationStatus::InvalidChainLength, "{name}");
        refuses(&a, jws.trim(), "INVALID_CHAIN_LENGTH");
    }
}

/// Signs a models/ fixture with Apple's test chain, its environment
/// ("LocalTesting") replaced by `environment`.
struct TestSigner {
    key: EcdsaKeyPair,
    header: Value,
}

impl TestSigner {
    fn new() -> Self {
        Self {
            key: corpus_p256_key(&format!("{CERTS}/testLeaf.pk8.pem")),
            header: json!({
                "alg": "ES256",
                "x5c": [b64(&pem("testLeaf")), b64(&pem("testIntermediate")), b64(&test_ca())]
            }),
        }
    }

    fn sign(&self, payload: &Value) -> String {
        sign(&self.header, payload, &self.key)
    }
}

fn model(name: &str, environment: &str) -> Value {
    let text = corpus_text(&format!("official-vectors/models/{name}.json"));
    serde_json::from_str(&text.replace("\"LocalTesting\"", &format!("\"{environment}\""))).unwrap()
}

fn with_nested(signer: &TestSigner, mut notification: Value, environment: &str) -> Value {
    if notification.get("data").is_some() {
        notification["data"]["signedTransactionInfo"] =
            Value::String(signer.sign(&model("signedTransaction", environment)));
        notification["data"]["signedRenewalInfo"] =
            Value::String(signer.sign(&model("signedRenewalInfo", environment)));
    }
    notification
}

fn models_adapter() -> AppleAdapter {
    official(&[("com.example", Some(41234))], BOTH)
}

#[test]
fn model_subscribed_notification_maps() {
    let signer = TestSigner::new();
    let n = with_nested(&signer, model("signedNotification", "Sandbox"), "Sandbox");
    let v = verify(&models_adapter(), &signer.sign(&n)).unwrap();
    assert_eq!(v.event_type, EventType::InitialPurchase);
    assert_eq!(v.raw_type, "SUBSCRIBED/INITIAL_BUY");
    assert_eq!(v.notification_id, "002e14d5-51f5-4503-b5a8-c3a1af68eb20");
    assert_eq!(v.subscription_key.as_deref(), Some("12345"));
    assert_eq!(v.occurred_at_ms, 1_698_148_900_000);
    assert_eq!(v.product_id.as_deref(), Some("com.example.product"));
    assert_eq!(v.state.status, Some(SubscriptionStatus::Active));
    assert_eq!(v.state.expires_at_ms, Some(1_698_149_000_000));
    assert_eq!(v.state.auto_renew, Some(true));
    assert_eq!(
        v.app_user_id_hint.as_deref(),
        Some("7e3fb20b-4cdb-47cc-936d-99d65f608138")
    );
    assert_eq!(v.details.transaction_id.as_deref(), Some("23456"));
    assert_eq!(v.details.purchased_at_ms, Some(1_698_148_900_000));
    assert_eq!(v.details.price, Some(10.99));
    assert_eq!(v.details.currency.as_deref(), Some("USD"));
    assert_eq!(
        v.details.cancel_reason.as_deref(),
        Some("REFUNDED_DUE_TO_ISSUE")
    );
    assert_eq!(
        v.details.expiration_reason.as_deref(),
        Some("CUSTOMER_CANCELLED")
    );
    assert_eq!(
        v.decoded["data"]["signedTransactionInfo"]["storefront"],
        "USA"
    );
    assert_eq!(v.decoded["data"]["signedRenewalInfo"]["renewalPrice"], 9990);
}

#[test]
fn model_local_testing_environment_is_refused() {
    let signer = TestSigner::new();
    let n = model("signedNotification", "LocalTesting");
    refuses(&models_adapter(), &signer.sign(&n), "INVALID_ENVIRONMENT");
}

#[test]
fn model_consumption_request_asks_for_attention() {
    let signer = TestSigner::new();
    let n = with_nested(
        &signer,
        model("signedConsumptionRequestNotification", "Production"),
        "Production",
    );
    let v = verify(&models_adapter(), &signer.sign(&n)).unwrap();
    assert_eq!(v.event_type, EventType::Other);
    assert_eq!(v.raw_type, "CONSUMPTION_REQUEST");
    assert_eq!(v.environment, Environment::Production);
    let attention = v.attention.unwrap();
    assert!(
        attention.contains("UNINTENDED_PURCHASE") && attention.contains("12 hours"),
        "{attention}"
    );
}

#[test]
fn model_summary_notification_maps() {
    let signer = TestSigner::new();
    let n = model("signedSummaryNotification", "Sandbox");
    let v = verify(&models_adapter(), &signer.sign(&n)).unwrap();
    assert_eq!(v.event_type, EventType::Other);
    assert_eq!(v.raw_type, "RENEWAL_EXTENSION/SUMMARY");
    assert_eq!(v.subscription_key, None);
    assert_eq!(v.product_id.as_deref(), Some("com.example.product"));
    assert_eq!(v.decoded["summary"]["succeededCount"], 5);
}

#[test]
fn model_external_purchase_token_environment_comes_from_its_id() {
    let signer = TestSigner::new();
    let a = official(&[("com.example", Some(55555))], BOTH);
    let v = a
        .verify_body(
            &body(&signer.sign(&model("signedExternalPurchaseTokenNotification", "x"))),
            NOW_2026_MS,
        )
        .unwrap();
    assert_eq!(v.environment, Environment::Production);
    assert_eq!(v.raw_type, "EXTERNAL_PURCHASE_TOKEN/UNREPORTED");
    assert_eq!(v.event_type, EventType::Other);
    let v = a
        .verify_body(
            &body(&signer.sign(&model(
                "signedExternalPurchaseTokenSandboxNotification",
                "x",
            ))),
            NOW_2026_MS,
        )
        .unwrap();
    assert_eq!(v.environment, Environment::Sandbox);
    // Production checks the app Apple id.
    assert_refused(
        models_adapter().verify_body(
            &body(&signer.sign(&model("signedExternalPurchaseTokenNotification", "x"))),
            NOW_2026_MS,
        ),
        "INVALID_APP_IDENTIFIER",
    );
}

#[test]
fn model_rescind_consent_verifies_its_app_transaction() {
    let signer = TestSigner::new();
    let mut n = model("signedRescindConsentNotification", "Production");
    let app_transaction = json!({
        "receiptType": "Production", "appAppleId": 41234, "bundleId": "com.example",
        "applicationVersion": "1.2.3", "receiptCreationDate": 1_698_148_900_000_i64,
        "originalPlatform": "iOS", "appTransactionId": "71134"
    });
    n["appData"]["signedAppTransactionInfo"] = Value::String(signer.sign(&app_transaction));
    let v = verify(&models_adapter(), &signer.sign(&n)).unwrap();
    assert_eq!(v.raw_type, "RESCIND_CONSENT");
    assert_eq!(v.event_type, EventType::Other);
    assert_eq!(
        v.decoded["appData"]["signedAppTransactionInfo"]["appTransactionId"],
        "71134"
    );

    // An app transaction of another app Apple id (Production checks it).
    let mut other = app_transaction.clone();
    other["appAppleId"] = json!(1);
    n["appData"]["signedAppTransactionInfo"] = Value::String(signer.sign(&other));
    assert_refused_in(
        verify(&models_adapter(), &signer.sign(&n)),
        "INVALID_APP_IDENTIFIER",
        "appData.signedAppTransactionInfo",
    );
    // receiptType is its environment.
    let mut sandbox = app_transaction;
    sandbox["receiptType"] = json!("Sandbox");
    n["appData"]["signedAppTransactionInfo"] = Value::String(signer.sign(&sandbox));
    refuses(&models_adapter(), &signer.sign(&n), "INVALID_ENVIRONMENT");
}

#[test]
fn model_refund_with_revocation_maps() {
    let signer = TestSigner::new();
    let mut n = model("signedNotification", "Sandbox");
    n["notificationType"] = json!("REFUND");
    n["subtype"] = Value::Null;
    n["data"]["signedTransactionInfo"] =
        Value::String(signer.sign(&model("signedTransactionWithRevocation", "Sandbox")));
    n["data"]["signedRenewalInfo"] =
        Value::String(signer.sign(&model("signedRenewalInfo", "Sandbox")));
    let v = verify(&models_adapter(), &signer.sign(&n)).unwrap();
    assert_eq!(v.event_type, EventType::Refund);
    assert_eq!(v.raw_type, "REFUND");
    assert_eq!(
        v.details.cancel_reason.as_deref(),
        Some("REFUNDED_DUE_TO_ISSUE")
    );
    assert_eq!(
        v.decoded["data"]["signedTransactionInfo"]["revocationType"],
        "REFUND_PRORATED"
    );
}
