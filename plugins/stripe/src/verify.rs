//! The `Stripe-Signature` scheme, checked over the raw body before anything
//! parses it:
//!
//! ```text
//! Stripe-Signature: t=1492774577,v1=5257a869…,v1=<second secret's>,v0=6ffbb59b…
//! v1 = lowercase hex(HMAC-SHA256(key = "whsec_…" as bytes, msg = "<t>." + raw body))
//! ```
//!
//! The secret is used as its literal bytes (as Stripe's libraries do), not
//! base64-decoded as in Standard Webhooks. Every `v1` counts (Stripe signs
//! with each active secret while one is being rolled); `v0` and unknown
//! schemes are ignored so that a downgraded header cannot pass. Only
//! lower-case hex is accepted, as Stripe sends it and as its Python and Node
//! libraries compare it.

use ring::hmac;
use subtle::ConstantTimeEq;

/// Stripe's libraries' default (`construct_event` in python, node and go).
pub const DEFAULT_TOLERANCE_SECONDS: u64 = 300;

/// The most `v1` signatures checked per request. Stripe sends one per active
/// secret (two while rolling); a cap keeps a forged header listing thousands
/// from costing an HMAC over the body each.
pub const MAX_V1_SIGNATURES: usize = 8;

const SIGNATURE_HEX_LEN: usize = 64;

/// Why a `Stripe-Signature` check failed. `code()` is the rejection reason
/// the host records; the message never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing or empty")]
    MissingHeader,
    #[error("the Stripe-Signature header is malformed: {0}")]
    MalformedHeader(&'static str),
    #[error("the Stripe-Signature header has no v1 signature (v0 and other schemes are ignored)")]
    NoV1Signature,
    #[error("no v1 signature matches a configured signing secret")]
    NoMatchingSignature,
    #[error(
        "the signature timestamp is {age_seconds} s old, beyond the tolerance of {tolerance_seconds} s \
         (a replay, or a clock out of sync)"
    )]
    TimestampOutsideTolerance {
        age_seconds: i64,
        tolerance_seconds: u64,
    },
}

impl SignatureError {
    /// The stable machine-readable code (the corpus's `expect` values).
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::MissingHeader => "missing_header",
            SignatureError::MalformedHeader(_) => "malformed_header",
            SignatureError::NoV1Signature => "no_v1_signature",
            SignatureError::NoMatchingSignature => "no_matching_signature",
            SignatureError::TimestampOutsideTolerance { .. } => "timestamp_outside_tolerance",
        }
    }
}

/// A parsed `Stripe-Signature` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader<'a> {
    /// `t`, Unix seconds.
    pub timestamp: i64,
    /// Every `v1` value, in order, as written.
    pub v1_signatures: Vec<&'a str>,
}

/// Splits the header on `,` and each element on its first `=`, as Stripe's
/// libraries do: `t` must be a non-negative integer and appear once, `v1`
/// may repeat, anything else (`v0`, future schemes) is ignored. An element
/// without `=` makes the header malformed.
pub fn parse_signature_header(value: &str) -> Result<SignatureHeader<'_>, SignatureError> {
    if value.trim().is_empty() {
        return Err(SignatureError::MissingHeader);
    }
    let mut timestamp = None;
    let mut v1_signatures = Vec::new();
    for element in value.split(',') {
        let Some((key, val)) = element.split_once('=') else {
            return Err(SignatureError::MalformedHeader("an element has no '='"));
        };
        match key {
            "t" => {
                if timestamp.is_some() {
                    return Err(SignatureError::MalformedHeader("more than one timestamp"));
                }
                timestamp = Some(parse_timestamp(val)?);
            }
            "v1" => v1_signatures.push(val),
            _ => {}
        }
    }
    let Some(timestamp) = timestamp else {
        return Err(SignatureError::MalformedHeader("no timestamp (t=)"));
    };
    if v1_signatures.is_empty() {
        return Err(SignatureError::NoV1Signature);
    }
    Ok(SignatureHeader {
        timestamp,
        v1_signatures,
    })
}

fn parse_timestamp(text: &str) -> Result<i64, SignatureError> {
    // Digits only: no sign, no spaces; 18 digits keep it inside i64.
    if text.is_empty() || text.len() > 18 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::MalformedHeader(
            "the timestamp is not a Unix time in seconds",
        ));
    }
    text.parse::<i64>()
        .map_err(|_| SignatureError::MalformedHeader("the timestamp is not a Unix time in seconds"))
}

/// The endpoint's signing secrets as HMAC keys. `Debug` shows only how many.
#[derive(Clone)]
pub struct SigningKeys {
    keys: Vec<hmac::Key>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKeys({} keys)", self.keys.len())
    }
}

