//! Tests for [`translate`]: ownership by class, backend resolution, endpoint readiness,
//! conflicts, and every diagnostic it can produce.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    Secret, Service, ServicePort as K8sPort, ServiceSpec, TypedLocalObjectReference,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint as K8sEndpoint, EndpointConditions, EndpointPort, EndpointSlice,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, IngressBackend, IngressClassSpec, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::model::Backend;
use crate::model::ServicePort;
use crate::model::Severity::{self, Error, Warning};

// ---------------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------------

/// Metadata for `"namespace/name"`, or for a cluster-scoped `"name"`.
fn meta(id: &str) -> ObjectMeta {
    let (namespace, name) = match id.split_once('/') {
        Some((ns, name)) => (Some(ns.to_string()), name),
        None => (None, id),
    };
    ObjectMeta {
        namespace,
        name: Some(name.to_string()),
        ..Default::default()
    }
}

/// Ingress builder. Starts with `spec.ingressClassName: sluice`, which is ours under the
/// default options when no IngressClass of that name exists.
struct Ing(Ingress);

fn ing(id: &str) -> Ing {
    Ing(Ingress {
        metadata: meta(id),
        spec: Some(IngressSpec {
            ingress_class_name: Some("sluice".into()),
            ..Default::default()
        }),
        ..Default::default()
    })
}

impl Ing {
    fn spec(&mut self) -> &mut IngressSpec {
        self.0.spec.get_or_insert_with(Default::default)
    }

    fn class(mut self, class: Option<&str>) -> Self {
        self.spec().ingress_class_name = class.map(Into::into);
        self
    }

    fn annotate(mut self, key: &str, value: &str) -> Self {
        let annotations = self
            .0
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        annotations.insert(key.into(), value.into());
        self
    }

    fn created(mut self, secs: i64) -> Self {
        self.0.metadata.creation_timestamp = Some(Time(Timestamp::from_second(secs).unwrap()));
        self
    }

    /// A rule with an `http` block; an empty host means no host.
    fn rule(self, host: &str, paths: impl IntoIterator<Item = HTTPIngressPath>) -> Self {
        self.raw_rule(IngressRule {
            host: (!host.is_empty()).then(|| host.to_string()),
            http: Some(HTTPIngressRuleValue {
                paths: paths.into_iter().collect(),
            }),
        })
    }

    fn raw_rule(mut self, rule: IngressRule) -> Self {
        self.spec().rules.get_or_insert_with(Vec::new).push(rule);
        self
    }

    fn default_backend(mut self, backend: IngressBackend) -> Self {
        self.spec().default_backend = Some(backend);
        self
    }

    fn tls(mut self, hosts: Option<&[&str]>, secret: Option<&str>) -> Self {
        let tls = IngressTLS {
            hosts: hosts.map(|h| h.iter().map(ToString::to_string).collect()),
            secret_name: secret.map(Into::into),
        };
        self.spec().tls.get_or_insert_with(Vec::new).push(tls);
        self
    }

    fn build(self) -> Ingress {
        self.0
    }
}

fn path(path_type: &str, path: &str, backend: IngressBackend) -> HTTPIngressPath {
    HTTPIngressPath {
        path: Some(path.into()),
        path_type: path_type.into(),
        backend,
    }
}

/// A `Prefix` path to `web:80`.
fn prefix(p: &str) -> HTTPIngressPath {
    path("Prefix", p, to("web", 80))
}

fn backend(service: &str, number: Option<i32>, port_name: Option<&str>) -> IngressBackend {
    IngressBackend {
        service: Some(IngressServiceBackend {
            name: service.into(),
            port: Some(ServiceBackendPort {
                name: port_name.map(Into::into),
                number,
            }),
        }),
        resource: None,
    }
}

/// Service backend by port number.
fn to(service: &str, port: i32) -> IngressBackend {
    backend(service, Some(port), None)
}

/// Service backend by port name.
fn to_named(service: &str, port: &str) -> IngressBackend {
    backend(service, None, Some(port))
}

fn ingress_class(name: &str, controller: &str, is_default: bool) -> IngressClass {
    let mut metadata = meta(name);
    if is_default {
        metadata.annotations = Some(BTreeMap::from([(
            DEFAULT_CLASS_ANNOTATION.into(),
            "true".into(),
        )]));
    }
    IngressClass {
        metadata,
        spec: Some(IngressClassSpec {
            controller: Some(controller.into()),
            parameters: None,
        }),
    }
}

/// A Service with TCP ports `(name, port)`; an empty name is an unnamed port.
fn service(id: &str, ports: &[(&str, i32)]) -> Service {
    let ports = ports
        .iter()
        .map(|&(name, port)| K8sPort {
            name: (!name.is_empty()).then(|| name.into()),
            port,
            ..Default::default()
        })
        .collect();
    Service {
        metadata: meta(id),
        spec: Some(ServiceSpec {
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An EndpointSlice of `service` with ports `(name, targetPort)`.
fn slice(
    id: &str,
    service: &str,
    address_type: &str,
    ports: &[(&str, i32)],
    endpoints: Vec<K8sEndpoint>,
) -> EndpointSlice {
    let mut metadata = meta(id);
    metadata.labels = Some(BTreeMap::from([(
        "kubernetes.io/service-name".into(),
        service.into(),
    )]));
    let ports = ports
        .iter()
        .map(|&(name, port)| EndpointPort {
            name: Some(name.into()),
            port: Some(port),
            ..Default::default()
        })
        .collect();
    EndpointSlice {
        metadata,
        address_type: address_type.into(),
        ports: Some(ports),
        endpoints: Some(endpoints),
    }
}

/// An endpoint without conditions.
fn ep(addr: &str) -> K8sEndpoint {
    K8sEndpoint {
        addresses: vec![addr.into()],
        ..Default::default()
    }
}

fn ep_with(
    addr: &str,
    ready: Option<bool>,
    serving: Option<bool>,
    terminating: Option<bool>,
) -> K8sEndpoint {
    K8sEndpoint {
        conditions: Some(EndpointConditions {
            ready,
            serving,
            terminating,
        }),
        ..ep(addr)
    }
}

fn tls_secret(id: &str) -> Secret {
    Secret {
        metadata: meta(id),
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            (
                "tls.crt".into(),
                ByteString(crate::tls::test_pem().0.clone().into_bytes()),
            ),
            (
                "tls.key".into(),
                ByteString(crate::tls::test_pem().1.clone().into_bytes()),
            ),
        ])),
        ..Default::default()
    }
}

/// `ingresses` plus, in namespace `ns` and in every namespace of `ingresses`, Service `web`
/// (port `http` 80 -> 8080 on 10.0.0.1); and TLS Secret `ns/cert`.
fn world(ingresses: Vec<Ingress>) -> ClusterState {
    let mut namespaces: Vec<String> = ingresses
        .iter()
        .map(|i| object_ref(&i.metadata).namespace)
        .collect();
    namespaces.push("ns".into());
    namespaces.sort();
    namespaces.dedup();
    ClusterState {
        ingresses,
        services: namespaces
            .iter()
            .map(|ns| service(&format!("{ns}/web"), &[("http", 80)]))
            .collect(),
        endpoint_slices: namespaces
            .iter()
            .map(|ns| {
                slice(
                    &format!("{ns}/web-1"),
                    "web",
                    "IPv4",
                    &[("http", 8080)],
                    vec![ep("10.0.0.1")],
                )
            })
            .collect(),
        secrets: vec![tls_secret("ns/cert")],
        ..Default::default()
    }
}

fn run(state: &ClusterState) -> Translation {
    translate(state, &Options::default())
}

// ---------------------------------------------------------------------------------------------
// Inspection helpers
// ---------------------------------------------------------------------------------------------

/// Routes as `host+path kind -> backend`, sorted, e.g. `a.com/x Prefix -> ns/web:80`.
fn routes(t: &Translation) -> Vec<String> {
    let mut v: Vec<String> = t
        .model
        .routes
        .iter()
        .map(|r| {
            format!(
                "{}{} {} -> {}",
                r.host,
                r.path.path,
                r.path.kind,
                r.backend.label()
            )
        })
        .collect();
    v.sort();
    v
}

/// The route for `host+path` as formatted by [`routes`].
#[track_caller]
fn route<'a>(t: &'a Translation, host_path: &str) -> &'a Route {
    t.model
        .routes
        .iter()
        .find(|r| format!("{}{}", r.host, r.path.path) == host_path)
        .unwrap_or_else(|| panic!("no route {host_path}; have {:?}", routes(t)))
}

/// Endpoint addresses; the ones that are not ready are marked ` terminating`.
fn eps(b: &Backend) -> Vec<String> {
    b.endpoints
        .iter()
        .map(|e| {
            if e.ready {
                e.addr.to_string()
            } else {
                format!("{} terminating", e.addr)
            }
        })
        .collect()
}

fn owned(t: &Translation) -> Vec<String> {
    t.model.ingresses.iter().map(ToString::to_string).collect()
}

