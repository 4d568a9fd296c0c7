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

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use ring::hmac;
use storehook_core::{Environment, EventType};
use storehook_db::{
    AttemptOutcome, AttemptResult, DueDelivery, EventRoute, ForwardRoute, OutboxConfig, Storage,
};
use tokio::sync::{watch, Notify, Semaphore};

use crate::config::{Config, ConfigError, DeliveryConfig};
use crate::metrics::Metrics;
use crate::now_ms;
use crate::registry::Registry;

/// One destination, webhook or forward, as validated at start-up.
pub struct Endpoint {
    pub name: String,
    pub url: reqwest::Url,
    pub kind: EndpointKind,
    /// Standard Webhooks keys (decoded), newest first.
    secrets: Vec<Vec<u8>>,
    authorization: Option<String>,
    pub timeout: Duration,
    pub max_attempts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointKind {
    Webhook,
    Forward,
}

impl EndpointKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointKind::Webhook => "webhook",
            EndpointKind::Forward => "forward",
        }
    }
}

impl std::fmt::Debug for Endpoint {
    // Never print secrets or the authorization header.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("url", &redacted_url(&self.url))
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// The URL without credentials or query (which may carry tokens), for display.
pub fn redacted_url(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    if u.query().is_some() {
        u.set_query(Some("…"));
    }
    u.to_string()
}

/// Decodes a Standard Webhooks secret: `whsec_` + base64 (the prefix optional).
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| "is not `whsec_` followed by base64".to_owned())?;
    if key.len() < 16 {
        return Err("is too short (at least 16 bytes of key)".into());
    }
    Ok(key)
}

