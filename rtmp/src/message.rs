//! RTMP messages: what a reassembled [`RawMessage`] means, and how to build ours.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::amf0::{self, Amf0Value, AmfError};
use crate::chunk::RawMessage;

/// Message type ids (RTMP specification, section 5.4 and 7.1).
pub mod type_id {
    /// Set Chunk Size.
    pub const SET_CHUNK_SIZE: u8 = 1;
    /// Abort Message.
    pub const ABORT: u8 = 2;
    /// Acknowledgement.
    pub const ACK: u8 = 3;
    /// User Control Message.
    pub const USER_CONTROL: u8 = 4;
    /// Window Acknowledgement Size.
    pub const WINDOW_ACK_SIZE: u8 = 5;
    /// Set Peer Bandwidth.
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    /// Audio data (an FLV audio tag body).
    pub const AUDIO: u8 = 8;
    /// Video data (an FLV video tag body).
    pub const VIDEO: u8 = 9;
    /// Data message, AMF3 wrapper.
    pub const DATA_AMF3: u8 = 15;
    /// Command message, AMF3 wrapper.
    pub const COMMAND_AMF3: u8 = 17;
    /// Data message, AMF0 (`@setDataFrame`, `onMetaData`).
    pub const DATA_AMF0: u8 = 18;
    /// Command message, AMF0 (`connect`, `publish`, ...).
    pub const COMMAND_AMF0: u8 = 20;
    /// Aggregate message: a run of FLV tags.
    pub const AGGREGATE: u8 = 22;
}

/// User control event types.
pub mod user_control {
    /// Stream Begin.
    pub const STREAM_BEGIN: u16 = 0;
    /// Stream EOF.
    pub const STREAM_EOF: u16 = 1;
    /// Set Buffer Length.
    pub const SET_BUFFER_LENGTH: u16 = 3;
    /// Ping Request.
    pub const PING_REQUEST: u16 = 6;
    /// Ping Response.
    pub const PING_RESPONSE: u16 = 7;
}

/// A message that breaks the protocol; ends the connection.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
    /// A control message shorter than its fixed layout.
    #[error("message type {type_id} is {len} bytes, too short")]
    TooShort {
        /// The message type.
        type_id: u8,
        /// Its length.
        len: usize,
    },
    /// An AMF body that does not decode.
    #[error("message type {type_id}: {source}")]
    Amf {
        /// The message type.
        type_id: u8,
        /// What is wrong.
        source: AmfError,
    },
    /// A command whose first values are not a name and a transaction id.
    #[error("command without a name")]
    CommandWithoutName,
    /// An aggregate message whose tags overrun it.
    #[error("aggregate message is malformed at byte {0}")]
    BadAggregate(usize),
}

/// A command: `name`, transaction id, and the rest of the AMF values.
#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    /// `connect`, `publish`, `onStatus`, ...
    pub name: String,
    /// Transaction id for `_result` replies (0 when none is expected).
    pub transaction: f64,
    /// The command object and arguments that follow.
    pub args: Vec<Amf0Value>,
}

/// A parsed RTMP message.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// The peer's new outgoing chunk size.
    SetChunkSize(u32),
    /// Drop a partial message on this chunk stream.
    Abort(u32),
    /// The peer has received this many bytes.
    Acknowledgement(u32),
    /// A user control event and its data.
    UserControl {
        /// Event type.
        event: u16,
        /// Event data.
        data: Bytes,
    },
    /// The peer wants an acknowledgement every this many bytes.
    WindowAckSize(u32),
    /// The peer limits our output bandwidth (advisory).
    SetPeerBandwidth(u32),
    /// Audio data: an FLV audio tag body.
    Audio {
        /// Raw 32-bit timestamp.
        timestamp: u32,
        /// The body.
        data: Bytes,
    },
    /// Video data: an FLV video tag body.
    Video {
        /// Raw 32-bit timestamp.
        timestamp: u32,
        /// The body.
        data: Bytes,
    },
    /// A data message (`@setDataFrame`, `onMetaData`, ...).
    Data(Vec<Amf0Value>),
    /// A command.
    Command(Command),
    /// Anything else (shared objects, unknown types): ignored.
    Other(u8),
}

