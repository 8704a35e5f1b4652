//! A foreign origin (nginx-rtmp, SRS, any RTMP server) pulled over RTMP, so
//! an existing cluster can move to Ferry one node at a time: the edge plays
//! the stream like any player and turns its tags back into hub frames.

use std::net::SocketAddr;

use rtmp::ingest::{Ingest, Ingested, metadata};
use rtmp::message::Message;
use tokio::sync::mpsc;
use tracing::debug;

use crate::RelayMetrics;
use crate::frame::Frame;
use crate::link::{LinkError, OPEN_TIMEOUT};

/// Frames read ahead of the pull; a pull that falls this far behind is
/// dropped (it is reading two origins at most, both in real time).
const READ_AHEAD: usize = 1024;

/// An RTMP server named by `rtmp://HOST[:PORT]/APP`.
pub struct ForeignOrigin {
    /// As configured, without credentials (a log and metric name).
    pub name: String,
    host: String,
    port: u16,
    app: String,
}

impl ForeignOrigin {
    /// Parses `rtmp://HOST[:PORT]/APP`; `None` if it is not one.
    pub fn parse(url: &str) -> Option<Self> {
        let rest = url.strip_prefix("rtmp://")?;
        let (authority, app) = rest.split_once('/')?;
        let app = app.trim_end_matches('/');
        if app.is_empty() || app.contains('/') || authority.is_empty() {
            return None;
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                (h.to_owned(), p.parse().ok()?)
            }
            _ => (authority.to_owned(), 1935),
        };
        Some(Self {
            name: crate::redacted(url),
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            app: app.to_owned(),
        })
    }

    async fn addr(&self) -> Result<SocketAddr, LinkError> {
        tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| LinkError::Info(format!("resolve {}: {e}", self.host)))?
            .next()
            .ok_or_else(|| LinkError::Info(format!("{} resolves to nothing", self.host)))
    }

    /// Plays `name` there. A foreign server cannot say whether the stream is
    /// live (nginx-rtmp starts every play and waits), so the pull treats a
    /// source that sends no media for a while as gone.
    pub(crate) async fn open(
        &self,
        name: &str,
        metrics: &RelayMetrics,
    ) -> Result<mpsc::Receiver<Result<Frame, LinkError>>, LinkError> {
        let addr = self.addr().await?;
        let client = tokio::time::timeout(OPEN_TIMEOUT, async {
            let mut c = rtmp::Client::connect(addr, &self.app).await?;
            c.play(name).await?;
            Ok::<_, rtmp::RtmpError>(c)
        })
        .await
        .map_err(|_| LinkError::Timeout)?
        .map_err(|e| LinkError::Connect(e.to_string()))?;
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        tokio::spawn(read(client, name.to_owned(), tx, metrics.clone()));
        Ok(rx)
    }
}

/// Reads the played stream until the pull lets go of it.
async fn read(
    mut client: rtmp::Client,
    name: String,
    tx: mpsc::Sender<Result<Frame, LinkError>>,
    metrics: RelayMetrics,
) {
    let mut ingest = Ingest::default();
    loop {
        let msg = tokio::select! {
            () = tx.closed() => return,
            m = client.read() => m,
        };
        let frame = match msg {
            Ok(Message::Video { timestamp, data }) => {
                metrics.bytes_in.inc_by(data.len() as u64);
                ingest
                    .video_tag(timestamp, &data, &name)
                    .map(|g| g.map(frame_of))
            }
            Ok(Message::Audio { timestamp, data }) => {
                metrics.bytes_in.inc_by(data.len() as u64);
                ingest
                    .audio_tag(timestamp, &data, &name)
                    .map(|g| g.map(frame_of))
            }
            Ok(Message::Data(values)) => Ok(metadata(&values).map(Frame::Metadata)),
            Ok(Message::Command(cmd)) if cmd.name == "onStatus" => {
                let code = cmd
                    .args
                    .get(1)
                    .and_then(|i| i.get("code"))
                    .and_then(rtmp::amf0::Amf0Value::as_str);
                match code {
                    Some("NetStream.Play.UnpublishNotify" | "NetStream.Play.Stop") => {
                        Ok(Some(Frame::Stopped))
                    }
                    _ => Ok(None),
                }
            }
            Ok(_) => Ok(None),
            Err(e) => {
                debug!(stream = %name, error = %e, "foreign origin ended the play");
                let _ = tx.send(Err(LinkError::Stream(e.to_string()))).await;
                return;
            }
        };
        let frame = match frame {
            Ok(Some(f)) => Ok(f),
            Ok(None) => continue,
            Err(e) => Err(LinkError::Stream(e.to_string())),
        };
        let end = frame.is_err();
        if tx.try_send(frame).is_err() || end {
            return;
        }
    }
}

fn frame_of(got: Ingested) -> Frame {
    match got {
        Ingested::Track(t) => Frame::Track(t),
        Ingested::Packet(p) => Frame::Packet(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_origin_urls() {
        let o = ForeignOrigin::parse("rtmp://10.0.0.5/live").expect("valid");
        assert_eq!(
            (o.host.as_str(), o.port, o.app.as_str()),
            ("10.0.0.5", 1935, "live")
        );
        let o = ForeignOrigin::parse("rtmp://srs.example:19350/live/").expect("valid");
        assert_eq!(
            (o.host.as_str(), o.port, o.app.as_str()),
            ("srs.example", 19350, "live")
        );
        for bad in [
            "http://x/live",
            "rtmp://x",
            "rtmp://x/",
            "rtmp://x/a/b",
            "rtmp://x:port/live",
        ] {
            assert!(ForeignOrigin::parse(bad).is_none(), "{bad}");
        }
    }
}
