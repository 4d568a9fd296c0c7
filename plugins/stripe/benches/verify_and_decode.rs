//! Verify + parse + map of a 3 KB `customer.subscription.updated` event,
//! against raw HMAC-SHA256 of the same signed bytes (the floor: the
//! signature check cannot be cheaper than one HMAC).
//!
//! `cargo bench -p storehook-stripe`; each line's throughput is events/s
//! on one core.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ring::hmac;
use storehook_core::{IncomingRequest, Outcome};
use storehook_stripe::verify::{verify_signed_payload, SigningKeys};
use storehook_stripe::{signature_header, StripeAdapter, StripeConfig};

const SECRET: &str = "whsec_bench_0123456789abcdefghijklmnopqrstuv";
const T: i64 = 1_767_312_000;
const TARGET_LEN: usize = 3 * 1024;

/// A realistic basil-shaped subscription update (a scheduled cancellation),
/// padded with metadata to exactly 3 KB.
fn event_body() -> Vec<u8> {
    let mut event: serde_json::Value = serde_json::from_str(
        r#"{
        "id": "evt_1Pgc76B7WZ01zgkWwyRHS102",
        "object": "event",
        "api_version": "2026-07-29.dahlia",
        "created": 1767312000,
        "livemode": true,
        "pending_webhooks": 1,
        "request": {"id": "req_6VlGqc7L0sH0xh", "idempotency_key": "a3a1e3a4-9b8e-4d0b-8f6e-4d3f0f8f6d1c"},
        "type": "customer.subscription.updated",
        "data": {
            "object": {
                "id": "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw",
                "object": "subscription",
                "application": null,
                "billing_cycle_anchor": 1767225600,
                "cancel_at": 1769904000,
                "cancel_at_period_end": true,
                "canceled_at": 1767312000,
                "cancellation_details": {"comment": null, "feedback": "too_expensive", "reason": "cancellation_requested"},
                "collection_method": "charge_automatically",
                "created": 1767225600,
                "currency": "usd",
                "customer": "cus_QXg1o8vcGmoR32",
                "default_payment_method": "pm_1PgafqB7WZ01zgkWbq2k3Z6G",
                "discounts": [],
                "ended_at": null,
                "items": {
                    "object": "list",
                    "data": [{
                        "id": "si_QXhVnC2h0Jczwc",
                        "object": "subscription_item",
                        "created": 1767225600,
                        "current_period_end": 1769904000,
                        "current_period_start": 1767225600,
                        "metadata": {},
                        "price": {
                            "id": "price_1PgafmB7WZ01zgkW6dKueIc5",
                            "object": "price",
                            "active": true,
                            "billing_scheme": "per_unit",
                            "currency": "usd",
                            "livemode": true,
                            "lookup_key": "pro_monthly",
                            "product": "prod_QXg1hqf4jFNsqG",
                            "recurring": {"interval": "month", "interval_count": 1, "usage_type": "licensed"},
                            "type": "recurring",
                            "unit_amount": 2000,
                            "unit_amount_decimal": "2000"
                        },
                        "quantity": 1,
                        "subscription": "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw",
                        "tax_rates": []
                    }],
                    "has_more": false,
                    "url": "/v1/subscription_items?subscription=sub_1Pgc6rB7WZ01zgkWNy0Cn5nw"
                },
                "latest_invoice": "in_1Pgc6tB7WZ01zgkWu9fdqL6I",
                "livemode": true,
                "metadata": {"app_user_id": "user_42"},
                "pause_collection": null,
                "start_date": 1767225600,
                "status": "active",
                "trial_end": null,
                "trial_start": null
            },
            "previous_attributes": {
                "cancel_at": null,
                "cancel_at_period_end": false,
                "canceled_at": null,
                "cancellation_details": {"feedback": null, "reason": null}
            }
        }
    }"#,
    )
    .expect("benchmark event JSON");
    let len = serde_json::to_vec(&event).map(|b| b.len()).unwrap_or(0);
    let pad = TARGET_LEN.saturating_sub(len + r#","note":"""#.len());
    event["data"]["object"]["metadata"]["note"] = serde_json::Value::String("x".repeat(pad));
    let body = serde_json::to_vec(&event).expect("serializes");
    assert_eq!(body.len(), TARGET_LEN, "the benchmark event is 3 KB");
    body
}

fn bench(c: &mut Criterion) {
    let body = event_body();
    let header = signature_header([SECRET], T, &body);
    let request = IncomingRequest::new(body.clone(), T * 1000)
        .with_header("Stripe-Signature", header.as_str());
    let adapter = StripeAdapter::new(StripeConfig::with_secrets([SECRET])).expect("config");
    assert!(matches!(
        adapter.verify_and_map(&request),
        Ok(Outcome::Notification(_))
    ));
    let keys = SigningKeys::new([SECRET]);

    // The exact bytes Stripe signs, for the baseline.
    let mut signed = format!("{T}.").into_bytes();
    signed.extend_from_slice(&body);
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());

    let mut group = c.benchmark_group("stripe_3kb_event");
    group.throughput(Throughput::Elements(1));
    group.bench_function("baseline_raw_hmac_sha256", |b| {
        b.iter(|| hmac::sign(&key, black_box(&signed)))
    });
    // The other floor: parsing the body into JSON, which any decoder does.
    group.bench_function("reference_json_parse", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&body)))
    });
    group.bench_function("verify_signature", |b| {
        b.iter(|| verify_signed_payload(Some(black_box(&header)), black_box(&body), &keys, 300, T))
    });
    group.bench_function("verify_and_decode", |b| {
        b.iter(|| adapter.verify_and_map(black_box(&request)))
    });
    // Anyone's request: eight well-formed v1 candidates, none right. One
    // HMAC per secret, not per candidate: about the cost of one.
    let forged = format!("t={T}") + &format!(",v1={}", "cd".repeat(32)).repeat(8);
    assert!(verify_signed_payload(Some(&forged), &body, &keys, 300, T).is_err());
    group.bench_function("refuse_8_forged_v1_candidates", |b| {
        b.iter(|| verify_signed_payload(Some(black_box(&forged)), black_box(&body), &keys, 300, T))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
