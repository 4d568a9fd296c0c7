use std::borrow::Cow;

/// Why an adapter refused a request. Each variant knows its HTTP status; the
/// host maps it to a response in one place and records `code` as the store's
/// `last_rejection_reason`.
///
/// `code` is machine-readable and stable (`no_matching_signature`,
/// `INVALID_CERTIFICATE`); `message` is for a human and must never contain a
/// secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdapterError {
    /// The body is not what this store sends (not JSON, a field missing…): 400.
    #[error("{message}")]
    Malformed {
        code: Cow<'static, str>,
        message: String,
    },
    /// The request failed authentication or signature verification: 401.
    #[error("{message}")]
    Unauthorized {
        code: Cow<'static, str>,
        message: String,
    },
    /// The store is registered but not implemented: 501.
    #[error("{message}")]
    Unsupported { message: String },
    /// A dependency the adapter needs is unreachable right now (e.g. the
    /// store's signing keys could not be fetched): 503, so the store retries.
    #[error("{message}")]
    Unavailable {
        code: Cow<'static, str>,
        message: String,
    },
    /// The store's API asked to slow down: 503. `retry_at_ms` is when it
    /// said to ask again (Apple's `Retry-After` in Unix ms), if it said.
    #[error("{message}")]
    RateLimited {
        code: Cow<'static, str>,
        message: String,
        retry_at_ms: Option<i64>,
    },
}

impl AdapterError {
    pub fn malformed(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        AdapterError::Malformed {
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn unauthorized(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        AdapterError::Unauthorized {
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn unavailable(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        AdapterError::Unavailable {
            code: code.into(),
            message: message.into(),
        }
    }

    /// Worth asking again as it is, later (the store is down or busy).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            AdapterError::Unavailable { .. } | AdapterError::RateLimited { .. }
        )
    }

    /// The HTTP status the host answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            AdapterError::Malformed { .. } => 400,
            AdapterError::Unauthorized { .. } => 401,
            AdapterError::Unsupported { .. } => 501,
            AdapterError::Unavailable { .. } | AdapterError::RateLimited { .. } => 503,
        }
    }

    /// The machine-readable error code.
    pub fn code(&self) -> &str {
        match self {
            AdapterError::Malformed { code, .. }
            | AdapterError::Unauthorized { code, .. }
            | AdapterError::Unavailable { code, .. }
            | AdapterError::RateLimited { code, .. } => code,
            AdapterError::Unsupported { .. } => "unsupported_store",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            AdapterError::Malformed { message, .. }
            | AdapterError::Unauthorized { message, .. }
            | AdapterError::Unavailable { message, .. }
            | AdapterError::RateLimited { message, .. }
            | AdapterError::Unsupported { message } => message,
        }
    }
}

/// A store's configuration table could not be used. The message names the
/// offending key (`stores.stripe.signing_secrets: …`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError(message.into())
    }

    /// An error about one key of `[stores.<store>]`.
    pub fn key(store: &str, key: &str, problem: impl std::fmt::Display) -> Self {
        ConfigError(format!("stores.{store}.{key}: {problem}"))
    }
}
