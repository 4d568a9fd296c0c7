//! Charts: what a notification does to the chart tables, and how a chart
//! is read from them. Written once; both backends call it through
//! [`ChartLedger`] primitives.
//!
//! A subscription's billing periods are derived from all its stored
//! notifications, sorted in store order as the fold sorts them, so arrival
//! order never matters. When a notification arrives, the periods and their
//! per-day deltas are derived twice — without it and with it — and only
//! the difference is added to the delta table: late and out-of-order
//! arrivals adjust the days they concern, and the tables always equal a
//! rebuild from scratch. A duplicate is never stored, so it changes nothing.

use std::collections::BTreeMap;

use storehook_core::{EventDetails, EventType, ImpliedState, SubscriptionStatus};

use super::{from_json_opt, Ledger, Tally};
use crate::charts::{Chart, ChartBucket, ChartMetric, ChartQuery, ChartSeries};
use crate::{DbError, NewNotification};

pub(crate) const DAY_MS: i64 = 86_400_000;

/// The UTC day (days since 1970-01-01) of a Unix ms time.
pub(crate) fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// One stored notification of a subscription, or one fetched state of
/// it, as charts read it.
#[derive(Debug, Clone)]
pub(crate) struct ChartFact {
    /// The notification's id; `fetch:{row}` for a fetched state.
    pub notification_id: String,
    /// The store's time of the event; a fetch's time for a fetched state.
    pub occurred_at_ms: i64,
    pub event_type: Option<EventType>,
    pub environment: String,
    pub app_id: Option<String>,
    pub product_id: Option<String>,
    pub state: ImpliedState,
    pub details: EventDetails,
    /// A state read from the store's API rather than a notification: it
    /// reports the current period, not an event.
    pub fetched: bool,
}

/// A chart fact's columns as both backends read them
/// ([`crate::sql_common::chart_facts`]).
pub(crate) struct ChartFactColumns {
    pub id: String,
    pub occurred_at: Option<i64>,
    pub event_type: Option<String>,
    pub environment: Option<String>,
    pub app_id: Option<String>,
    pub product_id: Option<String>,
    pub state_json: Option<String>,
    pub details_json: Option<String>,
    pub fetched: bool,
}

impl ChartFactColumns {
    pub fn into_fact(self) -> Result<ChartFact, DbError> {
        Ok(ChartFact {
            notification_id: self.id,
            occurred_at_ms: self.occurred_at.unwrap_or(0),
            event_type: self.event_type.as_deref().and_then(EventType::parse),
            environment: self.environment.unwrap_or_default(),
            app_id: self.app_id,
            product_id: self.product_id,
            state: from_json_opt(self.state_json.as_deref())?.unwrap_or_default(),
            details: from_json_opt(self.details_json.as_deref())?.unwrap_or_default(),
            fetched: self.fetched,
        })
    }
}

impl ChartFact {
    /// This start event (which carried no expiry) completed by a fetched
    /// state: the period's end, product, price and trial flag from the
    /// store's API; its start, environment and app stay the event's.
    fn completed_by(&self, fetch: &ChartFact) -> ChartFact {
        let mut done = self.clone();
        done.state.expires_at_ms = fetch.state.expires_at_ms;
        if fetch.state.product_id.is_some() {
            done.state.product_id = fetch.state.product_id.clone();
        }
        // The store's API describes the period itself; the event may only
        // have guessed (or said nothing).
        let (d, f) = (&mut done.details, &fetch.details);
        d.price = f.price.or(d.price);
        d.currency = f.currency.clone().or_else(|| d.currency.take());
        d.is_trial = f.is_trial.or(d.is_trial);
        done
    }
}

/// What a billing period is, for the flow counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeriodKind {
    /// A free trial.
    Trial,
    /// The subscription's first paid period, not straight after a trial.
    New,
    /// The first paid period, straight after a trial.
    TrialConversion,
    /// A paid period straight after a paid one.
    Renewal,
    /// A paid period after the subscription had expired.
    Reactivation,
    /// A paid period that replaces the current one early (an upgrade).
    ProductChange,
}

impl PeriodKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PeriodKind::Trial => "trial",
            PeriodKind::New => "new",
            PeriodKind::TrialConversion => "trial_conversion",
            PeriodKind::Renewal => "renewal",
            PeriodKind::Reactivation => "reactivation",
            PeriodKind::ProductChange => "product_change",
        }
    }

    /// The flow counter a period of this kind adds one to at its start.
    fn counter(self) -> Option<&'static str> {
        match self {
            PeriodKind::New => Some("new_subscriptions"),
            PeriodKind::TrialConversion => Some("trial_conversions"),
            PeriodKind::Renewal => Some("renewals"),
            PeriodKind::Reactivation => Some("reactivations"),
            PeriodKind::Trial | PeriodKind::ProductChange => None,
        }
    }
}

