//! "Check connection" for Google Play: the service account's token grant
//! works, the Play Developer API answers for every configured package (a
//! one-entry `voidedpurchases.list`, which needs the financial permission
//! backfill needs), and where Pub/Sub must push. Google has no API to send
//! a test notification, so the check says how to send one from Play
//! Console; the host adds when the last one arrived.

use std::path::Path;

use storehook_core::{AdapterError, CheckReport, Finding, StoreHost};

use crate::config::STORE_ID;
use crate::play_api::{PlayApiError, VoidedQuery};
use crate::GoogleAdapter;

/// What Play Console calls the permissions storehook needs.
const PERMISSIONS: &str = "'View financial data' and 'Manage orders and subscriptions'";

pub(crate) const NOT_CONFIGURED: &str =
    "Add [stores.google.play_api] with service_account_key_file = \
    the JSON key of a Google Cloud service account that is invited in Play Console (Users and \
    permissions) with 'View financial data' and 'Manage orders and subscriptions'. Without it \
    storehook receives notifications but cannot check the connection, recover missed refunds or \
    re-read subscription states.";

/// A finding, and whether it is only the store being unreachable.
struct Found {
    finding: Finding,
    transient: bool,
}

impl Found {
    fn hard(finding: Finding) -> Self {
        Found {
            finding,
            transient: false,
        }
    }

    fn transient(finding: Finding) -> Self {
        Found {
            finding,
            transient: true,
        }
    }
}

pub(crate) async fn check_connection(
    adapter: &GoogleAdapter,
    host: &dyn StoreHost,
) -> Result<CheckReport, AdapterError> {
    let (Some(client), Some(api)) = (&adapter.play_api, &adapter.settings.play_api) else {
        return Ok(CheckReport::not_configured(NOT_CONFIGURED));
    };
    let email = client.client_email();
    let mut found = Vec::new();

    host.progress(&format!("Asking Google for an access token as {email}…"));
    match client.fresh_access_token().await {
        Ok(()) => {
            found.push(Found::hard(Finding::ok(
                "Service-account key accepted",
                format!("Google's token endpoint issued an access token to {email}."),
            )));
            for package in &adapter.settings.package_names {
                host.progress(&format!(
                    "{package}: asking the Play Developer API for one voided purchase…"
                ));
                let query = VoidedQuery {
                    max_results: 1,
                    ..VoidedQuery::default()
                };
                found.push(match client.list_voided(package, &query).await {
                    Ok(_) => Found::hard(Finding::ok(
                        format!("{package}: the Play Developer API answers"),
                        format!("{email} can read this app's voided purchases, as backfill needs."),
                    )),
                    Err(e) => package_finding(package, email, &api.key_file, &e),
                });
            }
        }
        Err(e) => found.push(token_finding(email, &api.key_file, &e)),
    }

    found.push(Found::hard(if api.acknowledge {
        Finding::info(
            "storehook acknowledges purchases",
            format!(
                "acknowledge = true: every purchase the Play API reports as not acknowledged is \
                 acknowledged from a queue, retried until it is. This needs the 'Manage orders and \
                 subscriptions' permission for {email}, which cannot be checked until there is a \
                 purchase to acknowledge; a refusal shows in the acknowledgement queue."
            ),
        )
    } else {
        Finding::info(
            "storehook does not acknowledge purchases",
            "acknowledge = false: your app or its backend must acknowledge every purchase within \
             3 days, or Google Play refunds it. storehook still flags a purchase left \
             unacknowledged 48 h after it was made. Set [stores.google.play_api] acknowledge = true \
             to have storehook acknowledge them.",
        )
    }));
    found.extend(
        delivery_findings(adapter, host)
            .into_iter()
            .map(Found::hard),
    );

    // Unreachable only if nothing else is wrong: a refused permission
    // is a problem to fix whatever else timed out.
    let hard_error = found
        .iter()
        .any(|f| !f.transient && f.finding.level == storehook_core::FindingLevel::Error);
    let unavailable = !hard_error && found.iter().any(|f| f.transient);
    Ok(CheckReport::from_findings(
        found.into_iter().map(|f| f.finding).collect(),
        unavailable,
    ))
}

fn token_finding(email: &str, key_file: &Path, e: &PlayApiError) -> Found {
    match e {
        PlayApiError::CredentialsRejected(status, code) => Found::hard(
            Finding::error(
                "Google refused the service account's key",
                format!(
                    "Google's token endpoint answered HTTP {status} {code} for {email}: the key in \
                     {} is wrong, or was deleted or revoked (Google Cloud console → IAM & Admin → \
                     Service accounts → {email} → Keys), or this server's clock is off by minutes. \
                     Create a new JSON key for the service account and point [stores.{STORE_ID}.\
                     play_api] service_account_key_file at it.",
                    key_file.display()
                ),
            )
            .with_code(if code.is_empty() {
                status.to_string()
            } else {
                code.clone()
            }),
        ),
        PlayApiError::Network(..) | PlayApiError::ServerError(..) => {
            Found::transient(Finding::error(
                "Google's token endpoint could not be reached",
                format!(
                    "{e}. Check that this server can reach Google over HTTPS (and \
                     [stores.{STORE_ID}.play_api] token_url, if set), then check again."
                ),
            ))
        }
        _ => Found::hard(Finding::error(
            "No access token for the service account",
            format!(
                "{e}. Check that {} is the JSON key of a service account, as Google Cloud console \
                 downloads it.",
                key_file.display()
            ),
        )),
    }
}

