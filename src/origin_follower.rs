//! An edge given only the control plane's URL: it learns the origins (their
//! advertised URLs, which streams each carries, their relays' pins) from
//! `GET /origins` and follows changes, so no origin list is copied by hand.

use std::sync::Arc;
use std::time::Duration;

use control_client::ControlClient;
use control_client::types::OriginRow;
use edge_cache::{Origin, Origins, Source};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::relay_role::RelayPull;

/// How often the origin list is read again.
pub const FOLLOW_INTERVAL: Duration = Duration::from_secs(2);

/// Keeps `origins` (and the relay puller's links, when the edge serves
/// RTMP players) in step with the control plane's live origins until
/// `cancel`. An origin that stops beating leaves the HLS list; relay links
/// are only added (a pull in progress keeps its origin's index).
pub async fn follow(
    control: Arc<ControlClient>,
    edge: edge_cache::Edge,
    first_byte: Duration,
    relay: Option<(Arc<relay::Puller>, Arc<relay::Trust>)>,
    cancel: CancellationToken,
) {
    let http = match edge_cache::origin::http_client(first_byte) {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "no HTTP client for origins; not following the control plane");
            return;
        }
    };
    let source = |url: &str| Source::Http {
        base: url.trim_end_matches('/').to_owned(),
        client: http.clone(),
    };
    let mut tick = tokio::time::interval(FOLLOW_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut linked: Vec<String> = Vec::new();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let rows = match control.origins().await {
            Ok(rows) => rows,
            Err(e) => {
                // The last list stays: origins that served still do.
                warn!(error = %e, "reading the origins from the control plane failed");
                continue;
            }
        };
        apply(edge.origins(), &rows, &source);
        if let Some((puller, trust)) = &relay {
            // Pinned before linking (`GET /relay/pins`, read on its own
            // loop, may come later): the list comes from the same API.
            {
                let mut learned = trust.learned.write().unwrap_or_else(|e| e.into_inner());
                for pin in rows.iter().filter_map(|r| r.relay.as_ref()) {
                    if !learned.contains(&pin.fingerprint) {
                        learned.push(pin.fingerprint.clone());
                    }
                }
            }
            let new: Vec<String> = rows
                .iter()
                .filter(|r| r.relay.is_some() && !linked.contains(&r.url))
                .map(|r| r.url.clone())
                .collect();
            if !new.is_empty() {
                match relay::origins(&new, trust.clone()) {
                    Ok(links) => {
                        info!(origins = ?new, "relay origins learnt from the control plane");
                        puller.add_links(links);
                        linked.extend(new);
                    }
                    Err(e) => warn!(error = %e, "cannot open relay links to new origins"),
                }
            }
        }
    }
}

/// Makes `origins` the list `rows` names, each knowing its streams.
fn apply(origins: &Origins, rows: &[OriginRow], source: &dyn Fn(&str) -> Source) {
    // Named as configured origins are: without credentials.
    let names: Vec<String> = rows.iter().map(|r| relay::redacted(&r.url)).collect();
    if origins.names() != names {
        info!(origins = ?names, "origins from the control plane");
    }
    origins.replace(&names, |name| {
        let url = rows
            .iter()
            .find(|r| relay::redacted(&r.url) == name)
            .map_or(name, |r| r.url.as_str());
        Origin::new(name, source(url))
    });
    for r in rows {
        if let Some(o) = origins.get(&relay::redacted(&r.url)) {
            o.set_streams(r.streams.clone());
        }
    }
}

/// Whether the edge follows the control plane instead of a configured list.
pub fn follows_control(config: &crate::config::Config) -> bool {
    config.edge.origins.is_empty() && !config.control.url.is_empty()
}

/// The relay parts [`follow`] updates, from a running pull.
pub fn relay_parts(pull: &RelayPull) -> (Arc<relay::Puller>, Arc<relay::Trust>) {
    (pull.puller.clone(), pull.trust.clone())
}