/// One billing period (RevenueCat's `sub_period` shape).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Period {
    pub start_ms: i64,
    /// When access really ended or ends: the period's end, extended by a
    /// grace period, cut short by a refund, revocation, expiry or the next
    /// period's early start.
    pub end_ms: i64,
    /// The end the store billed for (sets the MRR normalization).
    pub nominal_end_ms: i64,
    pub environment: String,
    pub app_id: String,
    pub product_id: String,
    pub is_trial: bool,
    /// 1 for the first paid period, 2 for the next…; 0 for a trial.
    pub renewal_number: i64,
    pub kind: PeriodKind,
    /// Price in millionths of the currency's unit (`None`: the store did not say).
    pub price_micros: Option<i64>,
    pub currency: String,
    /// The price normalized to a month, in millionths (paid periods with a price).
    pub mrr_micros: Option<i64>,
    pub refunded_at_ms: Option<i64>,
    /// Paid, and no paid or trial period follows without a gap: the
    /// subscription churns at `end_ms`.
    pub churned: bool,
    /// What started it (an upgrade starts a `ProductChange` period).
    started_by: EventType,
}

/// One cell of the per-day delta table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct DeltaKey {
    pub metric: &'static str,
    pub environment: String,
    pub day: i64,
    pub store: String,
    pub app_id: String,
    pub product_id: String,
    /// Empty for counts.
    pub currency: String,
}

/// One cell of the lag histogram: notifications of a store, received on a
/// day, whose lag fell in a bin. Each notification counts twice: once per
/// store (`product: None`, the table every unfiltered read sums, kept
/// small) and once per app and product (`Some((app, product))`, read only
/// when a chart filters on them).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct LagKey {
    pub environment: String,
    pub store: String,
    pub day: i64,
    pub bin: i64,
    pub product: Option<(String, String)>,
}

/// What one stored notification adds to the events and lag charts.
#[derive(Debug, Clone)]
pub(crate) struct NotificationTimes {
    pub store: String,
    pub environment: String,
    pub app_id: Option<String>,
    pub product_id: Option<String>,
    pub occurred_at_ms: i64,
    pub received_at_ms: i64,
}

/// The chart tables' primitives, one statement each in the backend's dialect.
pub(crate) trait ChartLedger {
    /// Every stored (not rejected) notification of a subscription, in any order.
    fn chart_facts(&self, store: &str, key: &str) -> Result<Vec<ChartFact>, DbError>;
    /// Removes every row of a subscription from the period table.
    fn delete_chart_periods(&self, store: &str, key: &str) -> Result<(), DbError>;
    /// Replaces a subscription's rows in the period table.
    fn replace_chart_periods(
        &self,
        store: &str,
        key: &str,
        periods: &[Period],
    ) -> Result<(), DbError> {
        self.delete_chart_periods(store, key)?;
        for p in periods {
            self.upsert_chart_period(store, key, p)?;
        }
        Ok(())
    }
    /// Writes one period row (replacing the one with the same start).
    fn upsert_chart_period(&self, store: &str, key: &str, period: &Period) -> Result<(), DbError>;
    /// Removes the period row that started at `start_ms`.
    fn delete_chart_period(&self, store: &str, key: &str, start_ms: i64) -> Result<(), DbError>;
    /// Adds `value` to one cell of the delta table.
    fn add_chart_delta(&self, key: &DeltaKey, value: i64) -> Result<(), DbError>;
    /// Adds `count` to one cell of the lag histogram.
    fn add_chart_lag(&self, key: &LagKey, count: i64) -> Result<(), DbError>;
    /// Every subscription with a stored notification (for a rebuild).
    fn chart_subscriptions(&self) -> Result<Vec<(String, String)>, DbError>;
    /// Stored notifications after row `after`, oldest first, at most `limit`.
    fn notification_times(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, NotificationTimes)>, DbError>;
    /// Empties the chart tables.
    fn clear_charts(&self) -> Result<(), DbError>;
    /// Whether a migration asked for a rebuild; clears the request.
    fn take_chart_rebuild_request(&self) -> Result<bool, DbError>;
}

// ---- the write side ----

/// Keeps the chart tables in step with one newly stored notification (in
/// its own transaction). The period rows are written here; the counter
/// cells go to the batch's `tally`, written once before the commit.
pub(crate) fn on_notification<L: ChartLedger + ?Sized>(
    l: &L,
    new: &NewNotification,
    tally: &mut Tally,
) -> Result<(), DbError> {
    let n = &new.notification;
    let times = NotificationTimes {
        store: n.store.clone(),
        environment: n.environment.as_str().to_owned(),
        app_id: n.app_id.clone(),
        product_id: n.product_id.clone(),
        occurred_at_ms: n.occurred_at_ms,
        received_at_ms: new.received_at_ms,
    };
    tally.add_delta(events_key(&times), 1);
    for key in lag_keys(&times) {
        tally.add_lag(key, 1);
    }
    let Some(key) = &n.subscription_key else {
        return Ok(());
    };
    if !shapes_periods(n.event_type) {
        // Periods are derived as if it were not there, and it adds no
        // per-day cell of its own: nothing to read, derive or write.
        return Ok(());
    }
    rechart(l, &n.store, key, &n.notification_id, tally)
}

