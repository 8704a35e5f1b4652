//! An RTMP client: play from or publish to any RTMP server. Used for restreaming,
//! for the load generator in `benches/`, and by tests that need to see exactly
//! what a player receives.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;

use crate::amf0::Amf0Value;
use crate::limits::PUSH_WRITE_TIMEOUT;
use crate::message::{self, Message, type_id, user_control};
use crate::tls::Io;
use crate::transport::{Transport, csid};
use crate::{RtmpError, RtmpMetrics};

/// How long the client waits for each reply while setting up.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A connected client session.
pub struct Client {
    t: Transport<Box<dyn Io>>,
    stream_id: u32,
    transaction: f64,
}

impl Client {
    /// Connects, handshakes and sends `connect` for `app`.
    pub async fn connect(addr: SocketAddr, app: &str) -> Result<Self, RtmpError> {
        Self::connect_with(addr, app, None).await
    }

    /// Like [`Client::connect`], with a fixed socket receive buffer (a small one
    /// makes a client that stops reading back up quickly, for slow-player tests).
    pub async fn connect_with(
        addr: SocketAddr,
        app: &str,
        recv_buffer: Option<u32>,
    ) -> Result<Self, RtmpError> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size)?;
        }
        let tcp = timeout(REPLY_TIMEOUT, socket.connect(addr))
            .await
            .map_err(|_| RtmpError::Timeout("tcp connect"))??;
        tcp.set_nodelay(true)?;
        Self::start(Box::new(tcp), format!("rtmp://{addr}/{app}"), app).await
    }

    /// Connects over RTMPS: TLS to `host` (its certificate verified against
    /// the system's roots for that name) at `addr`, then as [`Client::connect`].
    pub async fn connect_tls(addr: SocketAddr, host: &str, app: &str) -> Result<Self, RtmpError> {
        let tcp = timeout(REPLY_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| RtmpError::Timeout("tcp connect"))??;
        tcp.set_nodelay(true)?;
        let tls = timeout(REPLY_TIMEOUT, crate::tls::connect(tcp, host))
            .await
            .map_err(|_| RtmpError::Timeout("tls handshake"))??;
        let tc_url = format!("rtmps://{host}:{}/{app}", addr.port());
        Self::start(tls, tc_url, app).await
    }

    /// Handshakes and sends `connect` on an open byte stream.
    async fn start(io: Box<dyn Io>, tc_url: String, app: &str) -> Result<Self, RtmpError> {
        let mut c = Self {
            t: Transport::new(io, RtmpMetrics::default()),
            stream_id: 0,
            transaction: 1.0,
        };
        timeout(REPLY_TIMEOUT, c.t.connect_handshake())
            .await
            .map_err(|_| RtmpError::Timeout("handshake"))??;
        let body = message::command_body(
            "connect",
            1.0,
            &[Amf0Value::Object(vec![
                ("app".into(), Amf0Value::String(app.into())),
                ("type".into(), Amf0Value::String("nonprivate".into())),
                ("tcUrl".into(), Amf0Value::String(tc_url)),
                // Enhanced RTMP: this client reads (and relays) HEVC and AV1.
                (
                    "fourCcList".into(),
                    Amf0Value::StrictArray(vec![
                        Amf0Value::String("hvc1".into()),
                        Amf0Value::String("av01".into()),
                    ]),
                ),
            ])],
        );
        c.t.set_chunk_size(crate::limits::OUTGOING_CHUNK_SIZE);
        c.t.queue_command(0, &body);
        c.t.flush().await?;
        c.await_result(1.0).await?;
        Ok(c)
    }

    async fn await_result(&mut self, transaction: f64) -> Result<Vec<Amf0Value>, RtmpError> {
        loop {
            let msg = timeout(REPLY_TIMEOUT, self.t.read_message())
                .await
                .map_err(|_| RtmpError::Timeout("command reply"))??;
            self.t.flush().await?;
            if let Message::Command(cmd) = msg {
                if cmd.transaction != transaction {
                    continue;
                }
                match cmd.name.as_str() {
                    "_result" => return Ok(cmd.args),
                    "_error" => return Err(refusal(&cmd.args)),
                    _ => {}
                }
            }
        }
    }

    async fn await_status(&mut self, want: &str) -> Result<(), RtmpError> {
        loop {
            let msg = timeout(REPLY_TIMEOUT, self.t.read_message())
                .await
                .map_err(|_| RtmpError::Timeout("status reply"))??;
            self.t.flush().await?;
            if let Message::Command(cmd) = msg {
                if cmd.name != "onStatus" {
                    continue;
                }
                let info = cmd.args.get(1);
                let code = info.and_then(|i| i.get("code")).and_then(Amf0Value::as_str);
                let level = info
                    .and_then(|i| i.get("level"))
                    .and_then(Amf0Value::as_str);
                if level == Some("error") {
                    return Err(refusal(&cmd.args));
                }
                if code == Some(want) {
                    return Ok(());
                }
            }
        }
    }

    async fn create_stream(&mut self) -> Result<(), RtmpError> {
        self.transaction += 1.0;
        let txn = self.transaction;
        self.t.queue_command(
            0,
            &message::command_body("createStream", txn, &[Amf0Value::Null]),
        );
        self.t.flush().await?;
        let args = self.await_result(txn).await?;
        self.stream_id = args
            .get(1)
            .and_then(Amf0Value::as_number)
            .map_or(1, |n| n as u32);
        Ok(())
    }

    /// Plays `name`; returns once the server says `NetStream.Play.Start`.
    pub async fn play(&mut self, name: &str) -> Result<(), RtmpError> {
        self.create_stream().await?;
        let body = message::command_body(
            "play",
            0.0,
            &[
                Amf0Value::Null,
                Amf0Value::String(name.into()),
                Amf0Value::Number(-1000.0),
            ],
        );
        self.t.queue_command(self.stream_id, &body);
        self.t.queue_control(
            type_id::USER_CONTROL,
            &[
                0,
                user_control::SET_BUFFER_LENGTH as u8,
                0,
                0,
                0,
                self.stream_id as u8,
                0,
                0,
                0x0b,
                0xb8,
            ],
        );
        self.t.flush().await?;
        self.await_status("NetStream.Play.Start").await
    }

    /// Publishes to `key`; returns once the server says `NetStream.Publish.Start`,
    /// or [`RtmpError::Refused`] with the server's reason.
    pub async fn publish(&mut self, key: &str) -> Result<(), RtmpError> {
        self.create_stream().await?;
        let body = message::command_body(
            "publish",
            0.0,
            &[
                Amf0Value::Null,
                Amf0Value::String(key.into()),
                Amf0Value::String("live".into()),
            ],
        );
        self.t.queue_command(self.stream_id, &body);
        self.t.flush().await?;
        self.await_status("NetStream.Publish.Start").await
    }

    /// The next message from the server (media, data, status commands).
    pub async fn read(&mut self) -> Result<Message, RtmpError> {
        let msg = self.t.read_message().await?;
        if self.t.pending() > 0 {
            self.t.flush().await?;
        }
        Ok(msg)
    }

    /// Sends one media tag (header and shared payload, not joined).
    pub async fn send_tag(&mut self, tag: &crate::flv::FlvTag) -> Result<(), RtmpError> {
        self.t.queue_tag(self.stream_id, tag);
        self.push().await
    }

    /// Sends one FLV video tag body.
    pub async fn send_video(&mut self, timestamp: u32, body: &Bytes) -> Result<(), RtmpError> {
        self.t
            .queue(csid::VIDEO, timestamp, type_id::VIDEO, self.stream_id, body);
        self.push().await
    }

    /// Writes what is queued, giving up after [`PUSH_WRITE_TIMEOUT`] if the
    /// receiver takes nothing.
    async fn push(&mut self) -> Result<(), RtmpError> {
        timeout(PUSH_WRITE_TIMEOUT, self.t.flush())
            .await
            .map_err(|_| RtmpError::Timeout("the receiver stopped reading"))?
    }

    /// Sends one FLV audio tag body.
    pub async fn send_audio(&mut self, timestamp: u32, body: &Bytes) -> Result<(), RtmpError> {
        self.t
            .queue(csid::AUDIO, timestamp, type_id::AUDIO, self.stream_id, body);
        self.push().await
    }

    /// Ends publishing politely (`FCUnpublish` + `deleteStream`).
    pub async fn unpublish(&mut self) -> Result<(), RtmpError> {
        let sid = f64::from(self.stream_id);
        self.t.queue_command(
            0,
            &message::command_body(
                "deleteStream",
                0.0,
                &[Amf0Value::Null, Amf0Value::Number(sid)],
            ),
        );
        self.t.flush().await
    }
}

