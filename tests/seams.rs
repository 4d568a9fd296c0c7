//! The seams between the host and its plugins, and the dashboard's escaping
//! (issue 14): the host names no store, a plugin's registration brings its
//! whole dashboard card, the dashboard renders through maud only, and
//! markup in anything a notification or the config can carry reaches every
//! page as text.

mod common;

use std::path::{Path, PathBuf};

use common::TestServer;
use serde_json::json;

const SERVER_SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/crates/storehook-server/src");

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Every file of the server crate's sources, with its text.
fn server_sources() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    files_under(Path::new(SERVER_SRC), &mut files);
    files.sort();
    assert!(files.len() > 20, "found only {files:?}");
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
            (p, text)
        })
        .collect()
}

/// Where `word` occurs in `text` as a word of its own (case-insensitive,
/// not inside a longer run of letters and digits): line numbers.
fn word_lines(text: &str, word: &str) -> Vec<usize> {
    let lower = text.to_lowercase();
    let word = word.to_lowercase();
    let mut lines = Vec::new();
    let mut from = 0;
    while let Some(at) = lower[from..].find(&word).map(|i| from + i) {
        let before = lower[..at].chars().next_back();
        let after = lower[at + word.len()..].chars().next();
        let bounded = |c: Option<char>| !c.is_some_and(|c| c.is_alphanumeric());
        if bounded(before) && bounded(after) {
            lines.push(lower[..at].matches('\n').count() + 1);
        }
        from = at + word.len();
    }
    lines
}

