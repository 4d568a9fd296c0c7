//! Slow and hostile clients (issue 8), against the real `storehook` binary
//! over raw TCP: headers or bodies trickled (slowloris), oversized and
//! endless bodies, thousands of idle connections, malformed HTTP. Each test
//! checks that the offender is cut off in bounded time, that the server's
//! memory stays bounded (read from `/proc/<pid>/status`), and that a
//! well-behaved store keeps getting its 200 meanwhile.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{now_s, open_files_limit, rss_kib, BinaryServer, ADMIN_TOKEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PATH: &str = "/v1/notifications/stripe";
const SECRET: &str = "whsec_hostile_tests";
/// Small limits so that the tests are quick.
const HEADER_TIMEOUT_S: u64 = 2;
const BODY_TIMEOUT_S: u64 = 1;
const MAX_BODY: usize = 64 * 1024;

fn start(dir: &Path) -> BinaryServer {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_token = \"{ADMIN_TOKEN}\"\n\
             max_body_bytes = {MAX_BODY}\nbody_timeout_seconds = {BODY_TIMEOUT_S}\n\
             header_timeout_seconds = {HEADER_TIMEOUT_S}\n\n\
             [database]\npath = \"{}\"\n\n\
             [stores.stripe]\nenabled = true\nsigning_secrets = [\"{SECRET}\"]\n",
            dir.join("storehook.db").display()
        ),
    )
    .expect("config");
    BinaryServer::start_with_config(dir, &config, &[])
}

fn addr(server: &BinaryServer) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

/// A well-behaved store: one correctly signed event (a fresh id each time)
/// must get its 200 quickly. Returns how long it took.
async fn store_is_served(server: &BinaryServer, n: usize) -> Duration {
    let body = common::stripe_event(&format!("evt_hostile_{n}"));
    let started = Instant::now();
    let resp = reqwest::Client::new()
        .post(format!("{}{PATH}", server.base))
        .header(
            "Stripe-Signature",
            storehook_stripe::signature_header([SECRET], now_s(), body.as_bytes()),
        )
        .timeout(Duration::from_secs(10))
        .body(body)
        .send()
        .await
        .expect("the well-behaved store got an answer");
    assert_eq!(resp.status().as_u16(), 200, "{:?}", resp.text().await);
    started.elapsed()
}

/// Serves `rounds` well-behaved requests one after the other; returns the
/// slowest.
async fn stores_are_served(server: &BinaryServer, rounds: usize, base: usize) -> Duration {
    let mut worst = Duration::ZERO;
    for i in 0..rounds {
        worst = worst.max(store_is_served(server, base + i).await);
    }
    worst
}

