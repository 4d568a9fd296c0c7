//! `[stores.stripe]`: signing secrets, timestamp tolerance, which modes to
//! accept, and where the operator's user id lives; `[stores.stripe.api]`:
//! the API key for the pull side (connection check, backfill).

use serde::Deserialize;
use storehook_core::{parse_store_config, ConfigError, Environment, FactoryContext, Secret};

use crate::verify::DEFAULT_TOLERANCE_SECONDS;

pub(crate) const STORE_ID: &str = "stripe";

/// Comma-separated signing secrets; when set, it replaces `signing_secrets`
/// from the config file (secrets belong in the environment, not in a file).
pub const SIGNING_SECRETS_ENV: &str = "STOREHOOK_STRIPE_SIGNING_SECRETS";

/// The API key; when set, it replaces `[stores.stripe.api] secret_key` (and
/// enables the API without the table).
pub const API_KEY_ENV: &str = "STOREHOOK_STRIPE_API_KEY";

/// Where Stripe's API lives (tests point `base_url` at a loopback stand-in).
pub const DEFAULT_API_BASE_URL: &str = "https://api.stripe.com";

/// The `Stripe-Version` sent by default: the version the adapter's decoding
/// is tested against (the `events_openapi` corpus, the basil-and-later shape).
pub const DEFAULT_API_VERSION: &str = "2026-07-29.dahlia";

/// Which of Stripe's modes an endpoint accepts (`livemode` on every event).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AcceptedMode {
    /// Live-mode events only (`livemode: true`).
    Live,
    /// Test-mode (sandbox) events only.
    Test,
    /// Both; each event's environment follows its `livemode`.
    #[default]
    Both,
}

impl AcceptedMode {
    pub fn accepts(self, environment: Environment) -> bool {
        match self {
            AcceptedMode::Both => true,
            AcceptedMode::Live => environment == Environment::Production,
            AcceptedMode::Test => environment == Environment::Sandbox,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AcceptedMode::Live => "live",
            AcceptedMode::Test => "test",
            AcceptedMode::Both => "both",
        }
    }
}

/// The config table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStripeConfig {
    #[serde(default)]
    signing_secrets: Vec<Secret>,
    #[serde(default = "default_tolerance")]
    tolerance_seconds: u64,
    #[serde(default)]
    livemode: AcceptedMode,
    #[serde(default)]
    app_user_id_metadata_key: Option<String>,
    #[serde(default)]
    api: Option<RawApiConfig>,
}

/// `[stores.stripe.api]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApiConfig {
    #[serde(default)]
    secret_key: Option<Secret>,
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    api_version: Option<String>,
}

fn default_tolerance() -> u64 {
    DEFAULT_TOLERANCE_SECONDS
}

/// The validated configuration.
#[derive(Clone)]
pub struct StripeConfig {
    /// The endpoint's signing secrets (`whsec_…`), used as literal bytes.
    /// Several while a secret is being rolled.
    pub signing_secrets: Vec<Secret>,
    /// Maximum age of the signature timestamp; 0 disables the check.
    pub tolerance_seconds: u64,
    pub livemode: AcceptedMode,
    /// Metadata key (on the subscription, invoice, charge or checkout
    /// session) holding the operator's own user id.
    pub app_user_id_metadata_key: Option<String>,
    /// The pull side's settings; `None` without an API key.
    pub api: Option<ApiSettings>,
}

/// Which mode a key works in: a test-mode key sees only test-mode objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMode {
    Live,
    Test,
}

impl KeyMode {
    /// As Stripe's `livemode` says it.
    pub fn livemode(self) -> bool {
        self == KeyMode::Live
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyMode::Live => "live",
            KeyMode::Test => "test",
        }
    }
}

/// `[stores.stripe.api]`, validated.
#[derive(Clone)]
pub struct ApiSettings {
    /// A restricted (`rk_…`) or secret (`sk_…`) key.
    pub secret_key: Secret,
    pub base_url: String,
    /// Sent as `Stripe-Version`.
    pub api_version: String,
}

// Says what kind of key it is, never any of it.
impl std::fmt::Debug for ApiSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiSettings")
            .field(
                "secret_key",
                &format_args!("{} (redacted)", self.key_kind()),
            )
            .field("base_url", &self.base_url)
            .field("api_version", &self.api_version)
            .finish()
    }
}

impl ApiSettings {
    /// A key with the default base URL and version.
    pub fn new(secret_key: impl Into<String>) -> Self {
        ApiSettings {
            secret_key: Secret::new(secret_key.into()),
            base_url: DEFAULT_API_BASE_URL.to_owned(),
            api_version: DEFAULT_API_VERSION.to_owned(),
        }
    }

