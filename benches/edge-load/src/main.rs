//! HTTP load the bench needs and `wrk` does not give: many clients asking for
//! one object at the same instant (time to last byte per client), filling a
//! cache with distinct objects, and holding idle keep-alive connections.
//! Plain HTTP/1.1 over TCP, so it measures the server and not a client stack.

mod audience;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Barrier;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// CLIENTS connections, each asks for PATH at the same instant; prints
    /// p50/p99/max time to last byte and failures.
    Burst {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        path: String,
        #[arg(long, default_value_t = 1000)]
        clients: usize,
    },
    /// Asks for PATTERN with {} replaced by 0..COUNT, one after another.
    Fill {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        pattern: String,
        #[arg(long)]
        count: usize,
    },
    /// VIEWERS LL-HLS viewers of the media playlist PLAYLIST for SECONDS: each
    /// asks for the next part with a blocking reload (`_HLS_msn`,
    /// `_HLS_part` from the preload hint), then fetches that part; prints
    /// playlists and parts received per second and failures.
    Ll {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        playlist: String,
        #[arg(long, default_value_t = 1000)]
        viewers: usize,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
    /// A synthetic audience through DIRECTOR along SCHEDULE
    /// (`SECOND:VIEWERS,...`, linear in between), with the farm's timeline
    /// from CONTROL's API (autoscale bench).
    Audience {
        #[arg(long)]
        director: SocketAddr,
        #[arg(long)]
        control: SocketAddr,
        #[arg(long)]
        token: String,
        #[arg(long)]
        stream: String,
        #[arg(long)]
        schedule: String,
    },
    /// Opens CONNECTIONS keep-alive connections, one GET of PATH each, holds
    /// them idle for SECONDS and prints how many were still open.
    Idle {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        path: String,
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

/// Sends one GET on `s` and reads the response; returns the body length.
async fn get(s: &mut TcpStream, path: &str) -> anyhow::Result<usize> {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").as_bytes())
        .await?;
    let mut buf = Vec::with_capacity(16 << 10);
    let mut chunk = vec![0u8; 64 << 10];
    let (head_end, length) = loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("closed before the head");
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..p]).to_ascii_lowercase();
            if !head.starts_with("http/1.1 200") {
                bail!("{}", head.lines().next().unwrap_or(""));
            }
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .context("no content-length")?;
            break (p + 4, length);
        }
    };
    let mut have = buf.len() - head_end;
    while have < length {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("closed mid-body");
        }
        have += n;
    }
    Ok(length)
}

/// Sends one GET on `s` and returns the status and body (Content-Length
/// bodies only, which is what Ferry sends for playlists and parts).
async fn get_body(s: &mut TcpStream, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
    request(s, path, None).await
}

/// [`get_body`] with an optional bearer token (the control API's).
pub(crate) async fn request(
    s: &mut TcpStream,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<(u16, Vec<u8>)> {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: bench\r\n{auth}\r\n").as_bytes())
        .await?;
    let mut buf = Vec::with_capacity(16 << 10);
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..p]).to_ascii_lowercase();
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .context("no status")?;
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .context("no content-length")?;
            let mut body = buf.split_off(p + 4);
            while body.len() < length {
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    bail!("closed mid-body");
                }
                body.extend_from_slice(&chunk[..n]);
            }
            body.truncate(length);
            return Ok((status, body));
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("closed before the head");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The preload hint of an LL-HLS playlist: its URI, media sequence number
/// and part index (`NAME-12.3.m4s`).
fn preload_hint(playlist: &str) -> Option<(String, u64, u64)> {
    let line = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:"))?;
    let uri = line.split("URI=\"").nth(1)?.split('"').next()?.to_owned();
    let (seg, part) = uri.strip_suffix(".m4s")?.rsplit_once('.')?;
    let msn = seg.rsplit(['-', '/']).next()?.parse().ok()?;
    Some((uri.clone(), msn, part.parse().ok()?))
}

