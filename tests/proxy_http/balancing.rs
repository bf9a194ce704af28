//! Load balancing and passive health.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::Empty;
use tokio::net::TcpListener;

use crate::backends::*;
use crate::clients::*;
use crate::support::*;

#[tokio::test]
async fn round_robin_splits_evenly() {
    let addrs = echo_same_port(&[[127, 0, 0, 1], [127, 0, 0, 2], [127, 0, 0, 3]], "web").await;
    let h = Harness::start(&[
        (
            "web.yaml",
            ingress("web", "web.test", &[("/", "Prefix", "web", 80)], &[]),
        ),
        (
            "svc.yaml",
            service("web", &addrs.iter().map(|a| (*a, true)).collect::<Vec<_>>()),
        ),
    ])
    .await;
    let mut seen = Vec::new();
    for _ in 0..30 {
        let r = get(&h, "web.test", "/").await;
        assert_eq!(r.status, 200, "{}", r.body);
        seen.push(echo_endpoint(&r.body).to_string());
    }
    for a in &addrs {
        let n = seen.iter().filter(|s| **s == a.to_string()).count();
        assert_eq!(n, 10, "{a} got {n} of 30: {seen:?}");
    }
    // In turn, not in bursts.
    for w in seen.windows(3) {
        assert!(w[0] != w[1] && w[1] != w[2] && w[0] != w[2], "{seen:?}");
    }
}

/// A backend that holds every request until its gate opens; counts arrivals.
struct Gated {
    addr: SocketAddr,
    arrivals: Arc<AtomicUsize>,
    gate: tokio::sync::watch::Sender<bool>,
}

fn gated(listener: TcpListener, name: &'static str) -> Gated {
    let (gate, open) = tokio::sync::watch::channel(false);
    let arrivals = Arc::new(AtomicUsize::new(0));
    let count = arrivals.clone();
    let backend = serve_hyper(
        listener,
        Proto::Http1,
        handler(move |_req| {
            let mut open = open.clone();
            count.fetch_add(1, Ordering::SeqCst);
            async move {
                let _ = open.wait_for(|o| *o).await;
                text(StatusCode::OK, name)
            }
        }),
    );
    Gated {
        addr: backend.addr,
        arrivals,
        gate,
    }
}

#[tokio::test]
async fn least_request_avoids_the_busy_endpoint() {
    let mut listeners = bind_same_port(&[[127, 0, 0, 1], [127, 0, 0, 2]])
        .await
        .into_iter();
    let slow = gated(listeners.next().unwrap(), "slow");
    let fast = gated(listeners.next().unwrap(), "fast");
    let h = Harness::start(&[
        (
            "web.yaml",
            ingress(
                "web",
                "web.test",
                &[("/", "Prefix", "web", 80)],
                &[("sluice.io/load-balancer", "least-request")],
            ),
        ),
        (
            "svc.yaml",
            service("web", &[(slow.addr, true), (fast.addr, true)]),
        ),
    ])
    .await;
    let addr = h.running.http_addr;
    let arrived = || slow.arrivals.load(Ordering::SeqCst) + fast.arrivals.load(Ordering::SeqCst);

    // Both hold their requests. Sent one at a time, six requests split 3/3: with two endpoints
    // the two random choices are always both, and the one with fewer outstanding wins.
    let mut parked = Vec::new();
    for i in 1..=6 {
        parked.push(tokio::spawn(h1_send(addr, get_req("web.test", "/"))));
        eventually("the request to reach a backend", || arrived() == i).await;
    }
    assert_eq!(
        (
            slow.arrivals.load(Ordering::SeqCst),
            fast.arrivals.load(Ordering::SeqCst)
        ),
        (3, 3)
    );

    // The fast endpoint answers from now on; the slow one still holds three requests.
    fast.gate.send_replace(true);
    eventually("the fast endpoint's requests to finish", || {
        parked.iter().filter(|t| t.is_finished()).count() == 3
    })
    .await;

    let (mut to_fast, mut to_slow) = (0, 0);
    for _ in 0..20 {
        let before = slow.arrivals.load(Ordering::SeqCst);
        let task = tokio::spawn(h1_send(addr, get_req("web.test", "/")));
        eventually("the request to finish or reach the slow endpoint", || {
            task.is_finished() || slow.arrivals.load(Ordering::SeqCst) > before
        })
        .await;
        if task.is_finished() {
            let r = task.await.unwrap();
            assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "fast"));
            to_fast += 1;
        } else {
            to_slow += 1;
            parked.push(task);
        }
    }
    assert!(
        to_fast >= 18,
        "least-request sent {to_slow} of 20 new requests to the busy endpoint"
    );

    slow.gate.send_replace(true);
    for t in parked {
        let r = tokio::time::timeout(DEADLINE, t).await.unwrap().unwrap();
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
}

/// The value of a Prometheus sample line `name{labels} value` on the admin endpoint.
async fn metric(h: &Harness, series: &str) -> Option<f64> {
    let req = Request::get("/metrics")
        .header(header::HOST, "admin")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let r = h1_send(h.running.admin_addr, req).await;
    r.body.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[tokio::test]
async fn a_refusing_endpoint_is_retried_once_then_skipped() {
    let good = echo([127, 0, 0, 1], "flaky").await;
    // Nothing listens on 127.0.0.2 at that port.
    let refusing = SocketAddr::from(([127, 0, 0, 2], good.port()));
    let h = Harness::start(&[
        (
            "web.yaml",
            ingress("flaky", "web.test", &[("/", "Prefix", "flaky", 80)], &[]),
        ),
        (
            "svc.yaml",
            service("flaky", &[(good, true), (refusing, true)]),
        ),
    ])
    .await;
    for i in 0..20 {
        let r = get(&h, "web.test", &format!("/{i}")).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
        assert_eq!(echo_endpoint(&r.body), good.to_string());
    }
    let errors = metric(
        &h,
        "sluice_upstream_connect_errors_total{service=\"default/flaky\"}",
    )
    .await;
    assert_eq!(
        errors,
        Some(1.0),
        "the refusing endpoint should be tried once, then skipped"
    );
}
