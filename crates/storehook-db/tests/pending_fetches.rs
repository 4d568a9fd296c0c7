//! Outstanding state fetches survive a restart and say which app the
//! subscription belongs to (the newest notification's), so that an adapter
//! serving several apps (Google Play packages) asks about the right one.

mod common;

use common::{Backend, TestDb};
use storehook_core::{Environment, EventDetails, EventType, ImpliedState, VerifiedNotification};
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

backends!(pending_fetches_carry_the_newest_notifications_app,);
