//! The Charts page (`GET /dashboard/charts`): a metric picker, the filter
//! form (GET parameters, the same as `GET /v1/charts/{metric}`'s), one
//! chart drawn by `chart_svg`, and the metric's definition beside it.

use maud::{html, Markup};
use storehook_core::Environment;
use storehook_db::{ChartBucket, ChartMetric, ChartQuery};

use super::chart_svg::{chart_figure, definition, metric_title};
use super::html::url_component;
use crate::charts::{date_of, ChartAnswer};

/// The query string of a chart with `query`'s filters (for the metric
/// links, the CSV and JSON links).
pub fn filter_query(query: &ChartQuery) -> String {
    let mut pairs: Vec<(&str, String)> = Vec::new();
    for (key, value) in [
        ("store", &query.store),
        ("app", &query.app),
        ("product", &query.product),
    ] {
        if let Some(v) = value {
            pairs.push((key, v.clone()));
        }
    }
    pairs.push(("environment", query.environment.as_str().to_owned()));
    pairs.push(("from", date_of(query.from_ms)));
    pairs.push(("to", date_of(query.to_ms)));
    pairs.push(("bucket", query.bucket.as_str().to_owned()));
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", url_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The filter form, filled with `query`'s values; `stores` are (id, name).
pub fn filter_form(query: &ChartQuery, stores: &[(&str, &str)]) -> Markup {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    html! {
        form #chart-filters.filters method="get" action="/dashboard/charts" {
            label {
                "Chart "
                select name="metric" {
                    @for m in ChartMetric::ALL {
                        option value=(m.as_str()) selected[m == query.metric] { (metric_title(m)) }
                    }
                }
            }
            label {
                "Store "
                select name="store" {
                    option value="" { "all stores" }
                    @for (id, name) in stores {
                        option value=(id) selected[query.store.as_deref() == Some(*id)] { (name) }
                    }
                }
            }
            label { "App " input type="text" name="app" value=(text(&query.app)) placeholder="all apps" maxlength="256"; }
            label { "Product " input type="text" name="product" value=(text(&query.product)) placeholder="all products" maxlength="256"; }
            fieldset.toggle {
                legend { "Environment" }
                @for env in [Environment::Production, Environment::Sandbox] {
                    label {
                        input type="radio" name="environment" value=(env.as_str()) checked[query.environment == env];
                        " " (env.as_str())
                    }
                }
            }
            label { "From " input type="date" name="from" value=(date_of(query.from_ms)); }
            label { "To " input type="date" name="to" value=(date_of(query.to_ms)); }
            label {
                "By "
                select name="bucket" {
                    @for b in [ChartBucket::Day, ChartBucket::Week, ChartBucket::Month] {
                        option value=(b.as_str()) selected[b == query.bucket] { (b.as_str()) }
                    }
                }
            }
            button type="submit" { "Show" }
        }
    }
}

/// The metric picker: a link per chart, keeping the filters.
fn metric_links(query: &ChartQuery) -> Markup {
    let filters = filter_query(query);
    html! {
        nav.metrics aria-label="Charts" {
            @for m in ChartMetric::ALL {
                a href={ "/dashboard/charts?metric=" (m.as_str()) "&" (filters) }
                    aria-current=[(m == query.metric).then_some("page")] { (metric_title(m)) }
            }
        }
    }
}

/// What the chart's filters are, in words.
fn caption(query: &ChartQuery, store_name: &str) -> String {
    let mut parts = vec![format!(
        "{} by {}, {} to {} (UTC), {}",
        metric_title(query.metric),
        query.bucket.as_str(),
        date_of(query.from_ms),
        date_of(query.to_ms),
        query.environment.as_str()
    )];
    parts.push(if query.store.is_some() {
        store_name.to_owned()
    } else {
        "all stores".to_owned()
    });
    if let Some(app) = &query.app {
        parts.push(format!("app {app}"));
    }
    if let Some(product) = &query.product {
        parts.push(format!("product {product}"));
    }
    parts.join(", ")
}