impl Message {
    /// Interprets a raw message. Aggregates must be split with [`split_aggregate`] first.
    pub fn parse(raw: &RawMessage) -> Result<Message, MessageError> {
        use type_id::*;
        let p = &raw.payload;
        let u32_at = |type_id| {
            if p.len() < 4 {
                return Err(MessageError::TooShort {
                    type_id,
                    len: p.len(),
                });
            }
            Ok(u32::from_be_bytes([p[0], p[1], p[2], p[3]]))
        };
        Ok(match raw.type_id {
            SET_CHUNK_SIZE => Message::SetChunkSize(u32_at(raw.type_id)? & 0x7fff_ffff),
            ABORT => Message::Abort(u32_at(raw.type_id)?),
            ACK => Message::Acknowledgement(u32_at(raw.type_id)?),
            WINDOW_ACK_SIZE => Message::WindowAckSize(u32_at(raw.type_id)?),
            SET_PEER_BANDWIDTH => Message::SetPeerBandwidth(u32_at(raw.type_id)?),
            USER_CONTROL => {
                if p.len() < 2 {
                    return Err(MessageError::TooShort {
                        type_id: USER_CONTROL,
                        len: p.len(),
                    });
                }
                Message::UserControl {
                    event: u16::from_be_bytes([p[0], p[1]]),
                    data: p.slice(2..),
                }
            }
            AUDIO => Message::Audio {
                timestamp: raw.timestamp,
                data: p.clone(),
            },
            VIDEO => Message::Video {
                timestamp: raw.timestamp,
                data: p.clone(),
            },
            DATA_AMF0 => Message::Data(decode(DATA_AMF0, p)?),
            DATA_AMF3 => Message::Data(decode(DATA_AMF3, p.get(1..).unwrap_or_default())?),
            COMMAND_AMF0 => Message::Command(command(decode(COMMAND_AMF0, p)?)?),
            COMMAND_AMF3 => Message::Command(command(decode(
                COMMAND_AMF3,
                p.get(1..).unwrap_or_default(),
            )?)?),
            other => Message::Other(other),
        })
    }
}

fn decode(type_id: u8, body: &[u8]) -> Result<Vec<Amf0Value>, MessageError> {
    amf0::decode_all(body).map_err(|source| MessageError::Amf { type_id, source })
}

fn command(values: Vec<Amf0Value>) -> Result<Command, MessageError> {
    let mut it = values.into_iter();
    let Some(Amf0Value::String(name)) = it.next() else {
        return Err(MessageError::CommandWithoutName);
    };
    let transaction = it.next().and_then(|v| v.as_number()).unwrap_or(0.0);
    Ok(Command {
        name,
        transaction,
        args: it.collect(),
    })
}

/// Splits an aggregate message (type 22) into the audio/video/data messages it
/// carries, with timestamps moved to the aggregate's own timeline.
pub fn split_aggregate(raw: &RawMessage) -> Result<Vec<RawMessage>, MessageError> {
    let mut out = Vec::new();
    let mut rest = raw.payload.clone();
    let mut first_ts: Option<u32> = None;
    let total = rest.len();
    while !rest.is_empty() {
        let at = total - rest.len();
        if rest.len() < 11 {
            return Err(MessageError::BadAggregate(at));
        }
        let type_id = rest[0];
        let size = u32::from_be_bytes([0, rest[1], rest[2], rest[3]]) as usize;
        let ts = u32::from_be_bytes([rest[7], rest[4], rest[5], rest[6]]);
        if rest.len() < 11 + size + 4 {
            return Err(MessageError::BadAggregate(at));
        }
        rest.advance(11);
        let body = rest.split_to(size);
        rest.advance(4);
        let base = *first_ts.get_or_insert(ts);
        out.push(RawMessage {
            csid: raw.csid,
            timestamp: raw.timestamp.wrapping_add(ts.wrapping_sub(base)),
            type_id,
            stream_id: raw.stream_id,
            payload: body,
        });
    }
    Ok(out)
}

