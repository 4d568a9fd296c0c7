//! Charts with known answers (issue 17): a synthetic history whose every
//! chart value is worked out by hand below, delivered out of order and
//! with duplicates, on both backends; then a full rebuild must give the
//! same charts, and (SQLite) an existing install migrated to the chart
//! schema gets them from its stored history.
//!
//! Day 0 is Monday 2026-03-02 (UTC day 20514). Every notification is
//! received 1 s after its store time (Apple) or 3 s (Stripe, and Apple's
//! refund), which the lag chart reads back.
//!
//! The production history, by subscription (`Tn` = day n):
//! - S1 apple pro.monthly: free trial T0 10:00–T7 10:00, converts at T7 to
//!   30 days at 9.99 USD.
//! - S2 apple pro.monthly: free trial T1 12:00–T8 12:00, lapses (expired).
//! - S3 apple: basic.monthly 4.99 USD from T2 09:00 (30 d), upgraded at
//!   T12 09:00 to pro.monthly 9.99 USD (30 d, to T42).
//! - S4 stripe team.weekly 20 EUR a week from T0 08:00; renewal fails at
//!   T7 08:00 with a grace period to T10 08:00, recovers at T9 08:00 (to
//!   T16 08:00), then expires at T16 08:00.
//! - S5 apple pro.weekly 2.99 USD from T3 00:00; fails at T10 with grace
//!   to T13; the grace period ends unpaid at T13.
//! - S6 apple pro.monthly 9.99 USD from T4 15:00, refunded at T6 15:00.
//! - S7 apple pro.weekly 2.99 USD from T0 06:00, expires T7 06:00,
//!   resubscribes at T14 06:00 (to T21 06:00, no renewal after).
//! - Sandbox: S8 apple pro.monthly 9.99 USD from T1 (never in production
//!   charts).

use std::sync::Arc;

use storehook_core::{
    Environment, EventDetails, EventType, ImpliedState, StateUpdate, SubscriptionStatus,
    VerifiedNotification,
};
use storehook_db::{
    Chart, ChartBucket, ChartMetric, ChartQuery, NewNotification, Storage, Verdict,
};

mod common;

use common::{Backend, TestDb};

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;
const DAY0: i64 = 20_514;

fn t(day: i64, hour: i64) -> i64 {
    (DAY0 + day) * DAY + hour * HOUR
}

struct N {
    id: &'static str,
    store: &'static str,
    key: &'static str,
    env: Environment,
    event: EventType,
    at: i64,
    lag_ms: i64,
    product: &'static str,
    status: Option<SubscriptionStatus>,
    expires: Option<i64>,
    purchased: Option<i64>,
    price: Option<f64>,
    currency: &'static str,
    trial: bool,
}

impl N {
    fn new(
        id: &'static str,
        store: &'static str,
        key: &'static str,
        event: EventType,
        at: i64,
    ) -> Self {
        Self {
            id,
            store,
            key,
            env: Environment::Production,
            event,
            at,
            lag_ms: if store == "stripe" { 3_000 } else { 1_000 },
            product: "pro.monthly",
            status: None,
            expires: None,
            purchased: None,
            price: None,
            currency: if store == "stripe" { "EUR" } else { "USD" },
            trial: false,
        }
    }

    /// A purchase or renewal: a period from `at` to `end` at `price`.
    fn period(mut self, end: i64, price: f64) -> Self {
        self.status = Some(SubscriptionStatus::Active);
        self.purchased = Some(self.at);
        self.expires = Some(end);
        self.price = Some(price);
        self
    }

    fn product(mut self, product: &'static str) -> Self {
        self.product = product;
        self
    }

    fn trial(mut self) -> Self {
        self.trial = true;
        self
    }

    fn grace_until(mut self, end: i64) -> Self {
        self.status = Some(SubscriptionStatus::GracePeriod);
        self.expires = Some(end);
        self
    }

    fn expired(mut self) -> Self {
        self.status = Some(SubscriptionStatus::Expired);
        self
    }

    fn of_purchase(mut self, purchased: i64) -> Self {
        self.purchased = Some(purchased);
        self
    }

    fn lag(mut self, ms: i64) -> Self {
        self.lag_ms = ms;
        self
    }

