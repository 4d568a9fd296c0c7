//! The pull side through the real binary and each store's real client:
//! after a simulated 10-day outage whose notifications were never pushed,
//! `storehook backfill <store> --since …` recovers them from a loopback
//! stand-in of the store's API (authentication checked as the store does),
//! and the server ends where a server that got every notification pushed
//! ends; a second backfill changes nothing. Stripe lists its events, Apple
//! its notification history (real JWS, signed by a test chain the config
//! trusts), Google its voided purchases and the purchases' states. The
//! host's own mechanics (restart mid-backfill, cancel, acknowledgement)
//! are in `tests/store_apis.rs`; each adapter's client in its plugin's
//! tests.

mod common;

use std::process::Command;

use common::{comparable_events, eventually, make_comparable, BinaryServer, ADMIN_TOKEN};
use serde_json::{json, Value};
use storehook_stand_ins::apple::signing::TestChain;
use storehook_stand_ins::apple::{AppleApiKey, AppleStandIn, HistoryRecord};
use storehook_stand_ins::stripe::{event_copy, recorded_events, StripeStandIn};

const SECRET: &str = "whsec_e2e_backfill";
const KEY: &str = "rk_test_e2eBackfillKey0123456789";

/// Auto-tracking, no catch-up of its own (the test starts each backfill),
/// a webhook endpoint, and `store_tables` (`[stores.<store>]` …).
fn with_store(store_tables: &str) -> String {
    format!(
        "[tracking]\nauto_track = true\n\n[store_apis]\ncatch_up_interval_hours = 0\n\n\
         [delivery]\nallow_loopback = true\n\n\
         [[webhooks]]\nname = \"app\"\nurl = \"http://127.0.0.1:9/unreachable\"\n\
         secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n\n{store_tables}"
    )
}

fn stores(extra: &str) -> String {
    with_store(&format!(
        "[stores.stripe]\nenabled = true\nsigning_secrets = [\"{SECRET}\"]\n{extra}"
    ))
}

