//! A whole server connection fed arbitrary bytes after a valid handshake, on
//! virtual time: it must end with a result (never a panic or a hang).
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use media_core::Hub;
use media_core::auth::StaticKeys;
use rtmp::{RtmpMetrics, Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async {
        let keys = StaticKeys::new([("demo".to_owned(), "key".to_owned())]);
        let server = Server::new(
            ServerConfig::default(),
            Hub::new(),
            Arc::new(keys),
            RtmpMetrics::default(),
        );
        let (mut client, server_side) = tokio::io::duplex(1 << 20);
        let peer = ([127, 0, 0, 1], 9).into();
        let task = tokio::spawn(server.serve_stream(server_side, peer));
        let mut hello = vec![3u8];
        hello.resize(1 + 1536 * 2, 0);
        let _ = client.write_all(&hello).await;
        let _ = client.write_all(data).await;
        let _ = client.shutdown().await;
        let drain = tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = client.read_to_end(&mut sink).await;
        });
        let _ = task.await.expect("session task must not panic");
        drain.abort();
    });
});
