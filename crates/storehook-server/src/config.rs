//! `config.toml`: loading, defaults, validation. Unknown keys stop start-up
//! with a message naming them; secrets may come from the environment.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use storehook_core::Secret;
use storehook_db::{DatabaseUrl, Synchronous};

/// Admin tokens shorter than this are refused: the token is the only thing
/// between the internet and every subscription.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
    /// The plugins linked into the binary disagree (two claim one store
    /// id): a build problem, not the config file's.
    #[error("{0}")]
    Plugins(String),
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub tracking: TrackingConfig,
    /// `[stores.<id>]` tables, handed (without `enabled`) to each store's factory.
    #[serde(default)]
    pub stores: toml::Table,
    /// `[[webhooks]]`: the operator's endpoints that receive normalized events.
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    /// `[[forward]]`: endpoints that receive every verified notification as received.
    #[serde(default)]
    pub forward: Vec<ForwardConfig>,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    #[serde(default)]
    pub retention: RetentionConfig,
    #[serde(default)]
    pub store_apis: StoreApisConfig,
    #[serde(default)]
    pub charts: ChartsConfig,
    /// The pull side's clock, for tests (default: the system clock).
    #[serde(skip)]
    pub clock: Option<ClockOverride>,
    /// The folder of the config file; relative paths in it resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Bearer token for the management API (env `STOREHOOK_ADMIN_TOKEN` wins).
    #[serde(default)]
    pub admin_token: Option<Secret>,
    /// When set, the dashboard, the admin API and `/metrics` are served on
    /// this address only (a private interface, say), and `listen` serves the
    /// store endpoints and `/healthz` alone.
    #[serde(default)]
    pub admin_listen: Option<SocketAddr>,
    /// Request bodies held in memory at once, all connections together;
    /// beyond it new bodies wait briefly, then get 503 (the stores retry).
    #[serde(default = "default_max_body_bytes_in_flight")]
    pub max_body_bytes_in_flight: u64,
    /// A dashboard session ends after this long without a request…
    #[serde(default = "default_session_idle_minutes")]
    pub session_idle_minutes: u64,
    /// …and this long after sign-in, whatever happens.
    #[serde(default = "default_session_max_hours")]
    pub session_max_hours: u64,
    /// Reverse proxies whose `X-Forwarded-For` names the client (for the
    /// per-address sign-in throttle); the header is ignored from anyone else.
    #[serde(default)]
    pub trusted_proxies: Vec<IpAddr>,
    /// The URL stores reach this server at, for the setup instructions.
    #[serde(default)]
    pub public_url: Option<String>,
    /// How long a client may take to send one request's body.
    #[serde(default = "default_body_timeout")]
    pub body_timeout_seconds: u64,
    /// How long a client may take to send a request's headers (and how long
    /// an idle keep-alive connection stays open).
    #[serde(default = "default_header_timeout")]
    pub header_timeout_seconds: u64,
    /// Open connections at most; more wait in the listen backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// `[server.tls]`: serve HTTPS directly (both listeners).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// `[server.tls]`: a certificate chain and its private key, PEM files
/// (relative paths resolve against the config's folder). Reloaded when the
/// files change and on SIGHUP; connections already open keep theirs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            max_body_bytes: default_max_body_bytes(),
            admin_token: None,
            admin_listen: None,
            max_body_bytes_in_flight: default_max_body_bytes_in_flight(),
            session_idle_minutes: default_session_idle_minutes(),
            session_max_hours: default_session_max_hours(),
            trusted_proxies: Vec::new(),
            public_url: None,
            body_timeout_seconds: default_body_timeout(),
            header_timeout_seconds: default_header_timeout(),
            max_connections: default_max_connections(),
            tls: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://<path>` (the default, `sqlite://data/storehook.db`) or
    /// `postgres://user:password@host/database` for several instances; env
    /// `STOREHOOK_DATABASE_URL` wins. A secret: it may hold a password.
    #[serde(default)]
    pub url: Option<Secret>,
    /// The SQLite file (the older spelling of `url = "sqlite://…"`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// `FULL` (default): a 200 survives power loss. `NORMAL`/`OFF` are for benchmarks only.
    #[serde(default = "default_synchronous")]
    pub synchronous: Synchronous,
    /// PostgreSQL: group-commit writers per instance, each on its own
    /// connection (1–16; SQLite has one writer whatever this says).
    #[serde(default = "default_writers")]
    pub writers: usize,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            path: None,
            synchronous: default_synchronous(),
            writers: default_writers(),
        }
    }
}

