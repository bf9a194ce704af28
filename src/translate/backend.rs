//! Backend resolution: Ingress backend -> Service port -> EndpointSlice addresses.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, Service, ServicePort as K8sServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::IngressBackend;

use super::object_ref;
use crate::cluster::ClusterState;
use crate::model::{
    Backend, BackendSettings, Diagnostic, Endpoint, Kind, ObjectRef, Reason, ServicePort,
};

/// The label EndpointSlices carry naming their Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Backends already resolved for one Ingress, keyed by the Service name and port as written.
pub(super) type BackendCache<'i> = HashMap<(&'i str, Option<&'i str>, Option<i32>), Arc<Backend>>;

/// Lookups over the cluster state, built once per translation.
pub(super) struct Resolver<'a> {
    services: HashMap<ObjectRef, &'a Service>,
    /// EndpointSlices by the Service they belong to.
    slices: HashMap<ObjectRef, Vec<&'a EndpointSlice>>,
    secrets: HashMap<ObjectRef, &'a Secret>,
    /// TLS Secrets parsed so far (each once), handed to the certificate store.
    parsed: std::cell::RefCell<crate::tls::ParsedSecrets>,
}

impl<'a> Resolver<'a> {
    pub(super) fn new(state: &'a ClusterState) -> Self {
        let services = state
            .services
            .iter()
            .map(|s| (object_ref(&s.metadata), s))
            .collect();
        let mut slices: HashMap<ObjectRef, Vec<&EndpointSlice>> = HashMap::new();
        for slice in &state.endpoint_slices {
            let Some(svc) = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
            else {
                continue;
            };
            let ns = object_ref(&slice.metadata).namespace;
            slices
                .entry(ObjectRef::new(ns, svc.clone()))
                .or_default()
                .push(slice);
        }
        let secrets = state
            .secrets
            .iter()
            .map(|s| (object_ref(&s.metadata), s))
            .collect();
        Resolver {
            services,
            slices,
            secrets,
            parsed: std::cell::RefCell::default(),
        }
    }

