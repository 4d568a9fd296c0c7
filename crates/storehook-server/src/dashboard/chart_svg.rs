//! Charts drawn on the server as SVG, through maud like every page (every
//! label — a store id, a product id, a currency — is escaped by
//! construction). No script: each point or bar carries a `<title>` with its
//! exact value and bucket, which browsers show on hover. Stocks, rates and
//! lag are lines; flows are bars. The current bucket is drawn lighter and
//! dashed and says so in its title.

use maud::{html, Markup};
use storehook_db::{Chart, ChartBucket, ChartMetric, ChartSeries, ChartUnit};
use time::OffsetDateTime;

use crate::charts::{date_of, number};

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 280.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 18.0;
const BOTTOM: f64 = 40.0;
/// At most this many labels under the x axis.
const X_LABELS: usize = 8;

/// Series colours, in order (SVG attributes, which the CSP allows).
const COLORS: [&str; 8] = [
    "#2563eb", "#d97706", "#059669", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#65a30d",
];

fn color(i: usize) -> &'static str {
    COLORS[i % COLORS.len()]
}

/// A metric's name as a heading.
pub fn metric_title(metric: ChartMetric) -> &'static str {
    match metric {
        ChartMetric::ActiveSubscriptions => "Active subscriptions",
        ChartMetric::ActiveTrials => "Active trials",
        ChartMetric::NewSubscriptions => "New subscriptions",
        ChartMetric::TrialConversions => "Trial conversions",
        ChartMetric::Renewals => "Renewals",
        ChartMetric::Churned => "Churned",
        ChartMetric::ChurnRate => "Churn rate",
        ChartMetric::Reactivations => "Reactivations",
        ChartMetric::Mrr => "MRR",
        ChartMetric::Revenue => "Revenue",
        ChartMetric::Refunds => "Refunds",
        ChartMetric::BillingIssues => "Billing issues",
        ChartMetric::Lag => "Notification lag",
        ChartMetric::Events => "Events",
    }
}

/// What a metric counts, in a sentence (the README's "Charts — definitions"
/// has the details).
pub fn definition(metric: ChartMetric) -> &'static str {
    match metric {
        ChartMetric::ActiveSubscriptions => {
            "Paid subscriptions not expired at the end of each bucket. A cancelled one counts \
             until it expires; a grace period counts until it ends; free trials do not count."
        }
        ChartMetric::ActiveTrials => {
            "Free trials not expired at the end of each bucket, whether or not they will renew."
        }
        ChartMetric::NewSubscriptions => {
            "Initial purchases of a paid subscription in the bucket. A trial start is not one: \
             its first payment counts as a trial conversion."
        }
        ChartMetric::TrialConversions => "Trials whose first payment fell in the bucket.",
        ChartMetric::Renewals => "Paid renewals in the bucket (not the first payment).",
        ChartMetric::Churned => "Paid subscriptions that expired in the bucket.",
        ChartMetric::ChurnRate => {
            "Churned minus reactivated subscriptions, over the active subscriptions at the \
             bucket's start, in percent. It can be negative."
        }
        ChartMetric::Reactivations => {
            "Expired subscriptions that became paid and active again in the bucket."
        }
        ChartMetric::Mrr => {
            "Monthly recurring revenue: each active paid subscription's price normalized to a \
             month (a year ÷ 12, a week × 4…), at the end of each bucket, per currency."
        }
        ChartMetric::Revenue => {
            "Money received in the bucket, refunds subtracted on the day of the refund, per \
             currency. Gross of the store's commission and taxes."
        }
        ChartMetric::Refunds => {
            "Refunds in the bucket: their number, and their amount per currency."
        }
        ChartMetric::BillingIssues => "Failed renewals (billing issues) begun in the bucket.",
        ChartMetric::Lag => {
            "Time from the store's event (the time the store signed or created the \
             notification) to storehook's commit of it: the median (p50) and the 95th \
             percentile (p95) of the bucket's notifications."
        }
        ChartMetric::Events => "Notifications stored, per store.",
    }
}

/// `850 ms`, `2.1 s`, `3.5 min`.
pub fn duration_text(ms: f64) -> String {
    if ms.abs() < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms.abs() < 60_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else if ms.abs() < 3_600_000.0 {
        format!("{:.1} min", ms / 60_000.0)
    } else {
        format!("{:.1} h", ms / 3_600_000.0)
    }
}

