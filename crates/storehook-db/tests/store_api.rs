//! The pull side's storage: backfill jobs (a cursor per committed page,
//! finished jobs never change, survive a reopen), stored checks, the
//! acknowledgement queue (queued once, acknowledged stays so, flagged after
//! the threshold), overdue subscriptions, and the lookups adapters make.

use storehook_core::{
    AckOutcome, BackfillWindow, CheckReport, Environment, EventDetails, EventType, Finding,
    ImpliedState, PurchaseKind, StateUpdate, SubscriptionStatus, VerifiedNotification,
};
mod common;

use common::{Backend, TestDb};
use storehook_db::{
    AckAttempt, JobKind, JobStatus, JobStep, NewJob, NewNotification, Source, Storage, StoredCheck,
};

const HOUR: i64 = 3_600_000;

fn notification(id: &str, key: &str, at: i64, expires: i64, source: Source) -> NewNotification {
    NewNotification {
        notification: VerifiedNotification {
            store: "example".into(),
            environment: Environment::Production,
            notification_id: id.into(),
            subscription_key: Some(key.into()),
            event_type: EventType::Renewal,
            raw_type: "RENEWAL".into(),
            occurred_at_ms: at,
            product_id: Some("monthly".into()),
            purchase_kind: None,
            app_id: Some("com.example.app".into()),
            state: ImpliedState {
                status: Some(SubscriptionStatus::Active),
                expires_at_ms: Some(expires),
                auto_renew: Some(true),
                product_id: Some("monthly".into()),
            },
            app_user_id_hint: None,
            continues_subscription_key: None,
            attention: None,
            state_fetch_pending: false,
            details: EventDetails::default(),
            decoded: serde_json::json!({"id": id, "note": "<b>decoded</b>"}),
        },
        raw_body: id.as_bytes().to_vec(),
        received_at_ms: at,
        auto_track: false,
        forward_headers: Vec::new(),
        source,
    }
}

/// Tracks `key` and records a notification saying it expires at `expires`.
async fn tracked(db: &dyn Storage, key: &str, expires: i64) {
    db.track("example", key, Some("user"), 10)
        .await
        .expect("track");
    db.record_notification(notification(
        &format!("n-{key}"),
        key,
        1_000,
        expires,
        Source::Push,
    ))
    .await
    .expect("record");
}

fn window() -> BackfillWindow {
    BackfillWindow {
        since_ms: 1_000,
        until_ms: 9_000,
        only_failures: true,
    }
}

async fn a_job_keeps_its_cursor_per_page_and_a_finished_job_never_changes(backend: Backend) {
    let t = TestDb::new(backend);
    let id = {
        let db = t.open().await;
        let job = db
            .create_job(NewJob {
                store: "example".into(),
                kind: JobKind::Backfill,
                window: window(),
                created_at_ms: 100,
            })
            .await
            .expect("create");
        assert_eq!(job.status, JobStatus::Queued);
        assert_eq!(job.window(), window());
        let step = |cursor: &str, at| JobStep {
            status: Some(JobStatus::Running),
            cursor: Some(Some(cursor.into())),
            pages: 1,
            scanned: 10,
            recovered: 3,
            duplicates: 7,
            progress: Some(format!("page at {cursor}")),
            at_ms: at,
            ..Default::default()
        };
        db.update_job(job.id, step("c1", 200)).await.expect("step");
        let job = db
            .update_job(job.id, step("c2", 300))
            .await
            .expect("step")
            .expect("job");
        assert_eq!(
            (job.pages, job.scanned, job.recovered, job.duplicates),
            (2, 20, 6, 14),
            "counters add up"
        );
        job.id
    };
    // Reopened: the job is unfinished and resumes at its last cursor.
    let db = t.open().await;
    let unfinished = db.unfinished_jobs().await.expect("unfinished");
    assert_eq!(unfinished.len(), 1);
    assert_eq!(unfinished[0].cursor.as_deref(), Some("c2"));
    assert_eq!(unfinished[0].progress.as_deref(), Some("page at c2"));
    let done = db
        .update_job(
            id,
            JobStep {
                status: Some(JobStatus::Done),
                cursor: Some(None),
                at_ms: 400,
                ..Default::default()
            },
        )
        .await
        .expect("finish")
        .expect("job");
    assert_eq!(
        (done.status, done.finished_at_ms),
        (JobStatus::Done, Some(400))
    );
    assert_eq!(done.cursor, None);
    // A late step (a cancel racing the end) changes nothing.
    let after = db
        .update_job(
            id,
            JobStep {
                status: Some(JobStatus::Cancelled),
                pages: 5,
                at_ms: 500,
                ..Default::default()
            },
        )
        .await
        .expect("late step")
        .expect("job");
    assert_eq!(after, done);
    assert!(db.unfinished_jobs().await.expect("unfinished").is_empty());
    assert_eq!(db.jobs(Some("example"), 10).await.expect("jobs").len(), 1);
    assert!(db.jobs(Some("other"), 10).await.expect("jobs").is_empty());
    assert_eq!(db.job(id + 1).await.expect("job"), None);
}

