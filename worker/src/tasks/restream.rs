//! `restream`: push the stream to another RTMP receiver (a platform's ingest
//! URL, nginx-rtmp, another Ferry), reconnecting with backoff when it fails.

use media_core::Event;
use rtmp::Client;
use rtmp::flv::FlvTag;
use serde::{Deserialize, Serialize};
use tracing::info;
use utoipa::PartialSchema;

use control_client::TaskSpec;

use super::{Media, TaskContext, TaskRun, TaskType};

/// The restream task type.
pub struct Restream;

/// Where to push.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestreamConfig {
    /// The receiver: `rtmp://HOST[:PORT]/APP/STREAM_KEY`, or
    /// `rtmps://HOST[:443]/APP/STREAM_KEY` (TLS, the receiver's certificate
    /// verified against the system's roots). The key (last path part) is a
    /// secret: masked when the task is shown.
    #[schema(example = "rtmp://a.rtmp.youtube.com/live2/xxxx-xxxx-xxxx-xxxx")]
    pub url: String,
}

/// A parsed receiver URL.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    /// RTMPS.
    tls: bool,
    host: String,
    port: u16,
    app: String,
    key: String,
}

fn parse(url: &str) -> Result<Target, String> {
    let (tls, rest) = match (url.strip_prefix("rtmp://"), url.strip_prefix("rtmps://")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => return Err("url must start with rtmp:// or rtmps://".into()),
    };
    let (authority, path) = rest
        .split_once('/')
        .ok_or("url needs /APP/STREAM_KEY after the host")?;
    let (app, key) = path
        .rsplit_once('/')
        .ok_or("url needs /APP/STREAM_KEY after the host")?;
    if authority.is_empty() || app.is_empty() || key.is_empty() {
        return Err("url needs a host, an app and a stream key".into());
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().map_err(|_| format!("bad port {p:?}"))?),
        None => (authority, if tls { 443 } else { 1935 }),
    };
    Ok(Target {
        tls,
        host: host.to_owned(),
        port,
        app: app.to_owned(),
        key: key.to_owned(),
    })
}

impl TaskSpec for Restream {
    fn kind(&self) -> &'static str {
        "restream"
    }

    fn description(&self) -> &'static str {
        "Push the stream to an RTMP receiver (a platform's ingest URL), reconnecting when it drops"
    }

    fn schema(&self) -> serde_json::Value {
        serde_json::to_value(RestreamConfig::schema()).unwrap_or_default()
    }

    fn validate(&self, config: &serde_json::Value) -> Result<serde_json::Value, String> {
        let c: RestreamConfig =
            serde_json::from_value(config.clone()).map_err(|e| e.to_string())?;
        parse(&c.url)?;
        serde_json::to_value(c).map_err(|e| e.to_string())
    }

    fn redact(&self, config: &serde_json::Value) -> serde_json::Value {
        let mut out = config.clone();
        if let Some(url) = config.get("url").and_then(|u| u.as_str())
            && let Some((base, key)) = url.rsplit_once('/')
        {
            out["url"] =
                serde_json::Value::String(format!("{base}/{}", media_core::auth::mask_key(key)));
        }
        out
    }
}

impl TaskType for Restream {
    fn run(&self, ctx: TaskContext, config: serde_json::Value) -> TaskRun {
        Box::pin(async move {
            let c: RestreamConfig = serde_json::from_value(config).map_err(|e| e.to_string())?;
            let target = parse(&c.url)?;
            tokio::select! {
                _ = ctx.cancel.cancelled() => Ok(()),
                r = push(&ctx, &target) => r,
            }
        })
    }
}

/// Connects to the target and starts publishing.
async fn connect(target: &Target) -> Result<(Client, std::net::SocketAddr), String> {
    let addr = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("cannot resolve {}: {e}", target.host))?
        .next()
        .ok_or_else(|| format!("{} has no address", target.host))?;
    let connected = if target.tls {
        Client::connect_tls(addr, &target.host, &target.app).await
    } else {
        Client::connect(addr, &target.app).await
    };
    let mut client = connected.map_err(|e| format!("connect to {addr}: {e}"))?;
    client
        .publish(&target.key)
        .await
        .map_err(|e| format!("publish refused by {addr}: {e}"))?;
    Ok((client, addr))
}

