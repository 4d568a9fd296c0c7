//! What one stored notification adds to its store's counts.

use crate::{Source, Verdict};

/// Added to a store's counts; times are merged as maxima.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StatsDelta {
    /// "Last received": a pushed notification applied to a subscription.
    pub received_at_ms: Option<i64>,
    /// "Last verified": any pushed notification that verified.
    pub verified_at_ms: Option<i64>,
    pub accepted: i64,
    pub untracked: i64,
    pub duplicates: i64,
    pub recovered: i64,
}

impl StatsDelta {
    pub fn of(verdict: Verdict, source: Source, at_ms: i64) -> Self {
        let (accepted, untracked, duplicates) = match verdict {
            Verdict::Tracked => (1, 0, 0),
            Verdict::Untracked => (1, 1, 0),
            Verdict::Duplicate => (0, 0, 1),
            Verdict::Rejected => (0, 0, 0),
        };
        // "Last received" and "last verified" say the push works: a backfill
        // proves only that the API does.
        let pushed = source == Source::Push;
        Self {
            received_at_ms: (pushed && verdict == Verdict::Tracked).then_some(at_ms),
            verified_at_ms: pushed.then_some(at_ms),
            accepted,
            untracked,
            duplicates,
            recovered: i64::from(!pushed && verdict != Verdict::Duplicate),
        }
    }

    /// Adds another delta: counts are summed, times kept as the newer.
    pub fn merge(&mut self, other: &StatsDelta) {
        self.received_at_ms = self.received_at_ms.max(other.received_at_ms);
        self.verified_at_ms = self.verified_at_ms.max(other.verified_at_ms);
        self.accepted += other.accepted;
        self.untracked += other.untracked;
        self.duplicates += other.duplicates;
        self.recovered += other.recovered;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backfill_counts_as_recovered_and_never_as_received() {
        let pushed = StatsDelta::of(Verdict::Tracked, Source::Push, 7);
        assert_eq!(
            (
                pushed.received_at_ms,
                pushed.verified_at_ms,
                pushed.accepted,
                pushed.recovered
            ),
            (Some(7), Some(7), 1, 0)
        );
        let recovered = StatsDelta::of(Verdict::Tracked, Source::Backfill, 7);
        assert_eq!(
            (
                recovered.received_at_ms,
                recovered.verified_at_ms,
                recovered.recovered
            ),
            (None, None, 1)
        );
        let again = StatsDelta::of(Verdict::Duplicate, Source::Backfill, 7);
        assert_eq!(
            (again.duplicates, again.recovered, again.accepted),
            (1, 0, 0)
        );
        let untracked = StatsDelta::of(Verdict::Untracked, Source::Push, 7);
        assert_eq!(
            (
                untracked.received_at_ms,
                untracked.untracked,
                untracked.accepted
            ),
            (None, 1, 1)
        );
    }
}