/// Whether a notification of this type can change a subscription's
/// billing periods or add a cell of its own (billing issues). Every other
/// type is skipped by [`derive_periods`], so its arrival changes no chart
/// table but the events and lag counts. Exhaustive on purpose: a new
/// event type must be decided here.
pub(crate) fn shapes_periods(event: EventType) -> bool {
    match event {
        EventType::InitialPurchase
        | EventType::Renewal
        | EventType::ProductChange
        | EventType::Refund
        | EventType::RefundReversed
        | EventType::Expiration
        | EventType::GracePeriodExpired
        | EventType::Revoke
        | EventType::BillingIssue
        | EventType::SubscriptionExtended => true,
        EventType::Test
        | EventType::Cancellation
        | EventType::Uncancellation
        | EventType::NonRenewingPurchase
        | EventType::SubscriptionPaused
        | EventType::SubscriptionResumed
        | EventType::PriceIncrease
        | EventType::Other => false,
    }
}

/// Keeps the chart tables in step with one newly stored fetched state (row
/// `snapshot_id` of the state snapshots), in its own transaction.
pub(crate) fn on_state_fetch<L: ChartLedger + ?Sized>(
    l: &L,
    store: &str,
    key: &str,
    snapshot_id: i64,
    tally: &mut Tally,
) -> Result<(), DbError> {
    rechart(l, store, key, &format!("fetch:{snapshot_id}"), tally)
}

/// Re-derives a subscription's periods without and with the fact that just
/// arrived (`arrived_id`), writes the period rows that changed, and puts
/// the difference in the per-day cells into the batch's `tally`.
fn rechart<L: ChartLedger + ?Sized>(
    l: &L,
    store: &str,
    key: &str,
    arrived_id: &str,
    tally: &mut Tally,
) -> Result<(), DbError> {
    let after = l.chart_facts(store, key)?;
    let (arrived, before): (Vec<&ChartFact>, Vec<&ChartFact>) =
        after.iter().partition(|f| f.notification_id == arrived_id);
    let old = derive_periods(before);
    let new_periods = derive_periods(&after);
    // A period the arrival left as it was adds the same deltas with it and
    // without it: only the periods that changed (usually the one before
    // and the new one) and the arrival's own facts make the difference.
    let gone: Vec<Period> = old
        .iter()
        .filter(|p| !new_periods.contains(p))
        .cloned()
        .collect();
    let came: Vec<Period> = new_periods
        .iter()
        .filter(|p| !old.contains(p))
        .cloned()
        .collect();
    let mut diff = deltas(store, &came, arrived);
    for (k, v) in deltas(store, &gone, []) {
        *diff.entry(k).or_default() -= v;
    }
    for (k, v) in diff.into_iter().filter(|(_, v)| *v != 0) {
        tally.add_delta(k, v);
    }
    for p in &gone {
        if !came.iter().any(|q| q.start_ms == p.start_ms) {
            l.delete_chart_period(store, key, p.start_ms)?;
        }
    }
    for p in &came {
        l.upsert_chart_period(store, key, p)?;
    }
    Ok(())
}

/// Builds the chart tables again from every stored notification: the
/// cells are summed in a [`Tally`] and written as a batch's are.
pub(crate) fn rebuild<L: Ledger + ?Sized>(l: &L) -> Result<(), DbError> {
    l.clear_charts()?;
    let mut cells = Tally::default();
    for (store, key) in l.chart_subscriptions()? {
        let facts = l.chart_facts(&store, &key)?;
        let periods = derive_periods(&facts);
        for (k, v) in deltas(&store, &periods, &facts) {
            cells.add_delta(k, v);
        }
        l.replace_chart_periods(&store, &key, &periods)?;
    }
    let mut after = 0;
    loop {
        let page = l.notification_times(after, 10_000)?;
        let Some((last, _)) = page.last() else { break };
        after = *last;
        for (_, t) in &page {
            cells.add_delta(events_key(t), 1);
            for key in lag_keys(t) {
                cells.add_lag(key, 1);
            }
        }
    }
    l.apply_tally(&cells)
}

/// Runs the rebuild a migration asked for (an existing install gets its
/// charts from the history already stored).
pub(crate) fn rebuild_if_requested<L: Ledger + ?Sized>(l: &L) -> Result<bool, DbError> {
    if !l.take_chart_rebuild_request()? {
        return Ok(false);
    }
    rebuild(l)?;
    Ok(true)
}

fn events_key(t: &NotificationTimes) -> DeltaKey {
    DeltaKey {
        metric: "events",
        environment: t.environment.clone(),
        day: day_of(t.received_at_ms),
        store: t.store.clone(),
        app_id: t.app_id.clone().unwrap_or_default(),
        product_id: t.product_id.clone().unwrap_or_default(),
        currency: String::new(),
    }
}

/// The notification's lag cells: its store's, and its app and product's.
fn lag_keys(t: &NotificationTimes) -> [LagKey; 2] {
    let store = LagKey {
        environment: t.environment.clone(),
        store: t.store.clone(),
        day: day_of(t.received_at_ms),
        bin: lag_bin(t.received_at_ms - t.occurred_at_ms),
        product: None,
    };
    let product = LagKey {
        product: Some((
            t.app_id.clone().unwrap_or_default(),
            t.product_id.clone().unwrap_or_default(),
        )),
        ..store.clone()
    };
    [store, product]
}

