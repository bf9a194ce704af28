//! Serving one accepted connection: plain HTTP (HTTP/1.1 or h2c) or TLS (handshake, then
//! HTTP/1.1 or HTTP/2 by ALPN), until it closes or shutdown completes it.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::Proxy;
use super::conn::{ConnInfo, ConnTracker, Entrypoint};

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
        let svc = service_fn(move |req| super::request::service(proxy.clone(), info.clone(), req));
        let mut conn = pin!(
            self.server
                .serve_connection_with_upgrades(TokioIo::new(io), svc)
        );
        let mut shutdown = tracker.shutdown_signal();
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
