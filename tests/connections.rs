//! Connection phases over real sockets: silent plain and TLS connections, stalled handshakes,
//! an HTTP/2 preface alone, idle HTTP/1.1 and HTTP/2 connections, partial heads, and the
//! global connection limit under a flood of silent sockets.
//!
//! Each test sets one timeout short and the others long (30 s, beyond the test deadline), so
//! a connection closed before [`DEADLINE`] was closed by the short one; that it was not closed
//! before the short one elapsed is checked too (a lower bound, never flaky).

mod support;
use support::*;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use sluice::proxy::ProxyConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SHORT: Duration = Duration::from_millis(500);
const LONG: Duration = Duration::from_secs(30);

/// `web.test` routed to an echo backend, with `config`.
async fn start(config: ProxyConfig) -> Harness {
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

fn config(header: Duration, idle: Duration) -> ProxyConfig {
    ProxyConfig {
        client_header_timeout: header,
        idle_timeout: idle,
        tls_handshake_timeout: LONG,
        ..ProxyConfig::default()
    }
}

/// Reads (and discards) until the peer closes or resets the connection; fails after
/// [`DEADLINE`]. Returns everything read.
async fn until_closed<S: AsyncRead + Unpin>(io: &mut S) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(DEADLINE, io.read(&mut buf)).await {
            Err(_) => panic!("the connection is still open after {DEADLINE:?}"),
            Ok(Ok(0) | Err(_)) => return all,
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
        }
    }
}

fn assert_not_before(start: Instant, timeout: Duration) {
    let elapsed = start.elapsed();
    assert!(
        elapsed >= timeout,
        "closed after {elapsed:?}, before the {timeout:?} timeout"
    );
}

// ---------------------------------------------------------------------------------------------
// TLS client that accepts any certificate
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

async fn tls_connect(addr: SocketAddr, alpn: &[u8]) -> tokio_rustls::client::TlsStream<TcpStream> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(addr).await.expect("connect");
    tokio::time::timeout(
        DEADLINE,
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("web.test").expect("name"), tcp),
    )
    .await
    .expect("handshake before the deadline")
    .expect("handshake")
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/2 frames
// ---------------------------------------------------------------------------------------------

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const HEADERS: u8 = 0x1;
const DATA: u8 = 0x0;
const END_STREAM: u8 = 0x1;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Reads one frame: (type, flags, stream, payload); `None` at the end of the connection.
async fn read_frame(io: &mut TcpStream) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    io.read_exact(&mut head).await.ok()?;
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let mut payload = vec![0u8; len];
    io.read_exact(&mut payload).await.ok()?;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    Some((head[3], head[4], stream, payload))
}

/// `GET http://web.test/` as an HPACK block: `:method GET`, `:scheme http`, `:path /`
/// (static table), `:authority web.test` (literal, indexed name).
fn get_headers_block() -> Vec<u8> {
    let mut b = vec![0x82, 0x86, 0x84, 0x41, 8];
    b.extend_from_slice(b"web.test");
    b
}

// ---------------------------------------------------------------------------------------------
// 1. Silent and slow connections
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_silent_plain_connection_is_closed_at_the_client_header_timeout() {
    let h = start(config(SHORT, LONG)).await;
    let start = Instant::now();
    let mut s = TcpStream::connect(h.running.http_addr).await.unwrap();
    let got = until_closed(&mut s).await;
    assert_not_before(start, SHORT);
    assert!(got.is_empty(), "nothing is answered: {got:?}");
}

#[tokio::test]
async fn a_silent_connection_to_the_tls_port_is_closed_at_the_client_header_timeout() {
    // The handshake timeout is long: the client header timeout covers the handshake.
    let h = start(config(SHORT, LONG)).await;
    let start = Instant::now();
    let mut s = TcpStream::connect(h.running.https_addr).await.unwrap();
    // Half a ClientHello record header, then nothing.
    s.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    until_closed(&mut s).await;
    assert_not_before(start, SHORT);
}

#[tokio::test]
async fn a_connection_silent_after_its_tls_handshake_is_closed_at_the_client_header_timeout() {
    // 2 s rather than SHORT: the handshake must complete within it, on a machine that may be
    // busy.
    let header = Duration::from_secs(2);
    let h = start(config(header, LONG)).await;
    let start = Instant::now();
    let mut tls = tls_connect(h.running.https_addr, b"http/1.1").await;
    until_closed(&mut tls).await;
    assert_not_before(start, header);
    // HTTP/2 by ALPN, equally silent.
    let start = Instant::now();
    let mut tls = tls_connect(h.running.https_addr, b"h2").await;
    until_closed(&mut tls).await;
    assert_not_before(start, header);
}

