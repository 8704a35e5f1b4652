//! The relay in each role: an origin serves its hub's streams to edges over
//! QUIC, to edges whose token it knows; an edge with RTMP players pulls
//! streams from its origins, trusting the certificates the control plane
//! lists (or `[relay] pins`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use control_client::types::RelayAdvert;
use media_core::Hub;
use relay::{Puller, RelayAuth, RelayInfo, RelayMetrics, RelayServer, Trust};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::node::ControlPlane;
use crate::running::StartError;

/// How long the control plane's word on an edge token is kept.
pub const VERDICT_TTL: Duration = Duration::from_secs(30);
/// Verdicts kept at most (the oldest are dropped past it).
pub const MAX_VERDICTS: usize = 10_000;
/// How often an edge asks the control plane for its origins' pins.
pub const PINS_INTERVAL: Duration = Duration::from_secs(5);

/// A started relay: its task, the `GET /relay` route, what to report.
pub(crate) struct ServedRelay {
    pub task: Option<JoinHandle<()>>,
    pub route: Router,
    pub advert: Option<RelayAdvert>,
}

/// Starts `[relay] listen` (if set), serving edges whose token is in
/// `[relay] edge_tokens` or that `control` knows.
pub(crate) fn serve_relay(
    config: &Config,
    hub: &Hub,
    metrics: RelayMetrics,
    control: Option<ControlPlane>,
    cancel: &CancellationToken,
) -> Result<ServedRelay, StartError> {
    if config.relay.listen.is_empty() {
        return Ok(ServedRelay {
            task: None,
            route: Router::new(),
            advert: None,
        });
    }
    let addr: std::net::SocketAddr = config.relay.listen.parse().map_err(|e| {
        StartError::Config(format!("[relay] listen {:?}: {e}", config.relay.listen))
    })?;
    let identity = relay::tls::Identity::load_or_create(&config.data_dir)
        .map_err(|e| StartError::Config(e.to_string()))?;
    let auth = edge_auth(&config.relay.edge_tokens, control);
    let server = RelayServer::bind(
        addr,
        &identity,
        hub.clone(),
        metrics,
        config.relay.limits(),
        auth,
    )
    .map_err(|e| StartError::Config(e.to_string()))?;
    let bound = server.local_addr().map_err(|source| StartError::Bind {
        what: "relay",
        addr,
        source,
    })?;
    let info = Arc::new(RelayInfo::new(bound.port(), &identity));
    info!(relay = %bound, fingerprint = %info.fingerprint, "relay is serving");
    let advert = RelayAdvert {
        port: bound.port(),
        fingerprint: info.fingerprint.to_ascii_lowercase(),
    };
    let task = tokio::spawn(server.run(cancel.clone()));
    let route = Router::new().route(
        "/relay",
        get(move || {
            let info = info.clone();
            async move { axum::Json((*info).clone()) }
        }),
    );
    Ok(ServedRelay {
        task: Some(task),
        route,
        advert: Some(advert),
    })
}

/// The control plane's recent answers, by token digest: (known, when).
type Verdicts = HashMap<[u8; 32], (bool, Instant)>;

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Accepts a token in `fixed` (compared by digest, in constant time), or one
/// the control plane calls an edge's (or an admin's), asked at most once per
/// [`VERDICT_TTL`].
fn edge_auth(fixed: &[String], control: Option<ControlPlane>) -> RelayAuth {
    let fixed: Arc<Vec<[u8; 32]>> = Arc::new(fixed.iter().map(|t| digest(t)).collect());
    let verdicts: Arc<Mutex<Verdicts>> = Arc::default();
    Arc::new(move |token: String| {
        let (fixed, control, verdicts) = (fixed.clone(), control.clone(), verdicts.clone());
        Box::pin(async move {
            if token.is_empty() {
                return false;
            }
            let d = digest(&token);
            if fixed.iter().fold(false, |hit, f| {
                hit | media_core::auth::constant_time_eq(f, &d)
            }) {
                return true;
            }
            {
                let v = verdicts.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((ok, at)) = v.get(&d)
                    && at.elapsed() < VERDICT_TTL
                {
                    return *ok;
                }
            }
            let ok = match &control {
                None => false,
                Some(ControlPlane::Local(c)) => c.may_relay(&token).await.unwrap_or(false),
                Some(ControlPlane::Remote(client)) => match client.verify_edge(&token).await {
                    Ok(ok) => ok,
                    Err(e) => {
                        warn!(error = %e, "the control plane could not check an edge's token");
                        return false;
                    }
                },
            };
            let mut v = verdicts.lock().unwrap_or_else(|e| e.into_inner());
            if v.len() >= MAX_VERDICTS {
                v.retain(|_, (_, at)| at.elapsed() < VERDICT_TTL);
                if v.len() >= MAX_VERDICTS {
                    v.clear();
                }
            }
            v.insert(d, (ok, Instant::now()));
            ok
        })
    })
}

/// The edge's puller over `[edge] origins` (Ferry origins by HTTP URL,
/// foreign ones by `rtmp://` URL), feeding `hub` whenever a player asks;
/// with `control`, the origins' pins are learnt from it and kept current.
pub(crate) fn pull_relay(
    config: &Config,
    hub: &Hub,
    metrics: RelayMetrics,
    control: Option<Arc<control_client::ControlClient>>,
    cancel: &CancellationToken,
) -> Result<RelayPull, StartError> {
    let token = if config.relay.token.is_empty() {
        config.admin_token.clone()
    } else {
        config.relay.token.clone()
    };
    let trust = Arc::new(Trust {
        fixed: config.relay.pins.clone(),
        learned: Default::default(),
        trust_http: config.relay.trust_http,
        token,
    });
    let links =
        relay::origins(&config.edge.origins, trust.clone()).map_err(|source| StartError::Bind {
            what: "relay client",
            addr: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
    if links.is_empty() && control.is_none() {
        return Err(StartError::Config(
            "[edge] rtmp needs an origin to pull from: http://HOST:PORT of a Ferry origin with a relay, or rtmp://HOST[:PORT]/APP".into(),
        ));
    }
    let mut tasks = Vec::new();
    if let Some(client) = control {
        let cancel = cancel.clone();
        let trust = trust.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(PINS_INTERVAL);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    _ = tick.tick() => {}
                }
                match client.relay_pins().await {
                    Ok(pins) => trust.learn(pins),
                    // The last pins stay: an origin that was trusted still is.
                    Err(e) => warn!(error = %e, "reading relay pins from the control plane failed"),
                }
            }
        }));
    }
    let puller = Puller::new(hub.clone(), links, config.relay.pull(), metrics);
    tasks.push(tokio::spawn(puller.clone().run(cancel.clone())));
    Ok(RelayPull {
        tasks,
        puller,
        trust,
    })
}

/// The edge's relay puller, running.
pub(crate) struct RelayPull {
    /// Its tasks.
    pub tasks: Vec<JoinHandle<()>>,
    /// The puller, to add origins the control plane reports later.
    pub puller: Arc<Puller>,
    /// What its links trust, for links made later.
    pub trust: Arc<Trust>,
}