fn default_writers() -> usize {
    storehook_db::DEFAULT_POSTGRES_WRITERS
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingConfig {
    /// A verified notification that starts a purchase begins tracking by itself.
    #[serde(default)]
    pub auto_track: bool,
}

/// A clock for tests: Unix ms.
#[derive(Clone)]
pub struct ClockOverride(pub crate::store_api::Clock);

impl std::fmt::Debug for ClockOverride {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClockOverride")
    }
}

/// `[store_apis]`: what storehook does by itself with the stores' APIs
/// (for stores whose API credentials are configured).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreApisConfig {
    /// How often a catch-up recovers what the stores failed to deliver
    /// lately (0: never). One also runs at start-up, covering the time since
    /// the last notification.
    #[serde(default = "default_catch_up_interval_hours")]
    pub catch_up_interval_hours: u64,
    /// How far back a periodic catch-up looks.
    #[serde(default = "default_catch_up_lookback_hours")]
    pub catch_up_lookback_hours: u64,
    /// A tracked subscription is overdue when its renewal or expiry passed
    /// this long ago with no notification about it since…
    #[serde(default = "default_overdue_after_minutes")]
    pub overdue_after_minutes: u64,
    /// …and a store is shown as stale from this many overdue subscriptions.
    #[serde(default = "default_stale_threshold")]
    pub stale_threshold: u64,
    /// A purchase the store still says is unacknowledged this long after it
    /// was made is flagged (a store that requires acknowledgement refunds
    /// at 72 h).
    #[serde(default = "default_unacknowledged_warning_hours")]
    pub unacknowledged_warning_hours: u64,
    /// Tests: how often the acknowledgement queue is looked at (30 s).
    #[serde(skip)]
    pub queue_tick: Option<std::time::Duration>,
}

impl Default for StoreApisConfig {
    fn default() -> Self {
        Self {
            catch_up_interval_hours: default_catch_up_interval_hours(),
            catch_up_lookback_hours: default_catch_up_lookback_hours(),
            overdue_after_minutes: default_overdue_after_minutes(),
            stale_threshold: default_stale_threshold(),
            unacknowledged_warning_hours: default_unacknowledged_warning_hours(),
            queue_tick: None,
        }
    }
}

fn default_catch_up_interval_hours() -> u64 {
    6
}
fn default_catch_up_lookback_hours() -> u64 {
    72
}
fn default_overdue_after_minutes() -> u64 {
    60
}
fn default_stale_threshold() -> u64 {
    1
}
fn default_unacknowledged_warning_hours() -> u64 {
    48
}

/// `[charts]`: an optional table of exchange rates. Money charts stay per
/// currency; with rates they gain a total converted to `currency`,
/// labelled as such (a currency without a rate is left out of it, and the
/// chart says so).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChartsConfig {
    /// The ISO 4217 code the total is in (`"EUR"`).
    #[serde(default)]
    pub currency: Option<String>,
    /// What one unit of each currency is worth in `currency` (`USD = 0.92`).
    #[serde(default)]
    pub rates: std::collections::BTreeMap<String, f64>,
}

/// `[retention]`: what is pruned, and when. 0 keeps forever.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Raw request bodies (the bulk of the database) of notifications
    /// received longer ago; the normalized rows, decoded payloads, events
    /// and subscriptions stay.
    #[serde(default = "default_retention_days")]
    pub raw_body_days: u32,
    /// Delivered webhook and forward rows, with their attempts. Pending and
    /// dead ones stay until delivered or retried.
    #[serde(default = "default_retention_days")]
    pub deliveries_days: u32,
    /// How often pruning runs (it also runs a minute after start).
    #[serde(default = "default_prune_interval_seconds")]
    pub prune_interval_seconds: u64,
    /// Rows per transaction: small, so that notifications arriving meanwhile
    /// wait for the writer at most a few milliseconds.
    #[serde(default = "default_prune_batch_rows")]
    pub batch_rows: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            raw_body_days: default_retention_days(),
            deliveries_days: default_retention_days(),
            prune_interval_seconds: default_prune_interval_seconds(),
            batch_rows: default_prune_batch_rows(),
        }
    }
}

fn default_retention_days() -> u32 {
    30
}
fn default_prune_interval_seconds() -> u64 {
    3600
}
fn default_prune_batch_rows() -> u32 {
    500
}

