//! Shared by the fuzz targets: adapters built the way the server builds
//! them, and the contract every answer must keep (the conformance suite's:
//! never a panic, an error is 400/401/501/503 with a code and a message).
//!
//! Each target splits its input with its first byte: one mode feeds the
//! bytes as they come (the verification path: headers, JWS, certificates,
//! tokens), the other signs them first with keys the adapter trusts, so
//! that arbitrary bytes reach the decode and map path behind the signature.

use std::path::PathBuf;
use std::sync::OnceLock;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use storehook_core::{AdapterError, FactoryContext, IncomingRequest, Outcome, StoreAdapter};

/// 2026-06-01T00:00:00Z.
pub const NOW_MS: i64 = 1_780_272_000_000;
pub const STRIPE_SECRET: &str = "whsec_fuzz";
pub const PUSH_TOKEN: &str = "fuzz-push-token";

pub fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// Builds a store's adapter from its `[stores.<id>]` table, through its
/// registration, as the server does.
pub fn adapter(store: &str, table: &str) -> Box<dyn StoreAdapter> {
    storehook_apple::link();
    storehook_google::link();
    storehook_stripe::link();
    let registration = storehook_core::find_registration(store).expect("registered");
    let table: toml::Table = toml::from_str(table).expect("table");
    let env = |_: &str| None;
    let ctx = FactoryContext {
        config_dir: repo(""),
        env: &env,
    };
    (registration.build)(&table, &ctx).expect("adapter builds")
}

/// Runs one request and checks the answer's shape.
pub fn check(adapter: &dyn StoreAdapter, request: &IncomingRequest) -> Option<Outcome> {
    match runtime().block_on(adapter.verify_and_decode(request)) {
        Ok(outcome) => Some(outcome),
        Err(e) => {
            assert_error_shape(&e);
            None
        }
    }
}

pub fn assert_error_shape(e: &AdapterError) {
    assert!(!e.code().is_empty(), "empty error code");
    assert!(!e.message().is_empty(), "empty error message ({})", e.code());
    assert!(
        matches!(e.http_status(), 400 | 401 | 501 | 503),
        "unexpected status {} ({})",
        e.http_status(),
        e.code()
    );
}

/// The DER inside a PEM file of the corpus.
pub fn pem_der(rel: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(repo(rel)).expect("PEM file");
    let b64: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    STANDARD.decode(b64).expect("PEM base64")
}

/// Apple's own test chain (app-store-server-library), whose leaf key is in
/// the corpus: what it signs, an adapter trusting its root accepts.
pub struct AppleTestChain {
    pub x5c: Vec<String>,
    pub leaf: ring::signature::EcdsaKeyPair,
}

impl AppleTestChain {
    pub fn load() -> Self {
        const CERTS: &str = "tests/corpus/apple/official-vectors/certs";
        let leaf = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &pem_der(&format!("{CERTS}/testLeaf.pk8.pem")),
            &ring::rand::SystemRandom::new(),
        )
        .expect("leaf key");
        let x5c = ["testLeaf.pem", "testIntermediate.pem", "testCA.pem"]
            .iter()
            .map(|f| STANDARD.encode(pem_der(&format!("{CERTS}/{f}"))))
            .collect();
        AppleTestChain { x5c, leaf }
    }

    /// A compact JWS over `payload` (any bytes), signed by the leaf.
    pub fn sign(&self, payload: &[u8]) -> String {
        let header = format!(r#"{{"alg":"ES256","x5c":["{}"]}}"#, self.x5c.join("\",\""));
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let sig = self
            .leaf
            .sign(&ring::rand::SystemRandom::new(), input.as_bytes())
            .expect("sign");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}