    fn sandbox(mut self) -> Self {
        self.env = Environment::Sandbox;
        self
    }

    fn build(&self) -> NewNotification {
        NewNotification {
            notification: VerifiedNotification {
                store: self.store.into(),
                environment: self.env,
                notification_id: self.id.into(),
                subscription_key: Some(self.key.into()),
                event_type: self.event,
                raw_type: self.event.as_str().into(),
                occurred_at_ms: self.at,
                product_id: Some(self.product.into()),
                purchase_kind: None,
                app_id: Some("com.example".into()),
                state: ImpliedState {
                    status: self.status,
                    expires_at_ms: self.expires,
                    auto_renew: None,
                    product_id: Some(self.product.into()),
                },
                app_user_id_hint: None,
                continues_subscription_key: None,
                attention: None,
                state_fetch_pending: false,
                details: EventDetails {
                    purchased_at_ms: self.purchased,
                    price: self.price,
                    currency: self.price.map(|_| self.currency.into()),
                    is_trial: Some(self.trial),
                    ..EventDetails::default()
                },
                decoded: serde_json::json!({ "id": self.id }),
            },
            raw_body: self.id.as_bytes().to_vec(),
            received_at_ms: self.at + self.lag_ms,
            auto_track: true,
            forward_headers: Vec::new(),
            source: storehook_db::Source::Push,
        }
    }
}

/// The history in the order it arrives: out of order within S1, S4 and
/// S7 (a conversion before its trial, a recovery before its failure, an
/// expiry after the resubscription).
fn arrivals() -> Vec<N> {
    use EventType::*;
    vec![
        N::new("s1-b", "apple", "S1", Renewal, t(7, 10)).period(t(37, 10), 9.99),
        N::new("s1-a", "apple", "S1", InitialPurchase, t(0, 10))
            .period(t(7, 10), 0.0)
            .trial(),
        N::new("s2-a", "apple", "S2", InitialPurchase, t(1, 12))
            .period(t(8, 12), 0.0)
            .trial(),
        N::new("s2-b", "apple", "S2", Expiration, t(8, 12)).expired(),
        N::new("s3-a", "apple", "S3", InitialPurchase, t(2, 9))
            .period(t(32, 9), 4.99)
            .product("basic.monthly"),
        N::new("s3-b", "apple", "S3", ProductChange, t(12, 9)).period(t(42, 9), 9.99),
        N::new("s4-a", "stripe", "S4", InitialPurchase, t(0, 8))
            .period(t(7, 8), 20.0)
            .product("team.weekly"),
        N::new("s4-c", "stripe", "S4", Renewal, t(9, 8))
            .period(t(16, 8), 20.0)
            .product("team.weekly"),
        N::new("s4-b", "stripe", "S4", BillingIssue, t(7, 8))
            .grace_until(t(10, 8))
            .product("team.weekly"),
        N::new("s4-d", "stripe", "S4", Expiration, t(16, 8))
            .expired()
            .product("team.weekly"),
        N::new("s5-a", "apple", "S5", InitialPurchase, t(3, 0))
            .period(t(10, 0), 2.99)
            .product("pro.weekly"),
        N::new("s5-b", "apple", "S5", BillingIssue, t(10, 0))
            .grace_until(t(13, 0))
            .product("pro.weekly"),
        N::new("s5-c", "apple", "S5", GracePeriodExpired, t(13, 0))
            .expired()
            .product("pro.weekly"),
        N::new("s6-a", "apple", "S6", InitialPurchase, t(4, 15)).period(t(34, 15), 9.99),
        N::new("s6-b", "apple", "S6", Refund, t(6, 15))
            .of_purchase(t(4, 15))
            .lag(3_000),
        N::new("s7-a", "apple", "S7", InitialPurchase, t(0, 6))
            .period(t(7, 6), 2.99)
            .product("pro.weekly"),
        N::new("s7-c", "apple", "S7", Renewal, t(14, 6))
            .period(t(21, 6), 2.99)
            .product("pro.weekly"),
        N::new("s7-b", "apple", "S7", Expiration, t(7, 6))
            .expired()
            .product("pro.weekly"),
        N::new("s8-a", "apple", "S8", InitialPurchase, t(1, 0))
            .period(t(31, 0), 9.99)
            .sandbox(),
    ]
}

