//! The relay's wire format: one QUIC stream per pulled media stream, carrying
//! length-prefixed frames. Sans-IO, so the decoder can be fuzzed and unit
//! tested without a network.
//!
//! Every frame is `type: u8 | length: u32 BE | body`. The edge sends one
//! `Request` (with its credential: the origin serves only edges it knows);
//! the origin answers `Forbidden`, `Live` or `NotLive`, then (when live) the
//! hub's events in order: `Started`, `Metadata`, `Track`, `Packet`…,
//! `Stopped`. A packet's payload is sent as its own chunk after a small
//! header, so the origin never copies it.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use media_core::{Codec, MetaValue, Metadata, Packet, Timebase, Timestamp, TrackInfo, TrackKind};

/// The protocol version an edge asks for; an origin refuses others (2: the
/// request carries the edge's token).
pub const VERSION: u8 = 2;
/// Bytes of a frame header (type and length).
pub const HEADER_LEN: usize = 5;
/// The largest frame body accepted: far above any coded frame a live encoder
/// sends, low enough that a hostile peer cannot make a node buffer much.
pub const MAX_BODY: usize = 16 << 20;
/// The longest stream name a request may carry.
pub const MAX_NAME: usize = 512;
/// The longest token a request may carry.
pub const MAX_TOKEN: usize = 128;
/// The largest request body: version, token length, token, name.
pub const MAX_REQUEST: usize = 2 + MAX_TOKEN + MAX_NAME;

mod kind {
    pub const REQUEST: u8 = 1;
    pub const LIVE: u8 = 2;
    pub const NOT_LIVE: u8 = 3;
    pub const STARTED: u8 = 4;
    pub const STOPPED: u8 = 5;
    pub const METADATA: u8 = 6;
    pub const TRACK: u8 = 7;
    pub const PACKET: u8 = 8;
    pub const FORBIDDEN: u8 = 9;
}

/// One unit of the relay protocol.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// Edge → origin: send me this stream.
    Request {
        /// Protocol version.
        version: u8,
        /// The edge's credential (its control token, or `[relay] token`).
        token: String,
        /// Stream name as in the hub (`demo`, `demo/720p`).
        name: String,
    },
    /// The origin does not know the edge's token; the connection closes.
    Forbidden,
    /// The origin has the stream live; its events follow.
    Live,
    /// The origin does not have the stream live; the stream ends.
    NotLive,
    /// A publisher started.
    Started,
    /// The publisher left; the stream ends after this.
    Stopped,
    /// Stream metadata.
    Metadata(Metadata),
    /// A track's decoder configuration.
    Track(TrackInfo),
    /// A coded frame.
    Packet(Packet),
}

/// Why bytes from a peer are not a frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The type byte names no frame.
    #[error("unknown relay frame type {0}")]
    UnknownType(u8),
    /// The length field is above [`MAX_BODY`].
    #[error("relay frame of {0} bytes is over the limit")]
    TooLarge(usize),
    /// The body is shorter than its fields, or has bytes left over.
    #[error("malformed relay frame body ({0})")]
    Malformed(&'static str),
    /// A codec configuration that does not parse.
    #[error("bad decoder config in relay frame: {0}")]
    Codec(String),
}

/// Appends `frame` to `out`; a packet's payload is copied too (the origin's
/// hot path uses [`packet_header`] and sends the payload as its own chunk).
pub fn encode(frame: &Frame, out: &mut BytesMut) {
    match frame {
        Frame::Packet(p) => {
            out.extend_from_slice(&packet_header(p));
            out.extend_from_slice(&p.payload);
        }
        other => {
            let mut body = BytesMut::new();
            let t = match other {
                Frame::Request {
                    version,
                    token,
                    name,
                } => {
                    body.put_u8(*version);
                    let token = &token.as_bytes()[..token.len().min(MAX_TOKEN)];
                    body.put_u8(token.len() as u8);
                    body.extend_from_slice(token);
                    body.extend_from_slice(name.as_bytes());
                    kind::REQUEST
                }
                Frame::Forbidden => kind::FORBIDDEN,
                Frame::Live => kind::LIVE,
                Frame::NotLive => kind::NOT_LIVE,
                Frame::Started => kind::STARTED,
                Frame::Stopped => kind::STOPPED,
                Frame::Metadata(m) => {
                    encode_metadata(m, &mut body);
                    kind::METADATA
                }
                Frame::Track(t) => {
                    body.put_u8(match t.codec {
                        Codec::H264 => 1,
                        Codec::Aac => 2,
                        Codec::H265 => 3,
                        Codec::Av1 => 4,
                    });
                    body.extend_from_slice(&t.config);
                    kind::TRACK
                }
                Frame::Packet(_) => unreachable!("handled above"),
            };
            out.put_u8(t);
            out.put_u32(body.len() as u32);
            out.extend_from_slice(&body);
        }
    }
}

/// Bytes of a packet frame's header and fixed fields, before the payload.
pub const PACKET_HEADER_LEN: usize = HEADER_LEN + 1 + 1 + 4 + 8 + 8;

