//! Push verification + decode throughput, against baselines measured in
//! the same run: the RS256 verification of the same token by the former
//! backend (RustCrypto's rsa, as jsonwebtoken's `rust_crypto` feature ran
//! it), by the current one (jsonwebtoken on aws-lc-rs) and by ring; and the
//! push-token check with and without the verified-token cache.
//!
//! `cargo bench -p storehook-google --bench verify`

use std::path::PathBuf;

use base64::Engine;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde_json::json;
use storehook_core::{FactoryContext, IncomingRequest, Outcome, StoreAdapter};
use storehook_google::config::{KeySource, OidcSettings};
use storehook_google::verify::OidcVerifier;

const LENIENT: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
const NOW_S: i64 = 1_767_225_600;
const AUDIENCE: &str = "https://hooks.example.com/v1/notifications/google";
const PUSH_ACCOUNT: &str = "rtdn-push@storehook-test.iam.gserviceaccount.com";

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
}

fn build(config: &str) -> Box<dyn StoreAdapter> {
    fn no_env(_: &str) -> Option<String> {
        None
    }
    let table: toml::Table = toml::from_str(config).expect("toml");
    let ctx = FactoryContext {
        config_dir: fixtures(),
        env: &no_env,
    };
    storehook_google::build_adapter(&table, &ctx).expect("config")
}

/// A real-sized push: the okmusician SUBSCRIPTION_PURCHASED capture.
fn push_body() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/corpus/google/push_bodies/okmusician_2019_subscription_purchased.json"
    ))
    .expect("corpus body")
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let pem = std::fs::read(fixtures().join("oidc_key_1.pem")).expect("key");
    let claims = json!({
        "aud": AUDIENCE, "azp": "113774264463038321964", "email": PUSH_ACCOUNT,
        "email_verified": true, "exp": NOW_S + 3600, "iat": NOW_S,
        "iss": "https://accounts.google.com", "sub": "113774264463038321964",
    });
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-key-1".into());
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(&pem).expect("rsa"),
    )
    .expect("sign");

    let oidc = build(&format!(
        "package_names = ['com.okmusician.android']\naudience = '{AUDIENCE}'\n\
         push_service_account = '{PUSH_ACCOUNT}'\njwks_file = 'jwks_key_1.json'\n"
    ));
    let push_token =
        build("package_names = ['com.okmusician.android']\npush_token = 'bench-secret'\n");
    let oidc_request = IncomingRequest::new(push_body(), NOW_S * 1000)
        .with_header("Authorization", format!("Bearer {token}"));
    let token_request =
        IncomingRequest::new(push_body(), NOW_S * 1000).with_query("token=bench-secret");
    for (adapter, req) in [(&oidc, &oidc_request), (&push_token, &token_request)] {
        let outcome = runtime.block_on(adapter.verify_and_decode(req));
        assert!(
            matches!(outcome, Ok(Outcome::Notification(_))),
            "{outcome:?}"
        );
    }

    // The baseline verifies the same signature with the same key form (JWK
    // modulus and exponent) the adapter loads.
    let jwks: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("jwks_key_1.json")).expect("jwks"))
            .expect("json");
    let key = DecodingKey::from_rsa_components(
        jwks["keys"][0]["n"].as_str().expect("n"),
        jwks["keys"][0]["e"].as_str().expect("e"),
    )
    .expect("key");
    let (message, signature) = token.rsplit_once('.').expect("jwt");
    assert!(
        jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key, Algorithm::RS256)
            .expect("verify")
    );
    // Sanity: the signature is really checked.
    let mut forged = LENIENT.decode(signature).expect("b64");
    forged[0] ^= 1;
    let forged = LENIENT.encode(forged);
    assert!(
        !jsonwebtoken::crypto::verify(&forged, message.as_bytes(), &key, Algorithm::RS256)
            .expect("verify")
    );

    let n = LENIENT
        .decode(jwks["keys"][0]["n"].as_str().expect("n"))
        .expect("n");
    let e = LENIENT
        .decode(jwks["keys"][0]["e"].as_str().expect("e"))
        .expect("e");
    // What jsonwebtoken 10's `rust_crypto` backend does per verify: decode
    // the signature, hash, build the key from (n, e), verify PKCS#1 v1.5.
    let rust_crypto_verify = |signature: &str, message: &[u8]| -> bool {
        use sha2::Digest;
        let Ok(signature) = LENIENT.decode(signature) else {
            return false;
        };
        let digest = sha2::Sha256::digest(message);
        rsa::RsaPublicKey::new(
            rsa::BigUint::from_bytes_be(&n),
            rsa::BigUint::from_bytes_be(&e),
        )
        .and_then(|k| {
            k.verify(
                rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
                &digest,
                &signature,
            )
        })
        .is_ok()
    };
    let ring_verify = |signature: &str, message: &[u8]| -> bool {
        let Ok(signature) = LENIENT.decode(signature) else {
            return false;
        };
        ring::signature::RsaPublicKeyComponents { n: &n, e: &e }
            .verify(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                message,
                &signature,
            )
            .is_ok()
    };
    for verify in [
        &rust_crypto_verify as &dyn Fn(&str, &[u8]) -> bool,
        &ring_verify,
    ] {
        assert!(verify(signature, message.as_bytes()));
        assert!(!verify(&forged, message.as_bytes()));
    }

    let mut group = c.benchmark_group("google_rs256_verify");
    group.throughput(Throughput::Elements(1));
    group.bench_function("before_rust_crypto", |b| {
        b.iter(|| rust_crypto_verify(black_box(signature), black_box(message.as_bytes())))
    });
    group.bench_function("jsonwebtoken_aws_lc_rs", |b| {
        b.iter(|| {
            jsonwebtoken::crypto::verify(
                black_box(signature),
                black_box(message.as_bytes()),
                &key,
                Algorithm::RS256,
            )
        })
    });
    group.bench_function("ring", |b| {
        b.iter(|| ring_verify(black_box(signature), black_box(message.as_bytes())))
    });
    group.finish();

    let settings = OidcSettings {
        audience: AUDIENCE.into(),
        service_account_email: PUSH_ACCOUNT.into(),
        key_source: KeySource::File(fixtures().join("jwks_key_1.json")),
        clock_skew_seconds: 10,
    };
    let uncached = OidcVerifier::with_cache_capacity(&settings, 0).expect("verifier");
    let cached = OidcVerifier::new(&settings).expect("verifier");
    for verifier in [&uncached, &cached] {
        runtime
            .block_on(verifier.verify_token(&token, NOW_S * 1000))
            .expect("verifies");
    }
    let mut group = c.benchmark_group("google_push_token");
    group.throughput(Throughput::Elements(1));
    group.bench_function("uncached", |b| {
        b.iter(|| runtime.block_on(uncached.verify_token(black_box(&token), NOW_S * 1000)))
    });
    group.bench_function("cached", |b| {
        b.iter(|| runtime.block_on(cached.verify_token(black_box(&token), NOW_S * 1000)))
    });
    group.finish();

    let mut group = c.benchmark_group("google_push");
    group.throughput(Throughput::Elements(1));
    group.bench_function("oidc_verify_and_decode", |b| {
        b.iter(|| runtime.block_on(oidc.verify_and_decode(black_box(&oidc_request))))
    });
    group.bench_function("push_token_verify_and_decode", |b| {
        b.iter(|| runtime.block_on(push_token.verify_and_decode(black_box(&token_request))))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
