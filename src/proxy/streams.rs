//! HTTP/2 streams polled on their connection's task.
//!
//! hyper's HTTP/2 server hands each stream's future (the request's handling and the sending
//! of its response) to an executor. With tokio's, every stream was a task of its own: spawned
//! (an aligned allocation and a place in the runtime's task list, under its lock), scheduled
//! and woken through the runtime, and removed from the list when done. [`StreamExec`] instead
//! queues each stream's future for the connection, and [`WithStreams`] polls the connection
//! and its streams together on the connection's task, as nginx and haproxy serve a
//! connection's streams on the thread that owns it. A stream woken by its upstream wakes the
//! connection's task, which polls the streams that are ready and then the connection, so
//! that what they sent goes out together: h2 writes frames on the connection's poll, and
//! every response ready in one turn leaves in one TLS write (a `writev` per 31 responses
//! under `h2load -c4 -m32`; haproxy one per 25).
//!
//! A connection's streams therefore share one core at a time (one connection's work was
//! never split across cores by much: its frames are read and written by one task either way).
//! When the connection ends, its streams that have not finished are dropped with it: their
//! client is gone.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures::stream::{FuturesUnordered, StreamExt};

/// A stream's future, as hyper hands it over.
type StreamFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The executor given to one connection's HTTP/2 server: it queues the streams' futures for
/// the connection's [`WithStreams`] (hyper calls it while the connection is polled).
#[derive(Clone, Default)]
pub(super) struct StreamExec {
    queued: Arc<Mutex<Vec<StreamFuture>>>,
}

impl<F> hyper::rt::Executor<F> for StreamExec
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        // Written straight into its allocation: `Box::pin(fut)` copied the stream's future
        // (about 4 KiB) twice, through a stack slot (970 instructions per stream).
        let boxed: Box<F> = Box::write(Box::new_uninit(), fut);
        let boxed: StreamFuture = Box::into_pin(boxed);
        self.queued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(boxed);
    }
}

/// A connection and its streams, polled together: completes with the connection.
pub(super) struct WithStreams<'a, C> {
    conn: Pin<&'a mut C>,
    graceful: fn(Pin<&mut C>),
    exec: StreamExec,
    running: FuturesUnordered<StreamFuture>,
}

impl<'a, C: Future> WithStreams<'a, C> {
    /// `conn` served with `exec` as its executor; `graceful` starts its graceful shutdown.
    pub(super) fn new(conn: Pin<&'a mut C>, graceful: fn(Pin<&mut C>), exec: StreamExec) -> Self {
        WithStreams {
            conn,
            graceful,
            exec,
            running: FuturesUnordered::new(),
        }
    }

    /// Starts the connection's graceful shutdown (its streams run on).
    pub(super) fn graceful_shutdown(mut self: Pin<&mut Self>) {
        let graceful = self.graceful;
        graceful(self.conn.as_mut());
    }

    /// Polls every stream that is ready (the new ones first time). The set yields after a
    /// bounded number of polls (it wakes the task itself), so one busy connection does not
    /// hold its thread.
    fn run_streams(&mut self, cx: &mut Context<'_>) {
        self.take_queued();
        while let Poll::Ready(Some(())) = self.running.poll_next_unpin(cx) {}
    }

    /// Moves the streams hyper queued into the running set.
    fn take_queued(&mut self) {
        let mut queued = self
            .exec
            .queued
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for fut in queued.drain(..) {
            self.running.push(fut);
        }
    }
}

impl<C: Future> Future for WithStreams<'_, C> {
    type Output = C::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = &mut *self;
        // The streams that are ready run first, so that the connection's poll right after
        // writes what they sent, together.
        this.run_streams(cx);
        if let Poll::Ready(out) = this.conn.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        // The streams the connection just opened start at once (their upstream requests go
        // out now); what they send wakes the connection's task again.
        this.run_streams(cx);
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use hyper::rt::Executor;

    use super::*;

    /// A connection stand-in: hands `n` stream futures to the executor on its first poll,
    /// then completes once every stream has run.
    struct FakeConn {
        exec: StreamExec,
        streams: usize,
        done: Arc<AtomicUsize>,
        started: bool,
        graceful: bool,
    }

    impl Future for FakeConn {
        type Output = bool;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
            if !self.started {
                self.started = true;
                for _ in 0..self.streams {
                    let done = self.done.clone();
                    let waker = cx.waker().clone();
                    self.exec.execute(async move {
                        tokio::task::yield_now().await;
                        done.fetch_add(1, Ordering::SeqCst);
                        waker.wake();
                    });
                }
            }
            if self.done.load(Ordering::SeqCst) == self.streams {
                Poll::Ready(self.graceful)
            } else {
                Poll::Pending
            }
        }
    }

    fn fake(exec: &StreamExec, streams: usize) -> (FakeConn, Arc<AtomicUsize>) {
        let done = Arc::new(AtomicUsize::new(0));
        let conn = FakeConn {
            exec: exec.clone(),
            streams,
            done: done.clone(),
            started: false,
            graceful: false,
        };
        (conn, done)
    }

    #[tokio::test]
    async fn streams_run_on_the_connections_task() {
        let exec = StreamExec::default();
        let (conn, done) = fake(&exec, 40);
        let mut conn = std::pin::pin!(conn);
        let with = WithStreams::new(conn.as_mut(), |_| {}, exec.clone());
        // Nothing is spawned: without the set polling them the streams would never finish,
        // and the connection would never complete.
        let graceful = tokio::time::timeout(std::time::Duration::from_secs(10), with)
            .await
            .expect("the connection completes once its streams ran");
        assert!(!graceful);
        assert_eq!(done.load(Ordering::SeqCst), 40);
        assert!(exec.queued.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn graceful_shutdown_reaches_the_connection() {
        let exec = StreamExec::default();
        let (conn, _) = fake(&exec, 0);
        let mut conn = std::pin::pin!(conn);
        let mut with = std::pin::pin!(WithStreams::new(
            conn.as_mut(),
            |c: Pin<&mut FakeConn>| c.get_mut().graceful = true,
            exec,
        ));
        with.as_mut().graceful_shutdown();
        assert!(with.await, "the connection saw the graceful shutdown");
    }

    #[tokio::test]
    async fn unfinished_streams_are_dropped_with_the_connection() {
        struct Flag(Arc<AtomicUsize>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let exec = StreamExec::default();
        let dropped = Arc::new(AtomicUsize::new(0));
        let flag = Flag(dropped.clone());
        exec.execute(async move {
            let _flag = flag;
            std::future::pending::<()>().await;
        });
        let mut conn = std::pin::pin!(std::future::ready(()));
        let mut with = WithStreams::new(conn.as_mut(), |_| {}, exec);
        with.take_queued();
        assert_eq!(with.running.len(), 1);
        (&mut with).await;
        drop(with);
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            1,
            "the stream went with its connection"
        );
    }
}
