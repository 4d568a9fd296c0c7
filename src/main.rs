//! The `storehook` binary: the CLI around `storehook-server`.
//!
//! Plugins register themselves with `inventory`, but a linker drops a crate
//! nothing references, taking its registration with it. So the binary calls
//! each plugin's `link()` — the only place that lists them — and checks at
//! start-up that they registered.

// Production code never unwraps: a panic on a request path is a dropped
// notification. Tests may (they are meant to stop at the first surprise).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod admin_client;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use storehook_server::{Config, Registry};

/// Every notification allocates a few hundred short-lived buffers across
/// the HTTP, JSON and SQLite layers on several threads; glibc malloc was
/// about 15 % of the server's CPU under load (perf). mimalloc's per-thread
/// heaps cut that (figures in the README's Performance section).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The plugin crates this binary ships, by store id.
const BUNDLED_STORES: &[(&str, fn())] = &[
    ("amazon", storehook_amazon::link),
    ("apple", storehook_apple::link),
    ("google", storehook_google::link),
    ("stripe", storehook_stripe::link),
];

#[derive(Parser)]
#[command(
    name = "storehook",
    version = VERSION,
    about = "Receives App Store, Google Play and Stripe server notifications"
)]
struct Cli {
    /// The config file.
    #[arg(
        long,
        global = true,
        env = "STOREHOOK_CONFIG",
        default_value = "config.toml"
    )]
    config: PathBuf,
    /// Log format: human-readable, or one JSON object per line for collectors.
    #[arg(long, global = true, value_enum, default_value = "human")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve (the default).
    Serve {
        /// Listen on this address instead of `[server] listen` (port 0 picks a free port).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// List the registered stores, whether each is enabled and supported.
    Stores,
    /// Validate the config file (every store's keys included) and exit.
    CheckConfig,
    /// Print the admin token kept in the data folder (generated at the
    /// first start when none is configured), or replace it.
    AdminToken {
        /// Replace it with a new one; a running server picks it up within
        /// seconds (or at SIGHUP) and every dashboard session ends.
        #[arg(long)]
        rotate: bool,
    },
    /// Copy the database to FILE while the server keeps serving (SQLite's
    /// online backup), then check the copy with `integrity_check`.
    Backup { file: PathBuf },
    /// Copy the SQLite database (the config's) into an empty PostgreSQL
    /// database: every table, then counts and a checksum of each compared.
    /// Stop the server first; an interrupted copy is run again to finish.
    /// Then point `[database] url` (or STOREHOOK_DATABASE_URL) at it.
    MigrateDb {
        /// postgres://user:password@host:5432/database
        #[arg(long)]
        to: String,
        /// Rows per transaction.
        #[arg(long, default_value_t = 2000)]
        batch_rows: usize,
    },
    /// Replace the database with the backup FILE (checked first). Refuses
    /// while a server has the database open; the replaced file is kept
    /// beside it.
    Restore { file: PathBuf },
    /// Ask the running server to check a store's connection through the
    /// store's API; prints what it found. Exit 0 when connected, 3 when the
    /// check found a problem, 1 when the server could not be asked.
    Check {
        /// The store id (`storehook stores` lists them).
        store: String,
        /// The server's address, when the config's listen address is not how
        /// to reach it (`https://hooks.example.com`).
        #[arg(long)]
        url: Option<String>,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Ask the running server to recover what a store failed to deliver
    /// over a window, through the store's API (a durable, resumable job);
    /// follows it to the end unless --no-wait.
    Backfill {
        store: String,
        /// Start of the window: `10d`, `12h`, `90m` back from now, or an RFC 3339 time.
        #[arg(long)]
        since: String,
        /// End of the window (same forms); default now.
        #[arg(long)]
        until: Option<String>,
        /// Only what the store says it failed to deliver.
        #[arg(long)]
        only_failures: bool,
        /// Print the job's id and return at once.
        #[arg(long)]
        no_wait: bool,
        #[arg(long)]
        url: Option<String>,
    },
}

/// `0.1.0 (git 1a2b3c4)`: the revision the binary was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("STOREHOOK_GIT_REVISION"),
    ")"
);

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let cli_config = cli.config.clone();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // The message chain, never `Debug`: with RUST_BACKTRACE set,
            // anyhow's `Debug` would add a stack trace to a typo in a file.
            let message = format!("{e:#}");
            if is_config_error(&e) {
                // Name the file when the message does not already.
                let file = cli_config.display().to_string();
                if message.contains(&file) {
                    eprintln!("error: {message}");
                } else {
                    eprintln!("error: {file}: {message}");
                }
                ExitCode::from(2)
            } else {
                eprintln!("error: {message}");
                ExitCode::from(1)
            }
        }
    }
}

