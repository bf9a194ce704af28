//! Coalesced writes for an HTTP/2 client connection.
//!
//! hyper runs each HTTP/2 stream in a task of its own, and the connection's task writes the
//! frames. When a stream's response is ready, its task wakes the connection's task, and
//! tokio runs a task just woken by the running one next (its LIFO slot): the connection
//! writes and flushes that one response, then the next stream's task runs and wakes it
//! again. With 28 upstream answers ready at once, the client got about one TLS record and
//! one `writev` for every two responses (benches/profile --h2 under strace: 0.55 writes per
//! request; haproxy 0.04).
//!
//! [`Corked`] sits between hyper and the transport (TLS, or TCP for h2c). Writes are copied
//! into its buffer; the first flush of a batch is put off by one turn of the scheduler (the
//! task wakes itself and yields, and tokio queues a task that woke itself behind the tasks
//! already ready), so the stream tasks ready in the same turn add their frames first; the
//! next flush writes them all as one TLS record sequence and one system call. Off
//! (`on == false`), every call goes straight through. A drained buffer over 4 KiB is freed,
//! so an idle connection keeps at most that. See docs/architecture.md, "An HTTP/2
//! connection's writes are gathered across its streams".

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Above this many buffered bytes a write first passes the buffer on (TLS records are at
/// most 16 KiB of plaintext: four full records).
const LIMIT: usize = 64 * 1024;

/// A drained buffer larger than this is freed, so an idle connection keeps at most this
/// much (a batch of small responses fits: a 128-byte response is a HEADERS and a DATA frame
/// of a few hundred bytes together).
const KEEP: usize = 4 * 1024;

/// An I/O whose writes are gathered until a flush, the first flush of each batch deferred
/// by one scheduler turn (module docs).
pub struct Corked<I> {
    inner: I,
    on: bool,
    /// Written by the caller, not yet passed to `inner` from `sent` on.
    buf: Vec<u8>,
    sent: usize,
    /// This batch's flush has been put off once already.
    deferred: bool,
}

impl<I> Corked<I> {
    /// `inner`, its writes gathered when `on`.
    pub fn new(inner: I, on: bool) -> Corked<I> {
        Corked {
            inner,
            on,
            buf: Vec::new(),
            sent: 0,
            deferred: false,
        }
    }
}

impl<I: AsyncWrite + Unpin> Corked<I> {
    /// Passes the buffered bytes on to `inner` (not flushing it).
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.sent = 0;
        self.buf.clear();
        // A burst does not keep its buffer for the connection's life.
        if self.buf.capacity() > KEEP {
            self.buf = Vec::new();
        }
        Poll::Ready(Ok(()))
    }

    fn pending(&self) -> usize {
        self.buf.len() - self.sent
    }

    /// Copies `bufs` into the buffer; past [`LIMIT`] the buffer is passed on first, and a
    /// write larger than that goes straight to `inner`.
    fn poll_gather(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if self.pending() + total > LIMIT {
            ready!(self.poll_drain(cx))?;
            if total > LIMIT {
                return Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
            }
        }
        for b in bufs {
            self.buf.extend_from_slice(b);
        }
        Poll::Ready(Ok(total))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Corked<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Corked<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if !this.on {
            return Pin::new(&mut this.inner).poll_write(cx, data);
        }
        this.poll_gather(cx, &[io::IoSlice::new(data)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if !this.on {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        this.poll_gather(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        // Gathered slices are copied into one buffer; a caller that can hand over several
        // at once saves its own copy.
        self.on || self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.on && this.pending() > 0 {
            if !this.deferred {
                // One turn later: the tasks already ready run first and add their frames.
                this.deferred = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            ready!(this.poll_drain(cx))?;
        }
        this.deferred = false;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.on {
            ready!(this.poll_drain(cx))?;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn writes_reach_the_peer_at_the_second_flush_in_one_piece() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut c = Corked::new(a, true);
        c.write_all(b"one ").await.unwrap();
        c.write_all(b"two").await.unwrap();
        // The first flush of the batch is put off, having woken its task.
        let mut arrived = false;
        let first = poll_fn(|cx| {
            let r = Pin::new(&mut c).poll_flush(cx);
            Poll::Ready(r)
        })
        .await;
        assert!(first.is_pending());
        let mut probe = [0u8; 16];
        let nothing = poll_fn(|cx| {
            let mut rb = ReadBuf::new(&mut probe);
            let r = Pin::new(&mut b).poll_read(cx, &mut rb);
            arrived = r.is_ready();
            Poll::Ready(())
        });
        nothing.await;
        assert!(
            !arrived,
            "nothing may reach the peer before the deferred flush"
        );
        c.flush().await.unwrap();
        let mut got = vec![0u8; 7];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"one two");
        // A new batch is deferred again.
        c.write_all(b"!").await.unwrap();
        let again = poll_fn(|cx| Poll::Ready(Pin::new(&mut c).poll_flush(cx))).await;
        assert!(again.is_pending());
        c.shutdown().await.unwrap();
        let mut rest = Vec::new();
        b.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"!");
    }

    #[tokio::test]
    async fn large_writes_pass_the_buffer_on_first() {
        let (a, mut b) = tokio::io::duplex(4 << 20);
        let mut c = Corked::new(a, true);
        let small = vec![1u8; 100];
        let big = vec![2u8; LIMIT + 1];
        c.write_all(&small).await.unwrap();
        c.write_all(&big).await.unwrap();
        c.flush().await.unwrap();
        let mut got = vec![0u8; small.len() + big.len()];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..100], &small[..]);
        assert_eq!(&got[100..], &big[..]);
        assert!(c.buf.capacity() <= KEEP);
    }

    #[tokio::test]
    async fn vectored_writes_are_gathered_whole() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut c = Corked::new(a, true);
        assert!(c.is_write_vectored());
        let bufs = [io::IoSlice::new(b"head "), io::IoSlice::new(b"data")];
        assert_eq!(c.write_vectored(&bufs).await.unwrap(), 9);
        c.flush().await.unwrap();
        let mut got = [0u8; 9];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"head data");
    }

    #[tokio::test]
    async fn off_passes_every_call_through() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut c = Corked::new(a, false);
        c.write_all(b"now").await.unwrap();
        // No flush: the bytes are there already.
        let mut got = [0u8; 3];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"now");
        assert!(c.buf.is_empty());
    }
}
