//! The plain-HTTP data plane over real sockets: routing, header rewriting, error statuses, path
//! normalisation, request-smuggling shapes, large bodies, upgrades, HTTP/2, load balancing and
//! keep-alive.
//!
//! Every test starts the whole runtime in-process ([`Harness`]) in front of real backends on
//! 127.0.0.x: the built-in echo server (which prints what it received), small hyper servers,
//! or a raw TCP server that records every byte it is sent.

mod support;
use support::*;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version, header};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sluice::proxy::ProxyConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

/// A response read in full.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn read_reply(resp: Response<Incoming>) -> Reply {
    let (parts, body) = resp.into_parts();
    let bytes = tokio::time::timeout(DEADLINE, body.collect())
        .await
        .expect("response body before the deadline")
        .expect("response body")
        .to_bytes();
    Reply {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// Opens an HTTP/1.1 connection to `addr`.
async fn h1_connect<B>(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let stream = TcpStream::connect(addr)
        .await
        .expect("connect to the proxy");
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(conn);
    send
}

/// Sends one request on a new HTTP/1.1 connection and reads the whole response.
async fn h1_send<B>(addr: SocketAddr, req: Request<B>) -> Reply
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut send = h1_connect(addr).await;
    let resp = tokio::time::timeout(DEADLINE, send.send_request(req))
        .await
        .expect("response before the deadline")
        .expect("response");
    read_reply(resp).await
}

fn get_req(host: &str, path: &str) -> Request<Empty<Bytes>> {
    Request::get(path)
        .header(header::HOST, host)
        .body(Empty::new())
        .expect("request")
}

async fn get(h: &Harness, host: &str, path: &str) -> Reply {
    h1_send(h.running.http_addr, get_req(host, path)).await
}

/// Writes `request` on a new raw TCP connection and reads until the server closes it (or
/// resets it), failing after [`DEADLINE`].
async fn raw_roundtrip(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connect to the proxy");
    // The server may answer (and close) before reading everything: a failed write is fine,
    // the answer is what the test checks.
    let _ = stream.write_all(request).await;
    read_until_close(&mut stream).await
}

async fn read_until_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(DEADLINE, read_all)
        .await
        .expect("the server closes the connection before the deadline");
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of every response in a raw byte stream (lines starting with `HTTP/1.`).
fn raw_statuses(raw: &str) -> Vec<u16> {
    raw.split("\r\n")
        .filter_map(|l| {
            l.strip_prefix("HTTP/1.1 ")
                .or_else(|| l.strip_prefix("HTTP/1.0 "))
        })
        .filter_map(|rest| rest.get(..3)?.parse().ok())
        .collect()
}

/// The body of the first response in a raw byte stream.
fn raw_body(raw: &str) -> &str {
    raw.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// A raw `GET` with `Connection: close`: (status, whole response text).
async fn raw_get(addr: SocketAddr, host: &str, target: &str) -> (u16, String) {
    let req = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let raw = raw_roundtrip(addr, req.as_bytes()).await;
    let status = raw_statuses(&raw)
        .first()
        .copied()
        .unwrap_or_else(|| panic!("no response to {target}: {raw:?}"));
    (status, raw)
}

// ---------------------------------------------------------------------------------------------
// What the echo backend printed
// ---------------------------------------------------------------------------------------------

/// The values of header `name` as the echo backend printed them (one per received line).
fn echoed<'a>(body: &'a str, name: &str) -> Vec<&'a str> {
    let prefix = format!("{name}: ");
    body.lines()
        .skip(3)
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .collect()
}

/// `service: NAME` line of an echo response.
fn echo_service(body: &str) -> &str {
    body.lines()
        .find_map(|l| l.strip_prefix("service: "))
        .unwrap_or_else(|| panic!("not an echo response: {body:?}"))
}

/// `endpoint: ADDR` line of an echo response.
fn echo_endpoint(body: &str) -> &str {
    body.lines()
        .find_map(|l| l.strip_prefix("endpoint: "))
        .unwrap_or_else(|| panic!("not an echo response: {body:?}"))
}

/// The request line the echo backend received (`GET /path HTTP/1.1`).
fn echo_request_line(body: &str) -> &str {
    body.lines()
        .nth(2)
        .unwrap_or_else(|| panic!("not an echo response: {body:?}"))
}

fn services(list: &[String]) -> String {
    list.join("---\n")
}

// ---------------------------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------------------------

type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>
        + Send
        + Sync,
>;

fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    Arc::new(move |req| Box::pin(f(req)))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Http1,
    Http1Upgrades,
    Http2Only,
}

/// A hyper server backend; counts accepted connections.
struct HyperBackend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

