//! The cluster state: every Kubernetes object sluice reads, as a source last saw them. The
//! data that every source produces and the translation, DNS and certificate planning read;
//! it depends on nothing else in the engine.

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::model::ObjectRef;

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

/// The reference of an object, defaulting the namespace to `default` as the API server does.
pub fn object_ref(meta: &ObjectMeta) -> ObjectRef {
    ObjectRef::new(
        meta.namespace
            .clone()
            .unwrap_or_else(|| "default".to_string()),
        meta.name.clone().unwrap_or_default(),
    )
}

/// Sort key of objects by age: oldest first; objects without a creation timestamp count as
/// newest; ties by namespace/name (the order Ingress conflicts are decided in).
pub fn age_key(meta: &ObjectMeta) -> (bool, Option<k8s_openapi::jiff::Timestamp>, ObjectRef) {
    let ts = meta.creation_timestamp.as_ref().map(|t| t.0);
    (ts.is_none(), ts, object_ref(meta))
}
