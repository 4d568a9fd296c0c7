//! Property tests of the storage's promise (issue 8): whatever order a
//! store delivers a subscription's notifications in — duplicated, out of
//! order, some arriving before anyone tracks the subscription — the final
//! subscription state equals the one in-order delivery gives, every
//! notification is stored once, and each produces exactly one event.
//!
//! Each case runs against each backend (a real SQLite file, a real
//! PostgreSQL database; the group-commit writer included) two stores: a
//! reference fed in store order after tracking, and one fed the shuffled
//! arrival. Cases share a database per backend, each under store ids of its
//! own. SQLite runs with `synchronous = OFF` here only to keep the cases
//! fast; the fold logic does not depend on it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use proptest::prelude::*;
use storehook_core::{
    Environment, EventDetails, EventType, ImpliedState, SubscriptionStatus, VerifiedNotification,
};
use storehook_db::{
    EventFilter, EventRoute, NewNotification, NotificationFilter, OutboxConfig, Storage,
    Subscription, Verdict,
};

mod common;

use common::{Backend, TestDb};

const KEY: &str = "sub-1";
const USER: &str = "user-1";

/// What a generated notification says; the rest of a `VerifiedNotification`
/// is filled in the same way for every case.
#[derive(Debug, Clone)]
struct Spec {
    id: String,
    at: i64,
    event_type: EventType,
    environment: Environment,
    state: ImpliedState,
    product_id: Option<String>,
    attention: Option<String>,
}

impl Spec {
    fn notification(&self, store: &str) -> VerifiedNotification {
        VerifiedNotification {
            store: store.into(),
            environment: self.environment,
            notification_id: self.id.clone(),
            subscription_key: Some(KEY.into()),
            event_type: self.event_type,
            raw_type: self.event_type.as_str().into(),
            occurred_at_ms: self.at,
            product_id: self.product_id.clone(),
            purchase_kind: None,
            app_id: Some("com.example".into()),
            state: self.state.clone(),
            app_user_id_hint: None,
            continues_subscription_key: None,
            attention: self.attention.clone(),
            state_fetch_pending: false,
            details: EventDetails::default(),
            decoded: serde_json::json!({ "id": self.id }),
        }
    }
}

fn status() -> impl Strategy<Value = SubscriptionStatus> {
    prop_oneof![
        Just(SubscriptionStatus::Active),
        Just(SubscriptionStatus::GracePeriod),
        Just(SubscriptionStatus::BillingRetry),
        Just(SubscriptionStatus::Paused),
        Just(SubscriptionStatus::Expired),
        Just(SubscriptionStatus::Revoked),
    ]
}

fn event_type() -> impl Strategy<Value = EventType> {
    // TEST never carries a subscription; everything else can.
    prop::sample::select(
        EventType::ALL
            .into_iter()
            .filter(|t| *t != EventType::Test)
            .collect::<Vec<_>>(),
    )
}

fn implied_state() -> impl Strategy<Value = ImpliedState> {
    (
        prop::option::of(status()),
        prop::option::of(1_000i64..2_000),
        prop::option::of(any::<bool>()),
        prop::option::of(prop::sample::select(vec!["monthly", "yearly", "weekly"])),
    )
        .prop_map(
            |(status, expires_at_ms, auto_renew, product)| ImpliedState {
                status,
                expires_at_ms,
                auto_renew,
                product_id: product.map(str::to_owned),
            },
        )
}

/// 1–8 notifications with distinct ids; times drawn from a small range so
/// that ties (two notifications of the same millisecond) happen often.
fn history() -> impl Strategy<Value = Vec<Spec>> {
    prop::collection::vec(
        (
            0i64..12,
            event_type(),
            prop::bool::ANY,
            implied_state(),
            prop::option::of(prop::sample::select(vec!["monthly", "yearly"])),
            prop::option::weighted(0.2, prop::sample::select(vec!["answer A", "answer B"])),
        ),
        1..8,
    )
    .prop_map(|items| {
        items
            .into_iter()
            .enumerate()
            .map(
                |(i, (at, event_type, sandbox, state, product, attention))| Spec {
                    // Ids not in time order, so the tie-break is really tested.
                    id: format!("n{}", (i * 7) % 11),
                    at: 100 + at,
                    event_type,
                    environment: if sandbox {
                        Environment::Sandbox
                    } else {
                        Environment::Production
                    },
                    state,
                    product_id: product.map(str::to_owned),
                    attention: attention.map(str::to_owned),
                },
            )
            .collect::<Vec<_>>()
    })
    .prop_filter("distinct ids", |specs| {
        let mut ids: Vec<_> = specs.iter().map(|s| &s.id).collect();
        ids.sort();
        ids.dedup();
        ids.len() == specs.len()
    })
}

