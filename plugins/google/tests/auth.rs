//! Push authentication: every failure reason, both methods alone and
//! together, key rotation through a JWKS file, and a JWKS URL (cache,
//! refresh on an unknown kid, rate limit, outage).

mod common;

use common::*;
use serde_json::json;
use storehook_core::{IncomingRequest, StoreAdapter, VerifiedNotification};

fn body() -> Vec<u8> {
    push_body(&subscription_data(4), Some("1001"))
}

/// Asserts that a push with bearer `token` at `now_ms` is accepted.
async fn accepts(adapter: &dyn StoreAdapter, token: &str, now_ms: i64) -> VerifiedNotification {
    expect_notification(adapter, &with_bearer(body(), token, now_ms)).await
}

/// Asserts that a push with bearer `token` at `now_ms` is refused.
async fn refuses(adapter: &dyn StoreAdapter, token: &str, now_ms: i64, status: u16, code: &str) {
    expect_error(adapter, &with_bearer(body(), token, now_ms), status, code).await;
}

fn oidc_adapter() -> Box<dyn StoreAdapter> {
    build(&oidc_config("jwks_key_1.json", 10))
}

#[tokio::test]
async fn a_valid_push_token_from_google_is_accepted() {
    let adapter = oidc_adapter();
    let token = mint("oidc_key_1.pem", Some("test-key-1"), &push_claims(NOW_S));
    let n = accepts(adapter.as_ref(), &token, NOW_MS).await;
    assert_eq!(n.notification_id, "1001");
    // Both issuer spellings google-auth accepts.
    let mut claims = push_claims(NOW_S);
    claims["iss"] = json!("accounts.google.com");
    let token = mint("oidc_key_1.pem", Some("test-key-1"), &claims);
    accepts(adapter.as_ref(), &token, NOW_MS).await;
    // A token without a kid is tried against every key, as google-auth does.
    let token = mint("oidc_key_1.pem", None, &push_claims(NOW_S));
    accepts(adapter.as_ref(), &token, NOW_MS).await;
    // An audience list containing ours.
    let mut claims = push_claims(NOW_S);
    claims["aud"] = json!(["https://other.example", AUDIENCE]);
    let token = mint("oidc_key_1.pem", Some("test-key-1"), &claims);
    accepts(adapter.as_ref(), &token, NOW_MS).await;
}

#[tokio::test]
async fn every_oidc_failure_has_its_reason() {
    let adapter = oidc_adapter();
    let signed = |claims: serde_json::Value| mint("oidc_key_1.pem", Some("test-key-1"), &claims);
    let with = |field: &str, value: serde_json::Value| {
        let mut c = push_claims(NOW_S);
        c[field] = value;
        signed(c)
    };
    let without = |field: &str| {
        let mut c = push_claims(NOW_S);
        c.as_object_mut().unwrap().remove(field);
        signed(c)
    };
    let valid = signed(push_claims(NOW_S));
    let mut tampered = valid.split('.').map(str::to_string).collect::<Vec<_>>();
    let mut changed = push_claims(NOW_S);
    changed["email"] = json!("attacker@evil.iam.gserviceaccount.com");
    tampered[1] = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        changed.to_string(),
    );
    let tampered = tampered.join(".");

    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing_token", None),
        ("bad_signature", Some(tampered)),
        (
            "bad_signature",
            Some(mint(
                "oidc_key_2.pem",
                Some("test-key-1"),
                &push_claims(NOW_S),
            )),
        ),
        (
            "unknown_key",
            Some(mint(
                "oidc_key_2.pem",
                Some("test-key-2"),
                &push_claims(NOW_S),
            )),
        ),
        (
            "wrong_audience",
            Some(with("aud", json!("https://elsewhere.example/push"))),
        ),
        ("wrong_audience", Some(without("aud"))),
        (
            "wrong_issuer",
            Some(with("iss", json!("https://evil.example"))),
        ),
        ("wrong_issuer", Some(without("iss"))),
        (
            "wrong_email",
            Some(with(
                "email",
                json!("someone@other-project.iam.gserviceaccount.com"),
            )),
        ),
        ("wrong_email", Some(without("email"))),
        (
            "email_not_verified",
            Some(with("email_verified", json!(false))),
        ),
        ("email_not_verified", Some(without("email_verified"))),
        ("expired", Some(with("exp", json!(NOW_S - 11)))),
        ("not_yet_valid", Some(with("iat", json!(NOW_S + 11)))),
        ("malformed_token", Some(without("exp"))),
        ("malformed_token", Some(without("iat"))),
        ("malformed_token", Some(with("exp", json!("tomorrow")))),
        ("malformed_token", Some("abc.def".into())),
        ("malformed_token", Some("not a jwt at all".into())),
        ("malformed_token", Some(format!("{valid}.extra"))),
    ];
    for (code, token) in cases {
        let req = match &token {
            Some(t) => with_bearer(body(), t, NOW_MS),
            None => IncomingRequest::new(body(), NOW_MS),
        };
        expect_error(adapter.as_ref(), &req, 401, code).await;
    }
    // Other schemes than Bearer are no token.
    let req =
        IncomingRequest::new(body(), NOW_MS).with_header("Authorization", "Basic dXNlcjpwYXNz");
    expect_error(adapter.as_ref(), &req, 401, "missing_token").await;
}