/// A value with its unit: `12`, `4.5 %`, `19.98 USD`, `2.1 s`.
pub fn value_text(unit: ChartUnit, series: &ChartSeries, v: f64) -> String {
    match (unit, &series.currency) {
        (ChartUnit::Milliseconds, _) => duration_text(v),
        (ChartUnit::Percent, _) => format!("{v:.1} %"),
        (_, Some(currency)) => format!("{v:.2} {currency}"),
        (_, None) => number(v),
    }
}

/// An axis tick's text (no currency: the axis title says it).
fn tick_text(unit: ChartUnit, v: f64) -> String {
    match unit {
        ChartUnit::Milliseconds => duration_text(v),
        ChartUnit::Percent => format!("{} %", number(v)),
        _ => number(v),
    }
}

/// What the y axis counts.
fn axis_title(chart: &Chart) -> String {
    let currencies: Vec<&str> = chart
        .series
        .iter()
        .filter_map(|s| s.currency.as_deref())
        .collect();
    match chart.unit {
        ChartUnit::Milliseconds => "lag".to_owned(),
        ChartUnit::Percent => "percent".to_owned(),
        _ if !currencies.is_empty() => {
            if currencies.iter().all(|c| *c == currencies[0]) && chart.unit == ChartUnit::Money {
                currencies[0].to_owned()
            } else {
                "each series' own currency".to_owned()
            }
        }
        _ => match chart.metric {
            ChartMetric::ActiveTrials => "trials".to_owned(),
            ChartMetric::Events => "notifications".to_owned(),
            ChartMetric::BillingIssues => "billing issues".to_owned(),
            _ => "subscriptions".to_owned(),
        },
    }
}

/// A bucket in words: `2026-12-03`, `week of 2026-11-30`, `2026-11`.
pub fn bucket_text(bucket: ChartBucket, start_ms: i64) -> String {
    let date = date_of(start_ms);
    match bucket {
        ChartBucket::Day => date,
        ChartBucket::Week => format!("week of {date}"),
        ChartBucket::Month => date.get(..7).unwrap_or(&date).to_owned(),
    }
}

/// A short label under the x axis: `3 Dec`, or `Nov 2026` by month.
fn x_label(bucket: ChartBucket, start_ms: i64) -> String {
    let Ok(t) = OffsetDateTime::from_unix_timestamp(start_ms.div_euclid(1000)) else {
        return start_ms.to_string();
    };
    let month = t.month().to_string();
    let short = month.get(..3).unwrap_or(&month);
    match bucket {
        ChartBucket::Month => format!("{short} {}", t.year()),
        _ => format!("{} {short}", t.day()),
    }
}

/// Round tick values covering `lo..=hi` (steps of 1, 2 or 5 × 10ⁿ; whole
/// numbers for counts).
pub fn ticks(lo: f64, hi: f64, whole: bool) -> Vec<f64> {
    let (lo, hi) = if hi > lo { (lo, hi) } else { (lo, lo + 1.0) };
    let raw = (hi - lo) / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let step = if whole { step.max(1.0).round() } else { step };
    let first = (lo / step).floor() as i64;
    let last = (hi / step).ceil() as i64;
    // Rounded: 3 × 0.2 is 0.6 in floating point.
    (first..=last)
        .map(|k| (k as f64 * step * 1e9).round() / 1e9)
        .collect()
}

/// Whether a chart has anything to draw (not every value missing or zero).
pub fn has_data(chart: &Chart) -> bool {
    chart
        .series
        .iter()
        .flat_map(|s| &s.values)
        .any(|v| v.is_some_and(|v| v != 0.0))
}

fn drawn_as_lines(chart: &Chart) -> bool {
    chart.metric.is_stock() || matches!(chart.unit, ChartUnit::Percent | ChartUnit::Milliseconds)
}

/// Where things go on the canvas.
struct Frame {
    n: usize,
    lo: f64,
    hi: f64,
}