/// One `[[webhooks]]` endpoint.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub name: String,
    pub url: String,
    /// Standard Webhooks secret (`whsec_` + base64). Env
    /// `STOREHOOK_WEBHOOK_<NAME>_SECRET` wins.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// Older secrets still signed with during a rotation.
    #[serde(default)]
    pub previous_secrets: Vec<Secret>,
    /// A static `Authorization` header value sent with every request.
    #[serde(default)]
    pub authorization: Option<Secret>,
    #[serde(default)]
    pub stores: Vec<String>,
    #[serde(default)]
    pub environments: Vec<String>,
    #[serde(default)]
    pub event_types: Vec<String>,
    #[serde(default)]
    pub apps: Vec<String>,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// Attempts before a delivery is dead (default: one more than the retry schedule's length).
    #[serde(default)]
    pub max_attempts: Option<u32>,
}

/// One `[[forward]]` entry.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {
    /// Name in the delivery API (default `forward-<n>`).
    #[serde(default)]
    pub name: Option<String>,
    pub url: String,
    #[serde(default)]
    pub stores: Vec<String>,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    #[serde(default)]
    pub max_attempts: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Delays between attempts, in seconds (fractions allowed, for tests).
    #[serde(default = "default_schedule")]
    pub retry_schedule_seconds: Vec<f64>,
    /// Attempts in flight at once, all endpoints together.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Allow endpoints on loopback addresses (off by default: SSRF guard).
    #[serde(default)]
    pub allow_loopback: bool,
    /// On shutdown, how long in-flight attempts may take to finish.
    #[serde(default = "default_grace")]
    pub shutdown_grace_seconds: u64,
    /// The incoming headers kept with each notification and replayed by
    /// `[[forward]]`s (case-insensitive). Anything else — `Authorization`
    /// (a store's push token), cookies, proxy headers — is neither stored nor
    /// forwarded. Unset: [`DeliveryConfig::forward_headers`]'s default.
    #[serde(default)]
    pub forward_headers: Option<Vec<String>>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            retry_schedule_seconds: default_schedule(),
            concurrency: default_concurrency(),
            allow_loopback: false,
            shutdown_grace_seconds: default_grace(),
            forward_headers: None,
        }
    }
}

/// What a forward's receiver needs to decode a notification itself, and no
/// credential; each store's registration adds the headers its signature
/// travels in (`StoreRegistration::forward_headers`).
const FORWARD_HEADERS: &[&str] = &["content-type", "content-encoding", "user-agent"];

impl DeliveryConfig {
    /// The headers kept for forwards, lowercase: the configured list, or
    /// the generic ones plus those the registered stores ask for.
    pub fn forward_headers(
        &self,
        registrations: &[&storehook_core::StoreRegistration],
    ) -> std::collections::BTreeSet<String> {
        match &self.forward_headers {
            Some(list) => list.iter().map(|h| h.trim().to_ascii_lowercase()).collect(),
            None => FORWARD_HEADERS
                .iter()
                .copied()
                .chain(
                    registrations
                        .iter()
                        .flat_map(|r| r.forward_headers.iter().copied()),
                )
                .map(str::to_ascii_lowercase)
                .collect(),
        }
    }
}

fn default_max_body_bytes_in_flight() -> u64 {
    64 * 1024 * 1024
}
fn default_session_idle_minutes() -> u64 {
    12 * 60
}
fn default_session_max_hours() -> u64 {
    7 * 24
}

// Hand-written `Debug`s: store tables hold the stores' secrets, webhook
// entries their signing secrets, and any URL may carry a password.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("server", &self.server)
            .field("database", &self.database)
            .field("tracking", &self.tracking)
            .field("stores", &self.stores.keys().collect::<Vec<_>>())
            .field("webhooks", &self.webhooks)
            .field("forward", &self.forward)
            .field("delivery", &self.delivery)
            .field("retention", &self.retention)
            .field("charts", &self.charts)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("name", &self.name)
            .field("url", &display_url(&self.url))
            .field("stores", &self.stores)
            .field("environments", &self.environments)
            .field("event_types", &self.event_types)
            .field("apps", &self.apps)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ForwardConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardConfig")
            .field("name", &self.name)
            .field("url", &display_url(&self.url))
            .field("stores", &self.stores)
            .finish_non_exhaustive()
    }
}

