//! The RTMP chunk stream, sans-IO: chunks in, whole messages out, and back.
//!
//! Written for untrusted input: a chunk is consumed only once it is complete (so
//! input may arrive a byte at a time), chunks of different chunk streams may
//! interleave freely, and every size is bounded by [`crate::limits`].

use std::collections::HashMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::limits::{MAX_BUFFERED_BYTES, MAX_CHUNK_SIZE, MAX_CHUNK_STREAMS, MAX_MESSAGE_SIZE};

const DEFAULT_CHUNK_SIZE: u32 = 128;
const EXTENDED: u32 = 0x00ff_ffff;

/// One reassembled RTMP message with its raw header fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawMessage {
    /// The chunk stream it arrived on.
    pub csid: u32,
    /// The 32-bit millisecond timestamp (wraps; see [`crate::time::Unwrapper`]).
    pub timestamp: u32,
    /// The message type id (8 audio, 9 video, 20 AMF0 command, ...).
    pub type_id: u8,
    /// The message stream id.
    pub stream_id: u32,
    /// The body.
    pub payload: Bytes,
}

/// Chunk-layer violations; each one ends the connection.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    /// A message longer than [`MAX_MESSAGE_SIZE`].
    #[error("message of {0} bytes exceeds the limit of {MAX_MESSAGE_SIZE}")]
    MessageTooLarge(u32),
    /// A chunk size of zero or above [`MAX_CHUNK_SIZE`].
    #[error("chunk size {0} is outside 1..={MAX_CHUNK_SIZE}")]
    BadChunkSize(u32),
    /// More than [`MAX_CHUNK_STREAMS`] chunk streams in use.
    #[error("more than {MAX_CHUNK_STREAMS} chunk streams open")]
    TooManyChunkStreams,
    /// Partial messages across all chunk streams hold more than [`MAX_BUFFERED_BYTES`].
    #[error("partial messages would hold {0} bytes, over the limit of {MAX_BUFFERED_BYTES}")]
    TooMuchBuffered(usize),
    /// A compressed header (fmt 1-3) on a chunk stream that never had a full one.
    #[error("chunk stream {csid} starts with header format {fmt}, which needs a previous header")]
    NoPreviousHeader {
        /// The chunk stream id.
        csid: u32,
        /// The header format (1, 2 or 3).
        fmt: u8,
    },
}

#[derive(Clone, Debug, Default)]
struct StreamState {
    timestamp: u32,
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    extended: bool,
    partial: BytesMut,
    in_progress: bool,
}

/// What the next chunk's header says, before anything is committed.
struct Header {
    fmt: u8,
    csid: u32,
    len: usize,
    ts_field: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    extended: bool,
}

/// Reassembles messages from a chunk stream.
#[derive(Debug)]
pub struct ChunkDecoder {
    chunk_size: u32,
    streams: HashMap<u32, StreamState>,
    /// Bytes held in partial messages across all chunk streams.
    buffered: usize,
    /// Payload bytes copied into partial messages so far: each input byte is
    /// copied at most once, which the fuzz target checks.
    copied: u64,
}

impl Default for ChunkDecoder {
    fn default() -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: HashMap::new(),
            buffered: 0,
            copied: 0,
        }
    }
}

