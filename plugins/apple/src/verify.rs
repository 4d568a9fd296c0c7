//! Verification of one App Store JWS (a `signedPayload`, a
//! `signedTransactionInfo`, …), step for step as Apple's Python library
//! (`SignedDataVerifier._decode_signed_object` with online checks off), with
//! the same status for every failure.
//!
//! Where PyJWT is lenient about base64url (stray characters, padding,
//! non-zero trailing bits) this verifier is strict: Apple never emits such
//! encodings, and accepting them would let a changed body verify.

use std::sync::{Arc, RwLock};

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, PAD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use serde_json::{Map, Value};

use crate::chain::{ChainError, ChainVerifier, VerifiedChain};

/// Apple's `VerificationStatus` names, used as error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VerificationStatus {
    VerificationFailure,
    InvalidAppIdentifier,
    InvalidCertificate,
    InvalidChainLength,
    InvalidEnvironment,
}

impl VerificationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            VerificationStatus::VerificationFailure => "VERIFICATION_FAILURE",
            VerificationStatus::InvalidAppIdentifier => "INVALID_APP_IDENTIFIER",
            VerificationStatus::InvalidCertificate => "INVALID_CERTIFICATE",
            VerificationStatus::InvalidChainLength => "INVALID_CHAIN_LENGTH",
            VerificationStatus::InvalidEnvironment => "INVALID_ENVIRONMENT",
        }
    }
}

impl std::fmt::Display for VerificationStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: Apple's status and a human explanation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {reason}")]
pub struct VerificationError {
    pub status: VerificationStatus,
    pub reason: String,
}

impl VerificationError {
    pub fn new(status: VerificationStatus, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
        }
    }

    fn failure(reason: impl Into<String>) -> Self {
        Self::new(VerificationStatus::VerificationFailure, reason)
    }
}

impl From<ChainError> for VerificationError {
    fn from(e: ChainError) -> Self {
        match e {
            ChainError::Unparsable(reason) => {
                Self::new(VerificationStatus::InvalidCertificate, reason)
            }
            ChainError::Invalid(reason) => Self::failure(reason),
        }
    }
}

/// `x5c` entries: standard base64 with padding, as Python's
/// `b64decode(validate=True)` takes them (which ignores non-zero trailing bits).
const X5C_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    PAD.with_decode_allow_trailing_bits(true),
);

/// How many JWS headers that led to a verified signature are remembered.
const HEADER_MEMO_CAPACITY: usize = 16;

/// Verifies App Store JWS against pinned roots. Cheap to share: the caches
/// are behind locks held only for a lookup.
pub struct SignedDataVerifier {
    chains: ChainVerifier,
    /// Header segments (exact base64url text) whose JWS verified, with their
    /// chain: Apple signs every notification and its nested JWS with the same
    /// header, so a repeat skips decoding the header and its certificates.
    /// Only a verified signature adds an entry, so forged requests cannot
    /// evict genuine ones.
    verified_headers: RwLock<Vec<(Box<str>, Arc<VerifiedChain>)>>,
}

impl SignedDataVerifier {
    /// `roots`: the pinned root certificates (DER), each known to parse.
    pub fn new(roots: Vec<Vec<u8>>) -> Self {
        Self {
            chains: ChainVerifier::new(roots),
            verified_headers: RwLock::new(Vec::new()),
        }
    }

    pub fn chain_verifier(&self) -> &ChainVerifier {
        &self.chains
    }

    /// Verifies one JWS and returns its payload. `now_ms` stands for the
    /// current time: certificate validity when the payload has no
    /// `signedDate`, and PyJWT's `exp`/`nbf`/`iat` checks.
    ///
    /// Apple's library decodes the payload first (its `signedDate` picks the
    /// instant the certificates must be valid at). Here the payload stays
    /// raw bytes until the signature over them verified: the header and its
    /// chain (small, and remembered once genuine), then ES256 over the
    /// signing input as sent, and only then base64 (strictly: a re-encoded
    /// payload is refused even when signed) and JSON, so that a forged body
    /// costs no parsing. Each failure has Apple's status; only a JWS wrong
    /// in several ways at once may be refused for another of its faults
    /// than the one Apple's library would name first.
    pub fn verify_signed_object(
        &self,
        jws: &str,
        now_ms: i64,
    ) -> Result<Map<String, Value>, VerificationError> {
        let mut parts = jws.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(VerificationError::failure(
                "not a JWS in compact form (three base64url parts separated by dots)",
            ));
        };

