//! A small HTTP/1.1 server for what an edge answers most: `GET`/`HEAD` of
//! `/hls/...` without a request body, in front of hyper for the rest.
//!
//! It exists for two costs hyper cannot shed. An idle keep-alive connection
//! in hyper keeps its read and write buffers (about 16 KiB); here a
//! connection holds no buffer while it waits: it waits for the socket to be
//! readable, takes a buffer for the request head, and lets it go once the
//! request is read (unless pipelined bytes follow). And a cache hit is one
//! `writev` of its head and the cached body, which is `Bytes` shared with
//! the cache: the body is never copied in user space.
//!
//! Everything else (other methods and paths, request bodies, `Upgrade`,
//! `Expect`, HTTP/2 with prior knowledge, a malformed or oversized head) is
//! handed to hyper with the bytes read so far, for the rest of the
//! connection, so those answers and their limits stay hyper's. The answers
//! themselves are the ones [`crate::server`] builds: only the plain hit
//! (no range, no matching `If-None-Match`) is written here field by field.

use std::cell::RefCell;
use std::io::{self, IoSlice, Write as _};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use axum::body::HttpBody;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::edge::{Answer, CacheStatus, Edge, Found};
use crate::object::Object;
use crate::server;
use hls::target::{CacheKey, HLS_PREFIX};

/// Headers parsed per request; more goes to hyper (which answers 431).
pub const MAX_HEADERS: usize = 64;
/// The buffer a request head is first read into; it grows to the limit.
const FIRST_READ: usize = 2048;

/// The bounds of one connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    /// Time to read a request's head, from its first byte.
    pub header_read_timeout: Duration,
    /// Time a connection may move no byte, between requests or in a write.
    pub idle_timeout: Duration,
    /// The largest request head; a larger one goes to hyper (431).
    pub max_head: usize,
}

/// How a connection left the hit path.
pub enum Served {
    /// Closed: by the client, after `Connection: close`, on an error or at
    /// shutdown.
    Closed,
    /// Closed after moving nothing for the idle timeout.
    IdleClosed,
    /// Not an HLS GET/HEAD: hyper serves the rest of the connection,
    /// starting with the bytes already read.
    Handoff(Prefixed),
}

/// The hit path of one edge.
#[derive(Clone)]
pub struct HitPath {
    edge: Edge,
}

impl HitPath {
    /// Answers requests from `edge`, as [`crate::router`]'s `/hls/` route does.
    pub fn new(edge: Edge) -> Self {
        Self { edge }
    }

    /// Serves `tcp` until it closes or asks for something else than an HLS
    /// object; `cancel` closes it between requests.
    pub async fn serve(
        &self,
        mut tcp: TcpStream,
        peer: SocketAddr,
        limits: ConnLimits,
        cancel: &CancellationToken,
    ) -> Served {
        // Responses are written whole or in large pieces: Nagle would only
        // hold a response's tail for the client's delayed ACK.
        let _ = tcp.set_nodelay(true);
        let mut pending = BytesMut::new();
        loop {
            if pending.is_empty() {
                // Idle: no buffer held while the client thinks.
                drop(std::mem::take(&mut pending));
                pending = match wait_for_request(&tcp, limits.idle_timeout, cancel).await {
                    Ok(first) => first,
                    Err(served) => return served,
                };
            }
            let request = match read_head(&mut tcp, &mut pending, limits).await {
                Ok(Some(r)) => r,
                Ok(None) => return Served::Handoff(Prefixed::new(pending.freeze(), tcp)),
                Err(_) => return Served::Closed,
            };
            pending.advance(request.len);
            // Boxed: the answer's future is large and lives only while a
            // request is in flight, not in every idle connection.
            let kept = Box::pin(self.answer(&mut tcp, &request, peer, limits.idle_timeout)).await;
            if !matches!(kept, Ok(true)) {
                let _ = tcp.shutdown().await;
                return Served::Closed;
            }
        }
    }

