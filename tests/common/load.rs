//! Load for the crash and multi-instance tests: real Stripe
//! `customer.subscription.updated` events, re-keyed and signed as Stripe
//! (re)sends them, a ledger of what each got back, and the checks that
//! nothing acknowledged is lost and nothing is applied twice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::db::Probe;
use super::ADMIN_TOKEN;

pub const PATH: &str = "/v1/notifications/stripe";
pub const SECRET: &str = "whsec_crash_tests";
pub const HOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/corpus/stripe/events_openapi/customer.subscription.updated.json"
);
/// Tracked subscriptions the traffic spreads over.
pub const SUBSCRIPTIONS: u64 = 16;

// ---------------------------------------------------------------- traffic

/// One generated Stripe event and what the test expects of it.
#[derive(Clone)]
pub struct Sent {
    pub id: String,
    pub subscription: String,
    pub created: i64,
    pub cancel_at_period_end: bool,
    pub body: Vec<u8>,
}

/// Real `customer.subscription.updated` events, re-keyed: event `n` is about
/// subscription `n % SUBSCRIPTIONS`, created `n` seconds after a base time
/// (so store order is the numbering), and turns auto-renew off or on.
pub struct Traffic {
    template: Value,
}

impl Traffic {
    pub fn new() -> Self {
        let text = std::fs::read_to_string(FIXTURE).expect("Stripe fixture");
        Self {
            template: serde_json::from_str(&text).expect("fixture JSON"),
        }
    }

    pub fn event(&self, n: u64) -> Sent {
        let id = format!("evt_crash_{n:08}");
        let subscription = format!("sub_crash_{:02}", n % SUBSCRIPTIONS);
        let created = 1_767_312_000 + n as i64;
        let cancel = n.is_multiple_of(3);
        let mut e = self.template.clone();
        e["id"] = json!(id);
        e["created"] = json!(created);
        e["data"]["object"]["id"] = json!(subscription);
        e["data"]["object"]["cancel_at_period_end"] = json!(cancel);
        if !cancel {
            e["data"]["object"]["cancel_at"] = Value::Null;
        }
        e["data"]["previous_attributes"] = json!({ "cancel_at_period_end": !cancel });
        Sent {
            id,
            subscription,
            created,
            cancel_at_period_end: cancel,
            body: e.to_string().into_bytes(),
        }
    }
}

pub fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// Posts one event signed now, as Stripe (re)sends it; `Err` when no HTTP
/// answer came back (the server died, or refused the connection).
pub async fn post(
    client: &reqwest::Client,
    base: &str,
    sent: &Sent,
) -> Result<(u16, Value), String> {
    let header = storehook_stripe::signature_header([SECRET], now_s(), &sent.body);
    let resp = client
        .post(format!("{base}{PATH}"))
        .header("Stripe-Signature", header)
        .body(sent.body.clone())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    Ok(super::into_json(resp).await)
}

