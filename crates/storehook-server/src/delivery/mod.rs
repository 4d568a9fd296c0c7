//! Outgoing deliveries: normalized events to the operator's `[[webhooks]]`
//! (signed per Standard Webhooks) and raw forwards to `[[forward]]`
//! endpoints, from the transactional outbox in `storehook-db`.
//!
//! At least once, in order per endpoint and subscription: the database hands
//! out only the oldest pending delivery of each (endpoint, subscription), so a
//! failing event holds back its successors for that subscription only.
//! Retries follow the configured schedule with ±20 % jitter; 429 and 503
//! honour `Retry-After`; after `max_attempts` a delivery is dead, listed, and
//! can be retried through the API. Restarts resume pending deliveries.

mod endpoints;
pub mod policy;
mod signing;
mod ssrf;

pub use endpoints::{build_endpoints, redacted_url, Endpoint, EndpointKind};
pub use signing::{decode_secret, sign};
pub use ssrf::address_allowed;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use storehook_db::{AttemptOutcome, AttemptResult, DueDelivery, Storage};
use tokio::sync::{watch, Notify, Semaphore};

use crate::config::{ConfigError, DeliveryConfig};
use crate::metrics::Metrics;
use crate::now_ms;
use policy::Answer;
use ssrf::{check_literal_host, GuardedResolver};

/// Which deliveries are being attempted, and which were recorded since a
/// read of the outbox began — so that one delivery is never in flight twice.
///
/// A read of due deliveries is a snapshot: while the loop works through it
/// (waiting for concurrency permits), attempts end and are recorded. A row
/// whose attempt was recorded after the snapshot began may be stale (already
/// delivered, or dead after its last attempt, or with a stale attempt
/// count): it is skipped, and the next read sees it as it now is. One
/// worker reads the outbox, one snapshot at a time.
#[derive(Debug, Default)]
struct InFlight {
    running: HashSet<i64>,
    /// Delivery id → the clock when its attempt was recorded, for the ones
    /// recorded since the current snapshot began.
    settled: HashMap<i64, u64>,
    clock: u64,
}

impl InFlight {
    /// Call just before reading the outbox: the snapshot's ticket.
    fn snapshot(&mut self) -> u64 {
        self.clock += 1;
        let ticket = self.clock;
        // Recorded before this read began: the read sees the result.
        self.settled.retain(|_, at| *at > ticket);
        ticket
    }

    /// Whether a row of snapshot `ticket` may be attempted now.
    fn may_claim(&self, id: i64, ticket: u64) -> bool {
        !self.running.contains(&id) && !matches!(self.settled.get(&id), Some(at) if *at > ticket)
    }

    /// Marks the row as being attempted, if it may be.
    fn claim(&mut self, id: i64, ticket: u64) -> bool {
        self.may_claim(id, ticket) && self.running.insert(id)
    }

    /// The attempt was recorded (or failed to be): no longer in flight.
    fn finish(&mut self, id: i64) {
        self.running.remove(&id);
        self.clock += 1;
        self.settled.insert(id, self.clock);
    }
}

/// Ends a claim when the attempt's task ends, however it ends.
struct Claim {
    worker: Arc<DeliveryWorker>,
    id: i64,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.worker.in_flight().finish(self.id);
    }
}

pub struct DeliveryWorker {
    storage: Arc<dyn Storage>,
    endpoints: HashMap<String, Endpoint>,
    schedule: Vec<Duration>,
    allow_loopback: bool,
    client: reqwest::Client,
    wake: Notify,
    in_flight: Mutex<InFlight>,
    permits: Arc<Semaphore>,
    concurrency: usize,
    grace: Duration,
    metrics: Arc<Metrics>,
}

