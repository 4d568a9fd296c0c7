//! Stripe webhooks.
//! - first byte even: the rest is the body, signed correctly for the
//!   configured secret: arbitrary bytes reach event decoding and mapping
//!   (both API shapes, every object type);
//! - odd: the rest is `<Stripe-Signature header>\n<body>` as it comes: the
//!   header parser, timestamps, every `v1`, constant-time comparison.
//!
//! The body is `storehook_fuzz::fuzz_stripe`, shared with the workspace's
//! replay test (`tests/fuzz.rs`), which runs it over the seeds in CI.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| storehook_fuzz::fuzz_stripe(data));