/// Publishes the stream to the target until the stream ends (`Ok`) or the
/// target fails (`Err`).
async fn push(ctx: &TaskContext, target: &Target) -> Result<(), String> {
    let hub = match &ctx.media {
        Media::Hub(hub) => hub,
        Media::Origin { addr, app } => return relay(ctx, *addr, app, target).await,
    };
    let mut sub = hub.subscribe_as(&ctx.stream, "restream");
    let (mut client, addr) = connect(target).await?;
    info!(stream = %ctx.stream, receiver = %addr, "restreaming");
    let mut started = false;
    // HEVC goes out as Enhanced RTMP (what YouTube and Twitch take).
    let mut video = media_core::Codec::H264;
    while let Some(event) = sub.recv().await {
        let sent = match event {
            Event::Started => {
                started = true;
                Ok(())
            }
            Event::Stopped if started => break,
            Event::Stopped | Event::Metadata(_) => Ok(()),
            Event::Track(t) => {
                if t.kind() == media_core::TrackKind::Video {
                    video = t.codec;
                }
                client.send_tag(&FlvTag::config(&t, 0)).await
            }
            Event::Packet(p) => client.send_tag(&FlvTag::packet_in(&p, video)).await,
        };
        sent.map_err(|e| format!("receiver {addr} dropped: {e}"))?;
    }
    let _ = client.unpublish().await;
    Ok(())
}

/// A worker outside the origin: plays the stream from the origin over RTMP and
/// passes its tags to the target unchanged.
async fn relay(
    ctx: &TaskContext,
    origin: std::net::SocketAddr,
    app: &str,
    target: &Target,
) -> Result<(), String> {
    let mut source = Client::connect(origin, app)
        .await
        .map_err(|e| format!("origin {origin}: {e}"))?;
    source
        .play(&ctx.stream)
        .await
        .map_err(|e| format!("origin {origin} refused play: {e}"))?;
    let (mut client, addr) = connect(target).await?;
    info!(stream = %ctx.stream, origin = %origin, receiver = %addr, "restreaming from the origin");
    loop {
        let msg = source
            .read()
            .await
            .map_err(|e| format!("origin {origin} dropped: {e}"))?;
        let sent = match msg {
            rtmp::message::Message::Video { timestamp, data } => {
                client.send_video(timestamp, &data).await
            }
            rtmp::message::Message::Audio { timestamp, data } => {
                client.send_audio(timestamp, &data).await
            }
            rtmp::message::Message::Command(c)
                if c.name == "onStatus"
                    && c.args.iter().any(|a| {
                        a.get("code").and_then(|c| c.as_str())
                            == Some("NetStream.Play.UnpublishNotify")
                    }) =>
            {
                let _ = client.unpublish().await;
                return Ok(());
            }
            _ => Ok(()),
        };
        sent.map_err(|e| format!("receiver {addr} dropped: {e}"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_keys_masked() {
        let t = parse("rtmp://a.example:1936/live2/abc-def").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.app.as_str(), t.key.as_str()),
            ("a.example", 1936, "live2", "abc-def")
        );
        assert_eq!(parse("rtmp://h/app/inst/key").unwrap().app, "app/inst");
        let t = parse("rtmps://live-api-s.facebook.com/rtmp/FB-123").unwrap();
        assert!(t.tls);
        assert_eq!((t.port, t.app.as_str()), (443, "rtmp"));
        assert_eq!(parse("rtmps://h:8443/a/k").unwrap().port, 8443);
        assert!(parse("srt://h/a/k").is_err());
        for bad in [
            "http://h/a/k",
            "rtmp://h",
            "rtmp://h/k",
            "rtmp://h:x/a/k",
            "rtmp:///a/k",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let r = Restream;
        let shown = r.redact(&serde_json::json!({"url": "rtmp://h/live/supersecretkey"}));
        assert!(!shown["url"].as_str().unwrap().contains("supersecretkey"));
        assert!(
            r.validate(&serde_json::json!({"url": "rtmp://h/live/k", "x": 1}))
                .is_err()
        );
        assert!(
            r.validate(&serde_json::json!({"url": "rtmp://h/live/k"}))
                .is_ok()
        );
    }
}
