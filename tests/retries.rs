//! Retries and passive outlier detection over real sockets: `proxy-next-upstream` conditions
//! (errors, timeouts, statuses), idempotent methods only unless allowed, small request bodies
//! resent and large ones not, the retry budget, and endpoints that keep failing ejected, never
//! all of them.

mod support;
use support::*;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use hyper_util::rt::TokioIo;

/// How a test backend answers.
#[derive(Clone, Copy)]
enum Behaviour {
    /// This status, body `from <name>`.
    Status(u16),
    /// Reads the request, then closes the connection without answering.
    Reset,
    /// Reads the request and never answers.
    Hang,
    /// 200, body `from <name>: <the request body>`.
    EchoBody,
}

/// A backend on a 127.0.0.x address of its own (so that endpoints differ by address), counting
/// the requests it gets.
struct Backend {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

async fn backend(ip_last: u8, name: &'static str, behaviour: Behaviour) -> Backend {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, ip_last], 0)))
        .await
        .expect("bind");
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let hits = counted.clone();
            tokio::spawn(async move {
                match behaviour {
                    Behaviour::Status(code) => {
                        let svc = hyper::service::service_fn(move |_req| {
                            hits.fetch_add(1, Ordering::SeqCst);
                            async move {
                                let mut r =
                                    Response::new(Full::new(Bytes::from(format!("from {name}"))));
                                *r.status_mut() = http::StatusCode::from_u16(code).unwrap();
                                Ok::<_, Infallible>(r)
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    }
                    Behaviour::EchoBody => {
                        let svc = hyper::service::service_fn(
                            move |req: http::Request<hyper::body::Incoming>| {
                                hits.fetch_add(1, Ordering::SeqCst);
                                async move {
                                    use http_body_util::BodyExt as _;
                                    let body = req.into_body().collect().await?.to_bytes();
                                    let text =
                                        format!("from {name}: {}", String::from_utf8_lossy(&body));
                                    Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from(
                                        text,
                                    ))))
                                }
                            },
                        );
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    }
                    Behaviour::Reset | Behaviour::Hang => {
                        use tokio::io::AsyncReadExt as _;
                        let mut stream = stream;
                        let mut buf = [0u8; 4096];
                        let mut seen = Vec::new();
                        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => seen.extend_from_slice(&buf[..n]),
                            }
                        }
                        hits.fetch_add(1, Ordering::SeqCst);
                        if matches!(behaviour, Behaviour::Hang) {
                            let _ = stream.read(&mut buf).await;
                        }
                        // Dropped: the connection closes with no answer.
                    }
                }
            });
        }
    });
    Backend { addr, hits }
}

/// A Service over several endpoints on different addresses (one port each is not possible
/// with one EndpointSlice port): one Service per test, endpoints given as (address, ready).
fn multi_service(name: &str, backends: &[&Backend]) -> String {
    // An EndpointSlice has one port for all its endpoints: one slice per backend.
    let mut y = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  ports:\n  - port: 80\n"
    );
    for (i, b) in backends.iter().enumerate() {
        y.push_str(&format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-{i}\n  namespace: default\n  labels:\n    kubernetes.io/service-name: {name}\naddressType: IPv4\nports:\n- port: {}\nendpoints:\n- addresses: [\"{}\"]\n  conditions:\n    ready: true\n",
            b.addr.port(),
            b.addr.ip()
        ));
    }
    y
}

async fn start(backends: &[&Backend], annotations: &[(&str, &str)]) -> Harness {
    Harness::start(&[
        ("svc.yaml", multi_service("app", backends)),
        (
            "ing.yaml",
            ingress(
                "app",
                "app.test",
                &[("/", "Prefix", "app", 80)],
                annotations,
            ),
        ),
    ])
    .await
}