/// `webhook-signature`: `v1,<base64 HMAC-SHA256(id.timestamp.body)>` per key,
/// space-separated (several during a rotation).
pub fn sign(secrets: &[Vec<u8>], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|key| {
            let key = hmac::Key::new(hmac::HMAC_SHA256, key);
            let mut ctx = hmac::Context::with_key(&key);
            ctx.update(id.as_bytes());
            ctx.update(b".");
            ctx.update(timestamp.to_string().as_bytes());
            ctx.update(b".");
            ctx.update(body);
            let tag = ctx.sign();
            format!(
                "v1,{}",
                base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn env_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Validates `[[webhooks]]`, `[[forward]]` and `[delivery]`, and builds the
/// endpoints plus the routing the database applies when it writes events.
pub fn build_endpoints(
    config: &Config,
    registry: &Registry,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<(Vec<Endpoint>, OutboxConfig), ConfigError> {
    let mut problems = Vec::new();
    let mut endpoints = Vec::new();
    let mut outbox = OutboxConfig::default();
    let d = &config.delivery;
    if d.retry_schedule_seconds
        .iter()
        .any(|s| !s.is_finite() || *s < 0.0)
    {
        problems.push(
            "delivery.retry_schedule_seconds: delays must be zero or more seconds".to_owned(),
        );
    }
    if d.concurrency == 0 {
        problems.push("delivery.concurrency: must be at least 1".to_owned());
    }
    let default_attempts = d.retry_schedule_seconds.len() as u32 + 1;
    let mut names = HashSet::new();
    let known_store = |s: &str| registry.get(s).is_some();
    let check_url = |label: &str, url: &str, problems: &mut Vec<String>| -> Option<reqwest::Url> {
        match reqwest::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                if let Err(e) = check_literal_host(&u, d.allow_loopback) {
                    problems.push(format!("{label}.url: {e}"));
                }
                Some(u)
            }
            _ => {
                problems.push(format!("{label}.url: `{url}` is not an http(s) URL"));
                None
            }
        }
    };
    for (i, w) in config.webhooks.iter().enumerate() {
        let label = format!("webhooks[{i}] ({})", w.name);
        if w.name.is_empty()
            || !w
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            problems.push(format!("{label}.name: use letters, digits, - and _"));
        }
        if !names.insert(w.name.clone()) {
            problems.push(format!("{label}.name: `{}` is used twice", w.name));
        }
        let url = check_url(&label, &w.url, &mut problems);
        let secret = env(&format!("STOREHOOK_WEBHOOK_{}_SECRET", env_name(&w.name)))
            .filter(|s| !s.is_empty())
            .or_else(|| w.secret.clone());
        let mut secrets = Vec::new();
        match secret {
            None => problems.push(format!(
                "{label}.secret: required (or env STOREHOOK_WEBHOOK_{}_SECRET)",
                env_name(&w.name)
            )),
            Some(s) => match decode_secret(&s) {
                Ok(k) => secrets.push(k),
                Err(e) => problems.push(format!("{label}.secret: {e}")),
            },
        }
        for (j, s) in w.previous_secrets.iter().enumerate() {
            match decode_secret(s) {
                Ok(k) => secrets.push(k),
                Err(e) => problems.push(format!("{label}.previous_secrets[{j}]: {e}")),
            }
        }
        for s in &w.stores {
            if !known_store(s) {
                problems.push(format!("{label}.stores: no store `{s}` is registered"));
            }
        }
        let mut environments = Vec::new();
        for e in &w.environments {
            match Environment::parse(&e.to_ascii_lowercase()) {
                Some(env) => environments.push(env),
                None => problems.push(format!(
                    "{label}.environments: `{e}` is not production or sandbox"
                )),
            }
        }
        let mut event_types = Vec::new();
        for t in &w.event_types {
            match EventType::parse(&t.to_ascii_uppercase()) {
                Some(t) => event_types.push(t),
                None => problems.push(format!("{label}.event_types: `{t}` is not an event type")),
            }
        }
        if w.max_attempts == Some(0) {
            problems.push(format!("{label}.max_attempts: must be at least 1"));
        }
        if let Some(url) = url {
            endpoints.push(Endpoint {
                name: w.name.clone(),
                url,
                kind: EndpointKind::Webhook,
                secrets,
                authorization: w.authorization.clone(),
                timeout: Duration::from_secs(w.timeout_seconds.max(1)),
                max_attempts: w.max_attempts.unwrap_or(default_attempts),
            });
        }
        outbox.routes.push(EventRoute {
            endpoint: w.name.clone(),
            stores: w.stores.clone(),
            environments,
            event_types,
            apps: w.apps.clone(),
        });
    }
    for (i, f) in config.forward.iter().enumerate() {
        let name = f
            .name
            .clone()
            .unwrap_or_else(|| format!("forward-{}", i + 1));
        let label = format!("forward[{i}] ({name})");
        if !names.insert(name.clone()) {
            problems.push(format!("{label}.name: `{name}` is used twice"));
        }
        for s in &f.stores {
            if !known_store(s) {
                problems.push(format!("{label}.stores: no store `{s}` is registered"));
            }
        }
        if let Some(url) = check_url(&label, &f.url, &mut problems) {
            endpoints.push(Endpoint {
                name: name.clone(),
                url,
                kind: EndpointKind::Forward,
                secrets: Vec::new(),
                authorization: None,
                timeout: Duration::from_secs(f.timeout_seconds.max(1)),
                max_attempts: f.max_attempts.unwrap_or(default_attempts).max(1),
            });
        }
        outbox.forwards.push(ForwardRoute {
            name,
            stores: f.stores.clone(),
        });
    }
    for entry in registry.iter() {
        outbox.store_labels.insert(
            entry.registration.id.to_owned(),
            entry.registration.store_label.to_owned(),
        );
    }
    if problems.is_empty() {
        Ok((endpoints, outbox))
    } else {
        Err(ConfigError::Invalid(problems.join("\n")))
    }
}

// ---- SSRF guard ----

/// Whether an address may be the target of an outgoing request. Link-local
/// (cloud metadata services live there), unspecified, multicast and broadcast
/// addresses never; loopback only when allowed.
pub fn address_allowed(ip: IpAddr, allow_loopback: bool) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    if ip.is_loopback() {
        return allow_loopback;
    }
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_link_local() || v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast())
        }
        IpAddr::V6(v6) => {
            let link_local = (v6.segments()[0] & 0xffc0) == 0xfe80;
            // fd00:ec2::254 is AWS's IPv6 metadata endpoint.
            let metadata = v6.segments()[..2] == [0xfd00, 0x0ec2];
            !(link_local || metadata || v6.is_unspecified() || v6.is_multicast())
        }
    }
}

