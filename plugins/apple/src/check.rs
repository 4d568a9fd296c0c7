//! "Check connection": per configured environment and app, ask Apple for a
//! test notification, wait (at most one request a second) for Apple to say
//! how sending it went, explain every attempt, and confirm that storehook
//! itself recorded that TEST notification.

use std::time::Duration;

use storehook_core::{AdapterError, CheckReport, Finding, StoreHost};

use crate::api::{ApiClient, ApiError, NotificationRecord, SendAttempt};
use crate::config::{AppleEnvironment, PRIVATE_KEY_ENV};
use crate::AppleAdapter;

/// Apple allows one test-notification request a second.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How long Apple gets to try sending the test notification.
const POLL_LIMIT: Duration = Duration::from_secs(60);
/// A progress line this often while waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// The longest wait a 429 during the check is honoured for.
const RATE_LIMIT_WAIT_LIMIT: Duration = Duration::from_secs(30);

/// Apple's `ServerNotificationURLNotFoundError`.
const URL_NOT_FOUND: i64 = 4_040_007;
/// Apple's `TestNotificationNotFoundError`: not sent yet (or token unknown).
const NOT_YET_SENT: i64 = 4_040_008;

/// What to set when `[stores.apple.api]` is missing.
pub fn not_configured() -> String {
    format!(
        "Add [stores.apple.api] with key_id, issuer_id and private_key_file (an In-App Purchase key \
         created in App Store Connect › Users and Access › Integrations › In-App Purchase; the key's \
         PEM may instead be in env {PRIVATE_KEY_ENV}). storehook then asks Apple for a test \
         notification to confirm the connection, and recovers notifications Apple failed to deliver."
    )
}

/// What the words for a 401 are, wherever Apple answers one.
pub const UNAUTHORIZED_DETAIL: &str = "Apple answered 401 (not authorized): wrong key id, issuer id or \
    bundle id, or the app is not released in production yet (Apple's Production endpoints answer 401 \
    until the app's first release). Compare key_id and issuer_id in [stores.apple.api] with App Store \
    Connect › Users and Access › Integrations › In-App Purchase (the key must be an In-App Purchase \
    key, not an App Store Connect API key), and the bundle id with [stores.apple] apps.";

/// One (environment, app) the check covers.
struct Target<'a> {
    environment: AppleEnvironment,
    bundle_id: &'a str,
    label: String,
}

/// How one target's check ended, for the verdict.
#[derive(PartialEq, Eq)]
enum Ended {
    Done,
    /// Apple could not be reached or is busy: the verdict is "unavailable".
    Unavailable,
    /// The host stopped the check (cancelled, or the server stops).
    Stopped,
}

pub(crate) async fn check_connection(
    adapter: &AppleAdapter,
    host: &dyn StoreHost,
) -> Result<CheckReport, AdapterError> {
    let Some(api) = adapter.api.as_ref() else {
        if let Some(problem) = &adapter.api_problem {
            return Ok(CheckReport::from_findings(
                vec![Finding::error(
                    "The App Store Server API client could not start",
                    format!("{problem}. Check [stores.apple.api] and restart storehook."),
                )],
                false,
            ));
        }
        return Ok(CheckReport::not_configured(not_configured()));
    };

    let url = host.notification_url();
    let mut findings = vec![match &url {
        Some(url) => Finding::info(
            "storehook's notification URL",
            format!(
                "App Store Connect must send notifications to {url} (Production and Sandbox Server \
                 URL, Version 2 Notifications)."
            ),
        ),
        None => Finding::warning(
            "storehook's notification URL is unknown",
            "Set [server] public_url so that storehook can say which URL App Store Connect must \
             call (it ends in /v1/notifications/apple).",
        ),
    }];

    let several_apps = adapter.settings.apps.len() > 1;
    let mut targets = Vec::new();
    for &environment in &adapter.settings.environments {
        for app in &adapter.settings.apps {
            let label = if several_apps {
                format!("{} ({})", environment.as_str(), app.bundle_id)
            } else {
                environment.as_str().to_owned()
            };
            if environment == AppleEnvironment::Production && app.app_apple_id.is_none() {
                findings.push(Finding::warning(
                    format!("{label}: not checked"),
                    format!(
                        "{} has no app_apple_id in [stores.apple] apps, so storehook refuses its \
                         Production notifications. Add the app's Apple ID (App Store Connect › App \
                         Information) to accept and check them.",
                        app.bundle_id
                    ),
                ));
                continue;
            }
            targets.push(Target {
                environment,
                bundle_id: &app.bundle_id,
                label,
            });
        }
    }

    let mut unavailable = false;
    for target in &targets {
        match check_target(adapter, api, host, target, url.as_deref(), &mut findings).await? {
            Ended::Done => {}
            Ended::Unavailable => unavailable = true,
            Ended::Stopped => {
                findings.push(Finding::error(
                    "The check was stopped",
                    "storehook stopped the check before it finished (cancelled, or the server is \
                     stopping). Run it again.",
                ));
                break;
            }
        }
    }
    Ok(CheckReport::from_findings(findings, unavailable))
}

