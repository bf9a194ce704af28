//! Configuration sources: where the Kubernetes objects come from.
//!
//! Every source produces the same [`ClusterState`]: the Kubernetes API watchers (the `--kube`
//! mode) and a folder of manifests ([`manifests`]), so nothing downstream knows which one runs.

pub mod kube;
pub mod manifests;

use std::future::Future;
use std::pin::Pin;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

/// Every object sluice reads, as the source last saw them.
#[derive(Clone, Debug, Default)]
pub struct ClusterState {
    /// networking.k8s.io/v1 Ingresses.
    pub ingresses: Vec<Ingress>,
    /// networking.k8s.io/v1 IngressClasses.
    pub ingress_classes: Vec<IngressClass>,
    /// v1 Services.
    pub services: Vec<Service>,
    /// discovery.k8s.io/v1 EndpointSlices.
    pub endpoint_slices: Vec<EndpointSlice>,
    /// v1 Secrets (only `kubernetes.io/tls` ones are used).
    pub secrets: Vec<Secret>,
}

impl ClusterState {
    /// Total number of objects.
    pub fn len(&self) -> usize {
        self.ingresses.len()
            + self.ingress_classes.len()
            + self.services.len()
            + self.endpoint_slices.len()
            + self.secrets.len()
    }

    /// True when there are no objects at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

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
