use std::path::PathBuf;

use serde::de::DeserializeOwned;

use crate::store_api::{
    AckOutcome, ApiCapabilities, BackfillPage, BackfillRequest, CheckReport, StoreHost,
};
use crate::{
    AdapterError, ConfigError, IncomingRequest, Masking, Outcome, PurchaseKind, StateUpdate,
    StoreHelp,
};

/// Which subscription or purchase a state fetch, a re-read or an
/// acknowledgement is for: what the host stored of its notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionRef<'a> {
    /// The key the adapter mapped (`VerifiedNotification::subscription_key`).
    pub key: &'a str,
    /// The app the newest stored notification of this subscription named
    /// (`VerifiedNotification::app_id`: bundle id, package name), so that an
    /// adapter serving several apps knows which one to ask about.
    pub app_id: Option<&'a str>,
    /// The product its notifications named (`VerifiedNotification::product_id`,
    /// or the state read since), when known.
    pub product_id: Option<&'a str>,
    /// What its notifications said was bought
    /// (`VerifiedNotification::purchase_kind`); `None` when none said
    /// (rows stored before this was kept, or a store that does not say).
    pub kind: Option<PurchaseKind>,
}

impl<'a> SubscriptionRef<'a> {
    pub fn new(key: &'a str, app_id: Option<&'a str>) -> Self {
        Self {
            key,
            app_id,
            product_id: None,
            kind: None,
        }
    }

    /// The same reference, naming the product and what was bought.
    pub fn with_product(mut self, product_id: Option<&'a str>, kind: Option<PurchaseKind>) -> Self {
        self.product_id = product_id;
        self.kind = kind;
        self
    }
}

/// [`SubscriptionRef`], owned: what the host keeps of a purchase to ask the
/// store about it later (a queued acknowledgement, a pending fetch, a
/// tracked subscription listed to an adapter).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurchaseRef {
    pub key: String,
    pub app_id: Option<String>,
    pub product_id: Option<String>,
    pub kind: Option<PurchaseKind>,
}

impl PurchaseRef {
    pub fn new(key: impl Into<String>, app_id: Option<String>) -> Self {
        Self {
            key: key.into(),
            app_id,
            ..Self::default()
        }
    }

    pub fn subscription_ref(&self) -> SubscriptionRef<'_> {
        SubscriptionRef::new(&self.key, self.app_id.as_deref())
            .with_product(self.product_id.as_deref(), self.kind)
    }
}

/// A store adapter: verifies and decodes one request. It holds its own
/// configuration and nothing else of the host's; it must never panic,
/// whatever the bytes.
#[async_trait::async_trait]
pub trait StoreAdapter: Send + Sync + 'static {
    /// Verifies the request (signature or token over the raw bytes, before any
    /// parsing), decodes it and maps it to a normalized notification.
    async fn verify_and_decode(&self, request: &IncomingRequest) -> Result<Outcome, AdapterError>;

    /// Fetches the full state of a subscription from the store's API, for a
    /// notification stored with `state_fetch_pending`. The host calls it after
    /// the notification is committed and acknowledged, and retries with
    /// backoff on `Err`. Stores whose notifications carry the state keep the
    /// default.
    async fn fetch_state(
        &self,
        subscription: SubscriptionRef<'_>,
    ) -> Result<Option<StateUpdate>, AdapterError> {
        let _ = subscription;
        Ok(None)
    }

    /// What this adapter can do through its store's API with the
    /// credentials it was given. Default: nothing (a push-only adapter).
    fn api_capabilities(&self) -> ApiCapabilities {
        ApiCapabilities::default()
    }

    /// Confirms the connection on demand: the credentials work, the store
    /// knows this server's URL, a test notification arrives… Findings are
    /// in plain words with what to do. `Err` only for a failure of the
    /// check itself; a store that refuses the credentials is a finding.
    async fn check_connection(&self, host: &dyn StoreHost) -> Result<CheckReport, AdapterError> {
        let _ = host;
        Ok(CheckReport::not_configured(
            "This store has no API that storehook can ask.",
        ))
    }

    /// One page of what the store's API has over `req.window`, starting at
    /// `req.cursor` (`None`: the first page). The host stores `next_cursor`
    /// after committing the page, so a restart resumes; it waits and asks
    /// again on [`AdapterError::RateLimited`] and `Unavailable`.
    async fn backfill_page(&self, req: BackfillRequest<'_>) -> Result<BackfillPage, AdapterError> {
        let _ = req;
        Err(AdapterError::Unsupported {
            message: "this store has no API to recover notifications from".to_owned(),
        })
    }

    /// Acknowledges one purchase whose state said
    /// [`StateUpdate::acknowledgement_pending`]. Called from a durable queue,
    /// retried with backoff on `Unavailable`/`RateLimited`.
    async fn acknowledge(&self, purchase: SubscriptionRef<'_>) -> Result<AckOutcome, AdapterError> {
        let _ = purchase;
        Ok(AckOutcome::NotNeeded)
    }

    /// Lines the host logs as warnings at every start (e.g. "authentication is
    /// disabled"). Default: none.
    fn startup_warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