    /// The key's mode from its prefix (`sk_test_`, `rk_live_`…); `None` for
    /// a prefix that does not say.
    pub fn key_mode(&self) -> Option<KeyMode> {
        let rest = self.secret_key.expose().get(3..)?;
        if rest.starts_with("live_") {
            Some(KeyMode::Live)
        } else if rest.starts_with("test_") {
            Some(KeyMode::Test)
        } else {
            None
        }
    }

    /// A restricted key (`rk_`), as recommended.
    pub fn is_restricted(&self) -> bool {
        self.secret_key.expose().starts_with("rk_")
    }

    /// "restricted test-mode key" and the like, for Debug and messages.
    pub fn key_kind(&self) -> String {
        let kind = if self.is_restricted() {
            "restricted"
        } else {
            "secret"
        };
        match self.key_mode() {
            Some(mode) => format!("{kind} {}-mode key", mode.as_str()),
            None => format!("{kind} key"),
        }
    }

    /// Refuses what Stripe would refuse at every call. Never quotes the key.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let key = self.secret_key.expose();
        let problem = if key.is_empty() {
            Some(format!("the key (from {origin}) is empty"))
        } else if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            Some(format!(
                "the key (from {origin}) contains whitespace; paste it again"
            ))
        } else if !(key.starts_with("sk_") || key.starts_with("rk_")) {
            Some(format!(
                "the key (from {origin}) does not start with sk_ or rk_, so it is not a Stripe API key \
                 (a pk_ publishable key or a whsec_ signing secret cannot read the API); create a \
                 restricted key (rk_…) with Read access to Events and Webhook Endpoints in the \
                 Stripe Dashboard › Developers › API keys"
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(ConfigError::key(STORE_ID, "api.secret_key", problem));
        }
        match reqwest::Url::parse(&self.base_url) {
            Ok(url)
                if matches!(url.scheme(), "https" | "http")
                    && url.host_str().is_some()
                    && url.query().is_none() => {}
            _ => {
                return Err(ConfigError::key(
                    STORE_ID,
                    "api.base_url",
                    format!(
                    "{:?} is not an http(s) URL without a query (default {DEFAULT_API_BASE_URL})",
                    self.base_url
                ),
                ))
            }
        }
        // A header value: printable ASCII, no spaces.
        if self.api_version.is_empty() || !self.api_version.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::key(
                STORE_ID,
                "api.api_version",
                format!(
                    "must be a Stripe API version such as {DEFAULT_API_VERSION:?} (omit it for that one)"
                ),
            ));
        }
        Ok(())
    }

    fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.is_restricted() {
            out.push(
                "stores.stripe.api.secret_key is a secret key (sk_…), which can do anything on the \
                 account; a restricted key (rk_…) with Read access to Events and Webhook Endpoints \
                 is all storehook needs"
                    .to_owned(),
            );
        }
        if let Ok(url) = reqwest::Url::parse(&self.base_url) {
            let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
            if url.scheme() == "http" && !loopback {
                out.push(format!(
                    "stores.stripe.api.base_url {:?} is not https: the API key would cross the network in clear",
                    self.base_url
                ));
            }
        }
        out
    }
}

// Hand-written to show how many secrets, not a list of `***`.
impl std::fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeConfig")
            .field(
                "signing_secrets",
                &format_args!("[{} redacted]", self.signing_secrets.len()),
            )
            .field("tolerance_seconds", &self.tolerance_seconds)
            .field("livemode", &self.livemode)
            .field("app_user_id_metadata_key", &self.app_user_id_metadata_key)
            .field("api", &self.api)
            .finish()
    }
}

impl StripeConfig {
    /// A config with one secret and the defaults (for tests and tools).
    pub fn with_secrets<S: Into<String>>(secrets: impl IntoIterator<Item = S>) -> Self {
        StripeConfig {
            signing_secrets: secrets.into_iter().map(|s| Secret::new(s.into())).collect(),
            tolerance_seconds: DEFAULT_TOLERANCE_SECONDS,
            livemode: AcceptedMode::Both,
            app_user_id_metadata_key: None,
            api: None,
        }
    }

