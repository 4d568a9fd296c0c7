//! Charts on the host: the query parameters that `GET /v1/charts/{metric}`
//! and the dashboard's Charts page share, the operator's exchange rates
//! (`[charts] rates`), and the CSV form. Storage computes the chart
//! (`Storage::chart`); everything here works on a [`Chart`] value.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use serde::Serialize;
use serde_json::json;
use storehook_core::Environment;
use storehook_db::{Chart, ChartBucket, ChartMetric, ChartQuery, ChartSeries, ChartUnit};
use time::macros::format_description;
use time::{Date, OffsetDateTime};

use std::sync::Arc;

use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Reply;

use crate::auth::Credentials;
use crate::config::ChartsConfig;
use crate::error::ApiError;
use crate::handlers::require_admin;
use crate::{queries, AppState};

const DAY_MS: i64 = 86_400_000;
/// The default range: this many days back from `to`.
pub const DEFAULT_RANGE_DAYS: i64 = 30;
/// The most buckets one chart may have (two years of days): a longer range
/// takes a coarser bucket.
pub const MAX_BUCKETS: i64 = 732;

/// What a chart request asked for, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartRequest {
    pub query: ChartQuery,
    pub csv: bool,
}

/// A query parameter: absent and empty are the same (an HTML form sends
/// empty fields).
fn param<'a>(query: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    query.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// `YYYY-MM-DD` (00:00 UTC that day) or Unix milliseconds.
pub fn parse_date(text: &str) -> Option<i64> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<i64>().ok();
    }
    let date = Date::parse(text, format_description!("[year]-[month]-[day]")).ok()?;
    Some(date.midnight().assume_utc().unix_timestamp() * 1000)
}

