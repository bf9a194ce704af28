//! Error statuses: 503, 502, 504, 400, 431, 413.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::Full;
use sluice::proxy::ProxyConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::backends::*;
use crate::clients::*;
use crate::support::*;

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
