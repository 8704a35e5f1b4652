//! A synthetic audience through a director, following a schedule of viewer
//! counts, while the autoscaler grows and shrinks the farm: every viewer
//! reloads its media playlist each second and fetches the newest segment
//! from the edge the playlist names. Prints a timeline (viewers, farm,
//! per-edge viewers, decisions) and the figures the autoscale bench reports.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::net::TcpStream;

/// What the audience saw.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    /// (edge, segment) pairs fetched, and when: origin fetches per segment.
    fetched: Mutex<Vec<(String, String, Instant)>>,
}

/// Keep-alive connections per host, as a player's HTTP stack keeps them:
/// a request on a reused connection that fails before any answer is sent
/// again once on a fresh one (the server may have closed it while idle).
#[derive(Default)]
struct Pool(HashMap<SocketAddr, TcpStream>);

impl Pool {
    async fn get(&mut self, url: &str) -> anyhow::Result<(u16, Vec<u8>)> {
        let rest = url.strip_prefix("http://").context("http:// only")?;
        let (host, path) = rest.split_once('/').context("no path")?;
        let addr: SocketAddr = host.parse().context("host:port")?;
        let path = format!("/{path}");
        if let Some(mut s) = self.0.remove(&addr)
            && let Ok(answer) = crate::request(&mut s, &path, None).await
        {
            self.0.insert(addr, s);
            return Ok(answer);
        }
        let mut s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let answer = crate::request(&mut s, &path, None).await?;
        self.0.insert(addr, s);
        Ok(answer)
    }
}

