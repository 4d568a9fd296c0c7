//! What the dashboard tells an operator about each store: the setup steps
//! for its console, what its test button does to the card, and rejection
//! codes in plain words. Keyed by store id; a store this file does not know
//! (a third-party plugin) gets the generic text and the adapter's own message.
//!
//! This is help text only: no host logic depends on the list of stores.

/// Setup help for one store. Texts are trusted literals that may hold
/// markup; `{url}` is replaced by the (escaped) notification URL.
pub struct SetupHelp {
    /// Where the operator goes.
    pub console: &'static str,
    pub steps: &'static [&'static str],
    /// What pressing the store's test button does to this card.
    pub test: Option<&'static str>,
}

const APPLE: SetupHelp = SetupHelp {
    console: "App Store Connect",
    steps: &[
        "In <b>App Store Connect</b>, open your app, then <b>App Information</b> › \
         <b>App Store Server Notifications</b>.",
        "Set the <b>Production Server URL</b> to <code>{url}</code> and choose \
         <b>Version 2 Notifications</b>.",
        "Set the <b>Sandbox Server URL</b> to the same <code>{url}</code>, again with \
         <b>Version 2 Notifications</b> (storehook reads the environment from each notification).",
        "List the app in <code>[stores.apple] apps</code> (bundle id, and the Apple ID for \
         production) and restart storehook.",
    ],
    test: Some(
        "App Store Connect has no test button: request one with the App Store Server API \
         (<code>POST /inApps/v1/notifications/test</code>). This card then shows \
         <b>connected</b> with <b>Last received</b> just now; a TEST notification changes no \
         subscription.",
    ),
};

const GOOGLE: SetupHelp = SetupHelp {
    console: "Google Cloud console and Google Play Console",
    steps: &[
        "In the <b>Google Cloud console</b> (Pub/Sub), create a topic and grant \
         <code>google-play-developer-notifications@system.gserviceaccount.com</code> the \
         <b>Pub/Sub Publisher</b> role on it.",
        "Create a <b>push subscription</b> on the topic with endpoint <code>{url}</code>. \
         Enable <b>authentication</b> with a service account: put its email in \
         <code>[stores.google] push_service_account</code> and the audience in \
         <code>audience</code> (left empty, Google uses the endpoint URL).",
        "In the <b>Google Play Console</b>: your app › <b>Monetize with Play</b> › \
         <b>Monetization setup</b> › <b>Real-time developer notifications</b>: enter the full \
         topic name (<code>projects/…/topics/…</code>) and save.",
    ],
    test: Some(
        "Press <b>Send test notification</b> on that Play Console page: within seconds this \
         card shows <b>connected</b> with <b>Last received</b> just now. If it shows \
         <b>rejecting deliveries</b>, the reason says which check failed.",
    ),
};

const STRIPE: SetupHelp = SetupHelp {
    console: "Stripe Dashboard",
    steps: &[
        "In the <b>Stripe Dashboard</b>: <b>Developers</b> › <b>Webhooks</b> › \
         <b>Add endpoint</b>, URL <code>{url}</code>.",
        "Select these events: <code>customer.subscription.created</code>, \
         <code>customer.subscription.updated</code>, <code>customer.subscription.deleted</code>, \
         <code>invoice.paid</code>, <code>invoice.payment_failed</code>, \
         <code>charge.refunded</code>, <code>checkout.session.completed</code>.",
        "Reveal the endpoint's <b>signing secret</b> (<code>whsec_…</code>) and give it to \
         storehook in the environment variable <code>STOREHOOK_STRIPE_SIGNING_SECRETS</code> \
         (or <code>[stores.stripe] signing_secrets</code>); restart storehook.",
    ],
    test: Some(
        "Send a test-mode event (Stripe CLI: <code>stripe trigger customer.subscription.updated</code>; \
         accepted when <code>[stores.stripe] livemode</code> allows test mode). Its subscription is \
         not tracked, so this card shows <b>only untracked notifications so far</b> with \
         <b>Last verified delivery</b> just now; a wrong signing secret shows \
         <b>rejecting deliveries</b>.",
    ),
};

const AMAZON: SetupHelp = SetupHelp {
    console: "Amazon Appstore",
    steps: &[
        "storehook does not support Amazon Appstore notifications yet: there is nothing to set up.",
    ],
    test: None,
};

const GENERIC: SetupHelp = SetupHelp {
    console: "the store's console",
    steps: &[
        "In the store's console, set the server notification URL to <code>{url}</code>.",
        "Configure the store's table in <code>config.toml</code> as its plugin documents, then restart storehook.",
    ],
    test: None,
};

