//! The delivery decision, in one pure function: what one attempt's answer
//! means for its delivery (delivered, retry at a time, or dead), with the
//! metric label that says so. The worker only sends and records; the
//! database only stores the outcome.

use std::time::{Duration, SystemTime};

use storehook_db::AttemptOutcome;

/// What the receiver answered to one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// An HTTP response: its status, `Retry-After` (read on 429 and 503),
    /// and the first bytes of its body for the operator.
    Http {
        status: u16,
        retry_after: Option<Duration>,
        excerpt: String,
    },
    /// No response: connect error, TLS, timeout, refused by the SSRF guard.
    Network(String),
}

/// How an attempt is counted in `storehook_delivery_attempts_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptLabel {
    Delivered,
    HttpError,
    NetworkError,
}

impl AttemptLabel {
    pub const ALL: [AttemptLabel; 3] = [
        AttemptLabel::Delivered,
        AttemptLabel::HttpError,
        AttemptLabel::NetworkError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AttemptLabel::Delivered => "delivered",
            AttemptLabel::HttpError => "http_error",
            AttemptLabel::NetworkError => "network_error",
        }
    }
}

/// The longest wait a receiver's `Retry-After` can impose.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);
/// Used when the schedule is empty.
const DEFAULT_DELAY: Duration = Duration::from_secs(60);

/// The decision for attempt number `attempt` (1 for the first) answered
/// with `answer` at `at_ms`, for an endpoint allowed `max_attempts`. The
/// delay before attempt n + 1 is `schedule[n - 1]` (its last step repeats);
/// `jitter` in [0, 1) spreads it by ±20 %. A receiver's `Retry-After` is
/// honoured as given, up to a day.
///
/// - 2xx: delivered.
/// - 410 Gone: dead at once (the receiver says the endpoint is gone for good).
/// - otherwise, with `attempt >= max_attempts`: dead.
/// - otherwise: retry after `Retry-After` if the receiver sent one, else
///   after the schedule's delay.
pub fn decide(
    answer: &Answer,
    attempt: u32,
    max_attempts: u32,
    schedule: &[Duration],
    at_ms: i64,
    jitter: f64,
) -> (AttemptOutcome, AttemptLabel) {
    let (label, retry_after) = match answer {
        Answer::Http { status, .. } if (200..300).contains(status) => {
            return (AttemptOutcome::Delivered, AttemptLabel::Delivered)
        }
        Answer::Http { status: 410, .. } => return (AttemptOutcome::Dead, AttemptLabel::HttpError),
        Answer::Http { retry_after, .. } => (AttemptLabel::HttpError, *retry_after),
        Answer::Network(_) => (AttemptLabel::NetworkError, None),
    };
    if attempt >= max_attempts {
        return (AttemptOutcome::Dead, label);
    }
    let delay = match retry_after {
        Some(asked) => asked.min(MAX_RETRY_AFTER),
        None => scheduled_delay(schedule, attempt).mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0)),
    };
    let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
    (
        AttemptOutcome::RetryAt(at_ms.saturating_add(delay_ms)),
        label,
    )
}

fn scheduled_delay(schedule: &[Duration], attempt: u32) -> Duration {
    let index = (attempt as usize)
        .saturating_sub(1)
        .min(schedule.len().saturating_sub(1));
    schedule.get(index).copied().unwrap_or(DEFAULT_DELAY)
}

