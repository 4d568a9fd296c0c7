//! `[stores.google]`: the typed config as written, and the validated
//! settings the adapter runs with.

use std::path::PathBuf;

use serde::Deserialize;
use storehook_core::{ConfigError, FactoryContext, Secret};

pub const STORE_ID: &str = "google";
/// Google's published OAuth2 signing keys in JWKS form.
pub const DEFAULT_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";
pub const DEFAULT_PLAY_API_BASE_URL: &str = "https://androidpublisher.googleapis.com";
pub const DEFAULT_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// Environment variable that overrides `push_token` (keeps the secret out of the file).
pub const PUSH_TOKEN_ENV: &str = "STOREHOOK_GOOGLE_PUSH_TOKEN";
/// google-auth 1.x allowed 10 s of clock skew; 2.x defaults to 0, which
/// rejects tokens from a host whose clock is a second behind.
pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 10;
const MAX_CLOCK_SKEW_SECONDS: u64 = 300;

/// The config table as the operator writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoogleConfig {
    /// The app package names whose notifications are accepted.
    pub package_names: Vec<String>,
    /// OIDC push authentication: the `aud` the push subscription puts in its
    /// token (by default Google uses the push endpoint URL).
    pub audience: Option<String>,
    /// OIDC push authentication: the service account the push subscription
    /// signs as (`email` claim).
    pub push_service_account: Option<String>,
    pub jwks_url: Option<String>,
    pub jwks_file: Option<String>,
    pub clock_skew_seconds: Option<u64>,
    /// Shared secret expected as `?token=` in the push URL. Use URL-safe
    /// characters (or percent-encode it in the URL): the query is decoded.
    pub push_token: Option<Secret>,
    #[serde(default)]
    pub allow_unauthenticated: bool,
    pub play_api: Option<PlayApiConfig>,
}

/// `[stores.google.play_api]`: the Play Developer API as a service account:
/// full state through `purchases.subscriptionsv2.get`, the connection
/// check, backfill (voided purchases, re-read states) and, with
/// `acknowledge = true`, acknowledging purchases.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlayApiConfig {
    pub service_account_key_file: String,
    pub base_url: Option<String>,
    pub token_url: Option<String>,
    /// Acknowledge every purchase the Play API says is not acknowledged yet
    /// (Google refunds it after 3 days otherwise). Off by default: most apps
    /// acknowledge in the app or their own backend.
    #[serde(default)]
    pub acknowledge: bool,
}

/// Where Google's signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Url(String),
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSettings {
    pub audience: String,
    pub service_account_email: String,
    pub key_source: KeySource,
    pub clock_skew_seconds: u64,
}

/// The fields of a Google service-account key file the adapter uses.
#[derive(Clone, Deserialize)]
pub struct ServiceAccountKey {
    pub client_email: String,
    pub private_key: Secret,
    pub private_key_id: Option<String>,
    pub token_uri: Option<String>,
}

impl std::fmt::Debug for ServiceAccountKey {
    // The private key never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct PlayApiSettings {
    pub key: ServiceAccountKey,
    /// Where the key came from, to name it in messages.
    pub key_file: PathBuf,
    pub base_url: String,
    pub token_url: String,
    pub acknowledge: bool,
}

/// Validated settings: every combination here is one the adapter can run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub package_names: Vec<String>,
    pub oidc: Option<OidcSettings>,
    pub push_token: Option<Secret>,
    pub allow_unauthenticated: bool,
    pub play_api: Option<PlayApiSettings>,
}

impl Settings {
    pub fn from_table(table: &toml::Table, ctx: &FactoryContext<'_>) -> Result<Self, ConfigError> {
        let config: GoogleConfig = storehook_core::parse_store_config(STORE_ID, table)?;
        Self::from_config(config, ctx)
    }

    pub fn from_config(
        config: GoogleConfig,
        ctx: &FactoryContext<'_>,
    ) -> Result<Self, ConfigError> {
        let key_err = |key: &str, problem: &str| ConfigError::key(STORE_ID, key, problem);

        if config.package_names.is_empty() {
            return Err(key_err(
                "package_names",
                "list at least one app package name",
            ));
        }
        if config.package_names.iter().any(|p| p.trim().is_empty()) {
            return Err(key_err("package_names", "a package name is empty"));
        }

        let oidc = oidc_settings(&config, ctx)?;
        let push_token = ctx
            .env_var(PUSH_TOKEN_ENV)
            .map(Secret::new)
            .or_else(|| config.push_token.clone().filter(|t| !t.is_empty()));

        if oidc.is_none() && push_token.is_none() && !config.allow_unauthenticated {
            return Err(ConfigError::new(format!(
                "[stores.{STORE_ID}]: no push authentication configured: set `audience` and \
                 `push_service_account` (OIDC push tokens), or `push_token` (or env {PUSH_TOKEN_ENV}), \
                 or `allow_unauthenticated = true` to accept anyone's requests"
            )));
        }

        let play_api = match config.play_api {
            None => None,
            Some(api) => Some(play_api_settings(api, ctx)?),
        };

        Ok(Settings {
            package_names: config.package_names,
            oidc,
            push_token,
            allow_unauthenticated: config.allow_unauthenticated,
            play_api,
        })
    }

