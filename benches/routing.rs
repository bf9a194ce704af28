//! Routing micro-benchmarks: lookup at 1, 1 000 and 10 000 hosts (10 paths each, a mix of
//! exact, wildcard and prefix rules), and translate + compile of 10 000 Ingresses.
//!
//! Run: `cargo bench --bench routing`. Results are recorded in docs/benchmarks.md.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sluice::model::{
    Backend, HostMatch, Model, ObjectRef, PathKind, PathMatch, Route, RouteSource,
    ServicePort as Port,
};
use sluice::routing::RoutingTable;
use sluice::source::ClusterState;
use sluice::translate::{Options, translate};

const PATHS: [(&str, PathKind); 10] = [
    ("/", PathKind::Prefix),
    ("/api", PathKind::Prefix),
    ("/api/v1", PathKind::Prefix),
    ("/api/v1/users", PathKind::Exact),
    ("/api/v2", PathKind::Prefix),
    ("/static", PathKind::Prefix),
    ("/login", PathKind::Exact),
    ("/logout", PathKind::Exact),
    ("/healthz", PathKind::Exact),
    ("/assets/img", PathKind::Prefix),
];

/// Host `i`: every third one is a wildcard `*.svcN.example.com`, the rest exact.
fn host(i: usize) -> HostMatch {
    if i % 3 == 2 {
        HostMatch::Wildcard(format!("svc{i}.example.com"))
    } else {
        HostMatch::Exact(format!("app{i}.example.com"))
    }
}

fn request_host(i: usize) -> String {
    match host(i) {
        HostMatch::Wildcard(s) => format!("tenant.{s}"),
        HostMatch::Exact(h) => h,
        HostMatch::Any => unreachable!("hosts are never Any here"),
    }
}

fn model(hosts: usize) -> Model {
    let backend = Arc::new(Backend {
        ingress: ObjectRef::new("default", "bench"),
        service: ObjectRef::new("default", "svc"),
        port: Port::Number(80),
        endpoints: Vec::new(),
        settings: Default::default(),
    });
    let mut routes = Vec::new();
    for i in 0..hosts {
        for (pi, (p, kind)) in PATHS.iter().enumerate() {
            routes.push(Route {
                host: host(i),
                path: PathMatch::new(*kind, p).expect("valid bench path"),
                backend: backend.clone(),
                source: RouteSource {
                    ingress: ObjectRef::new("default", format!("ing{i}")),
                    rule: 0,
                    path: pi,
                },
                redirect_to_https: false,
                canary: None,
                fallback: None,
            });
        }
    }
    Model {
        routes: routes.into(),
        ..Model::default()
    }
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("lookup");
    for hosts in [1usize, 1_000, 10_000] {
        let table = RoutingTable::compile(&model(hosts));
        // A fixed, spread-out sequence of requests: hosts across the table, paths that hit
        // exact, deep prefix and root-prefix rules.
        let requests: Vec<(String, &str)> = (0..1024)
            .map(|k| {
                let i = (k * 7919) % hosts;
                let path = [
                    "/api/v1/users",
                    "/api/v1/users/42",
                    "/static/app.js",
                    "/nothing/here",
                ][k % 4];
                (request_host(i), path)
            })
            .collect();
        g.bench_with_input(BenchmarkId::from_parameter(hosts), &requests, |b, reqs| {
            let mut k = 0usize;
            b.iter(|| {
                let (h, p) = &reqs[k % reqs.len()];
                k = k.wrapping_add(1);
                black_box(table.lookup(black_box(h), black_box(p)).is_some())
            });
        });
    }
    g.finish();
}

fn cluster(ingresses: usize) -> ClusterState {
    let mut state = ClusterState::default();
    let meta = |name: String, labels: Option<BTreeMap<String, String>>| ObjectMeta {
        name: Some(name),
        namespace: Some("default".into()),
        labels,
        ..ObjectMeta::default()
    };
    for i in 0..ingresses / 10 {
        state.services.push(Service {
            metadata: meta(format!("svc{i}"), None),
            spec: Some(ServiceSpec {
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        });
        state.endpoint_slices.push(EndpointSlice {
            metadata: meta(
                format!("svc{i}-abc"),
                Some(BTreeMap::from([(
                    "kubernetes.io/service-name".to_string(),
                    format!("svc{i}"),
                )])),
            ),
            address_type: "IPv4".into(),
            endpoints: Some(
                (0..3)
                    .map(|e| Endpoint {
                        addresses: vec![format!("10.{}.{}.{e}", i / 250, i % 250)],
                        ..Endpoint::default()
                    })
                    .collect(),
            ),
            ports: Some(vec![EndpointPort {
                name: Some("http".into()),
                port: Some(8080),
                ..EndpointPort::default()
            }]),
        });
    }
    for i in 0..ingresses {
        let paths = PATHS
            .iter()
            .map(|(p, kind)| HTTPIngressPath {
                path: Some((*p).to_string()),
                path_type: kind.to_string(),
                backend: IngressBackend {
                    service: Some(IngressServiceBackend {
                        name: format!("svc{}", i / 10),
                        port: Some(ServiceBackendPort {
                            name: Some("http".into()),
                            number: None,
                        }),
                    }),
                    resource: None,
                },
            })
            .collect();
        let h = host(i).to_string();
        state.ingresses.push(Ingress {
            metadata: meta(format!("ing{i}"), None),
            spec: Some(IngressSpec {
                ingress_class_name: Some("sluice".into()),
                rules: Some(vec![IngressRule {
                    host: Some(h),
                    http: Some(HTTPIngressRuleValue { paths }),
                }]),
                ..IngressSpec::default()
            }),
            ..Ingress::default()
        });
    }
    state
}

fn compile(c: &mut Criterion) {
    let mut g = c.benchmark_group("compile");
    g.sample_size(20);
    let state = cluster(10_000);
    let options = Options::default();
    g.bench_function("translate_10000_ingresses", |b| {
        b.iter(|| black_box(translate(&state, &options)));
    });
    let model = translate(&state, &options).model;
    assert_eq!(model.routes.len(), 100_000);
    g.bench_function("compile_10000_ingresses", |b| {
        b.iter(|| black_box(RoutingTable::compile(&model)));
    });
    g.bench_function("translate_and_compile_10000_ingresses", |b| {
        b.iter(|| black_box(RoutingTable::compile(&translate(&state, &options).model)));
    });
    g.finish();
}

criterion_group!(benches, lookup, compile);
criterion_main!(benches);
