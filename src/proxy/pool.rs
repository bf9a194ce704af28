//! HTTP/1.1 upstream connections: a small pool of idle connections per endpoint, for hyper's
//! connection-level client and for sluice's own (`h1::client`, plain TCP: a pooled
//! connection there is its socket alone, checked for a close before reuse).
//!
//! hyper-util's pooled client costs, per request, a pool lookup hashed by scheme and
//! authority (SipHash), a spawned task that waits for the connection to become idle again,
//! and a connection-info extension on the response. Here the endpoint *is* the pool key: each
//! endpoint state (`balance`) holds one [`ConnPool`], a stack of idle connections (most
//! recently used first, so warm connections are reused and cold ones age out), taken and
//! returned under an uncontended mutex, and a connection goes back when the response body it
//! carried has ended.
//!
//! A connection that sat idle longer than the upstream idle timeout is closed when the pool
//! next looks at it (on a checkout, or at the bottom of the stack on a return); an upstream
//! that closes an idle connection first ends its task, and the pool skips it. A request sent on
//! a reused connection that turns out to be closed before anything was written is sent again
//! on another connection, as hyper-util does.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use super::body::ProxyBody;
use super::connect::TlsTarget;
use super::h1::client::Conn;

/// Idle connections kept per endpoint; more are closed when returned.
const MAX_IDLE_PER_ENDPOINT: usize = 1024;

/// The idle HTTP/1.1 connections to one endpoint address.
#[derive(Debug)]
pub(crate) struct ConnPool {
    addr: SocketAddr,
    /// TLS on each connection (`HTTPS` backends).
    tls: Option<TlsTarget>,
    idle: Mutex<Vec<Idle>>,
    /// Idle connections of sluice's own client (`h1::client`, plain TCP only).
    lean: Mutex<Vec<LeanIdle>>,
}

impl ConnPool {
    /// An empty pool for `addr`.
    pub(crate) fn new(addr: SocketAddr) -> ConnPool {
        ConnPool::with_tls(addr, None)
    }

    /// An empty pool for `addr` whose connections speak TLS when `tls` is set.
    pub(crate) fn with_tls(addr: SocketAddr, tls: Option<TlsTarget>) -> ConnPool {
        ConnPool {
            addr,
            tls,
            idle: Mutex::new(Vec::new()),
            lean: Mutex::new(Vec::new()),
        }
    }
}

/// An idle connection in an endpoint's pool.
#[derive(Debug)]
struct Idle {
    sender: SendRequest<ProxyBody>,
    since: Instant,
}

/// An idle connection of sluice's own client: its socket, and no buffer.
#[derive(Debug)]
struct LeanIdle {
    conn: Conn,
    since: Instant,
}

impl ConnPool {
    /// The endpoint's address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The most recently used idle connection of sluice's client that is still open and not
    /// idle for too long at `now` (the caller's clock read, taken just before).
    pub(crate) fn take_lean(&self, idle_timeout: Duration, now: Instant) -> Option<Conn> {
        let mut idle = self.lean.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(mut c) = idle.pop() {
            if now.saturating_duration_since(c.since) <= idle_timeout && c.conn.is_open() {
                return Some(c.conn);
            }
        }
        None
    }

    /// Returns a connection of sluice's client whose last response ended cleanly.
    pub(crate) fn put_lean(&self, conn: Conn, idle_timeout: Duration) {
        let now = Instant::now();
        let mut idle = self.lean.lock().unwrap_or_else(PoisonError::into_inner);
        let stale = idle
            .iter()
            .take_while(|c| now.duration_since(c.since) > idle_timeout)
            .count();
        if stale > 0 {
            idle.drain(..stale);
        }
        if idle.len() < MAX_IDLE_PER_ENDPOINT {
            idle.push(LeanIdle { conn, since: now });
        }
    }
}

/// Why a request did not get a response.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The TCP connect failed or timed out: nothing was sent.
    Connect(io::Error),
    /// The connection or the exchange failed.
    Http(hyper::Error),
}