/// No store id and no store's name appears in the host's sources: not as a
/// quoted id, not in text, not in a comment. What a store needs shown or
/// guarded comes from its registration.
#[test]
fn the_host_names_no_store() {
    common::link_plugins();
    let mut words: Vec<String> = ["apple", "google", "stripe", "amazon"]
        .into_iter()
        .chain(["App Store", "Google Play", "Stripe", "Amazon", "Play Store"])
        .map(str::to_owned)
        .collect();
    // Whatever the bundled plugins register, too (the example plugin's id
    // is a generic word, as in example.com).
    for r in storehook_core::registrations() {
        if r.id != "example" {
            words.push(r.id.to_owned());
            words.push(r.name.to_owned());
        }
    }
    let mut found = Vec::new();
    for (path, text) in server_sources() {
        // A browser vendor's font keyword, not a store.
        let text = text.replace("-apple-system", "");
        for word in &words {
            for line in word_lines(&text, word) {
                found.push(format!("{}:{line}: {word}", path.display()));
            }
            let quoted = format!("\"{}\"", word.to_lowercase());
            if text.to_lowercase().contains(&quoted) {
                found.push(format!("{}: {quoted}", path.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the host names stores:\n{}",
        found.join("\n")
    );
}

/// The dashboard is maud templates only: no escaping helper to forget, no
/// trusted-markup escape hatch, no HTML in string literals.
#[test]
fn the_dashboard_renders_through_maud_only() {
    let mut problems = Vec::new();
    for (path, text) in server_sources() {
        let name = path.display().to_string();
        if !name.ends_with(".rs") {
            continue;
        }
        for (i, line) in text.lines().enumerate() {
            for banned in ["PreEscaped", "esc(", "push_str(\"<", "write!(out, \"<"] {
                if line.contains(banned) {
                    problems.push(format!("{name}:{}: {banned}", i + 1));
                }
            }
        }
        if name.contains("/dashboard/") {
            // Outside the unit tests, no string literal holds a tag.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for (i, line) in code.lines().enumerate() {
                let literal_tag = line.split('"').skip(1).step_by(2).any(|lit| {
                    lit.match_indices('<').any(|(at, _)| {
                        lit[at + 1..]
                            .chars()
                            .next()
                            .is_some_and(|c| c.is_ascii_alphabetic() || c == '/' || c == '!')
                    })
                });
                if literal_tag {
                    problems.push(format!("{name}:{}: HTML in a string: {line}", i + 1));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

const EXAMPLE: &str = "[stores.example]\nenabled = true\nkey = \"k\"\n";

async fn page(server: &TestServer, path: &str) -> (u16, String) {
    server.get_admin_text(path).await
}

/// The example plugin's registration alone gives its card the setup steps,
/// the test hint and its rejection codes in plain words; the host holds no
/// line of it.
#[tokio::test]
async fn a_plugin_brings_its_whole_dashboard_card() {
    let server = TestServer::start(EXAMPLE).await;
    let registration = storehook_core::find_registration("example").expect("registered");
    assert_eq!(registration.help.setup.len(), 2);
    assert!(registration.help.explain("missing_key").is_some());

    let (_, html) = page(&server, "/").await;
    let c = common::card(&html, "example");
    assert!(
        c.contains("<summary>Set up in the example store's sender</summary>"),
        "{c}"
    );
    assert!(
        c.contains(&format!(
            "<li>Point the sender at <code>{}/v1/notifications/example</code>: it <b>POST</b>s one JSON notification per request.</li>",
            server.base
        )),
        "{c}"
    );
    assert!(
        c.contains("<code>[stores.example] key</code> (or the environment variable <code>EXAMPLE_KEY</code>)"),
        "{c}"
    );
    assert!(c.contains("<p class=\"test\"><b>Test:</b> Send a notification with <code>&quot;type&quot;: &quot;TEST&quot;</code>"), "{c}");
    assert!(
        c.contains("Nothing has arrived yet. Paste the URL below into the example store"),
        "{c}"
    );

    // A refused request: the card gives the plugin's words for its code.
    let (status, _) = server
        .post(
            "/v1/notifications/example",
            &[],
            json!({"id": "n1", "type": "RENEWAL", "at": 1}).to_string(),
        )
        .await;
    assert_eq!(status, 401);
    let (_, html) = page(&server, "/").await;
    let c = common::card(&html, "example");
    assert!(
        c.contains("<span class=\"reason\">the request had no x-example-key header (not sent by the example sender?)</span>"),
        "{c}"
    );
    assert!(c.contains("<code class=\"code\">missing_key</code>"), "{c}");

    // An acknowledged rejection: its detail says what the code means.
    let (status, _) = server
        .send_example(
            "k",
            &json!({"id": "n2", "type": "RENEWAL", "at": 2, "garbage": true}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, html) = page(&server, "/").await;
    let id = common::first_notification_id(&html);
    let (_, detail) = page(&server, &format!("/dashboard/notifications/{id}")).await;
    assert!(
        detail.contains("the sender is authenticated, but the notification's content is unusable"),
        "{detail}"
    );
}

/// Markup as maud escapes it in element content and attribute values.
fn escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn evil(field: &str) -> String {
    format!("<script>alert('{field}')</script>\"'><img src=x onerror=alert('{field}')>")
}

fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Nothing on `html` is markup that came from outside.
#[track_caller]
fn no_markup_from_outside(what: &str, html: &str) {
    for raw in ["<script>alert", "<img src=x", "\"'><"] {
        assert!(!html.contains(raw), "{what} holds raw `{raw}`: {html}");
    }
}

#[track_caller]
fn shows_escaped(what: &str, html: &str, fields: &[&str]) {
    for field in fields {
        assert!(
            html.contains(&escaped(&evil(field))),
            "{what} does not show the {field} as text: {html}"
        );
    }
}

/// Every field a notification, a lookup, a sign-in or the config can bring
/// reaches every dashboard page as text: overview, live part, notification
/// detail, subscription lookup, sign-in.
#[tokio::test]
async fn markup_in_every_field_is_escaped_on_every_page() {
    let hook = format!("http://127.0.0.1:9/hook/{}", evil("url"));
    let server = TestServer::start(&format!(
        "{EXAMPLE}[delivery]\nallow_loopback = true\nretry_schedule_seconds = [0.05]\n\n\
         [[webhooks]]\nname = \"main\"\nurl = {}\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\nmax_attempts = 1\n",
        toml::Value::String(hook)
    ))
    .await;
    let sub = evil("subscription");
    let user = evil("user");
    assert_eq!(server.track("example", &sub, &user).await.0, 201);
    let notification = json!({
        "id": evil("notification id"), "type": evil("type"), "subscription": sub, "at": 5,
        "status": "active", "product": evil("product"), "user": user,
        "continues": evil("continued subscription"), "attention": evil("attention"),
        "extra": {"note": evil("payload value"), "list": [evil("payload item")]},
    });
    let (status, answer) = server.send_example("k", &notification).await;
    assert_eq!(
        (status, answer["verdict"].as_str()),
        (200, Some("tracked")),
        "{answer}"
    );
    let rejected = json!({"id": evil("rejected id"), "type": "RENEWAL", "at": 6, "garbage": true,
                          "code": evil("rejection code"), "message": evil("rejection message")});
    assert_eq!(server.send_example("k", &rejected).await.0, 200);

    // The webhook's delivery fails (nothing listens) and goes dead.
    let mut overview = String::new();
    for _ in 0..200 {
        overview = page(&server, "/").await.1;
        if overview.contains("dead-delivery") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(overview.contains("dead-delivery"), "{overview}");
    no_markup_from_outside("the overview", &overview);
    shows_escaped(
        "the overview",
        &overview,
        &[
            "type",
            "subscription",
            "rejection code",
            "rejection message",
        ],
    );
    // The endpoint's URL is shown as the URL parser left it: encoded.
    assert!(
        overview.contains("http://127.0.0.1:9/hook/%3Cscript%3E"),
        "{overview}"
    );

    let (status, live) = page(&server, "/dashboard/live").await;
    assert_eq!(status, 200);
    no_markup_from_outside("the live part", &live);
    shows_escaped(
        "the live part",
        &live,
        &["type", "subscription", "rejection message"],
    );

    // Both notifications' details (the newest, rejected, first).
    let mut ids = overview
        .match_indices("href=\"/dashboard/notifications/")
        .filter_map(|(at, m)| {
            overview[at + m.len()..]
                .split('"')
                .next()?
                .parse::<i64>()
                .ok()
        })
        .collect::<Vec<_>>();
    ids.dedup();
    assert_eq!(ids.len(), 2, "{overview}");
    let (_, detail) = page(&server, &format!("/dashboard/notifications/{}", ids[0])).await;
    no_markup_from_outside("the rejected notification", &detail);
    shows_escaped(
        "the rejected notification",
        &detail,
        &["rejected id", "rejection code", "rejection message"],
    );
    let (_, detail) = page(&server, &format!("/dashboard/notifications/{}", ids[1])).await;
    no_markup_from_outside("the notification", &detail);
    shows_escaped(
        "the notification",
        &detail,
        &[
            "notification id",
            "type",
            "subscription",
            "product",
            "attention",
        ],
    );
    // Pretty-printed JSON escapes the quotes again: look for the JSON text.
    for field in ["payload value", "payload item"] {
        let json_text = serde_json::to_string(&evil(field)).unwrap();
        assert!(
            detail.contains(&escaped(&json_text)),
            "the payload's {field}: {detail}"
        );
    }

    // The lookup, by subscription id and by app user id, with the query echoed.
    for q in [&sub, &user] {
        let (status, lookup) = page(
            &server,
            &format!("/dashboard/subscriptions?q={}", percent(q)),
        )
        .await;
        assert_eq!(status, 200);
        no_markup_from_outside("the lookup", &lookup);
        assert!(lookup.contains("1 subscription for"), "{lookup}");
        shows_escaped(
            "the lookup",
            &lookup,
            &["subscription", "user", "product", "type"],
        );
    }
    let (_, lookup) = page(
        &server,
        &format!(
            "/dashboard/subscriptions?store={}&q={}",
            percent(&evil("store")),
            percent(&evil("query"))
        ),
    )
    .await;
    no_markup_from_outside("the lookup", &lookup);
    shows_escaped("the lookup", &lookup, &["query"]);

    // Sign-in: the return address a visitor chose, after a wrong token.
    let next = format!("/{}", evil("next").replace(' ', ""));
    let resp = server
        .client
        .post(format!("{}/dashboard/login", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token=wrong&next={}", percent(&next)))
        .send()
        .await
        .expect("sign in");
    assert_eq!(resp.status().as_u16(), 401);
    let login: String = resp.text().await.expect("body");
    no_markup_from_outside("the sign-in page", &login);
    assert!(
        login.contains(&format!("name=\"next\" value=\"{}\"", escaped(&next))),
        "{login}"
    );
    // And signed out, the lookup's return address (the query, encoded).
    let resp = server
        .client
        .get(format!(
            "{}/dashboard/subscriptions?q={}",
            server.base,
            percent(&sub)
        ))
        .send()
        .await
        .expect("signed out");
    assert_eq!(resp.status().as_u16(), 401);
    no_markup_from_outside("the sign-in page", &resp.text().await.expect("body"));
}

/// What a plugin asks to be kept for forwards joins the generic headers.
#[test]
fn plugins_add_their_signature_headers_to_the_forward_default() {
    common::link_plugins();
    let config = storehook_server::Config::parse("", PathBuf::from(".")).expect("config");
    let registrations = storehook_core::registrations();
    let kept = config.delivery.forward_headers(&registrations);
    for h in [
        "content-type",
        "content-encoding",
        "user-agent",
        "stripe-signature",
    ] {
        assert!(kept.contains(h), "{h}: {kept:?}");
    }
    assert!(!kept.contains("authorization"), "{kept:?}");
    // A configured list replaces the default.
    let config = storehook_server::Config::parse(
        "[delivery]\nforward_headers = [\"X-Mine\"]\n",
        PathBuf::from("."),
    )
    .expect("config");
    let kept = config.delivery.forward_headers(&registrations);
    assert_eq!(kept.into_iter().collect::<Vec<_>>(), ["x-mine"]);
}