    /// Parses `[stores.stripe]` (without `enabled`) and applies the
    /// environment override of the secrets.
    pub fn from_table(table: &toml::Table, ctx: &FactoryContext<'_>) -> Result<Self, ConfigError> {
        let raw: RawStripeConfig = parse_store_config(STORE_ID, table)?;
        let (signing_secrets, origin) = match ctx.env_var(SIGNING_SECRETS_ENV) {
            // Spaces around the commas are list syntax, not part of a secret.
            Some(list) => (
                list.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(Secret::new)
                    .collect(),
                SIGNING_SECRETS_ENV,
            ),
            None => (raw.signing_secrets, "signing_secrets"),
        };
        let (api, api_origin) = api_settings(raw.api, ctx)?;
        let config = StripeConfig {
            signing_secrets,
            tolerance_seconds: raw.tolerance_seconds,
            livemode: raw.livemode,
            app_user_id_metadata_key: raw.app_user_id_metadata_key,
            api,
        };
        config.validate(origin)?;
        if let Some(api) = &config.api {
            api.validate(api_origin)?;
        }
        Ok(config)
    }

    /// Refuses what would silently fail at request time. Messages name the
    /// key and the position of a bad secret, never its value.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        if self.signing_secrets.is_empty() {
            return Err(ConfigError::key(
                STORE_ID,
                "signing_secrets",
                format!(
                    "no signing secret configured (set signing_secrets or {SIGNING_SECRETS_ENV}; \
                     the endpoint's secret starts with whsec_)"
                ),
            ));
        }
        for (i, secret) in self.signing_secrets.iter().enumerate() {
            if secret.is_empty() {
                return Err(ConfigError::key(
                    STORE_ID,
                    "signing_secrets",
                    format!("entry {} (from {origin}) is empty", i + 1),
                ));
            }
            // Stripe's secrets never contain whitespace; one that does was
            // pasted wrongly and would never match (stripe-node refuses it too).
            // Refuse it rather than trim it.
            if secret.expose().chars().any(char::is_whitespace) {
                return Err(ConfigError::key(
                    STORE_ID,
                    "signing_secrets",
                    format!("entry {} (from {origin}) contains whitespace", i + 1),
                ));
            }
        }
        if let Some(key) = &self.app_user_id_metadata_key {
            if key.is_empty() {
                return Err(ConfigError::key(
                    STORE_ID,
                    "app_user_id_metadata_key",
                    "must not be empty (omit it to use the customer id)",
                ));
            }
        }
        Ok(())
    }

    /// Warnings the host logs at every start.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(api) = &self.api {
            out.extend(api.warnings());
        }
        if self.tolerance_seconds == 0 {
            out.push(
                "stores.stripe.tolerance_seconds = 0: signature timestamps are not checked, \
                 so a captured request can be replayed at any time"
                    .to_string(),
            );
        }
        let unprefixed = self
            .signing_secrets
            .iter()
            .filter(|s| !s.expose().starts_with("whsec_"))
            .count();
        if unprefixed > 0 {
            out.push(format!(
                "stores.stripe.signing_secrets: {unprefixed} secret(s) do not start with whsec_; \
                 Stripe endpoint secrets do (is this an API key?)"
            ));
        }
        out
    }
}

