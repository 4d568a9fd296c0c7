//! Google's push-token signing keys: fetched from a JWKS URL (cached per
//! `Cache-Control: max-age`) or read from a local JWKS file, and reloaded when
//! a token names a key id not seen yet (Google rotates its keys). Loads are
//! single-flight and rate-limited in every state, so that forged tokens
//! cannot make us hammer the source: at most once a minute while keys are
//! loaded, and after a failed load (or before the first one succeeded) with
//! a backoff from one second doubling to a minute.
//!
//! Time is the request's `received_at_ms`, like every other check of the
//! adapter, so that tests can pin it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::DecodingKey;
use serde::Deserialize;

use crate::config::KeySource;

/// Minimum time between two loads of the key set (after the first).
pub const MIN_REFRESH_INTERVAL_MS: i64 = 60_000;
/// Wait after the first failed load; doubles with each failure in a row up
/// to [`MIN_REFRESH_INTERVAL_MS`].
pub const FIRST_RETRY_AFTER_FAILURE_MS: i64 = 1_000;
/// Cache lifetime when the JWKS response has no usable `max-age`.
const DEFAULT_MAX_AGE_MS: i64 = 3_600_000;
/// Fetching keys happens inside a push request, whose deadline Pub/Sub sets
/// to the ack deadline (10 s by default).
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// The key id is not quoted: it comes from the token's unsigned header.
    #[error("no signing key has the token's key id")]
    UnknownKey,
    #[error("the signing keys could not be loaded: {0}")]
    Unavailable(String),
}

/// One RSA signing key of the set, shared (not copied) by every request
/// that may be signed with it.
pub struct SigningKey {
    pub decoding: DecodingKey,
    /// SHA-256 of the JWK's modulus and exponent: what the verified-token
    /// cache remembers of the key that verified a token, so that an entry
    /// stays usable only while the same key is in the set (across reloads).
    pub fingerprint: [u8; 32],
}

/// One parsed key set.
#[derive(Clone, Default)]
struct KeySet {
    keys: HashMap<String, Arc<SigningKey>>,
    /// Keys without a `kid`, tried only for tokens without one.
    anonymous: Vec<Arc<SigningKey>>,
    /// When a URL key set goes stale (`None`: never, for files).
    expires_at_ms: Option<i64>,
    /// Which load this set came from (0: the file read at start-up), so
    /// that the verified-token cache notices every new set.
    version: u64,
}

impl KeySet {
    fn lookup(&self, kid: Option<&str>) -> Vec<Arc<SigningKey>> {
        match kid {
            Some(kid) => self.keys.get(kid).cloned().into_iter().collect(),
            // google-auth tries every key for a token without a kid.
            None => self
                .keys
                .values()
                .chain(self.anonymous.iter())
                .cloned()
                .collect(),
        }
    }

    fn is_stale(&self, now_ms: i64) -> bool {
        self.expires_at_ms.is_some_and(|at| now_ms >= at)
    }
}

#[derive(Default)]
struct RefreshState {
    /// `received_at_ms` of the last load attempt that this store made after
    /// start-up (a file read at start-up does not count).
    last_attempt_ms: Option<i64>,
    /// Failed loads in a row, and why the last one failed.
    failures: u32,
    last_problem: Option<String>,
}

impl RefreshState {
    /// The earliest time of the next load.
    fn next_allowed_ms(&self) -> Option<i64> {
        let last = self.last_attempt_ms?;
        let wait = match self.failures {
            0 => MIN_REFRESH_INTERVAL_MS,
            n => FIRST_RETRY_AFTER_FAILURE_MS
                .saturating_mul(1_i64 << (n - 1).min(16))
                .min(MIN_REFRESH_INTERVAL_MS),
        };
        Some(last.saturating_add(wait))
    }
}

pub struct KeyStore {
    source: Source,
    current: RwLock<Option<KeySet>>,
    /// Sets stored so far; the next one's version.
    stored: std::sync::atomic::AtomicU64,
    /// Serializes loads: concurrent requests with a new kid wait for one load.
    refresh: tokio::sync::Mutex<RefreshState>,
}

enum Source {
    Url {
        url: String,
        client: reqwest::Client,
    },
    File(PathBuf),
}

