//! `sluice explain`: golden tests of the human and JSON output over manifests folders (through
//! the CLI's own loading function), an agreement check with the routing table's lookup, and
//! the admin API's `/api/explain` on the in-process runtime (as `sluice explain --server`
//! asks it).
//!
//! The expected outputs are in tests/golden/explain/NAME.txt and NAME.json. After an
//! intended change of the output, regenerate them with
//! `UPDATE_GOLDEN=1 cargo test --workspace --test explain` and review the diff.

mod support;

use std::path::Path;

use sluice::explain::{Explanation, Outcome};
use sluice::routing::{RoutingTable, normalize_request_path};
use sluice::source::manifests::load_dir;
use sluice::translate::{Options, translate};
use support::*;

/// The time explanations are made at: 2030-01-01T00:00:00Z.
const NOW: i64 = 1_893_456_000;

/// An Ingress in namespace `default`.
struct Ing<'a> {
    name: &'a str,
    class: &'a str,
    created: &'a str,
    annotations: &'a [(&'a str, &'a str)],
    host: &'a str,
    tls: Option<&'a str>,
    paths: &'a [(&'a str, &'a str, &'a str, u16)],
}

impl Default for Ing<'_> {
    fn default() -> Self {
        Ing {
            name: "web",
            class: "sluice",
            created: "2025-01-01T00:00:00Z",
            annotations: &[],
            host: "app.example.com",
            tls: None,
            paths: &[("/", "Prefix", "web", 80)],
        }
    }
}

impl Ing<'_> {
    fn yaml(&self) -> String {
        let mut y = format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {}\n  namespace: default\n  creationTimestamp: \"{}\"\n",
            self.name, self.created
        );
        if !self.annotations.is_empty() {
            y.push_str("  annotations:\n");
            for (k, v) in self.annotations {
                y.push_str(&format!("    {k}: {v:?}\n"));
            }
        }
        y.push_str(&format!("spec:\n  ingressClassName: {}\n", self.class));
        if let Some(secret) = self.tls {
            y.push_str(&format!(
                "  tls:\n  - hosts: [{}]\n    secretName: {secret}\n",
                self.host
            ));
        }
        y.push_str("  rules:\n  - ");
        if !self.host.is_empty() {
            y.push_str(&format!("host: {:?}\n    ", self.host));
        }
        y.push_str("http:\n      paths:\n");
        for (p, t, svc, port) in self.paths {
            y.push_str(&format!(
                "      - path: {p:?}\n        pathType: {t}\n        backend:\n          service:\n            name: {svc}\n            port:\n              number: {port}\n"
            ));
        }
        y
    }
}

/// A Service `name` (port 80 -> 8080) and its EndpointSlice: (IP, ready, serving,
/// terminating).
fn svc(name: &str, endpoints: &[(&str, bool, bool, bool)]) -> String {
    let mut y = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  ports:\n  - port: 80\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n  namespace: default\n  labels:\n    kubernetes.io/service-name: {name}\naddressType: IPv4\nports:\n- port: 8080\nendpoints:\n"
    );
    if endpoints.is_empty() {
        y.push_str("  []\n");
    }
    for (ip, ready, serving, terminating) in endpoints {
        y.push_str(&format!(
            "- addresses: [\"{ip}\"]\n  conditions:\n    ready: {ready}\n    serving: {serving}\n    terminating: {terminating}\n"
        ));
    }
    y
}

/// A TLS Secret for `host`; rcgen's default validity ends 4096-01-01, so the output is stable.
fn tls_secret(name: &str, host: &str) -> String {
    let cert = rcgen::generate_simple_self_signed(vec![host.to_string()]).expect("certificate");
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: default\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(&cert.cert.pem()),
        indent(&cert.key_pair.serialize_pem())
    )
}

fn ready(ip: &str) -> (&str, bool, bool, bool) {
    (ip, true, true, false)
}

/// Writes `files` to a folder, explains `url` through the CLI's loading function, checks the
/// winner against `RoutingTable::lookup`, and compares both outputs with the golden files.
fn golden(name: &str, files: &[String], url: &str) -> Explanation {
    let dir = tempfile::tempdir().expect("temp dir");
    for (i, yaml) in files.iter().enumerate() {
        std::fs::write(dir.path().join(format!("{i:02}.yaml")), yaml).expect("write");
    }
    let options = Options::default();
    let e = sluice_actors::explain::from_manifests(dir.path(), &options, url, NOW)
        .unwrap_or_else(|f| panic!("{url}: {}", f.0));
    agrees_with_lookup(dir.path(), &options, &e);
    compare(name, "txt", &sluice_actors::explain::output(&e, false));
    compare(name, "json", &sluice_actors::explain::output(&e, true));
    e
}

