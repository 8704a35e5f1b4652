//! What an origin or an edge reads from a relay peer: bytes that may be
//! anything. Decoding never panics; every frame decoded re-encodes to bytes
//! that decode to the same frame.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use relay::frame;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(f)) = frame::decode(&mut buf) {
        let mut again = BytesMut::new();
        frame::encode(&f, &mut again);
        let back = frame::decode(&mut again).expect("own encoding decodes");
        assert_eq!(back, Some(f));
        assert!(again.is_empty());
    }
});
