//! What the host's dashboard shows about Google Play: the setup steps in the
//! Google Cloud console and the Play Console, what the Play Console's test
//! button does to the card, and this adapter's rejection codes in plain words.

use storehook_core::StoreHelp;

pub const HELP: StoreHelp = StoreHelp {
    console: "Google Cloud console and Google Play Console",
    setup: &[
        "In the **Google Cloud console** (Pub/Sub), create a topic and grant \
         `google-play-developer-notifications@system.gserviceaccount.com` the \
         **Pub/Sub Publisher** role on it.",
        "Create a **push subscription** on the topic with endpoint `{url}`. \
         Enable **authentication** with a service account: put its email in \
         `[stores.google] push_service_account` and the audience in \
         `audience` (left empty, Google uses the endpoint URL).",
        "In the **Google Play Console**: your app › **Monetize with Play** › \
         **Monetization setup** › **Real-time developer notifications**: enter the full \
         topic name (`projects/…/topics/…`) and save.",
        "Optional, for **Check connection**, backfill and acknowledgement: create a \
         **service account** with a JSON key in the Google Cloud console (and enable the \
         **Google Play Android Developer API** in its project), invite its email in the Play \
         Console under **Users and permissions** with **View financial data** and **Manage \
         orders and subscriptions**, and set `[stores.google.play_api] \
         service_account_key_file`; add `acknowledge = true` to have storehook acknowledge \
         purchases. Permissions take up to 48 h to apply.",
    ],
    test: Some(
        "Press **Send test notification** on that Play Console page: within seconds this \
         card shows **connected** with **Last received** just now. If it shows \
         **rejecting deliveries**, the reason says which check failed.",
    ),
    codes: &[
        (
            &["missing_token"],
            "the push had no authentication token: enable authentication on the Pub/Sub push \
             subscription",
        ),
        (
            &["wrong_audience"],
            "the push token's audience does not match [stores.google] audience",
        ),
        (
            &["wrong_email", "email_not_verified"],
            "the push token was issued to a service account other than [stores.google] \
             push_service_account",
        ),
        (
            &[
                "bad_signature",
                "unknown_key",
                "bad_algorithm",
                "malformed_token",
                "wrong_issuer",
            ],
            "the push token is not a valid Google-signed token",
        ),
        (
            &["expired", "not_yet_valid"],
            "the push token is expired or not yet valid: check this server's clock",
        ),
        (
            &["missing_push_token", "bad_push_token"],
            "the ?token= in the push endpoint URL is missing or does not match [stores.google] \
             push_token",
        ),
        (
            &["not_a_push_envelope"],
            "the body is not a Pub/Sub push message",
        ),
    ],
};
