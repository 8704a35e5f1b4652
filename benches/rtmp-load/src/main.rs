//! RTMP play load generator: opens N play sessions in one process against any RTMP
//! server and reports, for the server processes named by `--pid`, the CPU they
//! used while all players were connected, how many players fell behind real time
//! or lost frames, and time to the first keyframe.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use rtmp::Client;
use rtmp::message::Message;

#[derive(Parser)]
#[command(about = "RTMP play load generator for the fan-out bench")]
struct Args {
    /// Server address.
    #[arg(long)]
    addr: SocketAddr,
    /// RTMP application.
    #[arg(long, default_value = "live")]
    app: String,
    /// Stream to play.
    #[arg(long)]
    stream: String,
    /// Number of players.
    #[arg(long)]
    players: usize,
    /// Seconds after the last player connected before measuring.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Seconds to measure.
    #[arg(long, default_value_t = 15)]
    measure: u64,
    /// Server process ids whose CPU time is measured.
    #[arg(long, num_args = 1..)]
    pid: Vec<u32>,
    /// Label printed with the result.
    #[arg(long, default_value = "server")]
    label: String,
}

/// What one player saw.
#[derive(Debug, Default)]
struct PlayerReport {
    first_keyframe: Option<Duration>,
    /// Wall time minus media time at the last frame: positive means behind.
    final_lag: Option<f64>,
    /// Gaps in the media timeline longer than half a second (frames skipped).
    skips: u32,
    error: Option<String>,
}

async fn player(args: (SocketAddr, String, String), stop_at: Instant) -> PlayerReport {
    let (addr, app, stream) = args;
    let mut report = PlayerReport::default();
    let started = Instant::now();
    let session = async {
        let mut c = Client::connect(addr, &app).await?;
        c.play(&stream).await?;
        Ok::<_, rtmp::RtmpError>(c)
    };
    let mut c = match session.await {
        Ok(c) => c,
        Err(e) => {
            report.error = Some(e.to_string());
            return report;
        }
    };
    let mut first: Option<(Instant, u32)> = None;
    let mut last_ts: Option<u32> = None;
    loop {
        let now = Instant::now();
        if now >= stop_at {
            break;
        }
        let msg = match tokio::time::timeout(stop_at - now, c.read()).await {
            Err(_) => break,
            Ok(Err(e)) => {
                report.error = Some(e.to_string());
                break;
            }
            Ok(Ok(m)) => m,
        };
        let Message::Video { timestamp, data } = msg else {
            continue;
        };
        if data.len() < 2 || data[1] != 1 {
            continue;
        }
        let keyframe = data[0] >> 4 == 1;
        if first.is_none() {
            if !keyframe {
                continue;
            }
            report.first_keyframe = Some(started.elapsed());
            first = Some((Instant::now(), timestamp));
        }
        if let Some(prev) = last_ts
            && timestamp.wrapping_sub(prev) > 500
            && timestamp > prev
        {
            report.skips += 1;
        }
        last_ts = Some(timestamp);
        if let Some((t0, ts0)) = first {
            let media = f64::from(timestamp.wrapping_sub(ts0)) / 1000.0;
            report.final_lag = Some(t0.elapsed().as_secs_f64() - media);
        }
    }
    report
}

fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            // Fields after the command name, which may contain spaces.
            let rest = stat.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .sum()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let connect_budget = Duration::from_secs(10);
    let stop_at = Instant::now() + connect_budget + Duration::from_secs(args.warmup + args.measure);
    let mut tasks = Vec::with_capacity(args.players);
    for _ in 0..args.players {
        let a = (args.addr, args.app.clone(), args.stream.clone());
        tasks.push(tokio::spawn(player(a, stop_at)));
        // A gentle ramp, as real audiences arrive.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep_until((stop_at - Duration::from_secs(args.measure)).into()).await;
    let ticks_before = cpu_ticks(&args.pid);
    tokio::time::sleep(Duration::from_secs(args.measure)).await;
    let ticks_after = cpu_ticks(&args.pid);
    let mut reports = Vec::new();
    for t in tasks {
        reports.push(t.await.context("player task")?);
    }
    let cpu_s = (ticks_after - ticks_before) as f64 / 100.0;
    let failed = reports
        .iter()
        .filter(|r| r.first_keyframe.is_none())
        .count();
    let behind = reports
        .iter()
        .filter(|r| {
            r.first_keyframe.is_none() || r.skips > 0 || r.final_lag.is_none_or(|l| l > 1.0)
        })
        .count();
    let mut ttff: Vec<Duration> = reports.iter().filter_map(|r| r.first_keyframe).collect();
    ttff.sort();
    if let Some(e) = reports.iter().find_map(|r| r.error.as_deref()) {
        eprintln!("{}: first player error: {e}", args.label);
    }
    let player_minutes = args.players as f64 * args.measure as f64 / 60.0;
    println!(
        "RESULT server={} players={} cpu_s={:.2} cpu_core_pct={:.1} cpu_s_per_player_min={:.5} behind={} failed={} ttff_p50_ms={:.0} ttff_p99_ms={:.0}",
        args.label,
        args.players,
        cpu_s,
        cpu_s / args.measure as f64 * 100.0,
        cpu_s / player_minutes,
        behind,
        failed,
        percentile(&ttff, 0.5),
        percentile(&ttff, 0.99),
    );
    Ok(())
}
