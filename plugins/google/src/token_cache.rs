//! Push tokens whose signature already verified. Pub/Sub reuses one OIDC
//! token for many pushes (up to an hour), so remembering that a token
//! verified removes the RSA verification from almost every request.
//!
//! An entry is keyed by the SHA-256 of the exact token string (the token
//! itself, a bearer credential, is never stored), remembers the claims the
//! signature covered and which key verified it, and is usable only while
//! that same key is in the key set and until the token's `exp` (plus the
//! allowed clock skew). The caller still checks every claim, time-dependent
//! ones included, on every request: the cache only stands in for the
//! signature check and the claims' decoding.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::jwks::SigningKey;

/// At most this many tokens are remembered; Pub/Sub has a handful live at
/// any time per subscription.
pub const DEFAULT_CAPACITY: usize = 1024;

pub type TokenDigest = [u8; 32];

/// The SHA-256 of a token's exact bytes.
pub fn digest(token: &str) -> TokenDigest {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref());
    out
}

struct Entry<C> {
    key_fingerprint: [u8; 32],
    claims: Arc<C>,
    /// After this (the token's `exp` plus the skew), the token is refused
    /// anyway, so the entry is dropped.
    usable_until_ms: i64,
}

/// A bounded map from token digest to the verified claims.
pub struct VerifiedTokens<C> {
    entries: Mutex<HashMap<TokenDigest, Entry<C>>>,
    /// The version of the key set the entries were last checked against.
    key_set_version: std::sync::atomic::AtomicU64,
    capacity: usize,
}

impl<C> VerifiedTokens<C> {
    /// A cache of at most `capacity` tokens (0: caching nothing).
    pub fn new(capacity: usize) -> Self {
        VerifiedTokens {
            entries: Mutex::new(HashMap::new()),
            key_set_version: std::sync::atomic::AtomicU64::new(0),
            capacity,
        }
    }

    /// The claims of the token with `digest` if it verified before with one
    /// of `keys` (the keys the token may be signed with now) and is not past
    /// its `exp`. An entry whose key left the set, or which expired, is
    /// dropped.
    pub fn get(
        &self,
        digest: &TokenDigest,
        keys: &[Arc<SigningKey>],
        now_ms: i64,
    ) -> Option<Arc<C>> {
        let mut entries = self.entries.lock().ok()?;
        let entry = entries.get(digest)?;
        let key_present = keys.iter().any(|k| k.fingerprint == entry.key_fingerprint);
        if key_present && now_ms <= entry.usable_until_ms {
            Some(Arc::clone(&entry.claims))
        } else {
            entries.remove(digest);
            None
        }
    }

    /// Remembers a token that verified with `key` and passed every check.
    /// When full, expired entries go first, then the one expiring soonest.
    pub fn insert(
        &self,
        digest: TokenDigest,
        key: &SigningKey,
        claims: Arc<C>,
        usable_until_ms: i64,
        now_ms: i64,
    ) {
        if self.capacity == 0 {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= self.capacity && !entries.contains_key(&digest) {
            entries.retain(|_, e| e.usable_until_ms >= now_ms);
            if entries.len() >= self.capacity {
                let soonest = entries
                    .iter()
                    .min_by_key(|(_, e)| e.usable_until_ms)
                    .map(|(d, _)| *d);
                if let Some(soonest) = soonest {
                    entries.remove(&soonest);
                }
            }
        }
        entries.insert(
            digest,
            Entry {
                key_fingerprint: key.fingerprint,
                claims,
                usable_until_ms,
            },
        );
    }

    /// The key set version [`Self::keep_keys`] last saw.
    pub fn key_set_version(&self) -> u64 {
        self.key_set_version
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// A new key set was loaded: drops every entry whose key is not in it.
    pub fn keep_keys(&self, version: u64, fingerprints: &[[u8; 32]]) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, e| fingerprints.contains(&e.key_fingerprint));
            self.key_set_version
                .store(version, std::sync::atomic::Ordering::Release);
        }
    }

    /// How many tokens are remembered.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::DecodingKey;

    fn key(tag: u8) -> Arc<SigningKey> {
        Arc::new(SigningKey {
            decoding: DecodingKey::from_secret(b"unused"),
            fingerprint: [tag; 32],
        })
    }

    #[test]
    fn bounded_evicting_expired_then_soonest() {
        let cache = VerifiedTokens::<u32>::new(2);
        let k = key(1);
        cache.insert(digest("a"), &k, Arc::new(1), 1_000, 0);
        cache.insert(digest("b"), &k, Arc::new(2), 5_000, 0);
        // Full: "a" expires soonest and goes.
        cache.insert(digest("c"), &k, Arc::new(3), 9_000, 0);
        assert_eq!(cache.len(), 2);
        let keys = [Arc::clone(&k)];
        assert!(cache.get(&digest("a"), &keys, 0).is_none());
        assert_eq!(cache.get(&digest("b"), &keys, 0).as_deref(), Some(&2));
        // At 6 s "b" is expired: it goes before "c", which expires later.
        cache.insert(digest("d"), &k, Arc::new(4), 7_000, 6_000);
        assert_eq!(cache.get(&digest("c"), &keys, 6_000).as_deref(), Some(&3));
        assert_eq!(cache.get(&digest("d"), &keys, 6_000).as_deref(), Some(&4));
        assert!(cache.get(&digest("b"), &keys, 0).is_none());
    }

    #[test]
    fn an_entry_needs_its_own_key_and_time() {
        let cache = VerifiedTokens::<u32>::new(8);
        let (k1, k2) = (key(1), key(2));
        cache.insert(digest("t"), &k1, Arc::new(7), 1_000, 0);
        // Another key under the same kid does not vouch for the token, and
        // the entry is dropped.
        assert!(cache.get(&digest("t"), &[Arc::clone(&k2)], 0).is_none());
        assert!(cache.is_empty());
        cache.insert(digest("t"), &k1, Arc::new(7), 1_000, 0);
        assert_eq!(
            cache
                .get(&digest("t"), &[k2, Arc::clone(&k1)], 1_000)
                .as_deref(),
            Some(&7)
        );
        assert!(cache.get(&digest("t"), &[k1], 1_001).is_none());
        assert!(cache.is_empty());
    }
}
