//! storehook's HTTP host: configuration, the store registry built from
//! `inventory`, the warp routes, admin authentication, and the background
//! state fetches some stores need.
//!
//! One notification's path: raw bytes and headers → the store's adapter
//! (verify, decode, map) → `storehook-db` (de-duplicate, store, apply, all in
//! one transaction, group-committed) → 200 only after the commit.

pub mod auth;
mod body;
pub mod config;
mod dashboard;
pub mod delivery;
mod error;
mod fetch;
mod handlers;
pub mod metrics;
mod refusals;
pub mod registry;
mod routes;
mod time_fmt;
mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use storehook_db::{SqliteOptions, SqliteStorage, Storage};
use tokio::sync::watch;

pub use config::{Config, ConfigError};
pub use registry::Registry;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("database {path}: {source}")]
    Database {
        path: String,
        source: storehook_db::DbError,
    },
    #[error("cannot create the data folder {path}: {source}")]
    DataFolder {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Everything a request handler needs, shared by all of them.
pub struct AppState {
    pub registry: Registry,
    pub storage: Arc<dyn Storage>,
    /// The admin token, the dashboard sessions, the wrong-token throttle.
    pub auth: Arc<auth::AdminAuth>,
    pub max_body_bytes: u64,
    /// Request bodies in memory, all connections together.
    body_budget: body::BodyBudget,
    /// Refused requests not yet written.
    refusals: Arc<refusals::Refusals>,
    /// Incoming headers kept for forwards (lower case).
    forward_headers: std::collections::HashSet<String>,
    pub body_timeout: Duration,
    pub auto_track: bool,
    pub public_url: Option<String>,
    /// Prometheus metrics (`GET /metrics`); the delivery worker records into it too.
    pub metrics: Arc<metrics::Metrics>,
    fetcher: fetch::StateFetcher,
    pub delivery: Arc<delivery::DeliveryWorker>,
}

/// A running server.
pub struct Running {
    pub addr: SocketAddr,
    /// The admin surface's address, when `[server] admin_listen` is set.
    pub admin_addr: Option<SocketAddr>,
    shutdown: Option<watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
    admin_task: Option<tokio::task::JoinHandle<()>>,
    refusal_flusher: tokio::task::JoinHandle<()>,
    delivery_shutdown: tokio::sync::watch::Sender<bool>,
    delivery_task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting connections, lets in-flight requests finish, returns.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        let _ = self.task.await;
        if let Some(admin) = self.admin_task.take() {
            let _ = admin.await;
        }
        // Then let in-flight deliveries finish (up to the grace period); the
        // refusal counts are written last.
        let _ = self.delivery_shutdown.send(true);
        let _ = self.delivery_task.await;
        let _ = self.refusal_flusher.await;
    }

    /// Waits until the server stops by itself (it does not, unless shut down).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Builds the registry from the config (failing on any bad key) and opens
/// the database; does not listen yet. `storehook check-config` stops here.
pub fn prepare(
    config: &Config,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<
    (
        Registry,
        Vec<delivery::Endpoint>,
        storehook_db::OutboxConfig,
    ),
    StartError,
> {
    config.checked_admin_token(env)?;
    let registry = Registry::build(config, env)?;
    let (endpoints, outbox) = delivery::build_endpoints(config, &registry, env)?;
    Ok((registry, endpoints, outbox))
}

/// Starts the server: opens and migrates the database, builds every enabled
/// store's adapter, binds `listen` (port 0 picks a free port), serves.
pub async fn start(
    config: Config,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<Running, StartError> {
    let (registry, endpoints, outbox) = prepare(&config, env)?;
    for warning in &registry.warnings {
        tracing::warn!("{warning}");
    }
    let admin_token = config.checked_admin_token(env)?;
    if admin_token.is_none() {
        tracing::warn!(
            "no admin token configured ([server] admin_token or STOREHOOK_ADMIN_TOKEN): \
             the management API answers 403 until one is set"
        );
    }
    let db_path = config.database_path();
    prepare_data_files(&db_path)?;
    let mut options = SqliteOptions::new(&db_path);
    options.synchronous = config.database.synchronous;
    options.outbox = outbox;
    let storage = tokio::task::spawn_blocking(move || SqliteStorage::open(options))
        .await
        .map_err(|e| StartError::Database {
            path: db_path.display().to_string(),
            source: storehook_db::DbError::Unavailable(e.to_string()),
        })?
        .map_err(|source| StartError::Database {
            path: db_path.display().to_string(),
            source,
        })?;
    let storage = Arc::new(storage);
    let metrics = Arc::new(metrics::Metrics::new());
    {
        let sqlite = storage.clone();
        metrics.set_commit_source(move || {
            let c = sqlite.commit_stats();
            metrics::CommitSnapshot {
                commits: c.commits,
                writes: c.writes,
                failed_commits: c.failed_commits,
                last_batch: c.last_batch as u64,
                last_commit_micros: c.last_commit_micros,
            }
        });
    }
    {
        let metrics = metrics.clone();
        storage.observe_commits(move |took, batch| metrics.commit(took, batch));
    }
    let storage: Arc<dyn Storage> = storage;

    let (listener, addr) = bind(config.server.listen).await?;
    let admin_listener = match config.server.admin_listen {
        Some(a) => Some(bind(a).await?),
        None => None,
    };

    let fetcher = fetch::StateFetcher::new();
    let delivery = Arc::new(delivery::DeliveryWorker::new(
        storage.clone(),
        endpoints,
        &config.delivery,
        metrics.clone(),
    )?);
    let (delivery_shutdown, delivery_task) = delivery::spawn(delivery.clone());
    let auth = Arc::new(auth::AdminAuth::new(
        admin_token,
        auth::AuthOptions {
            session_idle: Duration::from_secs(config.server.session_idle_minutes.max(1) * 60),
            session_max_age: Duration::from_secs(config.server.session_max_hours.max(1) * 3600),
            trusted_proxies: config.server.trusted_proxies.clone(),
            public_url: config.server.public_url.clone(),
        },
        metrics.clone(),
    ));
    let refusals = Arc::new(refusals::Refusals::default());
    let refusal_flusher = refusals::spawn_flusher(
        refusals.clone(),
        storage.clone(),
        delivery_shutdown.subscribe(),
    );
    let state = Arc::new(AppState {
        registry,
        storage: storage.clone(),
        auth,
        body_budget: body::BodyBudget::new(config.server.max_body_bytes_in_flight),
        refusals,
        forward_headers: config
            .delivery
            .forward_headers
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .collect(),
        max_body_bytes: config.server.max_body_bytes,
        body_timeout: Duration::from_secs(config.server.body_timeout_seconds.max(1)),
        auto_track: config.tracking.auto_track,
        public_url: config.server.public_url.clone(),
        metrics,
        fetcher,
        delivery,
    });
    fetch::resume_pending(state.clone()).await;

    let (tx, rx) = watch::channel(false);
    // Boxed: the nested filter types are otherwise too deep for release
    // builds to monomorphize (E0275, recursion limit) once served through
    // hyper-util.
    let limits = ConnectionLimits {
        header_read_timeout: Duration::from_secs(config.server.header_timeout_seconds.max(1)),
        max_connections: config.server.max_connections.max(1),
    };
    let (surface, admin_addr, admin_task) = match admin_listener {
        None => (routes::Surface::All, None, None),
        Some((admin_listener, admin_addr)) => {
            let admin_routes = routes::routes(state.clone(), routes::Surface::Admin);
            let task = tokio::spawn(serve_connections(
                admin_listener,
                admin_routes,
                rx.clone(),
                limits.clone(),
            ));
            tracing::info!(addr = %admin_addr, "dashboard and admin API listening");
            (routes::Surface::Public, Some(admin_addr), Some(task))
        }
    };
    let routes = routes::routes(state.clone(), surface);
    let task = tokio::spawn(serve_connections(listener, routes, rx, limits));
    tracing::info!(%addr, "storehook is listening");
    Ok(Running {
        addr,
        admin_addr,
        shutdown: Some(tx),
        task,
        admin_task,
        refusal_flusher,
        delivery_shutdown,
        delivery_task,
    })
}

async fn bind(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), StartError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    Ok((listener, local))
}

/// Creates the database's folder owner-only (0700) and the database file
/// owner-only (0600) before SQLite opens it; SQLite gives its `-wal` and
/// `-shm` files the database file's permissions. Existing files are left
/// as they are, with a warning when others can read them.
fn prepare_data_files(db_path: &std::path::Path) -> Result<(), StartError> {
    let folder_error = |source| StartError::DataFolder {
        path: db_path.display().to_string(),
        source,
    };
    if let Some(dir) = db_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir).map_err(folder_error)?;
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        match std::fs::metadata(db_path) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => tracing::warn!(
                path = %db_path.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "the database file is readable by other users; consider chmod 600"
            ),
            Ok(_) => {}
            Err(_) => {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(db_path)
                    .map(drop)
                    .or_else(|e| {
                        if e.kind() == std::io::ErrorKind::AlreadyExists {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(folder_error)?;
            }
        }
    }
    Ok(())
}

#[derive(Clone)]
struct ConnectionLimits {
    header_read_timeout: Duration,
    max_connections: usize,
}

/// The accept loop. warp's own server sets no header-read timeout, so a
/// client trickling its headers (slowloris) or idling on keep-alive would
/// hold a connection forever; here hyper gets a timer and a header-read
/// timeout (which also bounds idle keep-alive), and the number of open
/// connections is capped. Shutdown is graceful: stop accepting, let
/// requests in flight finish.
async fn serve_connections(
    listener: tokio::net::TcpListener,
    routes: warp::filters::BoxedFilter<(warp::reply::Response,)>,
    mut shutdown: watch::Receiver<bool>,
    limits: ConnectionLimits,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        // The peer address goes into each request, for the admin throttle.
        let service = WithPeer {
            inner: warp::service(routes.clone()),
            peer,
        };
        let service = hyper_util::service::TowerToHyperService::new(service);
        let watcher = graceful.watcher();
        let header_read_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            // hyper's header-read timer starts only once the HTTP/1 parser
            // runs, and auto-detection waits for the first bytes without a
            // deadline: a client that connects and sends nothing would hold
            // a connection slot forever. Tell the versions apart ourselves,
            // within the same timeout, and hand hyper a fixed version.
            let version = tokio::time::timeout(header_read_timeout, sniff_http_version(&stream))
                .await
                .ok()
                .flatten();
            let builder = auto::Builder::new(TokioExecutor::new());
            let mut builder = match version {
                Some(HttpVersion::H1) => builder.http1_only(),
                Some(HttpVersion::H2) => builder.http2_only(),
                // Nothing sent in time, or closed: the permit goes with the task.
                None => return,
            };
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            // HTTP/2 has no header timeout: ping instead, and close a
            // connection whose peer does not answer within the same bound.
            builder
                .http2()
                .timer(TokioTimer::new())
                .keep_alive_interval(Some(header_read_timeout / 2))
                .keep_alive_timeout(header_read_timeout / 2);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Puts the connection's peer address into each of its requests.
#[derive(Clone)]
struct WithPeer<S> {
    inner: S,
    peer: SocketAddr,
}

impl<S, B> tower_service::Service<warp::http::Request<B>> for WithPeer<S>
where
    S: tower_service::Service<warp::http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: warp::http::Request<B>) -> Self::Future {
        req.extensions_mut().insert(auth::PeerAddr(self.peer));
        self.inner.call(req)
    }
}

enum HttpVersion {
    H1,
    H2,
}

/// Peeks at a new connection's first bytes until they either match the
/// HTTP/2 prior-knowledge preface in full or stop matching it. `None` when
/// the client closes first.
async fn sniff_http_version(stream: &tokio::net::TcpStream) -> Option<HttpVersion> {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut buf = [0u8; 24];
    loop {
        let n = stream.peek(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        if buf[..n] != PREFACE[..n] {
            return Some(HttpVersion::H1);
        }
        if n == PREFACE.len() {
            return Some(HttpVersion::H2);
        }
        // A partial preface: peek returns the same bytes at once until more
        // arrive, so wait a little before looking again.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