/// `[stores.stripe.api]` and the key's environment override: `None` when
/// neither says anything. Returns where the key came from, for messages.
fn api_settings(
    raw: Option<RawApiConfig>,
    ctx: &FactoryContext<'_>,
) -> Result<(Option<ApiSettings>, &'static str), ConfigError> {
    let env_key = ctx.env_var(API_KEY_ENV).map(Secret::new);
    let (secret_key, origin, base_url, api_version) = match (raw, env_key) {
        (None, None) => return Ok((None, "")),
        (None, Some(key)) => (key, API_KEY_ENV, None, None),
        (Some(raw), Some(key)) => (key, API_KEY_ENV, raw.base_url, raw.api_version),
        (Some(raw), None) => match raw.secret_key {
            Some(key) => (key, "the config file", raw.base_url, raw.api_version),
            None => {
                return Err(ConfigError::key(
                    STORE_ID,
                    "api.secret_key",
                    format!(
                        "[stores.stripe.api] is there but no key is: set secret_key or \
                         {API_KEY_ENV} to a restricted key (rk_…) with Read access to Events \
                         and Webhook Endpoints, or remove the table"
                    ),
                ))
            }
        },
    };
    Ok((
        Some(ApiSettings {
            secret_key,
            base_url: base_url.unwrap_or_else(|| DEFAULT_API_BASE_URL.to_owned()),
            api_version: api_version.unwrap_or_else(|| DEFAULT_API_VERSION.to_owned()),
        }),
        origin,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn ctx(env: &(dyn Fn(&str) -> Option<String> + Sync)) -> FactoryContext<'_> {
        FactoryContext {
            config_dir: PathBuf::from("/"),
            env,
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).expect("test TOML")
    }

    /// `[stores.stripe]` as `text`, with `env` for the environment.
    fn parse_with_env(
        text: &str,
        env: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> Result<StripeConfig, ConfigError> {
        StripeConfig::from_table(&table(text), &ctx(env))
    }

    /// `[stores.stripe]` as `text`, with nothing in the environment.
    fn parse(text: &str) -> Result<StripeConfig, ConfigError> {
        parse_with_env(text, &no_env)
    }

    fn exposed(secrets: &[Secret]) -> Vec<&str> {
        secrets.iter().map(Secret::expose).collect()
    }

    #[test]
    fn defaults() {
        let c = parse("signing_secrets = ['whsec_a']").expect("valid");
        assert_eq!(exposed(&c.signing_secrets), vec!["whsec_a"]);
        assert_eq!(c.tolerance_seconds, 300);
        assert_eq!(c.livemode, AcceptedMode::Both);
        assert_eq!(c.app_user_id_metadata_key, None);
        assert!(c.warnings().is_empty());
    }

    #[test]
    fn all_keys() {
        let c = parse(
            "signing_secrets = ['whsec_a', 'whsec_b']\ntolerance_seconds = 0\n\
                 livemode = 'live'\napp_user_id_metadata_key = 'uid'",
        )
        .expect("valid");
        assert_eq!(c.signing_secrets.len(), 2);
        assert_eq!(c.tolerance_seconds, 0);
        assert_eq!(c.livemode, AcceptedMode::Live);
        assert_eq!(c.app_user_id_metadata_key.as_deref(), Some("uid"));
        assert_eq!(c.warnings().len(), 1);
    }

    #[test]
    fn no_secret_names_signing_secrets() {
        let err = parse("").unwrap_err();
        assert!(err.0.contains("stores.stripe.signing_secrets"), "{err}");
        assert!(err.0.contains(SIGNING_SECRETS_ENV), "{err}");
        let err = parse("signing_secrets = []").unwrap_err();
        assert!(err.0.contains("signing_secrets"), "{err}");
    }

    #[test]
    fn env_replaces_the_file_and_splits_on_commas() {
        let env =
            |name: &str| (name == SIGNING_SECRETS_ENV).then(|| "whsec_new, whsec_old,".to_string());
        let c = parse_with_env("signing_secrets = ['whsec_file']", &env).expect("valid");
        assert_eq!(exposed(&c.signing_secrets), vec!["whsec_new", "whsec_old"]);
        // The env alone is enough.
        let c = parse_with_env("", &env).expect("valid");
        assert_eq!(c.signing_secrets.len(), 2);
    }

    #[test]
    fn bad_values_are_refused_without_echoing_secrets() {
        let err = parse("signing_secrets = ['whsec_ok', 'whsec_bad ']").unwrap_err();
        assert!(
            err.0.contains("entry 2") && err.0.contains("whitespace"),
            "{err}"
        );
        assert!(!err.0.contains("whsec_bad"), "{err}");

        let err = parse("signing_secrets = ['whsec_a']\nlivemode = 'prod'").unwrap_err();
        assert!(
            err.0.contains("livemode") || err.0.contains("prod"),
            "{err}"
        );

        for (line, named) in [
            ("tolerance_seconds = -1", "stores.stripe"),
            ("signing_secret = 'x'", "signing_secret"),
            ("app_user_id_metadata_key = ''", "app_user_id_metadata_key"),
        ] {
            let err = parse(&format!("signing_secrets = ['whsec_a']\n{line}")).unwrap_err();
            assert!(err.0.contains(named), "{line}: {err}");
        }
    }

    #[test]
    fn debug_redacts_secrets() {
        let c = StripeConfig::with_secrets(["whsec_topsecret"]);
        let shown = format!("{c:?}");
        assert!(!shown.contains("topsecret"), "{shown}");
    }

    #[test]
    fn non_whsec_secret_warns() {
        let c = StripeConfig::with_secrets(["sk_live_123"]);
        assert!(c.warnings().iter().any(|w| w.contains("whsec_")));
        assert!(!c.warnings().iter().any(|w| w.contains("sk_live_123")));
    }

    #[test]
    fn no_api_table_no_api() {
        let c = parse("signing_secrets = ['whsec_a']").expect("valid");
        assert!(c.api.is_none());
    }

    #[test]
    fn api_table_with_defaults_and_modes() {
        let c = parse("signing_secrets = ['whsec_a']\n[api]\nsecret_key = 'rk_test_abc'")
            .expect("valid");
        let api = c.api.expect("api");
        assert_eq!(api.secret_key.expose(), "rk_test_abc");
        assert_eq!(api.base_url, DEFAULT_API_BASE_URL);
        assert_eq!(api.api_version, DEFAULT_API_VERSION);
        assert_eq!(api.key_mode(), Some(KeyMode::Test));
        assert!(api.is_restricted());
        assert_eq!(
            ApiSettings::new("sk_live_x").key_mode(),
            Some(KeyMode::Live)
        );
        assert_eq!(ApiSettings::new("sk_x").key_mode(), None);

        let c = parse(
            "signing_secrets = ['whsec_a']\n[api]\nsecret_key = 'sk_live_abc'\n\
                 base_url = 'http://127.0.0.1:9'\napi_version = '2025-03-31.basil'",
        )
        .expect("valid");
        let api = c.api.as_ref().expect("api");
        assert_eq!(api.base_url, "http://127.0.0.1:9");
        assert_eq!(api.api_version, "2025-03-31.basil");
        // A full secret key works but is warned about; loopback http is not.
        let warnings = c.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("restricted key"), "{warnings:?}");
        assert!(!warnings[0].contains("sk_live_abc"));
    }

    #[test]
    fn the_api_key_env_enables_and_overrides() {
        let env = |name: &str| (name == API_KEY_ENV).then(|| "rk_live_env".to_string());
        let c = parse_with_env("signing_secrets = ['whsec_a']", &env).expect("valid");
        assert_eq!(c.api.expect("api").secret_key.expose(), "rk_live_env");
        let c = parse_with_env(
            "signing_secrets = ['whsec_a']\n[api]\nsecret_key = 'rk_test_file'\napi_version = 'v'",
            &env,
        )
        .expect("valid");
        let api = c.api.expect("api");
        assert_eq!(api.secret_key.expose(), "rk_live_env");
        assert_eq!(api.api_version, "v");
    }

    #[test]
    fn bad_api_settings_name_the_key_without_the_value() {
        for (text, key) in [
            (
                "[api]\nsecret_key = 'pk_live_Zq9x'",
                "stores.stripe.api.secret_key",
            ),
            (
                "[api]\nsecret_key = 'whsec_Zq8y'",
                "stores.stripe.api.secret_key",
            ),
            (
                "[api]\nsecret_key = 'rk_test_Zq7 w'",
                "stores.stripe.api.secret_key",
            ),
            ("[api]\nsecret_key = ''", "stores.stripe.api.secret_key"),
            ("[api]\nbase_url = 'x'", "stores.stripe.api.secret_key"),
            (
                "[api]\nsecret_key = 'rk_test_a'\nbase_url = 'ftp://x'",
                "stores.stripe.api.base_url",
            ),
            (
                "[api]\nsecret_key = 'rk_test_a'\napi_version = ''",
                "stores.stripe.api.api_version",
            ),
            ("[api]\nsecret_key = 'rk_test_a'\nkey = 'x'", "key"),
        ] {
            let err = parse(&format!("signing_secrets = ['whsec_a']\n{text}")).unwrap_err();
            assert!(err.0.contains(key), "{text}: {err}");
            for secret in ["Zq9x", "Zq8y", "Zq7"] {
                assert!(!err.0.contains(secret), "{text}: {err}");
            }
        }
        let env = |name: &str| (name == API_KEY_ENV).then(|| "whsec_wrongvar".to_string());
        let err = parse_with_env("signing_secrets = ['whsec_a']", &env).unwrap_err();
        assert!(err.0.contains("stores.stripe.api.secret_key"), "{err}");
        assert!(err.0.contains(API_KEY_ENV), "{err}");
        assert!(!err.0.contains("wrongvar"), "{err}");
    }

    #[test]
    fn debug_shows_no_api_key() {
        let mut c = StripeConfig::with_secrets(["whsec_topsecret"]);
        c.api = Some(ApiSettings::new("rk_live_verysecretkey"));
        let shown = format!("{c:?}");
        assert!(!shown.contains("verysecretkey"), "{shown}");
        assert!(
            shown.contains("restricted live-mode key (redacted)"),
            "{shown}"
        );
    }

    #[test]
    fn mode_filter() {
        assert!(AcceptedMode::Both.accepts(Environment::Production));
        assert!(AcceptedMode::Both.accepts(Environment::Sandbox));
        assert!(AcceptedMode::Live.accepts(Environment::Production));
        assert!(!AcceptedMode::Live.accepts(Environment::Sandbox));
        assert!(AcceptedMode::Test.accepts(Environment::Sandbox));
        assert!(!AcceptedMode::Test.accepts(Environment::Production));
    }
}