/// The setup help for a store id.
pub fn setup(store: &str) -> &'static SetupHelp {
    match store {
        "apple" => &APPLE,
        "google" => &GOOGLE,
        "stripe" => &STRIPE,
        "amazon" => &AMAZON,
        _ => &GENERIC,
    }
}

/// A rejection code in plain words, when this file knows it; `None` means
/// "show the adapter's message".
pub fn rejection_reason(store: &str, code: &str) -> Option<&'static str> {
    let specific = match (store, code) {
        ("stripe", "no_matching_signature") => {
            Some("signature did not match any configured Stripe signing secret")
        }
        ("stripe", "missing_header") => Some("the request had no Stripe-Signature header (not sent by Stripe?)"),
        ("stripe", "malformed_header" | "no_v1_signature") => {
            Some("the Stripe-Signature header could not be read")
        }
        ("stripe", "timestamp_outside_tolerance") => Some(
            "the signature is too old: a replayed delivery, or this server's clock is off",
        ),
        ("stripe", "livemode_not_accepted") => Some(
            "the event's mode (live or test) is not accepted by [stores.stripe] livemode",
        ),
        ("stripe", "malformed_event") => Some("the signed body is not a Stripe event storehook can read"),
        ("apple", "VERIFICATION_FAILURE") => Some(
            "the signed payload did not verify against Apple's certificate chain",
        ),
        ("apple", "INVALID_CERTIFICATE" | "INVALID_CHAIN_LENGTH") => Some(
            "the signing certificates are not a valid Apple chain",
        ),
        ("apple", "INVALID_APP_IDENTIFIER") => Some(
            "the notification is for an app not listed in [stores.apple] apps (bundle id or Apple ID)",
        ),
        ("apple", "INVALID_ENVIRONMENT") => Some(
            "the notification's environment (Production or Sandbox) is not accepted by [stores.apple] environments",
        ),
        ("apple", "apple_v1_notification") => Some(
            "App Store Connect sent a Version 1 notification: select Version 2 Notifications for this URL",
        ),
        ("apple", "malformed_body" | "missing_signed_payload") => {
            Some("the body is not an App Store Server Notification (no signedPayload)")
        }
        ("google", "missing_token") => Some(
            "the push had no authentication token: enable authentication on the Pub/Sub push subscription",
        ),
        ("google", "wrong_audience") => Some(
            "the push token's audience does not match [stores.google] audience",
        ),
        ("google", "wrong_email" | "email_not_verified") => Some(
            "the push token was issued to a service account other than [stores.google] push_service_account",
        ),
        ("google", "bad_signature" | "unknown_key" | "bad_algorithm" | "malformed_token" | "wrong_issuer") => {
            Some("the push token is not a valid Google-signed token")
        }
        ("google", "expired" | "not_yet_valid") => Some(
            "the push token is expired or not yet valid: check this server's clock",
        ),
        ("google", "missing_push_token" | "bad_push_token") => Some(
            "the ?token= in the push endpoint URL is missing or does not match [stores.google] push_token",
        ),
        ("google", "not_a_push_envelope") => Some("the body is not a Pub/Sub push message"),
        _ => None,
    };
    specific.or(match code {
        "payload_too_large" => Some("the body was larger than [server] max_body_bytes"),
        "body_timeout" => Some("the body did not arrive within [server] body_timeout_seconds"),
        "bad_body" => Some("the connection failed while the body was being read"),
        "invalid_json" => Some("the body is not JSON"),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes_read_as_plain_words() {
        assert_eq!(
            rejection_reason("stripe", "no_matching_signature"),
            Some("signature did not match any configured Stripe signing secret")
        );
        assert_eq!(
            rejection_reason("example", "payload_too_large"),
            Some("the body was larger than [server] max_body_bytes")
        );
        assert_eq!(rejection_reason("example", "wrong_key"), None);
        // Codes are per store: Apple's VERIFICATION_FAILURE means nothing for Google.
        assert_eq!(rejection_reason("google", "VERIFICATION_FAILURE"), None);
    }

    #[test]
    fn unknown_stores_get_generic_help() {
        assert!(setup("example").steps[0].contains("{url}"));
        assert!(setup("google")
            .test
            .is_some_and(|t| t.contains("Send test notification")));
        assert!(setup("apple").steps.iter().any(|s| s.contains("Version 2")));
    }
}
