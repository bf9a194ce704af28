//! TLS passthrough (`ssl-passthrough`): on the HTTPS entrypoint, a connection whose
//! ClientHello names (by SNI) a host whose route for `/` is a passthrough backend is not
//! terminated: its bytes, the ClientHello included, are spliced to an endpoint of that backend,
//! which speaks TLS with the client itself.
//!
//! The ClientHello is read by rustls's own parser ([`tokio_rustls::LazyConfigAcceptor`]) over
//! a [`Recorded`] socket, which keeps the bytes read until the decision: replayed to the
//! backend for passthrough, dropped when sluice goes on to terminate the handshake. Only
//! while the published table has a passthrough backend is the ClientHello read this way; a
//! table without one terminates every connection as before.
//!
//! A passed-through connection honours the backend's source ranges (`allow-source-range`,
//! `deny-source-range`: the connection is closed) and its closed state (the Ingress asks for
//! what cannot be honoured: closed). It counts as a request in progress on its connection (never
//! closed as idle by the connection limit), keeps its endpoint's outstanding count up, and runs
//! until either side closes or shutdown's grace period ends, like an upgraded tunnel.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::Proxy;
use super::activity::{Activity, RequestGuard};
use super::conn::{ConnGuard, ConnTracker};
use super::snapshot::Snapshot;

/// A client socket that keeps a copy of what is read while recording (the ClientHello, until
/// the passthrough decision).
pub(super) struct Recorded<I> {
    inner: I,
    record: Option<Vec<u8>>,
}

impl<I> Recorded<I> {
    /// `inner`, recording what is read when `record`.
    pub(super) fn new(inner: I, record: bool) -> Recorded<I> {
        Recorded {
            inner,
            record: record.then(Vec::new),
        }
    }

    /// Stops recording and frees what was recorded.
    pub(super) fn stop_recording(&mut self) {
        self.record = None;
    }

    /// The socket and the bytes recorded.
    pub(super) fn into_parts(self) -> (I, Vec<u8>) {
        (self.inner, self.record.unwrap_or_default())
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Recorded<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(record)) = (&res, this.record.as_mut()) {
            record.extend_from_slice(&buf.filled()[before..]);
        }
        res
    }
}

write_through!(Recorded);

/// The backend (index into the snapshot's upstreams) a ClientHello is passed through to:
/// its SNI's route for `/` (the default backend does not count) is a passthrough backend.
/// An ACME TLS-ALPN-01 validation (ALPN `acme-tls/1`) is never passed through: sluice
/// answers it.
pub(super) fn target(
    snapshot: &Snapshot,
    hello: &rustls::server::ClientHello<'_>,
) -> Option<usize> {
    let sni = hello.server_name()?;
    if hello
        .alpn()
        .is_some_and(|mut protocols| protocols.any(|p| p == crate::tls::ALPN_ACME_TLS))
    {
        return None;
    }
    let matched = snapshot.table.lookup(sni, "/")?;
    matched.route?;
    snapshot
        .upstreams
        .get(matched.backend_index)
        .filter(|u| u.settings.ssl_passthrough)
        .map(|_| matched.backend_index)
}

/// How a passed-through connection ended before its splice (`result` label).
fn refused(snapshot: &Snapshot, index: usize, result: &'static str) {
    let b = &snapshot.table.backends()[index];
    metrics::counter!("sluice_passthrough_connections_total", "ingress" => b.ingress.to_string(), "service" => b.service.to_string(), "result" => result)
        .increment(1);
}

/// One passed-through connection, until it closes.
pub(super) struct Splice {
    pub(super) snapshot: Arc<Snapshot>,
    pub(super) index: usize,
    pub(super) client: Recorded<TcpStream>,
    pub(super) peer: SocketAddr,
    pub(super) tracker: Arc<ConnTracker>,
    pub(super) activity: Arc<Activity>,
    pub(super) guard: ConnGuard,
}

