//! Table-driven routing tests, end to end: Kubernetes `Ingress` objects go through
//! [`crate::translate::translate`] and [`RoutingTable::compile`], and requests are looked up the
//! way the proxy does it (path normalised first, then [`RoutingTable::lookup`]).
//!
//! Sources of the tables:
//! - the "Examples" table of path types and the hostname wildcard table of the Kubernetes
//!   Ingress documentation (concepts/services-networking/ingress);
//! - the scenarios of kubernetes-sigs/ingress-controller-conformance, `features/*.feature`;
//! - sluice's own documented precedence (module docs of `crate::routing`) for host
//!   normalisation, query strings and tier fallthrough.

use super::*;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, Service, ServicePort as K8sServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{
    Endpoint as K8sEndpoint, EndpointConditions, EndpointPort, EndpointSlice,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use crate::cluster::ClusterState;
use crate::model::{Reason, RouteSource, ServicePort};
use crate::translate::{Options, translate};

// ---------------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------------

/// Namespace of every fixture object.
const NS: &str = "routing-tests";
/// The Service port every fixture Service exposes, by number and (as `svc:http`) by name.
const SERVICE_PORT: i32 = 8080;
const SERVICE_PORT_NAME: &str = "http";

/// One path of a rule: `(pathType, path, backend)`. The backend is a Service name, using port
/// number 8080, or `name:port-name` to reference the port by name.
type P = (&'static str, &'static str, &'static str);

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(NS.into()),
        ..ObjectMeta::default()
    }
}

fn backend(spec: &str) -> IngressBackend {
    let port = match spec.split_once(':') {
        Some((_, port_name)) => ServiceBackendPort {
            name: Some(port_name.into()),
            number: None,
        },
        None => ServiceBackendPort {
            name: None,
            number: Some(SERVICE_PORT),
        },
    };
    let name = spec.split(':').next().unwrap_or(spec);
    IngressBackend {
        service: Some(IngressServiceBackend {
            name: name.into(),
            port: Some(port),
        }),
        resource: None,
    }
}

/// A concise Ingress builder. New Ingresses have class `sluice`, which is ours with the default
/// [`Options`].
struct IngressBuilder {
    meta: ObjectMeta,
    class: Option<String>,
    rules: Vec<IngressRule>,
    default_backend: Option<IngressBackend>,
    tls: Vec<IngressTLS>,
}

fn ingress(name: &str) -> IngressBuilder {
    IngressBuilder {
        meta: meta(name),
        class: Some("sluice".into()),
        rules: Vec::new(),
        default_backend: None,
        tls: Vec::new(),
    }
}

impl IngressBuilder {
    fn annotation(mut self, key: &str, value: &str) -> Self {
        self.meta
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
        self
    }

    fn class(mut self, class: &str) -> Self {
        self.class = Some(class.into());
        self
    }

    /// Creation time in seconds since the epoch (older Ingresses win conflicts).
    fn created(mut self, secs: i64) -> Self {
        let ts = k8s_openapi::jiff::Timestamp::from_second(secs).expect("valid timestamp");
        self.meta.creation_timestamp = Some(Time(ts));
        self
    }

    /// A rule; `host` empty means a rule without host.
    fn rule(mut self, host: &str, paths: &[P]) -> Self {
        let paths = paths
            .iter()
            .map(|&(path_type, path, svc)| HTTPIngressPath {
                path: Some(path.into()),
                path_type: path_type.into(),
                backend: backend(svc),
            })
            .collect();
        self.rules.push(IngressRule {
            host: (!host.is_empty()).then(|| host.to_string()),
            http: Some(HTTPIngressRuleValue { paths }),
        });
        self
    }

    fn default_backend(mut self, svc: &str) -> Self {
        self.default_backend = Some(backend(svc));
        self
    }

    fn tls(mut self, hosts: &[&str], secret: &str) -> Self {
        self.tls.push(IngressTLS {
            hosts: Some(hosts.iter().map(ToString::to_string).collect()),
            secret_name: Some(secret.into()),
        });
        self
    }

    fn build(self) -> Ingress {
        Ingress {
            metadata: self.meta,
            spec: Some(IngressSpec {
                ingress_class_name: self.class,
                default_backend: self.default_backend,
                rules: (!self.rules.is_empty()).then_some(self.rules),
                tls: (!self.tls.is_empty()).then_some(self.tls),
            }),
            status: None,
        }
    }
}

