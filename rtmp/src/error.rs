//! One error type for an RTMP connection, rolled up from every layer.

use crate::amf0::AmfError;
use crate::chunk::ChunkError;
use crate::flv::FlvError;
use crate::handshake::HandshakeError;
use crate::message::MessageError;

/// Why a connection ended badly.
#[derive(Debug, thiserror::Error)]
pub enum RtmpError {
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection.
    #[error("connection closed by peer")]
    Closed,
    /// A step took longer than its limit.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The handshake was invalid.
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// The chunk stream was invalid.
    #[error("chunk stream: {0}")]
    Chunk(#[from] ChunkError),
    /// A message was invalid.
    #[error("message: {0}")]
    Message(#[from] MessageError),
    /// AMF that could not be read.
    #[error("amf: {0}")]
    Amf(#[from] AmfError),
    /// An FLV tag body that could not be read.
    #[error("flv: {0}")]
    Flv(#[from] FlvError),
    /// The peer went past one of the bounds in [`crate::limits`].
    #[error("limit: {0}")]
    Limit(&'static str),
    /// TLS failed: the peer's certificate, the handshake, or our own setup.
    #[error("tls: {0}")]
    Tls(String),
    /// The peer broke the command sequence.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The other side refused (a client's view of an `_error` or error status).
    #[error("refused: {code}: {description}")]
    Refused {
        /// The status code, e.g. `NetStream.Publish.BadName`.
        code: String,
        /// The human-readable reason.
        description: String,
    },
}

impl RtmpError {
    /// True when the peer simply went away (not worth a warning in the logs).
    pub fn is_client_closed(&self) -> bool {
        match self {
            RtmpError::Closed => true,
            RtmpError::Io(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionAborted
            ),
            _ => false,
        }
    }
}
