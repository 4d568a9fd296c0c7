//! Backfill for Google Play. Play keeps no history of its notifications
//! (Pub/Sub redelivers for its retention, 7 days by default), so a
//! backfill recovers what the Play Developer API still has:
//!
//! 1. **Voided purchases** of each configured package over the window
//!    (`voidedpurchases.list`, `type=1`, at most the last 30 days, which is
//!    all Google keeps), each one as the notification its pushed RTDN maps
//!    to, with the id `voided:<orderId>` (see `map::voided_notification_id`):
//!    a void already pushed or already recovered is a duplicate.
//! 2. **States** of the tracked purchases, re-read with
//!    `subscriptionsv2.get` (subscriptions) or `products.get` (one-time
//!    products), a bounded number of requests per page.
//!
//! `only_failures` (catch-up) changes nothing: Google does not say which
//! notifications Pub/Sub failed to deliver.
//!
//! The cursor, opaque to the host, says which phase, package, page token
//! or last subscription key comes next, so a restart resumes there.

use serde::{Deserialize, Serialize};
use storehook_core::{
    AdapterError, BackfillPage, BackfillRequest, BackfillWindow, Outcome, Recovered, StoreHost,
};

use crate::play_api::{PlayApiClient, PlayApiError, VoidedQuery};
use crate::purchase::PlayPurchase;
use crate::{map, GoogleAdapter};

/// What Google keeps of voided purchases.
pub const VOIDED_LOOKBACK_MS: i64 = 30 * 24 * 3_600_000;
/// Google's largest page of voided purchases.
const VOIDED_PAGE_SIZE: u32 = 1000;
/// State reads per page: far below the per-minute quota
/// (3000), and a page the host commits before asking for the next.
pub const STATE_REQUESTS_PER_PAGE: u32 = 50;
/// A window reaching back to within this of Google's 30-day limit (or of
/// now) leaves the bound to Google, whose clock may differ from ours: a
/// `startTime` a second too old, or an `endTime` a second in Google's
/// future, is refused.
const CLOCK_MARGIN_MS: i64 = 3_600_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case", deny_unknown_fields)]
enum Cursor {
    /// Voided purchases of `package`, from `page_token` (none: its first page).
    Voided {
        package: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        page_token: Option<String>,
    },
    /// Tracked subscriptions after `after` (none: from the first).
    States {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        /// States re-read so far, for the progress line.
        #[serde(default)]
        read: u64,
    },
}

impl Cursor {
    fn encode(&self) -> Result<String, AdapterError> {
        serde_json::to_string(self).map_err(|e| {
            AdapterError::malformed("bad_cursor", format!("cannot write the cursor: {e}"))
        })
    }

    fn decode(text: &str) -> Result<Self, AdapterError> {
        serde_json::from_str(text).map_err(|e| {
            AdapterError::malformed(
                "bad_cursor",
                format!("the backfill's cursor is not one this adapter wrote: {e}"),
            )
        })
    }
}

pub(crate) async fn backfill_page(
    adapter: &GoogleAdapter,
    req: BackfillRequest<'_>,
) -> Result<BackfillPage, AdapterError> {
    let Some(client) = &adapter.play_api else {
        return Err(AdapterError::Unsupported {
            message: "[stores.google.play_api] is not configured: there is no API to recover from"
                .to_owned(),
        });
    };
    let packages = &adapter.settings.package_names;
    let mut cursor = match req.cursor {
        Some(text) => Cursor::decode(text)?,
        None => first_voided(packages, None),
    };
    loop {
        match cursor {
            Cursor::Voided {
                package,
                page_token,
            } => {
                // A package no longer configured since the job started: on.
                if !packages.contains(&package) {
                    cursor = first_voided(packages, Some(&package));
                    continue;
                }
                let Some(query) = voided_query(req.window, page_token, req.host.now_ms()) else {
                    req.host.progress(&format!(
                        "{package}: Google keeps voided purchases for 30 days only; none can be read \
                         for this window"
                    ));
                    cursor = first_voided(packages, Some(&package));
                    continue;
                };
                return voided_page(client, packages, &package, &query, req.host).await;
            }
            Cursor::States { after, read } => {
                return states_page(adapter, client, after, read, req.host).await;
            }
        }
    }
}