#[tokio::test]
async fn only_rs256_is_accepted() {
    let adapter = oidc_adapter();
    let enc = |v: serde_json::Value| {
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            v.to_string(),
        )
    };
    let claims = enc(push_claims(NOW_S));
    let none = format!("{}.{claims}.", enc(json!({"alg": "none", "typ": "JWT"})));
    // HS256 keyed with the public JWKS bytes (the algorithm-confusion attack).
    let secret = std::fs::read(fixture("jwks_key_1.json")).unwrap();
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: Some("test-key-1".into()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        },
        &push_claims(NOW_S),
        &jsonwebtoken::EncodingKey::from_secret(&secret),
    )
    .unwrap();
    let no_alg = format!("{}.{claims}.c2ln", enc(json!({"kid": "test-key-1"})));
    for token in [none, hs256, no_alg] {
        refuses(adapter.as_ref(), &token, NOW_MS, 401, "bad_algorithm").await;
    }
}

#[tokio::test]
async fn clock_skew_allowance_applies_to_exp_and_iat() {
    let adapter = build(&oidc_config("jwks_key_1.json", 10));
    let mut claims = push_claims(NOW_S);
    claims["exp"] = json!(NOW_S - 10);
    claims["iat"] = json!(NOW_S - 3610);
    let token = mint("oidc_key_1.pem", Some("test-key-1"), &claims);
    accepts(adapter.as_ref(), &token, NOW_MS).await;
    // One millisecond further is past the allowance.
    refuses(adapter.as_ref(), &token, NOW_MS + 1, 401, "expired").await;

    let mut claims = push_claims(NOW_S);
    claims["iat"] = json!(NOW_S + 10);
    let token = mint("oidc_key_1.pem", Some("test-key-1"), &claims);
    accepts(adapter.as_ref(), &token, NOW_MS).await;
    refuses(adapter.as_ref(), &token, NOW_MS - 1, 401, "not_yet_valid").await;
}

#[tokio::test]
async fn push_token_method() {
    let adapter = build(&push_token_config(&[PACKAGE]));
    expect_notification(adapter.as_ref(), &with_push_token(body())).await;
    // Percent-encoded the way a URL carries it.
    let req = IncomingRequest::new(body(), NOW_MS).with_query("a=1&token=push%2Dsecret-0123456789");
    expect_notification(adapter.as_ref(), &req).await;

    let req = IncomingRequest::new(body(), NOW_MS).with_query("token=push-secret-012345678");
    expect_error(adapter.as_ref(), &req, 401, "bad_push_token").await;
    let req = IncomingRequest::new(body(), NOW_MS).with_query("token=");
    expect_error(adapter.as_ref(), &req, 401, "bad_push_token").await;
    let req = IncomingRequest::new(body(), NOW_MS);
    expect_error(adapter.as_ref(), &req, 401, "missing_push_token").await;
    // A bearer token is no substitute for the configured secret.
    let token = mint("oidc_key_1.pem", Some("test-key-1"), &push_claims(NOW_S));
    refuses(adapter.as_ref(), &token, NOW_MS, 401, "missing_push_token").await;
    assert!(adapter.startup_warnings().is_empty());
}

