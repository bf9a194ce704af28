//! Backends: hyper servers, a strict raw TCP recorder, echo servers on a shared port.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sluice::proxy::ProxyConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

// ---------------------------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------------------------

pub(crate) type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>
        + Send
        + Sync,
>;

pub(crate) fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    Arc::new(move |req| Box::pin(f(req)))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Proto {
    Http1,
    Http1Upgrades,
    Http2Only,
}

/// A hyper server backend; counts accepted connections.
pub(crate) struct HyperBackend {
    pub(crate) addr: SocketAddr,
    pub(crate) accepted: Arc<AtomicUsize>,
}

pub(crate) fn serve_hyper(listener: TcpListener, proto: Proto, handler: Handler) -> HyperBackend {
    let addr = listener.local_addr().expect("backend address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let io = TokioIo::new(stream);
                let _ = match proto {
                    Proto::Http1 => {
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, svc)
                            .await
                    }
                    Proto::Http1Upgrades => {
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, svc)
                            .with_upgrades()
                            .await
                    }
                    Proto::Http2Only => {
                        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(io, svc)
                            .await
                    }
                };
            });
        }
    });
    HyperBackend { addr, accepted }
}

pub(crate) async fn hyper_backend(proto: Proto, handler: Handler) -> HyperBackend {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    serve_hyper(listener, proto, handler)
}

pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp
}

/// Everything a [`RawBackend`] saw.
#[derive(Debug, Default)]
pub(crate) struct RawLog {
    /// Each accepted connection: every byte it received, and whether it has ended.
    pub(crate) conns: Vec<RawConn>,
    /// Complete requests parsed: (head, decoded body).
    pub(crate) requests: Vec<(String, Vec<u8>)>,
    /// Messages the strict parser refused (CL and TE together, bad chunk...).
    pub(crate) invalid: usize,
}

#[derive(Debug, Default)]
pub(crate) struct RawConn {
    pub(crate) bytes: Vec<u8>,
    pub(crate) closed: bool,
}

impl RawLog {
    /// Every byte received, connection after connection.
    pub(crate) fn bytes(&self) -> Vec<u8> {
        self.conns
            .iter()
            .flat_map(|c| c.bytes.iter().copied())
            .collect()
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }
}

/// A raw TCP backend with its own minimal, strict HTTP/1.1 request parser. It records every byte
/// it receives and, when `answer` is set, answers each complete request `200 ok`; otherwise it
/// never answers.
pub(crate) struct RawBackend {
    pub(crate) addr: SocketAddr,
    pub(crate) log: Arc<Mutex<RawLog>>,
}

impl RawBackend {
    pub(crate) async fn start(answer: bool) -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind raw backend");
        let addr = listener.local_addr().expect("raw backend address");
        let log = Arc::new(Mutex::new(RawLog::default()));
        let shared = log.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let index = {
                    let mut log = shared.lock().unwrap();
                    log.conns.push(RawConn::default());
                    log.conns.len() - 1
                };
                tokio::spawn(raw_backend_conn(stream, shared.clone(), index, answer));
            }
        });
        RawBackend { addr, log }
    }

    pub(crate) fn with<T>(&self, f: impl FnOnce(&RawLog) -> T) -> T {
        f(&self.log.lock().unwrap())
    }

    /// Waits until every connection that received `needle` has ended, so that nothing more of
    /// what the proxy sent on it can still be on its way.
    pub(crate) async fn wait_closed_carrying(&self, needle: &[u8]) {
        eventually(
            "the backend connections that carried the request to end",
            || {
                self.with(|l| {
                    l.conns
                        .iter()
                        .filter(|c| find(&c.bytes, needle).is_some())
                        .all(|c| c.closed)
                })
            },
        )
        .await;
    }
}

pub(crate) async fn raw_backend_conn(
    mut stream: TcpStream,
    log: Arc<Mutex<RawLog>>,
    index: usize,
    answer: bool,
) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    'conn: loop {
        let n = stream.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        log.lock().unwrap().conns[index]
            .bytes
            .extend_from_slice(&chunk[..n]);
        loop {
            match parse_request(&buf) {
                Parsed::Incomplete => break,
                Parsed::Invalid => {
                    log.lock().unwrap().invalid += 1;
                    break 'conn;
                }
                Parsed::Complete { head, body, used } => {
                    log.lock().unwrap().requests.push((head, body));
                    buf.drain(..used);
                    if answer
                        && stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await
                            .is_err()
                    {
                        break 'conn;
                    }
                }
            }
        }
    }
    log.lock().unwrap().conns[index].closed = true;
}

pub(crate) enum Parsed {
    Incomplete,
    Invalid,
    Complete {
        head: String,
        body: Vec<u8>,
        used: usize,
    },
}

pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A deliberately strict parser: a message with both Content-Length and Transfer-Encoding, a
/// Transfer-Encoding other than `chunked`, conflicting lengths or a bad chunk are invalid.
pub(crate) fn parse_request(buf: &[u8]) -> Parsed {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return Parsed::Incomplete;
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut length: Option<usize> = None;
    let mut chunked = false;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            return Parsed::Invalid;
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if name == "content-length" {
            match value.parse::<usize>() {
                Ok(n) if length.is_none_or(|l| l == n) => length = Some(n),
                _ => return Parsed::Invalid,
            }
        } else if name == "transfer-encoding" {
            if !value.eq_ignore_ascii_case("chunked") || chunked {
                return Parsed::Invalid;
            }
            chunked = true;
        }
    }
    if chunked && length.is_some() {
        return Parsed::Invalid;
    }
    let mut pos = end + 4;
    if !chunked {
        let n = length.unwrap_or(0);
        if buf.len() < pos + n {
            return Parsed::Incomplete;
        }
        return Parsed::Complete {
            head,
            body: buf[pos..pos + n].to_vec(),
            used: pos + n,
        };
    }
    let mut body = Vec::new();
    loop {
        let Some(line_len) = find(&buf[pos..], b"\r\n") else {
            return Parsed::Incomplete;
        };
        let line = String::from_utf8_lossy(&buf[pos..pos + line_len]);
        let size = line.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size, 16) else {
            return Parsed::Invalid;
        };
        pos += line_len + 2;
        if size == 0 {
            // Trailer fields, then an empty line.
            loop {
                let Some(line_len) = find(&buf[pos..], b"\r\n") else {
                    return Parsed::Incomplete;
                };
                pos += line_len + 2;
                if line_len == 0 {
                    return Parsed::Complete {
                        head,
                        body,
                        used: pos,
                    };
                }
            }
        }
        if buf.len() < pos + size + 2 {
            return Parsed::Incomplete;
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Parsed::Invalid;
        }
        pos += size + 2;
    }
}

/// Binds `ips` on one shared port (the Service helper gives all endpoints one port). Retries
/// with another port when one of the addresses is taken.
pub(crate) async fn bind_same_port(ips: &[[u8; 4]]) -> Vec<TcpListener> {
    for _ in 0..50 {
        let first = TcpListener::bind(SocketAddr::from((ips[0], 0)))
            .await
            .expect("bind first address");
        let port = first.local_addr().expect("address").port();
        let mut all = vec![first];
        for ip in &ips[1..] {
            match TcpListener::bind(SocketAddr::from((*ip, port))).await {
                Ok(l) => all.push(l),
                Err(_) => break,
            }
        }
        if all.len() == ips.len() {
            return all;
        }
    }
    panic!("could not bind {ips:?} on one port");
}

/// Starts echo backends named `name` on each of `ips`, all on one port.
pub(crate) async fn echo_same_port(ips: &[[u8; 4]], name: &'static str) -> Vec<SocketAddr> {
    for _ in 0..50 {
        let listeners = bind_same_port(ips).await;
        let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        // spawn_echo binds by itself: free the addresses and take them again at once.
        drop(listeners);
        let mut started = Vec::new();
        for a in &addrs {
            match sluice_actors::demo::spawn_echo(*a, name).await {
                Ok((addr, task)) => started.push((addr, task)),
                Err(_) => break,
            }
        }
        if started.len() == addrs.len() {
            return addrs;
        }
        for (_, task) in started {
            task.abort();
        }
    }
    panic!("could not start echo backends on {ips:?}");
}

/// A deterministic byte pattern.
pub(crate) fn pattern(i: usize) -> u8 {
    #[allow(
        clippy::cast_possible_truncation,
        reason = "the value is reduced modulo 251 first"
    )]
    let b = ((i.wrapping_mul(7) + i / 4096) % 251) as u8;
    b
}

pub(crate) fn pattern_bytes(len: usize) -> Vec<u8> {
    (0..len).map(pattern).collect()
}

/// An order-sensitive checksum.
pub(crate) fn checksum(acc: u64, data: &[u8]) -> u64 {
    data.iter()
        .fold(acc, |s, &b| s.wrapping_mul(31).wrapping_add(u64::from(b)))
}

/// A request body of unknown length (sent chunked) yielding the pattern in 64 KiB frames.
pub(crate) struct PatternBody {
    pub(crate) sent: usize,
    pub(crate) total: usize,
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.sent >= self.total {
            return Poll::Ready(None);
        }
        let n = (self.total - self.sent).min(64 * 1024);
        let data: Vec<u8> = (self.sent..self.sent + n).map(pattern).collect();
        self.sent += n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(data)))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// `web.test` (every path) routed to an echo backend named `web`, with `config`.
pub(crate) async fn web_harness(config: ProxyConfig) -> Harness {
    let web = echo([127, 0, 0, 1], "web").await;
    Harness::start_with(
        &[
            (
                "web.yaml",
                ingress("web", "web.test", &[("/", "Prefix", "web", 80)], &[]),
            ),
            ("svc.yaml", service("web", &[(web, true)])),
        ],
        config,
    )
    .await
}

/// A backend that reads one request head per connection, records it, writes `response` as
/// given (any bytes, valid HTTP or not) and closes.
pub(crate) struct CannedBackend {
    pub(crate) addr: SocketAddr,
    /// The request heads received.
    pub(crate) heads: Arc<Mutex<Vec<String>>>,
}

impl CannedBackend {
    pub(crate) async fn start(response: &'static [u8]) -> CannedBackend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind canned backend");
        let addr = listener.local_addr().expect("address");
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while find(&buf, b"\r\n\r\n").is_none() {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    seen.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf).into_owned());
                    let _ = stream.write_all(response).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        CannedBackend { addr, heads }
    }
}

/// `web.test` routed to one backend address.
pub(crate) async fn harness_for(addr: SocketAddr) -> Harness {
    Harness::start(&[
        (
            "web.yaml",
            ingress("web", "web.test", &[("/", "Prefix", "web", 80)], &[]),
        ),
        ("svc.yaml", service("web", &[(addr, true)])),
    ])
    .await
}