        let remembered = self.remembered_header(header_b64);
        let was_remembered = remembered.is_some();
        let chain = match remembered {
            Some(chain) => chain,
            None => {
                let header = decode_header(header_b64)?;
                let x5c = check_header(&header)?;
                self.verify_chain_path(x5c)?
            }
        };

        let key = chain.leaf_p256_key().ok_or_else(|| {
            VerificationError::failure("the leaf certificate's key is not a P-256 key (ES256)")
        })?;
        let signature = decode_segment(signature_b64, "signature")?;
        let signing_input = &jws.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key)
            .verify(signing_input, &signature)
            .map_err(|_| {
                VerificationError::failure("the ES256 signature does not verify with the leaf key")
            })?;

        // Signed by the leaf: the payload is Apple's from here on.
        let payload = decode_segment(payload_b64, "payload")?;
        let payload = match serde_json::from_slice::<Value>(&payload) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Err(VerificationError::failure(
                    "the payload is not a JSON object",
                ))
            }
            Err(e) => {
                return Err(VerificationError::failure(format!(
                    "the payload is not JSON: {e}"
                )))
            }
        };
        chain.check_valid_at(effective_date(&payload, now_ms)?)?;
        check_registered_claims(&payload, now_ms as f64 / 1000.0)
            .map_err(VerificationError::failure)?;

        if !was_remembered {
            self.remember_header(header_b64, chain);
        }
        Ok(payload)
    }

    /// Apple's `_ChainVerifier.verify_chain` (offline): `x5c` must hold
    /// exactly 3 certificates; the leaf and intermediate (x5c[2] is never
    /// used) must chain to a pinned root, carry Apple's OIDs and be valid at
    /// `effective_date` (Unix seconds). Returns the verified chain.
    pub fn verify_chain(
        &self,
        x5c: &Value,
        effective_date: i64,
    ) -> Result<Arc<VerifiedChain>, VerificationError> {
        let chain = self.verify_chain_path(x5c)?;
        chain.check_valid_at(effective_date)?;
        Ok(chain)
    }

    /// [`Self::verify_chain`] without the dates, which the payload gives.
    fn verify_chain_path(&self, x5c: &Value) -> Result<Arc<VerifiedChain>, VerificationError> {
        let chain_length = python_len(x5c).unwrap_or(0);
        if chain_length != 3 {
            return Err(VerificationError::new(
                VerificationStatus::InvalidChainLength,
                format!("x5c holds {chain_length} certificates, not 3"),
            ));
        }
        let Value::Array(certificates) = x5c else {
            return Err(VerificationError::new(
                VerificationStatus::InvalidCertificate,
                "x5c is not a list of certificates",
            ));
        };
        let leaf = decode_x5c_entry(certificates.first(), "leaf")?;
        let intermediate = decode_x5c_entry(certificates.get(1), "intermediate")?;
        Ok(self.chains.verify(&leaf, &intermediate)?)
    }

    fn remembered_header(&self, header_b64: &str) -> Option<Arc<VerifiedChain>> {
        let memo = self
            .verified_headers
            .read()
            .unwrap_or_else(|e| e.into_inner());
        memo.iter()
            .find(|(h, _)| **h == *header_b64)
            .map(|(_, chain)| chain.clone())
    }

    fn remember_header(&self, header_b64: &str, chain: Arc<VerifiedChain>) {
        let mut memo = self
            .verified_headers
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if memo.iter().any(|(h, _)| **h == *header_b64) {
            return;
        }
        if memo.len() >= HEADER_MEMO_CAPACITY {
            memo.remove(0);
        }
        memo.push((header_b64.into(), chain));
    }
}