/// An arrival: the history shuffled, with store retries (duplicates) mixed
/// in, and the point at which the subscription starts being tracked.
#[derive(Debug, Clone)]
struct Arrival {
    specs: Vec<Spec>,
    /// Indexes into `specs`, in arrival order (some repeated).
    order: Vec<usize>,
    /// How many arrivals happen before `track`.
    track_after: usize,
}

fn arrival() -> impl Strategy<Value = Arrival> {
    history().prop_flat_map(|specs| {
        let n = specs.len();
        let shuffled = Just((0..n).collect::<Vec<_>>()).prop_shuffle();
        let retries = prop::collection::vec((0..n, any::<prop::sample::Index>()), 0..4);
        (Just(specs), shuffled, retries, 0..=n + 4).prop_map(
            |(specs, mut order, retries, track_after)| {
                for (which, at) in retries {
                    // A retry comes after the first delivery of its original.
                    let first = order.iter().position(|&i| i == which).unwrap_or(0);
                    let slot = first + 1 + at.index(order.len() - first);
                    order.insert(slot, which);
                }
                let track_after = track_after.min(order.len());
                Arrival {
                    specs,
                    order,
                    track_after,
                }
            },
        )
    })
}

/// One database per backend for all cases of a test binary, on a runtime
/// of its own (each proptest case runs synchronously).
struct Shared {
    runtime: tokio::runtime::Runtime,
    db: Arc<dyn Storage>,
    _t: TestDb,
}

fn shared(backend: Backend) -> &'static Shared {
    static SQLITE: OnceLock<Shared> = OnceLock::new();
    static POSTGRES: OnceLock<Shared> = OnceLock::new();
    let cell = match backend {
        Backend::Sqlite => &SQLITE,
        Backend::Postgres => &POSTGRES,
    };
    cell.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let t = TestDb::new(backend);
        let outbox = OutboxConfig {
            routes: vec![EventRoute {
                endpoint: "hook".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let db = runtime.block_on(t.open_with(outbox));
        Shared { runtime, db, _t: t }
    })
}

/// Store ids no other case uses.
fn case_stores() -> (String, String) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    (format!("reference-{n}"), format!("shuffled-{n}"))
}

async fn deliver(db: &dyn Storage, store: &str, spec: &Spec) -> Verdict {
    db.record_notification(NewNotification {
        notification: spec.notification(store),
        raw_body: spec.id.as_bytes().to_vec(),
        received_at_ms: 5_000,
        auto_track: false,
        forward_headers: Vec::new(),
        source: storehook_db::Source::Push,
    })
    .await
    .expect("record")
    .verdict
}

/// The part of a subscription that must not depend on arrival order.
#[derive(Debug, PartialEq)]
struct Final {
    status: Option<SubscriptionStatus>,
    expires_at_ms: Option<i64>,
    auto_renew: Option<bool>,
    product_id: Option<String>,
    environment: Option<Environment>,
    last_event_type: Option<EventType>,
    last_event_at_ms: Option<i64>,
    app_user_id: Option<String>,
    attention: Option<String>,
}

impl From<Subscription> for Final {
    fn from(s: Subscription) -> Self {
        Final {
            status: s.status,
            expires_at_ms: s.expires_at_ms,
            auto_renew: s.auto_renew,
            product_id: s.product_id,
            environment: s.environment,
            last_event_type: s.last_event_type,
            last_event_at_ms: s.last_event_at_ms,
            app_user_id: s.app_user_id,
            attention: s.attention,
        }
    }
}