/// Store retries of notifications already delivered (with later receive times).
fn duplicates() -> Vec<N> {
    vec![
        N::new("s6-b", "apple", "S6", EventType::Refund, t(6, 15))
            .of_purchase(t(4, 15))
            .lag(90_000),
        N::new("s1-b", "apple", "S1", EventType::Renewal, t(7, 10))
            .period(t(37, 10), 9.99)
            .lag(50_000),
    ]
}

fn query(
    metric: ChartMetric,
    bucket: ChartBucket,
    days: std::ops::RangeInclusive<i64>,
) -> ChartQuery {
    // "Now" long after: every bucket complete.
    ChartQuery::unfiltered(
        metric,
        bucket,
        t(*days.start(), 0),
        t(*days.end(), 23),
        t(60, 0),
    )
}

async fn chart(s: &dyn Storage, q: ChartQuery) -> Chart {
    s.chart(q).await.expect("chart")
}

/// The values of the series labelled `label`.
fn series(c: &Chart, label: &str) -> Vec<Option<f64>> {
    c.series
        .iter()
        .find(|s| s.label == label)
        .unwrap_or_else(|| panic!("{:?} has no series {label}: {:?}", c.metric, c.series))
        .values
        .clone()
}

fn assert_close(got: &[Option<f64>], want: &[Option<f64>], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: bucket count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        match (g, w) {
            (Some(g), Some(w)) => assert!((g - w).abs() < 1e-6, "{what}[{i}]: {g} != {w}"),
            _ => assert_eq!(g, w, "{what}[{i}]"),
        }
    }
}

fn some(values: &[f64]) -> Vec<Option<f64>> {
    values.iter().copied().map(Some).collect()
}

/// Values over days 0..=27 from a sparse list of (day, value), 0 elsewhere.
fn sparse(points: &[(usize, f64)]) -> Vec<Option<f64>> {
    let mut v = vec![Some(0.0); 28];
    for (d, x) in points {
        v[*d] = Some(*x);
    }
    v
}

