//! Request framing and smuggling shapes, with what the upstream received.

use bytes::Bytes;
use http::{Request, StatusCode};

use crate::backends::*;
use crate::clients::*;
use crate::support::*;

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
async fn content_length_with_transfer_encoding_is_400_and_not_forwarded() {
    let (raw, h) = raw_harness().await;
    // TE.CL: a front end honouring Content-Length would see a body of 3 bytes ("5\r\n") and
    // a second request starting at "hello...".
    let attack = b"POST /upload HTTP/1.1\r\nHost: web.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: web.test\r\n\r\n";
    let answer = raw_roundtrip(h.running.http_addr, attack).await;
    assert_eq!(
        raw_statuses(&answer),
        [400],
        "one 400, then the connection closes: {answer}"
    );
    assert!(
        raw_body(&answer).contains("Content-Length and Transfer-Encoding"),
        "{answer}"
    );

    // CL.TE: Transfer-Encoding first, then a Content-Length covering a smuggled request.
    let smuggled = "GET /smuggled2 HTTP/1.1\r\nHost: web.test\r\n\r\n";
    let attack2 = format!(
        "POST /upload2 HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\nContent-Length: {}\r\n\r\n0\r\n\r\n{smuggled}",
        5 + smuggled.len()
    );
    let answer = raw_roundtrip(h.running.http_addr, attack2.as_bytes()).await;
    assert_eq!(raw_statuses(&answer), [400], "{answer}");

    // Pipelined behind a clean request on the same connection: the clean one is answered and
    // forwarded, the ambiguous one is 400 (the pre-parse keeps the two heads apart).
    let pipelined = b"POST /clean HTTP/1.1\r\nHost: web.test\r\nContent-Length: 5\r\n\r\nhelloPOST /upload3 HTTP/1.1\r\nHost: web.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let answer = raw_roundtrip(h.running.http_addr, pipelined).await;
    // (The first body, "ok", runs into the second status line.)
    let statuses: Vec<&str> = answer
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &answer[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["200", "400"], "{answer}");

    raw.with(|l| {
        let got: Vec<(&str, &[u8])> = l
            .requests
            .iter()
            .map(|(head, body)| (head.lines().next().unwrap_or(""), body.as_slice()))
            .collect();
        assert_eq!(
            got,
            [("POST /clean HTTP/1.1", &b"hello"[..])],
            "only the clean request reached the backend: {}",
            l.text()
        );
        assert_eq!(l.invalid, 0, "{}", l.text());
        assert!(
            find(&l.bytes(), b"upload").is_none() && find(&l.bytes(), b"smuggled").is_none(),
            "an ambiguous request reached the backend: {}",
            l.text()
        );
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

#[tokio::test]
async fn request_bodies_are_forwarded_on_any_method_with_their_framing() {
    let (raw, h) = raw_harness().await;
    // Chunked bodies on methods that rarely carry one, then a Content-Length body on GET.
    for method in ["GET", "DELETE", "OPTIONS"] {
        let request = format!(
            "{method} /m/{method} HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        );
        let answer = raw_roundtrip(h.running.http_addr, request.as_bytes()).await;
        assert_eq!(raw_statuses(&answer), [200], "{method}: {answer}");
    }
    let answer = raw_roundtrip(
        h.running.http_addr,
        b"GET /m/cl HTTP/1.1\r\nHost: web.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .await;
    assert_eq!(raw_statuses(&answer), [200], "{answer}");
    raw.with(|l| {
        assert_eq!(l.invalid, 0, "{}", l.text());
        let got: Vec<(&str, &[u8])> = l
            .requests
            .iter()
            .map(|(head, body)| (head.lines().next().unwrap_or(""), body.as_slice()))
            .collect();
        assert_eq!(
            got,
            [
                ("GET /m/GET HTTP/1.1", &b"hello world"[..]),
                ("DELETE /m/DELETE HTTP/1.1", &b"hello world"[..]),
                ("OPTIONS /m/OPTIONS HTTP/1.1", &b"hello world"[..]),
                ("GET /m/cl HTTP/1.1", &b"hello"[..]),
            ],
            "{}",
            l.text()
        );
        // The chunked ones went upstream chunked, the other with its length.
        let heads: Vec<String> = l
            .requests
            .iter()
            .map(|(h, _)| h.to_ascii_lowercase())
            .collect();
        for head in &heads[..3] {
            assert!(head.contains("transfer-encoding: chunked"), "{head}");
        }
        assert!(heads[3].contains("content-length: 5"), "{}", heads[3]);
    });
}

#[tokio::test]
async fn an_http2_body_without_content_length_reaches_an_http1_upstream_chunked() {
    let (raw, h) = raw_harness().await;
    let mut send = h2c_connect(h.running.http_addr).await;
    for method in ["GET", "POST"] {
        // Two DATA frames and no content-length.
        let body = http_body_util::StreamBody::new(frames_stream(vec![
            Bytes::from_static(b"hello"),
            Bytes::from_static(b" world"),
        ]));
        let req = Request::builder()
            .method(method)
            .uri("http://web.test/h2body")
            .body(body)
            .unwrap();
        let resp = tokio::time::timeout(DEADLINE, send.send_request(req))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(resp.status(), 200, "{method}");
    }
    raw.with(|l| {
        let got: Vec<(&str, &[u8])> = l
            .requests
            .iter()
            .map(|(head, body)| (head.lines().next().unwrap_or(""), body.as_slice()))
            .collect();
        assert_eq!(
            got,
            [
                ("GET /h2body HTTP/1.1", &b"hello world"[..]),
                ("POST /h2body HTTP/1.1", &b"hello world"[..]),
            ],
            "{}",
            l.text()
        );
    });
}

/// A body stream of the given frames (no size hint).
fn frames_stream(
    frames: Vec<Bytes>,
) -> impl futures::Stream<Item = Result<http_body::Frame<Bytes>, std::convert::Infallible>> + Send {
    futures::stream::iter(frames.into_iter().map(|b| Ok(http_body::Frame::data(b))))
}

#[tokio::test]
async fn an_upstream_response_with_content_length_and_transfer_encoding_loses_the_length() {
    let upstream = CannedBackend::start(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await;
    let h = harness_for(upstream.addr).await;
    let r = get(&h, "web.test", "/both").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "hello world", "the whole chunked body, not 3 bytes");
    assert_eq!(r.header("content-length"), None, "{:?}", r.headers);
    assert_eq!(upstream.heads.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_malformed_or_truncated_upstream_response_is_502_upstream_protocol() {
    for response in [
        &b"NOT HTTP AT ALL\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Le",
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    ] {
        let upstream = CannedBackend::start(response).await;
        let h = harness_for(upstream.addr).await;
        let r = get(&h, "web.test", "/bad").await;
        assert_eq!(
            r.status,
            StatusCode::BAD_GATEWAY,
            "{:?}: {}",
            String::from_utf8_lossy(response),
            r.body
        );
        assert!(r.body.contains("broke the protocol"), "{}", r.body);
        let heads = upstream.heads.lock().unwrap().clone();
        assert_eq!(heads.len(), 1, "the request reached the upstream once");
        assert!(heads[0].starts_with("GET /bad HTTP/1.1\r\n"), "{heads:?}");
        let metrics = fetch(h.running.admin_addr, "admin", "/metrics").await.2;
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("sluice_proxy_errors_total")
                    && l.contains("reason=\"upstream_protocol\"")),
            "{metrics}"
        );
    }
}
