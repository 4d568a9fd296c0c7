//! Push authentication, checked before the body is trusted: Pub/Sub's OIDC
//! token (`Authorization: Bearer <JWT>` signed by Google) and/or the shared
//! secret in the push URL (`?token=`). When both are configured, both must
//! pass (Google's own push sample checks both).

use std::sync::Arc;

use base64::Engine;
use jsonwebtoken::{errors::ErrorKind, Algorithm, Validation};
use serde::Deserialize;
use storehook_core::encoding::LENIENT_URL_SAFE;
use storehook_core::{AdapterError, IncomingRequest, Secret};

use crate::config::{OidcSettings, Settings};
use crate::jwks::{KeyError, KeyStore, SigningKey};
use crate::token_cache::{self, VerifiedTokens};

/// The issuers google-auth's `verify_oauth2_token` accepts.
pub const GOOGLE_ISSUERS: [&str; 2] = ["accounts.google.com", "https://accounts.google.com"];

/// Why a push request failed authentication. `code()` is the stable reason
/// the host records; messages never contain the token or the secret, and
/// never quote the token's unsigned parts (its header: `alg`, `kid`), which
/// anyone can write. Claims are quoted only once Google's signature over
/// them verified, and then only when they look like what they should be (an
/// issuer, an audience URL, an email address), see [`shown`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error(
        "no `Authorization: Bearer` token (the push subscription must have authentication enabled)"
    )]
    MissingToken,
    #[error("the bearer token is not a well-formed JWT: {0}")]
    MalformedToken(&'static str),
    #[error("the token is not signed with RS256, the only algorithm accepted")]
    BadAlgorithm,
    #[error(
        "no Google signing key has the token's key id (keys are reloaded at most once a minute)"
    )]
    UnknownKey,
    #[error("the token's signature does not verify with Google's key")]
    BadSignature,
    #[error("the token's issuer {0} is not accounts.google.com")]
    WrongIssuer(String),
    #[error("the token's audience {0} is not the configured audience")]
    WrongAudience(String),
    #[error("the token expired at {exp} (now {now}, leeway {leeway_s} s)")]
    Expired { exp: i64, now: i64, leeway_s: u64 },
    #[error("the token is issued at {iat}, in the future (now {now}, leeway {leeway_s} s)")]
    NotYetValid { iat: i64, now: i64, leeway_s: u64 },
    #[error("the token's email {0} is not the configured push service account")]
    WrongEmail(String),
    #[error("the token's email is not verified (email_verified is not true)")]
    EmailNotVerified,
    #[error("no `token` query parameter in the push URL")]
    MissingPushToken,
    #[error("the push URL's `token` does not match the configured push token")]
    BadPushToken,
    #[error("Google's signing keys could not be fetched: {0}")]
    KeysUnavailable(String),
}

impl AuthError {
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "missing_token",
            AuthError::MalformedToken(_) => "malformed_token",
            AuthError::BadAlgorithm => "bad_algorithm",
            AuthError::UnknownKey => "unknown_key",
            AuthError::BadSignature => "bad_signature",
            AuthError::WrongIssuer(_) => "wrong_issuer",
            AuthError::WrongAudience(_) => "wrong_audience",
            AuthError::Expired { .. } => "expired",
            AuthError::NotYetValid { .. } => "not_yet_valid",
            AuthError::WrongEmail(_) => "wrong_email",
            AuthError::EmailNotVerified => "email_not_verified",
            AuthError::MissingPushToken => "missing_push_token",
            AuthError::BadPushToken => "bad_push_token",
            AuthError::KeysUnavailable(_) => "jwks_unavailable",
        }
    }
}

impl From<AuthError> for AdapterError {
    fn from(e: AuthError) -> Self {
        match e {
            // Pub/Sub retries a 503, and the keys may be reachable then.
            AuthError::KeysUnavailable(_) => AdapterError::unavailable(e.code(), e.to_string()),
            _ => AdapterError::unauthorized(e.code(), e.to_string()),
        }
    }
}

/// Every authentication method the config enables.
pub struct PushAuthenticator {
    oidc: Option<OidcVerifier>,
    /// Compared with `Secret::matches`, which hides the token's length as
    /// well as its bytes.
    push_token: Option<Secret>,
}