/// Reads whatever the server answers until it closes the connection (or
/// `within` passes): the status line, if any, and when it closed.
async fn answer_and_close(
    stream: &mut TcpStream,
    within: Duration,
) -> (Option<u16>, Option<Duration>) {
    let started = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout_at((started + within).into(), stream.read(&mut chunk)).await {
            Err(_) => break None,
            Ok(Ok(0)) | Ok(Err(_)) => break Some(started.elapsed()),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    (status_of(&buf), closed)
}

fn status_of(response: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(response);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Trickles `prefix` then one byte of `drip` every `every` until the server
/// closes the connection or `give_up` passes; returns when it closed (and
/// the status it answered, if any).
/// `count` clients, each trickling as [`trickle`] does.
fn spawn_tricklers(
    count: usize,
    server: &BinaryServer,
    prefix: &[u8],
    drip: &[u8],
    every: Duration,
    give_up: Duration,
) -> Vec<tokio::task::JoinHandle<(Option<u16>, Option<Duration>)>> {
    (0..count)
        .map(|_| {
            tokio::spawn(trickle(
                addr(server),
                prefix.to_vec(),
                drip.to_vec(),
                every,
                give_up,
            ))
        })
        .collect()
}

async fn trickle(
    addr: String,
    prefix: Vec<u8>,
    drip: Vec<u8>,
    every: Duration,
    give_up: Duration,
) -> (Option<u16>, Option<Duration>) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    if stream.write_all(&prefix).await.is_err() {
        return (None, Some(started.elapsed()));
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    for byte in drip.iter().cycle() {
        if started.elapsed() > give_up {
            return (status_of(&buf), None);
        }
        tokio::select! {
            read = stream.read(&mut chunk) => match read {
                Ok(0) | Err(_) => return (status_of(&buf), Some(started.elapsed())),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            },
            _ = tokio::time::sleep(every) => {
                if stream.write_all(&[*byte]).await.is_err() {
                    return (status_of(&buf), Some(started.elapsed()));
                }
            }
        }
    }
    (status_of(&buf), None)
}

/// Lets `slow` start (`settle`), checks that stores are served meanwhile
/// (other connections wait under 2 s), then waits for every trickler:
/// what each was answered and when it was closed.
async fn others_served_beside(
    server: &BinaryServer,
    slow: Vec<tokio::task::JoinHandle<(Option<u16>, Option<Duration>)>>,
    settle: Duration,
    base: usize,
) -> (Duration, Vec<(Option<u16>, Option<Duration>)>) {
    tokio::time::sleep(settle).await;
    let worst = stores_are_served(server, 10, base).await;
    assert!(worst < Duration::from_secs(2), "others waited {worst:?}");
    let mut ends = Vec::with_capacity(slow.len());
    for t in slow {
        ends.push(t.await.expect("trickler"));
    }
    (worst, ends)
}

/// Headers that never finish: each connection is closed once the header
/// timeout passes, however steadily the bytes trickle; others are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_headers_are_cut_off_at_the_header_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let slow = spawn_tricklers(
        200,
        &server,
        b"POST /v1/notifications/stripe HTTP/1.1\r\nHost: storehook\r\n",
        b"X-Slow: still coming\r\n",
        Duration::from_millis(250),
        Duration::from_secs(HEADER_TIMEOUT_S + 10),
    );
    let (worst, ends) = others_served_beside(&server, slow, Duration::from_millis(300), 0).await;
    let mut slowest = Duration::ZERO;
    for (_, closed) in ends {
        let closed = closed.expect("a trickled header was never cut off (no header-read timeout)");
        slowest = slowest.max(closed);
    }
    assert!(
        slowest < Duration::from_secs(HEADER_TIMEOUT_S + 3),
        "cut off after {slowest:?}"
    );
    eprintln!(
        "200 trickled headers cut off within {slowest:?}; other stores served in ≤ {worst:?}"
    );
}

/// A body that never finishes: 408 `body_timeout` at the body timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_bodies_get_408_at_the_body_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let head = format!(
        "POST {PATH} HTTP/1.1\r\nHost: storehook\r\nStripe-Signature: t={},v1=00\r\n\
         Content-Type: application/json\r\nContent-Length: 4000\r\n\r\n{{",
        now_s()
    );
    let slow = spawn_tricklers(
        50,
        &server,
        head.as_bytes(),
        b"\"a\":1,",
        Duration::from_millis(200),
        Duration::from_secs(BODY_TIMEOUT_S + 10),
    );
    let (_, ends) = others_served_beside(&server, slow, Duration::from_millis(200), 100).await;
    let mut slowest = Duration::ZERO;
    for (status, closed) in ends {
        assert_eq!(status, Some(408), "a trickled body must get 408");
        slowest = slowest.max(closed.unwrap_or(Duration::MAX));
    }
    assert!(
        slowest < Duration::from_secs(BODY_TIMEOUT_S + 4),
        "{slowest:?}"
    );
    let stripe = stripe_status(&server).await;
    assert_eq!(stripe["last_rejection_reason"], "body_timeout", "{stripe}");
}