/// Lag histogram bins are log-spaced, four per doubling (each bin is
/// about 19 % wide): bin `b` holds lags in [2^(b/4), 2^((b+1)/4)) ms, bin
/// 0 also everything up to 1 ms (and a negative lag from clock skew).
pub(crate) fn lag_bin(lag_ms: i64) -> i64 {
    if lag_ms <= 1 {
        return 0;
    }
    ((lag_ms as f64).log2() * 4.0).floor() as i64
}

/// What a percentile falling in `bin` reports: the bin's upper edge,
/// rounded to a millisecond.
pub(crate) fn lag_bin_upper_ms(bin: i64) -> f64 {
    2f64.powf((bin + 1) as f64 / 4.0).round()
}

/// A price in millionths of its unit (exact sums; no float drift as
/// deltas are added and taken back).
fn micros(price: f64) -> i64 {
    (price * 1_000_000.0).round() as i64
}

/// RevenueCat's MRR normalization (charts-and-scale.md A1): a period's
/// length is matched to the nearest of their durations and its price
/// multiplied by that duration's factor.
pub(crate) fn mrr_factor(length_ms: i64) -> (i64, i64) {
    // (length in days, numerator, denominator)
    const TABLE: [(f64, i64, i64); 10] = [
        (1.0, 30, 1),
        (3.0, 10, 1),
        (7.0, 4, 1),
        (14.0, 2, 1),
        (28.0, 1, 1),
        (30.436_875, 1, 1),
        (60.873_75, 1, 2),
        (91.310_625, 1, 3),
        (182.621_25, 1, 6),
        (365.242_5, 1, 12),
    ];
    let days = (length_ms.max(1) as f64) / DAY_MS as f64;
    let mut best = TABLE[0];
    for entry in TABLE {
        if (days / entry.0).ln().abs() < (days / best.0).ln().abs() {
            best = entry;
        }
    }
    (best.1, best.2)
}

fn mrr_micros(price_micros: i64, length_ms: i64) -> i64 {
    let (num, den) = mrr_factor(length_ms);
    let scaled = i128::from(price_micros) * i128::from(num);
    let den = i128::from(den);
    // Rounded half away from zero, the same way every time it is computed.
    i64::try_from((scaled + den / 2) / den).unwrap_or(i64::MAX)
}

/// A subscription's billing periods, from its notifications in any order.
pub(crate) fn derive_periods<'a>(facts: impl IntoIterator<Item = &'a ChartFact>) -> Vec<Period> {
    let mut sorted: Vec<&ChartFact> = facts.into_iter().collect();
    sorted.sort_by(|a, b| {
        a.occurred_at_ms
            .cmp(&b.occurred_at_ms)
            .then_with(|| a.notification_id.cmp(&b.notification_id))
    });
    let mut periods: Vec<Period> = Vec::new();
    // A start event without an expiry (Google Play's notifications carry
    // none) waits for the next fetched state, which says when it ends.
    let mut awaiting: Option<(&ChartFact, EventType)> = None;
    for f in sorted {
        let t = f.occurred_at_ms;
        if f.fetched {
            if let Some((start, event)) = awaiting.take() {
                start_period(&mut periods, &start.completed_by(f), event);
            } else if f.state.status == Some(SubscriptionStatus::GracePeriod) {
                // In a grace period the store's expiry is the grace period's end.
                if let (Some(i), Some(end)) = (current(&periods, t), f.state.expires_at_ms) {
                    periods[i].end_ms = periods[i].end_ms.max(end);
                }
            }
            continue;
        }
        let Some(event) = f.event_type else { continue };
        match event {
            EventType::InitialPurchase | EventType::Renewal | EventType::ProductChange => {
                if f.state.expires_at_ms.is_some() {
                    start_period(&mut periods, f, event);
                } else {
                    // A newer start before any fetch: the fetch will
                    // describe the newer period, not the older one.
                    awaiting = Some((f, event));
                }
            }
            EventType::Refund => {
                let purchased = f.details.purchased_at_ms;
                let target = purchased
                    .and_then(|p| periods.iter().position(|x| x.start_ms == p))
                    .or_else(|| current(&periods, t));
                if let Some(p) = target.map(|i| &mut periods[i]) {
                    p.refunded_at_ms = Some(t);
                    p.end_ms = p.end_ms.min(t.max(p.start_ms));
                }
            }
            EventType::RefundReversed => {
                if let Some(p) = periods
                    .iter_mut()
                    .rev()
                    .find(|p| p.refunded_at_ms.is_some() && p.start_ms <= t)
                {
                    p.refunded_at_ms = None;
                    p.end_ms = p.end_ms.max(p.nominal_end_ms);
                }
            }
            EventType::Expiration | EventType::GracePeriodExpired | EventType::Revoke => {
                if let Some(i) = current(&periods, t) {
                    let p = &mut periods[i];
                    p.end_ms = p.end_ms.min(t.max(p.start_ms));
                }
            }
            EventType::BillingIssue => {
                // A grace period keeps access until it ends.
                let grace_end = f.details.grace_period_expires_at_ms.or_else(|| {
                    (f.state.status == Some(SubscriptionStatus::GracePeriod))
                        .then_some(f.state.expires_at_ms)
                        .flatten()
                });
                if let (Some(i), Some(grace_end)) = (current(&periods, t), grace_end) {
                    periods[i].end_ms = periods[i].end_ms.max(grace_end);
                }
            }
            EventType::SubscriptionExtended => {
                if let (Some(i), Some(end)) = (current(&periods, t), f.state.expires_at_ms) {
                    periods[i].end_ms = periods[i].end_ms.max(end);
                }
            }
            _ => {}
        }
    }
    classify(&mut periods);
    periods
}