impl ChunkDecoder {
    /// A decoder at the protocol's initial chunk size of 128.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies the peer's Set Chunk Size message.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        if size == 0 || size > MAX_CHUNK_SIZE {
            return Err(ChunkError::BadChunkSize(size));
        }
        self.chunk_size = size;
        Ok(())
    }

    /// Applies the peer's Abort message: drops the partial message on `csid`.
    pub fn abort(&mut self, csid: u32) {
        if let Some(s) = self.streams.get_mut(&csid) {
            self.buffered -= s.partial.len();
            s.partial.clear();
            s.in_progress = false;
        }
    }

    /// Payload bytes copied so far; never more than the bytes consumed, so the
    /// work per input byte is constant (the chunk layer once cloned every partial
    /// message per chunk, which made one large message quadratic).
    pub fn bytes_copied(&self) -> u64 {
        self.copied
    }

    /// Bytes held in partial messages now (bounded by [`MAX_BUFFERED_BYTES`]).
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Reads chunks from `input` until a message is complete (returned) or the input
    /// runs out mid-chunk (`Ok(None)`; the partial chunk stays in `input`).
    pub fn decode(&mut self, input: &mut BytesMut) -> Result<Option<RawMessage>, ChunkError> {
        loop {
            let Some(h) = self.peek_header(input)? else {
                return Ok(None);
            };
            let fresh = !self.streams.contains_key(&h.csid);
            if fresh && h.fmt != 0 {
                // A type-0 header may legally be skipped only by clients with prior state.
                return Err(ChunkError::NoPreviousHeader {
                    csid: h.csid,
                    fmt: h.fmt,
                });
            }
            if fresh && self.streams.len() >= MAX_CHUNK_STREAMS {
                return Err(ChunkError::TooManyChunkStreams);
            }
            // Read what the header leaves out from the stream's state by reference:
            // cloning it would copy the partial message on every chunk.
            let (prev_length, prev_partial, prev_in_progress) =
                self.streams.get(&h.csid).map_or((0, 0, false), |s| {
                    (s.length, s.partial.len(), s.in_progress)
                });
            let continuing = h.fmt == 3 && prev_in_progress;
            let (length, already) = if continuing {
                (prev_length, prev_partial)
            } else {
                let length = if h.fmt <= 1 { h.length } else { prev_length };
                if length > MAX_MESSAGE_SIZE {
                    return Err(ChunkError::MessageTooLarge(length));
                }
                (length, 0)
            };
            let n = (length as usize - already).min(self.chunk_size as usize);
            // A new message drops the stream's old partial (if any) first.
            let dropped = if continuing { 0 } else { prev_partial };
            let would_hold = self.buffered - dropped + n;
            if would_hold > MAX_BUFFERED_BYTES {
                return Err(ChunkError::TooMuchBuffered(would_hold));
            }
            if input.len() < h.len + n {
                return Ok(None);
            }
            input.advance(h.len);
            let body = input.split_to(n);

            let state = self.streams.entry(h.csid).or_default();
            if !continuing {
                match h.fmt {
                    0 => {
                        state.timestamp = h.ts_field;
                        state.delta = h.ts_field;
                        state.stream_id = h.stream_id;
                    }
                    3 => state.timestamp = state.timestamp.wrapping_add(state.delta),
                    _ => {
                        state.delta = h.ts_field;
                        state.timestamp = state.timestamp.wrapping_add(h.ts_field);
                    }
                }
                if h.fmt <= 1 {
                    state.length = h.length;
                    state.type_id = h.type_id;
                }
                self.buffered -= state.partial.len();
                state.partial.clear();
                state.partial.reserve((length as usize).min(64 << 10));
                state.in_progress = true;
            }
            if h.fmt != 3 {
                state.extended = h.extended;
            }
            state.partial.extend_from_slice(&body);
            self.buffered += body.len();
            self.copied += body.len() as u64;
            if state.partial.len() == state.length as usize {
                state.in_progress = false;
                self.buffered -= state.partial.len();
                return Ok(Some(RawMessage {
                    csid: h.csid,
                    timestamp: state.timestamp,
                    type_id: state.type_id,
                    stream_id: state.stream_id,
                    payload: state.partial.split().freeze(),
                }));
            }
        }
    }

    fn peek_header(&self, input: &[u8]) -> Result<Option<Header>, ChunkError> {
        let Some(&b0) = input.first() else {
            return Ok(None);
        };
        let fmt = b0 >> 6;
        let (csid, mut at) = match b0 & 0x3f {
            0 => match input.get(1) {
                Some(&b1) => (64 + u32::from(b1), 2),
                None => return Ok(None),
            },
            1 => match (input.get(1), input.get(2)) {
                (Some(&b1), Some(&b2)) => (64 + u32::from(b1) + 256 * u32::from(b2), 3),
                _ => return Ok(None),
            },
            id => (u32::from(id), 1),
        };
        let mlen = [11, 7, 3, 0][usize::from(fmt)];
        let Some(m) = input.get(at..at + mlen) else {
            return Ok(None);
        };
        at += mlen;
        let u24 = |b: &[u8]| u32::from_be_bytes([0, b[0], b[1], b[2]]);
        let mut h = Header {
            fmt,
            csid,
            len: 0,
            ts_field: if fmt < 3 { u24(&m[0..3]) } else { 0 },
            length: if fmt < 2 { u24(&m[3..6]) } else { 0 },
            type_id: if fmt < 2 { m[6] } else { 0 },
            stream_id: if fmt == 0 {
                u32::from_le_bytes([m[7], m[8], m[9], m[10]])
            } else {
                0
            },
            extended: false,
        };
        h.extended = if fmt < 3 {
            h.ts_field == EXTENDED
        } else {
            self.streams.get(&csid).is_some_and(|s| s.extended)
        };
        if h.extended {
            let Some(e) = input.get(at..at + 4) else {
                return Ok(None);
            };
            let value = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
            if fmt < 3 {
                h.ts_field = value;
            }
            at += 4;
        }
        h.len = at;
        Ok(Some(h))
    }
}

