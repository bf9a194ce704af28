//! Body types: one boxed body type for everything the proxy sends. A leaf module: the pool,
//! the balancer and the forwarding code build on it, never the other way round.

use bytes::Bytes;
use http_body::Body;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// Any error a body may produce.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every request sent upstream and every response sent downstream.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// A complete body from bytes.
pub fn full(data: impl Into<Bytes>) -> ProxyBody {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A client's request body: hyper's (HTTP/2, and HTTP/1.1 on the hyper engine), or one of
/// the lean HTTP/1.1 server's (`h1::server`), boxed.
pub enum ClientBody {
    /// Read by hyper's server.
    Hyper(hyper::body::Incoming),
    /// Read by sluice's own HTTP/1.1 server (or empty).
    Boxed(ProxyBody),
}

impl std::fmt::Debug for ClientBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientBody::Hyper(_) => "ClientBody::Hyper",
            ClientBody::Boxed(_) => "ClientBody::Boxed",
        })
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ClientBody::Hyper(b) => std::pin::Pin::new(b).poll_frame(cx).map_err(Into::into),
            ClientBody::Boxed(b) => std::pin::Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Hyper(b) => b.is_end_stream(),
            ClientBody::Boxed(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            ClientBody::Hyper(b) => b.size_hint(),
            ClientBody::Boxed(b) => b.size_hint(),
        }
    }
}

/// Boxes any body whose error converts into [`BoxError`].
pub fn boxed<B>(body: B) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// A body that keeps `guard` alive until the body ends or is dropped (a connection-limit
/// permit held for as long as the answer streams).
struct Hold<T> {
    inner: ProxyBody,
    _guard: T,
}

impl<T: Unpin> Body for Hold<T> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// `body`, keeping `guard` alive as long as it is.
pub fn hold<T: Send + Unpin + 'static>(body: ProxyBody, guard: T) -> ProxyBody {
    Hold {
        inner: body,
        _guard: guard,
    }
    .boxed_unsync()
}

/// How far a request body has gone upstream: when the upstream connection last asked for more
/// of it, and whether it has all been taken. hyper asks for the next piece only when the
/// connection can write, so a body not asked for is one the upstream is not reading.
#[derive(Debug)]
pub struct Progress {
    last_ms: std::sync::atomic::AtomicU64,
    done: std::sync::atomic::AtomicBool,
}

impl Progress {
    /// Milliseconds (of `super::clock`) since the body was last asked for; 0 once it has
    /// all gone.
    pub(crate) fn idle_ms(&self, now_ms: u64) -> Option<u64> {
        use std::sync::atomic::Ordering;
        if self.done.load(Ordering::Relaxed) {
            return None;
        }
        Some(now_ms.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

struct Watched {
    inner: ProxyBody,
    progress: std::sync::Arc<Progress>,
    now_ms: fn() -> u64,
}

impl Body for Watched {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        use std::sync::atomic::Ordering;
        let now = (self.now_ms)();
        self.progress.last_ms.store(now, Ordering::Relaxed);
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, std::task::Poll::Ready(None)) || self.inner.is_end_stream() {
            self.progress.done.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// `body`, with the [`Progress`] of its way upstream (`now_ms`: the clock it is stamped with).
pub(crate) fn watched(
    body: ProxyBody,
    now_ms: fn() -> u64,
) -> (ProxyBody, std::sync::Arc<Progress>) {
    let progress = std::sync::Arc::new(Progress {
        last_ms: std::sync::atomic::AtomicU64::new(now_ms()),
        done: std::sync::atomic::AtomicBool::new(body.is_end_stream()),
    });
    let body = Watched {
        inner: body,
        progress: progress.clone(),
        now_ms,
    }
    .boxed_unsync();
    (body, progress)
}

/// The error of a request body the client stopped sending.
#[derive(Debug)]
pub struct ClientBodyStalled(pub std::time::Duration);

impl std::fmt::Display for ClientBodyStalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the client sent nothing of the request body for {:?}",
            self.0
        )
    }
}

impl std::error::Error for ClientBodyStalled {}

/// `inner`, failing with [`ClientBodyStalled`] when it yields nothing for `limit` while it is
/// being read (the timer exists only once the body has had to wait).
pub fn client_timeout(inner: ProxyBody, limit: std::time::Duration) -> ProxyBody {
    Stalling {
        inner,
        stall: StallTimer::new(limit),
    }
    .boxed_unsync()
}

struct Stalling {
    inner: ProxyBody,
    stall: StallTimer,
}

impl Body for Stalling {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        use std::task::Poll;
        match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Pending if self.stall.expired(cx) => {
                Poll::Ready(Some(Err(Box::new(ClientBodyStalled(self.stall.limit)))))
            }
            Poll::Pending => Poll::Pending,
            ready => {
                self.stall.progressed();
                ready
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The longest wait between two pieces of a body. The timer is made only once the body has
/// had to wait (a body that arrives whole never makes one).
#[derive(Debug)]
pub(crate) struct StallTimer {
    pub(crate) limit: std::time::Duration,
    timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl StallTimer {
    pub(crate) fn new(limit: std::time::Duration) -> StallTimer {
        StallTimer { limit, timer: None }
    }

    /// A piece arrived: the wait for the next one starts now.
    pub(crate) fn progressed(&mut self) {
        if let Some(timer) = &mut self.timer {
            timer
                .as_mut()
                .reset(tokio::time::Instant::now() + self.limit);
        }
    }

    /// The body is waiting: whether it has waited `limit` (else `cx` is woken when it has).
    pub(crate) fn expired(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        let limit = self.limit;
        self.timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)))
            .as_mut()
            .poll(cx)
            .is_ready()
    }
}