/// The newest period that started by `t`.
fn current(periods: &[Period], t: i64) -> Option<usize> {
    periods.iter().rposition(|p| p.start_ms <= t)
}

/// A notification that reports a paid or trial period starting: a new
/// period, or what it adds to one already reported (stores often announce
/// one period twice, e.g. an invoice and a subscription update).
fn start_period(periods: &mut Vec<Period>, f: &ChartFact, event: EventType) {
    let Some(end) = f.state.expires_at_ms else {
        return;
    };
    let start = f.details.purchased_at_ms.unwrap_or(f.occurred_at_ms);
    if end <= start {
        return;
    }
    let price = f.details.price.map(micros);
    let currency = f.details.currency.clone().map(|c| c.to_uppercase());
    let product = f.state.product_id.clone().or_else(|| f.product_id.clone());
    if let Some(p) = periods.iter_mut().find(|p| p.start_ms == start) {
        p.nominal_end_ms = end;
        p.end_ms = p.end_ms.max(end);
        p.price_micros = price.or(p.price_micros);
        if let Some(c) = currency {
            p.currency = c;
        }
        if let Some(product) = product {
            p.product_id = product;
        }
        p.is_trial |= f.details.is_trial == Some(true);
        return;
    }
    let at = periods.partition_point(|p| p.start_ms < start);
    periods.insert(
        at,
        Period {
            start_ms: start,
            end_ms: end,
            nominal_end_ms: end,
            environment: f.environment.clone(),
            app_id: f.app_id.clone().unwrap_or_default(),
            product_id: product.unwrap_or_default(),
            is_trial: f.details.is_trial == Some(true),
            renewal_number: 0,
            kind: PeriodKind::New,
            price_micros: price,
            currency: currency.unwrap_or_default(),
            mrr_micros: None,
            refunded_at_ms: None,
            churned: false,
            started_by: event,
        },
    );
}

/// Cuts overlapping periods at the next one's start, then names each
/// period's kind, renewal number and whether the subscription churns at
/// its end.
fn classify(periods: &mut [Period]) {
    for i in 1..periods.len() {
        let next_start = periods[i].start_ms;
        let prev = &mut periods[i - 1];
        if next_start < prev.end_ms {
            prev.end_ms = next_start.max(prev.start_ms);
        }
    }
    let mut paid = 0;
    for i in 0..periods.len() {
        let (before, rest) = periods.split_at_mut(i);
        let p = &mut rest[0];
        let prev = before.last();
        let follows = prev.is_some_and(|q| q.end_ms >= p.start_ms);
        p.kind = if p.is_trial {
            PeriodKind::Trial
        } else if paid == 0 {
            if follows && prev.is_some_and(|q| q.is_trial) {
                PeriodKind::TrialConversion
            } else {
                PeriodKind::New
            }
        } else if !follows {
            PeriodKind::Reactivation
        } else if p.started_by == EventType::ProductChange {
            PeriodKind::ProductChange
        } else {
            PeriodKind::Renewal
        };
        if !p.is_trial {
            paid += 1;
            p.renewal_number = paid;
            p.mrr_micros = p
                .price_micros
                .map(|m| mrr_micros(m, p.nominal_end_ms - p.start_ms));
        } else {
            p.renewal_number = 0;
            p.mrr_micros = None;
        }
    }
    for i in 0..periods.len() {
        let followed = periods
            .get(i + 1)
            .is_some_and(|n| n.start_ms <= periods[i].end_ms);
        periods[i].churned = !periods[i].is_trial && !followed;
    }
}

