//! Admin authentication: `Authorization: Bearer <admin token>` for scripts
//! and reverse proxies, or a dashboard session.
//!
//! - Sessions are random ids kept on the server (only their SHA-256), with
//!   an idle and an absolute expiry, ended at sign-out and whenever the
//!   admin token changes. The cookie carries nothing derived from the token.
//! - A session may change state only from this dashboard's own pages
//!   (`Sec-Fetch-Site` / `Origin`); the Bearer token is never sent by a
//!   browser on its own, so it needs no such check.
//! - Wrong tokens are throttled per client address (IPv6 per /64): a few
//!   free failures, then a doubling block during which every attempt from
//!   that address is answered 429 without being checked. The state kept is
//!   bounded; refusals are logged with the address, sampled.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use ring::digest::{digest, SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use storehook_core::Secret;
use subtle::ConstantTimeEq;
use warp::http::{HeaderMap, StatusCode};
use warp::Filter;

use crate::error::ApiError;
use crate::metrics::Metrics;

/// The dashboard's session cookie name.
pub const SESSION_COOKIE: &str = "storehook_session";

/// Failures an address may make within [`FAILURE_WINDOW`] before it is blocked.
const FREE_FAILURES: u32 = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// The longest block; each failure past the free ones doubles it up to here.
const MAX_BLOCK: Duration = Duration::from_secs(15 * 60);
/// Addresses remembered at most (the oldest is forgotten first).
const MAX_TRACKED_CLIENTS: usize = 10_000;
/// Sessions kept at most (the least recently used ends first).
const MAX_SESSIONS: usize = 256;

/// The connection's peer address, put into each request by the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// Whether a request reads or changes state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Change,
}

/// What a request presented, and where it came from.
#[derive(Clone, Default)]
pub struct Credentials {
    pub bearer: Option<Secret>,
    pub session: Option<String>,
    /// The client's address (the peer, or `X-Forwarded-For` from a trusted proxy).
    pub client: Option<IpAddr>,
    /// The browser says the request comes from this server's own pages (or
    /// it is not a browser's cross-site request at all).
    pub same_origin: bool,
    /// `Content-Type: application/json`: a browser cannot send that across
    /// origins without a CORS preflight, which this server never grants.
    pub json: bool,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("bearer", &self.bearer.as_ref().map(|_| "***"))
            .field("session", &self.session.as_ref().map(|_| "***"))
            .field("client", &self.client)
            .field("same_origin", &self.same_origin)
            .finish()
    }
}

/// The admin token, the sessions and the failure throttle.
pub struct AdminAuth {
    token: RwLock<Option<TokenDigest>>,
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    /// One-time sign-in codes (the first run's link), by SHA-256, with the
    /// instant each stops working.
    sign_in_codes: Mutex<HashMap<[u8; 32], Instant>>,
    throttle: Mutex<Throttle>,
    idle: Duration,
    max_age: Duration,
    trusted_proxies: Vec<IpAddr>,
    /// `scheme://host[:port]` of `[server] public_url`, an accepted Origin.
    public_origin: Option<String>,
    random: SystemRandom,
    metrics: Arc<Metrics>,
}

/// SHA-256 of the admin token: compared in constant time whatever the
/// lengths, and what sessions are bound to.
#[derive(Clone, Copy, PartialEq, Eq)]
struct TokenDigest([u8; 32]);

impl TokenDigest {
    fn of(value: &str) -> Self {
        let d = digest(&SHA256, value.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Self(out)
    }

    fn matches(&self, given: &str) -> bool {
        bool::from(Self::of(given).0.ct_eq(&self.0))
    }
}

struct Session {
    created: Instant,
    last_seen: Instant,
    token: TokenDigest,
}

/// Session settings and where requests may come from.
pub struct AuthOptions {
    pub session_idle: Duration,
    pub session_max_age: Duration,
    pub trusted_proxies: Vec<IpAddr>,
    pub public_url: Option<String>,
}

/// Why a sign-in failed.
#[derive(Debug)]
pub enum SignInError {
    Disabled,
    Wrong,
    Throttled(Duration),
}

impl AdminAuth {
    pub fn new(token: Option<Secret>, options: AuthOptions, metrics: Arc<Metrics>) -> Self {
        let public_origin = options
            .public_url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
            .map(|u| u.origin().ascii_serialization());
        Self {
            token: RwLock::new(token.map(|t| TokenDigest::of(t.expose().trim()))),
            sessions: Mutex::new(HashMap::new()),
            sign_in_codes: Mutex::new(HashMap::new()),
            throttle: Mutex::new(Throttle::default()),
            idle: options.session_idle,
            max_age: options.session_max_age,
            trusted_proxies: options.trusted_proxies,
            public_origin,
            random: SystemRandom::new(),
            metrics,
        }
    }

