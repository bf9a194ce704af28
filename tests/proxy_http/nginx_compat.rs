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

/// A `GET` with an `Authorization: Basic` header for `user:password` (none when `None`).
async fn get_as(h: &Harness, host: &str, path: &str, creds: Option<&str>) -> Reply {
    use base64::Engine as _;
    let mut req = http::Request::get(path).header(http::header::HOST, host);
    if let Some(c) = creds {
        let token = base64::engine::general_purpose::STANDARD.encode(c);
        req = req.header(http::header::AUTHORIZATION, format!("Basic {token}"));
    }
    h1_send(
        h.running.http_addr,
        req.body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap(),
    )
    .await
}

/// docs/examples/auth/basic: an htpasswd file made with `htpasswd -c auth foo` (password
/// `bar`) in a Secret `basic-auth` under the key `auth`, and the `auth-map` form with one key
/// per user.
#[tokio::test]
async fn basic_authentication_from_an_htpasswd_secret() {
    let web = echo([127, 0, 0, 1], "http-svc").await;
    // htpasswd -nbB -C 4 foo bar; htpasswd -nbm foo bar (Apache htpasswd 2.4).
    let secrets = "\
apiVersion: v1
kind: Secret
metadata:
  name: basic-auth
  namespace: default
type: Opaque
stringData:
  auth: |
    foo:$2y$04$TnbsZ9ygA/gZVsC8P4zFmecAw87pICRgxgS4cSbjk48HboZYL9nk6
---
apiVersion: v1
kind: Secret
metadata:
  name: basic-auth-map
  namespace: default
type: Opaque
stringData:
  foo: $apr1$Tqo8avdV$Upzse8pC.Hy2wCNFWFPJh/
";
    let h = Harness::start(&[
        (
            "ingress.yaml",
            doc_ingress(
                "ingress-with-auth",
                "    nginx.ingress.kubernetes.io/auth-type: basic\n    nginx.ingress.kubernetes.io/auth-secret: basic-auth\n    nginx.ingress.kubernetes.io/auth-realm: 'Authentication Required - foo'\n",
                "foo.bar.com",
                &[("/", "Prefix", "http-svc")],
            ),
        ),
        (
            "map.yaml",
            doc_ingress(
                "ingress-with-auth-map",
                "    nginx.ingress.kubernetes.io/auth-type: basic\n    nginx.ingress.kubernetes.io/auth-secret: basic-auth-map\n    nginx.ingress.kubernetes.io/auth-secret-type: auth-map\n",
                "map.bar.com",
                &[("/", "Prefix", "http-svc")],
            ),
        ),
        ("secrets.yaml", secrets.to_string()),
        ("svc.yaml", service("http-svc", &[(web, true)])),
    ])
    .await;
    let r = get_as(&h, "foo.bar.com", "/", None).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"Authentication Required - foo\"")
    );
    assert_eq!(
        get_as(&h, "foo.bar.com", "/", Some("foo:baz")).await.status,
        401
    );
    assert_eq!(
        get_as(&h, "foo.bar.com", "/", Some("bob:bar")).await.status,
        401
    );
    // The right password, twice (the second is answered from the success cache).
    for _ in 0..2 {
        let r = get_as(&h, "foo.bar.com", "/", Some("foo:bar")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(echo_service(&r.body), "http-svc");
        // nginx passes the credentials on, and so does sluice.
        assert_eq!(echoed(&r.body, "authorization").len(), 1, "{}", r.body);
    }
    assert_eq!(get_as(&h, "map.bar.com", "/", None).await.status, 401);
    assert_eq!(
        get_as(&h, "map.bar.com", "/", Some("foo:bar")).await.status,
        200
    );
    assert_eq!(
        get_as(&h, "map.bar.com", "/", Some("foo:bad")).await.status,
        401
    );

    // A changed Secret applies at once: the old password stops working.
    h.write(
        "secrets.yaml",
        &secrets.replace(
            "foo:$2y$04$TnbsZ9ygA/gZVsC8P4zFmecAw87pICRgxgS4cSbjk48HboZYL9nk6",
            "foo:{PLAIN}new",
        ),
    )
    .await;
    assert_eq!(
        get_as(&h, "foo.bar.com", "/", Some("foo:bar")).await.status,
        401
    );
    assert_eq!(
        get_as(&h, "foo.bar.com", "/", Some("foo:new")).await.status,
        200
    );

    // The Secret removed: the Ingress closes (503), it never serves open.
    h.remove("secrets.yaml").await;
    let r = get_as(&h, "foo.bar.com", "/", Some("foo:new")).await;
    assert_eq!(r.status, 503, "{}", r.body);
    let r = get_as(&h, "foo.bar.com", "/", None).await;
    assert_eq!(r.status, 503, "{}", r.body);
}

