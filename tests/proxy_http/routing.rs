//! Routing: exact and prefix paths, host matching, the default backend.

use http::StatusCode;

use crate::clients::*;
use crate::support::*;

#[tokio::test]
async fn routes_exact_and_prefix_paths() {
    let exact = echo([127, 0, 0, 1], "exact").await;
    let app = echo([127, 0, 0, 1], "app").await;
    let root = echo([127, 0, 0, 1], "root").await;
    let h = Harness::start(&[
        (
            "web.yaml",
            ingress(
                "web",
                "web.test",
                &[
                    ("/exact", "Exact", "exact", 80),
                    ("/app", "Prefix", "app", 80),
                    ("/", "Prefix", "root", 80),
                ],
                &[],
            ),
        ),
        (
            "svc.yaml",
            services(&[
                service("exact", &[(exact, true)]),
                service("app", &[(app, true)]),
                service("root", &[(root, true)]),
            ]),
        ),
    ])
    .await;
    let cases = [
        ("/exact", "exact"),
        ("/exact/", "root"),
        ("/exact/more", "root"),
        ("/exactly", "root"),
        ("/app", "app"),
        ("/app/", "app"),
        ("/app/x/y", "app"),
        ("/apple", "root"),
        ("/", "root"),
        ("/other", "root"),
    ];
    for (path, want) in cases {
        let r = get(&h, "web.test", path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(
            echo_service(&r.body),
            want,
            "{path} went to the wrong service: {}",
            r.body
        );
    }
}

#[tokio::test]
async fn host_matching_ignores_case_port_and_trailing_dot_and_unknown_hosts_get_404() {
    let web = echo([127, 0, 0, 1], "web").await;
    let only = echo([127, 0, 0, 1], "only").await;
    let h = Harness::start(&[
        (
            "web.yaml",
            ingress("web", "web.test", &[("/", "Prefix", "web", 80)], &[]),
        ),
        (
            "only.yaml",
            ingress("only", "only.test", &[("/only", "Exact", "only", 80)], &[]),
        ),
        (
            "svc.yaml",
            services(&[
                service("web", &[(web, true)]),
                service("only", &[(only, true)]),
            ]),
        ),
    ])
    .await;
    for host in [
        "web.test",
        "WEB.Test",
        "web.test:8080",
        "Web.TEST:80",
        "web.test.",
    ] {
        let r = get(&h, host, "/x").await;
        assert_eq!(r.status, 200, "Host: {host}: {}", r.body);
        assert_eq!(echo_service(&r.body), "web", "Host: {host}");
    }
    let r = get(&h, "only.test", "/only").await;
    assert_eq!((r.status, echo_service(&r.body)), (StatusCode::OK, "only"));

    for (host, path) in [
        ("nope.test", "/"),
        ("only.test", "/other"),
        ("web.test.example", "/x"),
    ] {
        let r = get(&h, host, path).await;
        assert_eq!(r.status, 404, "{host}{path}: {}", r.body);
        assert_eq!(r.body, "no route for this host and path\n", "{host}{path}");
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    }
}

#[tokio::test]
async fn default_backend_catches_unmatched_requests() {
    let web = echo([127, 0, 0, 1], "web").await;
    let fallback = echo([127, 0, 0, 1], "fallback").await;
    let default_ingress = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: fallback\n  namespace: default\nspec:\n  ingressClassName: sluice\n  defaultBackend:\n    service:\n      name: fallback\n      port:\n        number: 80\n";
    let h = Harness::start(&[
        (
            "web.yaml",
            ingress("web", "web.test", &[("/app", "Prefix", "web", 80)], &[]),
        ),
        ("fallback.yaml", default_ingress.to_string()),
        (
            "svc.yaml",
            services(&[
                service("web", &[(web, true)]),
                service("fallback", &[(fallback, true)]),
            ]),
        ),
    ])
    .await;
    let r = get(&h, "web.test", "/app/1").await;
    assert_eq!((r.status, echo_service(&r.body)), (StatusCode::OK, "web"));
    for (host, path) in [
        ("nope.test", "/"),
        ("web.test", "/elsewhere"),
        ("other.test", "/app"),
    ] {
        let r = get(&h, host, path).await;
        assert_eq!(r.status, 200, "{host}{path}: {}", r.body);
        assert_eq!(echo_service(&r.body), "fallback", "{host}{path}");
        assert!(
            echo_request_line(&r.body).starts_with(&format!("GET {path} ")),
            "{}",
            r.body
        );
    }
}