fn tls_hosts(t: &Translation) -> Vec<String> {
    let mut v: Vec<String> = t
        .model
        .tls
        .iter()
        .map(|h| format!("{} {} ({})", h.host, h.secret, h.ingress))
        .collect();
    v.sort();
    v
}

/// Checks severity, reason, object, exact field, and that Display starts with
/// `namespace/name: field: ` (prefixed by the kind for objects other than Ingresses).
#[track_caller]
fn check(d: &Diagnostic, severity: Severity, reason: Reason, object: &str, field: &str) {
    assert_eq!(
        (
            d.severity,
            d.reason,
            d.object.to_string().as_str(),
            d.field.as_str()
        ),
        (severity, reason, object, field),
        "{d}"
    );
    let kind = if d.kind == Kind::Ingress {
        String::new()
    } else {
        format!("{} ", d.kind)
    };
    let prefix = format!("{kind}{object}: {field}: ");
    assert!(
        d.to_string().starts_with(&prefix),
        "{d:?} does not display as {prefix:?}..."
    );
}

/// The only diagnostic, checked as [`check`] does.
#[track_caller]
fn only<'a>(
    t: &'a Translation,
    severity: Severity,
    reason: Reason,
    object: &str,
    field: &str,
) -> &'a Diagnostic {
    assert_eq!(
        t.diagnostics.len(),
        1,
        "expected one diagnostic: {:#?}",
        t.diagnostics
    );
    check(&t.diagnostics[0], severity, reason, object, field);
    &t.diagnostics[0]
}

#[track_caller]
fn no_diagnostics(t: &Translation) {
    assert!(t.diagnostics.is_empty(), "{:#?}", t.diagnostics);
}

// ---------------------------------------------------------------------------------------------
// Classes
// ---------------------------------------------------------------------------------------------

#[test]
fn class_with_our_controller_is_ours() {
    let mut s = world(vec![
        ing("ns/a")
            .class(Some("fast"))
            .rule("a.com", [prefix("/")])
            .build(),
    ]);
    s.ingress_classes = vec![ingress_class("fast", DEFAULT_CONTROLLER_NAME, false)];
    let t = run(&s);
    assert_eq!(routes(&t), ["a.com/ Prefix -> ns/web:80"]);
    assert_eq!(owned(&t), ["ns/a"]);
    no_diagnostics(&t);
}

#[test]
fn class_with_a_foreign_controller_is_ignored() {
    // Broken on purpose: translated, it would produce diagnostics.
    let broken = ing("ns/a")
        .class(Some("nginx"))
        .rule("Bad.com", [prefix("/")])
        .rule("a.com", [path("Regex", "/", to("missing", 80))])
        .tls(None, Some("missing"))
        .build();
    let mut s = world(vec![broken]);
    s.ingress_classes = vec![ingress_class("nginx", "k8s.io/ingress-nginx", false)];
    let t = run(&s);
    assert_eq!(t.model, Model::default());
    no_diagnostics(&t);
}

#[test]
fn our_class_name_without_an_ingressclass_object_is_ours() {
    let t = run(&world(vec![
        ing("ns/a").rule("a.com", [prefix("/")]).build(),
    ]));
    assert_eq!(routes(&t), ["a.com/ Prefix -> ns/web:80"]);
    assert_eq!(owned(&t), ["ns/a"]);
}

#[test]
fn our_class_name_held_by_a_foreign_ingressclass_is_not_ours() {
    let mut s = world(vec![ing("ns/a").rule("a.com", [prefix("/")]).build()]);
    s.ingress_classes = vec![ingress_class("sluice", "example.com/other", false)];
    let t = run(&s);
    assert_eq!(t.model, Model::default());
    no_diagnostics(&t);
}

#[test]
fn legacy_class_annotation() {
    let legacy = |id: &str, class: &str| {
        ing(id)
            .class(None)
            .annotate(LEGACY_CLASS_ANNOTATION, class)
            .rule("", [prefix(&format!("/{}", &id[3..]))])
    };
    let mut s = world(vec![
        legacy("ns/a", "sluice").build(), // our name, no IngressClass object
        legacy("ns/b", "fast").build(),   // IngressClass with our controller
        legacy("ns/c", "nginx").build(),  // IngressClass with another controller
        legacy("ns/d", "other").build(),  // no such IngressClass, not our name
    ]);
    s.ingress_classes = vec![
        ingress_class("fast", DEFAULT_CONTROLLER_NAME, false),
        ingress_class("nginx", "k8s.io/ingress-nginx", true),
    ];
    let t = run(&s);
    assert_eq!(owned(&t), ["ns/a", "ns/b"]);
    assert_eq!(
        routes(&t),
        ["*/a Prefix -> ns/web:80", "*/b Prefix -> ns/web:80"]
    );
    no_diagnostics(&t);
}

#[test]
fn ingress_class_name_wins_over_the_annotation() {
    let mut s = world(vec![
        ing("ns/a")
            .class(Some("nginx"))
            .annotate(LEGACY_CLASS_ANNOTATION, "sluice")
            .build(),
        ing("ns/b")
            .class(Some("sluice"))
            .annotate(LEGACY_CLASS_ANNOTATION, "nginx")
            .build(),
    ]);
    s.ingress_classes = vec![ingress_class("nginx", "k8s.io/ingress-nginx", false)];
    assert_eq!(owned(&run(&s)), ["ns/b"]);
}

#[test]
fn classless_ingresses() {
    let mut s = world(vec![
        ing("ns/a").class(None).rule("a.com", [prefix("/")]).build(),
    ]);
    let ours = |s: &ClusterState, options: &Options| !translate(s, options).model.routes.is_empty();
    let default = Options::default();

    assert!(!ours(&s, &default), "ignored by default");

    let watch = Options {
        watch_without_class: true,
        ..Options::default()
    };
    assert!(ours(&s, &watch), "ours with watch_without_class");

    s.ingress_classes = vec![ingress_class("fast", DEFAULT_CONTROLLER_NAME, true)];
    assert!(
        ours(&s, &default),
        "ours when one of our classes is the default"
    );
    assert_eq!(owned(&run(&s)), ["ns/a"]);

    s.ingress_classes = vec![
        ingress_class("fast", DEFAULT_CONTROLLER_NAME, false),
        ingress_class("nginx", "k8s.io/ingress-nginx", true),
    ];
    assert!(
        !ours(&s, &default),
        "not ours when only a foreign class is the default"
    );

    let mut not_default = ingress_class("fast", DEFAULT_CONTROLLER_NAME, false);
    not_default.metadata.annotations = Some(BTreeMap::from([(
        DEFAULT_CLASS_ANNOTATION.into(),
        "false".into(),
    )]));
    s.ingress_classes = vec![not_default];
    assert!(
        !ours(&s, &default),
        "is-default-class: false is not the default"
    );
}

#[test]
fn model_ingresses_lists_exactly_the_owned_ones_sorted() {
    let no_spec = Ingress {
        metadata: meta("ns/nospec"),
        spec: None,
        status: None,
    };
    let mut s = world(vec![
        ing("zz/last").build(),
        ing("ns/foreign").class(Some("nginx")).build(),
        ing("aa/first").rule("a.com", [prefix("/")]).build(),
        ing("ns/classless").class(None).build(),
        Ingress {
            metadata: meta("ns/legacy"),
            ..no_spec.clone()
        },
        no_spec,
        ing("ns/mid").class(Some("fast")).build(),
    ]);
    s.ingresses[4]
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(LEGACY_CLASS_ANNOTATION.into(), "sluice".into());
    s.ingress_classes = vec![
        ingress_class("fast", DEFAULT_CONTROLLER_NAME, false),
        ingress_class("nginx", "k8s.io/ingress-nginx", false),
    ];
    let t = run(&s);
    assert_eq!(owned(&t), ["aa/first", "ns/legacy", "ns/mid", "zz/last"]);
    no_diagnostics(&t);
}

// ---------------------------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------------------------

#[test]
fn service_port_by_number_and_by_name() {
    let t = run(&world(vec![
        ing("ns/a")
            .rule(
                "a.com",
                [
                    path("Prefix", "/num", to("web", 80)),
                    path("Prefix", "/name", to_named("web", "http")),
                ],
            )
            .build(),
    ]));
    no_diagnostics(&t);
    assert_eq!(
        routes(&t),
        [
            "a.com/name Prefix -> ns/web:http",
            "a.com/num Prefix -> ns/web:80"
        ]
    );
    let by_number = &route(&t, "a.com/num").backend;
    assert_eq!(by_number.port, ServicePort::Number(80));
    assert_eq!(by_number.service, ObjectRef::new("ns", "web"));
    assert_eq!(by_number.ingress, ObjectRef::new("ns", "a"));
    assert_eq!(eps(by_number), ["10.0.0.1:8080"]);
    let by_name = &route(&t, "a.com/name").backend;
    assert_eq!(by_name.port, ServicePort::Name("http".into()));
    assert_eq!(eps(by_name), ["10.0.0.1:8080"]);
}