/// The header checks that need no certificate, in Apple's order; returns
/// the header's `x5c`.
fn check_header(header: &Map<String, Value>) -> Result<&Value, VerificationError> {
    if let Some(kid) = header.get("kid") {
        if !kid.is_string() {
            return Err(VerificationError::failure(
                "the header's kid is not a string",
            ));
        }
    }
    if header.get("b64") == Some(&Value::Bool(false)) {
        return Err(VerificationError::failure(
            "the header declares a detached payload (b64: false)",
        ));
    }
    let Some(x5c) = header.get("x5c").filter(|v| !v.is_null()) else {
        return Err(VerificationError::failure("the header has no x5c"));
    };
    match python_len(x5c) {
        None => return Err(VerificationError::failure("the header's x5c is not a list")),
        Some(0) => return Err(VerificationError::failure("the header's x5c is empty")),
        Some(_) => {}
    }
    if header.get("alg").and_then(Value::as_str) != Some("ES256") {
        return Err(VerificationError::failure("the header's alg is not ES256"));
    }
    Ok(x5c)
}

fn decode_segment(segment: &str, what: &str) -> Result<Vec<u8>, VerificationError> {
    URL_SAFE_NO_PAD.decode(segment).map_err(|e| {
        VerificationError::failure(format!("the JWS {what} is not valid base64url: {e}"))
    })
}

fn decode_header(header_b64: &str) -> Result<Map<String, Value>, VerificationError> {
    let bytes = decode_segment(header_b64, "header")?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(VerificationError::failure(
            "the JWS header is not a JSON object",
        )),
        Err(e) => Err(VerificationError::failure(format!(
            "the JWS header is not JSON: {e}"
        ))),
    }
}

fn decode_x5c_entry(entry: Option<&Value>, what: &str) -> Result<Vec<u8>, VerificationError> {
    let text = entry.and_then(Value::as_str).ok_or_else(|| {
        VerificationError::new(
            VerificationStatus::InvalidCertificate,
            format!("the {what} certificate in x5c is not a string"),
        )
    })?;
    X5C_BASE64.decode(text).map_err(|e| {
        VerificationError::new(
            VerificationStatus::InvalidCertificate,
            format!("the {what} certificate in x5c is not valid base64: {e}"),
        )
    })
}

/// Python's `len()` of a JSON value (`None` where Python raises TypeError).
fn python_len(value: &Value) -> Option<usize> {
    match value {
        Value::Array(a) => Some(a.len()),
        Value::String(s) => Some(s.chars().count()),
        Value::Object(o) => Some(o.len()),
        Value::Null | Value::Bool(_) | Value::Number(_) => None,
    }
}

/// The instant certificates are checked at, in Unix seconds: the payload's
/// `signedDate` (else `receiptCreationDate`), else now — Python's
/// `int(signed_date) // 1000`.
fn effective_date(payload: &Map<String, Value>, now_ms: i64) -> Result<i64, VerificationError> {
    let date = payload
        .get("signedDate")
        .filter(|v| !v.is_null())
        .or_else(|| payload.get("receiptCreationDate").filter(|v| !v.is_null()));
    let ms = match date {
        None => i128::from(now_ms),
        Some(v) => python_int(v).ok_or_else(|| {
            VerificationError::failure("the payload's signedDate is not a number")
        })?,
    };
    let secs = ms.div_euclid(1000);
    Ok(i64::try_from(secs).unwrap_or(if secs < 0 { i64::MIN } else { i64::MAX }))
}

/// Python's `int(value)` for a JSON value, `None` where it raises.
pub(crate) fn python_int(value: &Value) -> Option<i128> {
    match value {
        Value::Bool(b) => Some(i128::from(*b)),
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite())
                    .map(|f| f.trunc() as i128)
            }),
        Value::String(s) => python_int_str(s),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// Python's `int(str)`: surrounding whitespace, a sign, decimal digits with
/// single underscores between them.
fn python_int_str(s: &str) -> Option<i128> {
    let t = s.trim();
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'_')
    {
        return None;
    }
    let mut value: i128 = 0;
    for b in digits.bytes().filter(u8::is_ascii_digit) {
        value = value
            .saturating_mul(10)
            .saturating_add(i128::from(b - b'0'));
    }
    Some(if negative { -value } else { value })
}

