//! Outstanding state fetches survive a restart and say which app the
//! subscription belongs to (the newest notification's), so that an adapter
//! serving several apps (Google Play packages) asks about the right one.

mod common;

use common::{Backend, TestDb};
use storehook_core::{
    Environment, EventDetails, EventType, ImpliedState, StateUpdate, VerifiedNotification,
};
use storehook_db::{NewNotification, PendingFetch};

fn notification(id: &str, key: &str, app: Option<&str>, at: i64) -> NewNotification {
    NewNotification {
        notification: VerifiedNotification {
            store: "google".into(),
            environment: Environment::Production,
            notification_id: id.into(),
            subscription_key: Some(key.into()),
            event_type: EventType::Renewal,
            raw_type: "SUBSCRIPTION_RENEWED".into(),
            occurred_at_ms: at,
            product_id: None,
            purchase_kind: None,
            app_id: app.map(Into::into),
            state: ImpliedState::default(),
            app_user_id_hint: None,
            continues_subscription_key: None,
            attention: None,
            state_fetch_pending: true,
            details: EventDetails::default(),
            decoded: serde_json::json!({}),
        },
        raw_body: id.as_bytes().to_vec(),
        received_at_ms: at,
        auto_track: false,
        forward_headers: Vec::new(),
        source: storehook_db::Source::Push,
    }
}

async fn pending_fetches_carry_the_newest_notifications_app(backend: Backend) {
    let t = TestDb::new(backend);
    {
        let db = t.open().await;
        for n in [
            notification("n1", "token-a", Some("com.example.old"), 1_000),
            notification("n2", "token-a", Some("com.example.a"), 2_000),
            notification("n3", "token-b", Some("com.example.b"), 3_000),
            notification("n4", "token-c", None, 4_000),
        ] {
            db.record_notification(n).await.expect("record");
        }
    }
    // A restart: a new storage on the same database.
    let db = t.open().await;
    let pending = db.pending_state_fetches().await.expect("pending");
    let expect = |key: &str, app: Option<&str>| PendingFetch {
        store: "google".into(),
        subscription_key: key.into(),
        app_id: app.map(Into::into),
        product_id: None,
        kind: None,
    };
    assert_eq!(
        pending,
        vec![
            expect("token-a", Some("com.example.a")),
            expect("token-b", Some("com.example.b")),
            expect("token-c", None),
        ]
    );
}

/// A pending fetch is claimed before every attempt: while it is pending
/// (one instance, SQLite), and on a shared database by one live instance
/// at a time, so several instances resuming the same fetches at start-up
/// read the store's API once; a claim of a gone instance is taken over.
async fn a_pending_fetch_is_one_instances_until_it_is_applied(backend: Backend) {
    let t = TestDb::new(backend);
    let a = t.open().await;
    a.record_notification(notification("n1", "token-a", Some("com.example.a"), 1_000))
        .await
        .expect("record");
    let now = storehook_core::time::now_ms();
    assert!(a
        .claim_state_fetch("google", "token-a", now)
        .await
        .expect("claim"));
    assert!(
        a.claim_state_fetch("google", "token-a", now + 1_000)
            .await
            .expect("renew"),
        "the claimer keeps it"
    );
    assert!(
        !a.claim_state_fetch("google", "token-never", now)
            .await
            .expect("claim"),
        "nothing pending: nothing to claim"
    );
    let applier = if backend == Backend::Postgres {
        // A second instance on the same database: every instance lists the
        // pending fetch at start-up, but only one may claim it.
        let b = t.open().await;
        assert_eq!(b.pending_state_fetches().await.expect("pending").len(), 1);
        let (to_a, to_b) = tokio::join!(
            a.claim_state_fetch("google", "token-a", now + 2_000),
            b.claim_state_fetch("google", "token-a", now + 2_000)
        );
        assert!(to_a.expect("claim"), "a holds it");
        assert!(!to_b.expect("claim"), "b must not fetch it too");
        // a's heartbeat is long stale by then (gone instances lose their
        // claims at once, without waiting for the lease).
        let later = now + 60_000;
        assert!(
            b.claim_state_fetch("google", "token-a", later)
                .await
                .expect("take over"),
            "a gone instance's claim is taken over"
        );
        assert!(
            !a.claim_state_fetch("google", "token-a", now + 3_000)
                .await
                .expect("claim"),
            "b holds it now"
        );
        b
    } else {
        a.clone()
    };
    applier
        .apply_state_update(
            "google",
            "token-a",
            StateUpdate {
                as_of_ms: now,
                ..StateUpdate::default()
            },
            now,
        )
        .await
        .expect("apply");
    assert!(
        !applier
            .claim_state_fetch("google", "token-a", now + 4_000)
            .await
            .expect("claim"),
        "applied: not pending any more"
    );
    // A new notification asking for a fetch makes it claimable again.
    a.record_notification(notification("n2", "token-a", Some("com.example.a"), 5_000))
        .await
        .expect("record");
    assert!(a
        .claim_state_fetch("google", "token-a", now + 5_000)
        .await
        .expect("claim"));
}

backends!(
    pending_fetches_carry_the_newest_notifications_app,
    a_pending_fetch_is_one_instances_until_it_is_applied,
);
