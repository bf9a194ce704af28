//! The PROXY protocol (`ProxyConfig::proxy_protocol`, flag `--proxy-protocol`) over real
//! sockets: v1 and v2 headers before HTTP/1.1 and before a TLS handshake, the carried client in
//! `X-Forwarded-For` / `X-Real-IP` and in source-range decisions, malformed and missing headers
//! closing the connection, and a header from a peer outside the configured networks not being
//! honoured.

mod support;
use support::*;

use std::net::{Ipv6Addr, SocketAddr};
use std::time::Duration;

use sluice::proxy::ProxyConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// `web.test` routed to an echo backend; `office.test` to the same backend but only for
/// clients in 10.0.0.0/8. PROXY headers are expected from the peers in `from`.
async fn start(from: &str) -> Harness {
    start_with_timeout(from, Duration::from_secs(30)).await
}

async fn start_with_timeout(from: &str, header_timeout: Duration) -> Harness {
    let web = echo([127, 0, 0, 1], "web").await;
    Harness::start_with(
        &[
            (
                "web.yaml",
                ingress("web", "web.test", &[("/", "Prefix", "web", 80)], &[]),
            ),
            (
                "office.yaml",
                ingress(
                    "office",
                    "office.test",
                    &[("/", "Prefix", "web", 80)],
                    &[(
                        "nginx.ingress.kubernetes.io/whitelist-source-range",
                        "10.0.0.0/8",
                    )],
                ),
            ),
            ("svc.yaml", service("web", &[(web, true)])),
        ],
        ProxyConfig {
            proxy_protocol: vec![from.parse().unwrap()],
            client_header_timeout: header_timeout,
            ..ProxyConfig::default()
        },
    )
    .await
}

fn v1(src: &str, sport: u16) -> Vec<u8> {
    let proto = if src.contains(':') { "TCP6" } else { "TCP4" };
    let dst = if src.contains(':') {
        "::1"
    } else {
        "127.0.0.1"
    };
    format!("PROXY {proto} {src} {dst} {sport} 80\r\n").into_bytes()
}

/// A v2 PROXY header carrying `src` (IPv4 or IPv6) with an AWS-style TLV after the addresses.
fn v2(src: SocketAddr) -> Vec<u8> {
    let mut addrs = Vec::new();
    let fam = match src {
        SocketAddr::V4(a) => {
            addrs.extend_from_slice(&a.ip().octets());
            addrs.extend_from_slice(&[127, 0, 0, 1]);
            0x11
        }
        SocketAddr::V6(a) => {
            addrs.extend_from_slice(&a.ip().octets());
            addrs.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
            0x21
        }
    };
    addrs.extend_from_slice(&src.port().to_be_bytes());
    addrs.extend_from_slice(&443u16.to_be_bytes());
    addrs.extend_from_slice(&[0xea, 0x00, 0x04, 0x01, b'v', b'p', b'c']);
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21);
    h.push(fam);
    h.extend_from_slice(&u16::try_from(addrs.len()).unwrap().to_be_bytes());
    h.extend_from_slice(&addrs);
    h
}

/// `GET / HTTP/1.1` for `host`, closing after the response.
fn get(host: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
}

/// Reads until the peer closes the connection (or resets it); fails after [`DEADLINE`].
async fn until_closed<S: AsyncRead + Unpin>(io: &mut S) -> String {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(DEADLINE, io.read(&mut buf)).await {
            Err(_) => panic!("the connection is still open after {DEADLINE:?}"),
            Ok(Ok(0) | Err(_)) => return String::from_utf8_lossy(&all).into_owned(),
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
        }
    }
}

/// Writes `bytes` on a new connection to `addr` and reads the whole answer.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    // The server may close before reading everything (a refused header): a write error is
    // then part of the answer, not a failure.
    let _ = s.write_all(bytes).await;
    until_closed(&mut s).await
}

/// The values of `name` in an echo backend's body (lines `name: value`).
fn echoed<'a>(response: &'a str, name: &str) -> Vec<&'a str> {
    let prefix = format!("{name}: ");
    response
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .collect()
}

fn status(response: &str) -> &str {
    response.get(9..12).unwrap_or(response)
}

