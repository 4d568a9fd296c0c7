//! The group-commit writer's promise, on both backends: writes that wait
//! together share one transaction, each in its own savepoint, so a write
//! that fails is undone alone and its neighbours commit; every write
//! answered Ok is stored (and applied) once, every write answered Err is
//! absent. PostgreSQL refuses a NUL character in text, so a notification
//! id holding one makes a write fail halfway through its statements there
//! (SQLite stores it, and the promise is the same).

mod common;

use std::sync::Arc;

use common::{Backend, TestDb};
use storehook_core::{
    Environment, EventDetails, EventType, ImpliedState, SubscriptionStatus, VerifiedNotification,
};
use storehook_db::{NewNotification, Storage, Verdict};

fn notification(id: &str, key: &str, at: i64, first: bool) -> NewNotification {
    NewNotification {
        notification: VerifiedNotification {
            store: "stripe".into(),
            environment: Environment::Production,
            notification_id: id.into(),
            subscription_key: Some(key.into()),
            event_type: if first {
                EventType::InitialPurchase
            } else {
                EventType::Renewal
            },
            raw_type: "invoice.paid".into(),
            occurred_at_ms: at,
            product_id: Some("pro.monthly".into()),
            purchase_kind: None,
            app_id: None,
            state: ImpliedState {
                status: Some(SubscriptionStatus::Active),
                expires_at_ms: Some(at + 30 * 86_400_000),
                ..ImpliedState::default()
            },
            app_user_id_hint: None,
            continues_subscription_key: None,
            attention: None,
            state_fetch_pending: false,
            details: EventDetails {
                price: Some(9.99),
                currency: Some("usd".into()),
                purchased_at_ms: Some(at),
                ..EventDetails::default()
            },
            decoded: serde_json::json!({}),
        },
        raw_body: id.as_bytes().to_vec(),
        received_at_ms: at,
        auto_track: true,
        forward_headers: Vec::new(),
        source: storehook_db::Source::Push,
    }
}

async fn a_failing_write_is_undone_alone(backend: Backend) {
    let t = TestDb::new(backend);
    let db: Arc<dyn Storage> = t.open().await;
    // The subscriptions start (and are tracked) before the batches.
    for k in 0..7 {
        let first = notification(
            &format!("evt_start_{k}"),
            &format!("sub_{k}"),
            1_600_000_000_000,
            true,
        );
        let r = db.record_notification(first).await.expect("a purchase");
        assert_eq!(r.verdict, Verdict::Tracked);
    }
    // Many writes at once, so that batches form; every fifth is poisoned.
    let mut tasks = Vec::new();
    for round in 0..4 {
        for i in 0..50 {
            let db = db.clone();
            let poisoned = i % 5 == 2;
            let id = if poisoned {
                format!("evt_{round}_{i}\0")
            } else {
                format!("evt_{round}_{i}")
            };
            let key = format!("sub_{}", i % 7);
            let at = 1_700_000_000_000 + (round * 50 + i) as i64 * 1_000;
            tasks.push(tokio::spawn(async move {
                let result = db
                    .record_notification(notification(&id, &key, at, false))
                    .await;
                (id, key, result)
            }));
        }
        for (id, key, result) in futures_join(&mut tasks).await {
            match result {
                Ok(recorded) => {
                    assert_eq!(recorded.verdict, Verdict::Tracked, "{id:?}");
                    let stored = db.notification_exists("stripe", &id).await;
                    assert!(
                        stored.expect("notification_exists"),
                        "{id:?} was answered Ok but is not stored"
                    );
                }
                Err(e) => {
                    assert!(id.contains('\0'), "{id:?} failed: {e}");
                    // (PostgreSQL cannot even be asked about the id itself.)
                    let near = db.notification_exists("stripe", id.trim_end_matches('\0'));
                    assert!(!near.await.expect("notification_exists"), "{id:?}");
                }
            }
            let sub = db.subscription("stripe", &key).await.expect("subscription");
            assert!(sub.is_some(), "{key} is tracked");
        }
    }
    // Every good write of every batch is there, once.
    for round in 0..4 {
        for i in (0..50).filter(|i| i % 5 != 2) {
            let id = format!("evt_{round}_{i}");
            assert!(db.notification_exists("stripe", &id).await.expect("exists"));
            let again = db
                .record_notification(notification(&id, "sub_0", 0, false))
                .await
                .expect("a retry");
            assert_eq!(again.verdict, Verdict::Duplicate, "{id}");
        }
    }
    let stats = db.store_stats().await.expect("stats");
    let stripe = stats
        .iter()
        .find(|s| s.store == "stripe")
        .expect("stripe stats");
    // 7 purchases, 160 good writes and 160 retries; a poisoned write
    // counts nowhere (on SQLite it is stored, and counted, like the rest).
    let poisoned_stored = if backend == Backend::Sqlite { 40 } else { 0 };
    assert_eq!(stripe.accepted, 7 + 160 + poisoned_stored, "{stripe:?}");
    assert_eq!(stripe.untracked, 0, "{stripe:?}");
    assert_eq!(stripe.duplicates, 160, "{stripe:?}");
}

async fn futures_join<T>(tasks: &mut Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for t in tasks.drain(..) {
        out.push(t.await.expect("task"));
    }
    out
}

backends!(a_failing_write_is_undone_alone);
