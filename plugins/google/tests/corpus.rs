//! Every item of tests/corpus/google (see its MANIFEST.md) with the outcome
//! the manifest asks for.

mod common;

use common::*;
use serde_json::{json, Value};
use storehook_core::{
    EventType, IncomingRequest, Outcome, PurchaseKind, StoreAdapter, SubscriptionRef,
    SubscriptionStatus,
};
use storehook_google::decode::rfc3339_to_ms;

/// Every package name that appears in the corpus.
const CORPUS_PACKAGES: [&str; 8] = [
    "com.okmusician.android",
    "com.aitubo.image.creator",
    "com.edufox",
    "com.createaiart.aigenerator.draw.photo",
    "com.prometheuspoker.battle",
    "com.twigano.fashion",
    "cn.soulmate.elf",
    "com.example.subscriptions",
];

fn corpus_adapter() -> Box<dyn StoreAdapter> {
    build(&push_token_config(&CORPUS_PACKAGES))
}

/// An adapter with the Play API configured for one package (the API is not
/// called while verifying; only `state_fetch_pending` is set).
fn play_api_adapter(package: &str) -> Box<dyn StoreAdapter> {
    build(&format!(
        "package_names = ['{package}']\npush_token = '{PUSH_TOKEN}'\n[play_api]\n\
         service_account_key_file = 'service_account.json'\nbase_url = 'http://127.0.0.1:9'\n\
         token_url = 'http://127.0.0.1:9/token'\n"
    ))
}

