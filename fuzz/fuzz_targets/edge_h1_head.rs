//! What a client sends the edge's own HTTP/1.1 path: any bytes. None may
//! panic; a head it takes as its own lies inside the bytes, asks for `/hls/`,
//! and reads the same from exactly its own bytes; anything else is left to
//! hyper whole.
#![no_main]

use edge_cache::h1::{Parsed, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Parsed::Request(r) => {
            assert!(r.len <= data.len() && r.len > 0);
            assert!(r.target.starts_with("/hls/"));
            assert!(!(r.http10 && r.keep_alive) || data.windows(10).any(|w| w.eq_ignore_ascii_case(b"keep-alive")));
            match parse(&data[..r.len]) {
                Parsed::Request(again) => {
                    assert_eq!(again.len, r.len);
                    assert_eq!(again.target, r.target);
                    assert_eq!(again.keep_alive, r.keep_alive);
                }
                other => panic!("its own head reads as {other:?}"),
            }
        }
        Parsed::Partial | Parsed::Foreign => {}
    }
});
