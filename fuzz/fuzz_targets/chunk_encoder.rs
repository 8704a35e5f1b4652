//! Round trip of the chunk encoder's two writers (copied and shared payloads)
//! through the decoder: any chunk size, header, payload and timestamp come
//! back as the same message, and both writers emit the same bytes.
#![no_main]

use bytes::{BufMut, Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use rtmp::chunk::{ChunkDecoder, ChunkEncoder, ChunkSink};

#[derive(Default)]
struct Joined(BytesMut);

impl ChunkSink for Joined {
    fn copy(&mut self, bytes: &[u8]) {
        self.0.put_slice(bytes);
    }
    fn share(&mut self, bytes: Bytes) {
        self.0.put_slice(&bytes);
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let chunk = u32::from(u16::from_be_bytes([data[0], data[1]])).max(1);
    let timestamp = u32::from_be_bytes([data[2], data[3], data[4], data[5]]);
    let head_len = usize::from(data[6] % 6);
    let rest = &data[7..];
    let head = &rest[..head_len.min(rest.len())];
    let tail = Bytes::copy_from_slice(&rest[head.len()..]);
    let mut enc = ChunkEncoder::new();
    enc.set_chunk_size(chunk);
    let mut copied = BytesMut::new();
    enc.write_parts(&mut copied, 6, timestamp, 9, 1, head, &tail);
    let mut shared = Joined::default();
    enc.write_shared(&mut shared, 6, timestamp, 9, 1, head, &tail);
    assert_eq!(shared.0, copied);
    let mut dec = ChunkDecoder::new();
    dec.set_chunk_size(chunk).expect("valid size");
    let mut input = copied;
    let msg = dec.decode(&mut input).expect("valid").expect("whole");
    let mut body = head.to_vec();
    body.extend_from_slice(&tail);
    assert_eq!(msg.payload, body);
    assert_eq!(
        (msg.timestamp, msg.type_id, msg.stream_id),
        (timestamp, 9, 1)
    );
    assert!(input.is_empty());
});
