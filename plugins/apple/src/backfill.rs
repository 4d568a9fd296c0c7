//! Backfill through Get Notification History: per environment and app,
//! every page over the window (clamped to what Apple keeps), each
//! `signedPayload` verified and mapped exactly as a pushed notification.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use storehook_core::{
    AdapterError, BackfillPage, BackfillRequest, BackfillWindow, Outcome, Recovered,
};

use crate::api::{ApiClient, ApiError, HistoryRequest};
use crate::config::AppleEnvironment;
use crate::AppleAdapter;

const DAY_MS: i64 = 86_400_000;
/// Apple keeps 180 days of history in Production, 30 in Sandbox, and
/// refuses an older `startDate` (4000012).
const PRODUCTION_HISTORY_DAYS: i64 = 180;
const SANDBOX_HISTORY_DAYS: i64 = 30;
/// Kept inside Apple's limit so that its clock, a little ahead of ours or
/// read later, still finds the start recent enough.
const HISTORY_LIMIT_MARGIN_MS: i64 = 10 * 60 * 1000;
/// Between pages: Apple allows 50 requests a second in Production and a
/// tenth of that in Sandbox.
const PRODUCTION_PAGE_GAP: Duration = Duration::from_millis(20);
const SANDBOX_PAGE_GAP: Duration = Duration::from_millis(200);

/// Apple's `PaginationTokenExpiredError`: the listing starts over.
const PAGINATION_TOKEN_EXPIRED: i64 = 4_000_017;

/// Where a backfill stands: which environment and app, the request body
/// sent for it (Apple wants the same body on every page) and Apple's
/// token for the next page. Opaque to the host; stored with the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Cursor {
    environment: String,
    bundle_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    start_date: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    end_date: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pagination_token: Option<String>,
}

impl Cursor {
    fn at(target: &Target<'_>) -> Self {
        Cursor {
            environment: target.environment.as_str().to_owned(),
            bundle_id: target.bundle_id.to_owned(),
            start_date: None,
            end_date: None,
            pagination_token: None,
        }
    }

    fn encode(&self) -> Result<String, AdapterError> {
        serde_json::to_string(self)
            .map_err(|e| AdapterError::malformed("apple_backfill_cursor", e.to_string()))
    }
}

#[derive(Clone, Copy)]
struct Target<'a> {
    environment: AppleEnvironment,
    bundle_id: &'a str,
}

impl Target<'_> {
    fn label(&self) -> String {
        format!("{} {}", self.environment.as_str(), self.bundle_id)
    }
}

/// The (environment, app) pairs this server accepts notifications for, in
/// the order a backfill walks them.
fn targets(adapter: &AppleAdapter) -> Vec<Target<'_>> {
    let settings = &adapter.settings;
    settings
        .environments
        .iter()
        .flat_map(|&environment| {
            settings
                .apps
                .iter()
                // Production notifications of an app without its Apple id are
                // refused anyway: nothing there to recover.
                .filter(move |app| {
                    environment != AppleEnvironment::Production || app.app_apple_id.is_some()
                })
                .map(move |app| Target {
                    environment,
                    bundle_id: &app.bundle_id,
                })
        })
        .collect()
}

/// The window Apple accepts for one environment, `None` when nothing of it
/// is within Apple's history.
fn clamp(
    window: &BackfillWindow,
    environment: AppleEnvironment,
    now_ms: i64,
) -> Option<(i64, i64)> {
    let days = match environment {
        AppleEnvironment::Production => PRODUCTION_HISTORY_DAYS,
        AppleEnvironment::Sandbox => SANDBOX_HISTORY_DAYS,
    };
    let earliest = now_ms - days * DAY_MS + HISTORY_LIMIT_MARGIN_MS;
    let start = window.since_ms.max(earliest);
    let end = window.until_ms.min(now_ms);
    (start < end).then_some((start, end))
}