    /// Answers one request; whether the connection stays open.
    async fn answer(
        &self,
        tcp: &mut TcpStream,
        req: &Request,
        peer: SocketAddr,
        idle: Duration,
    ) -> io::Result<bool> {
        let (path, query) = match req.target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (req.target.as_str(), None),
        };
        let key = match CacheKey::parse(path, query) {
            Ok(k) => k,
            Err(e) => {
                let r = server::refused(&self.edge, e);
                return write_response(tcp, r, req, idle).await;
            }
        };
        let answer = match self.edge.get_or_file(&key, Some(peer.ip())).await {
            Found::File(file) if plain_hit(&file.meta, req) => {
                let body = if req.head_only {
                    Body::Empty
                } else {
                    Body::File(&file.file)
                };
                let hit = Hit {
                    object: &file.meta,
                    status: CacheStatus::DiskHit,
                    length: file.len(),
                    body,
                };
                return self.write_hit(tcp, &key, hit, req, idle).await;
            }
            Found::File(file) => self.edge.loaded(file).await,
            Found::Answer(a) => a,
        };
        if let Answer::Cached { object, status } = &answer
            && plain_hit(object, req)
        {
            let body = if req.head_only {
                Body::Empty
            } else {
                Body::Bytes(&object.body)
            };
            let hit = Hit {
                object,
                status: *status,
                length: object.body.len() as u64,
                body,
            };
            return self.write_hit(tcp, &key, hit, req, idle).await;
        }
        let mut headers = HeaderMap::new();
        if let Some(v) = &req.range {
            headers.insert(header::RANGE, v.clone());
        }
        if let Some(v) = &req.if_none_match {
            headers.insert(header::IF_NONE_MATCH, v.clone());
        }
        let r = server::respond(&self.edge, &key, answer, &headers, req.head_only);
        write_response(tcp, r, req, idle).await
    }

    /// Writes a whole cached object: the headers [`server::respond`] gives
    /// it, then the body: from memory in the same `writev`, from a file with
    /// `sendfile`.
    async fn write_hit(
        &self,
        tcp: &mut TcpStream,
        key: &CacheKey,
        hit: Hit<'_>,
        req: &Request,
        idle: Duration,
    ) -> io::Result<bool> {
        let Hit {
            object,
            status,
            length,
            body,
        } = hit;
        let now = Instant::now();
        let h = &object.head;
        let mut head = Vec::with_capacity(512);
        let line: &[u8] = match h.status {
            404 => b"HTTP/1.1 404 Not Found\r\n",
            _ => b"HTTP/1.1 200 OK\r\n",
        };
        head.extend_from_slice(line);
        let mut field = |name: &str, value: &str| {
            if valid_value(value) {
                head.extend_from_slice(name.as_bytes());
                head.extend_from_slice(b": ");
                head.extend_from_slice(value.as_bytes());
                head.extend_from_slice(b"\r\n");
            }
        };
        if let Some(v) = &h.content_type {
            field("content-type", v);
        }
        if let Some(v) = &h.cache_control {
            field("cache-control", v);
        }
        field("etag", &object.etag);
        if let Some(v) = &h.last_modified {
            field("last-modified", v);
        }
        field(
            "access-control-allow-origin",
            h.allow_origin.as_deref().unwrap_or("*"),
        );
        field(
            "cache-status",
            &server::cache_status(status, Some(object.ttl_seconds(now))),
        );
        if h.status == 200 {
            field("accept-ranges", "bytes");
        }
        let _ = write!(
            head,
            "age: {}\r\ncontent-length: {length}\r\n",
            object.age(now).as_secs(),
        );
        end_head(&mut head, req.keep_alive, req.http10);
        let sent = if matches!(body, Body::Empty) {
            0
        } else {
            length
        };
        let m = self.edge.metrics();
        if h.status == 200
            && let Some((requests, bytes)) = self.edge.traffic().of(key.stream())
        {
            requests.inc();
            bytes.inc_by(sent);
        }
        m.bytes_out.inc_by(sent);
        match body {
            Body::Empty => write_all(tcp, &head, &[], idle).await?,
            Body::Bytes(b) => write_all(tcp, &head, b, idle).await?,
            Body::File(file) => {
                send_more(tcp, &head, idle).await?;
                send_file(tcp, file, length, idle).await?;
            }
        }
        Ok(req.keep_alive)
    }
}

/// A whole object to answer with: its head and freshness, how it was
/// found, its length, and where its body comes from.
struct Hit<'a> {
    object: &'a Object,
    status: CacheStatus,
    length: u64,
    body: Body<'a>,
}

