//! The operator dashboard and `/metrics` over real HTTP (issue 7), driven
//! through the example plugin. The browser tests are in `tests/browser.rs`.

mod common;

use common::{TestServer, ADMIN_TOKEN};
use serde_json::{json, Value};

const EXAMPLE: &str = "[stores.example]\nenabled = true\nkey = \"k\"\n";

async fn send(server: &TestServer, body: Value) -> (u16, Value) {
    server.send_example("k", &body).await
}

fn notification(id: &str, sub: &str) -> Value {
    json!({"id": id, "type": "RENEWAL", "subscription": sub, "at": 1_700_000_000_000_i64,
           "status": "active", "expires_at": 1_900_000_000_000_i64, "auto_renew": true,
           "product": "monthly", "user": "user-1"})
}

/// GET with optional bearer token and extra headers: (status, headers, body).
async fn fetch(
    server: &TestServer,
    path: &str,
    bearer: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = server.client.get(format!("{}{path}", server.base));
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.expect("body"))
}

async fn page(server: &TestServer, path: &str) -> String {
    let (status, _, body) = fetch(server, path, Some(ADMIN_TOKEN), &[]).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

fn card_state(html: &str, store: &str) -> String {
    let c = common::card(html, store);
    let at = c.find("data-state=\"").expect("data-state") + "data-state=\"".len();
    c[at..].split('"').next().unwrap_or_default().to_owned()
}

async fn post_form(
    server: &TestServer,
    path: &str,
    form: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = server
        .client
        .post(format!("{}{path}", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request")
}

/// POSTs the sign-in form with `form` (its URL-encoded fields).
async fn sign_in_form(server: &TestServer, form: &str) -> reqwest::Response {
    post_form(server, "/dashboard/login", form, &[]).await
}

/// Presses a dashboard button (a form POST to `action`) signed in with
/// `cookie`, as a browser sends it from `fetch_site` (Sec-Fetch-Site).
async fn press(
    server: &TestServer,
    action: &str,
    cookie: &str,
    fetch_site: &str,
) -> reqwest::Response {
    post_form(
        server,
        action,
        "",
        &[("cookie", cookie), ("sec-fetch-site", fetch_site)],
    )
    .await
}

#[tokio::test]
async fn without_the_admin_token_every_page_shows_the_sign_in_form_and_no_data() {
    let server = TestServer::start(EXAMPLE).await;
    assert_eq!(send(&server, notification("n1", "sub-1")).await.0, 200);

    for path in [
        "/",
        "/dashboard/notifications/1",
        "/dashboard/subscriptions?q=user-1",
    ] {
        for bearer in [None, Some("wrong-token")] {
            let (status, headers, body) = fetch(&server, path, bearer, &[]).await;
            assert_eq!(status, 401, "{path}: {body}");
            assert!(body.contains("name=\"token\""), "{path}: {body}");
            // The form's return address echoes the visitor's own query; skip it.
            let body = body
                .split("name=\"next\"")
                .next()
                .unwrap_or_default()
                .to_owned()
                + body.split("id=\"token\"").nth(1).unwrap_or_default();
            for data in ["Example Store", "sub-1", "user-1", "RENEWAL", "data-store"] {
                assert!(!body.contains(data), "{path} leaks {data}: {body}");
            }
            assert_eq!(headers["cache-control"], "no-store");
        }
    }
    let (status, _, body) = fetch(&server, "/dashboard/live", None, &[]).await;
    assert_eq!((status, body.as_str()), (401, ""));

    // With the bearer token, the same pages show data.
    let overview = page(&server, "/").await;
    assert!(overview.contains("Example Store"), "{overview}");
    assert!(!overview.contains("name=\"token\""), "{overview}");
}

/// Without a configured token the dashboard asks for the generated one
/// (issue 13), which signs in.
#[tokio::test]
async fn without_a_configured_token_the_dashboard_takes_the_generated_one() {
    let server = TestServer::start_with(|dir| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[database]\npath = \"{}\"\n{EXAMPLE}",
            dir.join("storehook.db").display()
        )
    })
    .await;
    let (status, _, body) = fetch(&server, "/", Some("anything"), &[]).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("storehook admin-token"), "{body}");
    assert!(!body.contains("Example Store"), "{body}");
    let r = sign_in_form(&server, "token=anything").await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    let token = std::fs::read_to_string(server.dir.path().join("admin-token")).unwrap();
    let r = post_form(
        &server,
        "/dashboard/login",
        &format!("token={}", token.trim()),
        &[],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert!(r.headers().get("set-cookie").is_some());
}

#[tokio::test]
async fn signing_in_sets_an_http_only_strict_session_cookie() {
    let server = TestServer::start(EXAMPLE).await;

    let wrong = sign_in_form(&server, "token=nope&next=%2F").await;
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    assert!(wrong
        .text()
        .await
        .unwrap()
        .contains("That is not the admin token"));

    let cross = post_form(
        &server,
        "/dashboard/login",
        &format!("token={ADMIN_TOKEN}"),
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(cross.status(), 403);
    assert!(cross.headers().get("set-cookie").is_none());

    let ok = post_form(
        &server,
        "/dashboard/login",
        &format!("token={ADMIN_TOKEN}&next=%2Fdashboard%2Fsubscriptions%3Fq%3Dx"),
        &[("origin", &server.base)],
    )
    .await;
    assert_eq!(ok.status(), 303);
    assert_eq!(ok.headers()["location"], "/dashboard/subscriptions?q=x");
    let cookie = ok.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("storehook_session="), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    assert!(
        !cookie.contains(ADMIN_TOKEN),
        "the token itself never sits in a cookie"
    );

    let session = cookie.split(';').next().unwrap().to_owned();
    let (status, _, body) = fetch(&server, "/", None, &[("cookie", &session)]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Example Store"));
    let (status, _, _) = fetch(&server, "/dashboard/live", None, &[("cookie", &session)]).await;
    assert_eq!(status, 200);
    // The session also opens the JSON API.
    let (status, _, _) = fetch(&server, "/v1/subscribers/u", None, &[("cookie", &session)]).await;
    assert_eq!(status, 200);

    // An open redirect is not followed.
    let evil = sign_in_form(
        &server,
        &format!("token={ADMIN_TOKEN}&next=%2F%2Fevil.example"),
    )
    .await;
    assert_eq!(evil.headers()["location"], "/");

    let out = post_form(&server, "/dashboard/logout", "", &[("cookie", &session)]).await;
    assert_eq!(out.status(), 303);
    let cleared = out.headers()["set-cookie"].to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
}

#[tokio::test]
async fn store_cards_follow_the_notifications() {
    let server = TestServer::start(EXAMPLE).await;
    let html = page(&server, "/").await;
    assert_eq!(card_state(&html, "example"), "waiting");
    assert!(common::card(&html, "example").contains("waiting for the first notification"));

    // Verified, but its subscription is not tracked.
    assert_eq!(send(&server, notification("n1", "sub-1")).await.0, 200);
    let html = page(&server, "/").await;
    assert_eq!(card_state(&html, "example"), "untracked");
    let c = common::card(&html, "example");
    assert!(c.contains("only untracked notifications so far"), "{c}");
    assert!(c.contains("<b>1</b> untracked"), "{c}");

    // Tracked: connected, with Last received (relative, exact UTC on hover).
    assert_eq!(server.track("example", "sub-2", "user-2").await.0, 201);
    assert_eq!(send(&server, notification("n2", "sub-2")).await.0, 200);
    let html = page(&server, "/").await;
    assert_eq!(card_state(&html, "example"), "connected");
    let c = common::card(&html, "example");
    let received = &c[c.find("class=\"last-received\"").unwrap()..];
    assert!(received.contains(" UTC\">"), "{received}");
    assert!(
        received.contains("just now") || received.contains("seconds ago"),
        "{received}"
    );

    // A delivery with a bad key right after genuine ones: a warning with the
    // adapter's message, not red (anonymous traffic must not be able to
    // turn a delivering store's card red; issue 12).
    let (status, _) = server
        .send_example_raw("bad", notification("n3", "sub-2").to_string())
        .await;
    assert_eq!(status, 401);
    let html = page(&server, "/").await;
    assert_eq!(card_state(&html, "example"), "refusing-some");
    let c = common::card(&html, "example");
    assert!(c.contains("delivering; some requests refused"), "{c}");
    assert!(c.contains("probing this URL"), "{c}");
    assert!(
        c.contains("x-example-key does not match the configured key"),
        "{c}"
    );
    assert!(c.contains("wrong_key"), "{c}");

    // The next good delivery clears it.
    assert_eq!(send(&server, notification("n4", "sub-2")).await.0, 200);
    let html = page(&server, "/").await;
    assert_eq!(card_state(&html, "example"), "connected");
    assert!(common::card(&html, "example").contains("<b>1</b> rejected"));
}

#[tokio::test]
async fn unsupported_and_disabled_stores_say_so() {
    let server = TestServer::start(&format!("{EXAMPLE}[stores.amazon]\nenabled = true\n")).await;
    let html = page(&server, "/").await;
    assert_eq!(card_state(&html, "amazon"), "unsupported");
    assert!(common::card(&html, "amazon").contains("not supported yet"));

    let server = TestServer::start("").await;
    let html = page(&server, "/").await;
    assert_eq!(card_state(&html, "example"), "disabled");
    assert!(common::card(&html, "example").contains("[stores.example] enabled = true"));
}

#[tokio::test]
async fn setup_urls_come_from_public_url_or_the_request_host() {
    let server = TestServer::start(EXAMPLE).await;
    let html = page(&server, "/").await;
    let c = common::card(&html, "example");
    assert!(
        c.contains(&format!("{}/v1/notifications/example", server.base)),
        "{c}"
    );
    assert!(c.contains("set <code>[server] public_url</code>"), "{c}");

    let server = TestServer::start_with(|dir| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_token = \"{ADMIN_TOKEN}\"\n\
             public_url = \"https://hooks.example.com/\"\n[database]\npath = \"{}\"\n{EXAMPLE}",
            dir.join("storehook.db").display()
        )
    })
    .await;
    let html = page(&server, "/").await;
    let c = common::card(&html, "example");
    assert!(
        c.contains("https://hooks.example.com/v1/notifications/example"),
        "{c}"
    );
    assert!(!c.contains("set <code>[server] public_url</code>"), "{c}");
    // Behind HTTPS the session cookie is Secure.
    let ok = sign_in_form(&server, &format!("token={ADMIN_TOKEN}")).await;
    assert!(ok.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("; Secure"));
}

#[tokio::test]
async fn every_value_is_escaped() {
    let server = TestServer::start(EXAMPLE).await;
    let evil = json!({"id": "<b>n1</b>", "type": "<script>alert(1)</script>",
                      "subscription": "\"><img src=x onerror=alert(1)>", "at": 5,
                      "user": "<i>u</i>"});
    assert_eq!(send(&server, evil).await.0, 200);
    let html = page(&server, "/").await;
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(!html.contains("<img src=x"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );

    let id = common::first_notification_id(&html);
    let detail = page(&server, &format!("/dashboard/notifications/{id}")).await;
    assert!(!detail.contains("<script>alert"), "{detail}");
    assert!(!detail.contains("<img src=x"), "{detail}");
    assert!(!detail.contains("<b>n1"), "{detail}");
    assert!(!detail.contains("<i>u"), "{detail}");

    let lookup = page(&server, "/dashboard/subscriptions?q=%3Cscript%3Ex").await;
    assert!(!lookup.contains("<script>x"), "{lookup}");
}

#[tokio::test]
async fn the_detail_view_masks_tokens_and_says_what_changed() {
    let server = TestServer::start(EXAMPLE).await;
    assert_eq!(server.track("example", "sub-9", "user-9").await.0, 201);
    let mut n = notification("n9", "sub-9");
    n["purchaseToken"] = json!("tok-secret-0123456789abcdef");
    n["client_secret"] = json!("pi_123_secret_456");
    assert_eq!(send(&server, n).await.0, 200);
    assert_eq!(
        send(&server, notification("n10", "sub-untracked")).await.0,
        200
    );

    let html = page(&server, "/").await;
    let recent = &html[html.find("id=\"recent\"").expect("recent")..];
    // Newest first.
    assert!(
        recent.find("sub-untracked").unwrap() < recent.find("sub-9").unwrap(),
        "{recent}"
    );
    assert!(recent.contains("v-tracked") && recent.contains("v-untracked"));

    let tracked_id = common::first_notification_id(&recent[recent.find("sub-9").unwrap() - 400..]);
    let detail = page(&server, &format!("/dashboard/notifications/{tracked_id}")).await;
    assert!(
        detail.contains("Applied to the tracked subscription"),
        "{detail}"
    );
    assert!(
        detail.contains("<th>Status</th><td>active</td>"),
        "{detail}"
    );
    assert!(!detail.contains("tok-secret-0123456789abcdef"), "{detail}");
    assert!(detail.contains("tok-…cdef"), "{detail}");
    assert!(!detail.contains("pi_123_secret_456"), "{detail}");
    assert!(detail.contains("monthly"), "{detail}");

    let untracked_id = common::first_notification_id(recent);
    let detail = page(&server, &format!("/dashboard/notifications/{untracked_id}")).await;
    assert!(
        detail.contains("its subscription is not tracked"),
        "{detail}"
    );

    let (status, _, _) = fetch(
        &server,
        "/dashboard/notifications/999999",
        Some(ADMIN_TOKEN),
        &[],
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn subscriptions_are_found_by_id_or_app_user_id() {
    let server = TestServer::start(EXAMPLE).await;
    assert_eq!(server.track("example", "sub-5", "user-5").await.0, 201);
    assert_eq!(send(&server, notification("n5", "sub-5")).await.0, 200);

    for q in [
        "/dashboard/subscriptions?q=sub-5",
        "/dashboard/subscriptions?store=example&q=sub-5",
        "/dashboard/subscriptions?q=user-5",
    ] {
        let html = page(&server, q).await;
        let results = &html[html.find("id=\"results\"").expect("results")..];
        assert!(results.contains("1 subscription for"), "{q}: {results}");
        assert!(results.contains("data-subscription=\"sub-5\""), "{q}");
        assert!(results.contains("<dd>active</dd>"), "{q}: {results}");
        assert!(results.contains("<dt>Auto-renew</dt><dd>on</dd>"), "{q}");
        assert!(
            results.contains("2030-03-17 17:46:40 UTC"),
            "{q}: {results}"
        );
        assert!(results.contains("RENEWAL"), "history: {results}");
    }
    let html = page(&server, "/dashboard/subscriptions?q=nobody").await;
    assert!(html.contains("0 subscriptions for"), "{html}");
}

#[tokio::test]
async fn pages_are_self_contained() {
    let server = TestServer::start(EXAMPLE).await;
    let (_, headers, html) = fetch(&server, "/", Some(ADMIN_TOKEN), &[]).await;
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    for external in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
        assert!(!html.contains(external), "{external}: {html}");
    }
    for (asset, kind) in [
        ("app.css", "text/css"),
        ("app.js", "text/javascript"),
        ("icon.svg", "image/svg+xml"),
    ] {
        let (status, headers, body) =
            fetch(&server, &format!("/dashboard/assets/{asset}"), None, &[]).await;
        assert_eq!(status, 200);
        assert!(headers["content-type"].to_str().unwrap().starts_with(kind));
        assert!(!body.contains("https://") || asset == "icon.svg", "{asset}");
    }
    let (status, _, _) = fetch(&server, "/dashboard/assets/nope.js", None, &[]).await;
    assert_eq!(status, 404);
}

// ---- /metrics ----

async fn scrape(server: &TestServer) -> prometheus_parse::Scrape {
    let (status, headers, text) = fetch(server, "/metrics", None, &[]).await;
    assert_eq!(status, 200, "/metrics is open on the listen address");
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses")
}

fn value(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.iter().map(|b| b.count).fold(0.0, f64::max)
            }
            prometheus_parse::Value::Summary(_) => 0.0,
        })
        .sum()
}