/// A configured URL for messages: scheme, host, port and path, without a
/// user, password or query (which may hold tokens).
pub fn display_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(u) => crate::delivery::redacted_url(&u),
        Err(_) => "(not a valid URL)".to_owned(),
    }
}

fn default_timeout() -> u64 {
    15
}
/// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: about 28 hours of retries.
fn default_schedule() -> Vec<f64> {
    vec![5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0]
}
fn default_concurrency() -> usize {
    8
}
fn default_grace() -> u64 {
    10
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_max_body_bytes() -> u64 {
    256 * 1024
}
fn default_body_timeout() -> u64 {
    30
}
fn default_header_timeout() -> u64 {
    10
}
fn default_max_connections() -> usize {
    4096
}
const DEFAULT_DB_PATH: &str = "data/storehook.db";
fn default_synchronous() -> Synchronous {
    Synchronous::Full
}

/// The dotted key of the `key = value` line holding byte `offset` of
/// `text` (`server.listen`), when that line is one.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    if key.is_empty() || key.starts_with('[') || key.starts_with('#') {
        return None;
    }
    let table = before[..line_start].lines().rev().find_map(|l| {
        let l = l.trim();
        (l.starts_with('[') && !l.starts_with("[[") && l.ends_with(']'))
            .then(|| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned())
    });
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_owned(),
    })
}

