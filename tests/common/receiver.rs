//! A webhook receiver for tests: a real HTTP server on loopback that records
//! every request and answers with a status the test chooses.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use warp::Filter;

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// The status the receiver answered.
    pub answered: u16,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

type Plan = Arc<dyn Fn(&Received, usize) -> u16 + Send + Sync>;

pub struct Receiver {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Received>>>,
    plan: Arc<Mutex<Plan>>,
}

impl Receiver {
    /// Starts a receiver that answers 200 to everything.
    pub async fn start() -> Self {
        let log: Arc<Mutex<Vec<Received>>> = Arc::new(Mutex::new(Vec::new()));
        let plan: Arc<Mutex<Plan>> = Arc::new(Mutex::new(Arc::new(|_: &Received, _| 200)));
        let (l, p) = (log.clone(), plan.clone());
        let route = warp::post()
            .and(warp::path::full())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .map(
                move |path: warp::path::FullPath,
                      headers: warp::http::HeaderMap,
                      body: bytes::Bytes| {
                    let mut r = Received {
                        path: path.as_str().to_owned(),
                        headers: headers
                            .iter()
                            .map(|(k, v)| {
                                (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())
                            })
                            .collect(),
                        body: body.to_vec(),
                        answered: 0,
                    };
                    let plan = p.lock().unwrap().clone();
                    let mut log = l.lock().unwrap();
                    let status = plan(&r, log.len());
                    r.answered = status;
                    log.push(r);
                    warp::http::Response::builder()
                        .status(status)
                        .body(format!("answered {status}"))
                        .unwrap()
                },
            );
        let addr = storehook_stand_ins::serve(route).await;
        Receiver { addr, log, plan }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Chooses the status for each request: `plan(request, requests so far)`.
    pub fn answer_with(&self, plan: impl Fn(&Received, usize) -> u16 + Send + Sync + 'static) {
        *self.plan.lock().unwrap() = Arc::new(plan);
    }

    pub fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// The requests answered 2xx.
    pub fn delivered(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.answered))
            .collect()
    }

    /// Waits until `pred` holds over the log (or panics after `secs`).
    pub async fn wait_for(
        &self,
        secs: u64,
        what: &str,
        pred: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let log = self.received();
            if pred(&log) {
                return log;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; received: {:#?}",
                    log.iter()
                        .map(|r| (r.answered, r.json()))
                        .collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Verifies a Standard Webhooks signature header the way a receiver would.
pub fn signature_valid(secret: &str, r: &Received) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let id = &r.headers["webhook-id"];
    let ts = &r.headers["webhook-timestamp"];
    let mut signed = format!("{id}.{ts}.").into_bytes();
    signed.extend_from_slice(&r.body);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    r.headers["webhook-signature"].split(' ').any(|sig| {
        let Some(b64) = sig.strip_prefix("v1,") else {
            return false;
        };
        let Ok(tag) = base64::engine::general_purpose::STANDARD.decode(b64) else {
            return false;
        };
        ring::hmac::verify(&key, &signed, &tag).is_ok()
    })
}