#[tokio::test]
async fn metrics_parse_and_move_as_notifications_arrive() {
    let server = TestServer::start(EXAMPLE).await;
    let before = scrape(&server).await;
    let total = "storehook_notifications_total";
    assert_eq!(
        value(
            &before,
            total,
            &[("store", "example"), ("verdict", "untracked")]
        ),
        0.0
    );

    assert_eq!(send(&server, notification("m1", "s1")).await.0, 200);
    assert_eq!(send(&server, notification("m1", "s1")).await.0, 200); // a redelivery
    assert_eq!(server.track("example", "s2", "u2").await.0, 201);
    assert_eq!(send(&server, notification("m2", "s2")).await.0, 200);
    let (status, _) = server.send_example_raw("bad", "{}").await;
    assert_eq!(status, 401);
    let (status, _) = server
        .post("/v1/notifications/no-such-store-123", &[], "{}")
        .await;
    assert_eq!(status, 404);

    let after = scrape(&server).await;
    let ex = |verdict| value(&after, total, &[("store", "example"), ("verdict", verdict)]);
    assert_eq!(ex("untracked"), 1.0);
    assert_eq!(ex("duplicate"), 1.0);
    assert_eq!(ex("tracked"), 1.0);
    assert_eq!(ex("refused"), 1.0);
    assert_eq!(
        value(
            &after,
            "storehook_notification_refusals_total",
            &[("store", "example"), ("code", "wrong_key")]
        ),
        1.0
    );
    // A path the sender made up never becomes a label.
    assert_eq!(
        value(
            &after,
            total,
            &[("store", "unknown"), ("verdict", "refused")]
        ),
        1.0
    );
    assert!(!after
        .samples
        .iter()
        .any(|s| s.labels.get("store") == Some("no-such-store-123")));

    assert_eq!(
        value(
            &after,
            "storehook_notification_duration_seconds_count",
            &[("store", "example")]
        ),
        4.0
    );
    assert!(
        value(
            &after,
            "storehook_http_request_duration_seconds_count",
            &[("route", "notifications")]
        ) >= 5.0
    );
    // Group commit: at least the three stored notifications and the track.
    assert!(value(&after, "storehook_db_commits_total", &[]) >= 1.0);
    assert!(value(&after, "storehook_db_commit_writes_total", &[]) >= 4.0);
    assert!(value(&after, "storehook_db_last_commit_batch_size", &[]) >= 1.0);
    // Every committed batch is in the latency and batch-size histograms.
    let commits = value(&after, "storehook_db_commits_total", &[]);
    assert_eq!(
        value(&after, "storehook_db_commit_duration_seconds_count", &[]),
        commits
    );
    assert!(value(&after, "storehook_db_commit_duration_seconds_sum", &[]) > 0.0);
    assert_eq!(
        value(&after, "storehook_db_commit_batch_size_count", &[]),
        commits
    );
    assert_eq!(
        value(&after, "storehook_db_commit_batch_size_sum", &[]),
        value(&after, "storehook_db_commit_writes_total", &[])
    );
    assert!(after
        .samples
        .iter()
        .any(|s| s.metric == "storehook_outbox_depth"));
    assert_eq!(value(&after, "storehook_build_info", &[]), 1.0);
}