#[test]
fn multi_port_service_maps_each_port_to_its_slice_port_by_name() {
    let mut s = world(vec![
        ing("ns/a")
            .rule(
                "a.com",
                [
                    path("Prefix", "/app", to("multi", 80)),
                    path("Prefix", "/metrics", to_named("multi", "metrics")),
                ],
            )
            .build(),
    ]);
    s.services
        .push(service("ns/multi", &[("http", 80), ("metrics", 9090)]));
    s.endpoint_slices.push(slice(
        "ns/multi-1",
        "multi",
        "IPv4",
        &[("metrics", 9100), ("http", 8080)],
        vec![ep("10.0.1.2"), ep("10.0.1.1")],
    ));
    let t = run(&s);
    no_diagnostics(&t);
    assert_eq!(
        eps(&route(&t, "a.com/app").backend),
        ["10.0.1.1:8080", "10.0.1.2:8080"]
    );
    assert_eq!(
        eps(&route(&t, "a.com/metrics").backend),
        ["10.0.1.1:9100", "10.0.1.2:9100"]
    );
}

#[test]
fn unnamed_single_port() {
    let mut s = world(vec![
        ing("ns/a")
            .rule("a.com", [path("Prefix", "/", to("solo", 80))])
            .build(),
    ]);
    s.services.push(service("ns/solo", &[("", 80)]));
    // The EndpointSlice controller writes `name: ""`; also accept the name left out.
    let mut unnamed = slice(
        "ns/solo-2",
        "solo",
        "IPv4",
        &[("", 3000)],
        vec![ep("10.0.2.2")],
    );
    unnamed.ports.as_mut().unwrap()[0].name = None;
    s.endpoint_slices.push(slice(
        "ns/solo-1",
        "solo",
        "IPv4",
        &[("", 3000)],
        vec![ep("10.0.2.1")],
    ));
    s.endpoint_slices.push(unnamed);
    let t = run(&s);
    no_diagnostics(&t);
    assert_eq!(
        eps(&route(&t, "a.com/").backend),
        ["10.0.2.1:3000", "10.0.2.2:3000"]
    );
}

#[test]
fn slices_merge_across_slices_and_families_without_duplicates() {
    let mut s = world(vec![ing("ns/a").rule("a.com", [prefix("/")]).build()]);
    s.endpoint_slices = vec![
        slice(
            "ns/web-a",
            "web",
            "IPv4",
            &[("http", 8080)],
            vec![ep("10.0.0.2"), ep("10.0.0.1")],
        ),
        slice(
            "ns/web-b",
            "web",
            "IPv4",
            &[("http", 8080)],
            vec![ep("10.0.0.2"), ep("10.0.0.3")],
        ),
        slice(
            "ns/web-c",
            "web",
            "IPv6",
            &[("http", 8080)],
            vec![ep("fd00::1"), ep("fd00::1")],
        ),
    ];
    let t = run(&s);
    no_diagnostics(&t);
    let b = &route(&t, "a.com/").backend;
    assert_eq!(
        eps(b),
        [
            "10.0.0.1:8080",
            "10.0.0.2:8080",
            "10.0.0.3:8080",
            "[fd00::1]:8080"
        ]
    );
    let v6: SocketAddr = "[fd00::1]:8080".parse().unwrap();
    assert!(v6.is_ipv6());
    assert_eq!(b.endpoints.iter().filter(|e| e.addr == v6).count(), 1);
}

#[test]
fn slices_of_other_services_namespaces_and_fqdn_slices_are_not_used() {
    let mut s = world(vec![ing("ns/a").rule("a.com", [prefix("/")]).build()]);
    let mut unlabelled = slice(
        "ns/web-x",
        "web",
        "IPv4",
        &[("http", 8080)],
        vec![ep("10.9.0.4")],
    );
    unlabelled.metadata.labels = None;
    s.endpoint_slices.extend([
        slice(
            "ns/other-1",
            "other",
            "IPv4",
            &[("http", 8080)],
            vec![ep("10.9.0.1")],
        ),
        slice(
            "elsewhere/web-1",
            "web",
            "IPv4",
            &[("http", 8080)],
            vec![ep("10.9.0.2")],
        ),
        slice(
            "ns/web-fqdn",
            "web",
            "FQDN",
            &[("http", 8080)],
            vec![ep("web.example.com")],
        ),
        unlabelled,
    ]);
    let t = run(&s);
    no_diagnostics(&t);
    assert_eq!(eps(&route(&t, "a.com/").backend), ["10.0.0.1:8080"]);
}

#[test]
fn tcp_port_is_used_when_a_udp_port_shares_its_number() {
    let mut s = world(vec![
        ing("ns/a")
            .rule("a.com", [path("Prefix", "/", to("dns", 53))])
            .build(),
    ]);
    let mut dns = service("ns/dns", &[("dns-udp", 53), ("dns-tcp", 53)]);
    dns.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].protocol = Some("UDP".into());
    s.services.push(dns);
    s.endpoint_slices.push(slice(
        "ns/dns-1",
        "dns",
        "IPv4",
        &[("dns-tcp", 5353)],
        vec![ep("10.0.3.1")],
    ));
    let t = run(&s);
    no_diagnostics(&t);
    assert_eq!(eps(&route(&t, "a.com/").backend), ["10.0.3.1:5353"]);
}

// ---------------------------------------------------------------------------------------------
// Readiness
// ---------------------------------------------------------------------------------------------

fn readiness_world(endpoints: Vec<K8sEndpoint>) -> ClusterState {
    let mut s = world(vec![ing("ns/a").rule("a.com", [prefix("/")]).build()]);
    s.endpoint_slices = vec![slice(
        "ns/web-1",
        "web",
        "IPv4",
        &[("http", 8080)],
        endpoints,
    )];
    s
}

#[test]
fn ready_unset_counts_as_ready_and_not_ready_is_excluded() {
    let t = run(&readiness_world(vec![
        ep("10.0.0.1"),
        ep_with("10.0.0.2", None, None, None),
        ep_with("10.0.0.3", Some(false), Some(false), Some(false)),
        ep_with("10.0.0.4", Some(false), Some(true), Some(true)),
        ep_with("10.0.0.5", Some(true), Some(true), Some(false)),
    ]));
    no_diagnostics(&t);
    // The serving-but-terminating 10.0.0.4 is not used while ready endpoints exist.
    assert_eq!(
        eps(&route(&t, "a.com/").backend),
        ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.5:8080"]
    );
}

#[test]
fn serving_terminating_endpoints_are_used_when_none_is_ready() {
    let t = run(&readiness_world(vec![
        ep_with("10.0.0.3", Some(false), Some(false), Some(false)),
        ep_with("10.0.0.4", Some(false), Some(true), Some(true)),
        ep_with("10.0.0.5", Some(false), Some(false), Some(true)),
    ]));
    assert_eq!(
        eps(&route(&t, "a.com/").backend),
        ["10.0.0.4:8080 terminating"]
    );
    let d = only(
        &t,
        Warning,
        Reason::NoReadyEndpoints,
        "ns/a",
        "spec.rules[0].http.paths[0].backend.service",
    );
    assert!(d.message.contains("terminating"), "{d}");
}

#[test]
fn serving_unset_counts_as_serving() {
    let t = run(&readiness_world(vec![ep_with(
        "10.0.0.4",
        Some(false),
        None,
        Some(true),
    )]));
    assert_eq!(
        eps(&route(&t, "a.com/").backend),
        ["10.0.0.4:8080 terminating"]
    );
}

#[test]
fn no_usable_endpoint_keeps_the_route_with_a_warning() {
    let t = run(&readiness_world(vec![ep_with(
        "10.0.0.3",
        Some(false),
        Some(false),
        Some(false),
    )]));
    assert_eq!(routes(&t), ["a.com/ Prefix -> ns/web:80"]);
    assert!(route(&t, "a.com/").backend.endpoints.is_empty());
    let d = only(
        &t,
        Warning,
        Reason::NoReadyEndpoints,
        "ns/a",
        "spec.rules[0].http.paths[0].backend.service",
    );
    assert!(d.message.contains("503"), "{d}");

    // No EndpointSlice at all: the same.
    let mut s = readiness_world(vec![]);
    s.endpoint_slices.clear();
    let t = run(&s);
    assert!(route(&t, "a.com/").backend.endpoints.is_empty());
    only(
        &t,
        Warning,
        Reason::NoReadyEndpoints,
        "ns/a",
        "spec.rules[0].http.paths[0].backend.service",
    );
}

// ---------------------------------------------------------------------------------------------
// Conflicts
// ---------------------------------------------------------------------------------------------