/// The per-day deltas a subscription's periods and notifications add.
pub(crate) fn deltas<'a>(
    store: &str,
    periods: &[Period],
    facts: impl IntoIterator<Item = &'a ChartFact>,
) -> BTreeMap<DeltaKey, i64> {
    let mut out: BTreeMap<DeltaKey, i64> = BTreeMap::new();
    let mut add = |metric: &'static str,
                   day: i64,
                   env: &str,
                   app: &str,
                   product: &str,
                   currency: &str,
                   v: i64| {
        if v == 0 {
            return;
        }
        *out.entry(DeltaKey {
            metric,
            environment: env.to_owned(),
            day,
            store: store.to_owned(),
            app_id: app.to_owned(),
            product_id: product.to_owned(),
            currency: currency.to_owned(),
        })
        .or_default() += v;
    };
    for p in periods {
        let (start, end) = (day_of(p.start_ms), day_of(p.end_ms));
        let (env, app, product, cur) = (
            p.environment.as_str(),
            p.app_id.as_str(),
            p.product_id.as_str(),
            p.currency.as_str(),
        );
        if p.is_trial {
            add("active_trials", start, env, app, product, "", 1);
            add("active_trials", end, env, app, product, "", -1);
            continue;
        }
        add("active_subscriptions", start, env, app, product, "", 1);
        add("active_subscriptions", end, env, app, product, "", -1);
        if let Some(counter) = p.kind.counter() {
            add(counter, start, env, app, product, "", 1);
        }
        if p.churned {
            add("churned", end, env, app, product, "", 1);
        }
        if let Some(m) = p.mrr_micros {
            add("mrr", start, env, app, product, cur, m);
            add("mrr", end, env, app, product, cur, -m);
        }
        if let Some(price) = p.price_micros {
            add("revenue", start, env, app, product, cur, price);
        }
        if let Some(r) = p.refunded_at_ms {
            let day = day_of(r);
            add("refunds", day, env, app, product, "", 1);
            if let Some(price) = p.price_micros {
                add("revenue", day, env, app, product, cur, -price);
                add("refund_amount", day, env, app, product, cur, price);
            }
        }
    }
    for f in facts {
        if f.event_type == Some(EventType::BillingIssue) {
            add(
                "billing_issues",
                day_of(f.occurred_at_ms),
                &f.environment,
                f.app_id.as_deref().unwrap_or_default(),
                f.product_id.as_deref().unwrap_or_default(),
                "",
                1,
            );
        }
    }
    out.retain(|_, v| *v != 0);
    out
}

// ---- the read side ----

/// How a read groups the delta table's rows into series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeriesBy {
    All,
    Currency,
    Store,
}

/// One sum a chart is made of: a metric of the delta table, its series,
/// and whether it is a stock (a running sum of every day up to the
/// bucket) or a flow (a sum over the bucket's days).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeltaRead {
    pub metric: &'static str,
    pub series_by: SeriesBy,
    pub stock: bool,
}

const fn flow(metric: &'static str, series_by: SeriesBy) -> DeltaRead {
    DeltaRead {
        metric,
        series_by,
        stock: false,
    }
}

const fn stock(metric: &'static str, series_by: SeriesBy) -> DeltaRead {
    DeltaRead {
        metric,
        series_by,
        stock: true,
    }
}

/// The delta-table sums a chart needs (none for lag: its histogram is a
/// table of its own).
pub(crate) fn reads(metric: ChartMetric) -> Vec<DeltaRead> {
    use SeriesBy::{All, Currency, Store};
    match metric {
        ChartMetric::ActiveSubscriptions => vec![stock("active_subscriptions", All)],
        ChartMetric::ActiveTrials => vec![stock("active_trials", All)],
        ChartMetric::NewSubscriptions => vec![flow("new_subscriptions", All)],
        ChartMetric::TrialConversions => vec![flow("trial_conversions", All)],
        ChartMetric::Renewals => vec![flow("renewals", All)],
        ChartMetric::Churned => vec![flow("churned", All)],
        ChartMetric::Reactivations => vec![flow("reactivations", All)],
        ChartMetric::ChurnRate => vec![
            flow("churned", All),
            flow("reactivations", All),
            stock("active_subscriptions", All),
        ],
        ChartMetric::Mrr => vec![stock("mrr", Currency)],
        ChartMetric::Revenue => vec![flow("revenue", Currency)],
        ChartMetric::Refunds => vec![flow("refunds", All), flow("refund_amount", Currency)],
        ChartMetric::BillingIssues => vec![flow("billing_issues", All)],
        ChartMetric::Events => vec![flow("events", Store)],
        ChartMetric::Lag => Vec::new(),
    }
}

/// A chart's day range: a stock reads from the beginning (its running sum
/// starts there), a flow from its first bucket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DayRange {
    pub from_day: Option<i64>,
    pub to_day: i64,
}

/// A summed row of the delta table: (day, series label, sum).
pub(crate) type DeltaRow = (i64, String, i64);
/// A summed row of the lag histogram: (day, bin, count).
pub(crate) type LagRow = (i64, i64, i64);

/// The day range a read covers.
pub(crate) fn day_range(q: &ChartQuery, read: &DeltaRead) -> DayRange {
    let buckets = bucket_days(q);
    let first = buckets.first().map_or(day_of(q.from_ms), |b| b.0);
    let last = buckets.last().map_or(day_of(q.to_ms), |b| b.1);
    DayRange {
        // A stock's first bucket needs the level before it; churn rate
        // reads the day before its first bucket.
        from_day: (!read.stock).then_some(first),
        to_day: last,
    }
}

/// The lag histogram's day range.
pub(crate) fn lag_day_range(q: &ChartQuery) -> (i64, i64) {
    let buckets = bucket_days(q);
    (
        buckets.first().map_or(day_of(q.from_ms), |b| b.0),
        buckets.last().map_or(day_of(q.to_ms), |b| b.1),
    )
}

/// Every bucket as (first day, last day), oldest first. At most 5,000
/// buckets (a guard against an absurd range).
fn bucket_days(q: &ChartQuery) -> Vec<(i64, i64)> {
    let (from, to) = (day_of(q.from_ms), day_of(q.to_ms.max(q.from_ms)));
    let mut out = Vec::new();
    let mut start = bucket_start(from, q.bucket);
    while start <= to && out.len() < 5_000 {
        let next = next_bucket(start, q.bucket);
        out.push((start, next - 1));
        start = next;
    }
    out
}

