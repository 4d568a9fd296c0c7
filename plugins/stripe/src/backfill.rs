//! Backfill: the events of a window, from `GET /v1/events`, oldest first.
//!
//! Stripe lists newest first, and `ending_before` pages are newest first
//! too; there is no "oldest first" order. So the window is cut into time
//! slices (`created[gte]`/`created[lte]`, whole seconds), walked from the
//! oldest slice on:
//! - A slice that fits one page (`has_more: false`) is emitted reversed.
//!   The next slice is twice as wide when this one was sparse, so quiet
//!   stretches cost few requests.
//! - A slice that does not fit is walked down with `starting_after` to its
//!   oldest page (emitting nothing), then up with `ending_before` (each page
//!   emitted reversed). That costs about twice the pages, for this slice
//!   only, and keeps the exact order even among events of the same second;
//!   the next slice is narrowed to what should fit one page.
//!
//! Every call makes one request and keeps one page in memory. The cursor is
//! the slice (start, width) and, inside a walk, one event id: small, opaque
//! to the host (`v1.` + base64url JSON) and enough to resume after a
//! restart. Stripe keeps events 30 days, so the window starts no earlier.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use storehook_core::{
    AdapterError, BackfillPage, BackfillRequest, BackfillWindow, Recovered, StoreHost,
};

use crate::api::{ApiError, EventQuery, ListPage, ListedEvent, StripeApi, MAX_LIMIT};
use crate::map::MAPPED_EVENT_TYPES;
use crate::StripeAdapter;

/// "List events, going back up to 30 days."
pub const RETENTION_S: i64 = 30 * 86_400;
/// The first slice: an hour, doubled while sparse.
const INITIAL_WIDTH_S: i64 = 3_600;
/// Slices never grow past the retention (the whole window, in practice).
const MAX_WIDTH_S: i64 = RETENTION_S + 86_400;
/// A slice with fewer events than this is followed by one twice as wide; a
/// slice that overflowed is followed by one sized for about this many.
const SPARSE: u64 = 50;

const CURSOR_PREFIX: &str = "v1.";

/// Where a backfill stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Cursor {
    /// The current slice's first second (inclusive).
    lo: i64,
    /// The current slice's width in seconds (≥ 1).
    width: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    walk: Option<Walk>,
}

/// Inside a slice that does not fit one page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Walk {
    /// Paging down to the oldest page: `after` is the oldest event seen,
    /// `from` the cursor its page was asked with (to ask it again if the
    /// next page comes back empty).
    Down {
        after: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        seen: u64,
    },
    /// Paging up: `before` is the newest event emitted so far.
    Up { before: String, seen: u64 },
}

impl Cursor {
    fn encode(&self) -> Option<String> {
        let json = serde_json::to_vec(self).ok()?;
        Some(format!(
            "{CURSOR_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
        ))
    }

    fn decode(text: &str) -> Result<Self, AdapterError> {
        let bad = || {
            AdapterError::malformed(
                "bad_cursor",
                "the backfill cursor was not written by this Stripe adapter; start a new backfill",
            )
        };
        let body = text.strip_prefix(CURSOR_PREFIX).ok_or_else(bad)?;
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| bad())?;
        let cursor: Cursor = serde_json::from_slice(&json).map_err(|_| bad())?;
        if cursor.width < 1 {
            return Err(bad());
        }
        Ok(cursor)
    }

    /// The slice's last second (inclusive).
    fn hi(&self, until_s: i64) -> i64 {
        self.lo.saturating_add(self.width - 1).min(until_s)
    }

    /// On to the next slice, sized by how many events this one had.
    fn advance(&mut self, until_s: i64, events: u64) {
        let hi = self.hi(until_s);
        self.lo = hi.saturating_add(1);
        self.width = if events < SPARSE {
            self.width.saturating_mul(2).min(MAX_WIDTH_S)
        } else if events > u64::from(MAX_LIMIT) {
            let events = i64::try_from(events).unwrap_or(i64::MAX);
            (self.width.saturating_mul(SPARSE as i64) / events).max(1)
        } else {
            self.width
        };
        self.walk = None;
    }
}

/// The window in whole seconds: `created` has second precision, so the
/// seconds the window's ends fall in are included.
fn window_seconds(window: &BackfillWindow, now_ms: i64) -> (i64, i64) {
    let since = window.since_ms.div_euclid(1000);
    let oldest_listed = now_ms.div_euclid(1000) - RETENTION_S;
    (since.max(oldest_listed), window.until_ms.div_euclid(1000))
}

