//! Memory of `GET /api/routes` on a table of 100 000 routes: the resident set size (RSS)
//! before and after 20 calls, and the peak, for
//!
//! 1. the paged, streamed answer (`sluice::proxy::inspect::routes_response`) served by hyper on
//!    127.0.0.1 and read by a hyper client: 20 calls of the default page, then 20 complete
//!    listings (every page, `limit=5000`), then 4 complete listings at once;
//! 2. the whole document built at once as the admin API did before (a `serde_json::Value` of
//!    every route, pretty-printed): 20 calls.
//!
//! (2) runs last because the peak (VmHWM) only grows. Numbers are printed; nothing is
//! asserted. Run: `cargo bench --bench admin_routes` (or `cargo test --bench admin_routes` for
//! a debug build: the memory figures are close, the time figures are not).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use sluice::model::{
    Backend, Endpoint, HostMatch, Model, ObjectRef, PathKind, PathMatch, Route, RouteSource,
    ServicePort,
};
use sluice::proxy::{Proxy, ProxyConfig, Snapshot, inspect};
use sluice::routing::RoutingTable;
use sluice::tls::CertStore;

const ROUTES: usize = 100_000;
const CALLS: usize = 20;

/// (VmRSS, VmHWM) in MiB.
fn rss() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn snapshot() -> Arc<Snapshot> {
    let backends: Vec<Arc<Backend>> = (0..1_000u16)
        .map(|i| {
            Arc::new(Backend {
                ingress: ObjectRef::new("bench", format!("ing-{i}")),
                service: ObjectRef::new("bench", format!("svc-{i}")),
                port: ServicePort::Number(80),
                endpoints: (0..2u8)
                    .map(|k| Endpoint {
                        addr: ([10, 1, (i / 250) as u8, (i % 250) as u8 + k], 8080).into(),
                        ready: true,
                    })
                    .collect(),
                settings: Default::default(),
            })
        })
        .collect();
    let routes: Vec<Route> = (0..ROUTES)
        .map(|i| {
            let b = &backends[i % backends.len()];
            Route {
                host: HostMatch::parse(&format!("host-{}.bench.example.com", i / 2)).unwrap(),
                path: PathMatch::new(PathKind::Prefix, if i % 2 == 0 { "/" } else { "/api/v1" })
                    .unwrap(),
                backend: b.clone(),
                source: RouteSource {
                    ingress: b.ingress.clone(),
                    rule: i / 2,
                    path: i % 2,
                },
                redirect_to_https: false,
                canary: None,
                fallback: None,
            }
        })
        .collect();
    let table = RoutingTable::compile(&Model {
        routes: routes.into(),
        ..Model::default()
    });
    let default_cert = sluice::tls::default_certificate().expect("default certificate");
    let certs = Arc::new(ArcSwap::from_pointee(CertStore::empty(default_cert)));
    let proxy = Proxy::new(ProxyConfig::default(), certs);
    proxy.publish(table);
    proxy.snapshot()
}

/// The admin API's former `/api/routes`: the whole table as one JSON value.
fn whole_document(snap: &Snapshot) -> Vec<u8> {
    let endpoints = |b: &Backend| -> Vec<serde_json::Value> {
        b.endpoints
            .iter()
            .map(|e| json!({"address": e.addr.to_string(), "ready": e.ready}))
            .collect()
    };
    let routes: Vec<serde_json::Value> = snap
        .table
        .routes()
        .iter()
        .map(|r| {
            json!({
                "host": r.host.to_string(),
                "path": r.path.path,
                "pathType": r.path.kind.as_str(),
                "ingress": r.source.ingress.to_string(),
                "field": format!("spec.rules[{}].http.paths[{}]", r.source.rule, r.source.path),
                "backend": r.backend.label(),
                "endpoints": endpoints(&r.backend),
                "redirectToHttps": r.redirect_to_https,
            })
        })
        .collect();
    let v = json!({"generation": snap.generation, "routes": routes, "defaultBackend": null});
    serde_json::to_vec_pretty(&v).unwrap_or_default()
}

async fn serve(snap: Arc<Snapshot>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let snap = snap.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let resp = inspect::routes_response(snap.clone(), req.uri().query());
                    async move { Ok::<_, Infallible>(resp) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// One GET, the body read frame by frame and not kept (so that the client's memory does not
/// count); returns the body size and the continue token (at the end of the document).
async fn get(addr: SocketAddr, query: &str) -> (usize, Option<String>) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("/api/routes?{query}"))
        .header("host", "admin")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let (mut len, mut tail) = (0, Vec::new());
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            len += data.len();
            tail.extend_from_slice(&data);
            let keep = tail.len().saturating_sub(128);
            tail.drain(..keep);
        }
    }
    let tail = String::from_utf8_lossy(&tail);
    let token = tail
        .rsplit_once("\"continue\":\"")
        .and_then(|(_, t)| t.split_once('"'))
        .map(|(t, _)| t.to_owned());
    (len, token)
}

/// Every page; returns the bytes read and the number of pages.
async fn full_listing(addr: SocketAddr) -> (usize, usize) {
    let (mut bytes, mut pages) = (0, 0);
    let mut token: Option<String> = None;
    loop {
        let query = match &token {
            None => "limit=5000".to_string(),
            Some(t) => format!("limit=5000&continue={t}"),
        };
        let (n, next) = get(addr, &query).await;
        bytes += n;
        pages += 1;
        match next {
            Some(t) => token = Some(t),
            None => return (bytes, pages),
        }
    }
}

fn report(what: &str, before: (f64, f64), after: (f64, f64), started: Instant) {
    println!(
        "{what:<44} RSS {:>7.1} -> {:>7.1} MiB (+{:>6.1})   peak {:>7.1} MiB   {:>6.2} s",
        before.0,
        after.0,
        after.0 - before.0,
        after.1,
        started.elapsed().as_secs_f64()
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let start = rss();
    let snap = snapshot();
    let loaded = rss();
    println!(
        "table of {ROUTES} routes: RSS {:.1} -> {:.1} MiB",
        start.0, loaded.0
    );
    let addr = serve(snap.clone()).await;

    let before = rss();
    let t = Instant::now();
    let mut page_bytes = 0;
    for _ in 0..CALLS {
        page_bytes = get(addr, "").await.0;
    }
    report(
        &format!("{CALLS} x default page ({page_bytes} B)"),
        before,
        rss(),
        t,
    );

    let before = rss();
    let t = Instant::now();
    let mut listing = (0, 0);
    for _ in 0..CALLS {
        listing = full_listing(addr).await;
    }
    report(
        &format!(
            "{CALLS} x full listing ({} pages, {} B)",
            listing.1, listing.0
        ),
        before,
        rss(),
        t,
    );

    let before = rss();
    let t = Instant::now();
    let tasks: Vec<_> = (0..4).map(|_| tokio::spawn(full_listing(addr))).collect();
    for task in tasks {
        task.await.unwrap();
    }
    report("4 full listings at once", before, rss(), t);

    let before = rss();
    let t = Instant::now();
    let mut size = 0;
    for _ in 0..CALLS {
        size = whole_document(&snap).len();
    }
    report(
        &format!("{CALLS} x whole document ({size} B), before"),
        before,
        rss(),
        t,
    );
}
