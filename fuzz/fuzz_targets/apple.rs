//! App Store Server Notifications V2: the request body.
//! - first byte even: the body as it comes (JSON, `signedPayload`, JWS
//!   segments, header, `x5c` certificates, chain) against Apple's real root;
//! - odd: the rest is the JWS payload, signed with Apple's test chain, which
//!   the adapter trusts: arbitrary payloads reach decode and map.
//!
//! The body is `storehook_fuzz::fuzz_apple`, shared with the workspace's
//! replay test (`tests/fuzz.rs`), which runs it over the seeds in CI.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| storehook_fuzz::fuzz_apple(data));
