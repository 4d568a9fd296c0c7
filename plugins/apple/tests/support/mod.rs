//! Shared by the integration tests: corpus access, request bodies, test
//! certificate chains (rcgen, with Apple's OIDs) and JWS signing (ring).
#![allow(dead_code)]

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use storehook_apple::{App, AppleAdapter, AppleEnvironment, AppleSettings};
use storehook_core::AdapterError;

pub const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/corpus/apple");

/// 2026-06-01T00:00:00Z: "now" for tests on real notifications (after every
/// expired leaf of the corpus, before the current one's notAfter).
pub const NOW_2026_MS: i64 = 1_780_272_000_000;
/// 2025-11-01T02:09:35Z, the instant Apple's chain tests use.
pub const NOV_2025_S: i64 = 1_761_962_975;

pub const LEAF_OID: &[u64] = &[1, 2, 840, 113635, 100, 6, 11, 1];
pub const INTERMEDIATE_OID: &[u64] = &[1, 2, 840, 113635, 100, 6, 2, 1];

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

pub fn b64(der: &[u8]) -> String {
    STANDARD.encode(der)
}

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes one JWS segment as JSON.
pub fn segment_json(segment: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
}

/// Signs `header.payload` (both given as JSON text, used byte for byte).
pub fn sign_raw(header: &str, payload: &str, key: &EcdsaKeyPair) -> String {
    let input = format!(
        "{}.{}",
        b64url(header.as_bytes()),
        b64url(payload.as_bytes())
    );
    let sig = key.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    format!("{input}.{}", b64url(sig.as_ref()))
}

pub fn sign(header: &Value, payload: &Value, key: &EcdsaKeyPair) -> String {
    sign_raw(&header.to_string(), &payload.to_string(), key)
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

/// How a test chain deviates from a good one.
#[derive(Clone)]
pub struct ChainOptions {
    pub leaf_oid: bool,
    pub intermediate_oid: bool,
    pub intermediate_is_ca: bool,
    /// (year, month, day) of the leaf's notBefore and notAfter.
    pub leaf_validity: ((i32, u8, u8), (i32, u8, u8)),
    /// Appended to every certificate's common name.
    pub names_suffix: &'static str,
}

impl Default for ChainOptions {
    fn default() -> Self {
        Self {
            leaf_oid: true,
            intermediate_oid: true,
            intermediate_is_ca: true,
            leaf_validity: ((2020, 1, 1), (2030, 1, 1)),
            names_suffix: "",
        }
    }
}

/// A root (P-384), an intermediate (P-384, ecdsa-with-SHA384) and a leaf
/// (P-256) shaped like Apple's, made with rcgen.
pub struct TestChain {
    pub root: Vec<u8>,
    pub intermediate: Vec<u8>,
    pub leaf: Vec<u8>,
    pub leaf_key: EcdsaKeyPair,
}

fn name(params: &mut CertificateParams, cn: &str) {
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "storehook tests");
}

impl TestChain {
    pub fn new(options: ChainOptions) -> Self {
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
        let mut root_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        name(
            &mut root_params,
            &format!("Test Root CA{}", options.names_suffix),
        );
        root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        root_params.not_before = rcgen::date_time_ymd(2015, 1, 1);
        root_params.not_after = rcgen::date_time_ymd(2040, 1, 1);
        let root = root_params.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::from_params(&root_params, &root_key);

        let intermediate_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
        let mut intermediate_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        name(
            &mut intermediate_params,
            &format!("Test WWDR Intermediate{}", options.names_suffix),
        );
        intermediate_params.is_ca = if options.intermediate_is_ca {
            IsCa::Ca(BasicConstraints::Unconstrained)
        } else {
            IsCa::ExplicitNoCa
        };
        intermediate_params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        intermediate_params.not_before = rcgen::date_time_ymd(2016, 1, 1);
        intermediate_params.not_after = rcgen::date_time_ymd(2038, 1, 1);
        intermediate_params.use_authority_key_identifier_extension = true;
        if options.intermediate_oid {
            intermediate_params
                .custom_extensions
                .push(CustomExtension::from_oid_content(
                    INTERMEDIATE_OID,
                    vec![0x05, 0x00],
                ));
        }
        let intermediate = intermediate_params
            .signed_by(&intermediate_key, &root_issuer)
            .unwrap();
        let intermediate_issuer = Issuer::from_params(&intermediate_params, &intermediate_key);

        let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut leaf_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        name(
            &mut leaf_params,
            &format!("Test Receipt Signing{}", options.names_suffix),
        );
        leaf_params.is_ca = IsCa::ExplicitNoCa;
        leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let ((y0, m0, d0), (y1, m1, d1)) = options.leaf_validity;
        leaf_params.not_before = rcgen::date_time_ymd(y0, m0, d0);
        leaf_params.not_after = rcgen::date_time_ymd(y1, m1, d1);
        leaf_params.use_authority_key_identifier_extension = true;
        if options.leaf_oid {
            leaf_params
                .custom_extensions
                .push(CustomExtension::from_oid_content(
                    LEAF_OID,
                    vec![0x05, 0x00],
                ));
        }
        let leaf = leaf_params
            .signed_by(&leaf_key, &intermediate_issuer)
            .unwrap();

        Self {
            root: root.der().to_vec(),
            intermediate: intermediate.der().to_vec(),
            leaf: leaf.der().to_vec(),
            leaf_key: EcdsaKeyPair::from_pkcs8(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                &leaf_key.serialize_der(),
                &SystemRandom::new(),
            )
            .unwrap(),
        }
    }

    pub fn good() -> Self {
        Self::new(ChainOptions::default())
    }

    /// x5c as Apple sends it: leaf, intermediate, root.
    pub fn x5c(&self) -> Vec<String> {
        vec![b64(&self.leaf), b64(&self.intermediate), b64(&self.root)]
    }

    pub fn header(&self) -> Value {
        json!({ "alg": "ES256", "x5c": self.x5c() })
    }

    pub fn sign(&self, payload: &Value) -> String {
        sign(&self.header(), payload, &self.leaf_key)
    }

    pub fn sign_with_header(&self, header: &Value, payload: &Value) -> String {
        sign(header, payload, &self.leaf_key)
    }
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
