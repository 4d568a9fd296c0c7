//! The pull side: what a store's own API adds to what it pushes. An
//! adapter with API credentials can confirm the connection on demand
//! ([`StoreAdapter::check_connection`](crate::StoreAdapter::check_connection)),
//! recover notifications the store failed to deliver
//! ([`StoreAdapter::backfill_page`](crate::StoreAdapter::backfill_page)) and
//! acknowledge purchases where the store requires it
//! ([`StoreAdapter::acknowledge`](crate::StoreAdapter::acknowledge)).
//!
//! The host owns everything durable around these calls: jobs, cursors,
//! retries, the stored check results. An adapter only talks to its store,
//! and reaches the host's state through [`StoreHost`].

use serde::{Deserialize, Serialize};

use crate::{AdapterError, Outcome, StateUpdate};

/// What an adapter can do through its store's API, given its configuration
/// (credentials present or not). The host shows and schedules only these.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ApiCapabilities {
    /// `check_connection` does more than say "not configured".
    pub check: bool,
    /// `backfill_page` recovers missed notifications.
    pub backfill: bool,
    /// `acknowledge` must be called for purchases whose state says so.
    pub acknowledge: bool,
}

impl ApiCapabilities {
    /// A store with nothing to acknowledge: checks and backfills when the
    /// adapter has the store's API credentials (`api`), else nothing.
    pub const fn without_acknowledgement(api: bool) -> Self {
        Self {
            check: api,
            backfill: api,
            acknowledge: false,
        }
    }
}

/// How a connection check ended, worst finding first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckVerdict {
    /// Every part answered as it should.
    Connected,
    /// Something is misconfigured; the findings say what to do.
    Problem,
    /// The store's API could not be reached or answered 5xx: try again later.
    Unavailable,
    /// No API credentials are configured, so there is nothing to check.
    NotConfigured,
}

impl CheckVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckVerdict::Connected => "connected",
            CheckVerdict::Problem => "problem",
            CheckVerdict::Unavailable => "unavailable",
            CheckVerdict::NotConfigured => "not_configured",
        }
    }
}

/// How a finding bears on the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingLevel {
    Ok,
    Info,
    Warning,
    /// The connection does not work until this is fixed.
    Error,
}

/// One thing a check found, in plain words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub level: FindingLevel,
    /// What was checked or seen ("Sandbox: Apple delivered the test notification").
    pub title: String,
    /// What it means and, for a problem, what to do.
    pub detail: String,
    /// The store's own value, kept raw (`TLS_ISSUE`, `4040007`), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl Finding {
    pub fn new(level: FindingLevel, title: impl Into<String>, detail: impl Into<String>) -> Self {
        Finding {
            level,
            title: title.into(),
            detail: detail.into(),
            code: None,
        }
    }

    pub fn ok(title: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FindingLevel::Ok, title, detail)
    }

    pub fn info(title: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FindingLevel::Info, title, detail)
    }

    pub fn warning(title: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FindingLevel::Warning, title, detail)
    }

    pub fn error(title: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FindingLevel::Error, title, detail)
    }

    /// The same finding, carrying the store's raw value.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }
}

/// The result of one connection check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    pub verdict: CheckVerdict,
    /// One sentence for the card and the CLI.
    pub summary: String,
    pub findings: Vec<Finding>,
    /// Notifications the store says it failed to deliver and a backfill
    /// could recover (Stripe: events with `delivery_success=false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recoverable: Option<u64>,
}

impl CheckReport {
    /// The verdict follows the worst finding: any error is a problem, and
    /// an error caused by the store being unreachable says so.
    pub fn from_findings(findings: Vec<Finding>, unavailable: bool) -> Self {
        let worst = findings.iter().map(|f| f.level).max();
        let verdict = if unavailable {
            CheckVerdict::Unavailable
        } else if worst == Some(FindingLevel::Error) {
            CheckVerdict::Problem
        } else {
            CheckVerdict::Connected
        };
        let summary = match verdict {
            CheckVerdict::Connected => match findings
                .iter()
                .filter(|f| f.level == FindingLevel::Warning)
                .count()
            {
                0 => "Connected.".to_owned(),
                n => format!(
                    "Connected, with {n} warning{}.",
                    if n == 1 { "" } else { "s" }
                ),
            },
            _ => findings
                .iter()
                .find(|f| f.level == FindingLevel::Error)
                .map(|f| f.title.clone())
                .unwrap_or_else(|| "The store's API could not be reached.".to_owned()),
        };
        CheckReport {
            verdict,
            summary,
            findings,
            recoverable: None,
        }
    }

    /// No credentials: what to configure to enable the check.
    pub fn not_configured(what_to_configure: impl Into<String>) -> Self {
        CheckReport {
            verdict: CheckVerdict::NotConfigured,
            summary: "No API credentials are configured for this store.".to_owned(),
            findings: vec![Finding::info("API credentials", what_to_configure.into())],
            recoverable: None,
        }
    }

