//! The watcher actor: owns the configuration source (the manifests folder, or the Kubernetes
//! API with `--kube`) and publishes every state it delivers on the source topic. Until the
//! Kubernetes source has listed every kind nothing is published, so readiness stays false.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use sluice::source::kube as kube_source;
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
        let task = match &shared.kube {
            Some(k) => {
                let options = kube_source::Options {
                    namespaces: k.namespaces.clone(),
                    debounce: shared.debounce,
                    ..kube_source::Options::default()
                };
                let watch = match &k.config {
                    Some(config) => kube_source::watch(
                        kube_source::client_from_config(config.clone())?,
                        options,
                    ),
                    None => kube_source::start(k.kubeconfig.as_deref(), options).await?,
                };
                tokio::spawn(async move {
                    // The whole watch moves in: dropping it stops the Kubernetes watchers.
                    let mut watch = watch;
                    while let Some(loaded) = watch.rx.recv().await {
                        if myself.cast(WatcherMsg::Loaded(Box::new(loaded))).is_err() {
                            return;
                        }
                    }
                })
            }
            None => {
                let watch = manifests::watch(shared.manifests.clone(), shared.debounce)
                    .map_err(|e| format!("cannot watch the manifests folder: {e}"))?;
                tokio::spawn(async move {
                    // Move the whole watch in (not just its receiver, as a disjoint capture
                    // would): it owns the file-system watcher.
                    let mut watch = watch;
                    while let Some(loaded) = watch.rx.recv().await {
                        if myself.cast(WatcherMsg::Loaded(Box::new(loaded))).is_err() {
                            return;
                        }
                    }
                })
            }
        };
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