impl Proxy {
    /// Connects a passed-through client to an endpoint of its backend (a second endpoint
    /// when the first refuses), replays the ClientHello and copies bytes both ways until
    /// either side closes or the shutdown grace period ends. A closed backend, a client
    /// outside its source ranges, or no endpoint reachable closes the client's connection.
    pub(super) async fn splice(&self, s: Splice) {
        let Splice {
            snapshot,
            index,
            client,
            peer,
            tracker,
            activity,
            guard,
        } = s;
        let upstream = &snapshot.upstreams[index];
        let backend = &snapshot.table.backends()[index];
        if upstream.settings.closed {
            return refused(&snapshot, index, "closed");
        }
        if !upstream.settings.admits(Some(peer.ip())) {
            tracing::debug!(%peer, ingress = %backend.ingress, "TLS passthrough refused: client outside the source ranges");
            return refused(&snapshot, index, "forbidden");
        }
        // Counted as a request in progress: the connection limit never closes it as idle.
        activity.request_started();
        let _busy = RequestGuard(activity.clone());
        let mut avoid = None;
        let mut connected = None;
        for _ in 0..2 {
            let Some(endpoint) = upstream.balancer.pick(avoid) else {
                break;
            };
            match super::connect::tcp(endpoint.addr, upstream.connect_timeout).await {
                Ok(stream) => {
                    endpoint.mark_up();
                    connected = Some((endpoint.start(), stream));
                    break;
                }
                Err(e) => {
                    tracing::debug!(endpoint = %endpoint.addr, error = %e, "TLS passthrough: connect failed");
                    endpoint.mark_down();
                    avoid = Some(endpoint.addr);
                }
            }
        }
        let Some((inflight, mut server)) = connected else {
            let result = if upstream.balancer.endpoints().is_empty() {
                "no_endpoints"
            } else {
                "connect_error"
            };
            tracing::debug!(%peer, ingress = %backend.ingress, service = %backend.service, result, "TLS passthrough: no endpoint reachable; closing");
            return refused(&snapshot, index, result);
        };
        refused(&snapshot, index, "spliced");
        let (ingress, service) = (backend.ingress.to_string(), backend.service.to_string());
        let bytes_in = metrics::counter!("sluice_passthrough_bytes_total", "ingress" => ingress.clone(), "service" => service.clone(), "direction" => "in");
        let bytes_out = metrics::counter!("sluice_passthrough_bytes_total", "ingress" => ingress, "service" => service, "direction" => "out");
        let (client, hello) = client.into_parts();
        bytes_in.increment(hello.len() as u64);
        let endpoint = inflight.endpoint().addr;
        tracing::debug!(%peer, %endpoint, "TLS passthrough");
        let copy = async {
            server.write_all(&hello).await?;
            drop(hello);
            let mut client = Counted {
                inner: client,
                read: bytes_in,
                written: bytes_out,
            };
            tokio::io::copy_bidirectional(&mut client, &mut server).await
        };
        tokio::select! {
            res = copy => {
                if let Err(e) = res {
                    tracing::debug!(%peer, %endpoint, error = %e, "TLS passthrough closed with error");
                }
            }
            () = tracker.forced() => {}
        }
        drop(inflight);
        drop(guard);
    }
}

/// The client side of a splice, counting bytes as they pass.
struct Counted<I> {
    inner: I,
    read: metrics::Counter,
    written: metrics::Counter,
}

