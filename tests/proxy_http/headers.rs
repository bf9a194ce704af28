//! Header rewriting: forwarded headers, hop-by-hop stripping, request ids.

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::Empty;
use sluice::proxy::ProxyConfig;

use crate::backends::*;
use crate::clients::*;
use crate::support::*;

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

    // `Connection` cannot take away the Host the request was routed by.
    let req = Request::get("/h")
        .header(header::HOST, "web.test")
        .header(header::CONNECTION, "Host, X-Secret")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let r = h1_send(h.running.http_addr, req).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(echoed(&r.body, "host"), ["web.test"], "{}", r.body);
}

#[tokio::test]
async fn response_hop_by_hop_headers_are_stripped() {
    // `Connection` naming a field (the general stripping), and naming none (the lean
    // client leaves the hop-by-hop fields out as it reads the head).
    for named in [Some("x-internal"), None] {
        let backend = hyper_backend(
            Proto::Http1,
            handler(move |_req| async move {
                let mut resp = text(StatusCode::OK, "hi");
                let h = resp.headers_mut();
                let connection = named.unwrap_or("keep-alive");
                h.insert(header::CONNECTION, connection.parse().unwrap());
                h.insert("x-internal", "secret".parse().unwrap());
                h.insert("keep-alive", "timeout=5".parse().unwrap());
                h.insert("proxy-connection", "keep-alive".parse().unwrap());
                h.insert(header::TRAILER, "x-checksum".parse().unwrap());
                h.insert("x-public", "yes".parse().unwrap());
                resp
            }),
        )
        .await;
        let h = harness_for(backend.addr).await;
        let r = get(&h, "web.test", "/").await;
        assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "hi"));
        for gone in ["keep-alive", "proxy-connection", "trailer"] {
            assert!(
                r.header(gone).is_none(),
                "{gone} reached the client ({named:?}): {:?}",
                r.headers
            );
        }
        assert_eq!(
            r.header("x-internal"),
            if named.is_some() {
                None
            } else {
                Some("secret")
            },
            "{named:?}"
        );
        assert_eq!(r.header("x-public"), Some("yes"));
        assert!(r.header("x-request-id").is_some());
    }
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

/// The untrusted claims every request below carries.
const CLAIMS: [(&str, &str); 8] = [
    ("forwarded", "for=6.6.6.6;proto=https"),
    ("x-forwarded-prefix", "/admin"),
    ("x-forwarded-server", "evil"),
    ("x-original-url", "/admin"),
    ("x-rewrite-url", "/admin"),
    ("true-client-ip", "6.6.6.6"),
    ("x-client-ip", "6.6.6.6"),
    ("x-cluster-client-ip", "6.6.6.6"),
];

fn claiming_request() -> Request<Empty<Bytes>> {
    let mut req = Request::get("/h").header(header::HOST, "web.test");
    for (k, v) in CLAIMS {
        req = req.header(k, v);
    }
    req.body(Empty::new()).unwrap()
}

#[tokio::test]
async fn untrusted_client_claims_are_dropped_and_trusted_ones_kept() {
    let h = web_harness(ProxyConfig::default()).await;
    let r = h1_send(h.running.http_addr, claiming_request()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    for (name, _) in CLAIMS {
        assert!(
            echoed(&r.body, name).is_empty(),
            "{name} reached the upstream: {}",
            r.body
        );
    }
    assert_eq!(
        echoed(&r.body, "x-forwarded-for"),
        ["127.0.0.1"],
        "{}",
        r.body
    );

    let trusted = web_harness(ProxyConfig {
        trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()],
        ..ProxyConfig::default()
    })
    .await;
    let r = h1_send(trusted.running.http_addr, claiming_request()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    for (name, value) in CLAIMS {
        assert_eq!(echoed(&r.body, name), [value], "{name}: {}", r.body);
    }
}

#[tokio::test]
async fn an_upgrade_to_h2c_is_not_forwarded() {
    let raw = RawBackend::start(true).await;
    let h = harness_for(raw.addr).await;
    let answer = raw_roundtrip(
        h.running.http_addr,
        b"GET /up HTTP/1.1\r\nHost: web.test\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    )
    .await;
    assert_eq!(raw_statuses(&answer), [200], "{answer}");
    raw.with(|l| {
        assert_eq!(l.requests.len(), 1, "{}", l.text());
        let head = l.requests[0].0.to_ascii_lowercase();
        for gone in ["upgrade", "http2-settings", "h2c"] {
            assert!(!head.contains(gone), "{gone} forwarded: {head}");
        }
    });
}

#[tokio::test]
async fn http2_cookie_fields_reach_an_http1_upstream_as_one_line() {
    let h = web_harness(ProxyConfig::default()).await;
    let stream = tokio::net::TcpStream::connect(h.running.http_addr)
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    let req = Request::get("http://web.test/c")
        .header(header::COOKIE, "a=1")
        .header(header::COOKIE, "b=2")
        .header(header::COOKIE, "c=3")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(DEADLINE, send.send_request(req))
        .await
        .unwrap()
        .unwrap();
    let r = read_reply(resp).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(echoed(&r.body, "cookie"), ["a=1; b=2; c=3"], "{}", r.body);
}