/// `GET /` on `host` with extra headers; which echo service answered (or the status).
async fn who(h: &Harness, host: &str, headers: &[(&str, &str)]) -> String {
    let mut req = http::Request::get("/").header(http::header::HOST, host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = h1_send(
        h.running.http_addr,
        req.body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap(),
    )
    .await;
    if r.status == 200 {
        echo_service(&r.body).to_string()
    } else {
        r.status.as_u16().to_string()
    }
}

/// docs/examples/canary and the canary section of the annotations reference: a main Ingress
/// and a canary Ingress for the same host and path; header, then cookie, then weight decide.
#[tokio::test]
async fn canary_by_header_cookie_and_weight() {
    let prod = echo([127, 0, 0, 1], "production").await;
    let canary = echo([127, 0, 0, 1], "canary").await;
    let main = |host: &str, extra: &str| {
        doc_ingress(
            &format!("production-{}", host.split('.').next().unwrap()),
            &format!("    nginx.ingress.kubernetes.io/ssl-redirect: \"false\"\n{extra}"),
            host,
            &[("/", "Prefix", "production")],
        )
    };
    let canary_of = |host: &str, annotations: &str| {
        doc_ingress(
            &format!("canary-{}", host.split('.').next().unwrap()),
            &format!("    nginx.ingress.kubernetes.io/canary: \"true\"\n{annotations}"),
            host,
            &[("/", "Prefix", "canary")],
        )
    };
    let files = [
        ("main-a.yaml", main("header.test", "")),
        (
            "canary-a.yaml",
            canary_of(
                "header.test",
                "    nginx.ingress.kubernetes.io/canary-by-header: canary\n    nginx.ingress.kubernetes.io/canary-by-cookie: canary\n",
            ),
        ),
        ("main-b.yaml", main("value.test", "")),
        (
            "canary-b.yaml",
            canary_of(
                "value.test",
                "    nginx.ingress.kubernetes.io/canary-by-header: region\n    nginx.ingress.kubernetes.io/canary-by-header-value: us-east\n    nginx.ingress.kubernetes.io/canary-weight: \"100\"\n",
            ),
        ),
        ("main-c.yaml", main("half.test", "")),
        (
            "canary-c.yaml",
            canary_of(
                "half.test",
                "    nginx.ingress.kubernetes.io/canary-weight: \"50\"\n",
            ),
        ),
        (
            "main-d.yaml",
            main(
                "locked.test",
                "    nginx.ingress.kubernetes.io/whitelist-source-range: 10.0.0.0/8\n",
            ),
        ),
        (
            "canary-d.yaml",
            canary_of(
                "locked.test",
                "    nginx.ingress.kubernetes.io/canary-weight: \"100\"\n",
            ),
        ),
        (
            "orphan.yaml",
            canary_of(
                "orphan.test",
                "    nginx.ingress.kubernetes.io/canary-weight: \"100\"\n",
            ),
        ),
        (
            "svc.yaml",
            services(&[
                service("production", &[(prod, true)]),
                service("canary", &[(canary, true)]),
            ]),
        ),
    ];
    let files: Vec<(&str, String)> = files.iter().map(|(n, y)| (*n, y.clone())).collect();
    let h = Harness::start(&files).await;

    // By header: always / never; any other value falls through to the cookie, then the
    // weight (0 here).
    assert_eq!(who(&h, "header.test", &[]).await, "production");
    assert_eq!(
        who(&h, "header.test", &[("canary", "always")]).await,
        "canary"
    );
    assert_eq!(
        who(&h, "header.test", &[("canary", "never")]).await,
        "production"
    );
    assert_eq!(
        who(
            &h,
            "header.test",
            &[("canary", "yes"), ("cookie", "canary=always")]
        )
        .await,
        "canary"
    );
    assert_eq!(
        who(
            &h,
            "header.test",
            &[("canary", "never"), ("cookie", "canary=always")]
        )
        .await,
        "production"
    );
    assert_eq!(
        who(&h, "header.test", &[("cookie", "a=b; canary=never")]).await,
        "production"
    );
    // By header value: only that value; with weight 100 everything else goes to the canary
    // unless the header says otherwise... which with a value set it cannot: "never" is just
    // another value.
    assert_eq!(
        who(&h, "value.test", &[("region", "us-east")]).await,
        "canary"
    );
    assert_eq!(
        who(&h, "value.test", &[("region", "never")]).await,
        "canary"
    );
    assert_eq!(who(&h, "value.test", &[]).await, "canary");
    // By weight: 50 out of 100, over 200 requests both get some (the chance that one gets none
    // is 2^-199).
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..200 {
        *seen.entry(who(&h, "half.test", &[]).await).or_insert(0) += 1;
    }
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        ["canary", "production"],
        "{seen:?}"
    );
    // The canary inherits the main Ingress's protections: the source range still applies.
    assert_eq!(who(&h, "locked.test", &[]).await, "403");
    // A canary with no main Ingress serves nothing and is reported.
    assert_eq!(who(&h, "orphan.test", &[]).await, "404");
    let (_, body) = request(h.running.admin_addr, "GET", "admin", "/api/diagnostics")
        .await
        .unwrap();
    assert!(
        body.contains("no main Ingress serves this host and path"),
        "{body}"
    );
}

