//! Charts: what the host asks storage for and what it gets back.
//!
//! Definitions follow RevenueCat's (README, "Charts"). Storage keeps chart
//! tables up to date in each notification's own transaction (one row per
//! billing period plus per-day deltas), so answering a [`ChartQuery`] is a
//! running sum over a small table and never a scan of the notification log.
//! Buckets are UTC calendar days, ISO weeks (Monday) and calendar months.

use serde::Serialize;
use storehook_core::Environment;

/// A chart the dashboard and `GET /v1/charts/{metric}` can draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChartMetric {
    /// Paid, unexpired subscriptions at the end of each bucket (a grace
    /// period counts until it ends; trials excluded). A stock.
    ActiveSubscriptions,
    /// Unexpired free trials at the end of each bucket. A stock.
    ActiveTrials,
    /// Initial purchases of a paid subscription in the bucket. A trial
    /// start is not one; its first payment counts in `trial_conversions`. A flow.
    NewSubscriptions,
    /// Trials whose first payment fell in the bucket. A flow.
    TrialConversions,
    /// Paid renewals (not the first payment). A flow.
    Renewals,
    /// Paid subscriptions that expired in the bucket. A flow.
    Churned,
    /// (churned − reactivated) / active subscriptions at the bucket's start, in percent.
    ChurnRate,
    /// Expired subscriptions that became paid and active again. A flow.
    Reactivations,
    /// Each active paid subscription's price normalized to a month, at the
    /// end of each bucket, one series per currency. A stock.
    Mrr,
    /// Money received in the bucket, refunds subtracted on the refund date,
    /// one series per currency. A flow.
    Revenue,
    /// Refunds: a count series and one amount series per currency. A flow.
    Refunds,
    /// Billing issues (failed renewals) begun in the bucket. A flow.
    BillingIssues,
    /// Time from the store's event to storehook's commit: series "p50" and "p95".
    Lag,
    /// Notifications stored per store: one series per store. A flow.
    Events,
}

impl ChartMetric {
    pub const ALL: [ChartMetric; 14] = [
        ChartMetric::ActiveSubscriptions,
        ChartMetric::ActiveTrials,
        ChartMetric::NewSubscriptions,
        ChartMetric::TrialConversions,
        ChartMetric::Renewals,
        ChartMetric::Churned,
        ChartMetric::ChurnRate,
        ChartMetric::Reactivations,
        ChartMetric::Mrr,
        ChartMetric::Revenue,
        ChartMetric::Refunds,
        ChartMetric::BillingIssues,
        ChartMetric::Lag,
        ChartMetric::Events,
    ];

    /// The name in URLs (`/v1/charts/active_subscriptions`).
    pub fn as_str(self) -> &'static str {
        match self {
            ChartMetric::ActiveSubscriptions => "active_subscriptions",
            ChartMetric::ActiveTrials => "active_trials",
            ChartMetric::NewSubscriptions => "new_subscriptions",
            ChartMetric::TrialConversions => "trial_conversions",
            ChartMetric::Renewals => "renewals",
            ChartMetric::Churned => "churned",
            ChartMetric::ChurnRate => "churn_rate",
            ChartMetric::Reactivations => "reactivations",
            ChartMetric::Mrr => "mrr",
            ChartMetric::Revenue => "revenue",
            ChartMetric::Refunds => "refunds",
            ChartMetric::BillingIssues => "billing_issues",
            ChartMetric::Lag => "lag",
            ChartMetric::Events => "events",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        ChartMetric::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// What a point's value is a number of.
    pub fn unit(self) -> ChartUnit {
        match self {
            ChartMetric::ChurnRate => ChartUnit::Percent,
            ChartMetric::Mrr | ChartMetric::Revenue => ChartUnit::Money,
            ChartMetric::Lag => ChartUnit::Milliseconds,
            _ => ChartUnit::Count,
        }
    }

    /// A stock is read at the end of each bucket; a flow is summed over it.
    pub fn is_stock(self) -> bool {
        matches!(
            self,
            ChartMetric::ActiveSubscriptions | ChartMetric::ActiveTrials | ChartMetric::Mrr
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChartUnit {
    Count,
    Percent,
    /// In the series' currency's standard unit (9.99), never converted
    /// unless the series says `converted`.
    Money,
    Milliseconds,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChartBucket {
    /// A UTC calendar day.
    Day,
    /// An ISO week, Monday 00:00 UTC to the next Monday.
    Week,
    /// A UTC calendar month.
    Month,
}

impl ChartBucket {
    pub fn as_str(self) -> &'static str {
        match self {
            ChartBucket::Day => "day",
            ChartBucket::Week => "week",
            ChartBucket::Month => "month",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [ChartBucket::Day, ChartBucket::Week, ChartBucket::Month]
            .into_iter()
            .find(|b| b.as_str() == s)
    }
}

/// One chart to compute. `None` filters mean "all".
#[derive(Debug, Clone, PartialEq)]
pub struct ChartQuery {
    pub metric: ChartMetric,
    pub store: Option<String>,
    pub app: Option<String>,
    pub product: Option<String>,
    /// Production by default; sandbox is its own world, never mixed in.
    pub environment: Environment,
    /// The first bucket is the one containing `from_ms`; the last the one
    /// containing `to_ms` (inclusive). Unix ms, UTC.
    pub from_ms: i64,
    pub to_ms: i64,
    pub bucket: ChartBucket,
    /// "Now", for marking the current bucket incomplete (injected for tests).
    pub now_ms: i64,
}

impl ChartQuery {
    /// Every store, app and product of production, between `from_ms` and
    /// `to_ms`; set a filter field on the result to narrow it.
    pub fn unfiltered(
        metric: ChartMetric,
        bucket: ChartBucket,
        from_ms: i64,
        to_ms: i64,
        now_ms: i64,
    ) -> Self {
        ChartQuery {
            metric,
            store: None,
            app: None,
            product: None,
            environment: Environment::Production,
            from_ms,
            to_ms,
            bucket,
            now_ms,
        }
    }
}

/// A computed chart: one or more series over the same buckets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chart {
    pub metric: ChartMetric,
    pub unit: ChartUnit,
    pub bucket: ChartBucket,
    /// The start of every bucket, oldest first (Unix ms, UTC).
    pub buckets: Vec<i64>,
    /// Whether each bucket is still running (contains `now_ms`) or lies in
    /// the future: its value can still change.
    pub incomplete: Vec<bool>,
    pub series: Vec<ChartSeries>,
}

/// One line of a chart: values per bucket, aligned with [`Chart::buckets`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChartSeries {
    /// What the line is: "all", a currency ("USD"), a store id, "p50"/"p95",
    /// "count"; for a converted money total "total (converted to EUR)".
    pub label: String,
    /// For money series: the ISO 4217 code the values are in.
    pub currency: Option<String>,
    /// A total converted with the operator's `[charts] rates`, not a store's figure.
    pub converted: bool,
    /// `None` where the bucket has no value (a rate over zero, a lag
    /// percentile of no notification).
    pub values: Vec<Option<f64>>,
}
