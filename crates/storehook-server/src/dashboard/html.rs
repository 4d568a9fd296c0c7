//! HTML building blocks: times, counts, URL components, the page frame.
//! Everything is a maud template, which escapes every value it is given;
//! the dashboard has no raw-markup escape hatch (maud's pre-escaped
//! wrapper appears nowhere in it; `tests/seams.rs` checks).

use std::fmt::Write;

use maud::{html, Markup, DOCTYPE};
use time::macros::format_description;
use time::OffsetDateTime;

/// Escapes a value for a URL query component or a path segment (the result
/// has only unreserved characters and `%`).
pub fn url_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `2026-11-29 06:30:00 UTC`.
pub fn utc(ms: i64) -> String {
    let format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// "just now", "3 minutes ago", "in 2 days".
pub fn relative(now_ms: i64, at_ms: i64) -> String {
    let delta = now_ms.saturating_sub(at_ms);
    let (future, secs) = if delta < 0 {
        (true, delta.unsigned_abs() / 1000)
    } else {
        (false, delta.unsigned_abs() / 1000)
    };
    if secs < 5 {
        return "just now".into();
    }
    let (n, unit) = match secs {
        s if s < 60 => (s, "second"),
        s if s < 3_600 => (s / 60, "minute"),
        s if s < 48 * 3_600 => (s / 3_600, "hour"),
        s if s < 60 * 86_400 => (s / 86_400, "day"),
        s if s < 730 * 86_400 => (s / (30 * 86_400), "month"),
        s => (s / (365 * 86_400), "year"),
    };
    let plural = if n == 1 { "" } else { "s" };
    if future {
        format!("in {n} {unit}{plural}")
    } else {
        format!("{n} {unit}{plural} ago")
    }
}

/// A `<time>` showing the relative time, with the exact UTC time on hover.
pub fn time_tag(now_ms: i64, at_ms: i64) -> Markup {
    let iso = crate::time_fmt::rfc3339(at_ms).unwrap_or_default();
    html! { time datetime=(iso) title=(utc(at_ms)) { (relative(now_ms, at_ms)) } }
}

/// A muted dash: no value.
pub fn dash() -> Markup {
    html! { span.muted { "—" } }
}

/// Like [`time_tag`], or a dash.
pub fn time_or_dash(now_ms: i64, at_ms: Option<i64>) -> Markup {
    at_ms.map_or_else(dash, |t| time_tag(now_ms, t))
}

/// `1 notification`, `3 notifications`.
pub fn count(n: i64, singular: &str, plural: &str) -> String {
    format!("{n} {}", if n == 1 { singular } else { plural })
}

/// What the frame needs to know about the visitor.
pub struct Frame<'a> {
    pub title: &'a str,
    pub signed_in: bool,
    /// Which nav entry is current.
    pub section: &'a str,
}

const NAV: [(&str, &str, &str); 5] = [
    ("/", "Stores", "stores"),
    ("/#recent", "Notifications", "notifications"),
    ("/dashboard/subscriptions", "Subscription lookup", "lookup"),
    ("/dashboard/charts", "Charts", "charts"),
    ("/metrics", "Metrics", "metrics"),
];

/// The whole page around `body`.
pub fn page(frame: &Frame<'_>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (frame.title) " · storehook" }
                link rel="icon" href="/dashboard/assets/icon.svg" type="image/svg+xml";
                link rel="stylesheet" href="/dashboard/assets/app.css";
                script src="/dashboard/assets/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/" { "storehook" }
                    nav {
                        @if frame.signed_in {
                            @for (href, label, id) in NAV {
                                a href=(href) aria-current=[(id == frame.section).then_some("page")] { (label) }
                            }
                            form.inline method="post" action="/dashboard/logout" {
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { (body) }
                footer {
                    "storehook " (env!("CARGO_PKG_VERSION")) " · this page refreshes by itself; "
                    a href="" { "reload" } " if scripts are off"
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        let evil = "<script>alert('x')</script> & \"y\"";
        assert_eq!(
            html! { p title=(evil) { (evil) } }.into_string(),
            "<p title=\"&lt;script&gt;alert('x')&lt;/script&gt; &amp; &quot;y&quot;\">\
             &lt;script&gt;alert('x')&lt;/script&gt; &amp; &quot;y&quot;</p>"
        );
        assert_eq!(url_component("a b/é&"), "a%20b%2F%C3%A9%26");
    }

    #[test]
    fn relative_times_read_naturally() {
        let now = 1_000_000_000;
        assert_eq!(relative(now, now - 2_000), "just now");
        assert_eq!(relative(now, now - 45_000), "45 seconds ago");
        assert_eq!(relative(now, now - 60_000), "1 minute ago");
        assert_eq!(relative(now, now - 3 * 60_000 - 5_000), "3 minutes ago");
        assert_eq!(relative(now, now - 5 * 3_600_000), "5 hours ago");
        assert_eq!(relative(now, now - 3 * 86_400_000), "3 days ago");
        assert_eq!(relative(now, now + 3 * 86_400_000), "in 3 days");
        assert_eq!(relative(now, now - 90 * 86_400_000), "3 months ago");
        assert_eq!(relative(now, now - 1_110 * 86_400_000), "3 years ago");
        assert_eq!(utc(1_796_000_000_123), "2026-11-30 00:53:20 UTC");
    }

    #[test]
    fn time_tags_carry_the_exact_time() {
        let tag = time_tag(1_796_000_180_000, 1_796_000_000_000).into_string();
        assert_eq!(
            tag,
            "<time datetime=\"2026-11-30T00:53:20.000Z\" title=\"2026-11-30 00:53:20 UTC\">3 minutes ago</time>"
        );
    }

    #[test]
    fn the_frame_marks_the_current_section() {
        let frame = Frame {
            title: "T<i>",
            signed_in: true,
            section: "lookup",
        };
        let page = page(&frame, html! { p { "body" } }).into_string();
        assert!(
            page.starts_with("<!DOCTYPE html><html lang=\"en\">"),
            "{page}"
        );
        assert!(
            page.contains("<title>T&lt;i&gt; · storehook</title>"),
            "{page}"
        );
        assert!(
            page.contains("<a href=\"/dashboard/subscriptions\" aria-current=\"page\">"),
            "{page}"
        );
        assert!(page.contains("<a href=\"/\">Stores</a>"), "{page}");
        assert!(page.contains("<main><p>body</p></main>"), "{page}");
    }
}