/// The explanation's winner is the routing table's.
fn agrees_with_lookup(dir: &Path, options: &Options, e: &Explanation) {
    let loaded = load_dir(dir);
    let t = translate(&loaded.state, options);
    let table = RoutingTable::compile(&t.model);
    let authority = e.request.host.clone().unwrap_or_default();
    let path = normalize_request_path(&e.request.path).expect("normalised path");
    let hit = table.lookup(&authority, &path);
    match (hit, &e.winner) {
        (None, None) => assert_eq!(e.outcome, Outcome::NoRoute),
        (Some(m), Some(w)) => match m.route {
            Some(r) => {
                assert_eq!(e.outcome, Outcome::Route);
                assert_eq!(w.ingress, r.source.ingress.to_string());
                assert_eq!(
                    (w.rule, w.path_index),
                    (Some(r.source.rule), Some(r.source.path))
                );
            }
            None => {
                assert_eq!(e.outcome, Outcome::DefaultBackend);
                assert_eq!(w.ingress, m.backend.ingress.to_string());
            }
        },
        (hit, winner) => panic!(
            "lookup found {:?}, explain {winner:?}",
            hit.map(|m| m.route.map(|r| r.source.clone()))
        ),
    }
}

fn compare(name: &str, ext: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/explain")
        .join(format!("{name}.{ext}"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("golden dir");
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run UPDATE_GOLDEN=1 cargo test --workspace --test explain",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{} differs (UPDATE_GOLDEN=1 regenerates it):\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

#[test]
fn matched_route_with_tls_and_candidates() {
    let e = golden(
        "matched",
        &[
            Ing {
                tls: Some("app-tls"),
                paths: &[("/", "Prefix", "web", 80), ("/api", "Prefix", "api", 80)],
                ..Ing::default()
            }
            .yaml(),
            Ing {
                name: "wild",
                host: "*.example.com",
                paths: &[("/api/v1", "Prefix", "web", 80)],
                ..Ing::default()
            }
            .yaml(),
            Ing {
                name: "exact",
                paths: &[("/api", "Exact", "web", 80)],
                ..Ing::default()
            }
            .yaml(),
            svc("web", &[ready("10.0.0.1")]),
            svc(
                "api",
                &[
                    ready("10.0.1.1"),
                    ready("10.0.1.2"),
                    ("10.0.1.3", false, true, true),
                ],
            ),
            tls_secret("app-tls", "app.example.com"),
        ],
        "https://App.Example.com:8443/api/./v1?x=1",
    );
    assert_eq!(e.exit_code(), 0);
    let tls = e.tls.expect("https");
    assert_eq!(tls.secret.as_deref(), Some("default/app-tls"));
    assert_eq!(tls.not_after_text.as_deref(), Some("4096-01-01T00:00:00Z"));
    assert!(e.https_redirect);
}

#[test]
fn unmatched_path_names_the_closest_rule_and_field() {
    let e = golden(
        "unmatched_path",
        &[
            Ing {
                paths: &[("/api", "Exact", "web", 80)],
                ..Ing::default()
            }
            .yaml(),
            svc("web", &[ready("10.0.0.1")]),
        ],
        "http://app.example.com/api/v1",
    );
    assert_eq!(e.exit_code(), 1);
    let closest = e.closest.expect("closest");
    assert_eq!(
        closest.change,
        "default/web spec.rules[0].http.paths[0].path"
    );
}

#[test]
fn unmatched_host_names_the_rule_host() {
    let e = golden(
        "unmatched_host",
        &[
            Ing {
                paths: &[("/shop", "Prefix", "web", 80)],
                ..Ing::default()
            }
            .yaml(),
            svc("web", &[ready("10.0.0.1")]),
        ],
        "http://www.example.com/shop/cart",
    );
    assert_eq!(e.outcome, Outcome::NoRoute);
    assert_eq!(
        e.closest.expect("closest").change,
        "default/web spec.rules[0].host"
    );
}

#[test]
fn path_conflict_lost_to_an_older_ingress() {
    let e = golden(
        "path_conflict",
        &[
            Ing {
                name: "old",
                created: "2024-01-01T00:00:00Z",
                paths: &[("/api", "Prefix", "old", 80)],
                ..Ing::default()
            }
            .yaml(),
            Ing {
                name: "new",
                created: "2025-06-01T00:00:00Z",
                paths: &[("/api", "Prefix", "new", 80)],
                ..Ing::default()
            }
            .yaml(),
            svc("old", &[ready("10.0.0.1")]),
            svc("new", &[ready("10.0.0.2")]),
        ],
        "http://app.example.com/api/users",
    );
    let winner = e.winner.expect("winner");
    assert_eq!(winner.ingress, "default/old");
    let lost = &e.candidates[0];
    assert_eq!(lost.ingress, "default/new");
    assert_eq!(
        lost.diagnostic.as_ref().map(|d| d.reason.as_str()),
        Some("PathConflict")
    );
    assert!(lost.reason.contains("default/old"), "{}", lost.reason);
}

#[test]
fn missing_service_answers_503() {
    let e = golden(
        "missing_service",
        &[Ing {
            paths: &[("/", "Prefix", "ghost", 80)],
            ..Ing::default()
        }
        .yaml()],
        "http://app.example.com/",
    );
    assert!(e.answer.starts_with("503"), "{}", e.answer);
    let b = e.backend.expect("backend");
    assert_eq!(b.diagnostics[0].reason, "ServiceNotFound");
}

#[test]
fn no_ready_endpoints_answers_503() {
    let e = golden(
        "no_ready_endpoints",
        &[
            Ing::default().yaml(),
            svc(
                "web",
                &[
                    ("10.0.0.1", false, false, false),
                    ("10.0.0.2", false, false, true),
                ],
            ),
        ],
        "http://app.example.com/home",
    );
    assert!(e.answer.starts_with("503"), "{}", e.answer);
    assert_eq!(e.backend.expect("backend").used, 0);
}

#[test]
fn ingress_of_another_class() {
    let e = golden(
        "other_class",
        &[
            Ing {
                class: "nginx",
                ..Ing::default()
            }
            .yaml(),
            svc("web", &[ready("10.0.0.1")]),
        ],
        "http://app.example.com/",
    );
    assert_eq!(e.outcome, Outcome::NoRoute);
    let closest = e.closest.expect("closest");
    assert_eq!(closest.change, "default/web spec.ingressClassName");
    assert!(closest.reason.contains("\"nginx\""), "{}", closest.reason);
}

#[test]
fn regex_path_with_rewrite_target() {
    let e = golden(
        "regex_rewrite",
        &[
            Ing {
                annotations: &[
                    ("nginx.ingress.kubernetes.io/use-regex", "true"),
                    ("nginx.ingress.kubernetes.io/rewrite-target", "/$2"),
                ],
                paths: &[
                    ("/something(/|$)(.*)", "ImplementationSpecific", "web", 80),
                    ("/other(/|$)(.*)", "ImplementationSpecific", "web", 80),
                ],
                ..Ing::default()
            }
            .yaml(),
            svc("web", &[ready("10.0.0.1")]),
        ],
        "http://app.example.com/something/users/42?x=1",
    );
    assert_eq!(e.upstream_path.as_deref(), Some("/users/42?x=1"));
    let rewrite = e
        .filters
        .iter()
        .find(|f| f.name == "rewrite-target")
        .expect("rewrite filter");
    assert_eq!(
        rewrite.annotation.as_deref(),
        Some("nginx.ingress.kubernetes.io/rewrite-target")
    );
}

#[test]
fn basic_authentication_and_a_canary_are_listed_as_filters() {
    let e = golden(
        "auth_canary",
        &[
            Ing {
                annotations: &[
                    ("nginx.ingress.kubernetes.io/auth-type", "basic"),
                    ("nginx.ingress.kubernetes.io/auth-secret", "users"),
                    ("nginx.ingress.kubernetes.io/auth-realm", "staff"),
                ],
                ..Ing::default()
            }
            .yaml(),
            Ing {
                name: "web-canary",
                annotations: &[
                    ("nginx.ingress.kubernetes.io/canary", "true"),
                    ("nginx.ingress.kubernetes.io/canary-by-header", "x-canary"),
                    ("nginx.ingress.kubernetes.io/canary-weight", "5"),
                ],
                paths: &[("/", "Prefix", "web-v2", 80)],
                ..Ing::default()
            }
            .yaml(),
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: users\n  namespace: default\ntype: Opaque\nstringData:\n  auth: \"foo:{PLAIN}bar\"\n".to_string(),
            svc("web", &[ready("10.0.0.1")]),
            svc("web-v2", &[ready("10.0.0.2")]),
        ],
        "http://app.example.com/",
    );
    let names: Vec<&str> = e.filters.iter().map(|f| f.name.as_str()).collect();
    assert!(
        names.contains(&"auth-type") && names.contains(&"canary"),
        "{names:?}"
    );
    let canary = e.filters.iter().find(|f| f.name == "canary").unwrap();
    assert!(
        canary.effect.contains("default/web-v2:80")
            && canary
                .effect
                .contains("header x-canary (always/never), weight 5/100"),
        "{}",
        canary.effect
    );
}

#[test]
fn bad_urls_are_errors_naming_the_url() {
    let dir = tempfile::tempdir().expect("temp dir");
    for url in [
        "app.example.com/x",
        "ftp://app.example.com/",
        "http:///x",
        "http://bad host/",
        "http://app.example.com/a%2Fb",
    ] {
        let err = sluice_actors::explain::from_manifests(dir.path(), &Options::default(), url, NOW)
            .expect_err(url);
        assert!(err.0.contains(&format!("{url:?}")), "{}", err.0);
    }
}

#[tokio::test]
async fn admin_api_explains_against_the_live_state() {
    let backend = echo([127, 0, 0, 1], "web").await;
    let h = Harness::start(&[
        (
            "web.yaml",
            ingress("web", "web.test", &[("/", "Prefix", "web", 80)], &[]),
        ),
        ("svc.yaml", service("web", &[(backend, true)])),
    ])
    .await;
    let admin = h.running.admin_addr.to_string();
    let e = sluice_actors::explain::from_server(&admin, "http://web.test/hello?q=a b&c")
        .await
        .expect("admin answers")
        .expect("an explanation");
    assert_eq!(e.outcome, Outcome::Route);
    assert_eq!(e.winner.expect("winner").ingress, "default/web");
    assert_eq!(e.backend.expect("backend").used, 1);
    assert_eq!(e.request.query.as_deref(), Some("q=a b&c"));
    // The proxy agrees.
    let (status, _) = request(h.running.http_addr, "GET", "web.test", "/hello")
        .await
        .expect("request");
    assert_eq!(status, 200);

    let missing = sluice_actors::explain::from_server(&admin, "http://nowhere.test/")
        .await
        .expect("admin answers")
        .expect("an explanation");
    assert_eq!(missing.outcome, Outcome::NoRoute);
    let (status, _) = request(h.running.http_addr, "GET", "nowhere.test", "/")
        .await
        .expect("request");
    assert_eq!(status, 404);

    let refused = sluice_actors::explain::from_server(&admin, "gopher://web.test/")
        .await
        .expect("admin answers");
    assert!(refused.is_err());
    let (status, body) = request(h.running.admin_addr, "GET", "admin", "/api/explain")
        .await
        .expect("request");
    assert_eq!(status, 400, "{body}");
}

#[test]
fn exact_beats_prefix_and_the_default_backend_catches_the_rest() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut default = Ing {
        name: "fallback",
        created: "2024-01-01T00:00:00Z",
        paths: &[("/", "Exact", "web", 80)],
        host: "other.example.com",
        ..Ing::default()
    }
    .yaml();
    default.push_str(
        "  defaultBackend:\n    service:\n      name: web\n      port:\n        number: 80\n",
    );
    for (i, yaml) in [
        Ing {
            paths: &[("/api", "Prefix", "web", 80), ("/api", "Exact", "web", 80)],
            ..Ing::default()
        }
        .yaml(),
        default,
        svc("web", &[ready("10.0.0.1")]),
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(dir.path().join(format!("{i}.yaml")), yaml).expect("write");
    }
    let options = Options::default();
    let explain = |url: &str| {
        let e = sluice_actors::explain::from_manifests(dir.path(), &options, url, NOW)
            .unwrap_or_else(|f| panic!("{}", f.0));
        agrees_with_lookup(dir.path(), &options, &e);
        e
    };
    let e = explain("http://app.example.com/api");
    assert_eq!(
        e.winner.expect("winner").field,
        "spec.rules[0].http.paths[1]"
    );
    assert_eq!(
        e.candidates[0].verdict,
        sluice::explain::Verdict::ExactWon,
        "{:?}",
        e.candidates
    );

    let e = explain("http://app.example.com/elsewhere");
    assert_eq!(e.outcome, Outcome::DefaultBackend);
    assert_eq!(e.exit_code(), 1);
    assert_eq!(
        e.winner.as_ref().expect("winner").field,
        "spec.defaultBackend"
    );
    assert!(e.closest.is_some());
    assert!(
        sluice_actors::explain::output(&e, false)
            .contains("the default backend of default/fallback"),
    );
}

#[test]
fn ssl_passthrough_is_explained_as_a_spliced_connection() {
    let e = golden(
        "ssl_passthrough",
        &[
            Ing {
                annotations: &[("nginx.ingress.kubernetes.io/ssl-passthrough", "true")],
                ..Ing::default()
            }
            .yaml(),
            svc("web", &[ready("10.0.0.1")]),
        ],
        "https://app.example.com/",
    );
    assert!(
        e.answer.contains("passed through undecrypted to Service"),
        "{}",
        e.answer
    );
    let filters = format!("{e}");
    assert!(filters.contains("ssl-passthrough"), "{filters}");
}
