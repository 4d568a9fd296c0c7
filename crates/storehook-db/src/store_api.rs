//! What the pull side keeps (backend-neutral types): the last connection
//! check of each store, backfill jobs with their cursors, and the queue of
//! purchases to acknowledge.

use serde::Serialize;
use storehook_core::{AckOutcome, BackfillWindow, CheckReport};

/// Where a stored notification came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The store pushed it.
    #[default]
    Push,
    /// A backfill recovered it from the store's API.
    Backfill,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Push => "push",
            Source::Backfill => "backfill",
        }
    }

    pub fn parse(s: &str) -> Self {
        if s == "backfill" {
            Source::Backfill
        } else {
            Source::Push
        }
    }
}

/// A store's latest connection check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredCheck {
    pub store: String,
    pub checked_at_ms: i64,
    pub report: CheckReport,
}

/// Why a backfill job exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Asked for by the operator (API, CLI, dashboard).
    Backfill,
    /// Started by storehook: periodically and at start-up.
    CatchUp,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Backfill => "backfill",
            JobKind::CatchUp => "catch_up",
        }
    }

    fn parse(s: &str) -> Self {
        if s == "catch_up" {
            JobKind::CatchUp
        } else {
            JobKind::Backfill
        }
    }
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Done => "done",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "running" => JobStatus::Running,
            "done" => JobStatus::Done,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            _ => JobStatus::Queued,
        }
    }

    /// Done, failed or cancelled: nothing more happens to it.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobStatus::Done | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

/// A job to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub store: String,
    pub kind: JobKind,
    pub window: BackfillWindow,
    pub created_at_ms: i64,
}

/// A backfill job and how far it has come.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Job {
    pub id: i64,
    pub store: String,
    pub kind: JobKind,
    pub since_ms: i64,
    pub until_ms: i64,
    pub only_failures: bool,
    pub status: JobStatus,
    /// Where the next page starts (the adapter's opaque cursor).
    #[serde(skip)]
    pub cursor: Option<String>,
    pub pages: i64,
    /// Records the store returned.
    pub scanned: i64,
    /// Notifications new to storehook, and state re-reads applied.
    pub recovered: i64,
    /// Notifications storehook had already.
    pub duplicates: i64,
    /// Records that could not be used (did not verify, unreadable).
    pub skipped: i64,
    /// The latest progress line.
    pub progress: Option<String>,
    pub error: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub finished_at_ms: Option<i64>,
}

impl Job {
    pub fn window(&self) -> BackfillWindow {
        BackfillWindow {
            since_ms: self.since_ms,
            until_ms: self.until_ms,
            only_failures: self.only_failures,
        }
    }
}

/// One step of a job: a committed page (counters to add, the next cursor)
/// and/or a change of status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobStep {
    pub status: Option<JobStatus>,
    /// `Some(None)`: the window is done.
    pub cursor: Option<Option<String>>,
    pub pages: i64,
    pub scanned: i64,
    pub recovered: i64,
    pub duplicates: i64,
    pub skipped: i64,
    pub progress: Option<String>,
    pub error: Option<String>,
    pub at_ms: i64,
}

/// A store's tracked subscriptions whose renewal or expiry is overdue: the
/// time passed with no notification about them since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Overdue {
    pub store: String,
    pub count: i64,
    pub oldest_subscription_id: String,
    /// When the oldest one was due (its expiry), Unix ms.
    pub oldest_due_ms: i64,
}

/// A purchase whose acknowledgement is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueAcknowledgement {
    pub store: String,
    pub subscription_id: String,
    pub app_id: Option<String>,
    /// The product and the kind of purchase, as its notifications (or the
    /// state read that queued it) named them.
    pub product_id: Option<String>,
    pub kind: Option<storehook_core::PurchaseKind>,
    pub attempts: i64,
}

impl DueAcknowledgement {
    /// What the adapter is asked to acknowledge.
    pub fn purchase(&self) -> storehook_core::SubscriptionRef<'_> {
        storehook_core::SubscriptionRef::new(&self.subscription_id, self.app_id.as_deref())
            .with_product(self.product_id.as_deref(), self.kind)
    }
}

/// What became of one acknowledgement attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckAttempt {
    /// Finished: acknowledged now, already, or not needed.
    Finished(AckOutcome),
    /// Try again at this time (the store was busy, or refused for now).
    Retry { at_ms: i64, error: String },
}

/// How an outcome stands in the `status` column of `acknowledgements`.
pub(crate) fn ack_status(outcome: &AckOutcome) -> &'static str {
    match outcome {
        AckOutcome::Acknowledged => "acknowledged",
        AckOutcome::AlreadyAcknowledged => "already",
        AckOutcome::NotNeeded => "not_needed",
    }
}

/// Acknowledgements of one store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AckStats {
    pub store: String,
    /// Purchases the store still says are not acknowledged.
    pub pending: i64,
    /// Of those, pending longer than the warning threshold.
    pub overdue: i64,
    pub acknowledged: i64,
}

/// A subscription that ended this long ago is not listed to adapters: the
/// stores' APIs have nothing new about it (Google answers 410 for a token 60
/// days after it expired), and re-reading it at every catch-up spends quota.
pub(crate) const ENDED_LONG_AGO_MS: i64 = 60 * 86_400_000;

pub(crate) fn job_kind(s: &str) -> JobKind {
    JobKind::parse(s)
}
