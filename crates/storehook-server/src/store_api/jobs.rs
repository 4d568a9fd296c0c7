//! Backfill and catch-up jobs: durable (a row per job, its cursor stored
//! after every committed page, so a restart resumes), rate limits honoured,
//! cancellable. Each recovered notification goes through the same storage
//! path as a pushed one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use storehook_core::{AdapterError, BackfillWindow, Recovered, StoreAdapter};
use storehook_db::{Job, JobKind, JobStatus, JobStep, NewJob, Source, Verdict};

use super::check::enabled_adapter;
use super::host::Host;
use crate::error::ApiError;
use crate::time_fmt::{rfc3339, rfc3339_opt};
use crate::{ingest, AppState};

const HOUR_MS: i64 = 3_600_000;
/// Consecutive transient failures (store down, storage down) before a job
/// gives up; with the backoff below that is about half an hour.
const MAX_TRANSIENT_FAILURES: u32 = 10;

/// `POST /v1/stores/{store}/backfill` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BackfillRequest {
    /// An RFC 3339 time, or a duration back from now (`10d`, `12h`, `90m`).
    pub since: String,
    /// Same forms; default now.
    #[serde(default)]
    pub until: Option<String>,
    #[serde(default)]
    pub only_failures: bool,
}

/// Reads `10d` / `12h` / `90m` (back from `now`) or an RFC 3339 time.
fn parse_when(text: &str, now_ms: i64) -> Option<i64> {
    let text = text.trim();
    let unit_ms = match text.chars().last()? {
        'd' => Some(24 * HOUR_MS),
        'h' => Some(HOUR_MS),
        'm' => Some(60_000),
        _ => None,
    };
    if let Some(unit) = unit_ms {
        if let Ok(n) = text[..text.len() - 1].parse::<i64>() {
            return (0..=3650 * 24 * 60).contains(&n).then(|| now_ms - n * unit);
        }
    }
    let at =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Creates a backfill job for `store` and wakes the runner.
pub(crate) async fn create_backfill(
    state: &Arc<AppState>,
    store: &str,
    request: BackfillRequest,
) -> Result<Value, ApiError> {
    let adapter = enabled_adapter(state, store)?;
    if !adapter.api_capabilities().backfill {
        return Err(ApiError::conflict(
            "no_api_credentials",
            format!("{store} has no API credentials configured, so there is nothing to recover from; see the README's \"Store APIs\""),
        ));
    }
    let now = state.store_apis.now_ms();
    let since = parse_when(&request.since, now).ok_or_else(|| {
        ApiError::bad_request(
            "bad_since",
            "`since` must be an RFC 3339 time or a duration such as 10d, 12h, 90m",
        )
    })?;
    let until = match &request.until {
        None => now,
        Some(text) => parse_when(text, now).ok_or_else(|| {
            ApiError::bad_request(
                "bad_until",
                "`until` must be an RFC 3339 time or a duration such as 1d",
            )
        })?,
    }
    .min(now);
    if since >= until {
        return Err(ApiError::bad_request(
            "empty_window",
            "`since` must be before `until` (and before now)",
        ));
    }
    let job = state
        .storage
        .create_job(NewJob {
            store: store.to_owned(),
            kind: JobKind::Backfill,
            window: BackfillWindow {
                since_ms: since,
                until_ms: until,
                only_failures: request.only_failures,
            },
            created_at_ms: now,
        })
        .await?;
    tracing::info!(store, job = job.id, "backfill queued");
    state.store_apis.jobs_wake.notify_one();
    Ok(job_json(&job))
}

/// `POST /v1/jobs/{id}/cancel`.
pub(crate) async fn cancel_job(state: &Arc<AppState>, id: i64) -> Result<Value, ApiError> {
    let job = state
        .storage
        .job(id)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown_job", format!("no job {id}")))?;
    if job.status.is_finished() {
        return Err(ApiError::conflict(
            "job_finished",
            format!("job {id} is already {}", job.status.as_str()),
        ));
    }
    let step = JobStep {
        status: Some(JobStatus::Cancelled),
        error: Some("cancelled by the operator".into()),
        at_ms: state.store_apis.now_ms(),
        ..Default::default()
    };
    let job = state.storage.update_job(id, step).await?.unwrap_or(job);
    if let Ok(mut cancelled) = state.store_apis.cancelled.lock() {
        cancelled.insert(id);
    }
    state.store_apis.cancel_wake.notify_waiters();
    Ok(job_json(&job))
}

pub(crate) fn job_json(job: &Job) -> Value {
    json!({
        "id": job.id,
        "store": job.store,
        "kind": job.kind,
        "status": job.status,
        "since": rfc3339(job.since_ms),
        "until": rfc3339(job.until_ms),
        "only_failures": job.only_failures,
        "pages": job.pages,
        "scanned": job.scanned,
        "recovered": job.recovered,
        "duplicates": job.duplicates,
        "skipped": job.skipped,
        "progress": job.progress,
        "error": job.error,
        "created_at": rfc3339(job.created_at_ms),
        "updated_at": rfc3339(job.updated_at_ms),
        "finished_at": rfc3339_opt(job.finished_at_ms),
    })
}

/// The runner: works through unfinished jobs oldest first, one at a time
/// (the stores' rate limits are per account), then waits for a new one.
pub(super) async fn run(state: Arc<AppState>) {
    let apis = &state.store_apis;
    let mut shutdown = apis.shutdown.clone();
    loop {
        if apis.stopping() {
            return;
        }
        let jobs = match state.storage.unfinished_jobs().await {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list backfill jobs; retrying");
                Vec::new()
            }
        };
        let mut worked = false;
        for job in jobs {
            // Another instance may be running it (several on one database).
            match state.storage.claim_job(job.id).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(job = job.id, error = %e, "cannot claim a backfill job");
                    continue;
                }
            }
            worked = true;
            run_job(&state, job).await;
            if apis.stopping() {
                return;
            }
        }
        if worked {
            continue;
        }
        tokio::select! {
            _ = apis.jobs_wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Runs one job until it is finished, cancelled, or the server stops.
async fn run_job(state: &Arc<AppState>, job: Job) {
    let apis = &state.store_apis;
    let adapter = match enabled_adapter(state, &job.store) {
        Ok(adapter) if adapter.api_capabilities().backfill => adapter,
        Ok(_) => {
            return finish(
                state,
                &job,
                JobStatus::Failed,
                "the store has no API credentials configured any more",
            )
            .await
        }
        Err(e) => return finish(state, &job, JobStatus::Failed, &e.message).await,
    };
    let progress = Arc::new(Mutex::new(Vec::new()));
    let host = Host {
        state: state.clone(),
        store: job.store.clone(),
        job: Some(job.id),
        progress: progress.clone(),
    };
    if job.status == JobStatus::Queued {
        step(
            state,
            &job,
            JobStep {
                status: Some(JobStatus::Running),
                ..Default::default()
            },
        )
        .await;
    } else {
        tracing::info!(store = %job.store, job = job.id, "resuming a backfill from its stored cursor");
    }
    let window = job.window();
    let mut cursor = job.cursor.clone();
    let mut failures = 0u32;
    loop {
        if apis.is_cancelled(job.id) || apis.stopping() {
            return;
        }
        // Each page renews the claim; a job another instance took over (this
        // one stalled past its lease) is left to it.
        if !matches!(state.storage.claim_job(job.id).await, Ok(true)) {
            tracing::warn!(job = job.id, "the backfill job is another instance's now");
            return;
        }
        let error = match adapter
            .backfill_page(storehook_core::BackfillRequest::new(
                &window,
                cursor.as_deref(),
                &host,
            ))
            .await
        {
            Ok(page) => match store_page(state, &job, page.recovered).await {
                Ok((recovered, duplicates)) => {
                    failures = 0;
                    let done = page.next_cursor.is_none();
                    let line = last_line(&progress).unwrap_or_else(|| {
                        format!("page done: {recovered} recovered, {duplicates} already stored")
                    });
                    let now_job = step(
                        state,
                        &job,
                        JobStep {
                            status: done.then_some(JobStatus::Done),
                            cursor: Some(page.next_cursor.clone()),
                            pages: 1,
                            scanned: page.scanned as i64,
                            recovered,
                            duplicates,
                            skipped: page.skipped as i64,
                            progress: Some(line),
                            ..Default::default()
                        },
                    )
                    .await;
                    if done || now_job.is_some_and(|j| j.status.is_finished()) {
                        if done {
                            tracing::info!(store = %job.store, job = job.id, "backfill done");
                        }
                        return;
                    }
                    cursor = page.next_cursor;
                    continue;
                }
                // Storage is down: the page is asked for again later (what
                // was stored of it is a duplicate then).
                Err(e) => AdapterError::unavailable("storage_unavailable", e.to_string()),
            },
            Err(e) => e,
        };
        let wait = match &error {
            AdapterError::RateLimited { retry_at_ms, .. } => {
                let now = apis.now_ms();
                let ms = retry_at_ms
                    .map(|at| at - now)
                    .unwrap_or(5_000)
                    .clamp(1_000, HOUR_MS);
                note(
                    state,
                    &job,
                    format!("the store asked to slow down; resuming in {} s", ms / 1000),
                )
                .await;
                Duration::from_millis(ms as u64)
            }
            e if e.is_transient() => {
                failures += 1;
                if failures >= MAX_TRANSIENT_FAILURES {
                    return finish(
                        state,
                        &job,
                        JobStatus::Failed,
                        &format!("gave up after {failures} failures: {}", e.message()),
                    )
                    .await;
                }
                let s = (1u64 << failures.min(8)).min(300);
                note(state, &job, format!("{}; retrying in {s} s", e.message())).await;
                Duration::from_secs(s)
            }
            e => return finish(state, &job, JobStatus::Failed, e.message()).await,
        };
        if !apis.pause(wait, Some(job.id)).await {
            return;
        }
    }
}

/// Stores one page's recovered items; counts new and already-stored ones.
async fn store_page(
    state: &Arc<AppState>,
    job: &Job,
    items: Vec<Recovered>,
) -> Result<(i64, i64), storehook_db::DbError> {
    let (mut recovered, mut duplicates) = (0, 0);
    for item in items {
        let now = state.store_apis.now_ms();
        match item {
            Recovered::Notification { outcome, raw_body } => {
                let stored = ingest::store_outcome(
                    state,
                    &job.store,
                    outcome,
                    raw_body,
                    Vec::new(),
                    now,
                    Source::Backfill,
                )
                .await?;
                if stored.verdict == Verdict::Duplicate {
                    duplicates += 1;
                } else {
                    recovered += 1;
                }
            }
            Recovered::State { key, update } => {
                state
                    .storage
                    .apply_state_update(&job.store, &key, update, now)
                    .await?;
                recovered += 1;
            }
        }
    }
    Ok((recovered, duplicates))
}

fn last_line(progress: &Mutex<Vec<String>>) -> Option<String> {
    let mut lines = progress.lock().ok()?;
    let last = lines.pop();
    lines.clear();
    last
}

async fn step(state: &AppState, job: &Job, mut step: JobStep) -> Option<Job> {
    step.at_ms = state.store_apis.now_ms();
    match state.storage.update_job(job.id, step).await {
        Ok(job) => job,
        Err(e) => {
            tracing::warn!(job = job.id, error = %e, "cannot record a backfill step");
            None
        }
    }
}

async fn note(state: &AppState, job: &Job, line: String) {
    tracing::warn!(store = %job.store, job = job.id, "{line}");
    step(
        state,
        job,
        JobStep {
            progress: Some(line),
            ..Default::default()
        },
    )
    .await;
}

async fn finish(state: &AppState, job: &Job, status: JobStatus, error: &str) {
    tracing::warn!(store = %job.store, job = job.id, status = status.as_str(), "backfill stopped: {error}");
    step(
        state,
        job,
        JobStep {
            status: Some(status),
            error: Some(error.to_owned()),
            ..Default::default()
        },
    )
    .await;
}

/// Catch-up: at start-up, one job per store covering the time since its
/// last pushed notification; then every `catch_up_interval_hours`, the
/// recent past. Only what the stores say they failed to deliver.
pub(super) async fn schedule_catch_ups(state: Arc<AppState>) {
    let config = state.store_apis.config.clone();
    if config.catch_up_interval_hours == 0 {
        return;
    }
    let stats = state.storage.store_stats().await.unwrap_or_default();
    for (store, _) in backfilling_stores(&state) {
        // A store that never pushed has nothing to catch up with yet.
        let Some(last) = stats
            .iter()
            .find(|s| s.store == store)
            .and_then(|s| s.last_received_ms)
        else {
            continue;
        };
        queue_catch_up(&state, &store, last - HOUR_MS).await;
    }
    let interval = Duration::from_secs(config.catch_up_interval_hours.saturating_mul(3600));
    while state.store_apis.pause(interval, None).await {
        let since =
            state.store_apis.now_ms() - (config.catch_up_lookback_hours.max(1) as i64) * HOUR_MS;
        for (store, _) in backfilling_stores(&state) {
            queue_catch_up(&state, &store, since).await;
        }
    }
}

fn backfilling_stores(state: &AppState) -> Vec<(String, Arc<dyn StoreAdapter>)> {
    state
        .registry
        .iter()
        .filter(|e| e.enabled)
        .filter_map(|e| Some((e.registration.id.to_owned(), e.adapter.clone()?)))
        .filter(|(_, a)| a.api_capabilities().backfill)
        .collect()
}

async fn queue_catch_up(state: &Arc<AppState>, store: &str, since_ms: i64) {
    let now = state.store_apis.now_ms();
    // One at a time per store: a catch-up still running covers this one.
    match state.storage.unfinished_jobs().await {
        Ok(jobs) if jobs.iter().any(|j| j.store == store) => return,
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(store, error = %e, "cannot queue a catch-up");
            return;
        }
    }
    let new = NewJob {
        store: store.to_owned(),
        kind: JobKind::CatchUp,
        window: BackfillWindow {
            since_ms: since_ms.min(now - 60_000),
            until_ms: now,
            only_failures: true,
        },
        created_at_ms: now,
    };
    match state.storage.create_job(new).await {
        Ok(job) => {
            tracing::info!(store, job = job.id, "catch-up queued");
            state.store_apis.jobs_wake.notify_one();
        }
        Err(e) => tracing::warn!(store, error = %e, "cannot queue a catch-up"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_read_durations_and_times() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_when("10d", now), Some(now - 10 * 24 * HOUR_MS));
        assert_eq!(parse_when("12h", now), Some(now - 12 * HOUR_MS));
        assert_eq!(parse_when("90m", now), Some(now - 90 * 60_000));
        assert_eq!(
            parse_when("2026-11-22T00:00:00Z", now),
            Some(1_795_305_600_000)
        );
        assert_eq!(parse_when("ten days", now), None);
        assert_eq!(parse_when("-3d", now), None);
        assert_eq!(parse_when("", now), None);
    }
}
