//! The example store's "API": what the host's tests use to drive the pull
//! side (checks, backfills, acknowledgements) with every answer chosen by
//! the test. The store's history is a file of example notifications, one
//! JSON object per line, that the test writes (and may append to while the
//! server runs); acknowledgements are appended to a log file, one key per
//! line, so a test can count them across restarts.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::Deserialize;
use storehook_core::{
    AckOutcome, AdapterError, ApiCapabilities, BackfillPage, BackfillRequest, CheckReport, Finding,
    IncomingRequest, Recovered, StoreHost, SubscriptionRef,
};

/// `[stores.example.api]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApiConfig {
    /// The store's notification history: JSON lines of example notifications.
    history_file: String,
    /// Notifications per backfill page.
    #[serde(default = "default_page_size")]
    page_size: usize,
    /// A pause before each page (lets a test restart the server mid-backfill).
    #[serde(default)]
    page_delay_ms: u64,
    /// `connected` (default) or `problem`: what the check finds.
    #[serde(default)]
    check: Option<String>,
    /// How long the check takes, with a progress line each second.
    #[serde(default)]
    check_seconds: u64,
    /// Acknowledge purchases whose state says so.
    #[serde(default)]
    acknowledge: bool,
    /// Where acknowledgements are logged (required with `acknowledge`).
    #[serde(default)]
    ack_log: Option<String>,
    /// How many acknowledgement attempts fail first (a store's `409`).
    #[serde(default)]
    ack_conflicts: u32,
}

fn default_page_size() -> usize {
    2
}

pub(crate) struct ExampleApi {
    history: PathBuf,
    page_size: usize,
    page_delay: Duration,
    check_problem: bool,
    check_seconds: u64,
    acknowledge: bool,
    ack_log: Option<PathBuf>,
    ack_conflicts: u32,
    ack_calls: AtomicU32,
}

impl ExampleApi {
    pub(crate) fn new(
        config: ApiConfig,
        resolve: impl Fn(&str) -> PathBuf,
    ) -> Result<Self, storehook_core::ConfigError> {
        let check_problem = match config.check.as_deref() {
            None | Some("connected") => false,
            Some("problem") => true,
            Some(other) => {
                return Err(storehook_core::ConfigError::key(
                    "example",
                    "api.check",
                    format!("expected `connected` or `problem`, not `{other}`"),
                ))
            }
        };
        if config.acknowledge && config.ack_log.is_none() {
            return Err(storehook_core::ConfigError::key(
                "example",
                "api.ack_log",
                "required with acknowledge = true",
            ));
        }
        Ok(ExampleApi {
            history: resolve(&config.history_file),
            page_size: config.page_size.max(1),
            page_delay: Duration::from_millis(config.page_delay_ms),
            check_problem,
            check_seconds: config.check_seconds,
            acknowledge: config.acknowledge,
            ack_log: config.ack_log.as_deref().map(resolve),
            ack_conflicts: config.ack_conflicts,
            ack_calls: AtomicU32::new(0),
        })
    }

    pub(crate) fn capabilities(&self) -> ApiCapabilities {
        ApiCapabilities {
            check: true,
            backfill: true,
            acknowledge: self.acknowledge,
        }
    }

    pub(crate) async fn check(&self, host: &dyn StoreHost) -> CheckReport {
        host.progress("asking the example store's API");
        for second in 1..=self.check_seconds {
            if !host.pause(Duration::from_secs(1)).await {
                break;
            }
            host.progress(&format!("waiting for the example store… {second} s"));
        }
        let url = host
            .notification_url()
            .unwrap_or_else(|| "(unknown)".into());
        let mut findings = vec![Finding::ok(
            "Credentials accepted",
            "The example store's API answered.",
        )];
        if self.check_problem {
            findings.push(
                Finding::error(
                    "The example store has no notification URL",
                    format!("Set it to {url} in the example store's console."),
                )
                .with_code("NO_URL"),
            );
        } else {
            findings.push(Finding::ok(
                "Notification URL",
                format!("The example store sends to {url}."),
            ));
        }
        CheckReport::from_findings(findings, false)
    }

    /// Pages over the history file's notifications whose `at` is in the
    /// window, in file order; the cursor is the next line's index.
    pub(crate) async fn backfill_page(
        &self,
        req: BackfillRequest<'_>,
        verify: impl Fn(&IncomingRequest) -> Result<storehook_core::Outcome, AdapterError>,
    ) -> Result<BackfillPage, AdapterError> {
        if !self.page_delay.is_zero() && !req.host.pause(self.page_delay).await {
            return Err(AdapterError::unavailable(
                "stopping",
                "the backfill was interrupted",
            ));
        }
        let start: usize = match req.cursor {
            None => 0,
            Some(c) => c
                .parse()
                .map_err(|_| AdapterError::malformed("bad_cursor", format!("cursor {c:?}")))?,
        };
        let text = tokio::fs::read_to_string(&self.history)
            .await
            .map_err(|e| AdapterError::unavailable("history_unreadable", e.to_string()))?;
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let end = (start + self.page_size).min(lines.len());
        let mut page = BackfillPage::default();
        for line in lines.get(start..end).unwrap_or_default() {
            page.scanned += 1;
            let at = serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v["at"].as_i64());
            if at.is_some_and(|at| !(req.window.since_ms..=req.window.until_ms).contains(&at)) {
                continue;
            }
            // An entry that does not decode is skipped and counted, as a
            // real store's unverifiable record would be.
            match verify(&IncomingRequest::new(line.to_owned(), req.host.now_ms())) {
                Ok(outcome) => page.recovered.push(Recovered::Notification {
                    outcome,
                    raw_body: line.as_bytes().to_vec(),
                }),
                Err(e) => {
                    page.skipped += 1;
                    req.host
                        .progress(&format!("skipped an entry: {}", e.message()));
                }
            }
        }
        req.host
            .progress(&format!("read {end} of {} history entries", lines.len()));
        page.next_cursor = (end < lines.len()).then(|| end.to_string());
        Ok(page)
    }

    pub(crate) async fn acknowledge(
        &self,
        purchase: SubscriptionRef<'_>,
    ) -> Result<AckOutcome, AdapterError> {
        let call = self.ack_calls.fetch_add(1, Ordering::SeqCst);
        if call < self.ack_conflicts {
            return Err(AdapterError::unavailable(
                "concurrent_update",
                "the example store is updating this purchase (simulated 409)",
            ));
        }
        let Some(log) = &self.ack_log else {
            return Ok(AckOutcome::NotNeeded);
        };
        let line = format!("{}\n", purchase.key);
        let log = log.clone();
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)?;
            f.write_all(line.as_bytes())?;
            f.sync_all()
        })
        .await
        .map_err(|e| AdapterError::unavailable("ack_log", e.to_string()))?
        .map_err(|e| AdapterError::unavailable("ack_log", e.to_string()))?;
        Ok(AckOutcome::Acknowledged)
    }
}
