//! `[stores.apple]`:
//!
//! ```toml
//! [stores.apple]
//! apps = [{ bundle_id = "com.example.app", app_apple_id = 1234567890 }]
//! environments = ["Production", "Sandbox"]          # default: both
//! root_certificates = ["certs/my-test-ca.pem"]       # default: Apple Root CA - G3
//!
//! [stores.apple.api]                                  # optional: check and backfill
//! key_id = "2X9R4HXF34"
//! issuer_id = "57246542-96fe-1a63-e053-0824d011072a"
//! private_key_file = "SubscriptionKey_2X9R4HXF34.p8"  # or env STOREHOOK_APPLE_API_PRIVATE_KEY
//! # production_url = "https://api.storekit.itunes.apple.com"
//! # sandbox_url = "https://api.storekit-sandbox.itunes.apple.com"
//! ```

use serde::Deserialize;
use storehook_core::{parse_store_config, ConfigError, FactoryContext, Secret};
use x509_parser::certificate::X509Certificate;
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;

pub const STORE_ID: &str = "apple";

/// Apple Root CA - G3, the root of every App Store signing chain.
pub const APPLE_ROOT_CA_G3: &[u8] = include_bytes!("../certs/AppleRootCA-G3.cer");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    apps: Vec<RawApp>,
    #[serde(default)]
    environments: Option<Vec<String>>,
    #[serde(default)]
    root_certificates: Option<Vec<String>>,
    #[serde(default)]
    api: Option<RawApi>,
}

/// `[stores.apple.api]`: the App Store Server API's credentials. Holds a
/// path, never the key itself.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    key_id: String,
    issuer_id: String,
    #[serde(default)]
    private_key_file: Option<String>,
    #[serde(default)]
    production_url: Option<String>,
    #[serde(default)]
    sandbox_url: Option<String>,
}

/// The environment variable that may hold the In-App Purchase key's PEM in
/// place of `private_key_file` (it wins when both are set).
pub const PRIVATE_KEY_ENV: &str = "STOREHOOK_APPLE_API_PRIVATE_KEY";
pub const DEFAULT_PRODUCTION_URL: &str = "https://api.storekit.itunes.apple.com";
pub const DEFAULT_SANDBOX_URL: &str = "https://api.storekit-sandbox.itunes.apple.com";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    bundle_id: String,
    #[serde(default)]
    app_apple_id: Option<i64>,
}

/// An App Store environment a notification can come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AppleEnvironment {
    Production,
    Sandbox,
}

impl AppleEnvironment {
    /// The name as Apple writes it in payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            AppleEnvironment::Production => "Production",
            AppleEnvironment::Sandbox => "Sandbox",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Production" => Some(AppleEnvironment::Production),
            "Sandbox" => Some(AppleEnvironment::Sandbox),
            _ => None,
        }
    }
}

/// One app whose notifications this server accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub bundle_id: String,
    /// Required by Apple's library to accept Production notifications.
    pub app_apple_id: Option<i64>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct AppleSettings {
    pub apps: Vec<App>,
    pub environments: Vec<AppleEnvironment>,
    /// Pinned roots, DER.
    pub root_certificates: Vec<Vec<u8>>,
    /// Said at every start.
    pub warnings: Vec<String>,
    /// The App Store Server API credentials, when configured.
    pub api: Option<ApiSettings>,
}

/// `[stores.apple.api]`, checked: the key parses as an ES256 signing key.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub key_id: String,
    pub issuer_id: String,
    /// The In-App Purchase key, PEM (PKCS#8, EC P-256).
    pub private_key: Secret,
    pub production_url: String,
    pub sandbox_url: String,
}

impl ApiSettings {
    /// The API host for one environment.
    pub fn base_url(&self, environment: AppleEnvironment) -> &str {
        match environment {
            AppleEnvironment::Production => &self.production_url,
            AppleEnvironment::Sandbox => &self.sandbox_url,
        }
    }
}

impl AppleSettings {
    /// Settings for the given apps and environments, trusting Apple Root CA - G3.
    pub fn new(apps: Vec<App>, environments: Vec<AppleEnvironment>) -> Self {
        Self {
            apps,
            environments,
            root_certificates: vec![APPLE_ROOT_CA_G3.to_vec()],
            warnings: Vec::new(),
            api: None,
        }
    }

