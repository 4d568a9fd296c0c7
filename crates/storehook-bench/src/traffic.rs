//! Realistic, correctly signed notifications for each store (and forged
//! ones), generated before a run so that the client spends its CPU on HTTP
//! rather than on signing while the server is measured.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Result;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use bytes::Bytes;
use rand::{Rng, SeedableRng};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use ring::rand::SystemRandom;
use serde_json::{json, Value};

use crate::keys::{Keys, GOOGLE_KID};

pub const BUNDLE_ID: &str = "com.storehook.bench";
pub const APP_APPLE_ID: i64 = 1_234_567_890;
pub const PACKAGE: &str = "com.storehook.bench";
pub const AUDIENCE: &str = "https://bench.storehook.test/v1/notifications/google";
pub const PUSH_ACCOUNT: &str = "rtdn-push@storehook-bench.iam.gserviceaccount.com";
pub const ADMIN_TOKEN: &str = "storehook-bench-admin-token";
const STRIPE_TEMPLATE: &str =
    include_str!("../../../tests/corpus/stripe/events_openapi/customer.subscription.updated.json");
/// Pub/Sub reuses one push token for many pushes; a few are enough.
const GOOGLE_TOKENS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Store {
    Apple,
    Google,
    Stripe,
}

impl Store {
    pub const ALL: [Store; 3] = [Store::Apple, Store::Google, Store::Stripe];

    pub fn id(self) -> &'static str {
        match self {
            Store::Apple => "apple",
            Store::Google => "google",
            Store::Stripe => "stripe",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Store::ALL.into_iter().find(|st| st.id() == s)
    }
}

/// One prepared HTTP request and what must become of it.
#[derive(Clone)]
pub struct Request {
    pub store: Store,
    pub notification_id: String,
    pub subscription: String,
    /// Its subscription is tracked before the run.
    pub tracked: bool,
    /// Correctly signed (else it must be refused with 401 and not stored).
    pub valid: bool,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// What to send, in which proportions.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Mix {
    /// Relative weights of the stores among fresh notifications.
    pub stores: Vec<(Store, u32)>,
    /// Share of notifications about a subscription tracked before the run.
    pub tracked: f64,
    /// Share of requests that re-send an acknowledged notification.
    pub duplicates: f64,
    /// Share of requests with a forged signature.
    pub invalid: f64,
    /// Subscriptions per store the notifications spread over.
    pub subscriptions: usize,
}

/// One step of a run.
#[derive(Debug, Clone, Copy)]
pub enum Slot {
    /// `fresh[i]`: a new notification.
    Fresh(usize),
    /// `invalid[i]`: a forged one.
    Invalid(usize),
    /// A re-send of an already acknowledged fresh notification (a store's retry).
    Duplicate,
}

/// Everything a run sends: the plan and the requests it refers to.
pub struct Workload {
    pub mix: Mix,
    pub fresh: Vec<Request>,
    pub invalid: Vec<Request>,
    pub plan: Vec<Slot>,
    /// Per store, the subscription ids tracked before the run.
    pub tracked: Vec<(Store, String)>,
    /// Distinguishes this workload's ids from any earlier run's.
    pub nonce: String,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn subscription_id(store: Store, nonce: &str, i: usize) -> String {
    match store {
        // Apple's originalTransactionId is numeric.
        Store::Apple => format!("{}", 2_000_000_000_000_000u64 + i as u64),
        Store::Google => format!("bench-token-{nonce}-{i:06}.AO-J1Ox"),
        Store::Stripe => format!("sub_bench{nonce}{i:06}"),
    }
}

impl Workload {
    /// Generates `requests` steps of `mix` (deterministic for a `seed`),
    /// signing on every core.
    pub fn generate(keys: &Keys, mix: Mix, requests: usize, seed: u64) -> Result<Self> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let nonce = format!("{:08x}", rng.gen::<u32>());
        let total_weight: u32 = mix.stores.iter().map(|(_, w)| *w).sum();
        anyhow::ensure!(total_weight > 0, "the store mix is empty");
        let pick_store = |rng: &mut rand::rngs::StdRng| {
            let mut x = rng.gen_range(0..total_weight);
            for (s, w) in &mix.stores {
                if x < *w {
                    return *s;
                }
                x -= w;
            }
            mix.stores[0].0
        };
        let tracked_count = (mix.subscriptions as f64 * mix.tracked).round() as usize;
        let mut plan = Vec::with_capacity(requests);
        // (store, subscription index, tracked, valid)
        let mut fresh_specs = Vec::new();
        let mut invalid_specs = Vec::new();
        for _ in 0..requests {
            let r: f64 = rng.gen();
            if r < mix.invalid {
                let store = pick_store(&mut rng);
                plan.push(Slot::Invalid(invalid_specs.len()));
                invalid_specs.push((store, rng.gen_range(0..mix.subscriptions), false));
            } else if r < mix.invalid + mix.duplicates {
                plan.push(Slot::Duplicate);
            } else {
                let store = pick_store(&mut rng);
                let tracked = rng.gen::<f64>() < mix.tracked && tracked_count > 0;
                let sub = if tracked {
                    rng.gen_range(0..tracked_count)
                } else {
                    rng.gen_range(tracked_count.min(mix.subscriptions - 1)..mix.subscriptions)
                };
                plan.push(Slot::Fresh(fresh_specs.len()));
                fresh_specs.push((store, sub, true));
            }
        }
        let signer = Signer::new(keys, &nonce);
        let build = |specs: &[(Store, usize, bool)], kind: &str| -> Vec<Request> {
            parallel_map(specs, |i, &(store, sub, valid)| {
                signer.request(
                    store,
                    &format!("{kind}{i:07}"),
                    sub,
                    sub < tracked_count,
                    valid,
                )
            })
        };
        let fresh = build(&fresh_specs, "f");
        let invalid = build(&invalid_specs, "x");
        let mut tracked = Vec::new();
        for store in mix.stores.iter().map(|(s, _)| *s) {
            for i in 0..tracked_count {
                tracked.push((store, subscription_id(store, &nonce, i)));
            }
        }
        Ok(Workload {
            mix,
            fresh,
            invalid,
            plan,
            tracked,
            nonce,
        })
    }