/// A ClusterIP Service with one TCP port, 8080, named `http`.
fn service(name: &str) -> Service {
    Service {
        metadata: meta(name),
        spec: Some(ServiceSpec {
            ports: Some(vec![K8sServicePort {
                name: Some(SERVICE_PORT_NAME.into()),
                port: SERVICE_PORT,
                protocol: Some("TCP".into()),
                ..K8sServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// An EndpointSlice for `service` with one ready IPv4 endpoint on target port 9376.
fn endpoint_slice(service: &str, ip: &str) -> EndpointSlice {
    let mut meta = meta(&format!("{service}-abcde"));
    meta.labels = Some(BTreeMap::from([(
        "kubernetes.io/service-name".to_string(),
        service.to_string(),
    )]));
    EndpointSlice {
        metadata: meta,
        address_type: "IPv4".into(),
        endpoints: Some(vec![K8sEndpoint {
            addresses: vec![ip.into()],
            conditions: Some(EndpointConditions {
                ready: Some(true),
                serving: Some(true),
                terminating: Some(false),
            }),
            ..K8sEndpoint::default()
        }]),
        ports: Some(vec![EndpointPort {
            name: Some(SERVICE_PORT_NAME.into()),
            port: Some(9376),
            protocol: Some("TCP".into()),
            ..EndpointPort::default()
        }]),
    }
}

/// A usable `kubernetes.io/tls` Secret.
fn tls_secret(name: &str) -> Secret {
    let (crt, key) = crate::tls::test_pem();
    Secret {
        metadata: meta(name),
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            ("tls.crt".to_string(), ByteString(crt.clone().into_bytes())),
            ("tls.key".to_string(), ByteString(key.clone().into_bytes())),
        ])),
        ..Secret::default()
    }
}

/// Every Service name an Ingress references.
fn referenced_services(ingresses: &[Ingress], out: &mut BTreeSet<String>) {
    for spec in ingresses.iter().filter_map(|i| i.spec.as_ref()) {
        let rule_backends = spec
            .rules
            .iter()
            .flatten()
            .filter_map(|r| r.http.as_ref())
            .flat_map(|h| h.paths.iter().map(|p| &p.backend));
        for b in spec.default_backend.iter().chain(rule_backends) {
            if let Some(s) = &b.service {
                out.insert(s.name.clone());
            }
        }
    }
}

/// The cluster for a set of Ingresses: every referenced Service exists with one ready endpoint,
/// and so does every TLS Secret.
fn cluster(ingresses: Vec<Ingress>) -> ClusterState {
    let mut names = BTreeSet::new();
    referenced_services(&ingresses, &mut names);
    let secrets: BTreeSet<String> = ingresses
        .iter()
        .filter_map(|i| i.spec.as_ref())
        .flat_map(|s| s.tls.iter().flatten())
        .filter_map(|t| t.secret_name.clone())
        .collect();
    ClusterState {
        services: names.iter().map(|n| service(n)).collect(),
        endpoint_slices: names
            .iter()
            .enumerate()
            .map(|(i, n)| endpoint_slice(n, &format!("10.0.{}.{}", i / 250, i % 250 + 1)))
            .collect(),
        secrets: secrets.iter().map(|n| tls_secret(n)).collect(),
        ingresses,
        ..ClusterState::default()
    }
}

/// Translates and compiles, requiring a clean translation (no diagnostic at all), so every path
/// written in a fixture is really in the table.
fn compile(ingresses: Vec<Ingress>) -> RoutingTable {
    let translation = translate(&cluster(ingresses), &Options::default());
    assert!(
        translation.diagnostics.is_empty(),
        "unexpected diagnostics:\n{}",
        translation
            .diagnostics
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    RoutingTable::compile(&translation.model)
}

// ---------------------------------------------------------------------------------------------
// Lookups and expectations
// ---------------------------------------------------------------------------------------------

/// What the proxy does with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Got {
    /// A route matched; its backend Service name.
    Route(String),
    /// No route matched; the default backend (its Service name) caught it.
    Default(String),
    /// 404.
    NotFound,
    /// The path was refused by normalisation (400).
    BadRequest,
}

/// What a table row expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// A route to this Service matched.
    Svc(&'static str),
    /// No route matched: the default backend when the table has one, else 404.
    Miss,
    /// The request path is refused (400) before lookup.
    Refused,
}

use Want::{Miss, Refused, Svc};

/// Looks a request up as the proxy does: normalise the path, then look it up.
fn request(table: &RoutingTable, host: &str, raw_path: &str) -> Got {
    let Ok(path) = normalize_request_path(raw_path) else {
        return Got::BadRequest;
    };
    let m = table.lookup(host, &path);
    if let Some(m) = &m {
        let indexed = table.backends().get(m.backend_index);
        assert!(
            indexed.is_some_and(|b| Arc::ptr_eq(b, m.backend)),
            "{host:?} {raw_path:?}: backend_index {} does not index the matched backend",
            m.backend_index
        );
    }
    match m {
        Some(RouteMatch {
            route: Some(route),
            backend,
            ..
        }) => {
            assert!(
                Arc::ptr_eq(&route.backend, backend),
                "route and backend disagree"
            );
            Got::Route(backend.service.name.clone())
        }
        Some(RouteMatch {
            route: None,
            backend,
            ..
        }) => Got::Default(backend.service.name.clone()),
        None => Got::NotFound,
    }
}

fn expected(want: Want, default: Option<&str>) -> Got {
    match (want, default) {
        (Svc(s), _) => Got::Route(s.to_string()),
        (Miss, Some(d)) => Got::Default(d.to_string()),
        (Miss, None) => Got::NotFound,
        (Refused, _) => Got::BadRequest,
    }
}

/// Runs `(host, path, want)` rows against a table and reports every failing row at once.
fn check(ctx: &str, table: &RoutingTable, default: Option<&str>, rows: &[(&str, &str, Want)]) {
    let failures: Vec<String> = rows
        .iter()
        .filter_map(|&(host, path, want)| {
            let got = request(table, host, path);
            let exp = expected(want, default);
            (got != exp).then(|| format!("  {host:?} {path:?}: expected {exp:?}, got {got:?}"))
        })
        .collect();
    assert!(failures.is_empty(), "{ctx}:\n{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// a. Kubernetes documentation: path types, "Examples" table
// ---------------------------------------------------------------------------------------------

/// One row of the documentation's path examples table: the paths of the Ingress (pathType,
/// path, Service) and the request paths with the expected outcome.
struct PathRow {
    doc: &'static str,
    paths: &'static [P],
    requests: &'static [(&'static str, Want)],
}

const PATH_TYPE_EXAMPLES: &[PathRow] = &[
    PathRow {
        doc: "Prefix / matches all paths",
        paths: &[("Prefix", "/", "root")],
        requests: &[
            ("/", Svc("root")),
            ("/foo", Svc("root")),
            ("/foo/", Svc("root")),
            ("/aaa/bbb/ccc.html", Svc("root")),
            ("/FOO?x=1", Svc("root")),
        ],
    },
    PathRow {
        doc: "Exact /foo matches /foo",
        paths: &[("Exact", "/foo", "foo-exact")],
        requests: &[("/foo", Svc("foo-exact"))],
    },
    PathRow {
        doc: "Exact /foo does not match /bar",
        paths: &[("Exact", "/foo", "foo-exact")],
        requests: &[("/bar", Miss)],
    },
    PathRow {
        doc: "Exact /foo does not match /foo/",
        paths: &[("Exact", "/foo", "foo-exact")],
        requests: &[("/foo/", Miss)],
    },
    PathRow {
        doc: "Exact /foo/ does not match /foo",
        paths: &[("Exact", "/foo/", "foo-slash-exact")],
        requests: &[("/foo", Miss), ("/foo/", Svc("foo-slash-exact"))],
    },
    PathRow {
        doc: "Prefix /foo matches /foo and /foo/",
        paths: &[("Prefix", "/foo", "foo-prefix")],
        requests: &[("/foo", Svc("foo-prefix")), ("/foo/", Svc("foo-prefix"))],
    },
    PathRow {
        doc: "Prefix /foo/ matches /foo and /foo/",
        paths: &[("Prefix", "/foo/", "foo-slash-prefix")],
        requests: &[
            ("/foo", Svc("foo-slash-prefix")),
            ("/foo/", Svc("foo-slash-prefix")),
        ],
    },
    PathRow {
        doc: "Prefix /aaa/bb does not match /aaa/bbb",
        paths: &[("Prefix", "/aaa/bb", "aaa-bb")],
        requests: &[("/aaa/bbb", Miss)],
    },
    PathRow {
        doc: "Prefix /aaa/bbb matches /aaa/bbb",
        paths: &[("Prefix", "/aaa/bbb", "aaa-bbb")],
        requests: &[("/aaa/bbb", Svc("aaa-bbb"))],
    },
    PathRow {
        doc: "Prefix /aaa/bbb/ matches /aaa/bbb (ignores trailing slash)",
        paths: &[("Prefix", "/aaa/bbb/", "aaa-bbb-slash")],
        requests: &[("/aaa/bbb", Svc("aaa-bbb-slash"))],
    },
    PathRow {
        doc: "Prefix /aaa/bbb matches /aaa/bbb/ (matches trailing slash)",
        paths: &[("Prefix", "/aaa/bbb", "aaa-bbb")],
        requests: &[("/aaa/bbb/", Svc("aaa-bbb"))],
    },
    PathRow {
        doc: "Prefix /aaa/bbb matches /aaa/bbb/ccc (matches subpath)",
        paths: &[("Prefix", "/aaa/bbb", "aaa-bbb")],
        requests: &[("/aaa/bbb/ccc", Svc("aaa-bbb"))],
    },
    PathRow {
        doc: "Prefix /aaa/bbb does not match /aaa/bbbxyz (not a string prefix match)",
        paths: &[("Prefix", "/aaa/bbb", "aaa-bbb")],
        requests: &[("/aaa/bbbxyz", Miss)],
    },
    PathRow {
        doc: "Prefix /, /aaa: /aaa/ccc matches the /aaa prefix",
        paths: &[("Prefix", "/", "root"), ("Prefix", "/aaa", "aaa")],
        requests: &[("/aaa/ccc", Svc("aaa"))],
    },
    PathRow {
        doc: "Prefix /, /aaa, /aaa/bbb: /aaa/bbb matches the /aaa/bbb prefix",
        paths: &[
            ("Prefix", "/", "root"),
            ("Prefix", "/aaa", "aaa"),
            ("Prefix", "/aaa/bbb", "aaa-bbb"),
        ],
        requests: &[("/aaa/bbb", Svc("aaa-bbb"))],
    },
    PathRow {
        doc: "Prefix /, /aaa, /aaa/bbb: /ccc matches the / prefix",
        paths: &[
            ("Prefix", "/", "root"),
            ("Prefix", "/aaa", "aaa"),
            ("Prefix", "/aaa/bbb", "aaa-bbb"),
        ],
        requests: &[("/ccc", Svc("root"))],
    },
    PathRow {
        doc: "Prefix /aaa does not match /ccc: uses the default backend",
        paths: &[("Prefix", "/aaa", "aaa")],
        requests: &[("/ccc", Miss)],
    },
    PathRow {
        doc: "Mixed: Prefix /foo and Exact /foo: /foo prefers Exact",
        paths: &[
            ("Prefix", "/foo", "foo-prefix"),
            ("Exact", "/foo", "foo-exact"),
        ],
        requests: &[("/foo", Svc("foo-exact"))],
    },
];

/// Every row runs with and without a host on the rule, with and without a default backend, and
/// with the paths in written and in reverse order (precedence must not depend on order).
#[test]
fn kubernetes_docs_path_type_examples() {
    assert_eq!(
        PATH_TYPE_EXAMPLES.len(),
        18,
        "one entry per row of the documentation table"
    );
    for row in PATH_TYPE_EXAMPLES {
        for rule_host in ["", "docs.example.com"] {
            for default in [None, Some("fallback")] {
                for reversed in [false, true] {
                    let mut paths = row.paths.to_vec();
                    if reversed {
                        paths.reverse();
                    }
                    let mut ing = ingress("path-types").rule(rule_host, &paths);
                    if let Some(d) = default {
                        ing = ing.default_backend(d);
                    }
                    let table = compile(vec![ing.build()]);
                    let rows: Vec<_> = row
                        .requests
                        .iter()
                        .map(|&(p, w)| ("docs.example.com", p, w))
                        .collect();
                    let ctx = format!(
                        "{} (rule host {rule_host:?}, default {default:?}, reversed {reversed})",
                        row.doc
                    );
                    check(&ctx, &table, default, &rows);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// b. Kubernetes documentation: hostname wildcards table
// ---------------------------------------------------------------------------------------------

/// `(rule host, request Host header, matches)`.
const HOST_EXAMPLES: &[(&str, &str, bool)] = &[
    ("bar.foo.com", "bar.foo.com", true),
    ("bar.foo.com", "baz.foo.com", false),
    ("*.foo.com", "bar.foo.com", true),
    // The wildcard covers exactly one DNS label.
    ("*.foo.com", "baz.bar.foo.com", false),
    ("*.foo.com", "foo.com", false),
];

#[test]
fn kubernetes_docs_hostname_wildcards() {
    for &(rule_host, request_host, matches) in HOST_EXAMPLES {
        for default in [None, Some("fallback")] {
            let mut ing = ingress("hosts").rule(rule_host, &[("Prefix", "/", "host-rule")]);
            if let Some(d) = default {
                ing = ing.default_backend(d);
            }
            let table = compile(vec![ing.build()]);
            let want = if matches { Svc("host-rule") } else { Miss };
            let ctx =
                format!("rule host {rule_host:?} vs Host {request_host:?}, default {default:?}");
            check(
                &ctx,
                &table,
                default,
                &[(request_host, "/", want), (request_host, "/x/y", want)],
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// c. kubernetes-sigs/ingress-controller-conformance scenarios
// ---------------------------------------------------------------------------------------------

/// features/path_rules.feature: one Ingress with four hosts (exact, prefix, mixed and
/// trailing-slash rules) and no default backend, so every miss is a 404.
#[test]
fn conformance_path_rules() {
    let table = compile(vec![
        ingress("path-rules")
            .rule("exact-path-rules", &[("Exact", "/foo", "foo-exact")])
            .rule(
                "prefix-path-rules",
                &[
                    ("Prefix", "/foo", "foo-prefix"),
                    ("Prefix", "/aaa/bbb", "aaa-slash-bbb-prefix"),
                    ("Prefix", "/aaa", "aaa-prefix"),
                ],
            )
            .rule(
                "mixed-path-rules",
                &[
                    ("Prefix", "/foo", "foo-prefix"),
                    ("Exact", "/foo", "foo-exact"),
                ],
            )
            .rule(
                "trailing-slash-path-rules",
                &[
                    ("Prefix", "/aaa/bbb/", "aaa-slash-bbb-slash-prefix"),
                    ("Exact", "/foo/", "foo-slash-exact"),
                ],
            )
            .build(),
    ]);
    check(
        "features/path_rules.feature",
        &table,
        None,
        &[
            // Exact rules: exact match, no trailing slash, case-sensitive, no other label.
            ("exact-path-rules", "/foo", Svc("foo-exact")),
            ("exact-path-rules", "/foo/", Miss),
            ("exact-path-rules", "/FOO", Miss),
            ("exact-path-rules", "/bar", Miss),
            // Prefix rules: trailing slash ignored, case-sensitive, longest prefix wins,
            // subpaths match, element-wise rather than string prefix. (The "/foo/" scenario is
            // written twice in the feature file.)
            ("prefix-path-rules", "/foo", Svc("foo-prefix")),
            ("prefix-path-rules", "/foo/", Svc("foo-prefix")),
            ("prefix-path-rules", "/FOO", Miss),
            ("prefix-path-rules", "/aaa/bbb", Svc("aaa-slash-bbb-prefix")),
            (
                "prefix-path-rules",
                "/aaa/bbb/ccc",
                Svc("aaa-slash-bbb-prefix"),
            ),
            ("prefix-path-rules", "/aaa/ccc", Svc("aaa-prefix")),
            ("prefix-path-rules", "/aaaccc", Miss),
            // Mixed: Exact preferred over Prefix for the same path.
            ("mixed-path-rules", "/foo", Svc("foo-exact")),
            // Trailing slash in the rule: ignored for Prefix, significant for Exact.
            (
                "trailing-slash-path-rules",
                "/aaa/bbb",
                Svc("aaa-slash-bbb-slash-prefix"),
            ),
            (
                "trailing-slash-path-rules",
                "/aaa/bbb/",
                Svc("aaa-slash-bbb-slash-prefix"),
            ),
            ("trailing-slash-path-rules", "/foo", Miss),
        ],
    );
}

/// features/host_rules.feature: an exact host (backend port referenced by name, with TLS) and
/// a wildcard host, no default backend. The TLS scenario routes like the plain one; only the
/// certificate differs, which is not the routing table's business (the TLS host is checked to
/// be in the model).
#[test]
fn conformance_host_rules() {
    let ing = ingress("host-rules")
        .tls(&["foo.bar.com"], "conformance-tls")
        .rule("*.foo.com", &[("Prefix", "/", "wildcard-foo-com")])
        .rule("foo.bar.com", &[("Prefix", "/", "foo-bar-com:http")])
        .build();
    let translation = translate(&cluster(vec![ing.clone()]), &Options::default());
    assert!(
        translation.diagnostics.is_empty(),
        "{:?}",
        translation.diagnostics
    );
    assert_eq!(
        translation
            .model
            .tls
            .iter()
            .map(|t| t.host.clone())
            .collect::<Vec<_>>(),
        [HostMatch::Exact("foo.bar.com".into())]
    );
    let named = translation
        .model
        .routes
        .iter()
        .find(|r| r.host == HostMatch::Exact("foo.bar.com".into()))
        .expect("foo.bar.com route");
    assert_eq!(named.backend.port, ServicePort::Name("http".into()));
    assert!(
        !named.backend.endpoints.is_empty(),
        "the named port resolves to endpoints"
    );

    // The feature's plain-http scenario expects a 200 from foo-bar-com. sluice redirects plain
    // HTTP to HTTPS (308) for hosts with TLS unless the Ingress opts out, so the routing table
    // matches, but the proxy would answer the redirect; the wildcard host has no TLS.
    let redirects = |t: &crate::translate::Translation| {
        t.model
            .routes
            .iter()
            .map(|r| (r.host.to_string(), r.redirect_to_https))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        redirects(&translation),
        [
            ("*.foo.com".to_string(), false),
            ("foo.bar.com".to_string(), true)
        ]
    );
    let opted_out = ingress("host-rules")
        .annotation("sluice.io/ssl-redirect", "false")
        .tls(&["foo.bar.com"], "conformance-tls")
        .rule("foo.bar.com", &[("Prefix", "/", "foo-bar-com:http")])
        .build();
    let opted_out = translate(&cluster(vec![opted_out]), &Options::default());
    assert!(
        opted_out.diagnostics.is_empty(),
        "{:?}",
        opted_out.diagnostics
    );
    assert_eq!(redirects(&opted_out), [("foo.bar.com".to_string(), false)]);

    let table = compile(vec![ing]);
    check(
        "features/host_rules.feature",
        &table,
        None,
        &[
            // The exact host, reached over https (first scenario) or http (second).
            ("foo.bar.com", "/", Svc("foo-bar-com")),
            // The exact host does not cover a sibling name.
            ("subdomain.bar.com", "/", Miss),
            // The wildcard covers one label, not two, not zero.
            ("bar.foo.com", "/", Svc("wildcard-foo-com")),
            ("baz.bar.foo.com", "/", Miss),
            ("foo.com", "/", Miss),
        ],
    );
}

/// features/default_backend.feature: an Ingress with only `spec.defaultBackend` catches every
/// method, host (including none) and path. (The method plays no part in routing.)
#[test]
fn conformance_default_backend() {
    let table = compile(vec![
        ingress("default-backend")
            .default_backend("echo-service")
            .build(),
    ]);
    assert!(table.routes().is_empty());
    assert_eq!(table.host_count(), 0);
    check(
        "features/default_backend.feature",
        &table,
        Some("echo-service"),
        &[
            ("my-host", "/", Miss),           // GET
            ("my-host", "/sub-path", Miss),   // GET
            ("some-host", "/", Miss),         // POST
            ("", "/resource", Miss),          // PUT, no host
            ("some-host", "/resource", Miss), // DELETE
            ("my-host", "/resource", Miss),   // PATCH
        ],
    );
}

/// features/ingress_class.feature: an Ingress naming a class that is not ours (and does not
/// exist) is not served and not published (no status); the same Ingress with our class is.
#[test]
fn conformance_ingress_class() {
    let build = |class: &str| {
        ingress("test-ingress-class")
            .class(class)
            .rule("ingress-class", &[("Prefix", "/", "ingress-class-prefix")])
            .build()
    };

    let foreign = translate(
        &cluster(vec![build("some-invalid-class-name")]),
        &Options::default(),
    );
    assert!(foreign.diagnostics.is_empty(), "{:?}", foreign.diagnostics);
    assert!(
        foreign.model.ingresses.is_empty(),
        "a foreign Ingress must get no status"
    );
    let table = RoutingTable::compile(&foreign.model);
    assert!(table.routes().is_empty());
    check(
        "features/ingress_class.feature (foreign class)",
        &table,
        None,
        &[("ingress-class", "/", Miss)],
    );

    let ours = translate(&cluster(vec![build("sluice")]), &Options::default());
    assert_eq!(
        ours.model.ingresses,
        [crate::model::ObjectRef::new(NS, "test-ingress-class")]
    );
    check(
        "features/ingress_class.feature (control: our class)",
        &RoutingTable::compile(&ours.model),
        None,
        &[("ingress-class", "/", Svc("ingress-class-prefix"))],
    );
}

// ---------------------------------------------------------------------------------------------
// d. Request normalisation and tier fallthrough
// ---------------------------------------------------------------------------------------------

/// The Host header is lower-cased and loses its port and one trailing dot; IP literals match no
/// rule host and fall through to host-less rules.
#[test]
fn request_host_normalisation() {
    let table = compile(vec![
        ingress("hosts")
            .rule("foo.example.com", &[("Prefix", "/", "exact-host")])
            .rule("*.example.com", &[("Prefix", "/", "wildcard-host")])
            .rule("", &[("Prefix", "/", "no-host")])
            .build(),
    ]);
    check(
        "request host normalisation",
        &table,
        None,
        &[
            ("foo.example.com", "/", Svc("exact-host")),
            // Case.
            ("FOO.EXAMPLE.COM", "/", Svc("exact-host")),
            ("Foo.Example.Com", "/", Svc("exact-host")),
            ("BAR.Example.COM", "/", Svc("wildcard-host")),
            // Port.
            ("foo.example.com:8080", "/", Svc("exact-host")),
            ("foo.example.com:443", "/", Svc("exact-host")),
            ("bar.example.com:80", "/", Svc("wildcard-host")),
            // Trailing dot (fully qualified), with and without port.
            ("foo.example.com.", "/", Svc("exact-host")),
            ("foo.example.com.:8443", "/", Svc("exact-host")),
            ("Bar.Example.Com.:80", "/", Svc("wildcard-host")),
            // IP literals never match a rule host: host-less rules.
            ("[::1]", "/", Svc("no-host")),
            ("[::1]:8080", "/", Svc("no-host")),
            ("[2001:db8::1]:443", "/", Svc("no-host")),
            ("192.0.2.10", "/", Svc("no-host")),
            ("192.0.2.10:80", "/", Svc("no-host")),
            // No Host at all (HTTP/1.0), or only a port.
            ("", "/", Svc("no-host")),
            (":80", "/", Svc("no-host")),
            // Names the wildcard does not cover.
            ("example.com", "/", Svc("no-host")),
            ("a.b.example.com", "/", Svc("no-host")),
            (".example.com", "/", Svc("no-host")),
            ("foo.example.com..", "/", Svc("no-host")),
            ("foo.example.org", "/", Svc("no-host")),
        ],
    );
}

/// Without host-less rules or a default backend, an IP literal or an unknown host is a 404.
#[test]
fn ip_literal_host_without_host_less_rules_is_not_found() {
    let table = compile(vec![
        ingress("hosts")
            .rule("foo.example.com", &[("Prefix", "/", "exact-host")])
            .build(),
    ]);
    check(
        "no host-less rules",
        &table,
        None,
        &[
            ("[::1]:80", "/", Miss),
            ("127.0.0.1", "/", Miss),
            ("", "/", Miss),
            ("FOO.example.com.", "/", Svc("exact-host")),
        ],
    );
}

/// The query string plays no part in matching, whether the caller strips it (through
/// [`normalize_request_path`]) or hands it to [`RoutingTable::lookup`] as received.
#[test]
fn query_string_is_ignored() {
    let table = compile(vec![
        ingress("query")
            .rule(
                "",
                &[
                    ("Exact", "/foo", "foo-exact"),
                    ("Prefix", "/bar", "bar-prefix"),
                ],
            )
            .build(),
    ]);
    let rows = [
        ("/foo?x=1", Svc("foo-exact")),
        ("/foo?", Svc("foo-exact")),
        ("/foo?/bar", Svc("foo-exact")),
        ("/foo/?x=1", Miss),
        ("/bar?q=/foo", Svc("bar-prefix")),
        ("/bar/baz?x=/../../foo", Svc("bar-prefix")),
        ("/barx?x", Miss),
        ("/?bar", Miss),
    ];
    let with_host: Vec<_> = rows.iter().map(|&(p, w)| ("q.example.com", p, w)).collect();
    check(
        "query through normalize_request_path",
        &table,
        None,
        &with_host,
    );

    for (path, want) in rows {
        let got = match table.lookup("q.example.com", path) {
            Some(RouteMatch {
                route: Some(_),
                backend,
                ..
            }) => Got::Route(backend.service.name.clone()),
            Some(RouteMatch {
                route: None,
                backend,
                ..
            }) => Got::Default(backend.service.name.clone()),
            None => Got::NotFound,
        };
        assert_eq!(got, expected(want, None), "raw lookup of {path:?}");
    }
}

/// The request path is normalised before lookup, and the normalised path is what matches.
#[test]
fn request_path_normalisation_before_lookup() {
    let table = compile(vec![
        ingress("paths")
            .rule(
                "",
                &[
                    ("Exact", "/foo", "foo-exact"),
                    ("Prefix", "/foo", "foo-prefix"),
                    ("Prefix", "/caf%c3%a9", "cafe"),
                ],
            )
            .build(),
    ]);
    check(
        "request path normalisation",
        &table,
        None,
        &[
            ("p.example.com", "/%66oo", Svc("foo-exact")),
            ("p.example.com", "/%66%6F%6f", Svc("foo-exact")),
            ("p.example.com", "//foo", Svc("foo-exact")),
            ("p.example.com", "/x/../foo", Svc("foo-exact")),
            ("p.example.com", "/./foo", Svc("foo-exact")),
            ("p.example.com", "/../../foo", Svc("foo-exact")),
            ("p.example.com", "/foo/.", Svc("foo-prefix")),
            ("p.example.com", "/foo//bar", Svc("foo-prefix")),
            ("p.example.com", "/foo/bar/..", Svc("foo-prefix")),
            ("p.example.com", "/foo/%2e%2e", Miss),
            ("p.example.com", "/CAF%C3%A9/x", Miss),
            ("p.example.com", "/caf%C3%A9/x", Svc("cafe")),
            ("p.example.com", "/caf%c3%a9", Svc("cafe")),
            ("p.example.com", "/foo%2Fbar", Refused),
            ("p.example.com", "/foo%5cbar", Refused),
            ("p.example.com", "/foo%zz", Refused),
            ("p.example.com", "foo", Refused),
        ],
    );
}

/// Tiers are tried in turn: an exact host with no matching path falls through to the wildcard
/// tier, then to host-less rules, then to the default backend.
#[test]
fn host_tier_fallthrough() {
    let table = compile(vec![
        ingress("tiers")
            .rule(
                "foo.example.com",
                &[
                    ("Prefix", "/api", "exact-api"),
                    ("Exact", "/", "exact-root"),
                ],
            )
            .rule(
                "*.example.com",
                &[
                    ("Prefix", "/web", "wildcard-web"),
                    ("Prefix", "/api/v2", "wildcard-api-v2"),
                ],
            )
            .rule(
                "",
                &[
                    ("Prefix", "/static", "any-static"),
                    ("Prefix", "/web/long/path", "any-web-long"),
                ],
            )
            .default_backend("fallback")
            .build(),
    ]);
    check(
        "tier fallthrough",
        &table,
        Some("fallback"),
        &[
            // Exact host tier.
            ("foo.example.com", "/api", Svc("exact-api")),
            ("foo.example.com", "/", Svc("exact-root")),
            // A longer path in a lower tier does not beat a match in a higher tier.
            ("foo.example.com", "/api/v2/users", Svc("exact-api")),
            // Exact host has no matching path: wildcard tier.
            ("foo.example.com", "/web/index.html", Svc("wildcard-web")),
            // ... and it wins over a longer host-less path.
            ("foo.example.com", "/web/long/path", Svc("wildcard-web")),
            // Neither exact nor wildcard: host-less.
            ("foo.example.com", "/static/app.js", Svc("any-static")),
            // Nothing at all: default backend.
            ("foo.example.com", "/other", Miss),
            ("foo.example.com", "/apiv2", Miss),
            // Another name under the wildcard skips the exact tier.
            ("bar.example.com", "/api", Miss),
            ("bar.example.com", "/api/v2", Svc("wildcard-api-v2")),
            ("bar.example.com", "/", Miss),
            ("bar.example.com", "/static", Svc("any-static")),
            // A name no rule host covers: host-less, then default.
            ("unrelated.org", "/web/long/path/x", Svc("any-web-long")),
            ("unrelated.org", "/web", Miss),
            ("example.com", "/static", Svc("any-static")),
        ],
    );
}

/// Rules for the same host merge across Ingresses; precedence is by path, never by Ingress.
/// On a true conflict (same host, path type and path) the oldest Ingress wins.
#[test]
fn rules_merge_across_ingresses_and_oldest_wins_conflicts() {
    let older = ingress("older")
        .created(1_000)
        .rule(
            "shop.example.com",
            &[
                ("Prefix", "/cart", "older-cart"),
                ("Prefix", "/", "older-root"),
            ],
        )
        .build();
    let newer = ingress("newer")
        .created(2_000)
        .rule(
            "shop.example.com",
            &[
                ("Prefix", "/cart", "newer-cart"),
                ("Exact", "/cart", "newer-cart-exact"),
                ("Prefix", "/cart/items", "newer-items"),
            ],
        )
        .build();
    // The newer Ingress is listed first: the order of objects must not matter.
    let translation = translate(&cluster(vec![newer, older]), &Options::default());
    let reasons: Vec<Reason> = translation.diagnostics.iter().map(|d| d.reason).collect();
    assert_eq!(
        reasons,
        [Reason::PathConflict],
        "{:?}",
        translation.diagnostics
    );
    assert_eq!(translation.diagnostics[0].object.name, "newer");
    assert_eq!(
        translation.diagnostics[0].field,
        "spec.rules[0].http.paths[0]"
    );
    let table = RoutingTable::compile(&translation.model);
    assert_eq!(table.host_count(), 1);
    check(
        "merge and conflicts",
        &table,
        None,
        &[
            ("shop.example.com", "/cart/x", Svc("older-cart")),
            ("shop.example.com", "/cart", Svc("newer-cart-exact")),
            ("shop.example.com", "/cart/", Svc("older-cart")),
            ("shop.example.com", "/cart/items/1", Svc("newer-items")),
            ("shop.example.com", "/", Svc("older-root")),
        ],
    );
    // The route records the Ingress field it came from.
    let m = table
        .lookup("shop.example.com", "/cart/items")
        .and_then(|m| m.route)
        .expect("route");
    assert_eq!(
        m.source,
        RouteSource {
            ingress: crate::model::ObjectRef::new(NS, "newer"),
            rule: 0,
            path: 2
        }
    );
}

/// An empty table: 404 for everything, and the default backend alone when there is one.
#[test]
fn empty_table() {
    let table = RoutingTable::compile(&Model::default());
    assert!(table.lookup("foo.example.com", "/").is_none());
    assert!(table.lookup("", "").is_none());
    assert!(table.default_backend().is_none());
}

/// `RouteMatch::backend_index` indexes `RoutingTable::backends`; backends are shared by the
/// routes of one Ingress that name the same Service port, and not across Ingresses.
#[test]
fn backend_index_identifies_backends() {
    let table = compile(vec![
        ingress("one")
            .created(1)
            .rule(
                "",
                &[
                    ("Prefix", "/a", "web"),
                    ("Prefix", "/b", "web"),
                    ("Prefix", "/c", "api"),
                ],
            )
            .default_backend("fallback")
            .build(),
        ingress("two")
            .created(2)
            .rule("", &[("Prefix", "/d", "web")])
            .build(),
    ]);
    let index = |path: &str| table.lookup("x.example.com", path).map(|m| m.backend_index);
    let (a, b, c, d, fallback) = (
        index("/a"),
        index("/b"),
        index("/c"),
        index("/d"),
        index("/z"),
    );
    assert_eq!(a, b, "same Ingress, same Service port: one backend");
    assert_ne!(a, c);
    assert_ne!(a, d, "backends are per Ingress");
    assert_eq!(table.backends().len(), 4);
    assert_eq!(fallback, Some(3));
    // `request` checks that every index points at the matched backend.
    check(
        "backend_index",
        &table,
        Some("fallback"),
        &[
            ("x", "/a", Svc("web")),
            ("x", "/c", Svc("api")),
            ("x", "/d", Svc("web")),
            ("x", "/z", Miss),
        ],
    );
}

/// Regression: the default backend of an Ingress that also routes a path to the same Service
/// port shares that path's `Arc<Backend>` (translation caches backends per Ingress), so it is
/// not appended to `backends`; its index must still be the shared one, not
/// `backends.len() - 1`.
#[test]
fn backend_index_of_default_backend_shared_with_a_route() {
    let table = compile(vec![
        ingress("shared")
            .default_backend("web")
            .rule("", &[("Prefix", "/a", "web"), ("Prefix", "/b", "api")])
            .build(),
    ]);
    assert_eq!(
        table.backends().len(),
        2,
        "web (shared by /a and the default) and api"
    );
    let m = table
        .lookup("x.example.com", "/elsewhere")
        .expect("default backend");
    assert!(m.route.is_none());
    assert_eq!(m.backend.service.name, "web");
    assert_eq!(m.backend_index, 0);
    assert!(Arc::ptr_eq(&table.backends()[m.backend_index], m.backend));
}