    /// Reads and checks `[stores.apple]`.
    pub fn from_table(table: &toml::Table, ctx: &FactoryContext<'_>) -> Result<Self, ConfigError> {
        let raw: RawConfig = parse_store_config(STORE_ID, table)?;
        if raw.apps.is_empty() {
            return Err(ConfigError::key(
                STORE_ID,
                "apps",
                "list at least one app: apps = [{ bundle_id = \"…\", app_apple_id = … }]",
            ));
        }
        let mut apps: Vec<App> = Vec::new();
        for (i, app) in raw.apps.into_iter().enumerate() {
            if app.bundle_id.trim().is_empty() {
                return Err(ConfigError::key(
                    STORE_ID,
                    &format!("apps[{i}].bundle_id"),
                    "must not be empty",
                ));
            }
            if apps.iter().any(|a| a.bundle_id == app.bundle_id) {
                return Err(ConfigError::key(
                    STORE_ID,
                    &format!("apps[{i}].bundle_id"),
                    format!("\"{}\" is listed twice", app.bundle_id),
                ));
            }
            if let Some(id) = app.app_apple_id {
                if id <= 0 {
                    return Err(ConfigError::key(
                        STORE_ID,
                        &format!("apps[{i}].app_apple_id"),
                        "must be a positive integer (the app's Apple ID in App Store Connect)",
                    ));
                }
            }
            apps.push(App {
                bundle_id: app.bundle_id,
                app_apple_id: app.app_apple_id,
            });
        }

        let environments = match raw.environments {
            None => vec![AppleEnvironment::Production, AppleEnvironment::Sandbox],
            Some(names) => parse_environments(&names)?,
        };

        let production = environments.contains(&AppleEnvironment::Production);
        let mut warnings = Vec::new();
        if production {
            let without_id: Vec<&str> = apps
                .iter()
                .filter(|a| a.app_apple_id.is_none())
                .map(|a| a.bundle_id.as_str())
                .collect();
            if without_id.len() == apps.len() && environments.len() == 1 {
                return Err(ConfigError::key(
                    STORE_ID,
                    "apps",
                    "accepting Production needs app_apple_id (the app's Apple ID in App Store Connect), as Apple's library requires",
                ));
            }
            if !without_id.is_empty() {
                warnings.push(format!(
                    "App Store: {} ha{} no app_apple_id; Apple's library requires it for Production, so Production notifications for {} are refused (INVALID_ENVIRONMENT)",
                    without_id.join(", "),
                    if without_id.len() == 1 { "s" } else { "ve" },
                    if without_id.len() == 1 { "it" } else { "them" },
                ));
            }
        }

        let root_certificates = match raw.root_certificates {
            None => vec![APPLE_ROOT_CA_G3.to_vec()],
            Some(paths) => load_roots(&paths, ctx)?,
        };

        let api = raw.api.map(|api| api_settings(api, ctx)).transpose()?;

        Ok(Self {
            apps,
            environments,
            root_certificates,
            warnings,
            api,
        })
    }
}