/// docs/examples/affinity/cookie: `affinity: cookie` with `session-cookie-name: route` and
/// the expiry settings; and `upstream-hash-by` from the annotations reference.
#[tokio::test]
async fn session_affinity_by_cookie_and_consistent_hashing() {
    // A Service's endpoints share one port: three loopback addresses.
    let eps: Vec<_> = crate::backends::echo_same_port(
        &[[127, 0, 0, 1], [127, 0, 0, 2], [127, 0, 0, 3]],
        "http-svc",
    )
    .await
    .into_iter()
    .map(|a| (a, true))
    .collect();
    let h = Harness::start(&[
        (
            "nginx-test.yaml",
            doc_ingress(
                "nginx-test",
                "    nginx.ingress.kubernetes.io/affinity: cookie\n    nginx.ingress.kubernetes.io/session-cookie-name: route\n    nginx.ingress.kubernetes.io/session-cookie-expires: \"172800\"\n    nginx.ingress.kubernetes.io/session-cookie-max-age: \"172800\"\n",
                "stickyingress.example.com",
                &[("/", "Prefix", "http-svc")],
            ),
        ),
        (
            "hashed.yaml",
            doc_ingress(
                "hashed",
                "    nginx.ingress.kubernetes.io/upstream-hash-by: \"$arg_user\"\n",
                "hashed.example.com",
                &[("/", "Prefix", "http-svc")],
            ),
        ),
        ("svc.yaml", service("http-svc", &eps)),
    ])
    .await;
    let endpoint_of = |r: &Reply| echo_endpoint(&r.body).to_string();
    // Without the cookie: balanced, and each answer sets it.
    let mut seen = std::collections::BTreeSet::new();
    let mut cookie = String::new();
    for _ in 0..3 {
        let r = get(&h, "stickyingress.example.com", "/").await;
        seen.insert(endpoint_of(&r));
        let set = r.header("set-cookie").expect("affinity cookie").to_string();
        assert!(set.starts_with("route="), "{set}");
        assert!(set.ends_with("; Path=/; HttpOnly; Max-Age=172800"), "{set}");
        cookie = set.split(';').next().unwrap().to_string();
    }
    assert_eq!(seen.len(), 3, "round robin without the cookie: {seen:?}");
    // With it: the same endpoint every time, and no new cookie.
    let mut pinned = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let r = who_with_cookie(&h, "stickyingress.example.com", &cookie).await;
        assert_eq!(r.header("set-cookie"), None);
        pinned.insert(endpoint_of(&r));
    }
    assert_eq!(pinned.len(), 1, "{pinned:?}");
    // A cookie naming no endpoint (an old one, or made up) is replaced.
    let r = who_with_cookie(&h, "stickyingress.example.com", "route=0123456789abcdef").await;
    assert!(
        r.header("set-cookie")
            .is_some_and(|c| c.starts_with("route="))
    );

    // upstream-hash-by: the same user always reaches the same endpoint, users spread.
    let mut by_user = std::collections::BTreeMap::new();
    for round in 0..2 {
        for user in 0..30 {
            let r = get(&h, "hashed.example.com", &format!("/?user=u{user}")).await;
            let ep = endpoint_of(&r);
            if round == 0 {
                by_user.insert(user, ep);
            } else {
                assert_eq!(by_user[&user], ep, "user {user} moved");
            }
        }
    }
    let spread: std::collections::BTreeSet<_> = by_user.values().collect();
    assert_eq!(spread.len(), 3, "{by_user:?}");
}