#[tokio::test]
async fn an_http2_preface_alone_is_closed_at_the_client_header_timeout() {
    let h = start(config(SHORT, LONG)).await;
    let start = Instant::now();
    let mut s = TcpStream::connect(h.running.http_addr).await.unwrap();
    s.write_all(PREFACE).await.unwrap();
    s.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    until_closed(&mut s).await;
    assert_not_before(start, SHORT);
}

#[tokio::test]
async fn a_partial_head_on_a_keep_alive_connection_is_closed_at_the_client_header_timeout() {
    // 2 s rather than SHORT: the first request must complete within this timeout too (from
    // the accept), on a machine that may be busy.
    let header = Duration::from_secs(2);
    let h = start(config(header, LONG)).await;
    let mut s = TcpStream::connect(h.running.http_addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: web.test\r\n\r\n")
        .await
        .unwrap();
    // The server's timer for the next head may start as soon as the response is written,
    // before this client has read it: take the start before reading, so that the bound
    // holds whichever it is.
    let start = Instant::now();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    // The next head starts and stalls (the rest of the response, if any, is read below).
    s.write_all(b"GET / HTTP/1.1\r\nHost: web").await.unwrap();
    until_closed(&mut s).await;
    assert_not_before(start, header);
}

#[tokio::test]
async fn an_idle_http1_connection_is_closed_at_the_idle_timeout() {
    // The header timeout is long: only the idle timeout can close it before the deadline.
    let h = start(config(LONG, SHORT)).await;
    let mut send = http1_connect(h.running.http_addr).await;
    // Before the request: the idle time counts from the end of the response, later.
    let start = Instant::now();
    let (status, _, _) = get_on(&mut send, "web.test", "/").await.unwrap();
    assert_eq!(status, 200);
    tokio::time::timeout(DEADLINE, futures_closed(&mut send))
        .await
        .expect("closed before the deadline");
    assert_not_before(start, SHORT);
}

/// Waits until a client connection's driver has seen the server close it.
async fn futures_closed(
    send: &mut hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
) {
    while !send.is_closed() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_idle_http2_connection_gets_goaway_at_the_idle_timeout_even_while_it_pings() {
    let h = start(config(LONG, SHORT)).await;
    let mut s = TcpStream::connect(h.running.http_addr).await.unwrap();
    // Before the request: the idle time counts from the end of the response, later.
    let start = Instant::now();
    s.write_all(PREFACE).await.unwrap();
    s.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    s.write_all(&frame(HEADERS, END_STREAM | 0x4, 1, &get_headers_block()))
        .await
        .unwrap();
    // The response: HEADERS then DATA on stream 1, the last with END_STREAM.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (kind, flags, stream, _) = tokio::time::timeout_at(deadline, read_frame(&mut s))
            .await
            .expect("a response before the deadline")
            .expect("the connection stays open");
        if kind == SETTINGS && flags & 1 == 0 {
            s.write_all(&frame(SETTINGS, 1, 0, &[])).await.unwrap();
        }
        assert_ne!(kind, GOAWAY, "GOAWAY before the response");
        if stream == 1 && (kind == DATA || kind == HEADERS) && flags & END_STREAM != 0 {
            break;
        }
    }
    // Keep pinging: activity without streams does not keep the connection open.
    let (mut rd, mut wr) = s.into_split();
    let pinger = tokio::spawn(async move {
        loop {
            if wr.write_all(&frame(PING, 0, 0, &[7; 8])).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut saw_goaway = false;
    let mut head = [0u8; 9];
    loop {
        match tokio::time::timeout_at(deadline, rd.read_exact(&mut head)).await {
            Err(_) => panic!("no GOAWAY and no close before the deadline"),
            Ok(Err(_)) => break,
            Ok(Ok(_)) => {
                let len =
                    usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
                let mut payload = vec![0u8; len];
                if rd.read_exact(&mut payload).await.is_err() {
                    break;
                }
                if head[3] == GOAWAY {
                    saw_goaway = true;
                    assert_not_before(start, SHORT);
                }
            }
        }
    }
    pinger.abort();
    assert!(saw_goaway, "the server closed without GOAWAY");
    assert_not_before(start, SHORT);
}

// ---------------------------------------------------------------------------------------------
// 2. The connection limit
// ---------------------------------------------------------------------------------------------

/// A `Connection: close` GET on a fresh connection: the status, or an error.
async fn get_closing(addr: SocketAddr) -> anyhow::Result<u16> {
    let (status, _) = request(addr, "GET", "web.test", "/").await?;
    Ok(status)
}

#[tokio::test]
async fn twice_the_connection_limit_of_silent_sockets_does_not_stop_real_traffic() {
    const LIMIT: usize = 8;
    let h = start(ProxyConfig {
        max_connections: LIMIT,
        ..config(LONG, LONG)
    })
    .await;
    let addr = h.running.http_addr;
    let mut silent = Vec::new();
    for _ in 0..2 * LIMIT {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    eventually("the limit to be reached", || {
        h.running.open_connections() >= LIMIT
    })
    .await;
    for i in 0..20 {
        let status = tokio::time::timeout(DEADLINE, get_closing(addr))
            .await
            .unwrap_or_else(|_| panic!("request {i}: no answer before the deadline"))
            .unwrap_or_else(|e| panic!("request {i}: {e:#}"));
        assert_eq!(status, 200, "request {i}");
        assert!(
            h.running.open_connections() <= LIMIT,
            "{} connections open over a limit of {LIMIT}",
            h.running.open_connections()
        );
    }
    // At most LIMIT connections can be open: the others were closed to make room.
    let mut closed = 0;
    for s in &mut silent {
        let mut b = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(200), s.read(&mut b)).await
        {
            closed += 1;
        }
    }
    assert!(
        closed >= LIMIT,
        "only {closed} of {} silent sockets were closed",
        2 * LIMIT
    );
    let metrics = fetch(h.running.admin_addr, "admin", "/metrics").await.2;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(
        value("sluice_connection_limit_reached_total") >= 1.0,
        "{metrics}"
    );
    assert!(
        value("sluice_connections_evicted_total") >= LIMIT as f64,
        "{metrics}"
    );
}

#[tokio::test]
async fn at_the_limit_a_busy_connection_is_not_closed_and_accepting_waits() {
    const LIMIT: usize = 2;
    let backend = held_backend().await;
    let h = Harness::start_with(
        &[
            (
                "web.yaml",
                ingress("web", "web.test", &[("/", "Prefix", "held", 80)], &[]),
            ),
            ("svc.yaml", service("held", &[(backend.addr, true)])),
        ],
        ProxyConfig {
            max_connections: LIMIT,
            ..config(LONG, LONG)
        },
    )
    .await;
    let addr = h.running.http_addr;
    // Two requests in progress fill the limit.
    let busy: Vec<_> = (0..LIMIT)
        .map(|_| tokio::spawn(async move { fetch(addr, "web.test", "/").await }))
        .collect();
    eventually("both requests to reach the backend", || {
        backend.started() == LIMIT
    })
    .await;
    // A third connection waits in the backlog: nothing idle can be closed for it.
    let third = tokio::spawn(async move { fetch(addr, "web.test", "/").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        backend.started(),
        LIMIT,
        "the third request was accepted over the limit"
    );
    backend.release();
    for b in busy {
        assert_eq!(b.await.unwrap().0, 200, "a busy connection was closed");
    }
    let r = tokio::time::timeout(DEADLINE, third)
        .await
        .expect("third answered")
        .unwrap();
    assert_eq!(r.0, 200);
}

// ---------------------------------------------------------------------------------------------
// 3. Another service (the admin API) with the same timeouts
// ---------------------------------------------------------------------------------------------

/// A small service answering `ok` on every path, served with `serve_with_timeouts`.
async fn timed_service(header: Duration, idle: Duration) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_keep, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _keep = _keep;
        while let Ok((stream, _)) = listener.accept().await {
            let svc =
                hyper::service::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                    ))
                });
            tokio::spawn(sluice::proxy::serve_with_timeouts(
                stream,
                svc,
                header,
                idle,
                shutdown.clone(),
            ));
        }
    });
    addr
}

#[tokio::test]
async fn another_service_gets_the_same_connection_timeouts() {
    // Silent: closed at the header timeout.
    let addr = timed_service(SHORT, LONG).await;
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    until_closed(&mut s).await;
    assert_not_before(start, SHORT);

    // Idle after a request: closed at the idle timeout.
    let addr = timed_service(LONG, SHORT).await;
    let mut send = http1_connect(addr).await;
    let start = Instant::now();
    let (status, _, body) = get_on(&mut send, "admin", "/healthz").await.unwrap();
    assert_eq!((status.as_u16(), body.as_str()), (200, "ok"));
    tokio::time::timeout(DEADLINE, futures_closed(&mut send))
        .await
        .expect("closed before the deadline");
    assert_not_before(start, SHORT);
}
