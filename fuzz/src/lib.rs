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

/// A path in the repository. This file is the fuzz crate's library (in
/// `fuzz/`) and is also compiled into the workspace's `tests/fuzz.rs`
/// (manifest at the repository root), which replays the seeds in CI.
pub fn repo(rel: &str) -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = if here.join("tests/corpus").is_dir() {
        here
    } else {
        here.join("..")
    };
    root.join(rel)
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
    assert!(
        !e.message().is_empty(),
        "empty error message ({})",
        e.code()
    );
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
    // Some of Apple's test files carry an `openssl x509 -text` dump before
    // the PEM block: keep only what is between BEGIN and END.
    let b64: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
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

// ------------------------------------------------------------ the targets

/// App Store Server Notifications V2: the request body.
/// - first byte even: the body as it comes (JSON, `signedPayload`, JWS
///   segments, header, `x5c` certificates, chain) against Apple's real root;
/// - odd: the rest is the JWS payload, signed with Apple's test chain, which
///   the adapter trusts: arbitrary payloads reach decode and map.
pub fn fuzz_apple(data: &[u8]) {
    struct Setup {
        real_roots: Box<dyn StoreAdapter>,
        test_root: Box<dyn StoreAdapter>,
        chain: AppleTestChain,
    }
    static SETUP: OnceLock<Setup> = OnceLock::new();
    let s = SETUP.get_or_init(|| Setup {
        real_roots: adapter(
            "apple",
            r#"apps = [{ bundle_id = "com.loki-project.loki-messenger", app_apple_id = 1470168868 }]"#,
        ),
        test_root: adapter(
            "apple",
            r#"apps = [{ bundle_id = "com.example", app_apple_id = 1234 }]
               root_certificates = ["tests/corpus/apple/official-vectors/certs/testCA.der"]"#,
        ),
        chain: AppleTestChain::load(),
    });
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        check(s.real_roots.as_ref(), &IncomingRequest::new(rest, NOW_MS));
    } else {
        let body = format!(r#"{{"signedPayload":"{}"}}"#, s.chain.sign(rest));
        check(s.test_root.as_ref(), &IncomingRequest::new(body, NOW_MS));
    }
}

/// Google Play RTDN (Pub/Sub push).
/// - first byte even: the rest is the push body, authenticated by the push
///   token: the envelope, the base64 `data`, the DeveloperNotification and
///   its mapping;
/// - odd: the rest is the `Authorization` header of an OIDC-authenticated
///   push (JWT header, claims, RS256 against a JWKS file), with a real body.
pub fn fuzz_google(data: &[u8]) {
    struct Setup {
        token: Box<dyn StoreAdapter>,
        oidc: Box<dyn StoreAdapter>,
        body: Vec<u8>,
    }
    static SETUP: OnceLock<Setup> = OnceLock::new();
    let s = SETUP.get_or_init(|| Setup {
        token: adapter(
            "google",
            &format!("package_names = [\"com.okmusician.android\"]\npush_token = \"{PUSH_TOKEN}\""),
        ),
        oidc: adapter(
            "google",
            r#"package_names = ["com.okmusician.android"]
               audience = "https://storehook.test/v1/notifications/google"
               push_service_account = "rtdn-push@storehook-test.iam.gserviceaccount.com"
               jwks_file = "plugins/google/tests/fixtures/jwks_key_1.json""#,
        ),
        body: std::fs::read(repo(
            "tests/corpus/google/push_bodies/okmusician_2019_subscription_purchased.json",
        ))
        .expect("push body"),
    });
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let request = IncomingRequest::new(rest, NOW_MS).with_query(format!("token={PUSH_TOKEN}"));
        check(s.token.as_ref(), &request);
    } else {
        let request =
            IncomingRequest::new(s.body.clone(), NOW_MS).with_header("authorization", rest);
        check(s.oidc.as_ref(), &request);
    }
}

/// Stripe webhooks.
/// - first byte even: the rest is the body, signed correctly for the
///   configured secret: arbitrary bytes reach event decoding and mapping
///   (both API shapes, every object type);
/// - odd: the rest is `<Stripe-Signature header>\n<body>` as it comes: the
///   header parser, timestamps, every `v1`, constant-time comparison.
pub fn fuzz_stripe(data: &[u8]) {
    static SETUP: OnceLock<Box<dyn StoreAdapter>> = OnceLock::new();
    let adapter = SETUP.get_or_init(|| {
        adapter(
            "stripe",
            &format!("signing_secrets = [\"{STRIPE_SECRET}\"]\nlivemode = \"both\""),
        )
    });
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let request = if mode % 2 == 0 {
        let header = storehook_stripe::signature_header([STRIPE_SECRET], NOW_MS / 1000, rest);
        IncomingRequest::new(rest, NOW_MS).with_header("stripe-signature", header)
    } else {
        let split = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let (header, body) = rest.split_at(split);
        IncomingRequest::new(body.get(1..).unwrap_or_default(), NOW_MS)
            .with_header("stripe-signature", header)
    };
    check(adapter.as_ref(), &request);
}

pub type Target = fn(&[u8]);

/// The targets by name, as `fuzz/fuzz_targets/` and `fuzz/seeds/` name them.
pub const TARGETS: [(&str, Target); 3] = [
    ("apple", fuzz_apple),
    ("google", fuzz_google),
    ("stripe", fuzz_stripe),
];