async fn check_target(
    adapter: &AppleAdapter,
    api: &ApiClient,
    host: &dyn StoreHost,
    target: &Target<'_>,
    url: Option<&str>,
    findings: &mut Vec<Finding>,
) -> Result<Ended, AdapterError> {
    let label = &target.label;
    let token = match api
        .request_test_notification(target.environment, target.bundle_id)
        .await
    {
        Ok(token) => token,
        Err(e) => return Ok(api_failure(target, &e, url, findings)),
    };
    host.progress(&format!("{label}: asked Apple for a test notification"));

    let (status, waited) = match poll_status(api, host, target, &token, url, findings).await {
        Ok(reported) => reported,
        Err(ended) => return Ok(ended),
    };
    host.progress(&format!(
        "{label}: Apple reported {} attempt{} after {} s",
        status.send_attempts.len(),
        if status.send_attempts.len() == 1 {
            ""
        } else {
            "s"
        },
        waited.as_secs()
    ));

    let delivered = status
        .send_attempts
        .iter()
        .any(|a| a.send_attempt_result.as_deref() == Some("SUCCESS"));
    for (i, attempt) in status.send_attempts.iter().enumerate() {
        findings.push(attempt_finding(label, i + 1, attempt, delivered, url));
    }
    confirm_recorded(adapter, host, target, &status, delivered, url, findings).await?;
    Ok(Ended::Done)
}

/// Polls until Apple reports attempts, at most once a second for about a
/// minute, with how long it waited; otherwise how the target's check ended
/// (a finding says why).
async fn poll_status(
    api: &ApiClient,
    host: &dyn StoreHost,
    target: &Target<'_>,
    token: &str,
    url: Option<&str>,
    findings: &mut Vec<Finding>,
) -> Result<(NotificationRecord, Duration), Ended> {
    let label = &target.label;
    let mut waited = Duration::ZERO;
    let mut last_progress = Duration::ZERO;
    // Apple never has the status at once; waiting before each request also
    // keeps to its one request a second.
    let mut pause = POLL_INTERVAL;
    loop {
        if waited >= POLL_LIMIT {
            findings.push(
                Finding::error(
                    format!("{label}: Apple did not report sending the test notification"),
                    format!(
                        "After {} s Apple still says the test notification's status is not \
                         available (404 {NOT_YET_SENT}). Apple is sometimes slow to send it: run \
                         the check again in a few minutes. storehook's notification URL: {}.",
                        POLL_LIMIT.as_secs(),
                        url.unwrap_or("unknown (set [server] public_url)")
                    ),
                )
                .with_code(NOT_YET_SENT.to_string()),
            );
            return Err(Ended::Done);
        }
        if !host.pause(pause).await {
            return Err(Ended::Stopped);
        }
        waited += pause;
        if waited - last_progress >= PROGRESS_EVERY {
            last_progress = waited;
            host.progress(&format!(
                "{label}: waiting for Apple… {} s",
                waited.as_secs()
            ));
        }
        pause = POLL_INTERVAL;
        match api
            .test_notification_status(target.environment, target.bundle_id, token)
            .await
        {
            Ok(status) if !status.send_attempts.is_empty() => return Ok((status, waited)),
            Ok(_) => {}
            Err(e) if e.apple_code() == Some(NOT_YET_SENT) => {}
            Err(ApiError::RateLimited { retry_after, .. }) => {
                let now = host.now_ms();
                let ms = retry_after.map_or(0, |r| r.at_ms(now).saturating_sub(now));
                let limit = RATE_LIMIT_WAIT_LIMIT.as_millis() as i64;
                pause = Duration::from_millis(ms.clamp(1_000, limit) as u64);
            }
            Err(e) => return Err(api_failure(target, &e, url, findings)),
        }
    }
}