/// A mistake in the configuration (exit status 2), as opposed to a failure
/// while running (1).
/// Plugins that disagree (a store id registered twice) are the build's
/// mistake, not the file's: 1.
fn is_config_error(e: &anyhow::Error) -> bool {
    use storehook_server::{ConfigError, StartError};
    let of_the_file = |c: &ConfigError| !matches!(c, ConfigError::Plugins(_));
    e.chain().any(|cause| {
        cause.downcast_ref::<ConfigError>().is_some_and(of_the_file)
            || match cause.downcast_ref::<StartError>() {
                Some(StartError::Config(c)) => of_the_file(c),
                Some(StartError::Tls(_)) => true,
                _ => false,
            }
    })
}

fn run(cli: Cli) -> Result<ExitCode> {
    for (id, link) in BUNDLED_STORES {
        link();
        if storehook_core::find_registration(id).is_none() {
            bail!("the bundled store `{id}` did not register itself (plugin crate not linked?)");
        }
    }
    let env = |name: &str| std::env::var(name).ok();
    let command = cli.command.unwrap_or(Command::Serve { listen: None });
    match command {
        Command::Check {
            store,
            url,
            timeout,
        } => {
            let config = load(&cli.config)?;
            let client = admin_client::AdminClient::new(&config, url.as_deref(), &env)?;
            let connected = small_runtime()?
                .block_on(client.check(&store, std::time::Duration::from_secs(timeout)))?;
            Ok(if connected {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(admin_client::NOT_CONNECTED)
            })
        }
        Command::Backfill {
            store,
            since,
            until,
            only_failures,
            no_wait,
            url,
        } => {
            let config = load(&cli.config)?;
            let client = admin_client::AdminClient::new(&config, url.as_deref(), &env)?;
            let finished = small_runtime()?.block_on(client.backfill(
                &store,
                &since,
                until.as_deref(),
                only_failures,
                !no_wait,
            ))?;
            Ok(if finished {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        command => run_local(&cli.config, command, &env).map(|()| ExitCode::SUCCESS),
    }
}

/// A runtime for the CLI's calls to a running server.
fn small_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The commands that work on this machine's config and files.
fn run_local(
    config_path: &std::path::Path,
    command: Command,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<()> {
    let cli_config = config_path;
    match command {
        // They ask a running server; `run` sends them there.
        Command::Check { .. } | Command::Backfill { .. } => {
            bail!("this command asks the running server")
        }
        Command::Serve { listen } => {
            let mut config = load(cli_config)?;
            if let Some(listen) = listen {
                config.server.listen = listen;
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(serve(config, &env))
        }
        Command::Stores => {
            let config = load(cli_config)?;
            let registry = Registry::build(&config, env)?;
            println!("{:<10} {:<18} {:<8} SUPPORTED", "STORE", "NAME", "ENABLED");
            for entry in registry.iter() {
                let r = entry.registration;
                println!(
                    "{:<10} {:<18} {:<8} {}",
                    r.id,
                    r.name,
                    if entry.enabled { "yes" } else { "no" },
                    if r.supported { "yes" } else { "not yet" }
                );
            }
            Ok(())
        }
        Command::CheckConfig => {
            let config = load(cli_config)?;
            let (registry, endpoints, _outbox) = storehook_server::prepare(&config, env)?;
            for w in &registry.warnings {
                println!("warning: {w}");
            }
            let enabled: Vec<_> = registry
                .iter()
                .filter(|e| e.enabled)
                .map(|e| e.registration.id)
                .collect();
            println!(
                "{}: ok (enabled stores: {}; {} webhook/forward endpoints)",
                cli_config.display(),
                enabled.join(", "),
                endpoints.len()
            );
            Ok(())
        }
        Command::AdminToken { rotate } => {
            let config = load(cli_config)?;
            if config.checked_admin_token(env)?.is_some() {
                bail!(
                    "the admin token is configured ([server] admin_token in {} or STOREHOOK_ADMIN_TOKEN); \
                     read or change it there",
                    cli_config.display()
                );
            }
            let path = storehook_server::admin_token::path(&config);
            let token = if rotate {
                storehook_server::admin_token::rotate(&path)?
            } else {
                storehook_server::admin_token::load_or_create(&path)?.0
            };
            println!("{}", token.expose());
            if rotate {
                eprintln!(
                    "{} replaced; a running server uses the new token within seconds and every dashboard session ends",
                    path.display()
                );
            }
            Ok(())
        }
        Command::Backup { file } => {
            let db = sqlite_file(&load(cli_config)?, "backup")?;
            let report = storehook_db::backup(&db, &file)?;
            println!(
                "{}: {} bytes, {} notifications, integrity_check ok",
                file.display(),
                report.bytes,
                report.notifications
            );
            Ok(())
        }
        Command::MigrateDb { to, batch_rows } => {
            let config = load(cli_config)?;
            let sqlite = sqlite_file(&config, "migrate-db")?;
            let target = storehook_db::DatabaseUrl::parse(&to, &config.base_dir)?;
            let storehook_db::DatabaseUrl::Postgres(url) = &target else {
                bail!("--to must be a postgres:// URL, not {target}");
            };
            eprintln!("copying {} into {target}", sqlite.display());
            let report = small_runtime()?.block_on(storehook_db::copy_sqlite_to_postgres(
                &sqlite,
                url,
                batch_rows,
                &|line| println!("{line}"),
            ))?;
            let rows: u64 = report.tables.iter().map(|(_, t)| t.rows).sum();
            println!(
                "done: {rows} rows in {} tables equal on both sides ({} written by this run); \
                 set [database] url to {target} and start storehook",
                report.tables.len(),
                report.written
            );
            Ok(())
        }
        Command::Restore { file } => {
            let db = sqlite_file(&load(cli_config)?, "restore")?;
            let report = storehook_db::restore(&file, &db)?;
            println!(
                "{} restored from {} ({} notifications){}",
                db.display(),
                file.display(),
                report.notifications,
                report
                    .previous
                    .map(|p| format!("; the replaced database is kept as {}", p.display()))
                    .unwrap_or_default()
            );
            Ok(())
        }
    }
}

/// The SQLite file `storehook backup`/`restore` work on; PostgreSQL has
/// its own tools for that.
fn sqlite_file(config: &Config, command: &str) -> Result<std::path::PathBuf> {
    let url = config.database_url(&|name| std::env::var(name).ok())?;
    match url.sqlite_path() {
        Some(path) => Ok(path.to_owned()),
        None => bail!(
            "`storehook {command}` works on the embedded SQLite database; the database is {url}: \
             use PostgreSQL's own pg_dump / pg_restore (or your provider's backups)"
        ),
    }
}

fn load(path: &std::path::Path) -> Result<Config> {
    Ok(Config::load(path)?)
}

async fn serve(config: Config, env: &(dyn Fn(&str) -> Option<String> + Sync)) -> Result<()> {
    let running = storehook_server::start(config, env).await?;
    // Scripts and tests read the address from this line (port 0 → a free port).
    let scheme = running.scheme();
    println!("storehook listening on {scheme}://{}", running.addr);
    if let Some(admin) = running.admin_addr {
        println!("storehook admin on {scheme}://{admin}");
    }
    if let Some(link) = &running.sign_in_link {
        // Once, at the first start: the token was generated just now.
        println!(
            "\nFirst run: an admin token was generated and kept in {}.\n\
             Open the dashboard with this link (it works once, within an hour):\n\n    {link}\n\n\
             Later, `storehook admin-token` prints the token for the sign-in form.\n",
            running
                .admin_token_file
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
    }
    use std::io::Write;
    std::io::stdout().flush().ok();
    wait_for_shutdown(&running).await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

/// Until SIGINT or SIGTERM; SIGHUP reloads what can change while running.
async fn wait_for_shutdown(running: &storehook_server::Running) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return,
                _ = term.recv() => return,
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading");
                    tokio::task::block_in_place(|| running.reload());
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = running;
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("STOREHOOK_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: in a file or a journal they are noise.
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