async fn who_with_cookie(h: &Harness, host: &str, cookie: &str) -> Reply {
    h1_send(
        h.running.http_addr,
        http::Request::get("/")
            .header(http::header::HOST, host)
            .header(http::header::COOKIE, cookie)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap(),
    )
    .await
}

/// docs/examples/rewrite (app-root), the annotations reference's CORS, rate-limit, redirect and
/// server-alias examples.
#[tokio::test]
async fn app_root_cors_rate_limit_redirect_and_server_alias_examples() {
    let web = echo([127, 0, 0, 1], "http-svc").await;
    let files = [
        (
            "approot.yaml",
            doc_ingress(
                "approot",
                "    nginx.ingress.kubernetes.io/app-root: /app1\n",
                "approot.bar.com",
                &[("/", "Prefix", "http-svc")],
            ),
        ),
        (
            "cors.yaml",
            doc_ingress(
                "cors",
                "    nginx.ingress.kubernetes.io/enable-cors: \"true\"\n    nginx.ingress.kubernetes.io/cors-allow-methods: \"PUT, GET, POST, OPTIONS\"\n    nginx.ingress.kubernetes.io/cors-allow-headers: \"X-Forwarded-For, X-app123-XPTO\"\n    nginx.ingress.kubernetes.io/cors-expose-headers: \"*, X-CustomResponseHeader\"\n    nginx.ingress.kubernetes.io/cors-max-age: \"600\"\n    nginx.ingress.kubernetes.io/cors-allow-credentials: \"false\"\n    nginx.ingress.kubernetes.io/cors-allow-origin: \"https://origin-site.com:4443, http://origin-site.com\"\n",
                "cors.bar.com",
                &[("/", "Prefix", "http-svc")],
            ),
        ),
        (
            "limited.yaml",
            doc_ingress(
                "limited",
                "    nginx.ingress.kubernetes.io/limit-rps: \"1\"\n    nginx.ingress.kubernetes.io/limit-burst-multiplier: \"3\"\n",
                "limited.bar.com",
                &[("/", "Prefix", "http-svc")],
            ),
        ),
        (
            "moved.yaml",
            doc_ingress(
                "moved",
                "    nginx.ingress.kubernetes.io/permanent-redirect: https://www.google.com\n    nginx.ingress.kubernetes.io/permanent-redirect-code: \"308\"\n",
                "moved.bar.com",
                &[("/", "Prefix", "http-svc")],
            ),
        ),
        (
            "alias.yaml",
            doc_ingress(
                "alias",
                "    nginx.ingress.kubernetes.io/server-alias: \"www.foo.com, *.foo.org\"\n",
                "foo.com",
                &[("/", "Prefix", "http-svc")],
            ),
        ),
        ("svc.yaml", service("http-svc", &[(web, true)])),
    ];
    let files: Vec<(&str, String)> = files.iter().map(|(n, y)| (*n, y.clone())).collect();
    let h = Harness::start(&files).await;

    let r = get(&h, "approot.bar.com", "/").await;
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("http://approot.bar.com/app1"));

    let preflight = h1_send(
        h.running.http_addr,
        http::Request::options("/")
            .header(http::header::HOST, "cors.bar.com")
            .header(http::header::ORIGIN, "http://origin-site.com")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap(),
    )
    .await;
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("http://origin-site.com")
    );
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("PUT, GET, POST, OPTIONS")
    );
    assert_eq!(preflight.header("access-control-max-age"), Some("600"));
    assert_eq!(preflight.header("access-control-allow-credentials"), None);
    let other = h1_send(
        h.running.http_addr,
        http::Request::options("/")
            .header(http::header::HOST, "cors.bar.com")
            .header(http::header::ORIGIN, "https://evil.test")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap(),
    )
    .await;
    assert_eq!(other.header("access-control-allow-origin"), None);

    // 1 request per second with a burst of 3: of six in a row, the first three pass and at
    // most one more can (were the machine slow enough for a second to pass), the rest 503.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(get(&h, "limited.bar.com", "/").await.status.as_u16());
    }
    assert_eq!(statuses[..3], [200, 200, 200]);
    assert!(statuses.contains(&503), "{statuses:?}");

    let r = get(&h, "moved.bar.com", "/x").await;
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("https://www.google.com"));

    for host in ["foo.com", "www.foo.com", "a.foo.org"] {
        assert_eq!(seen(&h, host, "/x").await.1, "http-svc", "{host}");
    }
    assert_eq!(seen(&h, "b.www.foo.com", "/").await.0, 404);
}

