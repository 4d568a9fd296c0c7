//! "Check connection": runs the adapter's check in the background, keeps
//! its progress lines for whoever polls, stores the result.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use storehook_core::{CheckReport, Finding, StoreAdapter};
use storehook_db::StoredCheck;

use super::host::Host;
use crate::error::ApiError;
use crate::time_fmt::rfc3339;
use crate::AppState;

/// A check's whole run may take this long (a store's test notification
/// may be polled for about a minute per environment).
const CHECK_DEADLINE: Duration = Duration::from_secs(300);

/// A running (or the last) check of one store, in memory.
#[derive(Clone)]
pub(crate) struct CheckRun {
    started_at_ms: i64,
    finished: bool,
    progress: Arc<Mutex<Vec<String>>>,
}

/// The store's adapter, if the store is enabled; a clear error otherwise.
pub(super) fn enabled_adapter(
    state: &AppState,
    store: &str,
) -> Result<Arc<dyn StoreAdapter>, ApiError> {
    let entry = state.registry.get(store).ok_or_else(|| {
        ApiError::not_found(
            "unknown_store",
            format!("no store with id `{store}` is registered"),
        )
    })?;
    match (&entry.adapter, entry.enabled) {
        (Some(adapter), true) => Ok(adapter.clone()),
        _ => Err(ApiError::bad_request(
            "store_disabled",
            format!(
                "{} is not enabled on this server; set [stores.{store}] enabled = true",
                entry.registration.name
            ),
        )),
    }
}

/// `POST /v1/stores/{store}/check`: starts a check unless one is running,
/// and answers with its status at once (poll `GET` for progress).
pub(crate) async fn start_check(state: &Arc<AppState>, store: &str) -> Result<Value, ApiError> {
    let adapter = enabled_adapter(state, store)?;
    let run = {
        let mut checks = state
            .store_apis
            .checks
            .lock()
            .map_err(|_| ApiError::internal("the check registry is poisoned"))?;
        match checks.get(store) {
            Some(run) if !run.finished => None,
            _ => {
                let run = CheckRun {
                    started_at_ms: state.store_apis.now_ms(),
                    finished: false,
                    progress: Arc::new(Mutex::new(Vec::new())),
                };
                checks.insert(store.to_owned(), run.clone());
                Some(run)
            }
        }
    };
    if let Some(run) = run {
        tokio::spawn(run_check(state.clone(), store.to_owned(), adapter, run));
    }
    check_status(state, store).await
}

async fn run_check(
    state: Arc<AppState>,
    store: String,
    adapter: Arc<dyn StoreAdapter>,
    run: CheckRun,
) {
    let host = Host {
        state: state.clone(),
        store: store.clone(),
        job: None,
        progress: run.progress.clone(),
    };
    let checked = tokio::time::timeout(CHECK_DEADLINE, adapter.check_connection(&host)).await;
    let mut report = match checked {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => CheckReport::from_findings(
            vec![
                Finding::error("The check could not run", e.message().to_owned())
                    .with_code(e.code().to_owned()),
            ],
            e.is_transient(),
        ),
        Err(_) => CheckReport::from_findings(
            vec![Finding::error(
                "The check took too long",
                format!(
                    "No answer within {} s; the store's API may be slow. Try again later.",
                    CHECK_DEADLINE.as_secs()
                ),
            )],
            true,
        ),
    };
    report.findings.extend(host_findings(&state, &store).await);
    let check = StoredCheck {
        store: store.clone(),
        checked_at_ms: state.store_apis.now_ms(),
        report,
    };
    tracing::info!(%store, verdict = check.report.verdict.as_str(), "connection check finished");
    if let Err(e) = state.storage.save_check(check).await {
        tracing::error!(%store, error = %e, "cannot store the connection check's result");
    }
    if let Ok(mut checks) = state.store_apis.checks.lock() {
        if let Some(current) = checks.get_mut(&store) {
            if current.started_at_ms == run.started_at_ms {
                current.finished = true;
            }
        }
    }
}

