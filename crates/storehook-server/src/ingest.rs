//! Storing what an adapter made of a notification, whether the store pushed
//! it or a backfill recovered it: one path, so a recovered notification is
//! de-duplicated, applied and delivered exactly as a pushed one.

use std::sync::Arc;

use storehook_core::{Outcome, PurchaseRef};
use storehook_db::{DbError, NewNotification, RejectedNotification, Source, Verdict};

use crate::{fetch, AppState};

/// What storing an outcome came to.
pub(crate) struct Stored {
    pub verdict: Verdict,
    pub notification_id: String,
    /// For an acknowledged rejection: its code and message.
    pub rejection: Option<(String, String)>,
}

/// Stores one outcome; schedules its state fetch and wakes the delivery
/// worker when something new was stored.
pub(crate) async fn store_outcome(
    state: &Arc<AppState>,
    store: &str,
    outcome: Outcome,
    raw_body: Vec<u8>,
    forward_headers: Vec<(String, String)>,
    received_at_ms: i64,
    source: Source,
) -> Result<Stored, DbError> {
    match outcome {
        Outcome::Notification(mut notification) => {
            // The route (or the job) decides the store, whatever the adapter wrote.
            notification.store = store.to_owned();
            let fetch = notification
                .state_fetch_pending
                .then(|| notification.subscription_key.clone())
                .flatten()
                .map(|key| PurchaseRef {
                    key,
                    app_id: notification.app_id.clone(),
                    product_id: notification.product_id.clone(),
                    kind: notification.purchase_kind,
                });
            let id = notification.notification_id.clone();
            let recorded = state
                .storage
                .record_notification(NewNotification {
                    notification: *notification,
                    raw_body,
                    received_at_ms,
                    auto_track: state.auto_track,
                    forward_headers,
                    source,
                })
                .await?;
            if recorded.verdict != Verdict::Duplicate {
                if let Some(purchase) = fetch {
                    fetch::schedule(state.clone(), store.to_owned(), purchase);
                }
                state.delivery.wake();
            }
            Ok(Stored {
                verdict: recorded.verdict,
                notification_id: id,
                rejection: None,
            })
        }
        Outcome::AcknowledgedRejection {
            notification_id,
            code,
            message,
        } => {
            let id = notification_id.unwrap_or_else(|| body_fingerprint(&raw_body));
            let recorded = state
                .storage
                .record_rejected_notification(RejectedNotification {
                    store: store.to_owned(),
                    notification_id: id.clone(),
                    code: code.clone(),
                    message: message.clone(),
                    raw_body,
                    received_at_ms,
                })
                .await?;
            Ok(Stored {
                verdict: recorded.verdict,
                notification_id: id,
                rejection: Some((code, message)),
            })
        }
    }
}

/// A stable id for an acknowledged rejection that carries none.
fn body_fingerprint(body: &[u8]) -> String {
    // SHA-256: the same on every build and release (std's DefaultHasher is
    // not specified across releases), so a redelivery of the same bytes is
    // recognised as a duplicate after an upgrade too.
    let digest = ring::digest::digest(&ring::digest::SHA256, body);
    format!("body-{}", hex::encode(&digest.as_ref()[..16]))
}