impl Frame {
    fn band(&self) -> f64 {
        (WIDTH - LEFT - RIGHT) / self.n.max(1) as f64
    }
    fn x(&self, i: usize) -> f64 {
        LEFT + self.band() * (i as f64 + 0.5)
    }
    fn y(&self, v: f64) -> f64 {
        let plot = HEIGHT - TOP - BOTTOM;
        TOP + plot * (1.0 - (v - self.lo) / (self.hi - self.lo))
    }
}

/// Two decimals are plenty for coordinates.
fn c(v: f64) -> String {
    format!("{v:.1}")
}

/// A point's or bar's hover text.
fn point_title(chart: &Chart, series: &ChartSeries, i: usize, v: f64) -> String {
    let bucket = chart.buckets.get(i).copied().unwrap_or_default();
    let mut text = format!(
        "{} · {}: {}",
        bucket_text(chart.bucket, bucket),
        series.label,
        value_text(chart.unit, series, v)
    );
    if chart.incomplete.get(i).copied().unwrap_or(false) {
        text.push_str(&format!(
            " (incomplete: this {} is still running)",
            chart.bucket.as_str()
        ));
    }
    text
}

/// The whole chart: axes, gridlines, the series, a legend; or the empty
/// state when there is nothing to draw.
pub fn chart_figure(chart: &Chart, caption: &str) -> Markup {
    if !has_data(chart) {
        return html! {
            div.chart-empty data-metric=(chart.metric.as_str()) {
                p { "No data for these filters in this range." }
                p.muted { "Charts fill in as notifications arrive; try a longer range, another store or the sandbox." }
            }
        };
    }
    let values = chart.series.iter().flat_map(|s| s.values.iter().flatten());
    let (lo, hi) = values.fold((0f64, 0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let whole = chart.unit == ChartUnit::Count;
    let ticks = ticks(lo, hi, whole);
    let frame = Frame {
        n: chart.buckets.len(),
        lo: ticks.first().copied().unwrap_or(0.0),
        hi: ticks.last().copied().unwrap_or(1.0),
    };
    let label_every = chart.buckets.len().div_ceil(X_LABELS).max(1);
    let viewbox = format!("0 0 {WIDTH} {HEIGHT}");
    html! {
        figure.chart data-metric=(chart.metric.as_str()) {
            svg.chart viewBox=(viewbox) role="img" aria-label=(caption) xmlns="http://www.w3.org/2000/svg" {
                title { (caption) }
                // The current (incomplete) bucket, shaded.
                @for (i, _) in chart.incomplete.iter().enumerate().filter(|(_, inc)| **inc) {
                    rect.incomplete-zone x=(c(frame.x(i) - frame.band() / 2.0)) y=(c(TOP))
                        width=(c(frame.band())) height=(c(HEIGHT - TOP - BOTTOM)) fill="#94a3b8" fill-opacity="0.12" {
                        title { (bucket_text(chart.bucket, chart.buckets.get(i).copied().unwrap_or_default())) ": incomplete, still running" }
                    }
                }
                g.y-axis font-size="11" fill="#475569" {
                    @for t in &ticks {
                        line x1=(c(LEFT)) x2=(c(WIDTH - RIGHT)) y1=(c(frame.y(*t))) y2=(c(frame.y(*t)))
                            stroke=(if *t == 0.0 { "#64748b" } else { "#e2e8f0" }) {}
                        text x=(c(LEFT - 6.0)) y=(c(frame.y(*t) + 4.0)) text-anchor="end" { (tick_text(chart.unit, *t)) }
                    }
                    text.axis-title x="12" y=(c(TOP + (HEIGHT - TOP - BOTTOM) / 2.0)) text-anchor="middle"
                        transform={ "rotate(-90 12 " (c(TOP + (HEIGHT - TOP - BOTTOM) / 2.0)) ")" } { (axis_title(chart)) }
                }
                g.x-axis font-size="11" fill="#475569" {
                    line x1=(c(LEFT)) x2=(c(WIDTH - RIGHT)) y1=(c(HEIGHT - BOTTOM)) y2=(c(HEIGHT - BOTTOM)) stroke="#64748b" {}
                    @for (i, start) in chart.buckets.iter().enumerate().filter(|(i, _)| i % label_every == 0) {
                        text x=(c(frame.x(i))) y=(c(HEIGHT - BOTTOM + 16.0)) text-anchor="middle" { (x_label(chart.bucket, *start)) }
                    }
                    text.axis-title x=(c(LEFT + (WIDTH - LEFT - RIGHT) / 2.0)) y=(c(HEIGHT - 4.0)) text-anchor="middle" {
                        "UTC, by " (chart.bucket.as_str())
                    }
                }
                @if drawn_as_lines(chart) { (lines(chart, &frame)) } @else { (bars(chart, &frame)) }
            }
            figcaption { (legend(chart)) }
        }
    }
}

fn lines(chart: &Chart, frame: &Frame) -> Markup {
    let incomplete = |i: usize| chart.incomplete.get(i).copied().unwrap_or(false);
    html! {
        @for (k, series) in chart.series.iter().enumerate() {
            g.series data-series=(series.label) stroke=(color(k)) fill=(color(k)) {
                @for (i, pair) in series.values.windows(2).enumerate() {
                    @if let [Some(a), Some(b)] = pair {
                        line x1=(c(frame.x(i))) y1=(c(frame.y(*a))) x2=(c(frame.x(i + 1))) y2=(c(frame.y(*b)))
                            stroke-width="2" stroke-dasharray=[(incomplete(i + 1)).then_some("5 4")] {}
                    }
                }
                @for (i, v) in series.values.iter().enumerate() {
                    @if let Some(v) = v {
                        @let open = incomplete(i);
                        circle.point.incomplete[open] cx=(c(frame.x(i))) cy=(c(frame.y(*v))) r="3.5"
                            fill=(if open { "#ffffff" } else { color(k) }) stroke-width="1.5" {
                            title { (point_title(chart, series, i, *v)) }
                        }
                    }
                }
            }
        }
    }
}

fn bars(chart: &Chart, frame: &Frame) -> Markup {
    let k = chart.series.len().max(1) as f64;
    let width = frame.band() * 0.8 / k;
    let zero = frame.y(0.0);
    html! {
        @for (s, series) in chart.series.iter().enumerate() {
            g.series data-series=(series.label) fill=(color(s)) stroke=(color(s)) {
                @for (i, v) in series.values.iter().enumerate() {
                    @if let Some(v) = v {
                        @let open = chart.incomplete.get(i).copied().unwrap_or(false);
                        @let top = frame.y(*v).min(zero);
                        rect.bar.incomplete[open]
                            x=(c(frame.x(i) - frame.band() * 0.4 + width * s as f64)) y=(c(top))
                            width=(c(width.max(1.0))) height=(c((frame.y(*v) - zero).abs().max(0.5)))
                            fill-opacity=(if open { "0.35" } else { "0.9" })
                            stroke-dasharray=[open.then_some("3 2")] stroke-width=(if open { "1" } else { "0" }) {
                            title { (point_title(chart, series, i, *v)) }
                        }
                    }
                }
            }
        }
    }
}

/// The series' colours and names, and what the lighter, dashed bucket is.
fn legend(chart: &Chart) -> Markup {
    html! {
        ul.legend {
            @for (k, series) in chart.series.iter().enumerate() {
                li data-series=(series.label) {
                    svg.swatch viewBox="0 0 12 12" width="12" height="12" aria-hidden="true" {
                        rect width="12" height="12" rx="2" fill=(color(k)) {}
                    }
                    " " (series.label)
                    @if series.converted { " " small.muted { "(converted with [charts] rates)" } }
                }
            }
            @if chart.incomplete.iter().any(|i| *i) {
                li.incomplete-key {
                    svg.swatch viewBox="0 0 12 12" width="12" height="12" aria-hidden="true" {
                        rect x="0.5" y="0.5" width="11" height="11" fill="#ffffff" stroke="#475569" stroke-dasharray="2 2" {}
                    }
                    " incomplete: the current " (chart.bucket.as_str()) " is still running"
                }
            }
        }
    }
}

/// A small line of a chart's first series, for a store card: no axes, its
/// values on hover (the line as a whole and each point).
pub fn sparkline(chart: &Chart, what: &str) -> Markup {
    const W: f64 = 120.0;
    const H: f64 = 28.0;
    let Some(series) = chart.series.first() else {
        return html! {};
    };
    let points: Vec<(usize, f64)> = series
        .values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| (i, v)))
        .collect();
    let max = points.iter().map(|(_, v)| *v).fold(0f64, f64::max);
    let max = if max > 0.0 { max } else { 1.0 };
    let n = chart.buckets.len().max(2) as f64 - 1.0;
    let x = |i: usize| 2.0 + (W - 4.0) * i as f64 / n;
    let y = |v: f64| H - 2.0 - (H - 4.0) * v.max(0.0) / max;
    let polyline: Vec<String> = points
        .iter()
        .map(|(i, v)| format!("{},{}", c(x(*i)), c(y(*v))))
        .collect();
    let latest = points
        .last()
        .map(|(i, v)| point_title(chart, series, *i, *v))
        .unwrap_or_else(|| "no data yet".to_owned());
    let viewbox = format!("0 0 {W} {H}");
    html! {
        svg.sparkline viewBox=(viewbox) width=(W) height=(H) role="img" aria-label={ (what) ": " (latest) }
            xmlns="http://www.w3.org/2000/svg" data-metric=(chart.metric.as_str()) {
            title { (what) ", last " (chart.buckets.len()) " " (chart.bucket.as_str()) "s; latest " (latest) }
            polyline points=(polyline.join(" ")) fill="none" stroke=(color(0)) stroke-width="1.5" {}
            @for (i, v) in &points {
                circle cx=(c(x(*i))) cy=(c(y(*v))) r="1.5" fill=(color(0)) {
                    title { (point_title(chart, series, *i, *v)) }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;
    const DEC_1: i64 = 1_796_083_200_000; // 2026-12-01T00:00Z

    /// A series as the tests write it: label, currency, values.
    type Line<'a> = (&'a str, Option<&'a str>, Vec<Option<f64>>);

    fn chart(metric: ChartMetric, series: Vec<Line<'_>>) -> Chart {
        let n = series.first().map_or(0, |s| s.2.len());
        Chart {
            metric,
            unit: metric.unit(),
            bucket: ChartBucket::Day,
            buckets: (0..n as i64).map(|i| DEC_1 + i * DAY).collect(),
            incomplete: (0..n).map(|i| i + 1 == n).collect(),
            series: series
                .into_iter()
                .map(|(label, currency, values)| ChartSeries {
                    label: label.to_owned(),
                    currency: currency.map(str::to_owned),
                    converted: false,
                    values,
                })
                .collect(),
        }
    }

    #[test]
    fn labels_from_store_data_are_escaped() {
        let evil = "<script>alert(1)</script>\"&";
        let c = chart(
            ChartMetric::Events,
            vec![(evil, None, vec![Some(1.0), Some(2.0)])],
        );
        let svg = chart_figure(&c, "Events for <b>").into_string();
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(!svg.contains("<b>"), "{svg}");
        assert!(
            svg.contains(
                "2026-12-01 · &lt;script&gt;alert(1)&lt;/script&gt;&quot;&amp;: 1</title>"
            ),
            "{svg}"
        );
        assert!(
            svg.contains("data-series=\"&lt;script&gt;alert(1)&lt;/script&gt;&quot;&amp;\""),
            "{svg}"
        );
        assert!(svg.contains("<title>Events for &lt;b&gt;</title>"), "{svg}");
        let spark = sparkline(&c, "x<y").into_string();
        assert!(
            !spark.contains("<script>") && !spark.contains("x<y"),
            "{spark}"
        );
    }

    #[test]
    fn every_point_says_its_exact_value_and_bucket_and_the_last_is_incomplete() {
        let c = chart(
            ChartMetric::Revenue,
            vec![
                ("USD", Some("USD"), vec![Some(19.98), None, Some(9.99)]),
                ("EUR", Some("EUR"), vec![Some(4.5), Some(-1.25), None]),
            ],
        );
        let svg = chart_figure(&c, "Revenue").into_string();
        // Revenue is a flow: bars, one per value present.
        assert_eq!(svg.matches("<rect class=\"bar").count(), 4, "{svg}");
        assert!(
            svg.contains("<title>2026-12-01 · USD: 19.98 USD</title>"),
            "{svg}"
        );
        assert!(
            svg.contains("<title>2026-12-02 · EUR: -1.25 EUR</title>"),
            "{svg}"
        );
        assert!(
            svg.contains(
                "<title>2026-12-03 · USD: 9.99 USD (incomplete: this day is still running)</title>"
            ),
            "{svg}"
        );
        assert_eq!(svg.matches("class=\"bar incomplete\"").count(), 1, "{svg}");
        assert!(svg.contains("stroke-dasharray=\"3 2\""), "{svg}");
        // The legend names both series and the incomplete bucket; the axis
        // says the money is in each series' own currency.
        assert!(svg.contains("<li data-series=\"USD\">"), "{svg}");
        assert!(
            svg.contains("incomplete: the current day is still running"),
            "{svg}"
        );
        assert!(svg.contains("each series' own currency"), "{svg}");
    }

    #[test]
    fn stocks_and_lag_are_lines_with_units_on_the_axis() {
        let c = chart(
            ChartMetric::Lag,
            vec![
                ("p50", None, vec![Some(850.0), Some(2_100.0), Some(1_000.0)]),
                ("p95", None, vec![None, Some(4_000.0), Some(90_000.0)]),
            ],
        );
        let svg = chart_figure(&c, "Lag").into_string();
        assert!(
            svg.contains("<title>2026-12-01 · p50: 850 ms</title>"),
            "{svg}"
        );
        assert!(
            svg.contains("<title>2026-12-02 · p50: 2.1 s</title>"),
            "{svg}"
        );
        assert!(svg.contains("p95: 1.5 min (incomplete"), "{svg}");
        assert_eq!(
            svg.matches("class=\"point incomplete\"").count(),
            2,
            "{svg}"
        );
        // p95's missing first value breaks its line: 2 segments + 1.
        assert_eq!(svg.matches("stroke-width=\"2\"").count(), 3, "{svg}");
        assert_eq!(svg.matches("stroke-dasharray=\"5 4\"").count(), 2, "{svg}");
        assert!(
            svg.contains(">1.7 min</text>") || svg.contains(" min</text>"),
            "{svg}"
        );
        assert!(svg.contains(">UTC, by day</text>"), "{svg}");
        assert!(svg.contains(">1 Dec</text>"), "{svg}");
    }

    #[test]
    fn an_empty_chart_says_so() {
        for values in [vec![], vec![None, None], vec![Some(0.0), None]] {
            let c = chart(ChartMetric::Churned, vec![("all", None, values)]);
            let html = chart_figure(&c, "Churned").into_string();
            assert!(
                html.contains("No data for these filters in this range."),
                "{html}"
            );
            assert!(!html.contains("<svg"), "{html}");
        }
        let no_series = chart(ChartMetric::Churned, vec![]);
        assert!(!has_data(&no_series));
    }

    #[test]
    fn ticks_are_round_and_cover_the_values() {
        assert_eq!(ticks(0.0, 7.0, true), vec![0.0, 2.0, 4.0, 6.0, 8.0]);
        assert_eq!(ticks(0.0, 3.0, true), vec![0.0, 1.0, 2.0, 3.0]);
        assert_eq!(ticks(-2.5, 10.0, false), vec![-5.0, 0.0, 5.0, 10.0]);
        assert_eq!(ticks(0.0, 0.9, false), vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(ticks(0.0, 0.0, true), vec![0.0, 1.0]);
        assert_eq!(duration_text(2_140.0), "2.1 s");
        assert_eq!(
            bucket_text(ChartBucket::Week, DEC_1 - 24 * 3_600_000),
            "week of 2026-11-30"
        );
        assert_eq!(bucket_text(ChartBucket::Month, DEC_1), "2026-12");
        assert_eq!(x_label(ChartBucket::Month, DEC_1), "Dec 2026");
    }

    #[test]
    fn a_sparkline_shows_the_latest_value() {
        let c = chart(
            ChartMetric::ActiveSubscriptions,
            vec![("all", None, vec![Some(3.0), Some(5.0), Some(4.0)])],
        );
        let svg = sparkline(&c, "Active subscriptions").into_string();
        assert!(
            svg.contains("<title>Active subscriptions, last 3 days; latest 2026-12-03 · all: 4 (incomplete: this day is still running)</title>"),
            "{svg}"
        );
        assert!(svg.contains("points=\"2.0,"), "{svg}");
        assert_eq!(svg.matches("<circle").count(), 3, "{svg}");
    }
}