pub(crate) async fn page(
    adapter: &StripeAdapter,
    api: &StripeApi,
    req: BackfillRequest<'_>,
) -> Result<BackfillPage, AdapterError> {
    let now_ms = req.host.now_ms();
    let (since_s, until_s) = window_seconds(req.window, now_ms);
    let mut cursor = match req.cursor {
        Some(text) => Cursor::decode(text)?,
        None => {
            if since_s > req.window.since_ms.div_euclid(1000) {
                req.host.progress(&format!(
                    "Stripe lists events of the last 30 days only; starting at {}",
                    when(since_s)
                ));
            }
            Cursor {
                lo: since_s,
                width: INITIAL_WIDTH_S,
                walk: None,
            }
        }
    };
    if cursor.lo > until_s {
        return Ok(BackfillPage::default());
    }
    let hi = cursor.hi(until_s);
    let query = EventQuery {
        created_gte: Some(cursor.lo),
        created_lte: Some(hi),
        types: MAPPED_EVENT_TYPES,
        delivery_success: req.window.only_failures.then_some(false),
        limit: MAX_LIMIT,
        starting_after: None,
        ending_before: None,
    };
    let slice = format!("{} – {}", when(cursor.lo), when(hi));

    let emitted: ListPage<ListedEvent>;
    match cursor.walk.take() {
        None => {
            let Fetched::Page(page) = fetch(api, query.clone(), now_ms).await? else {
                return Ok(restart_slice(&mut cursor, now_ms, until_s, req.host));
            };
            match page.data.last() {
                Some(oldest) if page.has_more => {
                    req.host.progress(&format!(
                        "{slice}: more than {MAX_LIMIT} events; paging to the oldest first"
                    ));
                    cursor.walk = Some(Walk::Down {
                        after: oldest.id.clone(),
                        from: None,
                        seen: page.data.len() as u64,
                    });
                    return Ok(pending(&cursor, until_s));
                }
                _ => {
                    cursor.advance(until_s, page.data.len() as u64);
                    emitted = page;
                }
            }
        }
        Some(Walk::Down { after, from, seen }) => {
            let Fetched::Page(page) = fetch(
                api,
                EventQuery {
                    starting_after: Some(&after),
                    ..query.clone()
                },
                now_ms,
            )
            .await?
            else {
                return Ok(restart_slice(&mut cursor, now_ms, until_s, req.host));
            };
            let seen = seen + page.data.len() as u64;
            let page = match page.data.last() {
                Some(oldest) if page.has_more => {
                    cursor.walk = Some(Walk::Down {
                        after: oldest.id.clone(),
                        from: Some(after),
                        seen,
                    });
                    return Ok(pending(&cursor, until_s));
                }
                Some(_) => page,
                // Nothing older after all (the oldest aged out of the 30
                // days meanwhile): the page that ended at `after` is the
                // oldest one; ask for it again.
                None => match fetch(
                    api,
                    EventQuery {
                        starting_after: from.as_deref(),
                        ..query.clone()
                    },
                    now_ms,
                )
                .await?
                {
                    Fetched::Page(page) => page,
                    Fetched::CursorGone => {
                        return Ok(restart_slice(&mut cursor, now_ms, until_s, req.host))
                    }
                },
            };
            match page.data.first() {
                Some(newest) => {
                    cursor.walk = Some(Walk::Up {
                        before: newest.id.clone(),
                        seen,
                    });
                }
                None => cursor.advance(until_s, seen),
            }
            emitted = page;
        }
        Some(Walk::Up { before, seen }) => {
            let Fetched::Page(page) = fetch(
                api,
                EventQuery {
                    ending_before: Some(&before),
                    ..query.clone()
                },
                now_ms,
            )
            .await?
            else {
                return Ok(restart_slice(&mut cursor, now_ms, until_s, req.host));
            };
            // `seen` already counts the whole slice (from the walk down).
            match page.data.first() {
                Some(newest) if page.has_more => {
                    cursor.walk = Some(Walk::Up {
                        before: newest.id.clone(),
                        seen,
                    });
                }
                _ => cursor.advance(until_s, seen),
            }
            emitted = page;
        }
    }

    let scanned = emitted.data.len() as u64;
    let mut recovered = Vec::with_capacity(emitted.data.len());
    let mut skipped = Vec::new();
    for event in emitted.data.iter().rev() {
        // Authenticated by the API call that listed it, not by a signature.
        match adapter.map_event_body(event.bytes(), now_ms) {
            Ok(outcome) => recovered.push(Recovered::Notification {
                outcome,
                raw_body: event.bytes().to_vec(),
            }),
            Err(e) => skipped.push(format!("{} ({})", event.id, e.message())),
        }
    }
    let mut line = format!("{slice}: {} events", recovered.len());
    if !skipped.is_empty() {
        line.push_str(&format!(
            "; {} skipped: {}",
            skipped.len(),
            skipped.join(", ")
        ));
    }
    req.host.progress(&line);
    Ok(BackfillPage {
        recovered,
        next_cursor: (cursor.lo <= until_s).then(|| cursor.encode()).flatten(),
        scanned,
        skipped: skipped.len() as u64,
    })
}