async fn stripe_status(server: &BinaryServer) -> serde_json::Value {
    let stores = common::get_admin_json(&format!("{}/v1/stores", server.base)).await;
    common::store_entry(&stores, "stripe")
}

/// A declared 100 MiB body is refused before any of it is read; an endless
/// chunked body is refused once it passes the limit; memory stays bounded
/// with many such uploads at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_endless_bodies_get_413_with_bounded_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    store_is_served(&server, 200).await;
    let before = rss_kib(server.child.id());

    // Declared too large: answered from the headers alone.
    let mut s = TcpStream::connect(addr(&server)).await.expect("connect");
    s.write_all(
        format!(
            "POST {PATH} HTTP/1.1\r\nHost: storehook\r\nContent-Length: {}\r\n\r\n",
            100 << 20
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let (status, _) = answer_and_close(&mut s, Duration::from_secs(3)).await;
    assert_eq!(status, Some(413));

    // Endless chunked uploads, 32 at once, 64 KiB chunks as fast as the
    // server takes them.
    let uploads: Vec<_> = (0..32)
        .map(|_| {
            let addr = addr(&server);
            tokio::spawn(async move {
                let mut s = TcpStream::connect(addr).await.expect("connect");
                s.write_all(
                    format!("POST {PATH} HTTP/1.1\r\nHost: storehook\r\nTransfer-Encoding: chunked\r\n\r\n")
                        .as_bytes(),
                )
                .await
                .expect("write");
                let chunk = format!("10000\r\n{}\r\n", "x".repeat(0x10000));
                let started = Instant::now();
                let mut sent = 0usize;
                let (mut read, mut write) = s.into_split();
                let reader = tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let _ = tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut buf)).await;
                    status_of(&buf)
                });
                while started.elapsed() < Duration::from_secs(5) && !reader.is_finished() {
                    if write.write_all(chunk.as_bytes()).await.is_err() {
                        break;
                    }
                    sent += 0x10000;
                }
                drop(write);
                (reader.await.expect("reader"), sent)
            })
        })
        .collect();
    let worst = stores_are_served(&server, 5, 300).await;
    let peak = rss_kib(server.child.id());
    let mut max_sent = 0;
    for u in uploads {
        let (status, sent) = u.await.expect("upload");
        assert_eq!(status, Some(413), "an endless body must get 413");
        max_sent = max_sent.max(sent);
    }
    let grown_mib = peak.saturating_sub(before) as f64 / 1024.0;
    eprintln!(
        "32 endless uploads: 413 each (the most any one pushed before the answer: {} KiB); \
         RSS {:.1} → {:.1} MiB; other stores served in ≤ {worst:?}",
        max_sent / 1024,
        before as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    assert!(grown_mib < 32.0, "RSS grew by {grown_mib:.1} MiB");
    assert!(worst < Duration::from_secs(2), "others waited {worst:?}");
}

/// Thousands of connections that never send a byte: the server keeps
/// answering others, its memory stays bounded, and it closes them at the
/// header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_connections_are_bounded_and_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    store_is_served(&server, 400).await;
    let before = rss_kib(server.child.id());
    // Both ends of every connection live in this test's and the server's
    // descriptor tables: stay under the limit.
    let count = 3_000.min(open_files_limit().saturating_sub(200) / 2);
    let mut idle = Vec::with_capacity(count);
    let opened = Instant::now();
    for _ in 0..count {
        idle.push(TcpStream::connect(addr(&server)).await.expect("connect"));
    }
    let opening = opened.elapsed();
    // Each connection's header timer starts when it is accepted; under load
    // opening 3,000 takes seconds, so time the deadline from the last one.
    let all_open = Instant::now();
    let worst = stores_are_served(&server, 10, 500).await;
    let with_idle = rss_kib(server.child.id());
    eprintln!(
        "{count} idle connections (opened in {opening:?}): RSS {:.1} → {:.1} MiB; other stores served in ≤ {worst:?}",
        before as f64 / 1024.0,
        with_idle as f64 / 1024.0
    );
    assert!(worst < Duration::from_secs(2), "others waited {worst:?}");
    assert!(
        with_idle.saturating_sub(before) < 48 * 1024,
        "RSS grew by {} KiB",
        with_idle - before
    );
    // Closed by the server once the header timeout has passed.
    let deadline = all_open + Duration::from_secs(HEADER_TIMEOUT_S + 5);
    let mut still_open = 0;
    for stream in &mut idle {
        let mut b = [0u8; 64];
        match tokio::time::timeout_at(deadline.into(), stream.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Ok(Ok(_)) => {}
            Err(_) => still_open += 1,
        }
    }
    assert_eq!(
        still_open, 0,
        "{still_open} of {count} idle connections still open after the header timeout"
    );
}