async fn send_all<S: AsyncWrite + Unpin>(io: &mut S, parts: &[&[u8]]) {
    for p in parts {
        io.write_all(p).await.expect("write");
    }
}

/// The sum of the samples of `metric` carrying every label of `labels` (`name="value"`) on
/// the admin listener. (The metrics recorder is the process's: other tests of this binary
/// count there too, so only increases are meaningful.)
async fn metric(h: &Harness, metric: &str, labels: &[&str]) -> f64 {
    let text = fetch(h.running.admin_addr, "admin", "/metrics").await.2;
    text.lines()
        .filter(|l| l.starts_with(metric) && labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn v1_and_v2_headers_carry_the_client_into_forwarded_headers() {
    let h = start("127.0.0.0/8").await;
    let addr = h.running.http_addr;
    for (header, client) in [
        (v1("203.0.113.9", 40000), "203.0.113.9"),
        (v1("2001:db8::9", 40000), "2001:db8::9"),
        (v2("203.0.113.10:40001".parse().unwrap()), "203.0.113.10"),
        (v2("[2001:db8::10]:40001".parse().unwrap()), "2001:db8::10"),
    ] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        // The header and the request in one write: the request's bytes must not be lost to
        // the header's reader.
        let mut bytes = header.clone();
        bytes.extend_from_slice(&get("web.test"));
        send_all(&mut s, &[&bytes]).await;
        let r = until_closed(&mut s).await;
        assert_eq!(status(&r), "200", "{r}");
        assert_eq!(echoed(&r, "x-forwarded-for"), [client], "{r}");
        assert_eq!(echoed(&r, "x-real-ip"), [client], "{r}");
    }
    // LOCAL (v2) and UNKNOWN (v1) keep the TCP peer.
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00".to_vec();
    for header in [local, b"PROXY UNKNOWN\r\n".to_vec()] {
        let mut bytes = header;
        bytes.extend_from_slice(&get("web.test"));
        let r = exchange(addr, &bytes).await;
        assert_eq!(status(&r), "200", "{r}");
        assert_eq!(echoed(&r, "x-forwarded-for"), ["127.0.0.1"], "{r}");
    }
}

#[tokio::test]
async fn a_header_sent_in_pieces_then_keep_alive_requests_use_the_carried_client() {
    let h = start("127.0.0.1").await;
    let mut s = TcpStream::connect(h.running.http_addr).await.unwrap();
    let header = v1("198.51.100.20", 1234);
    // In two writes (likely two reads): the reader waits for the rest of a partial header.
    let (a, b) = header.split_at(9);
    send_all(&mut s, &[a]).await;
    s.flush().await.unwrap();
    tokio::task::yield_now().await;
    send_all(&mut s, &[b]).await;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    for _ in 0..2 {
        let (status, _, body) = get_on(&mut send, "web.test", "/").await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            echoed(&body, "x-forwarded-for"),
            ["198.51.100.20"],
            "{body}"
        );
    }
}

#[tokio::test]
async fn source_ranges_are_decided_on_the_carried_client() {
    let h = start("127.0.0.0/8").await;
    let addr = h.running.http_addr;
    let mut inside = v1("10.1.2.3", 5000);
    inside.extend_from_slice(&get("office.test"));
    let r = exchange(addr, &inside).await;
    assert_eq!(status(&r), "200", "10.1.2.3 is in 10.0.0.0/8: {r}");
    assert_eq!(echoed(&r, "x-forwarded-for"), ["10.1.2.3"], "{r}");
    let mut outside = v2("192.0.2.1:5000".parse().unwrap());
    outside.extend_from_slice(&get("office.test"));
    let r = exchange(addr, &outside).await;
    assert_eq!(status(&r), "403", "192.0.2.1 is not in 10.0.0.0/8: {r}");
}