impl KeyStore {
    /// A store for `source`. A file is read now, so that a missing or broken
    /// file stops the start-up; a URL is fetched at the first request.
    pub fn new(source: &KeySource) -> Result<Self, String> {
        let (source, initial) = match source {
            KeySource::Url(url) => {
                let client = reqwest::Client::builder()
                    .timeout(FETCH_TIMEOUT)
                    .build()
                    .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
                (
                    Source::Url {
                        url: url.clone(),
                        client,
                    },
                    None,
                )
            }
            KeySource::File(path) => (Source::File(path.clone()), Some(read_file(path)?)),
        };
        Ok(KeyStore {
            source,
            current: RwLock::new(initial),
            stored: std::sync::atomic::AtomicU64::new(0),
            refresh: tokio::sync::Mutex::new(RefreshState::default()),
        })
    }

    /// The keys a token with `kid` may be signed with (every key when the
    /// token has no kid). Never empty on `Ok`.
    pub async fn keys_for(
        &self,
        kid: Option<&str>,
        now_ms: i64,
    ) -> Result<Vec<Arc<SigningKey>>, KeyError> {
        if let Some(keys) = self.fresh_hit(kid, now_ms) {
            return Ok(keys);
        }

        let mut refresh = self.refresh.lock().await;
        // Another request may have loaded the keys while this one waited.
        if let Some(keys) = self.fresh_hit(kid, now_ms) {
            return Ok(keys);
        }

        let loaded = self.snapshot();
        let rate_limited = refresh.next_allowed_ms().is_some_and(|at| now_ms < at);
        if rate_limited {
            return match (&loaded, &refresh.last_problem) {
                (None, problem) => Err(KeyError::Unavailable(format!(
                    "{} (next attempt within a minute)",
                    problem.as_deref().unwrap_or("not loaded yet")
                ))),
                (Some(_), _) => found_or_unknown(loaded.as_ref(), kid),
            };
        }

        refresh.last_attempt_ms = Some(now_ms);
        let result = self.load(now_ms).await;
        match &result {
            Ok(_) => {
                refresh.failures = 0;
                refresh.last_problem = None;
            }
            Err(problem) => {
                refresh.failures = refresh.failures.saturating_add(1);
                refresh.last_problem = Some(problem.clone());
            }
        }
        drop(refresh);
        match result {
            Ok(set) => {
                let keys = set.lookup(kid);
                self.store(set);
                if keys.is_empty() {
                    Err(KeyError::UnknownKey)
                } else {
                    Ok(keys)
                }
            }
            Err(problem) => {
                // Stale keys still verify a token signed with a key Google
                // has not retired yet; only a key we do not have needs the
                // source, and then the sender must retry (503).
                let stale = loaded.as_ref().map(|s| s.lookup(kid)).unwrap_or_default();
                if stale.is_empty() {
                    Err(KeyError::Unavailable(problem))
                } else {
                    tracing::warn!(store = "google", "using cached signing keys: {problem}");
                    Ok(stale)
                }
            }
        }
    }

    fn fresh_hit(&self, kid: Option<&str>, now_ms: i64) -> Option<Vec<Arc<SigningKey>>> {
        let guard = self.current.read().ok()?;
        let set = guard.as_ref()?;
        if set.is_stale(now_ms) {
            return None;
        }
        let keys = set.lookup(kid);
        (!keys.is_empty()).then_some(keys)
    }

    fn snapshot(&self) -> Option<KeySet> {
        self.current.read().ok().and_then(|g| g.clone())
    }

    /// The current set's version and the fingerprints of its keys, when its
    /// version is not `seen`.
    pub fn fingerprints_if_changed(&self, seen: u64) -> Option<(u64, Vec<[u8; 32]>)> {
        let guard = self.current.read().ok()?;
        let set = guard.as_ref()?;
        (set.version != seen).then(|| {
            let keys = set.keys.values().chain(set.anonymous.iter());
            (set.version, keys.map(|k| k.fingerprint).collect())
        })
    }

    fn store(&self, mut set: KeySet) {
        set.version = 1 + self
            .stored
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut guard) = self.current.write() {
            *guard = Some(set);
        }
    }

    async fn load(&self, now_ms: i64) -> Result<KeySet, String> {
        match &self.source {
            Source::File(path) => read_file(path),
            Source::Url { url, client } => fetch_url(client, url, now_ms).await,
        }
    }
}

fn found_or_unknown(
    set: Option<&KeySet>,
    kid: Option<&str>,
) -> Result<Vec<Arc<SigningKey>>, KeyError> {
    let keys = set.map(|s| s.lookup(kid)).unwrap_or_default();
    if keys.is_empty() {
        Err(KeyError::UnknownKey)
    } else {
        Ok(keys)
    }
}

