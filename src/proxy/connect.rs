//! Upstream connections: TCP to an endpoint address, with a connect timeout and
//! `TCP_NODELAY` ([`tcp`]), and TLS on top for `HTTPS` and `GRPCS` backends ([`TlsTarget`]).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

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

/// How TLS is spoken to a backend: the client configuration (roots or no verification,
/// client certificate, ALPN, SNI on or off) and the name verified.
#[derive(Clone)]
pub(crate) struct TlsTarget {
    pub(crate) connector: tokio_rustls::TlsConnector,
    pub(crate) name: ServerName<'static>,
    /// The configuration offers `h2` by ALPN (else `http/1.1`).
    pub(crate) h2: bool,
}

impl std::fmt::Debug for TlsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTarget")
            .field("name", &self.name)
            .field("h2", &self.h2)
            .finish_non_exhaustive()
    }
}

impl TlsTarget {
    /// A target from a client configuration.
    pub(crate) fn new(config: Arc<rustls::ClientConfig>, name: ServerName<'static>) -> TlsTarget {
        let h2 = config.alpn_protocols.iter().any(|p| p == b"h2");
        TlsTarget {
            connector: tokio_rustls::TlsConnector::from(config),
            name,
            h2,
        }
    }

    /// TLS over `stream`, within `timeout` (counted with the TCP connect's). A handshake that
    /// fails (an unverifiable certificate, a name mismatch, no common protocol) is a connect
    /// error: nothing was sent.
    pub(crate) async fn handshake(
        &self,
        addr: SocketAddr,
        stream: TcpStream,
        timeout: Duration,
    ) -> io::Result<TlsStream<TcpStream>> {
        let tls = tokio::time::timeout(timeout, self.connector.connect(self.name.clone(), stream))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("TLS handshake with {addr} timed out after {timeout:?}"),
                )
            })?
            .map_err(|e| {
                io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    TlsFailed(format!("TLS handshake with {addr} failed: {e}")),
                )
            })?;
        if self.h2 && tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                TlsFailed(format!(
                    "{addr} does not speak HTTP/2 over TLS (no h2 by ALPN)"
                )),
            ));
        }
        Ok(tls)
    }
}

/// A TLS handshake with an upstream that failed (inside the connect `io::Error`).
#[derive(Debug)]
pub(crate) struct TlsFailed(pub(crate) String);

impl std::fmt::Display for TlsFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsFailed {}