/// One LL-HLS viewer until `until`: (playlists, parts) received.
async fn ll_viewer(addr: SocketAddr, playlist: &str, until: Instant) -> anyhow::Result<(u64, u64)> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let dir = playlist.rsplit_once('/').map_or("", |(d, _)| d).to_owned();
    let (status, body) = get_body(&mut s, playlist).await?;
    if status != 200 {
        bail!("playlist: status {status}");
    }
    let mut hint = preload_hint(&String::from_utf8_lossy(&body)).context("no preload hint")?;
    let (mut playlists, mut parts) = (1, 0);
    while Instant::now() < until {
        let (uri, msn, part) = &hint;
        let (status, body) = get_body(
            &mut s,
            &format!("{playlist}?_HLS_msn={msn}&_HLS_part={part}"),
        )
        .await?;
        if status != 200 {
            bail!("blocking reload: status {status}");
        }
        playlists += 1;
        let (status, _) = get_body(&mut s, &format!("{dir}/{uri}")).await?;
        if status != 200 {
            bail!("part {uri}: status {status}");
        }
        parts += 1;
        hint = preload_hint(&String::from_utf8_lossy(&body)).context("no preload hint")?;
    }
    Ok((playlists, parts))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Audience {
            director,
            control,
            token,
            stream,
            schedule,
        } => {
            let schedule = audience::parse_schedule(&schedule)?;
            audience::run(director, control, &token, &stream, &schedule).await?;
        }
        Command::Burst {
            addr,
            path,
            clients,
        } => {
            let barrier = Arc::new(Barrier::new(clients));
            let mut tasks = Vec::with_capacity(clients);
            for _ in 0..clients {
                let (barrier, path) = (barrier.clone(), path.clone());
                tasks.push(tokio::spawn(async move {
                    let mut s = TcpStream::connect(addr).await?;
                    s.set_nodelay(true)?;
                    barrier.wait().await;
                    let t = Instant::now();
                    get(&mut s, &path).await?;
                    anyhow::Ok(t.elapsed())
                }));
            }
            let mut times = Vec::new();
            let mut failed = 0;
            for t in tasks {
                match t.await? {
                    Ok(d) => times.push(d),
                    Err(_) => failed += 1,
                }
            }
            times.sort();
            println!(
                "burst clients={clients} ok={} failed={failed} p50_ms={:.1} p99_ms={:.1} max_ms={:.1}",
                times.len(),
                percentile(&times, 0.5).as_secs_f64() * 1e3,
                percentile(&times, 0.99).as_secs_f64() * 1e3,
                times.last().copied().unwrap_or_default().as_secs_f64() * 1e3
            );
        }
        Command::Ll {
            addr,
            playlist,
            viewers,
            seconds,
        } => {
            let started = Instant::now();
            let until = started + Duration::from_secs(seconds);
            let tasks: Vec<_> = (0..viewers)
                .map(|_| {
                    let playlist = playlist.clone();
                    tokio::spawn(async move { ll_viewer(addr, &playlist, until).await })
                })
                .collect();
            let (mut playlists, mut parts, mut failed) = (0, 0, 0);
            let mut first_error = None;
            for t in tasks {
                match t.await? {
                    Ok((p, q)) => {
                        playlists += p;
                        parts += q;
                    }
                    Err(e) => {
                        failed += 1;
                        first_error.get_or_insert(e.to_string());
                    }
                }
            }
            let secs = started.elapsed().as_secs_f64();
            println!(
                "ll viewers={viewers} failed={failed} playlists_per_s={:.1} parts_per_s={:.1}{}",
                playlists as f64 / secs,
                parts as f64 / secs,
                first_error.map_or(String::new(), |e| format!(" first_error={e:?}"))
            );
        }
        Command::Fill {
            addr,
            pattern,
            count,
        } => {
            let mut s = TcpStream::connect(addr).await?;
            let mut bytes = 0;
            for i in 0..count {
                bytes += get(&mut s, &pattern.replace("{}", &i.to_string())).await?;
            }
            println!("fill objects={count} bytes={bytes}");
        }
        Command::Idle {
            addr,
            path,
            connections,
            seconds,
        } => {
            let mut open = Vec::with_capacity(connections);
            for _ in 0..connections {
                let mut s = TcpStream::connect(addr).await?;
                get(&mut s, &path).await?;
                open.push(s);
            }
            println!("idle opened={connections}");
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            let mut alive = 0;
            for s in &mut open {
                let mut b = [0u8; 1];
                // Still open: nothing to read yet (no EOF, no error).
                if tokio::time::timeout(Duration::from_millis(1), s.read(&mut b))
                    .await
                    .is_err()
                {
                    alive += 1;
                }
            }
            println!("idle alive={alive}");
        }
    }
    Ok(())
}
