//! Google Play RTDN (Pub/Sub push).
//! - first byte even: the rest is the push body, authenticated by the push
//!   token: the envelope, the base64 `data`, the DeveloperNotification and
//!   its mapping;
//! - odd: the rest is the `Authorization` header of an OIDC-authenticated
//!   push (JWT header, claims, RS256 against a JWKS file), with a real body.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use storehook_core::{IncomingRequest, StoreAdapter};
use storehook_fuzz::{adapter, check, repo, NOW_MS, PUSH_TOKEN};

struct Setup {
    token: Box<dyn StoreAdapter>,
    oidc: Box<dyn StoreAdapter>,
    body: Vec<u8>,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| Setup {
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
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let s = setup();
    if mode % 2 == 0 {
        let request =
            IncomingRequest::new(rest, NOW_MS).with_query(format!("token={PUSH_TOKEN}"));
        check(s.token.as_ref(), &request);
    } else {
        let request =
            IncomingRequest::new(s.body.clone(), NOW_MS).with_header("authorization", rest);
        check(s.oidc.as_ref(), &request);
    }
});