/// The status of `GET <base><path>`.
pub async fn get_status(base: &str, path: &str) -> u16 {
    let resp = client()
        .get(format!("{base}{path}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    resp.status().as_u16()
}

/// Everything sent so far and what came back.
#[derive(Default)]
pub struct Ledger {
    pub sent: BTreeMap<String, Sent>,
    /// Got a 200 at least once.
    pub acked: HashSet<String>,
    /// Answered 503 and not (yet) acknowledged.
    pub refused: HashSet<String>,
    pub statuses: BTreeMap<u16, usize>,
    /// Requests with no HTTP answer (killed mid-request, connection refused).
    pub no_answer: usize,
}

impl Ledger {
    pub fn record(&mut self, sent: &Sent, answer: &Result<(u16, Value), String>) {
        self.sent
            .entry(sent.id.clone())
            .or_insert_with(|| sent.clone());
        match answer {
            Ok((status, _)) => {
                *self.statuses.entry(*status).or_default() += 1;
                if *status == 200 {
                    self.acked.insert(sent.id.clone());
                    self.refused.remove(&sent.id);
                } else if *status == 503 && !self.acked.contains(&sent.id) {
                    self.refused.insert(sent.id.clone());
                }
            }
            Err(_) => self.no_answer += 1,
        }
    }

    pub fn unacked(&self) -> Vec<Sent> {
        self.sent
            .values()
            .filter(|s| !self.acked.contains(&s.id))
            .cloned()
            .collect()
    }
}

/// What every sender shares: the traffic, the next fresh event's number
/// and the ledger of what was answered.
#[derive(Clone)]
pub struct Load {
    pub traffic: Arc<Traffic>,
    pub next: Arc<AtomicU64>,
    pub ledger: Arc<Mutex<Ledger>>,
}

impl Load {
    pub fn new() -> Self {
        Self {
            traffic: Arc::new(Traffic::new()),
            next: Arc::new(AtomicU64::new(0)),
            ledger: Arc::new(Mutex::new(Ledger::default())),
        }
    }
}

/// Runs `workers` senders until `stop`, worker `w` against `bases[w %
/// bases.len()]`: fresh events from `load.next`, and every eighth request
/// a store retry of an earlier one.
pub fn spawn_load(
    bases: &[String],
    load: &Load,
    stop: &Arc<AtomicBool>,
    workers: usize,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..workers)
        .map(|w| {
            let base = bases[w % bases.len()].clone();
            let (
                Load {
                    traffic,
                    next,
                    ledger,
                },
                stop,
            ) = (load.clone(), stop.clone());
            tokio::spawn(async move {
                let client = client();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let fresh = next.fetch_add(1, Ordering::Relaxed);
                    let n = if i.is_multiple_of(8) && fresh > 0 {
                        (fresh * 7 + w as u64) % fresh
                    } else {
                        fresh
                    };
                    let sent = traffic.event(n);
                    let answer = post(&client, &base, &sent).await;
                    let failed = answer.is_err();
                    ledger.lock().expect("ledger").record(&sent, &answer);
                    if failed {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        })
        .collect()
}

pub fn config_text(db: &Path, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_token = \"{ADMIN_TOKEN}\"\n\n\
         [database]\npath = \"{}\"\n\n\
         [stores.stripe]\nenabled = true\nsigning_secrets = [\"{SECRET}\"]\n\n{extra}\n",
        db.display()
    )
}

/// [`config_text`] with every event delivered to `hook_url` (loopback
/// allowed, retried after 0.2 s).
pub fn config_with_hook(db: &Path, hook_url: &str) -> String {
    config_text(
        db,
        &format!(
            "[delivery]\nallow_loopback = true\nretry_schedule_seconds = [0.2]\n\n\
             [[webhooks]]\nname = \"hook\"\nurl = \"{hook_url}\"\nsecret = \"{HOOK_SECRET}\"\n"
        ),
    )
}

pub async fn track_all(base: &str) {
    let client = client();
    for s in 0..SUBSCRIPTIONS {
        let resp = client
            .post(format!("{base}/v1/subscriptions"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"store": "stripe", "subscription_id": format!("sub_crash_{s:02}"), "app_user_id": format!("user-{s}")}))
            .send()
            .await
            .expect("track");
        assert!(resp.status().is_success(), "track: {}", resp.status());
    }
}

/// Every acknowledged notification is stored exactly once (`stored`: id →
/// rows); every refused one that was never acknowledged is absent.
pub fn assert_acked_stored_once(stored: &HashMap<String, i64>, ledger: &Ledger, when: &str) {
    for id in &ledger.acked {
        assert_eq!(
            stored.get(id),
            Some(&1),
            "{when}: acknowledged {id} must be stored exactly once"
        );
    }
    for id in &ledger.refused {
        assert_eq!(
            stored.get(id),
            None,
            "{when}: {id} was answered 503 but is stored"
        );
    }
}

/// Sends `sent` until it is acknowledged (a store retrying), for up to `secs`.
pub async fn retry_until_acked(
    base: &str,
    sent: &Sent,
    ledger: &Mutex<Ledger>,
    secs: u64,
) -> Value {
    let client = client();
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let answer = post(&client, base, sent).await;
        ledger.lock().expect("ledger").record(sent, &answer);
        if let Ok((200, body)) = answer {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{} never acknowledged: {answer:?}",
            sent.id
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (up to 30 s) until the outbox has no delivery left to make.
pub async fn wait_until_delivered(probe: &Probe) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pending = probe
            .count("SELECT count(*) FROM deliveries WHERE status != 'delivered'")
            .await;
        if pending == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} deliveries still not delivered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks what the receiver got: every one of the `sent` events (at least
/// once), and per subscription their first arrivals in sequence order.
/// Returns how many deliveries were repeats (redelivered after a crash).
pub fn assert_delivered_in_order(delivered: &[super::receiver::Received], sent: usize) -> usize {
    let mut ids = HashSet::new();
    let mut first_seen: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut repeats = 0;
    for r in delivered {
        let event = r.json();
        let id = event["event"]["id"].as_str().unwrap_or_default().to_owned();
        if !ids.insert(id) {
            repeats += 1;
            continue;
        }
        let sub = event["event"]["subscription_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        first_seen
            .entry(sub)
            .or_default()
            .push(event["event"]["sequence"].as_i64().unwrap_or(-1));
    }
    assert_eq!(ids.len(), sent, "every event delivered");
    for (sub, seqs) in &first_seen {
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        assert_eq!(seqs, &sorted, "{sub}: delivered out of order");
    }
    repeats
}

/// Checks that each subscription's events carry the sequence numbers
/// 1..=n, each once (nothing applied twice, nothing skipped); returns n per
/// subscription.
pub fn assert_sequences_whole(sequences: Vec<(String, i64)>) -> BTreeMap<String, i64> {
    let mut per_sub: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (sub, seq) in sequences {
        per_sub.entry(sub).or_default().push(seq);
    }
    per_sub
        .into_iter()
        .map(|(sub, mut seqs)| {
            seqs.sort_unstable();
            let n = seqs.len() as i64;
            assert_eq!(seqs, (1..=n).collect::<Vec<_>>(), "{sub}: sequences");
            (sub, n)
        })
        .collect()
}
