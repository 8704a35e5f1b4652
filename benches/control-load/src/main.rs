//! What the control-plane bench drives and `wrk` cannot: nodes beating on a
//! schedule through a list of control URLs (moving to the next when one
//! does not answer, as Ferry's nodes do), as fast as the server takes them,
//! and publish checks; each prints what a node would see.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    /// Control URLs, comma-separated, tried in order.
    #[arg(long)]
    urls: String,
    /// Bearer token.
    #[arg(long)]
    token: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// NODES edges each beating once a second for SECONDS; prints beats
    /// sent and failed, latency p50/p99, and the longest time any node went
    /// without a successful beat (what a control failover costs it).
    Beats {
        #[arg(long, default_value_t = 500)]
        nodes: usize,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
    /// CONCURRENCY nodes beating back to back for SECONDS: the most beats
    /// a second the control plane absorbs.
    Absorb {
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// RATE publish checks a second of KEY for SECONDS; prints p50/p99.
    Auth {
        #[arg(long)]
        key: String,
        #[arg(long, default_value_t = 25)]
        rate: u64,
        #[arg(long, default_value_t = 8)]
        seconds: u64,
    },
}

/// The control URLs and which answered last, as a node keeps them.
struct Control {
    urls: Vec<String>,
    current: AtomicUsize,
    token: String,
    client: reqwest::Client,
}

impl Control {
    /// POSTs `body` to `path`, moving along the URLs while one does not
    /// answer; `Ok` when one answered with a success.
    async fn post(&self, path: &str, body: &serde_json::Value) -> anyhow::Result<()> {
        let first = self.current.load(Ordering::Relaxed);
        for step in 0..self.urls.len() {
            let i = (first + step) % self.urls.len();
            let sent = self
                .client
                .post(format!("{}/api/v1{path}", self.urls[i]))
                .bearer_auth(&self.token)
                .json(body)
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => {
                    self.current.store(i, Ordering::Relaxed);
                    return Ok(());
                }
                Ok(r) if !r.status().is_server_error() => bail!("status {}", r.status()),
                _ => {}
            }
        }
        bail!("no control URL answered")
    }
}

fn beat(i: usize) -> serde_json::Value {
    serde_json::json!({
        "id": format!("bench-edge-{i}"),
        "role": "edge",
        "address": format!("http://10.1.{}.{}:8080", i / 250, i % 250 + 1),
        "version": "bench",
        "load": 0.2,
        "edge": {"capacity": 1000, "connections": 10, "egress_bps": 1000000, "hit_ratio": 0.99,
                 "draining": false, "requests": 100, "pool": "default"}
    })
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .pool_max_idle_per_host(1024)
        .no_proxy()
        .build()
        .context("http client")?;
    let control = Arc::new(Control {
        urls: cli
            .urls
            .split(',')
            .map(|u| u.trim_end_matches('/').to_owned())
            .collect(),
        current: AtomicUsize::new(0),
        token: cli.token,
        client,
    });
    match cli.command {
        Command::Beats { nodes, seconds } => beats(control, nodes, seconds).await,
        Command::Absorb {
            concurrency,
            seconds,
        } => absorb(control, concurrency, seconds).await,
        Command::Auth { key, rate, seconds } => auth(control, &key, rate, seconds).await,
    }
}

async fn beats(control: Arc<Control>, nodes: usize, seconds: u64) -> anyhow::Result<()> {
    let end = Instant::now() + Duration::from_secs(seconds);
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..nodes {
        let (control, failed) = (control.clone(), failed.clone());
        // Spread over the second, as nodes started at different times are.
        let offset = Duration::from_micros((i as u64 * 1_000_000) / nodes as u64);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(offset).await;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let body = beat(i);
            let mut latencies = Vec::new();
            let mut last_ok = Instant::now();
            let mut longest_gap = Duration::ZERO;
            while Instant::now() < end {
                tick.tick().await;
                let t = Instant::now();
                match control.post("/nodes/heartbeat", &body).await {
                    Ok(()) => {
                        latencies.push(t.elapsed());
                        longest_gap = longest_gap.max(last_ok.elapsed());
                        last_ok = Instant::now();
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            longest_gap = longest_gap.max(last_ok.elapsed());
            (latencies, longest_gap)
        }));
    }
    let mut latencies = Vec::new();
    let mut gaps = Vec::new();
    for t in tasks {
        let (l, g) = t.await.context("node task")?;
        latencies.extend(l);
        gaps.push(g);
    }
    latencies.sort();
    gaps.sort();
    println!(
        "beats ok={} failed={} per_s={:.0} p50_ms={:.2} p99_ms={:.2} longest_gap_s={:.2} p99_gap_s={:.2}",
        latencies.len(),
        failed.load(Ordering::Relaxed),
        latencies.len() as f64 / seconds as f64,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        gaps.last().map_or(0.0, Duration::as_secs_f64),
        percentile(&gaps, 0.99) / 1000.0,
    );
    Ok(())
}

async fn absorb(control: Arc<Control>, concurrency: usize, seconds: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (control, ok, failed) = (control.clone(), ok.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while Instant::now() < end {
                // Each worker stands for many nodes, one after another.
                let body = beat(w * 10_000 + n % 500);
                n += 1;
                match control.post("/nodes/heartbeat", &body).await {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for t in tasks {
        t.await.context("worker")?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "absorb ok={} failed={} per_s={:.0}",
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        ok.load(Ordering::Relaxed) as f64 / elapsed
    );
    Ok(())
}

async fn auth(control: Arc<Control>, key: &str, rate: u64, seconds: u64) -> anyhow::Result<()> {
    let body = serde_json::json!({ "key": key });
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    let mut tasks = Vec::new();
    for _ in 0..rate * seconds {
        tick.tick().await;
        let (control, body) = (control.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            control
                .post("/auth/publish", &body)
                .await
                .map(|()| t.elapsed())
        }));
    }
    let mut latencies = Vec::new();
    let mut failed = 0;
    for t in tasks {
        match t.await.context("check")? {
            Ok(l) => latencies.push(l),
            Err(_) => failed += 1,
        }
    }
    latencies.sort();
    println!(
        "auth ok={} failed={failed} p50_ms={:.2} p99_ms={:.2}",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    Ok(())
}
