//! The listener actor, one per entrypoint: runs the accept loop on a socket it does not own.
//!
//! The listening socket belongs to the runtime ([`Shared`]), so while a crashed listener is
//! restarted the kernel keeps queueing new connections, and connections already accepted are
//! tasks of their own that the crash does not touch.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use sluice::proxy::Entrypoint;

use crate::messages::{ListenerMsg, TaskGuard};
use crate::run::Shared;

/// The listener actor.
#[derive(Debug)]
pub struct Listener;

/// Its state: the accept loop task.
#[derive(Debug)]
pub struct ListenerState {
    _accept: TaskGuard,
}

impl Actor for Listener {
    type Msg = ListenerMsg;
    type State = ListenerState;
    type Arguments = (Arc<Shared>, Entrypoint);

    async fn pre_start(
        &self,
        _myself: ActorRef<ListenerMsg>,
        (shared, entrypoint): Self::Arguments,
    ) -> Result<ListenerState, ActorProcessingErr> {
        let task = tokio::spawn(accept_loop(shared, entrypoint));
        Ok(ListenerState {
            _accept: TaskGuard(task),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<ListenerMsg>,
        msg: ListenerMsg,
        _state: &mut ListenerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ListenerMsg::Crash => panic!("chaos: crash requested for a listener"),
        }
    }
}

async fn accept_loop(shared: Arc<Shared>, entrypoint: Entrypoint) {
    let listener = match entrypoint {
        Entrypoint::Http => shared.http.clone(),
        Entrypoint::Https => shared.https.clone(),
    };
    let mut stop = shared.stop_accepting.subscribe();
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let proxy = shared.proxy.clone();
                    let tracker = shared.tracker.clone();
                    match entrypoint {
                        Entrypoint::Http => { tokio::spawn(proxy.serve_http(tracker, stream, peer)); }
                        Entrypoint::Https => { tokio::spawn(proxy.serve_tls(tracker, shared.acceptor.clone(), stream, peer)); }
                    }
                }
                Err(e) => {
                    // EMFILE and the like are transient: log, count, back off briefly.
                    tracing::warn!(error = %e, "accept failed");
                    metrics::counter!("sluice_accept_errors_total").increment(1);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => {}
        }
    }
}
