//! `[stores.apple]`:
//!
//! ```toml
//! [stores.apple]
//! apps = [{ bundle_id = "com.example.app", app_apple_id = 1234567890 }]
//! environments = ["Production", "Sandbox"]          # default: both
//! root_certificates = ["certs/my-test-ca.pem"]       # default: Apple Root CA - G3
//! ```

use serde::Deserialize;
use storehook_core::{parse_store_config, ConfigError, FactoryContext};
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
}

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
}

impl AppleSettings {
    /// Settings for the given apps and environments, trusting Apple Root CA - G3.
    pub fn new(apps: Vec<App>, environments: Vec<AppleEnvironment>) -> Self {
        Self {
            apps,
            environments,
            root_certificates: vec![APPLE_ROOT_CA_G3.to_vec()],
            warnings: Vec::new(),
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

        Ok(Self {
            apps,
            environments,
            root_certificates,
            warnings,
        })
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