fn api_settings(raw: RawApi, ctx: &FactoryContext<'_>) -> Result<ApiSettings, ConfigError> {
    let key_err = |key: &str, problem: String| ConfigError::key(STORE_ID, key, problem);
    for (key, value) in [
        ("api.key_id", &raw.key_id),
        ("api.issuer_id", &raw.issuer_id),
    ] {
        if value.trim().is_empty() {
            return Err(key_err(
                key,
                "must not be empty (App Store Connect › Users and Access › Integrations › In-App Purchase)".into(),
            ));
        }
    }
    let private_key = match (ctx.env_var(PRIVATE_KEY_ENV), &raw.private_key_file) {
        (Some(pem), _) => {
            check_private_key(&pem).map_err(|problem| {
                key_err(
                    "api.private_key_file",
                    format!("env {PRIVATE_KEY_ENV}, which stands in for it, {problem}"),
                )
            })?;
            Secret::new(pem)
        }
        (None, Some(file)) => {
            let path = ctx.resolve_path(file);
            let pem = std::fs::read_to_string(&path).map_err(|e| {
                key_err(
                    "api.private_key_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            check_private_key(&pem).map_err(|problem| {
                key_err(
                    "api.private_key_file",
                    format!("{} {problem}", path.display()),
                )
            })?;
            Secret::new(pem)
        }
        (None, None) => {
            return Err(key_err(
                "api.private_key_file",
                format!(
                    "set it to the In-App Purchase key (.p8) downloaded from App Store Connect, \
                     or put the key's PEM in env {PRIVATE_KEY_ENV}"
                ),
            ))
        }
    };
    let url = |key: &str, value: Option<String>, default: &str| {
        let value = value.unwrap_or_else(|| default.to_owned());
        check_http_url(&value).map_err(|problem| key_err(key, problem))?;
        Ok::<_, ConfigError>(value.trim_end_matches('/').to_owned())
    };
    Ok(ApiSettings {
        key_id: raw.key_id.trim().to_owned(),
        issuer_id: raw.issuer_id.trim().to_owned(),
        private_key,
        production_url: url(
            "api.production_url",
            raw.production_url,
            DEFAULT_PRODUCTION_URL,
        )?,
        sandbox_url: url("api.sandbox_url", raw.sandbox_url, DEFAULT_SANDBOX_URL)?,
    })
}

/// The key must sign an ES256 token: a PKCS#8 PEM of an EC P-256 key, as
/// App Store Connect issues them. The problem never quotes the key.
fn check_private_key(pem: &str) -> Result<(), String> {
    use jsonwebtoken::errors::ErrorKind;
    let not_a_key = |e: jsonwebtoken::errors::Error| {
        let why = match e.kind() {
            ErrorKind::InvalidKeyFormat => "the PEM holds no PKCS#8 EC private key",
            ErrorKind::InvalidEcdsaKey => "the key is not on the P-256 curve",
            _ => "the text is not a PEM key",
        };
        format!(
            "is not an In-App Purchase key (a PKCS#8 PEM of an EC P-256 key, as App Store \
             Connect issues it): {why}"
        )
    };
    let key = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).map_err(not_a_key)?;
    // Parsing the PEM does not load the key; one signature does.
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &serde_json::json!({ "probe": true }),
        &key,
    )
    .map(|_| ())
    .map_err(not_a_key)
}

fn check_http_url(url: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        Ok(_) => Err(format!("{url:?} is not an http(s) URL")),
        Err(e) => Err(format!("{url:?} is not a URL: {e}")),
    }
}

fn parse_environments(names: &[String]) -> Result<Vec<AppleEnvironment>, ConfigError> {
    if names.is_empty() {
        return Err(ConfigError::key(
            STORE_ID,
            "environments",
            "list at least one of \"Production\", \"Sandbox\"",
        ));
    }
    let mut out = Vec::new();
    for name in names {
        let env = match name.as_str() {
            "Xcode" | "LocalTesting" => {
                return Err(ConfigError::key(
                    STORE_ID,
                    "environments",
                    format!(
                        "\"{name}\" is not accepted: Apple's library skips signature verification entirely for it, and the App Store never sends server notifications from it"
                    ),
                ))
            }
            other => AppleEnvironment::parse(other).ok_or_else(|| {
                ConfigError::key(
                    STORE_ID,
                    "environments",
                    format!("unknown environment \"{other}\" (use \"Production\" and/or \"Sandbox\")"),
                )
            })?,
        };
        if !out.contains(&env) {
            out.push(env);
        }
    }
    Ok(out)
}

/// Loads `root_certificates` (DER or PEM files; a PEM file may hold several).
fn load_roots(paths: &[String], ctx: &FactoryContext<'_>) -> Result<Vec<Vec<u8>>, ConfigError> {
    if paths.is_empty() {
        return Err(ConfigError::key(
            STORE_ID,
            "root_certificates",
            "list at least one certificate file, or leave the key out to trust Apple Root CA - G3",
        ));
    }
    let mut roots = Vec::new();
    for path in paths {
        let resolved = ctx.resolve_path(path);
        let problem = |what: String| {
            ConfigError::key(
                STORE_ID,
                "root_certificates",
                format!("{}: {what}", resolved.display()),
            )
        };
        let bytes = std::fs::read(&resolved).map_err(|e| problem(e.to_string()))?;
        let ders = if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
            let mut ders = Vec::new();
            for pem in Pem::iter_from_buffer(&bytes) {
                let pem = pem.map_err(|e| problem(format!("not a valid PEM file: {e}")))?;
                if pem.label == "CERTIFICATE" {
                    ders.push(pem.contents);
                }
            }
            if ders.is_empty() {
                return Err(problem("no CERTIFICATE block in the PEM file".into()));
            }
            ders
        } else {
            vec![bytes]
        };
        for der in ders {
            check_root(&der).map_err(problem)?;
            roots.push(der);
        }
    }
    Ok(roots)
}

