//! Graceful shutdown, in the order load balancers need: report not ready, keep serving for a
//! delay so that they notice, stop accepting and close the listening sockets (new
//! connections are refused rather than queued), then let in-flight requests finish within a
//! grace period and close what is left.
//!
//! The runtime owns readiness, the sockets and the accept loops; [`drain`] takes those pieces
//! and runs the sequence.

use std::io;
use std::net::Shutdown;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::ConnTracker;

/// Makes the kernel refuse new connections on `listener` (and reset the ones queued but not
/// yet accepted) while the socket stays open, so that nothing waits in a backlog that will
/// never be served. On Linux, `shutdown(2)` on a listening socket does this; a pending or
/// later `accept` on it fails.
pub fn close_listener(listener: &TcpListener) -> io::Result<()> {
    match socket2::SockRef::from(listener).shutdown(Shutdown::Both) {
        // Already shut down.
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
        other => other,
    }
}

/// The pieces of a graceful shutdown, see [`drain`].
pub struct Drain<'a> {
    /// Called first: readiness reports "not ready" (503) from now on.
    pub not_ready: &'a (dyn Fn() + Sync),
    /// How long to go on serving after that, so that load balancers see the readiness change
    /// and stop sending (`--shutdown-delay`, 5 s by default).
    pub delay: Duration,
    /// Set to true to stop the accept loops.
    pub stop_accepting: &'a watch::Sender<bool>,
    /// The listening sockets, closed after the delay.
    pub listeners: &'a [&'a TcpListener],
    /// The open connections.
    pub tracker: &'a ConnTracker,
    /// How long in-flight requests (and tunnels) get to finish once the sockets are closed.
    pub grace: Duration,
}

impl std::fmt::Debug for Drain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drain")
            .field("delay", &self.delay)
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

/// How a [`drain`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drained {
    /// Every connection finished within the grace period.
    pub clean: bool,
    /// Connections still open at the end of the grace period (closed).
    pub forced: usize,
}

/// Runs the shutdown sequence: not ready, wait `delay`, stop accepting and close the
/// listening sockets, ask every connection to finish (idle keep-alive connections close at
/// once, HTTP/2 connections get GOAWAY), wait up to `grace`, close the rest.
pub async fn drain(d: Drain<'_>) -> Drained {
    (d.not_ready)();
    tracing::info!(delay = ?d.delay, "shutting down: not ready; serving on until load balancers notice");
    tokio::time::sleep(d.delay).await;
    d.stop_accepting.send_replace(true);
    for listener in d.listeners {
        if let Err(e) = close_listener(listener) {
            tracing::warn!(error = %e, "cannot close a listening socket; new connections will wait in its backlog");
        }
    }
    d.tracker.shutdown();
    tracing::info!(open = d.tracker.open(), grace = ?d.grace, "listeners closed; draining connections");
    if tokio::time::timeout(d.grace, d.tracker.wait_idle())
        .await
        .is_ok()
    {
        return Drained {
            clean: true,
            forced: 0,
        };
    }
    let forced = d.tracker.open();
    tracing::warn!(
        open = forced,
        "shutdown grace period over; closing remaining connections"
    );
    d.tracker.force_close();
    Drained {
        clean: false,
        forced,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_listener_refuses_new_connections() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _queued = tokio::net::TcpStream::connect(addr).await.expect("open");
        close_listener(&listener).unwrap();
        let refused = tokio::net::TcpStream::connect(addr).await;
        assert_eq!(
            refused.map(|_| ()).map_err(|e| e.kind()),
            Err(io::ErrorKind::ConnectionRefused)
        );
        assert!(listener.accept().await.is_err(), "accept fails");
        close_listener(&listener).expect("closing twice is fine");
    }
}
