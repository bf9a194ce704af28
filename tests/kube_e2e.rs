//! `sluice run --kube` end to end: the whole runtime reads from the in-process fake API server
//! (real list/watch over HTTP) and serves real backends on loopback.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sluice_actors::run::{self, KubeSource, RunOptions, Running};
use support::fake_apiserver::FakeApiServer;
use support::{DEADLINE, echo};

fn ingress(name: &str, host: &str, service: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": { "name": name, "namespace": "default" },
        "spec": {
            "ingressClassName": "sluice",
            "rules": [{ "host": host, "http": { "paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": { "service": { "name": service, "port": { "number": 80 } } },
            }]}}],
        },
    })
}

fn service(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": name, "namespace": "default" },
        "spec": { "ports": [{ "port": 80 }] },
    })
}

fn slice(service: &str, endpoints: &[(SocketAddr, bool)]) -> Value {
    let port = endpoints[0].0.port();
    let eps: Vec<Value> = endpoints
        .iter()
        .map(|(a, ready)| json!({ "addresses": [a.ip().to_string()], "conditions": { "ready": ready } }))
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": { "name": format!("{service}-1"), "namespace": "default",
                      "labels": { "kubernetes.io/service-name": service } },
        "addressType": "IPv4",
        "endpoints": eps,
        "ports": [{ "port": port, "protocol": "TCP" }],
    })
}

async fn get(addr: SocketAddr, host: &str) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/")
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body =
        String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).into_owned();
    (status, body)
}

/// Polls until `check` accepts the response to `GET host/`, or fails after the deadline.
async fn until(running: &Running, host: &str, what: &str, check: impl Fn(u16, &str) -> bool) {
    until_within(DEADLINE, running, host, what, check).await;
}

/// [`until`] with its own deadline.
async fn until_within(
    within: Duration,
    running: &Running,
    host: &str,
    what: &str,
    check: impl Fn(u16, &str) -> bool,
) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (status, body) = get(running.http_addr, host).await;
        if check(status, &body) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: last {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_mode_follows_the_api_server() {
    let a = echo([127, 0, 0, 1], "a").await;
    let fake = FakeApiServer::start().await;
    fake.apply(service("web"));
    fake.apply(slice("web", &[(a, true)]));
    fake.apply(ingress("web", "web.test", "web"));

    let mut opts = RunOptions::new(std::env::temp_dir());
    opts.source = run::Source::Kube(Box::new(KubeSource {
        config: Some(fake.kube_config()),
        ..KubeSource::default()
    }));
    opts.debounce = Duration::from_millis(20);
    let running = run::start(opts).await.expect("sluice starts");
    running
        .wait_reload(0, DEADLINE)
        .await
        .expect("first state from the API server");
    assert!(running.readiness.is_ready());

    // Objects created -> route live.
    until(&running, "web.test", "the route", |s, body| {
        s == 200 && body.contains(&format!("endpoint: {a}"))
    })
    .await;

    // EndpointSlice readiness flips -> traffic moves (b must share a's port for one slice).
    let (b_addr, _task) =
        sluice_actors::demo::spawn_echo(SocketAddr::new([127, 0, 0, 2].into(), a.port()), "b")
            .await
            .unwrap();
    fake.apply(slice("web", &[(a, false), (b_addr, true)]));
    until(&running, "web.test", "traffic on b", |s, body| {
        s == 200 && body.contains(&format!("endpoint: {b_addr}"))
    })
    .await;

    // API server away: traffic still flows on the last state, changes apply after it returns.
    // The outage lasts 10 s (the scenario), with a request every 100 ms throughout.
    fake.pause().await;
    let outage = tokio::time::Instant::now();
    let mut served = 0;
    while outage.elapsed() < Duration::from_secs(10) {
        let (status, _) = get(running.http_addr, "web.test").await;
        assert_eq!(
            status, 200,
            "a request failed while the API server was away"
        );
        served += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served >= 50, "{served} requests during the outage");
    fake.resume().await;
    fake.apply(ingress("other", "other.test", "web"));
    // The watchers back off while the API server is away (up to ~13 s after 10 s of failures).
    until_within(
        Duration::from_secs(45),
        &running,
        "other.test",
        "the Ingress created after the outage",
        |s, _| s == 200,
    )
    .await;

    // Ingress deleted -> 404.
    assert!(fake.delete("ingresses", "default", "web"));
    until(&running, "web.test", "404 after delete", |s, _| s == 404).await;
    running.shutdown(Duration::from_secs(5)).await;
}
