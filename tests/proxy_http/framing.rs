//! Request framing and smuggling shapes, with what the upstream received.

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
