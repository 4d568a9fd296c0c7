//! `config.toml`: loading, defaults, validation. Unknown keys stop start-up
//! with a message naming them; secrets may come from the environment.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use storehook_db::Synchronous;

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
}

#[derive(Debug, Clone, Deserialize)]
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
    pub admin_token: Option<String>,
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
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            max_body_bytes: default_max_body_bytes(),
            admin_token: None,
            public_url: None,
            body_timeout_seconds: default_body_timeout(),
            header_timeout_seconds: default_header_timeout(),
            max_connections: default_max_connections(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    #[serde(default = "default_db_path")]
    pub path: PathBuf,
    /// `FULL` (default): a 200 survives power loss. `NORMAL`/`OFF` are for benchmarks only.
    #[serde(default = "default_synchronous")]
    pub synchronous: Synchronous,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            path: default_db_path(),
            synchronous: default_synchronous(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingConfig {
    /// A verified notification that starts a purchase begins tracking by itself.
    #[serde(default)]
    pub auto_track: bool,
}

/// One `[[webhooks]]` endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub name: String,
    pub url: String,
    /// Standard Webhooks secret (`whsec_` + base64). Env
    /// `STOREHOOK_WEBHOOK_<NAME>_SECRET` wins.
    #[serde(default)]
    pub secret: Option<String>,
    /// Older secrets still signed with during a rotation.
    #[serde(default)]
    pub previous_secrets: Vec<String>,
    /// A static `Authorization` header value sent with every request.
    #[serde(default)]
    pub authorization: Option<String>,
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
#[derive(Debug, Clone, Deserialize)]
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
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            retry_schedule_seconds: default_schedule(),
            concurrency: default_concurrency(),
            allow_loopback: false,
            shutdown_grace_seconds: default_grace(),
        }
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
fn default_db_path() -> PathBuf {
    PathBuf::from("data/storehook.db")
}
fn default_synchronous() -> Synchronous {
    Synchronous::Full
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
        let mut config: Config =
            toml::from_str(text).map_err(|e| e.to_string().trim().to_owned())?;
        config.base_dir = base_dir;
        Ok(config)
    }

    /// The database path, resolved against the config's folder.
    pub fn database_path(&self) -> PathBuf {
        if self.database.path.is_absolute() {
            self.database.path.clone()
        } else {
            self.base_dir.join(&self.database.path)
        }
    }

    /// The admin token: env `STOREHOOK_ADMIN_TOKEN` first, then the file.
    pub fn admin_token(&self, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        env("STOREHOOK_ADMIN_TOKEN")
            .or_else(|| self.server.admin_token.clone())
            .filter(|t| !t.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply() {
        let c = Config::parse("", PathBuf::from("/etc/storehook")).unwrap();
        assert_eq!(c.server.listen.port(), 8080);
        assert_eq!(c.server.max_body_bytes, 262_144);
        assert_eq!(
            c.database_path(),
            PathBuf::from("/etc/storehook/data/storehook.db")
        );
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
        assert_eq!(c.admin_token(&|_| None).as_deref(), Some("file"));
        assert_eq!(
            c.admin_token(&|_| Some("env".into())).as_deref(),
            Some("env")
        );
    }
}