/// Every metric, by day over days 0..=27, and a few by week and by month,
/// against the hand-computed answers.
async fn check_answers(s: &dyn Storage) {
    use ChartBucket::{Day, Month, Week};
    use ChartMetric::*;
    let days = 0..=27;
    let c = chart(s, query(ActiveSubscriptions, Day, days.clone())).await;
    assert_eq!(c.buckets.len(), 28);
    assert_eq!(c.buckets[0], t(0, 0));
    assert!(c.incomplete.iter().all(|i| !i));
    // S1 d7–36, S3 d2–41, S4 d0–15, S5 d3–12, S6 d4–5, S7 d0–6 and d14–20.
    assert_close(
        &series(&c, "all"),
        &some(&[
            2., 2., 3., 4., 5., 5., 4., 4., 4., 4., 4., 4., 4., 3., 4., 4., 3., 3., 3., 3., 3., 2.,
            2., 2., 2., 2., 2., 2.,
        ]),
        "active subscriptions",
    );
    let c = chart(s, query(ActiveTrials, Day, days.clone())).await;
    assert_close(
        &series(&c, "all"),
        &sparse(&[
            (0, 1.),
            (1, 2.),
            (2, 2.),
            (3, 2.),
            (4, 2.),
            (5, 2.),
            (6, 2.),
            (7, 1.),
        ]),
        "active trials",
    );
    let c = chart(s, query(NewSubscriptions, Day, days.clone())).await;
    assert_close(
        &series(&c, "all"),
        &sparse(&[(0, 2.), (2, 1.), (3, 1.), (4, 1.)]),
        "new subscriptions",
    );
    let c = chart(s, query(TrialConversions, Day, days.clone())).await;
    assert_close(&series(&c, "all"), &sparse(&[(7, 1.)]), "trial conversions");
    // The upgrade is not a renewal; S4's recovery is.
    let c = chart(s, query(Renewals, Day, days.clone())).await;
    assert_close(&series(&c, "all"), &sparse(&[(9, 1.)]), "renewals");
    let c = chart(s, query(Churned, Day, days.clone())).await;
    assert_close(
        &series(&c, "all"),
        &sparse(&[(6, 1.), (7, 1.), (13, 1.), (16, 1.), (21, 1.)]),
        "churned",
    );
    let c = chart(s, query(Reactivations, Day, days.clone())).await;
    assert_close(&series(&c, "all"), &sparse(&[(14, 1.)]), "reactivations");
    // (churned − reactivated) / active at the end of the day before.
    let c = chart(s, query(ChurnRate, Day, days.clone())).await;
    let mut rate = sparse(&[
        (6, 100. / 5.),
        (7, 100. / 4.),
        (13, 100. / 4.),
        (14, -100. / 3.),
        (16, 100. / 4.),
        (21, 100. / 3.),
    ]);
    rate[0] = None; // nothing active before day 0
    assert_close(&series(&c, "all"), &rate, "churn rate");
    let c = chart(s, query(Mrr, Day, days.clone())).await;
    assert_close(
        &series(&c, "USD"),
        &some(&[
            11.96, 11.96, 16.95, 28.91, 38.90, 38.90, 28.91, 26.94, 26.94, 26.94, 26.94, 26.94,
            31.94, 19.98, 31.94, 31.94, 31.94, 31.94, 31.94, 31.94, 31.94, 19.98, 19.98, 19.98,
            19.98, 19.98, 19.98, 19.98,
        ]),
        "MRR USD",
    );
    // 20 EUR a week, ×4.
    let mut eur = vec![Some(80.0); 16];
    eur.extend(vec![Some(0.0); 12]);
    assert_close(&series(&c, "EUR"), &eur, "MRR EUR");
    assert_eq!(c.series.len(), 2, "one MRR series per currency");
    let c = chart(s, query(Revenue, Day, days.clone())).await;
    assert_close(
        &series(&c, "USD"),
        &sparse(&[
            (0, 2.99),
            (2, 4.99),
            (3, 2.99),
            (4, 9.99),
            (6, -9.99),
            (7, 9.99),
            (12, 9.99),
            (14, 2.99),
        ]),
        "revenue USD",
    );
    assert_close(
        &series(&c, "EUR"),
        &sparse(&[(0, 20.), (9, 20.)]),
        "revenue EUR",
    );
    let c = chart(s, query(Refunds, Day, days.clone())).await;
    assert_close(&series(&c, "count"), &sparse(&[(6, 1.)]), "refund count");
    assert_close(&series(&c, "USD"), &sparse(&[(6, 9.99)]), "refund amount");
    let c = chart(s, query(BillingIssues, Day, days.clone())).await;
    assert_close(
        &series(&c, "all"),
        &sparse(&[(7, 1.), (10, 1.)]),
        "billing issues",
    );
    let c = chart(s, query(Events, Day, days.clone())).await;
    assert_close(
        &series(&c, "apple"),
        &sparse(&[
            (0, 2.),
            (1, 1.),
            (2, 1.),
            (3, 1.),
            (4, 1.),
            (6, 1.),
            (7, 2.),
            (8, 1.),
            (10, 1.),
            (12, 1.),
            (13, 1.),
            (14, 1.),
        ]),
        "apple events",
    );
    assert_close(
        &series(&c, "stripe"),
        &sparse(&[(0, 1.), (7, 1.), (9, 1.), (16, 1.)]),
        "stripe events",
    );
    // Lag bins are [2^(b/4), 2^((b+1)/4)) ms, reported by their upper edge:
    // 1,000 ms is in bin 39 (upper edge 2^10 = 1024), 3,000 ms in bin 46
    // (2^11.75 = 3444.2 → 3444). Day 0: 1000, 1000 (Apple), 3000 (Stripe):
    // p50 = 2nd of 3 = 1024, p95 = 3rd = 3444.
    let c = chart(s, query(Lag, Day, 0..=8)).await;
    let (k, r) = (Some(1024.0), Some(3444.0));
    assert_close(
        &series(&c, "p50"),
        &[k, k, k, k, k, None, r, k, k],
        "lag p50",
    );
    assert_close(
        &series(&c, "p95"),
        &[r, k, k, k, k, None, r, r, k],
        "lag p95",
    );
    let mut apple = query(Lag, Day, 0..=0);
    apple.store = Some("apple".into());
    assert_close(&series(&chart(s, apple).await, "p95"), &[k], "apple lag");
    // App and product filters: day 0 holds S1 (Apple, pro.monthly, 1 s),
    // S4 (Stripe, team.weekly, 3 s) and S7 (Apple, pro.weekly, 1 s).
    let lag_of = |app: Option<&str>, product: Option<&str>, store: Option<&str>| {
        let mut q = query(Lag, Day, 0..=0);
        q.app = app.map(Into::into);
        q.product = product.map(Into::into);
        q.store = store.map(Into::into);
        q
    };
    let team = chart(s, lag_of(None, Some("team.weekly"), None)).await;
    assert_close(&series(&team, "p50"), &[r], "team.weekly lag p50");
    assert_close(&series(&team, "p95"), &[r], "team.weekly lag p95");
    let monthly = chart(s, lag_of(None, Some("pro.monthly"), None)).await;
    assert_close(&series(&monthly, "p95"), &[k], "pro.monthly lag p95");
    let app = chart(s, lag_of(Some("com.example"), None, None)).await;
    assert_close(&series(&app, "p50"), &[k], "the app's lag p50");
    assert_close(&series(&app, "p95"), &[r], "the app's lag p95");
    let other = chart(s, lag_of(Some("com.other"), None, None)).await;
    assert_close(&series(&other, "p95"), &[None], "another app has no lag");
    let none = chart(s, lag_of(None, Some("team.weekly"), Some("apple"))).await;
    assert_close(&series(&none, "p95"), &[None], "Apple sells no team.weekly");

    // Weeks (Mondays: days 0, 7, 14, 21).
    let weeks = 0..=27;
    let c = chart(s, query(ActiveSubscriptions, Week, weeks.clone())).await;
    assert_eq!(c.buckets, vec![t(0, 0), t(7, 0), t(14, 0), t(21, 0)]);
    assert_close(
        &series(&c, "all"),
        &some(&[4., 3., 3., 2.]),
        "weekly active",
    );
    let c = chart(s, query(Churned, Week, weeks.clone())).await;
    assert_close(
        &series(&c, "all"),
        &some(&[1., 2., 1., 1.]),
        "weekly churned",
    );
    let c = chart(s, query(ChurnRate, Week, weeks.clone())).await;
    assert_close(
        &series(&c, "all"),
        &[None, Some(50.), Some(0.), Some(100. / 3.)],
        "weekly churn rate",
    );
    let c = chart(s, query(Revenue, Week, weeks.clone())).await;
    assert_close(
        &series(&c, "USD"),
        &some(&[10.97, 19.98, 2.99, 0.]),
        "weekly USD",
    );
    assert_close(&series(&c, "EUR"), &some(&[20., 20., 0., 0.]), "weekly EUR");
    let c = chart(s, query(Mrr, Week, weeks.clone())).await;
    assert_close(
        &series(&c, "USD"),
        &some(&[28.91, 19.98, 31.94, 19.98]),
        "weekly MRR",
    );
    let c = chart(s, query(NewSubscriptions, Week, weeks.clone())).await;
    assert_close(&series(&c, "all"), &some(&[5., 0., 0., 0.]), "weekly new");

    // March 2026 (days −1 to 29) in one bucket.
    let c = chart(s, query(ActiveSubscriptions, Month, 0..=27)).await;
    assert_eq!(c.buckets, vec![t(-1, 0)]);
    assert_close(&series(&c, "all"), &some(&[2.]), "March active");
    let c = chart(s, query(Revenue, Month, 0..=27)).await;
    assert_close(&series(&c, "USD"), &some(&[33.94]), "March USD");
    assert_close(&series(&c, "EUR"), &some(&[40.]), "March EUR");
    let c = chart(s, query(Churned, Month, 0..=27)).await;
    assert_close(&series(&c, "all"), &some(&[5.]), "March churned");
    let c = chart(s, query(TrialConversions, Month, 0..=27)).await;
    assert_close(&series(&c, "all"), &some(&[1.]), "March conversions");

    // Filters: one product, one store.
    let mut q = query(ActiveSubscriptions, Day, 0..=13);
    q.product = Some("pro.weekly".into());
    // S5 d3–12, S7 d0–6.
    assert_close(
        &series(&chart(s, q).await, "all"),
        &some(&[1., 1., 1., 2., 2., 2., 2., 1., 1., 1., 1., 1., 1., 0.]),
        "pro.weekly active",
    );
    let mut q = query(Revenue, Week, 0..=13);
    q.store = Some("stripe".into());
    let c = chart(s, q).await;
    assert_eq!(c.series.len(), 1, "stripe earned EUR only");
    assert_close(&series(&c, "EUR"), &some(&[20., 20.]), "stripe revenue");

    // Sandbox is its own world: S8 alone.
    let mut q = query(ActiveSubscriptions, Day, 0..=2);
    q.environment = Environment::Sandbox;
    assert_close(
        &series(&chart(s, q).await, "all"),
        &some(&[0., 1., 1.]),
        "sandbox",
    );

    // "Now" inside week 1: it is incomplete, as are the weeks after; its
    // stock is read now (day 10: 4 active), not at its end (day 13: 3).
    let mut q = query(ActiveSubscriptions, Week, weeks.clone());
    q.now_ms = t(10, 12);
    let c = chart(s, q).await;
    assert_eq!(c.incomplete, vec![false, true, true, true]);
    assert_eq!(series(&c, "all")[1], Some(4.0));
}