fn read_file(path: &PathBuf) -> Result<KeySet, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_jwks(&bytes, None).map_err(|e| format!("{}: {e}", path.display()))
}

async fn fetch_url(client: &reqwest::Client, url: &str, now_ms: i64) -> Result<KeySet, String> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("GET {url}: HTTP {status}"));
    }
    let max_age_ms = response
        .headers()
        .get_all(reqwest::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(max_age_seconds)
        .map(|s| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX))
        .unwrap_or(DEFAULT_MAX_AGE_MS);
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let expires_at = now_ms.saturating_add(max_age_ms);
    parse_jwks(&body, Some(expires_at)).map_err(|e| format!("GET {url}: {e}"))
}

/// `max-age` from one `Cache-Control` header value.
pub fn max_age_seconds(header: &str) -> Option<u64> {
    header.split(',').find_map(|directive| {
        let (name, value) = directive.trim().split_once('=')?;
        if name.trim().eq_ignore_ascii_case("max-age") {
            value.trim().trim_matches('"').parse().ok()
        } else {
            None
        }
    })
}

#[derive(Deserialize)]
struct JwksDocument {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RsaJwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

/// Parses a JWKS document, keeping the RSA signature keys usable for RS256
/// and skipping any other entry (a future key type must not break Google
/// verification).
fn parse_jwks(bytes: &[u8], expires_at_ms: Option<i64>) -> Result<KeySet, String> {
    let doc: JwksDocument =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut set = KeySet {
        expires_at_ms,
        ..KeySet::default()
    };
    for value in doc.keys {
        let Ok(jwk) = serde_json::from_value::<RsaJwk>(value) else {
            continue;
        };
        let usable = jwk.kty == "RSA"
            && matches!(jwk.use_.as_deref(), None | Some("sig"))
            && matches!(jwk.alg.as_deref(), None | Some("RS256"));
        let (true, Some(n), Some(e)) = (usable, jwk.n.as_deref(), jwk.e.as_deref()) else {
            continue;
        };
        let Ok(decoding) = DecodingKey::from_rsa_components(n, e) else {
            continue;
        };
        let mut fingerprint_input = ring::digest::Context::new(&ring::digest::SHA256);
        // The separator cannot occur in base64url, so (n, e) pairs never collide.
        for part in [n.as_bytes(), b".", e.as_bytes()] {
            fingerprint_input.update(part);
        }
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(fingerprint_input.finish().as_ref());
        let key = Arc::new(SigningKey {
            decoding,
            fingerprint,
        });
        match jwk.kid {
            Some(kid) => {
                set.keys.insert(kid, key);
            }
            None => set.anonymous.push(key),
        }
    }
    if set.keys.is_empty() && set.anonymous.is_empty() {
        return Err("no RSA signing key in the key set".into());
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age_seconds("public, max-age=19258, must-revalidate, no-transform"),
            Some(19258)
        );
        assert_eq!(max_age_seconds("MAX-AGE = 5"), Some(5));
        assert_eq!(max_age_seconds("no-store"), None);
        assert_eq!(max_age_seconds("max-age=abc"), None);
    }

    #[test]
    fn jwks_parsing_skips_unusable_keys() {
        let doc = br#"{"keys":[
            {"kty":"EC","kid":"ec","crv":"P-256","x":"AA","y":"AA"},
            {"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"},
            {"kty":"RSA","kid":"ps","alg":"PS256","n":"AQAB","e":"AQAB"},
            {"kty":"RSA","kid":"ok","alg":"RS256","n":"AQAB","e":"AQAB"},
            {"kty":"RSA","n":"AQAB","e":"AQAB"},
            "junk"
        ]}"#;
        let set = parse_jwks(doc, None).unwrap();
        assert_eq!(set.keys.keys().collect::<Vec<_>>(), vec!["ok"]);
        assert_eq!(set.anonymous.len(), 1);
        assert_eq!(set.lookup(Some("ok")).len(), 1);
        assert_eq!(set.lookup(Some("ec")).len(), 0);
        assert_eq!(set.lookup(None).len(), 2);
        assert!(parse_jwks(br#"{"keys":[]}"#, None).is_err());
        assert!(parse_jwks(b"[]", None).is_err());
    }
}
