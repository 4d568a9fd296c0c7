//! The bench's own test keys, one set per store, kept in `<workdir>/keys` so
//! that a server started once with the written config keeps accepting them:
//!
//! - Apple: a root (P-384), an intermediate (P-384) carrying Apple's WWDR
//!   OID and a P-256 leaf carrying Apple's receipt-signing OID, made with
//!   rcgen, shaped like Apple's chain; the server pins the root through
//!   `root_certificates`.
//! - Google: a 2048-bit RSA key (the `rsa` crate generates it, ring signs
//!   with it), served to the server as a JWKS file.
//! - Stripe: a random `whsec_` signing secret.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

/// Apple's receipt-signing (leaf) and WWDR intermediate marker OIDs.
const LEAF_OID: &[u64] = &[1, 2, 840, 113635, 100, 6, 11, 1];
const INTERMEDIATE_OID: &[u64] = &[1, 2, 840, 113635, 100, 6, 2, 1];

pub const GOOGLE_KID: &str = "storehook-bench-1";

pub struct Keys {
    pub dir: PathBuf,
    pub apple_root: PathBuf,
    /// base64 DER: leaf, intermediate, root (the JWS `x5c` order).
    pub apple_x5c: Vec<String>,
    pub apple_leaf: EcdsaKeyPair,
    pub google_key: RsaKeyPair,
    pub google_jwks: PathBuf,
    pub stripe_secret: String,
}

impl Keys {
    /// Loads the keys from `<workdir>/keys`, creating any that are missing.
    pub fn load_or_create(workdir: &Path) -> Result<Self> {
        let dir = workdir.join("keys");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let file = |name: &str| dir.join(name);
        if !file("apple-leaf.pk8").exists() {
            create_apple_chain(&dir)?;
        }
        if !file("google-rsa.pk8").exists() {
            create_google_key(&dir)?;
        }
        if !file("stripe-secret.txt").exists() {
            let mut raw = [0u8; 24];
            SystemRandom::new()
                .fill(&mut raw)
                .map_err(|_| anyhow::anyhow!("no randomness"))?;
            std::fs::write(
                file("stripe-secret.txt"),
                format!("whsec_{}", hex::encode(raw)),
            )?;
        }
        let read = |name: &str| {
            std::fs::read(file(name)).with_context(|| format!("reading {}", file(name).display()))
        };
        let b64 = |der: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(der);
        let apple_leaf = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &read("apple-leaf.pk8")?,
            &SystemRandom::new(),
        )
        .map_err(|e| anyhow::anyhow!("apple-leaf.pk8: {e}"))?;
        let google_key = RsaKeyPair::from_pkcs8(&read("google-rsa.pk8")?)
            .map_err(|e| anyhow::anyhow!("google-rsa.pk8: {e}"))?;
        Ok(Keys {
            apple_root: file("apple-root.der"),
            apple_x5c: vec![
                b64(read("apple-leaf.der")?),
                b64(read("apple-intermediate.der")?),
                b64(read("apple-root.der")?),
            ],
            apple_leaf,
            google_key,
            google_jwks: file("google-jwks.json"),
            stripe_secret: String::from_utf8(read("stripe-secret.txt")?)?
                .trim()
                .to_owned(),
            dir,
        })
    }
}

fn named(params: &mut CertificateParams, cn: &str) {
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "storehook-bench");
}

/// A certificate issued by its parent (the intermediate or the leaf), from
/// 2020 until the start of `until_year`, naming its issuer's key and carrying
/// Apple's marker extension `marker_oid`.
fn issued_params(
    common_name: &str,
    is_ca: IsCa,
    key_usages: Vec<KeyUsagePurpose>,
    until_year: i32,
    marker_oid: &[u64],
) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    named(&mut params, common_name);
    params.is_ca = is_ca;
    params.key_usages = key_usages;
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(until_year, 1, 1);
    params.use_authority_key_identifier_extension = true;
    params
        .custom_extensions
        .push(CustomExtension::from_oid_content(
            marker_oid,
            vec![0x05, 0x00],
        ));
    Ok(params)
}

fn create_apple_chain(dir: &Path) -> Result<()> {
    let root_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)?;
    let mut root = CertificateParams::new(Vec::<String>::new())?;
    named(&mut root, "storehook-bench Root CA");
    root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    root.not_before = rcgen::date_time_ymd(2020, 1, 1);
    root.not_after = rcgen::date_time_ymd(2045, 1, 1);
    let root_cert = root.self_signed(&root_key)?;
    let root_issuer = Issuer::from_params(&root, &root_key);

    let intermediate_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)?;
    let intermediate = issued_params(
        "storehook-bench WWDR Intermediate",
        IsCa::Ca(BasicConstraints::Unconstrained),
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign],
        2044,
        INTERMEDIATE_OID,
    )?;
    let intermediate_cert = intermediate.signed_by(&intermediate_key, &root_issuer)?;
    let intermediate_issuer = Issuer::from_params(&intermediate, &intermediate_key);

    let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let leaf = issued_params(
        "storehook-bench Receipt Signing",
        IsCa::ExplicitNoCa,
        vec![KeyUsagePurpose::DigitalSignature],
        2043,
        LEAF_OID,
    )?;
    let leaf_cert = leaf.signed_by(&leaf_key, &intermediate_issuer)?;

    std::fs::write(dir.join("apple-root.der"), root_cert.der())?;
    std::fs::write(dir.join("apple-intermediate.der"), intermediate_cert.der())?;
    std::fs::write(dir.join("apple-leaf.der"), leaf_cert.der())?;
    std::fs::write(dir.join("apple-leaf.pk8"), leaf_key.serialize_der())?;
    Ok(())
}

fn create_google_key(dir: &Path) -> Result<()> {
    use rsa::pkcs8::EncodePrivateKey;
    use rsa::traits::PublicKeyParts;

    let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)?;
    let der = key.to_pkcs8_der()?;
    let jwks = serde_json::json!({
        "keys": [{
            "kty": "RSA", "alg": "RS256", "use": "sig", "kid": GOOGLE_KID,
            "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
        }]
    });
    std::fs::write(dir.join("google-rsa.pk8"), der.as_bytes())?;
    std::fs::write(
        dir.join("google-jwks.json"),
        serde_json::to_vec_pretty(&jwks)?,
    )?;
    Ok(())
}