/// Every metric's day chart, for comparing two states of the tables.
async fn all_charts(s: &dyn Storage) -> Vec<Chart> {
    let mut out = Vec::new();
    for metric in ChartMetric::ALL {
        out.push(chart(s, query(metric, ChartBucket::Day, -2..=45)).await);
        out.push(chart(s, query(metric, ChartBucket::Week, -2..=45)).await);
    }
    out
}

async fn record_history(s: &Arc<dyn Storage>) {
    for n in arrivals() {
        let r = s.record_notification(n.build()).await.expect("record");
        assert_ne!(r.verdict, Verdict::Duplicate, "{}", n.id);
    }
    for n in duplicates() {
        let r = s.record_notification(n.build()).await.expect("record");
        assert_eq!(r.verdict, Verdict::Duplicate, "{}", n.id);
    }
}

async fn charts_match_hand_computed_answers(backend: Backend) {
    let db = TestDb::new(backend);
    let s = db.open().await;
    record_history(&s).await;
    check_answers(&*s).await;
    let incremental = all_charts(&*s).await;
    s.rebuild_charts().await.expect("rebuild");
    assert_eq!(
        all_charts(&*s).await,
        incremental,
        "a rebuild from scratch gives what the write path kept"
    );
    check_answers(&*s).await;
}