enum Fetched {
    Page(ListPage<ListedEvent>),
    /// The event a walk pages from is gone (404): it aged out of Stripe's
    /// 30 days while the backfill waited or was stopped.
    CursorGone,
}

async fn fetch(
    api: &StripeApi,
    query: EventQuery<'_>,
    now_ms: i64,
) -> Result<Fetched, AdapterError> {
    let paging = query.starting_after.is_some() || query.ending_before.is_some();
    match api.events(&query).await {
        Ok(page) => Ok(Fetched::Page(page)),
        Err(ApiError::Rejected { status: 404, .. }) if paging => Ok(Fetched::CursorGone),
        Err(e) => Err(e.into_adapter_error(now_ms)),
    }
}

/// Starts the current slice again, from what Stripe still keeps: what was
/// emitted of it comes again, as duplicates the host skips.
fn restart_slice(
    cursor: &mut Cursor,
    now_ms: i64,
    until_s: i64,
    host: &dyn StoreHost,
) -> BackfillPage {
    cursor.walk = None;
    cursor.lo = cursor.lo.max(now_ms.div_euclid(1000) - RETENTION_S);
    host.progress(
        "the event this backfill was paging from is no longer listed (Stripe keeps 30 days); \
         starting its time slice again",
    );
    pending(cursor, until_s)
}

/// A page that recovered nothing yet (walking down a full slice).
fn pending(cursor: &Cursor, until_s: i64) -> BackfillPage {
    BackfillPage {
        recovered: Vec::new(),
        next_cursor: (cursor.lo <= until_s).then(|| cursor.encode()).flatten(),
        scanned: 0,
        skipped: 0,
    }
}

/// A Unix second as RFC 3339 (UTC), for progress lines.
fn when(seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| seconds.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_strangers() {
        let c = Cursor {
            lo: 1_767_225_600,
            width: 3600,
            walk: Some(Walk::Down {
                after: "evt_1".into(),
                from: None,
                seen: 100,
            }),
        };
        let text = c.encode().unwrap();
        assert!(text.starts_with("v1."), "{text}");
        assert_eq!(Cursor::decode(&text).unwrap(), c);
        for bad in ["", "v1.", "v1.!!", "v2.e30", "v1.e30"] {
            let err = Cursor::decode(bad).unwrap_err();
            assert_eq!(err.code(), "bad_cursor", "{bad}");
        }
        // A zero width would never advance.
        let zero = format!(
            "v1.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"lo":1,"width":0}"#)
        );
        assert!(Cursor::decode(&zero).is_err());
    }

    #[test]
    fn slices_widen_when_sparse_and_narrow_after_a_walk() {
        let mut c = Cursor {
            lo: 0,
            width: 100,
            walk: None,
        };
        c.advance(10_000, 3);
        assert_eq!((c.lo, c.width), (100, 200));
        c.advance(10_000, 80);
        assert_eq!((c.lo, c.width), (300, 200));
        c.advance(10_000, 400);
        assert_eq!((c.lo, c.width), (500, 25));
        let mut c = Cursor {
            lo: 0,
            width: 1,
            walk: None,
        };
        c.advance(10, 5_000);
        assert_eq!((c.lo, c.width), (1, 1));
        // The last slice ends at the window's end.
        let c = Cursor {
            lo: 90,
            width: 100,
            walk: None,
        };
        assert_eq!(c.hi(120), 120);
    }

    #[test]
    fn the_window_starts_no_earlier_than_stripe_keeps_events() {
        let now_ms = 100 * 86_400_000;
        let w = BackfillWindow {
            since_ms: 0,
            until_ms: now_ms,
            only_failures: false,
        };
        assert_eq!(window_seconds(&w, now_ms), (70 * 86_400, 100 * 86_400));
        let w = BackfillWindow {
            since_ms: 99 * 86_400_000 + 1,
            until_ms: now_ms - 1,
            only_failures: false,
        };
        assert_eq!(window_seconds(&w, now_ms), (99 * 86_400, 100 * 86_400 - 1));
    }
}