// ---- webhook endpoints ----

async fn session_cookie(server: &TestServer) -> String {
    let ok = sign_in_form(server, &format!("token={ADMIN_TOKEN}")).await;
    assert_eq!(ok.status(), 303);
    ok.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// Polls the overview until `pred` holds on the endpoint's row(s).
async fn wait_for_webhooks(server: &TestServer, what: &str, pred: impl Fn(&str) -> bool) -> String {
    for _ in 0..200 {
        let html = page(server, "/").await;
        let section = html[html.find("id=\"webhooks\"").expect("webhooks section")..].to_owned();
        if pred(&section) {
            return section;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn dead_deliveries_can_be_retried_from_the_dashboard() {
    let rx = common::receiver::Receiver::start().await;
    rx.answer_with(|_, _| 500);
    let server = TestServer::start(&format!(
        "{EXAMPLE}[delivery]\nallow_loopback = true\nretry_schedule_seconds = [0.05]\n\n\
         [[webhooks]]\nname = \"main\"\nurl = \"{}\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\nmax_attempts = 1\n",
        rx.url("/hook?key=sekrit")
    ))
    .await;
    let html = page(&server, "/").await;
    let section = &html[html.find("id=\"webhooks\"").unwrap()..];
    assert!(section.contains("data-endpoint=\"main\""), "{section}");
    assert!(!section.contains("sekrit"), "the URL's query is not shown");

    assert_eq!(server.track("example", "s1", "u1").await.0, 201);
    assert_eq!(send(&server, notification("w1", "s1")).await.0, 200);
    let section =
        wait_for_webhooks(&server, "a dead delivery", |s| s.contains("dead-delivery")).await;
    assert!(section.contains("HTTP 500"), "{section}");
    let action = section
        .split("action=\"")
        .find(|a| a.contains("/retry\""))
        .and_then(|a| a.split('"').next())
        .expect("a retry button")
        .to_owned();

    // Retrying needs the session and a same-origin form.
    let cookie = session_cookie(&server).await;
    let r = post_form(&server, &action, "", &[]).await;
    assert_eq!(r.status(), 401);
    let r = press(&server, &action, &cookie, "cross-site").await;
    assert_eq!(r.status(), 403);
    assert!(rx.delivered().is_empty());

    rx.answer_with(|_, _| 200);
    let r = press(&server, &action, &cookie, "same-origin").await;
    assert_eq!(r.status(), 303);
    rx.wait_for(10, "the retried delivery", |l| {
        l.iter().any(|r| r.answered == 200)
    })
    .await;
    wait_for_webhooks(&server, "the delivery counted", |s| {
        !s.contains("dead-delivery") && s.contains("<td class=\"dead\">0</td>")
    })
    .await;

    // The test button sends a TEST event.
    let r = post_form(
        &server,
        "/dashboard/webhooks/main/test",
        "",
        &[("cookie", &cookie)],
    )
    .await;
    assert_eq!(r.status(), 303);
    rx.wait_for(10, "a TEST event", |l| {
        l.iter().any(|r| r.json()["event"]["type"] == "TEST")
    })
    .await;

    // The worker's figures reach /metrics.
    let scrape = scrape(&server).await;
    let attempts = |result| {
        value(
            &scrape,
            "storehook_delivery_attempts_total",
            &[("endpoint", "main"), ("result", result)],
        )
    };
    assert_eq!(attempts("http_error"), 1.0);
    assert!(attempts("delivered") >= 1.0);
}