impl PushAuthenticator {
    pub fn new(settings: &Settings) -> Result<Self, String> {
        let oidc = settings.oidc.as_ref().map(OidcVerifier::new).transpose()?;
        Ok(PushAuthenticator {
            oidc,
            push_token: settings.push_token.clone(),
        })
    }

    pub async fn authenticate(&self, request: &IncomingRequest) -> Result<(), AuthError> {
        if let Some(expected) = &self.push_token {
            verify_push_token(request, expected)?;
        }
        if let Some(oidc) = &self.oidc {
            oidc.verify_request(request).await?;
        }
        Ok(())
    }
}

/// Checks `?token=` against the configured secret.
pub fn verify_push_token(request: &IncomingRequest, expected: &Secret) -> Result<(), AuthError> {
    let given = request
        .query_param("token")
        .ok_or(AuthError::MissingPushToken)?;
    if expected.matches(&given) {
        Ok(())
    } else {
        Err(AuthError::BadPushToken)
    }
}

/// Verifies Pub/Sub's OIDC push tokens: RS256 over Google's keys, then the
/// claims google-auth checks, plus `email`/`email_verified`, which it leaves
/// to the caller.
pub struct OidcVerifier {
    audience: String,
    service_account_email: String,
    clock_skew_seconds: u64,
    keys: KeyStore,
    validation: Validation,
    verified: VerifiedTokens<PushClaims>,
    /// RSA verifications made, for the cache's tests.
    #[cfg(test)]
    signature_checks: std::sync::atomic::AtomicU64,
}

#[derive(Deserialize)]
struct JoseHeader {
    alg: Option<String>,
    kid: Option<String>,
}

/// The claims of a Pub/Sub push token that are checked. Types are loose
/// (`Value`) so that an odd claim is reported as what it is rather than as a
/// parse failure.
#[derive(Deserialize, Default)]
struct PushClaims {
    iss: Option<serde_json::Value>,
    aud: Option<serde_json::Value>,
    exp: Option<serde_json::Value>,
    iat: Option<serde_json::Value>,
    email: Option<serde_json::Value>,
    email_verified: Option<serde_json::Value>,
}

impl OidcVerifier {
    pub fn new(settings: &OidcSettings) -> Result<Self, String> {
        Self::with_cache_capacity(settings, token_cache::DEFAULT_CAPACITY)
    }

    /// A verifier remembering at most `capacity` verified tokens (0: none,
    /// every request pays the RSA verification; the benchmark's baseline).
    pub fn with_cache_capacity(settings: &OidcSettings, capacity: usize) -> Result<Self, String> {
        // The library checks the signature only: time claims are checked
        // below against the request's clock, not the system's.
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        validation.leeway = 0;
        Ok(OidcVerifier {
            audience: settings.audience.clone(),
            service_account_email: settings.service_account_email.clone(),
            clock_skew_seconds: settings.clock_skew_seconds,
            keys: KeyStore::new(&settings.key_source)?,
            validation,
            verified: VerifiedTokens::new(capacity),
            #[cfg(test)]
            signature_checks: Default::default(),
        })
    }

    pub async fn verify_request(&self, request: &IncomingRequest) -> Result<(), AuthError> {
        let token = bearer_token(request.header("authorization")).ok_or(AuthError::MissingToken)?;
        self.verify_token(token, request.received_at_ms).await
    }

    /// Verifies one push token as of `now_ms`.
    pub async fn verify_token(&self, token: &str, now_ms: i64) -> Result<(), AuthError> {
        let header = jose_header(token)?;
        match header.alg.as_deref() {
            Some("RS256") => {}
            _ => return Err(AuthError::BadAlgorithm),
        }
        let keys = self.keys.keys_for(header.kid.as_deref(), now_ms).await;
        // Whatever the answer, a newly loaded set drops the cached tokens of
        // every key that left it; and the set is consulted before the cache,
        // so that a token whose key left is refused as without the cache.
        let seen = self.verified.key_set_version();
        if let Some((version, fingerprints)) = self.keys.fingerprints_if_changed(seen) {
            self.verified.keep_keys(version, &fingerprints);
        }
        let keys = keys.map_err(|e| match e {
            KeyError::UnknownKey => AuthError::UnknownKey,
            KeyError::Unavailable(problem) => AuthError::KeysUnavailable(problem),
        })?;
        let digest = token_cache::digest(token);
        if let Some(claims) = self.verified.get(&digest, &keys, now_ms) {
            return self.check_claims(&claims, now_ms);
        }
        let (claims, key) = self.verify_signature(token, &keys)?;
        self.check_claims(&claims, now_ms)?;
        // check_claims refused a token without a numeric `exp`.
        if let Some(exp) = claims.exp.as_ref().and_then(numeric_date) {
            let usable_until_ms = exp.saturating_mul(1000).saturating_add(self.skew_ms());
            self.verified
                .insert(digest, key, Arc::new(claims), usable_until_ms, now_ms);
        }
        Ok(())
    }

