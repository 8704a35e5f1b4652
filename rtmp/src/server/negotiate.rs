//! Negotiation: `connect`, `createStream`, then `publish` (authorised) or
//! `play`, with names checked and refusals explained.

use std::net::SocketAddr;

use bytes::Bytes;
use media_core::HubError;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::timeout;
use tracing::{debug, info};

use super::{Role, Server};
use crate::amf0::Amf0Value;
use crate::limits::*;
use crate::message::{self, Command, Message, type_id, user_control};
use crate::transport::{Transport, csid};
use crate::{RtmpError, amf0};
use media_core::auth::{PublishRequest, mask_key};

impl Server {
    pub(super) async fn negotiate<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        t: &mut Transport<S>,
        peer: SocketAddr,
        publish_only: bool,
    ) -> Result<Role, RtmpError> {
        let mut app: Option<String> = None;
        // Enhanced RTMP: the codecs the client announced it reads.
        let mut enhanced = Reads::default();
        // `live/STREAM` as the app (what ffmpeg sends for
        // rtmp://HOST/live/STREAM/RUNG): the play path names a stream below it.
        let mut below: Option<String> = None;
        let mut next_stream_id = 1u32;
        loop {
            let Message::Command(cmd) = t.read_message().await? else {
                continue;
            };
            match cmd.name.as_str() {
                "connect" => {
                    let raw = cmd
                        .args
                        .first()
                        .and_then(|o| o.get("app"))
                        .and_then(Amf0Value::as_str)
                        .unwrap_or_default();
                    enhanced = Reads::announced(cmd.args.first());
                    let requested = match check_name(raw) {
                        Ok(()) => app_name(raw),
                        Err(why) => {
                            self.metrics.bad_names.inc();
                            let why = format!("application name refused: {why}");
                            info!(app = ?truncated(raw), "connect refused: bad application name");
                            t.queue_command(0, &connect_error(cmd.transaction, &why));
                            t.flush().await?;
                            return Ok(Role::Done);
                        }
                    };
                    let (requested, sub) = match requested.split_once('/') {
                        Some((a, rest)) if a == self.config.app && !rest.is_empty() => {
                            (a.to_owned(), Some(rest.to_owned()))
                        }
                        _ => (requested, None),
                    };
                    if requested != self.config.app {
                        let why = format!("unknown application {requested:?}");
                        t.queue_command(0, &connect_error(cmd.transaction, &why));
                        t.flush().await?;
                        info!(app = ?requested, "connect refused: unknown application");
                        return Ok(Role::Done);
                    }
                    t.queue_control(
                        type_id::WINDOW_ACK_SIZE,
                        &message::u32_body(WINDOW_ACK_SIZE),
                    );
                    t.queue_control(
                        type_id::SET_PEER_BANDWIDTH,
                        &message::peer_bandwidth_body(WINDOW_ACK_SIZE),
                    );
                    t.set_chunk_size(SERVER_CHUNK_SIZE);
                    t.queue_command(0, &connect_result(cmd.transaction));
                    t.flush().await?;
                    app = Some(requested);
                    below = sub;
                }
                "createStream" => {
                    let id = next_stream_id;
                    next_stream_id = next_stream_id.saturating_add(1);
                    t.queue_command(
                        0,
                        &message::command_body(
                            "_result",
                            cmd.transaction,
                            &[Amf0Value::Null, Amf0Value::Number(f64::from(id))],
                        ),
                    );
                    t.flush().await?;
                }
                "releaseStream" | "FCPublish" | "FCUnpublish" | "FCSubscribe"
                | "getStreamLength" => {
                    if cmd.name == "FCPublish" {
                        let name = arg_str(&cmd, 1).unwrap_or_default();
                        let body = message::command_body(
                            "onFCPublish",
                            0.0,
                            &[
                                Amf0Value::Null,
                                message::status_object("status", "NetStream.Publish.Start", name),
                            ],
                        );
                        t.queue_command(0, &body);
                    }
                    if cmd.transaction > 0.0 {
                        // A live stream has no length; ffmpeg wants a number here.
                        let value = if cmd.name == "getStreamLength" {
                            Amf0Value::Number(0.0)
                        } else {
                            Amf0Value::Undefined
                        };
                        t.queue_command(
                            0,
                            &message::command_body(
                                "_result",
                                cmd.transaction,
                                &[Amf0Value::Null, value],
                            ),
                        );
                    }
                    t.flush().await?;
                }
                "publish" | "play" => {
                    let Some(app) = app.as_deref() else {
                        return Err(RtmpError::Protocol(format!("{} before connect", cmd.name)));
                    };
                    // Clients publish or play on the stream they created last.
                    let stream_id = next_stream_id.saturating_sub(1).max(1);
                    let publish = cmd.name == "publish";
                    let raw = arg_str(&cmd, 1).unwrap_or_default();
                    let refusal = match check_name(raw) {
                        Err(why) => {
                            self.metrics.bad_names.inc();
                            Some(format!("stream name refused: {why}"))
                        }
                        Ok(()) if publish_only && !publish => {
                            self.metrics.connections_rejected.inc();
                            Some("server is full: the slots left are kept for publishers".into())
                        }
                        Ok(()) => None,
                    };
                    if let Some(why) = refusal {
                        let code = if publish {
                            "NetStream.Publish.BadName"
                        } else {
                            "NetStream.Play.Failed"
                        };
                        info!(name = ?truncated(raw), reason = %why, command = %cmd.name, "refused");
                        t.queue_command(stream_id, &on_status("error", code, &why));
                        t.flush().await?;
                        linger(t).await;
                        return Ok(Role::Done);
                    }
                    let mut name = stream_name(raw);
                    if let Some(prefix) = &below {
                        name = format!("{prefix}/{name}");
                    }
                    return if publish {
                        self.start_publish(t, peer, app, &name, stream_id).await
                    } else {
                        self.start_play(t, &name, stream_id, enhanced).await
                    };
                }
                other => debug!(command = other, "ignoring command before publish/play"),
            }
        }
    }

    async fn start_publish<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        t: &mut Transport<S>,
        peer: SocketAddr,
        app: &str,
        key: &str,
        stream_id: u32,
    ) -> Result<Role, RtmpError> {
        let decision = self.auth.authorize(PublishRequest { app, key, peer }).await;
        let refusal = match decision {
            Ok(name) => match self.hub.publish(&name) {
                Ok(publisher) => {
                    publisher.set_source(format!("rtmp://{peer}"));
                    t.queue_control(
                        type_id::USER_CONTROL,
                        &message::user_control_body(user_control::STREAM_BEGIN, stream_id),
                    );
                    t.queue_command(
                        stream_id,
                        &on_status(
                            "status",
                            "NetStream.Publish.Start",
                            &format!("{name} is now published"),
                        ),
                    );
                    t.flush().await?;
                    info!(stream = %name, key = %mask_key(key), "publishing");
                    return Ok(Role::Publish(publisher, stream_id));
                }
                Err(HubError::AlreadyPublishing(_)) => {
                    format!("stream {name} already has a publisher")
                }
            },
            Err(e) => e.to_string(),
        };
        self.metrics.publish_refused.inc();
        info!(key = %mask_key(key), reason = %refusal, "publish refused");
        t.queue_command(
            stream_id,
            &on_status("error", "NetStream.Publish.BadName", &refusal),
        );
        t.flush().await?;
        linger(t).await;
        Ok(Role::Done)
    }

    async fn start_play<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        t: &mut Transport<S>,
        name: &str,
        stream_id: u32,
        reads: Reads,
    ) -> Result<Role, RtmpError> {
        let subscriber = self.hub.subscribe_as(name, "rtmp");
        t.queue_control(
            type_id::USER_CONTROL,
            &message::user_control_body(user_control::STREAM_BEGIN, stream_id),
        );
        t.queue_command(
            stream_id,
            &on_status("status", "NetStream.Play.Reset", &format!("playing {name}")),
        );
        t.queue_command(
            stream_id,
            &on_status(
                "status",
                "NetStream.Play.Start",
                &format!("started playing {name}"),
            ),
        );
        let access = amf0::encode_all(&[
            Amf0Value::String("|RtmpSampleAccess".into()),
            Amf0Value::Boolean(true),
            Amf0Value::Boolean(true),
        ]);
        t.queue(csid::DATA, 0, type_id::DATA_AMF0, stream_id, &access);
        t.flush().await?;
        info!(stream = %name, live = subscriber.is_live(), "playing");
        Ok(Role::Play(subscriber, stream_id, reads))
    }
}

