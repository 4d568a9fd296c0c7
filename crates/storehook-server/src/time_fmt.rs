use time::macros::format_description;
use time::OffsetDateTime;

/// Unix milliseconds as RFC 3339 UTC with millisecond precision
/// (`2026-11-29T06:30:00.123Z`): fixed width, so it also sorts as text.
pub fn rfc3339(ms: i64) -> Option<String> {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()?
        .format(format)
        .ok()
}

pub fn rfc3339_opt(ms: Option<i64>) -> Option<String> {
    ms.and_then(rfc3339)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_utc_with_milliseconds() {
        assert_eq!(
            super::rfc3339(0).as_deref(),
            Some("1970-01-01T00:00:00.000Z")
        );
        assert_eq!(
            super::rfc3339(1_500).as_deref(),
            Some("1970-01-01T00:00:01.500Z")
        );
        assert_eq!(
            super::rfc3339(1_796_000_000_123).as_deref(),
            Some("2026-11-30T00:53:20.123Z")
        );
    }
}