/// Where a hit's body comes from.
enum Body<'a> {
    /// None (HEAD).
    Empty,
    /// The cached bytes.
    Bytes(&'a [u8]),
    /// A disk-tier file, sent whole.
    File(&'a std::fs::File),
}

/// Writes a response head with `MSG_MORE`, so that the kernel sends it in
/// one segment with the start of the body that follows.
async fn send_more(tcp: &TcpStream, mut head: &[u8], idle: Duration) -> io::Result<()> {
    while !head.is_empty() {
        let n = tokio::time::timeout(
            idle,
            tcp.async_io(Interest::WRITABLE, || {
                rustix::net::send(tcp, head, rustix::net::SendFlags::MORE).map_err(io::Error::from)
            }),
        )
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        head = &head[n..];
    }
    Ok(())
}

/// Sends `len` bytes of `file` with `sendfile`: from the page cache to the
/// socket, never through user space; each step bounded by `idle`.
async fn send_file(
    tcp: &TcpStream,
    file: &std::fs::File,
    len: u64,
    idle: Duration,
) -> io::Result<()> {
    let mut offset = 0u64;
    while offset < len {
        let left = usize::try_from(len - offset).unwrap_or(usize::MAX);
        let n = tokio::time::timeout(
            idle,
            tcp.async_io(Interest::WRITABLE, || {
                rustix::fs::sendfile(tcp, file, Some(&mut offset), left).map_err(io::Error::from)
            }),
        )
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        if n == 0 {
            // The file is shorter than its entry says: the response cannot
            // be finished, the close tells the client.
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

/// Whether `object` is answered whole to `req`: a 404, or a 200 asked for
/// without a range and without a matching `If-None-Match`.
fn plain_hit(object: &Object, req: &Request) -> bool {
    match object.head.status {
        404 => true,
        200 => {
            req.range.is_none()
                && !req
                    .if_none_match
                    .as_ref()
                    .is_some_and(|v| server::none_match(v, &object.etag))
        }
        _ => false,
    }
}

/// What the hit path needs of a request head.
#[derive(Debug)]
pub struct Request {
    /// Bytes of the head in the buffer.
    pub len: usize,
    /// `HEAD`.
    pub head_only: bool,
    /// The raw request target (`/hls/...?...`).
    pub target: String,
    /// An HTTP/1.0 request (no chunked answer, keep-alive only if asked).
    pub http10: bool,
    /// Whether the connection stays open after the answer.
    pub keep_alive: bool,
    /// `Range`.
    pub range: Option<HeaderValue>,
    /// `If-None-Match`.
    pub if_none_match: Option<HeaderValue>,
}

/// What the bytes read so far hold.
#[derive(Debug)]
pub enum Parsed {
    /// Not a whole head yet.
    Partial,
    /// Something for hyper.
    Foreign,
    /// An HLS GET or HEAD.
    Request(Request),
}

/// Reads a request head from the start of `buf` (bytes a client sent).
pub fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Foreign,
    };
    let head_only = match req.method {
        Some("GET") => false,
        Some("HEAD") => true,
        _ => return Parsed::Foreign,
    };
    let Some(target) = req.path.filter(|p| p.starts_with(HLS_PREFIX)) else {
        return Parsed::Foreign;
    };
    let http10 = req.version == Some(0);
    let mut request = Request {
        len,
        head_only,
        target: target.to_owned(),
        http10,
        keep_alive: !http10,
        range: None,
        if_none_match: None,
    };
    for h in req.headers.iter() {
        let name = h.name;
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("connection") {
            for token in String::from_utf8_lossy(h.value).split(',') {
                let token = token.trim();
                if token.eq_ignore_ascii_case("close") {
                    request.keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") && http10 {
                    request.keep_alive = true;
                }
            }
        } else if is("range") {
            if request.range.is_none() {
                request.range = HeaderValue::from_bytes(h.value).ok();
            }
        } else if is("if-none-match") {
            if request.if_none_match.is_none() {
                request.if_none_match = HeaderValue::from_bytes(h.value).ok();
            }
        } else if is("content-length") {
            if h.value.trim_ascii() != b"0" {
                return Parsed::Foreign;
            }
        } else if is("transfer-encoding") || is("expect") || is("upgrade") {
            return Parsed::Foreign;
        }
    }
    Parsed::Request(request)
}

/// Waits, holding no buffer, until the client sends a request's first
/// bytes, and returns them; or how the connection ends (closed by the
/// client, idle for `idle`, or shutdown). A wake-up with nothing to read
/// (readiness may be reported spuriously) goes back to waiting, with the
/// same deadline.
async fn wait_for_request(
    tcp: &TcpStream,
    idle: Duration,
    cancel: &CancellationToken,
) -> Result<BytesMut, Served> {
    let deadline = tokio::time::Instant::now() + idle;
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(Served::Closed),
            r = tcp.readable() => if r.is_err() { return Err(Served::Closed) },
            () = tokio::time::sleep_until(deadline) => return Err(Served::IdleClosed),
        }
        let mut first = BytesMut::with_capacity(FIRST_READ);
        match tcp.try_read_buf(&mut first) {
            Ok(0) => return Err(Served::Closed),
            Ok(_) => return Ok(first),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return Err(Served::Closed),
        }
    }
}