fn check_literal_host(url: &reqwest::Url, allow_loopback: bool) -> Result<(), String> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => {
            return if allow_loopback {
                Ok(())
            } else {
                Err("localhost is refused unless [delivery] allow_loopback = true".into())
            }
        }
        _ => return Ok(()),
    };
    if address_allowed(ip, allow_loopback) {
        Ok(())
    } else if ip.is_loopback() {
        Err(format!(
            "{ip} is loopback, refused unless [delivery] allow_loopback = true"
        ))
    } else {
        Err(format!(
            "{ip} is a link-local, metadata or otherwise internal address"
        ))
    }
}

/// A DNS resolver that drops addresses the guard refuses, so a public name
/// cannot be pointed at a metadata service (DNS rebinding included: the
/// check happens at connect time, on the addresses actually used).
struct GuardedResolver {
    allow_loopback: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_loopback = self.allow_loopback;
        Box::pin(async move {
            let host = format!("{}:0", name.as_str());
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host(host)
                .await?
                .filter(|a| address_allowed(a.ip(), allow_loopback))
                .collect();
            if addrs.is_empty() {
                return Err(format!(
                    "{} resolves only to refused addresses (SSRF guard)",
                    name.as_str()
                )
                .into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

// ---- the worker ----

pub struct DeliveryWorker {
    storage: Arc<dyn Storage>,
    endpoints: HashMap<String, Endpoint>,
    schedule: Vec<Duration>,
    allow_loopback: bool,
    client: reqwest::Client,
    wake: Notify,
    in_flight: Mutex<HashSet<i64>>,
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
            in_flight: Mutex::new(HashSet::new()),
            permits: Arc::new(Semaphore::new(d.concurrency.max(1))),
            concurrency: d.concurrency.max(1),
            grace: Duration::from_secs(d.shutdown_grace_seconds),
            metrics,
        })
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
            match self.storage.due_deliveries(now, 256).await {
                Ok(due) => {
                    for d in due {
                        let fresh = self
                            .in_flight
                            .lock()
                            .map(|mut s| s.insert(d.id))
                            .unwrap_or(false);
                        if !fresh {
                            continue;
                        }
                        let Ok(permit) = self.permits.clone().acquire_owned().await else {
                            return;
                        };
                        let worker = self.clone();
                        tokio::spawn(async move {
                            worker.attempt(d).await;
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
                let sent = self.send(endpoint, &d).await;
                let duration_ms = started.elapsed().as_millis() as i64;
                let attempts = d.attempts + 1;
                let (status_code, error, excerpt, retry_after, delivered) = match sent {
                    Ok((status, retry_after, excerpt)) => {
                        let ok = (200..300).contains(&status);
                        let error = (!ok).then(|| format!("HTTP {status}"));
                        (Some(status), error, Some(excerpt), retry_after, ok)
                    }
                    Err(e) => (None, Some(e), None, None, false),
                };
                let outcome = if delivered {
                    AttemptOutcome::Delivered
                } else if status_code == Some(410) || attempts >= i64::from(endpoint.max_attempts) {
                    AttemptOutcome::Dead
                } else {
                    AttemptOutcome::RetryAt(
                        at_ms + self.delay_after(attempts, retry_after).as_millis() as i64,
                    )
                };
                let result_label = match (outcome, status_code) {
                    (AttemptOutcome::Delivered, _) => "delivered",
                    (_, Some(_)) => "http_error",
                    (_, None) => "network_error",
                };
                self.metrics.delivery_attempt(&endpoint.name, result_label);
                tracing::info!(
                    endpoint = %endpoint.name,
                    delivery = d.id,
                    event_id = %d.event_id,
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
        if let Ok(mut s) = self.in_flight.lock() {
            s.remove(&d.id);
        }
    }

    /// The delay before attempt `attempts + 1`, with ±20 % jitter, or the
    /// receiver's `Retry-After` when it asked for one.
    fn delay_after(&self, attempts: i64, retry_after: Option<Duration>) -> Duration {
        let index = (attempts as usize)
            .saturating_sub(1)
            .min(self.schedule.len().saturating_sub(1));
        let base = self
            .schedule
            .get(index)
            .copied()
            .unwrap_or(Duration::from_secs(60));
        let jittered = base.mul_f64(0.8 + 0.4 * fastrand::f64());
        match retry_after {
            Some(r) => r.min(Duration::from_secs(86_400)),
            None => jittered,
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
        match endpoint.kind {
            EndpointKind::Webhook => {
                let timestamp = now_ms() / 1000;
                req = req
                    .header("content-type", "application/json")
                    .header("webhook-id", &d.event_id)
                    .header("webhook-timestamp", timestamp.to_string())
                    .header(
                        "webhook-signature",
                        sign(&endpoint.secrets, &d.event_id, timestamp, &d.payload),
                    );
                if let Some(auth) = &endpoint.authorization {
                    req = req.header("authorization", auth);
                }
            }
            EndpointKind::Forward => {
                for (name, value) in &d.headers {
                    if !is_hop_header(name) {
                        req = req.header(name.as_str(), value.as_str());
                    }
                }
                req = req.header("x-storehook-notification-id", &d.event_id);
            }
        }
        let resp = req.send().await.map_err(|e| describe_reqwest_error(&e))?;
        let status = resp.status().as_u16();
        let retry_after = matches!(status, 429 | 503)
            .then(|| {
                resp.headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after)
            })
            .flatten();
        let body = resp.bytes().await.unwrap_or_default();
        let excerpt: String = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
        Ok((status, retry_after, excerpt))
    }
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

fn parse_retry_after(v: &str) -> Option<Duration> {
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
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

    /// The Standard Webhooks reference vector (peers.md §5, from hook0's test).
    #[test]
    fn signs_the_standard_webhooks_reference_vector() {
        let key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(
            &[key],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn several_secrets_give_several_signatures() {
        let a = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let b = decode_secret("whsec_QUFBQUFBQUFBQUFBQUFBQUFBQUE=").unwrap();
        let sig = sign(&[a, b], "id", 1, b"{}");
        assert_eq!(sig.split(' ').count(), 2);
        assert!(sig.split(' ').all(|s| s.starts_with("v1,")));
    }

    #[test]
    fn the_ssrf_guard_refuses_metadata_and_link_local() {
        for (ip, loopback_ok, allowed) in [
            ("169.254.169.254", true, false),
            ("fe80::1", true, false),
            ("fd00:ec2::254", true, false),
            ("0.0.0.0", true, false),
            ("127.0.0.1", false, false),
            ("127.0.0.1", true, true),
            ("::ffff:169.254.169.254", true, false),
            ("::ffff:127.0.0.1", false, false),
            ("10.0.0.5", false, true),
            ("93.184.216.34", false, true),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(
                address_allowed(ip, loopback_ok),
                allowed,
                "{ip} loopback_ok={loopback_ok}"
            );
        }
    }

    #[test]
    fn secrets_must_be_base64() {
        assert!(decode_secret("whsec_not base64!").is_err());
        assert!(decode_secret("whsec_c2hvcnQ=").is_err());
    }

    #[test]
    fn urls_are_redacted_for_display() {
        let u = reqwest::Url::parse("https://user:pw@example.com/hook?token=abc").unwrap();
        let shown = redacted_url(&u);
        assert!(
            !shown.contains("pw") && !shown.contains("abc") && !shown.contains("user"),
            "{shown}"
        );
    }
}