/// The first page of the package after `after` (none: the first package),
/// or the states phase when there is none.
fn first_voided(packages: &[String], after: Option<&str>) -> Cursor {
    let next = match after {
        None => packages.first(),
        Some(done) => packages
            .iter()
            .position(|p| p == done)
            .and_then(|i| packages.get(i + 1)),
    };
    match next {
        Some(package) => Cursor::Voided {
            package: package.clone(),
            page_token: None,
        },
        None => Cursor::States {
            after: None,
            read: 0,
        },
    }
}

/// The list's filters for the window, clamped to what Google keeps;
/// `None` when the window ended before that.
fn voided_query(
    window: &BackfillWindow,
    page_token: Option<String>,
    now_ms: i64,
) -> Option<VoidedQuery> {
    let oldest = now_ms - VOIDED_LOOKBACK_MS;
    if window.until_ms <= oldest + CLOCK_MARGIN_MS {
        return None;
    }
    Some(VoidedQuery {
        // Google's default start is its own now minus 30 days.
        start_ms: (window.since_ms > oldest + CLOCK_MARGIN_MS).then_some(window.since_ms),
        end_ms: (window.until_ms < now_ms - CLOCK_MARGIN_MS).then_some(window.until_ms),
        max_results: VOIDED_PAGE_SIZE,
        page_token,
    })
}

async fn voided_page(
    client: &PlayApiClient,
    packages: &[String],
    package: &str,
    query: &VoidedQuery,
    host: &dyn StoreHost,
) -> Result<BackfillPage, AdapterError> {
    let (page, scanned) = client
        .list_voided(package, query)
        .await
        .map_err(|e| e.into_adapter_error(host.now_ms()))?;
    let recovered: Vec<Recovered> = page
        .purchases
        .iter()
        .filter_map(|(v, raw)| {
            let notification = map::recovered_void(package, v, raw)?;
            Some(Recovered::Notification {
                outcome: Outcome::Notification(Box::new(notification)),
                raw_body: serde_json::to_vec(raw).ok()?,
            })
        })
        .collect();
    // A listed void without the fields a refund needs cannot be recorded.
    let skipped = (page.purchases.len() - recovered.len()) as u64;
    host.progress(&format!(
        "{package}: {} voided purchase(s) read{}",
        recovered.len(),
        if page.next_page_token.is_some() {
            ", more to come"
        } else {
            ""
        }
    ));
    let next = match page.next_page_token {
        Some(token) => Cursor::Voided {
            package: package.to_owned(),
            page_token: Some(token),
        },
        None => first_voided(packages, Some(package)),
    };
    Ok(BackfillPage {
        recovered,
        next_cursor: Some(next.encode()?),
        scanned: scanned as u64,
        skipped,
    })
}

