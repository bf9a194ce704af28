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
    first_failure: std::sync::Mutex<Option<String>>,
}

impl Counters {
    fn record(&self, what: &str, result: Result<(), String>) {
        match result {
            Ok(()) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_failure.lock().unwrap();
                first.get_or_insert_with(|| format!("{what}: {e}"));
            }
        }
    }
}

/// Plain TCP or TLS to the HTTPS entrypoint.
#[derive(Clone)]
enum Transport {
    Plain(SocketAddr),
    Tls(SocketAddr, Arc<rustls::ClientConfig>),
}

impl Transport {
    fn name(&self) -> &'static str {
        match self {
            Transport::Plain(_) => "http",
            Transport::Tls(..) => "https",
        }
    }

    /// An HTTP/1.1 connection.
    async fn connect(
        &self,
    ) -> Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>, String> {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        match self {
            Transport::Plain(addr) => {
                let tcp = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|x| e(&x))?;
                let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                    .await
                    .map_err(|x| e(&x))?;
                tokio::spawn(conn);
                Ok(send)
            }
            Transport::Tls(addr, config) => {
                let tls = tls_client::connect(*addr, "chaos.test", config.clone())
                    .await
                    .map_err(|x| e(&x))?;
                let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                    .await
                    .map_err(|x| e(&x))?;
                tokio::spawn(conn);
                Ok(send)
            }
        }
    }
}

async fn get(
    send: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    path: &str,
) -> Result<(), String> {
    let req = http::Request::get(path)
        .header("host", "chaos.test")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    resp.into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    if status == 200 {
        Ok(())
    } else {
        Err(format!("status {status}"))
    }
}

/// Steady load on every transport: `keepalive` client connections each sending a request
/// every 5 ms, plus one client opening a new connection per request, until `stop` is set.
fn load(
    transports: &[Transport],
    keepalive: usize,
    counters: Arc<Counters>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for t in transports {
        for _ in 0..keepalive {
            let (t, counters, stop) = (t.clone(), counters.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let what = format!("{} keep-alive", t.name());
                let mut send = t.connect().await.expect("first connection");
                while !*stop.borrow() {
                    counters.record(&what, get(&mut send, "/load").await);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }));
        }
        let (t, counters, stop) = (t.clone(), counters.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let what = format!("{} new connection", t.name());
            while !*stop.borrow() {
                let result = match t.connect().await {
                    Ok(mut send) => get(&mut send, "/new-conn").await,
                    Err(e) => Err(e),
                };
                counters.record(&what, result);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    tasks
}

/// Crashes `name` at `point` (`""` or `"?in=task"`) through the admin API and waits until it
/// runs again with one more restart. Returns false when the actor has no such crash point.
async fn crash_and_wait(running: &sluice_actors::run::Running, name: &str, point: &str) -> bool {
    let before = running.tree.restarts(name);
    let (status, body) = request(
        running.admin_addr,
        "POST",
        "admin",
        &format!("/debug/crash/{name}{point}"),
    )
    .await
    .expect("admin answers");
    if status == 404 && !point.is_empty() {
        return false;
    }
    assert_eq!(status, 202, "crash {name}{point}: {body}");
    let tree = running.tree.clone();
    let n = name.to_owned();
    eventually(&format!("{name} restarted after a crash{point}"), || {
        tree.restarts(&n) > before && tree.status(&n) == Some("running")
    })
    .await;
    // The failure is visible in /api/actors.
    let (_, actors) = request(running.admin_addr, "GET", "admin", "/api/actors")
        .await
        .unwrap();
    let actors: serde_json::Value = serde_json::from_str(&actors).unwrap();
    let entry = actors
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .expect("listed");
    let failure = entry["last_failure"].as_str().unwrap_or_default();
    let expected = if point.is_empty() {
        "chaos: crash requested"
    } else {
        "panicked: chaos: crash requested in task"
    };
    assert!(
        failure.contains(expected) && failure.contains(name),
        "{name}{point}: last_failure {failure:?}"
    );
    true
}

fn restart_metric(metrics: &str, actor: &str) -> u64 {
    let prefix = format!("sluice_actor_restarts_total{{actor=\"{actor}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashing_every_actor_under_load_fails_no_request() {
    let a = echo([127, 0, 0, 1], "a").await;
    let b = echo([127, 0, 0, 2], "b").await;
    // Two crashes per actor (handler, then task): room for them in every supervisor's window.
    let intensity = Intensity {
        max_restarts: 10,
        period: Duration::from_secs(30),
    };
    let (dir, running) = start_chaos(
        intensity,
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
    let transports = [
        Transport::Plain(running.http_addr),
        Transport::Tls(
            running.https_addr,
            tls_client::insecure_client(&[b"http/1.1"]),
        ),
    ];
    let tasks = load(&transports, 2, counters.clone(), stop_rx);

    let mut without_task = Vec::new();
    for name in &names {
        assert!(crash_and_wait(&running, name, "").await);
        tokio::time::sleep(Duration::from_millis(300)).await;
        if crash_and_wait(&running, name, "?in=task").await {
            tokio::time::sleep(Duration::from_millis(300)).await;
        } else {
            without_task.push(name.as_str());
        }
    }
    // Only the supervisors have no task of their own.
    assert_eq!(without_task, ["control", "listeners"]);

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
        "{failed} of {} requests failed during the crashes; the first: {:?}",
        ok + failed,
        counters.first_failure.lock().unwrap()
    );
    // Every restart was counted, in the tree and in the restart metric.
    let (_, metrics) = request(admin, "GET", "admin", "/metrics").await.unwrap();
    for name in &names {
        let expected = if without_task.contains(&name.as_str()) {
            1
        } else {
            2
        };
        let restarts = running.tree.restarts(name);
        assert!(restarts >= expected, "{name} restarted {restarts} times");
        assert!(
            restart_metric(&metrics, name) >= restarts,
            "{name}: the metric says {} restarts, the tree {restarts}",
            restart_metric(&metrics, name)
        );
    }
    assert!(
        metrics.contains("sluice_actor_up{actor=\"listener-http\"} 1"),
        "{metrics}"
    );
    running.shutdown(Duration::from_secs(5)).await;
}
