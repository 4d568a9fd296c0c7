//! Counters a write batch adds up in memory and writes once, just before
//! its commit: per-store counts, chart deltas and the lag histogram.
//!
//! Every write of a batch touches the same few counter rows (its store's
//! counts, today's events and lag cells). Written per notification, those
//! upserts were most of the chart tables' cost on the writer; written once
//! per batch, each row is touched once. The rows are written in one fixed
//! order (stores, then delta cells, then lag cells, each sorted), after the
//! batch's subscription locks: two instances sharing a database then lock
//! the counter rows in the same order and never deadlock on them.
//!
//! A write's tally joins the batch's only when the write succeeded, so a
//! write rolled back to its savepoint leaves no count behind; if writing
//! the tally fails, the whole batch rolls back and every caller gets an
//! error (the stores retry).

use std::collections::BTreeMap;

use super::{DeltaKey, LagKey, Ledger, StatsDelta};
use crate::DbError;

/// What one write (or a whole batch) adds to the counter rows.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    stats: BTreeMap<String, StatsDelta>,
    deltas: BTreeMap<DeltaKey, i64>,
    lag: BTreeMap<LagKey, i64>,
}

impl Tally {
    pub fn add_stats(&mut self, store: &str, delta: StatsDelta) {
        match self.stats.get_mut(store) {
            Some(sum) => sum.merge(&delta),
            None => {
                self.stats.insert(store.to_owned(), delta);
            }
        }
    }

    pub fn add_delta(&mut self, key: DeltaKey, value: i64) {
        *self.deltas.entry(key).or_default() += value;
    }

    pub fn add_lag(&mut self, key: LagKey, count: i64) {
        *self.lag.entry(key).or_default() += count;
    }

    /// Adds another tally's counts to this one.
    pub fn merge(&mut self, other: Tally) {
        for (store, delta) in other.stats {
            self.add_stats(&store, delta);
        }
        for (key, value) in other.deltas {
            self.add_delta(key, value);
        }
        for (key, count) in other.lag {
            self.add_lag(key, count);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.stats.is_empty() && self.deltas.is_empty() && self.lag.is_empty()
    }
}

impl Tally {
    /// Each store's counts, sorted by store.
    pub fn stats(&self) -> impl Iterator<Item = (&String, &StatsDelta)> {
        self.stats.iter()
    }

    /// The delta cells to add, sorted. A cell whose additions cancelled
    /// out (a period moved and moved back within the batch) needs no write.
    pub fn deltas(&self) -> impl Iterator<Item = (&DeltaKey, &i64)> {
        self.deltas.iter().filter(|(_, v)| **v != 0)
    }

    /// The lag cells to add, sorted.
    pub fn lag(&self) -> impl Iterator<Item = (&LagKey, &i64)> {
        self.lag.iter().filter(|(_, c)| **c != 0)
    }
}

/// Writes a tally's counts one statement at a time, in the fixed order the
/// module comment names ([`Ledger::apply_tally`]'s default).
pub(crate) fn apply_tally<L: Ledger + ?Sized>(l: &L, tally: &Tally) -> Result<(), DbError> {
    for (store, delta) in tally.stats() {
        l.add_store_stats(store, delta)?;
    }
    for (key, value) in tally.deltas() {
        l.add_chart_delta(key, *value)?;
    }
    for (key, count) in tally.lag() {
        l.add_chart_lag(key, *count)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Source, Verdict};

    fn cell(day: i64) -> DeltaKey {
        DeltaKey {
            metric: "active_subscriptions",
            environment: "production".into(),
            day,
            store: "s".into(),
            app_id: String::new(),
            product_id: String::new(),
            currency: String::new(),
        }
    }

    #[test]
    fn merging_adds_counts_and_keeps_the_newest_times() {
        let mut batch = Tally::default();
        let mut one = Tally::default();
        one.add_stats("s", StatsDelta::of(Verdict::Tracked, Source::Push, 10));
        one.add_delta(cell(1), 1);
        let mut two = Tally::default();
        two.add_stats("s", StatsDelta::of(Verdict::Duplicate, Source::Push, 7));
        two.add_stats("t", StatsDelta::of(Verdict::Untracked, Source::Push, 3));
        two.add_delta(cell(1), -1);
        two.add_delta(cell(2), 5);
        batch.merge(one);
        batch.merge(two);
        let s = batch.stats["s"];
        assert_eq!(
            (s.accepted, s.duplicates, s.received_at_ms, s.verified_at_ms),
            (1, 1, Some(10), Some(10))
        );
        assert_eq!(batch.stats["t"].untracked, 1);
        assert_eq!(batch.deltas[&cell(1)], 0);
        assert_eq!(batch.deltas[&cell(2)], 5);
        assert!(!batch.is_empty());
        assert!(Tally::default().is_empty());
    }
}