impl DeliveryWorker {
    pub fn new(
        storage: Arc<dyn Storage>,
        endpoints: Vec<Endpoint>,
        d: &DeliveryConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ConfigError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("storehook/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(GuardedResolver {
                allow_loopback: d.allow_loopback,
            }))
            .no_proxy()
            .build()
            .map_err(|e| ConfigError::Invalid(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            storage,
            endpoints: endpoints.into_iter().map(|e| (e.name.clone(), e)).collect(),
            schedule: d
                .retry_schedule_seconds
                .iter()
                .map(|s| Duration::from_secs_f64(*s))
                .collect(),
            allow_loopback: d.allow_loopback,
            client,
            wake: Notify::new(),
            in_flight: Mutex::new(InFlight::default()),
            permits: Arc::new(Semaphore::new(d.concurrency.max(1))),
            concurrency: d.concurrency.max(1),
            grace: Duration::from_secs(d.shutdown_grace_seconds),
            metrics,
        })
    }

    fn in_flight(&self) -> MutexGuard<'_, InFlight> {
        // Nothing panics while holding it; a poisoned set is still consistent.
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn endpoint(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints.get(name)
    }

    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints.values()
    }

    /// New deliveries were committed: look now rather than at the next tick.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs until `shutdown` turns true, then lets in-flight attempts finish
    /// for up to the grace period.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        if self.endpoints.is_empty() {
            return;
        }
        loop {
            if *shutdown.borrow() {
                break;
            }
            let now = now_ms();
            let ticket = self.in_flight().snapshot();
            match self.storage.due_deliveries(now, 256).await {
                Ok(due) => {
                    for d in due {
                        if !self.in_flight().may_claim(d.id, ticket) {
                            continue;
                        }
                        let Ok(permit) = self.permits.clone().acquire_owned().await else {
                            return;
                        };
                        // Waiting for the permit let other attempts end: the
                        // row may have been attempted meanwhile. Check again.
                        if !self.in_flight().claim(d.id, ticket) {
                            continue;
                        }
                        let claim = Claim {
                            worker: self.clone(),
                            id: d.id,
                        };
                        let worker = self.clone();
                        tokio::spawn(async move {
                            worker.attempt(d).await;
                            // Recorded: release the claim, then the permit.
                            drop(claim);
                            drop(permit);
                            worker.wake();
                        });
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot read the outbox"),
            }
            if let Ok(depth) = self.storage.outbox_depth().await {
                self.metrics.set_outbox_depth(depth);
            }
            let next = self.storage.next_delivery_due().await.ok().flatten();
            let wait_ms = next
                .map(|t| (t - now_ms()).clamp(5, 1_000))
                .unwrap_or(1_000);
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
                _ = shutdown.changed() => {}
            }
        }
        // Let what is in flight finish, up to the grace period.
        let all = self.concurrency as u32;
        let _ = tokio::time::timeout(self.grace, self.permits.acquire_many(all)).await;
    }

    async fn attempt(&self, d: DueDelivery) {
        let started = Instant::now();
        let at_ms = now_ms();
        let result = match self.endpoints.get(&d.endpoint) {
            None => AttemptResult {
                delivery_id: d.id,
                at_ms,
                status_code: None,
                error: Some("the endpoint is no longer configured".into()),
                duration_ms: 0,
                response_excerpt: None,
                outcome: AttemptOutcome::Dead,
            },
            Some(endpoint) => {
                let answer = match self.send(endpoint, &d).await {
                    Ok((status, retry_after, excerpt)) => Answer::Http {
                        status,
                        retry_after,
                        excerpt,
                    },
                    Err(e) => Answer::Network(e),
                };
                let duration_ms = started.elapsed().as_millis() as i64;
                let attempts = d.attempts + 1;
                let (outcome, label) = policy::decide(
                    &answer,
                    u32::try_from(attempts).unwrap_or(u32::MAX),
                    endpoint.max_attempts,
                    &self.schedule,
                    at_ms,
                    fastrand::f64(),
                );
                let (status_code, error, excerpt) = match answer {
                    Answer::Http {
                        status, excerpt, ..
                    } => {
                        let failed = !(200..300).contains(&status);
                        (
                            Some(status),
                            failed.then(|| format!("HTTP {status}")),
                            Some(excerpt),
                        )
                    }
                    Answer::Network(e) => (None, Some(e), None),
                };
                self.metrics.delivery_attempt(&endpoint.name, label);
                tracing::info!(
                    endpoint = %endpoint.name,
                    delivery = d.id,
                    // Debug: a store's id is the sender's text (CR/LF…).
                    event_id = ?d.event_id,
                    status = status_code,
                    error = error.as_deref().unwrap_or(""),
                    attempt = attempts,
                    outcome = ?outcome,
                    "delivery attempt"
                );
                AttemptResult {
                    delivery_id: d.id,
                    at_ms,
                    status_code,
                    error,
                    duration_ms,
                    response_excerpt: excerpt,
                    outcome,
                }
            }
        };
        if let Err(e) = self.storage.record_attempt(result).await {
            // The delivery stays pending and is attempted again: at least once.
            tracing::error!(error = %e, delivery = d.id, "cannot record a delivery attempt");
        }
    }

    /// One HTTP attempt. Ok: status, Retry-After (429/503), body excerpt.
    async fn send(
        &self,
        endpoint: &Endpoint,
        d: &DueDelivery,
    ) -> Result<(u16, Option<Duration>, String), String> {
        check_literal_host(&endpoint.url, self.allow_loopback)?;
        let mut req = self
            .client
            .post(endpoint.url.clone())
            .timeout(endpoint.timeout)
            .body(d.payload.clone());
        // Every header is built here, infallibly: a value that is not valid
        // HTTP is encoded or dropped, never a reason for the attempt to fail
        // (it would fail on every retry, then go dead).
        let mut headers = HeaderMap::new();
        match endpoint.kind {
            EndpointKind::Webhook => {
                let timestamp = now_ms() / 1000;
                // Event ids are `evt_…` ASCII; sign what is sent regardless.
                let (id, _) = encoded_header_value(&d.event_id);
                let signed_id = String::from_utf8_lossy(id.as_bytes()).into_owned();
                headers.insert(
                    reqwest::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                headers.insert(HeaderName::from_static("webhook-id"), id);
                headers.insert(
                    HeaderName::from_static("webhook-timestamp"),
                    HeaderValue::from(timestamp),
                );
                let (signature, _) = encoded_header_value(&sign(
                    &endpoint.secrets,
                    &signed_id,
                    timestamp,
                    &d.payload,
                ));
                headers.insert(HeaderName::from_static("webhook-signature"), signature);
                if let Some(auth) = &endpoint.authorization {
                    headers.insert(reqwest::header::AUTHORIZATION, auth.clone());
                }
            }
            EndpointKind::Forward => {
                for (name, value) in &d.headers {
                    if is_hop_header(name) || name.eq_ignore_ascii_case(NOTIFICATION_ID_HEADER) {
                        continue;
                    }
                    let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
                        tracing::warn!(
                            endpoint = %endpoint.name,
                            delivery = d.id,
                            header = ?name,
                            "a stored header name is not valid HTTP: not replayed"
                        );
                        continue;
                    };
                    let (value, encoded) = replayed_header_value(value);
                    if encoded {
                        tracing::warn!(
                            endpoint = %endpoint.name,
                            delivery = d.id,
                            header = %header,
                            "a stored header value is not valid HTTP: replayed percent-encoded"
                        );
                    }
                    headers.append(header, value);
                }
                let (id, encoded) = encoded_header_value(&d.event_id);
                if encoded {
                    tracing::warn!(
                        endpoint = %endpoint.name,
                        delivery = d.id,
                        notification_id = ?d.event_id,
                        "the notification id is not a valid HTTP header value: sent percent-encoded"
                    );
                }
                headers.insert(HeaderName::from_static(NOTIFICATION_ID_HEADER), id);
            }
        }
        req = req.headers(headers);
        let resp = req.send().await.map_err(|e| describe_reqwest_error(&e))?;
        let status = resp.status().as_u16();
        let retry_after = matches!(status, 429 | 503)
            .then(|| {
                resp.headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| policy::parse_retry_after(v, std::time::SystemTime::now()))
            })
            .flatten();
        let body = resp.bytes().await.unwrap_or_default();
        let excerpt: String = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
        Ok((status, retry_after, excerpt))
    }
}