/// Splits outgoing messages into chunks: a full header first, then continuation
/// headers, so every message can be read without state from earlier ones.
#[derive(Clone, Copy, Debug)]
pub struct ChunkEncoder {
    chunk_size: u32,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
        }
    }
}

impl ChunkEncoder {
    /// An encoder at the initial chunk size of 128.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `size` from now on; send a Set Chunk Size message before the next chunk.
    pub fn set_chunk_size(&mut self, size: u32) {
        self.chunk_size = size.clamp(1, MAX_CHUNK_SIZE);
    }

    /// Appends `payload` as one message to `out`.
    pub fn write(
        &self,
        out: &mut BytesMut,
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        payload: &[u8],
    ) {
        self.write_parts(out, csid, timestamp, type_id, stream_id, &[], payload);
    }

    /// Appends one message whose body is `head` followed by `tail`, so a tag
    /// header and a shared payload need not be joined first.
    #[allow(clippy::too_many_arguments)]
    pub fn write_parts(
        &self,
        out: &mut BytesMut,
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        head: &[u8],
        tail: &[u8],
    ) {
        let len = head.len() + tail.len();
        let extended = timestamp >= EXTENDED;
        let size = self.chunk_size as usize;
        out.reserve(len + 16 + len.div_ceil(size) * 8);
        put_basic_header(out, 0, csid);
        put_u24(out, if extended { EXTENDED } else { timestamp });
        put_u24(out, len as u32);
        out.put_u8(type_id);
        out.put_u32_le(stream_id);
        if extended {
            out.put_u32(timestamp);
        }
        let mut at = 0;
        while at < len {
            if at > 0 {
                put_basic_header(out, 3, csid);
                if extended {
                    out.put_u32(timestamp);
                }
            }
            let end = (at + size).min(len);
            if at < head.len() {
                out.put_slice(&head[at..end.min(head.len())]);
            }
            if end > head.len() {
                out.put_slice(&tail[at.max(head.len()) - head.len()..end - head.len()]);
            }
            at = end;
        }
    }
}

/// Where a message's chunks go when its payload is shared, not copied: chunk
/// headers (and small pieces) are copied, payload slices passed on as
/// `Bytes` that point into the one payload every subscriber shares.
pub trait ChunkSink {
    /// Bytes to copy.
    fn copy(&mut self, bytes: &[u8]);
    /// A slice of a shared payload.
    fn share(&mut self, bytes: Bytes);
}

/// Payload slices shorter than this are copied: an iovec and a reference
/// count cost more than copying a few hundred bytes.
pub const SHARE_MIN: usize = 1024;

