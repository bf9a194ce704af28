//! Graceful shutdown: in-flight requests finish, idle connections close, readiness drops, new
//! connections are refused, and the grace deadline is honoured.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::StatusCode;
use support::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Sends one request on a raw socket and reads its response (headers and a
/// `Content-Length` body), leaving the connection open. Returns the status line.
async fn raw_request(stream: &mut TcpStream, host: &str) -> String {
    stream
        .write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .expect("write request");
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(DEADLINE, stream.read(&mut chunk))
            .await
            .expect("response in time")
            .expect("read");
        assert!(n > 0, "connection closed before the response head");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .expect("a Content-Length response");
    while buf.len() < head_end + len {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(DEADLINE, stream.read(&mut chunk))
            .await
            .expect("body in time")
            .expect("read");
        assert!(n > 0, "connection closed mid-body");
        buf.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(buf.len(), head_end + len, "nothing after the response");
    head.lines().next().unwrap_or_default().to_string()
}

/// Status of `GET path` on the admin listener.
async fn admin_status(admin: SocketAddr, path: &str) -> StatusCode {
    fetch(admin, "admin", path).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_and_closes_idle() {
    let held = held_backend().await;
    let fast = echo([127, 0, 0, 1], "fast").await;
    let Harness { dir, running } = Harness::start(&[
        (
            "slow.yaml",
            ingress("slow", "slow.test", &[("/", "Prefix", "slow", 80)], &[]),
        ),
        (
            "fast.yaml",
            ingress("fast", "fast.test", &[("/", "Prefix", "fast", 80)], &[]),
        ),
        (
            "svc.yaml",
            format!(
                "{}---\n{}",
                service("slow", &[(held.addr, true)]),
                service("fast", &[(fast, true)])
            ),
        ),
    ])
    .await;
    let (proxy, admin) = (running.http_addr, running.admin_addr);
    assert_eq!(admin_status(admin, "/readyz").await, StatusCode::OK);

    // An idle keep-alive connection that has served one request.
    let mut idle = TcpStream::connect(proxy).await.expect("connect");
    assert_eq!(raw_request(&mut idle, "fast.test").await, "HTTP/1.1 200 OK");

    // A request the backend holds.
    let inflight = tokio::spawn(async move { fetch(proxy, "slow.test", "/slow").await });
    let probe = held.clone();
    eventually("the backend to receive the request", || {
        probe.started() == 1
    })
    .await;

    let shutdown = tokio::spawn(running.shutdown(Duration::from_secs(5)));

    // Draining: not ready, idle connections closed; the request is held.
    let deadline = Instant::now() + DEADLINE;
    while admin_status(admin, "/readyz").await != StatusCode::SERVICE_UNAVAILABLE {
        assert!(
            Instant::now() < deadline,
            "/readyz never turned 503 during the drain"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(2), idle.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0))),
        "the idle keep-alive connection is closed by the server (EOF) at once: {closed:?} {rest:?}"
    );
    assert!(
        !inflight.is_finished(),
        "the in-flight request is still held"
    );
    assert!(
        !shutdown.is_finished(),
        "shutdown waits for the in-flight request"
    );

    held.release();
    let (status, _, body) = tokio::time::timeout(DEADLINE, inflight)
        .await
        .expect("in-flight request finishes")
        .expect("client task");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.len(), HeldBackend::BODY_LEN);
    let clean = tokio::time::timeout(DEADLINE, shutdown)
        .await
        .expect("shutdown returns")
        .expect("shutdown task");
    assert!(clean, "every connection finished within the grace period");

    let refused = TcpStream::connect(proxy).await;
    assert!(
        refused.is_err(),
        "new connections are refused after shutdown"
    );
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_grace_deadline_is_honoured() {
    let held = held_backend().await; // never released
    let Harness { dir, running } = Harness::start(&[
        (
            "stuck.yaml",
            ingress("stuck", "stuck.test", &[("/", "Prefix", "stuck", 80)], &[]),
        ),
        ("svc.yaml", service("stuck", &[(held.addr, true)])),
    ])
    .await;
    let proxy = running.http_addr;
    let _inflight = tokio::spawn(async move {
        let mut send = http1_connect(proxy).await;
        get_on(&mut send, "stuck.test", "/").await
    });
    let probe = held.clone();
    eventually("the backend to receive the request", || {
        probe.started() == 1
    })
    .await;

    let started = Instant::now();
    let clean = tokio::time::timeout(
        Duration::from_secs(5),
        running.shutdown(Duration::from_millis(300)),
    )
    .await
    .expect("shutdown returns before 5 s");
    let took = started.elapsed();
    assert!(!clean, "a connection was still open at the deadline");
    assert!(
        took >= Duration::from_millis(300),
        "shutdown waited the grace period: {took:?}"
    );
    assert!(
        took < Duration::from_secs(2),
        "shutdown returned soon after the grace period: {took:?}"
    );
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_still_open_at_the_deadline_are_dropped() {
    let held = held_backend().await; // never released
    let Harness { dir, running } = Harness::start(&[
        (
            "stuck.yaml",
            ingress("stuck", "stuck.test", &[("/", "Prefix", "stuck", 80)], &[]),
        ),
        ("svc.yaml", service("stuck", &[(held.addr, true)])),
    ])
    .await;
    let proxy = running.http_addr;
    let inflight = tokio::spawn(async move {
        let mut send = http1_connect(proxy).await;
        get_on(&mut send, "stuck.test", "/").await
    });
    let probe = held.clone();
    eventually("the backend to receive the request", || {
        probe.started() == 1
    })
    .await;

    assert!(!running.shutdown(Duration::from_millis(300)).await);
    // "Returns false when connections were still open at the deadline (they are dropped)": the
    // client sees its connection closed rather than waiting for the upstream read timeout.
    let outcome = tokio::time::timeout(Duration::from_secs(3), inflight).await;
    assert!(
        matches!(outcome, Ok(Ok(Err(_)))),
        "the client's connection is closed once shutdown gives up: {outcome:?}"
    );
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgraded_tunnels_count_as_open_connections() {
    let ws = upgrade_echo_backend().await;
    let Harness { dir, running } = Harness::start(&[
        (
            "ws.yaml",
            ingress("ws", "ws.test", &[("/", "Prefix", "ws", 80)], &[]),
        ),
        ("svc.yaml", service("ws", &[(ws, true)])),
    ])
    .await;
    let mut tunnel = open_tunnel(running.http_addr, "ws.test", "/").await;
    echo_through(&mut tunnel, b"hello").await;
    // `Running::open_connections`: "Open client connections" / `ConnTracker::open`: "Open
    // connections (upgraded tunnels included)". The tunnel is the only client connection.
    assert_eq!(running.open_connections(), 1, "the open tunnel is counted");
    // So a graceful shutdown cannot report a clean finish while the tunnel is open.
    let clean = running.shutdown(Duration::from_millis(300)).await;
    assert!(
        !clean,
        "shutdown reported no open connection while a tunnel was open"
    );
    drop(dir);
}

/// Waits until a TCP connect to `addr` is refused (the listening socket closed), failing after
/// `within`.
async fn wait_refused(addr: SocketAddr, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        match TcpStream::connect(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "connections to {addr} were never refused: last {other:?}"
                );
                drop(other);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_serves_through_the_delay_then_refuses_new_connections_and_drains() {
    let held = held_backend().await;
    let fast = echo([127, 0, 0, 1], "fast").await;
    let delay = Duration::from_secs(5);
    let Harness { dir, running } = Harness::start_options(
        &[
            (
                "slow.yaml",
                ingress("slow", "slow.test", &[("/", "Prefix", "slow", 80)], &[]),
            ),
            (
                "fast.yaml",
                ingress("fast", "fast.test", &[("/", "Prefix", "fast", 80)], &[]),
            ),
            (
                "svc.yaml",
                format!(
                    "{}---\n{}",
                    service("slow", &[(held.addr, true)]),
                    service("fast", &[(fast, true)])
                ),
            ),
        ],
        |opts| opts.shutdown_delay = delay,
    )
    .await;
    let (http, https, admin) = (running.http_addr, running.https_addr, running.admin_addr);
    let metrics = running.metrics_addr.expect("a metrics listener");
    assert_eq!(admin_status(metrics, "/readyz").await, StatusCode::OK);

    // A keep-alive connection that has served a request, and a request the backend holds.
    let mut keep = http1_connect(http).await;
    let (status, _, _) = get_on(&mut keep, "fast.test", "/").await.expect("request");
    assert_eq!(status, StatusCode::OK);
    let inflight = tokio::spawn(async move { fetch(http, "slow.test", "/slow").await });
    let probe = held.clone();
    eventually("the backend to receive the request", || {
        probe.started() == 1
    })
    .await;

    let shutdown = tokio::spawn(running.shutdown(Duration::from_secs(30)));

    // 1. Not ready, on the metrics listener (the probes) and the admin listener alike.
    let deadline = Instant::now() + DEADLINE;
    while admin_status(metrics, "/readyz").await != StatusCode::SERVICE_UNAVAILABLE {
        assert!(
            Instant::now() < deadline,
            "/readyz never turned 503 on the metrics listener"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        admin_status(admin, "/readyz").await,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // 2. During the delay traffic is still served: a new connection, and the keep-alive one.
    let (status, _, body) = tokio::time::timeout(DEADLINE, fetch(http, "fast.test", "/new"))
        .await
        .expect("a new connection is served during the delay");
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, _) = tokio::time::timeout(DEADLINE, get_on(&mut keep, "fast.test", "/again"))
        .await
        .expect("an answer in time")
        .expect("the keep-alive connection still serves during the delay");
    assert_eq!(status, StatusCode::OK);

    // 3. Then the listening sockets close: new connections are refused, not queued.
    wait_refused(http, delay + DEADLINE).await;
    wait_refused(https, DEADLINE).await;
    // The idle keep-alive connection is closed; the probes still answer (503).
    eventually("the idle keep-alive connection to close", || {
        keep.is_closed()
    })
    .await;
    assert_eq!(
        admin_status(metrics, "/readyz").await,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // 4. The in-flight request is drained: shutdown waits for it, and it completes.
    assert!(!inflight.is_finished(), "the request is still held");
    assert!(!shutdown.is_finished(), "shutdown waits for it");
    held.release();
    let (status, _, body) = tokio::time::timeout(DEADLINE, inflight)
        .await
        .expect("in-flight request finishes")
        .expect("client task");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.len(), HeldBackend::BODY_LEN);
    let clean = tokio::time::timeout(DEADLINE, shutdown)
        .await
        .expect("shutdown returns")
        .expect("shutdown task");
    assert!(clean, "every connection finished within the grace period");
    drop(dir);
}