#[test]
fn the_older_ingress_wins_a_path_conflict_regardless_of_list_order() {
    let older = ing("ns/b")
        .created(100)
        .rule("a.com", [prefix("/x")])
        .build();
    let newer = ing("ns/a")
        .created(200)
        .rule("a.com", [path("Prefix", "/x/", to_named("web", "http"))])
        .build();
    for list in [vec![older.clone(), newer.clone()], vec![newer, older]] {
        let t = run(&world(list));
        assert_eq!(routes(&t), ["a.com/x Prefix -> ns/web:80"]);
        assert_eq!(
            route(&t, "a.com/x").source.ingress,
            ObjectRef::new("ns", "b")
        );
        assert_eq!(owned(&t), ["ns/a", "ns/b"]);
        let d = only(
            &t,
            Error,
            Reason::PathConflict,
            "ns/a",
            "spec.rules[0].http.paths[0]",
        );
        assert!(d.to_string().contains("Ingress ns/b"), "{d}");
    }
}

#[test]
fn conflict_ties_go_to_namespace_then_name() {
    // `ab/z` sorts before `ns/a`: namespace first, then name.
    let first = |i: Ing| i.rule("a.com", [prefix("/x")]).build();
    let second = |i: Ing| {
        i.rule("a.com", [path("Exact", "/y", to("web", 80)), prefix("/x")])
            .build()
    };
    for (a, b) in [
        (ing("ab/z").created(5), ing("ns/a").created(5)),
        (ing("ab/z"), ing("ns/a")),
        (ing("ns/a"), ing("ns/b")),
    ] {
        let (winner, loser) = (object_ref(&a.0.metadata), object_ref(&b.0.metadata));
        let t = run(&world(vec![second(b), first(a)]));
        assert_eq!(route(&t, "a.com/x").source.ingress, winner);
        let d = only(
            &t,
            Error,
            Reason::PathConflict,
            &loser.to_string(),
            "spec.rules[0].http.paths[1]",
        );
        assert!(d.message.contains(&winner.to_string()), "{d}");
    }
}

#[test]
fn a_missing_creation_timestamp_counts_as_newest() {
    let t = run(&world(vec![
        ing("ns/a").rule("a.com", [prefix("/x")]).build(),
        ing("ns/b")
            .created(1_700_000_000)
            .rule("a.com", [prefix("/x")])
            .build(),
    ]));
    assert_eq!(
        route(&t, "a.com/x").source.ingress,
        ObjectRef::new("ns", "b")
    );
    only(
        &t,
        Error,
        Reason::PathConflict,
        "ns/a",
        "spec.rules[0].http.paths[0]",
    );
}

#[test]
fn same_path_with_different_types_is_not_a_conflict() {
    let t = run(&world(vec![
        ing("ns/a")
            .rule("a.com", [path("Exact", "/x", to("web", 80))])
            .build(),
        ing("ns/b").rule("a.com", [prefix("/x")]).build(),
    ]));
    no_diagnostics(&t);
    assert_eq!(
        routes(&t),
        ["a.com/x Exact -> ns/web:80", "a.com/x Prefix -> ns/web:80"]
    );
}

#[test]
fn paths_of_different_ingresses_on_one_host_merge() {
    let t = run(&world(vec![
        ing("ns/a").rule("a.com", [prefix("/a")]).build(),
        ing("other/b")
            .rule("a.com", [prefix("/b")])
            .rule("", [prefix("/b")])
            .build(),
    ]));
    no_diagnostics(&t);
    assert_eq!(
        routes(&t),
        [
            "*/b Prefix -> other/web:80",
            "a.com/a Prefix -> ns/web:80",
            "a.com/b Prefix -> other/web:80"
        ]
    );
    assert_eq!(
        route(&t, "a.com/b").source,
        RouteSource {
            ingress: ObjectRef::new("other", "b"),
            rule: 0,
            path: 0
        }
    );
}

#[test]
fn duplicate_path_within_one_ingress() {
    let t = run(&world(vec![
        ing("ns/a")
            .rule(
                "a.com",
                [prefix("/x"), path("Prefix", "/x/", to_named("web", "http"))],
            )
            .build(),
    ]));
    assert_eq!(routes(&t), ["a.com/x Prefix -> ns/web:80"]);
    let d = only(
        &t,
        Error,
        Reason::PathConflict,
        "ns/a",
        "spec.rules[0].http.paths[1]",
    );
    assert!(
        d.message
            .contains("spec.rules[0].http.paths[0] of this Ingress"),
        "{d}"
    );

    // Across two rules for the same host.
    let t = run(&world(vec![
        ing("ns/a")
            .rule("a.com", [prefix("/x")])
            .rule("a.com", [prefix("/x")])
            .build(),
    ]));
    assert_eq!(routes(&t), ["a.com/x Prefix -> ns/web:80"]);
    only(
        &t,
        Error,
        Reason::PathConflict,
        "ns/a",
        "spec.rules[1].http.paths[0]",
    );
}

#[test]
fn default_backend_conflict() {
    let t = run(&world(vec![
        ing("ns/a")
            .created(20)
            .default_backend(to_named("web", "http"))
            .build(),
        ing("ns/b")
            .created(10)
            .default_backend(to("web", 80))
            .build(),
    ]));
    let default = t.model.default_backend.as_ref().expect("default backend");
    assert_eq!(default.label(), "ns/web:80");
    assert_eq!(default.ingress, ObjectRef::new("ns", "b"));
    assert_eq!(eps(default), ["10.0.0.1:8080"]);
    let d = only(
        &t,
        Error,
        Reason::DefaultBackendConflict,
        "ns/a",
        "spec.defaultBackend",
    );
    assert!(d.message.contains("ns/b"), "{d}");
}

#[test]
fn tls_conflict() {
    let mut s = world(vec![
        ing("ns/a")
            .created(20)
            .tls(Some(&["a.com", "b.com"]), Some("cert2"))
            .build(),
        ing("ns/b")
            .created(10)
            .tls(Some(&["a.com"]), Some("cert"))
            .build(),
    ]);
    s.secrets.push(tls_secret("ns/cert2"));
    let t = run(&s);
    assert_eq!(
        tls_hosts(&t),
        ["a.com ns/cert (ns/b)", "b.com ns/cert2 (ns/a)"]
    );
    let d = only(&t, Error, Reason::TlsConflict, "ns/a", "spec.tls[0]");
    assert!(
        d.message.contains("ns/b") && d.message.contains("ns/cert"),
        "{d}"
    );
}

#[test]
fn the_same_tls_secret_in_two_ingresses_is_fine() {
    let t = run(&world(vec![
        ing("ns/a")
            .created(20)
            .tls(Some(&["a.com"]), Some("cert"))
            .build(),
        ing("ns/b")
            .created(10)
            .tls(Some(&["a.com"]), Some("cert"))
            .build(),
    ]));
    no_diagnostics(&t);
    assert_eq!(tls_hosts(&t), ["a.com ns/cert (ns/b)"]);
}

// ---------------------------------------------------------------------------------------------
// Diagnostics, one Reason at a time. Each bad object also has a good part that must survive.
// ---------------------------------------------------------------------------------------------

#[test]
fn invalid_rule_host() {
    for (host, says) in [
        ("Foo.com", "label"),
        ("10.0.0.1", "IP address"),
        ("foo.*.com", "wildcard"),
        ("*", "label"),
        ("a..com", "label"),
    ] {
        let t = run(&world(vec![
            ing("ns/a")
                .rule(host, [prefix("/")])
                .rule("ok.com", [prefix("/")])
                .build(),
        ]));
        let d = only(&t, Error, Reason::InvalidHost, "ns/a", "spec.rules[0].host");
        assert!(d.message.contains(says), "{d}");
        assert_eq!(routes(&t), ["ok.com/ Prefix -> ns/web:80"], "{host}");
    }
}

#[test]
fn invalid_tls_host() {
    for host in ["Foo.com", "10.0.0.1", "foo.*.com", ""] {
        let t = run(&world(vec![
            ing("ns/a")
                .rule("ok.com", [prefix("/")])
                .tls(Some(&[host, "ok.com"]), Some("cert"))
                .build(),
        ]));
        only(
            &t,
            Error,
            Reason::InvalidHost,
            "ns/a",
            "spec.tls[0].hosts[0]",
        );
        assert_eq!(tls_hosts(&t), ["ok.com ns/cert (ns/a)"], "{host:?}");
        assert_eq!(routes(&t), ["ok.com/ Prefix -> ns/web:80"]);
    }
}

#[test]
fn invalid_path() {
    let cases: [(&str, Option<&str>, &str); 15] = [
        ("", Some("/x"), "pathType"),
        ("Regex", Some("/x"), "pathType"),
        ("prefix", Some("/x"), "pathType"),
        ("Prefix", None, "path"),
        ("Prefix", Some(""), "path"),
        ("Exact", None, "path"),
        ("Prefix", Some("x"), "path"),
        ("ImplementationSpecific", Some("x"), "path"),
        ("Prefix", Some("/a//b"), "path"),
        ("Exact", Some("/a/.."), "path"),
        ("Prefix", Some("/a/./b"), "path"),
        ("Prefix", Some("/a?b=1"), "path"),
        ("Prefix", Some("/a#b"), "path"),
        ("Prefix", Some("/a%zz"), "path"),
        ("Prefix", Some("/a%2Fb"), "path"),
    ];
    for (path_type, p, sub) in cases {
        let bad = HTTPIngressPath {
            path: p.map(Into::into),
            path_type: path_type.into(),
            backend: to("web", 80),
        };
        let t = run(&world(vec![
            ing("ns/a").rule("a.com", [bad, prefix("/ok")]).build(),
        ]));
        let field = format!("spec.rules[0].http.paths[0].{sub}");
        only(&t, Error, Reason::InvalidPath, "ns/a", &field);
        assert_eq!(
            routes(&t),
            ["a.com/ok Prefix -> ns/web:80"],
            "{path_type} {p:?}"
        );
    }
}