#[tokio::test]
async fn push_token_from_the_environment() {
    storehook_google::link();
    let table: toml::Table = toml::from_str(&format!("package_names = ['{PACKAGE}']")).unwrap();
    fn env(name: &str) -> Option<String> {
        (name == "STOREHOOK_GOOGLE_PUSH_TOKEN").then(|| "env-secret".to_string())
    }
    let ctx = storehook_core::FactoryContext {
        config_dir: fixture(""),
        env: &env,
    };
    let adapter =
        (storehook_core::find_registration("google").unwrap().build)(&table, &ctx).unwrap();
    let req = IncomingRequest::new(body(), NOW_MS).with_query("token=env-secret");
    expect_notification(adapter.as_ref(), &req).await;
    expect_error(
        adapter.as_ref(),
        &with_push_token(body()),
        401,
        "bad_push_token",
    )
    .await;
}

#[tokio::test]
async fn both_methods_configured_both_must_pass() {
    let adapter = build(&format!(
        "{}push_token = '{PUSH_TOKEN}'\n",
        oidc_config("jwks_key_1.json", 10)
    ));
    let token = mint("oidc_key_1.pem", Some("test-key-1"), &push_claims(NOW_S));
    let both = with_bearer(body(), &token, NOW_MS).with_query(format!("token={PUSH_TOKEN}"));
    expect_notification(adapter.as_ref(), &both).await;
    refuses(adapter.as_ref(), &token, NOW_MS, 401, "missing_push_token").await;
    expect_error(
        adapter.as_ref(),
        &with_push_token(body()),
        401,
        "missing_token",
    )
    .await;
}

#[tokio::test]
async fn configuration_without_authentication() {
    let err = try_build(&format!("package_names = ['{PACKAGE}']"))
        .err()
        .expect("refused");
    assert!(err.0.contains("allow_unauthenticated"), "{err}");

    let adapter = build(&format!(
        "package_names = ['{PACKAGE}']\nallow_unauthenticated = true"
    ));
    let warnings = adapter.startup_warnings();
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].contains("allow_unauthenticated"),
        "{warnings:?}"
    );
    expect_notification(adapter.as_ref(), &IncomingRequest::new(body(), NOW_MS)).await;

    let err = try_build(&oidc_config("no_such_file.json", 10))
        .err()
        .expect("refused");
    assert!(err.0.contains("jwks_file"), "{err}");
    let err = try_build(&oidc_config("oidc_key_1.pem", 10))
        .err()
        .expect("refused");
    assert!(err.0.contains("jwks_file"), "{err}");
}

#[tokio::test]
async fn key_rotation_in_the_jwks_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::copy(fixture("jwks_key_1.json"), &path).unwrap();
    let adapter = build(&oidc_config(path.to_str().unwrap(), 10));

    let token_1 = mint("oidc_key_1.pem", Some("test-key-1"), &push_claims(NOW_S));
    let token_2 = mint("oidc_key_2.pem", Some("test-key-2"), &push_claims(NOW_S));
    accepts(adapter.as_ref(), &token_1, NOW_MS).await;

    // Google publishes a new key: the first token with its kid re-reads the file.
    std::fs::copy(fixture("jwks_keys_1_2.json"), &path).unwrap();
    accepts(adapter.as_ref(), &token_2, NOW_MS).await;
    accepts(adapter.as_ref(), &token_1, NOW_MS).await;

    // Key 1 is retired: its kid is still known from the last read, so tokens
    // keep verifying until a re-read, which only an unknown kid triggers and
    // at most once a minute.
    std::fs::copy(fixture("jwks_key_1.json"), &path).unwrap();
    let mut claims_3 = push_claims(NOW_S);
    claims_3["sub"] = json!("3");
    let token_3 = mint("oidc_key_2.pem", Some("test-key-3"), &claims_3);
    // 30 s after the last read: rate-limited, not re-read.
    let t = NOW_MS + 30_000;
    refuses(adapter.as_ref(), &token_3, t, 401, "unknown_key").await;
    accepts(adapter.as_ref(), &token_2, t).await;
    // 61 s after: re-read; key 2 is gone now, and kid 3 still unknown.
    let t = NOW_MS + 61_000;
    refuses(adapter.as_ref(), &token_3, t, 401, "unknown_key").await;
    refuses(adapter.as_ref(), &token_2, t, 401, "unknown_key").await;
}

