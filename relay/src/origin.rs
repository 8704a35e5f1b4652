//! The origins an edge pulls from: Ferry origins over the QUIC relay, or
//! foreign RTMP servers played like any player.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::RelayMetrics;
use crate::foreign::ForeignOrigin;
use crate::frame::Frame;
use crate::link::{FrameReader, LinkError, OriginLink};

/// One origin, as configured.
pub enum Origin {
    /// A Ferry origin, by its HTTP base URL.
    Relay(OriginLink),
    /// A foreign RTMP server, `rtmp://HOST[:PORT]/APP`.
    Rtmp(ForeignOrigin),
}

impl Origin {
    /// As configured; names the origin in logs and metrics.
    pub fn name(&self) -> &str {
        match self {
            Origin::Relay(l) => &l.name,
            Origin::Rtmp(f) => &f.name,
        }
    }

    /// Starts reading `name` from this origin.
    pub(crate) async fn open(
        &self,
        name: &str,
        metrics: &RelayMetrics,
    ) -> Result<Reader, LinkError> {
        match self {
            Origin::Relay(l) => l.open(name, metrics).await.map(Reader::Relay),
            Origin::Rtmp(f) => f.open(name, metrics).await.map(Reader::Rtmp),
        }
    }
}

/// Frames of one stream from one origin.
pub(crate) enum Reader {
    Relay(FrameReader),
    Rtmp(mpsc::Receiver<Result<Frame, LinkError>>),
}

impl Reader {
    /// The next frame; `None` when the origin ended the stream. Cancel-safe.
    pub(crate) async fn next(&mut self) -> Result<Option<Frame>, LinkError> {
        match self {
            Reader::Relay(r) => r.next().await,
            Reader::Rtmp(rx) => rx.recv().await.transpose(),
        }
    }
}

/// Origins from `[edge] origins`: `http(s)://` Ferry origins (sharing one
/// QUIC endpoint and HTTP client) and `rtmp://` foreign ones; others (the
/// edge's `s3://` HLS origins) are skipped. `trust`: what the edge accepts
/// and proves.
pub fn origins(urls: &[String], trust: Arc<crate::Trust>) -> std::io::Result<Vec<Arc<Origin>>> {
    let relay: Vec<String> = urls
        .iter()
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
        .cloned()
        .collect();
    let mut links = crate::link::links(&relay, trust)?.into_iter();
    Ok(urls
        .iter()
        .filter_map(|u| {
            if u.starts_with("http://") || u.starts_with("https://") {
                links.next().map(|l| Arc::new(Origin::Relay(l)))
            } else {
                ForeignOrigin::parse(u).map(|f| Arc::new(Origin::Rtmp(f)))
            }
        })
        .collect())
}