    /// Re-signs what carries a clock (Stripe's signed timestamp, checked
    /// against a 5-minute tolerance; Google's push tokens), so that one
    /// workload can be replayed run after run.
    pub fn refresh(&mut self, keys: &Keys) {
        let signer = Signer::new(keys, &self.nonce);
        for r in self.fresh.iter_mut().chain(self.invalid.iter_mut()) {
            signer.refresh(r);
        }
    }
}

/// Maps `items` on every available core, keeping the order.
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(usize, &T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let chunk = items.len().div_ceil(threads).max(1);
    let next = AtomicUsize::new(0);
    let mut parts: Vec<(usize, Vec<R>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let start = next.fetch_add(chunk, Ordering::Relaxed);
                        if start >= items.len() {
                            break;
                        }
                        let end = (start + chunk).min(items.len());
                        let out = (start..end).map(|i| f(i, &items[i])).collect();
                        done.push((start, out));
                    }
                    done
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    parts.sort_by_key(|(start, _)| *start);
    parts.into_iter().flat_map(|(_, v)| v).collect()
}

/// Signs requests with the bench's keys.
struct Signer<'a> {
    keys: &'a Keys,
    nonce: &'a str,
    apple_header: String,
    google_tokens: Vec<String>,
    stripe_template: Value,
    base_ms: i64,
}

impl<'a> Signer<'a> {
    fn new(keys: &'a Keys, nonce: &'a str) -> Self {
        let header = json!({ "alg": "ES256", "x5c": keys.apple_x5c });
        let now_s = now_ms() / 1000;
        let google_tokens = (0..GOOGLE_TOKENS)
            .map(|i| google_token(keys, now_s - i as i64, now_s + 3600))
            .collect();
        Signer {
            keys,
            nonce,
            apple_header: URL_SAFE_NO_PAD.encode(header.to_string()),
            google_tokens,
            stripe_template: serde_json::from_str(STRIPE_TEMPLATE).unwrap_or(Value::Null),
            base_ms: now_ms(),
        }
    }

    fn request(
        &self,
        store: Store,
        serial: &str,
        sub: usize,
        tracked: bool,
        valid: bool,
    ) -> Request {
        let subscription = subscription_id(store, self.nonce, sub);
        // Serial numbers are "f0000042"/"x0000007": their digits order the
        // notifications of one subscription in time.
        let n: i64 = serial[1..].parse().unwrap_or(0);
        let at_ms = self.base_ms + n;
        let (notification_id, headers, body) = match store {
            Store::Apple => self.apple(serial, &subscription, at_ms, valid),
            Store::Google => self.google(serial, &subscription, at_ms, valid),
            Store::Stripe => self.stripe(serial, &subscription, at_ms, valid),
        };
        Request {
            store,
            notification_id,
            subscription,
            tracked,
            valid,
            headers,
            body,
        }
    }