#[tokio::test]
async fn a_malformed_or_missing_header_closes_the_connection() {
    let h = start_with_timeout("127.0.0.0/8", Duration::from_millis(500)).await;
    let addr = h.running.http_addr;
    for (bytes, why) in [
        (
            b"PROXY TCP4 203.0.113.9 nonsense 1 2\r\n".to_vec(),
            "malformed",
        ),
        (
            b"PROXY TCP4 203.0.113.9 127.0.0.1 1 2\n".to_vec(),
            "malformed",
        ),
        (
            b"\r\n\r\n\0\r\nQUIT\n\x31\x11\x00\x0c".to_vec(),
            "unsupported",
        ),
        (get("web.test"), "missing"),
    ] {
        let mut bytes = bytes;
        bytes.extend_from_slice(&get("web.test"));
        let r = exchange(addr, &bytes).await;
        assert_eq!(r, "", "closed without an answer ({why})");
        assert!(
            metric(
                &h,
                "sluice_proxy_protocol_errors_total",
                &["entrypoint=\"http\"", &format!("reason=\"{why}\"")]
            )
            .await
                >= 1.0,
            "{why} is counted"
        );
    }
    // A silent connection is closed at the deadline (the client header timeout here).
    let started = std::time::Instant::now();
    let r = exchange(addr, b"").await;
    assert_eq!(r, "");
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(
        metric(
            &h,
            "sluice_proxy_protocol_errors_total",
            &["reason=\"timeout\""]
        )
        .await
            >= 1.0,
        "the timeout is counted"
    );
    // A header cut short by the client's close.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"PROXY TCP4 203.0.113.9 127.0.0.1 1")
        .await
        .unwrap();
    s.shutdown().await.unwrap();
    assert_eq!(until_closed(&mut s).await, "");
    assert!(
        metric(
            &h,
            "sluice_proxy_protocol_errors_total",
            &["reason=\"closed\""]
        )
        .await
            >= 1.0,
        "the early close is counted"
    );
    // Over TLS too: a ClientHello where the header should be is refused.
    let tls = support::tls_client::connect(
        h.running.https_addr,
        "web.test",
        support::tls_client::insecure_client(&[b"http/1.1"]),
    )
    .await;
    assert!(tls.is_err(), "no TLS without the header");
    assert!(
        metric(
            &h,
            "sluice_proxy_protocol_errors_total",
            &["entrypoint=\"https\"", "reason=\"missing\""]
        )
        .await
            >= 1.0
    );
}

#[tokio::test]
async fn a_header_from_a_peer_outside_the_networks_is_not_honoured() {
    let h = start("10.0.0.0/8").await;
    let addr = h.running.http_addr;
    // Without a header the connection is plain HTTP from 127.0.0.1.
    let (status_code, _, body) = fetch(addr, "web.test", "/").await;
    assert_eq!(status_code, 200);
    assert_eq!(echoed(&body, "x-forwarded-for"), ["127.0.0.1"], "{body}");
    // A PROXY line from it is bad HTTP, not a client address.
    let mut bytes = v1("203.0.113.9", 40000);
    bytes.extend_from_slice(&get("web.test"));
    let r = exchange(addr, &bytes).await;
    assert_eq!(status(&r), "400", "{r}");
    assert!(!r.contains("203.0.113.9"), "{r}");
}

#[tokio::test]
async fn a_header_before_the_tls_handshake_carries_the_client() {
    let h = start("127.0.0.0/8").await;
    for header in [
        v2("203.0.113.30:4444".parse().unwrap()),
        v1("203.0.113.31", 4444),
    ] {
        let mut tcp = TcpStream::connect(h.running.https_addr).await.unwrap();
        tcp.write_all(&header).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("web.test").unwrap();
        let mut tls = tokio::time::timeout(
            DEADLINE,
            tokio_rustls::TlsConnector::from(support::tls_client::insecure_client(&[b"http/1.1"]))
                .connect(name, tcp),
        )
        .await
        .expect("handshake in time")
        .expect("handshake after the PROXY header");
        tls.write_all(&get("web.test")).await.unwrap();
        let r = until_closed(&mut tls).await;
        assert_eq!(status(&r), "200", "{r}");
        let client = if header.starts_with(b"PROXY") {
            "203.0.113.31"
        } else {
            "203.0.113.30"
        };
        assert_eq!(echoed(&r, "x-forwarded-for"), [client], "{r}");
        assert_eq!(echoed(&r, "x-forwarded-proto"), ["https"], "{r}");
        // The port the client connected to is the header's destination port.
        let port = if header.starts_with(b"PROXY") {
            "80"
        } else {
            "443"
        };
        assert_eq!(echoed(&r, "x-forwarded-port"), [port], "{r}");
    }
}