/// Body of a 4-byte control message (chunk size, ack, window size).
pub fn u32_body(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

/// Body of Set Peer Bandwidth with the "dynamic" limit type.
pub fn peer_bandwidth_body(window: u32) -> [u8; 5] {
    let b = window.to_be_bytes();
    [b[0], b[1], b[2], b[3], 2]
}

/// Body of a user control event carrying a stream id or timestamp.
pub fn user_control_body(event: u16, value: u32) -> [u8; 6] {
    let e = event.to_be_bytes();
    let v = value.to_be_bytes();
    [e[0], e[1], v[0], v[1], v[2], v[3]]
}

/// Encodes a command message body.
pub fn command_body(name: &str, transaction: f64, args: &[Amf0Value]) -> Bytes {
    let mut out = BytesMut::new();
    amf0::encode(&Amf0Value::String(name.to_owned()), &mut out);
    amf0::encode(&Amf0Value::Number(transaction), &mut out);
    for a in args {
        amf0::encode(a, &mut out);
    }
    out.freeze()
}

/// The `info` object of an `onStatus` event.
pub fn status_object(level: &str, code: &str, description: &str) -> Amf0Value {
    Amf0Value::Object(vec![
        ("level".into(), Amf0Value::String(level.into())),
        ("code".into(), Amf0Value::String(code.into())),
        ("description".into(), Amf0Value::String(description.into())),
    ])
}

/// An FLV tag for tests and aggregates: header, body, previous-tag-size.
pub fn put_flv_tag(out: &mut BytesMut, type_id: u8, timestamp: u32, body: &[u8]) {
    out.put_u8(type_id);
    out.put_slice(&(body.len() as u32).to_be_bytes()[1..]);
    out.put_slice(&timestamp.to_be_bytes()[1..]);
    out.put_u8((timestamp >> 24) as u8);
    out.put_slice(&[0, 0, 0]);
    out.put_slice(body);
    out.put_u32(body.len() as u32 + 11);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(type_id: u8, payload: &[u8]) -> RawMessage {
        RawMessage {
            csid: 3,
            timestamp: 1000,
            type_id,
            stream_id: 1,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    /// `@setDataFrame` alone: the data message that makes rml_rtmp 0.8 panic.
    #[test]
    fn lone_set_data_frame_is_just_data() {
        let body = amf0::encode_all(&[Amf0Value::String("@setDataFrame".into())]);
        assert_eq!(
            Message::parse(&raw(type_id::DATA_AMF0, &body)),
            Ok(Message::Data(vec![Amf0Value::String(
                "@setDataFrame".into()
            )]))
        );
    }

    #[test]
    fn short_control_messages_are_errors() {
        for t in [1, 2, 3, 4, 5, 6] {
            assert!(matches!(
                Message::parse(&raw(t, &[0])),
                Err(MessageError::TooShort { .. })
            ));
        }
    }

    #[test]
    fn amf3_command_is_read_past_its_marker() {
        let mut body = vec![0u8];
        body.extend_from_slice(&command_body("play", 4.0, &[Amf0Value::Null]));
        let Ok(Message::Command(c)) = Message::parse(&raw(type_id::COMMAND_AMF3, &body)) else {
            panic!("not a command");
        };
        assert_eq!((c.name.as_str(), c.transaction), ("play", 4.0));
    }

    #[test]
    fn aggregate_splits_and_rebases_timestamps() {
        let mut body = BytesMut::new();
        put_flv_tag(&mut body, 9, 5000, b"vid");
        put_flv_tag(&mut body, 8, 5020, b"au");
        let parts = split_aggregate(&raw(type_id::AGGREGATE, &body)).expect("valid");
        let got: Vec<_> = parts
            .iter()
            .map(|m| (m.type_id, m.timestamp, m.payload.to_vec()))
            .collect();
        assert_eq!(
            got,
            vec![(9, 1000, b"vid".to_vec()), (8, 1020, b"au".to_vec())]
        );
        let cut = &body[..body.len() - 1];
        assert!(split_aggregate(&raw(type_id::AGGREGATE, cut)).is_err());
    }
}