/// Reads into `buf` until it holds a whole head: the request, `None` for
/// hyper's, or an error (closed, timed out, reset).
async fn read_head(
    tcp: &mut TcpStream,
    buf: &mut BytesMut,
    limits: ConnLimits,
) -> io::Result<Option<Request>> {
    let deadline = tokio::time::Instant::now() + limits.header_read_timeout;
    loop {
        if !buf.is_empty() {
            match parse(buf) {
                Parsed::Request(r) => return Ok(Some(r)),
                Parsed::Foreign => return Ok(None),
                Parsed::Partial if buf.len() >= limits.max_head => return Ok(None),
                Parsed::Partial => {}
            }
        }
        if buf.capacity() - buf.len() < FIRST_READ / 2 {
            buf.reserve(buf.capacity().clamp(FIRST_READ, limits.max_head));
        }
        let n = tokio::time::timeout_at(deadline, tcp.read_buf(buf))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// Writes an answer built by [`crate::server`]; whether the connection
/// stays open.
async fn write_response(
    tcp: &mut TcpStream,
    response: Response,
    req: &Request,
    idle: Duration,
) -> io::Result<bool> {
    let (parts, body) = response.into_parts();
    let status = parts.status;
    let bodiless = status == StatusCode::NOT_MODIFIED
        || status == StatusCode::NO_CONTENT
        || status.is_informational();
    let mut head = Vec::with_capacity(512);
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    for (name, value) in &parts.headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    let mut keep_alive = req.keep_alive;
    let mut chunked = false;
    if !bodiless && !parts.headers.contains_key(header::CONTENT_LENGTH) {
        match body.size_hint().exact() {
            Some(n) => {
                let _ = write!(head, "content-length: {n}\r\n");
            }
            None if req.head_only => {}
            None if !req.http10 => {
                chunked = true;
                head.extend_from_slice(b"transfer-encoding: chunked\r\n");
            }
            // An HTTP/1.0 client reads an unknown length to the close.
            None => keep_alive = false,
        }
    }
    end_head(&mut head, keep_alive, req.http10);
    if bodiless || req.head_only {
        write_all(tcp, &head, &[], idle).await?;
        return Ok(keep_alive);
    }
    let mut data = body.into_data_stream();
    let mut head = Some(head);
    while let Some(chunk) = data.next().await {
        // A body that fails half way cannot be finished: the close tells
        // the client it is short.
        let chunk = chunk.map_err(io::Error::other)?;
        if chunk.is_empty() {
            continue;
        }
        let mut prefix = head.take().unwrap_or_default();
        if chunked {
            let _ = write!(prefix, "{:x}\r\n", chunk.len());
        }
        write_all(tcp, &prefix, &chunk, idle).await?;
        if chunked {
            write_all(tcp, b"\r\n", &[], idle).await?;
        }
    }
    let mut tail = head.take().unwrap_or_default();
    if chunked {
        tail.extend_from_slice(b"0\r\n\r\n");
    }
    write_all(tcp, &tail, &[], idle).await?;
    Ok(keep_alive)
}

/// Ends a response head: `Date`, the connection's fate, the blank line.
fn end_head(head: &mut Vec<u8>, keep_alive: bool, http10: bool) {
    head.extend_from_slice(b"date: ");
    http_date(head);
    head.extend_from_slice(b"\r\n");
    if !keep_alive {
        head.extend_from_slice(b"connection: close\r\n");
    } else if http10 {
        head.extend_from_slice(b"connection: keep-alive\r\n");
    }
    head.extend_from_slice(b"\r\n");
}

/// Appends the current time as an HTTP date, formatted once a second per
/// thread.
fn http_date(out: &mut Vec<u8>) {
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let second = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != second {
            *d = (second, httpdate::fmt_http_date(now));
        }
        out.extend_from_slice(d.1.as_bytes());
    });
}