impl ChunkEncoder {
    /// Like [`ChunkEncoder::write_parts`], but the payload `tail` goes to
    /// `sink` as slices of itself, so it is never copied per player.
    #[allow(clippy::too_many_arguments)]
    pub fn write_shared(
        &self,
        sink: &mut impl ChunkSink,
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        head: &[u8],
        tail: &Bytes,
    ) {
        let len = head.len() + tail.len();
        let extended = timestamp >= EXTENDED;
        let size = self.chunk_size as usize;
        // The largest header: 3-byte basic, 11-byte message, 4-byte extended
        // timestamp, and room for a small `head` (an FLV tag header).
        let mut buf = [0u8; 64];
        let mut first = true;
        let mut at = 0;
        loop {
            let mut w = &mut buf[..];
            if first {
                put_basic_header(&mut w, 0, csid);
                put_u24(&mut w, if extended { EXTENDED } else { timestamp });
                put_u24(&mut w, len as u32);
                w.put_u8(type_id);
                w.put_u32_le(stream_id);
            } else {
                put_basic_header(&mut w, 3, csid);
            }
            if extended {
                w.put_u32(timestamp);
            }
            let end = (at + size).min(len);
            // The part of `head` in this chunk rides with the header.
            let mut from_head = 0;
            if at < head.len() {
                let piece = &head[at..end.min(head.len())];
                if piece.len() <= w.remaining_mut() {
                    w.put_slice(piece);
                    from_head = piece.len();
                }
            }
            let used = 64 - w.remaining_mut();
            sink.copy(&buf[..used]);
            if at < head.len() && from_head == 0 {
                sink.copy(&head[at..end.min(head.len())]);
            }
            if end > head.len() {
                let piece = tail.slice(at.max(head.len()) - head.len()..end - head.len());
                if piece.len() >= SHARE_MIN {
                    sink.share(piece);
                } else {
                    sink.copy(&piece);
                }
            }
            first = false;
            at = end;
            if at >= len {
                break;
            }
        }
    }
}

fn put_u24(out: &mut impl BufMut, v: u32) {
    out.put_slice(&v.to_be_bytes()[1..]);
}

