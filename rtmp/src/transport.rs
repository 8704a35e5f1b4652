//! The thin tokio driver shared by server and client: socket bytes through the
//! sans-IO handshake and chunk layers, protocol control handled in one place.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::chunk::{ChunkDecoder, ChunkEncoder, ChunkSink, RawMessage};
use crate::handshake::{ClientHandshake, ServerHandshake};
use crate::limits::MAX_QUEUED_REPLY_BYTES;
use crate::message::{self, Message, type_id, user_control};
use crate::{RtmpError, RtmpMetrics};

/// Chunk stream ids Ferry writes on (by convention, as FMS and nginx-rtmp do).
pub mod csid {
    /// Protocol control messages.
    pub const CONTROL: u32 = 2;
    /// Commands and status events.
    pub const COMMAND: u32 = 3;
    /// Audio.
    pub const AUDIO: u32 = 4;
    /// Data messages (metadata).
    pub const DATA: u32 = 5;
    /// Video.
    pub const VIDEO: u32 = 6;
}

const READ_RESERVE: usize = 64 << 10;

/// An RTMP connection's byte plumbing.
pub struct Transport<S> {
    io: S,
    rbuf: BytesMut,
    /// Bytes copied for writing (headers, commands, small payloads).
    wbuf: BytesMut,
    /// What goes out before `wbuf`, in order: sealed pieces of `wbuf` and
    /// slices of shared payloads (never copied per connection).
    out: VecDeque<Bytes>,
    /// Bytes in `out`.
    out_len: usize,
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    split: VecDeque<RawMessage>,
    bytes_in: u64,
    acked_at: u64,
    ack_window: Option<u32>,
    /// Pong bytes queued since the last flush (bounded by [`MAX_QUEUED_REPLY_BYTES`]).
    replies_unsent: usize,
    metrics: RtmpMetrics,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Transport<S> {
    /// Wraps a connected socket.
    pub fn new(io: S, metrics: RtmpMetrics) -> Self {
        Self {
            io,
            rbuf: BytesMut::with_capacity(READ_RESERVE),
            wbuf: BytesMut::new(),
            out: VecDeque::new(),
            out_len: 0,
            decoder: ChunkDecoder::new(),
            encoder: ChunkEncoder::new(),
            split: VecDeque::new(),
            bytes_in: 0,
            acked_at: 0,
            ack_window: None,
            replies_unsent: 0,
            metrics,
        }
    }

    async fn fill(&mut self) -> Result<(), RtmpError> {
        self.rbuf.reserve(READ_RESERVE);
        let n = self.io.read_buf(&mut self.rbuf).await?;
        if n == 0 {
            return Err(RtmpError::Closed);
        }
        self.bytes_in += n as u64;
        self.metrics.bytes_in.inc_by(n as u64);
        Ok(())
    }

    /// Runs the server side of the handshake.
    pub async fn accept_handshake(&mut self) -> Result<(), RtmpError> {
        let mut hs = ServerHandshake::new();
        loop {
            if hs.feed(&mut self.rbuf, &mut self.wbuf)? {
                return self.flush().await;
            }
            self.flush().await?;
            self.fill().await?;
        }
    }

    /// Runs the client side of the handshake.
    pub async fn connect_handshake(&mut self) -> Result<(), RtmpError> {
        let mut hs = ClientHandshake::start(&mut self.wbuf);
        self.flush().await?;
        loop {
            if hs.feed(&mut self.rbuf, &mut self.wbuf)? {
                return self.flush().await;
            }
            self.fill().await?;
        }
    }

    /// The next message that is not protocol control. Control messages (chunk size,
    /// abort, ack window, ping) are applied here and any reply is queued, not sent,
    /// so this future is cancel-safe and can sit in a `select!`.
    pub async fn read_message(&mut self) -> Result<Message, RtmpError> {
        loop {
            let raw = match self.split.pop_front() {
                Some(raw) => raw,
                None => match self.decoder.decode(&mut self.rbuf)? {
                    Some(raw) => raw,
                    None => {
                        self.fill().await?;
                        self.queue_ack();
                        continue;
                    }
                },
            };
            if raw.type_id == type_id::AGGREGATE {
                self.split.extend(message::split_aggregate(&raw)?);
                continue;
            }
            match Message::parse(&raw)? {
                Message::SetChunkSize(size) => self.decoder.set_chunk_size(size)?,
                Message::Abort(csid) => self.decoder.abort(csid),
                Message::WindowAckSize(size) => self.ack_window = Some(size.max(1)),
                Message::UserControl { event, data } if event == user_control::PING_REQUEST => {
                    if self.replies_unsent > MAX_QUEUED_REPLY_BYTES {
                        return Err(RtmpError::Limit(
                            "pings arrive faster than replies are read",
                        ));
                    }
                    let t = data
                        .get(..4)
                        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                    let before = self.wbuf.len();
                    self.queue_control(
                        type_id::USER_CONTROL,
                        &message::user_control_body(user_control::PING_RESPONSE, t),
                    );
                    self.replies_unsent += self.wbuf.len() - before;
                }
                Message::Acknowledgement(_) | Message::SetPeerBandwidth(_) | Message::Other(_) => {}
                other => return Ok(other),
            }
        }
    }

    fn queue_ack(&mut self) {
        if let Some(window) = self.ack_window
            && self.bytes_in - self.acked_at >= u64::from(window)
        {
            self.acked_at = self.bytes_in;
            // The acknowledged byte count wraps at 32 bits by definition.
            self.queue_control(type_id::ACK, &message::u32_body(self.bytes_in as u32));
        }
    }

    /// Queues a protocol control message.
    pub fn queue_control(&mut self, type_id: u8, body: &[u8]) {
        self.encoder
            .write(&mut self.wbuf, csid::CONTROL, 0, type_id, 0, body);
    }

    /// Queues a message.
    pub fn queue(&mut self, csid: u32, timestamp: u32, type_id: u8, stream_id: u32, body: &[u8]) {
        self.encoder
            .write(&mut self.wbuf, csid, timestamp, type_id, stream_id, body);
    }

    /// Queues one audio or video tag on its chunk stream: the tag header is
    /// copied, the payload shared (its slices go out with vectored writes).
    pub fn queue_tag(&mut self, stream_id: u32, tag: &crate::flv::FlvTag) {
        let (csid, type_id) = match tag.kind {
            media_core::TrackKind::Video => (csid::VIDEO, type_id::VIDEO),
            media_core::TrackKind::Audio => (csid::AUDIO, type_id::AUDIO),
        };
        let encoder = self.encoder;
        encoder.write_shared(
            &mut Outgoing {
                wbuf: &mut self.wbuf,
                out: &mut self.out,
                out_len: &mut self.out_len,
            },
            csid,
            tag.timestamp,
            type_id,
            stream_id,
            tag.header(),
            &tag.payload,
        );
    }

    /// Queues a command on the command chunk stream.
    pub fn queue_command(&mut self, stream_id: u32, body: &[u8]) {
        self.queue(csid::COMMAND, 0, type_id::COMMAND_AMF0, stream_id, body);
    }

    /// Announces and switches to a larger outgoing chunk size.
    pub fn set_chunk_size(&mut self, size: u32) {
        self.queue_control(type_id::SET_CHUNK_SIZE, &message::u32_body(size));
        self.encoder.set_chunk_size(size);
    }

    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        self.out_len + self.wbuf.len()
    }

