//! The listener actor, one per entrypoint: runs the accept loop on a socket it does not own.
//!
//! The listening socket belongs to the runtime, so while a crashed listener is restarted the
//! kernel keeps queueing new connections, and connections already accepted are tasks of their
//! own that the crash does not touch.

use std::sync::Arc;
use std::time::Duration;

use ractor::ActorProcessingErr;
use sluice::proxy::{ConnTracker, Entrypoint, Proxy};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::worker::{Ctx, NoMsg, Worker};

/// What a listener uses.
pub struct ListenerArgs {
    /// The listening socket (owned by the runtime).
    pub socket: Arc<TcpListener>,
    /// Which entrypoint it is.
    pub entrypoint: Entrypoint,
    /// The data plane.
    pub proxy: Arc<Proxy>,
    /// Open connections, for graceful shutdown.
    pub tracker: Arc<ConnTracker>,
    /// The TLS acceptor (HTTPS only).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Becomes true when accepting must stop (shutdown).
    pub stop: watch::Receiver<bool>,
}

/// The listener actor.
#[derive(Debug)]
pub struct Listener;

impl Worker for Listener {
    type Msg = NoMsg;
    type State = ();
    type Args = ListenerArgs;

    async fn start(
        &self,
        ctx: &mut Ctx<NoMsg>,
        args: ListenerArgs,
    ) -> Result<(), ActorProcessingErr> {
        ctx.spawn("accept", async move {
            accept_loop(args).await;
            // Stopped on purpose (shutdown): stay quiet until the actor is stopped.
            std::future::pending::<()>().await;
        });
        Ok(())
    }
}

/// Accepts until `stop` becomes true.
async fn accept_loop(args: ListenerArgs) {
    let ListenerArgs {
        socket,
        entrypoint,
        proxy,
        tracker,
        tls,
        mut stop,
    } = args;
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        tokio::select! {
            accepted = socket.accept() => match accepted {
                Ok((stream, peer)) => {
                    let (proxy, tracker) = (proxy.clone(), tracker.clone());
                    match (&tls, entrypoint) {
                        (Some(acceptor), Entrypoint::Https) => {
                            tokio::spawn(proxy.serve_tls(tracker, acceptor.clone(), stream, peer));
                        }
                        _ => {
                            tokio::spawn(proxy.serve_http(tracker, stream, peer));
                        }
                    }
                }
                Err(e) => {
                    // EMFILE and the like are transient: log, count, back off briefly.
                    tracing::warn!(error = %e, "accept failed");
                    metrics::counter!("sluice_accept_errors_total").increment(1);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            changed = stop.changed() => if changed.is_err() { return },
        }
    }
}
