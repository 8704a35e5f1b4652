//! The chunk layer on arbitrary bytes cut at arbitrary points: no panic, every
//! message within the limits, the same messages however the input is cut, and
//! linear work: payload bytes copied never exceed the bytes consumed (the
//! decoder once copied each partial message again per chunk), and partial
//! messages never hold more than the connection's bound.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rtmp::chunk::ChunkDecoder;
use rtmp::limits::{MAX_BUFFERED_BYTES, MAX_MESSAGE_SIZE};

fn decode_all(data: &[u8], cut: usize) -> (Vec<rtmp::chunk::RawMessage>, bool) {
    let mut dec = ChunkDecoder::new();
    let mut input = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0u64;
    for piece in data.chunks(cut.max(1)) {
        input.extend_from_slice(piece);
        fed += piece.len() as u64;
        loop {
            let step = dec.decode(&mut input);
            let consumed = fed - input.len() as u64;
            assert!(
                dec.bytes_copied() <= consumed,
                "copied {} of {consumed}",
                dec.bytes_copied()
            );
            assert!(dec.buffered() <= MAX_BUFFERED_BYTES);
            match step {
                Ok(Some(m)) => {
                    assert!(m.payload.len() <= MAX_MESSAGE_SIZE as usize);
                    // Apply chunk size changes as a session would.
                    if m.type_id == 1 && m.payload.len() >= 4 {
                        let size = u32::from_be_bytes([
                            m.payload[0],
                            m.payload[1],
                            m.payload[2],
                            m.payload[3],
                        ]);
                        if dec.set_chunk_size(size & 0x7fff_ffff).is_err() {
                            return (out, true);
                        }
                    }
                    out.push(m);
                }
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let (whole, whole_err) = decode_all(rest, rest.len());
    let (pieces, pieces_err) = decode_all(rest, usize::from(cut));
    assert_eq!(whole_err, pieces_err);
    assert_eq!(whole, pieces);
});
