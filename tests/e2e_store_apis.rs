//! The pull side through the real binary and a real store's client: the
//! Stripe adapter backfills from a loopback stand-in of Stripe's API
//! (bearer key checked as Stripe does) after a simulated 10-day outage,
//! and ends where a server that got every event pushed ends. The host's
//! own mechanics (restart mid-backfill, cancel, acknowledgement) are in
//! `tests/store_apis.rs`; each adapter's client in its plugin's tests.

mod common;

use std::process::Command;

use common::{eventually, BinaryServer, ADMIN_TOKEN};
use serde_json::Value;
use storehook_stand_ins::stripe::{event_copy, recorded_events, StripeStandIn};

const SECRET: &str = "whsec_e2e_backfill";
const KEY: &str = "rk_test_e2eBackfillKey0123456789";

fn stores(extra: &str) -> String {
    format!(
        "[tracking]\nauto_track = true\n\n[store_apis]\ncatch_up_interval_hours = 0\n\n\
         [delivery]\nallow_loopback = true\n\n\
         [[webhooks]]\nname = \"app\"\nurl = \"http://127.0.0.1:9/unreachable\"\n\
         secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n\n\
         [stores.stripe]\nenabled = true\nsigning_secrets = [\"{SECRET}\"]\n{extra}"
    )
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

/// The events storehook emitted and the subscriptions they name, without
/// the bookkeeping that differs between two servers.
async fn observable(client: &reqwest::Client, base: &str) -> (Vec<Value>, Vec<Value>) {
    let events = get(client, base, "/v1/events?limit=1000").await["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut ids: Vec<String> = events
        .iter()
        .filter_map(|e| e["subscription_id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids.dedup();
    let mut subs = Vec::new();
    for id in ids {
        let mut sub = get(client, base, &format!("/v1/subscriptions/stripe/{id}")).await;
        for volatile in ["created_at", "updated_at", "tracked_since"] {
            sub.as_object_mut().map(|o| o.remove(volatile));
        }
        for n in sub["notifications"].as_array_mut().into_iter().flatten() {
            n.as_object_mut().map(|o| {
                o.remove("received_at");
                o.remove("source");
                o.remove("id")
            });
        }
        subs.push(sub);
    }
    let events = events
        .into_iter()
        .map(|mut e| {
            for volatile in ["id", "created_at", "cursor", "received_at"] {
                e.as_object_mut().map(|o| o.remove(volatile));
            }
            e
        })
        .collect();
    (events, subs)
}

/// `storehook backfill stripe --since 11d` against the running binary; stdout.
async fn backfill_cli(server: &BinaryServer) -> String {
    let config = server.dir.join("config.toml");
    let base = server.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_storehook"))
            .arg("--config")
            .arg(&config)
            .args(["backfill", "stripe", "--since", "11d", "--url", &base])
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
    let out = backfill_cli(&recovered).await;
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

    let from_push = observable(&client, &pushed.base).await;
    let from_backfill = observable(&client, &recovered.base).await;
    assert!(
        from_push.0.len() >= 3 && !from_push.1.is_empty(),
        "the pushed server tracked subscriptions and emitted events: {from_push:?}"
    );
    assert_eq!(from_backfill.0, from_push.0, "the same events, in order");
    assert_eq!(from_backfill.1, from_push.1, "the same subscriptions");
    let store = get(&client, &recovered.base, "/v1/stores").await;
    let stripe_status = store["stores"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["store"] == "stripe").cloned())
        .expect("stripe listed");
    assert_eq!(
        stripe_status["counts"]["recovered"],
        events.len(),
        "{stripe_status}"
    );

    // Twice: all duplicates, nothing changes.
    let out = backfill_cli(&recovered).await;
    assert!(out.contains("0 recovered"), "{out}");
    let again = eventually(5, "the same state", || async {
        let now = observable(&client, &recovered.base).await;
        if now == from_backfill {
            Ok(now)
        } else {
            Err(now)
        }
    })
    .await;
    assert_eq!(again, from_backfill);
}
