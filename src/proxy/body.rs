//! Body types: one boxed body type for everything the proxy sends, and a wrapper that keeps
//! an endpoint's outstanding-request count up until the response body is finished.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};

use super::balance::InFlight;
use super::pool::Checkout;

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

/// Boxes any body whose error converts into [`BoxError`].
pub fn boxed<B>(body: B) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// A response body that holds an [`InFlight`] guard until it ends or is dropped, and hands
/// the upstream connection that carried it back to the pool once it has been read to the end.
pub(crate) struct Tracked<B: Body> {
    inner: B,
    guard: Option<InFlight>,
    conn: Option<Checkout>,
}

impl<B: Body> Tracked<B> {
    /// Wraps `inner`, releasing `guard` (and `conn`, to the pool) at the end of the body.
    pub(crate) fn new(inner: B, guard: InFlight, conn: Option<Checkout>) -> Self {
        Tracked {
            inner,
            guard: Some(guard),
            conn,
        }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match r {
            Poll::Ready(None) => {
                self.guard = None;
                if let Some(conn) = self.conn.take() {
                    conn.release();
                }
            }
            Poll::Ready(Some(Err(_))) => {
                self.guard = None;
                self.conn = None;
            }
            _ => {}
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

impl<B: Body> Drop for Tracked<B> {
    fn drop(&mut self) {
        // hyper stops polling a body that says it has ended (a Content-Length body after its
        // last byte, an empty body): that is a complete response too. A body dropped before
        // its end leaves the connection mid-message, and it closes with the handle.
        if let Some(conn) = self.conn.take()
            && self.inner.is_end_stream()
        {
            conn.release();
        }
    }
}
