//! Certificate path validation for the `x5c` header of Apple's JWS:
//! leaf → intermediate → a pinned root, as Apple's Python library does it
//! with OpenSSL (`X509Store`, online checks off, strict mode off as in Apple's
//! own tests).
//!
//! The work splits in two: everything that does not depend on the date
//! (parsing, signatures, names, CA flags, critical extensions, Apple's OIDs)
//! is done once per distinct leaf+intermediate and cached as a
//! [`VerifiedChain`]; the validity windows are checked against every
//! payload's own date.

use std::sync::{Arc, RwLock};

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;
use x509_parser::time::ASN1Time;

/// Receipt-signing leaf marker (`1.2.840.113635.100.6.11.1`).
pub const LEAF_OID: &str = "1.2.840.113635.100.6.11.1";
/// Apple WWDR intermediate marker (`1.2.840.113635.100.6.2.1`).
pub const INTERMEDIATE_OID: &str = "1.2.840.113635.100.6.2.1";

/// How many distinct verified chains are kept. Apple signs with one leaf at a
/// time (a new one every ~2 years) and entries only exist for chains that
/// verified up to a pinned root, so this is never reached in practice.
const CACHE_CAPACITY: usize = 32;

/// Extensions OpenSSL 3 knows how to enforce; any other extension marked
/// critical makes it refuse the certificate (`X509_supported_extension`).
const SUPPORTED_CRITICAL: &[&str] = &[
    "2.16.840.1.113730.1.1", // netscape cert type
    "2.5.29.15",             // key usage
    "2.5.29.17",             // subject alt name
    "2.5.29.19",             // basic constraints
    "2.5.29.32",             // certificate policies
    "2.5.29.31",             // CRL distribution points
    "2.5.29.37",             // extended key usage
    "1.3.6.1.5.5.7.1.7",     // IP address blocks
    "1.3.6.1.5.5.7.1.8",     // AS identifiers
    "1.3.6.1.5.5.7.48.1.5",  // OCSP no check
    "2.5.29.36",             // policy constraints
    "1.3.6.1.5.5.7.1.14",    // proxy cert info
    "2.5.29.30",             // name constraints
    "2.5.29.33",             // policy mappings
    "2.5.29.54",             // inhibit any policy
];

/// basicConstraints, keyUsage, subjectKeyIdentifier, authorityKeyIdentifier.
const PATH_EXTENSIONS: &[&str] = &["2.5.29.19", "2.5.29.15", "2.5.29.14", "2.5.29.35"];

/// Why a chain was refused. `Unparsable` is Apple's `INVALID_CERTIFICATE`;
/// `Invalid` is its `VERIFICATION_FAILURE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainError {
    Unparsable(String),
    Invalid(String),
}

/// The validity window, in Unix seconds, during which a chain holds:
/// `not_before <= t < not_after` (OpenSSL's comparison).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub not_before: i64,
    pub not_after: i64,
}

impl Window {
    fn contains(&self, t: i64) -> bool {
        self.not_before <= t && t < self.not_after
    }

    fn intersect(self, other: Window) -> Window {
        Window {
            not_before: self.not_before.max(other.not_before),
            not_after: self.not_after.min(other.not_after),
        }
    }
}

/// A leaf+intermediate that chains to a pinned root, with everything that
/// does not depend on the date already checked.
#[derive(Debug)]
pub struct VerifiedChain {
    /// One window per pinned root the intermediate chains to (normally one).
    windows: Vec<Window>,
    /// The leaf's uncompressed P-256 point, if its key is P-256 (the only key
    /// ES256 can verify with).
    leaf_p256_key: Option<Box<[u8]>>,
}