/// Malformed HTTP gets a 4xx (or a closed connection), never a hang, and
/// nothing reaches a store. Each case on its own connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http_is_refused_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let huge_header = format!(
        "POST {PATH} HTTP/1.1\r\nHost: s\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let many_headers = format!(
        "POST {PATH} HTTP/1.1\r\nHost: s\r\n{}Content-Length: 0\r\n\r\n",
        (0..500)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    let cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
        ("not HTTP at all", b"HELLO THERE\r\n\r\n".to_vec(), &[400]),
        ("binary garbage", (0..=255u8).cycle().take(4096).collect(), &[400]),
        ("a 1 MiB header", huge_header.into_bytes(), &[431, 400]),
        ("500 headers", many_headers.into_bytes(), &[431, 400]),
        (
            "Content-Length and Transfer-Encoding both",
            format!("POST {PATH} HTTP/1.1\r\nHost: s\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n").into_bytes(),
            // RFC 9112 §6.3: a server may reject this, or read the body as
            // chunked (Transfer-Encoding wins) and then close the connection
            // so nothing smuggled after it is read. hyper does the latter:
            // the body `abc` then fails Stripe's signature check (401).
            &[400, 401],
        ),
        (
            "two different Content-Lengths",
            format!("POST {PATH} HTTP/1.1\r\nHost: s\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd").into_bytes(),
            &[400],
        ),
        (
            "broken chunked encoding",
            format!("POST {PATH} HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n").into_bytes(),
            &[400],
        ),
        (
            "a non-UTF-8 signature header",
            [
                format!("POST {PATH} HTTP/1.1\r\nHost: s\r\nContent-Length: 2\r\nStripe-Signature: ").as_bytes(),
                &[0xff, 0xfe, 0x80],
                b"\r\n\r\n{}",
            ]
            .concat(),
            &[401],
        ),
        (
            "HTTP/2 preface on an HTTP/1 port",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            // hyper's auto builder speaks h2c when it sees the preface:
            // no HTTP/1 status line, the connection is handled as HTTP/2.
            &[0, 400],
        ),
    ];
    for (what, bytes, allowed) in cases {
        let mut s = TcpStream::connect(addr(&server)).await.expect("connect");
        let _ = s.write_all(&bytes).await;
        let (status, closed) =
            answer_and_close(&mut s, Duration::from_secs(HEADER_TIMEOUT_S + 3)).await;
        let status = status.unwrap_or(0);
        eprintln!(
            "{what}: {} ({})",
            status,
            if closed.is_some() {
                "closed"
            } else {
                "left open"
            }
        );
        assert!(
            allowed.contains(&status),
            "{what}: answered {status}, expected one of {allowed:?}"
        );
        assert!(
            closed.is_some() || status != 0,
            "{what}: neither answered nor closed"
        );
        if what.starts_with("Content-Length and Transfer-Encoding") {
            assert!(closed.is_some(), "{what}: the connection must be closed");
        }
    }
    stores_are_served(&server, 3, 600).await;
    let stripe = stripe_status(&server).await;
    assert_eq!(stripe["counts"]["accepted"], 3, "{stripe}");
}