/// What a plugin's constructor gets besides its own `[stores.<id>]` table.
pub struct FactoryContext<'a> {
    /// The folder of the config file, for resolving relative paths in it.
    pub config_dir: PathBuf,
    /// Environment lookup (the process environment in production, a map in
    /// tests), for secrets that must not live in the config file.
    pub env: &'a (dyn Fn(&str) -> Option<String> + Sync),
}

impl FactoryContext<'_> {
    /// Resolves a path from the config file against the config's folder.
    pub fn resolve_path(&self, path: &str) -> PathBuf {
        let p = PathBuf::from(path);
        if p.is_absolute() {
            p
        } else {
            self.config_dir.join(p)
        }
    }

    pub fn env_var(&self, name: &str) -> Option<String> {
        (self.env)(name).filter(|v| !v.is_empty())
    }
}

/// A plugin's constructor: its own config table → its adapter.
pub type AdapterFactory =
    fn(&toml::Table, &FactoryContext<'_>) -> Result<Box<dyn StoreAdapter>, ConfigError>;

/// One store, as a plugin registers it with `inventory::submit!`. Start
/// from [`StoreRegistration::new`] and override what differs:
///
/// ```
/// use storehook_core::{ConfigError, FactoryContext, StoreAdapter, StoreHelp, StoreRegistration};
///
/// fn build_adapter(
///     table: &toml::Table,
///     ctx: &FactoryContext<'_>,
/// ) -> Result<Box<dyn StoreAdapter>, ConfigError> {
///     # let _ = (table, ctx);
///     # Err(ConfigError::new("not in this example"))
/// }
///
/// storehook_core::inventory::submit! {
///     StoreRegistration {
///         // The dashboard card: setup steps, rejection codes in plain words.
///         help: StoreHelp { console: "My Store's console", ..StoreHelp::DEFAULT },
///         forward_headers: &["mystore-signature"],
///         ..StoreRegistration::new("mystore", "My Store", "MY_STORE", build_adapter)
///     }
/// }
///
/// let mine = storehook_core::find_registration("mystore").unwrap();
/// assert!(mine.supported);
/// assert_eq!(mine.help.console, "My Store's console");
/// ```
pub struct StoreRegistration {
    /// The id in URLs and config: `POST /v1/notifications/<id>`, `[stores.<id>]`.
    /// Unique: the host refuses to start when two plugins claim one id.
    pub id: &'static str,
    /// Display name (`"My Store"`).
    pub name: &'static str,
    /// The label outgoing events carry (`MY_STORE`).
    pub store_label: &'static str,
    /// `false` for a store that is registered but not implemented yet: the
    /// host answers 501 and stores nothing. Default `true`.
    pub supported: bool,
    /// Builds the adapter from its own config table (without `enabled`).
    /// Fails with a message naming the bad key.
    pub build: AdapterFactory,
    /// What the dashboard's card says about the store: where and how to set
    /// it up, and its rejection codes in plain words. Default: generic help.
    pub help: StoreHelp,
    /// Incoming headers a forward's receiver needs to verify the notification
    /// itself (a signature over the body), lowercase. They join the default
    /// of `[delivery] forward_headers`. Never a credential. Default: none.
    pub forward_headers: &'static [&'static str],
    /// What the dashboard masks in decoded payloads besides its own rules.
    pub masking: Masking,
}

impl StoreRegistration {
    /// A supported store with generic help, no extra forward headers and no
    /// masking hints.
    pub const fn new(
        id: &'static str,
        name: &'static str,
        store_label: &'static str,
        build: AdapterFactory,
    ) -> Self {
        Self {
            id,
            name,
            store_label,
            supported: true,
            build,
            help: StoreHelp::DEFAULT,
            forward_headers: &[],
            masking: Masking::NONE,
        }
    }
}

inventory::collect!(StoreRegistration);

/// Every registered store, sorted by id, as the linker kept them.
pub fn registrations() -> Vec<&'static StoreRegistration> {
    let mut all: Vec<_> = inventory::iter::<StoreRegistration>.into_iter().collect();
    all.sort_by_key(|r| r.id);
    all
}

/// The registration of one store id.
pub fn find_registration(id: &str) -> Option<&'static StoreRegistration> {
    inventory::iter::<StoreRegistration>
        .into_iter()
        .find(|r| r.id == id)
}

/// Deserializes a store's config table into the adapter's typed config, with
/// an error naming the store and the key (use `#[serde(deny_unknown_fields)]`
/// on `T` so that a misspelt key is refused rather than ignored).
pub fn parse_store_config<T: DeserializeOwned>(
    store: &str,
    table: &toml::Table,
) -> Result<T, ConfigError> {
    T::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
        ConfigError::new(format!(
            "[stores.{store}]: {}",
            crate::secret::redact_config_error(e.to_string().trim())
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Cfg {
        secret: String,
        #[serde(default)]
        tolerance: u64,
    }

    #[test]
    fn config_errors_name_the_key() {
        let table: toml::Table = toml::from_str("secret = 'x'\ntolerence = 3").unwrap();
        let err = parse_store_config::<Cfg>("stripe", &table).unwrap_err();
        assert!(err.0.contains("tolerence"), "{err}");
        assert!(err.0.contains("stores.stripe"), "{err}");

        let table: toml::Table = toml::from_str("tolerance = 3").unwrap();
        let err = parse_store_config::<Cfg>("stripe", &table).unwrap_err();
        assert!(err.0.contains("secret"), "{err}");
    }
}
