//! The listener actor, one per entrypoint: runs the accept loop on a socket it does not own.
//!
//! The listening socket belongs to the runtime ([`Shared`]), so while a crashed listener is
//! restarted the kernel keeps queueing new connections, and connections already accepted are
//! tasks of their own that the crash does not touch.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use sluice::proxy::Entrypoint;
use sluice::proxy::accept::{self, Listen};

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
    let (listener, listen) = match entrypoint {
        Entrypoint::Http => (shared.http.clone(), Listen::Http),
        Entrypoint::Https => (shared.https.clone(), Listen::Https(shared.acceptor.clone())),
    };
    accept::accept_loop(
        listener,
        listen,
        shared.proxy.clone(),
        shared.tracker.clone(),
        shared.stop_accepting.subscribe(),
    )
    .await;
}