/// The header of a packet frame; the payload follows it on the wire.
pub fn packet_header(p: &Packet) -> [u8; PACKET_HEADER_LEN] {
    let mut h = [0u8; PACKET_HEADER_LEN];
    let body = PACKET_HEADER_LEN - HEADER_LEN + p.payload.len();
    h[0] = kind::PACKET;
    h[1..5].copy_from_slice(&(body as u32).to_be_bytes());
    h[5] = match p.track {
        TrackKind::Video => 0,
        TrackKind::Audio => 1,
    };
    h[6] = u8::from(p.keyframe);
    h[7..11].copy_from_slice(&p.dts.timebase().hz().to_be_bytes());
    h[11..19].copy_from_slice(&p.dts.ticks().to_be_bytes());
    let pts = p.pts.rescale(p.dts.timebase()).unwrap_or(p.dts);
    h[19..27].copy_from_slice(&pts.ticks().to_be_bytes());
    h
}

fn encode_metadata(m: &Metadata, body: &mut BytesMut) {
    let m = &m[..m.len().min(u16::MAX as usize)];
    body.put_u16(m.len() as u16);
    for (k, v) in m {
        put_str(body, k);
        match v {
            MetaValue::Number(n) => {
                body.put_u8(0);
                body.put_f64(*n);
            }
            MetaValue::Bool(b) => {
                body.put_u8(1);
                body.put_u8(u8::from(*b));
            }
            MetaValue::Text(t) => {
                body.put_u8(2);
                put_str(body, t);
            }
        }
    }
}

fn put_str(body: &mut BytesMut, s: &str) {
    let s = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    body.put_u16(s.len() as u16);
    body.extend_from_slice(s);
}

/// Takes one whole frame off the front of `buf`: `Ok(None)` until enough
/// bytes are there. A packet's payload is split off `buf` without copying.
pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let t = buf[0];
    if !(kind::REQUEST..=kind::FORBIDDEN).contains(&t) {
        return Err(FrameError::UnknownType(t));
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > MAX_BODY {
        return Err(FrameError::TooLarge(len));
    }
    if buf.len() < HEADER_LEN + len {
        buf.reserve(HEADER_LEN + len - buf.len());
        return Ok(None);
    }
    buf.advance(HEADER_LEN);
    let body = buf.split_to(len).freeze();
    parse_body(t, body).map(Some)
}

fn parse_body(t: u8, mut body: Bytes) -> Result<Frame, FrameError> {
    let empty = |f: Frame, body: &Bytes| {
        if body.is_empty() {
            Ok(f)
        } else {
            Err(FrameError::Malformed("unexpected body"))
        }
    };
    match t {
        kind::REQUEST => {
            if body.is_empty() {
                return Err(FrameError::Malformed("request without version"));
            }
            let version = body.get_u8();
            if version != VERSION {
                // An older edge: answered with a version error, not parsed.
                return Ok(Frame::Request {
                    version,
                    token: String::new(),
                    name: String::new(),
                });
            }
            if body.is_empty() {
                return Err(FrameError::Malformed("request without token"));
            }
            let token_len = usize::from(body.get_u8());
            if token_len > MAX_TOKEN || body.len() < token_len {
                return Err(FrameError::Malformed("bad token length"));
            }
            let token = body.split_to(token_len);
            let token = std::str::from_utf8(&token)
                .map_err(|_| FrameError::Malformed("token is not UTF-8"))?
                .to_owned();
            if body.len() > MAX_NAME {
                return Err(FrameError::Malformed("stream name too long"));
            }
            let name = std::str::from_utf8(&body)
                .map_err(|_| FrameError::Malformed("stream name is not UTF-8"))?
                .to_owned();
            Ok(Frame::Request {
                version,
                token,
                name,
            })
        }
        kind::LIVE => empty(Frame::Live, &body),
        kind::NOT_LIVE => empty(Frame::NotLive, &body),
        kind::FORBIDDEN => empty(Frame::Forbidden, &body),
        kind::STARTED => empty(Frame::Started, &body),
        kind::STOPPED => empty(Frame::Stopped, &body),
        kind::METADATA => parse_metadata(&mut body).map(Frame::Metadata),
        kind::TRACK => {
            if body.is_empty() {
                return Err(FrameError::Malformed("track without codec"));
            }
            let codec = body.get_u8();
            let track = match codec {
                1 => TrackInfo::h264(body),
                2 => TrackInfo::aac(body),
                3 => TrackInfo::h265(body),
                4 => TrackInfo::av1(body),
                _ => return Err(FrameError::Malformed("unknown codec")),
            };
            track
                .map(Frame::Track)
                .map_err(|e| FrameError::Codec(e.to_string()))
        }
        kind::PACKET => {
            if body.len() < PACKET_HEADER_LEN - HEADER_LEN {
                return Err(FrameError::Malformed("short packet"));
            }
            let track = match body.get_u8() {
                0 => TrackKind::Video,
                1 => TrackKind::Audio,
                _ => return Err(FrameError::Malformed("unknown track")),
            };
            let flags = body.get_u8();
            let timebase =
                Timebase::new(body.get_u32()).ok_or(FrameError::Malformed("zero timebase"))?;
            let dts = Timestamp::new(body.get_i64(), timebase);
            let pts = Timestamp::new(body.get_i64(), timebase);
            Ok(Frame::Packet(Packet {
                track,
                dts,
                pts,
                keyframe: flags & 1 == 1,
                payload: body,
            }))
        }
        other => Err(FrameError::UnknownType(other)),
    }
}

