//! The fold of a subscription's history: its applied notifications and
//! fetched snapshots, in store order, merged into one state. Arrival order
//! never matters: an older event delivered late gives the same result as
//! in-order arrival.

use storehook_core::{EventType, ImpliedState};

/// One entry of a subscription's history.
#[derive(Debug, Clone)]
pub(crate) struct HistoryEntry {
    /// Store time.
    pub at_ms: i64,
    /// Ties on `at_ms` break on this, the same way whatever the arrival
    /// order: `n:<notification id>` for a notification, `s:<row, 20
    /// digits>` for a snapshot.
    pub tiebreak: String,
    pub state: ImpliedState,
    /// The event and environment of a notification; `None` for a snapshot.
    pub event: Option<(EventType, String)>,
}

impl HistoryEntry {
    pub fn notification(
        at_ms: i64,
        notification_id: &str,
        state: ImpliedState,
        event: Option<(EventType, String)>,
    ) -> Self {
        Self {
            at_ms,
            tiebreak: format!("n:{notification_id}"),
            state,
            event,
        }
    }

    pub fn snapshot(at_ms: i64, row: i64, state: ImpliedState) -> Self {
        Self {
            at_ms,
            tiebreak: format!("s:{row:020}"),
            state,
            event: None,
        }
    }
}

/// What a fold gives a subscription's columns.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Folded {
    pub state: ImpliedState,
    /// The newest event: type, environment (`None` if empty) and its time.
    pub last_event: Option<(EventType, Option<String>, i64)>,
    /// The newest entry's time.
    pub as_of_ms: Option<i64>,
}

pub(crate) fn fold(mut entries: Vec<HistoryEntry>) -> Folded {
    entries.sort_by(|a, b| {
        a.at_ms
            .cmp(&b.at_ms)
            .then_with(|| a.tiebreak.cmp(&b.tiebreak))
    });
    let mut folded = Folded::default();
    for entry in &entries {
        folded.state.merge(&entry.state);
        if let Some((t, env)) = &entry.event {
            let env = Some(env.clone()).filter(|e| !e.is_empty());
            folded.last_event = Some((*t, env, entry.at_ms));
        }
        folded.as_of_ms = Some(entry.at_ms);
    }
    folded
}

#[cfg(test)]
mod tests {
    use super::*;
    use storehook_core::SubscriptionStatus;

    fn state(status: SubscriptionStatus, expires: i64) -> ImpliedState {
        ImpliedState {
            status: Some(status),
            expires_at_ms: Some(expires),
            ..ImpliedState::default()
        }
    }

    #[test]
    fn arrival_order_does_not_change_the_result() {
        let entries = vec![
            HistoryEntry::notification(
                10,
                "a",
                state(SubscriptionStatus::Active, 100),
                Some((EventType::InitialPurchase, "production".into())),
            ),
            HistoryEntry::notification(
                20,
                "b",
                state(SubscriptionStatus::Active, 200),
                Some((EventType::Renewal, "production".into())),
            ),
            HistoryEntry::snapshot(30, 7, state(SubscriptionStatus::Expired, 200)),
        ];
        let forwards = fold(entries.clone());
        let mut reversed = entries;
        reversed.reverse();
        assert_eq!(fold(reversed), forwards);
        assert_eq!(forwards.state.status, Some(SubscriptionStatus::Expired));
        assert_eq!(forwards.as_of_ms, Some(30));
        // A snapshot carries no event: the newest event stays the renewal.
        assert_eq!(
            forwards.last_event,
            Some((EventType::Renewal, Some("production".into()), 20))
        );
    }

    #[test]
    fn ties_break_on_the_notification_id_then_snapshots() {
        let a = HistoryEntry::notification(5, "b", state(SubscriptionStatus::Active, 1), None);
        let b = HistoryEntry::notification(5, "a", state(SubscriptionStatus::Expired, 2), None);
        // "n:b" sorts after "n:a": its state is the last merged.
        assert_eq!(
            fold(vec![a.clone(), b.clone()]).state.status,
            Some(SubscriptionStatus::Active)
        );
        assert_eq!(
            fold(vec![b, a]).state.status,
            Some(SubscriptionStatus::Active)
        );
        let snapshot = HistoryEntry::snapshot(5, 1, state(SubscriptionStatus::Revoked, 3));
        let n = HistoryEntry::notification(5, "z", state(SubscriptionStatus::Active, 4), None);
        // "s:…" sorts after "n:…" at the same time.
        assert_eq!(
            fold(vec![snapshot, n]).state.status,
            Some(SubscriptionStatus::Revoked)
        );
    }

    #[test]
    fn an_empty_environment_is_none() {
        let e = HistoryEntry::notification(
            1,
            "a",
            ImpliedState::default(),
            Some((EventType::Test, String::new())),
        );
        assert_eq!(fold(vec![e]).last_event, Some((EventType::Test, None, 1)));
        assert_eq!(fold(Vec::new()), Folded::default());
    }
}
