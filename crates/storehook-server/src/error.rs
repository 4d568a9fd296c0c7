//! The one place where failures become HTTP responses. Every error body is
//! `{"error": "<code>", "message": "<for a human>"}`.

use std::borrow::Cow;

use storehook_core::AdapterError;
use storehook_db::DbError;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: Cow<'static, str>,
    pub message: String,
    /// Seconds for `Retry-After` (429s; a 503 gets 5 by default).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn storage(e: &DbError) -> Self {
        // The detail goes to the log; the store only needs to know to retry.
        tracing::error!(error = %e, "storage failure");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "the notification could not be stored; retry later",
        )
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        Self::storage(&e)
    }
}

impl From<&AdapterError> for ApiError {
    fn from(e: &AdapterError) -> Self {
        let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        Self::new(status, e.code().to_owned(), e.message().to_owned())
    }
}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.code, "message": self.message });
        let mut response = warp::reply::json(&body).into_response();
        *response.status_mut() = self.status;
        let retry_after = self
            .retry_after
            .or((self.status == StatusCode::SERVICE_UNAVAILABLE).then_some(5));
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert("retry-after", warp::http::HeaderValue::from(seconds));
        }
        response
    }
}

/// Turns warp's own rejections (no route, wrong method, bad JSON…) into the
/// same error shape.
pub async fn recover(rejection: warp::Rejection) -> Result<Response, std::convert::Infallible> {
    let error = if rejection.is_not_found() {
        ApiError::not_found("not_found", "no such route")
    } else if let Some(e) = rejection.find::<warp::filters::body::BodyDeserializeError>() {
        ApiError::bad_request(
            "invalid_json",
            format!("the request body is not the expected JSON: {e}"),
        )
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this route",
        )
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large",
        )
    } else if rejection
        .find::<warp::reject::UnsupportedMediaType>()
        .is_some()
    {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as application/json",
        )
    } else if rejection.find::<warp::reject::InvalidHeader>().is_some()
        || rejection.find::<warp::reject::MissingHeader>().is_some()
        || rejection.find::<warp::reject::InvalidQuery>().is_some()
    {
        ApiError::bad_request("bad_request", "the request is malformed")
    } else {
        tracing::warn!(?rejection, "unhandled rejection");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error",
        )
    };
    Ok(error.into_response())
}