async fn a_stores_latest_check_replaces_the_one_before(backend: Backend) {
    let t = TestDb::new(backend);
    let db = t.open().await;
    let check = |at, findings| StoredCheck {
        store: "example".into(),
        checked_at_ms: at,
        report: CheckReport::from_findings(findings, false),
    };
    db.save_check(check(
        1,
        vec![Finding::error("Disabled", "enable it").with_code("X")],
    ))
    .await
    .expect("save");
    db.save_check(check(2, vec![Finding::ok("Fine", "all good")]))
        .await
        .expect("save");
    let checks = db.checks().await.expect("checks");
    assert_eq!(
        checks,
        vec![check(2, vec![Finding::ok("Fine", "all good")])]
    );
}

async fn lookups_for_adapters_and_the_notification_detail(backend: Backend) {
    let t = TestDb::new(backend);
    let db = t.open().await;
    for key in ["s3", "s1", "s2"] {
        db.track("example", key, Some("user"), 10)
            .await
            .expect("track");
    }
    db.track("other", "s0", None, 10).await.expect("track");
    db.record_notification(notification("n1", "s1", 1_000, 5_000, Source::Backfill))
        .await
        .expect("record");
    assert!(db
        .notification_exists("example", "n1")
        .await
        .expect("exists"));
    assert!(!db
        .notification_exists("example", "n2")
        .await
        .expect("exists"));
    assert!(!db.notification_exists("other", "n1").await.expect("exists"));

    let first = db
        .tracked_subscriptions("example", None, 2)
        .await
        .expect("page");
    let keys: Vec<_> = first.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, ["s1", "s2"]);
    assert_eq!(first[0].app_id.as_deref(), Some("com.example.app"));
    let rest = db
        .tracked_subscriptions("example", Some("s2"), 2)
        .await
        .expect("page");
    assert_eq!(
        rest.iter().map(|t| t.key.as_str()).collect::<Vec<_>>(),
        ["s3"]
    );

    // The detail reads its own columns (the decoded payload, the source).
    let recent = db
        .recent_notifications(storehook_db::NotificationFilter {
            store: Some("example".into()),
            before_id: None,
            limit: 10,
        })
        .await
        .expect("recent");
    let (n, decoded) = db
        .notification_decoded(recent[0].id)
        .await
        .expect("detail")
        .expect("found");
    assert_eq!(n.source, Source::Backfill);
    assert_eq!(decoded["note"], "<b>decoded</b>");
    let stats = db.store_stats().await.expect("stats");
    let example = stats.iter().find(|s| s.store == "example").expect("stats");
    assert_eq!(example.recovered, 1);
    assert_eq!(example.last_received_ms, None, "a recovery is not a push");
}

