//! A recording stand-in for the host, as a store adapter sees it through
//! [`StoreHost`]: a notification URL, a clock the test sets (or the wall
//! clock), a notification log, tracked subscriptions, and progress lines
//! and pauses that return at once but are remembered for the test to read.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use storehook_core::{
    AdapterError, BackfillRequest, BackfillWindow, StoreHost, TrackedSubscription,
};

/// The host an adapter's pull side talks to in tests. Build it with
/// [`FakeHost::new`] and the `with_*` / [`FakeHost::tracking`] steps; read
/// what the adapter did with [`FakeHost::progress_lines`],
/// [`FakeHost::pauses`] and [`FakeHost::listed`].
pub struct FakeHost {
    notification_url: Option<String>,
    /// `None`: the wall clock.
    now_ms: Mutex<Option<i64>>,
    known: Mutex<HashSet<String>>,
    /// In key order, as the host keeps them.
    tracked: Vec<TrackedSubscription>,
    listed: Mutex<Vec<(Option<String>, u32)>>,
    progress: Mutex<Vec<String>>,
    pauses: Mutex<Vec<Duration>>,
}

impl FakeHost {
    /// A host whose notification URL is `notification_url`, on the wall
    /// clock, that has recorded no notification and tracks nothing.
    pub fn new(notification_url: &str) -> Self {
        Self {
            notification_url: Some(notification_url.to_owned()),
            now_ms: Mutex::new(None),
            known: Mutex::new(HashSet::new()),
            tracked: Vec::new(),
            listed: Mutex::new(Vec::new()),
            progress: Mutex::new(Vec::new()),
            pauses: Mutex::new(Vec::new()),
        }
    }

    /// The same host without a notification URL (no `[server] public_url`).
    pub fn without_notification_url(mut self) -> Self {
        self.notification_url = None;
        self
    }

    /// The same host with its clock stopped at `now_ms`.
    pub fn with_now_ms(self, now_ms: i64) -> Self {
        self.set_now_ms(now_ms);
        self
    }

    /// Stops the clock at `now_ms`.
    pub fn set_now_ms(&self, now_ms: i64) {
        *lock(&self.now_ms) = Some(now_ms);
    }

    /// The same host with a notification with this store id recorded.
    pub fn with_notification(self, notification_id: &str) -> Self {
        self.record(notification_id);
        self
    }

    /// Records a notification with this store id.
    pub fn record(&self, notification_id: &str) {
        lock(&self.known).insert(notification_id.to_owned());
    }

    /// The same host also tracking a subscription for each key, of `app`.
    pub fn tracking(mut self, keys: impl IntoIterator<Item = String>, app: Option<&str>) -> Self {
        self.tracked.extend(
            keys.into_iter()
                .map(|key| TrackedSubscription::new(key, app.map(str::to_owned))),
        );
        self.tracked.sort_by(|a, b| a.key.cmp(&b.key));
        self
    }

    /// The same host also tracking one purchase as the host stores it
    /// (product and kind included).
    pub fn tracking_purchase(mut self, purchase: TrackedSubscription) -> Self {
        self.tracked.push(purchase);
        self.tracked.sort_by(|a, b| a.key.cmp(&b.key));
        self
    }

    /// The progress lines the adapter gave, in order.
    pub fn progress_lines(&self) -> Vec<String> {
        lock(&self.progress).clone()
    }

    /// The pauses the adapter asked for, in order.
    pub fn pauses(&self) -> Vec<Duration> {
        lock(&self.pauses).clone()
    }

    /// What the host hands an adapter for one backfill page: `window` from
    /// `cursor`, with this host to ask.
    pub fn backfill<'a>(
        &'a self,
        window: &'a BackfillWindow,
        cursor: Option<&'a str>,
    ) -> BackfillRequest<'a> {
        BackfillRequest::new(window, cursor, self)
    }

    /// The `(after, limit)` of each call for tracked subscriptions, in order.
    pub fn listed(&self) -> Vec<(Option<String>, u32)> {
        lock(&self.listed).clone()
    }
}

/// A test's lock: a panic elsewhere has already failed the test.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[storehook_core::async_trait]
impl StoreHost for FakeHost {
    fn notification_url(&self) -> Option<String> {
        self.notification_url.clone()
    }

    fn now_ms(&self) -> i64 {
        lock(&self.now_ms).unwrap_or_else(storehook_core::time::now_ms)
    }

    async fn has_notification(&self, notification_id: &str) -> Result<bool, AdapterError> {
        Ok(lock(&self.known).contains(notification_id))
    }

    async fn tracked_subscriptions(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TrackedSubscription>, AdapterError> {
        lock(&self.listed).push((after.map(str::to_owned), limit));
        Ok(self
            .tracked
            .iter()
            .filter(|t| after.is_none_or(|a| t.key.as_str() > a))
            .take(limit as usize)
            .cloned()
            .collect())
    }

    fn progress(&self, line: &str) {
        lock(&self.progress).push(line.to_owned());
    }

    async fn pause(&self, duration: Duration) -> bool {
        lock(&self.pauses).push(duration);
        true
    }
}