async fn states_page(
    adapter: &GoogleAdapter,
    client: &PlayApiClient,
    after: Option<String>,
    read: u64,
    host: &dyn StoreHost,
) -> Result<BackfillPage, AdapterError> {
    let tracked = host
        .tracked_subscriptions(after.as_deref(), STATE_REQUESTS_PER_PAGE)
        .await?;
    let mut recovered = Vec::new();
    let mut last_done = after;
    let mut gone = 0u64;
    for sub in &tracked {
        let package = match adapter.package_for(sub.app_id.as_deref()) {
            Ok(package) => package,
            // Another app's, or unknown with several configured: not ours to ask.
            Err(_) => {
                last_done = Some(sub.key.clone());
                continue;
            }
        };
        // A one-time purchase whose notifications named no product cannot
        // be asked about.
        let Ok(purchase) = PlayPurchase::of(sub.subscription_ref()) else {
            gone += 1;
            last_done = Some(sub.key.clone());
            continue;
        };
        match purchase.read_state(client, package, host.now_ms()).await {
            Ok(update) => recovered.push(Recovered::State {
                key: sub.key.clone(),
                update,
            }),
            // Expired long ago (Google answers 410 after 60 days), or a
            // token Play does not know as what it was stored as: nothing to
            // re-read.
            Err(PlayApiError::NotFound { .. } | PlayApiError::Rejected { status: 400, .. }) => {
                gone += 1;
            }
            Err(e) if e.is_transient() && !recovered.is_empty() => {
                // Keep what this page has; the next one starts at the failure.
                host.progress(&format!("{e}; continuing from here"));
                return states_result(recovered, last_done, read, tracked.len() as u64, true);
            }
            Err(e) => return Err(e.into_adapter_error(host.now_ms())),
        }
        last_done = Some(sub.key.clone());
    }
    let read_now = read + recovered.len() as u64;
    host.progress(&format!(
        "{read_now} subscription state(s) re-read from Google Play{}",
        if gone > 0 {
            format!("; {gone} no longer known to Google Play in this page")
        } else {
            String::new()
        }
    ));
    let more = tracked.len() as u32 >= STATE_REQUESTS_PER_PAGE;
    states_result(recovered, last_done, read, tracked.len() as u64, more)
}

fn states_result(
    recovered: Vec<Recovered>,
    last_done: Option<String>,
    read: u64,
    scanned: u64,
    more: bool,
) -> Result<BackfillPage, AdapterError> {
    let next_cursor = if more {
        Some(
            Cursor::States {
                after: last_done,
                read: read + recovered.len() as u64,
            }
            .encode()?,
        )
    } else {
        None
    };
    Ok(BackfillPage {
        recovered,
        next_cursor,
        scanned,
        skipped: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn cursors_round_trip_and_refuse_strangers() {
        for c in [
            Cursor::Voided {
                package: "com.example".into(),
                page_token: Some("p/2?x".into()),
            },
            Cursor::States {
                after: Some("tok.AO-J1Ox".into()),
                read: 7,
            },
            Cursor::States {
                after: None,
                read: 0,
            },
        ] {
            assert_eq!(Cursor::decode(&c.encode().unwrap()).unwrap(), c);
        }
        assert_eq!(Cursor::decode("notjson").unwrap_err().code(), "bad_cursor");
        assert_eq!(
            Cursor::decode(r#"{"phase":"later"}"#).unwrap_err().code(),
            "bad_cursor"
        );
    }

    #[test]
    fn packages_then_states() {
        let packages = vec!["a".to_owned(), "b".to_owned()];
        let voided = |p: &str| Cursor::Voided {
            package: p.into(),
            page_token: None,
        };
        assert_eq!(first_voided(&packages, None), voided("a"));
        assert_eq!(first_voided(&packages, Some("a")), voided("b"));
        let states = Cursor::States {
            after: None,
            read: 0,
        };
        assert_eq!(first_voided(&packages, Some("b")), states);
        assert_eq!(first_voided(&packages, Some("gone")), states);
    }

    #[test]
    fn the_window_is_clamped_to_what_google_keeps() {
        let now = 1_800_000_000_000;
        let window = |since_days: i64, until_days: i64| BackfillWindow {
            since_ms: now - since_days * DAY,
            until_ms: now - until_days * DAY,
            only_failures: false,
        };
        // Within 30 days: both bounds sent.
        let q = voided_query(&window(10, 2), None, now).unwrap();
        assert_eq!(
            (q.start_ms, q.end_ms),
            (Some(now - 10 * DAY), Some(now - 2 * DAY))
        );
        // Older than 30 days, up to now: Google's own bounds.
        let q = voided_query(&window(90, 0), None, now).unwrap();
        assert_eq!((q.start_ms, q.end_ms), (None, None));
        assert_eq!(q.max_results, 1000);
        // Ended before what Google keeps: nothing to ask.
        assert!(voided_query(&window(90, 40), None, now).is_none());
    }
}
