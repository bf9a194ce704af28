//! The watcher actor: owns the configuration source (the manifests folder) and publishes every
//! state it delivers on the source topic.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use sluice::source::manifests;

use crate::messages::{TaskGuard, WatcherMsg};
use crate::run::Shared;

/// The watcher actor.
#[derive(Debug)]
pub struct Watcher;

/// Its state: the task that owns the folder watch.
#[derive(Debug)]
pub struct WatcherState {
    shared: Arc<Shared>,
    _watch: TaskGuard,
}

impl Actor for Watcher {
    type Msg = WatcherMsg;
    type State = WatcherState;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        myself: ActorRef<WatcherMsg>,
        shared: Arc<Shared>,
    ) -> Result<WatcherState, ActorProcessingErr> {
        let watch = manifests::watch(shared.manifests.clone(), shared.debounce)
            .map_err(|e| format!("cannot watch the manifests folder: {e}"))?;
        let task = tokio::spawn(async move {
            // Move the whole watch in (not just its receiver, as a disjoint capture would):
            // it owns the file-system watcher.
            let mut watch = watch;
            while let Some(loaded) = watch.rx.recv().await {
                if myself.cast(WatcherMsg::Loaded(Box::new(loaded))).is_err() {
                    return;
                }
            }
        });
        Ok(WatcherState {
            shared,
            _watch: TaskGuard(task),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<WatcherMsg>,
        msg: WatcherMsg,
        state: &mut WatcherState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WatcherMsg::Loaded(loaded) => {
                state.shared.source.send_replace(Some(Arc::new(*loaded)));
                Ok(())
            }
            WatcherMsg::Crash => panic!("chaos: crash requested for watcher"),
        }
    }
}
