//! HTTP/2: h2c from clients and to upstreams.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, StatusCode, Version, header};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use sluice::proxy::ProxyConfig;

use crate::backends::*;
use crate::clients::*;
use crate::support::*;

#[tokio::test]
async fn h2c_prior_knowledge_from_the_client_reaches_an_http1_backend() {
    let h = web_harness(ProxyConfig::default()).await;
    let send = h2c_connect(h.running.http_addr).await;
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

/// The streams of one HTTP/2 connection run on its task (`proxy::streams`) but independently:
/// a request whose backend has not answered yet does not hold up the next one, and answers
/// when its backend does.
#[tokio::test]
async fn a_slow_stream_does_not_hold_up_the_others_on_its_connection() {
    let release = Arc::new(tokio::sync::Notify::new());
    let arrived = Arc::new(AtomicUsize::new(0));
    let (held, seen) = (release.clone(), arrived.clone());
    let backend = hyper_backend(
        Proto::Http1,
        handler(move |req| {
            let (held, seen) = (held.clone(), seen.clone());
            async move {
                if req.uri().path() == "/hold" {
                    seen.fetch_add(1, Ordering::SeqCst);
                    held.notified().await;
                }
                text(StatusCode::OK, req.uri().path().to_string())
            }
        }),
    )
    .await;
    let h = harness_for(backend.addr).await;
    let send = h2c_connect(h.running.http_addr).await;
    let get = |path: &'static str| {
        let mut send = send.clone();
        async move {
            let req = Request::get(format!("http://web.test{path}"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            read_reply(send.send_request(req).await.expect("response")).await
        }
    };
    let slow = tokio::spawn(get("/hold"));
    // The held request reaches the backend before the quick one is sent.
    eventually("the held request reached the backend", || {
        arrived.load(Ordering::SeqCst) == 1
    })
    .await;
    let quick = tokio::time::timeout(DEADLINE, get("/quick"))
        .await
        .expect("the quick request is answered while the slow one waits");
    assert_eq!(quick.status, 200, "{}", quick.body);
    assert_eq!(quick.body, "/quick");
    // Its backend has not answered: it cannot have finished.
    assert!(
        !slow.is_finished(),
        "the held request waits for its backend"
    );
    release.notify_one();
    let slow = tokio::time::timeout(DEADLINE, slow)
        .await
        .expect("the held request is answered once released")
        .unwrap();
    assert_eq!(slow.status, 200, "{}", slow.body);
    assert_eq!(slow.body, "/hold");
    assert_eq!(h.running.open_connections(), 1);
}
