//! The listener actor, one per entrypoint: runs the accept loop on a socket it does not own.
//!
//! The listening socket belongs to the runtime, so while a crashed listener is restarted the
//! kernel keeps queueing new connections, and connections already accepted are tasks of their
//! own that the crash does not touch.

use std::sync::Arc;

use ractor::ActorProcessingErr;
use sluice::proxy::accept::{self, Listen};
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

/// Accepts until `stop` becomes true (the engine's accept loop: connection limit, eviction of
/// idle connections, backoff when out of file descriptors).
async fn accept_loop(args: ListenerArgs) {
    let listen = match (args.entrypoint, args.tls) {
        (Entrypoint::Https, Some(acceptor)) => Listen::Https(acceptor),
        _ => Listen::Http,
    };
    accept::accept_loop(args.socket, listen, args.proxy, args.tracker, args.stop).await;
}