    /// Writes everything queued: one plain write when nothing is shared, else
    /// vectored writes of the copied pieces and the shared payload slices.
    pub async fn flush(&mut self) -> Result<(), RtmpError> {
        let n = self.pending();
        if n == 0 {
            return Ok(());
        }
        if self.out.is_empty() {
            self.io.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        } else {
            seal(&mut self.wbuf, &mut self.out, &mut self.out_len);
            while !self.out.is_empty() {
                // On the stack: no allocation per write per player.
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let mut count = 0;
                for (slot, piece) in slices.iter_mut().zip(&self.out) {
                    *slot = IoSlice::new(piece);
                    count += 1;
                }
                let mut written = self.io.write_vectored(&slices[..count]).await?;
                if written == 0 {
                    return Err(RtmpError::Io(std::io::ErrorKind::WriteZero.into()));
                }
                self.out_len -= written;
                while written > 0 {
                    let Some(front) = self.out.front_mut() else {
                        break;
                    };
                    if written >= front.len() {
                        written -= front.len();
                        self.out.pop_front();
                    } else {
                        front.advance(written);
                        written = 0;
                    }
                }
            }
        }
        self.replies_unsent = 0;
        self.metrics.bytes_out.inc_by(n as u64);
        Ok(())
    }
}

/// Pieces handed to one vectored write at most.
const MAX_IOVECS: usize = 64;

/// Moves what `wbuf` holds to the end of `out`, keeping the order of bytes.
fn seal(wbuf: &mut BytesMut, out: &mut VecDeque<Bytes>, out_len: &mut usize) {
    if !wbuf.is_empty() {
        *out_len += wbuf.len();
        out.push_back(wbuf.split().freeze());
    }
}

/// The write side of a transport as a [`ChunkSink`].
struct Outgoing<'a> {
    wbuf: &'a mut BytesMut,
    out: &'a mut VecDeque<Bytes>,
    out_len: &'a mut usize,
}

impl ChunkSink for Outgoing<'_> {
    fn copy(&mut self, bytes: &[u8]) {
        self.wbuf.extend_from_slice(bytes);
    }

    fn share(&mut self, bytes: Bytes) {
        seal(self.wbuf, self.out, self.out_len);
        *self.out_len += bytes.len();
        self.out.push_back(bytes);
    }
}