async fn get(client: &reqwest::Client, base: &str, path: &str) -> Value {
    client
        .get(format!("{base}{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

/// The events storehook emitted and the subscriptions of `store` they
/// name, without the bookkeeping that differs between two servers.
async fn observable(client: &reqwest::Client, base: &str, store: &str) -> (Vec<Value>, Vec<Value>) {
    let events = comparable_events(&get(client, base, "/v1/events?limit=1000").await);
    let mut ids: Vec<String> = events
        .iter()
        .filter_map(|e| e["subscription_id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids.dedup();
    let mut subs = Vec::new();
    for id in ids {
        let mut sub = get(client, base, &format!("/v1/subscriptions/{store}/{id}")).await;
        make_comparable(&mut sub, &["received_at", "source", "id"]);
        subs.push(sub);
    }
    (events, subs)
}

/// `storehook backfill <store> --since <since>` against the running
/// binary; stdout.
async fn backfill_cli(server: &BinaryServer, store: &str, since: &str) -> String {
    let config = server.dir.join("config.toml");
    let base = server.base.clone();
    let (store, since) = (store.to_owned(), since.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_storehook"))
            .arg("--config")
            .arg(&config)
            .args(["backfill", &store, "--since", &since, "--url", &base])
            .env_remove("STOREHOOK_ADMIN_TOKEN")
            .output()
            .expect("run storehook backfill")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_day_stripe_outage_is_recovered_by_backfill_as_if_pushed() {
    // Ten days of real events (the recorded corpus, re-dated), oldest
    // first, of the types storehook maps (the ones a backfill asks for).
    let now = common::now_s();
    let templates: Vec<Value> = recorded_events()
        .into_iter()
        .filter(|e| {
            storehook_stripe::MAPPED_EVENT_TYPES.contains(&e["type"].as_str().unwrap_or_default())
        })
        .collect();
    assert!(templates.len() >= 8, "the corpus covers the mapped types");
    let step = 10 * 86_400 / (templates.len() as i64 + 1);
    let events: Vec<Value> = templates
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let created = now - 10 * 86_400 + (i as i64 + 1) * step;
            event_copy(t, &format!("evt_outage_{i:02}"), created)
        })
        .collect();

    // Stripe's side: the events it could not deliver during the outage.
    let stripe = StripeStandIn::start(KEY).await;
    for e in &events {
        stripe.add_event(e.clone(), false);
    }

    let client = reqwest::Client::new();
    let pushed_dir = tempfile::tempdir().expect("tempdir");
    let pushed = BinaryServer::start(pushed_dir.path(), &stores(""));
    for e in &events {
        let status = common::send_stripe(&client, &pushed.base, SECRET, e.to_string()).await;
        assert_eq!(status, 200, "pushed {}", e["id"]);
    }

    let recovered_dir = tempfile::tempdir().expect("tempdir");
    let recovered = BinaryServer::start(
        recovered_dir.path(),
        &stores(&format!(
            "\n[stores.stripe.api]\nsecret_key = \"{KEY}\"\nbase_url = \"{}\"\n",
            stripe.base_url()
        )),
    );
    let out = backfill_cli(&recovered, "stripe", "11d").await;
    assert!(
        out.contains(&format!("done: {n} read, {n} recovered", n = events.len())),
        "{out}"
    );
    let listed = stripe.requests_to("/v1/events");
    assert!(!listed.is_empty(), "the backfill asked Stripe");
    assert!(
        listed.iter().all(|r| r.authenticated && r.status == 200),
        "every request carried the key"
    );
    let from_push = recovered_as_if_pushed(
        &pushed,
        &recovered,
        "stripe",
        "11d",
        (events.len(), 0),
        |_| {},
    )
    .await;
    assert!(
        from_push.0.len() >= 3 && !from_push.1.is_empty(),
        "the pushed server tracked subscriptions and emitted events: {from_push:?}"
    );
}

/// What a store's API cannot say as its push did, removed from an event
/// or a stored notification before two servers are compared.
type Unsayable = fn(&mut Value);

/// After a first backfill of `recovered`: it emitted the same events in
/// the same order as `pushed` and holds the same subscriptions of `store`
/// (less what `unsayable` removes), counts `count` notifications
/// recovered, and a second `storehook backfill` finds every notification a
/// duplicate (it re-applies `rereads` states read again) and changes
/// nothing. What the pushed server shows.
async fn recovered_as_if_pushed(
    pushed: &BinaryServer,
    recovered: &BinaryServer,
    store: &str,
    since: &str,
    (count, rereads): (usize, usize),
    unsayable: Unsayable,
) -> (Vec<Value>, Vec<Value>) {
    let client = reqwest::Client::new();
    let seen = |base: String| {
        let client = client.clone();
        async move {
            let (mut events, mut subs) = observable(&client, &base, store).await;
            events.iter_mut().for_each(unsayable);
            for n in subs
                .iter_mut()
                .flat_map(|s| s["notifications"].as_array_mut().into_iter().flatten())
            {
                unsayable(n);
            }
            (events, subs)
        }
    };
    let from_push = seen(pushed.base.clone()).await;
    let from_backfill = seen(recovered.base.clone()).await;
    assert_eq!(from_backfill.0, from_push.0, "the same events, in order");
    assert_eq!(from_backfill.1, from_push.1, "the same subscriptions");
    let stores = get(&client, &recovered.base, "/v1/stores").await;
    let status = stores["stores"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["store"] == store).cloned())
        .expect("the store is listed");
    assert_eq!(status["counts"]["recovered"], count, "{status}");

    // Twice: all duplicates, nothing changes.
    let out = backfill_cli(recovered, store, since).await;
    assert!(
        out.contains(&format!("{rereads} recovered, {count} already here")),
        "{out}"
    );
    let again = eventually(5, "the same state", || async {
        let now = seen(recovered.base.clone()).await;
        if now == from_backfill {
            Ok(now)
        } else {
            Err(now)
        }
    })
    .await;
    assert_eq!(again, from_backfill);
    from_push
}

// ---- Apple: Get Notification History ----

const BUNDLE: &str = "com.example.outage";
const APP_APPLE_ID: i64 = 1_234_567_890;

/// One App Store Server Notification V2 about `original`, with its signed
/// transaction and renewal info, all signed by `chain`.
struct AppleNotification<'a> {
    uuid: &'a str,
    kind: &'a str,
    subtype: Option<&'a str>,
    original: &'a str,
    transaction: &'a str,
    at: i64,
    expires: i64,
    auto_renew: bool,
    refunded: bool,
}

impl AppleNotification<'_> {
    fn sign(&self, chain: &TestChain) -> String {
        let mut transaction = json!({
            "transactionId": self.transaction, "originalTransactionId": self.original,
            "bundleId": BUNDLE, "productId": "pro.monthly",
            "purchaseDate": self.at - 60_000, "originalPurchaseDate": self.at - 60_000,
            "expiresDate": self.expires, "type": "Auto-Renewable Subscription",
            "appAccountToken": "7e3fb20b-4cdb-47cc-936d-99d65f608138",
            "inAppOwnershipType": "PURCHASED", "signedDate": self.at,
            "environment": "Production", "transactionReason": "PURCHASE",
            "price": 9990, "currency": "EUR"
        });
        if self.refunded {
            transaction["revocationDate"] = json!(self.at);
            transaction["revocationReason"] = json!(0);
        }
        let renewal = json!({
            "originalTransactionId": self.original, "autoRenewProductId": "pro.monthly",
            "productId": "pro.monthly", "autoRenewStatus": i64::from(self.auto_renew),
            "signedDate": self.at, "environment": "Production", "renewalDate": self.expires
        });
        let mut payload = json!({
            "notificationType": self.kind, "notificationUUID": self.uuid,
            "data": {"appAppleId": APP_APPLE_ID, "bundleId": BUNDLE, "bundleVersion": "1",
                     "environment": "Production",
                     "signedTransactionInfo": chain.sign(&transaction),
                     "signedRenewalInfo": chain.sign(&renewal),
                     "status": if self.refunded || self.kind == "EXPIRED" { 2 } else { 1 }},
            "version": "2.0", "signedDate": self.at
        });
        if let Some(subtype) = self.subtype {
            payload["subtype"] = json!(subtype);
        }
        chain.sign(&payload)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_day_apple_outage_is_recovered_by_backfill_as_if_pushed() {
    // Ten days of two subscriptions' lives, oldest first.
    let start = common::now_s() * 1000 - 10 * 86_400_000 + 3_600_000;
    let at = |days: f64| start + (days * 86_400_000.0) as i64;
    let n =
        |uuid, kind, subtype, original, transaction, when: f64, expires: f64| AppleNotification {
            uuid,
            kind,
            subtype,
            original,
            transaction,
            at: at(when),
            expires: at(expires),
            auto_renew: true,
            refunded: false,
        };
    let life = vec![
        n(
            "a-1",
            "SUBSCRIBED",
            Some("INITIAL_BUY"),
            "2000000000000001",
            "2000000000000001",
            0.0,
            3.0,
        ),
        n(
            "b-1",
            "SUBSCRIBED",
            Some("INITIAL_BUY"),
            "2000000000000002",
            "2000000000000002",
            1.0,
            4.0,
        ),
        n(
            "a-2",
            "DID_RENEW",
            None,
            "2000000000000001",
            "2000000000000011",
            3.0,
            6.0,
        ),
        AppleNotification {
            auto_renew: false,
            ..n(
                "b-2",
                "DID_CHANGE_RENEWAL_STATUS",
                Some("AUTO_RENEW_DISABLED"),
                "2000000000000002",
                "2000000000000002",
                3.5,
                4.0,
            )
        },
        AppleNotification {
            auto_renew: false,
            ..n(
                "b-3",
                "EXPIRED",
                Some("VOLUNTARY"),
                "2000000000000002",
                "2000000000000002",
                4.0,
                4.0,
            )
        },
        n(
            "a-3",
            "DID_RENEW",
            None,
            "2000000000000001",
            "2000000000000021",
            6.0,
            9.0,
        ),
        AppleNotification {
            refunded: true,
            ..n(
                "a-4",
                "REFUND",
                None,
                "2000000000000001",
                "2000000000000021",
                8.0,
                9.0,
            )
        },
    ];
    let chain = TestChain::good();
    let signed: Vec<String> = life.iter().map(|n| n.sign(&chain)).collect();

    // Apple's side: the history of the ten days, two pages, real JWS.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let apple = AppleStandIn::production(
        AppleApiKey {
            key_id: "2X9R4HXF34".into(),
            issuer_id: "57246542-96fe-1a63-e053-0824d011072a".into(),
            public_key_pem: key.public_key_pem(),
        },
        &[BUNDLE],
    )
    .await;
    let (first, second) = signed.split_at(4);
    apple.script_history(
        BUNDLE,
        vec![
            first.iter().map(HistoryRecord::new).collect(),
            second.iter().map(HistoryRecord::new).collect(),
        ],
    );

    // Both servers trust the test chain's root; only one has the API key.
    let apple_tables = |dir: &std::path::Path, api: bool| {
        let root = dir.join("test-root.der");
        std::fs::write(&root, &chain.root).expect("write root");
        let mut tables = format!(
            "[stores.apple]\nenabled = true\nenvironments = [\"Production\"]\n\
             apps = [{{ bundle_id = \"{BUNDLE}\", app_apple_id = {APP_APPLE_ID} }}]\n\
             root_certificates = [\"{}\"]\n",
            root.display()
        );
        if api {
            let pem = dir.join("SubscriptionKey_2X9R4HXF34.p8");
            std::fs::write(&pem, key.serialize_pem()).expect("write key");
            tables += &format!(
                "[stores.apple.api]\nkey_id = \"2X9R4HXF34\"\n\
                 issuer_id = \"57246542-96fe-1a63-e053-0824d011072a\"\n\
                 private_key_file = \"{}\"\nproduction_url = \"{}\"\n",
                pem.display(),
                apple.url()
            );
        }
        with_store(&tables)
    };
    let client = reqwest::Client::new();
    let pushed_dir = tempfile::tempdir().expect("tempdir");
    let pushed = BinaryServer::start(pushed_dir.path(), &apple_tables(pushed_dir.path(), false));
    for (jws, n) in signed.iter().zip(&life) {
        let response = client
            .post(format!("{}/v1/notifications/apple", pushed.base))
            .json(&json!({ "signedPayload": jws }))
            .send()
            .await
            .expect("push");
        assert_eq!(response.status().as_u16(), 200, "pushed {}", n.uuid);
    }

    let recovered_dir = tempfile::tempdir().expect("tempdir");
    let recovered = BinaryServer::start(
        recovered_dir.path(),
        &apple_tables(recovered_dir.path(), true),
    );
    let out = backfill_cli(&recovered, "apple", "10d").await;
    assert!(
        out.contains(&format!("done: {n} read, {n} recovered", n = life.len())),
        "{out}"
    );
    let history: Vec<_> = apple
        .requests()
        .into_iter()
        .filter(|r| r.path == "/inApps/v1/notifications/history")
        .collect();
    assert_eq!(history.len(), 2, "both pages asked for: {history:?}");
    assert!(
        history
            .iter()
            .all(|r| r.status == 200 && r.claims.is_some()),
        "every request carried a token Apple accepts"
    );

    let from_push =
        recovered_as_if_pushed(&pushed, &recovered, "apple", "10d", (life.len(), 0), |_| {}).await;
    let types: Vec<_> = from_push.0.iter().map(|e| e["type"].clone()).collect();
    assert_eq!(
        types,
        [
            "INITIAL_PURCHASE",
            "INITIAL_PURCHASE",
            "RENEWAL",
            "CANCELLATION",
            "EXPIRATION",
            "RENEWAL",
            "REFUND"
        ],
        "{from_push:?}"
    );
    assert_eq!(
        from_push.1.len(),
        2,
        "both subscriptions tracked: {from_push:?}"
    );
}

// ---- Google: voided purchases and re-read states ----

const PACKAGE: &str = "com.example.outage";
const PUSH_TOKEN: &str = "e2e-push-secret";

/// A subscription's `SubscriptionPurchaseV2` in `state`, bought at `start`.
fn play_subscription(state: &str, start: i64, expires: i64) -> Value {
    let rfc3339 = |ms: i64| {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .expect("a time")
            .format(&time::format_description::well_known::Rfc3339)
            .expect("formats")
    };
    json!({"kind": "androidpublisher#subscriptionPurchaseV2", "startTime": rfc3339(start),
           "subscriptionState": state,
           "acknowledgementState": "ACKNOWLEDGEMENT_STATE_ACKNOWLEDGED",
           "externalAccountIdentifiers": {"obfuscatedExternalAccountId": "user-1"},
           "lineItems": [{"productId": "premium_monthly", "expiryTime": rfc3339(expires),
                          "autoRenewingPlan": {"autoRenewEnabled": true}}]})
}

/// A one-time product's `ProductPurchase` (`purchaseState` 0 bought, 1 canceled).
fn play_product(product: &str, purchase_state: i64, bought: i64) -> Value {
    json!({"kind": "androidpublisher#productPurchase", "productId": product,
           "purchaseTimeMillis": bought.to_string(), "purchaseState": purchase_state,
           "consumptionState": 0, "acknowledgementState": 1, "quantity": 1,
           "obfuscatedExternalAccountId": "user-2"})
}

/// Google keeps no history of its notifications: of an outage longer than
/// Pub/Sub's retention, a backfill recovers the voids (refunds, revocations:
/// `voidedpurchases.list`, 30 days) and re-reads the states of the purchases
/// it knows. Here both servers saw four purchases (two subscriptions, two
/// one-time products) and read their states; then one server was down
/// while Google refunded a subscription and a one-time product.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_day_google_outage_is_recovered_by_backfill_as_if_pushed() {
    use storehook_stand_ins::google::{fixture_account, fixture_key_file, PlayStandIn, Route};
    let now = common::now_s() * 1000;
    let day = 86_400_000;
    let bought = now - 12 * day;
    let play = PlayStandIn::start(fixture_account(), &[PACKAGE]).await;
    // Two subscriptions and two one-time products, bought before the outage.
    play.set_purchase(
        "sub-1.AO-J1Ox",
        play_subscription("SUBSCRIPTION_STATE_ACTIVE", bought, now + 18 * day),
    );
    play.set_purchase(
        "sub-2.AO-J1Ox",
        play_subscription("SUBSCRIPTION_STATE_ACTIVE", bought, now + 18 * day),
    );
    play.set_product_purchase(
        "otp-1.AO-J1Ox",
        "coins_100",
        play_product("coins_100", 0, bought),
    );
    play.set_product_purchase(
        "otp-2.AO-J1Ox",
        "coins_500",
        play_product("coins_500", 0, bought),
    );
    let sub = |token: &str| {
        json!({"version": "1.0", "notificationType": 4,
                                   "purchaseToken": token, "subscriptionId": "premium_monthly"})
    };
    let otp = |token: &str, sku: &str| {
        json!({"version": "1.0", "notificationType": 1,
                                              "purchaseToken": token, "sku": sku})
    };
    let before = vec![
        common::play_push(
            PACKAGE,
            "m-1",
            bought,
            "subscriptionNotification",
            sub("sub-1.AO-J1Ox"),
        ),
        common::play_push(
            PACKAGE,
            "m-2",
            bought + 1,
            "subscriptionNotification",
            sub("sub-2.AO-J1Ox"),
        ),
        common::play_push(
            PACKAGE,
            "m-3",
            bought + 2,
            "oneTimeProductNotification",
            otp("otp-1.AO-J1Ox", "coins_100"),
        ),
        common::play_push(
            PACKAGE,
            "m-4",
            bought + 3,
            "oneTimeProductNotification",
            otp("otp-2.AO-J1Ox", "coins_500"),
        ),
    ];

    let config = with_store(&format!(
        "[stores.google]\nenabled = true\npackage_names = [\"{PACKAGE}\"]\n\
         push_token = \"{PUSH_TOKEN}\"\n[stores.google.play_api]\n\
         service_account_key_file = \"{}\"\nbase_url = \"{}\"\ntoken_url = \"{}\"\n",
        fixture_key_file().display(),
        play.base_url,
        play.token_url
    ));
    let client = reqwest::Client::new();
    let push = |base: &str, body: &str| {
        let request = client
            .post(format!("{base}/v1/notifications/google?token={PUSH_TOKEN}"))
            .header("content-type", "application/json")
            .body(body.to_owned());
        async move {
            request
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    let pushed_dir = tempfile::tempdir().expect("tempdir");
    let pushed = BinaryServer::start(pushed_dir.path(), &config);
    let recovered_dir = tempfile::tempdir().expect("tempdir");
    let recovered = BinaryServer::start(recovered_dir.path(), &config);
    // Both servers got the purchases and read their states back.
    for server in [&pushed, &recovered] {
        for body in &before {
            assert_eq!(push(&server.base, body).await, 200, "{body}");
        }
        for token in [
            "sub-1.AO-J1Ox",
            "sub-2.AO-J1Ox",
            "otp-1.AO-J1Ox",
            "otp-2.AO-J1Ox",
        ] {
            let path = format!("/v1/subscriptions/google/{token}");
            eventually(10, "the state read back", || async {
                let sub = get(&client, &server.base, &path).await;
                if sub["state_pending"] == false && sub["status"] == "active" {
                    Ok(())
                } else {
                    Err(sub)
                }
            })
            .await;
        }
    }

    // The outage: Google refunds a subscription and a one-time product.
    // Play's states say so (a revoked subscription reads as expired), the
    // voids are listed, and only one server gets their notifications. They
    // happen after the states were read, as they would: Play's states carry
    // no time of their own, a state read is as of when it was read.
    let read_at = common::now_s() * 1000;
    // (The stand-in's clock, like `read_at`, counts whole seconds.)
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let voids = [
        (
            "sub-2.AO-J1Ox",
            "GPA.3300-1111-2222-33333",
            1,
            read_at + 1000,
            true,
        ),
        (
            "otp-1.AO-J1Ox",
            "GPA.3300-4444-5555-66666",
            2,
            read_at + 1001,
            false,
        ),
    ];
    play.set_purchase(
        "sub-2.AO-J1Ox",
        play_subscription("SUBSCRIPTION_STATE_EXPIRED", bought, read_at + 1000),
    );
    play.set_product_purchase(
        "otp-1.AO-J1Ox",
        "coins_100",
        play_product("coins_100", 1, bought),
    );
    for (i, (token, order, product_type, at, subscription)) in voids.into_iter().enumerate() {
        play.add_voided(
            PACKAGE,
            json!({"kind": "androidpublisher#voidedPurchase", "purchaseToken": token,
                   "orderId": order, "purchaseTimeMillis": bought.to_string(),
                   "voidedTimeMillis": at.to_string(), "voidedSource": 0, "voidedReason": 1}),
            subscription,
        );
        let void = json!({"purchaseToken": token, "orderId": order,
                          "productType": product_type, "refundType": 1});
        let body = common::play_push(
            PACKAGE,
            &format!("v-{i}"),
            at,
            "voidedPurchaseNotification",
            void,
        );
        assert_eq!(push(&pushed.base, &body).await, 200, "{body}");
    }
    let reads_before = (play.subscription_gets().len(), play.product_gets().len());

    let out = backfill_cli(&recovered, "google", "10d").await;
    assert!(out.contains("done: "), "{out}");
    // The voids, and the states of the purchases not refunded (a void is
    // final: a revoked purchase is not read again).
    assert!(out.contains("4 recovered"), "{out}");
    let gets = play.subscription_gets();
    assert_eq!(
        gets[reads_before.0..],
        [(PACKAGE.to_owned(), "sub-1.AO-J1Ox".to_owned())],
        "{gets:?}"
    );
    let gets = play.product_gets();
    assert_eq!(
        gets[reads_before.1..],
        [(
            PACKAGE.to_owned(),
            "coins_500".to_owned(),
            "otp-2.AO-J1Ox".to_owned()
        )],
        "{gets:?}"
    );
    assert_eq!(play.served_on(Route::VoidedList).len(), 1);
    assert!(play.complaints().is_empty(), "{:?}", play.complaints());

    // A pushed void names the product type; the list does not, and says
    // when the purchase was made, which the push does not: the store's own
    // type name and the purchase time of a refund are all that differ.
    fn unsayable(v: &mut Value) {
        if v["type"] == "REFUND" {
            let o = v.as_object_mut().expect("an object");
            o.remove("store_event_type");
            o.remove("raw_type");
            o.remove("purchased_at_ms");
        }
    }
    let from_push =
        recovered_as_if_pushed(&pushed, &recovered, "google", "10d", (2, 2), unsayable).await;
    let types: Vec<_> = from_push.0.iter().map(|e| e["type"].clone()).collect();
    assert_eq!(
        types,
        [
            "INITIAL_PURCHASE",
            "INITIAL_PURCHASE",
            "NON_RENEWING_PURCHASE",
            "NON_RENEWING_PURCHASE",
            "REFUND",
            "REFUND"
        ],
        "{from_push:?}"
    );
    let status: Vec<_> = from_push.1.iter().map(|s| s["status"].clone()).collect();
    assert_eq!(
        status,
        ["revoked", "active", "active", "revoked"],
        "otp-1, otp-2, sub-1, sub-2: {from_push:?}"
    );
}
