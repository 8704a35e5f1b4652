//! A scriptable HTTP origin for edge tests: counts requests per path, and
//! answers each path the way a test asks (whole, trickled, garbage, cut
//! mid-body), on a port it can give up and take back (a dead origin).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How the origin answers one path.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Status, extra headers, body, at once.
    Full(u16, Vec<(String, String)>, Vec<u8>),
    /// 200 with Content-Length, the body in `chunk`-byte pieces `every` apart.
    Trickle {
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        chunk: usize,
        every: Duration,
    },
    /// Bytes that are not HTTP, then close.
    Garbage,
    /// 200 announcing `body.len() * 2` bytes, sends `body`, closes.
    CutMidBody(Vec<u8>),
}

type Handler = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

/// What the origin saw and did.
#[derive(Default)]
pub struct Log {
    pub requests: HashMap<String, usize>,
    /// When the last byte of each trickled body was written.
    pub finished: HashMap<String, Instant>,
    /// When the first chunk of each trickled body was written.
    pub started: HashMap<String, Instant>,
}

pub struct TestOrigin {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Log>>,
    handler: Handler,
    task: Option<JoinHandle<()>>,
    conns: Arc<tokio::sync::Mutex<tokio::task::JoinSet<()>>>,
}

impl TestOrigin {
    pub async fn start(handler: impl Fn(&str) -> Reply + Send + Sync + 'static) -> TestOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut o = TestOrigin {
            addr,
            log: Arc::default(),
            handler: Arc::new(handler),
            task: None,
            conns: Arc::default(),
        };
        o.task = Some(o.serve(listener));
        o
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self, path: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .requests
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Stops listening and cuts every connection, and returns once they are
    /// all gone (a dead origin: refused, and no pooled connection answers).
    pub async fn kill(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
        self.conns.lock().await.shutdown().await;
    }

    /// Listens again on the same port.
    pub async fn revive(&mut self) {
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        self.task = Some(self.serve(listener));
    }

    fn serve(&self, listener: TcpListener) -> JoinHandle<()> {
        let (handler, log, conns) = (self.handler.clone(), self.log.clone(), self.conns.clone());
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    continue;
                };
                conns
                    .lock()
                    .await
                    .spawn(connection(s, handler.clone(), log.clone()));
            }
        })
    }
}

impl Drop for TestOrigin {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let Ok(mut conns) = self.conns.try_lock() {
            conns.abort_all();
        }
    }
}

async fn connection(mut s: TcpStream, handler: Handler, log: Arc<Mutex<Log>>) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end + 4);
        let target = head.split(' ').nth(1).unwrap_or("/").to_owned();
        let path = target.split('?').next().unwrap_or("").to_owned();
        *log.lock()
            .unwrap()
            .requests
            .entry(path.clone())
            .or_default() += 1;
        let reply = handler(&target);
        let ok = match reply {
            Reply::Full(status, headers, body) => {
                let mut out = response_head(status, &headers, body.len());
                out.extend_from_slice(&body);
                s.write_all(&out).await.is_ok()
            }
            Reply::Trickle {
                headers,
                body,
                chunk,
                every,
            } => {
                if s.write_all(&response_head(200, &headers, body.len()))
                    .await
                    .is_err()
                {
                    return;
                }
                for (i, piece) in body.chunks(chunk.max(1)).enumerate() {
                    if i > 0 {
                        tokio::time::sleep(every).await;
                    }
                    if s.write_all(piece).await.is_err() {
                        return;
                    }
                    if i == 0 {
                        log.lock()
                            .unwrap()
                            .started
                            .insert(path.clone(), Instant::now());
                    }
                }
                log.lock()
                    .unwrap()
                    .finished
                    .insert(path.clone(), Instant::now());
                true
            }
            Reply::Garbage => {
                let _ = s
                    .write_all(b"\x00\x01garbage that is not HTTP\r\n\r\n")
                    .await;
                return;
            }
            Reply::CutMidBody(body) => {
                let mut out = response_head(200, &[], body.len() * 2);
                out.extend_from_slice(&body);
                let _ = s.write_all(&out).await;
                return;
            }
        };
        if !ok {
            return;
        }
    }
}

fn response_head(status: u16, headers: &[(String, String)], len: usize) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Other",
    };
    let mut h = format!("HTTP/1.1 {status} {reason}\r\ncontent-length: {len}\r\n");
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    h.into_bytes()
}

/// `Content-Type`/`Cache-Control` pairs as a Ferry origin sends them.
pub fn headers(content_type: &str, cache_control: &str) -> Vec<(String, String)> {
    vec![
        ("content-type".into(), content_type.into()),
        ("cache-control".into(), cache_control.into()),
    ]
}
