//! Connections: serving one accepted TCP (or TLS) connection, tracking open connections for
//! graceful shutdown, and WebSocket tunnels.

use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::HeaderValue;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};

use super::Proxy;
use super::balance::InFlight;

/// Which listener a connection came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Entrypoint {
    /// Plain HTTP.
    Http,
    /// HTTPS.
    Https,
}

impl Entrypoint {
    /// `http` or `https`: the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Entrypoint::Http => "http",
            Entrypoint::Https => "https",
        }
    }

    /// The URL scheme, for `X-Forwarded-Proto`.
    pub fn scheme(self) -> &'static str {
        self.as_str()
    }
}

/// What the proxy knows about a client connection.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// Our address the client connected to.
    pub local: SocketAddr,
    /// The listener.
    pub entrypoint: Entrypoint,
    /// The SNI the client sent in its TLS handshake.
    pub sni: Option<String>,
    /// The tracker the connection is counted in (upgraded tunnels count there too).
    pub tracker: Arc<ConnTracker>,
    /// `peer`'s IP and `local`'s port as header values (`X-Forwarded-For`, `X-Real-IP`,
    /// `X-Forwarded-Port`), built once per connection.
    pub(super) peer_header: HeaderValue,
    pub(super) port_header: HeaderValue,
}

impl ConnInfo {
    fn new(
        peer: SocketAddr,
        local: SocketAddr,
        entrypoint: Entrypoint,
        sni: Option<String>,
        tracker: Arc<ConnTracker>,
    ) -> ConnInfo {
        let ip = match peer.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        ConnInfo {
            peer,
            local,
            entrypoint,
            sni,
            tracker,
            peer_header: super::headers::shared_value(&ip.to_string())
                .unwrap_or(HeaderValue::from_static("unknown")),
            port_header: HeaderValue::from(local.port()),
        }
    }
}

/// Counts open connections and tells them to shut down gracefully.
#[derive(Debug)]
pub struct ConnTracker {
    open: AtomicUsize,
    idle: Notify,
    shutdown: watch::Sender<bool>,
    force: watch::Sender<bool>,
    /// `sluice_open_connections` handles by (entrypoint, protocol), looked up in the metrics
    /// registry once instead of twice per connection.
    gauges: [std::sync::OnceLock<metrics::Gauge>; 4],
}

impl Default for ConnTracker {
    fn default() -> Self {
        ConnTracker {
            open: AtomicUsize::new(0),
            idle: Notify::new(),
            shutdown: watch::channel(false).0,
            force: watch::channel(false).0,
            gauges: Default::default(),
        }
    }
}

impl ConnTracker {
    /// Open connections (upgraded tunnels included).
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Asks every connection to finish its in-flight requests and close; idle keep-alive
    /// connections close at once.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Closes every connection and tunnel still open (the grace period is over).
    pub fn force_close(&self) {
        self.force.send_replace(true);
    }

    /// Resolves once [`ConnTracker::force_close`] was called.
    pub(super) async fn forced(&self) {
        let mut rx = self.force.subscribe();
        let _ = rx.wait_for(|f| *f).await;
    }

    /// True once [`ConnTracker::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Waits until no connection is open.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }

    pub(super) fn enter(
        self: &Arc<Self>,
        entrypoint: Entrypoint,
        protocol: &'static str,
    ) -> ConnGuard {
        self.open.fetch_add(1, Ordering::SeqCst);
        let slot = match (entrypoint, protocol) {
            (Entrypoint::Http, "upgraded") => 1,
            (Entrypoint::Http, _) => 0,
            (Entrypoint::Https, "upgraded") => 3,
            (Entrypoint::Https, _) => 2,
        };
        let gauge = self.gauges[slot]
            .get_or_init(|| {
                metrics::gauge!("sluice_open_connections", "entrypoint" => entrypoint.as_str(), "protocol" => protocol)
            })
            .clone();
        gauge.increment(1.0);
        ConnGuard {
            tracker: self.clone(),
            gauge,
        }
    }
}