/// Whether `value` may be written as a header value (what `HeaderValue`
/// accepts: no control character but tab).
fn valid_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Writes `first` then `second` with as few `writev` calls as the socket
/// takes, each bounded by `idle` (a client that stops reading is closed).
async fn write_all(
    tcp: &mut TcpStream,
    mut first: &[u8],
    mut second: &[u8],
    idle: Duration,
) -> io::Result<()> {
    while !first.is_empty() || !second.is_empty() {
        let slices = [IoSlice::new(first), IoSlice::new(second)];
        let n = tokio::time::timeout(idle, tcp.write_vectored(&slices))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let from_first = n.min(first.len());
        first = &first[from_first..];
        second = &second[n - from_first..];
    }
    Ok(())
}

/// A connection handed to hyper: the bytes the hit path read, then the
/// socket.
pub struct Prefixed {
    prefix: Bytes,
    inner: TcpStream,
}

impl Prefixed {
    /// `inner`, read from `prefix` first.
    pub fn new(prefix: Bytes, inner: TcpStream) -> Self {
        Self { prefix, inner }
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(bytes: &[u8]) -> Request {
        match parse(bytes) {
            Parsed::Request(r) => r,
            other => panic!("not an HLS request: {other:?}"),
        }
    }

    #[test]
    fn an_hls_get_is_read_with_what_its_answer_depends_on() {
        let raw = b"GET /hls/a/index.m3u8?_HLS_msn=3 HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\nIf-None-Match: \"e\"\r\n\r\nGET";
        let r = request(raw);
        assert_eq!(r.len, raw.len() - 3);
        assert_eq!(r.target, "/hls/a/index.m3u8?_HLS_msn=3");
        assert!(!r.head_only && r.keep_alive && !r.http10);
        assert_eq!(
            r.range.as_ref().map(|v| v.as_bytes()),
            Some(&b"bytes=0-9"[..])
        );
        assert_eq!(
            r.if_none_match.as_ref().map(|v| v.as_bytes()),
            Some(&b"\"e\""[..])
        );
    }

    #[test]
    fn keep_alive_follows_the_version_and_the_connection_header() {
        assert!(!request(b"GET /hls/a HTTP/1.0\r\n\r\n").keep_alive);
        assert!(request(b"GET /hls/a HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(!request(b"HEAD /hls/a HTTP/1.1\r\nConnection: te, close\r\n\r\n").keep_alive);
        assert!(request(b"HEAD /hls/a HTTP/1.1\r\n\r\n").head_only);
    }

    #[test]
    fn everything_but_a_bodiless_hls_get_or_head_goes_to_hyper() {
        for raw in [
            &b"POST /hls/a HTTP/1.1\r\n\r\n"[..],
            b"GET /metrics HTTP/1.1\r\n\r\n",
            b"GET http://x/hls/a HTTP/1.1\r\n\r\n",
            b"GET /hls/a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            b"GET /hls/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /hls/a HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            b"GET /hls/a HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET /hls/a HTTP/1.1\r\nBad Header\r\n\r\n",
        ] {
            assert!(
                matches!(parse(raw), Parsed::Foreign),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        assert!(matches!(
            parse(b"GET /hls/a HTTP/1.1\r\nHost"),
            Parsed::Partial
        ));
        assert!(matches!(
            parse(b"GET /hls/a HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
            Parsed::Request(_)
        ));
    }

    #[test]
    fn a_header_value_with_a_line_break_is_not_written() {
        assert!(valid_value("public, max-age=1\tx"));
        assert!(!valid_value("a\r\nset-cookie: x"));
    }

    #[test]
    fn an_http_date_has_its_fixed_length() {
        let mut out = Vec::new();
        http_date(&mut out);
        assert_eq!(out.len(), 29, "{}", String::from_utf8_lossy(&out));
        assert!(out.ends_with(b" GMT"));
    }
}