fn bucket_start(day: i64, bucket: ChartBucket) -> i64 {
    match bucket {
        ChartBucket::Day => day,
        // 1970-01-01 was a Thursday: Monday is 3 days before.
        ChartBucket::Week => day - (day + 3).rem_euclid(7),
        ChartBucket::Month => {
            let (y, m, _) = civil_from_days(day);
            days_from_civil(y, m, 1)
        }
    }
}

fn next_bucket(start: i64, bucket: ChartBucket) -> i64 {
    match bucket {
        ChartBucket::Day => start + 1,
        ChartBucket::Week => start + 7,
        ChartBucket::Month => {
            let (y, m, _) = civil_from_days(start);
            if m == 12 {
                days_from_civil(y + 1, 1, 1)
            } else {
                days_from_civil(y, m + 1, 1)
            }
        }
    }
}

/// Howard Hinnant's `civil_from_days`: (year, month 1–12, day 1–31).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Howard Hinnant's `days_from_civil`.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// One read's values per series, per bucket.
fn series_values(
    read: &DeltaRead,
    rows: &[DeltaRow],
    buckets: &[(i64, i64)],
    today: i64,
) -> BTreeMap<String, Vec<i64>> {
    let mut by_series: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    for (day, series, v) in rows {
        by_series
            .entry(series.clone())
            .or_default()
            .push((*day, *v));
    }
    if read.series_by == SeriesBy::All {
        by_series.entry(String::new()).or_default();
    }
    by_series
        .into_iter()
        .map(|(label, mut days)| {
            days.sort_unstable();
            let values = buckets
                .iter()
                .map(|&(first, last)| {
                    if read.stock {
                        // The level at the end of the bucket; for the
                        // running bucket, now (later scheduled ends have
                        // not happened yet).
                        let at = if (first..=last).contains(&today) {
                            today
                        } else {
                            last
                        };
                        days.iter().filter(|(d, _)| *d <= at).map(|(_, v)| v).sum()
                    } else {
                        days.iter()
                            .filter(|(d, _)| (first..=last).contains(d))
                            .map(|(_, v)| v)
                            .sum()
                    }
                })
                .collect();
            (label, values)
        })
        .collect()
}

fn count_series(label: &str, values: &[i64]) -> ChartSeries {
    ChartSeries {
        label: label.to_owned(),
        currency: None,
        converted: false,
        values: values.iter().map(|v| Some(*v as f64)).collect(),
    }
}

fn money_series(currency: &str, values: &[i64]) -> ChartSeries {
    ChartSeries {
        label: currency.to_owned(),
        currency: Some(currency.to_owned()),
        converted: false,
        values: values
            .iter()
            .map(|v| Some(*v as f64 / 1_000_000.0))
            .collect(),
    }
}

/// Builds a chart from the rows its [`reads`] fetched (in the same order)
/// and, for lag, from the histogram's rows.
pub(crate) fn build_chart(q: &ChartQuery, fetched: &[Vec<DeltaRow>], lag: &[LagRow]) -> Chart {
    let buckets = bucket_days(q);
    let today = day_of(q.now_ms);
    let mut series = Vec::new();
    let reads = reads(q.metric);
    match q.metric {
        ChartMetric::ChurnRate => {
            let empty = Vec::new();
            let get = |i: usize| fetched.get(i).unwrap_or(&empty);
            let one = |i: usize, b: &[(i64, i64)]| {
                series_values(&reads[i], get(i), b, today)
                    .remove("")
                    .unwrap_or_default()
            };
            let churned = one(0, &buckets);
            let reactivated = one(1, &buckets);
            // Active at the start of a bucket: at the end of the day before.
            let starts: Vec<(i64, i64)> = buckets.iter().map(|b| (b.0 - 1, b.0 - 1)).collect();
            let active = one(2, &starts);
            let values = (0..buckets.len())
                .map(|i| {
                    let a = active.get(i).copied().unwrap_or(0);
                    let net = churned.get(i).copied().unwrap_or(0)
                        - reactivated.get(i).copied().unwrap_or(0);
                    (a > 0).then(|| net as f64 * 100.0 / a as f64)
                })
                .collect();
            series.push(ChartSeries {
                label: "all".into(),
                currency: None,
                converted: false,
                values,
            });
        }
        ChartMetric::Lag => {
            let mut per_bucket: Vec<BTreeMap<i64, i64>> = vec![BTreeMap::new(); buckets.len()];
            for (day, bin, n) in lag {
                let i = buckets.partition_point(|b| b.1 < *day);
                if buckets.get(i).is_some_and(|b| b.0 <= *day) {
                    *per_bucket[i].entry(*bin).or_default() += n;
                }
            }
            for (label, p) in [("p50", 0.50), ("p95", 0.95)] {
                series.push(ChartSeries {
                    label: label.into(),
                    currency: None,
                    converted: false,
                    values: per_bucket.iter().map(|bins| percentile(bins, p)).collect(),
                });
            }
        }
        _ => {
            for (read, rows) in reads.iter().zip(fetched) {
                for (label, values) in series_values(read, rows, &buckets, today) {
                    series.push(match read.series_by {
                        SeriesBy::All if read.metric == "refunds" => count_series("count", &values),
                        SeriesBy::All => count_series("all", &values),
                        SeriesBy::Store => count_series(&label, &values),
                        SeriesBy::Currency => money_series(&label, &values),
                    });
                }
            }
        }
    }
    let day_ms = |d: i64| d * DAY_MS;
    Chart {
        metric: q.metric,
        unit: q.metric.unit(),
        bucket: q.bucket,
        buckets: buckets.iter().map(|b| day_ms(b.0)).collect(),
        incomplete: buckets.iter().map(|b| day_ms(b.1 + 1) > q.now_ms).collect(),
        series,
    }
}

