//! Notices replaced files within seconds, by polling their modification
//! times: an ACME client renewing a certificate or `storehook admin-token
//! --rotate` writes new files, and not every deployment sends SIGHUP.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

const POLL_EVERY: Duration = Duration::from_secs(2);

/// Calls `on_change` (off the executor) whenever one of `paths` changed
/// since the last look, until `shutdown`. A change that removes every file
/// is not one: there is nothing to reload.
pub(crate) fn spawn(
    paths: Vec<PathBuf>,
    mut shutdown: watch::Receiver<bool>,
    on_change: impl Fn() + Send + Sync + 'static,
) {
    let on_change = Arc::new(on_change);
    tokio::spawn(async move {
        let mut seen = stamps(&paths);
        let mut tick = tokio::time::interval(POLL_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let now = stamps(&paths);
            if now != seen && now.iter().any(Option::is_some) {
                seen = now;
                let on_change = on_change.clone();
                let _ = tokio::task::spawn_blocking(move || on_change()).await;
            }
        }
    });
}

fn stamps(paths: &[PathBuf]) -> Vec<Option<SystemTime>> {
    paths.iter().map(|p| modified(p)).collect()
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
