//! The origin's relay port against clients that are not the edges it knows,
//! over real QUIC on loopback: a request without a known token gets
//! `Forbidden` and the connection closes; connections are capped per
//! address; a client can open no unidirectional stream and cannot make the
//! origin buffer what it sends after its request; one connection cannot
//! pull the same stream more than twice.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use media_core::Hub;
use relay::frame::{self, Frame};
use relay::{RelayAuth, RelayLimits, RelayMetrics, RelayServer};
use tokio_util::sync::CancellationToken;

const GOOD: &str = "known-edge-token";

struct Origin {
    addr: SocketAddr,
    cert: rustls::pki_types::CertificateDer<'static>,
    metrics: RelayMetrics,
    hub: Hub,
    _dir: tempdir::Dir,
    cancel: CancellationToken,
}

mod tempdir {
    /// A directory removed on drop (no extra dependency for one test).
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn origin(limits: RelayLimits) -> Origin {
    let dir = std::env::temp_dir().join(format!("ferry-relay-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let identity = relay::tls::Identity::load_or_create(&dir).unwrap();
    let auth: RelayAuth = Arc::new(|t: String| Box::pin(async move { t == GOOD }));
    let hub = Hub::new();
    let metrics = RelayMetrics::default();
    let server = RelayServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        &identity,
        hub.clone(),
        metrics.clone(),
        limits,
        auth,
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    let cancel = CancellationToken::new();
    tokio::spawn(server.run(cancel.clone()));
    Origin {
        addr,
        cert: identity.cert.clone(),
        metrics,
        hub,
        _dir: tempdir::Dir(dir),
        cancel,
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        ^ u64::from(std::process::id())
}

fn limits() -> RelayLimits {
    RelayLimits {
        max_connections: 64,
        max_connections_per_address: 3,
        max_streams_per_connection: 16,
    }
}

async fn connect(o: &Origin) -> Result<quinn::Connection, String> {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(Duration::from_secs(5).try_into().unwrap()));
    let config = relay::tls::client_config(o.cert.clone(), Arc::new(t)).unwrap();
    endpoint.set_default_client_config(config);
    let connecting = endpoint
        .connect(o.addr, relay::tls::SERVER_NAME)
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(3), connecting)
        .await
        .map_err(|_| "timeout".to_owned())?
        .map_err(|e| e.to_string())
}

/// Sends a request; the first frame of the answer (or why none came).
async fn ask(conn: &quinn::Connection, token: &str, name: &str) -> Result<Frame, String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    let mut req = BytesMut::new();
    frame::encode(
        &Frame::Request {
            version: frame::VERSION,
            token: token.into(),
            name: name.into(),
        },
        &mut req,
    );
    send.write_all(&req).await.map_err(|e| e.to_string())?;
    let mut buf = BytesMut::new();
    let read = async {
        loop {
            if let Some(f) = frame::decode(&mut buf).map_err(|e| e.to_string())? {
                return Ok(f);
            }
            match recv
                .read_chunk(4096, true)
                .await
                .map_err(|e| e.to_string())?
            {
                Some(c) => buf.extend_from_slice(&c.bytes),
                None => return Err("stream ended".to_owned()),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(3), read)
        .await
        .map_err(|_| "no answer".to_owned())?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_token_is_refused_and_the_connection_closed() {
    let o = origin(limits());
    let conn = connect(&o).await.unwrap();
    assert_eq!(ask(&conn, GOOD, "demo").await, Ok(Frame::NotLive));
    let stranger = connect(&o).await.unwrap();
    assert_eq!(ask(&stranger, "guess", "demo").await, Ok(Frame::Forbidden));
    tokio::time::timeout(Duration::from_secs(3), stranger.closed())
        .await
        .expect("the origin closes a stranger's connection");
    assert_eq!(o.metrics.refused_edges.get(), 1);
    assert_eq!(ask(&conn, "", "demo").await, Ok(Frame::Forbidden));
    o.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped_per_address() {
    let o = origin(limits());
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(&o).await.unwrap());
    }
    assert!(
        connect(&o).await.is_err(),
        "a fourth connection from one address"
    );
    assert_eq!(o.metrics.refused_connections.get(), 1);
    // One closes: the address may connect again.
    held.pop().unwrap().close(0u32.into(), b"bye");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(connect(&o).await.is_ok());
    o.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_unidirectional_streams_and_no_buffering_past_a_request() {
    let o = origin(limits());
    let conn = connect(&o).await.unwrap();
    // The origin allows no unidirectional stream: opening one waits forever.
    let uni = tokio::time::timeout(Duration::from_millis(500), conn.open_uni()).await;
    assert!(uni.is_err(), "a unidirectional stream was allowed");
    // Bytes after the request: at most a request's window is ever in flight.
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    let mut req = BytesMut::new();
    frame::encode(
        &Frame::Request {
            version: frame::VERSION,
            token: GOOD.into(),
            name: "demo".into(),
        },
        &mut req,
    );
    send.write_all(&req).await.unwrap();
    let junk = vec![0u8; 1 << 20];
    let wrote = tokio::time::timeout(Duration::from_secs(1), send.write_all(&junk)).await;
    assert!(
        !matches!(wrote, Ok(Ok(()))),
        "1 MiB after the request was taken by the origin"
    );
    o.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_pulls_one_stream_at_most_twice() {
    let o = origin(limits());
    let publisher = o.hub.publish("demo").unwrap();
    let conn = connect(&o).await.unwrap();
    assert_eq!(ask(&conn, GOOD, "demo").await, Ok(Frame::Live));
    assert_eq!(ask(&conn, GOOD, "demo").await, Ok(Frame::Live));
    assert!(ask(&conn, GOOD, "demo").await.is_err(), "a third copy");
    drop(publisher);
    o.cancel.cancel();
}
