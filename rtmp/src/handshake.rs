//! The RTMP handshake, sans-IO: bytes in, bytes out.
//!
//! Ferry answers with the plain handshake (version bytes zero in S1). ffmpeg,
//! librtmp (OBS, rtmpdump) and hardware encoders accept it; only the encrypted
//! RTMPE variant (C0 = 6) is refused.

use bytes::{BufMut, BytesMut};
use rand::RngCore;

/// Size of C1/S1/C2/S2.
pub const HANDSHAKE_SIZE: usize = 1536;
const RTMP_VERSION: u8 = 3;

/// A handshake that cannot go on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandshakeError {
    /// C0/S0 named a version other than plain RTMP 3.
    #[error("RTMP version {0} is not supported (only 3, plain RTMP)")]
    Version(u8),
}

/// The server side: waits for C0+C1, answers S0+S1+S2, then waits for C2.
#[derive(Debug, Default)]
pub struct ServerHandshake {
    sent: bool,
}

impl ServerHandshake {
    /// A handshake waiting for C0+C1.
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes what it can of `input` and appends replies to `out`. Returns true
    /// once complete; bytes after C2 stay in `input` for the chunk layer.
    pub fn feed(
        &mut self,
        input: &mut BytesMut,
        out: &mut BytesMut,
    ) -> Result<bool, HandshakeError> {
        if !self.sent {
            if let Some(&version) = input.first()
                && version != RTMP_VERSION
            {
                return Err(HandshakeError::Version(version));
            }
            if input.len() < 1 + HANDSHAKE_SIZE {
                return Ok(false);
            }
            let c0c1 = input.split_to(1 + HANDSHAKE_SIZE);
            out.put_u8(RTMP_VERSION);
            put_random_block(out);
            out.put_slice(&c0c1[1..]);
            self.sent = true;
        }
        if input.len() < HANDSHAKE_SIZE {
            return Ok(false);
        }
        // C2 should echo S1; clients vary, and nothing depends on it, so it is not checked.
        let _c2 = input.split_to(HANDSHAKE_SIZE);
        Ok(true)
    }
}

/// The client side: sends C0+C1 at once, answers S1 with C2.
#[derive(Debug, Default)]
pub struct ClientHandshake {
    _private: (),
}

impl ClientHandshake {
    /// Starts a handshake, appending C0+C1 to `out`.
    pub fn start(out: &mut BytesMut) -> Self {
        out.put_u8(RTMP_VERSION);
        put_random_block(out);
        Self { _private: () }
    }

    /// Waits for S0+S1+S2 and appends C2. Returns true once complete.
    pub fn feed(
        &mut self,
        input: &mut BytesMut,
        out: &mut BytesMut,
    ) -> Result<bool, HandshakeError> {
        if let Some(&version) = input.first()
            && version != RTMP_VERSION
        {
            return Err(HandshakeError::Version(version));
        }
        if input.len() < 1 + 2 * HANDSHAKE_SIZE {
            return Ok(false);
        }
        let s = input.split_to(1 + 2 * HANDSHAKE_SIZE);
        out.put_slice(&s[1..=HANDSHAKE_SIZE]);
        Ok(true)
    }
}

fn put_random_block(out: &mut BytesMut) {
    let mut block = [0u8; HANDSHAKE_SIZE];
    rand::rng().fill_bytes(&mut block[8..]);
    block[..8].fill(0);
    out.put_slice(&block);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_and_server_complete_byte_by_byte() {
        let mut to_server = BytesMut::new();
        let mut client = ClientHandshake::start(&mut to_server);
        let mut server = ServerHandshake::new();
        let mut to_client = BytesMut::new();
        let mut server_in = BytesMut::new();
        let mut server_done = false;
        // Trickle C0+C1 one byte at a time: nothing may be answered early.
        for b in to_server.split().iter() {
            server_in.put_u8(*b);
            assert!(!server.feed(&mut server_in, &mut to_client).expect("valid"));
        }
        assert_eq!(to_client.len(), 1 + 2 * HANDSHAKE_SIZE);
        let mut c2 = BytesMut::new();
        assert!(client.feed(&mut to_client, &mut c2).expect("valid"));
        c2.put_slice(b"after");
        server_in.put_slice(&c2);
        server_done |= server.feed(&mut server_in, &mut to_client).expect("valid");
        assert!(server_done);
        assert_eq!(&server_in[..], b"after");
    }

    #[test]
    fn encrypted_handshake_is_refused() {
        let mut input = BytesMut::from(&[6u8, 0, 0][..]);
        let mut out = BytesMut::new();
        assert_eq!(
            ServerHandshake::new().feed(&mut input, &mut out),
            Err(HandshakeError::Version(6))
        );
    }
}
