//! Chaos tests: crash every actor in turn under steady load and prove that no request fails,
//! that every actor was restarted, and that state is rebuilt; and a restart storm that
//! escalates to the root.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use sluice_actors::supervisor::Intensity;
use support::*;

#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    failed: AtomicU64,
}

/// Steady load: `keepalive` client connections each sending a request every 5 ms, plus one
/// client opening a new connection per request, until `stop` is set.
fn load(
    addr: SocketAddr,
    keepalive: usize,
    counters: Arc<Counters>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for _ in 0..keepalive {
        let (counters, stop) = (counters.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            while !*stop.borrow() {
                let req = http::Request::get("/load")
                    .header("host", "chaos.test")
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let ok = match send.send_request(req).await {
                    Ok(resp) => resp.status() == 200 && resp.into_body().collect().await.is_ok(),
                    Err(_) => false,
                };
                let c = if ok { &counters.ok } else { &counters.failed };
                c.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    let (counters, stop) = (counters.clone(), stop.clone());
    tasks.push(tokio::spawn(async move {
        while !*stop.borrow() {
            let ok = matches!(
                request(addr, "GET", "chaos.test", "/new-conn").await,
                Ok((200, _))
            );
            let c = if ok { &counters.ok } else { &counters.failed };
            c.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }));
    tasks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashing_every_actor_under_load_fails_no_request() {
    let a = echo([127, 0, 0, 1], "a").await;
    let b = echo([127, 0, 0, 2], "b").await;
    let (dir, running) = start_chaos(
        Intensity::default(),
        &[
            (
                "ing.yaml",
                ingress("chaos", "chaos.test", &[("/", "Prefix", "web", 80)], &[]),
            ),
            ("svc.yaml", service("web", &[(a, true)])),
        ],
    )
    .await;
    let admin = running.admin_addr;
    let names: Vec<String> = running.tree.names();
    assert!(names.len() >= 8, "{names:?}");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let counters = Arc::new(Counters::default());
    let tasks = load(running.http_addr, 4, counters.clone(), stop_rx);

    for name in &names {
        let before = running.tree.restarts(name);
        let (status, body) = request(admin, "POST", "admin", &format!("/debug/crash/{name}"))
            .await
            .expect("admin answers");
        assert_eq!(status, 202, "crash {name}: {body}");
        let tree = running.tree.clone();
        let n = name.clone();
        eventually(&format!("{name} restarted"), || {
            tree.restarts(&n) > before && tree.status(&n) == Some("running")
        })
        .await;
        // The scenario: one crash a second, load running throughout.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // State was rebuilt: a change made after the crashes is live.
    let seen = running.reloads();
    write_atomic(&dir.path().join("svc.yaml"), &service("web", &[(b, true)]));
    running.wait_reload(seen, DEADLINE).await.unwrap();
    let mut served_by_b = false;
    for _ in 0..20 {
        let (status, body) = request(running.http_addr, "GET", "chaos.test", "/after")
            .await
            .unwrap();
        assert_eq!(status, 200);
        served_by_b |= body.contains(&format!("endpoint: {b}"));
    }
    assert!(served_by_b, "the change made after the crashes is not live");

    stop_tx.send_replace(true);
    for t in tasks {
        t.await.unwrap();
    }
    let (ok, failed) = (
        counters.ok.load(Ordering::Relaxed),
        counters.failed.load(Ordering::Relaxed),
    );
    assert!(ok > 500, "too little load to prove anything: {ok} requests");
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed during the crashes",
        ok + failed
    );
    for name in &names {
        assert!(
            running.tree.restarts(name) >= 1,
            "{name} was never restarted"
        );
    }
    // The admin API shows the live tree with restart counts and the last failure.
    let (status, body) = request(admin, "GET", "admin", "/api/actors").await.unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains("\"last_failure\": \"chaos: crash requested"),
        "{body}"
    );
    let (_, metrics) = request(admin, "GET", "admin", "/metrics").await.unwrap();
    assert!(
        metrics.contains("sluice_actor_restarts_total{actor=\"router\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sluice_actor_up{actor=\"listener-http\"} 1"),
        "{metrics}"
    );
    running.shutdown(Duration::from_secs(5)).await;
}