#[test]
fn implementation_specific_is_prefix_and_defaults_to_root() {
    let no_path = HTTPIngressPath {
        path: None,
        ..path("ImplementationSpecific", "", to("web", 80))
    };
    let t = run(&world(vec![
        ing("ns/a")
            .rule("a.com", [path("ImplementationSpecific", "", to("web", 80))])
            .rule("b.com", [no_path])
            .rule(
                "c.com",
                [path("ImplementationSpecific", "/foo/", to("web", 80))],
            )
            .build(),
    ]));
    no_diagnostics(&t);
    assert_eq!(
        routes(&t),
        [
            "a.com/ Prefix -> ns/web:80",
            "b.com/ Prefix -> ns/web:80",
            "c.com/foo Prefix -> ns/web:80"
        ]
    );
}

#[test]
fn invalid_backend() {
    let with_port = |port: Option<ServiceBackendPort>| IngressBackend {
        service: Some(IngressServiceBackend {
            name: "web".into(),
            port,
        }),
        resource: None,
    };
    let cases = [
        (IngressBackend::default(), "service"),
        (backend("", Some(80), None), "service.name"),
        (with_port(None), "service.port"),
        (
            with_port(Some(ServiceBackendPort::default())),
            "service.port",
        ),
        (backend("web", None, Some("")), "service.port"),
        (backend("web", Some(80), Some("http")), "service.port"),
        (backend("web", Some(0), None), "service.port.number"),
        (backend("web", Some(70000), None), "service.port.number"),
        (backend("web", Some(-1), None), "service.port.number"),
    ];
    for (bad, sub) in cases {
        let t = run(&world(vec![
            ing("ns/a")
                .rule(
                    "a.com",
                    [path("Prefix", "/bad", bad.clone()), prefix("/ok")],
                )
                .build(),
        ]));
        let field = format!("spec.rules[0].http.paths[0].backend.{sub}");
        only(&t, Error, Reason::InvalidBackend, "ns/a", &field);
        assert_eq!(routes(&t), ["a.com/ok Prefix -> ns/web:80"], "{bad:?}");

        // The same in spec.defaultBackend: no default backend, the rules still served.
        let t = run(&world(vec![
            ing("ns/a")
                .default_backend(bad)
                .rule("a.com", [prefix("/ok")])
                .build(),
        ]));
        only(
            &t,
            Error,
            Reason::InvalidBackend,
            "ns/a",
            &format!("spec.defaultBackend.{sub}"),
        );
        assert!(t.model.default_backend.is_none());
        assert_eq!(routes(&t), ["a.com/ok Prefix -> ns/web:80"]);
    }
}

#[test]
fn unsupported_resource_backend_drops_the_path() {
    let resource = IngressBackend {
        resource: Some(TypedLocalObjectReference {
            api_group: Some("k8s.example.com".into()),
            kind: "StorageBucket".into(),
            name: "static-assets".into(),
        }),
        service: None,
    };
    let t = run(&world(vec![
        ing("ns/a")
            .rule("a.com", [path("Prefix", "/bad", resource), prefix("/ok")])
            .build(),
    ]));
    only(
        &t,
        Error,
        Reason::UnsupportedBackend,
        "ns/a",
        "spec.rules[0].http.paths[0].backend.resource",
    );
    assert_eq!(routes(&t), ["a.com/ok Prefix -> ns/web:80"]);
}

#[test]
fn unsupported_external_name_service_keeps_the_route_without_endpoints() {
    let mut s = world(vec![
        ing("ns/a")
            .rule(
                "a.com",
                [path("Prefix", "/ext", to("ext", 80)), prefix("/ok")],
            )
            .build(),
    ]);
    let mut ext = service("ns/ext", &[("http", 80)]);
    let spec = ext.spec.as_mut().unwrap();
    spec.type_ = Some("ExternalName".into());
    spec.external_name = Some("example.com".into());
    s.services.push(ext);
    let t = run(&s);
    only(
        &t,
        Error,
        Reason::UnsupportedBackend,
        "ns/a",
        "spec.rules[0].http.paths[0].backend.service.name",
    );
    assert!(route(&t, "a.com/ext").backend.endpoints.is_empty());
    assert_eq!(eps(&route(&t, "a.com/ok").backend), ["10.0.0.1:8080"]);
}

#[test]
fn unsupported_udp_port_keeps_the_route_without_endpoints() {
    let mut s = world(vec![
        ing("ns/a")
            .rule(
                "a.com",
                [path("Prefix", "/udp", to("dns", 53)), prefix("/ok")],
            )
            .build(),
    ]);
    let mut dns = service("ns/dns", &[("dns", 53)]);
    dns.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].protocol = Some("UDP".into());
    s.services.push(dns);
    let t = run(&s);
    let d = only(
        &t,
        Error,
        Reason::UnsupportedBackend,
        "ns/a",
        "spec.rules[0].http.paths[0].backend.service.port",
    );
    assert!(d.message.contains("TCP"), "{d}");
    assert!(route(&t, "a.com/udp").backend.endpoints.is_empty());
    assert_eq!(eps(&route(&t, "a.com/ok").backend), ["10.0.0.1:8080"]);
}

#[test]
fn service_not_found_keeps_the_route_without_endpoints() {
    let t = run(&world(vec![
        ing("ns/a")
            .rule(
                "a.com",
                [path("Prefix", "/gone", to("gone", 80)), prefix("/ok")],
            )
            .build(),
    ]));
    let d = only(
        &t,
        Error,
        Reason::ServiceNotFound,
        "ns/a",
        "spec.rules[0].http.paths[0].backend.service.name",
    );
    assert!(d.message.contains("ns/gone"), "{d}");
    assert_eq!(
        routes(&t),
        [
            "a.com/gone Prefix -> ns/gone:80",
            "a.com/ok Prefix -> ns/web:80"
        ]
    );
    assert!(route(&t, "a.com/gone").backend.endpoints.is_empty());

    // In spec.defaultBackend: the default backend exists and answers 503.
    let t = run(&world(vec![
        ing("ns/a").default_backend(to("gone", 80)).build(),
    ]));
    only(
        &t,
        Error,
        Reason::ServiceNotFound,
        "ns/a",
        "spec.defaultBackend.service.name",
    );
    assert!(
        t.model
            .default_backend
            .as_ref()
            .unwrap()
            .endpoints
            .is_empty()
    );
}

#[test]
fn service_port_not_found_lists_the_ports_the_service_has() {
    let mut s = world(vec![
        ing("ns/a")
            .rule(
                "a.com",
                [
                    path("Prefix", "/num", to("two", 81)),
                    path("Prefix", "/name", to_named("two", "grpc")),
                    prefix("/ok"),
                ],
            )
            .build(),
    ]);
    s.services
        .push(service("ns/two", &[("http", 80), ("https", 443)]));
    let t = run(&s);
    assert_eq!(t.diagnostics.len(), 2, "{:#?}", t.diagnostics);
    let fields = ["number", "name"];
    for (i, (d, sub)) in t.diagnostics.iter().zip(fields).enumerate() {
        let field = format!("spec.rules[0].http.paths[{i}].backend.service.port.{sub}");
        check(d, Error, Reason::ServicePortNotFound, "ns/a", &field);
        assert!(d.message.contains("80 (http), 443 (https)"), "{d}");
    }
    assert!(t.diagnostics[0].message.contains("port 81"));
    assert!(t.diagnostics[1].message.contains("\"grpc\""));
    assert!(route(&t, "a.com/num").backend.endpoints.is_empty());
    assert!(route(&t, "a.com/name").backend.endpoints.is_empty());
    assert_eq!(eps(&route(&t, "a.com/ok").backend), ["10.0.0.1:8080"]);
}

#[test]
fn invalid_endpoint_address_is_skipped() {
    let mut s = world(vec![ing("ns/a").rule("a.com", [prefix("/")]).build()]);
    s.endpoint_slices.push(slice(
        "ns/web-bad",
        "web",
        "IPv4",
        &[("http", 8080)],
        vec![ep("not-an-ip"), ep("10.0.0.9")],
    ));
    let t = run(&s);
    let d = only(
        &t,
        Warning,
        Reason::InvalidEndpoint,
        "ns/web-bad",
        "endpoints[0].addresses[0]",
    );
    assert_eq!(d.kind, Kind::EndpointSlice);
    assert!(
        d.to_string()
            .starts_with("EndpointSlice ns/web-bad: endpoints[0].addresses[0]: ")
    );
    assert_eq!(
        eps(&route(&t, "a.com/").backend),
        ["10.0.0.1:8080", "10.0.0.9:8080"]
    );
}