/// The Enhanced RTMP video codecs a player announced in `connect`
/// (`fourCcList`; `*` is every codec).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Reads {
    /// `hvc1`.
    pub hevc: bool,
    /// `av01`.
    pub av1: bool,
}

impl Reads {
    fn announced(object: Option<&Amf0Value>) -> Self {
        let Some(Amf0Value::StrictArray(list)) = object.and_then(|o| o.get("fourCcList")) else {
            return Self::default();
        };
        let has = |want: &str| {
            list.iter()
                .filter_map(Amf0Value::as_str)
                .any(|c| c == want || c == "*")
        };
        Self {
            hevc: has("hvc1"),
            av1: has("av01"),
        }
    }

    /// Whether a player reads `codec` (H.264 needs no announcement).
    pub fn reads(self, codec: media_core::Codec) -> bool {
        match codec {
            media_core::Codec::H265 => self.hevc,
            media_core::Codec::Av1 => self.av1,
            _ => true,
        }
    }
}

/// After a refusal, reads and drops what the client still sends (OBS sends
/// `FCUnpublish` and `deleteStream`) for [`REFUSAL_LINGER`] or until it closes,
/// so it reads the refusal instead of failing to send.
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(t: &mut Transport<S>) {
    let _ = timeout(REFUSAL_LINGER, async {
        while t.read_message().await.is_ok() {}
    })
    .await;
}