    fn refresh(&self, r: &mut Request) {
        match r.store {
            Store::Stripe => {
                let secret = if r.valid {
                    self.keys.stripe_secret.as_str()
                } else {
                    "whsec_not_the_configured_secret"
                };
                let header = stripe_signature(secret, now_ms() / 1000, &r.body);
                if let Ok(v) = HeaderValue::from_str(&header) {
                    r.headers
                        .insert(HeaderName::from_static("stripe-signature"), v);
                }
            }
            Store::Google => {
                let i = r.notification_id.len() % self.google_tokens.len();
                let token = if r.valid {
                    self.google_tokens[i].clone()
                } else {
                    corrupt_signature(&self.google_tokens[i])
                };
                if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
                    r.headers.insert(reqwest::header::AUTHORIZATION, v);
                }
            }
            Store::Apple => {}
        }
    }

    fn apple_jws(&self, payload: &Value) -> String {
        let input = format!(
            "{}.{}",
            self.apple_header,
            URL_SAFE_NO_PAD.encode(payload.to_string())
        );
        let sig = self
            .keys
            .apple_leaf
            .sign(&SystemRandom::new(), input.as_bytes())
            .map(|s| URL_SAFE_NO_PAD.encode(s.as_ref()))
            .unwrap_or_default();
        format!("{input}.{sig}")
    }

    fn apple(
        &self,
        serial: &str,
        original: &str,
        at_ms: i64,
        valid: bool,
    ) -> (String, HeaderMap, Bytes) {
        // A UUID-shaped notificationUUID, unique per workload and serial.
        let digits: u64 = serial[1..].parse().unwrap_or(0);
        let kind = if serial.starts_with('x') { 0xe } else { 0xa };
        let uuid = format!(
            "{}-{:04x}-4{:03x}-8000-{:012x}",
            self.nonce,
            kind,
            (digits >> 48) & 0xfff,
            digits & 0xffff_ffff_ffff
        );
        let environment = "Sandbox";
        let transaction = json!({
            "transactionId": format!("{}", 3_000_000_000_000_000u64 + digits),
            "originalTransactionId": original,
            "webOrderLineItemId": format!("{}", 4_000_000_000_000u64 + digits),
            "bundleId": BUNDLE_ID,
            "productId": "bench.monthly",
            "subscriptionGroupIdentifier": "21000000",
            "purchaseDate": at_ms - 60_000,
            "originalPurchaseDate": at_ms - 86_400_000,
            "expiresDate": at_ms + 30 * 86_400_000,
            "quantity": 1,
            "type": "Auto-Renewable Subscription",
            "inAppOwnershipType": "PURCHASED",
            "signedDate": at_ms,
            "environment": environment,
            "transactionReason": "RENEWAL",
            "storefront": "USA",
            "storefrontId": "143441",
            "price": 9990,
            "currency": "USD"
        });
        let renewal = json!({
            "originalTransactionId": original,
            "autoRenewProductId": "bench.monthly",
            "productId": "bench.monthly",
            "autoRenewStatus": 1,
            "signedDate": at_ms,
            "environment": environment,
            "recentSubscriptionStartDate": at_ms - 86_400_000,
            "renewalDate": at_ms + 30 * 86_400_000
        });
        let notification = json!({
            "notificationType": "DID_RENEW",
            "notificationUUID": uuid,
            "data": {
                "appAppleId": APP_APPLE_ID,
                "bundleId": BUNDLE_ID,
                "bundleVersion": "42",
                "environment": environment,
                "signedTransactionInfo": self.apple_jws(&transaction),
                "signedRenewalInfo": self.apple_jws(&renewal),
                "status": 1
            },
            "version": "2.0",
            "signedDate": at_ms
        });
        let mut jws = self.apple_jws(&notification);
        if !valid {
            jws = corrupt_signature(&jws);
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let body = json!({ "signedPayload": jws }).to_string();
        (uuid, headers, Bytes::from(body))
    }

    fn google(
        &self,
        serial: &str,
        token: &str,
        at_ms: i64,
        valid: bool,
    ) -> (String, HeaderMap, Bytes) {
        let message_id = format!(
            "{}{}",
            u32::from_str_radix(self.nonce, 16).unwrap_or(0),
            &serial[1..]
        ) + if valid { "1" } else { "9" };
        let notification = json!({
            "version": "1.0",
            "packageName": PACKAGE,
            "eventTimeMillis": at_ms.to_string(),
            "subscriptionNotification": {
                "version": "1.0",
                "notificationType": 2,
                "purchaseToken": token,
                "subscriptionId": "bench.monthly"
            }
        });
        let body = json!({
            "message": {
                "attributes": {},
                "data": STANDARD.encode(notification.to_string()),
                "messageId": message_id,
                "message_id": message_id,
                "publishTime": "2026-01-02T03:04:05.678Z",
                "publish_time": "2026-01-02T03:04:05.678Z"
            },
            "subscription": "projects/storehook-bench/subscriptions/rtdn-push"
        });
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let mut r = Request {
            store: Store::Google,
            notification_id: message_id.clone(),
            subscription: String::new(),
            tracked: false,
            valid,
            headers,
            body: Bytes::new(),
        };
        self.refresh(&mut r);
        (message_id, r.headers, Bytes::from(body.to_string()))
    }

    fn stripe(
        &self,
        serial: &str,
        sub: &str,
        at_ms: i64,
        valid: bool,
    ) -> (String, HeaderMap, Bytes) {
        let id = format!("evt_bench{}{serial}", self.nonce);
        let n: i64 = serial[1..].parse().unwrap_or(0);
        let cancel = n % 4 == 0;
        let mut e = self.stripe_template.clone();
        e["id"] = json!(id);
        e["created"] = json!(at_ms / 1000);
        e["data"]["object"]["id"] = json!(sub);
        e["data"]["object"]["cancel_at_period_end"] = json!(cancel);
        if !cancel {
            e["data"]["object"]["cancel_at"] = Value::Null;
        }
        e["data"]["previous_attributes"] = json!({ "cancel_at_period_end": !cancel });
        let body = Bytes::from(e.to_string());
        let mut r = Request {
            store: Store::Stripe,
            notification_id: id.clone(),
            subscription: String::new(),
            tracked: false,
            valid,
            headers: HeaderMap::new(),
            body: body.clone(),
        };
        r.headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        self.refresh(&mut r);
        (id, r.headers, body)
    }
}

