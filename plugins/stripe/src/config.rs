//! `[stores.stripe]`: signing secrets, timestamp tolerance, which modes to
//! accept, and where the operator's user id lives.

use serde::Deserialize;
use storehook_core::{parse_store_config, ConfigError, Environment, FactoryContext, Secret};

use crate::verify::DEFAULT_TOLERANCE_SECONDS;

pub(crate) const STORE_ID: &str = "stripe";

/// Comma-separated signing secrets; when set, it replaces `signing_secrets`
/// from the config file (secrets belong in the environment, not in a file).
pub const SIGNING_SECRETS_ENV: &str = "STOREHOOK_STRIPE_SIGNING_SECRETS";

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
        let config = StripeConfig {
            signing_secrets,
            tolerance_seconds: raw.tolerance_seconds,
            livemode: raw.livemode,
            app_user_id_metadata_key: raw.app_user_id_metadata_key,
        };
        config.validate(origin)?;
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

    #[test]
    fn defaults() {
        let c = StripeConfig::from_table(&table("signing_secrets = ['whsec_a']"), &ctx(&no_env))
            .expect("valid");
        assert_eq!(
            c.signing_secrets
                .iter()
                .map(Secret::expose)
                .collect::<Vec<_>>(),
            vec!["whsec_a"]
        );
        assert_eq!(c.tolerance_seconds, 300);
        assert_eq!(c.livemode, AcceptedMode::Both);
        assert_eq!(c.app_user_id_metadata_key, None);
        assert!(c.warnings().is_empty());
    }

    #[test]
    fn all_keys() {
        let c = StripeConfig::from_table(
            &table(
                "signing_secrets = ['whsec_a', 'whsec_b']\ntolerance_seconds = 0\n\
                 livemode = 'live'\napp_user_id_metadata_key = 'uid'",
            ),
            &ctx(&no_env),
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
        let err = StripeConfig::from_table(&table(""), &ctx(&no_env)).unwrap_err();
        assert!(err.0.contains("stores.stripe.signing_secrets"), "{err}");
        assert!(err.0.contains(SIGNING_SECRETS_ENV), "{err}");
        let err =
            StripeConfig::from_table(&table("signing_secrets = []"), &ctx(&no_env)).unwrap_err();
        assert!(err.0.contains("signing_secrets"), "{err}");
    }

    #[test]
    fn env_replaces_the_file_and_splits_on_commas() {
        let env =
            |name: &str| (name == SIGNING_SECRETS_ENV).then(|| "whsec_new, whsec_old,".to_string());
        let c = StripeConfig::from_table(&table("signing_secrets = ['whsec_file']"), &ctx(&env))
            .expect("valid");
        assert_eq!(
            c.signing_secrets
                .iter()
                .map(Secret::expose)
                .collect::<Vec<_>>(),
            vec!["whsec_new", "whsec_old"]
        );
        // The env alone is enough.
        let c = StripeConfig::from_table(&table(""), &ctx(&env)).expect("valid");
        assert_eq!(c.signing_secrets.len(), 2);
    }

    #[test]
    fn bad_values_are_refused_without_echoing_secrets() {
        let err = StripeConfig::from_table(
            &table("signing_secrets = ['whsec_ok', 'whsec_bad ']"),
            &ctx(&no_env),
        )
        .unwrap_err();
        assert!(
            err.0.contains("entry 2") && err.0.contains("whitespace"),
            "{err}"
        );
        assert!(!err.0.contains("whsec_bad"), "{err}");

        let err = StripeConfig::from_table(
            &table("signing_secrets = ['whsec_a']\nlivemode = 'prod'"),
            &ctx(&no_env),
        )
        .unwrap_err();
        assert!(
            err.0.contains("livemode") || err.0.contains("prod"),
            "{err}"
        );

        let err = StripeConfig::from_table(
            &table("signing_secrets = ['whsec_a']\ntolerance_seconds = -1"),
            &ctx(&no_env),
        )
        .unwrap_err();
        assert!(err.0.contains("stores.stripe"), "{err}");

        let err = StripeConfig::from_table(
            &table("signing_secrets = ['whsec_a']\nsigning_secret = 'x'"),
            &ctx(&no_env),
        )
        .unwrap_err();
        assert!(err.0.contains("signing_secret"), "{err}");

        let err = StripeConfig::from_table(
            &table("signing_secrets = ['whsec_a']\napp_user_id_metadata_key = ''"),
            &ctx(&no_env),
        )
        .unwrap_err();
        assert!(err.0.contains("app_user_id_metadata_key"), "{err}");
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
    fn mode_filter() {
        assert!(AcceptedMode::Both.accepts(Environment::Production));
        assert!(AcceptedMode::Both.accepts(Environment::Sandbox));
        assert!(AcceptedMode::Live.accepts(Environment::Production));
        assert!(!AcceptedMode::Live.accepts(Environment::Sandbox));
        assert!(AcceptedMode::Test.accepts(Environment::Sandbox));
        assert!(!AcceptedMode::Test.accepts(Environment::Production));
    }
}