/// Python truthiness of a JSON value.
pub(crate) fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// The registered-claim checks PyJWT (2.10) runs in `jwt.decode` with a key:
/// Apple's payloads carry none of these claims, but a payload that did would
/// be refused by the official library.
fn check_registered_claims(payload: &Map<String, Value>, now: f64) -> Result<(), String> {
    if let Some(iat) = payload.get("iat") {
        let iat = python_int(iat).ok_or("the iat claim is not an integer")?;
        if iat as f64 > now {
            return Err("the iat claim is in the future".into());
        }
    }
    if let Some(nbf) = payload.get("nbf") {
        let nbf = python_int(nbf).ok_or("the nbf claim is not an integer")?;
        if nbf as f64 > now {
            return Err("the payload is not valid yet (nbf)".into());
        }
    }
    if let Some(exp) = payload.get("exp") {
        let exp = python_int(exp).ok_or("the exp claim is not an integer")?;
        if exp as f64 <= now {
            return Err("the payload has expired (exp)".into());
        }
    }
    if payload.get("aud").is_some_and(truthy) {
        return Err("the payload has an audience (aud) and none is expected".into());
    }
    for claim in ["sub", "jti"] {
        if payload.get(claim).is_some_and(|v| !v.is_string()) {
            return Err(format!("the {claim} claim is not a string"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_int_follows_python() {
        assert_eq!(python_int(&json!(12)), Some(12));
        assert_eq!(python_int(&json!(12.9)), Some(12));
        assert_eq!(python_int(&json!(-12.9)), Some(-12));
        assert_eq!(python_int(&json!(true)), Some(1));
        assert_eq!(python_int(&json!(" 1_000 ")), Some(1000));
        assert_eq!(python_int(&json!("-5")), Some(-5));
        assert_eq!(python_int(&json!("1__0")), None);
        assert_eq!(python_int(&json!("1.5")), None);
        assert_eq!(python_int(&json!("")), None);
        assert_eq!(python_int(&json!([])), None);
        assert_eq!(python_int(&json!(null)), None);
        assert_eq!(python_int(&json!(u64::MAX)), Some(i128::from(u64::MAX)));
    }

    #[test]
    fn effective_date_prefers_signed_date_then_receipt_creation_then_now() {
        let p = |v: Value| v.as_object().cloned().unwrap();
        assert_eq!(effective_date(&p(json!({"signedDate": 1999})), 0), Ok(1));
        assert_eq!(
            effective_date(
                &p(json!({"signedDate": null, "receiptCreationDate": 5000})),
                0
            ),
            Ok(5)
        );
        assert_eq!(effective_date(&p(json!({})), 7_999), Ok(7));
        assert_eq!(effective_date(&p(json!({"signedDate": -1})), 0), Ok(-1));
        assert!(effective_date(&p(json!({"signedDate": "soon"})), 0).is_err());
        assert_eq!(
            effective_date(&p(json!({"signedDate": 1e300})), 0),
            Ok(i64::MAX)
        );
    }

    #[test]
    fn registered_claims_follow_pyjwt() {
        let p = |v: Value| v.as_object().cloned().unwrap();
        let now = 1000.0;
        assert!(
            check_registered_claims(&p(json!({"iat": 999, "exp": 1001, "nbf": 1000})), now).is_ok()
        );
        assert!(check_registered_claims(&p(json!({"iat": 1001})), now).is_err());
        assert!(check_registered_claims(&p(json!({"exp": 1000})), now).is_err());
        assert!(check_registered_claims(&p(json!({"nbf": 1001})), now).is_err());
        assert!(check_registered_claims(&p(json!({"aud": "x"})), now).is_err());
        assert!(check_registered_claims(&p(json!({"aud": ""})), now).is_ok());
        assert!(check_registered_claims(&p(json!({"sub": 5})), now).is_err());
        assert!(check_registered_claims(&p(json!({"exp": "never"})), now).is_err());
    }

    #[test]
    fn python_len_of_json() {
        assert_eq!(python_len(&json!("abc")), Some(3));
        assert_eq!(python_len(&json!({"a": 1})), Some(1));
        assert_eq!(python_len(&json!(5)), None);
    }

    #[test]
    fn x5c_base64_takes_what_python_takes() {
        assert_eq!(X5C_BASE64.decode("QUJD").unwrap(), b"ABC");
        assert_eq!(X5C_BASE64.decode("QR==").unwrap(), b"A"); // non-zero trailing bits
        assert!(X5C_BASE64.decode("QQ").is_err()); // missing padding
        assert!(X5C_BASE64.decode("Q-==").is_err()); // base64url alphabet
        assert!(X5C_BASE64.decode("abc").is_err());
    }
}
