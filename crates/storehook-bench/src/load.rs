//! Drives a server (or several instances of it, request by request in
//! turn) over HTTP at a chosen concurrency (closed loop) or rate (open
//! loop), recording every answer and its latency, while sampling the
//! servers' CPU time and memory.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};

use crate::server;
use crate::traffic::{Request, Slot, Store, Workload};
use crate::wire::{self, Connection, Sender};

/// What the client expected and what came back, for one request.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub store: Store,
    pub kind: Kind,
    /// Index into the workload's `fresh` (Fresh, Duplicate) or `invalid`.
    pub index: usize,
    /// HTTP status, 0 when no answer came back.
    pub status: u16,
    pub verdict: Verdict,
    pub latency_us: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Fresh,
    Duplicate,
    Invalid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Tracked,
    Untracked,
    Duplicate,
    Other,
}

impl Sample {
    /// The answer to one request sent at `started`.
    fn answered(
        request: &Request,
        kind: Kind,
        index: usize,
        (status, verdict): (u16, Verdict),
        started: Instant,
    ) -> Self {
        Sample {
            store: request.store,
            kind,
            index,
            status,
            verdict,
            latency_us: started.elapsed().as_micros().min(u32::MAX as u128) as u32,
        }
    }

    /// Whether the answer is the one the request deserves.
    pub fn as_expected(&self, request: &Request) -> bool {
        match self.kind {
            Kind::Invalid => self.status == 401,
            Kind::Duplicate => self.status == 200 && self.verdict == Verdict::Duplicate,
            Kind::Fresh => {
                self.status == 200
                    && self.verdict
                        == if request.tracked {
                            Verdict::Tracked
                        } else {
                            Verdict::Untracked
                        }
            }
        }
    }
}

pub struct Options {
    pub concurrency: usize,
    /// Requests per second overall (open loop); `None`: as fast as answers come.
    pub rate: Option<f64>,
    pub progress: bool,
    pub sender: Sender,
}

pub struct RunOutput {
    pub samples: Vec<Sample>,
    pub elapsed: Duration,
    /// Summed over the instances.
    pub server_cpu_s: Option<f64>,
    /// Largest VmRSS of any one instance seen while sampling every 100 ms, KiB.
    pub rss_max_kib: Option<u64>,
    /// Largest VmHWM at the end (an instance's peak resident set since it
    /// started), KiB.
    pub rss_peak_kib: Option<u64>,
    /// This process's CPU seconds during the run: what sending cost.
    pub sender_cpu_s: Option<f64>,
}

pub fn client(concurrency: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .timeout(Duration::from_secs(60))
        .no_proxy()
        .build()
        .unwrap_or_default()
}