#[test]
fn invalid_endpoint_address_is_reported_once() {
    let mut s = world(vec![
        ing("ns/a").rule("a.com", [prefix("/")]).build(),
        ing("ns/b").rule("b.com", [prefix("/")]).build(),
    ]);
    s.endpoint_slices.push(slice(
        "ns/web-bad",
        "web",
        "IPv4",
        &[("http", 8080)],
        vec![ep("not-an-ip")],
    ));
    let t = run(&s);
    only(
        &t,
        Warning,
        Reason::InvalidEndpoint,
        "ns/web-bad",
        "endpoints[0].addresses[0]",
    );
}

#[test]
fn tls_secret_not_found() {
    let t = run(&world(vec![
        ing("ns/a")
            .rule("a.com", [prefix("/")])
            .tls(Some(&["a.com"]), Some("missing"))
            .tls(Some(&["b.com"]), Some("cert"))
            .build(),
    ]));
    let d = only(
        &t,
        Error,
        Reason::SecretNotFound,
        "ns/a",
        "spec.tls[0].secretName",
    );
    assert!(d.message.contains("ns/missing"), "{d}");
    assert_eq!(tls_hosts(&t), ["b.com ns/cert (ns/a)"]);
    assert_eq!(routes(&t), ["a.com/ Prefix -> ns/web:80"]);
}

#[test]
fn referenced_tls_secrets_are_parsed_once_for_the_certificate_store() {
    let t = run(&world(vec![
        ing("ns/a")
            .rule("a.com", [prefix("/")])
            .tls(Some(&["a.com"]), Some("cert"))
            .tls(Some(&["b.com"]), Some("cert"))
            .tls(Some(&["c.com"]), Some("missing"))
            .build(),
    ]));
    let parsed: Vec<String> = t.certs.keys().map(ToString::to_string).collect();
    assert_eq!(parsed, ["ns/cert"], "only what exists and is referenced");
    assert!(t.certs[&ObjectRef::new("ns", "cert")].is_ok());
    // The store serves from the parsed certificates, without the Secrets.
    let default = crate::tls::default_certificate().unwrap();
    let (store, diags) =
        crate::tls::CertStore::build_parsed(&t.model.tls, &t.certs, default.clone());
    assert!(diags.is_empty(), "{diags:?}");
    assert!(!Arc::ptr_eq(&store.resolve(Some("b.com")), &default));
    assert!(Arc::ptr_eq(&store.resolve(Some("c.com")), &default));
}

#[test]
fn tls_secret_invalid() {
    let mut opaque = tls_secret("ns/bad");
    opaque.type_ = Some("Opaque".into());
    let mut untyped = tls_secret("ns/bad");
    untyped.type_ = None;
    let mut no_key = tls_secret("ns/bad");
    no_key.data.as_mut().unwrap().remove("tls.key");
    let mut empty_cert = tls_secret("ns/bad");
    empty_cert
        .data
        .as_mut()
        .unwrap()
        .insert("tls.crt".into(), ByteString(Vec::new()));
    let mut no_data = tls_secret("ns/bad");
    no_data.data = None;
    for (secret, says) in [
        (opaque, "\"Opaque\""),
        (untyped, "\"Opaque\""),
        (no_key, "tls.key"),
        (empty_cert, "tls.crt"),
        (no_data, "tls.key"),
    ] {
        let mut s = world(vec![
            ing("ns/a")
                .rule("a.com", [prefix("/")])
                .tls(Some(&["a.com"]), Some("bad"))
                .tls(Some(&["b.com"]), Some("cert"))
                .build(),
        ]);
        s.secrets.push(secret);
        let t = run(&s);
        let d = only(
            &t,
            Error,
            Reason::SecretInvalid,
            "ns/a",
            "spec.tls[0].secretName",
        );
        assert!(d.message.contains(says), "{d}");
        assert_eq!(tls_hosts(&t), ["b.com ns/cert (ns/a)"]);
        assert_eq!(routes(&t), ["a.com/ Prefix -> ns/web:80"]);
    }
}

#[test]
fn tls_without_secret_name_is_a_warning() {
    for secret in [None, Some("")] {
        let t = run(&world(vec![
            ing("ns/a")
                .rule("a.com", [prefix("/")])
                .tls(Some(&["a.com"]), secret)
                .build(),
        ]));
        only(
            &t,
            Warning,
            Reason::SecretNotFound,
            "ns/a",
            "spec.tls[0].secretName",
        );
        assert!(t.model.tls.is_empty());
        assert_eq!(routes(&t), ["a.com/ Prefix -> ns/web:80"]);
    }
}