/// Counts one open connection (or tunnel) until dropped.
pub(super) struct ConnGuard {
    tracker: Arc<ConnTracker>,
    gauge: metrics::Gauge,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
        if self.tracker.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.tracker.idle.notify_waiters();
        }
    }
}

impl Proxy {
    /// Serves one accepted plain-HTTP connection (HTTP/1.1, or h2c with prior knowledge) until
    /// it closes or shutdown completes it.
    pub async fn serve_http(
        self: Arc<Self>,
        tracker: Arc<ConnTracker>,
        stream: TcpStream,
        peer: SocketAddr,
    ) {
        let local = stream.local_addr().unwrap_or(peer);
        let _ = stream.set_nodelay(true);
        let info = ConnInfo::new(peer, local, Entrypoint::Http, None, tracker.clone());
        let guard = tracker.enter(Entrypoint::Http, "http");
        self.serve_io(tracker.clone(), stream, info).await;
        drop(guard);
    }

    /// Serves one accepted TLS connection: handshake (bounded by the handshake timeout), then
    /// HTTP/1.1 or HTTP/2 as negotiated by ALPN.
    pub async fn serve_tls(
        self: Arc<Self>,
        tracker: Arc<ConnTracker>,
        acceptor: tokio_rustls::TlsAcceptor,
        stream: TcpStream,
        peer: SocketAddr,
    ) {
        let local = stream.local_addr().unwrap_or(peer);
        let _ = stream.set_nodelay(true);
        let guard = tracker.enter(Entrypoint::Https, "tls");
        let tls =
            match tokio::time::timeout(self.config.tls_handshake_timeout, acceptor.accept(stream))
                .await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    metrics::counter!("sluice_tls_handshake_errors_total", "reason" => "error")
                        .increment(1);
                    return;
                }
                Err(_) => {
                    metrics::counter!("sluice_tls_handshake_errors_total", "reason" => "timeout")
                        .increment(1);
                    return;
                }
            };
        if tls.get_ref().1.alpn_protocol() == Some(crate::tls::ALPN_ACME_TLS) {
            // A TLS-ALPN-01 validation: the handshake was the answer; never serve HTTP on it.
            metrics::counter!("sluice_acme_challenges_answered_total", "type" => "tls-alpn-01")
                .increment(1);
            let mut tls = tls;
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
            return;
        }
        let sni = tls.get_ref().1.server_name().map(str::to_ascii_lowercase);
        let info = ConnInfo::new(peer, local, Entrypoint::Https, sni, tracker.clone());
        self.serve_io(tracker.clone(), tls, info).await;
        drop(guard);
    }

    async fn serve_io<I>(self: Arc<Self>, tracker: Arc<ConnTracker>, io: I, info: ConnInfo)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let info = Arc::new(info);
        let proxy = self.clone();
        let svc = service_fn(move |req| super::service(proxy.clone(), info.clone(), req));
        let mut conn = pin!(
            self.server
                .serve_connection_with_upgrades(TokioIo::new(io), svc)
        );
        let mut shutdown = tracker.shutdown.subscribe();
        if *shutdown.borrow_and_update() {
            conn.as_mut().graceful_shutdown();
        }
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "connection error");
                }
                return;
            }
            _ = shutdown.changed() => conn.as_mut().graceful_shutdown(),
        }
        tokio::select! {
            res = conn => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "connection error during shutdown");
                }
            }
            // Grace period over: dropping the connection closes it.
            () = tracker.forced() => {}
        }
    }
}

/// Copies bytes both ways between an upgraded client connection and an upgraded upstream
/// connection (WebSocket), keeping the endpoint's outstanding count up meanwhile.
pub(super) async fn tunnel(
    client: OnUpgrade,
    upstream: OnUpgrade,
    inflight: InFlight,
    guard: ConnGuard,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    let tracker = guard.tracker.clone();
    tokio::select! {
        res = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
            if let Err(e) = res {
                tracing::debug!(error = %e, "tunnel closed with error");
            }
        }
        () = tracker.forced() => {}
    }
    drop(inflight);
    drop(guard);
}
