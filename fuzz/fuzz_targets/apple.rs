//! App Store Server Notifications V2: the request body.
//! - first byte even: the body as it comes (JSON, `signedPayload`, JWS
//!   segments, header, `x5c` certificates, chain) against Apple's real root;
//! - odd: the rest is the JWS payload, signed with Apple's test chain, which
//!   the adapter trusts: arbitrary payloads reach decode and map.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use storehook_core::{IncomingRequest, StoreAdapter};
use storehook_fuzz::{adapter, check, AppleTestChain, NOW_MS};

struct Setup {
    real_roots: Box<dyn StoreAdapter>,
    test_root: Box<dyn StoreAdapter>,
    chain: AppleTestChain,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| Setup {
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
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let s = setup();
    if mode % 2 == 0 {
        check(s.real_roots.as_ref(), &IncomingRequest::new(rest, NOW_MS));
    } else {
        let body = format!(r#"{{"signedPayload":"{}"}}"#, s.chain.sign(rest));
        check(s.test_root.as_ref(), &IncomingRequest::new(body, NOW_MS));
    }
});
