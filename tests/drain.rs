//! The engine's shutdown sequence (`sluice::proxy::drain`) over real sockets: readiness first,
//! requests still served during the delay, then new connections refused (not queued) while
//! the request in flight finishes.

mod support;
use support::*;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use sluice::model::{
    Backend, Endpoint, HostMatch, Model, ObjectRef, PathKind, PathMatch, Route, RouteSource,
    ServicePort,
};
use sluice::proxy::accept::{Listen, accept_loop};
use sluice::proxy::drain::{Drain, Drained, drain};
use sluice::proxy::{ConnTracker, Proxy, ProxyConfig};
use sluice::routing::RoutingTable;
use sluice::tls::CertStore;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

fn table(backend: std::net::SocketAddr) -> RoutingTable {
    let b = Arc::new(Backend {
        ingress: ObjectRef::new("default", "web"),
        service: ObjectRef::new("default", "held"),
        port: ServicePort::Number(80),
        endpoints: vec![Endpoint {
            addr: backend,
            ready: true,
        }],
        settings: Default::default(),
    });
    let route = Route {
        host: HostMatch::parse("web.test").unwrap(),
        path: PathMatch::new(PathKind::Prefix, "/").unwrap(),
        backend: b,
        source: RouteSource {
            ingress: ObjectRef::new("default", "web"),
            rule: 0,
            path: 0,
        },
        redirect_to_https: false,
        canary: None,
        fallback: None,
    };
    RoutingTable::compile(&Model {
        routes: vec![route].into(),
        ..Model::default()
    })
}

#[tokio::test]
async fn drain_serves_through_the_delay_then_refuses_new_connections_and_finishes_in_flight() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let backend = held_backend().await;
    let certs = Arc::new(ArcSwap::from_pointee(CertStore::empty(
        sluice::tls::default_certificate().unwrap(),
    )));
    let proxy = Proxy::new(ProxyConfig::default(), certs);
    proxy.publish(table(backend.addr));
    let tracker = Arc::new(ConnTracker::default());
    let listener = Arc::new(TcpListener::bind("127.0.0.1:0").await.unwrap());
    let addr = listener.local_addr().unwrap();
    let (stop, _) = watch::channel(false);
    let accept = tokio::spawn(accept_loop(
        listener.clone(),
        Listen::Http,
        proxy.clone(),
        tracker.clone(),
        stop.subscribe(),
    ));

    // A request in flight (held by the backend) when shutdown starts.
    let in_flight = tokio::spawn(async move { fetch(addr, "web.test", "/slow").await });
    eventually("the request to reach the backend", || {
        backend.started() == 1
    })
    .await;

    let ready = AtomicBool::new(true);
    let not_ready = || ready.store(false, Ordering::SeqCst);
    let listeners = [listener.as_ref()];
    let shutdown = drain(Drain {
        not_ready: &not_ready,
        delay: Duration::from_secs(2),
        stop_accepting: &stop,
        listeners: &listeners,
        tracker: &tracker,
        grace: DEADLINE,
    });
    tokio::pin!(shutdown);

    // During the delay: not ready, and a new connection is still served.
    let during = async {
        eventually("readiness to turn off", || !ready.load(Ordering::SeqCst)).await;
        backend.release();
        let (status, _, _) = fetch(addr, "web.test", "/during").await;
        assert_eq!(status, 200, "served during the delay");
    };
    tokio::select! {
        () = during => {}
        _ = &mut shutdown => panic!("drain ended before the delay was over"),
    }
    // After the delay: new connections are refused, not queued. A connection made just
    // before the socket closed is reset (it was in the backlog): try again.
    let refused = async {
        loop {
            match TcpStream::connect(addr).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                Err(e) => return e.kind(),
                Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    };
    let (kind, drained) = tokio::join!(
        tokio::time::timeout(DEADLINE, refused),
        tokio::time::timeout(DEADLINE, &mut shutdown)
    );
    assert_eq!(
        kind.expect("refused before the deadline"),
        std::io::ErrorKind::ConnectionRefused
    );
    assert_eq!(
        drained.expect("drained before the deadline"),
        Drained {
            clean: true,
            forced: 0
        }
    );
    let (status, _, body) = in_flight.await.unwrap();
    assert_eq!(status, 200, "the request in flight finished");
    assert_eq!(body.len(), HeldBackend::BODY_LEN);
    tokio::time::timeout(DEADLINE, accept)
        .await
        .expect("the accept loop ends")
        .unwrap();
    assert_eq!(tracker.open(), 0);
}