fn put_basic_header(out: &mut impl BufMut, fmt: u8, csid: u32) {
    match csid {
        2..=63 => out.put_u8((fmt << 6) | csid as u8),
        64..=319 => {
            out.put_u8(fmt << 6);
            out.put_u8((csid - 64) as u8);
        }
        _ => {
            let id = csid.saturating_sub(64).min(0xffff);
            out.put_u8((fmt << 6) | 1);
            out.put_u16_le(id as u16);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(csid: u32, ts: u32, type_id: u8, len: usize) -> RawMessage {
        RawMessage {
            csid,
            timestamp: ts,
            type_id,
            stream_id: 1,
            payload: Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>()),
        }
    }

    fn encode(enc: &ChunkEncoder, m: &RawMessage, out: &mut BytesMut) {
        enc.write(out, m.csid, m.timestamp, m.type_id, m.stream_id, &m.payload);
    }

    #[test]
    fn round_trip_fed_one_byte_at_a_time() {
        let enc = ChunkEncoder::new();
        let sent = vec![
            msg(4, 0, 8, 10),
            msg(6, 33, 9, 1000),
            msg(6, 0x0100_0000, 9, 300),
            msg(320, 5, 9, 0),
            msg(70_000, 7, 20, 129),
        ];
        let mut wire = BytesMut::new();
        for m in &sent {
            encode(&enc, m, &mut wire);
        }
        let mut dec = ChunkDecoder::new();
        let mut input = BytesMut::new();
        let mut got = Vec::new();
        for b in wire {
            input.put_u8(b);
            while let Some(m) = dec.decode(&mut input).expect("valid") {
                got.push(m);
            }
        }
        let mut want = sent;
        want[4].csid = 64 + 0xffff;
        assert_eq!(got, want);
    }

    /// Two chunk streams interleaved chunk by chunk: legal, and the input that makes
    /// rml_rtmp 0.8 panic with "capacity overflow".
    #[test]
    fn interleaved_chunk_streams() {
        let (a, b) = (msg(4, 10, 8, 300), msg(6, 20, 9, 300));
        let mut wire_a = BytesMut::new();
        let mut wire_b = BytesMut::new();
        let enc = ChunkEncoder::new();
        encode(&enc, &a, &mut wire_a);
        encode(&enc, &b, &mut wire_b);
        // Each message is 12-byte header + 128, then 1 + 128, then 1 + 44.
        let cuts = [140, 129, 45];
        let mut wire = BytesMut::new();
        for n in cuts {
            wire.put_slice(&wire_a.split_to(n));
            wire.put_slice(&wire_b.split_to(n));
        }
        let mut dec = ChunkDecoder::new();
        assert_eq!(dec.decode(&mut wire), Ok(Some(a)));
        assert_eq!(dec.decode(&mut wire), Ok(Some(b)));
        assert!(wire.is_empty());
    }

    #[test]
    fn compressed_headers_and_type3_new_message() {
        // fmt 0 at ts 1000, then fmt 1 (+40), fmt 2 (+40), fmt 3 (reuses delta 40).
        let mut wire = BytesMut::new();
        wire.put_slice(&[0x04, 0x00, 0x03, 0xe8, 0, 0, 2, 8, 1, 0, 0, 0, 0xaa, 0xbb]);
        wire.put_slice(&[0x44, 0, 0, 40, 0, 0, 1, 8, 0xcc]);
        wire.put_slice(&[0x84, 0, 0, 40, 0xdd]);
        wire.put_slice(&[0xc4, 0xee]);
        let mut dec = ChunkDecoder::new();
        let ts: Vec<_> = std::iter::from_fn(|| dec.decode(&mut wire).expect("valid"))
            .map(|m| (m.timestamp, m.payload.to_vec()))
            .collect();
        assert_eq!(
            ts,
            vec![
                (1000, vec![0xaa, 0xbb]),
                (1040, vec![0xcc]),
                (1080, vec![0xdd]),
                (1120, vec![0xee])
            ]
        );
    }

    #[test]
    fn bounds_are_enforced() {
        let mut dec = ChunkDecoder::new();
        assert_eq!(dec.set_chunk_size(0), Err(ChunkError::BadChunkSize(0)));
        assert_eq!(
            dec.set_chunk_size(0x7fff_ffff),
            Err(ChunkError::BadChunkSize(0x7fff_ffff))
        );
        let mut huge = BytesMut::from(&[0x04, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0][..]);
        assert_eq!(
            dec.decode(&mut huge),
            Err(ChunkError::MessageTooLarge(0x00ff_ffff))
        );
        let mut orphan = BytesMut::from(&[0xc5, 0x00][..]);
        assert_eq!(
            dec.decode(&mut orphan),
            Err(ChunkError::NoPreviousHeader { csid: 5, fmt: 3 })
        );
        let mut many = BytesMut::new();
        let enc = ChunkEncoder::new();
        for csid in 3..(4 + MAX_CHUNK_STREAMS as u32) {
            encode(&enc, &msg(csid, 0, 9, 1), &mut many);
        }
        let results: Vec<_> = std::iter::repeat_with(|| dec.decode(&mut many))
            .take(MAX_CHUNK_STREAMS + 1)
            .collect();
        assert!(
            results[..MAX_CHUNK_STREAMS]
                .iter()
                .all(|r| matches!(r, Ok(Some(_))))
        );
        assert_eq!(
            results[MAX_CHUNK_STREAMS],
            Err(ChunkError::TooManyChunkStreams)
        );
    }

    #[test]
    fn parts_equal_joined_body() {
        let mut enc = ChunkEncoder::new();
        enc.set_chunk_size(7);
        let body: Vec<u8> = (0..40).collect();
        for split in [0, 3, 7, 8, 40] {
            let mut a = BytesMut::new();
            let mut b = BytesMut::new();
            enc.write(&mut a, 6, 1, 9, 1, &body);
            enc.write_parts(&mut b, 6, 1, 9, 1, &body[..split], &body[split..]);
            assert_eq!(a, b, "split at {split}");
        }
    }

    /// Collects what `write_shared` emits, joined.
    #[derive(Default)]
    struct Joined(BytesMut, usize);

    impl ChunkSink for Joined {
        fn copy(&mut self, bytes: &[u8]) {
            self.0.put_slice(bytes);
        }
        fn share(&mut self, bytes: Bytes) {
            self.1 += 1;
            self.0.put_slice(&bytes);
        }
    }

    #[test]
    fn shared_writes_equal_copied_ones() {
        for (chunk, len, ts) in [
            (128, 0, 5),
            (128, 5000, 5),
            (4096, 100_000, 0x0100_0000),
            (4096, 300, 40),
        ] {
            let mut enc = ChunkEncoder::new();
            enc.set_chunk_size(chunk);
            let body = Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>());
            let head = [0x17, 1, 0, 0, 0];
            let mut copied = BytesMut::new();
            enc.write_parts(&mut copied, 6, ts, 9, 1, &head, &body);
            let mut shared = Joined::default();
            enc.write_shared(&mut shared, 6, ts, 9, 1, &head, &body);
            assert_eq!(shared.0, copied, "chunk {chunk}, {len} bytes");
            if len >= 100_000 {
                assert!(shared.1 >= 20, "large payloads are shared, not copied");
            }
        }
    }

    #[test]
    fn abort_discards_partial_message() {
        let enc = ChunkEncoder::new();
        let mut wire = BytesMut::new();
        encode(&enc, &msg(4, 0, 8, 200), &mut wire);
        let mut partial = wire.split_to(140);
        let mut dec = ChunkDecoder::new();
        assert_eq!(dec.decode(&mut partial), Ok(None));
        dec.abort(4);
        let mut next = BytesMut::new();
        encode(&enc, &msg(4, 5, 8, 3), &mut next);
        assert_eq!(
            dec.decode(&mut next).map(|m| m.map(|m| m.timestamp)),
            Ok(Some(5))
        );
    }

    /// A maximal message in 128-byte chunks: each byte is copied once, and it
    /// takes well under a second (cloning the partial message per chunk once
    /// made this minutes of CPU, before `connect`, for anyone).
    #[test]
    fn maximal_message_in_small_chunks_costs_linear_work() {
        let enc = ChunkEncoder::new();
        let m = msg(6, 0, 9, MAX_MESSAGE_SIZE as usize);
        let mut wire = BytesMut::new();
        encode(&enc, &m, &mut wire);
        let consumed = wire.len() as u64;
        let mut dec = ChunkDecoder::new();
        let started = std::time::Instant::now();
        let mut input = BytesMut::new();
        let mut got = None;
        while !wire.is_empty() {
            let n = wire.len().min(64 << 10);
            input.extend_from_slice(&wire.split_to(n));
            if let Some(m) = dec.decode(&mut input).expect("valid") {
                got = Some(m);
            }
        }
        let elapsed = started.elapsed();
        assert_eq!(
            got.map(|g| g.payload.len()),
            Some(MAX_MESSAGE_SIZE as usize)
        );
        assert_eq!(dec.bytes_copied(), u64::from(MAX_MESSAGE_SIZE));
        assert!(dec.bytes_copied() <= consumed);
        assert_eq!(dec.buffered(), 0);
        assert!(
            elapsed < std::time::Duration::from_secs(3),
            "took {elapsed:?}"
        );
    }

    /// Partial messages on many chunk streams cannot add up past the connection's bound.
    #[test]
    fn partial_messages_are_bounded_per_connection() {
        let enc = ChunkEncoder::new();
        let mut dec = ChunkDecoder::new();
        let mut refused = None;
        for csid in 3..(3 + MAX_CHUNK_STREAMS as u32) {
            let mut wire = BytesMut::new();
            encode(&enc, &msg(csid, 0, 9, MAX_MESSAGE_SIZE as usize), &mut wire);
            // Everything but the last chunk: the message stays partial.
            let mut partial = wire.split_to(wire.len() - 200);
            match dec.decode(&mut partial) {
                Ok(None) => {}
                Err(e) => {
                    refused = Some(e);
                    break;
                }
                Ok(Some(_)) => panic!("a partial message cannot complete"),
            }
            assert!(dec.buffered() <= MAX_BUFFERED_BYTES);
        }
        assert!(
            matches!(refused, Some(ChunkError::TooMuchBuffered(n)) if n > MAX_BUFFERED_BYTES),
            "{refused:?}"
        );
        // Abort releases what a stream held.
        dec.abort(3);
        assert!(dec.buffered() < MAX_BUFFERED_BYTES - (4 << 20));
    }
}