/// `t=<ts>,v1=<hex HMAC-SHA256 of "<ts>.<body>">`, as Stripe signs.
fn stripe_signature(secret: &str, t: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(t.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("t={t},v1={}", hex::encode(ctx.sign().as_ref()))
}

/// A Pub/Sub OIDC push token (RS256) for the bench's audience and account.
fn google_token(keys: &Keys, iat: i64, exp: i64) -> String {
    let header = json!({ "alg": "RS256", "kid": GOOGLE_KID, "typ": "JWT" });
    let claims = json!({
        "aud": AUDIENCE,
        "azp": "113774264463038321964",
        "email": PUSH_ACCOUNT,
        "email_verified": true,
        "exp": exp,
        "iat": iat,
        "iss": "https://accounts.google.com",
        "sub": "113774264463038321964"
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut sig = vec![0u8; keys.google_key.public().modulus_len()];
    let _ = keys.google_key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    );
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// Flips bits in the middle of a JWS/JWT signature (still valid base64url).
fn corrupt_signature(jws: &str) -> String {
    let (head, sig) = jws.rsplit_once('.').unwrap_or((jws, ""));
    let mut bytes = URL_SAFE_NO_PAD.decode(sig).unwrap_or_default();
    let middle = bytes.len() / 2;
    if let Some(b) = bytes.get_mut(middle) {
        *b ^= 0x5a;
    }
    format!("{head}.{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The server config matching the keys: every store enabled with the
/// bench's keys, the database at `db`, `synchronous` as asked.
pub fn server_config(keys: &Keys, db: &Path, synchronous: &str) -> String {
    let mut c = String::new();
    let _ = write!(
        c,
        r#"# Written by storehook-bench: every store enabled with the bench's own keys.
[server]
listen = "127.0.0.1:0"
admin_token = "{ADMIN_TOKEN}"

[database]
path = "{db}"
synchronous = "{synchronous}"

[stores.apple]
enabled = true
apps = [{{ bundle_id = "{BUNDLE_ID}", app_apple_id = {APP_APPLE_ID} }}]
environments = ["Production", "Sandbox"]
root_certificates = ["{root}"]

[stores.google]
enabled = true
package_names = ["{PACKAGE}"]
audience = "{AUDIENCE}"
push_service_account = "{PUSH_ACCOUNT}"
jwks_file = "{jwks}"

[stores.stripe]
enabled = true
signing_secrets = ["{secret}"]
"#,
        db = db.display(),
        root = keys.apple_root.display(),
        jwks = keys.google_jwks.display(),
        secret = keys.stripe_secret,
    );
    c
}
