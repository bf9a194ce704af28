//! Configuration sources: where the Kubernetes objects come from.
//!
//! Every source produces the same [`ClusterState`] (defined in [`crate::cluster`]): the Kubernetes API watchers (the `--kube`
//! mode) and a folder of manifests ([`manifests`]), so nothing downstream knows which one runs.

pub mod kube;
pub mod manifests;

use std::future::Future;
use std::pin::Pin;

pub use crate::cluster::ClusterState;

/// A running configuration source: the folder watch or the Kubernetes watch behind one type,
/// so that the runtime has one loop for both. Dropping it stops the source.
pub struct SourceWatch {
    rx: tokio::sync::mpsc::Receiver<manifests::Loaded>,
    /// Work that must be polled for states to arrive (the Kubernetes publisher); it runs
    /// inside [`SourceWatch::next`], in the caller's task, not in a task of its own.
    driver: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// What keeps the source alive (the folder watcher).
    _keep: Option<Box<dyn std::any::Any + Send>>,
}

impl std::fmt::Debug for SourceWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceWatch")
            .field("driven", &self.driver.is_some())
            .finish_non_exhaustive()
    }
}

impl SourceWatch {
    /// The next state: once at start (for the Kubernetes source, once every kind is listed),
    /// then after every (debounced) burst of changes. `None` when the source has ended and
    /// cannot go on.
    pub async fn next(&mut self) -> Option<manifests::Loaded> {
        if let Some(driver) = self.driver.as_mut() {
            tokio::select! {
                loaded = self.rx.recv() => return loaded,
                () = driver => {}
            }
            self.driver = None;
        }
        self.rx.recv().await
    }
}

impl SourceWatch {
    /// A source whose states arrive on `rx` once `driver` is polled.
    pub(crate) fn driven(
        rx: tokio::sync::mpsc::Receiver<manifests::Loaded>,
        driver: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> SourceWatch {
        SourceWatch {
            rx,
            driver: Some(driver),
            _keep: None,
        }
    }
}

impl From<manifests::ManifestWatch> for SourceWatch {
    fn from(mut watch: manifests::ManifestWatch) -> SourceWatch {
        let (_, placeholder) = tokio::sync::mpsc::channel(1);
        let rx = std::mem::replace(&mut watch.rx, placeholder);
        SourceWatch {
            rx,
            driver: None,
            _keep: Some(Box::new(watch)),
        }
    }
}