/// `2026-12-03`: a bucket's (or any instant's) UTC date.
pub fn date_of(ms: i64) -> String {
    utc_datetime(ms)
        .and_then(|t| {
            t.date()
                .format(format_description!("[year]-[month]-[day]"))
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

fn utc_datetime(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// How many buckets lie between `from_ms` and `to_ms`, both included.
pub fn bucket_count(bucket: ChartBucket, from_ms: i64, to_ms: i64) -> i64 {
    let (Some(from), Some(to)) = (utc_datetime(from_ms), utc_datetime(to_ms)) else {
        return i64::MAX;
    };
    let days = i64::from(to.date().to_julian_day() - from.date().to_julian_day());
    match bucket {
        ChartBucket::Day => days + 1,
        ChartBucket::Week => {
            let monday = |d: Date| {
                i64::from(d.to_julian_day() - i32::from(d.weekday().number_days_from_monday()))
            };
            (monday(to.date()) - monday(from.date())) / 7 + 1
        }
        ChartBucket::Month => {
            let months = |d: Date| i64::from(d.year()) * 12 + i64::from(u8::from(d.month()));
            months(to.date()) - months(from.date()) + 1
        }
    }
}

/// The chart a request asks for: `metric` from the path, the rest from the
/// query (`store`, `app`, `product`, `environment`, `from`, `to`, `bucket`,
/// `format`). Defaults: production, by day, the last 30 days to `now_ms`.
pub fn parse_request(
    metric: &str,
    query: &HashMap<String, String>,
    now_ms: i64,
) -> Result<ChartRequest, ApiError> {
    let metric = ChartMetric::parse(metric).ok_or_else(|| {
        let known: Vec<&str> = ChartMetric::ALL.iter().map(|m| m.as_str()).collect();
        ApiError::bad_request(
            "unknown_metric",
            format!(
                "no chart named {metric:?}; the charts are {}",
                known.join(", ")
            ),
        )
    })?;
    let bucket = match param(query, "bucket") {
        None => ChartBucket::Day,
        Some(b) => ChartBucket::parse(b).ok_or_else(|| {
            ApiError::bad_request(
                "bad_bucket",
                format!("bucket {b:?} is not day, week or month"),
            )
        })?,
    };
    let environment = match param(query, "environment") {
        None => Environment::Production,
        Some(e) => Environment::parse(e).ok_or_else(|| {
            ApiError::bad_request(
                "bad_environment",
                format!("environment {e:?} is not production or sandbox"),
            )
        })?,
    };
    let date = |key: &str| -> Result<Option<i64>, ApiError> {
        param(query, key)
            .map(|v| {
                parse_date(v).ok_or_else(|| {
                    ApiError::bad_request(
                        "bad_date",
                        format!(
                            "{key} {v:?} is neither a date (YYYY-MM-DD, UTC) nor Unix milliseconds"
                        ),
                    )
                })
            })
            .transpose()
    };
    let to_ms = date("to")?.unwrap_or(now_ms);
    let from_ms = date("from")?.unwrap_or(to_ms - DEFAULT_RANGE_DAYS * DAY_MS);
    if from_ms > to_ms {
        return Err(ApiError::bad_request(
            "bad_range",
            format!(
                "from ({}) is after to ({})",
                date_of(from_ms),
                date_of(to_ms)
            ),
        ));
    }
    let buckets = bucket_count(bucket, from_ms, to_ms);
    if buckets > MAX_BUCKETS {
        return Err(ApiError::bad_request(
            "too_many_buckets",
            format!(
                "{} to {} by {} is {buckets} buckets; at most {MAX_BUCKETS} (choose a coarser bucket or a shorter range)",
                date_of(from_ms),
                date_of(to_ms),
                bucket.as_str()
            ),
        ));
    }
    let csv = match param(query, "format") {
        None | Some("json") => false,
        Some("csv") => true,
        Some(f) => {
            return Err(ApiError::bad_request(
                "bad_format",
                format!("format {f:?} is not json or csv"),
            ))
        }
    };
    let text = |key: &str| param(query, key).map(str::to_owned);
    Ok(ChartRequest {
        query: ChartQuery {
            metric,
            store: text("store"),
            app: text("app"),
            product: text("product"),
            environment,
            from_ms,
            to_ms,
            bucket,
            now_ms,
        },
        csv,
    })
}

/// `GET /v1/charts/{metric}?store=&app=&product=&environment=&from=&to=&bucket=&format=`:
/// the chart as JSON, or with `format=csv` as CSV.
pub(crate) async fn get_chart(
    metric: String,
    query: HashMap<String, String>,
    state: Arc<AppState>,
    credentials: Credentials,
) -> Response {
    let answer = async {
        require_admin(&state, &credentials)?;
        let metric = storehook_core::percent_decode(&metric);
        let request = parse_request(&metric, &query, state.store_apis.now_ms())?;
        let answer = queries::chart(&state, request.query).await?;
        Ok::<_, ApiError>((answer, request.csv))
    };
    match answer.await {
        Ok((answer, true)) => {
            let filename = format!(
                "attachment; filename=\"{}.csv\"",
                answer.chart.metric.as_str()
            );
            let mut r = answer.to_csv().into_response();
            let h = r.headers_mut();
            h.insert(
                "content-type",
                HeaderValue::from_static("text/csv; charset=utf-8; header=present"),
            );
            if let Ok(v) = HeaderValue::from_str(&filename) {
                h.insert("content-disposition", v);
            }
            r
        }
        Ok((answer, false)) => {
            let mut r = warp::reply::json(&answer.to_json()).into_response();
            *r.status_mut() = StatusCode::OK;
            r
        }
        Err(e) => e.into_response(),
    }
}

/// `[charts]` checked: a target currency and what one unit of each other
/// currency is worth in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rates {
    pub currency: String,
    pub rates: BTreeMap<String, f64>,
}

fn is_currency_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

impl Rates {
    /// `None` without `[charts] currency`; an error for rates without a
    /// currency, a code that is not ISO 4217-shaped, a rate that is not a
    /// positive number.
    pub fn from_config(config: &ChartsConfig) -> Result<Option<Self>, String> {
        let Some(currency) = config.currency.as_deref() else {
            return if config.rates.is_empty() {
                Ok(None)
            } else {
                Err("[charts] rates needs [charts] currency, the currency they convert to".into())
            };
        };
        if !is_currency_code(currency) {
            return Err(format!(
                "[charts] currency {currency:?} is not a three-letter ISO 4217 code such as \"EUR\""
            ));
        }
        let mut rates = BTreeMap::new();
        for (code, rate) in &config.rates {
            if !is_currency_code(code) {
                return Err(format!(
                    "[charts] rates: {code:?} is not a three-letter ISO 4217 code such as \"USD\""
                ));
            }
            if !(rate.is_finite() && *rate > 0.0) {
                return Err(format!(
                    "[charts] rates: {code} = {rate} is not a positive number"
                ));
            }
            rates.insert(code.clone(), *rate);
        }
        // The target converts to itself at 1, whatever the table says.
        rates.insert(currency.to_owned(), 1.0);
        Ok(Some(Rates {
            currency: currency.to_owned(),
            rates,
        }))
    }
}

/// What a converted total was made of.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conversion {
    pub currency: String,
    /// The rates used (target units per unit of each currency).
    pub rates: BTreeMap<String, f64>,
    /// Currencies in the chart without a rate: left out of the total.
    pub left_out: Vec<String>,
}

/// Adds to a money chart (one with per-currency series) a series "total
/// (converted to XXX)" summing every currency that has a rate; the
/// per-currency series stay. A chart without money series is left alone
/// (`None`).
pub fn convert(chart: &mut Chart, rates: &Rates) -> Option<Conversion> {
    let money: Vec<&ChartSeries> = chart
        .series
        .iter()
        .filter(|s| !s.converted && s.currency.is_some())
        .collect();
    if money.is_empty() {
        return None;
    }
    let mut left_out = Vec::new();
    let mut used = BTreeMap::new();
    let mut totals: Vec<Option<f64>> = vec![None; chart.buckets.len()];
    for series in &money {
        let Some(code) = series.currency.as_deref() else {
            continue;
        };
        let Some(rate) = rates.rates.get(code) else {
            if !left_out.iter().any(|c| c == code) {
                left_out.push(code.to_owned());
            }
            continue;
        };
        used.insert(code.to_owned(), *rate);
        for (total, value) in totals.iter_mut().zip(&series.values) {
            if let Some(v) = value {
                *total = Some(total.unwrap_or(0.0) + v * rate);
            }
        }
    }
    left_out.sort();
    if !used.is_empty() {
        chart.series.push(ChartSeries {
            label: format!("total (converted to {})", rates.currency),
            currency: Some(rates.currency.clone()),
            converted: true,
            // Cents, as the per-currency series have them: no float dust.
            values: totals
                .into_iter()
                .map(|t| t.map(|v| (v * 100.0).round() / 100.0))
                .collect(),
        });
    }
    Some(Conversion {
        currency: rates.currency.clone(),
        rates: used,
        left_out,
    })
}

/// A chart as the API and the page get it: the chart, the filters it was
/// computed with and, for money, what the converted total holds.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartAnswer {
    pub chart: Chart,
    pub query: ChartQuery,
    pub conversion: Option<Conversion>,
}

impl ChartAnswer {
    pub fn new(mut chart: Chart, query: ChartQuery, rates: Option<&Rates>) -> Self {
        let conversion = rates.and_then(|r| convert(&mut chart, r));
        ChartAnswer {
            chart,
            query,
            conversion,
        }
    }

    /// The JSON body of `GET /v1/charts/{metric}`.
    pub fn to_json(&self) -> serde_json::Value {
        let q = &self.query;
        let mut body = serde_json::to_value(&self.chart).unwrap_or_else(|_| json!({}));
        body["bucket_dates"] = json!(self
            .chart
            .buckets
            .iter()
            .map(|b| date_of(*b))
            .collect::<Vec<_>>());
        body["filters"] = json!({
            "store": q.store,
            "app": q.app,
            "product": q.product,
            "environment": q.environment.as_str(),
            "from": date_of(q.from_ms),
            "to": date_of(q.to_ms),
            "from_ms": q.from_ms,
            "to_ms": q.to_ms,
            "bucket": q.bucket.as_str(),
        });
        body["conversion"] = json!(self.conversion);
        body
    }

    /// One row per bucket: its date, whether it is incomplete, then a column
    /// per series (empty where it has no value). RFC 4180: CRLF, quoted
    /// where needed.
    pub fn to_csv(&self) -> String {
        let chart = &self.chart;
        let mut out = String::new();
        let header = ["bucket", "incomplete"]
            .into_iter()
            .map(str::to_owned)
            .chain(chart.series.iter().map(|s| series_heading(chart.unit, s)));
        push_row(&mut out, header.map(|h| csv_text(&h)));
        for (i, start) in chart.buckets.iter().enumerate() {
            let incomplete = chart.incomplete.get(i).copied().unwrap_or(false);
            let cells = [date_of(*start), incomplete.to_string()].into_iter().chain(
                chart.series.iter().map(|s| {
                    s.values
                        .get(i)
                        .copied()
                        .flatten()
                        .map(number)
                        .unwrap_or_default()
                }),
            );
            push_row(&mut out, cells.map(|c| csv_field(&c)));
        }
        out
    }
}

/// A CSV column's heading: the series' label, with its currency when the
/// label does not already say it.
fn series_heading(unit: ChartUnit, s: &ChartSeries) -> String {
    match (&s.currency, unit) {
        (Some(c), _) if !s.label.contains(c.as_str()) => format!("{} ({c})", s.label),
        (_, ChartUnit::Milliseconds) => format!("{} (ms)", s.label),
        (_, ChartUnit::Percent) => format!("{} (%)", s.label),
        _ => s.label.clone(),
    }
}

/// A value as plain decimal text: integers without a fraction.
pub fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let mut s = String::new();
        let _ = write!(s, "{v}");
        s
    }
}