/// A pinned root must parse and be self-issued: OpenSSL, which Apple's
/// library uses, only anchors a chain at a self-signed certificate.
pub fn check_root(der: &[u8]) -> Result<(), String> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("not a DER or PEM certificate: {e}"))?;
    if cert.subject().as_raw() != cert.issuer().as_raw() {
        return Err(format!(
            "\"{}\" is not a self-signed root certificate (it was issued by \"{}\")",
            cert.subject(),
            cert.issuer()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> FactoryContext<'static> {
        FactoryContext {
            config_dir: std::path::PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../tests/corpus/apple"
            )),
            env: &|_| None,
        }
    }

    fn parse(s: &str) -> Result<AppleSettings, ConfigError> {
        let table: toml::Table = toml::from_str(s).unwrap();
        AppleSettings::from_table(&table, &ctx())
    }

    #[test]
    fn defaults_trust_apple_g3_and_both_environments() {
        let s = parse("apps = [{ bundle_id = 'a', app_apple_id = 1 }]").unwrap();
        assert_eq!(
            s.environments,
            vec![AppleEnvironment::Production, AppleEnvironment::Sandbox]
        );
        assert_eq!(s.root_certificates, vec![APPLE_ROOT_CA_G3.to_vec()]);
        assert!(s.warnings.is_empty());
    }

    #[test]
    fn errors_name_the_key() {
        let e =
            parse("apps = [{ bundle_id = 'a', app_apple_id = 1 }]\nenviroments = []").unwrap_err();
        assert!(e.0.contains("enviroments"), "{e}");
        let e = parse("apps = []").unwrap_err();
        assert!(e.0.contains("stores.apple.apps"), "{e}");
        let e = parse("apps = [{ bundle_id = 'a', app_apple_id = 1 }]\nenvironments = ['Xcode']")
            .unwrap_err();
        assert!(
            e.0.contains("environments") && e.0.contains("skips signature verification"),
            "{e}"
        );
        let e = parse("apps = [{ bundle_id = 'a', app_apple_id = 1 }]\nenvironments = ['sandbox']")
            .unwrap_err();
        assert!(e.0.contains("unknown environment"), "{e}");
        let e = parse("apps = [{ bundle_id = 'a' }]\nenvironments = ['Production']").unwrap_err();
        assert!(e.0.contains("app_apple_id"), "{e}");
        let e =
            parse("apps = [{ bundle_id = 'a', app_apple_id = 1, bundleid = 'x' }]").unwrap_err();
        assert!(e.0.contains("bundleid"), "{e}");
        let e = parse(
            "apps = [{ bundle_id = 'a', app_apple_id = 1 }]\nroot_certificates = ['missing.der']",
        )
        .unwrap_err();
        assert!(
            e.0.contains("root_certificates") && e.0.contains("missing.der"),
            "{e}"
        );
    }

    #[test]
    fn an_app_without_apple_id_is_sandbox_only_with_a_warning() {
        let s =
            parse("apps = [{ bundle_id = 'a' }, { bundle_id = 'b', app_apple_id = 2 }]").unwrap();
        assert_eq!(s.warnings.len(), 1);
        assert!(s.warnings[0].contains('a'));
        let s = parse("apps = [{ bundle_id = 'a' }]\nenvironments = ['Sandbox']").unwrap();
        assert!(s.warnings.is_empty());
    }

    #[test]
    fn roots_load_from_der_and_pem() {
        let s = parse(
            "apps = [{ bundle_id = 'a', app_apple_id = 1 }]\nroot_certificates = ['AppleRootCA-G3.pem', 'official-vectors/certs/testCA.der']",
        )
        .unwrap();
        assert_eq!(s.root_certificates.len(), 2);
        assert_eq!(s.root_certificates[0], APPLE_ROOT_CA_G3.to_vec());
        // The official test CA's PEM file has a text dump before the block.
        let s = parse(
            "apps = [{ bundle_id = 'a', app_apple_id = 1 }]\nroot_certificates = ['official-vectors/certs/testCA.pem']",
        )
        .unwrap();
        assert_eq!(s.root_certificates.len(), 1);
        let e = parse(
            "apps = [{ bundle_id = 'a', app_apple_id = 1 }]\nroot_certificates = ['official-vectors/certs/testIntermediate.pem']",
        )
        .unwrap_err();
        assert!(e.0.contains("not a self-signed root"), "{e}");
    }
}
