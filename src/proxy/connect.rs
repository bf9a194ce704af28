//! Upstream TCP connections: to an endpoint address, with a connect timeout and `TCP_NODELAY`
//! ([`tcp`]), and as a connector for hyper-util's client (h2c upstreams).
//!
//! hyper-util's `HttpConnector` does the same plus a DNS step (our endpoints are IP
//! addresses) and attaches connection info to *every* response, which costs two allocations
//! per request that nothing here reads.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Connects to `http://IP:port` URIs.
#[derive(Clone, Debug)]
pub(crate) struct Connector {
    timeout: Duration,
}

impl Connector {
    pub(crate) fn new(timeout: Duration) -> Connector {
        Connector { timeout }
    }
}

/// The endpoint address a URI names: an IP literal and a port (80 when absent).
fn endpoint_addr(uri: &Uri) -> io::Result<SocketAddr> {
    let invalid = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("upstream URI {uri} does not name an IP address"),
        )
    };
    let host = uri.host().ok_or_else(invalid)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let ip: IpAddr = host.parse().map_err(|_| invalid())?;
    Ok(SocketAddr::new(ip, uri.port_u16().unwrap_or(80)))
}

impl tower_service::Service<Uri> for Connector {
    type Response = Upstream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Upstream>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let timeout = self.timeout;
        Box::pin(async move {
            let addr = endpoint_addr(&uri)?;
            Ok(Upstream(TokioIo::new(tcp(addr, timeout).await?)))
        })
    }
}

/// A TCP connection to `addr` with `TCP_NODELAY`, within `timeout` (a `TimedOut` error
/// after it).
pub(crate) async fn tcp(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect to {addr} timed out after {timeout:?}"),
            )
        })?
        .map_err(|e| io::Error::new(e.kind(), format!("connect to {addr}: {e}")))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A connection to an upstream endpoint.
#[derive(Debug)]
pub(crate) struct Upstream(TokioIo<TcpStream>);

impl Connection for Upstream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl Read for Upstream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl Write for Upstream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_addresses() {
        let a = |s: &str| endpoint_addr(&s.parse().unwrap());
        assert_eq!(
            a("http://10.0.0.1:8080/x").unwrap(),
            "10.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            a("http://[fd00::1]:81/").unwrap(),
            "[fd00::1]:81".parse().unwrap()
        );
        assert_eq!(
            a("http://10.0.0.1/").unwrap(),
            "10.0.0.1:80".parse().unwrap()
        );
        let e = a("http://example.com/").unwrap_err();
        assert!(e.to_string().contains("does not name an IP address"), "{e}");
    }
}
