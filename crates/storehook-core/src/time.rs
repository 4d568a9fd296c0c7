//! The wall clock, read in one place. Adapters get the time of a request
//! from `IncomingRequest::received_at_ms` (so tests can pin it); the host and
//! the few adapter calls that happen outside a request read it here.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix milliseconds (0 for a clock before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Now, in Unix seconds.
pub fn now_s() -> i64 {
    now_ms().div_euclid(1000)
}

#[cfg(test)]
mod tests {
    #[test]
    fn seconds_and_milliseconds_agree() {
        let (ms, s) = (super::now_ms(), super::now_s());
        assert!(ms > 1_700_000_000_000);
        assert!((s - ms / 1000).abs() <= 1);
    }
}
