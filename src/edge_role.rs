//! `ferry edge`: an HLS caching edge in front of one or more origins.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use edge_cache::{Edge, EdgeLimits, EdgeMetrics, Origin, Origins, Source};
use media_core::Hub;
use origin_store::{OriginStore, S3Config};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::Config;
use crate::http::{self, HttpState};
use crate::http_serve;
use crate::node::{self, ControlPlane, NodeInfo};
use crate::rtmp_threads::spawn_rtmp_threads;
use crate::running::{
    Running, StartError, bind, connection_caps, prepare, rtmp_server_config, spawn_http,
};
use crate::services::Services;

/// How often pending evictions run, the memory gauge is updated and free
/// heap pages go back to the kernel.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);

/// Starts an edge serving `/hls/...` from `[edge] origins` on `[http] listen`.
pub async fn start_edge(config: &Config) -> Result<Running, StartError> {
    let node_id = prepare(config)?;
    let follows = crate::origin_follower::follows_control(config);
    config.edge.validate(follows).map_err(StartError::Config)?;
    let origins = origins(config)?;
    let mut services = Services::new(CancellationToken::new());
    let cancel = services.shutdown().clone();
    let (listener, http_addr) = bind("http", config.http.listen).await?;
    let e = &config.edge;
    let metrics = EdgeMetrics::default();
    let first_byte = Duration::from_millis(e.first_byte_timeout_ms);
    let limits = EdgeLimits {
        memory_bytes: e.memory_bytes,
        max_object_bytes: e.max_object_bytes,
        max_fills: e.max_fills,
        max_blocking_fills: e.max_blocking_fills,
        max_blocking_fills_per_stream: e.max_blocking_fills_per_stream,
        max_fills_per_client: e.max_fills_per_client,
        streaming_bytes: e.streaming_bytes,
        body_timeout: Duration::from_millis(e.body_timeout_ms),
        // Every origin in turn, plus a little for the answer to travel.
        // (Followed from control: two, as a redundant pair.)
        head_wait: first_byte
            * u32::try_from(if follows { 2 } else { origins.len() }).unwrap_or(u32::MAX)
            + Duration::from_millis(500),
    };
    let trusted = e
        .trusted_clients
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    let mut edge = Edge::new(origins, e.freshness(), limits, metrics.clone()).with_trusted(trusted);
    if e.disk_bytes > 0 {
        let dir = config.data_dir.join("edge-cache");
        let disk = edge_cache::disk::DiskTier::open(&dir, e.disk_bytes, metrics.evictions.clone())
            .map_err(|source| StartError::DataDir {
                path: dir.display().to_string(),
                source,
            })?;
        edge = edge.with_disk(disk);
    }
    let housekeeping = {
        let (edge, cancel) = (edge.clone(), cancel.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HOUSEKEEPING_INTERVAL);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tick.tick() => {
                        edge.memory_bytes();
                        crate::allocator::release_free_pages();
                    }
                }
            }
        })
    };
    let mut registry = Registry::with_prefix("ferry");
    metrics.register(&mut registry);
    let http_metrics = http_serve::HttpMetrics::default();
    http_metrics.register(&mut registry);
    let hub = Hub::new();
    let rtmp = if e.rtmp {
        let (listener, addr) = bind("rtmp", config.rtmp.listen).await?;
        let rtmp_metrics = rtmp::RtmpMetrics::default();
        rtmp_metrics.register(&mut registry);
        hub.metrics().register(&mut registry);
        let relay_metrics = relay::RelayMetrics::default();
        relay_metrics.register(&mut registry);
        Some((listener, addr, rtmp_metrics, relay_metrics))
    } else {
        None
    };
    let state = Arc::new(HttpState::new(registry, &config.http.metrics_token));
    let edge_handle = edge.clone();
    let hits = edge_cache::h1::HitPath::new(edge.clone());
    let router = edge_cache::router(edge, &e.purge_token).merge(http::ops_router(state.clone()));
    let (rtmp_cap, http_cap) = connection_caps(config, e.rtmp);
    let control = if config.control.url.is_empty() {
        None
    } else {
        Some(Arc::new(
            control_client::ControlClient::new(&config.control.url, &config.admin_token)
                .map_err(|e| StartError::Config(format!("[control] url: {e}")))?,
        ))
    };
    let mut threads = Vec::new();
    let mut rtmp_addr = None;
    let mut relay_pull = None;
    if let Some((listener, addr, rtmp_metrics, relay_metrics)) = rtmp {
        // Players only: an edge takes no publishers (they go to an origin).
        let server = rtmp::Server::new(
            rtmp_server_config(config, rtmp_cap),
            hub.clone(),
            Arc::new(media_core::auth::StaticKeys::default()),
            rtmp_metrics,
        );
        let count = match config.worker_threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let pull =
            crate::relay_role::pull_relay(config, &hub, relay_metrics, control.clone(), &cancel)?;
        relay_pull = Some(crate::origin_follower::relay_parts(&pull));
        services.adopt_all("relay pull", pull.tasks);
        // The puller listens for players (above) before the first one can come.
        threads = spawn_rtmp_threads(&server, listener, None, count, &cancel, &state.runtimes)?;
        rtmp_addr = Some(addr);
    }
    services.adopt("edge housekeeping", housekeeping);
    services.adopt(
        "http",
        spawn_http(
            listener,
            router,
            config,
            http_cap,
            http_metrics.clone(),
            &cancel,
            Some(hits),
        ),
    );
    if follows && let Some(client) = &control {
        services.spawn(
            "origin follower",
            crate::origin_follower::follow(
                client.clone(),
                edge_handle.clone(),
                first_byte,
                relay_pull,
                cancel.clone(),
            ),
        );
    }
    let draining = Arc::new(AtomicBool::new(false));
    if let Some(client) = control {
        let address = if !e.public_url.is_empty() {
            e.public_url.clone()
        } else if !config.http.public_url.is_empty() {
            config.http.advertised_url(http_addr)
        } else {
            format!("http://{http_addr}")
        };
        services.spawn(
            "heartbeat",
            node::heartbeat(
                NodeInfo {
                    id: node_id,
                    role: "edge",
                    address,
                    edge: Some(load_report(
                        e.capacity,
                        e.pool.clone(),
                        metrics.clone(),
                        http_metrics.clone(),
                        draining.clone(),
                    )),
                    relay: None,
                    viewers: None,
                    audience: Some(edge_audience(
                        edge_handle.traffic().clone(),
                        e.rtmp.then(|| node::rtmp_players(&hub)),
                    )),
                },
                ControlPlane::Remote(client),
                None,
                cancel.clone(),
            ),
        );
    }
    info!(http = %http_addr, rtmp = ?rtmp_addr, origins = ?e.origins, "ferry edge is serving");
    let mut running = Running::http_only(http_addr, hub, services);
    running.drain = Some((draining, Duration::from_secs(e.drain_seconds)));
    if let Some(addr) = rtmp_addr {
        running.rtmp_addr = addr;
        running.threads = threads;
    }
    Ok(running)
}