/// `method /` with `body` (and its `Content-Length`) on a fresh connection.
async fn send_body(h: &Harness, method: &str, body: &str) -> (u16, String) {
    use http_body_util::BodyExt as _;
    let stream = tokio::net::TcpStream::connect(h.running.http_addr)
        .await
        .expect("connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method(method)
        .uri("/")
        .header("host", "app.test")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = send.send_request(req).await.expect("an answer");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn send(h: &Harness, method: &str) -> (u16, String) {
    request(h.running.http_addr, method, "app.test", "/")
        .await
        .expect("an answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_connection_is_tried_again_on_another_endpoint_by_default() {
    let bad = backend(2, "bad", Behaviour::Reset).await;
    let good = backend(3, "good", Behaviour::Status(200)).await;
    let h = start(&[&bad, &good], &[]).await;
    // Two only: five failures in a row would eject the bad endpoint.
    for _ in 0..2 {
        let (status, body) = send(&h, "GET").await;
        assert_eq!((status, body.as_str()), (200, "from good"));
    }
    assert!(
        bad.hits.load(Ordering::SeqCst) >= 1,
        "the bad one was tried"
    );
    // A POST is not idempotent: not tried again; some reach the bad endpoint and fail.
    let mut failed = 0;
    for _ in 0..4 {
        if send(&h, "POST").await.0 == 502 {
            failed += 1;
        }
    }
    assert!(
        failed >= 1,
        "POSTs that reached the resetting endpoint failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_and_timeouts_are_retried_as_proxy_next_upstream_says() {
    let unavailable = backend(4, "unavailable", Behaviour::Status(503)).await;
    let hangs = backend(5, "hangs", Behaviour::Hang).await;
    let good = backend(6, "good", Behaviour::Status(200)).await;
    let h = start(
        &[&unavailable, &hangs, &good],
        &[
            (
                "nginx.ingress.kubernetes.io/proxy-next-upstream",
                "error timeout http_503 non_idempotent",
            ),
            ("nginx.ingress.kubernetes.io/proxy-read-timeout", "1"),
        ],
    )
    .await;
    // Every answer comes from the good endpoint, POSTs too (non_idempotent).
    for method in ["GET", "GET", "POST", "GET"] {
        let (status, body) = send(&h, method).await;
        assert_eq!((status, body.as_str()), (200, "from good"), "{method}");
    }
    assert!(unavailable.hits.load(Ordering::SeqCst) >= 1);
    assert!(hangs.hits.load(Ordering::SeqCst) >= 1);
    let (_, metrics) = request(
        h.running.metrics_addr.expect("metrics listener"),
        "GET",
        "m",
        "/metrics",
    )
    .await
    .expect("metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sluice_upstream_retries_total")
                && l.contains("reason=\"status\"")),
        "{metrics}"
    );
    // `off`: the first answer stands.
    h.write(
        "ing.yaml",
        &ingress(
            "app",
            "app.test",
            &[("/", "Prefix", "app", 80)],
            &[
                ("nginx.ingress.kubernetes.io/proxy-next-upstream", "off"),
                ("nginx.ingress.kubernetes.io/proxy-read-timeout", "1"),
            ],
        ),
    )
    .await;
    let mut not_good = 0;
    for _ in 0..9 {
        if send(&h, "GET").await.0 != 200 {
            not_good += 1;
        }
    }
    assert!(
        not_good >= 1,
        "without retries the failing endpoints' answers reach the client"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_keeps_retries_to_a_fifth_of_requests() {
    let a = backend(7, "a", Behaviour::Status(503)).await;
    let b = backend(8, "b", Behaviour::Status(503)).await;
    let h = start(&[&a, &b], &[("sluice.io/proxy-next-upstream", "http_503")]).await;
    const N: usize = 100;
    for _ in 0..N {
        assert_eq!(send(&h, "GET").await.0, 503);
    }
    let hits = a.hits.load(Ordering::SeqCst) + b.hits.load(Ordering::SeqCst);
    let retries = hits - N;
    // 10 banked, then one per five requests.
    assert!(retries >= 10, "retries happened: {retries}");
    assert!(retries <= 10 + N / 5, "{retries} retries for {N} requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_keeps_failing_is_ejected_but_never_all_of_them() {
    let failing = backend(9, "failing", Behaviour::Status(500)).await;
    let good = backend(10, "good", Behaviour::Status(200)).await;
    let h = start(&[&failing, &good], &[]).await;
    // Five 500s in a row eject it (30 s): afterwards every request goes to the good one.
    for _ in 0..20 {
        send(&h, "GET").await;
    }
    let hits = failing.hits.load(Ordering::SeqCst);
    assert_eq!(hits, 5, "ejected after five failures in a row");
    for _ in 0..10 {
        assert_eq!(send(&h, "GET").await, (200, "from good".to_string()));
    }
    assert_eq!(failing.hits.load(Ordering::SeqCst), 5);
    let (_, metrics) = request(
        h.running.metrics_addr.expect("metrics listener"),
        "GET",
        "m",
        "/metrics",
    )
    .await
    .expect("metrics");
    // The registry is shared by the tests of this process: at least this one.
    let ejections = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sluice_upstream_ejections_total "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert!(ejections >= Some(1.0), "{metrics}");

    // Both failing: both are ejected in turn, and the marks are then ignored (more than half
    // of the endpoints): requests keep reaching both rather than none.
    let x = backend(11, "x", Behaviour::Status(500)).await;
    let y = backend(12, "y", Behaviour::Status(500)).await;
    h.write("svc.yaml", &multi_service("app", &[&x, &y])).await;
    for _ in 0..40 {
        assert_eq!(send(&h, "GET").await.0, 500);
    }
    let (hx, hy) = (x.hits.load(Ordering::SeqCst), y.hits.load(Ordering::SeqCst));
    assert_eq!(hx + hy, 40);
    assert!(hx > 5 && hy > 5, "both still get requests: {hx} and {hy}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_request_body_is_resent_on_another_endpoint_and_a_large_one_is_not() {
    let bad = backend(7, "bad", Behaviour::Reset).await;
    let good = backend(8, "good", Behaviour::EchoBody).await;
    let h = start(&[&bad, &good], &[]).await;
    let small = "x".repeat(1000) + "end";
    // Round robin: of two PUTs, one goes to the resetting endpoint first, and is resent whole.
    for _ in 0..2 {
        let (status, body) = send_body(&h, "PUT", &small).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, format!("from good: {small}"));
    }
    assert!(
        bad.hits.load(Ordering::SeqCst) >= 1,
        "the bad one was tried"
    );
    // Over 64 KiB the body streams: no second try, so the PUT that meets the resetting
    // endpoint fails.
    let large = "y".repeat(100 * 1024);
    let mut failed = 0;
    for _ in 0..2 {
        let (status, body) = send_body(&h, "PUT", &large).await;
        match status {
            200 => assert_eq!(body.len(), "from good: ".len() + large.len()),
            _ => failed += 1,
        }
    }
    assert_eq!(failed, 1, "one large PUT met the resetting endpoint");
    // A POST with a body is resent too once the policy allows non-idempotent retries.
    let h = start(
        &[&bad, &good],
        &[(
            "nginx.ingress.kubernetes.io/proxy-next-upstream",
            "error non_idempotent",
        )],
    )
    .await;
    for _ in 0..2 {
        let (status, body) = send_body(&h, "POST", "payload").await;
        assert_eq!((status, body.as_str()), (200, "from good: payload"));
    }
}