#[tokio::test]
async fn jwks_url_is_cached_and_refreshed() {
    let key_1 = read_json(fixture("jwks_key_1.json"));
    let keys_1_2 = read_json(fixture("jwks_keys_1_2.json"));
    let server = JwksServer::start(key_1, Some("public, max-age=300, must-revalidate")).await;
    let config = format!(
        "package_names = ['{PACKAGE}']\naudience = '{AUDIENCE}'\npush_service_account = '{PUSH_ACCOUNT}'\n\
         jwks_url = '{}'\n",
        server.url
    );
    let adapter = build(&config);
    assert_eq!(
        server.hits(),
        0,
        "keys are fetched on demand, not at start-up"
    );

    let token_1 = mint("oidc_key_1.pem", Some("test-key-1"), &push_claims(NOW_S));
    let token_2 = mint("oidc_key_2.pem", Some("test-key-2"), &push_claims(NOW_S));
    accepts(adapter.as_ref(), &token_1, NOW_MS).await;
    accepts(adapter.as_ref(), &token_1, NOW_MS + 1000).await;
    assert_eq!(server.hits(), 1, "cached");

    // Unknown kid within a minute of the last fetch: not refetched.
    server.set_document(keys_1_2);
    refuses(
        adapter.as_ref(),
        &token_2,
        NOW_MS + 2000,
        401,
        "unknown_key",
    )
    .await;
    assert_eq!(server.hits(), 1);
    // A minute later it is.
    accepts(adapter.as_ref(), &token_2, NOW_MS + 61_000).await;
    assert_eq!(server.hits(), 2);

    // max-age (300 s) passed: refetched although the kid is known.
    accepts(adapter.as_ref(), &token_1, NOW_MS + 400_000).await;
    assert_eq!(server.hits(), 3);

    // The endpoint fails after expiry: the stale keys still serve known kids…
    server.state.lock().unwrap().status = 500;
    accepts(adapter.as_ref(), &token_1, NOW_MS + 800_000).await;
    assert_eq!(server.hits(), 4);
    // …but a kid we do not have asks Pub/Sub to retry (503).
    let token_9 = mint("oidc_key_2.pem", Some("test-key-9"), &push_claims(NOW_S));
    refuses(
        adapter.as_ref(),
        &token_9,
        NOW_MS + 900_000,
        503,
        "jwks_unavailable",
    )
    .await;
}

#[tokio::test]
async fn unreachable_jwks_url_is_503() {
    let port = closed_port();
    let adapter = build(&format!(
        "package_names = ['{PACKAGE}']\naudience = '{AUDIENCE}'\npush_service_account = '{PUSH_ACCOUNT}'\n\
         jwks_url = 'http://127.0.0.1:{port}/certs'\n"
    ));
    let token = mint("oidc_key_1.pem", Some("test-key-1"), &push_claims(NOW_S));
    let e = storehook_core::conformance::expect_error(
        adapter.as_ref(),
        &with_bearer(body(), &token, NOW_MS),
        503,
        Some("jwks_unavailable"),
        "unreachable",
    )
    .await;
    assert!(!e.message().contains(&token));
    // Still before any body parsing: a missing token is 401 without a fetch.
    expect_error(
        adapter.as_ref(),
        &IncomingRequest::new(body(), NOW_MS),
        401,
        "missing_token",
    )
    .await;
}