    /// How long a session lasts at most (the cookie's `Max-Age`).
    pub fn session_max_age(&self) -> Duration {
        self.max_age
    }

    /// Whether an admin token is configured at all.
    pub fn configured(&self) -> bool {
        self.current_token().is_some()
    }

    fn current_token(&self) -> Option<TokenDigest> {
        *self.token.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the admin token; every session ends.
    /// The same token again (a reload that found nothing new) changes
    /// nothing: sessions end only when the token does.
    pub fn set_token(&self, token: Option<Secret>) {
        let new = token.map(|t| TokenDigest::of(t.expose().trim()));
        {
            let mut current = self.token.write().unwrap_or_else(|e| e.into_inner());
            if *current == new {
                return;
            }
            *current = new;
        }
        self.sessions_lock().clear();
        self.codes_lock().clear();
    }

    fn codes_lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Instant>> {
        self.sign_in_codes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A code that signs one browser in once, within `valid_for`: the first
    /// run's console link carries it instead of the token, so the token
    /// itself is in no URL, browser history or proxy log.
    pub fn issue_sign_in_code(&self, valid_for: Duration) -> Option<String> {
        self.current_token()?;
        let mut raw = [0u8; 32];
        self.random.fill(&mut raw).ok()?;
        let code = hex::encode(raw);
        let now = Instant::now();
        let mut codes = self.codes_lock();
        codes.retain(|_, until| *until > now);
        codes.insert(session_key(&code), now + valid_for);
        Some(code)
    }

    /// Exchanges a sign-in code for a session; a code works once.
    pub fn redeem_sign_in_code(&self, code: &str) -> Option<String> {
        let token = self.current_token()?;
        let until = self.codes_lock().remove(&session_key(code))?;
        if until <= Instant::now() {
            return None;
        }
        self.new_session(token).ok()
    }

    fn sessions_lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn throttle_lock(&self) -> std::sync::MutexGuard<'_, Throttle> {
        self.throttle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks a request's credentials for an admin route.
    pub fn check(&self, c: &Credentials, access: Access) -> Result<(), ApiError> {
        let Some(token) = self.current_token() else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "admin_disabled",
                "no admin token is configured; set [server] admin_token or STOREHOOK_ADMIN_TOKEN",
            ));
        };
        if let Some(given) = &c.bearer {
            return match self.judge(c.client, token.matches(given.expose()), "bearer") {
                Verdict::Right => Ok(()),
                Verdict::Wrong => Err(wrong_token()),
                Verdict::Throttled(wait) => Err(throttled_error(wait)),
            };
        }
        if let Some(session) = &c.session {
            if self.session_valid(session, token) {
                if access == Access::Change && !c.same_origin {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "cross_site_refused",
                        "a dashboard session may change state only from the dashboard's own pages",
                    ));
                }
                return Ok(());
            }
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "session_expired",
                "the dashboard session has ended; sign in again",
            ));
        }
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing admin token (Authorization: Bearer <token>)",
        ))
    }

    /// The dashboard's sign-in form: a new session id for the cookie.
    pub fn sign_in(&self, client: Option<IpAddr>, given: &str) -> Result<String, SignInError> {
        let Some(token) = self.current_token() else {
            return Err(SignInError::Disabled);
        };
        match self.judge(client, token.matches(given.trim()), "sign_in") {
            Verdict::Right => {}
            Verdict::Wrong => return Err(SignInError::Wrong),
            Verdict::Throttled(wait) => return Err(SignInError::Throttled(wait)),
        }
        self.new_session(token)
    }

    fn new_session(&self, token: TokenDigest) -> Result<String, SignInError> {
        let mut raw = [0u8; 32];
        // The system RNG failing is not recoverable by retrying here.
        if self.random.fill(&mut raw).is_err() {
            return Err(SignInError::Wrong);
        }
        let id = hex::encode(raw);
        let now = Instant::now();
        let mut sessions = self.sessions_lock();
        sessions.retain(|_, s| self.alive(s, now));
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| *k)
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            session_key(&id),
            Session {
                created: now,
                last_seen: now,
                token,
            },
        );
        Ok(id)
    }

    /// Ends a session (sign-out).
    pub fn sign_out(&self, session: &str) {
        self.sessions_lock().remove(&session_key(session));
    }

    fn alive(&self, s: &Session, now: Instant) -> bool {
        now.duration_since(s.last_seen) < self.idle && now.duration_since(s.created) < self.max_age
    }

    fn session_valid(&self, id: &str, token: TokenDigest) -> bool {
        let now = Instant::now();
        let key = session_key(id);
        let mut sessions = self.sessions_lock();
        let valid = match sessions.get_mut(&key) {
            Some(s) if s.token == token && self.alive(s, now) => {
                s.last_seen = now;
                true
            }
            Some(_) => {
                sessions.remove(&key);
                false
            }
            None => false,
        };
        valid
    }

    /// Decides one attempt: throttled (not even looked at), right or wrong.
    /// One lock around the block check and the bookkeeping, so parallel
    /// guesses cannot slip in between.
    fn judge(&self, client: Option<IpAddr>, matches: bool, kind: &'static str) -> Verdict {
        let now = Instant::now();
        let mut throttle = self.throttle_lock();
        if let Some(wait) = throttle.blocked(client, now) {
            drop(throttle);
            self.metrics.admin_auth_throttled();
            return Verdict::Throttled(wait);
        }
        if matches {
            throttle.forget(client);
            return Verdict::Right;
        }
        let (failures, blocked) = throttle.fail(client, now);
        drop(throttle);
        self.metrics.admin_auth_failure(kind);
        // Sampled: the first, every hundredth, and each block.
        let shown = client.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        if let Some(block) = blocked {
            tracing::warn!(
                client = %shown,
                failures,
                blocked_seconds = block.as_secs(),
                kind,
                "wrong admin token: this address is blocked for a while"
            );
        } else if failures == 1 || failures % 100 == 0 {
            tracing::warn!(client = %shown, failures, kind, "wrong admin token");
        }
        Verdict::Wrong
    }

    /// The request's credentials and origin, from its headers.
    pub fn credentials(
        self: &Arc<Self>,
    ) -> impl Filter<Extract = (Credentials,), Error = std::convert::Infallible> + Clone {
        let auth = self.clone();
        warp::header::headers_cloned()
            .and(warp::ext::optional::<PeerAddr>())
            .map(move |headers: HeaderMap, peer: Option<PeerAddr>| {
                auth.credentials_of(&headers, peer.map(|p| p.0.ip()))
            })
    }

    pub fn credentials_of(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Credentials {
        Credentials {
            bearer: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|h| {
                    let (scheme, token) = h.split_once(' ')?;
                    scheme
                        .eq_ignore_ascii_case("bearer")
                        .then(|| Secret::new(token.trim()))
                }),
            session: headers
                .get_all("cookie")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .find_map(|pair| {
                    let (name, value) = pair.trim().split_once('=')?;
                    (name == SESSION_COOKIE && !value.is_empty()).then(|| value.to_owned())
                }),
            client: peer.map(|p| client_address(p, headers, &self.trusted_proxies)),
            same_origin: same_origin(headers, self.public_origin.as_deref()),
            json: headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")),
        }
    }
}