#[test]
fn tls_without_hosts_uses_the_rule_hosts() {
    for hosts in [None, Some(&[][..])] {
        let t = run(&world(vec![
            ing("ns/a")
                .rule("a.com", [prefix("/")])
                .rule("*.b.com", [prefix("/")])
                .rule("", [prefix("/any")])
                .raw_rule(IngressRule {
                    host: Some("c.com".into()),
                    http: None,
                })
                .rule("Bad.com", [prefix("/")])
                .tls(hosts, Some("cert"))
                .build(),
        ]));
        only(&t, Error, Reason::InvalidHost, "ns/a", "spec.rules[4].host");
        assert_eq!(
            tls_hosts(&t),
            [
                "*.b.com ns/cert (ns/a)",
                "a.com ns/cert (ns/a)",
                "c.com ns/cert (ns/a)"
            ]
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Robustness
// ---------------------------------------------------------------------------------------------

#[test]
fn degenerate_ingresses_do_not_panic() {
    let mut no_spec = Ingress {
        metadata: meta("ns/nospec"),
        spec: None,
        status: None,
    };
    no_spec.metadata.annotations = Some(BTreeMap::from([(
        LEGACY_CLASS_ANNOTATION.into(),
        "sluice".into(),
    )]));
    let mut anonymous = ing("x/y").rule("a.com", [prefix("/")]).build();
    anonymous.metadata = ObjectMeta::default();
    let state = ClusterState {
        ingresses: vec![
            no_spec,
            ing("ns/norules").build(),
            ing("ns/nohttp").raw_rule(IngressRule::default()).build(),
            Ingress {
                spec: Some(IngressSpec {
                    rules: Some(Vec::new()),
                    ..IngressSpec::default()
                }),
                ..ing("ns/emptyrules").build()
            },
            ing("ns/emptypaths")
                .rule("b.com", [])
                .tls(None, Some("cert"))
                .build(),
            Ingress {
                spec: Some(IngressSpec::default()),
                ..ing("ns/emptyspec").build()
            },
            anonymous,
        ],
        ..Default::default()
    };
    // `ns/emptyspec` and `ns/emptyrules` have no class: taken through watch_without_class.
    let t = translate(
        &state,
        &Options {
            watch_without_class: true,
            ..Options::default()
        },
    );
    assert_eq!(
        owned(&t),
        [
            "default/",
            "ns/emptypaths",
            "ns/emptyrules",
            "ns/emptyspec",
            "ns/nohttp",
            "ns/norules",
            "ns/nospec"
        ]
    );
    // The nameless one still resolves its backend in namespace `default`.
    assert_eq!(routes(&t), ["a.com/ Prefix -> default/web:80"]);
    assert!(
        t.diagnostics
            .iter()
            .all(|d| matches!(d.reason, Reason::ServiceNotFound | Reason::SecretNotFound))
    );

    let empty = run(&ClusterState::default());
    assert_eq!(empty.model, Model::default());
    no_diagnostics(&empty);
}

// ---------------------------------------------------------------------------------------------
// ACME-managed tls entries
// ---------------------------------------------------------------------------------------------

#[test]
fn acme_certificate_pending_serves_plain_http_without_redirect() {
    let acme = crate::acme::AcmeOptions::default();
    let state = world(vec![
        ing("ns/a")
            .annotate("kubernetes.io/tls-acme", "true")
            .rule("a.com", [prefix("/")])
            .tls(Some(&["a.com"]), Some("a-tls"))
            .build(),
    ]);
    let t = translate_with_acme(&state, &Options::default(), Some(&acme));
    let d = only(
        &t,
        Warning,
        Reason::CertificatePending,
        "ns/a",
        "spec.tls[0].secretName",
    );
    assert!(
        d.message.contains("ns/a-tls") && d.message.contains("not issued yet"),
        "{d}"
    );
    assert!(t.model.tls.is_empty(), "the default certificate meanwhile");
    assert!(
        t.model.routes.iter().all(|r| !r.redirect_to_https),
        "HTTP-01 must get through: no redirect"
    );

    // Without ACME the same Ingress is a missing Secret, as before.
    let plain = run(&state);
    only(
        &plain,
        Error,
        Reason::SecretNotFound,
        "ns/a",
        "spec.tls[0].secretName",
    );

    // Once the Secret exists it is served and HTTP redirects.
    let mut issued = state.clone();
    issued.secrets.push(tls_secret("ns/a-tls"));
    let t = translate_with_acme(&issued, &Options::default(), Some(&acme));
    no_diagnostics(&t);
    assert_eq!(t.model.tls.len(), 1);
    assert!(t.model.routes.iter().all(|r| r.redirect_to_https));
}

#[test]
fn acme_pending_only_for_ingresses_that_ask_sluice() {
    let acme = crate::acme::AcmeOptions::default();
    let state = world(vec![
        ing("ns/cm")
            .annotate("cert-manager.io/cluster-issuer", "letsencrypt")
            .rule("a.com", [prefix("/")])
            .tls(Some(&["a.com"]), Some("a-tls"))
            .build(),
    ]);
    let t = translate_with_acme(&state, &Options::default(), Some(&acme));
    // cert-manager's Ingress: its Secret is cert-manager's to create; until then it is missing.
    only(
        &t,
        Error,
        Reason::SecretNotFound,
        "ns/cm",
        "spec.tls[0].secretName",
    );
}

// ---------------------------------------------------------------------------------------------
// Annotations of other controllers
// ---------------------------------------------------------------------------------------------

#[test]
fn an_ingress_with_a_snippet_is_not_served_at_all() {
    let state = world(vec![
        ing("ns/snippet")
            .annotate(
                "nginx.ingress.kubernetes.io/configuration-snippet",
                "more_set_headers \"X: y\";",
            )
            .rule("a.com", [prefix("/")])
            .tls(Some(&["a.com"]), Some("cert"))
            .build(),
        ing("ns/plain").rule("b.com", [prefix("/")]).build(),
    ]);
    let t = run(&state);
    assert_eq!(routes(&t), ["b.com/ Prefix -> ns/web:80"]);
    assert!(tls_hosts(&t).is_empty());
    // Not ours to publish: no status, DNS records or certificates.
    assert_eq!(owned(&t), ["ns/plain"]);
    assert_eq!(t.diagnostics.len(), 1, "{:?}", t.diagnostics);
    check(
        &t.diagnostics[0],
        Error,
        Reason::SnippetRejected,
        "ns/snippet",
        "metadata.annotations[nginx.ingress.kubernetes.io/configuration-snippet]",
    );
}

#[test]
fn an_unimplemented_protection_closes_every_route_of_its_ingress_only() {
    let state = world(vec![
        ing("ns/private")
            .annotate("nginx.ingress.kubernetes.io/auth-tls-verify-client", "on")
            .rule("a.com", [prefix("/"), prefix("/api")])
            .default_backend(to("web", 80))
            .build(),
        ing("ns/public").rule("b.com", [prefix("/")]).build(),
    ]);
    let t = run(&state);
    assert!(route(&t, "a.com/").backend.settings.closed);
    assert!(route(&t, "a.com/api").backend.settings.closed);
    assert!(t.model.default_backend.as_ref().unwrap().settings.closed);
    assert!(!route(&t, "b.com/").backend.settings.closed);
    assert_eq!(t.diagnostics.len(), 1, "{:?}", t.diagnostics);
    check(
        &t.diagnostics[0],
        Error,
        Reason::UnsupportedAnnotation,
        "ns/private",
        "metadata.annotations[nginx.ingress.kubernetes.io/auth-tls-verify-client]",
    );
}

// ---------------------------------------------------------------------------------------------
// Regular-expression paths and rewrites (ingress-nginx's use-regex and rewrite-target)
// ---------------------------------------------------------------------------------------------

#[test]
fn use_regex_makes_every_path_of_the_ingress_an_expression() {
    let t = run(&world(vec![
        ing("ns/re")
            .annotate("nginx.ingress.kubernetes.io/use-regex", "true")
            .rule(
                "a.com",
                [
                    path("ImplementationSpecific", "/api/v[0-9]+/", to("web", 80)),
                    path("Prefix", "/static/", to("web", 80)),
                    path("Exact", "/x", to("web", 80)),
                ],
            )
            .build(),
        ing("ns/plain")
            .rule("a.com", [path("Prefix", "/static/", to("web", 80))])
            .build(),
    ]));
    no_diagnostics(&t);
    assert_eq!(
        routes(&t),
        [
            "a.com/api/v[0-9]+/ Regex -> ns/web:80",
            // Another Ingress on the same host keeps Kubernetes semantics, normalised path.
            "a.com/static Prefix -> ns/web:80",
            "a.com/static/ Regex -> ns/web:80",
            "a.com/x Regex -> ns/web:80",
        ]
    );
    assert!(t.model.routes.iter().all(|r| r.rewrite_target().is_none()));
}

#[test]
fn rewrite_target_makes_paths_expressions_unless_it_equals_the_path() {
    let t = run(&world(vec![
        ing("ns/rw")
            .annotate("nginx.ingress.kubernetes.io/rewrite-target", "/$2")
            .rule(
                "a.com",
                [
                    path("ImplementationSpecific", "/app(/|$)(.*)", to("web", 80)),
                    path("Prefix", "/$2", to("web", 80)),
                ],
            )
            .build(),
    ]));
    assert_eq!(
        routes(&t),
        [
            "a.com/$2 Prefix -> ns/web:80",
            "a.com/app(/|$)(.*) Regex -> ns/web:80",
        ]
    );
    assert_eq!(
        route(&t, "a.com/app(/|$)(.*)").rewrite_target(),
        Some("/$2")
    );
    assert_eq!(route(&t, "a.com/$2").rewrite_target(), None);
}

#[test]
fn invalid_expressions_and_targets_are_named() {
    let t = run(&world(vec![
        ing("ns/bad")
            .annotate("nginx.ingress.kubernetes.io/use-regex", "true")
            .rule(
                "a.com",
                [
                    path("ImplementationSpecific", "/(unclosed", to("web", 80)),
                    path("ImplementationSpecific", "/ok", to("web", 80)),
                ],
            )
            .build(),
    ]));
    let d = only(
        &t,
        Severity::Error,
        Reason::InvalidPath,
        "ns/bad",
        "spec.rules[0].http.paths[0].path",
    );
    assert!(d.message.contains("not a valid regular expression"), "{d}");
    assert_eq!(routes(&t), ["a.com/ok Regex -> ns/web:80"]);

    let t = run(&world(vec![
        ing("ns/bad")
            .annotate("sluice.io/rewrite-target", "https://elsewhere/$1")
            .rule("a.com", [prefix("/a/(.*)")])
            .build(),
    ]));
    let d = only(
        &t,
        Severity::Error,
        Reason::InvalidAnnotation,
        "ns/bad",
        "metadata.annotations[sluice.io/rewrite-target]",
    );
    assert!(d.message.contains("permanent-redirect"), "{d}");
    assert!(t.model.routes.iter().all(|r| r.backend.settings.closed));
}

// ---------------------------------------------------------------------------------------------
// Basic authentication
// ---------------------------------------------------------------------------------------------

fn opaque(id: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: meta(id),
        type_: Some("Opaque".into()),
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

fn basic(secret: &str) -> Ing {
    ing("ns/private")
        .annotate("nginx.ingress.kubernetes.io/auth-type", "basic")
        .annotate("nginx.ingress.kubernetes.io/auth-secret", secret)
        .rule("a.com", [prefix("/")])
}

#[test]
fn basic_authentication_reads_the_htpasswd_secret() {
    let mut state = world(vec![basic("users").build()]);
    state.secrets.push(opaque(
        "ns/users",
        &[("auth", "foo:{PLAIN}bar\nold:qWqBQm7Y39ZUk\n")],
    ));
    let t = run(&state);
    let r = route(&t, "a.com/");
    assert!(!r.backend.settings.closed);
    let auth = r.backend.settings.basic_auth.as_ref().expect("basic auth");
    assert_eq!(auth.secret, ObjectRef::new("ns", "users"));
    assert_eq!(auth.users.keys().collect::<Vec<_>>(), ["foo"]);
    assert_eq!(auth.realm, "");
    // The DES line is reported, and only its user is left out.
    let d = only(
        &t,
        Severity::Warning,
        Reason::InvalidAnnotation,
        "ns/private",
        "metadata.annotations[nginx.ingress.kubernetes.io/auth-secret]",
    );
    assert!(
        d.message.contains("line 2 (user \"old\")") && d.message.contains("DES"),
        "{d}"
    );
}

#[test]
fn basic_authentication_that_cannot_be_honoured_closes_the_ingress() {
    for (ing, secret, field, needle) in [
        (
            basic("missing"),
            None,
            "auth-secret",
            "Secret ns/missing not found",
        ),
        (
            basic("other/users"),
            Some(opaque("other/users", &[("auth", "foo:{PLAIN}bar")])),
            "auth-secret",
            "Ingress's namespace",
        ),
        (
            basic("users"),
            Some(opaque("ns/users", &[("htpasswd", "foo:{PLAIN}bar")])),
            "auth-secret",
            "no key \"auth\"",
        ),
        (
            basic("users"),
            Some(opaque("ns/users", &[("auth", "foo:$6$x$y")])),
            "auth-secret",
            "no user sluice can check",
        ),
        (
            basic("users").annotate("nginx.ingress.kubernetes.io/auth-type", "digest"),
            Some(opaque("ns/users", &[("auth", "foo:{PLAIN}bar")])),
            "auth-type",
            "digest authentication is not implemented",
        ),
    ] {
        let mut state = world(vec![ing.build()]);
        state.secrets.extend(secret);
        let t = run(&state);
        assert!(route(&t, "a.com/").backend.settings.closed, "{needle}");
        let field = format!("metadata.annotations[nginx.ingress.kubernetes.io/{field}]");
        assert!(
            t.diagnostics.iter().any(|d| d.severity == Severity::Error
                && d.field == field
                && d.message.contains(needle)
                && d.message.contains("503")),
            "{needle}: {:#?}",
            t.diagnostics
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Canaries
// ---------------------------------------------------------------------------------------------

fn canary(id: &str, weight: &str) -> Ing {
    ing(id)
        .annotate("nginx.ingress.kubernetes.io/canary", "true")
        .annotate("nginx.ingress.kubernetes.io/canary-weight", weight)
        .annotate("nginx.ingress.kubernetes.io/load-balance", "ewma")
        .rule("a.com", [prefix("/")])
}

#[test]
fn a_canary_splits_its_main_route_and_inherits_its_settings() {
    let t = run(&world(vec![
        ing("ns/main")
            .annotate("nginx.ingress.kubernetes.io/proxy-body-size", "2m")
            .rule("a.com", [prefix("/")])
            .created(1)
            .build(),
        canary("ns/first", "30").created(2).build(),
        canary("ns/second", "60").created(3).build(),
        canary("ns/bad", "300").created(4).build(),
        ing("ns/plain")
            .annotate("nginx.ingress.kubernetes.io/canary-weight", "10")
            .rule("b.com", [prefix("/")])
            .build(),
    ]));
    // The canaries' own paths are not routes.
    assert_eq!(
        routes(&t),
        ["a.com/ Prefix -> ns/web:80", "b.com/ Prefix -> ns/web:80"]
    );
    let c = route(&t, "a.com/")
        .canary
        .as_ref()
        .expect("canary attached");
    assert_eq!(c.ingress, ObjectRef::new("ns", "first"));
    assert_eq!(c.rule.weight, 30);
    assert_eq!(c.backend.settings.max_body_bytes, Some(2 << 20));
    assert_eq!(
        c.backend.settings.load_balancer,
        crate::model::LoadBalancer::LeastRequest
    );
    let found: Vec<(Severity, Reason, String, String)> = t
        .diagnostics
        .iter()
        .map(|d| (d.severity, d.reason, d.object.to_string(), d.field.clone()))
        .collect();
    assert_eq!(
        found,
        [
            (
                Error,
                Reason::InvalidAnnotation,
                "ns/bad".to_string(),
                "metadata.annotations[nginx.ingress.kubernetes.io/canary-weight]".to_string()
            ),
            (
                Warning,
                Reason::InvalidAnnotation,
                "ns/plain".to_string(),
                "metadata.annotations[nginx.ingress.kubernetes.io/canary-weight]".to_string()
            ),
            (
                Error,
                Reason::PathConflict,
                "ns/second".to_string(),
                "spec.rules[0].http.paths[0]".to_string()
            ),
        ],
        "{:#?}",
        t.diagnostics
    );
}

#[test]
fn server_aliases_serve_the_ingress_rules_unless_a_rule_has_the_host() {
    let t = run(&world(vec![
        ing("ns/app")
            .annotate(
                "nginx.ingress.kubernetes.io/server-alias",
                "www.a.com, *.old.com, taken.com, not a host",
            )
            .rule("a.com", [prefix("/"), prefix("/api")])
            .build(),
        ing("ns/other").rule("taken.com", [prefix("/")]).build(),
    ]));
    assert_eq!(
        routes(&t),
        [
            "*.old.com/ Prefix -> ns/web:80",
            "*.old.com/api Prefix -> ns/web:80",
            "a.com/ Prefix -> ns/web:80",
            "a.com/api Prefix -> ns/web:80",
            "taken.com/ Prefix -> ns/web:80",
            "www.a.com/ Prefix -> ns/web:80",
            "www.a.com/api Prefix -> ns/web:80",
        ]
    );
    assert_eq!(
        route(&t, "www.a.com/api").source.ingress,
        ObjectRef::new("ns", "app")
    );
    let found: Vec<(Severity, &str)> = t
        .diagnostics
        .iter()
        .map(|d| (d.severity, d.message.as_str()))
        .collect();
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found
            .iter()
            .any(|(s, m)| *s == Error && m.contains("\"not a host\""))
    );
    assert!(
        found
            .iter()
            .any(|(s, m)| *s == Warning && m.contains("alias taken.com"))
    );
}

#[test]
fn default_backend_annotation_resolves_its_service_or_reports_it() {
    let t = run(&world(vec![
        ing("ns/a")
            .annotate("nginx.ingress.kubernetes.io/default-backend", "web")
            .annotate("nginx.ingress.kubernetes.io/custom-http-errors", "404, 503")
            .rule("a.com", [prefix("/")])
            .build(),
        ing("ns/b")
            .annotate("nginx.ingress.kubernetes.io/default-backend", "gone")
            .rule("b.com", [prefix("/")])
            .build(),
        ing("ns/c")
            .annotate("nginx.ingress.kubernetes.io/custom-http-errors", "404")
            .rule("c.com", [prefix("/")])
            .build(),
    ]));
    let a = route(&t, "a.com/");
    assert_eq!(a.backend.settings.custom_errors, [404, 503]);
    assert_eq!(a.fallback.as_ref().unwrap().label(), "ns/web:80");
    assert!(route(&t, "b.com/").fallback.is_none());
    let fields: Vec<(Severity, String)> = t
        .diagnostics
        .iter()
        .map(|d| (d.severity, format!("{} {}", d.object, d.field)))
        .collect();
    assert_eq!(
        fields,
        [
            (
                Error,
                "ns/b metadata.annotations[nginx.ingress.kubernetes.io/default-backend]".into()
            ),
            (
                Warning,
                "ns/c metadata.annotations[nginx.ingress.kubernetes.io/custom-http-errors]".into()
            ),
        ]
    );
}

fn passthrough(value: &str) -> Ing {
    ing("ns/tcp")
        .annotate("nginx.ingress.kubernetes.io/ssl-passthrough", value)
        .rule("a.com", [prefix("/")])
}

#[test]
fn ssl_passthrough_marks_the_backend_and_warns_about_what_it_cannot_pass() {
    for value in ["true", "True", "1"] {
        let t = run(&world(vec![passthrough(value).build()]));
        let s = &route(&t, "a.com/").backend.settings;
        assert!(s.ssl_passthrough && !s.closed, "{value}");
        no_diagnostics(&t);
    }
    let t = run(&world(vec![passthrough("false").build()]));
    assert!(!route(&t, "a.com/").backend.settings.ssl_passthrough);
    no_diagnostics(&t);

    // Only the route for `/` of a named host is passed through: the others are reported.
    let t = run(&world(vec![
        passthrough("true")
            .rule("b.com", [prefix("/api")])
            .rule("", [prefix("/")])
            .build(),
    ]));
    let fields: Vec<&str> = t.diagnostics.iter().map(|d| d.field.as_str()).collect();
    assert_eq!(
        fields,
        ["spec.rules[1].http.paths[0].path", "spec.rules[2].host"],
        "{:#?}",
        t.diagnostics
    );
    assert!(
        t.diagnostics
            .iter()
            .all(|d| d.severity == Severity::Warning && d.message.contains("plain HTTP only")),
        "{:#?}",
        t.diagnostics
    );
}

#[test]
fn ssl_passthrough_that_cannot_be_honoured_closes_the_ingress() {
    // Not a boolean: whether TLS was to reach the backend untouched is unknown.
    let t = run(&world(vec![passthrough("yes").build()]));
    let s = &route(&t, "a.com/").backend.settings;
    assert!(s.closed && !s.ssl_passthrough);
    let d = only(
        &t,
        Severity::Error,
        Reason::InvalidAnnotation,
        "ns/tcp",
        "metadata.annotations[nginx.ingress.kubernetes.io/ssl-passthrough]",
    );
    assert!(d.message.contains("503"), "{d}");

    // Authentication needs the requests passthrough never sees: closed, still passthrough
    // (its connections are closed rather than terminated).
    let t = run(&world(vec![
        passthrough("true")
            .annotate("nginx.ingress.kubernetes.io/auth-url", "http://auth/check")
            .build(),
    ]));
    let s = &route(&t, "a.com/").backend.settings;
    assert!(s.closed && s.ssl_passthrough);
    let d = only(
        &t,
        Severity::Error,
        Reason::InvalidAnnotation,
        "ns/tcp",
        "metadata.annotations[nginx.ingress.kubernetes.io/ssl-passthrough]",
    );
    assert!(d.message.contains("auth-url cannot be enforced"), "{d}");
}