/// `Retry-After` (RFC 9110 §10.2.3): delay-seconds, or an HTTP-date, read
/// as the wait from `now` (a date in the past is no wait).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: i64 = 1_000_000;

    const SCHEDULE: [Duration; 2] = [Duration::from_secs(10), Duration::from_secs(60)];

    fn http(status: u16, retry_after: Option<u64>) -> Answer {
        Answer::Http {
            status,
            retry_after: retry_after.map(Duration::from_secs),
            excerpt: String::new(),
        }
    }

    /// name, answer, attempt, max_attempts, jitter, expected decision.
    type Row = (
        &'static str,
        Answer,
        u32,
        u32,
        f64,
        (AttemptOutcome, AttemptLabel),
    );

    /// Every branch of the decision, one row each.
    #[test]
    fn every_branch_of_the_decision() {
        use AttemptLabel as L;
        use AttemptOutcome as O;
        let network = Answer::Network("connection refused".into());
        let rows: Vec<Row> = vec![
            (
                "200 delivers",
                http(200, None),
                1,
                3,
                0.5,
                (O::Delivered, L::Delivered),
            ),
            (
                "204 delivers",
                http(204, None),
                3,
                3,
                0.5,
                (O::Delivered, L::Delivered),
            ),
            (
                "2xx on the last attempt delivers",
                http(299, None),
                9,
                3,
                0.5,
                (O::Delivered, L::Delivered),
            ),
            (
                "410 is dead at once",
                http(410, None),
                1,
                10,
                0.5,
                (O::Dead, L::HttpError),
            ),
            (
                "410 ignores Retry-After",
                http(410, Some(5)),
                1,
                10,
                0.5,
                (O::Dead, L::HttpError),
            ),
            (
                "500 retries after the schedule",
                http(500, None),
                1,
                3,
                0.5,
                (O::RetryAt(AT + 10_000), L::HttpError),
            ),
            (
                "jitter -20 %",
                http(500, None),
                1,
                3,
                0.0,
                (O::RetryAt(AT + 8_000), L::HttpError),
            ),
            (
                "jitter +20 % (upper end)",
                http(500, None),
                1,
                3,
                1.0,
                (O::RetryAt(AT + 12_000), L::HttpError),
            ),
            (
                "the schedule's next step",
                http(502, None),
                2,
                5,
                0.5,
                (O::RetryAt(AT + 60_000), L::HttpError),
            ),
            (
                "the last step repeats",
                http(502, None),
                4,
                5,
                0.5,
                (O::RetryAt(AT + 60_000), L::HttpError),
            ),
            (
                "300 is not delivered",
                http(301, None),
                1,
                3,
                0.5,
                (O::RetryAt(AT + 10_000), L::HttpError),
            ),
            (
                "429 honours Retry-After",
                http(429, Some(120)),
                1,
                3,
                0.5,
                (O::RetryAt(AT + 120_000), L::HttpError),
            ),
            (
                "503 honours Retry-After, no jitter",
                http(503, Some(7)),
                1,
                3,
                0.0,
                (O::RetryAt(AT + 7_000), L::HttpError),
            ),
            (
                "Retry-After capped at a day",
                http(503, Some(10 * 86_400)),
                1,
                3,
                0.5,
                (O::RetryAt(AT + 86_400_000), L::HttpError),
            ),
            (
                "max_attempts reached: dead",
                http(500, None),
                3,
                3,
                0.5,
                (O::Dead, L::HttpError),
            ),
            (
                "max_attempts beats Retry-After",
                http(429, Some(1)),
                3,
                3,
                0.5,
                (O::Dead, L::HttpError),
            ),
            (
                "max_attempts 1: dead after one",
                http(500, None),
                1,
                1,
                0.5,
                (O::Dead, L::HttpError),
            ),
            (
                "network error retries",
                network.clone(),
                1,
                3,
                0.5,
                (O::RetryAt(AT + 10_000), L::NetworkError),
            ),
            (
                "network error at the limit: dead",
                network,
                3,
                3,
                0.5,
                (O::Dead, L::NetworkError),
            ),
        ];
        for (name, answer, attempt, max, jitter, expected) in rows {
            assert_eq!(
                decide(&answer, attempt, max, &SCHEDULE, AT, jitter),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn an_empty_schedule_waits_a_minute() {
        assert_eq!(
            decide(&http(500, None), 1, 5, &[], AT, 0.5),
            (
                AttemptOutcome::RetryAt(AT + 60_000),
                AttemptLabel::HttpError
            )
        );
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now = httpdate::parse_http_date("Wed, 02 Dec 2026 10:00:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 02 Dec 2026 10:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("Wed, 02 Dec 2026 09:00:00 GMT", now),
            Some(Duration::ZERO),
            "a past date is no wait"
        );
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn labels_are_the_documented_ones() {
        let labels: Vec<&str> = AttemptLabel::ALL.iter().map(|l| l.as_str()).collect();
        assert_eq!(labels, ["delivered", "http_error", "network_error"]);
    }
}
