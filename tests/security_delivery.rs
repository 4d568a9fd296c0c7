//! Outgoing delivery hardening, end to end against the real `storehook`
//! binary (child process, temporary SQLite file, loopback only):
//!
//! - SSRF: endpoint URLs whose literal host is an IPv4-embedded IPv6 form of
//!   a refused address (mapped, compatible, NAT64, 6to4, Teredo), another
//!   cloud's metadata address or CGNAT are refused at start-up;
//! - header injection: a forward whose notification id carries CR/LF and
//!   non-ASCII, and a replayed store header with non-ASCII bytes, is
//!   delivered once, body byte for byte, with the id percent-encoded;
//! - one delivery never in flight twice: with `max_attempts = 1` and a
//!   failing receiver, every delivery reaches it exactly once, and in order
//!   per subscription.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use storehook_stripe::signature_header;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warp::Filter;

const STRIPE_SECRET: &str = "whsec_security_delivery";
const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/stripe");

// ---- the binary ----

struct Binary {
    base: String,
    addr: SocketAddr,
    child: Child,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Binary {
    fn logs(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[database]\npath = \"{}\"\n\n\
         [stores.stripe]\nenabled = true\nsigning_secrets = [\"{STRIPE_SECRET}\"]\nlivemode = \"both\"\n\n{extra}\n",
        dir.join("storehook.db").display()
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// Starts `storehook serve`: the running server, or (exit status, stderr)
/// when it refused to start.
fn start(dir: &Path, extra: &str) -> Result<Binary, (Option<i32>, String)> {
    let config = write_config(dir, extra);
    let mut child = Command::new(env!("CARGO_BIN_EXE_storehook"))
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .env_remove("STOREHOOK_ADMIN_TOKEN")
        .env_remove("STOREHOOK_CONFIG")
        .env("STOREHOOK_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn storehook");
    let stderr = Arc::new(Mutex::new(Vec::new()));
    {
        let mut pipe = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
    }
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(addr) = line.strip_prefix("storehook listening on ") {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(base) = rx.recv_timeout(Duration::from_millis(20)) {
            let addr = base
                .trim_start_matches("http://")
                .parse()
                .expect("a socket address");
            return Ok(Binary {
                base,
                addr,
                child,
                stderr,
            });
        }
        if let Ok(Some(status)) = child.try_wait() {
            // Let the reader thread drain what is left.
            std::thread::sleep(Duration::from_millis(100));
            let text = String::from_utf8_lossy(&stderr.lock().unwrap()).into_owned();
            return Err((status.code(), text));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("storehook neither listened nor exited within 30 s");
        }
    }
}

// ---- a recording receiver ----

#[derive(Debug, Clone)]
struct Hit {
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    arrived: Instant,
    answered: Instant,
}

impl Hit {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    fn notification_id(&self) -> String {
        String::from_utf8_lossy(self.header("x-storehook-notification-id").unwrap_or(b""))
            .into_owned()
    }
}

struct Rx {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Rx {
    /// A receiver on loopback answering `status` to everything after `delay`.
    async fn start(status: u16, delay: Duration) -> Self {
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::new(Mutex::new(Vec::new()));
        let log = hits.clone();
        let route = warp::post()
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .then(move |headers: warp::http::HeaderMap, body: bytes::Bytes| {
                let log = log.clone();
                async move {
                    let arrived = Instant::now();
                    tokio::time::sleep(delay).await;
                    log.lock().unwrap().push(Hit {
                        headers: headers
                            .iter()
                            .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
                            .collect(),
                        body: body.to_vec(),
                        arrived,
                        answered: Instant::now(),
                    });
                    warp::http::Response::builder()
                        .status(status)
                        .body(format!("answered {status}"))
                        .unwrap()
                }
            });
        let addr = storehook_stand_ins::serve(route).await;
        Rx { addr, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    async fn wait_for(&self, secs: u64, what: &str, pred: impl Fn(&[Hit]) -> bool) -> Vec<Hit> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let hits = self.hits();
            if pred(&hits) {
                return hits;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; got {} requests: {:?}",
                    hits.len(),
                    hits.iter().map(Hit::notification_id).collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

// ---- Stripe events ----

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A `customer.subscription.updated` with this id for subscription `sub`.
fn event(id: &str, sub: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(format!(
        "{CORPUS}/events_openapi/customer.subscription.updated.json"
    ))
    .expect("fixture");
    let mut e: Value = serde_json::from_str(&text).expect("fixture JSON");
    e["id"] = json!(id);
    e["data"]["object"]["id"] = json!(sub);
    e.to_string().into_bytes()
}

fn signature(body: &[u8]) -> String {
    signature_header([STRIPE_SECRET], now_s(), body)
}

async fn post_event(server: &Binary, body: &[u8], extra: &[(&str, &[u8])]) -> u16 {
    let mut req = reqwest::Client::new()
        .post(format!("{}/v1/notifications/stripe", server.base))
        .header("stripe-signature", signature(body))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (name, value) in extra {
        req = req.header(
            *name,
            reqwest::header::HeaderValue::from_bytes(value).expect("a header value"),
        );
    }
    req.send().await.expect("request").status().as_u16()
}

/// Posts a notification whose body arrives slowly: the headers and half the
/// body now, the rest after `pause`. Returns once the server has received
/// the headers (its `received_at` is then), with a handle to the answer.
async fn post_event_slowly(
    server: &Binary,
    body: Vec<u8>,
    pause: Duration,
) -> tokio::task::JoinHandle<u16> {
    let mut stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /v1/notifications/stripe HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         stripe-signature: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        server.addr,
        signature(&body),
        body.len()
    );
    let half = body.len() / 2;
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(&body[..half]).await.expect("write");
    stream.flush().await.expect("flush");
    tokio::spawn(async move {
        tokio::time::sleep(pause).await;
        stream.write_all(&body[half..]).await.expect("write");
        stream.flush().await.expect("flush");
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        let text = String::from_utf8_lossy(&answer);
        text.split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    })
}

// ---- item 10: SSRF ----

#[test]
fn endpoints_at_embedded_or_cloud_internal_addresses_are_refused_at_start() {
    // (section, url, allow_loopback)
    let cases = [
        ("forward", "http://[::169.254.169.254]/", true),
        ("forward", "http://[::ffff:169.254.169.254]/latest", true),
        ("webhooks", "http://[64:ff9b::a9fe:a9fe]/", true),
        ("forward", "http://[64:ff9b::169.254.169.254]/", true),
        ("forward", "http://[64:ff9b:1::a9fe:a9fe]/", true),
        ("webhooks", "http://[2002:a9fe:a9fe::1]/", true),
        // Teredo: the client address is the bitwise NOT of the last 32 bits.
        (
            "forward",
            "http://[2001:0:4136:e378:8000:63bf:5601:5601]/",
            true,
        ),
        ("webhooks", "http://100.100.100.200/latest/meta-data", true),
        ("forward", "http://168.63.129.16/machine", true),
        ("webhooks", "http://[fd00:ec2::254]/latest", true),
        ("forward", "http://100.64.0.1/", true),
        ("forward", "http://0.1.2.3/", true),
        ("forward", "http://255.255.255.255/", true),
        ("forward", "http://224.0.0.1/", true),
        ("forward", "http://192.0.2.1/", true),
        ("forward", "http://[2001:db8::1]/", true),
        ("forward", "http://[fc00::1]/", true),
        ("forward", "http://[fec0::1]/", true),
        ("forward", "http://[ff02::1]/", true),
        // Loopback through a translator is never local loopback.
        ("forward", "http://[64:ff9b::7f00:1]/", true),
        ("forward", "http://[::127.0.0.1]/", true),
        // Mapped loopback only with allow_loopback.
        ("forward", "http://[::ffff:127.0.0.1]:9/", false),
        ("webhooks", "http://[::1]:9/", false),
    ];
    for (section, url, loopback) in cases {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = if section == "webhooks" {
            format!(
                "[[webhooks]]\nname = \"w\"\nurl = \"{url}\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n"
            )
        } else {
            format!("[[forward]]\nname = \"f\"\nurl = \"{url}\"\n")
        };
        let extra = format!("[delivery]\nallow_loopback = {loopback}\n\n{endpoint}");
        match start(dir.path(), &extra) {
            Ok(server) => panic!(
                "{url} (allow_loopback = {loopback}) was accepted; logs:\n{}",
                server.logs()
            ),
            Err((code, stderr)) => {
                assert_ne!(code, Some(0), "{url}: {stderr}");
                let label = if section == "webhooks" {
                    "webhooks[0]"
                } else {
                    "forward[0]"
                };
                assert!(
                    stderr.contains(label) && stderr.contains(".url"),
                    "{url}: the refusal names the endpoint's url: {stderr}"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_mapped_loopback_endpoint_starts_with_allow_loopback() {
    // The other side of the rule: with allow_loopback the mapped loopback
    // form is loopback like 127.0.0.1, and the server starts.
    let dir = tempfile::tempdir().unwrap();
    let extra =
        "[delivery]\nallow_loopback = true\n\n[[forward]]\nname = \"f\"\nurl = \"http://[::ffff:127.0.0.1]:9/\"\n";
    let server = start(dir.path(), extra).unwrap_or_else(|(code, e)| panic!("{code:?}: {e}"));
    drop(server);
}

// ---- item 12: header injection ----

#[tokio::test]
async fn a_forward_with_crlf_and_non_ascii_in_id_and_headers_is_delivered_once() {
    let rx = Rx::start(200, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &format!(
            "[delivery]\nallow_loopback = true\nretry_schedule_seconds = [0.05, 0.05]\n\n\
             [[forward]]\nname = \"raw\"\nurl = \"{}\"\nmax_attempts = 3\n",
            rx.url("/raw")
        ),
    )
    .unwrap_or_else(|(code, e)| panic!("{code:?}: {e}"));

    let id = "evt_crlf\r\nX-Injected: yes\r\n\u{e9}\u{1}";
    let body = event(id, "sub_injection");
    // A store header with obs-text (UTF-8 é): valid on the wire, stored, and
    // replayed byte for byte.
    let agent: &[u8] = "Stripe/1.0 (caf\u{e9})".as_bytes();
    let status = post_event(&server, &body, &[("user-agent", agent)]).await;
    assert_eq!(status, 200, "{}", server.logs());

    let hits = rx.wait_for(10, "the forward", |h| !h.is_empty()).await;
    // No retry, no second delivery.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hits_after = rx.hits();
    assert_eq!(hits_after.len(), 1, "exactly once: {hits_after:?}");
    let hit = &hits[0];
    assert_eq!(hit.body, body, "the body byte for byte");
    assert_eq!(
        hit.header("x-storehook-notification-id"),
        Some(&b"evt_crlf%0D%0AX-Injected:%20yes%0D%0A%C3%A9%01"[..]),
        "the id is percent-encoded"
    );
    assert!(
        hit.header("x-injected").is_none(),
        "CR/LF in the id cannot add a header: {:?}",
        hit.headers
    );
    assert_eq!(hit.header("user-agent"), Some(agent));
    assert!(hit.header("stripe-signature").is_some());

    // The delivery's log line keeps the id on one line, escaped.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let logs = server.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("delivery attempt"))
        .unwrap_or_else(|| panic!("no delivery log line:\n{logs}"));
    assert!(
        line.contains(r"evt_crlf\r\nX-Injected: yes\r\n"),
        "the id is escaped in the log: {line}"
    );
}

// ---- item 14: one delivery never in flight twice ----

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_one_attempt_every_delivery_reaches_a_failing_receiver_exactly_once() {
    // A slow, failing receiver: every attempt is the last (max_attempts = 1).
    let rx = Rx::start(500, Duration::from_millis(400)).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &format!(
            "[delivery]\nallow_loopback = true\nconcurrency = 2\nretry_schedule_seconds = [0.05]\n\n\
             [[forward]]\nname = \"raw\"\nurl = \"{}\"\nmax_attempts = 1\n",
            rx.url("/raw")
        ),
    )
    .unwrap_or_else(|(code, e)| panic!("{code:?}: {e}"));

    let mut expected = Vec::new();
    // Slow bodies: received first, committed last, so their deliveries sort
    // before ones already in flight (forwards are due from `received_at`).
    let mut slow = Vec::new();
    for i in 0..2 {
        let id = format!("evt_slow_{i}");
        slow.push(
            post_event_slowly(
                &server,
                event(&id, &format!("sub_slow_{i}")),
                Duration::from_millis(250 + 150 * i),
            )
            .await,
        );
        expected.push(id);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    for i in 0..4 {
        let id = format!("evt_fast_{i}");
        assert_eq!(
            post_event(&server, &event(&id, &format!("sub_fast_{i}")), &[]).await,
            200
        );
        expected.push(id);
    }
    // One subscription, three notifications: in order, one at a time.
    for i in 0..3 {
        let id = format!("evt_ordered_{i}");
        assert_eq!(
            post_event(&server, &event(&id, "sub_ordered"), &[]).await,
            200
        );
        expected.push(id);
    }
    for s in slow {
        assert_eq!(s.await.unwrap(), 200, "{}", server.logs());
    }
    let secs = 30;
    rx.wait_for(secs, "every delivery", |h| {
        expected
            .iter()
            .all(|id| h.iter().any(|x| &x.notification_id() == id))
    })
    .await;
    // Time for any second attempt to show.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let hits = rx.hits();
    let t0 = hits.iter().map(|h| h.arrived).min().unwrap();
    let mut per_id: BTreeMap<String, Vec<u128>> = BTreeMap::new();
    for h in &hits {
        per_id
            .entry(h.notification_id())
            .or_default()
            .push(h.arrived.duration_since(t0).as_millis());
    }
    let twice: Vec<_> = per_id.iter().filter(|(_, t)| t.len() != 1).collect();
    assert!(
        twice.is_empty(),
        "each delivery exactly once; (id, arrival ms) seen more than once: {twice:?}\nall: {per_id:?}"
    );
    assert_eq!(per_id.len(), expected.len(), "{per_id:?}");

    // Order per (endpoint, subscription): each one only after the previous
    // one's attempt ended.
    let ordered: Vec<&Hit> = hits
        .iter()
        .filter(|h| h.notification_id().starts_with("evt_ordered_"))
        .collect();
    let ids: Vec<String> = ordered.iter().map(|h| h.notification_id()).collect();
    assert_eq!(ids, ["evt_ordered_0", "evt_ordered_1", "evt_ordered_2"]);
    for pair in ordered.windows(2) {
        assert!(
            pair[1].arrived >= pair[0].answered,
            "{} arrived before {} was answered",
            pair[1].notification_id(),
            pair[0].notification_id()
        );
    }
}
