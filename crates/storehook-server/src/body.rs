//! Reading request bodies without trusting the sender.
//!
//! Every route that reads a body reads it here: within a deadline, up to
//! the route's limit, growing the buffer only as bytes arrive (a
//! `Content-Length` alone reserves nothing), and against one budget of
//! body bytes held in memory across all connections. A body the budget
//! cannot hold waits briefly, then gets 503 so a store retries later.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use warp::http::{HeaderMap, StatusCode};

use crate::error::ApiError;

pub(crate) type BodyStream = Pin<Box<dyn Stream<Item = Result<bytes::Bytes, String>> + Send>>;

/// How long a body waits for room in the budget before it gets 503.
const BUDGET_WAIT: Duration = Duration::from_secs(2);

/// Body bytes in memory, all requests together, in KiB permits.
pub(crate) struct BodyBudget {
    permits: Arc<Semaphore>,
}

/// A body read in full, holding its share of the budget until dropped.
pub(crate) struct Body {
    pub bytes: Vec<u8>,
    _held: Option<OwnedSemaphorePermit>,
}

impl BodyBudget {
    pub fn new(max_bytes: u64) -> Self {
        let kib = (max_bytes / 1024).clamp(64, Semaphore::MAX_PERMITS as u64 / 2) as usize;
        Self {
            permits: Arc::new(Semaphore::new(kib)),
        }
    }

    /// KiB still free.
    #[cfg(test)]
    pub fn available_kib(&self) -> usize {
        self.permits.available_permits()
    }
}

/// Where a body may come from and how much of it.
pub(crate) struct BodyLimits {
    pub max_bytes: u64,
    pub deadline: Duration,
}

/// Reads a request's body within `limits`, charging `budget`.
pub(crate) async fn read(
    headers: &HeaderMap,
    mut body: BodyStream,
    limits: BodyLimits,
    budget: &BodyBudget,
) -> Result<Body, ApiError> {
    let limit = limits.max_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body exceeds the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let collect = async {
        let mut buf: Vec<u8> = Vec::new();
        let mut held: Option<OwnedSemaphorePermit> = None;
        while let Some(chunk) = body.next().await {
            let chunk = chunk
                .map_err(|_| ApiError::bad_request("bad_body", "the body could not be read"))?;
            let needed = buf.len() as u64 + chunk.len() as u64;
            if needed > limit {
                return Err(too_large());
            }
            if needed as usize > buf.capacity() {
                // Grow by doubling, never past the limit, and pay for the
                // new capacity before taking it.
                let new_capacity = (buf.capacity() as u64 * 2).clamp(needed, limit.max(needed));
                let extra_kib = kib(new_capacity) - kib(buf.capacity() as u64);
                if extra_kib > 0 {
                    let more = tokio::time::timeout(
                        BUDGET_WAIT,
                        budget.permits.clone().acquire_many_owned(extra_kib),
                    )
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .ok_or_else(busy)?;
                    match held.as_mut() {
                        Some(h) => h.merge(more),
                        None => held = Some(more),
                    }
                }
                buf.reserve_exact(new_capacity as usize - buf.len());
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(Body {
            bytes: buf,
            _held: held,
        })
    };
    tokio::time::timeout(limits.deadline, collect)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "the body did not arrive in time",
            )
        })?
}

fn kib(bytes: u64) -> u32 {
    bytes.div_ceil(1024).min(u32::MAX as u64) as u32
}

fn busy() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "server_busy",
        "too many request bodies are arriving at once; retry later",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(chunks: Vec<&'static [u8]>) -> BodyStream {
        Box::pin(futures_util::stream::iter(
            chunks.into_iter().map(|c| Ok(bytes::Bytes::from_static(c))),
        ))
    }

    fn limits(max: u64) -> BodyLimits {
        BodyLimits {
            max_bytes: max,
            deadline: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn a_declared_length_reserves_nothing_and_the_budget_is_returned() {
        let budget = BodyBudget::new(1024 * 1024);
        let before = budget.available_kib();
        let mut h = HeaderMap::new();
        h.insert("content-length", "262144".parse().unwrap());
        let body = read(&h, stream(vec![b"abc", b"def"]), limits(262_144), &budget)
            .await
            .unwrap();
        assert_eq!(body.bytes, b"abcdef");
        assert!(body.bytes.capacity() < 1024, "{}", body.bytes.capacity());
        assert_eq!(budget.available_kib(), before - 1);
        drop(body);
        assert_eq!(budget.available_kib(), before);
    }

    #[tokio::test]
    async fn limits_and_budget_refuse() {
        let budget = BodyBudget::new(64 * 1024);
        let h = HeaderMap::new();
        let e = read(&h, stream(vec![&[0u8; 600]]), limits(500), &budget)
            .await
            .err()
            .unwrap();
        assert_eq!(e.status, 413);
        // Hold the whole budget, then another body waits and gets 503.
        let big: &'static [u8] = Box::leak(vec![0u8; 64 * 1024].into_boxed_slice());
        let held = read(&h, stream(vec![big]), limits(1 << 20), &budget)
            .await
            .unwrap();
        let e = read(&h, stream(vec![b"x"]), limits(1 << 20), &budget)
            .await
            .err()
            .unwrap();
        assert_eq!((e.status.as_u16(), e.code.as_ref()), (503, "server_busy"));
        drop(held);
        assert!(read(&h, stream(vec![b"x"]), limits(1 << 20), &budget)
            .await
            .is_ok());
    }
}