impl Config {
    /// Reads and parses a config file. Store tables are validated later,
    /// when the registry builds the adapters.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        Self::parse(&text, base_dir).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    pub fn parse(text: &str, base_dir: PathBuf) -> Result<Self, String> {
        // The parser quotes the offending line and value, which may be a
        // secret: keep the position and the key, drop the value.
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let message = storehook_core::redact_config_error(e.to_string().trim());
            // A wrong value's message ("invalid socket address syntax")
            // names no key: add the one at the error's position.
            match e.span().and_then(|span| key_at(text, span.start)) {
                Some(key) if !message.contains(&key) => format!("key `{key}`, {message}"),
                _ => message,
            }
        })?;
        let writers = config.database.writers;
        if !(1..=storehook_db::MAX_POSTGRES_WRITERS).contains(&writers) {
            return Err(format!(
                "key `database.writers`: {writers} writers; use 1 to {}",
                storehook_db::MAX_POSTGRES_WRITERS
            ));
        }
        config.base_dir = base_dir;
        Ok(config)
    }

    /// `[server.tls]` with its paths resolved against the config's folder.
    pub fn tls_files(&self) -> Option<TlsConfig> {
        self.server.tls.as_ref().map(|t| TlsConfig {
            cert_file: self.base_dir.join(&t.cert_file),
            key_file: self.base_dir.join(&t.key_file),
        })
    }

    /// Where the data lives: env `STOREHOOK_DATABASE_URL`, else `[database]
    /// url`, else `path`, else `data/storehook.db` beside the config.
    pub fn database_url(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<DatabaseUrl, ConfigError> {
        let invalid = |e: storehook_db::DbError| ConfigError::Invalid(format!("[database] {e}"));
        if let Some(url) = env("STOREHOOK_DATABASE_URL").filter(|u| !u.trim().is_empty()) {
            return DatabaseUrl::parse(&url, &self.base_dir)
                .map_err(|e| ConfigError::Invalid(format!("STOREHOOK_DATABASE_URL: {e}")));
        }
        match (&self.database.url, &self.database.path) {
            (Some(_), Some(_)) => Err(ConfigError::Invalid(
                "[database] sets both url and path: keep url (path is its older spelling)".into(),
            )),
            (Some(url), None) => DatabaseUrl::parse(url.expose(), &self.base_dir).map_err(invalid),
            (None, path) => Ok(DatabaseUrl::sqlite(
                path.as_deref().unwrap_or(Path::new(DEFAULT_DB_PATH)),
                &self.base_dir,
            )),
        }
    }

    /// The folder for storehook's own files (the generated admin token):
    /// the SQLite database's, or `data` beside the config otherwise.
    pub fn data_dir(&self) -> PathBuf {
        let sqlite = self
            .database_url(&|_| None)
            .ok()
            .and_then(|u| u.sqlite_path().map(Path::to_path_buf));
        match sqlite {
            Some(db) => db
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(".")),
            None => self.base_dir.join("data"),
        }
    }

    /// The admin token: env `STOREHOOK_ADMIN_TOKEN` first, then the file.
    pub fn admin_token(&self, env: &dyn Fn(&str) -> Option<String>) -> Option<Secret> {
        env("STOREHOOK_ADMIN_TOKEN")
            .map(Secret::new)
            .or_else(|| self.server.admin_token.clone())
            .filter(|t| !t.is_empty())
    }

    /// The admin token, refused when it is too short to resist guessing.
    pub fn checked_admin_token(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Secret>, ConfigError> {
        let token = self.admin_token(env);
        if let Some(t) = &token {
            let chars = t.expose().trim().chars().count();
            if chars < MIN_ADMIN_TOKEN_CHARS {
                return Err(ConfigError::Invalid(format!(
                    "[server] admin_token (or STOREHOOK_ADMIN_TOKEN) is {chars} characters long; \
                     use at least {MIN_ADMIN_TOKEN_CHARS} random characters \
                     (for example the output of `openssl rand -hex 24`)"
                )));
            }
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_are_checked() {
        let c = Config::parse("[database]\nwriters = 4\n", PathBuf::from("/")).unwrap();
        assert_eq!(c.database.writers, 4);
        let c = Config::parse("", PathBuf::from("/")).unwrap();
        assert_eq!(c.database.writers, storehook_db::DEFAULT_POSTGRES_WRITERS);
        for bad in ["0", "17"] {
            let e = Config::parse(
                &format!("[database]\nwriters = {bad}\n"),
                PathBuf::from("/"),
            )
            .unwrap_err();
            assert!(
                e.contains("database.writers") && e.contains("1 to 16"),
                "{e}"
            );
        }
    }

    #[test]
    fn defaults_apply() {
        let c = Config::parse("", PathBuf::from("/etc/storehook")).unwrap();
        assert_eq!(c.server.listen.port(), 8080);
        assert_eq!(c.server.max_body_bytes, 262_144);
        assert_eq!(
            c.database_url(&|_| None).unwrap(),
            DatabaseUrl::Sqlite(PathBuf::from("/etc/storehook/data/storehook.db"))
        );
        assert_eq!(c.data_dir(), PathBuf::from("/etc/storehook/data"));
        assert_eq!(c.database.synchronous, Synchronous::Full);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::parse(
            "[server]\nlisten = '127.0.0.1:1'\nmax_body = 3\n",
            PathBuf::new(),
        )
        .unwrap_err();
        assert!(err.contains("max_body"), "{err}");
        let err = Config::parse("[srever]\n", PathBuf::new()).unwrap_err();
        assert!(err.contains("srever"), "{err}");
    }

    #[test]
    fn env_admin_token_wins() {
        let c = Config::parse("[server]\nadmin_token = 'file'\n", PathBuf::new()).unwrap();
        assert_eq!(c.admin_token(&|_| None).unwrap().expose(), "file");
        assert_eq!(
            c.admin_token(&|_| Some("env".into())).unwrap().expose(),
            "env"
        );
    }

    #[test]
    fn short_admin_tokens_are_refused_without_echoing_them() {
        let c = Config::parse("[server]\nadmin_token = 'a'\n", PathBuf::new()).unwrap();
        let err = c.checked_admin_token(&|_| None).unwrap_err().to_string();
        assert!(err.contains("at least 16"), "{err}");
        let c = Config::parse(
            "[server]\nadmin_token = '0123456789abcdef'\n",
            PathBuf::new(),
        )
        .unwrap();
        assert!(c.checked_admin_token(&|_| None).unwrap().is_some());
    }

    #[test]
    fn config_errors_and_debug_never_show_secrets() {
        let err = Config::parse(
            "[server]\nadmin_token = 'sup3r-secret-token-value'\nlisten = 'sup3r-secret'\n",
            PathBuf::new(),
        )
        .unwrap_err();
        assert!(!err.contains("sup3r"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        let c = Config::parse(
            "[server]\nadmin_token = 'sup3r-secret-token-value'\n",
            PathBuf::new(),
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("sup3r"));
        let c = Config::parse(
            "[stores.example]\nsecret = 'whsec_sup3r'\n[[webhooks]]\nname = 'a'\n\
             url = 'https://user:sup3r@example.com/x?token=sup3r'\nsecret = 'whsec_sup3r'\n",
            PathBuf::new(),
        )
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("sup3r"), "{shown}");
        assert!(shown.contains("example.com"), "{shown}");
    }
}