/// Carries the store's notification id on a forward.
const NOTIFICATION_ID_HEADER: &str = "x-storehook-notification-id";

/// `text` as a header value: unchanged when it is visible ASCII (inner
/// spaces and tabs allowed); otherwise percent-encoded — every byte outside
/// visible ASCII, and `%` itself so the encoding can be undone, becomes
/// `%XX`. Leading or trailing whitespace, which a receiver would trim,
/// counts as not valid. The flag says whether it was encoded.
fn encoded_header_value(text: &str) -> (HeaderValue, bool) {
    let bytes = text.as_bytes();
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let plain = bytes.iter().all(|b| (0x21..0x7f).contains(b) || blank(b))
        && !bytes.first().is_some_and(blank)
        && !bytes.last().is_some_and(blank);
    if plain {
        if let Ok(v) = HeaderValue::from_str(text) {
            return (v, false);
        }
    }
    (percent_encoded(bytes), true)
}

/// A stored header value as the store sent it — byte for byte, obs-text
/// (non-ASCII UTF-8) included — or percent-encoded when it cannot be sent
/// (control characters, CR/LF). The flag says whether it was encoded.
fn replayed_header_value(text: &str) -> (HeaderValue, bool) {
    match HeaderValue::from_bytes(text.as_bytes()) {
        Ok(v) => (v, false),
        Err(_) => (percent_encoded(text.as_bytes()), true),
    }
}