/// A store's stored notifications, its events (and how many distinct
/// ones) and their per-subscription sequence numbers.
async fn stored_counts(db: &dyn Storage, store: &str) -> (i64, i64, i64, Vec<i64>) {
    let rows = db
        .recent_notifications(NotificationFilter {
            store: Some(store.into()),
            before_id: None,
            limit: 500,
        })
        .await
        .expect("notifications")
        .len() as i64;
    let events = db
        .events(EventFilter {
            store: Some(store.into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("events");
    let distinct: std::collections::HashSet<&str> =
        events.iter().map(|e| e.event_id.as_str()).collect();
    let sequences = events.iter().map(|e| e.sequence).collect();
    (rows, events.len() as i64, distinct.len() as i64, sequences)
}

/// Runs one case: the reference and the shuffled arrival must agree.
fn run_case(backend: Backend, arrival: &Arrival) -> Result<(), TestCaseError> {
    let shared = shared(backend);
    let db = shared.db.as_ref();
    let (reference, shuffled) = case_stores();
    shared.runtime.block_on(async {
        // The reference: tracked first, then store order (time, then id —
        // the host's documented tie-break).
        db.track(&reference, KEY, Some(USER), 1)
            .await
            .expect("track");
        let mut in_order = arrival.specs.clone();
        in_order.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.id.cmp(&b.id)));
        for spec in &in_order {
            prop_assert_eq!(deliver(db, &reference, spec).await, Verdict::Tracked);
        }
        let expected = Final::from(
            db.subscription(&reference, KEY)
                .await
                .expect("read")
                .expect("tracked"),
        );

        // The arrival as generated.
        let mut seen = std::collections::HashSet::new();
        for (step, &i) in arrival.order.iter().enumerate() {
            if step == arrival.track_after {
                db.track(&shuffled, KEY, Some(USER), 1)
                    .await
                    .expect("track");
            }
            let spec = &arrival.specs[i];
            let verdict = deliver(db, &shuffled, spec).await;
            let first = seen.insert(i);
            let tracked = step >= arrival.track_after;
            let want = match (first, tracked) {
                (false, _) => Verdict::Duplicate,
                (true, true) => Verdict::Tracked,
                (true, false) => Verdict::Untracked,
            };
            prop_assert_eq!(verdict, want, "arrival {} of {}", step, spec.id);
        }
        if arrival.track_after >= arrival.order.len() {
            db.track(&shuffled, KEY, Some(USER), 1)
                .await
                .expect("track");
        }
        let got = Final::from(
            db.subscription(&shuffled, KEY)
                .await
                .expect("read")
                .expect("tracked"),
        );
        prop_assert_eq!(&got, &expected);

        // Stored once, applied once: one row and one event per distinct
        // notification, sequence numbers 1..=n without gaps or repeats.
        let n = arrival.specs.len() as i64;
        for store in [&reference, &shuffled] {
            let (rows, events, distinct, mut sequences) = stored_counts(db, store).await;
            prop_assert_eq!((rows, events, distinct), (n, n, n), "{}", store);
            sequences.sort_unstable();
            prop_assert_eq!(sequences, (1..=n).collect::<Vec<_>>(), "{}", store);
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 192,
        // Shrunk failures are kept beside this file and replayed first.
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::SourceParallel("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_arrival_converges_to_the_in_order_state_on_sqlite(arrival in arrival()) {
        run_case(Backend::Sqlite, &arrival)?;
    }

    #[test]
    fn any_arrival_converges_to_the_in_order_state_on_postgres(arrival in arrival()) {
        run_case(Backend::Postgres, &arrival)?;
    }
}

/// The attention flag (Apple CONSUMPTION_REQUEST…) follows store order too:
/// an older request arriving late must not replace a newer one.
fn the_newest_attention_wins_whatever_the_arrival_order(backend: Backend) {
    let spec = |id: &str, at: i64, attention: &str| Spec {
        id: id.into(),
        at,
        event_type: EventType::Other,
        environment: Environment::Production,
        state: ImpliedState::default(),
        product_id: None,
        attention: Some(attention.into()),
    };
    let older = spec("a", 10, "older request");
    let newer = spec("b", 20, "newer request");
    let mut finals = BTreeMap::new();
    let shared = shared(backend);
    let db = shared.db.as_ref();
    for (label, order, track_after) in [
        ("in order", vec![0, 1], 0),
        ("newer first", vec![1, 0], 0),
        ("newer first, untracked", vec![1, 0], 2),
    ] {
        let arrival = Arrival {
            specs: vec![older.clone(), newer.clone()],
            order,
            track_after,
        };
        let (store, _) = case_stores();
        let attention = shared.runtime.block_on(async {
            for (step, &i) in arrival.order.iter().enumerate() {
                if step == arrival.track_after {
                    db.track(&store, KEY, Some(USER), 1).await.expect("track");
                }
                deliver(db, &store, &arrival.specs[i]).await;
            }
            if arrival.track_after >= arrival.order.len() {
                db.track(&store, KEY, Some(USER), 1).await.expect("track");
            }
            db.subscription(&store, KEY)
                .await
                .expect("read")
                .expect("tracked")
                .attention
        });
        finals.insert(label, attention);
    }
    for (label, attention) in &finals {
        assert_eq!(
            attention.as_deref(),
            Some("newer request"),
            "{label}: {finals:?}"
        );
    }
}

#[test]
fn the_newest_attention_wins_whatever_the_arrival_order_on_sqlite() {
    the_newest_attention_wins_whatever_the_arrival_order(Backend::Sqlite);
}

#[test]
fn the_newest_attention_wins_whatever_the_arrival_order_on_postgres() {
    the_newest_attention_wins_whatever_the_arrival_order(Backend::Postgres);
}
