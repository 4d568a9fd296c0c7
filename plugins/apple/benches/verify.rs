//! Verify + decode of a real SUBSCRIBED/INITIAL_BUY notification (real-2:
//! 18 KB, Apple's real chain, nested signedTransactionInfo and
//! signedRenewalInfo), chain cached, against raw P-256 ECDSA verification
//! measured in the same run by three backends (aws-lc-rs, ring, RustCrypto's
//! p256). Three P-256 verifications per notification with the fastest are
//! the floor; the aim is 80 % of it.
//!
//! `cargo bench -p storehook-apple`; throughput lines are per core. A
//! summary with the ratio is printed at the end.

use std::hint::black_box;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use storehook_apple::{App, AppleAdapter, AppleEnvironment, AppleSettings};
use x509_parser::prelude::FromDer;

const BODY: &[u8] = include_bytes!("../../../tests/corpus/apple/real-2.json");
/// 2026-06-01: "now" (real-2 is checked at its own signedDate anyway).
const NOW_MS: i64 = 1_780_272_000_000;

fn adapter() -> AppleAdapter {
    AppleAdapter::new(AppleSettings::new(
        vec![App {
            bundle_id: "cn.soulmate.elf".into(),
            app_apple_id: Some(6_473_983_973),
        }],
        vec![AppleEnvironment::Production, AppleEnvironment::Sandbox],
    ))
}

/// The outer JWS's signing input, signature and leaf key: one raw ES256
/// verification, exactly what the adapter does three times.
fn raw_verification() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let body: serde_json::Value = serde_json::from_slice(BODY).expect("real-2 is JSON");
    let jws = body["signedPayload"].as_str().expect("signedPayload");
    let (input, sig) = jws.rsplit_once('.').expect("JWS");
    let header: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(input.split('.').next().expect("header"))
            .expect("base64url"),
    )
    .expect("header JSON");
    let leaf = STANDARD
        .decode(header["x5c"][0].as_str().expect("x5c"))
        .expect("base64");
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&leaf).expect("leaf");
    let key = cert.public_key().subject_public_key.data.to_vec();
    (
        input.as_bytes().to_vec(),
        URL_SAFE_NO_PAD.decode(sig).expect("signature"),
        key,
    )
}

/// `{"signedPayload": "<real-2's header>.<222 KB payload>.<junk>"}`.
fn forged_222kb_body() -> Vec<u8> {
    let body: serde_json::Value = serde_json::from_slice(BODY).expect("real-2 is JSON");
    let jws = body["signedPayload"].as_str().expect("signedPayload");
    let header = jws.split('.').next().expect("header");
    let items: Vec<serde_json::Value> = (0..9_000)
        .map(|i| serde_json::json!({"k": i, "v": "xxxxxxxx"}))
        .collect();
    let payload = serde_json::json!({"signedDate": 1_700_000_000_000_i64, "data": items});
    let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
    let forged = format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode([7u8; 64]));
    assert!(forged.len() > 220_000, "{}", forged.len());
    serde_json::to_vec(&serde_json::json!({ "signedPayload": forged })).expect("JSON")
}

/// Runs `f` for about `burst`, returns (calls, seconds).
fn burst(f: &mut dyn FnMut(), burst: Duration) -> (u64, f64) {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < burst {
        for _ in 0..16 {
            f();
        }
        n += 16;
    }
    (n, start.elapsed().as_secs_f64())
}

/// Rates of each of `fs` per second, measured in alternating 100 ms bursts
/// so that all see the same machine load (the machine is shared).
fn interleaved_rates(fs: &mut [&mut dyn FnMut()], total: Duration) -> Vec<f64> {
    let mut sums = vec![(0u64, 0.0f64); fs.len()];
    let start = Instant::now();
    while start.elapsed() < total {
        for (f, sum) in fs.iter_mut().zip(sums.iter_mut()) {
            let (n, t) = burst(f, Duration::from_millis(100));
            sum.0 += n;
            sum.1 += t;
        }
    }
    sums.into_iter().map(|(n, t)| n as f64 / t).collect()
}