fn percent_encoded(bytes: &[u8]) -> HeaderValue {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if (0x21..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    // Only visible ASCII is left, which is always a valid value.
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn is_hop_header(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "host"
            | "content-length"
            | "connection"
            | "transfer-encoding"
            | "keep-alive"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-authorization"
            | "proxy-connection"
            | "expect"
    )
}

fn describe_reqwest_error(e: &reqwest::Error) -> String {
    // Walk the source chain: the SSRF guard's message sits deep inside.
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg = format!("{msg}: {s}");
        source = s.source();
    }
    if e.is_timeout() {
        format!("timed out: {msg}")
    } else {
        msg
    }
}

/// Runs the worker in the background; returns the shutdown switch.
pub fn spawn(worker: Arc<DeliveryWorker>) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let handle = tokio::spawn(worker.run(rx));
    (tx, handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Item 12: no value can fail the request or inject a header.
    #[test]
    fn header_values_are_encoded_not_refused() {
        let (v, encoded) = encoded_header_value("evt_1Pgc76B7WZ01zgkWwyRHS102");
        assert_eq!(
            (v.as_bytes(), encoded),
            (&b"evt_1Pgc76B7WZ01zgkWwyRHS102"[..], false)
        );
        let (v, encoded) = encoded_header_value("a b\tc");
        assert_eq!((v.as_bytes(), encoded), (&b"a b\tc"[..], false));
        for (raw, sent) in [
            ("evt\r\nX-Injected: 1", "evt%0D%0AX-Injected:%201"),
            ("caf\u{e9}", "caf%C3%A9"),
            ("100% \u{0}", "100%25%20%00"),
            (" padded", "%20padded"),
            ("padded\t", "padded%09"),
            ("del\u{7f}", "del%7F"),
        ] {
            let (v, encoded) = encoded_header_value(raw);
            assert!(encoded, "{raw:?}");
            assert_eq!(v.to_str().unwrap(), sent, "{raw:?}");
        }
        // Replayed store headers keep obs-text byte for byte; only what
        // cannot be sent at all (CTLs, CR/LF) is encoded.
        let (v, encoded) = replayed_header_value("Store/1.0 (caf\u{e9})");
        assert_eq!(v.as_bytes(), "Store/1.0 (caf\u{e9})".as_bytes());
        assert!(!encoded);
        let (v, encoded) = replayed_header_value("t=1,v1=ab\r\nx-evil: 1");
        assert_eq!(v.to_str().unwrap(), "t=1,v1=ab%0D%0Ax-evil:%201");
        assert!(encoded);
    }
    /// Item 14: a row read before its attempt was recorded is never
    /// attempted again from that read; a later read may attempt it.
    #[test]
    fn a_delivery_is_never_claimed_twice() {
        let mut f = InFlight::default();
        let first = f.snapshot();
        assert!(f.claim(1, first));
        assert!(!f.claim(1, first), "in flight");
        let second = f.snapshot();
        assert!(!f.may_claim(1, second), "still in flight for a newer read");
        // Attempt 1 is recorded while the loop still works through the
        // second read (e.g. waiting for a permit): that read is stale for 1.
        f.finish(1);
        assert!(!f.may_claim(1, second));
        assert!(!f.claim(1, second));
        assert!(!f.claim(1, first));
        // Others in the stale read are unaffected.
        assert!(f.claim(2, second));
        // A read begun after the record sees the result: 1 may go again
        // (a retry that is due) if the database still hands it out.
        let third = f.snapshot();
        assert!(f.claim(1, third));
        assert!(f.settled.is_empty(), "settled ids are forgotten once seen");
        f.finish(1);
        f.finish(2);
        let fourth = f.snapshot();
        assert!(f.running.is_empty() && f.settled.is_empty());
        assert!(f.claim(2, fourth));
    }
}