/// What the host itself knows of the store's connection: when the store
/// last pushed, its last test notification, overdue subscriptions.
async fn host_findings(state: &AppState, store: &str) -> Vec<Finding> {
    let mut findings = Vec::new();
    let now = state.store_apis.now_ms();
    let stats = state.storage.store_stats().await.unwrap_or_default();
    match stats
        .iter()
        .find(|s| s.store == store)
        .and_then(|s| s.last_received_ms)
    {
        Some(at) => findings.push(Finding::info(
            "Last notification pushed by the store",
            format!(
                "{} ({} ago).",
                rfc3339(at).unwrap_or_default(),
                ago(now - at)
            ),
        )),
        None => findings.push(Finding::info(
            "Last notification pushed by the store",
            "None has arrived yet.",
        )),
    }
    if let Ok(Some(at)) = state.storage.last_test_notification(store).await {
        findings.push(Finding::info(
            "Last test notification",
            format!(
                "Received {} ({} ago).",
                rfc3339(at).unwrap_or_default(),
                ago(now - at)
            ),
        ));
    }
    let due_before = now - (state.store_apis.config.overdue_after_minutes as i64) * 60_000;
    if let Ok(overdue) = state.storage.overdue_subscriptions(due_before).await {
        if let Some(o) = overdue.iter().find(|o| o.store == store) {
            findings.push(Finding::warning(
                "Renewals or expiries without a notification",
                format!(
                    "{} tracked subscription(s) were due with no notification since; the oldest, {}, was due {}. \
                     If the check above is fine, run a backfill to recover what the store did not deliver.",
                    o.count,
                    o.oldest_subscription_id,
                    rfc3339(o.oldest_due_ms).unwrap_or_default()
                ),
            ));
        }
    }
    findings
}

/// "3 h", "2 d": a duration in the largest unit that fits.
pub(super) fn ago(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

/// `GET /v1/stores/{store}/check`: the running check's progress, and the
/// last stored result.
pub(crate) async fn check_status(state: &Arc<AppState>, store: &str) -> Result<Value, ApiError> {
    if state.registry.get(store).is_none() {
        return Err(ApiError::not_found(
            "unknown_store",
            format!("no store with id `{store}` is registered"),
        ));
    }
    let run = state
        .store_apis
        .checks
        .lock()
        .ok()
        .and_then(|c| c.get(store).cloned());
    let last = state
        .storage
        .checks()
        .await
        .map_err(|e| ApiError::storage(&e))?
        .into_iter()
        .find(|c| c.store == store);
    let (running, progress, started) = match &run {
        Some(run) => (
            !run.finished,
            run.progress.lock().map(|p| p.clone()).unwrap_or_default(),
            rfc3339(run.started_at_ms),
        ),
        None => (false, Vec::new(), None),
    };
    Ok(json!({
        "store": store,
        "state": if running { "running" } else if last.is_some() { "done" } else { "never_checked" },
        "started_at": started,
        "progress": progress,
        "result": last.as_ref().map(check_json),
    }))
}

pub(crate) fn check_json(check: &StoredCheck) -> Value {
    json!({
        "checked_at": rfc3339(check.checked_at_ms),
        "connected": check.report.connected(),
        "verdict": check.report.verdict,
        "summary": check.report.summary,
        "findings": check.report.findings,
        "recoverable": check.report.recoverable,
    })
}

/// A check that is running now, as the store card shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunningCheck {
    pub started_at_ms: i64,
    pub progress: Vec<String>,
}

/// The store's running check, if one is running.
pub(crate) fn running_check(state: &AppState, store: &str) -> Option<RunningCheck> {
    let checks = state.store_apis.checks.lock().ok()?;
    let run = checks.get(store).filter(|run| !run.finished)?;
    Some(RunningCheck {
        started_at_ms: run.started_at_ms,
        progress: run.progress.lock().map(|p| p.clone()).unwrap_or_default(),
    })
}
