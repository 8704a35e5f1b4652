//! What an origin or an edge reads from a relay peer: bytes that may be
//! anything. Decoding never panics; every frame decoded re-encodes to bytes
//! that decode to a frame encoding to the same bytes.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use relay::frame;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(f)) = frame::decode(&mut buf) {
        let mut again = BytesMut::new();
        frame::encode(&f, &mut again);
        let mut copy = again.clone();
        let back = frame::decode(&mut again)
            .expect("own encoding decodes")
            .expect("a whole frame");
        assert!(again.is_empty());
        // Compared as bytes: a metadata number may be NaN, which is not
        // equal to itself.
        let mut twice = BytesMut::new();
        frame::encode(&back, &mut twice);
        assert_eq!(twice, copy.split());
    }
});