enum Expect {
    Notification {
        event: EventType,
        raw: &'static str,
        package: &'static str,
        key: Option<&'static str>,
        product: Option<&'static str>,
    },
    Ack(&'static str),
}

#[tokio::test]
async fn push_bodies() {
    use EventType as E;
    let okm_token = "oecmlmnfmejgbajnlfpiepdd.AO-J1OxD6rAoZZ1gm9A4gO1PhfhM9xnebdW75f3mCaedh1qX4-Y55LTfFRzB1ZiyZvehGGWe6inXpl-hJ8wSM-EK3DNGUflmMZQgo9hjuee43cdwsAY0P3hrRrc7qrr0bUtlDNivkCXw";
    let sub = |event, raw, package, key, product| Expect::Notification {
        event,
        raw,
        package,
        key: Some(key),
        product: Some(product),
    };
    let test = |package| Expect::Notification {
        event: E::Test,
        raw: "TEST_NOTIFICATION",
        package,
        key: None,
        product: None,
    };
    let cases: Vec<(&str, &str, Expect)> = vec![
        ("okmusician_2019_test_notification.json", "611277014847514", test("com.okmusician.android")),
        (
            "okmusician_2019_subscription_purchased.json",
            "611283052513650",
            sub(E::InitialPurchase, "SUBSCRIPTION_PURCHASED (4)", "com.okmusician.android", okm_token, "okmusician.yearly.guitar"),
        ),
        (
            "okmusician_2019_subscription_canceled.json",
            "611287925672884",
            sub(E::Cancellation, "SUBSCRIPTION_CANCELED (3)", "com.okmusician.android", okm_token, "okmusician.yearly.guitar"),
        ),
        (
            "okmusician_2019_subscription_restarted.json",
            "611289414208777",
            sub(E::Uncancellation, "SUBSCRIPTION_RESTARTED (7)", "com.okmusician.android", okm_token, "okmusician.yearly.guitar"),
        ),
        (
            "okmusician_2019_subscription_renewed.json",
            "676529954566470",
            sub(
                E::Renewal,
                "SUBSCRIPTION_RENEWED (2)",
                "com.okmusician.android",
                "pcplgkdkgkfdjjdpeideajjm.AO-J1Oyd17UPIwjPAaioPBDyXA6_eYX-VvMsTJSq3dovVLobs3_MQYLaoWo4f-ldIEUgkJFzsBXGMVbBmoH5BvYMvwc6aO-lhTL_z2srJiYTn_ZkBzDrS9XArApGLXbzbXyF8OgJKXI5sgVPyRL4neNEb-VO3EvAYA",
                "okmusician.monthly.guitar",
            ),
        ),
        (
            "aitubo_2025_subscription_canceled.json",
            "14697227525191478",
            sub(
                E::Cancellation,
                "SUBSCRIPTION_CANCELED (3)",
                "com.aitubo.image.creator",
                "cklihdacecnlmaaccachgmic.AO-J1OyYaybsEEnYz_F7gXkOpxNOFcYmRx49za5pUtTf34_Ty9_m1jGxyzKRa9PvmDBVyXTko1szQYG7inHRIvgHy0gJwxPHcWppC9Megnfic_eHqhv9Zec",
                "subscribe_annual",
            ),
        ),
        (
            "edufox_2023_subscription_renewed.json",
            "7541642979606340",
            sub(
                E::Renewal,
                "SUBSCRIPTION_RENEWED (2)",
                "com.edufox",
                "nmehidagchkodknabhpinckd.AO-J1OyEVS_-ZsLI5oaR1ZllDWajOria6YMhv12XWpA-8Z_kfUCMkFM1B4Q7k_ETe2wZ826mfzDPu-sFTkioxB7vf5qumS3i-w",
                "com.edufox.sub.autorenew.monthly",
            ),
        ),
        ("createaiart_2023_test_notification.json", "8181801065393541", test("com.createaiart.aigenerator.draw.photo")),
        ("prometheuspoker_2022_test_notification.json", "6079043127548205", test("com.prometheuspoker.battle")),
        ("laravel_iap_2020_garbage_data.json", "1838996669366530", Expect::Ack("malformed_data")),
        ("docs_rtdn_reference_placeholder.json", "136969346945", Expect::Ack("malformed_data")),
        ("docs_pubsub_push_hello.json", "136969346945", Expect::Ack("malformed_data")),
    ];

    let adapter = corpus_adapter();
    for (file, message_id, expect) in cases {
        let body = std::fs::read(corpus(&format!("push_bodies/{file}"))).unwrap();
        let req = with_push_token(body.clone());
        match expect {
            Expect::Ack(code) => {
                let id = expect_ack_rejection(adapter.as_ref(), &req, code).await;
                assert_eq!(id.as_deref(), Some(message_id), "{file}");
            }
            Expect::Notification {
                event,
                raw,
                package,
                key,
                product,
            } => {
                let n = expect_notification(adapter.as_ref(), &req).await;
                assert_eq!(n.notification_id, message_id, "{file}");
                assert_eq!(n.event_type, event, "{file}");
                assert_eq!(n.raw_type, raw, "{file}");
                assert_eq!(n.app_id.as_deref(), Some(package), "{file}");
                assert_eq!(n.subscription_key.as_deref(), key, "{file}");
                assert_eq!(n.product_id.as_deref(), product, "{file}");
                // The real captures carry eventTimeMillis as a string.
                let envelope: Value = serde_json::from_slice(&body).unwrap();
                let data = storehook_google::decode::decode_data(
                    envelope["message"]["data"].as_str().unwrap(),
                )
                .unwrap();
                let dn: Value = serde_json::from_slice(&data).unwrap();
                let millis: i64 = dn["eventTimeMillis"].as_str().unwrap().parse().unwrap();
                assert_eq!(n.occurred_at_ms, millis, "{file}");
                if let Some(key) = key {
                    assert!(
                        !n.decoded.to_string().contains(key),
                        "{file}: token shown unmasked"
                    );
                }

                // With the Play API configured, subscription notifications
                // ask for the state fetch; test notifications never do.
                let with_api = play_api_adapter(package);
                let n = expect_notification(with_api.as_ref(), &req).await;
                assert_eq!(n.state_fetch_pending, event != E::Test, "{file}");
            }
        }
    }
}

#[test]
fn publish_times_parse_whatever_their_precision() {
    for file in [
        "okmusician_2019_subscription_restarted.json",
        "okmusician_2019_subscription_purchased.json",
        "prometheuspoker_2022_test_notification.json",
    ] {
        let body = std::fs::read(corpus(&format!("push_bodies/{file}"))).unwrap();
        let envelope = storehook_google::decode::parse_push_envelope(&body).unwrap();
        let at = envelope.publish_time.as_deref().and_then(rfc3339_to_ms);
        assert!(at.is_some(), "{file}");
    }
    let body = std::fs::read(corpus(
        "push_bodies/okmusician_2019_subscription_restarted.json",
    ))
    .unwrap();
    let envelope = storehook_google::decode::parse_push_envelope(&body).unwrap();
    assert_eq!(
        envelope.publish_time.as_deref(),
        Some("2019-07-10T06:21:19.52Z")
    );
    assert_eq!(
        rfc3339_to_ms("2019-07-10T06:21:19.52Z"),
        Some(1_562_739_679_520)
    );
}

#[tokio::test]
async fn data_only_notifications() {
    let adapter = corpus_adapter();
    let items = read_json(corpus("developer_notifications_data_only.json"));
    let items = items.as_array().unwrap();
    assert_eq!(items.len(), 5);
    for (i, item) in items.iter().enumerate() {
        let data = item["data"].as_str().unwrap();
        let decoded = &item["decoded"];
        let body =
            serde_json::to_vec(&json!({"message": {"data": data, "messageId": format!("d{i}")}}))
                .unwrap();
        let n = expect_notification(adapter.as_ref(), &with_push_token(body)).await;
        assert_eq!(n.app_id.as_deref(), decoded["packageName"].as_str());
        let millis: i64 = decoded["eventTimeMillis"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(n.occurred_at_ms, millis);
        match decoded["subscriptionNotification"]["notificationType"].as_i64() {
            Some(13) => assert_eq!(n.event_type, EventType::Expiration, "{i}"),
            Some(4) => assert_eq!(n.event_type, EventType::InitialPurchase, "{i}"),
            Some(3) => assert_eq!(n.event_type, EventType::Cancellation, "{i}"),
            None => assert_eq!(n.event_type, EventType::Test, "{i}"),
            Some(other) => panic!("unexpected type {other}"),
        }
        assert_eq!(
            n.subscription_key.as_deref(),
            decoded["subscriptionNotification"]["purchaseToken"].as_str()
        );
    }
}

#[tokio::test]
async fn synthetic_notifications_of_every_type() {
    use EventType as E;
    let plain = corpus_adapter();
    let with_api = play_api_adapter("com.example.subscriptions");
    let doc = read_json(corpus("synthetic_developer_notifications.json"));
    let items = doc["items"].as_array().unwrap();
    assert_eq!(items.len(), 26);
    for item in items {
        let id = item["id"].as_str().unwrap();
        let name = item["name"].as_str().unwrap();
        let body = serde_json::to_vec(&item["push_body"]).unwrap();
        let message_id = item["push_body"]["message"]["messageId"].as_str().unwrap();
        let dn = &item["developer_notification"];
        // The push body carries exactly this notification.
        let data = storehook_google::decode::decode_data(
            item["push_body"]["message"]["data"].as_str().unwrap(),
        )
        .unwrap();
        assert_eq!(&serde_json::from_slice::<Value>(&data).unwrap(), dn, "{id}");

        // A void of a whole order is keyed by the order, so that a backfill
        // reading it from voidedpurchases.list is a duplicate; every other
        // notification by its Pub/Sub message id.
        let void = &dn["voidedPurchaseNotification"];
        let expected_id = if void.is_object() && void["refundType"] != 2 {
            format!("voided:{}", void["orderId"].as_str().unwrap())
        } else {
            message_id.to_owned()
        };
        for (adapter, api) in [(&plain, false), (&with_api, true)] {
            let n = expect_notification(adapter.as_ref(), &with_push_token(body.clone())).await;
            assert_eq!(n.notification_id, expected_id, "{id}");
            assert_eq!(
                n.occurred_at_ms.to_string(),
                dn["eventTimeMillis"].as_str().unwrap(),
                "{id}"
            );
            match item["kind"].as_str().unwrap() {
                "subscription" => {
                    let number = dn["subscriptionNotification"]["notificationType"]
                        .as_i64()
                        .unwrap();
                    let expected_raw = if name.starts_with("UNKNOWN")
                        || name.ends_with("WITHOUT_SUBSCRIPTION_ID")
                    {
                        None
                    } else {
                        Some(format!("{name} ({number})"))
                    };
                    if let Some(raw) = expected_raw {
                        assert_eq!(n.raw_type, raw, "{id}");
                    }
                    assert!(n.raw_type.ends_with(&format!("({number})")), "{id}");
                    assert_eq!(
                        n.subscription_key.as_deref(),
                        Some("synthetic-purchase-token.AO-J1Ox-SYNTHETIC")
                    );
                    assert_eq!(
                        n.product_id.as_deref(),
                        dn["subscriptionNotification"]["subscriptionId"].as_str(),
                        "{id}"
                    );
                    // Always a re-fetch, unknown types included.
                    assert_eq!(n.state_fetch_pending, api, "{id}");
                    assert_eq!(n.purchase_kind, Some(PurchaseKind::Subscription), "{id}");
                    let event = match number {
                        1 | 2 => E::Renewal,
                        3 | 18 => E::Cancellation,
                        4 => E::InitialPurchase,
                        5 | 6 => E::BillingIssue,
                        7 => E::Uncancellation,
                        8 | 19 | 22 => E::PriceIncrease,
                        9 => E::SubscriptionExtended,
                        10 => E::SubscriptionPaused,
                        12 => E::Revoke,
                        13 => E::Expiration,
                        17 => E::ProductChange,
                        _ => E::Other,
                    };
                    assert_eq!(n.event_type, event, "{id}");
                }
                "one_time" => {
                    let number = dn["oneTimeProductNotification"]["notificationType"]
                        .as_i64()
                        .unwrap();
                    assert_eq!(n.raw_type, format!("{name} ({number})"), "{id}");
                    let event = if number == 1 {
                        E::NonRenewingPurchase
                    } else {
                        E::Other
                    };
                    assert_eq!(n.event_type, event, "{id}");
                    assert_eq!(n.subscription_key.as_deref(), Some("synthetic-otp-token"));
                    assert_eq!(n.product_id.as_deref(), Some("coins_100"));
                    assert_eq!(n.purchase_kind, Some(PurchaseKind::OneTime), "{id}");
                    // Read back through products.get (acknowledgement), as a
                    // subscription's state is.
                    assert_eq!(n.state_fetch_pending, api, "{id}");
                }
                "voided" => {
                    assert_eq!(n.event_type, E::Refund, "{id}");
                    let v = &dn["voidedPurchaseNotification"];
                    assert_eq!(n.subscription_key.as_deref(), v["purchaseToken"].as_str());
                    assert_eq!(n.details.transaction_id.as_deref(), v["orderId"].as_str());
                    let partial = v["refundType"] == 2;
                    let kind = match v["productType"].as_i64() {
                        Some(1) => Some(PurchaseKind::Subscription),
                        Some(2) => Some(PurchaseKind::OneTime),
                        _ => None,
                    };
                    assert_eq!(n.purchase_kind, kind, "{id}");
                    assert_eq!(
                        n.state.status,
                        (!partial).then_some(SubscriptionStatus::Revoked),
                        "{id}"
                    );
                    assert!(!n.state_fetch_pending, "{id}");
                }
                "test" => {
                    assert_eq!(n.event_type, E::Test, "{id}");
                    assert_eq!(n.subscription_key, None);
                    assert!(!n.state_fetch_pending, "{id}");
                }
                other => panic!("{id}: unknown kind {other}"),
            }
        }
    }
}

#[tokio::test]
async fn oidc_jwt_vectors() {
    let doc = read_json(corpus("oidc_jwt_vectors.json"));
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("corpus_jwks.json");
    std::fs::write(&jwks, doc["keys"]["jwks"].to_string()).unwrap();
    let synthetic = read_json(corpus("synthetic_developer_notifications.json"));
    let body = serde_json::to_vec(&synthetic["items"][0]["push_body"]).unwrap();

    let vectors = doc["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 21);
    for v in vectors {
        let id = v["id"].as_str().unwrap();
        let adapter = build(&format!(
            "package_names = ['com.example.subscriptions']\naudience = '{}'\npush_service_account = '{}'\n\
             jwks_file = '{}'\nclock_skew_seconds = {}\n",
            v["expected_audience"].as_str().unwrap(),
            v["expected_email"].as_str().unwrap(),
            jwks.display(),
            v["leeway_seconds"].as_u64().unwrap(),
        ));
        let now_ms = v["now"].as_i64().unwrap() * 1000;
        let mut req = IncomingRequest::new(body.clone(), now_ms);
        let authorization = v["authorization"].as_str().unwrap();
        if !authorization.is_empty() {
            req = req.with_header("Authorization", authorization);
        }
        let result = adapter.verify_and_decode(&req).await;
        match v["expect"].as_str().unwrap() {
            "ok" => assert!(
                matches!(result, Ok(Outcome::Notification(_))),
                "{id}: {result:?}"
            ),
            expected => {
                let code = if expected == "malformed" {
                    "malformed_token"
                } else {
                    expected
                };
                let e = result.err().unwrap_or_else(|| panic!("{id}: accepted"));
                assert_eq!(
                    (e.http_status(), e.code()),
                    (401, code),
                    "{id}: {}",
                    e.message()
                );
            }
        }
    }
}

#[tokio::test]
async fn recorded_subscriptionsv2_responses() {
    let play = play_stand_in(&["com.example.subscriptions"]).await;
    let recorded = read_json(corpus("subscriptionsv2_responses.json"));
    let recorded = recorded.as_array().unwrap();
    assert_eq!(recorded.len(), 3);
    for (i, entry) in recorded.iter().enumerate() {
        play.set_purchase(&format!("recorded-token-{i}"), entry["response"].clone());
    }
    let adapter = build(&play_config(&play, &["com.example.subscriptions"], ""));

    let expected = [
        (
            SubscriptionStatus::Expired,
            1_668_995_691_937_i64,
            false,
            "prometheus_pro",
        ),
        (
            SubscriptionStatus::Active,
            1_680_673_469_723,
            true,
            "iap_sub_year",
        ),
        (
            SubscriptionStatus::Active,
            1_758_720_566_306,
            true,
            "com.guardian.subscription.monthly.10",
        ),
    ];
    for (i, (status, expires, auto_renew, product)) in expected.into_iter().enumerate() {
        let update = adapter
            .fetch_state(SubscriptionRef::new(
                &format!("recorded-token-{i}"),
                Some("com.example.subscriptions"),
            ))
            .await
            .unwrap_or_else(|e| panic!("{i}: {} {}", e.code(), e.message()))
            .expect("a state update");
        assert_eq!(update.state.status, Some(status), "{i}");
        assert_eq!(update.state.expires_at_ms, Some(expires), "{i}");
        assert_eq!(update.state.auto_renew, Some(auto_renew), "{i}");
        assert_eq!(update.state.product_id.as_deref(), Some(product), "{i}");
        // Only the third response carries a recurringPrice (Money: units a
        // string, nanos an int); none carries an offerPhase.
        let price = (i == 2).then_some(6.99);
        assert_eq!(update.price, price, "{i}");
        assert_eq!(update.currency.as_deref(), price.map(|_| "EUR"), "{i}");
        assert_eq!(update.is_trial, None, "{i}");
        assert_eq!(update.continues_subscription_key, None);
        assert_eq!(update.app_user_id_hint, None);
        assert!(
            update.as_of_ms > 1_700_000_000_000,
            "as_of is the fetch time"
        );
    }
    assert!(play.complaints().is_empty(), "{:?}", play.complaints());
    assert_eq!(play.grants(), 1, "the access token is cached");
    let gets = play.subscription_gets();
    assert_eq!(gets.len(), 3);
    assert!(gets
        .iter()
        .all(|(package, _)| package == "com.example.subscriptions"));
}
