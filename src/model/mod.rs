//! The desired state: what the cluster (or a folder of manifests) asks sluice to serve.
//!
//! The model is produced by [`crate::translate`] from Kubernetes objects and consumed by
//! [`crate::routing::RoutingTable::compile`]. It holds no Kubernetes types: every field has
//! already been validated, defaulted and resolved (Service ports to endpoint addresses).

mod canary;
mod cidr;
mod diagnostic;
pub mod host;
pub mod htpasswd;
pub mod path;
mod settings;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

pub use canary::{Canary, CanaryRule, cookie};
pub use cidr::Cidr;
pub use settings::{
    Affinity, BackendSettings, BasicAuth, ClientCert, ConnLimit, Cors, ForwardAuth, HashPart,
    LoadBalancer, RateLimit, Redirect, RetryPolicy, UpstreamProtocol, UpstreamTls,
};

pub use diagnostic::{Diagnostic, Reason, Severity};
pub use host::{HostError, HostMatch};
pub use path::{PathKind, PathMatch, PathRuleError};

/// The kinds of Kubernetes object sluice reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// networking.k8s.io/v1 Ingress.
    Ingress,
    /// networking.k8s.io/v1 IngressClass.
    IngressClass,
    /// v1 Service.
    Service,
    /// discovery.k8s.io/v1 EndpointSlice.
    EndpointSlice,
    /// v1 Secret.
    Secret,
}

impl Kind {
    /// The Kubernetes `kind` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ingress => "Ingress",
            Kind::IngressClass => "IngressClass",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Secret => "Secret",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A namespaced object name. Cluster-scoped objects (IngressClass) have an empty namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    /// Namespace, empty for cluster-scoped objects.
    pub namespace: String,
    /// Object name.
    pub name: String,
}

impl ObjectRef {
    /// A reference to `namespace/name`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectRef {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// How an Ingress backend names the port of its Service.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ServicePort {
    /// `service.port.number`.
    Number(u16),
    /// `service.port.name`.
    Name(String),
}

impl fmt::Display for ServicePort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServicePort::Number(n) => write!(f, "{n}"),
            ServicePort::Name(n) => f.write_str(n),
        }
    }
}

/// One address traffic can be sent to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// IP address and target port.
    pub addr: SocketAddr,
    /// `false` when the endpoint is serving but terminating: such endpoints are only used when a
    /// backend has no ready endpoint at all (as kube-proxy does).
    pub ready: bool,
}

/// Where a route sends traffic: one port of one Service, as referenced by one Ingress.
///
/// Backends are per Ingress (not per Service) because annotations such as the load-balancing
/// policy belong to the Ingress that references the Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    /// The Ingress whose rule references this backend.
    pub ingress: ObjectRef,
    /// The Service (same namespace as the Ingress).
    pub service: ObjectRef,
    /// The Service port as written in the Ingress.
    pub port: ServicePort,
    /// Endpoints to balance over: the ready ones, or (only when none is ready) the serving but
    /// terminating ones. Empty means the route answers 503.
    pub endpoints: Vec<Endpoint>,
    /// Per-Ingress settings from `sluice.io/*` annotations.
    pub settings: BackendSettings,
}

impl Backend {
    /// `namespace/service:port`, the label used in logs, metrics and `sluice check`.
    pub fn label(&self) -> String {
        format!("{}:{}", self.service, self.port)
    }
}

/// Where a route came from, for diagnostics and the admin API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteSource {
    /// The Ingress.
    pub ingress: ObjectRef,
    /// Index into `spec.rules`.
    pub rule: usize,
    /// Index into `spec.rules[rule].http.paths`.
    pub path: usize,
}

/// One (host, path) -> backend mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Which hosts this route answers for.
    pub host: HostMatch,
    /// Which paths.
    pub path: PathMatch,
    /// Where matching requests go.
    pub backend: Arc<Backend>,
    /// The Ingress field this route was built from.
    pub source: RouteSource,
    /// Plain-HTTP requests for this route are redirected to HTTPS (308): the host has TLS and
    /// the Ingress does not set `sluice.io/ssl-redirect: "false"`.
    pub redirect_to_https: bool,
    /// A canary Ingress's share of this route's requests (`canary: "true"`).
    pub canary: Option<Arc<Canary>>,
    /// The Ingress's `default-backend` Service: it answers when the route's Service has no
    /// endpoint, and serves the error pages of `custom-http-errors`.
    pub fallback: Option<Arc<Backend>>,
}

impl Route {
    /// The target this route's path is rewritten to (`rewrite-target`): set on the Ingress,
    /// for a regular-expression path, and different from the path (as ingress-nginx's
    /// `needsRewrite`).
    pub fn rewrite_target(&self) -> Option<&str> {
        let target = self.backend.settings.rewrite_target.as_deref()?;
        (self.path.kind == PathKind::Regex && target != self.path.path).then_some(target)
    }
}

/// TLS wanted for a host: serve the certificate in `secret` when a client asks for `host` by SNI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsHost {
    /// The host (exact or wildcard).
    pub host: HostMatch,
    /// The `kubernetes.io/tls` Secret holding certificate and key.
    pub secret: ObjectRef,
    /// The Ingress that asked for it.
    pub ingress: ObjectRef,
}

/// The whole desired state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    /// Every accepted route, in no particular order (the routing table sorts them). Shared, so
    /// that compiling a table does not copy 100 000 routes.
    pub routes: Arc<[Route]>,
    /// The catch-all for requests that match no route (`spec.defaultBackend` of the oldest
    /// Ingress that has one).
    pub default_backend: Option<Arc<Backend>>,
    /// TLS hosts and their Secrets.
    pub tls: Vec<TlsHost>,
    /// Every Ingress sluice owns (by class), sorted: the ones whose status it publishes.
    pub ingresses: Vec<ObjectRef>,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            routes: Arc::from(Vec::new()),
            default_backend: None,
            tls: Vec::new(),
            ingresses: Vec::new(),
        }
    }
}