pub(crate) async fn backfill_page(
    adapter: &AppleAdapter,
    req: BackfillRequest<'_>,
) -> Result<BackfillPage, AdapterError> {
    let Some(api) = adapter.api.as_ref() else {
        return Err(AdapterError::Unsupported {
            message: format!(
                "no App Store Server API credentials: {}",
                crate::check::not_configured()
            ),
        });
    };
    let targets = targets(adapter);
    let (mut index, mut cursor) = match req.cursor {
        None => match targets.first() {
            Some(first) => (0, Cursor::at(first)),
            None => return Ok(BackfillPage::default()),
        },
        Some(text) => {
            let cursor: Cursor = serde_json::from_str(text).map_err(|e| {
                AdapterError::malformed(
                    "apple_backfill_cursor",
                    format!(
                        "the stored backfill cursor is not storehook's: {e}; start a new backfill"
                    ),
                )
            })?;
            let index = targets
                .iter()
                .position(|t| {
                    t.environment.as_str() == cursor.environment && t.bundle_id == cursor.bundle_id
                })
                .ok_or_else(|| {
                    AdapterError::malformed(
                        "apple_backfill_cursor",
                        format!(
                            "the backfill was at {} {}, which [stores.apple] no longer accepts; \
                             start a new backfill",
                            cursor.environment, cursor.bundle_id
                        ),
                    )
                })?;
            // A page follows another: keep to Apple's rate.
            let gap = match targets[index].environment {
                AppleEnvironment::Production => PRODUCTION_PAGE_GAP,
                AppleEnvironment::Sandbox => SANDBOX_PAGE_GAP,
            };
            if !req.host.pause(gap).await {
                return Ok(BackfillPage {
                    next_cursor: Some(text.to_owned()),
                    ..Default::default()
                });
            }
            (index, cursor)
        }
    };

    // Targets with nothing in Apple's history are passed without a request.
    let request = loop {
        let target = targets[index];
        let body = match (cursor.start_date, cursor.end_date) {
            (Some(start_date), Some(end_date)) => Some((start_date, end_date)),
            _ => clamp(req.window, target.environment, req.host.now_ms()),
        };
        if let Some((start_date, end_date)) = body {
            cursor.start_date = Some(start_date);
            cursor.end_date = Some(end_date);
            break HistoryRequest {
                start_date,
                end_date,
                only_failures: req.window.only_failures,
            };
        }
        req.host.progress(&format!(
            "{}: the window is older than Apple's history ({} days); nothing to ask",
            target.label(),
            match target.environment {
                AppleEnvironment::Production => PRODUCTION_HISTORY_DAYS,
                AppleEnvironment::Sandbox => SANDBOX_HISTORY_DAYS,
            }
        ));
        index += 1;
        match targets.get(index) {
            Some(next) => cursor = Cursor::at(next),
            None => return Ok(BackfillPage::default()),
        }
    };
    let target = targets[index];

    let response = match history(api, target, &request, cursor.pagination_token.as_deref()).await {
        Err(e)
            if e.apple_code() == Some(PAGINATION_TOKEN_EXPIRED)
                && cursor.pagination_token.is_some() =>
        {
            // Apple's token outlived its use (a long pause, a restart much
            // later): list this app again from the start; what was stored
            // already comes back as duplicates.
            req.host.progress(&format!(
                "{}: Apple's page token expired; listing again from the start",
                target.label()
            ));
            let fresh = Cursor::at(&target);
            return Ok(BackfillPage {
                next_cursor: Some(fresh.encode()?),
                ..Default::default()
            });
        }
        other => other.map_err(|e| e.into_adapter_error(req.host.now_ms()))?,
    };

    let now_ms = req.host.now_ms();
    let scanned = response.notification_history.len() as u64;
    let mut recovered = Vec::with_capacity(response.notification_history.len());
    let mut refused = Vec::new();
    for item in response.notification_history {
        let Some(signed_payload) = item.signed_payload else {
            refused.push("a record without signedPayload".to_owned());
            continue;
        };
        let raw_body = crate::signed_payload_body(&signed_payload);
        match adapter.verify_body(&raw_body, now_ms) {
            Ok(n) => recovered.push(Recovered::Notification {
                outcome: Outcome::Notification(Box::new(n)),
                raw_body,
            }),
            Err(e) => refused.push(format!("{}: {}", e.code(), e.message())),
        }
    }
    let mut line = format!(
        "{}: {} notification{} from Apple's history",
        target.label(),
        recovered.len(),
        if recovered.len() == 1 { "" } else { "s" }
    );
    if !refused.is_empty() {
        line.push_str(&format!(
            "; {} did not verify and {} skipped ({})",
            refused.len(),
            if refused.len() == 1 { "was" } else { "were" },
            refused.join("; ")
        ));
    }
    req.host.progress(&line);

    let next = match response.pagination_token.filter(|_| response.has_more) {
        Some(token) => Some(Cursor {
            pagination_token: Some(token),
            ..cursor
        }),
        None => targets.get(index + 1).map(Cursor::at),
    };
    Ok(BackfillPage {
        recovered,
        next_cursor: next.map(|c| c.encode()).transpose()?,
        scanned,
        skipped: refused.len() as u64,
    })
}

async fn history(
    api: &ApiClient,
    target: Target<'_>,
    request: &HistoryRequest,
    pagination_token: Option<&str>,
) -> Result<crate::api::HistoryResponse, ApiError> {
    api.notification_history(
        target.environment,
        target.bundle_id,
        request,
        pagination_token,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_clamped_to_apple_s_history() {
        let now = 1_800_000_000_000;
        let window = BackfillWindow {
            since_ms: now - 400 * DAY_MS,
            until_ms: now + DAY_MS,
            only_failures: false,
        };
        let (start, end) = clamp(&window, AppleEnvironment::Production, now).unwrap();
        assert_eq!(start, now - 180 * DAY_MS + HISTORY_LIMIT_MARGIN_MS);
        assert_eq!(end, now);
        let (start, _) = clamp(&window, AppleEnvironment::Sandbox, now).unwrap();
        assert_eq!(start, now - 30 * DAY_MS + HISTORY_LIMIT_MARGIN_MS);
        let recent = BackfillWindow {
            since_ms: now - DAY_MS,
            until_ms: now - 1000,
            only_failures: true,
        };
        assert_eq!(
            clamp(&recent, AppleEnvironment::Sandbox, now),
            Some((now - DAY_MS, now - 1000))
        );
        let old = BackfillWindow {
            since_ms: now - 100 * DAY_MS,
            until_ms: now - 90 * DAY_MS,
            only_failures: false,
        };
        assert_eq!(clamp(&old, AppleEnvironment::Sandbox, now), None);
        assert!(clamp(&old, AppleEnvironment::Production, now).is_some());
    }
}
