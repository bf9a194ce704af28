//! Reload latency: how long from writing a manifest to the new route answering.
//!
//! Starts the whole runtime in-process (debounce 50 ms, as `sluice run` uses) with one echo
//! backend, then 50 times writes a new Ingress file for a fresh path and polls the proxy (about
//! every millisecond, on one keep-alive connection) until that path answers 200 instead of 404.
//! Prints p50, p90 and max.
//!
//! Run: `cargo bench --bench reload_latency`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use sluice_actors::run::{self, RunOptions};

const ROUNDS: usize = 50;
const HOST: &str = "reload.bench";

fn ingress(name: &str, path: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  ingressClassName: sluice\n  rules:\n  - host: {HOST}\n    http:\n      paths:\n      - path: {path}\n        pathType: Exact\n        backend:\n          service:\n            name: echo\n            port:\n              number: 80\n"
    )
}

fn service(backend: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: echo\n  namespace: default\nspec:\n  ports:\n  - port: 80\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: echo-1\n  namespace: default\n  labels:\n    kubernetes.io/service-name: echo\naddressType: IPv4\nports:\n- port: {}\nendpoints:\n- addresses: [\"{}\"]\n",
        backend.port(),
        backend.ip()
    )
}

/// Writes via a hidden temp file and a rename, as editors and deploy tooling do.
fn write_atomic(dir: &Path, name: &str, contents: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, contents).expect("write temp file");
    std::fs::rename(&tmp, dir.join(name)).expect("rename into place");
}

async fn connect(addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to sluice");
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    send
}

async fn status(send: &mut SendRequest<Empty<Bytes>>, path: &str) -> u16 {
    send.ready().await.expect("connection ready");
    let req = http::Request::get(path)
        .header("host", HOST)
        .body(Empty::new())
        .expect("request");
    let resp = send.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    resp.into_body().collect().await.expect("body");
    status
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn bench() {
    let (backend, _echo) =
        sluice_actors::demo::spawn_echo("127.0.0.1:0".parse().expect("addr"), "echo")
            .await
            .expect("echo backend");
    let dir = tempfile::tempdir().expect("temp dir");
    write_atomic(dir.path(), "service.yaml", &service(backend));
    write_atomic(dir.path(), "route-base.yaml", &ingress("base", "/base"));
    // 127.0.0.1 port 0 everywhere, default proxy settings, the debounce `sluice run` uses.
    let running = run::start(RunOptions {
        debounce: Duration::from_millis(50),
        ..RunOptions::new(dir.path())
    })
    .await
    .expect("sluice starts");
    running
        .wait_reload(0, Duration::from_secs(10))
        .await
        .expect("first configuration");
    let mut send = connect(running.http_addr).await;
    assert_eq!(
        status(&mut send, "/base").await,
        200,
        "the base route answers"
    );

    let mut latencies = Vec::with_capacity(ROUNDS);
    for i in 0..ROUNDS {
        let path = format!("/fresh-{i}");
        assert_eq!(
            status(&mut send, &path).await,
            404,
            "{path} is not routed yet"
        );
        write_atomic(
            dir.path(),
            &format!("route-{i}.yaml"),
            &ingress(&format!("fresh-{i}"), &path),
        );
        let written = Instant::now();
        let deadline = written + Duration::from_secs(5);
        loop {
            match status(&mut send, &path).await {
                200 => break,
                404 => {}
                other => panic!("{path}: unexpected status {other}"),
            }
            assert!(
                Instant::now() < deadline,
                "{path} did not answer 200 within 5 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        latencies.push(written.elapsed());
    }
    latencies.sort();
    println!(
        "reload latency over {ROUNDS} rounds (write -> new route answers 200, debounce 50 ms): p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms (min {:.1} ms)",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.9)),
        ms(latencies[latencies.len() - 1]),
        ms(latencies[0]),
    );
    let _clean = running.shutdown(Duration::from_secs(1)).await;
}

fn main() {
    // `cargo test --benches` runs bench binaries with no `--bench` flag: only then stay quick.
    if !std::env::args().any(|a| a == "--bench") {
        println!("reload_latency: skipped (run with `cargo bench --bench reload_latency`)");
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(bench());
}
