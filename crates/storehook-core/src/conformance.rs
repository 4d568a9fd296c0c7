//! The behaviour suite every adapter runs (feature `testkit`), in the manner
//! of OpenDAL's behaviour tests: one set of expectations, every backend.
//!
//! An adapter's test builds a [`Suite`] from its own valid requests and known
//! bad ones and calls [`Suite::run`]. The suite checks that:
//! - every valid request verifies, decodes to this store, and carries a
//!   notification id;
//! - every malformed request answers 400 and every forged one 401, each with
//!   a non-empty code and message;
//! - no byte string panics: thousands of truncations, bit flips and random
//!   bodies (on top of the valid requests' headers) each end in `Ok` or a
//!   4xx/5xx error, never a panic, and never a 2xx for a body whose signature
//!   covers it unless the adapter says the body is unsigned.

use crate::{AdapterError, IncomingRequest, Outcome, StoreAdapter};

/// The cases one adapter brings to the suite.
pub struct Suite<'a> {
    pub store: &'a str,
    pub adapter: &'a dyn StoreAdapter,
    /// Requests that must verify and decode.
    pub valid: Vec<IncomingRequest>,
    /// Requests that must answer 400, with the code they must carry (`None`: any code).
    pub malformed: Vec<(IncomingRequest, Option<&'static str>)>,
    /// Requests that must answer 401, with the code they must carry.
    pub forged: Vec<(IncomingRequest, Option<&'static str>)>,
    /// Whether the adapter's authentication covers the body bytes (Apple JWS,
    /// Stripe HMAC). Google's push token authenticates the sender, not the
    /// body, so a mutated body may legitimately decode.
    pub body_is_signed: bool,
}

impl Suite<'_> {
    /// Runs every check; panics (fails the test) with a description of the
    /// first case that broke the contract.
    pub async fn run(self) {
        assert!(
            !self.valid.is_empty(),
            "the suite needs at least one valid request"
        );
        for (i, req) in self.valid.iter().enumerate() {
            match self.adapter.verify_and_decode(req).await {
                Ok(Outcome::Notification(n)) => {
                    assert_eq!(n.store, self.store, "valid[{i}]: wrong store id");
                    assert!(
                        !n.notification_id.is_empty(),
                        "valid[{i}]: empty notification id"
                    );
                    assert!(!n.raw_type.is_empty(), "valid[{i}]: empty raw type");
                }
                Ok(other) => panic!("valid[{i}]: expected a notification, got {other:?}"),
                Err(e) => panic!(
                    "valid[{i}]: rejected with {} {}: {}",
                    e.http_status(),
                    e.code(),
                    e.message()
                ),
            }
        }
        for (i, (req, code)) in self.malformed.iter().enumerate() {
            expect_error(self.adapter, req, 400, *code, &format!("malformed[{i}]")).await;
        }
        for (i, (req, code)) in self.forged.iter().enumerate() {
            expect_error(self.adapter, req, 401, *code, &format!("forged[{i}]")).await;
        }
        for (i, base) in self.valid.iter().enumerate() {
            for (j, body) in mutations(&base.body).into_iter().enumerate() {
                let mut req = base.clone();
                let changed = body != base.body;
                req.body = body;
                let result = self.adapter.verify_and_decode(&req).await;
                match result {
                    Ok(_) if changed && self.body_is_signed => {
                        panic!("valid[{i}] mutation {j}: a body changed after signing was accepted")
                    }
                    Ok(_) => {}
                    Err(e) => check_error_shape(&e, &format!("valid[{i}] mutation {j}")),
                }
            }
        }
    }
}

/// Asserts that `req` is refused with `status` (and `code`, when given).
pub async fn expect_error(
    adapter: &dyn StoreAdapter,
    req: &IncomingRequest,
    status: u16,
    code: Option<&str>,
    label: &str,
) -> AdapterError {
    match adapter.verify_and_decode(req).await {
        Ok(outcome) => panic!("{label}: expected {status}, got {outcome:?}"),
        Err(e) => {
            check_error_shape(&e, label);
            assert_eq!(
                e.http_status(),
                status,
                "{label}: {} {}",
                e.code(),
                e.message()
            );
            if let Some(code) = code {
                assert_eq!(e.code(), code, "{label}: {}", e.message());
            }
            e
        }
    }
}

fn check_error_shape(e: &AdapterError, label: &str) {
    assert!(!e.code().is_empty(), "{label}: empty error code");
    assert!(!e.message().is_empty(), "{label}: empty error message");
    assert!(
        matches!(e.http_status(), 400 | 401 | 501 | 503),
        "{label}: unexpected status {}",
        e.http_status()
    );
}

/// Deterministic hostile variants of a body: truncations, bit flips, byte
/// insertions and random strings. Deterministic so a failure reproduces.
pub fn mutations(body: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![
        Vec::new(),
        b"{}".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        vec![0xff; 64],
    ];
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ body.len() as u64);
    let len = body.len();
    for cut in [1, 2, len / 4, len / 2, len.saturating_sub(1)] {
        if cut < len {
            out.push(body[..cut].to_vec());
        }
    }
    for _ in 0..200 {
        let mut b = body.to_vec();
        if b.is_empty() {
            break;
        }
        let flips = 1 + rng.next() as usize % 3;
        for _ in 0..flips {
            let at = rng.next() as usize % b.len();
            b[at] ^= 1 << (rng.next() % 8);
        }
        out.push(b);
    }
    for _ in 0..50 {
        let mut b = body.to_vec();
        let at = if b.is_empty() {
            0
        } else {
            rng.next() as usize % b.len()
        };
        let insert = [b'"', b'\\', b'{', b'}', b'.', b'=', 0, 0xc3][rng.next() as usize % 8];
        b.insert(at, insert);
        out.push(b);
    }
    for _ in 0..50 {
        let n = rng.next() as usize % 512;
        out.push((0..n).map(|_| rng.next() as u8).collect());
    }
    out
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}