async fn a_purchase_is_queued_once_stays_acknowledged_and_is_flagged_late(backend: Backend) {
    let t = TestDb::new(backend);
    let db = t.open().await;
    for key in ["p1", "p2"] {
        tracked(db.as_ref(), key, 9 * HOUR).await;
    }
    let pending = |purchased| StateUpdate {
        state: ImpliedState::default(),
        as_of_ms: 2_000,
        acknowledgement_pending: true,
        purchased_at_ms: Some(purchased),
        ..Default::default()
    };
    for _ in 0..2 {
        db.apply_state_update("example", "p1", pending(1_000), 2_000)
            .await
            .expect("update");
    }
    db.apply_state_update("example", "p2", pending(50 * HOUR), 2_000)
        .await
        .expect("update");
    let due = db.due_acknowledgements(3_000, 10).await.expect("due");
    assert_eq!(due.len(), 2, "queued once each: {due:?}");
    assert_eq!(due[0].app_id.as_deref(), Some("com.example.app"));

    // A conflict: retried later, not before.
    db.record_acknowledgement(
        "example",
        "p1",
        AckAttempt::Retry {
            at_ms: 10_000,
            error: "busy".into(),
        },
        3_000,
    )
    .await
    .expect("retry");
    let due = db.due_acknowledgements(5_000, 10).await.expect("due");
    assert_eq!(
        due.iter()
            .map(|d| d.subscription_id.as_str())
            .collect::<Vec<_>>(),
        ["p2"]
    );
    assert_eq!(
        db.next_acknowledgement_due().await.expect("next"),
        Some(2_000)
    );

    // Flagged from the threshold on, counting from the purchase.
    let flagged = db
        .flag_unacknowledged(48 * HOUR, "not acknowledged")
        .await
        .expect("flag");
    assert_eq!(flagged, 1, "p1 was bought at 1 s, p2 at 50 h");
    assert_eq!(
        db.flag_unacknowledged(48 * HOUR, "not acknowledged")
            .await
            .expect("flag"),
        0,
        "flagged once"
    );
    let p1 = db
        .subscription("example", "p1")
        .await
        .expect("sub")
        .expect("p1");
    assert_eq!(p1.attention.as_deref(), Some("not acknowledged"));
    let stats = db.acknowledgement_stats().await.expect("stats");
    assert_eq!(
        (stats[0].pending, stats[0].overdue, stats[0].acknowledged),
        (2, 1, 0)
    );

    // Acknowledged: the flag goes, and a lagging re-read does not queue it again.
    db.record_acknowledgement(
        "example",
        "p1",
        AckAttempt::Finished(AckOutcome::Acknowledged),
        11_000,
    )
    .await
    .expect("done");
    let p1 = db
        .subscription("example", "p1")
        .await
        .expect("sub")
        .expect("p1");
    assert_eq!(p1.attention, None);
    db.apply_state_update("example", "p1", pending(1_000), 12_000)
        .await
        .expect("lagging re-read");
    let due = db
        .due_acknowledgements(i64::MAX / 2, 10)
        .await
        .expect("due");
    assert_eq!(
        due.iter()
            .map(|d| d.subscription_id.as_str())
            .collect::<Vec<_>>(),
        ["p2"]
    );
    let stats = db.acknowledgement_stats().await.expect("stats");
    assert_eq!((stats[0].pending, stats[0].acknowledged), (1, 1));

    // The app acknowledged p2 itself: the store's state says so, the queue lets go.
    db.apply_state_update(
        "example",
        "p2",
        StateUpdate {
            acknowledgement_pending: false,
            ..pending(50 * HOUR)
        },
        13_000,
    )
    .await
    .expect("update");
    assert!(db
        .due_acknowledgements(i64::MAX / 2, 10)
        .await
        .expect("due")
        .is_empty());
}