impl VerifiedChain {
    /// Checks the validity of leaf, intermediate and root at `t` (Unix
    /// seconds).
    pub fn check_valid_at(&self, t: i64) -> Result<(), ChainError> {
        if self.windows.iter().any(|w| w.contains(t)) {
            return Ok(());
        }
        let described = self
            .windows
            .iter()
            .map(|w| {
                format!(
                    "{} to {}",
                    format_time(w.not_before),
                    format_time(w.not_after)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        Err(ChainError::Invalid(format!(
            "certificate chain is not valid at {} (it is valid from {described})",
            format_time(t)
        )))
    }

    pub fn leaf_p256_key(&self) -> Option<&[u8]> {
        self.leaf_p256_key.as_deref()
    }
}

/// Formats Unix seconds for messages.
pub fn format_time(t: i64) -> String {
    match ASN1Time::from_timestamp(t) {
        Ok(time) => time.to_string(),
        Err(_) => format!("{t} (Unix seconds)"),
    }
}

/// Verifies chains against the pinned roots, remembering the ones that
/// verified.
pub struct ChainVerifier {
    roots: Vec<Vec<u8>>,
    cache: RwLock<Vec<CacheEntry>>,
    full_verifications: std::sync::atomic::AtomicU64,
}

struct CacheEntry {
    leaf: Box<[u8]>,
    intermediate: Box<[u8]>,
    chain: Arc<VerifiedChain>,
}

impl ChainVerifier {
    /// `roots`: DER certificates, each already checked to parse.
    pub fn new(roots: Vec<Vec<u8>>) -> Self {
        Self {
            roots,
            cache: RwLock::new(Vec::new()),
            full_verifications: Default::default(),
        }
    }

    /// How many times a chain was verified from scratch (cache misses that
    /// got as far as path validation). For tests and the benchmark.
    pub fn full_verifications(&self) -> u64 {
        self.full_verifications
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Verifies leaf → intermediate → pinned root, everything but the dates.
    /// `leaf_der` / `intermediate_der` are the decoded `x5c[0]` / `x5c[1]`.
    pub fn verify(
        &self,
        leaf_der: &[u8],
        intermediate_der: &[u8],
    ) -> Result<Arc<VerifiedChain>, ChainError> {
        // Parse first: an unparsable certificate is INVALID_CERTIFICATE
        // whether or not something else is cached.
        let leaf = parse_certificate(leaf_der, "leaf")?;
        let intermediate = parse_certificate(intermediate_der, "intermediate")?;
        // Keyed by the exact certificate encodings (without any trailing
        // bytes after the DER, which OpenSSL ignores too).
        let (leaf_raw, intermediate_raw) = (leaf.as_raw(), intermediate.as_raw());
        if let Some(chain) = self.lookup(leaf_raw, intermediate_raw) {
            return Ok(chain);
        }
        self.full_verifications
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let chain = Arc::new(validate_path(&leaf, &intermediate, &self.roots)?);
        self.insert(leaf_raw, intermediate_raw, chain.clone());
        Ok(chain)
    }

    fn lookup(&self, leaf: &[u8], intermediate: &[u8]) -> Option<Arc<VerifiedChain>> {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        cache
            .iter()
            .find(|e| *e.leaf == *leaf && *e.intermediate == *intermediate)
            .map(|e| e.chain.clone())
    }

    fn insert(&self, leaf: &[u8], intermediate: &[u8], chain: Arc<VerifiedChain>) {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if cache
            .iter()
            .any(|e| *e.leaf == *leaf && *e.intermediate == *intermediate)
        {
            return;
        }
        if cache.len() >= CACHE_CAPACITY {
            cache.remove(0);
        }
        cache.push(CacheEntry {
            leaf: leaf.into(),
            intermediate: intermediate.into(),
            chain,
        });
    }
}

/// Parses one DER certificate; trailing bytes after it are ignored, as
/// OpenSSL's `d2i_X509` does.
pub fn parse_certificate<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, ChainError> {
    X509Certificate::from_der(der)
        .map(|(_, cert)| cert)
        .map_err(|e| ChainError::Unparsable(format!("the {what} certificate does not parse: {e}")))
}

/// What OpenSSL's `X509_check_ca` says about a certificate: 0 not a CA,
/// 1 a CA by basicConstraints, 3–5 the legacy ways a root may still count.
fn check_ca(cert: &X509Certificate<'_>, facts: &CertFacts<'_>) -> u8 {
    if let Some(ku) = facts.key_usage_flags {
        if (ku >> 5) & 1 == 0 {
            return 0; // keyUsage present without keyCertSign
        }
    }
    match facts.basic_constraints {
        Some((ca, _)) => u8::from(ca),
        None => {
            let self_issued = cert.subject().as_raw() == cert.issuer().as_raw();
            if cert.version().0 == 0 && self_issued {
                3
            } else if facts.key_usage_flags.is_some() {
                4
            } else if facts.netscape_ca {
                5
            } else {
                0
            }
        }
    }
}

/// The extensions path validation looks at, read once.
struct CertFacts<'a> {
    /// (cA, pathLenConstraint)
    basic_constraints: Option<(bool, Option<u32>)>,
    key_usage_flags: Option<u16>,
    netscape_ca: bool,
    subject_key_id: Option<&'a [u8]>,
    authority_key_id: Option<&'a [u8]>,
    authority_serial: Option<&'a [u8]>,
}

fn read_facts<'a>(cert: &'a X509Certificate<'a>, what: &str) -> Result<CertFacts<'a>, ChainError> {
    let mut facts = CertFacts {
        basic_constraints: None,
        key_usage_flags: None,
        netscape_ca: false,
        subject_key_id: None,
        authority_key_id: None,
        authority_serial: None,
    };
    let mut seen: Vec<String> = Vec::new();
    for ext in cert.extensions() {
        let oid = ext.oid.to_id_string();
        if seen.contains(&oid) {
            // OpenSSL marks such a certificate invalid.
            return Err(ChainError::Invalid(format!(
                "the {what} certificate repeats extension {oid}"
            )));
        }
        if ext.critical && !SUPPORTED_CRITICAL.contains(&oid.as_str()) {
            return Err(ChainError::Invalid(format!(
                "the {what} certificate has an unhandled critical extension {oid}"
            )));
        }
        match ext.parsed_extension() {
            ParsedExtension::BasicConstraints(bc) => {
                facts.basic_constraints = Some((bc.ca, bc.path_len_constraint));
            }
            ParsedExtension::KeyUsage(ku) => facts.key_usage_flags = Some(ku.flags),
            ParsedExtension::NSCertType(ns) => {
                facts.netscape_ca = ns.ssl_ca() || ns.smime_ca() || ns.object_signing_ca();
            }
            ParsedExtension::SubjectKeyIdentifier(kid) => facts.subject_key_id = Some(kid.0),
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                facts.authority_key_id = aki.key_identifier.as_ref().map(|k| k.0);
                facts.authority_serial = aki.authority_cert_serial;
            }
            // A malformed extension that path validation reads makes OpenSSL
            // refuse the certificate.
            ParsedExtension::ParseError { error } if PATH_EXTENSIONS.contains(&oid.as_str()) => {
                return Err(ChainError::Invalid(format!(
                    "the {what} certificate has a malformed extension {oid}: {error}"
                )));
            }
            _ => {}
        }
        seen.push(oid);
    }
    Ok(facts)
}

/// OpenSSL's `X509_check_issued` (names, key identifiers, keyUsage), plus the
/// signature.
fn check_issued_by(
    child: &X509Certificate<'_>,
    child_facts: &CertFacts<'_>,
    issuer: &X509Certificate<'_>,
    issuer_facts: &CertFacts<'_>,
    child_name: &str,
    issuer_name: &str,
) -> Result<(), ChainError> {
    if child.issuer().as_raw() != issuer.subject().as_raw() {
        // Names are not quoted: until the chain verifies they are anyone's text.
        return Err(ChainError::Invalid(format!(
            "the {child_name} certificate's issuer is not the {issuer_name} certificate's subject"
        )));
    }
    if let (Some(akid), Some(skid)) = (child_facts.authority_key_id, issuer_facts.subject_key_id) {
        if akid != skid {
            return Err(ChainError::Invalid(format!(
                "the {child_name} certificate's authority key identifier does not match the {issuer_name}'s key"
            )));
        }
    }
    if let Some(serial) = child_facts.authority_serial {
        if serial != issuer.raw_serial() {
            return Err(ChainError::Invalid(format!(
                "the {child_name} certificate's authority serial does not match the {issuer_name}"
            )));
        }
    }
    if let Some(ku) = issuer_facts.key_usage_flags {
        if (ku >> 5) & 1 == 0 {
            return Err(ChainError::Invalid(format!(
                "the {issuer_name} certificate's key usage does not allow signing certificates"
            )));
        }
    }
    // OpenSSL's X509_verify refuses a certificate whose two algorithm
    // identifiers differ.
    if child.signature_algorithm != child.tbs_certificate.signature {
        return Err(ChainError::Invalid(format!(
            "the {child_name} certificate's signature algorithm fields disagree"
        )));
    }
    child
        .verify_signature(Some(issuer.public_key()))
        .map_err(|e| {
            ChainError::Invalid(format!(
                "the {child_name} certificate's signature does not verify with the {issuer_name}'s key: {e}"
            ))
        })
}

fn window_of(cert: &X509Certificate<'_>) -> Window {
    let v = cert.validity();
    Window {
        not_before: v.not_before.timestamp(),
        not_after: v.not_after.timestamp(),
    }
}

fn has_extension(cert: &X509Certificate<'_>, oid: &str) -> bool {
    cert.extensions()
        .iter()
        .any(|e| e.oid.to_id_string() == oid)
}

/// Path validation without dates (they are checked per payload).
fn validate_path(
    leaf: &X509Certificate<'_>,
    intermediate: &X509Certificate<'_>,
    roots: &[Vec<u8>],
) -> Result<VerifiedChain, ChainError> {
    let leaf_facts = read_facts(leaf, "leaf")?;
    let intermediate_facts = read_facts(intermediate, "intermediate")?;
    // An intermediate must be a CA by basicConstraints (OpenSSL applies the
    // strict rule to intermediates even in non-strict mode).
    if check_ca(intermediate, &intermediate_facts) != 1 {
        return Err(ChainError::Invalid(
            "the intermediate certificate is not a CA (basicConstraints cA is not set)".into(),
        ));
    }
    check_issued_by(
        leaf,
        &leaf_facts,
        intermediate,
        &intermediate_facts,
        "leaf",
        "intermediate",
    )?;

    let mut windows = Vec::new();
    let mut last_error = None;
    for root_der in roots {
        let Ok((_, root)) = X509Certificate::from_der(root_der) else {
            continue; // checked when the configuration was loaded
        };
        match check_root(intermediate, &intermediate_facts, &root) {
            Ok(()) => windows.push(
                window_of(leaf)
                    .intersect(window_of(intermediate))
                    .intersect(window_of(&root)),
            ),
            Err(e) => last_error = Some(e),
        }
    }
    if windows.is_empty() {
        return Err(last_error.unwrap_or_else(|| {
            ChainError::Invalid("no pinned root certificate is configured".into())
        }));
    }

    // Apple's markers, checked on the chain that verified.
    if !has_extension(leaf, LEAF_OID) {
        return Err(ChainError::Invalid(format!(
            "the leaf certificate lacks Apple's receipt-signing extension {LEAF_OID}"
        )));
    }
    if !has_extension(intermediate, INTERMEDIATE_OID) {
        return Err(ChainError::Invalid(format!(
            "the intermediate certificate lacks Apple's WWDR intermediate extension {INTERMEDIATE_OID}"
        )));
    }

    let spki = leaf.public_key();
    let is_p256 = spki.algorithm.algorithm.to_id_string() == "1.2.840.10045.2.1"
        && spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .is_some_and(|oid| oid.to_id_string() == "1.2.840.10045.3.1.7");
    Ok(VerifiedChain {
        windows,
        leaf_p256_key: is_p256.then(|| spki.subject_public_key.data.as_ref().into()),
    })
}

fn check_root(
    intermediate: &X509Certificate<'_>,
    intermediate_facts: &CertFacts<'_>,
    root: &X509Certificate<'_>,
) -> Result<(), ChainError> {
    let root_facts = read_facts(root, "pinned root")?;
    if intermediate.issuer().as_raw() != root.subject().as_raw() {
        return Err(ChainError::Invalid(
            "the intermediate certificate was not issued by a pinned root".into(),
        ));
    }
    if check_ca(root, &root_facts) == 0 {
        return Err(ChainError::Invalid(
            "the pinned root certificate is not a CA".into(),
        ));
    }
    // Path length: the root's pathLenConstraint counts the intermediate
    // unless it is self-issued.
    if let Some((_, Some(max))) = root_facts.basic_constraints {
        let intermediate_self_issued =
            intermediate.subject().as_raw() == intermediate.issuer().as_raw();
        if max == 0 && !intermediate_self_issued {
            return Err(ChainError::Invalid(
                "the pinned root's path length constraint forbids an intermediate".into(),
            ));
        }
    }
    check_issued_by(
        intermediate,
        intermediate_facts,
        root,
        &root_facts,
        "intermediate",
        "pinned root",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &[u8] = include_bytes!("../certs/AppleRootCA-G3.cer");
    const LEAF: &[u8] = include_bytes!(
        "../../../tests/corpus/apple/official-vectors/certs/realAppleReceiptSigningLeaf.der"
    );
    const INTERMEDIATE: &[u8] = include_bytes!(
        "../../../tests/corpus/apple/official-vectors/certs/realAppleWWDRG6Intermediate.der"
    );

    // 2025-11-01T02:09:35Z, the date Apple's own chain test uses.
    const NOV_2025: i64 = 1_761_962_975;

    #[test]
    fn real_apple_chain_verifies_once_and_is_cached() {
        let verifier = ChainVerifier::new(vec![ROOT.to_vec()]);
        let chain = verifier.verify(LEAF, INTERMEDIATE).unwrap();
        chain.check_valid_at(NOV_2025).unwrap();
        assert!(chain.leaf_p256_key().is_some());
        let again = verifier.verify(LEAF, INTERMEDIATE).unwrap();
        assert!(Arc::ptr_eq(&chain, &again));
        assert_eq!(verifier.full_verifications(), 1);
    }

    #[test]
    fn real_apple_chain_is_not_valid_before_the_leaf() {
        let verifier = ChainVerifier::new(vec![ROOT.to_vec()]);
        let chain = verifier.verify(LEAF, INTERMEDIATE).unwrap();
        // 2025-09-01: before the leaf's notBefore (2025-09-19).
        let err = chain.check_valid_at(1_756_684_800).unwrap_err();
        assert!(matches!(err, ChainError::Invalid(_)), "{err:?}");
    }

    #[test]
    fn window_bounds_follow_openssl() {
        let w = Window {
            not_before: 10,
            not_after: 20,
        };
        assert!(!w.contains(9));
        assert!(w.contains(10));
        assert!(w.contains(19));
        assert!(!w.contains(20));
    }

    #[test]
    fn garbage_is_unparsable() {
        let verifier = ChainVerifier::new(vec![ROOT.to_vec()]);
        let err = verifier.verify(b"abc", INTERMEDIATE).unwrap_err();
        assert!(matches!(err, ChainError::Unparsable(_)));
    }

    #[test]
    fn intermediate_as_leaf_is_refused() {
        let verifier = ChainVerifier::new(vec![ROOT.to_vec()]);
        // The intermediate is issued by the root, not by itself.
        let err = verifier.verify(INTERMEDIATE, INTERMEDIATE).unwrap_err();
        assert!(matches!(err, ChainError::Invalid(_)));
    }
}
