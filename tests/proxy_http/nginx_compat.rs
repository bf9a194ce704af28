//! The ingress-nginx compatibility suite: the examples of ingress-nginx's documentation
//! (rewrite, path matching with regular expressions, redirects, authentication, CORS, canary,
//! rate limits), written here as the Ingresses a user migrating would have, and checked through
//! the running proxy against what that documentation says happens. Every Ingress keeps
//! `ingressClassName` as sluice's class, the only line a migration changes.

use crate::clients::*;
use crate::support::*;

/// An Ingress in ingress-nginx documentation form: `annotations` (already indented YAML
/// lines), one host, paths `(path, pathType, service)` on port 80.
fn doc_ingress(name: &str, annotations: &str, host: &str, paths: &[(&str, &str, &str)]) -> String {
    let mut y = format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: default\n  annotations:\n{annotations}spec:\n  ingressClassName: sluice\n  rules:\n  - host: {host}\n    http:\n      paths:\n"
    );
    for (path, kind, svc) in paths {
        y.push_str(&format!(
            "      - path: {path:?}\n        pathType: {kind}\n        backend:\n          service:\n            name: {svc}\n            port:\n              number: 80\n"
        ));
    }
    y
}

/// What the echo backend `svc` was asked for: `(service, request target)`.
async fn seen(h: &Harness, host: &str, path: &str) -> (u16, String, String) {
    let r = get(h, host, path).await;
    if r.status != 200 {
        return (r.status.as_u16(), String::new(), r.body);
    }
    let line = echo_request_line(&r.body);
    let target = line.split(' ').nth(1).unwrap_or_default().to_string();
    (200, echo_service(&r.body).to_string(), target)
}

/// docs/examples/rewrite: `use-regex` with `rewrite-target: /$2` on
/// `/something(/|$)(.*)`.
#[tokio::test]
async fn rewrite_with_capture_groups() {
    let web = echo([127, 0, 0, 1], "http-svc").await;
    let h = Harness::start(&[
        (
            "rewrite.yaml",
            doc_ingress(
                "rewrite",
                "    nginx.ingress.kubernetes.io/use-regex: \"true\"\n    nginx.ingress.kubernetes.io/rewrite-target: /$2\n",
                "rewrite.bar.com",
                &[("/something(/|$)(.*)", "ImplementationSpecific", "http-svc")],
            ),
        ),
        ("svc.yaml", service("http-svc", &[(web, true)])),
    ])
    .await;
    // The documentation's three cases.
    for (path, upstream) in [
        ("/something", "/"),
        ("/something/", "/"),
        ("/something/new", "/new"),
    ] {
        assert_eq!(
            seen(&h, "rewrite.bar.com", path).await,
            (200, "http-svc".to_string(), upstream.to_string()),
            "{path}"
        );
    }
    // The query stays; matching is case-insensitive (nginx's `~*`).
    assert_eq!(
        seen(&h, "rewrite.bar.com", "/SomeThing/a/b?x=1").await.2,
        "/a/b?x=1"
    );
    // A path the expression does not match from the start has no route.
    assert_eq!(seen(&h, "rewrite.bar.com", "/other").await.0, 404);
    assert_eq!(seen(&h, "rewrite.bar.com", "/x/something").await.0, 404);
}

/// docs/user-guide/ingress-path-matching: regular-expression paths are tried longest first,
/// and the first that matches wins, even over a longer literal match.
#[tokio::test]
async fn regex_paths_are_ordered_by_length() {
    let one = echo([127, 0, 0, 1], "service1").await;
    let two = echo([127, 0, 0, 1], "service2").await;
    let three = echo([127, 0, 0, 1], "service3").await;
    let h = Harness::start(&[
        (
            "test-ingress-3.yaml",
            doc_ingress(
                "test-ingress-3",
                "    nginx.ingress.kubernetes.io/use-regex: \"true\"\n",
                "test.com",
                &[
                    ("/foo/bar/bar", "Prefix", "service1"),
                    ("/foo/bar/[A-Z0-9]{3}", "ImplementationSpecific", "service2"),
                    ("/foo/bar/.+", "ImplementationSpecific", "service3"),
                ],
            ),
        ),
        (
            "svc.yaml",
            services(&[
                service("service1", &[(one, true)]),
                service("service2", &[(two, true)]),
                service("service3", &[(three, true)]),
            ]),
        ),
    ])
    .await;
    // `^/foo/bar/[A-Z0-9]{3}` (20 characters) comes first and matches case-insensitively.
    assert_eq!(seen(&h, "test.com", "/foo/bar/bar").await.1, "service2");
    assert_eq!(seen(&h, "test.com", "/foo/bar/ABC").await.1, "service2");
    assert_eq!(seen(&h, "test.com", "/foo/bar/1").await.1, "service3");
    assert_eq!(seen(&h, "test.com", "/foo/bar/a/b").await.1, "service3");
    // Only the regular expressions of an Ingress are anchored at the start, not the end.
    assert_eq!(seen(&h, "test.com", "/FOO/BAR/BAR").await.1, "service2");
    assert_eq!(seen(&h, "test.com", "/foo/bar").await.0, 404);
}

/// A `rewrite-target` that would send requests somewhere unintended is refused by name and
/// the Ingress answers 503 (it is not served un-rewritten); a path that is not a valid
/// expression is dropped with an error naming it.
#[tokio::test]
async fn invalid_rewrites_and_expressions_are_reported() {
    let web = echo([127, 0, 0, 1], "web").await;
    let h = Harness::start(&[
        (
            "bad-target.yaml",
            doc_ingress(
                "bad-target",
                "    nginx.ingress.kubernetes.io/rewrite-target: /$host/$1\n",
                "target.test",
                &[("/app/(.*)", "ImplementationSpecific", "web")],
            ),
        ),
        (
            "bad-path.yaml",
            doc_ingress(
                "bad-path",
                "    nginx.ingress.kubernetes.io/use-regex: \"true\"\n",
                "path.test",
                &[
                    ("/ok/(a|b)", "ImplementationSpecific", "web"),
                    ("/broken/(", "ImplementationSpecific", "web"),
                ],
            ),
        ),
        ("svc.yaml", service("web", &[(web, true)])),
    ])
    .await;
    let r = get(&h, "target.test", "/app/x").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(seen(&h, "path.test", "/ok/b").await.2, "/ok/b");
    assert_eq!(seen(&h, "path.test", "/broken/").await.0, 404);
    let (_, body) = request(h.running.admin_addr, "GET", "admin", "/api/diagnostics")
        .await
        .unwrap();
    let all: serde_json::Value = serde_json::from_str(&body).unwrap();
    let found: Vec<(String, String)> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["severity"] == "error")
        .map(|d| {
            (
                format!(
                    "{} {}",
                    d["object"].as_str().unwrap(),
                    d["field"].as_str().unwrap()
                ),
                d["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        found.iter().any(|(f, m)| f
            == "default/bad-target metadata.annotations[nginx.ingress.kubernetes.io/rewrite-target]"
            && m.contains("$1 to $9")
            && m.contains("503")),
        "{found:?}"
    );
    assert!(
        found.iter().any(
            |(f, m)| f == "default/bad-path spec.rules[0].http.paths[1].path"
                && m.contains("not a valid regular expression")
        ),
        "{found:?}"
    );
}