/// A connection carrying a response: goes back to its endpoint's pool once the response body
/// has ended ([`Checkout::release`]), closes if dropped before.
#[derive(Debug)]
pub(crate) struct Checkout {
    sender: SendRequest<ProxyBody>,
    pool: Arc<ConnPool>,
    idle_timeout: Duration,
}

impl Checkout {
    /// The response this connection carried has been read to the end: the connection is free
    /// for the next request.
    pub(crate) fn release(self) {
        let Checkout {
            mut sender,
            pool,
            idle_timeout,
        } = self;
        if sender.is_ready() {
            put(&pool, sender, idle_timeout);
        } else if !sender.is_closed()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            // The connection task has not caught up with the end of the body yet.
            rt.spawn(async move {
                if sender.ready().await.is_ok() {
                    put(&pool, sender, idle_timeout);
                }
            });
        }
    }
}

/// Sends `req` to the pool's endpoint on an idle connection, or on a new one.
pub(crate) async fn send(
    pool: &Arc<ConnPool>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    mut req: Request<ProxyBody>,
) -> Result<(Response<Incoming>, Checkout), SendError> {
    loop {
        let (mut sender, reused) = match take(pool, idle_timeout) {
            Some(sender) => (sender, true),
            None => (connect(pool, connect_timeout).await?, false),
        };
        match sender.try_send_request(req).await {
            Ok(resp) => {
                return Ok((
                    resp,
                    Checkout {
                        sender,
                        pool: pool.clone(),
                        idle_timeout,
                    },
                ));
            }
            Err(mut e) => match e.take_message() {
                // Not written: the pooled connection had been closed by the upstream. The
                // next try takes another idle connection, or a new one.
                Some(unsent) if reused => req = unsent,
                _ => return Err(SendError::Http(e.into_error())),
            },
        }
    }
}

/// The most recently used idle connection that is still open and not idle for too long.
fn take(pool: &ConnPool, idle_timeout: Duration) -> Option<SendRequest<ProxyBody>> {
    let mut idle = pool.idle.lock().unwrap_or_else(PoisonError::into_inner);
    while let Some(c) = idle.pop() {
        if c.sender.is_ready() && c.since.elapsed() <= idle_timeout {
            return Some(c.sender);
        }
        // Closed, or idle too long: dropping the handle ends the connection.
    }
    None
}

fn put(pool: &ConnPool, sender: SendRequest<ProxyBody>, idle_timeout: Duration) {
    let now = Instant::now();
    let mut idle = pool.idle.lock().unwrap_or_else(PoisonError::into_inner);
    // The oldest are at the bottom: close the ones idle for too long.
    let stale = idle
        .iter()
        .take_while(|c| now.duration_since(c.since) > idle_timeout || c.sender.is_closed())
        .count();
    if stale > 0 {
        idle.drain(..stale);
    }
    if idle.len() < MAX_IDLE_PER_ENDPOINT {
        idle.push(Idle { sender, since: now });
    }
}

async fn connect(pool: &ConnPool, timeout: Duration) -> Result<SendRequest<ProxyBody>, SendError> {
    let addr = pool.addr;
    let stream = super::connect::tcp(addr, timeout)
        .await
        .map_err(SendError::Connect)?;
    let builder = hyper::client::conn::http1::Builder::new();
    let sender = match &pool.tls {
        None => {
            let (sender, conn) = builder
                .handshake(TokioIo::new(stream))
                .await
                .map_err(SendError::Http)?;
            tokio::spawn(async move {
                // With upgrades: a 101 response hands the connection over to a WebSocket
                // tunnel.
                if let Err(e) = conn.with_upgrades().await {
                    tracing::debug!(upstream = %addr, error = %e, "upstream connection closed with an error");
                }
            });
            sender
        }
        // Boxed: the TLS handshake's and the TLS stream's state would otherwise be part of
        // every plain request's future (moved, so copied, with it).
        Some(tls) => Box::pin(connect_tls(tls, addr, stream, timeout)).await?,
    };
    Ok(sender)
}