impl<I: AsyncRead + Unpin> AsyncRead for Counted<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if res.is_ready() {
            self.read.increment((buf.filled().len() - before) as u64);
        }
        res
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Counted<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = res {
            self.written.increment(n as u64);
        }
        res
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        Backend, BackendSettings, HostMatch, Model, ObjectRef, PathKind, PathMatch, Route,
        RouteSource, ServicePort,
    };
    use crate::routing::RoutingTable;
    use tokio::io::AsyncReadExt;

    /// A table with `pass.test` and `*.wild.test` (passthrough, path `/`), `api.test`
    /// (passthrough, path `/api` only) and `term.test` (terminated).
    fn proxy() -> Arc<Proxy> {
        let backend = |name: &str, passthrough: bool| {
            Arc::new(Backend {
                ingress: ObjectRef::new("ns", name),
                service: ObjectRef::new("ns", name),
                port: ServicePort::Number(443),
                endpoints: Vec::new(),
                settings: BackendSettings {
                    ssl_passthrough: passthrough,
                    ..BackendSettings::default()
                },
            })
        };
        let route = |host: &str, path: &str, backend: &Arc<Backend>| Route {
            host: HostMatch::parse(host).unwrap(),
            path: PathMatch::new(PathKind::Prefix, path).unwrap(),
            backend: backend.clone(),
            source: RouteSource {
                ingress: backend.ingress.clone(),
                rule: 0,
                path: 0,
            },
            redirect_to_https: false,
            canary: None,
            fallback: None,
        };
        let (pass, term) = (backend("pass", true), backend("term", false));
        let table = RoutingTable::compile(&Model {
            routes: vec![
                route("pass.test", "/", &pass),
                route("*.wild.test", "/", &pass),
                route("api.test", "/api", &pass),
                route("term.test", "/", &term),
            ]
            .into(),
            default_backend: Some(pass.clone()),
            ..Model::default()
        });
        let proxy = Proxy::new(
            super::super::ProxyConfig::default(),
            Arc::new(arc_swap::ArcSwap::from_pointee(
                crate::tls::CertStore::empty(crate::tls::default_certificate().unwrap()),
            )),
        );
        proxy.publish(table);
        proxy
    }

    /// The ClientHello a rustls client sends for `sni` offering `alpn`, as rustls's server
    /// side parses it: the backend index [`target`] chooses for it.
    fn target_for(proxy: &Proxy, sni: &str, alpn: &[&[u8]]) -> Option<usize> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut hello = Vec::new();
        client.write_tls(&mut hello).unwrap();
        let mut acceptor = rustls::server::Acceptor::default();
        acceptor.read_tls(&mut hello.as_slice()).unwrap();
        let accepted = acceptor
            .accept()
            .ok()
            .flatten()
            .expect("a whole ClientHello");
        target(&proxy.snapshot(), &accepted.client_hello())
    }

    #[test]
    fn the_sni_route_for_the_root_path_decides() {
        let proxy = proxy();
        assert!(proxy.snapshot().passthrough);
        let pass = target_for(&proxy, "pass.test", &[]).expect("pass.test");
        assert_eq!(target_for(&proxy, "x.wild.test", &[b"h2"]), Some(pass));
        // A terminated host, a host whose `/` is not a passthrough route (the default backend
        // does not count), a host nobody routes, an IP address (no SNI).
        for sni in ["term.test", "api.test", "other.test", "127.0.0.1"] {
            assert_eq!(target_for(&proxy, sni, &[]), None, "{sni}");
        }
        // An ACME TLS-ALPN-01 validation is sluice's to answer.
        assert_eq!(
            target_for(&proxy, "pass.test", &[crate::tls::ALPN_ACME_TLS]),
            None
        );
    }

    #[tokio::test]
    async fn recorded_keeps_what_was_read_until_told_to_stop() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(b"hello").await.unwrap();
        let mut r = Recorded::new(b, true);
        let mut buf = [0u8; 5];
        r.read_exact(&mut buf).await.unwrap();
        a.write_all(b" world").await.unwrap();
        let mut more = [0u8; 6];
        r.read_exact(&mut more).await.unwrap();
        let (_, recorded) = r.into_parts();
        assert_eq!(recorded, b"hello world");

        let (mut a, b) = tokio::io::duplex(64);
        let mut r = Recorded::new(b, true);
        a.write_all(b"abc").await.unwrap();
        r.read_exact(&mut [0u8; 3]).await.unwrap();
        r.stop_recording();
        a.write_all(b"def").await.unwrap();
        r.read_exact(&mut [0u8; 3]).await.unwrap();
        assert!(r.into_parts().1.is_empty());

        let (mut a, b) = tokio::io::duplex(64);
        let mut r = Recorded::new(b, false);
        a.write_all(b"abc").await.unwrap();
        r.read_exact(&mut [0u8; 3]).await.unwrap();
        assert!(r.into_parts().1.is_empty());
    }
}
