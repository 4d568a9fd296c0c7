//! What the host's dashboard shows about the App Store: the setup steps in
//! App Store Connect, what its test notification does to the card, this
//! adapter's rejection codes in plain words, and the signed blobs to mask.

use storehook_core::{Masking, StoreHelp};

pub const HELP: StoreHelp = StoreHelp {
    console: "App Store Connect",
    setup: &[
        "In **App Store Connect**, open your app, then **App Information** › \
         **App Store Server Notifications**.",
        "Set the **Production Server URL** to `{url}` and choose **Version 2 Notifications**.",
        "Set the **Sandbox Server URL** to the same `{url}`, again with \
         **Version 2 Notifications** (storehook reads the environment from each notification).",
        "List the app in `[stores.apple] apps` (bundle id, and the Apple ID for \
         production) and restart storehook.",
        "Optional, for **Check connection** and recovering missed notifications: in **Users and \
         Access** › **Integrations** › **In-App Purchase**, generate a key and set \
         `[stores.apple.api]` `key_id`, `issuer_id` and `private_key_file` (the downloaded `.p8`).",
    ],
    test: Some(
        "With `[stores.apple.api]` configured, press **Check connection**: storehook asks \
         Apple for a test notification in each environment and reports how its delivery went. \
         Without it, request one with the App Store Server API \
         (`POST /inApps/v1/notifications/test`). This card then shows **connected** with \
         **Last received** just now; a TEST notification changes no subscription.",
    ),
    codes: &[
        (
            &["VERIFICATION_FAILURE"],
            "the signed payload did not verify against Apple's certificate chain",
        ),
        (
            &["INVALID_CERTIFICATE", "INVALID_CHAIN_LENGTH"],
            "the signing certificates are not a valid Apple chain",
        ),
        (
            &["INVALID_APP_IDENTIFIER"],
            "the notification is for an app not listed in [stores.apple] apps (bundle id or Apple ID)",
        ),
        (
            &["INVALID_ENVIRONMENT"],
            "the notification's environment (Production or Sandbox) is not accepted by \
             [stores.apple] environments",
        ),
        (
            &["apple_v1_notification"],
            "App Store Connect sent a Version 1 notification: select Version 2 Notifications \
             for this URL",
        ),
        (
            &["malformed_body", "missing_signed_payload"],
            "the body is not an App Store Server Notification (no signedPayload)",
        ),
    ],
};

/// The signed blobs: JWS strings that hold the decoded data again.
pub const MASKING: Masking = Masking {
    token_keys: &[
        "signedpayload",
        "signedtransactioninfo",
        "signedrenewalinfo",
        "signedapptransactioninfo",
    ],
    ..Masking::NONE
};