fn serve_hyper(listener: TcpListener, proto: Proto, handler: Handler) -> HyperBackend {
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

async fn hyper_backend(proto: Proto, handler: Handler) -> HyperBackend {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    serve_hyper(listener, proto, handler)
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp
}

/// Everything a [`RawBackend`] saw.
#[derive(Debug, Default)]
struct RawLog {
    /// Each accepted connection: every byte it received, and whether it has ended.
    conns: Vec<RawConn>,
    /// Complete requests parsed: (head, decoded body).
    requests: Vec<(String, Vec<u8>)>,
    /// Messages the strict parser refused (CL and TE together, bad chunk...).
    invalid: usize,
}

#[derive(Debug, Default)]
struct RawConn {
    bytes: Vec<u8>,
    closed: bool,
}

impl RawLog {
    /// Every byte received, connection after connection.
    fn bytes(&self) -> Vec<u8> {
        self.conns
            .iter()
            .flat_map(|c| c.bytes.iter().copied())
            .collect()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }
}

/// A raw TCP backend with its own minimal, strict HTTP/1.1 request parser. It records every byte
/// it receives and, when `answer` is set, answers each complete request `200 ok`; otherwise it
/// never answers.
struct RawBackend {
    addr: SocketAddr,
    log: Arc<Mutex<RawLog>>,
}

impl RawBackend {
    async fn start(answer: bool) -> RawBackend {
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

    fn with<T>(&self, f: impl FnOnce(&RawLog) -> T) -> T {
        f(&self.log.lock().unwrap())
    }

    /// Waits until every connection that received `needle` has ended, so that nothing more of
    /// what the proxy sent on it can still be on its way.
    async fn wait_closed_carrying(&self, needle: &[u8]) {
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

async fn raw_backend_conn(
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

enum Parsed {
    Incomplete,
    Invalid,
    Complete {
        head: String,
        body: Vec<u8>,
        used: usize,
    },
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A deliberately strict parser: a message with both Content-Length and Transfer-Encoding, a
/// Transfer-Encoding other than `chunked`, conflicting lengths or a bad chunk are invalid.
fn parse_request(buf: &[u8]) -> Parsed {
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
async fn bind_same_port(ips: &[[u8; 4]]) -> Vec<TcpListener> {
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
async fn echo_same_port(ips: &[[u8; 4]], name: &'static str) -> Vec<SocketAddr> {
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
fn pattern(i: usize) -> u8 {
    #[allow(
        clippy::cast_possible_truncation,
        reason = "the value is reduced modulo 251 first"
    )]
    let b = ((i.wrapping_mul(7) + i / 4096) % 251) as u8;
    b
}

fn pattern_bytes(len: usize) -> Vec<u8> {
    (0..len).map(pattern).collect()
}

/// An order-sensitive checksum.
fn checksum(acc: u64, data: &[u8]) -> u64 {
    data.iter()
        .fold(acc, |s, &b| s.wrapping_mul(31).wrapping_add(u64::from(b)))
}

/// A request body of unknown length (sent chunked) yielding the pattern in 64 KiB frames.
struct PatternBody {
    sent: usize,
    total: usize,
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

// ---------------------------------------------------------------------------------------------
// 1. Routing
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn routes_exact_and_prefix_paths() {
    let exact = echo([127, 0, 0, 1], "exact").await;
    let app = echo([127, 0, 0, 1], "app").await;
    let root = echo([127, 0, 0, 1], "root").await;
    let h = Harness::start(&[
        (
            "web.yaml",
            ingress(
                "web",
                "web.test",
                &[
                    ("/exact", "Exact", "exact", 80),
                    ("/app", "Prefix", "app", 80),
                    ("/", "Prefix", "root", 80),
                ],
                &[],
            ),
        ),
        (
            "svc.yaml",
            services(&[
                service("exact", &[(exact, true)]),
                service("app", &[(app, true)]),
                service("root", &[(root, true)]),
            ]),
        ),
    ])
    .await;
    let cases = [
        ("/exact", "exact"),
        ("/exact/", "root"),
        ("/exact/more", "root"),
        ("/exactly", "root"),
        ("/app", "app"),
        ("/app/", "app"),
        ("/app/x/y", "app"),
        ("/apple", "root"),
        ("/", "root"),
        ("/other", "root"),
    ];
    for (path, want) in cases {
        let r = get(&h, "web.test", path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(
            echo_service(&r.body),
            want,
            "{path} went to the wrong service: {}",
            r.body
        );
    }
}

#[tokio::test]
async fn host_matching_ignores_case_port_and_trailing_dot_and_unknown_hosts_get_404() {
    let web = echo([127, 0, 0, 1], "web").await;
    let only = echo([127, 0, 0, 1], "only").await;
    let h = Harness::start(&[
        (
            "web.yaml",
            ingress("web", "web.test", &[("/", "Prefix", "web", 80)], &[]),
        ),
        (
            "only.yaml",
            ingress("only", "only.test", &[("/only", "Exact", "only", 80)], &[]),
        ),
        (
            "svc.yaml",
            services(&[
                service("web", &[(web, true)]),
                service("only", &[(only, true)]),
            ]),
        ),
    ])
    .await;
    for host in [
        "web.test",
        "WEB.Test",
        "web.test:8080",
        "Web.TEST:80",
        "web.test.",
    ] {
        let r = get(&h, host, "/x").await;
        assert_eq!(r.status, 200, "Host: {host}: {}", r.body);
        assert_eq!(echo_service(&r.body), "web", "Host: {host}");
    }
    let r = get(&h, "only.test", "/only").await;
    assert_eq!((r.status, echo_service(&r.body)), (StatusCode::OK, "only"));

    for (host, path) in [
        ("nope.test", "/"),
        ("only.test", "/other"),
        ("web.test.example", "/x"),
    ] {
        let r = get(&h, host, path).await;
        assert_eq!(r.status, 404, "{host}{path}: {}", r.body);
        assert_eq!(r.body, "no route for this host and path\n", "{host}{path}");
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    }
}

#[tokio::test]
async fn default_backend_catches_unmatched_requests() {
    let web = echo([127, 0, 0, 1], "web").await;
    let fallback = echo([127, 0, 0, 1], "fallback").await;
    let default_ingress = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: fallback\n  namespace: default\nspec:\n  ingressClassName: sluice\n  defaultBackend:\n    service:\n      name: fallback\n      port:\n        number: 80\n";
    let h = Harness::start(&[
        (
            "web.yaml",
            ingress("web", "web.test", &[("/app", "Prefix", "web", 80)], &[]),
        ),
        ("fallback.yaml", default_ingress.to_string()),
        (
            "svc.yaml",
            services(&[
                service("web", &[(web, true)]),
                service("fallback", &[(fallback, true)]),
            ]),
        ),
    ])
    .await;
    let r = get(&h, "web.test", "/app/1").await;
    assert_eq!((r.status, echo_service(&r.body)), (StatusCode::OK, "web"));
    for (host, path) in [
        ("nope.test", "/"),
        ("web.test", "/elsewhere"),
        ("other.test", "/app"),
    ] {
        let r = get(&h, host, path).await;
        assert_eq!(r.status, 200, "{host}{path}: {}", r.body);
        assert_eq!(echo_service(&r.body), "fallback", "{host}{path}");
        assert!(
            echo_request_line(&r.body).starts_with(&format!("GET {path} ")),
            "{}",
            r.body
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Headers
// ---------------------------------------------------------------------------------------------

async fn web_harness(config: ProxyConfig) -> Harness {
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

#[tokio::test]
async fn forwarded_headers_are_replaced_for_an_untrusted_peer() {
    let h = web_harness(ProxyConfig::default()).await;
    let port = h.running.http_addr.port().to_string();
    let req = Request::get("/h")
        .header(header::HOST, "Web.TEST:8080")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-for", "7.7.7.7")
        .header("x-real-ip", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.test")
        .header("x-forwarded-port", "1")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let r = h1_send(h.running.http_addr, req).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let b = &r.body;
    assert_eq!(echoed(b, "x-forwarded-for"), ["127.0.0.1"], "{b}");
    assert_eq!(echoed(b, "x-real-ip"), ["127.0.0.1"], "{b}");
    assert_eq!(echoed(b, "x-forwarded-proto"), ["http"], "{b}");
    assert_eq!(echoed(b, "x-forwarded-host"), ["Web.TEST:8080"], "{b}");
    assert_eq!(echoed(b, "x-forwarded-port"), [port.as_str()], "{b}");
    // Host is forwarded as the client sent it.
    assert_eq!(echoed(b, "host"), ["Web.TEST:8080"], "{b}");
}

#[tokio::test]
async fn forwarded_headers_from_a_trusted_peer_are_kept_and_appended() {
    let config = ProxyConfig {
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
        ..ProxyConfig::default()
    };
    let h = web_harness(config).await;
    let req = Request::get("/h")
        .header(header::HOST, "web.test")
        .header("x-forwarded-for", "1.1.1.1")
        .header("x-forwarded-for", "2.2.2.2")
        .header("x-real-ip", "9.9.9.9")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "public.example")
        .header("x-forwarded-port", "443")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let r = h1_send(h.running.http_addr, req).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let b = &r.body;
    assert_eq!(
        echoed(b, "x-forwarded-for"),
        ["1.1.1.1, 2.2.2.2, 127.0.0.1"],
        "{b}"
    );
    assert_eq!(echoed(b, "x-real-ip"), ["9.9.9.9"], "{b}");
    assert_eq!(echoed(b, "x-forwarded-proto"), ["https"], "{b}");
    assert_eq!(echoed(b, "x-forwarded-host"), ["public.example"], "{b}");
    assert_eq!(echoed(b, "x-forwarded-port"), ["443"], "{b}");

    // Nothing sent: the proxy's own values.
    let r = get(&h, "web.test", "/h").await;
    let b = &r.body;
    assert_eq!(echoed(b, "x-forwarded-for"), ["127.0.0.1"], "{b}");
    assert_eq!(echoed(b, "x-real-ip"), ["127.0.0.1"], "{b}");
    assert_eq!(echoed(b, "x-forwarded-proto"), ["http"], "{b}");
    assert_eq!(echoed(b, "x-forwarded-host"), ["web.test"], "{b}");
}

#[tokio::test]
async fn hop_by_hop_and_connection_named_headers_are_stripped() {
    let h = web_harness(ProxyConfig::default()).await;
    let req = Request::get("/h")
        .header(header::HOST, "web.test")
        .header(header::CONNECTION, "keep-alive, X-Secret")
        .header("x-secret", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("te", "trailers")
        .header("trailer", "x-checksum")
        .header("upgrade", "h2c")
        .header("x-kept", "yes")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let r = h1_send(h.running.http_addr, req).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let b = &r.body;
    for gone in [
        "x-secret",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "connection",
        "transfer-encoding",
    ] {
        assert!(
            echoed(b, gone).is_empty(),
            "{gone} reached the backend: {b}"
        );
    }
    assert_eq!(echoed(b, "x-kept"), ["yes"], "{b}");
}

#[tokio::test]
async fn response_hop_by_hop_headers_are_stripped() {
    let backend = hyper_backend(
        Proto::Http1,
        handler(|_req| async {
            let mut resp = text(StatusCode::OK, "hi");
            let h = resp.headers_mut();
            h.insert(header::CONNECTION, "x-internal".parse().unwrap());
            h.insert("x-internal", "secret".parse().unwrap());
            h.insert("keep-alive", "timeout=5".parse().unwrap());
            h.insert("proxy-connection", "keep-alive".parse().unwrap());
            h.insert("x-public", "yes".parse().unwrap());
            resp
        }),
    )
    .await;
    let h = Harness::start(&[
        (
            "web.yaml",
            ingress("web", "web.test", &[("/", "Prefix", "web", 80)], &[]),
        ),
        ("svc.yaml", service("web", &[(backend.addr, true)])),
    ])
    .await;
    let r = get(&h, "web.test", "/").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "hi"));
    for gone in ["x-internal", "keep-alive", "proxy-connection"] {
        assert!(
            r.header(gone).is_none(),
            "{gone} reached the client: {:?}",
            r.headers
        );
    }
    assert_eq!(r.header("x-public"), Some("yes"));
}

#[tokio::test]
async fn a_client_cannot_make_the_proxy_strip_its_own_forwarded_headers() {
    // Traefik CVE-2021-32813: headers named in `Connection` were removed after the proxy had
    // added its own.
    let h = web_harness(ProxyConfig::default()).await;
    let req = Request::get("/h")
        .header(header::HOST, "web.test")
        .header(
            header::CONNECTION,
            "X-Forwarded-For, X-Request-Id, X-Real-IP, X-Forwarded-Host",
        )
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-request-id", "client-chosen")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let r = h1_send(h.running.http_addr, req).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let b = &r.body;
    assert_eq!(echoed(b, "x-forwarded-for"), ["127.0.0.1"], "{b}");
    assert_eq!(echoed(b, "x-real-ip"), ["127.0.0.1"], "{b}");
    assert_eq!(echoed(b, "x-forwarded-host"), ["web.test"], "{b}");
    let ids = echoed(b, "x-request-id");
    assert_eq!(ids.len(), 1, "{b}");
    assert_eq!(
        r.header("x-request-id"),
        Some(ids[0]),
        "the response carries the id the backend saw"
    );
}

fn is_generated_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

#[tokio::test]
async fn request_ids_are_kept_when_valid_and_generated_otherwise() {
    let h = web_harness(ProxyConfig::default()).await;
    let with_id = |id: &str| {
        Request::get("/id")
            .header(header::HOST, "web.test")
            .header("x-request-id", id)
            .body(Empty::<Bytes>::new())
            .unwrap()
    };

    let r = h1_send(h.running.http_addr, with_id("abc-123_XYZ.~")).await;
    assert_eq!(
        echoed(&r.body, "x-request-id"),
        ["abc-123_XYZ.~"],
        "{}",
        r.body
    );
    assert_eq!(r.header("x-request-id"), Some("abc-123_XYZ.~"));

    let too_long = "a".repeat(129);
    for bad in ["bad id", too_long.as_str()] {
        let r = h1_send(h.running.http_addr, with_id(bad)).await;
        let seen = echoed(&r.body, "x-request-id");
        assert_eq!(seen.len(), 1, "{}", r.body);
        assert!(
            is_generated_id(seen[0]),
            "{bad:?} was not replaced: {}",
            r.body
        );
        assert_eq!(r.header("x-request-id"), Some(seen[0]));
    }

    let first = get(&h, "web.test", "/id").await;
    let second = get(&h, "web.test", "/id").await;
    let (a, b) = (
        echoed(&first.body, "x-request-id"),
        echoed(&second.body, "x-request-id"),
    );
    assert_eq!((a.len(), b.len()), (1, 1));
    assert!(
        is_generated_id(a[0]) && is_generated_id(b[0]),
        "{a:?} {b:?}"
    );
    assert_ne!(a[0], b[0], "each request gets its own id");
    assert_eq!(first.header("x-request-id"), Some(a[0]));
}

// ---------------------------------------------------------------------------------------------
// 3. Errors
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn no_ready_endpoint_is_503() {
    let h = Harness::start(&[
        (
            "web.yaml",
            ingress("web", "web.test", &[("/", "Prefix", "web", 80)], &[]),
        ),
        (
            "svc.yaml",
            service("web", &[("127.0.0.1:9".parse().unwrap(), false)]),
        ),
    ])
    .await;
    let r = get(&h, "web.test", "/").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.body, "no ready endpoint for this service\n");
}

/// An address nothing listens on: bound, then closed.
async fn refusing_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

#[tokio::test]
async fn refused_connection_is_502_for_a_request_with_a_body() {
    let h = Harness::start(&[
        (
            "web.yaml",
            ingress("web", "web.test", &[("/", "Prefix", "web", 80)], &[]),
        ),
        ("svc.yaml", service("web", &[(refusing_addr().await, true)])),
    ])
    .await;
    let req = Request::post("/")
        .header(header::HOST, "web.test")
        .body(Full::new(Bytes::from_static(b"data")))
        .unwrap();
    let r = h1_send(h.running.http_addr, req).await;
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(r.body.starts_with("bad gateway"), "{}", r.body);
}

#[tokio::test]
async fn refused_connection_is_502_for_a_get() {
    let h = Harness::start(&[
        (
            "web.yaml",
            ingress("web", "web.test", &[("/", "Prefix", "web", 80)], &[]),
        ),
        ("svc.yaml", service("web", &[(refusing_addr().await, true)])),
    ])
    .await;
    let r = get(&h, "web.test", "/").await;
    assert_eq!(r.status, 502, "{}", r.body);
}

#[tokio::test]
async fn a_silent_backend_is_504_after_the_read_timeout() {
    let silent = RawBackend::start(false).await;
    let h = web_to(silent.addr, ("sluice.io/proxy-read-timeout", "300ms")).await;
    assert_gateway_timeout_after_300ms(&h, "/slow").await;
    // The request did reach the backend: the timeout is the response-head timeout.
    assert!(silent.with(|l| find(&l.bytes(), b"GET /slow HTTP/1.1").is_some()));
}

/// An endpoint whose SYNs go unanswered: a listener that never accepts, with its accept queue
/// already full (the kernel drops further SYNs instead of refusing them).
async fn unanswering_addr() -> (tokio::net::TcpListener, TcpStream, SocketAddr) {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = sock.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let filler = TcpStream::connect(addr).await.unwrap();
    (listener, filler, addr)
}

#[tokio::test]
async fn an_unanswered_connect_is_504_after_the_connect_timeout() {
    let (_listener, _filler, addr) = unanswering_addr().await;
    let h = web_to(addr, ("sluice.io/proxy-connect-timeout", "300ms")).await;
    assert_gateway_timeout_after_300ms(&h, "/").await;
}

/// `web.test` routed to one endpoint, with one annotation.
async fn web_to(addr: SocketAddr, annotation: (&str, &str)) -> Harness {
    Harness::start(&[
        (
            "web.yaml",
            ingress(
                "web",
                "web.test",
                &[("/", "Prefix", "web", 80)],
                &[annotation],
            ),
        ),
        ("svc.yaml", service("web", &[(addr, true)])),
    ])
    .await
}

/// A GET to `web.test` answers 504 once a 300 ms timeout has passed (and well before the 5 s
/// defaults would).
async fn assert_gateway_timeout_after_300ms(h: &Harness, path: &str) {
    let started = Instant::now();
    let r = get(h, "web.test", path).await;
    let elapsed = started.elapsed();
    assert_eq!(r.status, 504, "{}", r.body);
    assert!(r.body.starts_with("gateway timeout"), "{}", r.body);
    assert!(
        elapsed >= Duration::from_millis(300),
        "answered after {elapsed:?}, before the timeout"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "answered after {elapsed:?}"
    );
}

#[tokio::test]
async fn malformed_paths_are_400() {
    let web = echo([127, 0, 0, 1], "web").await;
    let h = Harness::start(&[
        (
            "web.yaml",
            ingress("web", "web.test", &[("/", "Prefix", "web", 80)], &[]),
        ),
        ("svc.yaml", service("web", &[(web, true)])),
    ])
    .await;
    for (target, why) in [
        ("/a%2Fb", "%2F is not allowed"),
        ("/a%2fb", "%2F is not allowed"),
        ("/a%5Cb", "%5C is not allowed"),
        ("/a%00", "%00 is not allowed"),
        ("/a%zz", "malformed percent-escape"),
        ("/a%2", "malformed percent-escape"),
    ] {
        let (status, raw) = raw_get(h.running.http_addr, "web.test", target).await;
        assert_eq!(status, 400, "{target}: {raw}");
        assert!(raw_body(&raw).contains(why), "{target}: {raw}");
    }
}

#[tokio::test]
async fn http11_without_host_is_400() {
    let h = web_harness(ProxyConfig::default()).await;
    let raw = raw_roundtrip(
        h.running.http_addr,
        b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_statuses(&raw), [400], "{raw}");
    assert!(raw_body(&raw).contains("missing Host header"), "{raw}");
}

#[tokio::test]
async fn an_oversized_request_head_is_431() {
    let h = web_harness(ProxyConfig::default()).await;
    let mut stream = TcpStream::connect(h.running.http_addr).await.unwrap();
    let big = "a".repeat(64 * 1024);
    let req = format!("GET / HTTP/1.1\r\nHost: web.test\r\nX-Big: {big}\r\n\r\n");
    let (mut rd, mut wr) = stream.split();
    let write = async {
        let _ = wr.write_all(req.as_bytes()).await;
    };
    let read = async {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(2).any(|w| w == b"\r\n") {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&head).into_owned()
    };
    let (_, head) = tokio::time::timeout(DEADLINE, async { tokio::join!(write, read) })
        .await
        .expect("an answer in time");
    assert!(head.starts_with("HTTP/1.1 431 "), "{head:?}");
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_and_not_forwarded() {
    let raw = RawBackend::start(true).await;
    let h = Harness::start(&[
        (
            "web.yaml",
            ingress(
                "web",
                "web.test",
                &[("/", "Prefix", "web", 80)],
                &[("sluice.io/proxy-body-size", "1k")],
            ),
        ),
        ("svc.yaml", service("web", &[(raw.addr, true)])),
    ])
    .await;

    // Within the limit: forwarded.
    let small = Request::post("/small")
        .header(header::HOST, "web.test")
        .body(Full::new(Bytes::from(vec![b'x'; 1024])))
        .unwrap();
    let r = h1_send(h.running.http_addr, small).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "ok"));
    assert_eq!(raw.with(|l| l.requests.len()), 1);

    // Declared too large: refused before anything is sent upstream.
    let declared = Request::post("/declared")
        .header(header::HOST, "web.test")
        .body(Full::new(Bytes::from(vec![b'y'; 4096])))
        .unwrap();
    let r = h1_send(h.running.http_addr, declared).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.body, "request body too large\n");

    // Chunked, so the size is only known while streaming.
    let chunk = "z".repeat(1024);
    let mut req =
        b"POST /chunked HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        req.extend_from_slice(format!("400\r\n{chunk}\r\n").as_bytes());
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let mut stream = TcpStream::connect(h.running.http_addr).await.unwrap();
    stream.write_all(&req).await.unwrap();
    let mut head = vec![0u8; 12];
    tokio::time::timeout(DEADLINE, stream.read_exact(&mut head))
        .await
        .expect("an answer in time")
        .expect("a status line");
    assert_eq!(
        &head,
        b"HTTP/1.1 413",
        "{:?}",
        String::from_utf8_lossy(&head)
    );

    raw.wait_closed_carrying(b"/chunked").await;
    raw.with(|l| {
        let bytes = l.bytes();
        let paths: Vec<&str> = l
            .requests
            .iter()
            .map(|(head, _)| head.lines().next().unwrap_or(""))
            .collect();
        assert_eq!(
            paths,
            ["POST /small HTTP/1.1"],
            "only the small request completed upstream"
        );
        assert!(
            find(&bytes, b"/declared").is_none(),
            "the declared-too-large request was forwarded"
        );
        let z = bytes.iter().filter(|&&b| b == b'z').count();
        assert!(
            z <= 1024,
            "{z} bytes of the chunked body reached the backend (limit 1024)"
        );
    });
}

// ---------------------------------------------------------------------------------------------
// 4. Path normalisation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_normalised_path_is_matched_and_forwarded() {
    let b = echo([127, 0, 0, 1], "b").await;
    let api = echo([127, 0, 0, 1], "api").await;
    let x = echo([127, 0, 0, 1], "x").await;
    let h = Harness::start(&[
        (
            "web.yaml",
            ingress(
                "web",
                "web.test",
                &[
                    ("/b", "Exact", "b", 80),
                    ("/Api", "Prefix", "api", 80),
                    ("/x", "Exact", "x", 80),
                ],
                &[],
            ),
        ),
        (
            "svc.yaml",
            services(&[
                service("b", &[(b, true)]),
                service("api", &[(api, true)]),
                service("x", &[(x, true)]),
            ]),
        ),
    ])
    .await;
    for (target, svc, forwarded) in [
        ("/a/../b", "b", "/b"),
        ("/a/./../b", "b", "/b"),
        ("/%2e%2E/b", "b", "/b"),
        ("/../../b", "b", "/b"),
        ("/%41pi", "api", "/Api"),
        ("/%41pi/caf%c3%a9", "api", "/Api/caf%C3%A9"),
        ("//x", "x", "/x"),
        ("///x", "x", "/x"),
        ("/a/../b?q=1&r=%2F..&s=/../", "b", "/b?q=1&r=%2F..&s=/../"),
        ("//x?y=%41", "x", "/x?y=%41"),
    ] {
        let (status, raw) = raw_get(h.running.http_addr, "web.test", target).await;
        assert_eq!(status, 200, "{target}: {raw}");
        let body = raw_body(&raw);
        assert_eq!(echo_service(body), svc, "{target}: {body}");
        assert_eq!(
            echo_request_line(body),
            format!("GET {forwarded} HTTP/1.1"),
            "{target}"
        );
    }
    // `/api` does not match the case-sensitive `/Api` once normalised differently.
    let (status, _) = raw_get(h.running.http_addr, "web.test", "/%61pi").await;
    assert_eq!(status, 404);
}

// ---------------------------------------------------------------------------------------------
// 5. Request smuggling shapes
// ---------------------------------------------------------------------------------------------

async fn raw_harness() -> (RawBackend, Harness) {
    let raw = RawBackend::start(true).await;
    let h = Harness::start(&[
        (
            "web.yaml",
            ingress("web", "web.test", &[("/", "Prefix", "web", 80)], &[]),
        ),
        ("svc.yaml", service("web", &[(raw.addr, true)])),
    ])
    .await;
    (raw, h)
}

#[tokio::test]
async fn ingresses_sharing_a_service_share_its_upstream_connections() {
    // Twenty Ingresses (twenty backends) for one Service: the endpoint's idle connections are
    // one pool, so sequential requests to every host ride one upstream connection.
    let raw = RawBackend::start(true).await;
    let names: Vec<String> = (0..20).map(|i| format!("i{i}.yaml")).collect();
    let mut files: Vec<(&str, String)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            (
                n.as_str(),
                ingress(
                    &format!("i{i}"),
                    &format!("h{i}.test"),
                    &[("/", "Prefix", "web", 80)],
                    &[],
                ),
            )
        })
        .collect();
    files.push(("svc.yaml", service("web", &[(raw.addr, true)])));
    let h = Harness::start(&files).await;
    for i in 0..20 {
        let r = get(&h, &format!("h{i}.test"), "/").await;
        assert_eq!(r.status, 200, "h{i}.test: {}", r.body);
    }
    let conns = raw.with(|l| l.conns.len());
    assert_eq!(
        conns, 1,
        "upstream connections opened for 20 sequential requests"
    );
}

#[tokio::test]
async fn content_length_with_transfer_encoding_forwards_one_chunked_request() {
    let (raw, h) = raw_harness().await;
    // TE.CL: a front end honouring Content-Length would see a body of 3 bytes ("5\r\n") and
    // a second request starting at "hello...". hyper honours Transfer-Encoding and drops
    // Content-Length.
    let attack = b"POST /upload HTTP/1.1\r\nHost: web.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: web.test\r\n\r\n";
    let answer = raw_roundtrip(h.running.http_addr, attack).await;
    assert_eq!(
        raw_statuses(&answer),
        [200],
        "exactly one response, then the connection closes: {answer}"
    );

    // CL.TE: Transfer-Encoding first, then a Content-Length covering a smuggled request.
    let smuggled = "GET /smuggled2 HTTP/1.1\r\nHost: web.test\r\n\r\n";
    let attack2 = format!(
        "POST /upload2 HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\nContent-Length: {}\r\n\r\n0\r\n\r\n{smuggled}",
        5 + smuggled.len()
    );
    let answer = raw_roundtrip(h.running.http_addr, attack2.as_bytes()).await;
    assert_eq!(raw_statuses(&answer), [200], "{answer}");

    // Each answer was followed by the proxy closing the client connection (keep-alive is off
    // after an ambiguous message), so no further request from it can still be on its way.
    raw.with(|l| {
        assert_eq!(
            l.invalid,
            0,
            "the backend got a message with ambiguous framing: {}",
            l.text()
        );
        let got: Vec<(&str, &[u8])> = l
            .requests
            .iter()
            .map(|(head, body)| (head.lines().next().unwrap_or(""), body.as_slice()))
            .collect();
        assert_eq!(
            got,
            [
                ("POST /upload HTTP/1.1", &b"hello"[..]),
                ("POST /upload2 HTTP/1.1", &b""[..])
            ]
        );
        assert!(
            find(&l.bytes(), b"smuggled").is_none(),
            "smuggled bytes reached the backend: {}",
            l.text()
        );
        for (head, _) in &l.requests {
            assert!(
                !head.to_ascii_lowercase().contains("content-length: 3"),
                "{head}"
            );
        }
    });
}

#[tokio::test]
async fn conflicting_content_lengths_are_400_and_not_forwarded() {
    let (raw, h) = raw_harness().await;
    for attack in [
        &b"POST / HTTP/1.1\r\nHost: web.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhelloX"[..],
        &b"POST / HTTP/1.1\r\nHost: web.test\r\nContent-Length: 5, 6\r\n\r\nhelloX"[..],
        &b"POST / HTTP/1.1\r\nHost: web.test\r\nContent-Length: -5\r\n\r\nhello"[..],
        &b"POST / HTTP/1.1\r\nHost: web.test\r\nContent-Length: 5x\r\n\r\nhello"[..],
    ] {
        let answer = raw_roundtrip(h.running.http_addr, attack).await;
        assert_eq!(raw_statuses(&answer), [400], "{:?} -> {answer}", String::from_utf8_lossy(attack));
    }
    raw.with(|l| assert_eq!(l.conns.len(), 0, "something was forwarded: {}", l.text()));
}

#[tokio::test]
async fn an_invalid_chunk_size_never_completes_a_request_upstream() {
    let (raw, h) = raw_harness().await;
    let attack = b"POST /chunks HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n";
    let answer = raw_roundtrip(h.running.http_addr, attack).await;
    // Whatever the status (see an_invalid_chunk_size_is_answered_400_or_closed), it is not a
    // success and there is only one.
    let statuses = raw_statuses(&answer);
    assert!(
        statuses.len() <= 1 && !statuses.contains(&200),
        "{answer:?}"
    );
    raw.wait_closed_carrying(b"/chunks").await;
    raw.with(|l| {
        assert!(
            l.requests.is_empty(),
            "a request completed upstream: {:?}",
            l.requests
        );
        assert!(
            find(&l.bytes(), b"world").is_none(),
            "bytes after the bad chunk were forwarded"
        );
    });
}

#[tokio::test]
async fn an_invalid_chunk_size_is_answered_400_or_closed() {
    let (_raw, h) = raw_harness().await;
    let attack = b"POST /chunks HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n";
    let answer = raw_roundtrip(h.running.http_addr, attack).await;
    let statuses = raw_statuses(&answer);
    assert!(
        statuses.is_empty() || statuses == [400],
        "expected 400 or a closed connection, got {answer:?}"
    );
}

#[tokio::test]
async fn transfer_encodings_other_than_chunked_are_rejected() {
    let (raw, h) = raw_harness().await;
    for attack in [
        &b"POST / HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: gzip\r\n\r\nhello"[..],
        &b"POST / HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n"[..],
        &b"POST / HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"[..],
        &b"POST / HTTP/1.0\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"[..],
    ] {
        let answer = raw_roundtrip(h.running.http_addr, attack).await;
        assert_eq!(raw_statuses(&answer), [400], "{:?} -> {answer}", String::from_utf8_lossy(attack));
    }
    raw.with(|l| assert_eq!(l.conns.len(), 0, "something was forwarded: {}", l.text()));
}

// ---------------------------------------------------------------------------------------------
// 6. Large bodies
// ---------------------------------------------------------------------------------------------

const BIG: usize = 8 * 1024 * 1024;

/// Counts and checksums request bodies frame by frame; `/download` answers [`BIG`] bytes.
async fn counting_backend() -> HyperBackend {
    hyper_backend(
        Proto::Http1,
        handler(|req: Request<Incoming>| async move {
            if req.uri().path() == "/download" {
                return text(StatusCode::OK, pattern_bytes(BIG));
            }
            let mut body = req.into_body();
            let (mut n, mut sum) = (0usize, 0u64);
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => {
                        if let Some(d) = f.data_ref() {
                            n += d.len();
                            sum = checksum(sum, d);
                        }
                    }
                    Err(e) => return text(StatusCode::BAD_REQUEST, format!("body error: {e}")),
                }
            }
            text(StatusCode::OK, format!("bytes={n} sum={sum}"))
        }),
    )
    .await
}

#[tokio::test]
async fn an_8_mib_upload_streams_through() {
    let backend = counting_backend().await;
    let h = Harness::start(&[
        (
            "web.yaml",
            ingress("web", "web.test", &[("/", "Prefix", "web", 80)], &[]),
        ),
        ("svc.yaml", service("web", &[(backend.addr, true)])),
    ])
    .await;
    let data = pattern_bytes(BIG);
    let want = format!("bytes={BIG} sum={}", checksum(0, &data));

    let req = Request::post("/upload")
        .header(header::HOST, "web.test")
        .body(Full::new(Bytes::from(data)))
        .unwrap();
    let r = h1_send(h.running.http_addr, req).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::OK, want.as_str()),
        "with Content-Length"
    );

    let req = Request::post("/upload")
        .header(header::HOST, "web.test")
        .body(PatternBody {
            sent: 0,
            total: BIG,
        })
        .unwrap();
    let r = h1_send(h.running.http_addr, req).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::OK, want.as_str()),
        "chunked"
    );
}