fn parse_metadata(body: &mut Bytes) -> Result<Metadata, FrameError> {
    let short = FrameError::Malformed("short metadata");
    if body.len() < 2 {
        return Err(short);
    }
    let n = body.get_u16() as usize;
    let mut out = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let key = get_str(body)?;
        if body.is_empty() {
            return Err(FrameError::Malformed("short metadata"));
        }
        let value = match body.get_u8() {
            0 if body.len() >= 8 => MetaValue::Number(body.get_f64()),
            1 if !body.is_empty() => MetaValue::Bool(body.get_u8() != 0),
            2 => MetaValue::Text(get_str(body)?),
            _ => return Err(FrameError::Malformed("bad metadata value")),
        };
        out.push((key, value));
    }
    if !body.is_empty() {
        return Err(FrameError::Malformed("bytes after metadata"));
    }
    Ok(out)
}

fn get_str(body: &mut Bytes) -> Result<String, FrameError> {
    if body.len() < 2 {
        return Err(FrameError::Malformed("short string"));
    }
    let n = body.get_u16() as usize;
    if body.len() < n {
        return Err(FrameError::Malformed("short string"));
    }
    let s = body.split_to(n);
    String::from_utf8(s.to_vec()).map_err(|_| FrameError::Malformed("string is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(f: Frame) -> Frame {
        let mut buf = BytesMut::new();
        encode(&f, &mut buf);
        // Fed one byte at a time, the frame appears only when whole.
        let whole = buf.clone();
        let mut partial = BytesMut::new();
        for (i, b) in whole.iter().enumerate() {
            partial.put_u8(*b);
            let got = decode(&mut partial).expect("valid");
            assert_eq!(got.is_some(), i + 1 == whole.len(), "at byte {i}");
            if let Some(g) = got {
                assert!(partial.is_empty());
                return g;
            }
        }
        unreachable!("a frame is decoded at the last byte")
    }

    #[test]
    fn every_frame_survives_the_wire() {
        let packet = Packet {
            track: TrackKind::Video,
            dts: Timestamp::from_millis(-5),
            pts: Timestamp::from_millis(40),
            keyframe: true,
            payload: Bytes::from_static(b"\0\0\0\x02\x65\x88"),
        };
        let metadata = vec![
            ("width".to_owned(), MetaValue::Number(1280.0)),
            ("stereo".to_owned(), MetaValue::Bool(true)),
            ("encoder".to_owned(), MetaValue::Text("obs".into())),
        ];
        let aac = TrackInfo::aac(Bytes::from_static(&[0x12, 0x10])).expect("valid asc");
        for f in [
            Frame::Request {
                version: VERSION,
                token: "edge-token".into(),
                name: "demo/720p".into(),
            },
            Frame::Forbidden,
            Frame::Live,
            Frame::NotLive,
            Frame::Started,
            Frame::Stopped,
            Frame::Metadata(metadata),
            Frame::Track(aac),
            Frame::Packet(packet),
        ] {
            assert_eq!(roundtrip(f.clone()), f);
        }
    }

    #[test]
    fn hostile_frames_are_refused() {
        let mut b = BytesMut::from(&[99u8, 0, 0, 0, 0][..]);
        assert_eq!(decode(&mut b), Err(FrameError::UnknownType(99)));
        let mut b = BytesMut::from(&[kind::PACKET, 0xff, 0xff, 0xff, 0xff][..]);
        assert!(matches!(decode(&mut b), Err(FrameError::TooLarge(_))));
        let mut b = BytesMut::from(&[kind::PACKET, 0, 0, 0, 2, 0, 0][..]);
        assert_eq!(decode(&mut b), Err(FrameError::Malformed("short packet")));
        let mut b = BytesMut::from(&[kind::LIVE, 0, 0, 0, 1, 7][..]);
        assert_eq!(
            decode(&mut b),
            Err(FrameError::Malformed("unexpected body"))
        );
        let mut b = BytesMut::from(&[kind::TRACK, 0, 0, 0, 3, 1, 0, 0][..]);
        assert!(matches!(decode(&mut b), Err(FrameError::Codec(_))));
        let mut b = BytesMut::from(&[kind::METADATA, 0, 0, 0, 4, 0, 1, 0, 9][..]);
        assert_eq!(decode(&mut b), Err(FrameError::Malformed("short string")));
    }
}
