//! HTTP/2 upstream connections (`h2c` and `GRPCS` backends): one multiplexed connection per
//! endpoint, made on first use and again once it has closed.
//!
//! Requests carry one authority: the URI's, which the caller sets to the host sent upstream
//! (the Ingress host, or `upstream-vhost`), with no `host` header beside it (RFC 9113 section
//! 8.3.1). hyper-util's pooled client would have to be given the endpoint address as the
//! authority, since that is what it connects to.
//!
//! Concurrent requests share the connection; while it is being made they wait for it rather
//! than each open their own.

use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2::{Builder, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::body::ProxyBody;
use super::connect::TlsTarget;
use super::pool::SendError;

/// The HTTP/2 connection to one endpoint.
#[derive(Debug)]
pub(crate) struct H2Pool {
    addr: SocketAddr,
    tls: Option<TlsTarget>,
    conn: tokio::sync::Mutex<Option<SendRequest<ProxyBody>>>,
}

impl H2Pool {
    /// No connection yet to `addr`; TLS (with `h2` by ALPN) when `tls` is set.
    pub(crate) fn new(addr: SocketAddr, tls: Option<TlsTarget>) -> H2Pool {
        H2Pool {
            addr,
            tls,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    /// Sends `req` on the endpoint's connection, made first if there is none open.
    pub(crate) async fn send(
        &self,
        connect_timeout: Duration,
        idle_timeout: Duration,
        req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, SendError> {
        let mut sender = {
            let mut slot = self.conn.lock().await;
            match slot.as_ref() {
                Some(s) if !s.is_closed() => s.clone(),
                _ => {
                    let s = self.connect(connect_timeout, idle_timeout).await?;
                    *slot = Some(s.clone());
                    s
                }
            }
        };
        // Waits for a stream slot (the server's concurrent stream limit).
        sender.ready().await.map_err(SendError::Http)?;
        sender.send_request(req).await.map_err(SendError::Http)
    }

    async fn connect(
        &self,
        timeout: Duration,
        idle_timeout: Duration,
    ) -> Result<SendRequest<ProxyBody>, SendError> {
        let addr = self.addr;
        let stream = super::connect::tcp(addr, timeout)
            .await
            .map_err(SendError::Connect)?;
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            // A connection nobody uses is pinged, and closed when the pings go unanswered
            // or after the idle timeout's worth of silence.
            .keep_alive_interval(idle_timeout)
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(false);
        match &self.tls {
            None => {
                let (sender, conn) = builder
                    .handshake(TokioIo::new(stream))
                    .await
                    .map_err(SendError::Http)?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(upstream = %addr, error = %e, "upstream h2c connection closed with an error");
                    }
                });
                Ok(sender)
            }
            Some(tls) => {
                let stream = tls
                    .handshake(addr, stream, timeout)
                    .await
                    .map_err(SendError::Connect)?;
                let (sender, conn) = builder
                    .handshake(TokioIo::new(stream))
                    .await
                    .map_err(SendError::Http)?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(upstream = %addr, error = %e, "upstream h2 connection closed with an error");
                    }
                });
                Ok(sender)
            }
        }
    }
}
