//! `[server.tls]` (issue 13): HTTPS served with a test certificate, the
//! certificate replaced while a request is in flight (SIGHUP's reload, then
//! the file watcher), the request unharmed, new connections on the new
//! certificate, and a broken replacement that keeps the previous one.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

/// A self-signed certificate for 127.0.0.1 and localhost, written as
/// `cert.pem` / `key.pem` in `dir` (replaced atomically, as ACME clients
/// do); returns the certificate's PEM.
fn install_certificate(dir: &Path, name: &str) -> String {
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("certificate");
    for (file, pem) in [("key.pem", key.serialize_pem()), ("cert.pem", cert.pem())] {
        let tmp = dir.join(format!("{file}.tmp"));
        std::fs::write(&tmp, pem).expect("write");
        std::fs::rename(&tmp, dir.join(file)).expect("rename");
    }
    cert.pem()
}

/// A client that trusts only `pem`, on fresh connections.
fn trusting(pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).expect("pem"))
        .build()
        .expect("client")
}

async fn healthz(client: &reqwest::Client, base: &str) -> Result<u16, String> {
    client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("{e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_certificate_that_is_reloaded_while_requests_run() {
    common::link_plugins();
    let dir = tempfile::tempdir().unwrap();
    let first = install_certificate(dir.path(), "first");
    let config_path = dir.path().join("config.toml");
    std::fs::write(
        &config_path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_token = \"{}\"\n\
             [server.tls]\ncert_file = \"cert.pem\"\nkey_file = \"key.pem\"\n\n\
             [database]\npath = \"{}\"\n\n[stores.example]\nenabled = true\nkey = \"k\"\n",
            common::ADMIN_TOKEN,
            dir.path().join("storehook.db").display()
        ),
    )
    .unwrap();
    let config = storehook_server::Config::load(&config_path).unwrap();
    let running = storehook_server::start(config, &|_| None).await.unwrap();
    assert_eq!(running.scheme(), "https");
    let base = format!("https://127.0.0.1:{}", running.addr.port());

    assert_eq!(healthz(&trusting(&first), &base).await, Ok(200));
    // Plain HTTP on the TLS port gets no answer.
    assert!(
        reqwest::get(format!("http://127.0.0.1:{}/healthz", running.addr.port()))
            .await
            .is_err()
    );

    // A notification whose body is still arriving when the certificate
    // changes (SIGHUP → reload).
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = json!({"id": "n-tls", "type": "INITIAL_PURCHASE", "subscription": "s1", "at": 1,
        "status": "active", "expires_at": 1000, "auto_renew": true, "product": "monthly"})
    .to_string()
    .into_bytes();
    let (head, tail) = body.split_at(body.len() / 2);
    let in_flight = {
        let client = trusting(&first);
        let url = format!("{base}/v1/notifications/example");
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|chunk| (chunk, rx))
        });
        tokio::spawn(async move {
            client
                .post(url)
                .header("x-example-key", "k")
                .body(reqwest::Body::wrap_stream(stream))
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    tx.send(Ok(head.to_vec())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = install_certificate(dir.path(), "second");
    running.reload();
    tx.send(Ok(tail.to_vec())).await.unwrap();
    drop(tx);
    assert_eq!(
        in_flight
            .await
            .unwrap()
            .expect("the request in flight completes"),
        200
    );
    assert_eq!(healthz(&trusting(&second), &base).await, Ok(200));
    assert!(
        healthz(&trusting(&first), &base).await.is_err(),
        "new connections get the new certificate"
    );

    // Replaced without a signal: the file watcher picks it up.
    let third = install_certificate(dir.path(), "third");
    let waited = Instant::now();
    while healthz(&trusting(&third), &base).await != Ok(200) {
        assert!(waited.elapsed() < Duration::from_secs(10), "watcher reload");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A broken replacement is refused; the last good certificate stays.
    std::fs::write(dir.path().join("cert.pem"), "not a certificate").unwrap();
    running.reload();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(healthz(&trusting(&third), &base).await, Ok(200));
    running.shutdown().await;
}

#[test]
fn a_missing_certificate_stops_the_start_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\n[server.tls]\ncert_file = \"nope.pem\"\nkey_file = \"nope.key\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_storehook"))
        .args(["--config", config.to_str().unwrap(), "serve"])
        .env_remove("STOREHOOK_ADMIN_TOKEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("nope.pem"), "{stderr}");
}
