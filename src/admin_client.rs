//! `storehook check` and `storehook backfill`: ask the running server
//! through its admin API (the same calls as the dashboard's buttons), so the
//! work runs where the credentials, the database and the store's URL are.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use storehook_server::Config;

/// How often the CLI polls a running check or job.
const POLL: Duration = Duration::from_secs(1);

/// Exit status when the check ran but the store is not connected (1 means
/// the CLI could not ask at all).
pub const NOT_CONNECTED: u8 = 3;

pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    token: storehook_core::Secret,
}

impl AdminClient {
    /// The server's admin address from the config (`admin_listen`, else
    /// `listen`; an unspecified address is reached on loopback) unless `url`
    /// is given, and the admin token from the config, the environment or the
    /// data folder's token file.
    pub fn new(
        config: &Config,
        url: Option<&str>,
        env: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> Result<Self> {
        let token = match config.checked_admin_token(env)? {
            Some(token) => token,
            None => {
                let path = storehook_server::admin_token::path(config);
                storehook_server::admin_token::read(&path).with_context(|| {
                    format!(
                        "no admin token configured and none readable at {} (has the server started once?)",
                        path.display()
                    )
                })?
            }
        };
        let tls = config.server.tls.is_some();
        let base = match url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let mut addr = config.server.admin_listen.unwrap_or(config.server.listen);
                if addr.ip().is_unspecified() {
                    addr.set_ip(if addr.is_ipv4() {
                        std::net::Ipv4Addr::LOCALHOST.into()
                    } else {
                        std::net::Ipv6Addr::LOCALHOST.into()
                    });
                }
                format!("{}://{addr}", if tls { "https" } else { "http" })
            }
        };
        let loopback_https = url.is_none() && tls;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            // Our own server on loopback, reached by address: its certificate
            // names the public host, not 127.0.0.1. Only then.
            .danger_accept_invalid_certs(loopback_https)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(AdminClient { http, base, token })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .request(method, &url)
            .bearer_auth(self.token.expose());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.with_context(|| {
            format!(
                "cannot reach storehook at {} (is it running? pass --url)",
                self.base
            )
        })?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = value["message"].as_str().unwrap_or("no message");
            let code = value["error"].as_str().unwrap_or("error");
            bail!("{path}: HTTP {} {code}: {message}", status.as_u16());
        }
        Ok(value)
    }

    /// Runs a connection check and prints its progress and result; `true`
    /// when the store is connected.
    pub async fn check(&self, store: &str, deadline: Duration) -> Result<bool> {
        let path = format!("/v1/stores/{}/check", path_segment(store));
        let mut status = self.call(reqwest::Method::POST, &path, None).await?;
        let started = std::time::Instant::now();
        let mut printed = 0;
        loop {
            let lines = status["progress"].as_array().cloned().unwrap_or_default();
            for line in lines.iter().skip(printed) {
                println!("  … {}", line.as_str().unwrap_or_default());
            }
            printed = printed.max(lines.len());
            if status["state"] != "running" {
                break;
            }
            if started.elapsed() > deadline {
                bail!(
                    "the check is still running after {} s; see the dashboard",
                    deadline.as_secs()
                );
            }
            tokio::time::sleep(POLL).await;
            status = self.call(reqwest::Method::GET, &path, None).await?;
        }
        let result = &status["result"];
        if result.is_null() {
            return Err(anyhow!(
                "the server finished the check but stored no result"
            ));
        }
        print_check(store, result);
        Ok(result["connected"] == true)
    }

    /// Starts a backfill; with `wait`, follows it to the end. `true` when
    /// it finished (or was started, without `wait`).
    pub async fn backfill(
        &self,
        store: &str,
        since: &str,
        until: Option<&str>,
        only_failures: bool,
        wait: bool,
    ) -> Result<bool> {
        let path = format!("/v1/stores/{}/backfill", path_segment(store));
        let body = json!({ "since": since, "until": until, "only_failures": only_failures });
        let mut job = self.call(reqwest::Method::POST, &path, Some(body)).await?;
        let id = job["id"]
            .as_i64()
            .ok_or_else(|| anyhow!("the server answered without a job id"))?;
        println!(
            "backfill job {id}: {store} from {} to {}{}",
            job["since"].as_str().unwrap_or("?"),
            job["until"].as_str().unwrap_or("?"),
            if only_failures {
                ", only what the store failed to deliver"
            } else {
                ""
            }
        );
        if !wait {
            println!("follow it on the dashboard or with GET /v1/jobs/{id}");
            return Ok(true);
        }
        let mut last = String::new();
        loop {
            let line = format!(
                "  {}: {} read, {} recovered, {} already here{}{}",
                job["status"].as_str().unwrap_or("?"),
                job["scanned"],
                job["recovered"],
                job["duplicates"],
                match job["skipped"].as_i64() {
                    Some(n) if n > 0 => format!(", {n} unusable"),
                    _ => String::new(),
                },
                job["progress"]
                    .as_str()
                    .map(|p| format!(" — {p}"))
                    .unwrap_or_default()
            );
            if line != last {
                println!("{line}");
                last = line;
            }
            match job["status"].as_str() {
                Some("done") => return Ok(true),
                Some("failed") | Some("cancelled") => {
                    if let Some(e) = job["error"].as_str() {
                        eprintln!("job {id}: {e}");
                    }
                    return Ok(false);
                }
                _ => {}
            }
            tokio::time::sleep(POLL).await;
            job = self
                .call(reqwest::Method::GET, &format!("/v1/jobs/{id}"), None)
                .await?;
        }
    }
}

fn print_check(store: &str, result: &Value) {
    println!(
        "{store}: {} — {}",
        result["verdict"].as_str().unwrap_or("?"),
        result["summary"].as_str().unwrap_or_default()
    );
    for f in result["findings"].as_array().into_iter().flatten() {
        let mark = match f["level"].as_str() {
            Some("ok") => "ok  ",
            Some("warning") => "warn",
            Some("error") => "FAIL",
            _ => "info",
        };
        let code = f["code"]
            .as_str()
            .map(|c| format!(" [{c}]"))
            .unwrap_or_default();
        println!(
            "  {mark} {}{code}: {}",
            f["title"].as_str().unwrap_or_default(),
            f["detail"].as_str().unwrap_or_default()
        );
    }
    if let Some(n) = result["recoverable"].as_u64() {
        println!("  {n} notification(s) can be recovered: storehook backfill {store} --since 3d --only-failures");
    }
}

/// A store id as one URL path segment.
fn path_segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
