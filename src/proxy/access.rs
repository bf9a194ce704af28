//! The access log (`--access-log`): one line per request through tracing (target
//! `sluice::access`), written when the response body has been sent (or given up), so that it
//! can say how many bytes went each way.
//!
//! Nothing here runs unless the log is on: the request path captures the host and path, the
//! forwarding code attaches what it learned of the upstream to the response
//! ([`UpstreamInfo`], an extension) and counts the request body, and the response body is
//! wrapped to count what is sent.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::{Body, Frame, SizeHint};

use super::body::{BoxError, ProxyBody};
use super::conn::ConnInfo;
use super::stats::RequestStats;

/// What the forwarding code learned of the upstream exchange.
#[derive(Clone, Debug)]
pub(crate) struct UpstreamInfo {
    /// The endpoint that answered.
    pub(crate) addr: SocketAddr,
    /// From sending the request to the response head.
    pub(crate) head_time: Duration,
    /// Attempts after the first.
    pub(crate) retries: u32,
    /// Request body bytes sent upstream so far.
    pub(crate) bytes_in: Option<Arc<AtomicU64>>,
}

/// What the log line needs from the request, captured before it is consumed.
pub(crate) struct Started {
    host: String,
    path: String,
    request_id: Option<String>,
}

impl Started {
    pub(crate) fn of<B>(req: &Request<B>) -> Started {
        let host = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                req.headers()
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        Started {
            host,
            path: req.uri().path().to_owned(),
            request_id: req
                .headers()
                .get(&super::headers::X_REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        }
    }

    /// `resp` with a body that writes the log line when it ends (or is dropped).
    pub(crate) fn finish(
        self,
        conn: &ConnInfo,
        method: &Method,
        stats: &RequestStats,
        error: Option<&'static str>,
        mut resp: Response<ProxyBody>,
        start: Instant,
    ) -> Response<ProxyBody> {
        let upstream = resp.extensions_mut().remove::<UpstreamInfo>();
        let request_id = resp
            .headers()
            .get(&super::headers::X_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or(self.request_id);
        let entry = Entry {
            peer: conn.peer,
            entrypoint: conn.entrypoint.as_str(),
            method: super::stats::method_label(method),
            host: self.host,
            path: self.path,
            status: resp.status().as_u16(),
            request_id: request_id.unwrap_or_default(),
            ingress: stats.ingress.to_string(),
            service: stats.service.to_string(),
            error: error.unwrap_or(""),
            upstream,
            start,
        };
        resp.map(|inner| {
            http_body_util::BodyExt::boxed_unsync(Logged {
                inner,
                entry: Some(Box::new(entry)),
                bytes_out: 0,
            })
        })
    }
}

struct Entry {
    peer: SocketAddr,
    entrypoint: &'static str,
    method: &'static str,
    host: String,
    path: String,
    status: u16,
    request_id: String,
    ingress: String,
    service: String,
    error: &'static str,
    upstream: Option<UpstreamInfo>,
    start: Instant,
}

impl Entry {
    fn write(&self, bytes_out: u64, completed: bool) {
        let (upstream_addr, upstream_ms, retries, bytes_in) = match &self.upstream {
            Some(u) => (
                u.addr.to_string(),
                u.head_time.as_secs_f64() * 1000.0,
                u.retries,
                u.bytes_in.as_ref().map_or(0, |b| b.load(Ordering::Relaxed)),
            ),
            None => (String::new(), 0.0, 0, 0),
        };
        tracing::info!(
            target: "sluice::access",
            peer = %self.peer,
            entrypoint = self.entrypoint,
            method = self.method,
            host = %self.host,
            path = %self.path,
            status = self.status,
            request_id = %self.request_id,
            bytes_in,
            bytes_out,
            duration_ms = self.start.elapsed().as_secs_f64() * 1000.0,
            upstream_addr = %upstream_addr,
            upstream_ms,
            retries,
            ingress = %self.ingress,
            service = %self.service,
            error = self.error,
            completed,
        );
    }
}

/// The response body, counted; writes the entry at its end.
struct Logged {
    inner: ProxyBody,
    entry: Option<Box<Entry>>,
    bytes_out: u64,
}

impl Body for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    self.bytes_out += d.len() as u64;
                }
                if self.inner.is_end_stream() {
                    self.log(true);
                }
            }
            Poll::Ready(None) => self.log(true),
            Poll::Ready(Some(Err(_))) => self.log(false),
            Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Logged {
    fn log(&mut self, completed: bool) {
        if let Some(e) = self.entry.take() {
            e.write(self.bytes_out, completed);
        }
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        // A body hyper never polled (it said it had ended) is complete; one dropped midway
        // (the client went away) is not.
        let completed = self.inner.is_end_stream();
        self.log(completed);
    }
}

/// Counts the bytes of a request body into a shared counter.
pub(crate) fn counted(inner: ProxyBody, bytes: Arc<AtomicU64>) -> ProxyBody {
    http_body_util::BodyExt::boxed_unsync(Counted { inner, bytes })
}

struct Counted {
    inner: ProxyBody,
    bytes: Arc<AtomicU64>,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &r
            && let Some(d) = frame.data_ref()
        {
            self.bytes.fetch_add(d.len() as u64, Ordering::Relaxed);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