#[tokio::test]
async fn jwks_url_answering_garbage_is_503() {
    let server = JwksServer::start(json!({"not": "a jwks"}), None).await;
    let adapter = build(&format!(
        "package_names = ['{PACKAGE}']\naudience = '{AUDIENCE}'\npush_service_account = '{PUSH_ACCOUNT}'\n\
         jwks_url = '{}'\n",
        server.url
    ));
    let token = mint("oidc_key_1.pem", Some("test-key-1"), &push_claims(NOW_S));
    refuses(adapter.as_ref(), &token, NOW_MS, 503, "jwks_unavailable").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_unknown_kids_share_one_fetch() {
    let server = JwksServer::start(read_json(fixture("jwks_keys_1_2.json")), None).await;
    let adapter: std::sync::Arc<dyn StoreAdapter> = build(&format!(
        "package_names = ['{PACKAGE}']\naudience = '{AUDIENCE}'\npush_service_account = '{PUSH_ACCOUNT}'\n\
         jwks_url = '{}'\n",
        server.url
    ))
    .into();
    let token = mint("oidc_key_2.pem", Some("test-key-2"), &push_claims(NOW_S));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (adapter, token) = (adapter.clone(), token.clone());
            tokio::spawn(async move { accepts(adapter.as_ref(), &token, NOW_MS).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(server.hits(), 1);
}

/// Forged tokens cannot turn into fetches while the key set cannot be
/// loaded: after a failed load the next waits one second, doubling with each
/// failure in a row up to a minute, however many tokens arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_fetches_are_rate_limited_while_no_key_set_loads() {
    let server = JwksServer::start(read_json(fixture("jwks_key_1.json")), None).await;
    server.state.lock().unwrap().status = 500;
    let adapter: std::sync::Arc<dyn StoreAdapter> = build(&format!(
        "package_names = ['{PACKAGE}']\naudience = '{AUDIENCE}'\npush_service_account = '{PUSH_ACCOUNT}'\n\
         jwks_url = '{}'\n",
        server.url
    ))
    .into();
    let forged = |i: usize| {
        mint(
            "oidc_key_2.pem",
            Some(&format!("forged-{i}")),
            &push_claims(NOW_S),
        )
    };

    // 100 forged pushes at once, while the source fails: one fetch.
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let (adapter, token) = (adapter.clone(), forged(i));
            tokio::spawn(async move {
                refuses(adapter.as_ref(), &token, NOW_MS, 503, "jwks_unavailable").await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(server.hits(), 1);

    // Backoff: 1 s, 2 s, 4 s… after each failure; tokens in between wait.
    let mut t = NOW_MS;
    let mut expected_hits = 1;
    for wait_ms in [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000] {
        refuses(
            adapter.as_ref(),
            &forged(0),
            t + wait_ms - 1,
            503,
            "jwks_unavailable",
        )
        .await;
        assert_eq!(server.hits(), expected_hits, "before {wait_ms} ms");
        t += wait_ms;
        refuses(adapter.as_ref(), &forged(0), t, 503, "jwks_unavailable").await;
        expected_hits += 1;
        assert_eq!(server.hits(), expected_hits, "after {wait_ms} ms");
    }

    // The source recovers: the next allowed load serves genuine tokens, and
    // forged key ids then cost at most one fetch a minute.
    server.state.lock().unwrap().status = 200;
    t += 60_000;
    let genuine = mint("oidc_key_1.pem", Some("test-key-1"), &push_claims(t / 1000));
    accepts(adapter.as_ref(), &genuine, t).await;
    let after_recovery = server.hits();
    for i in 0..100 {
        refuses(
            adapter.as_ref(),
            &forged(i),
            t + i as i64 * 100,
            401,
            "unknown_key",
        )
        .await;
    }
    assert_eq!(server.hits(), after_recovery);
}

/// A refusal's message never quotes the token's unsigned header: an
/// attacker's `kid` or `alg` text does not reach the operator's pages.
#[tokio::test]
async fn refusals_do_not_quote_the_token_header() {
    let marker = "MARKER<script>alert(1)</script>";
    let adapter = oidc_adapter();
    for token in [mint("oidc_key_2.pem", Some(marker), &push_claims(NOW_S)), {
        // An `alg` of the attacker's choosing.
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(json!({"alg": marker, "kid": marker}).to_string());
        let claims = b64.encode(push_claims(NOW_S).to_string());
        format!("{header}.{claims}.c2ln")
    }] {
        let e = adapter
            .verify_and_decode(&with_bearer(body(), &token, NOW_MS))
            .await
            .map(|_| ())
            .expect_err("refused");
        assert!(!e.message().contains("MARKER"), "{}", e.message());
    }
    // A Google-signed claim with free text in it is not quoted either.
    let mut claims = push_claims(NOW_S);
    claims["aud"] = json!(format!("https://x.example/ {marker}"));
    let token = mint("oidc_key_1.pem", Some("test-key-1"), &claims);
    let e = adapter
        .verify_and_decode(&with_bearer(body(), &token, NOW_MS))
        .await
        .map(|_| ())
        .expect_err("refused");
    assert_eq!(e.code(), "wrong_audience");
    assert!(!e.message().contains("MARKER"), "{}", e.message());
}