    pub fn connected(&self) -> bool {
        self.verdict == CheckVerdict::Connected
    }
}

/// The window a backfill covers, Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillWindow {
    pub since_ms: i64,
    pub until_ms: i64,
    /// Only what the store failed to deliver (Apple `onlyFailures`, Stripe
    /// `delivery_success=false`); otherwise everything in the window.
    pub only_failures: bool,
}

/// One call of [`StoreAdapter::backfill_page`](crate::StoreAdapter::backfill_page):
/// the window, where in it to go on (`cursor`, `None` for the first page)
/// and the host to ask. One value rather than three, so an adapter hands it
/// on to its own code whole.
#[derive(Clone, Copy)]
pub struct BackfillRequest<'a> {
    pub window: &'a BackfillWindow,
    pub cursor: Option<&'a str>,
    pub host: &'a dyn StoreHost,
}

impl<'a> BackfillRequest<'a> {
    pub fn new(
        window: &'a BackfillWindow,
        cursor: Option<&'a str>,
        host: &'a dyn StoreHost,
    ) -> Self {
        Self {
            window,
            cursor,
            host,
        }
    }
}

/// One thing a backfill recovered.
#[derive(Debug, Clone, PartialEq)]
pub enum Recovered {
    /// A notification, verified and mapped by the adapter, that goes through
    /// the same storage path as a pushed one (so one already received is a
    /// duplicate). `raw_body` is what is stored as its raw request body.
    Notification { outcome: Outcome, raw_body: Vec<u8> },
    /// A subscription's state re-read from the store's API.
    State { key: String, update: StateUpdate },
}

/// One page of a backfill.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BackfillPage {
    /// In store order (oldest first where the store allows).
    pub recovered: Vec<Recovered>,
    /// Where the next page starts; `None` when the window is done. Opaque
    /// to the host, stored with the job so a restart resumes here.
    pub next_cursor: Option<String>,
    /// Records the store returned for this page, recovered or not.
    pub scanned: u64,
    /// Of those, records that could not be used: a payload that did not
    /// verify, an unreadable event. Counted on the job (the progress line
    /// says which and why).
    pub skipped: u64,
}

/// What `acknowledge` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckOutcome {
    /// Acknowledged now.
    Acknowledged,
    /// The store says it was acknowledged already (by the app, or earlier).
    AlreadyAcknowledged,
    /// The store says there is nothing to acknowledge (expired, pending payment…).
    NotNeeded,
}

/// A tracked subscription (or one-time purchase), as the host lists them
/// to an adapter: what its notifications said of it.
pub type TrackedSubscription = crate::PurchaseRef;

/// What an adapter may ask of the host during a check or a backfill.
#[async_trait::async_trait]
pub trait StoreHost: Send + Sync {
    /// This store's notification URL as the store must call it
    /// (`[server] public_url` + `/v1/notifications/<id>`), when known.
    fn notification_url(&self) -> Option<String>;
    /// The current time, Unix milliseconds (injected in tests).
    fn now_ms(&self) -> i64;
    /// Whether a notification with this store id has been recorded.
    async fn has_notification(&self, notification_id: &str) -> Result<bool, AdapterError>;
    /// Tracked subscriptions of this store in key order, after `after`,
    /// except those that ended more than 60 days ago and those revoked (a
    /// refund or revocation is final: a state read later says nothing new,
    /// and has been seen to say "active" after a void).
    async fn tracked_subscriptions(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TrackedSubscription>, AdapterError>;
    /// A line of progress for whoever watches (dashboard, CLI).
    fn progress(&self, line: &str);
    /// Waits, returning early with `false` when the work was cancelled or the
    /// server stops; adapters sleep through this, never `tokio::time::sleep`.
    async fn pause(&self, duration: std::time::Duration) -> bool;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_follows_the_worst_finding() {
        let report = CheckReport::from_findings(
            vec![Finding::ok("a", "fine"), Finding::warning("b", "hmm")],
            false,
        );
        assert_eq!(report.verdict, CheckVerdict::Connected);
        assert_eq!(report.summary, "Connected, with 1 warning.");
        let report = CheckReport::from_findings(
            vec![
                Finding::ok("a", "fine"),
                Finding::error("Endpoint disabled", "enable it"),
            ],
            false,
        );
        assert_eq!(report.verdict, CheckVerdict::Problem);
        assert_eq!(report.summary, "Endpoint disabled");
        let report = CheckReport::from_findings(vec![Finding::error("x", "y")], true);
        assert_eq!(report.verdict, CheckVerdict::Unavailable);
        assert!(!report.connected());
    }

    #[test]
    fn reports_round_trip_through_json() {
        let report = CheckReport::from_findings(
            vec![Finding::error("Sandbox: TLS", "fix the chain").with_code("TLS_ISSUE")],
            false,
        );
        let json = serde_json::to_string(&report).unwrap();
        assert!(json.contains("\"code\":\"TLS_ISSUE\""), "{json}");
        let back: CheckReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
    }
}