/// Arrival order does not matter: in store order, reversed, or shuffled
/// as above, the charts are the same.
async fn arrival_order_does_not_change_the_charts(backend: Backend) {
    let db = TestDb::new(backend);
    let s = db.open().await;
    let mut history = arrivals();
    history.sort_by_key(|n| std::cmp::Reverse(n.at));
    for n in history {
        s.record_notification(n.build()).await.expect("record");
    }
    check_answers(&*s).await;
}

/// A state fetched from the store's API: the current period of
/// `premium.monthly` at 6.99 EUR, ending at `expires`.
fn fetched(at: i64, expires: i64, trial: bool) -> StateUpdate {
    StateUpdate {
        state: ImpliedState {
            status: Some(SubscriptionStatus::Active),
            expires_at_ms: Some(expires),
            auto_renew: Some(true),
            product_id: Some("premium.monthly".into()),
        },
        as_of_ms: at,
        price: Some(6.99),
        currency: Some("EUR".into()),
        is_trial: Some(trial),
        ..StateUpdate::default()
    }
}

/// Google Play's notifications carry neither expiry nor price: a period
/// starts at the notification and takes its end and price from the state
/// fetched after it.
/// - G1: bought T0 10:00 (fetch: to T31 10:00, 6.99 EUR), renewed T31
///   10:00 (fetch: to T61 10:00), fetched twice more (nothing changes).
/// - G2: a free trial from T2 00:00 (fetch: trial to T5 00:00), expired then.
async fn google_periods_come_from_fetched_states(backend: Backend) {
    use ChartBucket::Day;
    use ChartMetric::*;
    let db = TestDb::new(backend);
    let s = db.open().await;
    let google =
        |id, key, event, at| N::new(id, "google", key, event, at).product("premium.monthly");
    let notify = |n: N| {
        let s = s.clone();
        async move { s.record_notification(n.build()).await.expect("record") }
    };
    let fetch = |key: &'static str, update: StateUpdate| {
        let s = s.clone();
        async move {
            let at = update.as_of_ms;
            s.apply_state_update("google", key, update, at)
                .await
                .expect("fetch")
        }
    };
    const SECOND: i64 = 1_000;
    notify(google("g1-a", "G1", EventType::InitialPurchase, t(0, 10))).await;
    fetch("G1", fetched(t(0, 10) + 5 * SECOND, t(31, 10), false)).await;
    fetch("G1", fetched(t(0, 10) + 60 * SECOND, t(31, 10), false)).await;
    notify(google("g2-a", "G2", EventType::InitialPurchase, t(2, 0))).await;
    fetch("G2", fetched(t(2, 0) + 5 * SECOND, t(5, 0), true)).await;
    notify(google("g2-b", "G2", EventType::Expiration, t(5, 0))).await;
    notify(google("g1-b", "G1", EventType::Renewal, t(31, 10))).await;
    fetch("G1", fetched(t(31, 10) + 5 * SECOND, t(61, 10), false)).await;
    fetch("G1", fetched(t(40, 0), t(61, 10), false)).await;

    let check = |c: Chart, label: &str, want: Vec<Option<f64>>, what: &str| {
        assert_close(&series(&c, label), &want, what);
    };
    let days = 0..=40;
    let ones = vec![Some(1.); 41];
    let at = |points: &[(usize, f64)]| {
        let mut v = vec![Some(0.0); 41];
        for (d, x) in points {
            v[*d] = Some(*x);
        }
        v
    };
    let check_all = || async {
        let q = |m| query(m, Day, days.clone());
        check(
            chart(&*s, q(ActiveSubscriptions)).await,
            "all",
            ones.clone(),
            "active",
        );
        check(
            chart(&*s, q(NewSubscriptions)).await,
            "all",
            at(&[(0, 1.)]),
            "new",
        );
        check(
            chart(&*s, q(Renewals)).await,
            "all",
            at(&[(31, 1.)]),
            "renewals",
        );
        check(
            chart(&*s, q(ActiveTrials)).await,
            "all",
            at(&[(2, 1.), (3, 1.), (4, 1.)]),
            "trials",
        );
        check(chart(&*s, q(Mrr)).await, "EUR", vec![Some(6.99); 41], "MRR");
        check(
            chart(&*s, q(Revenue)).await,
            "EUR",
            at(&[(0, 6.99), (31, 6.99)]),
            "revenue: the purchase and the renewal, not the trial",
        );
        check(
            chart(&*s, q(Churned)).await,
            "all",
            at(&[]),
            "a trial does not churn",
        );
    };
    check_all().await;
    let incremental = all_charts(&*s).await;
    s.rebuild_charts().await.expect("rebuild");
    assert_eq!(all_charts(&*s).await, incremental, "a rebuild agrees");
    check_all().await;
}

backends!(
    charts_match_hand_computed_answers,
    arrival_order_does_not_change_the_charts,
    google_periods_come_from_fetched_states
);

/// An install from before the chart tables: its history is charted as
/// soon as the migration runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_install_gets_its_charts_from_the_stored_history() {
    let db = TestDb::new(Backend::Sqlite);
    let s = db.open().await;
    record_history(&s).await;
    drop(s);
    // Back to schema 6: no chart tables.
    let path = db.dir.path().join("storehook.db");
    let conn = rusqlite::Connection::open(&path).expect("open");
    conn.execute_batch(
        "DROP TABLE chart_periods; DROP TABLE chart_deltas; DROP TABLE chart_lag;
         DROP TABLE chart_lag_products; DROP TABLE chart_rebuild; ALTER TABLE state_snapshots DROP COLUMN details_json;
         UPDATE schema_info SET version = 6;",
    )
    .expect("downgrade");
    drop(conn);
    let s = db.open().await;
    check_answers(&*s).await;
}