fn package_finding(package: &str, email: &str, key_file: &Path, e: &PlayApiError) -> Found {
    let reason = e.reason().unwrap_or("");
    match e {
        PlayApiError::Forbidden { status, .. }
            if reason == "permissionDenied" || reason == "PERMISSION_DENIED" =>
        {
            Found::hard(
                Finding::error(
                    format!("{package}: the service account may not read this app"),
                    format!(
                        "Google Play answered HTTP {status} permissionDenied. Invite the service \
                         account {email} in Play Console (Users and permissions) with {PERMISSIONS} \
                         for this app. Grants take up to 48 h to apply: if you just invited it, \
                         check again later."
                    ),
                )
                .with_code("permissionDenied"),
            )
        }
        PlayApiError::Forbidden { status, .. }
            if reason == "accessNotConfigured" || reason == "SERVICE_DISABLED" =>
        {
            Found::hard(
                Finding::error(
                    format!("{package}: the Play Developer API is not enabled"),
                    format!(
                        "Google answered HTTP {status} {reason}: enable the \"Google Play Android \
                         Developer API\" in the Google Cloud project of {email} (APIs & Services → \
                         Library), wait a few minutes, then check again."
                    ),
                )
                .with_code(reason.to_owned()),
            )
        }
        PlayApiError::Forbidden { status, .. } => Found::hard(
            Finding::error(
                format!("{package}: Google Play refused the service account"),
                format!(
                    "Google Play answered HTTP {status} {reason} to the access token it issued to \
                     {email}. Invite the service account in Play Console (Users and permissions) \
                     with {PERMISSIONS} for this app (grants take up to 48 h to apply), and check \
                     that the \"Google Play Android Developer API\" is enabled in its Cloud project."
                ),
            )
            .with_code(if reason.is_empty() {
                status.to_string()
            } else {
                reason.to_owned()
            }),
        ),
        PlayApiError::NotFound { status, .. } => Found::hard(
            Finding::error(
                format!("{package}: unknown to this Play account"),
                format!(
                    "Google Play answered HTTP {status}: no app with the package name {package} is \
                     visible to {email}. Check [stores.{STORE_ID}] package_names for a typo, and \
                     that the service account is invited in the Play Console developer account \
                     that publishes this app."
                ),
            )
            .with_code(if reason.is_empty() {
                status.to_string()
            } else {
                reason.to_owned()
            }),
        ),
        PlayApiError::CredentialsRejected(..) => token_finding(email, key_file, e),
        PlayApiError::RateLimited { retry_after_s, .. } => Found::transient(
            Finding::error(
                format!("{package}: Google asked to slow down"),
                format!(
                    "The Play API's quota for voided purchases (30 requests per 30 s and 6000 a day \
                     per app) is used up for now: check again in {retry_after_s} s or later."
                ),
            )
            .with_code("429"),
        ),
        PlayApiError::Network(..) | PlayApiError::ServerError(..) | PlayApiError::Conflict { .. } => {
            Found::transient(Finding::error(
                format!("{package}: the Play Developer API could not be reached"),
                format!("{e}. Check again later."),
            ))
        }
        PlayApiError::Rejected { .. } | PlayApiError::BadResponse(..) | PlayApiError::Signing(_) => {
            Found::hard(Finding::error(
                format!("{package}: the Play Developer API answered unexpectedly"),
                format!(
                    "{e}. If [stores.{STORE_ID}.play_api] base_url is set, check that it is \
                     Google's API host."
                ),
            ))
        }
    }
}

/// Where Pub/Sub must deliver, and how to see a delivery arrive.
fn delivery_findings(adapter: &GoogleAdapter, host: &dyn StoreHost) -> Vec<Finding> {
    let token_hint = if adapter.settings.push_token.is_some() {
        ", with ?token= and your push_token appended"
    } else {
        ""
    };
    vec![
        match host.notification_url() {
            Some(url) => Finding::info(
                "Where Pub/Sub must push",
                format!(
                    "The push subscription of the topic named in Play Console (Monetize with Play → \
                     Monetization setup → Real-time developer notifications) must push to \
                     {url}{token_hint}."
                ),
            ),
            None => Finding::info(
                "This server's public URL is not set",
                format!(
                    "Set [server] public_url so that this check can show the URL the Pub/Sub push \
                     subscription must call (…/v1/notifications/{STORE_ID})."
                ),
            ),
        },
        Finding::info(
            "Test notification",
            "Google Play has no API that sends one. To confirm delivery end to end, press Send \
             test notification in Play Console (Monetize with Play → Monetization setup → \
             Real-time developer notifications); storehook shows below when the last one arrived.",
        ),
    ]
}