/// docs/examples/customization/custom-errors: `custom-http-errors` with a `default-backend`
/// Service that renders error pages from the `X-Code`... headers; the same Service answers
/// for a route whose Service has no endpoint.
#[tokio::test]
async fn custom_errors_from_the_default_backend() {
    use crate::backends::{Proto, handler, hyper_backend, text};
    let app = hyper_backend(
        Proto::Http1,
        handler(|req: http::Request<hyper::body::Incoming>| async move {
            match req.uri().path() {
                "/missing" => text(http::StatusCode::NOT_FOUND, "app's own 404"),
                "/teapot" => text(http::StatusCode::IM_A_TEAPOT, "app's 418"),
                _ => text(http::StatusCode::OK, "app ok"),
            }
        }),
    )
    .await;
    let pages = hyper_backend(
        Proto::Http1,
        handler(|req: http::Request<hyper::body::Incoming>| async move {
            let h = |n: &str| {
                req.headers()
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_string()
            };
            let code = h("x-code").parse::<u16>().unwrap_or(404);
            text(
                http::StatusCode::from_u16(code).unwrap(),
                format!(
                    "page {} for {} {} {}/{} {}:{} format {} id {}",
                    code,
                    req.method(),
                    h("x-original-uri"),
                    h("x-namespace"),
                    h("x-ingress-name"),
                    h("x-service-name"),
                    h("x-service-port"),
                    h("x-format"),
                    if h("x-request-id").len() > 8 {
                        "set"
                    } else {
                        "missing"
                    },
                ),
            )
        }),
    )
    .await;
    let h = Harness::start(&[
        (
            "app.yaml",
            doc_ingress(
                "app",
                "    nginx.ingress.kubernetes.io/custom-http-errors: \"404,503\"\n    nginx.ingress.kubernetes.io/default-backend: error-pages\n",
                "app.example.com",
                &[("/", "Prefix", "app"), ("/down", "Prefix", "nobody")],
            ),
        ),
        (
            "svc.yaml",
            services(&[
                service("app", &[(app.addr, true)]),
                service("error-pages", &[(pages.addr, true)]),
                service("nobody", &[]),
            ]),
        ),
    ])
    .await;
    let r = get(&h, "app.example.com", "/ok").await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "app ok"));
    // A listed status from the app: the error backend's page, with ingress-nginx's headers.
    let r = h1_send(
        h.running.http_addr,
        http::Request::post("/missing?q=1")
            .header(http::header::HOST, "app.example.com")
            .header(http::header::ACCEPT, "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(b"x")))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.body,
        "page 404 for GET /missing?q=1 default/app app:80 format application/json id set"
    );
    // Not listed: the app's answer as it is.
    let r = get(&h, "app.example.com", "/teapot").await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (418, "app's 418"));
    // A Service without endpoints: the default backend answers the request itself.
    let r = get(&h, "app.example.com", "/down/x").await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(r.body.starts_with("page 404 for GET -"), "{}", r.body);
}

