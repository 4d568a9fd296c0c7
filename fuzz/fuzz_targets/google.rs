//! Google Play RTDN (Pub/Sub push).
//! - first byte even: the rest is the push body, authenticated by the push
//!   token: the envelope, the base64 `data`, the DeveloperNotification and
//!   its mapping;
//! - odd: the rest is the `Authorization` header of an OIDC-authenticated
//!   push (JWT header, claims, RS256 against a JWKS file), with a real body.
//!
//! The body is `storehook_fuzz::fuzz_google`, shared with the workspace's
//! replay test (`tests/fuzz.rs`), which runs it over the seeds in CI.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| storehook_fuzz::fuzz_google(data));
