//! What the host's dashboard shows about Stripe: the setup steps in the
//! Stripe Dashboard, what a test-mode event does to the card, this adapter's
//! rejection codes in plain words, and the shapes of Stripe's secrets.

use storehook_core::{Masking, StoreHelp};

pub const HELP: StoreHelp = StoreHelp {
    console: "Stripe Dashboard",
    setup: &[
        "In the **Stripe Dashboard**: **Developers** › **Webhooks** › **Add endpoint**, URL `{url}`.",
        "Select these events (or all events): `customer.subscription.created`, \
         `customer.subscription.updated`, `customer.subscription.deleted`, \
         `customer.subscription.paused`, `customer.subscription.resumed`, \
         `invoice.paid`, `invoice.payment_failed`, `invoice.payment_action_required`, \
         `charge.refunded`, `checkout.session.completed`, \
         `checkout.session.async_payment_succeeded`, `checkout.session.async_payment_failed`.",
        "Reveal the endpoint's **signing secret** (`whsec_…`) and give it to \
         storehook in the environment variable `STOREHOOK_STRIPE_SIGNING_SECRETS` \
         (or `[stores.stripe] signing_secrets`); restart storehook.",
        "Optional, for **Check connection** and recovering missed events: **Developers** › \
         **API keys** › **Create restricted key** with **Read** on **Events** and **Webhook \
         Endpoints**; give it to storehook in `STOREHOOK_STRIPE_API_KEY` (or \
         `[stores.stripe.api] secret_key`) and restart.",
    ],
    test: Some(
        "Send a test-mode event (Stripe CLI: `stripe trigger customer.subscription.updated`; \
         accepted when `[stores.stripe] livemode` allows test mode). Its subscription is \
         not tracked, so this card shows **only untracked notifications so far** with \
         **Last verified delivery** just now; a wrong signing secret shows \
         **rejecting deliveries**.",
    ),
    codes: &[
        (
            &["no_matching_signature"],
            "signature did not match any configured Stripe signing secret",
        ),
        (
            &["missing_header"],
            "the request had no Stripe-Signature header (not sent by Stripe?)",
        ),
        (
            &["malformed_header", "no_v1_signature"],
            "the Stripe-Signature header could not be read",
        ),
        (
            &["timestamp_outside_tolerance"],
            "the signature is too old: a replayed delivery, or this server's clock is off",
        ),
        (
            &["livemode_not_accepted"],
            "the event's mode (live or test) is not accepted by [stores.stripe] livemode",
        ),
        (
            &["malformed_event"],
            "the signed body is not a Stripe event storehook can read",
        ),
    ],
};

/// Webhook signing secrets, secret and restricted API keys.
pub const MASKING: Masking = Masking {
    secret_prefixes: &["whsec_", "sk_live_", "sk_test_", "rk_live_", "rk_test_"],
    ..Masking::NONE
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_names_every_mapped_event_type() {
        let setup = HELP.setup.join(" ");
        for t in crate::map::MAPPED_EVENT_TYPES {
            assert!(setup.contains(&format!("`{t}`")), "{t}");
        }
    }
}