/// The annotations reference's `limit-connections`: requests in progress per client address
/// (503 over it), counted until the answer has streamed.
#[tokio::test]
async fn limit_connections_counts_requests_in_progress() {
    let held = held_backend().await;
    let web = echo([127, 0, 0, 1], "http-svc").await;
    let h = Harness::start(&[
        (
            "limited.yaml",
            doc_ingress(
                "limited",
                "    nginx.ingress.kubernetes.io/limit-connections: \"2\"\n",
                "conn.bar.com",
                &[("/held", "Prefix", "held"), ("/", "Prefix", "http-svc")],
            ),
        ),
        (
            "svc.yaml",
            services(&[
                service("held", &[(held.addr, true)]),
                service("http-svc", &[(web, true)]),
            ]),
        ),
    ])
    .await;
    let addr = h.running.http_addr;
    let in_progress: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(async move {
                h1_send(
                    addr,
                    http::Request::get("/held")
                        .header(http::header::HOST, "conn.bar.com")
                        .body(http_body_util::Empty::<bytes::Bytes>::new())
                        .unwrap(),
                )
                .await
            })
        })
        .collect();
    eventually("two requests held at the backend", || held.started() == 2).await;
    // A third request from the same address, to any route of the Ingress: 503.
    let r = get(&h, "conn.bar.com", "/").await;
    assert_eq!(r.status, 503, "{}", r.body);
    held.release();
    for t in in_progress {
        let r = t.await.unwrap();
        assert_eq!(
            (r.status.as_u16(), r.body.len()),
            (200, HeldBackend::BODY_LEN)
        );
    }
    // Both answers streamed: the count goes down (once the proxy has dropped the bodies,
    // which may be just after the client read their last byte).
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let status = get(&h, "conn.bar.com", "/").await.status;
        if status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still limited: {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The annotations reference's `proxy-send-timeout`: an upstream that stops taking the
/// request body is cut after that long (504), long before `proxy-read-timeout`.
#[tokio::test]
async fn proxy_send_timeout_cuts_an_upstream_that_stops_reading() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    // Accepts connections and never reads from them.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let deaf = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let h = Harness::start(&[
        (
            "upload.yaml",
            doc_ingress(
                "upload",
                "    nginx.ingress.kubernetes.io/proxy-send-timeout: \"1\"\n    nginx.ingress.kubernetes.io/proxy-read-timeout: \"120\"\n    nginx.ingress.kubernetes.io/proxy-body-size: \"0\"\n",
                "upload.bar.com",
                &[("/", "Prefix", "deaf")],
            ),
        ),
        ("svc.yaml", service("deaf", &[(deaf, true)])),
    ])
    .await;
    let stream = tokio::net::TcpStream::connect(h.running.http_addr)
        .await
        .unwrap();
    let (mut rd, mut wr) = stream.into_split();
    const LEN: usize = 256 << 20;
    let writer = tokio::spawn(async move {
        let head =
            format!("PUT /big HTTP/1.1\r\nHost: upload.bar.com\r\nContent-Length: {LEN}\r\n\r\n");
        wr.write_all(head.as_bytes()).await?;
        let chunk = vec![b'x'; 64 << 10];
        for _ in 0..LEN / chunk.len() {
            wr.write_all(&chunk).await?;
        }
        Ok::<_, std::io::Error>(())
    });
    // The answer comes within the test's deadline, so it is not the 120 s read timeout.
    let mut got = Vec::new();
    let answer = tokio::time::timeout(DEADLINE, async {
        let mut buf = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = rd.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(answer.is_ok(), "no answer within {DEADLINE:?}");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 504"), "{text}");
    writer.abort();
}

/// `proxy-read-timeout` is the longest wait between two reads from the upstream (nginx's
/// `proxy_read_timeout`): a response body that stalls is cut, one that keeps coming in pieces
/// more often than that is served whole however long it takes.
#[tokio::test]
async fn proxy_read_timeout_cuts_a_stalled_response_body() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    // Answers with a head announcing 100 bytes; then sends `pieces` pieces of 10 bytes
    // `gap` apart and, unless all 10 were sent, holds the connection open.
    async fn upstream(pieces: usize, gap: std::time::Duration) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let mut seen = Vec::new();
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
                        .await;
                    for _ in 0..pieces {
                        if s.write_all(&[b'x'; 10]).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(gap).await;
                    }
                    // Held open until sluice lets go.
                    let _ = s.read(&mut buf).await;
                });
            }
        });
        addr
    }
    let stalls = upstream(3, std::time::Duration::from_millis(10)).await;
    let trickles = upstream(10, std::time::Duration::from_millis(300)).await;
    let annotations = "    nginx.ingress.kubernetes.io/proxy-read-timeout: \"1\"\n";
    let h = Harness::start(&[
        (
            "stall.yaml",
            doc_ingress(
                "stall",
                annotations,
                "stall.bar.com",
                &[("/", "Prefix", "stalls")],
            ),
        ),
        (
            "trickle.yaml",
            doc_ingress(
                "trickle",
                annotations,
                "trickle.bar.com",
                &[("/", "Prefix", "trickles")],
            ),
        ),
        ("svc1.yaml", service("stalls", &[(stalls, true)])),
        ("svc2.yaml", service("trickles", &[(trickles, true)])),
    ])
    .await;
    // Everything the client gets for `host` until the connection ends (within the deadline).
    let read_all = |host: &'static str| {
        let addr = h.running.http_addr;
        async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut got = Vec::new();
            let ended = tokio::time::timeout(DEADLINE, async {
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                    let text = String::from_utf8_lossy(&got);
                    if let Some((_, body)) = text.split_once("\r\n\r\n")
                        && body.len() >= 100
                    {
                        return;
                    }
                }
            })
            .await;
            assert!(
                ended.is_ok(),
                "{host}: neither complete nor cut within {DEADLINE:?}"
            );
            String::from_utf8_lossy(&got).into_owned()
        }
    };
    // 30 of 100 bytes, then the connection is closed: the client can tell it is truncated.
    let text = read_all("stall.bar.com").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let body = text.split_once("\r\n\r\n").unwrap().1;
    assert_eq!(body.len(), 30, "{text}");
    // Ten pieces 300 ms apart: 3 s in all, never 1 s without a read.
    let text = read_all("trickle.bar.com").await;
    let body = text.split_once("\r\n\r\n").unwrap().1;
    assert_eq!(body.len(), 100, "{text}");
}

/// nginx's `client_body_timeout`: a client that stops sending its request body gets 408 once
/// it has sent nothing for that long; one that keeps sending is served.
#[tokio::test]
async fn a_request_body_that_stops_arriving_gets_408() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let backend = echo([127, 0, 0, 1], "echo").await;
    let h = Harness::start_with(
        &[
            (
                "upload.yaml",
                doc_ingress(
                    "upload",
                    "    sluice.io/ssl-redirect: \"false\"\n",
                    "upload.bar.com",
                    &[("/", "Prefix", "echo")],
                ),
            ),
            ("svc.yaml", service("echo", &[(backend, true)])),
        ],
        sluice::proxy::ProxyConfig {
            client_body_timeout: std::time::Duration::from_secs(1),
            ..Default::default()
        },
    )
    .await;
    let mut s = tokio::net::TcpStream::connect(h.running.http_addr)
        .await
        .unwrap();
    s.write_all(
        b"POST /up HTTP/1.1\r\nHost: upload.bar.com\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    let answered = tokio::time::timeout(DEADLINE, async {
        let mut buf = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(answered.is_ok(), "no answer within {DEADLINE:?}");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
}