/// The TLS handshake and the HTTP/1.1 handshake over it (`HTTPS` backends).
async fn connect_tls(
    tls: &TlsTarget,
    addr: SocketAddr,
    stream: tokio::net::TcpStream,
    timeout: Duration,
) -> Result<SendRequest<ProxyBody>, SendError> {
    let stream = tls
        .handshake(addr, stream, timeout)
        .await
        .map_err(SendError::Connect)?;
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(SendError::Http)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(upstream = %addr, error = %e, "upstream TLS connection closed with an error");
        }
    });
    Ok(sender)
}

/// Idle connections in the pool (both clients').
#[cfg(test)]
pub(super) fn idle_count(pool: &ConnPool) -> usize {
    pool.idle
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .len()
        + pool
            .lean
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::proxy::body;

    /// A backend answering every request on a connection with `hello`, closing after each
    /// answer when `close` is set; counts accepted connections.
    pub(crate) async fn backend(close: bool) -> (SocketAddr, Arc<AtomicUsize>) {
        let answer: &'static [u8] = if close {
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello"
        } else {
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: keep-alive\r\n\r\nhello"
        };
        canned(answer, close).await
    }

    /// A backend answering each request head on a connection with `answer`, then closing
    /// if `close`; counts accepted connections.
    pub(crate) async fn canned(
        answer: &'static [u8],
        close: bool,
    ) -> (SocketAddr, Arc<AtomicUsize>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Ok(n) = s.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            if s.write_all(answer).await.is_err() {
                                return;
                            }
                            if close {
                                let _ = s.shutdown().await;
                                return;
                            }
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    /// One GET on the pool, the body read to its end, the connection released.
    async fn get(pool: &Arc<ConnPool>, idle_timeout: Duration) -> String {
        let req = Request::get("/")
            .header(http::header::HOST, "x")
            .body(body::empty())
            .unwrap();
        let (resp, checkout) = send(pool, Duration::from_secs(2), idle_timeout, req)
            .await
            .expect("response");
        let text = resp.into_body().collect().await.expect("body").to_bytes();
        checkout.release();
        String::from_utf8(text.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_finished_response_returns_its_connection_for_the_next_request() {
        let (addr, accepted) = backend(false).await;
        let pool = Arc::new(ConnPool::new(addr));
        for _ in 0..5 {
            assert_eq!(get(&pool, Duration::from_secs(30)).await, "hello");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection, reused");
        assert_eq!(idle_count(&pool), 1);
    }

    #[tokio::test]
    async fn connections_the_upstream_closes_are_not_reused() {
        let (addr, accepted) = backend(true).await;
        let pool = Arc::new(ConnPool::new(addr));
        for _ in 0..3 {
            assert_eq!(get(&pool, Duration::from_secs(30)).await, "hello");
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            3,
            "a new connection each time"
        );
    }

    #[tokio::test]
    async fn connections_idle_longer_than_the_timeout_are_closed_not_reused() {
        let (addr, accepted) = backend(false).await;
        let pool = Arc::new(ConnPool::new(addr));
        for _ in 0..3 {
            assert_eq!(get(&pool, Duration::ZERO).await, "hello");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
        // Each return dropped the stale one below it: at most the last one is pooled.
        assert!(idle_count(&pool) <= 1, "{}", idle_count(&pool));
    }

    #[tokio::test]
    async fn a_checkout_dropped_without_release_closes_the_connection() {
        let (addr, accepted) = backend(false).await;
        let pool = Arc::new(ConnPool::new(addr));
        let req = Request::get("/").body(body::empty()).unwrap();
        let (resp, checkout) = send(&pool, Duration::from_secs(2), Duration::from_secs(30), req)
            .await
            .unwrap();
        drop(resp);
        drop(checkout);
        assert_eq!(idle_count(&pool), 0, "not returned mid-message");
        assert_eq!(get(&pool, Duration::from_secs(30)).await, "hello");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }
}