    /// Whether requests are accepted without any authentication.
    pub fn is_unauthenticated(&self) -> bool {
        self.oidc.is_none() && self.push_token.is_none()
    }
}

fn oidc_settings(
    config: &GoogleConfig,
    ctx: &FactoryContext<'_>,
) -> Result<Option<OidcSettings>, ConfigError> {
    let key_err = |key: &str, problem: &str| ConfigError::key(STORE_ID, key, problem);
    let audience = config.audience.clone().filter(|a| !a.is_empty());
    let email = config
        .push_service_account
        .clone()
        .filter(|a| !a.is_empty());
    let (audience, email) = match (audience, email) {
        (Some(a), Some(e)) => (a, e),
        (None, None) => {
            for (key, set) in [
                ("jwks_url", config.jwks_url.is_some()),
                ("jwks_file", config.jwks_file.is_some()),
                ("clock_skew_seconds", config.clock_skew_seconds.is_some()),
            ] {
                if set {
                    return Err(key_err(
                        key,
                        "only used for OIDC push authentication: also set `audience` and `push_service_account`",
                    ));
                }
            }
            return Ok(None);
        }
        (Some(_), None) => return Err(key_err(
            "push_service_account",
            "required with `audience` (the service account the push subscription authenticates as)",
        )),
        (None, Some(_)) => {
            return Err(key_err(
                "audience",
                "required with `push_service_account` (the push subscription's OIDC audience)",
            ))
        }
    };

    let key_source = match (&config.jwks_url, &config.jwks_file) {
        (Some(_), Some(_)) => {
            return Err(key_err(
                "jwks_file",
                "set either `jwks_url` or `jwks_file`, not both",
            ))
        }
        (None, Some(file)) => KeySource::File(ctx.resolve_path(file)),
        (url, None) => {
            let url = url.as_deref().unwrap_or(DEFAULT_JWKS_URL);
            check_http_url(url).map_err(|p| key_err("jwks_url", &p))?;
            KeySource::Url(url.to_string())
        }
    };

    let clock_skew_seconds = config
        .clock_skew_seconds
        .unwrap_or(DEFAULT_CLOCK_SKEW_SECONDS);
    if clock_skew_seconds > MAX_CLOCK_SKEW_SECONDS {
        return Err(key_err(
            "clock_skew_seconds",
            &format!("at most {MAX_CLOCK_SKEW_SECONDS} seconds"),
        ));
    }

    Ok(Some(OidcSettings {
        audience,
        service_account_email: email,
        key_source,
        clock_skew_seconds,
    }))
}

fn play_api_settings(
    api: PlayApiConfig,
    ctx: &FactoryContext<'_>,
) -> Result<PlayApiSettings, ConfigError> {
    let key_err = |key: &str, problem: &str| ConfigError::key(STORE_ID, key, problem);

    let path = ctx.resolve_path(&api.service_account_key_file);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        key_err(
            "play_api.service_account_key_file",
            &format!("cannot read {}: {e}", path.display()),
        )
    })?;
    let key: ServiceAccountKey = serde_json::from_str(&text).map_err(|e| {
        // serde_json's message names the missing field, never a value.
        key_err(
            "play_api.service_account_key_file",
            &format!("{} is not a service-account key file: {e}", path.display()),
        )
    })?;

    let base_url = api
        .base_url
        .unwrap_or_else(|| DEFAULT_PLAY_API_BASE_URL.to_string());
    check_http_url(&base_url).map_err(|p| key_err("play_api.base_url", &p))?;
    let token_url = api
        .token_url
        .or_else(|| key.token_uri.clone())
        .unwrap_or_else(|| DEFAULT_TOKEN_URL.to_string());
    check_http_url(&token_url).map_err(|p| key_err("play_api.token_url", &p))?;

    Ok(PlayApiSettings {
        key,
        key_file: path,
        base_url,
        token_url,
        acknowledge: api.acknowledge,
    })
}

