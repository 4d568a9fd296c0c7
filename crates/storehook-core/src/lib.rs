//! The plugin API of storehook.
//!
//! A store adapter is one crate that depends on this one alone. It implements
//! [`StoreAdapter`] (verify one HTTP request, decode it, map it to a
//! [`VerifiedNotification`]) and registers a [`StoreRegistration`] with
//! [`inventory::submit!`]. The host discovers every registration at start-up
//! through [`registrations`]; it never names a store in its own code. What
//! the host shows or guards for a store (setup help, rejection codes in
//! plain words, forward headers, masking hints) comes with the registration
//! ([`StoreHelp`], [`Masking`]).
//!
//! Everything that is stateful — storage, de-duplication, tracking,
//! "last received" bookkeeping, outgoing webhooks — belongs to the host.
//! An adapter is a pure function of its configuration and the request.

// Production code never unwraps: a panic on a request path is a dropped
// notification. Tests may (they are meant to stop at the first surprise).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod adapter;
pub mod encoding;
mod error;
mod help;
mod request;
mod secret;
pub mod store_api;
pub mod time;
mod types;

#[cfg(any(test, feature = "testkit"))]
pub mod conformance;

pub use adapter::{
    find_registration, parse_store_config, registrations, AdapterFactory, FactoryContext,
    PurchaseRef, StoreAdapter, StoreRegistration, SubscriptionRef,
};
pub use error::{AdapterError, ConfigError};
pub use help::{spans, HelpText, Masking, Span, StoreHelp};
pub use request::{percent_decode, IncomingRequest};
pub use secret::{redact_config_error, LogSafe, Secret};
pub use store_api::{
    AckOutcome, ApiCapabilities, BackfillPage, BackfillRequest, BackfillWindow, CheckReport,
    CheckVerdict, Finding, FindingLevel, Recovered, StoreHost, TrackedSubscription,
};
pub use types::{
    mask_secrets, Environment, EventDetails, EventType, ImpliedState, Outcome, PurchaseKind,
    StateUpdate, SubscriptionStatus, VerifiedNotification,
};

// Re-exported so that a plugin's `inventory::submit!` resolves against the
// same `inventory` version as the host's `inventory::collect!`.
pub use async_trait::async_trait;
pub use inventory;