impl SigningKeys {
    /// Each secret is used as its literal bytes (`whsec_…` included).
    pub fn new<S: AsRef<[u8]>>(secrets: impl IntoIterator<Item = S>) -> Self {
        SigningKeys {
            keys: secrets
                .into_iter()
                .map(|s| hmac::Key::new(hmac::HMAC_SHA256, s.as_ref()))
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Checks a `Stripe-Signature` header (`None`: absent) against the raw body:
/// some `v1` must be the HMAC of `"<t>." + body` under some configured
/// secret (compared in constant time), and, when
/// `tolerance_seconds` is not 0, `t` must be at most that many seconds older
/// than `now_unix`. Like Stripe's libraries, a timestamp in the future is
/// not refused (only the secret's holder can sign one), and the signature is
/// checked before the age, so a stale-timestamp rejection always concerns a
/// genuine signature.
///
/// Returns the signed timestamp.
pub fn verify_signed_payload(
    header: Option<&str>,
    body: &[u8],
    keys: &SigningKeys,
    tolerance_seconds: u64,
    now_unix: i64,
) -> Result<i64, SignatureError> {
    let header = parse_signature_header(header.ok_or(SignatureError::MissingHeader)?)?;

    // Only well-formed lower-case hex can be an HMAC Stripe produced; the
    // rest (`bad_signature`, `potato`, upper case) is skipped, not an error.
    let candidates: Vec<[u8; 32]> = header
        .v1_signatures
        .iter()
        .filter_map(|sig| decode_lowercase_hex_signature(sig))
        .take(MAX_V1_SIGNATURES)
        .collect();
    if candidates.is_empty() {
        return Err(SignatureError::NoMatchingSignature);
    }

    // One HMAC over the body per secret (not per candidate), each candidate
    // then compared with it in constant time; every comparison runs, so the
    // time taken does not say which candidate came close.
    let mut matched = subtle::Choice::from(0);
    for key in &keys.keys {
        let tag = sign(key, header.timestamp, body);
        for candidate in &candidates {
            matched |= tag.as_ref().ct_eq(candidate.as_slice());
        }
    }
    let matched = bool::from(matched);
    if !matched {
        return Err(SignatureError::NoMatchingSignature);
    }

    if tolerance_seconds > 0 {
        let age_seconds = now_unix.saturating_sub(header.timestamp);
        let tolerance = i64::try_from(tolerance_seconds).unwrap_or(i64::MAX);
        if age_seconds > tolerance {
            return Err(SignatureError::TimestampOutsideTolerance {
                age_seconds,
                tolerance_seconds,
            });
        }
    }
    Ok(header.timestamp)
}

/// HMAC-SHA256 of `"<t>." + body`, the bytes Stripe signs, fed in pieces
/// rather than copied together.
fn sign(key: &hmac::Key, timestamp: i64, body: &[u8]) -> hmac::Tag {
    let mut context = hmac::Context::with_key(key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    context.sign()
}

fn decode_lowercase_hex_signature(sig: &str) -> Option<[u8; 32]> {
    if sig.len() != SIGNATURE_HEX_LEN
        || !sig.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(sig, &mut out).ok()?;
    Some(out)
}

/// The `v1` value Stripe would send for `body` signed at `timestamp` with
/// `secret`: for tests, benchmarks and tools that play Stripe.
pub fn compute_v1_signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hex::encode(sign(&key, timestamp, body).as_ref())
}

/// A complete `Stripe-Signature` value (`t=…,v1=…`, one `v1` per secret).
pub fn signature_header<S: AsRef<[u8]>>(
    secrets: impl IntoIterator<Item = S>,
    timestamp: i64,
    body: &[u8],
) -> String {
    let mut header = format!("t={timestamp}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&compute_v1_signature(secret.as_ref(), timestamp, body));
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";
    const BODY: &[u8] = b"{\"id\":\"evt_1\",\"object\":\"event\"}";
    const NOW: i64 = 1_750_000_000;

    fn keys() -> SigningKeys {
        SigningKeys::new([SECRET])
    }

    fn check(header: &str, tolerance: u64) -> Result<i64, SignatureError> {
        verify_signed_payload(Some(header), BODY, &keys(), tolerance, NOW)
    }

    #[test]
    fn parses_every_v1_and_ignores_other_schemes() {
        let h = parse_signature_header("t=12,v1=aa,v0=bb,v2=cc,v1=dd").expect("parses");
        assert_eq!(h.timestamp, 12);
        assert_eq!(h.v1_signatures, vec!["aa", "dd"]);
        // The first '=' splits: a value may contain '='.
        let h = parse_signature_header("t=12,v1=a=b").expect("parses");
        assert_eq!(h.v1_signatures, vec!["a=b"]);
    }

    #[test]
    fn header_shapes() {
        use SignatureError::*;
        assert_eq!(parse_signature_header(""), Err(MissingHeader));
        assert_eq!(parse_signature_header("  "), Err(MissingHeader));
        for bad in [
            "bad_header",
            "v1,t=1",
            "t=",
            "t=abc,v1=aa",
            "t=-5,v1=aa",
            "t=+5,v1=aa",
            "t= 5,v1=aa",
            "t=1,t=2,v1=aa",
            "t=1,v1=aa,",
            "v1=aa",
            "t=1234567890123456789,v1=aa",
        ] {
            assert_eq!(
                parse_signature_header(bad).map_err(|e| e.code()),
                Err("malformed_header"),
                "{bad}"
            );
        }
        assert_eq!(parse_signature_header("t=1,v0=aa"), Err(NoV1Signature));
        assert_eq!(parse_signature_header("t=1"), Err(NoV1Signature));
    }

    #[test]
    fn accepts_a_matching_signature_among_others() {
        let good = compute_v1_signature(SECRET.as_bytes(), NOW, BODY);
        assert_eq!(check(&format!("t={NOW},v1={good}"), 300), Ok(NOW));
        assert_eq!(
            check(&format!("t={NOW},v1={},v1={good}", "0".repeat(64)), 300),
            Ok(NOW)
        );
        assert_eq!(check(&format!("t={NOW},v1=potato,v1={good}"), 300), Ok(NOW));
    }

    #[test]
    fn refuses_v0_even_when_correct() {
        let good = compute_v1_signature(SECRET.as_bytes(), NOW, BODY);
        assert_eq!(
            check(&format!("t={NOW},v0={good}"), 300),
            Err(SignatureError::NoV1Signature)
        );
    }

    #[test]
    fn refuses_upper_case_and_other_bytes() {
        let good = compute_v1_signature(SECRET.as_bytes(), NOW, BODY);
        let upper = good.to_ascii_uppercase();
        assert_eq!(
            check(&format!("t={NOW},v1={upper}"), 300),
            Err(SignatureError::NoMatchingSignature)
        );
        let other = compute_v1_signature(SECRET.as_bytes(), NOW, b"{}");
        assert_eq!(
            check(&format!("t={NOW},v1={other}"), 300),
            Err(SignatureError::NoMatchingSignature)
        );
        let other_t = compute_v1_signature(SECRET.as_bytes(), NOW - 1, BODY);
        assert_eq!(
            check(&format!("t={NOW},v1={other_t}"), 300),
            Err(SignatureError::NoMatchingSignature)
        );
    }

    #[test]
    fn tolerance_only_limits_age() {
        let t = NOW - 301;
        let sig = compute_v1_signature(SECRET.as_bytes(), t, BODY);
        let err = check(&format!("t={t},v1={sig}"), 300).unwrap_err();
        assert_eq!(err.code(), "timestamp_outside_tolerance");
        assert!(err.to_string().contains("301"), "{err}");
        assert_eq!(check(&format!("t={t},v1={sig}"), 0), Ok(t));
        let t = NOW - 300;
        let sig = compute_v1_signature(SECRET.as_bytes(), t, BODY);
        assert_eq!(check(&format!("t={t},v1={sig}"), 300), Ok(t));
        let t = NOW + 3600;
        let sig = compute_v1_signature(SECRET.as_bytes(), t, BODY);
        assert_eq!(check(&format!("t={t},v1={sig}"), 300), Ok(t));
    }

    #[test]
    fn huge_tolerance_and_extreme_clocks_do_not_overflow() {
        let t = 0;
        let sig = compute_v1_signature(SECRET.as_bytes(), t, BODY);
        let header = format!("t={t},v1={sig}");
        assert_eq!(
            verify_signed_payload(Some(&header), BODY, &keys(), u64::MAX, i64::MAX),
            Ok(0)
        );
        assert!(verify_signed_payload(Some(&header), BODY, &keys(), 1, i64::MIN).is_ok());
    }

    #[test]
    fn any_configured_secret_may_match() {
        let keys = SigningKeys::new(["whsec_old", "whsec_new"]);
        for secret in ["whsec_old", "whsec_new"] {
            let header = signature_header([secret], NOW, BODY);
            assert_eq!(
                verify_signed_payload(Some(&header), BODY, &keys, 300, NOW),
                Ok(NOW)
            );
        }
        let header = signature_header(["whsec_other"], NOW, BODY);
        assert_eq!(
            verify_signed_payload(Some(&header), BODY, &keys, 300, NOW),
            Err(SignatureError::NoMatchingSignature)
        );
    }

    #[test]
    fn signatures_beyond_the_cap_are_not_checked() {
        let good = compute_v1_signature(SECRET.as_bytes(), NOW, BODY);
        let mut header = format!("t={NOW}");
        for _ in 0..MAX_V1_SIGNATURES {
            header.push_str(&format!(",v1={}", "0".repeat(64)));
        }
        header.push_str(&format!(",v1={good}"));
        assert_eq!(
            check(&header, 300),
            Err(SignatureError::NoMatchingSignature)
        );
    }

    #[test]
    fn missing_header() {
        assert_eq!(
            verify_signed_payload(None, BODY, &keys(), 300, NOW),
            Err(SignatureError::MissingHeader)
        );
    }

    #[test]
    fn debug_hides_keys() {
        assert_eq!(format!("{:?}", keys()), "SigningKeys(1 keys)");
    }
}