async fn a_subscription_past_its_expiry_with_no_word_is_overdue(backend: Backend) {
    let t = TestDb::new(backend);
    let db = t.open().await;
    for (key, expires) in [
        ("late", 10 * HOUR),
        ("fine", 100 * HOUR),
        ("later", 20 * HOUR),
    ] {
        tracked(db.as_ref(), key, expires).await;
    }
    let overdue = db.overdue_subscriptions(30 * HOUR).await.expect("overdue");
    assert_eq!(overdue.len(), 1, "{overdue:?}");
    assert_eq!(overdue[0].count, 2);
    assert_eq!(overdue[0].oldest_subscription_id, "late");
    assert_eq!(overdue[0].oldest_due_ms, 10 * HOUR);
    assert!(db
        .overdue_subscriptions(5 * HOUR)
        .await
        .expect("overdue")
        .is_empty());
}

async fn subscriptions_that_ended_long_ago_are_not_listed_to_adapters(backend: Backend) {
    let t = TestDb::new(backend);
    let db = t.open().await;
    let now = storehook_core::time::now_ms();
    tracked(db.as_ref(), "active", now + 30 * 24 * HOUR).await;
    tracked(db.as_ref(), "ended-lately", now - 10 * 24 * HOUR).await;
    tracked(db.as_ref(), "ended-long-ago", now - 90 * 24 * HOUR).await;
    for (key, at) in [
        ("ended-lately", now - 10 * 24 * HOUR),
        ("ended-long-ago", now - 90 * 24 * HOUR),
    ] {
        let mut expired = notification(&format!("x-{key}"), key, at, at, Source::Push);
        expired.notification.event_type = EventType::Expiration;
        expired.notification.state.status = Some(SubscriptionStatus::Expired);
        db.record_notification(expired).await.expect("record");
    }
    let listed = db
        .tracked_subscriptions("example", None, 10)
        .await
        .expect("list");
    let keys: Vec<_> = listed.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, ["active", "ended-lately"]);
}

async fn a_revoked_purchase_is_not_listed_to_adapters(backend: Backend) {
    let t = TestDb::new(backend);
    let db = t.open().await;
    let now = storehook_core::time::now_ms();
    tracked(db.as_ref(), "active", now + 30 * 24 * HOUR).await;
    tracked(db.as_ref(), "refunded", now + 30 * 24 * HOUR).await;
    let mut void = notification("v-refunded", "refunded", 2_000, 0, Source::Push);
    void.notification.event_type = EventType::Refund;
    void.notification.state = ImpliedState {
        status: Some(SubscriptionStatus::Revoked),
        ..ImpliedState::default()
    };
    db.record_notification(void).await.expect("record");
    let listed = db
        .tracked_subscriptions("example", None, 10)
        .await
        .expect("list");
    let keys: Vec<_> = listed.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, ["active"], "a void is final: nothing to re-read");
}

async fn what_was_bought_goes_with_the_purchase_to_fetches_lookups_and_the_queue(backend: Backend) {
    let t = TestDb::new(backend);
    let db = t.open().await;
    db.track("example", "otp", Some("user"), 10)
        .await
        .expect("track");
    let mut bought = notification("n-otp", "otp", 1_000, 5_000, Source::Push);
    bought.notification.event_type = EventType::NonRenewingPurchase;
    bought.notification.product_id = Some("coins_100".into());
    bought.notification.state.product_id = None;
    bought.notification.purchase_kind = Some(PurchaseKind::OneTime);
    bought.notification.state_fetch_pending = true;
    db.record_notification(bought).await.expect("record");
    // A later notification that does not say what was bought changes nothing.
    let mut later = notification("n-otp-2", "otp", 2_000, 5_000, Source::Push);
    later.notification.product_id = None;
    later.notification.state.product_id = None;
    db.record_notification(later).await.expect("record");

    let pending = db.pending_state_fetches().await.expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(
        pending[0].purchase(),
        storehook_core::PurchaseRef {
            key: "otp".into(),
            app_id: Some("com.example.app".into()),
            product_id: Some("coins_100".into()),
            kind: Some(PurchaseKind::OneTime),
        }
    );
    let listed = db
        .tracked_subscriptions("example", None, 10)
        .await
        .expect("list");
    assert_eq!(listed, vec![pending[0].purchase()]);

    // Queued by the state read: the product and kind come with it.
    let update = StateUpdate {
        state: ImpliedState::default(),
        as_of_ms: 3_000,
        acknowledgement_pending: true,
        purchased_at_ms: Some(1_000),
        ..StateUpdate::default()
    };
    db.apply_state_update("example", "otp", update, 3_000)
        .await
        .expect("apply");
    let due = db.due_acknowledgements(3_000, 10).await.expect("due");
    assert_eq!(due.len(), 1);
    let purchase = due[0].purchase();
    assert_eq!(
        (purchase.key, purchase.product_id, purchase.kind),
        ("otp", Some("coins_100"), Some(PurchaseKind::OneTime))
    );
}