/// Why `raw` (an app or stream name as the client sent it) is refused: too
/// long, or with bytes that would forge log lines or paths.
fn check_name(raw: &str) -> Result<(), String> {
    if raw.len() > MAX_NAME_LEN {
        return Err(format!(
            "{} bytes long, the limit is {MAX_NAME_LEN}",
            raw.len()
        ));
    }
    if let Some(c) = raw.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "it contains {c:?}; names are printable ASCII without spaces"
        ));
    }
    Ok(())
}

/// At most the first [`MAX_NAME_LEN`] bytes of a refused name, for the log.
fn truncated(raw: &str) -> &str {
    let mut end = raw.len().min(MAX_NAME_LEN);
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    &raw[..end]
}

fn connect_error(transaction: f64, why: &str) -> Bytes {
    message::command_body(
        "_error",
        transaction,
        &[
            Amf0Value::Null,
            message::status_object("error", "NetConnection.Connect.Rejected", why),
        ],
    )
}

fn connect_result(transaction: f64) -> Bytes {
    message::command_body(
        "_result",
        transaction,
        &[
            Amf0Value::Object(vec![
                ("fmsVer".into(), Amf0Value::String("FMS/3,0,1,123".into())),
                ("capabilities".into(), Amf0Value::Number(31.0)),
            ]),
            Amf0Value::Object(vec![
                ("level".into(), Amf0Value::String("status".into())),
                (
                    "code".into(),
                    Amf0Value::String("NetConnection.Connect.Success".into()),
                ),
                (
                    "description".into(),
                    Amf0Value::String("Connection succeeded.".into()),
                ),
                ("objectEncoding".into(), Amf0Value::Number(0.0)),
            ]),
        ],
    )
}

pub(super) fn on_status(level: &str, code: &str, description: &str) -> Bytes {
    message::command_body(
        "onStatus",
        0.0,
        &[
            Amf0Value::Null,
            message::status_object(level, code, description),
        ],
    )
}

fn arg_str(cmd: &Command, index: usize) -> Option<&str> {
    cmd.args.get(index).and_then(Amf0Value::as_str)
}

/// `live?token=x/` → `live`: clients append query strings and slashes.
fn app_name(raw: &str) -> String {
    raw.split('?')
        .next()
        .unwrap_or_default()
        .trim_matches('/')
        .to_owned()
}

/// `key?foo=bar` → `key`.
fn stream_name(raw: &str) -> String {
    raw.split('?').next().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_query_strings() {
        assert_eq!(app_name("live?secret=1"), "live");
        assert_eq!(app_name("live/"), "live");
        assert_eq!(stream_name("key?x=y"), "key");
    }
}