enum Verdict {
    Right,
    Wrong,
    Throttled(Duration),
}

fn wrong_token() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "wrong admin token (Authorization: Bearer <token>)",
    )
}

fn session_key(id: &str) -> [u8; 32] {
    TokenDigest::of(id).0
}

/// 429 with the seconds to wait.
pub fn throttled_error(wait: Duration) -> ApiError {
    let seconds = wait.as_secs().max(1);
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        format!("too many wrong admin tokens from this address; try again in {seconds} s"),
    );
    e.retry_after = Some(seconds);
    e
}

/// The client: the peer, or — when the peer is a trusted proxy — the last
/// address in `X-Forwarded-For` that is not itself a trusted proxy.
fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    let peer = canonical(peer);
    if !trusted.iter().any(|t| canonical(*t) == peer) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .map(canonical)
        .collect();
    forwarded
        .iter()
        .rev()
        .find(|a| !trusted.iter().any(|t| canonical(*t) == **a))
        .copied()
        .unwrap_or(peer)
}

/// IPv4-mapped IPv6 addresses as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Whether a request comes from this server's own pages. Browsers say where
/// a request came from (`Sec-Fetch-Site`; `none` is the user's own
/// navigation); without that header, `Origin` must name this host (or
/// `public_url`). A request with neither is not a browser's cross-site
/// request: every current browser sends `Origin` on cross-origin POSTs.
pub fn same_origin(headers: &HeaderMap, public_origin: Option<&str>) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = header("sec-fetch-site") {
        return matches!(site, "same-origin" | "none");
    }
    if let Some(origin) = header("origin") {
        let origin = origin.trim_end_matches('/');
        if public_origin.is_some_and(|p| p.eq_ignore_ascii_case(origin)) {
            return true;
        }
        let origin_host = origin.split_once("://").map(|(_, rest)| rest);
        return match (origin_host, header("host")) {
            (Some(o), Some(h)) => o.eq_ignore_ascii_case(h),
            _ => false,
        };
    }
    true
}