/// The configured origins: HTTP base URLs, or `s3://BUCKET` with `[store]`'s
/// endpoint and credentials.
fn origins(config: &Config) -> Result<Origins, StartError> {
    let first_byte = Duration::from_millis(config.edge.first_byte_timeout_ms);
    let client = edge_cache::origin::http_client(first_byte)
        .map_err(|e| StartError::Config(format!("origin HTTP client: {e}")))?;
    let mut list = Vec::new();
    // `rtmp://` origins feed RTMP players only (see `relay_role`).
    for url in config
        .edge
        .origins
        .iter()
        .filter(|u| !u.starts_with("rtmp://"))
    {
        let source = match url.strip_prefix("s3://") {
            Some(bucket) => {
                let s = &config.store;
                Source::Store(
                    OriginStore::s3(&S3Config {
                        endpoint: s.s3_endpoint.clone(),
                        bucket: bucket.trim_end_matches('/').to_owned(),
                        region: s.s3_region.clone(),
                        access_key_id: s.s3_access_key_id.clone(),
                        secret_access_key: s.s3_secret_access_key.clone(),
                    })
                    .map_err(StartError::Store)?,
                )
            }
            None => Source::Http {
                base: url.trim_end_matches('/').to_owned(),
                client: client.clone(),
            },
        };
        // Named without credentials: the name is a public metric label.
        list.push(Origin::new(relay::redacted(url), source));
    }
    Ok(Origins::new(list, first_byte))
}

/// What the edge reports with each heartbeat: connections now, and egress
/// and hit ratio since the previous report.
fn load_report(
    capacity: u32,
    pool: String,
    edge: EdgeMetrics,
    http: http_serve::HttpMetrics,
    draining: Arc<AtomicBool>,
) -> node::EdgeReport {
    let last = std::sync::Mutex::new((std::time::Instant::now(), 0u64, 0u64, 0u64));
    Arc::new(move || {
        let now = std::time::Instant::now();
        let bytes = edge.bytes_out.get();
        let hits = edge.hits.get() + edge.disk_hits.get() + edge.stale.get();
        let all = hits + edge.misses.get() + edge.collapsed.get();
        let mut l = last.lock().unwrap_or_else(|e| e.into_inner());
        let (then, bytes0, hits0, all0) = *l;
        *l = (now, bytes, hits, all);
        let seconds = now.duration_since(then).as_secs_f64().max(0.001);
        let asked = all.saturating_sub(all0);
        control_client::types::EdgeLoad {
            capacity: capacity.max(1),
            connections: u64::try_from(http.connections.get()).unwrap_or(0),
            egress_bps: (bytes.saturating_sub(bytes0) as f64 * 8.0 / seconds) as u64,
            hit_ratio: if asked == 0 {
                1.0
            } else {
                hits.saturating_sub(hits0) as f64 / asked as f64
            },
            draining: draining.load(Ordering::Relaxed),
            requests: asked,
            pool: pool.clone(),
        }
    })
}

/// An edge's audience per stream: the HLS requests and bytes it served
/// (cumulative; control takes rates from them), and its RTMP players when
/// it serves RTMP.
fn edge_audience(
    traffic: edge_cache::StreamTraffic,
    rtmp: Option<node::AudienceReport>,
) -> node::AudienceReport {
    Arc::new(move || {
        let mut out = rtmp.as_ref().map(|r| r()).unwrap_or_default();
        let mut totals = traffic.totals();
        // The busiest first, as many as control takes.
        totals.sort_by_key(|t| std::cmp::Reverse(t.1));
        for (stream, requests, bytes) in totals {
            let room = out.len() < control::api::MAX_HEARTBEAT_STREAMS || out.contains_key(&stream);
            // Control takes stream names only (a cached object of another
            // name is not a stream's).
            if !room || !media_core::path::valid_name(&stream) {
                continue;
            }
            let a = out.entry(stream).or_default();
            a.requests = requests;
            a.egress_bytes = bytes;
        }
        out
    })
}