    /// Resolves one Ingress backend. Returns `None` (with a diagnostic) when the backend itself
    /// is malformed and the route must be dropped; a missing Service or port still yields a
    /// backend without endpoints (the route answers 503), with an error diagnostic.
    pub(super) fn backend<'i>(
        &self,
        ingress: &ObjectRef,
        field: &dyn std::fmt::Display,
        backend: &'i IngressBackend,
        settings: &BackendSettings,
        cache: &mut BackendCache<'i>,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<Arc<Backend>> {
        let err = |diags: &mut Vec<Diagnostic>, reason, f: String, msg: String| {
            diags.push(Diagnostic::error(reason, Kind::Ingress, ingress, f, msg));
        };
        if backend.resource.is_some() {
            err(
                diags,
                Reason::UnsupportedBackend,
                format!("{field}.resource"),
                "resource backends are not supported by sluice; use a Service backend".into(),
            );
            return None;
        }
        let Some(svc) = backend.service.as_ref() else {
            err(
                diags,
                Reason::InvalidBackend,
                format!("{field}.service"),
                "required".into(),
            );
            return None;
        };
        if svc.name.is_empty() {
            err(
                diags,
                Reason::InvalidBackend,
                format!("{field}.service.name"),
                "required".into(),
            );
            return None;
        }
        let port = match svc
            .port
            .as_ref()
            .map(|p| (p.name.as_deref().filter(|n| !n.is_empty()), p.number))
        {
            Some((Some(name), None)) => ServicePort::Name(name.to_string()),
            Some((None, Some(n))) => match u16::try_from(n) {
                Ok(n) if n > 0 => ServicePort::Number(n),
                _ => {
                    err(
                        diags,
                        Reason::InvalidBackend,
                        format!("{field}.service.port.number"),
                        format!("{n} is not a port number (1-65535)"),
                    );
                    return None;
                }
            },
            Some((Some(_), Some(_))) => {
                err(
                    diags,
                    Reason::InvalidBackend,
                    format!("{field}.service.port"),
                    "set either name or number, not both".into(),
                );
                return None;
            }
            None | Some((None, None)) => {
                err(
                    diags,
                    Reason::InvalidBackend,
                    format!("{field}.service.port"),
                    "required: a port name or number".into(),
                );
                return None;
            }
        };
        let key = (
            svc.name.as_str(),
            svc.port.as_ref().and_then(|p| p.name.as_deref()),
            svc.port.as_ref().and_then(|p| p.number),
        );
        if let Some(b) = cache.get(&key) {
            return Some(b.clone());
        }
        let service = ObjectRef::new(ingress.namespace.clone(), svc.name.clone());
        let endpoints = self.endpoints(ingress, field, &service, &port, diags);
        let b = Arc::new(Backend {
            ingress: ingress.clone(),
            service,
            port,
            endpoints,
            settings: settings.clone(),
        });
        cache.insert(key, b.clone());
        Some(b)
    }

    fn endpoints(
        &self,
        ingress: &ObjectRef,
        field: &dyn std::fmt::Display,
        service: &ObjectRef,
        port: &ServicePort,
        diags: &mut Vec<Diagnostic>,
    ) -> Vec<Endpoint> {
        let Some(svc) = self.services.get(service) else {
            diags.push(Diagnostic::error(
                Reason::ServiceNotFound,
                Kind::Ingress,
                ingress,
                format!("{field}.service.name"),
                format!("Service {service} not found; requests for this backend get 503"),
            ));
            return Vec::new();
        };
        let spec = svc.spec.as_ref();
        if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
            diags.push(Diagnostic::error(
                Reason::UnsupportedBackend,
                Kind::Ingress,
                ingress,
                format!("{field}.service.name"),
                format!("Service {service} is of type ExternalName, which sluice does not route to; requests get 503"),
            ));
            return Vec::new();
        }
        let ports = spec.and_then(|s| s.ports.as_deref()).unwrap_or_default();
        let named = |p: &&K8sServicePort| match port {
            ServicePort::Number(n) => p.port == i32::from(*n),
            ServicePort::Name(name) => p.name.as_deref() == Some(name.as_str()),
        };
        // The same port number may exist for TCP and UDP: prefer the TCP one.
        let found: Option<&K8sServicePort> = ports
            .iter()
            .filter(named)
            .find(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
            .or_else(|| ports.iter().find(named));
        let Some(sp) = found else {
            let (sub, what) = match port {
                ServicePort::Number(n) => ("number", format!("port {n}")),
                ServicePort::Name(n) => ("name", format!("a port named {n:?}")),
            };
            let have: Vec<String> = ports
                .iter()
                .map(|p| match &p.name {
                    Some(n) if !n.is_empty() => format!("{} ({n})", p.port),
                    _ => p.port.to_string(),
                })
                .collect();
            diags.push(Diagnostic::error(
                Reason::ServicePortNotFound,
                Kind::Ingress,
                ingress,
                format!("{field}.service.port.{sub}"),
                format!(
                    "Service {service} has no {what} (it has: {}); requests for this backend get 503",
                    if have.is_empty() { "none".to_string() } else { have.join(", ") }
                ),
            ));
            return Vec::new();
        };
        if sp.protocol.as_deref().is_some_and(|p| p != "TCP") {
            diags.push(Diagnostic::error(
                Reason::UnsupportedBackend,
                Kind::Ingress,
                ingress,
                format!("{field}.service.port"),
                format!(
                    "Service {service} port {} is not TCP; requests get 503",
                    sp.port
                ),
            ));
            return Vec::new();
        }
        let port_name = sp.name.as_deref().unwrap_or("");
        let mut ready = BTreeSet::new();
        let mut terminating = BTreeSet::new();
        for slice in self.slices.get(service).into_iter().flatten() {
            if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
                continue;
            }
            let slice_port = slice.ports.iter().flatten().find(|p| {
                p.name.as_deref().unwrap_or("") == port_name
                    && p.protocol.as_deref().unwrap_or("TCP") == "TCP"
            });
            let Some(target) = slice_port
                .and_then(|p| p.port)
                .and_then(|p| u16::try_from(p).ok())
            else {
                continue;
            };
            for (ei, ep) in slice.endpoints.iter().flatten().enumerate() {
                let Some(addr) = ep.addresses.first() else {
                    continue;
                };
                let ip: IpAddr = match addr.parse() {
                    Ok(ip) => ip,
                    Err(_) => {
                        diags.push(Diagnostic::warning(
                            Reason::InvalidEndpoint,
                            Kind::EndpointSlice,
                            &object_ref(&slice.metadata),
                            format!("endpoints[{ei}].addresses[0]"),
                            format!("{addr:?} is not an IP address; this endpoint is skipped"),
                        ));
                        continue;
                    }
                };
                let cond = ep.conditions.as_ref();
                let is_ready = cond.and_then(|c| c.ready).unwrap_or(true);
                // `serving` unset means true (EndpointConditions API docs; kube-proxy does the same).
                let serving = cond.and_then(|c| c.serving).unwrap_or(true);
                let is_terminating = cond.and_then(|c| c.terminating).unwrap_or(false);
                let sa = SocketAddr::new(ip, target);
                if is_ready {
                    ready.insert(sa);
                } else if serving && is_terminating {
                    terminating.insert(sa);
                }
            }
        }
        if !ready.is_empty() {
            return ready
                .into_iter()
                .map(|addr| Endpoint { addr, ready: true })
                .collect();
        }
        let msg = if terminating.is_empty() {
            format!(
                "Service {service} port {port} has no ready endpoints; requests get 503 until one is ready"
            )
        } else {
            format!(
                "Service {service} port {port} has no ready endpoints; using {} terminating endpoint(s) that still serve",
                terminating.len()
            )
        };
        diags.push(Diagnostic::warning(
            Reason::NoReadyEndpoints,
            Kind::Ingress,
            ingress,
            format!("{field}.service"),
            msg,
        ));
        terminating
            .into_iter()
            .map(|addr| Endpoint { addr, ready: false })
            .collect()
    }

    /// Whether the Secret exists (of any type).
    /// The number of the first port of Service `service`, if it exists and has one.
    pub(super) fn first_port(&self, service: &ObjectRef) -> Option<i32> {
        self.services
            .get(service)?
            .spec
            .as_ref()?
            .ports
            .as_ref()?
            .first()
            .map(|p| p.port)
    }

    /// The Secret `secret`, if it exists.
    pub(super) fn secret(&self, secret: &ObjectRef) -> Option<&'a Secret> {
        self.secrets.get(secret).copied()
    }

    pub(super) fn has_secret(&self, secret: &ObjectRef) -> bool {
        self.secrets.contains_key(secret)
    }

    /// The TLS Secrets parsed while translating.
    pub(super) fn into_parsed(self) -> crate::tls::ParsedSecrets {
        self.parsed.into_inner()
    }

    /// Checks that `secret` exists and is a usable TLS Secret; pushes an error and returns
    /// false if not. The Secret is parsed once per translation and the result kept for the
    /// certificate store.
    pub(super) fn check_tls_secret(
        &self,
        ingress: &ObjectRef,
        field: &str,
        secret: &ObjectRef,
        diags: &mut Vec<Diagnostic>,
    ) -> bool {
        let Some(s) = self.secrets.get(secret) else {
            diags.push(Diagnostic::error(
                Reason::SecretNotFound,
                Kind::Ingress,
                ingress,
                field,
                format!(
                    "Secret {secret} not found; its hosts are served with the default certificate"
                ),
            ));
            return false;
        };
        let type_ = s.type_.as_deref().unwrap_or("Opaque");
        let data = s.data.as_ref();
        let has = |k: &str| data.and_then(|d| d.get(k)).is_some_and(|v| !v.0.is_empty());
        let problem = if type_ != "kubernetes.io/tls" {
            Some(format!(
                "Secret {secret} has type {type_:?}, not \"kubernetes.io/tls\""
            ))
        } else if !has("tls.crt") || !has("tls.key") {
            Some(format!(
                "Secret {secret} must have non-empty data keys tls.crt and tls.key"
            ))
        } else {
            // Parsed here, so that a host whose certificate cannot be served is not
            // redirected to HTTPS: it keeps serving plain HTTP.
            let mut parsed = self.parsed.borrow_mut();
            let result = parsed
                .entry(secret.clone())
                .or_insert_with(|| crate::tls::parse_tls_secret(s));
            result
                .as_ref()
                .err()
                .map(|e| format!("Secret {secret}: {e}"))
        };
        match problem {
            Some(p) => {
                diags.push(Diagnostic::error(
                    Reason::SecretInvalid,
                    Kind::Ingress,
                    ingress,
                    field,
                    format!("{p}; its hosts are served with the default certificate and plain HTTP is not redirected"),
                ));
                false
            }
            None => true,
        }
    }
}