/// Failures per client address, bounded.
#[derive(Default)]
struct Throttle {
    clients: HashMap<IpAddr, Strikes>,
}

struct Strikes {
    failures: u32,
    first_at: Instant,
    blocked_until: Option<Instant>,
}

/// The throttle's key: IPv6 clients usually hold a whole /64.
fn client_key(client: Option<IpAddr>) -> IpAddr {
    match client.map(canonical) {
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        Some(v4) => v4,
        None => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

impl Throttle {
    /// How long `client` must still wait, if it is blocked.
    fn blocked(&mut self, client: Option<IpAddr>, now: Instant) -> Option<Duration> {
        let strikes = self.clients.get(&client_key(client))?;
        strikes
            .blocked_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }

    /// Records a failure: the failures in this window and, when this one
    /// starts a block, its length.
    fn fail(&mut self, client: Option<IpAddr>, now: Instant) -> (u32, Option<Duration>) {
        let key = client_key(client);
        if !self.clients.contains_key(&key) && self.clients.len() >= MAX_TRACKED_CLIENTS {
            self.make_room(now);
        }
        let strikes = self.clients.entry(key).or_insert(Strikes {
            failures: 0,
            first_at: now,
            blocked_until: None,
        });
        let quiet = strikes.blocked_until.is_none_or(|until| until <= now);
        if quiet && now.duration_since(strikes.first_at) > FAILURE_WINDOW + MAX_BLOCK {
            // Long enough ago: start over.
            *strikes = Strikes {
                failures: 0,
                first_at: now,
                blocked_until: None,
            };
        } else if quiet
            && strikes.failures < FREE_FAILURES
            && now.duration_since(strikes.first_at) > FAILURE_WINDOW
        {
            strikes.failures = 0;
            strikes.first_at = now;
        }
        strikes.failures += 1;
        if strikes.failures <= FREE_FAILURES {
            return (strikes.failures, None);
        }
        let doublings = (strikes.failures - FREE_FAILURES - 1).min(20);
        let block = Duration::from_secs(1u64 << doublings).min(MAX_BLOCK);
        strikes.blocked_until = Some(now + block);
        (strikes.failures, Some(block))
    }

    fn forget(&mut self, client: Option<IpAddr>) {
        self.clients.remove(&client_key(client));
    }

    /// Forgets finished entries, else the oldest one.
    fn make_room(&mut self, now: Instant) {
        self.clients.retain(|_, s| {
            s.blocked_until.is_some_and(|u| u > now)
                || now.duration_since(s.first_at) <= FAILURE_WINDOW
        });
        if self.clients.len() >= MAX_TRACKED_CLIENTS {
            if let Some(oldest) = self
                .clients
                .iter()
                .min_by_key(|(_, s)| s.first_at)
                .map(|(k, _)| *k)
            {
                self.clients.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::http::HeaderValue;

    fn auth(token: &str) -> AdminAuth {
        AdminAuth::new(
            Some(Secret::new(token)),
            AuthOptions {
                session_idle: Duration::from_secs(60),
                session_max_age: Duration::from_secs(3600),
                trusted_proxies: vec!["10.0.0.1".parse().unwrap()],
                public_url: Some("https://hooks.example.com/".into()),
            },
            Arc::new(Metrics::new()),
        )
    }

    fn bearer(t: &str, client: &str) -> Credentials {
        Credentials {
            bearer: Some(Secret::new(t)),
            client: Some(client.parse().unwrap()),
            ..Credentials::default()
        }
    }

    #[test]
    fn a_sign_in_code_works_once_and_not_after_expiry_or_a_token_change() {
        let a = auth("0123456789abcdef");
        let code = a.issue_sign_in_code(Duration::from_secs(60)).unwrap();
        assert!(!code.contains("0123456789abcdef"));
        let session = a.redeem_sign_in_code(&code).expect("a session");
        let c = Credentials {
            session: Some(session),
            same_origin: true,
            ..Credentials::default()
        };
        assert!(a.check(&c, Access::Change).is_ok());
        assert!(a.redeem_sign_in_code(&code).is_none(), "used already");
        assert!(a.redeem_sign_in_code("00").is_none());
        let expired = a.issue_sign_in_code(Duration::ZERO).unwrap();
        assert!(a.redeem_sign_in_code(&expired).is_none());
        let pending = a.issue_sign_in_code(Duration::from_secs(60)).unwrap();
        a.set_token(Some(Secret::new("fedcba9876543210")));
        assert!(a.redeem_sign_in_code(&pending).is_none());
        // Setting the same token again (a repeated reload) keeps sessions.
        let kept = a.sign_in(None, "fedcba9876543210").unwrap();
        a.set_token(Some(Secret::new("fedcba9876543210")));
        let c = Credentials {
            session: Some(kept),
            same_origin: true,
            ..Credentials::default()
        };
        assert!(a.check(&c, Access::Change).is_ok());
    }

    #[test]
    fn bearer_or_session_is_accepted() {
        let a = auth("0123456789abcdef");
        assert!(a
            .check(&bearer("0123456789abcdef", "1.2.3.4"), Access::Change)
            .is_ok());
        assert_eq!(
            a.check(&bearer("0123456789abcdeF", "1.2.3.4"), Access::Read)
                .unwrap_err()
                .status,
            401
        );
        let id = a.sign_in(None, "0123456789abcdef").unwrap();
        assert_eq!(id.len(), 64);
        assert!(!id.contains("0123456789abcdef"));
        let session = Credentials {
            session: Some(id.clone()),
            same_origin: true,
            ..Credentials::default()
        };
        assert!(a.check(&session, Access::Change).is_ok());
        // Every sign-in gets its own id.
        assert_ne!(a.sign_in(None, "0123456789abcdef").unwrap(), id);
        let disabled = AdminAuth::new(
            None,
            AuthOptions {
                session_idle: Duration::from_secs(1),
                session_max_age: Duration::from_secs(1),
                trusted_proxies: vec![],
                public_url: None,
            },
            Arc::new(Metrics::new()),
        );
        assert_eq!(
            disabled
                .check(&bearer("x", "1.2.3.4"), Access::Read)
                .unwrap_err()
                .status,
            403
        );
    }

    #[test]
    fn sessions_end_at_sign_out_on_token_change_and_when_idle() {
        let a = auth("0123456789abcdef");
        let s = |id: &str| Credentials {
            session: Some(id.to_owned()),
            same_origin: true,
            ..Credentials::default()
        };
        let id = a.sign_in(None, "0123456789abcdef").unwrap();
        a.sign_out(&id);
        assert_eq!(
            a.check(&s(&id), Access::Read).unwrap_err().code,
            "session_expired"
        );
        let id = a.sign_in(None, "0123456789abcdef").unwrap();
        a.set_token(Some(Secret::new("fedcba9876543210")));
        assert!(a.check(&s(&id), Access::Read).is_err());
        let short = AdminAuth::new(
            Some(Secret::new("0123456789abcdef")),
            AuthOptions {
                session_idle: Duration::from_millis(30),
                session_max_age: Duration::from_secs(60),
                trusted_proxies: vec![],
                public_url: None,
            },
            Arc::new(Metrics::new()),
        );
        let id = short.sign_in(None, "0123456789abcdef").unwrap();
        assert!(short.check(&s(&id), Access::Read).is_ok());
        std::thread::sleep(Duration::from_millis(60));
        assert!(short.check(&s(&id), Access::Read).is_err());
    }

    #[test]
    fn a_session_changes_state_only_from_its_own_pages() {
        let a = auth("0123456789abcdef");
        let id = a.sign_in(None, "0123456789abcdef").unwrap();
        let cross = Credentials {
            session: Some(id),
            same_origin: false,
            ..Credentials::default()
        };
        assert!(a.check(&cross, Access::Read).is_ok());
        assert_eq!(
            a.check(&cross, Access::Change).unwrap_err().code,
            "cross_site_refused"
        );
    }

    #[test]
    fn guessing_is_blocked_per_address_and_a_right_token_resets() {
        let a = auth("0123456789abcdef");
        for _ in 0..FREE_FAILURES {
            assert_eq!(
                a.check(&bearer("guess", "203.0.113.9"), Access::Read)
                    .unwrap_err()
                    .status,
                401
            );
        }
        assert_eq!(
            a.check(&bearer("guess", "203.0.113.9"), Access::Read)
                .unwrap_err()
                .status,
            401
        );
        // Now blocked: even the right token waits.
        let e = a
            .check(&bearer("0123456789abcdef", "203.0.113.9"), Access::Read)
            .unwrap_err();
        assert_eq!((e.status.as_u16(), e.retry_after), (429, Some(1)));
        assert!(matches!(
            a.sign_in(Some("203.0.113.9".parse().unwrap()), "0123456789abcdef"),
            Err(SignInError::Throttled(_))
        ));
        // Another address is not affected; an IPv6 /64 counts as one.
        assert!(a
            .check(&bearer("0123456789abcdef", "203.0.113.10"), Access::Read)
            .is_ok());
        let mut t = Throttle::default();
        let now = Instant::now();
        for i in 0..=FREE_FAILURES {
            let ip: IpAddr = format!("2001:db8:1:2::{i:x}").parse().unwrap();
            t.fail(Some(ip), now);
        }
        assert!(t
            .blocked(Some("2001:db8:1:2::ffff".parse().unwrap()), now)
            .is_some());
        // Blocks double.
        let (_, b) = t.fail(Some("2001:db8:1:2::1".parse().unwrap()), now);
        assert_eq!(b, Some(Duration::from_secs(2)));
    }

    #[test]
    fn the_throttle_keeps_bounded_state() {
        let mut t = Throttle::default();
        let now = Instant::now();
        for i in 0..(MAX_TRACKED_CLIENTS as u32 + 500) {
            t.fail(Some(IpAddr::V4(i.into())), now);
        }
        assert!(t.clients.len() <= MAX_TRACKED_CLIENTS);
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("198.51.100.7, 10.0.0.1"),
        );
        let trusted = ["10.0.0.1".parse().unwrap()];
        assert_eq!(
            client_address("10.0.0.1".parse().unwrap(), &h, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_address("192.0.2.1".parse().unwrap(), &h, &trusted),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn cross_origin_requests_are_recognised() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_origin(&h, None));
        h.insert("origin", HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(same_origin(&h, None));
        h.insert("origin", HeaderValue::from_static("http://127.0.0.1:9999"));
        assert!(!same_origin(&h, None));
        h.insert(
            "origin",
            HeaderValue::from_static("https://hooks.example.com"),
        );
        assert!(same_origin(&h, Some("https://hooks.example.com")));
        h.insert("origin", HeaderValue::from_static("https://evil.example"));
        assert!(!same_origin(&h, Some("https://hooks.example.com")));
        h.insert("origin", HeaderValue::from_static("null"));
        assert!(!same_origin(&h, None));
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&h, None));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-site"));
        assert!(!same_origin(&h, None));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_origin(&h, None));
    }
}
