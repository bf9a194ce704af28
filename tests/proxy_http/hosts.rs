//! Host consistency: what the request was routed by is what the upstream receives as `Host`,
//! and a request with no single valid host is 400 before routing.

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::Empty;

use crate::backends::*;
use crate::clients::*;
use crate::support::*;

/// `app.test` and `other.test` to two echo backends, and a raw recording backend behind
/// `raw.test`.
async fn two_hosts() -> (Harness, RawBackend) {
    let app = echo([127, 0, 0, 1], "app").await;
    let other = echo([127, 0, 0, 1], "other").await;
    let raw = RawBackend::start(true).await;
    let h = Harness::start(&[
        (
            "app.yaml",
            ingress("app", "app.test", &[("/", "Prefix", "app", 80)], &[]),
        ),
        (
            "other.yaml",
            ingress("other", "other.test", &[("/", "Prefix", "other", 80)], &[]),
        ),
        (
            "raw.yaml",
            ingress("raw", "raw.test", &[("/", "Prefix", "raw", 80)], &[]),
        ),
        ("svc-app.yaml", service("app", &[(app, true)])),
        ("svc-other.yaml", service("other", &[(other, true)])),
        ("svc-raw.yaml", service("raw", &[(raw.addr, true)])),
    ])
    .await;
    (h, raw)
}

#[tokio::test]
async fn an_absolute_form_target_is_routed_by_its_authority_and_forwarded_with_it_as_host() {
    let (h, _raw) = two_hosts().await;
    let (status, raw) = raw_get(h.running.http_addr, "app.test", "http://other.test/x?q=1").await;
    assert_eq!(status, 200, "{raw}");
    let body = raw_body(&raw);
    assert_eq!(echo_service(body), "other", "{body}");
    assert_eq!(echoed(body, "host"), ["other.test"], "{body}");
    assert_eq!(echo_request_line(body), "GET /x?q=1 HTTP/1.1", "{body}");
}

#[tokio::test]
async fn more_than_one_host_header_is_400_and_not_forwarded() {
    let (h, raw) = two_hosts().await;
    for request in [
        &b"GET / HTTP/1.1\r\nHost: raw.test\r\nHost: app.test\r\nConnection: close\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: raw.test\r\nHost: raw.test\r\nConnection: close\r\n\r\n",
        b"GET http://raw.test/ HTTP/1.1\r\nHost: raw.test\r\nHost: other.test\r\nConnection: close\r\n\r\n",
    ] {
        let answer = raw_roundtrip(h.running.http_addr, request).await;
        assert_eq!(
            raw_statuses(&answer),
            [400],
            "{:?}: {answer}",
            String::from_utf8_lossy(request)
        );
        assert!(raw_body(&answer).contains("more than one Host"), "{answer}");
    }
    raw.with(|l| assert!(l.conns.is_empty(), "forwarded: {}", l.text()));
}

#[tokio::test]
async fn hosts_that_are_not_dns_names_are_400_before_routing() {
    let (h, raw) = two_hosts().await;
    for host in [
        "evil?.raw.test",
        "raw.test/x",
        "user@raw.test",
        "raw_test",
        "raw.test:99999",
        "raw..test",
        "[::1",
    ] {
        let (status, answer) = raw_get(h.running.http_addr, host, "/").await;
        assert_eq!(status, 400, "{host:?}: {answer}");
        assert!(
            raw_body(&answer).contains("not a valid host name"),
            "{host:?}: {answer}"
        );
    }
    // Valid shapes still route (case, port, trailing dot).
    for host in ["RAW.test", "raw.test:8080", "raw.test."] {
        let (status, answer) = raw_get(h.running.http_addr, host, "/").await;
        assert_eq!(status, 200, "{host:?}: {answer}");
    }
    raw.with(|l| {
        assert_eq!(l.requests.len(), 3, "{}", l.text());
        assert!(find(&l.bytes(), b"evil").is_none(), "{}", l.text());
    });
}

/// One HTTP/2 (prior knowledge) request on a fresh connection.
async fn h2_send(addr: std::net::SocketAddr, req: Request<Empty<Bytes>>) -> Reply {
    let mut send = h2c_connect(addr).await;
    let resp = tokio::time::timeout(DEADLINE, send.send_request(req))
        .await
        .expect("answer before the deadline")
        .expect("response");
    read_reply(resp).await
}

#[tokio::test]
async fn an_http2_host_header_differing_from_the_authority_is_400() {
    let (h, raw) = two_hosts().await;
    let req = Request::get("http://raw.test/")
        .header(header::HOST, "other.test")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let r = h2_send(h.running.http_addr, req).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains(":authority and Host differ"), "{}", r.body);
    raw.with(|l| assert!(l.conns.is_empty(), "forwarded: {}", l.text()));

    // The same host in both (any case) is fine, and the upstream gets it as Host.
    let req = Request::get("http://app.test/")
        .header(header::HOST, "APP.test")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let r = h2_send(h.running.http_addr, req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(echoed(&r.body, "host"), ["app.test"], "{}", r.body);
}
