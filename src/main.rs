//! The `storehook` binary: the CLI around `storehook-server`.
//!
//! Plugins register themselves with `inventory`, but a linker drops a crate
//! nothing references, taking its registration with it. So the binary calls
//! each plugin's `link()` — the only place that lists them — and checks at
//! start-up that they registered.

use std::path::PathBuf;

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
    version,
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
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    for (id, link) in BUNDLED_STORES {
        link();
        if storehook_core::find_registration(id).is_none() {
            bail!("the bundled store `{id}` did not register itself (plugin crate not linked?)");
        }
    }
    let env = |name: &str| std::env::var(name).ok();
    match cli.command.unwrap_or(Command::Serve { listen: None }) {
        Command::Serve { listen } => {
            let mut config = load(&cli.config)?;
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
            let config = load(&cli.config)?;
            let registry = Registry::build(&config, &env)?;
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
            let config = load(&cli.config)?;
            let (registry, endpoints, _outbox) = storehook_server::prepare(&config, &env)?;
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
                cli.config.display(),
                enabled.join(", "),
                endpoints.len()
            );
            Ok(())
        }
    }
}

fn load(path: &std::path::Path) -> Result<Config> {
    Ok(Config::load(path)?)
}

async fn serve(config: Config, env: &(dyn Fn(&str) -> Option<String> + Sync)) -> Result<()> {
    let running = storehook_server::start(config, env).await?;
    // Scripts and tests read the address from this line (port 0 → a free port).
    println!("storehook listening on http://{}", running.addr);
    if let Some(admin) = running.admin_addr {
        println!("storehook admin on http://{admin}");
    }
    use std::io::Write;
    std::io::stdout().flush().ok();
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
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
