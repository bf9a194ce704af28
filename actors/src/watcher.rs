//! The watcher actor: owns the configuration source (the manifests folder, or the Kubernetes
//! API) and publishes every state it delivers on the source topic. Until the Kubernetes source
//! has listed every kind nothing is published, so readiness stays false.
//!
//! The source runs as the actor's task: if it ends (a watch that cannot go on, a panic) the
//! actor fails and its supervisor restarts it, which starts the source again from a full
//! read. Setting the source up (the folder watch) happens in `start`, so a folder that cannot
//! be watched fails the start with that error.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ractor::ActorProcessingErr;
use sluice::source::SourceWatch;
use sluice::source::kube as kube_source;
use sluice::source::manifests;

use crate::topics::SourceTopic;
use crate::worker::{Ctx, NoMsg, Worker};

/// Where the configuration comes from.
#[derive(Clone)]
pub enum SourceConfig {
    /// A folder of manifests (standalone mode).
    Manifests {
        /// The folder.
        dir: PathBuf,
        /// Quiet time that ends a burst of file changes.
        debounce: Duration,
    },
    /// The Kubernetes API.
    Kube {
        /// The process's client.
        client: kube::Client,
        /// Namespaces, debounce, backoff.
        options: kube_source::Options,
    },
}

/// What the watcher uses.
pub struct WatcherArgs {
    /// The source.
    pub source: SourceConfig,
    /// Where each state is published.
    pub topic: SourceTopic,
}

/// The watcher actor.
#[derive(Debug)]
pub struct Watcher;

impl Worker for Watcher {
    type Msg = NoMsg;
    type State = ();
    type Args = WatcherArgs;

    async fn start(
        &self,
        ctx: &mut Ctx<NoMsg>,
        args: WatcherArgs,
    ) -> Result<(), ActorProcessingErr> {
        let mut watch: SourceWatch = match args.source {
            SourceConfig::Manifests { dir, debounce } => manifests::watch(dir, debounce)
                .map_err(|e| format!("cannot watch the manifests folder: {e}"))?
                .into(),
            SourceConfig::Kube { client, options } => kube_source::watch(client, options),
        };
        let topic = args.topic;
        ctx.spawn("source", async move {
            while let Some(loaded) = watch.next().await {
                topic.send_replace(Some(Arc::new(loaded)));
            }
            tracing::error!("the configuration source ended");
        });
        Ok(())
    }
}
