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
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
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
    /// Validated at start-up, marked sensitive.
    authorization: Option<HeaderValue>,
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
    u.set_fragment(None);
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
                // Shown without user, password or query: they may be secrets.
                problems.push(format!(
                    "{label}.url: `{}` is not an http(s) URL",
                    crate::config::display_url(url)
                ));
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
        let authorization = match &w.authorization {
            None => None,
            Some(a) => match HeaderValue::from_str(a) {
                Ok(mut v) => {
                    v.set_sensitive(true);
                    Some(v)
                }
                Err(_) => {
                    // Never print the value: it is a credential.
                    problems.push(format!(
                        "{label}.authorization: is not a valid HTTP header value (visible ASCII only, no line breaks)"
                    ));
                    None
                }
            },
        };
        if w.max_attempts == Some(0) {
            problems.push(format!("{label}.max_attempts: must be at least 1"));
        }
        if let Some(url) = url {
            endpoints.push(Endpoint {
                name: w.name.clone(),
                url,
                kind: EndpointKind::Webhook,
                secrets,
                authorization,
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

/// Whether an address may be the target of an outgoing request.
///
/// Never: link-local (cloud metadata services live there: 169.254.169.254,
/// fe80::/10) and the other clouds' metadata addresses (Alibaba's
/// 100.100.100.200 inside CGNAT 100.64.0.0/10, Azure's wireserver
/// 168.63.129.16, AWS's fd00:ec2::254 inside unique-local fc00::/7),
/// 0.0.0.0/8 and `::`, multicast, broadcast and reserved space,
/// documentation and benchmarking ranges, site-local fec0::/10. An IPv6
/// address carrying an IPv4 one — mapped `::ffff:a.b.c.d`, compatible
/// `::a.b.c.d`, NAT64 (64:ff9b::/96, local-use 64:ff9b:1::/48), 6to4
/// (2002::/16), Teredo (2001::/32) — is judged by the IPv4 address it
/// carries. Loopback (127.0.0.0/8, `::1`, and `::ffff:127.x.y.z`, which a
/// dual-stack socket connects to the local host) only with `allow_loopback`;
/// loopback carried through a translator or tunnel is never this host's
/// loopback and is always refused. Private ranges (10/8, 172.16/12,
/// 192.168/16) stay allowed: operators run their own endpoints there.
pub fn address_allowed(ip: IpAddr, allow_loopback: bool) -> bool {
    match ip {
        IpAddr::V4(v4) => ipv4_allowed(v4, allow_loopback),
        IpAddr::V6(v6) => ipv6_allowed(v6, allow_loopback),
    }
}

fn ipv4_allowed(v4: Ipv4Addr, allow_loopback: bool) -> bool {
    if v4.is_loopback() {
        return allow_loopback;
    }
    !ipv4_refused(v4)
}

/// IPv4 space an outgoing request never targets (loopback is decided apart).
fn ipv4_refused(v4: Ipv4Addr) -> bool {
    let [a, b, c, _] = v4.octets();
    a == 0 // 0.0.0.0/8 "this network" (0.0.0.0 reaches the local host)
        || v4.is_link_local() // 169.254.0.0/16: AWS, GCP, Azure, Oracle… metadata
        || (a == 100 && (b & 0xc0) == 64) // 100.64.0.0/10 CGNAT, Alibaba's 100.100.100.200
        || v4 == Ipv4Addr::new(168, 63, 129, 16) // Azure wireserver
        || (a == 192 && b == 0 && c == 0) // 192.0.0.0/24 IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // 192.0.2.0/24 TEST-NET-1
        || (a == 198 && b == 51 && c == 100) // 198.51.100.0/24 TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // 203.0.113.0/24 TEST-NET-3
        || (a == 198 && (b & 0xfe) == 18) // 198.18.0.0/15 benchmarking
        || v4.is_multicast() // 224.0.0.0/4
        || a >= 240 // 240.0.0.0/4 reserved, 255.255.255.255 broadcast
}

fn ipv6_allowed(v6: Ipv6Addr, allow_loopback: bool) -> bool {
    if v6.is_loopback() {
        return allow_loopback;
    }
    if v6.is_unspecified() {
        return false;
    }
    // On a dual-stack socket `::ffff:a.b.c.d` *is* the IPv4 address.
    if let Some(v4) = v6.to_ipv4_mapped() {
        return ipv4_allowed(v4, allow_loopback);
    }
    // The other embeddings reach the IPv4 address through a translator or a
    // tunnel: the IPv4 rules apply, and loopback there is not ours.
    if embedded_ipv4(v6)
        .iter()
        .any(|v4| v4.is_loopback() || ipv4_refused(*v4))
    {
        return false;
    }
    let s = v6.segments();
    let nat64 = s[0] == 0x0064 && s[1] == 0xff9b;
    let refused = (s[0] & 0xfe00) == 0xfc00 // fc00::/7 unique local (AWS IMDS fd00:ec2::254)
        || (s[0] & 0xffc0) == 0xfe80 // fe80::/10 link-local
        || (s[0] & 0xffc0) == 0xfec0 // fec0::/10 site-local (deprecated)
        || (s[0] & 0xff00) == 0xff00 // ff00::/8 multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8) // 2001:db8::/32 documentation
        || (s[0] == 0x3fff && (s[1] & 0xf000) == 0) // 3fff::/20 documentation
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // 100::/64 discard-only
        // 64:ff9b::/32 outside the two NAT64 prefixes decoded above: unassigned.
        || (nat64 && !is_nat64_wkp(&s) && s[2] != 1)
        // ::/8 is reserved (the compatible and SIIT forms, decoded above,
        // are deprecated or translator-only), NAT64 aside.
        || ((s[0] & 0xff00) == 0 && !nat64);
    !refused
}

/// 64:ff9b::/96, the NAT64 well-known prefix (RFC 6052).
fn is_nat64_wkp(s: &[u16; 8]) -> bool {
    s[0] == 0x0064 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0]
}

/// The IPv4 addresses an IPv6 address carries for a translator or a tunnel
/// (mapped addresses aside): every plausible reading, so that an address is
/// refused when any of them is.
fn embedded_ipv4(v6: Ipv6Addr) -> Vec<Ipv4Addr> {
    let s = v6.segments();
    let o = v6.octets();
    let v4 = |b: [u8; 4]| Ipv4Addr::from(b);
    let last = v4([o[12], o[13], o[14], o[15]]);
    let mut out = Vec::new();
    if s[..6] == [0, 0, 0, 0, 0, 0] {
        // ::a.b.c.d, IPv4-compatible (deprecated).
        out.push(last);
    } else if s[..6] == [0, 0, 0, 0, 0xffff, 0] {
        // ::ffff:0:a.b.c.d, SIIT's IPv4-translated form.
        out.push(last);
    } else if is_nat64_wkp(&s) {
        out.push(last);
    } else if s[0] == 0x0064 && s[1] == 0xff9b && s[2] == 1 {
        // 64:ff9b:1::/48, local-use NAT64 (RFC 8215): the translator's prefix
        // may be /48, /56, /64 or /96 within it (RFC 6052 §2.2). Each shorter
        // layout skips the "u" octet (bits 64..72) and leaves a zero suffix.
        let zero = |r: std::ops::Range<usize>| o[r].iter().all(|b| *b == 0);
        let mut shorter = false;
        if o[8] == 0 && zero(11..16) {
            out.push(v4([o[6], o[7], o[9], o[10]])); // /48
            shorter = true;
        }
        if o[8] == 0 && zero(12..16) {
            out.push(v4([o[7], o[9], o[10], o[11]])); // /56
            shorter = true;
        }
        if o[8] == 0 && zero(13..16) {
            out.push(v4([o[9], o[10], o[11], o[12]])); // /64
            shorter = true;
        }
        // /96: the last 32 bits, unless they are only a shorter layout's
        // zero suffix.
        if !(shorter && last.is_unspecified()) {
            out.push(last);
        }
    } else if s[0] == 0x2002 {
        // 6to4: 2002:aabb:ccdd::/48 carries a.b.c.d in bits 16..48.
        out.push(v4([o[2], o[3], o[4], o[5]]));
    } else if s[0] == 0x2001 && s[1] == 0 {
        // Teredo: the server in bits 32..64, the client's (NAT's) address
        // in the last 32 bits, inverted.
        out.push(v4([o[4], o[5], o[6], o[7]]));
        out.push(v4([!o[12], !o[13], !o[14], !o[15]]));
    }
    out
}

/// Loopback, or the mapped form of an IPv4 loopback address.
fn is_loopback_form(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
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
    } else if is_loopback_form(ip) && !allow_loopback {
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
                    .and_then(parse_retry_after)
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

    /// Every embedded form of a refused IPv4 address, the other clouds'
    /// metadata addresses and the special-purpose ranges (issue item 10).
    #[test]
    fn the_ssrf_guard_refuses_embedded_and_special_purpose_addresses() {
        let refused_always = [
            // IPv4: metadata, CGNAT, this-network, broadcast, multicast,
            // reserved, documentation, benchmarking, protocol assignments.
            "169.254.170.2",
            "100.100.100.200",
            "100.64.0.1",
            "100.127.255.254",
            "168.63.129.16",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "240.0.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "192.0.2.10",
            "198.51.100.10",
            "203.0.113.10",
            "198.18.0.1",
            "198.19.255.1",
            "192.0.0.170",
            // IPv4-mapped.
            "::ffff:169.254.169.254",
            "::ffff:100.100.100.200",
            "::ffff:0.0.0.0",
            "::ffff:224.0.0.1",
            // IPv4-compatible, SIIT-translated.
            "::169.254.169.254",
            "::a9fe:a9fe",
            "::ffff:0:169.254.169.254",
            // NAT64 well-known prefix and local-use /48 (the /96, /64, /56
            // and /48 layouts of RFC 6052).
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::169.254.169.254",
            "64:ff9b::100.100.100.200",
            "64:ff9b::a83f:8110",
            "64:ff9b:1::a9fe:a9fe",
            "64:ff9b:1:ffff:ffff:ffff:a9fe:a9fe",
            "64:ff9b:1:0:a9:fea9:fe00:0",
            "64:ff9b:1:a9:fe:a9fe::",
            "64:ff9b:1:a9fe:a9:fe00::",
            "64:ff9b:1::",
            "64:ff9b:0:1::808:808",
            // 6to4 (2002:aabb:ccdd::/48).
            "2002:a9fe:a9fe::1",
            "2002:6464:64c8::",
            "2002:7f00:1::1",
            // Teredo: client = NOT(last 32 bits); server in bits 32..64.
            "2001:0:4136:e378:8000:63bf:5601:5601",
            "2001:0:4136:e378::5601:5601",
            "2001:0:a9fe:a9fe::f7f7:f7f7",
            // IPv6: AWS IMDS, unique local, link-local, site-local,
            // multicast, documentation, discard, reserved, unspecified.
            "fd00:ec2::254",
            "fc00::1",
            "fdff:ffff::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "feff::1",
            "ff02::1",
            "ff05::1:3",
            "2001:db8::1",
            "3fff::1",
            "3fff:fff::1",
            "100::1",
            "::",
            "::2",
            "1::1",
        ];
        for ip in refused_always {
            let parsed: IpAddr = ip.parse().unwrap();
            for loopback_ok in [false, true] {
                assert!(
                    !address_allowed(parsed, loopback_ok),
                    "{ip} must be refused (allow_loopback = {loopback_ok})"
                );
            }
        }
        // Loopback carried through a translator or tunnel is not ours:
        // refused even with allow_loopback.
        for ip in [
            "::127.0.0.1",
            "::ffff:0:127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b:1::7f00:1",
            "2002:7f00:1::",
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
        ] {
            let parsed: IpAddr = ip.parse().unwrap();
            assert!(!address_allowed(parsed, true), "{ip}");
            assert!(!address_allowed(parsed, false), "{ip}");
        }
        // Loopback itself, and its mapped form, only with allow_loopback.
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "127.255.255.254",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:127.9.9.9",
        ] {
            let parsed: IpAddr = ip.parse().unwrap();
            assert!(address_allowed(parsed, true), "{ip} with allow_loopback");
            assert!(!address_allowed(parsed, false), "{ip} without");
        }
        // allow_loopback admits nothing else.
        for ip in ["169.254.169.254", "0.0.0.0", "::", "fe80::1", "128.0.0.1"] {
            let parsed: IpAddr = ip.parse().unwrap();
            assert_eq!(
                address_allowed(parsed, true),
                ip == "128.0.0.1",
                "{ip}: allow_loopback only ever admits loopback"
            );
        }
        // Public and private addresses, and embeddings of public ones, stay
        // allowed (NAT64 is how IPv6-only hosts reach IPv4 endpoints).
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "10.0.0.5",
            "172.16.0.1",
            "192.168.1.1",
            "100.63.255.255",
            "100.128.0.0",
            "168.63.129.17",
            "198.20.0.1",
            "::ffff:93.184.216.34",
            "64:ff9b::808:808",
            "64:ff9b::93.184.216.34",
            "64:ff9b:1::808:808",
            "64:ff9b:1:808:8:800::",
            "2002:5db8:d822::1",
            // The IPv4 rules apply: private stays allowed, embedded too.
            "2002:0a00:0001::1:2",
            "2001:0:4136:e378:8000:63bf:a247:27dd",
            "2606:4700::1111",
            "2a00:1450:4001:80b::200e",
        ] {
            let parsed: IpAddr = ip.parse().unwrap();
            assert!(address_allowed(parsed, false), "{ip} must be allowed");
        }
    }

    #[test]
    fn literal_hosts_are_checked_with_a_reason() {
        let check = |url: &str, loopback: bool| {
            check_literal_host(&reqwest::Url::parse(url).unwrap(), loopback)
        };
        for url in [
            "http://[::169.254.169.254]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:a9fe:a9fe::]/",
            "http://100.100.100.200/",
            "http://0x7f.1/",
        ] {
            assert!(check(url, false).is_err(), "{url}");
        }
        let e = check("http://[::ffff:127.0.0.1]:9/", false).unwrap_err();
        assert!(e.contains("allow_loopback"), "{e}");
        assert!(check("http://[::ffff:127.0.0.1]:9/", true).is_ok());
        let e = check("http://[64:ff9b::7f00:1]/", true).unwrap_err();
        assert!(e.contains("internal"), "{e}");
        // Names are checked on their resolved addresses.
        assert!(check("https://hooks.example.com/", false).is_ok());
    }

    #[tokio::test]
    async fn the_resolver_drops_refused_addresses() {
        use reqwest::dns::Resolve;
        let name = |n: &str| n.parse::<reqwest::dns::Name>().unwrap();
        let refused = GuardedResolver {
            allow_loopback: false,
        };
        let err = match refused.resolve(name("localhost")).await {
            Ok(addrs) => panic!("resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("SSRF guard"), "{err}");
        let allowed = GuardedResolver {
            allow_loopback: true,
        };
        let addrs: Vec<SocketAddr> = allowed.resolve(name("localhost")).await.unwrap().collect();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()));
    }

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