/// A finding for a failed API call; says whether the verdict is "unavailable".
fn api_failure(
    target: &Target<'_>,
    e: &ApiError,
    url: Option<&str>,
    findings: &mut Vec<Finding>,
) -> Ended {
    let label = &target.label;
    let env = target.environment.as_str();
    let (finding, ended) = match e {
        ApiError::Unauthorized => (
            Finding::error(
                format!("{label}: Apple refused storehook's API key"),
                UNAUTHORIZED_DETAIL,
            )
            .with_code("401"),
            Ended::Done,
        ),
        e if e.apple_code() == Some(URL_NOT_FOUND) => (
            Finding::error(
                format!("{label}: no notification URL in App Store Connect"),
                format!(
                    "No notification URL is set in App Store Connect for {env}: paste {} as the \
                     {env} Server URL (App Store Connect › your app › App Information › App Store \
                     Server Notifications, Version 2 Notifications), then run the check again.",
                    url.unwrap_or(
                        "storehook's notification URL (set [server] public_url to see it here; it \
                         ends in /v1/notifications/apple)"
                    )
                ),
            )
            .with_code(URL_NOT_FOUND.to_string()),
            Ended::Done,
        ),
        ApiError::RateLimited { .. } => (
            Finding::error(
                format!("{label}: Apple asked storehook to slow down"),
                format!(
                    "{e}. Apple allows one test-notification request a second per app; run the \
                     check again in a minute."
                ),
            )
            .with_code("rate_limited"),
            Ended::Unavailable,
        ),
        ApiError::Unavailable(message) => (
            Finding::error(
                format!("{label}: Apple's API could not be reached"),
                format!("{message}."),
            )
            .with_code("unavailable"),
            Ended::Unavailable,
        ),
        e => {
            let finding = Finding::error(
                format!("{label}: Apple refused the test notification request"),
                format!(
                    "{e}. Apple's documentation of this error code says what it means; check \
                     [stores.apple.api] and the bundle id."
                ),
            );
            (
                match e.apple_code() {
                    Some(code) => finding.with_code(code.to_string()),
                    None => finding,
                },
                Ended::Done,
            )
        }
    };
    findings.push(finding);
    ended
}

/// One `sendAttempts` entry in words. Failed attempts before a successful
/// one are warnings: Apple got through in the end.
fn attempt_finding(
    label: &str,
    n: usize,
    attempt: &SendAttempt,
    delivered: bool,
    url: Option<&str>,
) -> Finding {
    let raw = attempt.send_attempt_result.as_deref().unwrap_or("");
    let at = attempt
        .attempt_date
        .and_then(format_ms)
        .map(|d| format!(" at {d}"))
        .unwrap_or_default();
    let url = url.unwrap_or("storehook's notification URL");
    let (what, detail): (&str, String) = match raw {
        "SUCCESS" => (
            "Apple delivered the test notification",
            format!("storehook (or what answers at {url}) accepted it with a 2xx status."),
        ),
        "TIMED_OUT" => (
            "Apple's request timed out",
            format!(
                "Nothing answered within Apple's time limit (a few seconds) at {url}. Check that the \
                 URL reaches storehook and that no proxy or firewall holds the request."
            ),
        ),
        "TLS_ISSUE" => (
            "Apple could not establish a TLS connection",
            format!(
                "Apple did not accept the certificate chain it was shown at {url}. Use a publicly \
                 trusted certificate (not self-signed) for that host name, serve the full chain \
                 (the certificate and its intermediates), and allow TLS 1.2 or later."
            ),
        ),
        "CIRCULAR_REDIRECT" => (
            "the URL redirects in a loop",
            format!(
                "Following redirects from {url} led back to where it started. Set the Server URL in \
                 App Store Connect to storehook's final https URL, with no redirect."
            ),
        ),
        "NO_RESPONSE" => (
            "Apple got no response",
            format!(
                "Apple connected but no HTTP response came from {url}. Check that storehook is \
                 running and that the proxy in front of it forwards the request."
            ),
        ),
        "SOCKET_ISSUE" => (
            "Apple could not connect",
            format!(
                "The connection to {url} failed: the host name may not resolve, the port may be \
                 closed, or a firewall may refuse Apple's servers."
            ),
        ),
        "UNSUPPORTED_CHARSET" => (
            "Apple could not read the response's character set",
            "The response declared a character set Apple does not support. storehook answers \
             UTF-8, so something in front of it rewrote the response."
                .to_owned(),
        ),
        "INVALID_RESPONSE" => (
            "Apple could not read the response",
            format!(
                "What answered at {url} did not send a valid HTTP response; a proxy or another \
                 server may be answering in storehook's place."
            ),
        ),
        "PREMATURE_CLOSE" => (
            "the connection closed before the response was complete",
            "Check the proxy's timeouts and that it does not close connections early.".to_owned(),
        ),
        "UNSUCCESSFUL_HTTP_RESPONSE_CODE" => (
            "storehook or its proxy answered a non-2xx status",
            format!(
                "Apple reached {url} but the answer was not 2xx. If storehook refused it, the store \
                 card shows the rejection (INVALID_APP_IDENTIFIER, for example, means [stores.apple] \
                 apps does not match the app); a 404 or 502 comes from a proxy or a wrong path (the \
                 URL must end in /v1/notifications/apple)."
            ),
        ),
        "OTHER" => (
            "Apple reports another failure",
            format!(
                "Apple gives no detail. Check that {url} is reachable from the internet over https \
                 with a trusted certificate, then run the check again."
            ),
        ),
        _ => (
            "Apple reports a result storehook does not know",
            format!(
                "Apple's sendAttemptResult {raw:?} is newer than storehook; Apple's documentation \
                 of sendAttemptResult says what it means."
            ),
        ),
    };
    let title = format!("{label}: attempt {n}{at}: {what}");
    let finding = if raw == "SUCCESS" {
        Finding::ok(title, detail)
    } else if delivered {
        Finding::warning(title, format!("{detail} A later attempt got through."))
    } else {
        Finding::error(title, detail)
    };
    finding.with_code(if raw.is_empty() { "(none)" } else { raw })
}

