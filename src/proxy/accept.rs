//! The accept loop of a listening socket, with the global connection limit.
//!
//! [`accept_loop`] accepts connections and serves each on its own task until told to stop.
//! A connection accepted at the limit ([`super::ProxyConfig::max_connections`], counted over
//! every listener by the [`ConnTracker`]) is held, not served, and nothing more is accepted
//! (new connections wait in the kernel's backlog) until a slot frees: the pause is counted
//! (`sluice_connection_limit_reached_total`, once per episode), and the connection idle the
//! longest is asked to close (no request in progress: a keep-alive connection between
//! requests, or one that has not completed a request yet; `sluice_connections_evicted_total`).
//! Connections are only closed when one is waiting, and never one with a request in
//! progress. The held connection makes the limit one higher per listener in file
//! descriptors, which the default's headroom covers. When the process
//! runs out of file descriptors anyway (`EMFILE`, `ENFILE`), it does the same and backs off
//! instead of retrying at once (one warning per episode, not one per attempt).
//!
//! The runtime owns the listening socket and calls this from its listener actor; a listener
//! that restarts simply calls it again on the same socket.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::Proxy;
use super::conn::{ConnTracker, Entrypoint};
use crate::pace::Backoff;

/// What a listening socket serves.
#[derive(Clone)]
pub enum Listen {
    /// Plain HTTP: HTTP/1.1, or h2c with prior knowledge.
    Http,
    /// TLS, then HTTP/1.1 or HTTP/2 by ALPN.
    Https(tokio_rustls::TlsAcceptor),
}

impl std::fmt::Debug for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Listen::Http => "Http",
            Listen::Https(_) => "Https",
        })
    }
}

impl Listen {
    /// The entrypoint (metric label).
    pub fn entrypoint(&self) -> Entrypoint {
        match self {
            Listen::Http => Entrypoint::Http,
            Listen::Https(_) => Entrypoint::Https,
        }
    }
}

/// How long a paused accept loop waits before looking for an idle connection again when
/// every connection was busy.
const BUSY_RECHECK: Duration = Duration::from_millis(50);

/// Accepts connections on `listener` and serves each on its own task, within the connection
/// limit (see the module docs). Returns when `stop` becomes true or the tracker starts
/// shutting down. Connection tasks outlive it.
pub async fn accept_loop(
    listener: Arc<TcpListener>,
    listen: Listen,
    proxy: Arc<Proxy>,
    tracker: Arc<ConnTracker>,
    mut stop: watch::Receiver<bool>,
) {
    let entrypoint = listen.entrypoint();
    // Each connection's local address (only its port is used: `X-Forwarded-Port`) is the
    // listener's: one `getsockname` per listener instead of one per connection.
    let local = listener.local_addr().ok();
    let max = proxy.config().max_connections.max(1);
    let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
    let mut at_limit = false;
    let mut exhausted = false;
    loop {
        if *stop.borrow_and_update() || tracker.is_shutting_down() {
            return;
        }
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                let out_of_files = is_out_of_files(&e);
                metrics::counter!("sluice_accept_errors_total", "reason" => if out_of_files { "out_of_files" } else { "other" })
                    .increment(1);
                if out_of_files {
                    if !exhausted {
                        exhausted = true;
                        tracing::warn!(error = %e, open = tracker.open(), "accept failed: out of file descriptors; closing the oldest idle connection and backing off");
                    }
                    tracker.evict_oldest_idle();
                } else {
                    tracing::debug!(error = %e, "accept failed");
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
        };
        backoff.reset();
        exhausted = false;
        if tracker.open() >= max {
            // This connection waits here, and no other is accepted (the rest wait in the
            // kernel's backlog), until a connection closes.
            if !at_limit {
                at_limit = true;
                metrics::counter!("sluice_connection_limit_reached_total", "entrypoint" => entrypoint.as_str())
                    .increment(1);
                tracing::warn!(
                    entrypoint = entrypoint.as_str(),
                    max_connections = max,
                    "connection limit reached: accepting paused, closing idle connections"
                );
            }
            if !wait_for_room(&tracker, max, &mut stop).await {
                return;
            }
        } else {
            at_limit = false;
        }
        let proxy = proxy.clone();
        let tracker = tracker.clone();
        match &listen {
            Listen::Http => {
                let entered = tracker.enter_client(entrypoint, "http");
                tokio::spawn(proxy.serve_http_entered(tracker, stream, peer, local, entered));
            }
            Listen::Https(acceptor) => {
                let entered = tracker.enter_client(entrypoint, "tls");
                // Boxed, as `serve_http_entered`'s connection future is: tokio moves the
                // task's future (5.9 KiB here) eight times over the task's life otherwise.
                tokio::spawn(Box::pin(proxy.serve_tls_entered(
                    tracker,
                    acceptor.clone(),
                    stream,
                    peer,
                    local,
                    entered,
                )));
            }
        }
    }
}

/// At the limit, with a connection waiting: asks the connection idle the longest to close and
/// waits until one closes (when every connection is busy, looks again a little later). False
/// when told to stop meanwhile.
async fn wait_for_room(
    tracker: &ConnTracker,
    max: usize,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    loop {
        let freed = tracker.freed();
        if tracker.open() < max {
            return true;
        }
        if *stop.borrow_and_update() || tracker.is_shutting_down() {
            return false;
        }
        let wait = if tracker.evict_oldest_idle() {
            Duration::from_secs(1)
        } else {
            BUSY_RECHECK
        };
        tokio::select! {
            () = freed => {}
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
}

/// `EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`: accepting again at once cannot succeed.
fn is_out_of_files(e: &io::Error) -> bool {
    // Linux errno values.
    matches!(e.raw_os_error(), Some(23 | 24 | 105 | 12))
}