backends!(
    a_job_keeps_its_cursor_per_page_and_a_finished_job_never_changes,
    a_stores_latest_check_replaces_the_one_before,
    lookups_for_adapters_and_the_notification_detail,
    a_purchase_is_queued_once_stays_acknowledged_and_is_flagged_late,
    a_subscription_past_its_expiry_with_no_word_is_overdue,
    subscriptions_that_ended_long_ago_are_not_listed_to_adapters,
    a_revoked_purchase_is_not_listed_to_adapters,
    what_was_bought_goes_with_the_purchase_to_fetches_lookups_and_the_queue,
);

/// Several instances on one PostgreSQL database: a job is one instance's
/// at a time, instances queueing a catch-up together queue one, and a due
/// acknowledgement is handed to one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_background_work_without_doing_it_twice() {
    let t = TestDb::new(Backend::Postgres);
    let (a, b) = (t.open().await, t.open().await);
    let catch_up = |at| NewJob {
        store: "example".into(),
        kind: JobKind::CatchUp,
        window: window(),
        created_at_ms: at,
    };
    let (first, second) = (
        a.create_job(catch_up(100)).await.expect("create"),
        b.create_job(catch_up(101)).await.expect("create"),
    );
    assert_eq!(first.id, second.id, "one catch-up per store at a time");
    assert_eq!(a.unfinished_jobs().await.expect("jobs").len(), 1);

    assert!(a.claim_job(first.id).await.expect("claim"));
    assert!(!b.claim_job(first.id).await.expect("claim"), "a runs it");
    assert!(a.claim_job(first.id).await.expect("renew"), "a keeps it");
    a.update_job(
        first.id,
        JobStep {
            status: Some(JobStatus::Done),
            at_ms: 200,
            ..Default::default()
        },
    )
    .await
    .expect("finish");
    assert!(!b.claim_job(first.id).await.expect("claim"), "finished");
    // A new catch-up may be queued once the last one finished.
    let next = b.create_job(catch_up(300)).await.expect("create");
    assert_ne!(next.id, first.id);

    // A pending acknowledgement goes to one instance until its lease ends.
    tracked(a.as_ref(), "sub-ack", 9 * HOUR).await;
    a.apply_state_update(
        "example",
        "sub-ack",
        StateUpdate {
            acknowledgement_pending: true,
            purchased_at_ms: Some(1_000),
            ..StateUpdate::default()
        },
        1_000,
    )
    .await
    .expect("state");
    let now = storehook_core::time::now_ms();
    let due = a.due_acknowledgements(now, 10).await.expect("due");
    assert_eq!(due.len(), 1);
    let (to_a, to_b) = tokio::join!(
        a.claim_acknowledgement("example", "sub-ack", now),
        b.claim_acknowledgement("example", "sub-ack", now)
    );
    assert_ne!(
        to_a.expect("claim"),
        to_b.expect("claim"),
        "exactly one gets it"
    );
    assert!(a
        .due_acknowledgements(now + 1_000, 10)
        .await
        .expect("due")
        .is_empty());
    assert_eq!(
        b.due_acknowledgements(now + 120_000, 10)
            .await
            .expect("due")
            .len(),
        1,
        "due again after the lease (its instance never answered)"
    );
}