fn refusal(args: &[Amf0Value]) -> RtmpError {
    let info = args.iter().find(|a| a.get("code").is_some());
    let field = |k| {
        info.and_then(|i| i.get(k))
            .and_then(Amf0Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    RtmpError::Refused {
        code: field("code"),
        description: field("description"),
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::{Context, Poll};

    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

    use super::*;
    use crate::{Server, ServerConfig};
    use media_core::auth::StaticKeys;

    /// A socket whose reads stop (pend for ever) once `stalled` is set: a
    /// receiver that hangs without closing.
    struct Stalling {
        inner: TcpStream,
        stalled: Arc<AtomicBool>,
    }

    impl AsyncRead for Stalling {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if self.stalled.load(Ordering::Relaxed) {
                return Poll::Pending;
            }
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Stalling {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Pin::new(&mut self.inner).poll_write(cx, data)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }
        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// A restream whose receiver hangs ends with a timeout instead of
    /// blocking (and looking "running") for ever.
    #[tokio::test]
    async fn pushing_to_a_hung_receiver_times_out() {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("rcvbuf");
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind");
        let listener = socket.listen(4).expect("listen");
        let addr = listener.local_addr().expect("addr");
        let server = Server::new(
            ServerConfig::default(),
            media_core::Hub::new(),
            Arc::new(StaticKeys::new([("s".to_owned(), "push-key".to_owned())])),
            RtmpMetrics::default(),
        );
        let stalled = Arc::new(AtomicBool::new(false));
        let stall = stalled.clone();
        tokio::spawn(async move {
            let (tcp, peer) = listener.accept().await.expect("accept");
            let io = Stalling {
                inner: tcp,
                stalled: stall,
            };
            let _ = server.serve_stream(io, peer).await;
        });
        let mut c = Client::connect(addr, "live").await.expect("connect");
        c.publish("push-key").await.expect("publish");
        stalled.store(true, Ordering::Relaxed);
        let frame = Bytes::from(vec![0x17; 256 << 10]);
        let started = tokio::time::Instant::now();
        let outcome = tokio::time::timeout(PUSH_WRITE_TIMEOUT * 3, async {
            let mut ts = 0;
            loop {
                if let Err(e) = c.send_video(ts, &frame).await {
                    return e;
                }
                ts += 40;
            }
        })
        .await;
        let err = outcome.expect("the push blocked past its timeout");
        assert!(
            matches!(err, RtmpError::Timeout("the receiver stopped reading")),
            "{err:?}"
        );
        assert!(started.elapsed() >= PUSH_WRITE_TIMEOUT);
    }
}