fn check_http_url(url: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        Ok(_) => Err(format!("{url:?} is not an http(s) URL")),
        Err(e) => Err(format!("{url:?} is not a URL: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx_with(env: &'static (dyn Fn(&str) -> Option<String> + Sync)) -> FactoryContext<'static> {
        FactoryContext {
            config_dir: PathBuf::from("/etc/storehook"),
            env,
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(text: &str) -> Result<Settings, ConfigError> {
        let table: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::new(e.to_string()))?;
        Settings::from_table(&table, &ctx_with(&no_env))
    }

    #[test]
    fn the_push_token_never_shows_in_debug() {
        let s = parse("package_names = ['com.example']\npush_token = 'tok-7f3a9c'").unwrap();
        assert_eq!(
            s.push_token.as_ref().map(|t| t.expose()),
            Some("tok-7f3a9c")
        );
        assert!(!format!("{s:?}").contains("tok-7f3a9c"), "{s:?}");
    }

    #[test]
    fn oidc_defaults_to_googles_jwks() {
        let s = parse(
            "package_names = ['com.example']\naudience = 'https://h/v1/notifications/google'\n\
             push_service_account = 'push@p.iam.gserviceaccount.com'",
        )
        .unwrap();
        let oidc = s.oidc.clone().unwrap();
        assert_eq!(oidc.key_source, KeySource::Url(DEFAULT_JWKS_URL.into()));
        assert_eq!(oidc.clock_skew_seconds, DEFAULT_CLOCK_SKEW_SECONDS);
        assert!(s.push_token.is_none());
        assert!(!s.is_unauthenticated());
    }

    #[test]
    fn jwks_file_is_resolved_against_the_config_dir() {
        let s = parse(
            "package_names = ['a']\naudience = 'x'\npush_service_account = 'y'\njwks_file = 'keys.json'",
        )
        .unwrap();
        assert_eq!(
            s.oidc.unwrap().key_source,
            KeySource::File(PathBuf::from("/etc/storehook/keys.json"))
        );
    }

    #[test]
    fn no_authentication_refuses_to_start() {
        let err = parse("package_names = ['a']").unwrap_err();
        assert!(err.0.contains("allow_unauthenticated"), "{err}");
        let s = parse("package_names = ['a']\nallow_unauthenticated = true").unwrap();
        assert!(s.is_unauthenticated());
    }

    #[test]
    fn errors_name_the_key() {
        for (text, key) in [
            ("package_names = []\npush_token = 't'", "package_names"),
            ("push_token = 't'", "package_names"),
            ("package_names = ['a']\naudience = 'x'", "push_service_account"),
            ("package_names = ['a']\npush_service_account = 'x'", "audience"),
            ("package_names = ['a']\npush_token = 't'\njwks_file = 'k'", "jwks_file"),
            (
                "package_names = ['a']\naudience = 'x'\npush_service_account = 'y'\njwks_url = 'u'\njwks_file = 'k'",
                "jwks_file",
            ),
            (
                "package_names = ['a']\naudience = 'x'\npush_service_account = 'y'\njwks_url = 'ftp://h/k'",
                "jwks_url",
            ),
            (
                "package_names = ['a']\naudience = 'x'\npush_service_account = 'y'\nclock_skew_seconds = 9999",
                "clock_skew_seconds",
            ),
            ("package_names = ['a']\npush_token = 't'\npush_tokn = 'x'", "push_tokn"),
            (
                "package_names = ['a']\npush_token = 't'\n[play_api]\nservice_account_key_file = '/nonexistent/k.json'",
                "play_api.service_account_key_file",
            ),
            (
                "package_names = ['a']\npush_token = 't'\n[play_api]\nservice_acount_key_file = 'k.json'",
                "service_acount_key_file",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.0.contains(key), "{text:?}: {err}");
        }
    }

    #[test]
    fn env_push_token_overrides_the_file() {
        fn env(name: &str) -> Option<String> {
            (name == PUSH_TOKEN_ENV).then(|| "from-env".to_string())
        }
        let table: toml::Table =
            toml::from_str("package_names = ['a']\npush_token = 'from-file'").unwrap();
        let s = Settings::from_table(&table, &ctx_with(&env)).unwrap();
        assert_eq!(s.push_token.as_ref().map(|t| t.expose()), Some("from-env"));
        let table: toml::Table = toml::from_str("package_names = ['a']").unwrap();
        let s = Settings::from_table(&table, &ctx_with(&env)).unwrap();
        assert_eq!(s.push_token.as_ref().map(|t| t.expose()), Some("from-env"));
    }

    #[test]
    fn service_account_debug_hides_the_private_key() {
        let key = ServiceAccountKey {
            client_email: "a@b".into(),
            private_key: Secret::new("-----BEGIN PRIVATE KEY-----secret"),
            private_key_id: None,
            token_uri: None,
        };
        assert!(!format!("{key:?}").contains("secret"));
    }

    fn fixtures_ctx() -> FactoryContext<'static> {
        FactoryContext {
            config_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures")),
            env: &no_env,
        }
    }

    #[test]
    fn acknowledge_is_off_unless_asked_and_the_key_never_shows() {
        let settings = |extra: &str| {
            let text = format!(
                "package_names = ['a']\npush_token = 't'\n[play_api]\n\
                 service_account_key_file = 'service_account.json'\n{extra}"
            );
            let table: toml::Table = toml::from_str(&text).unwrap();
            Settings::from_table(&table, &fixtures_ctx()).unwrap()
        };
        let off = settings("");
        let api = off.play_api.as_ref().unwrap();
        assert!(!api.acknowledge);
        assert!(api.key.private_key.expose().contains("PRIVATE KEY"));
        let shown = format!("{off:?}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        assert!(shown.contains("play-api@storehook-test"), "{shown}");
        assert!(settings("acknowledge = true").play_api.unwrap().acknowledge);
        let table: toml::Table = toml::from_str(
            "package_names = ['a']\npush_token = 't'\n[play_api]\n\
             service_account_key_file = 'service_account.json'\nacknowledge = 'yes'",
        )
        .unwrap();
        let err = Settings::from_table(&table, &fixtures_ctx()).unwrap_err();
        assert!(err.0.contains("acknowledge"), "{err}");
    }
}