#[tokio::test]
async fn an_8_mib_download_streams_through() {
    let backend = counting_backend().await;
    let h = Harness::start(&[
        (
            "web.yaml",
            ingress("web", "web.test", &[("/", "Prefix", "web", 80)], &[]),
        ),
        ("svc.yaml", service("web", &[(backend.addr, true)])),
    ])
    .await;
    let resp = h1_connect(h.running.http_addr)
        .await
        .send_request(get_req("web.test", "/download"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()),
        Some(BIG.to_string().as_str())
    );
    let body = tokio::time::timeout(DEADLINE, resp.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert_eq!(body.len(), BIG);
    assert_eq!(checksum(0, &body), checksum(0, &pattern_bytes(BIG)));
}

// ---------------------------------------------------------------------------------------------
// 7. Upgrades
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_websocket_upgrade_tunnels_both_ways() {
    let backend = hyper_backend(
        Proto::Http1Upgrades,
        handler(|mut req: Request<Incoming>| async move {
            let h = req.headers();
            let asks = h.get(header::UPGRADE).is_some_and(|v| v == "websocket")
                && h.get(header::CONNECTION).is_some_and(|v| {
                    v.to_str()
                        .unwrap_or("")
                        .to_ascii_lowercase()
                        .contains("upgrade")
                })
                && h.get("sec-websocket-key").is_some();
            if !asks {
                return text(StatusCode::BAD_REQUEST, format!("not an upgrade: {h:?}"));
            }
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(upgraded) = on.await else { return };
                let mut io = TokioIo::new(upgraded);
                if io.write_all(b"hello from backend").await.is_err() {
                    return;
                }
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if io.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
            let mut resp = text(StatusCode::SWITCHING_PROTOCOLS, Bytes::new());
            resp.headers_mut()
                .insert(header::CONNECTION, "upgrade".parse().unwrap());
            resp.headers_mut()
                .insert(header::UPGRADE, "websocket".parse().unwrap());
            resp
        }),
    )
    .await;
    let h = Harness::start(&[
        (
            "web.yaml",
            ingress("web", "web.test", &[("/", "Prefix", "web", 80)], &[]),
        ),
        ("svc.yaml", service("web", &[(backend.addr, true)])),
    ])
    .await;

    let mut stream = TcpStream::connect(h.running.http_addr).await.unwrap();
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: web.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .unwrap();
    // Read the response head; whatever follows it already belongs to the tunnel.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Some(i) = find(&got, b"\r\n\r\n") {
                return i + 4;
            }
            let n = stream.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "closed before the upgrade answer: {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("upgrade answer in time");
    let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101 "), "{head}");
    assert!(head.contains("\r\nupgrade: websocket\r\n"), "{head}");
    assert!(head.contains("\r\nconnection: upgrade\r\n"), "{head}");
    let mut tunnel = got[head_end..].to_vec();

    async fn read_exact_after(stream: &mut TcpStream, pending: &mut Vec<u8>, n: usize) -> Vec<u8> {
        tokio::time::timeout(DEADLINE, async {
            let mut buf = vec![0u8; 64 * 1024];
            while pending.len() < n {
                let got = stream.read(&mut buf).await.expect("tunnel read");
                assert!(got > 0, "the tunnel closed early");
                pending.extend_from_slice(&buf[..got]);
            }
        })
        .await
        .expect("tunnel data in time");
        pending.drain(..n).collect()
    }

    let greeting = read_exact_after(&mut stream, &mut tunnel, b"hello from backend".len()).await;
    assert_eq!(greeting, b"hello from backend");
    for i in 0..5 {
        let msg = format!("message {i} from the client");
        stream.write_all(msg.as_bytes()).await.unwrap();
        let back = read_exact_after(&mut stream, &mut tunnel, msg.len()).await;
        assert_eq!(back, msg.as_bytes());
    }
    let large = pattern_bytes(256 * 1024);
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        wr.write_all(&large).await.unwrap();
        wr
    });
    let mut echoed_back = std::mem::take(&mut tunnel);
    tokio::time::timeout(DEADLINE, async {
        let mut buf = vec![0u8; 64 * 1024];
        while echoed_back.len() < 256 * 1024 {
            let n = rd.read(&mut buf).await.unwrap();
            assert!(n > 0, "the tunnel closed early");
            echoed_back.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("large echo in time");
    assert_eq!(echoed_back, pattern_bytes(256 * 1024));
    drop(writer.await.unwrap());
}

// ---------------------------------------------------------------------------------------------
// 8. HTTP/2
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn h2c_prior_knowledge_from_the_client_reaches_an_http1_backend() {
    let h = web_harness(ProxyConfig::default()).await;
    let stream = TcpStream::connect(h.running.http_addr).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    // Several streams at once on the one connection.
    let mut tasks = Vec::new();
    for i in 0..5 {
        let mut send = send.clone();
        tasks.push(tokio::spawn(async move {
            let req = Request::get(format!("http://web.test/h2/{i}?x={i}"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let resp = tokio::time::timeout(DEADLINE, send.send_request(req))
                .await
                .unwrap()
                .unwrap();
            (i, read_reply(resp).await)
        }));
    }
    for t in tasks {
        let (i, r) = t.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.version, Version::HTTP_2);
        assert_eq!(
            echo_request_line(&r.body),
            format!("GET /h2/{i}?x={i} HTTP/1.1"),
            "{}",
            r.body
        );
        assert_eq!(echoed(&r.body, "host"), ["web.test"], "{}", r.body);
        assert_eq!(
            echoed(&r.body, "x-forwarded-host"),
            ["web.test"],
            "{}",
            r.body
        );
        assert_eq!(echoed(&r.body, "x-forwarded-proto"), ["http"], "{}", r.body);
    }
    assert_eq!(h.running.open_connections(), 1);
}

#[tokio::test]
async fn backend_protocol_h2c_speaks_http2_upstream() {
    let backend = hyper_backend(
        Proto::Http2Only,
        handler(|req: Request<Incoming>| async move {
            let version = req.version();
            let path = req
                .uri()
                .path_and_query()
                .map(ToString::to_string)
                .unwrap_or_default();
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string();
            let n = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes().len())
                .unwrap_or(usize::MAX);
            text(
                StatusCode::OK,
                format!("version: {version:?}\npath: {path}\nhost: {host}\nbody: {n}\n"),
            )
        }),
    )
    .await;
    let h = Harness::start(&[
        (
            "web.yaml",
            ingress(
                "web",
                "grpc.test",
                &[("/", "Prefix", "web", 80)],
                &[("sluice.io/backend-protocol", "h2c")],
            ),
        ),
        ("svc.yaml", service("web", &[(backend.addr, true)])),
    ])
    .await;
    let r = get(&h, "grpc.test", "/svc/Method?q=1").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("version: HTTP/2.0\n"), "{}", r.body);
    assert!(r.body.contains("path: /svc/Method?q=1\n"), "{}", r.body);
    let req = Request::post("/upload")
        .header(header::HOST, "grpc.test")
        .body(Full::new(Bytes::from(vec![7u8; 100_000])))
        .unwrap();
    let r = h1_send(h.running.http_addr, req).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("version: HTTP/2.0\n") && r.body.contains("body: 100000\n"),
        "{}",
        r.body
    );
    // One multiplexed upstream connection serves both.
    assert_eq!(backend.accepted.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------------------
// 9. Load balancing
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn round_robin_splits_evenly() {
    let addrs = echo_same_port(&[[127, 0, 0, 1], [127, 0, 0, 2], [127, 0, 0, 3]], "web").await;
    let h = Harness::start(&[
        (
            "web.yaml",
            ingress("web", "web.test", &[("/", "Prefix", "web", 80)], &[]),
        ),
        (
            "svc.yaml",
            service("web", &addrs.iter().map(|a| (*a, true)).collect::<Vec<_>>()),
        ),
    ])
    .await;
    let mut seen = Vec::new();
    for _ in 0..30 {
        let r = get(&h, "web.test", "/").await;
        assert_eq!(r.status, 200, "{}", r.body);
        seen.push(echo_endpoint(&r.body).to_string());
    }
    for a in &addrs {
        let n = seen.iter().filter(|s| **s == a.to_string()).count();
        assert_eq!(n, 10, "{a} got {n} of 30: {seen:?}");
    }
    // In turn, not in bursts.
    for w in seen.windows(3) {
        assert!(w[0] != w[1] && w[1] != w[2] && w[0] != w[2], "{seen:?}");
    }
}

/// A backend that holds every request until its gate opens; counts arrivals.
struct Gated {
    addr: SocketAddr,
    arrivals: Arc<AtomicUsize>,
    gate: tokio::sync::watch::Sender<bool>,
}

fn gated(listener: TcpListener, name: &'static str) -> Gated {
    let (gate, open) = tokio::sync::watch::channel(false);
    let arrivals = Arc::new(AtomicUsize::new(0));
    let count = arrivals.clone();
    let backend = serve_hyper(
        listener,
        Proto::Http1,
        handler(move |_req| {
            let mut open = open.clone();
            count.fetch_add(1, Ordering::SeqCst);
            async move {
                let _ = open.wait_for(|o| *o).await;
                text(StatusCode::OK, name)
            }
        }),
    );
    Gated {
        addr: backend.addr,
        arrivals,
        gate,
    }
}

#[tokio::test]
async fn least_request_avoids_the_busy_endpoint() {
    let mut listeners = bind_same_port(&[[127, 0, 0, 1], [127, 0, 0, 2]])
        .await
        .into_iter();
    let slow = gated(listeners.next().unwrap(), "slow");
    let fast = gated(listeners.next().unwrap(), "fast");
    let h = Harness::start(&[
        (
            "web.yaml",
            ingress(
                "web",
                "web.test",
                &[("/", "Prefix", "web", 80)],
                &[("sluice.io/load-balancer", "least-request")],
            ),
        ),
        (
            "svc.yaml",
            service("web", &[(slow.addr, true), (fast.addr, true)]),
        ),
    ])
    .await;
    let addr = h.running.http_addr;
    let arrived = || slow.arrivals.load(Ordering::SeqCst) + fast.arrivals.load(Ordering::SeqCst);

    // Both hold their requests. Sent one at a time, six requests split 3/3: with two endpoints
    // the two random choices are always both, and the one with fewer outstanding wins.
    let mut parked = Vec::new();
    for i in 1..=6 {
        parked.push(tokio::spawn(h1_send(addr, get_req("web.test", "/"))));
        eventually("the request to reach a backend", || arrived() == i).await;
    }
    assert_eq!(
        (
            slow.arrivals.load(Ordering::SeqCst),
            fast.arrivals.load(Ordering::SeqCst)
        ),
        (3, 3)
    );

    // The fast endpoint answers from now on; the slow one still holds three requests.
    fast.gate.send_replace(true);
    eventually("the fast endpoint's requests to finish", || {
        parked.iter().filter(|t| t.is_finished()).count() == 3
    })
    .await;

    let (mut to_fast, mut to_slow) = (0, 0);
    for _ in 0..20 {
        let before = slow.arrivals.load(Ordering::SeqCst);
        let task = tokio::spawn(h1_send(addr, get_req("web.test", "/")));
        eventually("the request to finish or reach the slow endpoint", || {
            task.is_finished() || slow.arrivals.load(Ordering::SeqCst) > before
        })
        .await;
        if task.is_finished() {
            let r = task.await.unwrap();
            assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "fast"));
            to_fast += 1;
        } else {
            to_slow += 1;
            parked.push(task);
        }
    }
    assert!(
        to_fast >= 18,
        "least-request sent {to_slow} of 20 new requests to the busy endpoint"
    );

    slow.gate.send_replace(true);
    for t in parked {
        let r = tokio::time::timeout(DEADLINE, t).await.unwrap().unwrap();
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
}

/// The value of a Prometheus sample line `name{labels} value` on the admin endpoint.
async fn metric(h: &Harness, series: &str) -> Option<f64> {
    let req = Request::get("/metrics")
        .header(header::HOST, "admin")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let r = h1_send(h.running.admin_addr, req).await;
    r.body.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[tokio::test]
async fn a_refusing_endpoint_is_retried_once_then_skipped() {
    let good = echo([127, 0, 0, 1], "flaky").await;
    // Nothing listens on 127.0.0.2 at that port.
    let refusing = SocketAddr::from(([127, 0, 0, 2], good.port()));
    let h = Harness::start(&[
        (
            "web.yaml",
            ingress("flaky", "web.test", &[("/", "Prefix", "flaky", 80)], &[]),
        ),
        (
            "svc.yaml",
            service("flaky", &[(good, true), (refusing, true)]),
        ),
    ])
    .await;
    for i in 0..20 {
        let r = get(&h, "web.test", &format!("/{i}")).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
        assert_eq!(echo_endpoint(&r.body), good.to_string());
    }
    let errors = metric(
        &h,
        "sluice_upstream_connect_errors_total{service=\"default/flaky\"}",
    )
    .await;
    assert_eq!(
        errors,
        Some(1.0),
        "the refusing endpoint should be tried once, then skipped"
    );
}

// ---------------------------------------------------------------------------------------------
// 10. Keep-alive
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn keep_alive_serves_many_requests_on_one_connection() {
    let backend = hyper_backend(
        Proto::Http1,
        handler(|req: Request<Incoming>| async move {
            text(StatusCode::OK, req.uri().path().to_string())
        }),
    )
    .await;
    let h = Harness::start(&[
        (
            "web.yaml",
            ingress("web", "web.test", &[("/", "Prefix", "web", 80)], &[]),
        ),
        ("svc.yaml", service("web", &[(backend.addr, true)])),
    ])
    .await;
    let mut send = h1_connect::<Empty<Bytes>>(h.running.http_addr).await;
    for i in 0..10 {
        tokio::time::timeout(DEADLINE, send.ready())
            .await
            .unwrap()
            .expect("the connection stays open");
        let resp = send
            .send_request(get_req("web.test", &format!("/req/{i}")))
            .await
            .expect("response on the same connection");
        let r = read_reply(resp).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (StatusCode::OK, format!("/req/{i}").as_str())
        );
        assert_eq!(h.running.open_connections(), 1, "one client connection");
    }
    // Upstream connections are pooled too.
    let upstream = backend.accepted.load(Ordering::SeqCst);
    assert!(
        upstream < 10,
        "{upstream} upstream connections for 10 sequential requests"
    );
}