/// Apple's signed copy of the TEST notification names its UUID: storehook
/// must have recorded exactly that one.
async fn confirm_recorded(
    adapter: &AppleAdapter,
    host: &dyn StoreHost,
    target: &Target<'_>,
    status: &NotificationRecord,
    delivered: bool,
    url: Option<&str>,
    findings: &mut Vec<Finding>,
) -> Result<(), AdapterError> {
    let label = &target.label;
    let Some(signed_payload) = status.signed_payload.as_deref() else {
        findings.push(Finding::warning(
            format!("{label}: Apple's status has no signed copy of the test notification"),
            "storehook cannot tell which notification to look for, so it could not confirm that \
             it recorded the test notification.",
        ));
        return Ok(());
    };
    let body = crate::signed_payload_body(signed_payload);
    let uuid = match adapter.verify_body(&body, host.now_ms()) {
        Ok(n) => n.notification_id,
        Err(e) => {
            findings.push(
                Finding::error(
                    format!("{label}: Apple's copy of the test notification did not verify"),
                    format!(
                        "{}. storehook refuses notifications signed this way too: check \
                         [stores.apple] root_certificates, apps and environments.",
                        e.message()
                    ),
                )
                .with_code(e.code().to_owned()),
            );
            return Ok(());
        }
    };
    let recorded = host.has_notification(&uuid).await?;
    findings.push(match (recorded, delivered) {
        (true, _) => Finding::ok(
            format!("{label}: storehook recorded the test notification"),
            format!("Notification {uuid} is in storehook's log: the connection works end to end."),
        ),
        (false, true) => Finding::error(
            format!(
                "{label}: Apple delivered the test notification, but storehook has no record of it"
            ),
            format!(
                "Apple says {} answered 2xx, yet storehook never recorded notification {uuid}. \
                 Something else answered for it: a proxy answering on its own, another server at \
                 that URL, or a URL pointing to a different storehook. Check the Server URL in App \
                 Store Connect.",
                url.unwrap_or("storehook's notification URL")
            ),
        )
        .with_code(uuid),
        (false, false) => Finding::info(
            format!("{label}: storehook has no record of the test notification"),
            format!(
                "As expected after the failed attempts above: notification {uuid} never reached \
                 storehook."
            ),
        ),
    });
    Ok(())
}

/// An attempt date for people: `2023-10-24T12:01:40Z`.
fn format_ms(ms: i64) -> Option<String> {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    at.replace_millisecond(0)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_dates_read_as_utc() {
        assert_eq!(
            format_ms(1_698_148_900_000).as_deref(),
            Some("2023-10-24T12:01:40Z")
        );
    }
}