/// The `p` percentile of a histogram (nearest rank), as its bin's upper edge.
fn percentile(bins: &BTreeMap<i64, i64>, p: f64) -> Option<f64> {
    let total: i64 = bins.values().sum();
    if total == 0 {
        return None;
    }
    let rank = ((p * total as f64).ceil() as i64).max(1);
    let mut seen = 0;
    for (bin, n) in bins {
        seen += n;
        if seen >= rank {
            return Some(lag_bin_upper_ms(*bin));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_arithmetic() {
        // 2026-03-01 is day 20513; 2026-02-28 is a Saturday.
        assert_eq!(days_from_civil(2026, 3, 1), 20_513);
        assert_eq!(civil_from_days(20_513), (2026, 3, 1));
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        // 2026-03-04 is a Wednesday; its week starts Monday 2026-03-02.
        assert_eq!(bucket_start(20_516, ChartBucket::Week), 20_514);
        assert_eq!(bucket_start(20_516, ChartBucket::Month), 20_513);
        assert_eq!(next_bucket(20_513, ChartBucket::Month), 20_513 + 31);
        assert_eq!(
            next_bucket(days_from_civil(2026, 12, 1), ChartBucket::Month),
            days_from_civil(2027, 1, 1)
        );
    }

    #[test]
    fn mrr_follows_revenuecats_table() {
        let d = DAY_MS;
        assert_eq!(mrr_factor(7 * d), (4, 1));
        assert_eq!(mrr_factor(31 * d), (1, 1));
        assert_eq!(mrr_factor(28 * d), (1, 1));
        assert_eq!(mrr_factor(365 * d), (1, 12));
        assert_eq!(mrr_factor(92 * d), (1, 3));
        assert_eq!(mrr_micros(59_990_000, 365 * d), 4_999_167);
    }

    fn fact(id: &str, at: i64, event: EventType, expires: Option<i64>) -> ChartFact {
        ChartFact {
            notification_id: id.into(),
            occurred_at_ms: at,
            event_type: Some(event),
            environment: "production".into(),
            app_id: Some("app".into()),
            product_id: Some("pro.monthly".into()),
            state: ImpliedState {
                expires_at_ms: expires,
                ..ImpliedState::default()
            },
            details: EventDetails {
                price: Some(9.99),
                currency: Some("usd".into()),
                purchased_at_ms: Some(at),
                ..EventDetails::default()
            },
            fetched: false,
        }
    }

    /// The skip on arrival is sound: every type `shapes_periods` calls
    /// inert leaves the derived periods and their cells exactly as they
    /// were, wherever it falls in the history; and the ones it calls
    /// shaping do change something here (so the test can fail).
    #[test]
    fn inert_notifications_change_no_period_or_cell() {
        let d = DAY_MS;
        let base = vec![
            fact("a", 0, EventType::InitialPurchase, Some(30 * d)),
            fact("b", 30 * d, EventType::Renewal, Some(60 * d)),
            fact("c", 45 * d, EventType::BillingIssue, Some(60 * d)),
            fact("d", 70 * d, EventType::Expiration, None),
        ];
        let periods = derive_periods(&base);
        let cells = deltas("stripe", &periods, &base);
        for event in EventType::ALL {
            for at in [-d, 10 * d, 40 * d, 65 * d, 90 * d] {
                let mut with = base.clone();
                with.push(fact("x", at, event, Some(at + 30 * d)));
                let after = derive_periods(&with);
                let after_cells = deltas("stripe", &after, &with);
                let unchanged = after == periods && after_cells == cells;
                if !shapes_periods(event) {
                    assert!(unchanged, "{event:?} at {at} changed the charts");
                }
            }
        }
        for event in [
            EventType::InitialPurchase,
            EventType::Renewal,
            EventType::Refund,
            EventType::Expiration,
            EventType::BillingIssue,
        ] {
            let mut with = base.clone();
            with.push(fact("x", 40 * d, event, Some(100 * d)));
            let changed = derive_periods(&with) != periods
                || deltas("stripe", &derive_periods(&with), &with) != cells;
            assert!(changed, "{event:?} should change the charts");
        }
    }

    #[test]
    fn lag_bins_are_log_spaced() {
        assert_eq!(lag_bin(0), 0);
        assert_eq!(lag_bin(1000), 39);
        assert_eq!(lag_bin_upper_ms(39), 1024.0);
        assert_eq!(lag_bin(3000), 46);
        assert_eq!(lag_bin_upper_ms(46), 3444.0);
    }
}
