//! Charts end to end (issue 17): a real server on loopback receives signed
//! notifications, and `GET /v1/charts/{metric}` answers them as JSON and
//! CSV, the dashboard's store card says how fast each store delivers. The
//! expected values are worked out here from what was sent.

mod common;

use common::{assert_answer, send_stripe, stripe_event, TestServer, ADMIN_TOKEN};
use serde_json::{json, Value};

const STRIPE_SECRET: &str = "whsec_charts_e2e";

fn config() -> String {
    format!(
        "[stores.example]\nenabled = true\nkey = \"k\"\n\n\
         [stores.stripe]\nenabled = true\nsigning_secrets = [\"{STRIPE_SECRET}\"]\n\n\
         [charts]\ncurrency = \"EUR\"\nrates = {{ USD = 0.5 }}\n"
    )
}

fn now_ms() -> i64 {
    common::now_s() * 1000
}

fn utc_date(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).expect("a time");
    t.date()
        .format(time::macros::format_description!("[year]-[month]-[day]"))
        .expect("a date")
}

/// An example-store renewal that happened `lag_ms` before it is sent.
fn renewal(id: &str, sandbox: bool, lag_ms: i64) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    json!({"id": id, "type": "RENEWAL", "subscription": format!("sub-{id}"), "at": now - lag_ms,
           "status": "active", "expires_at": now + 30 * 86_400_000_i64, "auto_renew": true,
           "product": "monthly", "sandbox": sandbox})
}

async fn text(server: &TestServer, path: &str) -> (u16, Option<String>, String) {
    let resp = server
        .client
        .get(format!("{}{path}", server.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, content_type, resp.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charts_answer_what_the_stores_sent() {
    let server = TestServer::start(&config()).await;
    // Three production renewals and one in the sandbox, each sent 1.6 s
    // after it happened; two Stripe invoices from test mode (the sandbox).
    for (id, sandbox) in [("r1", false), ("r2", false), ("r3", false), ("s1", true)] {
        let (status, body) = server.send_example("k", &renewal(id, sandbox, 1_600)).await;
        assert_eq!(status, 200, "{body}");
    }
    for id in ["evt_charts_1", "evt_charts_2"] {
        let status = send_stripe(
            &server.client,
            &server.base,
            STRIPE_SECRET,
            stripe_event(id),
        )
        .await;
        assert_eq!(status, 200);
    }
    let today = utc_date(now_ms());

    // Events per store, today (the only, and incomplete, bucket).
    let (status, events) = server
        .get_admin(&format!("/v1/charts/events?from={today}&to={today}"))
        .await;
    assert_eq!(status, 200, "{events}");
    eprintln!("{events:#}");
    assert_eq!(events["metric"], "events");
    assert_eq!(events["unit"], "count");
    assert_eq!(events["bucket_dates"], json!([today]));
    assert_eq!(events["incomplete"], json!([true]));
    assert_eq!(events["filters"]["environment"], "production");
    assert_eq!(events["filters"]["store"], Value::Null);
    let series = |chart: &Value, label: &str| {
        chart["series"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["label"] == label))
            .map(|s| s["values"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(series(&events, "example"), json!([3.0]));
    let stripe = series(&events, "stripe");
    assert!(stripe == Value::Null || stripe == json!([0.0]), "{events}");
    // Events are no money: no converted total, whatever the rates.
    assert_eq!(events["conversion"], Value::Null);

    // The sandbox is its own world.
    let (_, sandbox) = server
        .get_admin(&format!(
            "/v1/charts/events?from={today}&to={today}&environment=sandbox"
        ))
        .await;
    assert_eq!(sandbox["filters"]["environment"], "sandbox");
    assert_eq!(series(&sandbox, "example"), json!([1.0]), "{sandbox}");
    assert_eq!(series(&sandbox, "stripe"), json!([2.0]), "{sandbox}");

    // Lag: 1.6 s and a few ms of processing fall in the histogram's bin
    // 2^(42/4)…2^(43/4) ms, reported at its upper edge, 1722 ms.
    let (_, lag) = server
        .get_admin(&format!(
            "/v1/charts/lag?store=example&from={today}&bucket=week"
        ))
        .await;
    assert_eq!(lag["unit"], "milliseconds");
    assert_eq!(lag["filters"]["store"], "example");
    assert_eq!(series(&lag, "p50"), json!([1722.0]), "{lag}");

    // The sandbox's events as CSV.
    let (status, content_type, csv) = text(
        &server,
        &format!("/v1/charts/events?from={today}&to={today}&environment=sandbox&format=csv"),
    )
    .await;
    assert_eq!(status, 200, "{csv}");
    assert!(content_type.is_some_and(|t| t.starts_with("text/csv")));
    let (header, rows) = csv.split_once("\r\n").expect("a header row");
    let columns: Vec<&str> = header.split(',').collect();
    assert_eq!(columns[..2], ["bucket", "incomplete"], "{csv}");
    let cell = |row: &str, column: &str| {
        let at = columns.iter().position(|c| *c == column).expect(column);
        row.split(',').nth(at).unwrap_or_default().to_owned()
    };
    let row = rows.strip_suffix("\r\n").expect("CRLF line ends");
    assert_eq!(cell(row, "bucket"), today);
    assert_eq!(cell(row, "incomplete"), "true");
    assert_eq!(cell(row, "example"), "1");
    assert_eq!(cell(row, "stripe"), "2");

    // The store card: "… delivers in 1.7 s, p50 today", and its sparklines.
    let (_, html) = server.get_admin_text("/").await;
    let card = common::card(&html, "example");
    assert!(
        card.contains("delivers in <b>1.7 s</b>, p50 today"),
        "{card}"
    );
    assert!(card.contains("<svg class=\"sparkline\""), "{card}");
}

#[tokio::test]
async fn bad_chart_requests_get_a_code_and_a_message() {
    let server = TestServer::start(&config()).await;
    for (path, code) in [
        ("/v1/charts/mrrr", "unknown_metric"),
        ("/v1/charts/mrr?bucket=year", "bad_bucket"),
        ("/v1/charts/mrr?environment=staging", "bad_environment"),
        ("/v1/charts/mrr?from=2026-02-30", "bad_date"),
        ("/v1/charts/mrr?from=2026-11-02&to=2026-11-01", "bad_range"),
        (
            "/v1/charts/mrr?from=2000-01-01&to=2026-01-01",
            "too_many_buckets",
        ),
        ("/v1/charts/mrr?format=xml", "bad_format"),
    ] {
        let (status, body) = server.get_admin(path).await;
        assert_answer((status, &body), 400, "error", code);
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    // Admin only, like the rest of /v1's admin routes.
    let (status, body) = server.get("/v1/charts/events").await;
    assert_eq!(status, 401, "{body}");
    // A range with nothing in it answers zeros, not an error.
    let (status, body) = server
        .get_admin("/v1/charts/events?from=2026-01-01&to=2026-01-03")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["buckets"].as_array().map(Vec::len), Some(3), "{body}");
}
