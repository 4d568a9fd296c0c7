//! Stripe webhooks.
//! - first byte even: the rest is the body, signed correctly for the
//!   configured secret: arbitrary bytes reach event decoding and mapping
//!   (both API shapes, every object type);
//! - odd: the rest is `<Stripe-Signature header>\n<body>` as it comes: the
//!   header parser, timestamps, every `v1`, constant-time comparison.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use storehook_core::{IncomingRequest, StoreAdapter};
use storehook_fuzz::{adapter, check, NOW_MS, STRIPE_SECRET};

fn setup() -> &'static dyn StoreAdapter {
    static SETUP: OnceLock<Box<dyn StoreAdapter>> = OnceLock::new();
    SETUP
        .get_or_init(|| {
            adapter(
                "stripe",
                &format!("signing_secrets = [\"{STRIPE_SECRET}\"]\nlivemode = \"both\""),
            )
        })
        .as_ref()
}

fuzz_target!(|data: &[u8]| {
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
    check(setup(), &request);
});