/// The page's body: picker, form, chart, definition.
pub fn charts_body(answer: &ChartAnswer, stores: &[(&str, &str)], store_name: &str) -> Markup {
    let query = &answer.query;
    let filters = filter_query(query);
    let api = format!("/v1/charts/{}?{filters}", query.metric.as_str());
    html! {
        section #charts aria-labelledby="charts-h" {
            h2 #charts-h { "Charts" }
            (metric_links(query))
            (filter_form(query, stores))
            div.chart-with-definition {
                div.chart-main {
                    h3 { (metric_title(query.metric)) }
                    (chart_figure(&answer.chart, &caption(query, store_name)))
                }
                aside.definition {
                    h4 { "Definition" }
                    p { (definition(query.metric)) }
                    p.muted { "Buckets are UTC calendar " (query.bucket.as_str()) "s"
                        @if query.bucket == ChartBucket::Week { " (from Monday)" }
                        "; the current one is incomplete. Sandbox data is never mixed with production." }
                    @if let Some(conversion) = &answer.conversion {
                        p.conversion {
                            "The converted total uses " code { "[charts] rates" } " (to " (conversion.currency) "): "
                            @for (i, (code, rate)) in conversion.rates.iter().enumerate() {
                                @if i > 0 { ", " }
                                "1 " (code) " = " (rate) " " (conversion.currency)
                            }
                            "."
                            @if !conversion.left_out.is_empty() {
                                " " strong.left-out { "Left out of the total (no rate): " (conversion.left_out.join(", ")) "." }
                            }
                        }
                    }
                    p { a href={ (api) "&format=csv" } download { "Download CSV" } " · " a href=(api) { "JSON" } }
                }
            }
        }
    }
}

/// The page when the parameters are wrong: the message, and the form with
/// the defaults to start again from.
pub fn charts_error(message: &str, defaults: &ChartQuery, stores: &[(&str, &str)]) -> Markup {
    html! {
        section #charts aria-labelledby="charts-h" {
            h2 #charts-h { "Charts" }
            p.warning role="alert" { (message) }
            (filter_form(defaults, stores))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storehook_db::{Chart, ChartSeries};

    fn query() -> ChartQuery {
        ChartQuery {
            metric: ChartMetric::Revenue,
            store: Some("ex&ample".into()),
            app: None,
            product: Some("<monthly>".into()),
            environment: Environment::Sandbox,
            from_ms: 1_796_083_200_000,
            to_ms: 1_796_169_600_000,
            bucket: ChartBucket::Week,
            now_ms: 1_796_169_600_000,
        }
    }

    #[test]
    fn the_form_keeps_the_filters_and_the_links_carry_them() {
        let q = query();
        assert_eq!(
            filter_query(&q),
            "store=ex%26ample&product=%3Cmonthly%3E&environment=sandbox&from=2026-12-01&to=2026-12-02&bucket=week"
        );
        let form = filter_form(&q, &[("ex&ample", "Example <store>")]).into_string();
        assert!(
            form.contains("<option value=\"revenue\" selected>Revenue</option>"),
            "{form}"
        );
        assert!(
            form.contains("<option value=\"ex&amp;ample\" selected>Example &lt;store&gt;</option>"),
            "{form}"
        );
        assert!(form.contains("value=\"&lt;monthly&gt;\""), "{form}");
        assert!(form.contains("value=\"sandbox\" checked"), "{form}");
        assert!(
            form.contains("<option value=\"week\" selected>week</option>"),
            "{form}"
        );
        assert!(
            form.contains("name=\"from\" value=\"2026-12-01\""),
            "{form}"
        );
    }

    #[test]
    fn the_page_shows_the_definition_and_what_the_conversion_left_out() {
        let chart = Chart {
            metric: ChartMetric::Revenue,
            unit: ChartMetric::Revenue.unit(),
            bucket: ChartBucket::Week,
            buckets: vec![1_795_996_800_000],
            incomplete: vec![true],
            series: vec![ChartSeries {
                label: "JPY".into(),
                currency: Some("JPY".into()),
                converted: false,
                values: vec![Some(500.0)],
            }],
        };
        let rates = crate::charts::Rates {
            currency: "EUR".into(),
            rates: [("EUR".to_owned(), 1.0)].into_iter().collect(),
        };
        let answer = ChartAnswer::new(chart, query(), Some(&rates));
        let page = charts_body(&answer, &[], "Example").into_string();
        assert!(page.contains(definition(ChartMetric::Revenue)), "{page}");
        assert!(
            page.contains("Left out of the total (no rate): JPY."),
            "{page}"
        );
        assert!(
            page.contains(
                "week of 2026-11-30 · JPY: 500.00 JPY (incomplete: this week is still running)"
            ),
            "{page}"
        );
        assert!(
            page.contains("href=\"/v1/charts/revenue?store=ex%26ample&amp;"),
            "{page}"
        );
        assert!(page.contains("Revenue by week, 2026-12-01 to 2026-12-02 (UTC), sandbox, Example, product &lt;monthly&gt;"), "{page}");
    }
}