async fn viewer(director: SocketAddr, stream: String, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let mut pool = Pool::default();
    let get = async |pool: &mut Pool, url: String| -> Option<Vec<u8>> {
        match pool.get(&url).await {
            Ok((200, body)) => {
                tally.ok.fetch_add(1, Ordering::Relaxed);
                Some(body)
            }
            Ok((status, _)) => {
                eprintln!("viewer: {url}: {status}");
                tally.failed.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(e) => {
                eprintln!("viewer: {url}: {e}");
                tally.failed.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    };
    let Some(master) = get(
        &mut pool,
        format!("http://{director}/hls/{stream}/master.m3u8"),
    )
    .await
    else {
        return;
    };
    let master = String::from_utf8_lossy(&master).into_owned();
    let Some(variant) = master
        .lines()
        .find(|l| !l.starts_with('#') && !l.is_empty())
        .map(str::to_owned)
    else {
        return;
    };
    let mut last = String::new();
    while !stop.load(Ordering::Relaxed) {
        let url = format!("http://{director}/hls/{stream}/{variant}");
        if let Some(media) = get(&mut pool, url).await {
            let media = String::from_utf8_lossy(&media).into_owned();
            if let Some(uri) = media
                .lines()
                .rfind(|l| !l.starts_with('#') && !l.is_empty())
                && uri != last
            {
                last = uri.to_owned();
                if get(&mut pool, last.clone()).await.is_some() {
                    let host = last.split('/').nth(2).unwrap_or("").to_owned();
                    let name = last.rsplit('/').next().unwrap_or("").to_owned();
                    if let Ok(mut f) = tally.fetched.lock() {
                        f.push((host, name, Instant::now()));
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Viewers wanted at second `t` of a schedule of `(second, viewers)`
/// points, linear in between.
fn wanted(schedule: &[(u64, usize)], t: f64) -> usize {
    let mut prev = (0u64, 0usize);
    for &(s, v) in schedule {
        if t < s as f64 {
            let span = (s - prev.0) as f64;
            let f = if span > 0.0 {
                (t - prev.0 as f64) / span
            } else {
                1.0
            };
            return (prev.1 as f64 + (v as f64 - prev.1 as f64) * f).round() as usize;
        }
        prev = (s, v);
    }
    prev.1
}

/// `0:0,30:60,90:60,100:2` as points.
pub fn parse_schedule(s: &str) -> anyhow::Result<Vec<(u64, usize)>> {
    s.split(',')
        .map(|p| {
            let (t, v) = p.split_once(':').context("SECOND:VIEWERS")?;
            Ok((t.trim().parse()?, v.trim().parse()?))
        })
        .collect()
}

async fn control_get(
    control: SocketAddr,
    token: &str,
    path: &str,
) -> anyhow::Result<serde_json::Value> {
    let mut s = TcpStream::connect(control).await?;
    let (status, body) = crate::request(&mut s, &format!("/api/v1{path}"), Some(token)).await?;
    if status != 200 {
        bail!("{path}: {status}");
    }
    Ok(serde_json::from_slice(&body)?)
}

/// Runs the audience along `schedule`, printing a line a second.
pub async fn run(
    director: SocketAddr,
    control: SocketAddr,
    token: &str,
    stream: &str,
    schedule: &[(u64, usize)],
) -> anyhow::Result<()> {
    let tally = Arc::new(Tally::default());
    let start = Instant::now();
    let end = schedule.last().map_or(0, |p| p.0);
    let mut audience: Vec<Arc<AtomicBool>> = Vec::new();
    // When each edge first appeared and first carried viewers.
    let mut appeared: BTreeMap<String, f64> = BTreeMap::new();
    let mut serving: BTreeMap<String, f64> = BTreeMap::new();
    let mut peak = 0;
    let mut over_target_seconds = 0u64;
    let mut over_capacity_seconds = 0u64;
    let mut mean_over_seconds = 0u64;
    let mut step_at: Option<f64> = None;
    let mut growth: Option<(f64, f64)> = None;
    let mut last_farm = 0;
    while start.elapsed().as_secs() <= end {
        let t = start.elapsed().as_secs_f64();
        let want = wanted(schedule, t);
        if step_at.is_none() && want > 0 && last_farm > 0 && want > last_farm * 4 {
            step_at = Some(t);
        }
        while audience.len() < want {
            let stop = Arc::new(AtomicBool::new(false));
            tokio::spawn(viewer(
                director,
                stream.to_owned(),
                stop.clone(),
                tally.clone(),
            ));
            audience.push(stop);
        }
        while audience.len() > want {
            if let Some(stop) = audience.pop() {
                stop.store(true, Ordering::Relaxed);
            }
        }
        let status = control_get(control, token, "/autoscale")
            .await
            .unwrap_or_default();
        let edges = control_get(control, token, "/edges")
            .await
            .unwrap_or_default();
        let mut line = Vec::new();
        let mut any_over = false;
        let mut any_over_capacity = false;
        let (mut live_viewers, mut live_capacity) = (0u64, 0u64);
        for e in edges.as_array().into_iter().flatten() {
            let (id, state) = (
                e["id"].as_str().unwrap_or(""),
                e["state"].as_str().unwrap_or(""),
            );
            if state == "dead" {
                continue;
            }
            let v = e["viewers"].as_u64().unwrap_or(0);
            let cap = e["load"]["capacity"].as_u64().unwrap_or(1).max(1);
            if state == "live" {
                any_over |= v as f64 > 0.8 * cap as f64 * 1.1;
                any_over_capacity |= v > cap;
                live_viewers += v;
                live_capacity += cap;
            }
            appeared.entry(id.to_owned()).or_insert(t);
            if v > 0 {
                serving.entry(id.to_owned()).or_insert(t);
            }
            line.push(format!(
                "{}:{}{v}",
                id.rsplit('-').next().unwrap_or(id),
                &state[..1]
            ));
        }
        over_target_seconds += u64::from(any_over);
        over_capacity_seconds += u64::from(any_over_capacity);
        mean_over_seconds +=
            u64::from(live_capacity > 0 && live_viewers as f64 > 0.8 * 1.1 * live_capacity as f64);
        let current = status["current"].as_u64().unwrap_or(0);
        peak = peak.max(current);
        last_farm = usize::try_from(current).unwrap_or(0);
        let reason = status["decisions"]
            .as_array()
            .and_then(|d| d.last())
            .and_then(|d| d["reason"].as_str())
            .unwrap_or("-")
            .to_owned();
        if let Some(at) = step_at
            && growth.is_none()
            && status["current"] == status["desired"]
            && status["starting"].as_array().is_some_and(Vec::is_empty)
            && current > 1
        {
            growth = Some((at, t));
        }
        println!(
            "{t:6.1}s viewers {want:4} farm {current:2} → {:2} {reason:<18} ok {:6} failed {} [{}]",
            status["desired"].as_u64().unwrap_or(0),
            tally.ok.load(Ordering::Relaxed),
            tally.failed.load(Ordering::Relaxed),
            line.join(" ")
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for stop in &audience {
        stop.store(true, Ordering::Relaxed);
    }
    let fetched = tally.fetched.lock().map(|f| f.clone()).unwrap_or_default();
    let during = |from: f64, to: f64| {
        let mut pairs = HashSet::new();
        let mut segments = HashSet::new();
        for (h, s, at) in &fetched {
            let at = at.duration_since(start).as_secs_f64();
            if (from..to).contains(&at) {
                pairs.insert((h.clone(), s.clone()));
                segments.insert(s.clone());
            }
        }
        pairs.len() as f64 / segments.len().max(1) as f64
    };
    let starts: Vec<f64> = appeared
        .iter()
        .filter_map(|(id, a)| serving.get(id).map(|s| s - a))
        .filter(|d| *d > 0.0)
        .collect();
    println!("---");
    println!("peak edges: {peak}");
    println!(
        "failed viewer requests: {} of {}",
        tally.failed.load(Ordering::Relaxed),
        tally.ok.load(Ordering::Relaxed) + tally.failed.load(Ordering::Relaxed)
    );
    if let Some((at, done)) = growth {
        println!(
            "load step at {at:.0} s: farm settled at the size it needs after {:.1} s",
            done - at
        );
        println!(
            "origin fetches per segment during growth: {:.2}",
            during(at, done + 10.0)
        );
    }
    if !starts.is_empty() {
        let mean = starts.iter().sum::<f64>() / starts.len() as f64;
        let max = starts.iter().copied().fold(0.0, f64::max);
        println!(
            "new edge reporting → taking viewers: mean {mean:.1} s, max {max:.1} s over {} edges",
            starts.len()
        );
    }
    println!("seconds with the farm's mean above 110 % of the viewer target: {mean_over_seconds}");
    println!("seconds with an edge above 110 % of its viewer target: {over_target_seconds}");
    println!("seconds with an edge above its capacity: {over_capacity_seconds}");
    println!(
        "origin fetches per segment over the run: {:.2}",
        during(0.0, f64::MAX)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_linear_between_points() {
        let s = parse_schedule("0:0,10:100,20:100,30:0").expect("parses");
        assert_eq!(wanted(&s, 0.0), 0);
        assert_eq!(wanted(&s, 5.0), 50);
        assert_eq!(wanted(&s, 15.0), 100);
        assert_eq!(wanted(&s, 29.0), 10);
        assert_eq!(wanted(&s, 99.0), 0);
        assert!(parse_schedule("0-0").is_err());
    }
}
