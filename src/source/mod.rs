//! Configuration sources: where the Kubernetes objects come from.
//!
//! Every source produces the same [`ClusterState`]: the Kubernetes API watchers (the `--kube`
//! mode) and a folder of manifests ([`manifests`]), so nothing downstream knows which one runs.

pub mod kube;
pub mod manifests;

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
