//! `ferry serve`: every role in one process on embedded defaults, or the
//! origin roles with `[control] url`. Wiring only: the work is in the crates.

use std::sync::Arc;

use media_core::Hub;
use media_core::auth::mask_key;
use prometheus_client::registry::Registry;
use rtmp::{RtmpMetrics, Server};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Config, StoreKind};
use crate::control_role::open_control;
use crate::http::{self, HttpState};
use crate::http_serve;
use crate::keys;
use crate::node::{self, ControlPlane, NodeInfo};
use crate::rtmp_threads::spawn_rtmp_threads;
pub use crate::running::{Running, StartError};
use crate::running::{bind, connection_caps, prepare, rtmp_server_config, spawn_http};
use crate::services::Services;
use hls::PackagerConfig;
use origin_store::{OriginStore, S3Config};

/// Starts every role of `config` on the current tokio runtime; with
/// `[control] url` set, the origin roles only, asking that control plane.
pub async fn start(config: &Config) -> Result<Running, StartError> {
    let node_id = prepare(config)?;
    let (streams, generated) = keys::streams_or_generated(&config.streams, &config.data_dir)?;
    let (rtmp_listener, rtmp_addr) = bind("rtmp", config.rtmp.listen).await?;
    let (http_listener, http_addr) = bind("http", config.http.listen).await?;

    if generated {
        for s in &streams {
            // Keys are never logged; the operator reads it from the file.
            warn!(
                "no streams configured: created stream {:?}; publish to rtmp://HOST:{}/{}/KEY with the key in {}",
                s.name,
                rtmp_addr.port(),
                config.rtmp.app,
                config.data_dir.join("streams.toml").display()
            );
        }
    } else {
        for s in &streams {
            info!(stream = %s.name, key = %mask_key(&s.key), "stream configured");
        }
    }

    let hub = Hub::new();
    let rtmp_metrics = RtmpMetrics::default();
    let mut registry = Registry::with_prefix("ferry");
    hub.metrics().register(&mut registry);
    rtmp_metrics.register(&mut registry);
    let hls_metrics = origin::HlsMetrics::default();
    hls_metrics.register(&mut registry);
    let live_metrics = origin::LiveMetrics::default();
    live_metrics.register(&mut registry);
    let live = origin::LiveHls::new(
        live_metrics,
        origin::HoldLimits {
            total: config.hls.max_held_requests.max(1),
            per_address: config.hls.max_held_per_address.max(1),
        },
    );
    let ladder_metrics = transcode::LadderMetrics::default();
    ladder_metrics.register(&mut registry);
    let http_metrics = http_serve::HttpMetrics::default();
    http_metrics.register(&mut registry);
    let relay_metrics = relay::RelayMetrics::default();
    relay_metrics.register(&mut registry);
    let autoscale_metrics = control::autoscale::AutoscaleMetrics::default();
    autoscale_metrics.register(&mut registry);
    let (rtmp_cap, http_cap) = connection_caps(config, true);

    // The control plane: in this process, or another one's over HTTP.
    let plane = if config.control.url.is_empty() {
        ControlPlane::Local(
            open_control(
                config,
                Arc::new(hub.clone()),
                rtmp_addr.port(),
                http_addr,
                &streams,
                true,
                autoscale_metrics,
            )
            .await?,
        )
    } else {
        ControlPlane::Remote(Arc::new(
            control_client::ControlClient::new(&config.control.url, &config.admin_token)
                .map_err(|e| StartError::Config(e.to_string()))?,
        ))
    };
    if let Some(control) = plane.local() {
        registry.register_collector(Box::new(control::AudienceCollector(control.nodes.clone())));
    }
    let http_state = Arc::new(HttpState::new(registry, &config.http.metrics_token));
    // Per-stream settings (from the API, as the publish check saw them) over
    // the config file, resolved once per publish for packager and ladder.
    let policies = origin::Policies::new({
        let (config, plane) = (config.clone(), plane.clone());
        Arc::new(move |name: &str| {
            let settings = plane.stream_settings(name);
            origin::StreamPolicy {
                container: config.container_with(name, &settings),
                part_target: config.part_target_with(name, &settings),
                ladder: config.ladder_with(name, &settings),
            }
        })
    });
    let auth = plane.authorizer();
    let server = Server::new(
        rtmp_server_config(config, rtmp_cap),
        hub.clone(),
        auth,
        rtmp_metrics,
    );
    let mut services = Services::new(CancellationToken::new());
    let cancel = services.shutdown().clone();
    let threads = match config.worker_threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let rtmps = crate::rtmps::listen(config).await?;
    let rtmps_addr = rtmps.as_ref().map(|r| r.addr);
    let rtmp_threads = spawn_rtmp_threads(
        &server,
        rtmp_listener,
        rtmps,
        threads,
        &cancel,
        &http_state.runtimes,
    )?;
    let store = match config.store.kind {
        StoreKind::Local => OriginStore::local(&config.data_dir.join("hls")),
        StoreKind::S3 => OriginStore::s3(&S3Config {
            endpoint: config.store.s3_endpoint.clone(),
            bucket: config.store.s3_bucket.clone(),
            region: config.store.s3_region.clone(),
            access_key_id: config.store.s3_access_key_id.clone(),
            secret_access_key: config.store.s3_secret_access_key.clone(),
        }),
    }
    .map_err(StartError::Store)?;
    // The streams packaged here, when this node packages at all.
    let packaging_now = config.hls.enabled.then(origin::Packaging::default);
    if let Some(packaging_now) = &packaging_now {
        let packaging = PackagerConfig {
            target_duration: config.segment_duration(),
            window: config.hls.window.max(1),
            container: config.hls.container.into(),
            aligned: config.hls.aligned_segments,
            ..PackagerConfig::default()
        };
        services.spawn(
            "hls packaging",
            origin::run(origin::HlsOrigin {
                hub: hub.clone(),
                store: store.clone(),
                config: packaging,
                metrics: hls_metrics,
                max_queued: config.hls.upload_queue_segments,
                policies: policies.clone(),
                live: live.clone(),
                packaging: packaging_now.clone(),
                cancel: cancel.clone(),
            }),
        );
        services.spawn(
            "ladders",
            origin::ladders::run(origin::Transcoding {
                hub: hub.clone(),
                policies,
                segment: config.segment_duration(),
                metrics: ladder_metrics,
                cancel: cancel.clone(),
            }),
        );
    }
    // The relay serves the edges this process's control plane (or the
    // remote one) knows; its pin goes out with the heartbeats.
    let relay =
        crate::relay_role::serve_relay(config, &hub, relay_metrics, Some(plane.clone()), &cancel)?;
    services.adopt_all("relay", relay.task);
    let (role, api) = match &plane {
        ControlPlane::Local(control) => {
            if config.control.local_worker {
                let leases = Arc::new(control::leases::LocalLeases {
                    db: control.db.clone(),
                    local: control.local.clone(),
                    nodes: control.nodes.clone(),
                });
                services.spawn(
                    "worker",
                    worker::run(
                        node_id.clone(),
                        leases,
                        worker::Media::Hub(hub.clone()),
                        worker::TaskTypes::builtin(),
                        cancel.clone(),
                    ),
                );
            }
            ("all", control::api::router(control.clone()))
        }
        ControlPlane::Remote(_) => {
            let url = config.control.url.clone();
            let api = axum::Router::new().fallback(move || async move {
                (
                    axum::http::StatusCode::NOT_FOUND,
                    format!("this origin's control plane is at {url}\n"),
                )
            });
            ("origin", api)
        }
    };
    services.spawn(
        "heartbeat",
        node::heartbeat(
            NodeInfo {
                id: node_id.clone(),
                role,
                address: config.http.advertised_url(http_addr),
                edge: None,
                relay: relay.advert.clone(),
                viewers: None,
                audience: Some(node::rtmp_players(&hub)),
            },
            plane.clone(),
            // A remote control plane learns this origin's streams from its
            // beats; the local one reads the hub itself.
            plane.local().is_none().then(|| hub.clone()),
            cancel.clone(),
        ),
    );
    let http_task = spawn_http(
        http_listener,
        http::router(http_state, store, live, packaging_now, api).merge(relay.route),
        config,
        http_cap,
        http_metrics,
        &cancel,
        None,
    );
    services.adopt("http", http_task);
    if let Some(control) = plane.local() {
        services.adopt_all(
            "autoscaler",
            crate::control_role::spawn_autoscaler(control, &cancel),
        );
        services.adopt(
            "history",
            crate::control_role::spawn_history(control, config, &cancel),
        );
        services.adopt(
            "cluster sync",
            crate::control_role::spawn_sync(control, &cancel),
        );
    }
    // A director on a listener of its own, following this process's edges.
    let mut director_addr = None;
    if !config.director.listen.is_empty() {
        let addr: std::net::SocketAddr = config.director.listen.parse().map_err(|e| {
            StartError::Config(format!(
                "[director] listen {:?}: {e}",
                config.director.listen
            ))
        })?;
        let (listener, bound) = bind("director", addr).await?;
        let source = plane.edge_source();
        let beat = crate::director_role::Beat {
            id: format!("{node_id}-director"),
            address: format!("http://{bound}"),
            plane: plane.clone(),
        };
        for (name, task) in
            crate::director_role::serve_director(config, listener, source, beat, &cancel)?
        {
            services.adopt(name, task);
        }
        info!(director = %bound, "director is serving");
        director_addr = Some(bound);
    }
    info!(rtmp = %rtmp_addr, http = %http_addr, "ferry is serving");
    Ok(Running {
        rtmp_addr,
        rtmps_addr,
        http_addr,
        hub,
        services,
        threads: rtmp_threads,
        director_addr,
        drain: None,
    })
}

pub use crate::control_role::start_control;