    fn verify_signature<'k>(
        &self,
        token: &str,
        keys: &'k [Arc<SigningKey>],
    ) -> Result<(PushClaims, &'k SigningKey), AuthError> {
        #[cfg(test)]
        self.signature_checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut failure = AuthError::BadSignature;
        for key in keys {
            match jsonwebtoken::decode::<PushClaims>(token, &key.decoding, &self.validation) {
                Ok(data) => return Ok((data.claims, key)),
                Err(e) => match e.kind() {
                    ErrorKind::InvalidSignature | ErrorKind::InvalidRsaKey(_) => {}
                    ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                        failure = AuthError::BadAlgorithm
                    }
                    // The signature verified, but the claims are not a JSON
                    // object; or the token's segments are not base64url.
                    _ => {
                        failure = AuthError::MalformedToken(
                            "its claims are not a JSON object or a segment is not base64url",
                        )
                    }
                },
            }
        }
        Err(failure)
    }

    fn skew_ms(&self) -> i64 {
        i64::try_from(self.clock_skew_seconds.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    fn check_claims(&self, claims: &PushClaims, now_ms: i64) -> Result<(), AuthError> {
        // google-auth requires both iat and exp.
        let exp = required_date(&claims.exp, "`exp` is missing or not a number")?;
        let iat = required_date(&claims.iat, "`iat` is missing or not a number")?;

        let iss = claims.iss.as_ref().and_then(|v| v.as_str()).unwrap_or("");
        if !GOOGLE_ISSUERS.contains(&iss) {
            return Err(AuthError::WrongIssuer(shown(iss)));
        }

        let audience_matches = match &claims.aud {
            Some(serde_json::Value::String(aud)) => aud == &self.audience,
            Some(serde_json::Value::Array(auds)) => auds
                .iter()
                .any(|a| a.as_str() == Some(self.audience.as_str())),
            _ => false,
        };
        if !audience_matches {
            let given = claims
                .aud
                .as_ref()
                .map(|v| match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_default();
            return Err(AuthError::WrongAudience(shown(&given)));
        }

        // Same comparisons as google-auth: `exp + skew < now` is expired,
        // `now < iat - skew` is too early; in milliseconds so that the
        // request's clock is not rounded.
        let skew_ms = self.skew_ms();
        let now_s = now_ms.div_euclid(1000);
        if exp.saturating_mul(1000).saturating_add(skew_ms) < now_ms {
            return Err(AuthError::Expired {
                exp,
                now: now_s,
                leeway_s: self.clock_skew_seconds,
            });
        }
        if now_ms < iat.saturating_mul(1000).saturating_sub(skew_ms) {
            return Err(AuthError::NotYetValid {
                iat,
                now: now_s,
                leeway_s: self.clock_skew_seconds,
            });
        }

        // Without these two, a push subscription in anyone's project, signed
        // by Google for their own service account, could target our URL.
        let email = claims.email.as_ref().and_then(|v| v.as_str()).unwrap_or("");
        if email != self.service_account_email {
            return Err(AuthError::WrongEmail(shown(email)));
        }
        let verified = match &claims.email_verified {
            Some(serde_json::Value::Bool(b)) => *b,
            // Some Google tokens have carried it as a string.
            Some(serde_json::Value::String(s)) => s == "true",
            _ => false,
        };
        if !verified {
            return Err(AuthError::EmailNotVerified);
        }
        Ok(())
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme names are
/// case-insensitive, RFC 7235).
pub fn bearer_token(authorization: Option<&str>) -> Option<&str> {
    let (scheme, token) = authorization?.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Reads the JOSE header before any key is chosen, to refuse any algorithm
/// but RS256 (`none`, and HS256 keyed with the public key) up front.
fn jose_header(token: &str) -> Result<JoseHeader, AuthError> {
    let mut segments = token.split('.');
    let (Some(header), Some(_), Some(_), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(AuthError::MalformedToken("a JWT has three segments"));
    };
    let bytes = LENIENT_URL_SAFE
        .decode(header)
        .map_err(|_| AuthError::MalformedToken("the header is not base64url"))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| AuthError::MalformedToken("the header is not a JSON object"))
}

/// A JWT NumericDate (seconds; fractions are truncated as google-auth does).
/// A claim that must be a NumericDate; `missing` says which when it is not.
fn required_date(
    claim: &Option<serde_json::Value>,
    missing: &'static str,
) -> Result<i64, AuthError> {
    claim
        .as_ref()
        .and_then(numeric_date)
        .ok_or(AuthError::MalformedToken(missing))
}

fn numeric_date(value: &serde_json::Value) -> Option<i64> {
    match value {
        serde_json::Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && f.abs() < 1e15)
                .map(|f| f as i64)
        }),
        _ => None,
    }
}

/// A signed claim as shown in an error message: quoted when it is made of
/// the characters issuers, audience URLs and email addresses use, and at
/// most 120 of them; otherwise only its length. Google signs whatever
/// audience the token's requester asked for, so a claim is no place for
/// free text to reach the operator's dashboard.
fn shown(value: &str) -> String {
    const MAX: usize = 120;
    let plain = value.len() <= MAX
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b));
    match (value.is_empty(), plain) {
        (true, _) => "(none)".to_string(),
        (false, true) => format!("\"{value}\""),
        (false, false) => format!("(not shown: {} bytes)", value.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer_token(Some("BEARER abc")), Some("abc"));
        assert_eq!(bearer_token(Some("Basic dXNlcjpwYXNz")), None);
        assert_eq!(bearer_token(Some("Bearer ")), None);
        assert_eq!(bearer_token(Some("Bearer")), None);
        assert_eq!(bearer_token(None), None);
    }

    #[test]
    fn header_must_be_three_base64url_segments() {
        assert!(matches!(
            jose_header("abc.def"),
            Err(AuthError::MalformedToken(_))
        ));
        assert!(matches!(
            jose_header("a.b.c.d"),
            Err(AuthError::MalformedToken(_))
        ));
        assert!(matches!(
            jose_header("!!.b.c"),
            Err(AuthError::MalformedToken(_))
        ));
        // {"alg":"none"}
        let h = jose_header("eyJhbGciOiJub25lIn0.e30.").unwrap();
        assert_eq!(h.alg.as_deref(), Some("none"));
    }

    #[test]
    fn claims_are_quoted_only_when_plain() {
        for (claim, as_shown) in [
            (
                "https://accounts.google.com",
                "\"https://accounts.google.com\"",
            ),
            (
                "a@b.iam.gserviceaccount.com",
                "\"a@b.iam.gserviceaccount.com\"",
            ),
            ("", "(none)"),
            ("visit <b>evil</b> now", "(not shown: 21 bytes)"),
            ("line\r\nbreak", "(not shown: 11 bytes)"),
        ] {
            assert_eq!(shown(claim), as_shown, "{claim:?}");
        }
        assert!(shown(&"a".repeat(121)).starts_with("(not shown"));
    }

    #[test]
    fn numeric_dates_accept_integers_and_floats() {
        assert_eq!(
            numeric_date(&serde_json::json!(1_550_185_935)),
            Some(1_550_185_935)
        );
        assert_eq!(
            numeric_date(&serde_json::json!(1_550_185_935.7)),
            Some(1_550_185_935)
        );
        assert_eq!(numeric_date(&serde_json::json!("1550185935")), None);
        assert_eq!(numeric_date(&serde_json::json!(1e300)), None);
    }

    #[test]
    fn push_token_comparison() {
        let expected = Secret::new("s3cret");
        let req = |q: &str| IncomingRequest::new("{}", 0).with_query(q);
        assert_eq!(verify_push_token(&req("token=s3cret"), &expected), Ok(()));
        assert_eq!(
            verify_push_token(&req("token=s3cre"), &expected),
            Err(AuthError::BadPushToken)
        );
        assert_eq!(
            verify_push_token(&req("other=1"), &expected),
            Err(AuthError::MissingPushToken)
        );
        assert_eq!(
            verify_push_token(&IncomingRequest::new("{}", 0), &expected),
            Err(AuthError::MissingPushToken)
        );
    }

    mod cache {
        use super::super::*;
        use crate::config::KeySource;
        use jsonwebtoken::{EncodingKey, Header};
        use serde_json::json;
        use std::path::PathBuf;
        use std::sync::atomic::Ordering;

        const NOW_S: i64 = 1_767_225_600;
        const NOW_MS: i64 = NOW_S * 1000;
        const AUDIENCE: &str = "https://storehook.test/v1/notifications/google";
        const EMAIL: &str = "rtdn-push@storehook-test.iam.gserviceaccount.com";

        fn fixture(name: &str) -> PathBuf {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(name)
        }

        fn verifier(jwks: PathBuf) -> OidcVerifier {
            OidcVerifier::new(&OidcSettings {
                audience: AUDIENCE.into(),
                service_account_email: EMAIL.into(),
                key_source: KeySource::File(jwks),
                clock_skew_seconds: 10,
            })
            .unwrap()
        }

        fn claims() -> serde_json::Value {
            json!({"aud": AUDIENCE, "email": EMAIL, "email_verified": true,
                   "exp": NOW_S + 3600, "iat": NOW_S,
                   "iss": "https://accounts.google.com", "sub": "1"})
        }

        fn mint(key_file: &str, kid: &str, claims: &serde_json::Value) -> String {
            let pem = std::fs::read(fixture(key_file)).unwrap();
            let mut header = Header::new(Algorithm::RS256);
            header.kid = Some(kid.into());
            jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_pem(&pem).unwrap())
                .unwrap()
        }

        fn checks(v: &OidcVerifier) -> u64 {
            v.signature_checks.load(Ordering::Relaxed)
        }

        #[tokio::test]
        async fn a_cached_token_is_refused_after_its_exp() {
            let v = verifier(fixture("jwks_key_1.json"));
            let token = mint("oidc_key_1.pem", "test-key-1", &claims());
            v.verify_token(&token, NOW_MS).await.unwrap();
            v.verify_token(&token, NOW_MS + 60_000).await.unwrap();
            assert_eq!((checks(&v), v.verified.len()), (1, 1), "second use hits");
            // exp + skew is the last accepted instant, from the cache too.
            let last = (NOW_S + 3600 + 10) * 1000;
            v.verify_token(&token, last).await.unwrap();
            assert_eq!(checks(&v), 1);
            let err = v.verify_token(&token, last + 1).await.unwrap_err();
            assert!(matches!(err, AuthError::Expired { .. }), "{err:?}");
            // Time claims are checked per request: early use is refused too.
            let err = v.verify_token(&token, NOW_MS - 11_000).await.unwrap_err();
            assert!(matches!(err, AuthError::NotYetValid { .. }), "{err:?}");
        }

        #[tokio::test]
        async fn a_token_whose_key_left_the_set_is_refused() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("jwks.json");
            std::fs::copy(fixture("jwks_keys_1_2.json"), &path).unwrap();
            let v = verifier(path.clone());
            let token_2 = mint("oidc_key_2.pem", "test-key-2", &claims());
            v.verify_token(&token_2, NOW_MS).await.unwrap();
            assert_eq!(v.verified.len(), 1);
            // Key 2 is retired; an unknown kid makes the store re-read the file.
            std::fs::copy(fixture("jwks_key_1.json"), &path).unwrap();
            let token_3 = mint("oidc_key_2.pem", "test-key-3", &claims());
            let err = v.verify_token(&token_3, NOW_MS).await.unwrap_err();
            assert_eq!(err, AuthError::UnknownKey);
            let err = v.verify_token(&token_2, NOW_MS + 1).await.unwrap_err();
            assert_eq!(err, AuthError::UnknownKey);
            assert!(v.verified.is_empty(), "the entry left with its key");
            // Key 2 comes back under its kid: the token verifies afresh.
            std::fs::copy(fixture("jwks_keys_1_2.json"), &path).unwrap();
            let before = checks(&v);
            let later = NOW_MS + 61_000;
            v.verify_token(&token_2, later).await.unwrap();
            assert_eq!(checks(&v), before + 1);
        }

        #[tokio::test]
        async fn an_entry_is_dropped_when_its_kid_names_another_key() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("jwks.json");
            std::fs::copy(fixture("jwks_key_1.json"), &path).unwrap();
            let v = verifier(path.clone());
            let token = mint("oidc_key_1.pem", "test-key-1", &claims());
            v.verify_token(&token, NOW_MS).await.unwrap();
            // The set now publishes key 2's material under kid test-key-1.
            let mut doc: serde_json::Value =
                serde_json::from_slice(&std::fs::read(fixture("jwks_keys_1_2.json")).unwrap())
                    .unwrap();
            let keys = doc["keys"].as_array_mut().unwrap();
            keys.retain(|k| k["kid"] == "test-key-2");
            keys[0]["kid"] = json!("test-key-1");
            std::fs::write(&path, doc.to_string()).unwrap();
            let other = mint("oidc_key_2.pem", "unknown-kid", &claims());
            assert_eq!(
                v.verify_token(&other, NOW_MS).await,
                Err(AuthError::UnknownKey)
            );
            let err = v.verify_token(&token, NOW_MS).await.unwrap_err();
            assert_eq!(err, AuthError::BadSignature);
            assert!(v.verified.is_empty());
        }

        #[tokio::test]
        async fn a_different_token_with_the_same_claims_is_verified_afresh() {
            let v = verifier(fixture("jwks_keys_1_2.json"));
            let token_1 = mint("oidc_key_1.pem", "test-key-1", &claims());
            let token_2 = mint("oidc_key_2.pem", "test-key-2", &claims());
            v.verify_token(&token_1, NOW_MS).await.unwrap();
            v.verify_token(&token_2, NOW_MS).await.unwrap();
            assert_eq!((checks(&v), v.verified.len()), (2, 2));
            // Same header and claims as token 1, signed by key 2: refused.
            let (message, _) = token_1.rsplit_once('.').unwrap();
            let (_, foreign_signature) = token_2.rsplit_once('.').unwrap();
            let forged = format!("{message}.{foreign_signature}");
            assert_eq!(
                v.verify_token(&forged, NOW_MS).await,
                Err(AuthError::BadSignature)
            );
            assert_eq!(checks(&v), 3);
        }

        #[tokio::test]
        async fn a_tampered_token_never_hits_the_cache() {
            let v = verifier(fixture("jwks_key_1.json"));
            let token = mint("oidc_key_1.pem", "test-key-1", &claims());
            v.verify_token(&token, NOW_MS).await.unwrap();
            let (message, signature) = token.rsplit_once('.').unwrap();
            let mut sig = LENIENT_URL_SAFE.decode(signature).unwrap();
            sig[10] ^= 0x40;
            let tampered_signature = format!(
                "{message}.{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&sig)
            );
            let mut claims_changed = claims();
            claims_changed["sub"] = json!("2");
            let (header, _) = message.split_once('.').unwrap();
            let tampered_claims = format!(
                "{header}.{}.{signature}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims_changed.to_string())
            );
            for tampered in [tampered_signature, tampered_claims] {
                let before = checks(&v);
                assert_eq!(
                    v.verify_token(&tampered, NOW_MS).await,
                    Err(AuthError::BadSignature)
                );
                assert_eq!(checks(&v), before + 1);
            }
            assert_eq!(v.verified.len(), 1);
            v.verify_token(&token, NOW_MS).await.unwrap();
            assert_eq!(checks(&v), 3);
        }
    }

    #[test]
    fn key_outage_is_a_503_and_the_rest_401() {
        let e: AdapterError = AuthError::KeysUnavailable("down".into()).into();
        assert_eq!(e.http_status(), 503);
        let e: AdapterError = AuthError::BadSignature.into();
        assert_eq!((e.http_status(), e.code()), (401, "bad_signature"));
    }
}