fn push_row(out: &mut String, cells: impl Iterator<Item = String>) {
    let row: Vec<String> = cells.collect();
    out.push_str(&row.join(","));
    out.push_str("\r\n");
}

/// RFC 4180: a field with a comma, a quote or a line break is quoted, its
/// quotes doubled.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// A text cell (a label from store data): quoted as [`csv_field`], and
/// one a spreadsheet would run as a formula (`=`, `+`, `-`, `@`) starts
/// with `'`, the usual guard.
fn csv_text(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        csv_field(&format!("'{text}"))
    } else {
        csv_field(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_000_000_000; // 2026-11-30 00:53:20 UTC

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn code(metric: &str, pairs: &[(&str, &str)]) -> String {
        parse_request(metric, &query(pairs), NOW)
            .map(|_| String::new())
            .unwrap_or_else(|e| {
                assert_eq!(e.status.as_u16(), 400, "{e:?}");
                e.code.into_owned()
            })
    }

    #[test]
    fn defaults_are_production_by_day_over_the_last_30_days() {
        let r = parse_request("mrr", &query(&[]), NOW).unwrap();
        assert!(!r.csv);
        assert_eq!(r.query.metric, ChartMetric::Mrr);
        assert_eq!(r.query.environment, Environment::Production);
        assert_eq!(r.query.bucket, ChartBucket::Day);
        assert_eq!(r.query.to_ms, NOW);
        assert_eq!(r.query.from_ms, NOW - 30 * DAY_MS);
        assert_eq!(r.query.now_ms, NOW);
        assert_eq!(
            (r.query.store, r.query.app, r.query.product),
            (None, None, None)
        );
    }

    #[test]
    fn every_parameter_is_read() {
        let r = parse_request(
            "lag",
            &query(&[
                ("store", "example"),
                ("app", "com.example.app"),
                ("product", "monthly"),
                ("environment", "sandbox"),
                ("from", "2026-11-01"),
                ("to", "1796000000000"),
                ("bucket", "week"),
                ("format", "csv"),
            ]),
            NOW,
        )
        .unwrap();
        assert!(r.csv);
        let q = r.query;
        assert_eq!(q.metric, ChartMetric::Lag);
        assert_eq!(q.store.as_deref(), Some("example"));
        assert_eq!(q.app.as_deref(), Some("com.example.app"));
        assert_eq!(q.product.as_deref(), Some("monthly"));
        assert_eq!(q.environment, Environment::Sandbox);
        assert_eq!(q.from_ms, 1_793_491_200_000); // 2026-11-01T00:00Z
        assert_eq!(q.to_ms, NOW);
        assert_eq!(q.bucket, ChartBucket::Week);
    }

    #[test]
    fn empty_form_fields_mean_the_default() {
        let r = parse_request(
            "events",
            &query(&[
                ("store", ""),
                ("from", " "),
                ("bucket", ""),
                ("environment", ""),
            ]),
            NOW,
        )
        .unwrap();
        assert_eq!(r.query.store, None);
        assert_eq!(r.query.from_ms, NOW - 30 * DAY_MS);
        assert_eq!(r.query.bucket, ChartBucket::Day);
    }

    #[test]
    fn bad_input_gets_a_code_of_its_own() {
        assert_eq!(code("mrrr", &[]), "unknown_metric");
        assert_eq!(code("mrr", &[("bucket", "year")]), "bad_bucket");
        assert_eq!(
            code("mrr", &[("environment", "staging")]),
            "bad_environment"
        );
        assert_eq!(code("mrr", &[("from", "2026-13-01")]), "bad_date");
        assert_eq!(code("mrr", &[("to", "yesterday")]), "bad_date");
        assert_eq!(code("mrr", &[("from", "-5")]), "bad_date");
        assert_eq!(
            code("mrr", &[("from", "2026-11-02"), ("to", "2026-11-01")]),
            "bad_range"
        );
        assert_eq!(code("mrr", &[("format", "xml")]), "bad_format");
        assert_eq!(
            code("mrr", &[("from", "2020-01-01"), ("to", "2026-01-01")]),
            "too_many_buckets"
        );
        // The same range is fine by week, and a single day is one bucket.
        assert_eq!(
            code(
                "mrr",
                &[
                    ("from", "2020-01-01"),
                    ("to", "2026-01-01"),
                    ("bucket", "week")
                ]
            ),
            ""
        );
        assert_eq!(
            code("mrr", &[("from", "2026-01-01"), ("to", "2026-01-01")]),
            ""
        );
    }

    #[test]
    fn buckets_are_counted_as_calendars_cut_them() {
        let d = |s| parse_date(s).unwrap();
        assert_eq!(
            bucket_count(ChartBucket::Day, d("2026-11-01"), d("2026-11-30") + 5),
            30
        );
        // Sunday 2026-11-29 and Monday 2026-11-30 are in different weeks.
        assert_eq!(
            bucket_count(ChartBucket::Week, d("2026-11-29"), d("2026-11-30")),
            2
        );
        assert_eq!(
            bucket_count(ChartBucket::Week, d("2026-11-30"), d("2026-12-06")),
            1
        );
        assert_eq!(
            bucket_count(ChartBucket::Month, d("2025-12-31"), d("2026-02-01")),
            3
        );
        assert_eq!(date_of(d("2024-02-29") + DAY_MS - 1), "2024-02-29");
    }

    fn money_chart() -> Chart {
        Chart {
            metric: ChartMetric::Revenue,
            unit: ChartUnit::Money,
            bucket: ChartBucket::Day,
            buckets: vec![0, DAY_MS, 2 * DAY_MS],
            incomplete: vec![false, false, true],
            series: ["USD", "GBP", "JPY"]
                .iter()
                .zip([
                    [Some(10.0), None, Some(-2.5)],
                    [Some(1.0), Some(3.0), None],
                    [Some(1000.0), Some(500.0), None],
                ])
                .map(|(c, values)| ChartSeries {
                    label: (*c).to_owned(),
                    currency: Some((*c).to_owned()),
                    converted: false,
                    values: values.to_vec(),
                })
                .collect(),
        }
    }

    fn rates(table: &str) -> Rates {
        let config: crate::Config = crate::Config::parse(table, Default::default()).unwrap();
        Rates::from_config(&config.charts).unwrap().unwrap()
    }

    #[test]
    fn a_converted_total_sums_the_currencies_that_have_a_rate_and_names_the_others() {
        let mut chart = money_chart();
        let rates = rates("[charts]\ncurrency = \"EUR\"\nrates = { USD = 0.92, GBP = 1.17 }\n");
        let conversion = convert(&mut chart, &rates).unwrap();
        assert_eq!(conversion.left_out, vec!["JPY".to_owned()]);
        assert_eq!(conversion.rates.get("USD"), Some(&0.92));
        assert_eq!(
            conversion.rates.get("EUR"),
            None,
            "not in the chart: not used"
        );
        // The per-currency series stay, untouched; the total is added.
        assert_eq!(chart.series.len(), 4);
        assert_eq!(chart.series[..3], money_chart().series[..]);
        let total = &chart.series[3];
        assert_eq!(total.label, "total (converted to EUR)");
        assert!(total.converted);
        assert_eq!(total.currency.as_deref(), Some("EUR"));
        // 10×0.92 + 1×1.17; 3×1.17; −2.5×0.92.
        assert_eq!(total.values, vec![Some(10.37), Some(3.51), Some(-2.3)]);
    }

    #[test]
    fn charts_without_money_and_bad_rate_tables_are_refused_or_left_alone() {
        let mut chart = money_chart();
        for s in &mut chart.series {
            s.currency = None;
        }
        let before = chart.clone();
        assert_eq!(
            convert(&mut chart, &rates("[charts]\ncurrency = \"EUR\"\n")),
            None
        );
        assert_eq!(chart, before);

        let check = |table: &str| {
            let config = crate::Config::parse(table, Default::default()).unwrap();
            Rates::from_config(&config.charts)
        };
        assert_eq!(check(""), Ok(None));
        assert!(check("[charts]\nrates = { USD = 1.0 }\n")
            .unwrap_err()
            .contains("currency"));
        assert!(check("[charts]\ncurrency = \"euro\"\n")
            .unwrap_err()
            .contains("ISO 4217"));
        assert!(check("[charts]\ncurrency = \"EUR\"\nrates = { USD = 0 }\n")
            .unwrap_err()
            .contains("positive"));
        assert!(check("[charts]\ncurrency = \"EUR\"\nrates = { usd = 1 }\n").is_err());
        assert!(crate::Config::parse("[charts]\nrate = 1\n", Default::default()).is_err());
    }

    #[test]
    fn csv_has_a_row_per_bucket_and_a_column_per_series() {
        let mut chart = money_chart();
        chart.series[1].label = "a \"quoted\", label".into();
        chart.series[2].label = "=HYPERLINK(\"x\")".into();
        let q = parse_request("revenue", &query(&[]), NOW).unwrap().query;
        let csv = ChartAnswer::new(chart, q, None).to_csv();
        assert_eq!(
            csv,
            "bucket,incomplete,USD,\"a \"\"quoted\"\", label (GBP)\",\"'=HYPERLINK(\"\"x\"\") (JPY)\"\r\n\
             1970-01-01,false,10,1,1000\r\n\
             1970-01-02,false,,3,500\r\n\
             1970-01-03,true,-2.5,,\r\n"
        );
    }

    #[test]
    fn json_says_which_filters_were_applied() {
        let q = parse_request(
            "revenue",
            &query(&[("store", "example"), ("from", "2026-11-01")]),
            NOW,
        )
        .unwrap()
        .query;
        let rates = rates("[charts]\ncurrency = \"EUR\"\nrates = { USD = 0.92 }\n");
        let body = ChartAnswer::new(money_chart(), q, Some(&rates)).to_json();
        assert_eq!(body["metric"], "revenue");
        assert_eq!(body["unit"], "money");
        assert_eq!(
            body["bucket_dates"],
            json!(["1970-01-01", "1970-01-02", "1970-01-03"])
        );
        assert_eq!(body["filters"]["store"], "example");
        assert_eq!(body["filters"]["app"], serde_json::Value::Null);
        assert_eq!(body["filters"]["environment"], "production");
        assert_eq!(body["filters"]["from"], "2026-11-01");
        assert_eq!(body["filters"]["to"], "2026-11-30");
        assert_eq!(body["conversion"]["left_out"], json!(["GBP", "JPY"]));
        assert_eq!(body["series"][3]["label"], "total (converted to EUR)");
        assert_eq!(body["series"][3]["converted"], true);
        assert_eq!(body["series"][3]["values"], json!([9.2, null, -2.3]));
    }
}