/// Starts tracking the workload's subscriptions (before the measurement).
pub async fn track(base: &str, workload: &Workload, concurrency: usize) -> anyhow::Result<()> {
    let client = client(concurrency);
    let next = Arc::new(AtomicUsize::new(0));
    let tracked = Arc::new(workload.tracked.clone());
    let mut tasks = Vec::new();
    for _ in 0..concurrency.clamp(1, 16) {
        let (client, next, tracked, base) = (
            client.clone(),
            next.clone(),
            tracked.clone(),
            base.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((store, id)) = tracked.get(i) else {
                    return Ok::<(), anyhow::Error>(());
                };
                let resp = client
                    .post(format!("{base}/v1/subscriptions"))
                    .bearer_auth(crate::traffic::ADMIN_TOKEN)
                    .json(&serde_json::json!({"store": store.id(), "subscription_id": id, "app_user_id": format!("bench-user-{i}")}))
                    .send()
                    .await?;
                anyhow::ensure!(
                    resp.status().is_success(),
                    "tracking {id}: HTTP {}",
                    resp.status()
                );
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Sends the workload's plan once, request `i` to `bases[i % n]` (the same
/// concurrency in total however many instances). `pids` are the
/// instances' processes (none for a server someone else runs).
pub async fn run(
    bases: &[String],
    pids: &[u32],
    workload: Arc<Workload>,
    options: &Options,
) -> RunOutput {
    let total = workload.plan.len();
    let bar = if options.progress {
        let bar = ProgressBar::new(total as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {elapsed_precise} [{bar:36}] {pos}/{len} {per_sec:>12} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    } else {
        ProgressBar::hidden()
    };

    // Memory sampler.
    let sampling = Arc::new(AtomicBool::new(true));
    let rss_max = Arc::new(AtomicU64::new(0));
    let sampler = (!pids.is_empty()).then(|| {
        let (sampling, rss_max, pids) = (sampling.clone(), rss_max.clone(), pids.to_vec());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                for &pid in &pids {
                    if let Some(kib) = server::status_kib(pid, "VmRSS") {
                        rss_max.fetch_max(kib, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    });

    let client = client(options.concurrency);
    // The light sender's bytes, made before the clock starts.
    let wire =
        (options.sender == Sender::Raw).then(|| Arc::new(WireRequests::of(&workload, bases)));
    let next = Arc::new(AtomicUsize::new(0));
    let acked: Arc<Mutex<Vec<usize>>> = Arc::new(Mutex::new(Vec::new()));
    let me = std::process::id();
    let sender_cpu_before = server::cpu_seconds(me);
    let cpu_before = cpu_of(pids);
    let per_worker = total / options.concurrency.max(1) + 1;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..options.concurrency {
        let (client, next, acked, workload, bar, bases, wire) = (
            client.clone(),
            next.clone(),
            acked.clone(),
            workload.clone(),
            bar.clone(),
            bases.to_vec(),
            wire.clone(),
        );
        let interval = options
            .rate
            .map(|r| Duration::from_secs_f64(options.concurrency as f64 / r.max(0.001)));
        let offset = options
            .rate
            .map(|r| Duration::from_secs_f64(worker as f64 / r.max(0.001)));
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(worker as u64);
            let mut samples = Vec::with_capacity(per_worker);
            let mut connections: Vec<Option<Connection>> = bases.iter().map(|_| None).collect();
            let mut due = started + offset.unwrap_or_default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(slot) = workload.plan.get(i) else {
                    break;
                };
                if let Some(interval) = interval {
                    tokio::time::sleep_until(due.into()).await;
                    due += interval;
                }
                let (kind, index) = match *slot {
                    Slot::Fresh(k) => (Kind::Fresh, k),
                    Slot::Invalid(k) => (Kind::Invalid, k),
                    Slot::Duplicate => {
                        let pick = {
                            let a = acked.lock().unwrap_or_else(|e| e.into_inner());
                            (!a.is_empty()).then(|| a[rng.gen_range(0..a.len())])
                        };
                        match pick {
                            Some(k) => (Kind::Duplicate, k),
                            // Nothing acknowledged yet: a forged one instead.
                            None => (Kind::Invalid, i % workload.invalid.len().max(1)),
                        }
                    }
                };
                let request = match kind {
                    Kind::Invalid => workload.invalid.get(index),
                    _ => workload.fresh.get(index),
                };
                let Some(request) = request else { continue };
                let target = i % bases.len().max(1);
                let Some(base) = bases.get(target) else {
                    break;
                };
                let sample = match &wire {
                    None => send(&client, base, request, kind, index).await,
                    Some(wire) => {
                        let bytes = match kind {
                            Kind::Invalid => wire.invalid.get(index),
                            _ => wire.fresh.get(index),
                        };
                        let authority = wire.authorities.get(target);
                        match (bytes, authority, connections.get_mut(target)) {
                            (Some(bytes), Some(authority), Some(slot)) => {
                                send_raw(slot, authority, bytes, request, kind, index).await
                            }
                            _ => break,
                        }
                    }
                };
                if kind == Kind::Fresh && sample.status == 200 {
                    acked.lock().unwrap_or_else(|e| e.into_inner()).push(index);
                }
                samples.push(sample);
                bar.inc(1);
            }
            samples
        }));
    }
    let mut samples = Vec::with_capacity(total);
    for t in tasks {
        if let Ok(mut s) = t.await {
            samples.append(&mut s);
        }
    }
    let elapsed = started.elapsed();
    let cpu_after = cpu_of(pids);
    let sender_cpu = server::cpu_seconds(me)
        .zip(sender_cpu_before)
        .map(|(after, before)| after - before);
    sampling.store(false, Ordering::Relaxed);
    if let Some(s) = sampler {
        let _ = s.await;
    }
    bar.finish_and_clear();
    RunOutput {
        samples,
        elapsed,
        server_cpu_s: cpu_before.zip(cpu_after).map(|(a, b)| b - a),
        rss_max_kib: Some(rss_max.load(Ordering::Relaxed)).filter(|&k| k > 0),
        rss_peak_kib: pids
            .iter()
            .filter_map(|&p| server::status_kib(p, "VmHWM"))
            .max(),
        sender_cpu_s: sender_cpu,
    }
}

/// Every request of a workload as the light sender writes it.
struct WireRequests {
    fresh: Vec<Vec<u8>>,
    invalid: Vec<Vec<u8>>,
    /// `host:port` of each instance.
    authorities: Vec<String>,
}

impl WireRequests {
    fn of(workload: &Workload, bases: &[String]) -> Self {
        let authorities: Vec<String> = bases
            .iter()
            .map(|b| wire::authority(b).unwrap_or(b).to_owned())
            .collect();
        let host = authorities.first().map_or("localhost", String::as_str);
        Self {
            fresh: workload
                .fresh
                .iter()
                .map(|r| wire::serialize(r, host))
                .collect(),
            invalid: workload
                .invalid
                .iter()
                .map(|r| wire::serialize(r, host))
                .collect(),
            authorities,
        }
    }
}

/// One request by the light sender, on this worker's connection to the
/// instance (opened again after an error or a `Connection: close`).
async fn send_raw(
    slot: &mut Option<Connection>,
    authority: &str,
    bytes: &[u8],
    request: &Request,
    kind: Kind,
    index: usize,
) -> Sample {
    let started = Instant::now();
    let answer = async {
        if slot.is_none() {
            *slot = Some(Connection::open(authority).await?);
        }
        match slot.as_mut() {
            Some(c) => c.exchange(bytes).await,
            None => anyhow::bail!("no connection"),
        }
    }
    .await;
    let (status, verdict) = match answer {
        Ok((status, verdict, keep_alive)) => {
            if !keep_alive {
                *slot = None;
            }
            (status, verdict)
        }
        Err(_) => {
            *slot = None;
            (0, Verdict::Other)
        }
    };
    Sample::answered(request, kind, index, (status, verdict), started)
}

/// CPU seconds of all `pids` together; `None` if any cannot be read.
fn cpu_of(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&p| server::cpu_seconds(p)).sum()
}

async fn send(
    client: &reqwest::Client,
    base: &str,
    request: &Request,
    kind: Kind,
    index: usize,
) -> Sample {
    let started = Instant::now();
    let result = client
        .post(format!("{base}/v1/notifications/{}", request.store.id()))
        .headers(request.headers.clone())
        .body(request.body.clone())
        .send()
        .await;
    let (status, verdict) = match result {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body = resp.bytes().await.unwrap_or_default();
            (status, verdict_of(&body))
        }
        Err(_) => (0, Verdict::Other),
    };
    Sample::answered(request, kind, index, (status, verdict), started)
}

pub(crate) fn verdict_of(body: &[u8]) -> Verdict {
    #[derive(serde::Deserialize)]
    struct Answer<'a> {
        #[serde(borrow)]
        verdict: Option<&'a str>,
    }
    match serde_json::from_slice::<Answer>(body)
        .ok()
        .and_then(|a| a.verdict)
    {
        Some("tracked") => Verdict::Tracked,
        Some("untracked") => Verdict::Untracked,
        Some("duplicate") => Verdict::Duplicate,
        _ => Verdict::Other,
    }
}