fn bench(c: &mut Criterion) {
    let adapter = adapter();
    let n = adapter.verify_body(BODY, NOW_MS).expect("real-2 verifies");
    assert_eq!(n.raw_type, "SUBSCRIBED/INITIAL_BUY");
    assert_eq!(adapter.verifier().chain_verifier().full_verifications(), 1);
    let (input, sig, key) = raw_verification();
    let ring_key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.clone());
    let aws_key = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
        key.clone(),
    );
    let aws_parsed = aws_lc_rs::signature::ParsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
        &key,
    )
    .expect("P-256 key");
    let rc_key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&key).expect("P-256 key");
    let rc_sig = p256::ecdsa::Signature::from_slice(&sig).expect("r||s");
    let ring_verify = || ring_key.verify(black_box(&input), black_box(&sig)).is_ok();
    let aws_verify = || aws_key.verify(black_box(&input), black_box(&sig)).is_ok();
    let aws_parsed_verify = || {
        aws_parsed
            .verify_sig(black_box(&input), black_box(&sig))
            .is_ok()
    };
    let p256_verify = || {
        use p256::ecdsa::signature::Verifier;
        rc_key.verify(black_box(&input), black_box(&rc_sig)).is_ok()
    };
    for verify in [
        &ring_verify as &dyn Fn() -> bool,
        &aws_verify,
        &aws_parsed_verify,
        &p256_verify,
    ] {
        assert!(verify(), "raw verification");
    }

    let mut group = c.benchmark_group("p256_verify");
    group.throughput(Throughput::Elements(1));
    group.bench_function("ring", |b| b.iter(ring_verify));
    group.bench_function("aws_lc_rs", |b| b.iter(aws_verify));
    group.bench_function("aws_lc_rs_key_parsed_once", |b| b.iter(aws_parsed_verify));
    group.bench_function("p256_rustcrypto", |b| b.iter(p256_verify));
    group.finish();

    let mut group = c.benchmark_group("apple");
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify_and_decode_subscribed_notification", |b| {
        b.iter(|| adapter.verify_body(black_box(BODY), NOW_MS).is_ok())
    });
    // Anyone's request: real-2's genuine header over a 222 KB payload the
    // attacker wrote (valid base64url of a JSON object), with a junk
    // signature. Its cost should be one P-256 verify plus hashing, not a
    // JSON parse of the payload.
    let forged = forged_222kb_body();
    assert!(adapter.verify_body(&forged, NOW_MS).is_err());
    group.bench_function("refuse_forged_222kb_payload", |b| {
        b.iter(|| adapter.verify_body(black_box(&forged), NOW_MS).is_err())
    });
    group.finish();

    // The ratios, measured in alternating bursts in this run.
    let rates = interleaved_rates(
        &mut [
            &mut || {
                black_box(ring_verify());
            },
            &mut || {
                black_box(aws_verify());
            },
            &mut || {
                black_box(aws_parsed_verify());
            },
            &mut || {
                black_box(p256_verify());
            },
            &mut || {
                black_box(adapter.verify_body(black_box(BODY), NOW_MS).is_ok());
            },
        ],
        Duration::from_secs(15),
    );
    let [ring, aws, aws_parsed, rust_crypto, notifications] = rates[..] else {
        unreachable!("five rates");
    };
    let fastest = ring.max(aws).max(aws_parsed).max(rust_crypto);
    let floor = fastest / 3.0;
    println!(
        "\napple summary: P-256 verify/s: ring {ring:.0}, aws-lc-rs {aws:.0} ({:.2}x ring), \
         aws-lc-rs key parsed once {aws_parsed:.0} ({:.2}x ring), p256 {rust_crypto:.0} ({:.2}x ring); \
         floor (3 verifies with the fastest) {floor:.0} notifications/s; \
         verify+decode {notifications:.0} notifications/s = {:.1} % of the floor; chain verified {} time(s)",
        aws / ring,
        aws_parsed / ring,
        rust_crypto / ring,
        100.0 * notifications / floor,
        adapter.verifier().chain_verifier().full_verifications()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
